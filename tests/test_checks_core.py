"""The shared checker core: safe calls, dtype-aware comparison, mistake tables, verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_lab.checks import _core as core


def test_call_reports_a_stub_kindly() -> None:
    def stub(x):
        raise NotImplementedError("exercise: write stub")

    with pytest.raises(core.LearnerError) as wrong:
        core.call(stub, 1)
    assert "NotImplementedError" in wrong.value.problem and wrong.value.hint == core.STUB_HINT


def test_call_reports_none_and_in_place_edits() -> None:
    with pytest.raises(core.LearnerError, match="returned None"):
        core.call(lambda x: None, 1)
    original = np.ones(3)

    def edits(x):
        x += 1
        return x

    with pytest.raises(core.LearnerError, match="changed its argument W0 in place"):
        core.call(edits, original, names=["W0"])
    assert np.array_equal(original, np.ones(3))  # the caller's array is untouched
    tensor = torch.ones(2)
    with pytest.raises(core.LearnerError, match="in place"):
        core.call(lambda t: t.add_(1), tensor, names=["t"])
    assert torch.equal(tensor, torch.ones(2))


@pytest.mark.parametrize(("value", "name"), [
    (np.ones(2), "float64"), (np.ones(2, dtype=np.float32), "float32"),
    (torch.ones(2, dtype=torch.bfloat16), "bfloat16"), (torch.ones(2), "float32"),
    (3, "float64"), (np.arange(3), "float64"), (np.float16(1), "float16")])
def test_dtype_names(value, name) -> None:
    assert core.dtype_name(value) == name


def test_least_precise_picks_the_coarsest() -> None:
    assert core.least_precise(np.ones(1), np.ones(1, np.float32)) == "float32"
    assert core.least_precise(1.0, torch.ones(1, dtype=torch.float16)) == "float16"


def test_compare_follows_the_dtype() -> None:
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(30, 20)), rng.normal(size=(20, 10))
    exact = A @ B
    approx32 = A.astype(np.float32) @ B.astype(np.float32)
    assert core.compare(approx32, exact, "AB", dtype="float32") is None
    assert core.compare(approx32, exact, "AB", dtype="float64") is not None  # too coarse
    assert "shape" in core.compare(exact.T, exact, "AB")
    assert "NaN" in core.compare(np.full_like(exact, np.nan), exact, "AB")
    assert "numbers" in core.compare("abc", exact, "AB")


def test_compare_near_zero_needs_a_scale() -> None:
    assert core.compare(8.8e-8, 0.0, "error", dtype="float32") is not None
    assert core.compare(8.8e-8, 0.0, "error", dtype="float32", scale=1.0) is None


@pytest.mark.parametrize(("got", "expected"), [
    (2, 2.0), (np.float32(0.5), 0.5), (np.array(3.0), 3.0), (np.array([1e-7]), 1e-7),
    (torch.tensor(2.5), 2.5), (torch.tensor([4.0]), 4.0), (True, None), ("1", None),
    ([1, 2], None), (np.ones((1, 1)), None)])
def test_number(got, expected) -> None:
    assert core.number(got) == expected


def test_match_mistake_skips_mistakes_equal_to_the_answer() -> None:
    mistakes = [core.Mistake(1.0, "same as right"), core.Mistake(2.0, "doubled")]
    assert core.match_mistake(2.0, mistakes, 1.0) == "doubled"
    assert core.match_mistake(1.0, mistakes, 1.0) is None
    assert core.match_mistake(3.0, mistakes, 1.0) is None


def test_run_checker_prints_one_verdict(capsys) -> None:
    def check_case(fn, case):
        if core.call(fn, case) != case * 2:
            raise core.LearnerError(f"f({case}) is wrong.", "double it.")

    assert core.run_checker("double", lambda x: 2 * x, check_case, [1, 2]) is True
    assert "✅ double: correct" in capsys.readouterr().out
    assert core.run_checker("double", lambda x: x, check_case, [1, 2]) is False
    out = capsys.readouterr().out
    assert "❌ double: not yet. f(1) is wrong." in out and "Hint: double it." in out
    with pytest.raises(TypeError, match="pass your function itself"):
        core.run_checker("double", 42, check_case, [1])


def test_require_answered_names_every_missing_answer() -> None:
    core.require_answered(a=1, b=False)
    with pytest.raises(core.LearnerError) as wrong:
        core.require_answered(a=..., b=2, c=...)
    assert wrong.value.problem == "not answered yet: a, c are still `...`."
    assert "replace `...` in `a = ...`" in wrong.value.hint


@pytest.mark.parametrize(("value", "problem"), [
    (..., "k is still `...`"), (len, "k is a function"), ("3", "should be one number"),
    ([1, 2], "should be one number")])
def test_one_number_explains_what_it_got(value, problem) -> None:
    with pytest.raises(core.LearnerError, match=problem):
        core.one_number(value, "k")
    assert core.one_number(np.array([0.25]), "k") == 0.25


@pytest.mark.parametrize("package", ["checks", "plots"])
def test_names_are_unique_across_notebook_modules(package: str) -> None:
    """The package re-exports every nbNN module by star import: a repeated name would
    silently replace another notebook's function."""
    import importlib

    pkg = importlib.import_module(f"lora_lab.{package}")
    seen: dict[str, str] = {}
    for number in ("01", "02", "03", "04", "05", "06"):
        module = importlib.import_module(f"lora_lab.{package}.nb{number}")
        for name in module.__all__:
            assert name not in seen, f"{name} is in both {seen[name]} and nb{number}"
            seen[name] = f"nb{number}"
            assert getattr(pkg, name) is getattr(module, name)


def test_none_is_not_a_number() -> None:
    assert core.number(None) is None
    with pytest.raises(core.LearnerError, match="k is None, not a number"):
        core.one_number(None, "k")
