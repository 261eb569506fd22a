"""Self-checks for the exercises: ``check_*(learner_function)`` prints a friendly verdict.

Each checker calls the learner's function on a few cases, compares it with the
verified ``lora_lab`` implementation, and prints either a pass or the first
problem found with a hint aimed at the usual mistake. It returns ``True`` or
``False`` so tests (and curious learners) can use the verdict too.

Why: an exercise without feedback is a guess; a hint that names the usual
mistake turns a wrong answer into the next thing learned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .lowrank import (
    break_even_rank,
    energy_captured,
    low_rank_approx,
    singular_values,
    truncation_error,
)
from .numpy_lora import lora_backward, lora_forward, lora_scaling, merge_weights

PASS = "✅"
FAIL = "❌"


def _call(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None]:
    """Run the learner's ``fn``: ``(result, None)``, or ``(None, what went wrong)`` if it raised."""
    try:
        return fn(*args), None
    except Exception as exc:  # the learner's code may raise anything; report it kindly
        return None, f"your function raised {type(exc).__name__}: {exc}"


def _verdict(title: str, problem: str | None, hint: str | None = None) -> bool:
    """Print the verdict for exercise ``title``; ``problem`` is None when all cases passed."""
    if problem is None:
        print(f"{PASS} {title}: correct. Well done!")
        return True
    print(f"{FAIL} {title}: not yet. {problem}")
    if hint:
        print(f"   Hint: {hint}")
    return False


def _require_callable(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"pass your function itself (without calling it), got {type(fn).__name__}")


def _compare(got: Any, expected: np.ndarray, what: str, atol: float = 1e-8) -> str | None:
    """Return a description of how ``got`` differs from ``expected``, or None if they agree."""
    try:
        got_arr = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return f"{what}: expected an array, got {type(got).__name__}"
    expected = np.asarray(expected, dtype=float)
    if got_arr.shape != expected.shape:
        return f"{what}: expected shape {expected.shape}, got {got_arr.shape}"
    if not np.allclose(got_arr, expected, atol=atol, rtol=1e-6):
        worst = float(np.max(np.abs(got_arr - expected)))
        return f"{what}: values differ from the reference (largest difference {worst:.3g})"
    return None


# --------------------------------------------------------------------------- notebook 01

def _nb01_run(fn: Callable[..., Any], *args: Any) -> tuple[Any, str | None, str | None]:
    """Call ``fn`` on copies of ``args``; return ``(result, problem, hint)``.

    Why copies: a function that edits its input in place must not change the
    reference answer it is compared with.
    """
    copies = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
    got, error = _call(fn, *copies)
    if error is not None:
        if "NotImplementedError" in error:
            return None, error, ("replace the line `raise NotImplementedError(...)` with your "
                                 "code, run that cell, then run this check again.")
        return None, error, "call your function on a small example and read the error message."
    if got is None:
        return None, "your function returned None.", "did you forget the `return` line?"
    return got, None, None


def _nb01_number(got: Any) -> float | None:
    """``got`` as a float if it is a single real number (0-d arrays too), else None."""
    if isinstance(got, (bool, np.bool_)):
        return None
    try:
        value = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return None
    return float(value) if value.shape == () else None


def _nb01_match(got: Any, mistakes: list[tuple[Any, str]], expected: Any) -> str | None:
    """The hint of the first known mistake equal to ``got`` (and not to ``expected``)."""
    for wrong, hint in mistakes:
        if _compare(wrong, expected, "") is not None and _compare(got, wrong, "") is None:
            return hint
    return None


def _nb01_matrices() -> list[np.ndarray]:
    """Three small test matrices: tall, wide and square (seeded, distinct singular values)."""
    rng = np.random.default_rng(1)
    return [rng.normal(size=(7, 5)), rng.normal(size=(4, 9)), rng.normal(size=(5, 5))]


