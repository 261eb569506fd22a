"""The notebook-02 self-checks accept every correct answer and name each typical mistake.

For every checker: a correct answer in float64 and in float32 passes; each mistake in the
checker's table is rejected with its own hint; the stub (``NotImplementedError`` or ``...``)
gets a friendly "not yet"; something that is not an answer gets a clear message; and a
malformed reference from the notebook is a ``ValueError``, not a silent pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _verdicts import assert_accepted, assert_rejected

from lora_lab import checks
from lora_lab.checks import nb02

# --------------------------------------------------------------------------- check_grad_x


def grad_x(x, W0, A, B, alpha, grad_h):
    return grad_h @ W0 + (alpha / A.shape[0]) * (grad_h @ B) @ A


def grad_x_float32(x, W0, A, B, alpha, grad_h):
    x, W0, A, B, grad_h = (np.asarray(v, dtype=np.float32) for v in (x, W0, A, B, grad_h))
    return grad_h @ W0 + np.float32(alpha / A.shape[0]) * (grad_h @ B) @ A


def grad_x_column_form(x, W0, A, B, alpha, grad_h):
    """The same maths one example at a time, W0^T g + s A^T B^T g, in a loop."""
    s = alpha / A.shape[0]
    return np.stack([W0.T @ g + s * A.T @ (B.T @ g) for g in grad_h])


def grad_x_float32_cast_back(*args):
    """Computed in float32, returned as float64: right to float32's precision."""
    return grad_x_float32(*args).astype(np.float64)


@pytest.mark.parametrize("answer", [grad_x, grad_x_float32, grad_x_column_form,
                                    grad_x_float32_cast_back])
def test_grad_x_accepts_correct_answers_in_float64_and_float32(capsys, answer) -> None:
    assert_accepted(capsys, checks.check_grad_x(answer))


def test_grad_x_accepts_a_float32_answer_on_float32_inputs_only_to_float32_precision() -> None:
    case = nb02._grad_x_cases()[2]
    assert case["x"].dtype == np.float32                      # one case is float32 throughout
    got = grad_x(*(case[k] for k in nb02._GRAD_X_NAMES))
    assert got.dtype == np.float32


def _with_scale(scale):
    """A learner's dL/dx whose LoRA path uses ``scale(alpha, A)`` instead of alpha / r."""
    return lambda x, W0, A, B, a, G: G @ W0 + scale(a, A) * (G @ B) @ A


