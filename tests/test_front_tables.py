"""The race tables in README.md and docs/detector.md say what the saved run says (issue 25).

``docs/front_yolo26n.json`` is the ``front.json`` that ``benchmarks/bench_front.py`` wrote; the tables are copied from
it by hand. Every row of both tables must name a point of that run, with its mean AP, AP50 and best float latency
as saved (rounded as printed), and every point of the run must have its row in docs/detector.md (the README shows
a selection): a table edited by hand cannot drift from the measurement, and a new run cannot land with an old table.
"""
from __future__ import annotations

import json
import re

import pytest

from helpers import ROOT

FRONT = json.loads((ROOT / "docs" / "front_yolo26n.json").read_text())
ROW = re.compile(r"^\| ((?:YOLO|`)[^|]*@\d+) \| \**([0-9.]+)[^|]*\| ([0-9.]+) \|(.*)$")  # AP may be bold


def table_rows(doc: str, heading: str) -> dict[str, list[str]]:
    """The rows of the first table after ``heading`` in ``doc``: label -> [AP, AP50, rest of the row]."""
    text = (ROOT / doc).read_text()
    start = text.index(heading)
    rows, seen_table = {}, False
    for line in text[start:].splitlines()[1:]:
        m = ROW.match(line)
        if m:
            seen_table = True
            rows[m.group(1).replace("`", "")] = [m.group(2), m.group(3), m.group(4)]
        elif seen_table and not line.startswith("|"):
            break
    return rows


@pytest.mark.parametrize("doc, heading, every_point", [
    ("README.md", "**Against YOLO26n and YOLO11n**", False),  # the README shows a selection
    ("docs/detector.md", "## The front against YOLO26n and YOLO11n", True),
])
def test_front_table_matches_the_saved_run(doc, heading, every_point):
    rows = table_rows(doc, heading)
    saved = {r["label"]: r for r in FRONT["rows"]}
    assert rows, f"{doc}: no table after {heading!r}"
    assert set(rows) <= set(saved), f"{doc}: rows not in docs/front_yolo26n.json: {sorted(set(rows) - set(saved))}"
    if every_point:
        assert sorted(rows) == sorted(saved), f"{doc}: points of docs/front_yolo26n.json missing from the table"
    for label, (ap, ap50, rest) in rows.items():
        r = saved[label]
        assert ap == f"{r['AP']:.3f}", (doc, label, "AP")
        assert ap50 == f"{r['AP50']:.3f}", (doc, label, "AP50")
        assert f"{r['float']['ms']:.2f}" in rest, (doc, label, "best float latency")


def test_saved_run_names_its_cpu_and_seeds():
    assert FRONT["cpu"] and "2 CPUs" in FRONT["cpu"]
    for r in FRONT["rows"]:
        assert r["seeds"], r["label"]
