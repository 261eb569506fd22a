"""A causal language model on the course's character texts: windows, loss, generation.

Five small functions around a ``transformers`` causal LM (``LlamaForCausalLM`` in
notebook 06), with no transformer code of our own: the forward pass, the loss and
``generate`` are the library's.

- :func:`char_windows`: a text as a batch of character windows, consecutive (for
  evaluation) or at seeded random offsets (for training).
- :func:`next_char_loss`: the training loss, cross-entropy of each position's
  logits against the next character (the ``loss_fn`` :func:`lora_lab.train.train`
  calls with the model's output).
- :func:`text_loss`: the mean loss in nats per character of a model on windows,
  as ``transformers`` computes it (``model(input_ids=w, labels=w).loss``).
- :func:`generate_text`: a continuation of a prompt with ``model.generate``, greedy
  or sampled from a seeded generator.
- :func:`finetune`: a copy of a model fine-tuned on windows, with LoRA or fully, by
  :func:`lora_lab.train.train`.

Every function that runs a model checks first that the characters fit it: ids in
0..vocab_size - 1 and no sequence longer than the model's context
(``config.max_position_embeddings``); beyond it a model trained on shorter windows
computes numbers, but not meaningful ones, so that is a ``ValueError``, not a log line.

Why: fine-tuning a language model is "lower the next-character loss on the new
text"; these five functions are all the plumbing that idea needs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ._validate import check_int, check_real
from .adapters import apply_lora
from .data import decode, encode, split_point
from .train import History, train

TARGET_VARIANTS: dict[str, dict[str, Any]] = {
    "q,v": {"target_modules": ["q_proj", "v_proj"], "r": 4, "lr": 0.02},
    "q,v r=38": {"target_modules": ["q_proj", "v_proj"], "r": 38, "lr": 0.01},
    "all-linear": {"target_modules": "all-linear", "r": 8, "lr": 0.01},
    "full": {"target_modules": None, "lr": 0.0025},
}
"""Notebook 06's ways to fine-tune the tiny Llama (keyword arguments of :func:`finetune`):
LoRA on ``q_proj`` and ``v_proj`` at r = 4 (PEFT's default targets), the same at r = 38 (43,776
trainable numbers, exactly as many as all-linear at r = 8: the control for the parameter
count), LoRA on every Linear layer but ``lm_head`` at r = 8, and full fine-tuning. Each
learning rate is the one of its grid (:data:`LR_FACTORS` times it) with the lowest mean
*tuning* loss over seeds 0 and 1 in :data:`LR_SWEEP` -- measured on the held-back end of the
training text (:func:`fit_and_tuning_text`), never on the validation text the notebook reports;
``tests/test_language_model.py`` reruns the sweep."""

LR_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
"""The learning-rate grid of :data:`LR_SWEEP`: each variant's rate times these factors."""


class SweepResult(NamedTuple):
    """Held-out losses (nats per character) of one run of :func:`lr_sweep`."""

    tuning: float
    """On the tuning text: the held-back end of the training text (chooses the rate)."""
    code: float
    """On the validation text of the new task (reported, never used to choose)."""
    shakespeare: float
    """On the validation text of the original task (forgetting; reported only)."""


def _as_ids(text: Any, name: str = "text") -> torch.Tensor:
    """``text`` (a str, or a 1-D integer tensor of character ids) as int64 ids (n,)."""
    if isinstance(text, str):
        return encode(text)
    if (not isinstance(text, torch.Tensor) or text.dtype.is_floating_point
            or text.dtype.is_complex or text.dtype == torch.bool):
        raise TypeError(f"{name} must be a str or a 1-D integer tensor of character ids, got "
                        f"{getattr(text, 'dtype', type(text).__name__)}")
    if text.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(text.shape)}")
    return text.long()