@pytest.mark.parametrize(("wrong", "hint"), [
    (_with_scale(lambda a, A: a // A.shape[0]), "`alpha // r` is floor division"),
    (_with_scale(lambda a, A: 1.0), "the LoRA path lost its scaling"),
    (_with_scale(lambda a, A: a), "the scaling is s = alpha / r, not alpha."),
    (_with_scale(lambda a, A: a / A.shape[1]), "r is the number of rows of A, `A.shape[0]`"),
    (_with_scale(lambda a, A: A.shape[0] / a), "upside down"),
    (_with_scale(lambda a, A: a / math.sqrt(A.shape[0])), "rsLoRA's scaling"),
    (lambda x, W0, A, B, a, G: a / A.shape[0] * (G @ B) @ A, "the frozen path is missing"),
    (lambda x, W0, A, B, a, G: G @ W0, "only the frozen path G @ W0 came back"),
    (lambda *args: grad_x(*args) / len(args[0]), "do not average again"),
    (lambda *args: len(args[0]) * grad_x(*args), "do not multiply by N"),
    (lambda *args: grad_x(*args).T, "dL/dx has the shape of x: (N, in)"),
])
def test_grad_x_rejects_each_typical_mistake_with_its_own_hint(capsys, wrong, hint) -> None:
    assert_rejected(capsys, checks.check_grad_x(wrong), hint)


@pytest.mark.parametrize(("wrong", "factor"), [
    (_with_scale(lambda a, A: 2.0), "2 instead of s = alpha / r = 3.5"),      # the notebook's s
    (_with_scale(lambda a, A: a / 2), "0.75 instead of s = alpha / r = 0.5"),  # its r = 2
    (_with_scale(lambda a, A: 4.0 / A.shape[0]), "2 instead of s = alpha / r = 3.5"),  # alpha
    (_with_scale(lambda a, A: (a / A.shape[0]) ** 2), "12.25 instead of s = alpha / r = 3.5"),
])
def test_grad_x_names_a_wrong_factor_on_the_lora_path(capsys, wrong, factor) -> None:
    """A global s, r or alpha, or s squared: the hint says the path is right, the factor not."""
    out = assert_rejected(capsys, checks.check_grad_x(wrong), "multiplied by " + factor,
                          "instead of the function's arguments")
    assert "two paths" not in out


def test_grad_x_wrong_factor_hint_needs_the_right_structure() -> None:
    """The factor hint fires only for G W0 + c (G B) A, never for other wrong answers."""
    case = nb02._grad_x_cases()[0]
    args = [case[k] for k in nb02._GRAD_X_NAMES]
    assert nb02._scale_slip_hint(2 * grad_x(*args), case, "float64") is None
    assert nb02._scale_slip_hint(grad_x(*args).T, case, "float64") is None
    assert nb02._scale_slip_hint("text", case, "float64") is None
    assert "multiplied by 2 " in nb02._scale_slip_hint(_with_scale(lambda a, A: 2.0)(*args),
                                                       case, "float64")


def test_grad_x_integer_division_is_never_told_to_add_a_missing_branch(capsys) -> None:
    """`alpha // r` is caught as integer division; where it is 0 the hint names both causes."""
    out = assert_rejected(capsys, checks.check_grad_x(_with_scale(lambda a, A: a // A.shape[0])))
    assert "floor division" in out and "x also reaches h" not in out
    case = nb02._grad_x_cases()[1]
    assert case["alpha"] // case["A"].shape[0] == 0             # 1.5 // 3: here the two coincide
    hints = [m.hint for m in nb02._grad_x_mistakes(case)]
    assert "`alpha // r` is 0 whenever alpha < r" in hints[0]


def test_grad_x_hints_never_point_the_wrong_way() -> None:
    """Every mistake in the table differs from the right answer, in every case."""
    for case in nb02._grad_x_cases():
        expected = grad_x(*(np.asarray(case[k], dtype=np.float64) if k != "alpha" else case[k]
                            for k in nb02._GRAD_X_NAMES))
        for mistake in nb02._grad_x_mistakes(case):
            assert mistake.value.shape != expected.shape or \
                np.abs(mistake.value - expected).max() > 1e-3 * np.abs(expected).max()


def test_grad_x_fallback_hint_does_not_give_the_formula_away(capsys) -> None:
    out = assert_rejected(capsys, checks.check_grad_x(lambda *args: 2 * grad_x(*args)),
                          "two paths")
    assert "grad_h @ W0 +" not in out and "@ B) @ A" not in out


def test_grad_x_shape_errors_get_a_shape_hint(capsys) -> None:
    assert_rejected(capsys, checks.check_grad_x(lambda x, W0, A, B, a, G: G @ W0.T),
                    "ValueError", "a shape does not fit", "A (r, in)")


def test_grad_x_stub_and_misuse(capsys) -> None:
    def stub(*args):
        raise NotImplementedError("exercise: write my_grad_x")

    assert_rejected(capsys, checks.check_grad_x(stub), "NotImplementedError", "replace the line")
    assert_rejected(capsys, checks.check_grad_x(lambda *args: None), "forget the `return`")
    with pytest.raises(TypeError, match="pass your function itself"):
        checks.check_grad_x(42)


def test_grad_x_catches_an_edit_of_its_input(capsys) -> None:
    def in_place(x, W0, A, B, alpha, grad_h):
        W0 *= 2
        return grad_x(x, W0 / 2, A, B, alpha, grad_h)

    assert_rejected(capsys, checks.check_grad_x(in_place), "changed its argument W0 in place")
    assert_accepted(capsys, checks.check_grad_x(grad_x))      # the cases were not poisoned


# --------------------------------------------------------------------------- init predictions

OBSERVED_INIT = {"A_gets_gradient": {"random"}, "B_gets_gradient": {"lora", "random"},
                 "outputs_change_at_step_0": {"random"}, "never_learns": {"zeros"}}
RIGHT_INIT = dict(OBSERVED_INIT)


def check_init(**changes):
    answers = {**RIGHT_INIT, **changes}
    return checks.check_init_predictions(*(answers[q] for q in nb02.INIT_QUESTIONS),
                                         observed=OBSERVED_INIT)


@pytest.mark.parametrize("container", [set, frozenset, list, tuple])
def test_init_accepts_the_right_sets_in_any_container(capsys, container) -> None:
    answers = {q: container(sorted(v)) for q, v in RIGHT_INIT.items()}
    assert_accepted(capsys, check_init(**answers))


def test_init_compares_with_what_was_observed_not_a_fixed_answer(capsys) -> None:
    """If the experiment had shown something else, that is what the check would want."""
    other = {**OBSERVED_INIT, "never_learns": {"zeros", "random"}}
    result = checks.check_init_predictions(*(OBSERVED_INIT[q] for q in nb02.INIT_QUESTIONS[:3]),
                                           {"zeros", "random"}, observed=other)
    assert_accepted(capsys, result)


@pytest.mark.parametrize(("question", "answer", "hint"), [
    ("A_gets_gradient", {"lora", "random"}, "B = 0 at LoRA's start"),
    ("A_gets_gradient", {"random", "zeros"}, "contains B, and B = 0 here"),
    ("A_gets_gradient", set(), "B != 0, so dL/dA"),
    ("B_gets_gradient", {"random"}, "random (non-zero) at LoRA's start"),
    ("B_gets_gradient", {"lora", "random", "zeros"}, "contains A, and A = 0 here"),
    ("B_gets_gradient", {"lora"}, "random (non-zero) here"),
    ("outputs_change_at_step_0", {"lora", "random"}, "B = 0 makes B A exactly zero"),
    ("outputs_change_at_step_0", {"zeros", "random"}, "both factors are zero, so B A = 0"),
    ("outputs_change_at_step_0", set(), "move before any training"),
    ("never_learns", set(), "gradient descent never moves"),
    ("never_learns", {"zeros", "lora"}, "from step 1 on B != 0"),
    ("never_learns", {"zeros", "random"}, "its problem is where it starts"),
])
def test_init_rejects_each_wrong_prediction_with_its_own_hint(capsys, question, answer,
                                                              hint) -> None:
    out = assert_rejected(capsys, check_init(**{question: answer}), hint)
    assert question in out


@pytest.mark.parametrize(("answer", "hint"), [
    ("lora", "write a set of names, e.g. {'lora'}"),
    ({}, "an empty set is written set()"),
    ({"LoRA"}, "use the names 'lora', 'zeros', 'random'"),
    (3, "write a set such as"),
])
def test_init_explains_answers_that_are_not_sets_of_names(capsys, answer, hint) -> None:
    assert_rejected(capsys, check_init(A_gets_gradient=answer), hint)


def test_init_stub_is_not_answered_yet(capsys) -> None:
    out = assert_rejected(capsys, check_init(outputs_change_at_step_0=...), "replace `...`")
    assert "not answered yet" in out and "outputs_change_at_step_0" in out


@pytest.mark.parametrize("observed", [None, {"A_gets_gradient": {"random"}},
                                      {**OBSERVED_INIT, "never_learns": {"nobody"}}])
def test_init_refuses_a_malformed_observation(observed) -> None:
    with pytest.raises(ValueError, match="observed"):
        checks.check_init_predictions(*RIGHT_INIT.values(), observed=observed)


# --------------------------------------------------------------------------- unmerge error

MEASURED = 6e-8


@pytest.mark.parametrize("answer", [1.2e-7, np.float32(1.2e-7), np.float64(3e-8),
                                    np.array(1e-7), np.array([1e-7]), 6e-9, 6e-7])
def test_unmerge_accepts_predictions_within_a_factor_of_ten(capsys, answer) -> None:
    assert_accepted(capsys, checks.check_unmerge_error(answer, MEASURED))


def test_unmerge_accepts_a_float32_measurement(capsys) -> None:
    assert_accepted(capsys, checks.check_unmerge_error(1e-7, np.float32(MEASURED)))


EPS16, EPS32, EPS64 = (float(np.finfo(t).eps) for t in (np.float16, np.float32, np.float64))


@pytest.mark.parametrize(("answer", "hint"), [
    (0.0, "rounded to the nearest float32 number"),
    (2.2e-16, "that is float64's precision"),
    (EPS64 * 0.67, "that is float64's precision"),
    (1e-9, "too optimistic"),
    (EPS32**2, "too optimistic"),                        # not float64's: 1.4e-14 is far above it
    (1e-5, "too pessimistic"),
    (1e-6, "too pessimistic"),
    (EPS32 * 37, "too pessimistic"),                     # eps times a sum over entries
    (EPS16, "float16's eps"),
    (EPS16 * 0.67, "float16's eps"),
    (EPS32**0.5, "square root of float32's"),
])
def test_unmerge_rejects_each_typical_mistake_with_its_own_hint(capsys, answer, hint) -> None:
    out = assert_rejected(capsys, checks.check_unmerge_error(answer, MEASURED), hint)
    assert "number of entries" not in out                 # a mistake nobody was shown to make
    if answer > 0:
        assert ("float64" in out) == (answer < 1e-14)    # float64 named only for float64's eps


@pytest.mark.parametrize(("answer", "hint"), [
    ("1e-7", "write a single number"), ([1e-7, 2e-7], "write a single number"),
    (-1e-7, "finite number >= 0"), (float("nan"), "finite number >= 0"),
])
def test_unmerge_explains_answers_that_are_not_one_number(capsys, answer, hint) -> None:
    assert_rejected(capsys, checks.check_unmerge_error(answer, MEASURED), hint)


def test_unmerge_stub_is_not_answered_yet(capsys) -> None:
    assert_rejected(capsys, checks.check_unmerge_error(..., MEASURED), "replace `...`")


@pytest.mark.parametrize("measured", [0.0, -1.0, float("inf"), "6e-8", None])
def test_unmerge_refuses_a_malformed_measurement(measured) -> None:
    with pytest.raises(ValueError, match="measured_error"):
        checks.check_unmerge_error(1e-7, measured)


# --------------------------------------------------------------------------- scaling choices

OBSERVED_SCALING = {"adam_progress": "alpha/r", "adam_step_size": "alpha/sqrt(r)",
                    "gd_progress": "alpha/sqrt(r)"}


def check_scaling(**changes):
    answers = {**OBSERVED_SCALING, **changes}
    return checks.check_scaling_choices(*(answers[q] for q in nb02.SCALING_QUESTIONS),
                                        observed=OBSERVED_SCALING)


@pytest.mark.parametrize("spelling", [
    {}, {"adam_progress": "α/r", "adam_step_size": "α/√r", "gd_progress": "alpha / sqrt(r)"},
    {"adam_step_size": "alpha/sqrtr", "gd_progress": "Alpha/Sqrt(R)"},
    {"adam_step_size": "alpha/r**0.5"},
    {"adam_step_size": "alpha/np.sqrt(r)", "gd_progress": "alpha/math.sqrt(r)"},
    {"adam_step_size": "alpha/r**(1/2)", "gd_progress": "alpha/√(r)"},
    {"adam_step_size": "alpha*r**-0.5", "gd_progress": "rsLoRA"},
    {"adam_step_size": "alpha / numpy.sqrt(r)", "gd_progress": "rslora"},
])
def test_scaling_accepts_the_right_choices_however_spelled(capsys, spelling) -> None:
    assert_accepted(capsys, check_scaling(**spelling))


@pytest.mark.parametrize(("question", "answer", "hint"), [
    ("adam_progress", "alpha/sqrt(r)", "grows like s·r. Which s cancels r?"),
    ("adam_progress", "none", "with s = 1 the progress s·lr"),
    ("adam_step_size", "alpha/r", "grow like √r, not like r"),
    ("adam_step_size", "none", "its size grows like √r"),
    ("gd_progress", "alpha/r", "carries s²"),
    ("gd_progress", "none", "of plain gradient descent grows like r"),
])
def test_scaling_rejects_each_wrong_choice_with_its_own_hint(capsys, question, answer,
                                                             hint) -> None:
    out = assert_rejected(capsys, check_scaling(**{question: answer}), hint)
    assert question in out


@pytest.mark.parametrize(("answer", "hint"), [(1, "not a string"),
                                             ("alpha*r", "write it as one of"),
                                             ("a/r", "write it as one of")])
def test_scaling_explains_answers_that_are_not_scalings(capsys, answer, hint) -> None:
    assert_rejected(capsys, check_scaling(adam_progress=answer), hint)


def test_scaling_stub_is_not_answered_yet(capsys) -> None:
    assert_rejected(capsys, check_scaling(gd_progress=...), "replace `...`", "gd_progress")


@pytest.mark.parametrize("observed", [{}, {**OBSERVED_SCALING, "gd_progress": "alpha"}])
def test_scaling_refuses_a_malformed_observation(observed) -> None:
    with pytest.raises(ValueError, match="observed"):
        checks.check_scaling_choices("alpha/r", "alpha/sqrt(r)", "alpha/sqrt(r)",
                                     observed=observed)


def test_every_notebook_02_checker_is_exported() -> None:
    assert set(nb02.__all__) <= set(checks.__all__)
    assert set(nb02.__all__) == {"check_grad_x", "check_init_predictions",
                                 "check_unmerge_error", "check_scaling_choices"}