def check_low_rank_approx(my_low_rank_approx: Callable[[np.ndarray, int], np.ndarray]) -> bool:
    """Check ``my_low_rank_approx(M, k)`` -> best rank-k approximation of M, shape (m, n).

    Compared with :func:`lora_lab.lowrank.low_rank_approx` on a tall, a wide and a
    square matrix (the last at full rank). Why: the truncated SVD is the yardstick
    for every low-rank update in this course, so it has to be exactly right.
    """
    _require_callable(my_low_rank_approx)
    title = "my_low_rank_approx"
    for M, k in zip(_nb01_matrices(), (2, 1, 5), strict=True):
        got, problem, hint = _nb01_run(my_low_rank_approx, M, k)
        if problem is not None:
            return _verdict(title, problem, hint)
        expected = low_rank_approx(M, k)
        problem = _compare(got, expected, f"for M of shape {M.shape} and k={k}")
        if problem is None:
            continue
        U, S, Vt = np.linalg.svd(M, full_matrices=False)
        p = S.size
        mistakes = [
            (U[:, :k] @ Vt[:k], "the singular values are missing: each piece is "
                                "S[i] * outer(U[:, i], Vt[i]), so scale by S."),
            ((U[:, p - k:] * S[p - k:]) @ Vt[p - k:],
             "np.linalg.svd sorts the singular values largest first, so the strongest "
             "pieces are the first k (indices 0 .. k-1), not the last k."),
            (M, "you returned M itself; keep only the first k rank-1 pieces of its SVD."),
        ]
        if k < p:
            mistakes.append(((U[:, :k + 1] * S[:k + 1]) @ Vt[:k + 1],
                             "you kept k + 1 pieces. Python's range(k) and the slice [:k] "
                             "already give exactly k of them (0 .. k-1)."))
        if k > 1:
            mistakes.append(((U[:, :k - 1] * S[:k - 1]) @ Vt[:k - 1],
                             "you kept k - 1 pieces: the loop or slice stops one too early."))
        hint = _nb01_match(got, mistakes, expected) or (
            "the best rank-k approximation is the sum of the first k pieces "
            "S[i] * np.outer(U[:, i], Vt[i]) from U, S, Vt = np.linalg.svd(M).")
        return _verdict(title, problem, hint)
    return _verdict(title, None)


def check_energy_kept(my_energy_kept: Callable[[np.ndarray, int], float]) -> bool:
    """Check ``my_energy_kept(s, k)`` -> fraction of energy kept by the top k singular values.

    ``s`` (p,) is sorted largest first; the answer is ``sum(s[:k]**2) / sum(s**2)``,
    a number in [0, 1], compared with :func:`lora_lab.lowrank.energy_captured`.
    Why: "how much of the matrix survives rank k?" is the question every rank
    choice in this course asks.
    """
    _require_callable(my_energy_kept)
    title = "my_energy_kept"
    cases = ((np.array([4.0, 3.0, 2.0, 1.0]), 1), (np.array([10.0, 2.0, 1.0, 0.5, 0.5]), 2),
             (np.array([3.0, 2.0, 2.0]), 3))
    for s, k in cases:
        call = f"my_energy_kept(s={s.tolist()}, k={k})"
        got, problem, hint = _nb01_run(my_energy_kept, s, k)
        if problem is not None:
            return _verdict(title, f"{call}: {problem}", hint)
        value = _nb01_number(got)
        expected = energy_captured(s, k)
        if value is None:
            return _verdict(title, f"{call} returned {type(got).__name__}, not one number.",
                            "return a single float, e.g. float(...).")
        if np.isclose(value, expected, rtol=1e-9, atol=1e-12):
            continue
        total = np.sum(s**2)
        mistakes = [
            (np.sum(s[:k]) / np.sum(s), "energy adds up *squared* singular values: "
                                         "sum(s[:k]**2) / sum(s**2)."),
            (np.sum(s[:k] ** 2), "divide by the total energy sum(s**2) to get a fraction."),
            (100 * expected, "return a fraction between 0 and 1, not a percentage."),
            (np.sqrt(expected), "no square root here: energy is a ratio of sums of squares."),
            (1 - expected, "that is the energy thrown away; we want the energy kept."),
            (np.sum(s[:k + 1] ** 2) / total if k < s.size else expected,
             "you kept k + 1 values: s[:k] already holds the first k."),
        ]
        hint = _nb01_match(value, mistakes, expected) or (
            "square the singular values, add up the first k, divide by the sum of all.")
        return _verdict(title, f"{call} returned {value:.4g}, expected {expected:.4g}.", hint)
    return _verdict(title, None)