def char_windows(text: str | torch.Tensor, length: int, count: int | None = None, *,
                 seed: int | None = None) -> torch.Tensor:
    """``count`` windows of ``length`` consecutive characters of ``text``: int64 (count, length).

    ``text`` is a str (encoded with :func:`lora_lab.data.encode`) or 1-D int ids.
    With ``seed=None`` (evaluation windows) the text is cut into consecutive,
    non-overlapping windows from its start, and ``count`` of them are taken, evenly
    spaced over the whole text (window ``i * (n - 1) // (count - 1)`` of the ``n``;
    ``count=None``: all of them), so that a sample covers every part of the text.
    With a seed ``>= 0`` (training windows) each window starts at an offset drawn
    uniformly from a generator seeded with it (windows may overlap; ``count`` is
    required). Either way ``w[:, :-1]`` is an input and ``w[:, 1:]`` the next
    character of each position. Raises ``ValueError`` if ``length`` is < 2 or
    longer than the text, or if more non-overlapping windows are asked for than fit.
    """
    ids = _as_ids(text)
    length = check_int(length, "length", minimum=2)
    if len(ids) < length:
        raise ValueError(f"text has {len(ids)} characters, fewer than length={length}")
    available = len(ids) // length
    if seed is None:
        every = ids[: available * length].view(available, length)
        if count is None:
            return every.clone()
        count = check_int(count, "count", minimum=1, maximum=available)
        return every[torch.arange(count) * (available - 1) // max(count - 1, 1)]  # exact ints
    seed = check_int(seed, "seed", minimum=0)
    if count is None:
        raise TypeError("count is required with a seed (random windows): pass count=...")
    count = check_int(count, "count", minimum=1)
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - length + 1, (count,), generator=generator)
    return ids[starts[:, None] + torch.arange(length)]


def _logits_of(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", output)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        raise TypeError("output must be a model output with .logits (N, L, vocab) or such a "
                        f"tensor, got {type(output).__name__} "
                        f"{tuple(getattr(logits, 'shape', ()))}")
    return logits


def next_char_loss(output: Any, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats per character) of ``output``'s logits against ``targets``.

    ``output``: a ``transformers`` model output with ``.logits`` (N, L, vocab), or the
    logits themselves; ``targets``: int64 (N, L), the character that follows each
    position. Returns a scalar tensor (differentiable). Use it as ``loss_fn`` of
    :func:`lora_lab.train.train` with inputs ``w[:, :-1]`` and labels ``w[:, 1:]``.
    """
    logits = _logits_of(output)
    if not isinstance(targets, torch.Tensor) or targets.dtype != torch.int64:
        raise TypeError(f"targets must be an int64 tensor (N, L), got "
                        f"{getattr(targets, 'dtype', type(targets).__name__)}")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets must have shape {tuple(logits.shape[:2])} (the logits' "
                         f"first two dimensions), got {tuple(targets.shape)}")
    vocab = logits.shape[-1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= vocab):
        raise ValueError(f"targets must hold character ids in 0..{vocab - 1} (one per logit), "
                         f"got values from {int(targets.min())} to {int(targets.max())}")
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module) or not callable(getattr(model, "generate", None)):
        raise TypeError("model must be a transformers causal language model (an nn.Module "
                        f"with .generate), got {type(model).__name__}")
    return model


def _check_windows(windows: Any, name: str = "windows") -> torch.Tensor:
    """``windows`` if it is an int64 tensor (N >= 1, L >= 2), else TypeError/ValueError."""
    if not isinstance(windows, torch.Tensor) or windows.dtype != torch.int64:
        raise TypeError(f"{name} must be an int64 tensor (N, L) of character ids, got "
                        f"{getattr(windows, 'dtype', type(windows).__name__)}")
    if windows.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N windows, L characters), got shape "
                         f"{tuple(windows.shape)}; one window w is w[None]")
    if windows.shape[0] < 1 or windows.shape[1] < 2:
        raise ValueError(f"{name} must hold N >= 1 windows of L >= 2 characters, got shape "
                         f"{tuple(windows.shape)}")
    return windows


def _vocab_size(model: nn.Module) -> int | None:
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    size = getattr(embeddings, "num_embeddings", None)
    return size if size is not None else getattr(getattr(model, "config", None), "vocab_size",
                                                 None)


def _context(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def _check_ids(model: nn.Module, ids: torch.Tensor, name: str) -> None:
    """ValueError unless every id of ``ids`` is in 0..vocab_size - 1 of ``model``."""
    size = _vocab_size(model)
    if size is not None and ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
        raise ValueError(f"{name} must hold character ids in 0..{size - 1} (the model's "
                         f"vocabulary), got values from {int(ids.min())} to {int(ids.max())}")


def _check_length(model: nn.Module, length: int, what: str) -> None:
    """ValueError if ``length`` characters exceed the model's context."""
    context = _context(model)
    if context is not None and length > context:
        raise ValueError(f"{what} must be at most the model's context of {context} characters "
                         f"(config.max_position_embeddings), got {length}")


