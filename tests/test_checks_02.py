"""The notebook-02 self-checks accept correct answers and explain typical wrong ones.

Each checker must print a pass for a right answer, and for each usual mistake a
"not yet" plus a hint that names the mistake -- never raise on the learner's bugs.
"""

from __future__ import annotations

import numpy as np
import pytest

from lora_lab import checks

# ---------------------------------------------------------------- correct answers


def param_count(shapes: list[tuple[int, int]], r: int) -> int:
    return sum(r * (out_features + in_features) for out_features, in_features in shapes)


def forward(x, W0, A, B, alpha):
    return x @ W0.T + (alpha / A.shape[0]) * (x @ A.T) @ B.T


def grads(x, W0, A, B, alpha, grad_h):
    s = alpha / A.shape[0]
    return s * (grad_h @ B).T @ x, s * grad_h.T @ (x @ A.T)


def merge(W0, A, B, alpha):
    return W0 + (alpha / A.shape[0]) * B @ A


def stub(*args):
    raise NotImplementedError("exercise: write me")


def _verdict(capsys) -> str:
    return capsys.readouterr().out


# ---------------------------------------------------------------- shared behaviour

ALL_CHECKS = [checks.check_param_count, checks.check_lora_forward, checks.check_lora_grads,
              checks.check_merge]


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_stub_gets_a_friendly_not_yet(check, capsys):
    assert check(stub) is False
    out = _verdict(capsys)
    assert "not yet" in out and "NotImplementedError" in out
    assert "replace the line `raise NotImplementedError(...)`" in out


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_passing_something_that_is_not_a_function_is_a_clear_type_error(check):
    with pytest.raises(TypeError, match="pass your function itself"):
        check(42)


@pytest.mark.parametrize("check", ALL_CHECKS)
def test_an_unexpected_exception_is_reported_not_raised(check, capsys):
    def broken(*args):
        raise ZeroDivisionError("oops")

    assert check(broken) is False
    assert "ZeroDivisionError: oops" in _verdict(capsys)


# ---------------------------------------------------------------- check_param_count


def test_param_count_accepts_correct_answer(capsys):
    assert checks.check_param_count(param_count) is True
    assert "✅ lora_param_count: correct" in _verdict(capsys)


def test_param_count_accepts_a_whole_float():
    assert checks.check_param_count(lambda shapes, r: float(param_count(shapes, r))) is True


def _per_weight(count):
    """A learner's answer that applies ``count(o, i, r)`` to every weight and sums."""
    return lambda shapes, r: sum(count(o, i, r) for o, i in shapes)


def _first_only(shapes, r):
    for o, i in shapes:
        return r * (o + i)


def _last_only(shapes, r):
    total = 0
    for o, i in shapes:
        total = r * (o + i)
    return total


@pytest.mark.parametrize(("wrong", "hint", "expected"), [
    (_per_weight(lambda o, i, r: o * i), "size of the full weights W", 32),
    (_per_weight(lambda o, i, r: r * o * i), "add up, they do not multiply", 32),
    (_per_weight(lambda o, i, r: r * o), "you counted B (out × r) only", 32),
    (_per_weight(lambda o, i, r: r * i), "you counted A (r × in) only", 32),
    (_per_weight(lambda o, i, r: o + i), "multiply by r", 32),
    (_per_weight(lambda o, i, r: 2 * r * i), "not square", 32),
    (_first_only, "you counted the first weight only", 62),
    (_last_only, "`total += ...`, not `total = ...`", 62),
    (lambda shapes, r: 7, "write down the shapes of each B and A", 32),
])
def test_param_count_rejects_typical_mistakes_with_a_hint(wrong, hint, expected, capsys):
    assert checks.check_param_count(wrong) is False
    out = _verdict(capsys)
    assert "❌ lora_param_count: not yet" in out and f"expected {expected}" in out
    assert hint in out


def test_param_count_rejects_non_numbers(capsys):
    assert checks.check_param_count(lambda shapes, r: [r * (o + i) for o, i in shapes]) is False
    assert "not one number" in _verdict(capsys)
    assert checks.check_param_count(lambda shapes, r: "32") is False
    assert "not a whole number" in _verdict(capsys)
    assert checks.check_param_count(lambda shapes, r: True) is False


def test_param_count_does_not_let_the_learner_change_the_cases():
    def pops(shapes, r):
        total = param_count(shapes, r)
        shapes.clear()
        return total

    assert checks.check_param_count(pops) is True
    assert checks.check_param_count(param_count) is True


# ---------------------------------------------------------------- check_lora_forward


def test_forward_accepts_correct_answers(capsys):
    assert checks.check_lora_forward(forward) is True
    assert "✅ my_lora_forward: correct" in _verdict(capsys)
    # forming ΔW first is slower but correct too
    assert checks.check_lora_forward(
        lambda x, W0, A, B, a: x @ (W0 + a / A.shape[0] * B @ A).T) is True


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda x, W0, A, B, a: x @ W0.T + (x @ A.T) @ B.T, "you forgot the scaling"),
    (lambda x, W0, A, B, a: x @ W0.T + a * (x @ A.T) @ B.T, "not alpha."),
    (lambda x, W0, A, B, a: x @ W0.T + A.shape[0] / a * (x @ A.T) @ B.T, "upside down"),
    (lambda x, W0, A, B, a: x @ W0.T, "add the LoRA branch"),
    (lambda x, W0, A, B, a: a / A.shape[0] * (x @ A.T) @ B.T, "frozen part is missing"),
    (lambda x, W0, A, B, a: forward(x, W0, A, B, a).T, "column form (out, N)"),
])
def test_forward_rejects_typical_mistakes_with_a_hint(wrong, hint, capsys):
    assert checks.check_lora_forward(wrong) is False
    out = _verdict(capsys)
    assert "❌ my_lora_forward: not yet" in out and hint in out


