"""A causal language model on the course's character texts: windows, loss, generation.

Three small helpers around a ``transformers`` causal LM (``LlamaForCausalLM`` in
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

Why: fine-tuning a language model is "lower the next-character loss on the new
text"; these four names are all the plumbing that idea needs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ._validate import check_int, check_real
from .adapters import apply_lora
from .data import decode, encode
from .train import History, train

TARGET_VARIANTS: dict[str, dict[str, Any]] = {
    "q,v": {"target_modules": ["q_proj", "v_proj"], "r": 4, "lr": 0.02},
    "all-linear": {"target_modules": "all-linear", "r": 8, "lr": 0.01},
    "full": {"target_modules": None, "lr": 0.003},
}
"""Notebook 06's three ways to fine-tune the tiny Llama (keyword arguments of :func:`finetune`):
LoRA on ``q_proj`` and ``v_proj`` at r = 4, LoRA on every Linear layer at r = 8, and full
fine-tuning. Each learning rate is the best of a factor-2 grid (half, itself, double) for 40
steps of 8 windows of Python code; ``tests/test_language_model.py`` reruns that sweep."""


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
                        f"tensor, got {type(output).__name__}")
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
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module) or not callable(getattr(model, "generate", None)):
        raise TypeError("model must be a transformers causal language model (an nn.Module "
                        f"with .generate), got {type(model).__name__}")
    return model


def _check_windows(windows: Any) -> torch.Tensor:
    if not isinstance(windows, torch.Tensor) or windows.dtype != torch.int64 or windows.ndim != 2:
        raise TypeError("windows must be an int64 tensor (N, L) of character ids, got "
                        f"{getattr(windows, 'dtype', type(windows).__name__)} "
                        f"{tuple(getattr(windows, 'shape', ()))}")
    if windows.shape[0] < 1 or windows.shape[1] < 2:
        raise ValueError(f"windows must hold N >= 1 windows of L >= 2 characters, got shape "
                         f"{tuple(windows.shape)}")
    return windows


@torch.no_grad()
def text_loss(model: nn.Module, windows: torch.Tensor, batch_size: int = 64) -> float:
    """Mean loss of ``model`` on ``windows`` (N, L), in nats per predicted character.

    Each window predicts its characters 2..L from the ones before them (L - 1
    predictions), with ``transformers``' own loss: ``model(input_ids=w, labels=w).loss``.
    Runs in eval mode (no dropout) under ``torch.no_grad``, ``batch_size`` windows at
    a time, and leaves the model in the mode it was in. Lower is better; ln(96) = 4.56
    is a uniform guess over the course's 96 characters.
    """
    model = _check_model(model)
    windows = _check_windows(windows)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
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
                  temperature: float = 1.0) -> str:
    """``prompt`` followed by ``n_chars`` characters that ``model.generate`` writes.

    ``seed=None``: greedy (the most likely character each time). A seed ``>= 0``:
    sampled from the model's distribution divided by ``temperature`` (> 0; below 1
    sharpens it), with torch's global generator seeded inside ``fork_rng``, so
    the caller's random numbers are left as they were. Eval mode during the call.
    Generated text is sensitive to rounding: a near-tie between two characters can
    go either way on another CPU; sample from a float64 copy of the model
    (``copy.deepcopy(model).double()``) when the text must be reproducible.
    """
    model = _check_model(model)
    if not isinstance(prompt, str) or not prompt:
        raise TypeError(f"prompt must be a non-empty str, got {prompt!r}")
    n_chars = check_int(n_chars, "n_chars", minimum=1)
    temperature = check_real(temperature, "temperature", positive=True)
    sampling = {"do_sample": False} if seed is None else {
        "do_sample": True, "temperature": temperature, "top_k": None, "top_p": None}
    ids = encode(prompt)[None]
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(check_int(seed, "seed", minimum=0))
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=n_chars, min_new_tokens=n_chars, **sampling)
    finally:
        model.train(was_training)
    return decode(out[0])


def finetune(base: nn.Module, windows: torch.Tensor, *, lr: float,
             target_modules: str | Sequence[str] | None = None, r: int = 8, seed: int = 0,
             batch_size: int = 8, epochs: int = 1) -> tuple[nn.Module, History]:
    """A copy of ``base`` fine-tuned on ``windows``; ``base`` itself is left untouched.

    ``target_modules=None``: full fine-tuning (every parameter trains). Otherwise LoRA:
    ``apply_lora(copy, target_modules, r=r, alpha=2 * r)`` right after
    ``torch.manual_seed(seed)`` (so the seed fixes the random A), then only the adapters
    train. Training: :func:`lora_lab.train.train` on inputs ``windows[:, :-1]`` and
    labels ``windows[:, 1:]`` (int64 (N, L + 1) windows, e.g. from :func:`char_windows`)
    with :func:`next_char_loss`, Adam at ``lr`` falling linearly, ``batch_size``
    windows a step in an order drawn from ``seed``, ``epochs`` passes, no progress bar.
    Returns ``(model in eval mode, History)``. Errors as ``apply_lora`` and ``train``.
    """
    if not isinstance(base, nn.Module):
        raise TypeError(f"base must be a torch.nn.Module, got {type(base).__name__}")
    windows = _check_windows(windows)
    seed = check_int(seed, "seed", minimum=0)
    model = copy.deepcopy(base)
    if target_modules is not None:
        torch.manual_seed(seed)
        apply_lora(model, target_modules, r=r, alpha=2 * r)
    history = train(model, windows[:, :-1], windows[:, 1:], lr=lr, epochs=epochs,
                    batch_size=batch_size, seed=seed, loss_fn=next_char_loss, progress=False)
    return model.eval(), history