@torch.no_grad()
def text_loss(model: nn.Module, windows: torch.Tensor, batch_size: int = 64) -> float:
    """Mean loss of ``model`` on ``windows`` (N, L), in nats per predicted character.

    Each window predicts its characters 2..L from the ones before them (L - 1
    predictions), with ``transformers``' own loss: ``model(input_ids=w, labels=w).loss``.
    Runs in eval mode (no dropout) under ``torch.no_grad``, ``batch_size`` windows at
    a time, and leaves the model in the mode it was in. Lower is better; ln(96) = 4.56
    is a uniform guess over the course's 96 characters. Raises ``TypeError`` for a
    windows tensor that is not int64, ``ValueError`` for one that is not 2-D, holds ids
    outside the model's vocabulary or windows longer than its context
    (``config.max_position_embeddings``).
    """
    model = _check_model(model)
    windows = _check_windows(windows)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    _check_ids(model, windows, "windows")
    _check_length(model, windows.shape[1], "the windows' length L")
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for rows in windows.split(batch_size):
            total += float(model(input_ids=rows, labels=rows).loss) * len(rows)
    finally:
        model.train(was_training)
    return total / len(windows)


@torch.no_grad()
def generate_text(model: nn.Module, prompt: str, n_chars: int, *, seed: int | None = None,
                  temperature: float | None = None) -> str:
    """``prompt`` followed by ``n_chars`` characters that ``model.generate`` writes.

    ``seed=None``: greedy (the most likely character each time; a ``temperature`` is
    then a ``ValueError``, since greedy decoding has none). A seed ``>= 0``: sampled
    from the model's distribution divided by ``temperature`` (> 0, default 1; below 1
    sharpens it), with torch's global generator seeded inside ``fork_rng``, so
    the caller's random numbers are left as they were. Eval mode during the call.
    ``len(prompt) + n_chars`` must fit the model's context
    (``config.max_position_embeddings``), else ``ValueError``.
    Generated text is sensitive to rounding: a near-tie between two characters can
    go either way on another CPU; sample from a float64 copy of the model
    (``copy.deepcopy(model).double()``) when the text must be reproducible.
    """
    model = _check_model(model)
    if not isinstance(prompt, str) or not prompt:
        raise TypeError(f"prompt must be a non-empty str, got {prompt!r}")
    n_chars = check_int(n_chars, "n_chars", minimum=1)
    if seed is None and temperature is not None:
        raise ValueError(f"temperature={temperature!r} needs sampling: pass seed=... (an int "
                         ">= 0) to sample, or leave temperature out for greedy decoding")
    if seed is not None:
        seed = check_int(seed, "seed", minimum=0)
    temperature = check_real(1.0 if temperature is None else temperature, "temperature",
                             positive=True)
    sampling = {"do_sample": False} if seed is None else {
        "do_sample": True, "temperature": temperature, "top_k": None, "top_p": None}
    ids = encode(prompt)[None]
    _check_ids(model, ids, "prompt")
    _check_length(model, ids.shape[1] + n_chars, "len(prompt) + n_chars")
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=n_chars, min_new_tokens=n_chars, **sampling)
    finally:
        model.train(was_training)
    return decode(out[0])


