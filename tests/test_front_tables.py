"""The race tables in README.md and docs/detector.md say what the saved runs say (issue 25).

Each ``docs/front_*.json`` is the ``front.json`` that ``benchmarks/bench_front.py`` wrote for one data set. Its table
in docs/detector.md must be exactly what ``bench_front.py --from-json FILE --markdown OUT`` prints (every point, every
runtime), and every row of its README table must be a row of the compact table printed the same way (the README
shows a selection): a table cannot drift from the measurement, and a new run cannot land with an old table.
"""
from __future__ import annotations

import json
import sys

import pytest

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_front import markdown_table  # noqa: E402

# saved run -> (the README's heading above its table, docs/detector.md's)
FRONTS = {
    "front_yolo26n.json": ("**Against YOLO26n and YOLO11n**", "## The front against YOLO26n and YOLO11n"),
    "front_raccoon_person.json": ("**Two classes: raccoon + person**", "### The second set: raccoon + person"),
}


def table_after(doc: str, heading: str) -> list[str]:
    """The lines of the first Markdown table after ``heading`` in ``doc``."""
    text = (ROOT / doc).read_text()
    assert heading in text, f"{doc}: no {heading!r}"
    lines = text[text.index(heading):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("| point |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


@pytest.mark.parametrize("saved", sorted(FRONTS))
def test_front_tables_match_the_saved_run(saved):
    front = json.loads((ROOT / "docs" / saved).read_text())
    readme_heading, docs_heading = FRONTS[saved]
    runtimes = list(front["timings"])
    assert table_after("docs/detector.md", docs_heading) == markdown_table(front["rows"], runtimes).splitlines(), (
        f"docs/detector.md: the table under {docs_heading!r} is not the one bench_front.py --from-json docs/{saved} "
        "--markdown prints")
    compact = markdown_table(front["rows"], runtimes, compact=True).splitlines()
    readme = table_after("README.md", readme_heading)
    assert readme[:2] == compact[:2] and len(readme) > 2
    assert not set(readme) - set(compact), f"README rows not in docs/{saved}: {sorted(set(readme) - set(compact))}"


@pytest.mark.parametrize("saved", sorted(FRONTS))
def test_saved_run_names_its_cpu_and_seeds(saved):
    front = json.loads((ROOT / "docs" / saved).read_text())
    assert front["cpu"] and "2 CPUs" in front["cpu"]
    for r in front["rows"]:
        assert len(r["seeds"]) == len(front["seeds"]) == 3, r["label"]  # every point from 3 seeds
