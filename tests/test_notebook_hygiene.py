"""The notebooks follow the course's rules (COURSE.md §3), checked statically.

nbval checks that outputs reproduce; these tests check what nbval cannot see:
that the stored outputs come from one clean top-to-bottom run, that widget
metadata is stripped, and that each lesson has its teaching structure.
"""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)
LESSONS = [p for p in NOTEBOOKS if p.parent.name == "notebooks"]
MAX_CODE_LINES = 20


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT / "notebooks")) for p in paths]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_stored_outputs_come_from_one_clean_run(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, "run `make notebooks`: it strips metadata.widgets"
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), \
        "outputs must come from a fresh top-to-bottom run: use `make notebooks`"
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"stored error in cell:\n{cell.source}"
            assert not (out.output_type == "stream" and out.name == "stderr"), \
                f"stored stderr (a warning?) in cell:\n{cell.source}"
        streams = [o.name if o.output_type == "stream" else None for o in cell.outputs]
        assert all(a is None or a != b for a, b in pairwise(streams)), \
            "split stream outputs: refresh with `make notebooks`, which joins them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_cells_are_short(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    long = [c.source for c in nb.cells
            if c.cell_type == "code" and len(c.source.splitlines()) > MAX_CODE_LINES]
    assert not long, f"code cells over {MAX_CODE_LINES} lines: split them\n" + "\n---\n".join(long)


@pytest.mark.parametrize("path", LESSONS, ids=ids(LESSONS))
def test_lesson_structure(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "title first"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    assert "learning objectives" in text
    assert "## summary" in text
    if not path.name.startswith("00_"):
        assert "## exercises" in text
        assert (ROOT / "notebooks" / "solutions" /
                path.name.replace(".ipynb", "_solutions.ipynb")).exists()
    # prose before code: the first code cell comes after some explanation
    assert nb.cells[1].cell_type == "markdown" or first.source.count("\n") > 3


def test_readme_course_map_names_every_lesson() -> None:
    readme = (ROOT / "README.md").read_text()
    for path in LESSONS:
        assert path.name in readme, f"{path.name} missing from the README's course map"


def test_sanitize_file_is_in_the_strict_format_nbval_reads() -> None:
    """nbval silently ignores anything but `regex: ` directly followed by `replace: `."""
    lines = (ROOT / "tests" / "nbval_sanitize.cfg").read_text().splitlines()
    pairs = 0
    for i, line in enumerate(lines):
        if line.startswith("regex"):
            assert line.startswith("regex: "), f"line {i + 1}: one space after the colon"
            re.compile(line[len("regex: "):])
            assert lines[i + 1].startswith("replace: "), f"line {i + 2} must be `replace: ...`"
            pairs += 1
        elif line.strip() and not line.startswith(("[", "replace: ")):
            raise AssertionError(f"line {i + 1} is neither a section, regex nor replace: {line!r}")
    assert pairs >= 1
    assert "--nbval-sanitize-with tests/nbval_sanitize.cfg" in (ROOT / "Makefile").read_text()