def finetune(base: nn.Module, windows: torch.Tensor, *, lr: float,
             target_modules: str | Sequence[str] | None = None, r: int | None = None,
             seed: int = 0, batch_size: int = 8, epochs: int = 1) -> tuple[nn.Module, History]:
    """A copy of ``base`` fine-tuned on ``windows``; ``base`` itself is left untouched.

    ``target_modules=None``: full fine-tuning (every parameter trains; giving ``r`` then
    is a ``ValueError``, since there is no adapter). Otherwise LoRA:
    ``apply_lora(copy, target_modules, r=r, alpha=2 * r)`` (``r`` default 8) right after
    ``torch.manual_seed(seed)`` (so the seed fixes the random A), then only the adapters
    train. Training: :func:`lora_lab.train.train` on inputs ``windows[:, :-1]`` and
    labels ``windows[:, 1:]`` (int64 (N, L + 1) windows, e.g. from :func:`char_windows`;
    ids in the model's vocabulary, L at most its context) with :func:`next_char_loss`,
    Adam at ``lr`` falling linearly, ``batch_size`` windows a step in an order drawn
    from ``seed``, ``epochs`` passes, no progress bar. Everything runs inside
    ``torch.random.fork_rng``: the caller's random numbers are left as they were.
    Returns ``(model in eval mode, History)``. Errors as ``apply_lora`` and ``train``.
    """
    if not isinstance(base, nn.Module):
        raise TypeError(f"base must be a torch.nn.Module, got {type(base).__name__}")
    windows = _check_windows(windows)
    seed = check_int(seed, "seed", minimum=0)
    if target_modules is None and r is not None:
        raise ValueError(f"r={r!r} applies to LoRA only: with target_modules=None (full "
                         "fine-tuning) there is no adapter; leave r out")
    r = check_int(8 if r is None else r, "r", minimum=1)
    _check_ids(base, windows, "windows")
    _check_length(base, windows.shape[1] - 1, "the windows' length L - 1 (the inputs)")
    model = copy.deepcopy(base)
    with torch.random.fork_rng(devices=[]):
        if target_modules is not None:
            torch.manual_seed(seed)
            apply_lora(model, target_modules, r=r, alpha=2 * r)
        history = train(model, windows[:, :-1], windows[:, 1:], lr=lr, epochs=epochs,
                        batch_size=batch_size, seed=seed, loss_fn=next_char_loss,
                        progress=False)
    return model.eval(), history