def test_forward_transposed_weights_give_a_shape_hint(capsys):
    # x @ W0 instead of x @ W0.T: the shapes do not fit and NumPy raises
    assert checks.check_lora_forward(lambda x, W0, A, B, a: x @ W0 + (x @ A) @ B) is False
    out = _verdict(capsys)
    assert "ValueError" in out and "a shape does not fit" in out and "A (r, in)" in out


def test_forward_that_changes_its_input_is_caught(capsys):
    def in_place(x, W0, A, B, alpha):
        W0 += (alpha / A.shape[0]) * B @ A
        return x @ W0.T

    assert checks.check_lora_forward(in_place) is False
    assert "changed its argument W0 in place" in _verdict(capsys)


# ---------------------------------------------------------------- check_lora_grads


def test_grads_accept_correct_answer(capsys):
    assert checks.check_lora_grads(grads) is True
    assert "✅ my_lora_grads: correct" in _verdict(capsys)
    assert checks.check_lora_grads(lambda *args: list(grads(*args))) is True


def _double_grad_B(x, W0, A, B, alpha, grad_h):
    grad_A, grad_B = grads(x, W0, A, B, alpha, grad_h)
    return grad_A, 2 * grad_B


def _double_grad_A(x, W0, A, B, alpha, grad_h):
    grad_A, grad_B = grads(x, W0, A, B, alpha, grad_h)
    return 2 * grad_A, grad_B


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda *args: grads(*args)[::-1], "swapped order"),
    (lambda x, W0, A, B, a, G: tuple(g / (a / A.shape[0]) for g in grads(x, W0, A, B, a, G)),
     "the scaling s = alpha/r is missing"),
    (lambda *args: tuple(g.T for g in grads(*args)), "a gradient has the shape of its parameter"),
    (lambda x, W0, A, B, a, G: tuple(g / len(x) for g in grads(x, W0, A, B, a, G)),
     "sum over the examples, do not average: grad_h already holds the loss's 1/(N·out)"),
    (_double_grad_B, "grad_B is the sum over the examples of s g u^T"),
    (_double_grad_A, "grad_A is the sum over the examples of s B^T g x^T"),
])
def test_grads_reject_typical_mistakes_with_a_hint(wrong, hint, capsys):
    assert checks.check_lora_grads(wrong) is False
    out = _verdict(capsys)
    assert "❌ my_lora_grads: not yet" in out and hint in out


@pytest.mark.parametrize("wrong", [_double_grad_A, _double_grad_B])
def test_grads_fallback_hint_does_not_give_the_solution_away(wrong, capsys):
    assert checks.check_lora_grads(wrong) is False
    out = _verdict(capsys)
    assert "grad_h.T @" not in out and "(grad_h @ B).T" not in out and ".T @ x" not in out


def test_grads_must_return_a_pair(capsys):
    assert checks.check_lora_grads(lambda *args: grads(*args)[0]) is False
    assert "return grad_A, grad_B" in _verdict(capsys)


# ---------------------------------------------------------------- check_merge


def test_merge_accepts_correct_answer(capsys):
    assert checks.check_merge(merge) is True
    assert "✅ my_merge: correct" in _verdict(capsys)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda W0, A, B, a: W0 + B @ A, "you forgot the scaling"),
    (lambda W0, A, B, a: W0 + a * B @ A, "not alpha."),
    (lambda W0, A, B, a: W0 + A.shape[0] / a * B @ A, "upside down"),
    (lambda W0, A, B, a: W0, "W0 came back unchanged"),
    (lambda W0, A, B, a: a / A.shape[0] * B @ A, "only the update ΔW"),
    (lambda W0, A, B, a: W0 - a / A.shape[0] * B @ A, "added, not subtracted"),
    (lambda W0, A, B, a: merge(W0, A, B, a).T, "W0's shape (out, in)"),
])
def test_merge_rejects_typical_mistakes_with_a_hint(wrong, hint, capsys):
    assert checks.check_merge(wrong) is False
    out = _verdict(capsys)
    assert "❌ my_merge: not yet" in out and hint in out


def test_merge_in_place_is_caught(capsys):
    def in_place(W0, A, B, alpha):
        W0 += (alpha / A.shape[0]) * B @ A
        return W0

    assert checks.check_merge(in_place) is False
    out = _verdict(capsys)
    assert "changed its argument W0 in place" in out and "LoRA never modifies" in out


def test_checks_do_not_leak_state_between_calls():
    """The reference cases are rebuilt for every call: a mutating learner cannot poison them."""
    def in_place(W0, A, B, alpha):
        W0 *= 0
        return W0

    checks.check_merge(in_place)
    assert checks.check_merge(merge) is True
    cases = checks.nb02._nb02_cases()
    assert all(np.any(case["W0"]) for case in cases)
