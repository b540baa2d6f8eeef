"""Plain-text and Markdown tables, the one formatter behind the console tables (training summary, per-class AP,
benchmark results) and the Markdown ones."""
from __future__ import annotations

from typing import Any, Sequence


def text_table(headers: Sequence[Any] | None, rows: Sequence[Sequence[Any]], align: str | None = None,
               rule: bool = False) -> str:
    """An aligned table for the console. ``align``: one ``l``/``r`` per column (default: the first column
    left-aligned, the rest right-aligned); ``headers=None`` for a table without a header line; ``rule`` draws a
    dashed line above and below."""
    cells = ([[str(h) for h in headers]] if headers is not None else []) + [[str(c) for c in row] for row in rows]
    ncols = max(len(r) for r in cells)
    align = align or "l" + "r" * (ncols - 1)
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(ncols)]

    def fmt(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    lines = [fmt(r) for r in cells]
    if rule:
        line = "-" * max(len(s) for s in lines)
        lines = [line, *lines, line]
    return "\n".join(lines)


def markdown_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; floats are written as given (format them before)."""
    out = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


__all__ = ["markdown_table", "text_table"]
