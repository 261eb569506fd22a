"""A small, readable training loop with a progress bar, returning its history.

``train`` is the loop every fine-tuning notebook uses: mini-batches in a seeded
random order, Adam on the parameters that require gradients (for a LoRA model:
only the adapters) with a learning rate that falls linearly to zero, one
``tqdm`` bar. ``accuracy`` evaluates a classifier and
``training_memory`` counts what training keeps in memory for the trainable
parameters (the weights, their gradients and Adam's two moments).

Why: the loop is the same twenty lines for full fine-tuning, training the head
only and LoRA. What differs between them is *which parameters require
gradients*, and that is decided before the loop, by the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm.auto import tqdm

from ._validate import check_int, check_real

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    """Bytes that training with Adam holds for the *trainable* parameters.

    Frozen parameters need memory too, but the same amount in every variant of a
    model; this is the part that LoRA shrinks.
    """

    parameters: int
    gradients: int
    adam_moments: int

    @property
    def total(self) -> int:
        """Parameters + gradients + Adam moments, in bytes."""
        return self.parameters + self.gradients + self.adam_moments


def _check_data(inputs: Any, labels: Any) -> int:
    """Check a classification data set; return its size N."""
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise TypeError(f"inputs must be a float torch.Tensor (N, ...), got "
                        f"{getattr(inputs, 'dtype', type(inputs).__name__)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        raise TypeError(f"labels must be an int64 torch.Tensor (N,), got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if inputs.ndim < 1 or labels.ndim != 1 or len(inputs) != len(labels) or len(labels) == 0:
        raise ValueError(f"inputs (N, ...) and labels (N,) must hold the same number N >= 1 of "
                         f"examples, got shapes {tuple(inputs.shape)} and {tuple(labels.shape)}")
    return len(labels)


def _trainable(model: Any) -> list[nn.Parameter]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [p for p in model.parameters() if p.requires_grad]


def train(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, *, lr: float = 1e-3,
          epochs: int = 10, batch_size: int | None = None, seed: int = 0,
          loss_fn: LossFn = nn.functional.cross_entropy, progress: bool = True,
          desc: str = "training") -> History:
    """Train the parameters of ``model`` that require gradients, with Adam; return the history.

    Args:
        model: maps ``inputs[rows]`` (B, ...) to outputs (B, ...) that ``loss_fn`` compares
            with ``labels[rows]``; it is trained in place, in train mode, and left in the
            mode it was in.
        inputs: float tensor (N, ...); labels: int64 tensor (N,) (class indices, for the
            default loss).
        lr: Adam's learning rate at the first step, > 0; it then falls linearly, to
            ``lr / total steps`` at the last step (towards 0, as the default schedule of
            Hugging Face's ``Trainer``). epochs: passes over the data, >= 1.
        batch_size: examples per step, in [1, N]; ``None`` means all N (full batch).
        seed: int >= 0; the order of the examples in each epoch comes from a generator
            seeded with it, and the global torch seed is set to it too (for dropout).
        loss_fn: ``loss_fn(outputs, targets)`` -> scalar; default cross-entropy on logits.
        progress: show a ``tqdm`` bar (a widget in Jupyter, text on stderr elsewhere).
        desc: the bar's label.

    Raises ``TypeError``/``ValueError`` naming the argument (before touching the model), a
    ``ValueError`` if nothing in ``model`` requires gradients, and ``FloatingPointError``
    if the loss becomes NaN or inf (the learning rate is then usually too large).
    """
    params = _trainable(model)
    n = _check_data(inputs, labels)
    lr = check_real(lr, "lr", positive=True)
    epochs = check_int(epochs, "epochs", minimum=1)
    batch_size = n if batch_size is None else check_int(batch_size, "batch_size", minimum=1,
                                                        maximum=n)
    seed = check_int(seed, "seed", minimum=0)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not params:
        raise ValueError("model has no parameter that requires gradients: nothing would train "
                         "(apply_lora(...) or p.requires_grad_(True) first)")

    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(params, lr=lr)
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    was_training, history = model.training, []
    start = time.perf_counter()
    model.train()
    try:
        # tqdm.auto draws a widget in Jupyter: a saved notebook keeps only the text of its first
        # frame ("0/N [00:00<?, ?it/s]"), the same on every run, so `pytest --nbval` can compare
        # it. Elsewhere the bar is text on stderr; notebooks' big loops pass progress=False.
        with tqdm(total=epochs * steps_per_epoch, desc=desc, disable=not progress) as bar:
            for _ in range(epochs):
                for rows in torch.randperm(n, generator=order).split(batch_size):
                    loss = loss_fn(model(inputs[rows]), labels[rows])
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"the loss became {loss.item()} at step "
                                                 f"{len(history)}; lr={lr:g} is probably "
                                                 "too large")
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    history.append(loss.item())
                    bar.update()
                bar.set_postfix(loss=f"{history[-1]:.3f}", refresh=False)
    finally:
        model.train(was_training)
    moments = sum(state[key].numel() * state[key].element_size()
                  for state in optimizer.state.values() for key in ("exp_avg", "exp_avg_sq"))
    return History(history, steps_per_epoch, time.perf_counter() - start, moments)


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Predicted classes, int64 (N,): the argmax of ``model(inputs)`` (N, classes), in eval mode.

    The model is put in eval mode (no dropout) for the call and left in its previous mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise TypeError(f"inputs must be a float torch.Tensor (N, ...), got "
                        f"{getattr(inputs, 'dtype', type(inputs).__name__)}")
    was_training = model.training
    model.eval()
    try:
        logits = model(inputs)
    finally:
        model.train(was_training)
    if logits.ndim != 2:
        raise ValueError(f"model must return logits of shape (N, classes), got "
                         f"{tuple(logits.shape)}")
    return logits.argmax(dim=1)


def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction in [0, 1] of ``inputs`` (N, ...) whose predicted class equals ``labels`` (N,)."""
    n = _check_data(inputs, labels)
    return int((predict(model, inputs) == labels).sum()) / n


def training_memory(model: nn.Module) -> TrainingMemory:
    """Bytes that training ``model`` with Adam holds for its trainable parameters.

    For every parameter that requires gradients: the parameter itself, its gradient
    (same size) and Adam's two moments ``exp_avg`` and ``exp_avg_sq`` (same size each),
    i.e. ``4 * numel * bytes per element`` in all. Shared tensors count once.
    """
    unique = {id(p): p for p in _trainable(model)}.values()
    size = sum(p.numel() * p.element_size() for p in unique)
    return TrainingMemory(parameters=size, gradients=size, adam_moments=2 * size)
