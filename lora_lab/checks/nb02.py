"""Self-checks for notebook 02 (ΔW = B·A by hand)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..numpy_lora import lora_backward, lora_forward, lora_scaling, merge_weights
from ._core import compare, least_precise
from ._core import require_callable as _require_callable
from ._core import verdict as _verdict

__all__ = [
    "check_lora_forward",
    "check_lora_grads",
    "check_merge",
    "check_param_count",
]


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """Run the learner's ``fn``: ``(result, None)``, or ``(None, what went wrong)`` if it raised."""
    try:
        return fn(*args), None
    except Exception as exc:  # the learner's code may raise anything; report it kindly
        return None, f"your function raised {type(exc).__name__}: {exc}"


def _compare(got: Any, expected: Any, what: str, *inputs: Any) -> str | None:
    """Dtype-aware comparison: the tolerance follows the least precise of got and inputs."""
    return compare(got, expected, what, dtype=least_precise(got, *inputs))


# --------------------------------------------------------------------------- notebook 02

_NB02_SHAPES = ("x (N, in) is a batch of rows, W0 (out, in), A (r, in), B (out, r), "
                "and the row form is h = x @ W0.T + (alpha/r) * (x @ A.T) @ B.T with h (N, out)")


def _nb02_error_hint(problem: str) -> str:
    """A hint for an exception raised by the learner's function (``problem`` from ``_call``)."""
    if "NotImplementedError" in problem:
        return ("replace the line `raise NotImplementedError(...)` with your code, run that "
                "cell, then run this check again.")
    if any(word in problem for word in ("mismatch", "shape", "align", "broadcast")):
        return f"a shape does not fit. In this course {_NB02_SHAPES}."
    return "call your function on a small example yourself and read the error from the top."


def _nb02_match(got: Any, mistakes: list[tuple[np.ndarray, str]]) -> str | None:
    """The hint of the first known mistake whose output equals ``got``, else None."""
    for wrong, hint in mistakes:
        if _compare(got, wrong, "") is None:
            return hint
    return None


def _nb02_cases() -> list[dict[str, Any]]:
    """Two small LoRA problems: non-square, B != 0 and alpha/r != 1, so each usual mistake shows.

    Shapes: x (N, in), W0 (out, in), A (r, in), B (out, r); alpha/r is 3 in the first
    case and 0.5 in the second (so alpha, alpha/r and r/alpha all differ).
    """
    cases = []
    for seed, (n, d_in, d_out, r, alpha) in enumerate(((4, 5, 3, 2, 6.0), (3, 7, 4, 3, 1.5))):
        rng = np.random.default_rng(seed)
        cases.append({"x": rng.normal(size=(n, d_in)), "W0": rng.normal(size=(d_out, d_in)),
                      "A": rng.normal(size=(r, d_in)), "B": rng.normal(size=(d_out, r)),
                      "alpha": alpha, "grad_h": rng.normal(size=(n, d_out))})
    return cases


def _nb02_run(fn: Callable[..., Any], case: dict[str, Any],
              names: tuple[str, ...]) -> tuple[Any, str | None, str | None]:
    """Call ``fn`` on copies of ``case[name]``; return ``(result, problem, hint)``.

    Why copies: a function that changes W0 in place must be caught, not silently
    break the reference answer.
    """
    args = [np.copy(case[n]) if isinstance(case[n], np.ndarray) else case[n] for n in names]
    got, error = _call(fn, *args)
    if error is not None:
        return None, error, _nb02_error_hint(error)
    for name, arg in zip(names, args, strict=True):
        if isinstance(arg, np.ndarray) and not np.array_equal(arg, case[name]):
            return None, f"your function changed its argument {name} in place.", (
                "build a new array (e.g. W = W0 + ...) instead of `+=` on an argument: LoRA "
                "never modifies the frozen W0, and A and B must stay as they were.")
    return got, None, None


