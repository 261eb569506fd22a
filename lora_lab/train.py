"""A small, readable training loop with a progress bar, returning its history.

``train`` is the loop every fine-tuning notebook uses: mini-batches in a seeded
random order, Adam on the parameters that require gradients (for a LoRA model:
only the adapters) with a learning rate that falls linearly to zero, one
``tqdm`` bar. ``predict`` and ``accuracy`` evaluate a classifier, and
``training_memory`` counts what training keeps in memory for a model's
parameters (every weight, and for the trainable ones their gradients and
Adam's two moments).

Why: the loop is the same twenty lines for full fine-tuning, training the head
only and LoRA. What differs between them is *which parameters require
gradients*, and that is decided before the loop, by the model. Around those
twenty lines, ``train`` checks its arguments and data before touching the
model, and a call that fails (a NaN loss, a bad ``loss_fn``, even Ctrl-C)
leaves the model exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ._validate import check_bool, check_int, check_real

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]
MAX_SEED = 2**64 - 1
"""Largest seed torch's generators accept."""
IGNORE_INDEX = -100
"""The label ``nn.functional.cross_entropy`` skips (its default ``ignore_index``)."""


class History(NamedTuple):
    """What :func:`train` did.

    Attributes:
        loss: the training loss of every step (one mini-batch each), in order.
        steps_per_epoch: mini-batches per pass over the data (``ceil(N / batch_size)``).
        seconds: wall-clock time of the loop (varies from run to run and machine to machine).
        adam_state_bytes: bytes of Adam's two moment tensors (``exp_avg``, ``exp_avg_sq``)
            after training, measured on the optimizer itself.
    """

    loss: list[float]
    steps_per_epoch: int
    seconds: float
    adam_state_bytes: int


class TrainingMemory(NamedTuple):
    """Bytes that training a model with Adam holds for its parameters (activations not counted).

    Attributes:
        parameters: the trainable parameters themselves.
        gradients: one gradient per trainable parameter (same size).
        adam_moments: Adam's ``exp_avg`` and ``exp_avg_sq`` per trainable parameter (twice
            the size).
        frozen: the parameters that do not train. They are needed in memory too, and they
            differ between variants of one model: full fine-tuning has none, LoRA keeps every
            weight of the base model frozen beside its adapters.
    """

    parameters: int
    gradients: int
    adam_moments: int
    frozen: int = 0

    @property
    def total(self) -> int:
        """What training keeps for the *trainable* parameters: parameters + gradients +
        Adam's moments, in bytes (the part LoRA shrinks)."""
        return self.parameters + self.gradients + self.adam_moments

    @property
    def overall(self) -> int:
        """Every byte training holds for parameters: :attr:`total` plus the frozen ones."""
        return self.total + self.frozen


# --------------------------------------------------------------------------- checks

