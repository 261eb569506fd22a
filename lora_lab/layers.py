"""``LoRALinear``: a frozen ``nn.Linear`` plus a trainable low-rank update.

    h = base(x) + scaling * B (A dropout(x)),   scaling = alpha / r

``lora_A`` (r, in) starts Kaiming-uniform, ``lora_B`` (out, r) starts at zero,
exactly as in PEFT and loralib, so the wrapped layer starts out computing
what the pretrained layer computed.

Why: the NumPy forward and backward of notebook 02, with autograd doing the
backward, in a module that drops into any PyTorch model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._validate import check_int, check_real
from .numpy_lora import lora_scaling


class LoRALinear(nn.Module):
    """Wrap ``base`` (a ``nn.Linear``) with a rank-``r`` adapter.

    Args:
        base: the pretrained layer, weight (out, in). Its parameters are frozen.
        r: rank of the update, >= 1.
        alpha: numerator of the scaling; ``scaling = alpha / r``
            (``alpha / sqrt(r)`` with ``use_rslora=True``).
        dropout: probability in [0, 1) of dropping entries of the *adapter's*
            input; the base path never sees dropout.
        use_rslora: use rank-stabilised scaling (Kalajdzievski, 2023).

    The adapter factors are created in float32 even for an fp16/bf16 base, for
    stable training (``model.to(dtype)`` later converts them like any
    parameter); the output always has the base's dtype. ``weight`` and ``bias``
    are the base layer's, so code that reads ``layer.weight`` keeps working.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                 use_rslora: bool = False) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
        if not isinstance(use_rslora, bool):
            raise TypeError(f"use_rslora must be a bool, got {type(use_rslora).__name__}")
        self.r = check_int(r, "r", minimum=1)
        self.alpha = check_real(alpha, "alpha", positive=True)
        self.use_rslora = use_rslora
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.dropout = make_dropout(dropout)
        factory = {"device": base.weight.device, "dtype": torch.float32}
        self.lora_A = nn.Parameter(torch.empty(self.r, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.empty(base.out_features, self.r, **factory))
        self.merged = False
        self.reset_lora_parameters()

    @property
    def scaling(self) -> float:
        """``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), always in step with ``alpha``.

        Change ``alpha`` only while unmerged: ``unmerge`` subtracts the current update.
        """
        return lora_scaling(self.alpha, self.r, self.use_rslora)

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight (out, in): W0, or W0 + scaling * B @ A while merged."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The base layer's bias (out,), or None."""
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def reset_lora_parameters(self) -> None:
        """A ~ Kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(in)), B = 0: the update starts at zero."""
        if self.merged:
            raise RuntimeError("reset_lora_parameters(): unmerge() first, or the merged update "
                               "could never be taken out of the base weight again")
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B @ A``, shape (out, in), in the factors' dtype: what merging adds."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., in) -> (..., out), in the base's dtype."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have in_features={self.in_features} entries in its last "
                             f"dimension, got shape {tuple(x.shape)}")
        if x.dtype != self.base.weight.dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"x must have the layer's dtype {self.base.weight.dtype}, got "
                            f"{x.dtype}; convert with x.to({self.base.weight.dtype})")
        result = self.base(x)
        if self.merged:
            return result
        # scale the thin (..., r) intermediate rather than the (..., out) update:
        # the same numbers, one fewer full-size pass forward and backward
        hidden = (self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T) * self.scaling
        return result + (hidden @ self.lora_B.T).to(result.dtype)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: ``W <- W + scaling * B @ A``.

        Afterwards the forward pass is one plain matrix multiply.
        """
        if self.merged:
            raise RuntimeError("LoRALinear.merge(): the layer is already merged; "
                               "call unmerge() first")
        w = self.base.weight
        w.copy_((w.float() + self.delta_weight()).to(w.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`: ``W <- W - scaling * B @ A``."""
        if not self.merged:
            raise RuntimeError("LoRALinear.unmerge(): the layer is not merged; "
                               "there is nothing to unmerge")
        w = self.base.weight
        w.copy_((w.float() - self.delta_weight()).to(w.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:.4g}, "
                f"use_rslora={self.use_rslora}, merged={self.merged}")


def make_dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)`` for p in (0, 1), ``nn.Identity()`` for p = 0 (no wasted copy)."""
    p = check_real(p, "dropout", low=0.0, high_exclusive=1.0)
    return nn.Dropout(p) if p > 0 else nn.Identity()