def _nb02_is_count(value: Any) -> bool:
    """True for an int (or a float with a whole value), but not for bool."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and float(value).is_integer()


def _nb02_count_mistakes(shapes: list[tuple[int, int]], r: int) -> list[tuple[int, str]]:
    """``(wrong total, hint)`` for the usual slips in counting the adapters of ``shapes``."""
    outs, ins = sum(o for o, _ in shapes), sum(i for _, i in shapes)
    not_square = ("B has out × r entries and A has r × in; they differ when a weight is not "
                  "square.")
    return [
        (sum(o * i for o, i in shapes), "that is the size of the full weights W (out × in). "
                                        "LoRA trains only B (out × r) and A (r × in)."),
        (r * sum(o * i for o, i in shapes), "the two factors' sizes add up, they do not "
                                            "multiply: out*r + r*in."),
        (r * outs, "you counted B (out × r) only; A (r × in) is trainable too."),
        (r * ins, "you counted A (r × in) only; B (out × r) is trainable too."),
        (outs + ins, "each factor has r columns (B) or r rows (A): multiply by r."),
        (2 * r * ins, not_square),
        (2 * r * outs, not_square),
        (r * sum(shapes[0]), "you counted the first weight only: add up the adapters of all "
                             "the weights in shapes (is there a `return` inside your loop?)."),
        (r * sum(shapes[-1]), "you counted the last weight only: add each weight's count to a "
                              "running total (`total += ...`, not `total = ...`)."),
    ]


def check_param_count(lora_param_count: Callable[[list[tuple[int, int]], int], int]) -> bool:
    """Check ``lora_param_count(shapes, r)``: trainable numbers of rank-r adapters on weights
    of the given (out_features, in_features) shapes.

    The answer is the sum of ``r * (out + in)`` over the shapes: each B holds out*r numbers,
    each A r*in. Why: counting is how LoRA's saving is measured, and the usual slips
    (counting the full W, one factor, one weight, or assuming square weights) are easy to make.
    """
    _require_callable(lora_param_count)
    title = "lora_param_count"
    cases = (([(6, 10)], 2, "[(6, 10)]"),
             ([(3, 5), (8, 4), (2, 9)], 2, "[(3, 5), (8, 4), (2, 9)]"),
             ([(768, 768)] * 4 + [(3072, 768), (768, 3072)], 8,
              "[(768, 768)] * 4 + [(3072, 768), (768, 3072)]"),
             ([(768, 768)] * 24, 8, "[(768, 768)] * 24"))
    for shapes, r, shown in cases:
        call = f"lora_param_count({shown}, {r})"
        got, error = _call(lora_param_count, list(shapes), r)
        if error is not None:
            return _verdict(title, f"{call}: {error}", _nb02_error_hint(error))
        if isinstance(got, (list, tuple, np.ndarray)):
            return _verdict(title, f"{call} returned a {type(got).__name__}, not one number.",
                            "add up the counts of all the weights into one total.")
        if not _nb02_is_count(got):
            return _verdict(title, f"{call} returned {type(got).__name__}, not a whole number.",
                            "return a plain int such as 32.")
        expected = sum(r * (o + i) for o, i in shapes)
        if int(got) == expected:
            continue
        hint = next((h for wrong, h in _nb02_count_mistakes(shapes, r)
                     if wrong == int(got) and wrong != expected),
                    "write down the shapes of each B and A, then add up their entries.")
        return _verdict(title, f"{call} returned {got}, expected {expected}.", hint)
    return _verdict(title, None)


def check_lora_forward(my_lora_forward: Callable[..., np.ndarray]) -> bool:
    """Check ``my_lora_forward(x, W0, A, B, alpha)`` -> ``h`` (N, out) in the row convention.

    Compared with :func:`lora_lab.numpy_lora.lora_forward` on two non-square cases.
    Why: the forward pass is the whole of LoRA at inference; scaling and transposes
    are where it usually goes wrong.
    """
    _require_callable(my_lora_forward)
    title = "my_lora_forward"
    names = ("x", "W0", "A", "B", "alpha")
    for case in _nb02_cases():
        got, problem, hint = _nb02_run(my_lora_forward, case, names)
        if problem is not None:
            return _verdict(title, problem, hint)
        x, W0, A, B, alpha = (case[n] for n in names)
        expected = lora_forward(x, W0, A, B, alpha)
        problem = _compare(got, expected, "h")
        if problem is None:
            continue
        s, r = lora_scaling(alpha, A.shape[0]), A.shape[0]
        base, branch = x @ W0.T, (x @ A.T) @ B.T
        hint = _nb02_match(got, [
            (base + branch, "you forgot the scaling: the branch is multiplied by alpha/r."),
            (base + alpha * branch, "the scaling is alpha/r, not alpha."),
            (base + (r / alpha) * branch, "the scaling is upside down: use alpha/r."),
            (base, "only the frozen part W0 x came back: add the LoRA branch (alpha/r) B A x."),
            (s * branch, "the frozen part is missing: h = W0 x + (alpha/r) B A x."),
            (expected.T, "you returned the column form (out, N); here h has one row per "
                         "input: (N, out)."),
        ]) or f"in this course {_NB02_SHAPES}."
        return _verdict(title, problem, hint)
    return _verdict(title, None)


_NB02_GRAD_HINTS = {
    "grad_A": ("grad_A is the sum over the examples of s B^T g x^T (§3). Go through the "
               "bottleneck: first the gradient of u = x @ A.T, shape (N, r), then one product "
               "with x. Write the shape next to each line."),
    "grad_B": ("grad_B is the sum over the examples of s g u^T with u = x @ A.T (§3): one "
               "matrix product of grad_h and u. Write the shape next to each line."),
}


def check_lora_grads(my_lora_grads: Callable[..., tuple[np.ndarray, np.ndarray]]) -> bool:
    """Check ``my_lora_grads(x, W0, A, B, alpha, grad_h)`` -> ``(grad_A, grad_B)``.

    ``grad_h`` (N, out) is dL/dh; the answers have the shapes of A (r, in) and B (out, r)
    and are compared with :func:`lora_lab.numpy_lora.lora_backward`. Why: the hand
    derivation is easy to get almost right; the hint names the usual slip.
    """
    _require_callable(my_lora_grads)
    title = "my_lora_grads"
    names = ("x", "W0", "A", "B", "alpha", "grad_h")
    for case in _nb02_cases():
        got, problem, hint = _nb02_run(my_lora_grads, case, names)
        if problem is not None:
            return _verdict(title, problem, hint)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return _verdict(title, f"expected a pair (grad_A, grad_B), got {type(got).__name__}.",
                            "end your function with `return grad_A, grad_B`.")
        ref = lora_backward(*(case[n] for n in names))
        s = lora_scaling(case["alpha"], case["A"].shape[0])
        n = case["x"].shape[0]
        if _compare(got[0], ref.B, "") is None and _compare(got[1], ref.A, "") is None:
            return _verdict(title, "the two gradients came back in swapped order.",
                            "return grad_A first, then grad_B.")
        for i, (name, expected) in enumerate((("grad_A", ref.A), ("grad_B", ref.B))):
            problem = _compare(got[i], expected, name)
            if problem is None:
                continue
            hint = _nb02_match(got[i], [
                (expected / s, "the scaling s = alpha/r is missing: h = W0 x + s B A x, so "
                               "s multiplies both gradients."),
                (expected.T, "a gradient has the shape of its parameter: dL/dA is (r, in) "
                             "like A, dL/dB is (out, r) like B."),
                (expected / n, "sum over the examples, do not average: grad_h already "
                               "holds the loss's 1/(N·out)."),
            ]) or _NB02_GRAD_HINTS[name]
            return _verdict(title, problem, hint)
    return _verdict(title, None)


def check_merge(my_merge: Callable[..., np.ndarray]) -> bool:
    """Check ``my_merge(W0, A, B, alpha)`` -> ``W' = W0 + (alpha/r) B @ A`` (out, in).

    Compared with :func:`lora_lab.numpy_lora.merge_weights`; W0 must not change in
    place. Why: a merge that is slightly off silently changes the deployed model.
    """
    _require_callable(my_merge)
    title = "my_merge"
    names = ("W0", "A", "B", "alpha")
    for case in _nb02_cases():
        got, problem, hint = _nb02_run(my_merge, case, names)
        if problem is not None:
            return _verdict(title, problem, hint)
        W0, A, B, alpha = (case[n] for n in names)
        expected = merge_weights(W0, A, B, alpha)
        problem = _compare(got, expected, "W'")
        if problem is None:
            continue
        s, r = lora_scaling(alpha, A.shape[0]), A.shape[0]
        hint = _nb02_match(got, [
            (W0 + B @ A, "you forgot the scaling: W' = W0 + (alpha/r) B @ A."),
            (W0 + alpha * (B @ A), "the scaling is alpha/r, not alpha."),
            (W0 + (r / alpha) * (B @ A), "the scaling is upside down: use alpha/r."),
            (W0, "W0 came back unchanged: add the update (alpha/r) B @ A."),
            (s * (B @ A), "that is only the update ΔW; the merged weight is W0 + ΔW."),
            (W0 - s * (B @ A), "the update is added, not subtracted."),
            (expected.T, "W' must have W0's shape (out, in)."),
        ]) or "W' = W0 + (alpha/r) * B @ A, with B (out, r) and A (r, in)."
        return _verdict(title, problem, hint)
    return _verdict(title, None)