def _check_module(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's floating-point parameters, if they all share one."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    return dtypes.pop() if len(dtypes) == 1 else None


def _check_inputs(model: nn.Module, inputs: Any, *, allow_integer: bool) -> None:
    """Float (or, if allowed, integer) tensor, finite, in the model's dtype if float."""
    kinds = "a float or integer" if allow_integer else "a float"
    integer = isinstance(inputs, torch.Tensor) and not inputs.is_floating_point() \
        and not inputs.is_complex() and inputs.dtype != torch.bool
    if not isinstance(inputs, torch.Tensor) or not (inputs.is_floating_point()
                                                    or (allow_integer and integer)):
        raise TypeError(f"inputs must be {kinds} torch.Tensor (N, ...), got "
                        f"{getattr(inputs, 'dtype', type(inputs).__name__)}")
    if not inputs.is_floating_point():
        return
    dtype = _model_dtype(model)
    if dtype is not None and inputs.dtype != dtype:
        raise TypeError(f"inputs are {inputs.dtype} but the model computes in {dtype}: convert "
                        f"one of them, e.g. inputs.to({dtype}) or model.to({inputs.dtype})")
    if not torch.isfinite(inputs).all():
        where = ""
        if inputs.ndim:
            rows = (~torch.isfinite(inputs)).reshape(len(inputs), -1).any(dim=1)
            where = f" (first in row {int(rows.nonzero()[0])})"
        raise ValueError(f"inputs contain NaN or inf{where}; every value must be finite")


def _check_data(model: nn.Module, inputs: Any, labels: Any, *, allow_integer: bool) -> int:
    """Check a data set for ``model``; return its size N."""
    _check_inputs(model, inputs, allow_integer=allow_integer)
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        raise TypeError(f"labels must be an int64 torch.Tensor (N, ...), got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if inputs.ndim < 1 or labels.ndim < 1 or len(inputs) != len(labels) or len(labels) == 0:
        raise ValueError(f"inputs (N, ...) and labels (N, ...) must hold the same number N >= 1 "
                         f"of examples, got shapes {tuple(inputs.shape)} and "
                         f"{tuple(labels.shape)}")
    return len(labels)


def _check_class_labels(labels: torch.Tensor, classes: int, *, ignore: bool) -> None:
    """Labels must be class indices 0..classes-1 (or the ignored label -100, if ``ignore``)."""
    valid = (labels >= 0) & (labels < classes)
    if ignore:
        valid |= labels == IGNORE_INDEX
    if not valid.all():
        bad = labels[~valid]
        extra = f" (or {IGNORE_INDEX}, ignored)" if ignore else ""
        raise ValueError(f"labels must be class indices 0..{classes - 1}{extra} for the model's "
                         f"{classes} outputs, got {int(bad[0])} among {bad.numel()} bad labels")


def _check_loss(loss: Any, step: int, total: int, lr: float) -> None:
    """The loss of one step must be one finite number."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn must return a torch.Tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"loss_fn must return one number (a scalar tensor), got shape "
                         f"{tuple(loss.shape)}: reduce it, e.g. with .mean()")
    if not loss.requires_grad:
        raise ValueError("the loss does not depend on any parameter that requires gradients: "
                         "the model's forward pass does not use its trainable parameters, or "
                         "loss_fn detaches the outputs (.item(), .detach(), torch.no_grad)")
    if not torch.isfinite(loss):
        cause = ("before any update, so the learning rate is not the cause: look at the "
                 "model's weights and the labels (a batch whose labels are all -100 has no "
                 "loss to average)" if step == 0 else
                 f"a learning rate too large (lr={lr:g}) is the usual cause; a batch whose "
                 "labels are all -100 is another")
        raise FloatingPointError(f"the loss became {loss.item()} at step {step} of {total}, "
                                 f"{cause}. The model was restored as it was before train().")


# --------------------------------------------------------------------------- train

def _snapshot(model: nn.Module, params: list[nn.Parameter]) -> list[tuple[torch.Tensor, ...]]:
    """Copies of what training changes: the trainable parameters, their gradients, buffers."""
    saved = [(p, p.detach().clone(), None if p.grad is None else p.grad.detach().clone())
             for p in params]
    saved += [(b, b.detach().clone(), None) for b in model.buffers()]
    return saved


def _restore(saved: list[tuple[torch.Tensor, ...]], params: list[nn.Parameter]) -> None:
    is_param = {id(p) for p in params}
    with torch.no_grad():
        for tensor, value, grad in saved:
            tensor.copy_(value)
            if id(tensor) in is_param:
                tensor.grad = grad


def train(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, lr: float = 1e-3,
          epochs: int = 10, batch_size: int | None = None, seed: int = 0,
          loss_fn: LossFn = nn.functional.cross_entropy, progress: bool = True,
          desc: str = "training") -> History:
    """Train the parameters of ``model`` that require gradients, with Adam; return the history.

    Args:
        model: maps ``inputs[rows]`` (B, ...) to outputs that ``loss_fn`` compares with
            ``labels[rows]``; it is trained in place, in train mode, and left in the mode it
            was in.
        inputs: tensor (N, ...): float, in the dtype of the model's parameters, every value
            finite; or integer (token ids, for a language model with its own ``loss_fn``).
        labels: int64 tensor (N, ...); for the default loss, class indices (N,) in
            0..C-1 for the model's C outputs (-100: ignored, as in cross-entropy).
        lr: Adam's learning rate at the first step, > 0; it then falls linearly, to
            ``lr / total steps`` at the last step (towards 0, as the default schedule of
            Hugging Face's ``Trainer``). epochs: passes over the data, >= 1.
        batch_size: examples per step, in [1, N]; ``None`` means all N (full batch).
        seed: int in [0, 2**64 - 1]; the order of the examples in each epoch comes from a
            generator seeded with it, and the global torch seed is set to it too (for dropout).
        loss_fn: ``loss_fn(outputs, targets)`` -> a scalar tensor; default cross-entropy on
            logits (N, C).
        progress: bool, show a ``tqdm`` bar (a widget in Jupyter, text on stderr elsewhere).
        desc: str, the bar's label.

    Raises ``TypeError``/``ValueError`` naming the argument, before touching the model: bad
    arguments, non-finite float inputs, inputs in another dtype than the model, labels out
    of range for the default loss, nothing in ``model`` requiring gradients.
    ``ValueError``/``TypeError`` if ``loss_fn`` does not return one number, and
    ``FloatingPointError`` if the loss becomes NaN or inf. Whatever stops the loop (those
    errors, an error inside the model, or a KeyboardInterrupt), the trainable parameters,
    their ``.grad`` and the model's buffers are restored to what they were before the call,
    and the model's train/eval mode too: a call that does not return leaves the model as
    it was.
    """
    params = [p for p in _check_module(model).parameters() if p.requires_grad]
    n = _check_data(model, inputs, labels, allow_integer=True)
    lr = check_real(lr, "lr", positive=True)
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = n if batch_size is None else check_int(batch_size, "batch_size", minimum=1,
                                                        maximum=n)
    seed = check_int(seed, "seed", minimum=0, maximum=MAX_SEED)
    progress = check_bool(progress, "progress")
    if not isinstance(desc, str):
        raise TypeError(f"desc must be a str, got {type(desc).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not params:
        raise ValueError("model has no parameter that requires gradients: nothing would train "
                         "(apply_lora(...) or p.requires_grad_(True) first)")
    default_loss = loss_fn is nn.functional.cross_entropy
    if default_loss and (labels == IGNORE_INDEX).all():
        raise ValueError(f"labels are all {IGNORE_INDEX}, which cross-entropy ignores: there is "
                         "nothing to learn from")

    saved, was_training = _snapshot(model, params), model.training
    try:
        return _loop(model, params, inputs, labels, lr=lr, epochs=epochs,
                     batch_size=batch_size, seed=seed, loss_fn=loss_fn,
                     check_labels=default_loss, progress=progress, desc=desc)
    except BaseException:
        _restore(saved, params)
        raise
    finally:
        model.train(was_training)


def _loop(model: nn.Module, params: list[nn.Parameter], inputs: torch.Tensor,
          labels: torch.Tensor, *, lr: float, epochs: int, batch_size: int, seed: int,
          loss_fn: LossFn, check_labels: bool, progress: bool, desc: str) -> History:
    """The loop of :func:`train`, on checked arguments (the loop written out in notebook 04)."""
    n = len(labels)
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    history: list[float] = []
    start = time.perf_counter()
    model.train()
    # tqdm.auto draws a widget in Jupyter: a saved notebook keeps only the text of its first
    # frame ("0/N [00:00<?, ?it/s]"), the same on every run, so `pytest --nbval` can compare
    # it. Elsewhere the bar is text on stderr; notebooks' big loops pass progress=False.
    with tqdm(total=total, desc=desc, disable=not progress) as bar:
        for _ in range(epochs):
            for rows in torch.randperm(n, generator=order).split(batch_size):
                if history:
                    outputs = model(inputs[rows])
                else:  # the first step: does the model take these inputs, give these outputs?
                    outputs = _first_forward(model, inputs[rows])
                    if check_labels:
                        _check_outputs(outputs, labels)
                loss = loss_fn(outputs, labels[rows])
                _check_loss(loss, len(history), total, lr)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                history.append(loss.item())
                bar.update()
            bar.set_postfix(loss=f"{history[-1]:.3f}", refresh=False)
    moments = sum(state[key].numel() * state[key].element_size()
                  for state in optimizer.state.values() for key in ("exp_avg", "exp_avg_sq"))
    return History(history, steps_per_epoch, time.perf_counter() - start, moments)


def _first_forward(model: nn.Module, batch: torch.Tensor) -> Any:
    """``model(batch)``; integer inputs that the model cannot take raise a ``TypeError``."""
    try:
        return model(batch)
    except RuntimeError as error:
        if batch.is_floating_point():
            raise
        raise TypeError(f"inputs are {batch.dtype} but the model failed on them ({error}); "
                        "a model that reads numbers needs float inputs in its dtype, only a "
                        "model that looks ids up (nn.Embedding) takes integer inputs") from error


def _check_outputs(outputs: Any, labels: torch.Tensor) -> None:
    """For the default cross-entropy: logits (B, C) and every label a class 0..C-1 or -100."""
    if not isinstance(outputs, torch.Tensor) or outputs.ndim != 2:
        raise ValueError(f"the default loss (cross-entropy) needs logits of shape (B, classes) "
                         f"from the model, got {getattr(outputs, 'shape', type(outputs))}; "
                         "pass a loss_fn for other outputs")
    if labels.ndim != 1:
        raise ValueError(f"the default loss (cross-entropy) needs labels of shape (N,), got "
                         f"{tuple(labels.shape)}")
    _check_class_labels(labels, outputs.shape[1], ignore=True)


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def _logits(model: nn.Module, inputs: Any) -> torch.Tensor:
    """``model(inputs)`` in eval mode, checked to be finite logits (N, classes)."""
    _check_inputs(_check_module(model), inputs, allow_integer=False)
    was_training = model.training
    model.eval()
    try:
        logits = model(inputs)
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != len(inputs):
        raise ValueError(f"model must return logits of shape (N, classes), got "
                         f"{tuple(getattr(logits, 'shape', ()))}")
    if not torch.isfinite(logits).all():
        raise ValueError("model returned NaN or inf logits: its weights are probably not finite "
                         "(a diverged training run?)")
    return logits


def predict(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Predicted classes, int64 (N,): the argmax of ``model(inputs)`` (N, classes), in eval mode.

    ``inputs``: float tensor (N, ...), finite, in the dtype of the model's parameters. The
    model is put in eval mode (no dropout) for the call and left in its previous mode.
    Raises ``TypeError``/``ValueError`` naming ``model`` or ``inputs``, and ``ValueError`` if
    the model's logits are not (N, classes) or contain NaN/inf (an argmax of NaN would be a
    meaningless class).
    """
    return _logits(model, inputs).argmax(dim=1)


def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction in [0, 1] of ``inputs`` (N, ...) whose predicted class equals ``labels`` (N,).

    ``labels``: int64 class indices (N,) in 0..C-1 for the model's C outputs; anything else
    raises ``ValueError`` (a label no class can match would silently count as wrong). Errors
    of ``inputs`` and ``model`` as :func:`predict`.
    """
    n = _check_data(_check_module(model), inputs, labels, allow_integer=False)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
    logits = _logits(model, inputs)
    _check_class_labels(labels, logits.shape[1], ignore=False)
    return int((logits.argmax(dim=1) == labels).sum()) / n


def training_memory(model: nn.Module) -> TrainingMemory:
    """Bytes that training ``model`` with Adam holds for its parameters.

    For every parameter that requires gradients: the parameter itself, its gradient (same
    size) and Adam's two moments ``exp_avg`` and ``exp_avg_sq`` (same size each), i.e.
    ``4 * numel * bytes per element`` in all (:attr:`TrainingMemory.total`); the frozen
    parameters once each (:attr:`TrainingMemory.frozen`; all together:
    :attr:`TrainingMemory.overall`). Shared tensors count once.
    """
    unique = {id(p): p for p in _check_module(model).parameters()}.values()
    size = sum(p.numel() * p.element_size() for p in unique if p.requires_grad)
    frozen = sum(p.numel() * p.element_size() for p in unique if not p.requires_grad)
    return TrainingMemory(parameters=size, gradients=size, adam_moments=2 * size, frozen=frozen)
