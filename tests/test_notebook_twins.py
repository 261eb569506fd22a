"""Every notebook has a text twin in step with it, and every exercise stub with its solution.

The text twins (jupytext py:percent) are what maintainers edit and review; the
``.ipynb`` files hold the stored outputs. ``make notebooks`` syncs the two;
these tests fail when someone edited one side only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import sync_notebooks  # noqa: E402


def test_every_notebook_has_a_text_twin_in_step() -> None:
    problems = sync_notebooks.sync(check=True)
    assert not problems, ("run `make notebooks` (or `python tools/sync_notebooks.py`):\n"
                          + "\n".join(problems))


@pytest.mark.parametrize(("text", "ipynb"), sync_notebooks.twins(),
                         ids=[p.name for _, p in sync_notebooks.twins()])
def test_twins_are_declared_as_a_jupytext_pair(text: Path, ipynb: Path) -> None:
    """Jupyter (with jupytext installed) then keeps both files in step when a notebook is saved."""
    assert jupytext.read(text).metadata["jupytext"]["formats"] == "ipynb,py:percent"


def test_lessons_and_solutions_have_matching_exercise_cells() -> None:
    for text, _ in sync_notebooks.twins():
        solutions = text.parent / "solutions" / f"{text.stem}_solutions.py"
        if not solutions.exists():
            continue
        lesson = jupytext.read(text)
        answers = [c for c in jupytext.read(solutions).cells
                   if "solution" in c.metadata.get("tags", [])]
        stubs = [c for c in lesson.cells if "exercise" in c.metadata.get("tags", [])]
        assert len(stubs) == len(answers) >= 3, f"{text.name}: at least 3 exercises, paired"
        for stub, answer in zip(stubs, answers, strict=True):
            assert stub.source == sync_notebooks.exercise_stub(answer.source)


def test_stub_of_a_function_raises_not_implemented() -> None:
    solution = ('def my_merge(W0, A, B, alpha):\n    """Doc."""\n    # ✏️ one line\n'
                "    ### BEGIN SOLUTION\n    s = alpha / A.shape[0]\n    return W0 + s * B @ A\n"
                "    ### END SOLUTION\n")
    stub = sync_notebooks.exercise_stub(solution)
    assert stub == ('def my_merge(W0, A, B, alpha):\n    """Doc."""\n    # ✏️ one line\n'
                    '    raise NotImplementedError("exercise: write my_merge")')
    namespace: dict = {}
    exec(stub, namespace)  # the stub is valid Python and raises only when called
    with pytest.raises(NotImplementedError, match="my_merge"):
        namespace["my_merge"](1, 2, 3, 4)


def test_stub_of_a_prediction_is_an_ellipsis() -> None:
    solution = ("# ✏️ predict first\n### BEGIN SOLUTION\nk99: int = 7\n"
                "rank_needed = min(k99, 3)  # reasoning\n### END SOLUTION\nprint('done')")
    stub = sync_notebooks.exercise_stub(solution)
    assert stub == ("# ✏️ predict first\nk99 = ...  # ✏️ your answer\n"
                    "rank_needed = ...  # ✏️ your answer\nprint('done')")


@pytest.mark.parametrize("broken", ["### BEGIN SOLUTION\nx = 1\n",
                                    "x = 1\n### END SOLUTION\n",
                                    "### BEGIN SOLUTION\nprint(1)\n### END SOLUTION\n"])
def test_malformed_solution_blocks_are_refused(broken: str) -> None:
    with pytest.raises(ValueError, match=r"SOLUTION|assign"):
        sync_notebooks.exercise_stub(broken)