def fit_and_tuning_text(text: str) -> tuple[str, str]:
    """``(fit, tuning)``: a training text split by position, the first 90 % and the rest.

    Train on ``fit``; choose settings (a learning rate) on ``tuning``; report on the
    validation text, which neither touches. The cut is :func:`lora_lab.data.split_point`,
    the same 90 % rule that separates training and validation text. Raises ``TypeError``
    for a non-str, ``ValueError`` for a text shorter than 2 characters.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    cut = split_point(len(text))
    return text[:cut], text[cut:]


def lr_sweep(base: nn.Module, windows: torch.Tensor, tuning: torch.Tensor, code: torch.Tensor,
             shakespeare: torch.Tensor, *, variants: dict[str, dict[str, Any]] | None = None,
             factors: Sequence[float] = LR_FACTORS,
             seeds: Sequence[int] = (0, 1)) -> dict[tuple[str, float, int], SweepResult]:
    """``{(variant, lr, seed): SweepResult}``: :func:`finetune` at every rate of the grid.

    For each variant of ``variants`` (default :data:`TARGET_VARIANTS`), each rate
    ``variant["lr"] * factor`` and each seed: fine-tune ``base`` on ``windows`` and measure
    :func:`text_loss` on the three sets of evaluation windows. Minutes on a CPU:
    ``len(variants) * len(factors) * len(seeds)`` runs. Errors as :func:`finetune`.
    """
    variants = TARGET_VARIANTS if variants is None else variants
    results = {}
    for name, settings in variants.items():
        for factor in factors:
            lr = settings["lr"] * factor
            for seed in seeds:
                model, _ = finetune(base, windows, seed=seed, **settings | {"lr": lr})
                results[name, lr, seed] = SweepResult(
                    *(text_loss(model, w) for w in (tuning, code, shakespeare)))
    return results


def best_lr(sweep: dict[tuple[str, float, int], SweepResult], variant: str) -> float:
    """The learning rate of ``variant`` with the lowest mean tuning loss over the seeds.

    ``sweep`` as :func:`lr_sweep` returns it (e.g. :data:`LR_SWEEP`). Only the tuning
    loss decides. Raises ``ValueError`` if ``variant`` is not in ``sweep``.
    """
    tuning: dict[float, list[float]] = {}
    for (name, lr, _), result in sweep.items():
        if name == variant:
            tuning.setdefault(lr, []).append(result.tuning)
    if not tuning:
        raise ValueError(f"variant {variant!r} is not in the sweep, which has "
                         f"{sorted({name for name, _, _ in sweep})}")
    return min(tuning, key=lambda lr: sum(tuning[lr]) / len(tuning[lr]))


LR_SWEEP: dict[tuple[str, float, int], SweepResult] = {
    ('q,v', 0.005, 0): SweepResult(3.0357, 2.8624, 3.2654),
    ('q,v', 0.005, 1): SweepResult(3.1045, 2.8879, 3.2091),
    ('q,v', 0.01, 0): SweepResult(2.9284, 2.7424, 3.2334),
    ('q,v', 0.01, 1): SweepResult(2.9191, 2.7039, 2.9717),
    ('q,v', 0.02, 0): SweepResult(2.9538, 2.7410, 3.4282),
    ('q,v', 0.02, 1): SweepResult(2.8661, 2.6559, 3.2499),
    ('q,v', 0.04, 0): SweepResult(3.0003, 2.7549, 3.7257),
    ('q,v', 0.04, 1): SweepResult(3.0059, 2.8143, 3.4584),
    ('q,v', 0.08, 0): SweepResult(3.3095, 3.1108, 3.8376),
    ('q,v', 0.08, 1): SweepResult(3.2757, 3.0920, 3.8138),
    ('q,v r=38', 0.0025, 0): SweepResult(2.7773, 2.6281, 2.7914),
    ('q,v r=38', 0.0025, 1): SweepResult(2.9038, 2.6913, 3.0544),
    ('q,v r=38', 0.005, 0): SweepResult(2.8103, 2.5966, 3.1100),
    ('q,v r=38', 0.005, 1): SweepResult(2.8746, 2.6539, 3.1659),
    ('q,v r=38', 0.01, 0): SweepResult(2.7985, 2.5518, 3.2887),
    ('q,v r=38', 0.01, 1): SweepResult(2.8341, 2.5888, 3.2176),
    ('q,v r=38', 0.02, 0): SweepResult(3.0345, 2.8241, 3.6368),
    ('q,v r=38', 0.02, 1): SweepResult(3.1724, 2.9504, 3.7500),
    ('q,v r=38', 0.04, 0): SweepResult(3.1285, 2.9136, 3.7639),
    ('q,v r=38', 0.04, 1): SweepResult(3.2673, 3.0959, 3.7242),
    ('all-linear', 0.0025, 0): SweepResult(2.5988, 2.4835, 2.2115),
    ('all-linear', 0.0025, 1): SweepResult(2.6035, 2.4454, 2.1561),
    ('all-linear', 0.005, 0): SweepResult(2.4323, 2.3085, 2.1641),
    ('all-linear', 0.005, 1): SweepResult(2.4320, 2.2718, 2.2364),
    ('all-linear', 0.01, 0): SweepResult(2.3498, 2.1847, 2.4029),
    ('all-linear', 0.01, 1): SweepResult(2.3832, 2.1938, 2.3883),
    ('all-linear', 0.02, 0): SweepResult(2.9445, 2.6984, 3.6385),
    ('all-linear', 0.02, 1): SweepResult(3.0672, 2.8525, 3.6589),
    ('all-linear', 0.04, 0): SweepResult(3.3674, 3.1378, 3.8115),
    ('all-linear', 0.04, 1): SweepResult(3.4488, 3.1892, 3.9672),
    ('full', 0.000625, 0): SweepResult(2.3612, 2.2487, 2.0585),
    ('full', 0.000625, 1): SweepResult(2.3757, 2.2124, 2.0290),
    ('full', 0.00125, 0): SweepResult(2.1671, 2.0329, 2.1329),
    ('full', 0.00125, 1): SweepResult(2.1874, 1.9982, 2.1439),
    ('full', 0.0025, 0): SweepResult(2.1010, 1.9189, 2.3471),
    ('full', 0.0025, 1): SweepResult(2.0976, 1.8715, 2.3356),
    ('full', 0.005, 0): SweepResult(2.2432, 2.0132, 2.7819),
    ('full', 0.005, 1): SweepResult(2.3530, 2.0930, 2.7906),
    ('full', 0.01, 0): SweepResult(2.5685, 2.2934, 3.2371),
    ('full', 0.01, 1): SweepResult(2.7289, 2.4883, 3.3561),
}
"""The sweep behind :data:`TARGET_VARIANTS`: ``{(variant, lr, seed): SweepResult}`` (losses
rounded to 4 decimals), from :func:`lr_sweep` in notebook 06's setting: 320 windows of 65
characters from the *fit* part of the Python code's training text (``seed=0``), 40 steps of
8; tuning loss on all 140 windows of 128 of the tuning part, validation losses on all 156
windows of 128 of the code's validation text and on 200 windows of 128 spread evenly over
Shakespeare's. One thread, CPython 3.11.7, torch 2.13.0, transformers 5.24.0; about 90 s.
``tests/test_language_model.py`` (slow) reruns it."""
