"""Keep every notebook in step with its text twin, and every exercise stub with its solution.

Each notebook ``X.ipynb`` has a jupytext twin ``X.py`` (py:percent) beside it. The
text is what you edit and review; the ``.ipynb`` holds the stored outputs that
``pytest --nbval`` compares. This tool

1. derives each lesson's exercise stubs from the worked solutions: the k-th cell
   tagged ``solution`` in ``solutions/X_solutions.py`` becomes the k-th cell
   tagged ``exercise`` in ``X.py``, with the code between ``### BEGIN SOLUTION``
   and ``### END SOLUTION`` replaced by a stub (see :func:`exercise_stub`);
2. copies each text twin's cells into its ``.ipynb``, keeping the stored outputs
   of cells whose source did not change (jupytext's ``--update``).

``make notebooks`` runs it before re-executing; ``--check`` changes nothing and
exits 1 if any file is out of step (``tests/test_notebook_twins.py`` runs it).
Usage: ``python tools/sync_notebooks.py [--check]``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import nbformat
from jupytext.combine import combine_inputs_with_outputs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
FORMAT = "py:percent"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*(?::[^=]+)?=(?!=)")
_DEF = re.compile(r"^\s*def (?P<name>\w+)\(")


def twins() -> list[tuple[Path, Path]]:
    """``(text twin, notebook)`` for every notebook under ``notebooks/``."""
    pairs = []
    for ipynb in sorted(NOTEBOOKS.rglob("*.ipynb")):
        if ".ipynb_checkpoints" not in ipynb.parts:
            pairs.append((ipynb.with_suffix(".py"), ipynb))
    return pairs


def exercise_stub(solution: str) -> str:
    """The learner's version of a solution cell.

    Inside a function, the solution block becomes ``raise NotImplementedError(...)``
    naming the function; at top level, every ``name = ...`` line of the block
    becomes ``name = ...`` with a literal Ellipsis, the answer still to be filled
    in (the checkers report ``...`` as "not answered yet"). Lines outside the
    block are kept as they are.
    """
    lines, out, block, function = solution.splitlines(), [], None, "this function"
    for line in lines:
        match = _DEF.match(line)
        if match:
            function = match["name"]
        stripped = line.strip()
        if stripped == BEGIN:
            block = []
            indent = line[: len(line) - len(line.lstrip())]
        elif stripped == END:
            if block is None:
                raise ValueError(f"{END} without {BEGIN}:\n{solution}")
            out.extend(_stub_lines(block, indent, function))
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise ValueError(f"{BEGIN} without {END}:\n{solution}")
    return "\n".join(out)


def _stub_lines(block: list[str], indent: str, function: str) -> list[str]:
    if indent:
        return [f'{indent}raise NotImplementedError("exercise: write {function}")']
    names = [m["name"] for m in map(_ASSIGNMENT.match, block) if m]
    if not names:
        raise ValueError("a top-level solution block must assign the answer (name = value):\n"
                         + "\n".join(block))
    return [f"{name} = ...  # ✏️ your answer" for name in dict.fromkeys(names)]


def _tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


def derive_exercises(lesson: nbformat.NotebookNode,
                     solutions: nbformat.NotebookNode, name: str) -> bool:
    """Rewrite the ``exercise`` cells of ``lesson`` from ``solutions``; True if any changed."""
    stubs, answers = _tagged(lesson, "exercise"), _tagged(solutions, "solution")
    if len(stubs) != len(answers):
        raise ValueError(f"{name}: {len(stubs)} cells tagged 'exercise' but {len(answers)} "
                         "tagged 'solution' in its solutions notebook")
    changed = False
    for stub, answer in zip(stubs, answers, strict=True):
        wanted = exercise_stub(answer.source)
        if stub.source != wanted:
            stub.source, changed = wanted, True
    return changed


def _solutions_for(lesson_py: Path) -> Path:
    return lesson_py.parent / "solutions" / f"{lesson_py.stem}_solutions.py"


def sync(check: bool, only: list[Path] | None = None) -> list[str]:
    """Bring every pair in step (or, with ``check``, only list what is out of step).

    ``only``: restrict to these notebooks (``.ipynb`` paths), e.g. the ones being refreshed.
    """
    problems = []
    wanted = {p.resolve() for p in only} if only is not None else None
    for text, ipynb in twins():
        if wanted is not None and ipynb.resolve() not in wanted:
            continue
        rel = text.relative_to(ROOT)
        if not text.exists():
            problems.append(f"{rel} is missing: create it with "
                            f"`jupytext --set-formats ipynb,{FORMAT} {ipynb.relative_to(ROOT)}`")
            continue
        source = jupytext.read(text)
        solutions = _solutions_for(text)
        try:
            derived = solutions.exists() and derive_exercises(source, jupytext.read(solutions),
                                                              str(rel))
        except ValueError as exc:  # report it, and go on with the other notebooks
            problems.append(str(exc))
            derived = False
        if derived:
            problems.append(f"{rel}: exercise stubs differ from {solutions.relative_to(ROOT)}")
            if not check:
                jupytext.write(source, text, fmt=FORMAT)
        stored = nbformat.read(ipynb, as_version=4)
        merged = combine_inputs_with_outputs(source, stored, fmt=FORMAT)
        if _cells(merged) != _cells(stored):
            problems.append(f"{ipynb.relative_to(ROOT)} differs from its text twin {rel}")
            if not check:
                nbformat.write(merged, ipynb)
    return problems


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    problems = sync(check)
    for problem in problems:
        print(("out of step: " if check else "synced: ") + problem)
    return 1 if check and problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