def check_relative_error(my_relative_error: Callable[[np.ndarray, int], float]) -> bool:
    """Check ``my_relative_error(M, k)`` -> ``||M - M_k||_F / ||M||_F`` for the best rank-k M_k.

    Compared with :func:`lora_lab.lowrank.truncation_error` divided by the norm of M,
    on a tall, a wide and a square matrix. Either route counts: build M_k and
    measure, or use Eckart-Young's formula from the singular values. Why: a relative
    error is comparable across matrices of any size and scale.
    """
    _require_callable(my_relative_error)
    title = "my_relative_error"
    for M, k in zip(_nb01_matrices(), (2, 1, 5), strict=True):
        call = f"my_relative_error(M of shape {M.shape}, k={k})"
        got, problem, hint = _nb01_run(my_relative_error, M, k)
        if problem is not None:
            return _verdict(title, f"{call}: {problem}", hint)
        value = _nb01_number(got)
        if value is None:
            return _verdict(title, f"{call} returned {type(got).__name__}, not one number.",
                            "return a single float, e.g. float(np.linalg.norm(...) / ...).")
        s = singular_values(M)
        norm = float(np.sqrt(np.sum(s**2)))
        expected = truncation_error(s, k) / norm
        if np.isclose(value, expected, rtol=1e-7, atol=1e-9):
            continue
        tail = s[k:]
        mistakes = [
            (expected * norm, "divide by ||M||_F: the error should be relative to the size of M."),
            (expected**2, "take the square root: the Frobenius norm is the square root of the "
                          "sum of squares."),
            ((tail[0] if tail.size else 0.0) / norm,
             "that is only the largest thrown-away singular value (the spectral-norm error); "
             "the Frobenius error adds up all of them: sqrt(s[k]**2 + s[k+1]**2 + ...)."),
            (np.sum(tail) / np.sum(s), "square the singular values before adding them up."),
            (float(np.sqrt(np.sum(s[k + 1:] ** 2))) / norm,
             "you skipped one: the thrown-away values start at index k (s[k:]), because "
             "s[0] .. s[k-1] are the k kept."),
            (float(np.sqrt(np.sum(s[max(k - 1, 0):] ** 2))) / norm,
             "you threw away one too many: s[:k] are kept, so the tail is s[k:]."),
        ]
        hint = _nb01_match(value, mistakes, expected) or (
            "build M_k, then return np.linalg.norm(M - M_k) / np.linalg.norm(M).")
        return _verdict(title, f"{call} returned {value:.4g}, expected {expected:.4g}.", hint)
    return _verdict(title, None)


def check_break_even(my_largest_saving_rank: Callable[[int, int], int]) -> bool:
    """Check ``my_largest_saving_rank(m, n)`` -> largest rank k whose factors save storage.

    Factors of rank k store ``k (m + n)`` numbers, the full matrix ``m n``; the answer
    is the largest whole k with ``k (m + n) < m n`` (strictly: equal cost saves
    nothing), i.e. the largest integer below :func:`lora_lab.lowrank.break_even_rank`.
    Why: it is the rank above which "low rank" stops paying for itself.
    """
    _require_callable(my_largest_saving_rank)
    title = "my_largest_saving_rank"
    for m, n in ((600, 512), (4, 4), (5, 7), (768, 3072), (4096, 4096), (3, 6)):
        call = f"my_largest_saving_rank({m}, {n})"
        got, problem, hint = _nb01_run(my_largest_saving_rank, m, n)
        if problem is not None:
            return _verdict(title, f"{call}: {problem}", hint)
        even = break_even_rank(m, n)
        expected = int(np.ceil(even)) - 1
        value = _nb01_number(got)
        if value is None or not value.is_integer():
            shown = f"{value:.4g}" if value is not None else type(got).__name__
            return _verdict(title, f"{call} returned {shown}, not a whole number.",
                            "a rank is a whole number: the largest integer k with "
                            "k * (m + n) < m * n.")
        if int(value) == expected:
            continue
        mistakes = [
            (np.floor(even), "at exactly k = m n / (m + n) the factors cost as much as the "
                             "matrix, which saves nothing: you need k (m + n) < m n, strictly."),
            (np.round(even), "rounding can land on or above the break-even point; take the "
                             "largest whole k that is strictly below it."),
            (np.ceil(even), "that rank costs at least as much as the full matrix; go one lower."),
            (min(m, n) // 2, "min(m, n) / 2 is the break-even only for square matrices; use "
                             "m n / (m + n)."),
            (min(m, n), "that is the largest possible rank, not the largest one that saves "
                        "storage."),
        ]
        hint = _nb01_match(value, mistakes, float(expected)) or (
            "factors of rank k store k * (m + n) numbers and the matrix m * n: find the "
            "largest k with k * (m + n) < m * n.")
        return _verdict(title, f"{call} returned {int(value)}, expected {expected}.", hint)
    return _verdict(title, None)


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
