"""``LoRALinear``: a frozen ``nn.Linear`` plus a trainable low-rank update.

    h = base(x) + scaling * B (A dropout(x)),   scaling = alpha / r

``lora_A`` (r, in) starts Kaiming-uniform, ``lora_B`` (out, r) starts at zero,
exactly as in PEFT and loralib, so the wrapped layer starts out computing
what the pretrained layer computed. ``ModulesToSaveWrapper`` is PEFT's other
half of an adapter: a whole module (say a new classification head) trained
beside the LoRA layers.

Why: the NumPy forward and backward of notebook 02, with autograd doing the
backward, in a module that drops into any PyTorch model.
"""

from __future__ import annotations

import copy
import gc
import math
import weakref

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._validate import check_bool, check_int, check_real
from .numpy_lora import lora_scaling


def factor_dtype(weight_dtype: torch.dtype) -> torch.dtype:
    """dtype of the LoRA factors for a base weight of ``weight_dtype``.

    At least float32 (fp16/bf16 factors train poorly) and at least the base's
    precision: float16/bfloat16/float32 -> float32, float64 -> float64. Merges
    are computed in this dtype too (PEFT merges a float64 base in float64).
    """
    return torch.promote_types(weight_dtype, torch.float32)


def memory_span(t: torch.Tensor) -> tuple[int, int, int]:
    """(storage address, first byte, one past the last byte) that ``t`` reads."""
    extent = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True)) + 1
    start = t.storage_offset() * t.element_size()
    return t.untyped_storage().data_ptr(), start, start + extent * t.element_size()


def shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True if ``a`` and ``b`` read overlapping bytes of one storage (tied, or views)."""
    if not (a.numel() and b.numel()) or a.is_meta or b.is_meta:
        return False
    (ptr_a, lo_a, hi_a), (ptr_b, lo_b, hi_b) = memory_span(a), memory_span(b)
    return ptr_a == ptr_b and lo_a < hi_b and lo_b < hi_a


#: Every LoRALinear alive (built, copied or unpickled), so that merge() can refuse a
#: weight that another LoRA layer also reads. Weak: it keeps no layer alive.
_LIVE_LAYERS: weakref.WeakSet[LoRALinear] = weakref.WeakSet()


def check_base_linear(base: object, name: str = "base") -> nn.Linear:
    """Return ``base`` if LoRA can wrap it and merge into it, else raise.

    Raises ``TypeError`` if it is not an ``nn.Linear`` or its weight is not
    floating point, and ``ValueError`` if its weight is not a plain
    ``nn.Parameter`` of the layer: parametrized (``weight_norm``,
    ``spectral_norm``, ``orthogonal``, any ``register_parametrization``),
    recomputed by the old ``torch.nn.utils.weight_norm``/``spectral_norm``
    hooks, or on the meta device (no values). In each of those cases a merge
    would write into a tensor the layer does not read, or recomputes.
    """
    if not isinstance(base, nn.Linear):
        raise TypeError(f"{name} must be a torch.nn.Linear, got {type(base).__name__}")
    if parametrize.is_parametrized(base):
        kinds = sorted({type(p).__name__ for plist in base.parametrizations.values()
                        for p in plist})
        raise ValueError(f"{name} is parametrized ({', '.join(kinds)} on "
                         f"{sorted(base.parametrizations)}): its weight is recomputed at every "
                         "call, so a merge would be lost. Remove the parametrization first "
                         "(torch.nn.utils.parametrize.remove_parametrizations)")
    for attr in ("weight", "bias"):
        value = getattr(base, attr)
        if value is not None and not isinstance(base._parameters.get(attr), nn.Parameter):
            raise ValueError(f"{name}.{attr} is not a parameter of the layer but a tensor "
                             f"computed from others ({sorted(base._parameters)}), e.g. by the old "
                             "torch.nn.utils.weight_norm/spectral_norm hooks; a merge would be "
                             "lost. Remove the hook first (torch.nn.utils.remove_weight_norm)")
    if not base.weight.is_floating_point():
        raise TypeError(f"{name}.weight must be floating point, got {base.weight.dtype}")
    if base.weight.is_meta:
        raise ValueError(f"{name} is on the meta device (shapes without values); load its "
                         "weights first (e.g. model.to_empty(device='cpu') + load_state_dict)")
    return base


class LoRALinear(nn.Module):
    """Wrap ``base`` (a ``nn.Linear``) with a rank-``r`` adapter.

    Args:
        base: the pretrained layer, weight (out, in). Its parameters are frozen.
        r: rank of the update, >= 1. Fixed for the layer's life (read-only).
        alpha: numerator of the scaling; ``scaling = alpha / r``
            (``alpha / sqrt(r)`` with ``use_rslora=True``).
        dropout: probability in [0, 1) of dropping entries of the *adapter's*
            input; the base path never sees dropout.
        use_rslora: use rank-stabilised scaling (Kalajdzievski, 2023).

    Raises ``TypeError``/``ValueError`` naming the argument, before the base
    is touched (see :func:`check_base_linear` for the bases refused).

    The factors have dtype :func:`factor_dtype` of the base weight (float32 for
    an fp16/bf16/fp32 base, float64 for a float64 one) and the base's device;
    ``model.to(dtype)``/``model.half()`` later converts them like any parameter
    (merges are still computed in at least float32). The output always has the
    base's dtype. ``weight`` and ``bias`` are the base
    layer's, so code that reads ``layer.weight`` keeps working.

    Merging (:meth:`merge`) keeps a copy of the original weight, so
    :meth:`unmerge` restores it bit for bit. While merged, ``alpha`` and
    ``use_rslora`` cannot be changed (``RuntimeError``), and a forward pass
    refuses to run if ``lora_A``/``lora_B`` were edited since the merge
    (except edits through ``.data``, which autograd does not track), or if it
    would train: in training mode, with gradients enabled and a factor that
    requires a gradient (a merged layer computes only ``base(x)``, so the
    factors would silently get no gradient).
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0,
                 use_rslora: bool = False) -> None:
        super().__init__()
        check_base_linear(base)
        r = check_int(r, "r", minimum=1)
        alpha = check_real(alpha, "alpha", positive=True)
        use_rslora = check_bool(use_rslora, "use_rslora")
        dropout_module = make_dropout(dropout)
        factory = {"device": base.weight.device, "dtype": factor_dtype(base.weight.dtype)}
        # allocate before touching base: a failure (out of memory) leaves base as it was
        lora_A = torch.empty(r, base.in_features, **factory)
        lora_B = torch.empty(base.out_features, r, **factory)

        self._r, self._alpha, self._use_rslora = r, alpha, use_rslora
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.dropout = dropout_module
        self.lora_A = nn.Parameter(lora_A)
        self.lora_B = nn.Parameter(lora_B)
        # merge() fills these, unmerge() empties them (non-persistent: not in state_dict)
        self.register_buffer("_original_weight", None, persistent=False)
        self.register_buffer("_merged_lora_A", None, persistent=False)
        self.register_buffer("_merged_lora_B", None, persistent=False)
        self._weight_stamp: tuple[int, int] | None = None
        self._factor_stamp: tuple[int, ...] | None = None
        self._merged = False  # a plain attribute: read on every forward pass
        self._adapter_disabled = False
        self.reset_lora_parameters()
        _LIVE_LAYERS.add(self)

    def __setstate__(self, state: dict) -> None:
        """Unpickling and ``copy.deepcopy`` build a layer without ``__init__``: register it too."""
        super().__setstate__(state)
        _LIVE_LAYERS.add(self)

    # ------------------------------------------------------------------ settings

    @property
    def r(self) -> int:
        """Rank of the update (rows of ``lora_A``); read-only."""
        return self._r

    @r.setter
    def r(self, value: object) -> None:
        raise AttributeError(f"r is fixed when the layer is built (lora_A has {self._r} rows); "
                             "build a new LoRALinear to change the rank")

    @property
    def alpha(self) -> float:
        """Numerator of ``scaling``. Settable while unmerged; ``RuntimeError`` while merged."""
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        value = check_real(value, "alpha", positive=True)
        self._refuse_while_merged("alpha")
        self._alpha = value

    @property
    def use_rslora(self) -> bool:
        """Rank-stabilised scaling. Settable while unmerged; ``RuntimeError`` while merged."""
        return self._use_rslora

    @use_rslora.setter
    def use_rslora(self, value: bool) -> None:
        value = check_bool(value, "use_rslora")
        self._refuse_while_merged("use_rslora")
        self._use_rslora = value

    @property
    def scaling(self) -> float:
        """``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA), always in step with ``alpha``."""
        return lora_scaling(self._alpha, self._r, self._use_rslora)

    @property
    def merged(self) -> bool:
        """True between :meth:`merge` and :meth:`unmerge`."""
        return self._merged

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
        self._refuse_while_merged("reset_lora_parameters()")
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    # ------------------------------------------------------------------ the maths

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B @ A``, shape (out, in), in the factors' dtype: what merging adds."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., in) -> (..., out), in the base's dtype."""
        self._check_input(x)
        if self.merged or self._adapter_disabled:
            return self.base(x)
        result = self.base(x)
        # scale the thin (..., r) intermediate rather than the (..., out) update:
        # the same numbers, one fewer full-size pass forward and backward
        hidden = (self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.T) * self.scaling
        return result + (hidden @ self.lora_B.T).to(result.dtype)

    def merged_weight(self) -> torch.Tensor:
        """``W0 + scaling * B @ A`` (out, in) in the weight's dtype, without writing it.

        Computed in ``promote_types(weight dtype, factor dtype, float32)`` and
        rounded once to the weight's dtype (what PEFT's merge computes). Raises
        ``ValueError`` if any entry is NaN or inf in the weight's dtype (PEFT's
        ``safe_merge`` check): an fp16 weight of 60000 plus an update of 1e4
        overflows, and nothing could take the update out again.
        """
        w = self.base.weight
        compute = torch.promote_types(factor_dtype(w.dtype), self.lora_A.dtype)
        delta = self.scaling * (self.lora_B.to(compute) @ self.lora_A.to(compute))
        merged = (w.to(compute) + delta).to(w.dtype)
        if not torch.isfinite(merged).all():
            raise ValueError(self._non_finite_reason(merged))
        return merged

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: ``W <- W0 + scaling * B @ A``.

        Afterwards the forward pass is one plain matrix multiply (for
        inference: training needs the layer unmerged). Raises ``RuntimeError``
        if already merged or inside :func:`disable_adapter`, ``ValueError`` if
        the merged weight would not be finite or if another
        :class:`LoRALinear` reads this weight's memory (one base wrapped twice,
        or two tied Linear layers: merging would change the other layer's
        output too); in every case nothing changes. Keeps a copy of W0 (one
        weight's worth of memory, released by :meth:`unmerge`) so that
        unmerging is exact.

        **The write goes into** ``base.weight`` **itself**, so any module that
        shares that tensor changes with it. A single layer cannot see plain
        modules such as an ``nn.Embedding`` tied to its weight: merge a whole
        model with :func:`~lora_lab.adapters.merge_lora`, which refuses when
        any module of the model shares the weight.
        """
        if self.merged:
            raise RuntimeError("LoRALinear.merge(): the layer is already merged; "
                               "call unmerge() first")
        if self._adapter_disabled:
            raise RuntimeError("LoRALinear.merge(): the adapter is disabled (inside "
                               "disable_adapter); merge after the with-block")
        self.check_weight_not_shared()
        merged = self.merged_weight()
        weight = self.base.weight
        self._original_weight = weight.detach().clone()
        self._merged_lora_A = self.lora_A.detach().clone()
        self._merged_lora_B = self.lora_B.detach().clone()
        weight.copy_(merged)
        self._weight_stamp = _stamp(weight)
        self._factor_stamp = _stamp(self.lora_A) + _stamp(self.lora_B)
        self._merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`: put back the original weight W0, bit for bit.

        The weight saved by ``merge`` is restored, not recomputed as
        ``W - scaling * B @ A``, so the result is exact in every dtype even if
        the factors were edited while merged. Raises ``RuntimeError`` if the
        layer is not merged, or if the base weight itself was changed while
        merged (trained or overwritten): restoring W0 would silently undo that.
        """
        if self._adapter_disabled:
            raise RuntimeError("LoRALinear.unmerge(): the adapter is disabled (inside "
                               "disable_adapter, which unmerges merged layers until the "
                               "with-block ends); unmerge after the with-block")
        if not self.merged:
            raise RuntimeError("LoRALinear.unmerge(): the layer is not merged; "
                               "there is nothing to unmerge")
        self._check_can_unmerge()
        self.base.weight.copy_(self._original_weight)
        self._original_weight = self._merged_lora_A = self._merged_lora_B = None
        self._weight_stamp = self._factor_stamp = None
        self._merged = False

    def extra_repr(self) -> str:
        return (f"r={self.r}, alpha={self.alpha:g}, scaling={self.scaling:.4g}, "
                f"use_rslora={self.use_rslora}, merged={self.merged}")

    # ------------------------------------------------------------------ checks

    def _check_input(self, x: object) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have in_features={self.in_features} entries in its last "
                             f"dimension, got shape {tuple(x.shape)}")
        dtype = self.base.weight.dtype
        if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
            raise TypeError(f"x must have the layer's dtype {dtype}, got {x.dtype}; "
                            f"convert with x.to({dtype})")
        if self.merged:
            self._check_merge_is_current()
            self._refuse_training_while_merged()

    def _refuse_training_while_merged(self) -> None:
        """``RuntimeError`` for a merged forward pass that would train (see the class doc)."""
        if (self.training and torch.is_grad_enabled()
                and (self.lora_A.requires_grad or self.lora_B.requires_grad)):
            raise RuntimeError(
                "this LoRALinear is merged, and the forward pass runs in training mode with "
                "gradients enabled: a merged layer computes only base(x), so lora_A and lora_B "
                "would get no gradient and never learn. To train, unmerge first "
                "(unmerge_lora(model) or layer.unmerge()); for inference, call model.eval() or "
                "run under torch.no_grad()")

    def check_weight_not_shared(self) -> None:
        """``ValueError`` if another live :class:`LoRALinear` reads this layer's weight memory.

        Merging writes into ``base.weight``; another LoRA layer over the same (or an
        overlapping) tensor would change its output with it. Plain modules that share
        the weight are invisible to a layer: :func:`~lora_lab.adapters.merge_lora`
        checks those.
        """
        if self._layers_sharing_the_weight():  # (no reference kept: it could be garbage)
            gc.collect()  # a layer kept alive only by a reference cycle does not count
        others = self._layers_sharing_the_weight()
        if others:
            kind = ("wraps the same base layer" if any(o.base is self.base for o in others)
                    else "has a base weight sharing this weight's memory (tied Linear layers)")
            raise ValueError(f"cannot merge: another LoRALinear {kind}, so merging would change "
                             "that layer's output too; give each LoRALinear its own nn.Linear "
                             "(copy.deepcopy(base))")

    def _layers_sharing_the_weight(self) -> list[LoRALinear]:
        weight = self.base.weight
        return [o for o in list(_LIVE_LAYERS) if o is not self
                and any(t is not None and shares_memory(weight, t)
                        for t in (o.base.weight, o.base.bias))]

    def _check_merge_is_current(self, thorough: bool = False) -> None:
        """``RuntimeError`` if lora_A/lora_B were edited since :meth:`merge`.

        Fast path (the forward pass): the factors are the same tensors, unwritten
        since (version counters). Otherwise (an in-place edit, a new Parameter, a
        deep copy), or when ``thorough``, their values are compared with the ones
        merged. Edits through ``.data`` bypass version counters: only the
        thorough check (merge_and_unload, disable_adapter) sees them.
        """
        stamp = _stamp(self.lora_A) + _stamp(self.lora_B)
        if stamp == self._factor_stamp and not thorough:
            return
        if not (torch.equal(self.lora_A, self._merged_lora_A)
                and torch.equal(self.lora_B, self._merged_lora_B)):
            raise RuntimeError("lora_A/lora_B were changed after merge(), so the merged weight "
                               "holds the old update; call unmerge() (which restores the "
                               "original weight exactly) and merge() again")
        self._factor_stamp = stamp  # same values (a copy, say): take the fast path next time

    def _check_can_unmerge(self) -> None:
        """``RuntimeError`` if the merged weight was written to since :meth:`merge`."""
        weight, stamp = self.base.weight, self._weight_stamp
        if stamp is not None and stamp[0] == id(weight) and stamp != _stamp(weight):
            raise RuntimeError("the merged base weight was changed after merge() (trained or "
                               "overwritten); restoring the original weight would undo that "
                               "change. merge_and_unload() keeps the weight as it is")

    def _refuse_while_merged(self, what: str) -> None:
        if self.merged:
            raise RuntimeError(f"cannot change {what} while the layer is merged: the merged "
                               "weight holds the current update; call unmerge() first")

    def _non_finite_reason(self, merged: torch.Tensor) -> str:
        bad = int((~torch.isfinite(merged)).sum())
        for label, tensor in (("lora_A", self.lora_A), ("lora_B", self.lora_B),
                              ("the base weight", self.base.weight)):
            if not torch.isfinite(tensor).all():
                return (f"{label} contains NaN or inf, so {bad} entries of W + delta W "
                        "would be NaN/inf")
        return (f"{bad} entries of W + delta W overflow {merged.dtype} (largest finite value "
                f"{torch.finfo(merged.dtype).max:.6g}); the update could never be taken out "
                "again")


def _stamp(weight: torch.Tensor) -> tuple[int, int]:
    """Identity and version counter of ``weight``: has anything written into it since?

    (``model.half()`` and ``.to()`` keep both, and convert the saved copy too; a
    deep copy gets new tensors, whose identity no longer matches the stamp.)
    """
    return id(weight), weight._version


def make_dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)`` for p in (0, 1), ``nn.Identity()`` for p = 0 (no wasted copy)."""
    p = check_real(p, "dropout", low=0.0, high_exclusive=1.0)
    return nn.Dropout(p) if p > 0 else nn.Identity()


class ModulesToSaveWrapper(nn.Module):
    """A module trained whole beside LoRA, as PEFT's ``modules_to_save``.

    Holds ``original_module`` (frozen, as it came) and ``modules_to_save``, a
    trainable deep copy that the forward pass uses, e.g. a new classification
    head. PEFT keeps the copies in a ``ModuleDict`` keyed by adapter name
    (``<path>.modules_to_save.default.weight``); lora_lab has one adapter, so the
    copy sits at ``<path>.modules_to_save.weight``. Inside
    :func:`~lora_lab.adapters.disable_adapter` the original module runs.
    Attributes the wrapper lacks (``weight``, ``out_features``, ...) are read
    from the module in use, as PEFT does.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if isinstance(module, (LoRALinear, ModulesToSaveWrapper, nn.ModuleList, nn.ModuleDict)):
            raise TypeError(f"a {type(module).__name__} cannot be trained as a whole "
                            "(modules_to_save)")
        trainable = copy.deepcopy(module)  # first: a failure leaves module untouched
        for p in trainable.parameters():
            p.requires_grad_(p.is_floating_point())
        self.original_module = module
        self.original_module.requires_grad_(False)
        self.modules_to_save = trainable
        self._adapter_disabled = False

    @property
    def active_module(self) -> nn.Module:
        """The module the forward pass runs: the trainable copy, or the original when disabled."""
        return self.original_module if self._adapter_disabled else self.modules_to_save

    def forward(self, *args: object, **kwargs: object) -> object:
        return self.active_module(*args, **kwargs)

    def __getattr__(self, name: str) -> object:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("original_module", "modules_to_save", "_adapter_disabled"):
                raise  # not built yet: no recursion during __init__ or unpickling
            return getattr(self.active_module, name)
