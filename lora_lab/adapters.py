"""Putting LoRA into a whole model: choosing targets, counting, merging.

``apply_lora`` swaps chosen ``nn.Linear`` modules for :class:`LoRALinear` and
freezes everything else, following PEFT's rules for ``target_modules``;
``merge_lora``/``unmerge_lora``/``merge_and_unload`` fold the updates into the
base weights for inference. Saving and loading live in :mod:`lora_lab.peft_format`.

Why: LoRA is applied to a handful of chosen layers of a big model, never to one
layer alone; this is the bookkeeping that makes that a one-line call.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ._validate import check_int, check_real
from .layers import LoRALinear, make_dropout

# --------------------------------------------------------------------------- finding layers

def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """Yield ``(module path, layer)`` for every :class:`LoRALinear` in ``model``."""
    for name, module in _check_model(model).named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every named submodule except the insides of LoRA layers (their base and dropout)."""
    adapted = [name for name, _ in lora_layers(model)]
    return [(name, m) for name, m in model.named_modules()
            if name and not any(name.startswith(p + ".") for p in adapted)]


def _plain_linears(model: nn.Module) -> list[str]:
    """Paths of ``nn.Linear`` modules that have no LoRA adapter yet."""
    return [name for name, m in _candidates(model)
            if isinstance(m, nn.Linear) and not isinstance(m, LoRALinear)]


def _matches(name: str, target_modules: str | Sequence[str]) -> bool:
    """PEFT's rule: a string is a full regex match; a list entry matches exactly or as a suffix."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def _choose_targets(model: nn.Module, target_modules: str | list[str]) -> list[str]:
    """Paths of the Linear modules that ``target_modules`` selects, or a ``ValueError``."""
    if isinstance(model, (nn.Linear, LoRALinear)):
        raise ValueError("model is itself a single layer: wrap it directly with "
                         "LoRALinear(layer); apply_lora adapts layers inside a model")
    if target_modules == "all-linear":  # PEFT's shorthand: every Linear layer
        return _plain_linears(model)
    matched = [(name, m) for name, m in _candidates(model) if _matches(name, target_modules)]
    problems = [f"{name} already has a LoRA adapter" for name, m in matched
                if isinstance(m, LoRALinear)]
    problems += [f"{name} is a {type(m).__name__}, not an nn.Linear" for name, m in matched
                 if not isinstance(m, nn.Linear)]
    paths_of: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        paths_of.setdefault(id(m), []).append(name)
    for name, m in matched:
        if len(paths_of[id(m)]) > 1:
            problems.append(f"{name} is shared with {[p for p in paths_of[id(m)] if p != name]}; "
                            "adapt each use separately by giving them their own Linear")
        parent = model.get_submodule(name.rpartition(".")[0])
        if isinstance(parent, nn.MultiheadAttention):
            problems.append(f"{name} belongs to nn.MultiheadAttention, which reads its weight "
                            "directly and would bypass the adapter")
    if problems:
        raise ValueError(f"target_modules={target_modules!r} cannot be adapted: "
                         + "; ".join(problems))
    if not matched:
        raise ValueError(f"target_modules={target_modules!r} matched no nn.Linear module; "
                         f"the model's Linear modules are: {_plain_linears(model)}")
    return [name for name, _ in matched]


def _check_targets(target_modules: Any) -> str | list[str]:
    if isinstance(target_modules, str):
        try:
            re.compile(target_modules)
        except re.error as exc:
            raise ValueError(f"target_modules is not a valid regular expression: {exc}") from None
        return target_modules
    if (isinstance(target_modules, (list, tuple, set, frozenset)) and target_modules
            and all(isinstance(t, str) and t for t in target_modules)):
        return sorted(target_modules)
    raise TypeError("target_modules must be a regex string or a non-empty list of module "
                    f"names, got {target_modules!r}")


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)


# --------------------------------------------------------------------------- applying

def apply_lora(model: nn.Module, target_modules: str | Sequence[str], r: int = 8,
               alpha: float = 16, dropout: float = 0.0, use_rslora: bool = False) -> nn.Module:
    """Replace matching ``nn.Linear`` modules of ``model`` by :class:`LoRALinear`, in place.

    Every other parameter is frozen, so only the LoRA factors train.
    ``target_modules`` follows PEFT: a list entry matches a module path exactly
    or as a dotted suffix (``"q"`` matches ``"layers.0.attn.q"``); a single
    string is a regular expression that must match the full path, and
    ``"all-linear"`` selects every Linear layer. New layers take the model's
    train/eval mode. Returns ``model``. Raises ``ValueError`` listing the Linear
    modules that exist when nothing matches, and naming any match that cannot be
    adapted (not a Linear, already adapted, shared, or inside
    ``nn.MultiheadAttention``).
    """
    model = _check_model(model)
    targets = _check_targets(target_modules)
    # validate the hyper-parameters once, before touching the model
    check_int(r, "r", minimum=1)
    check_real(alpha, "alpha", positive=True)
    make_dropout(dropout)
    if not isinstance(use_rslora, bool):
        raise TypeError(f"use_rslora must be a bool, got {type(use_rslora).__name__}")
    chosen = _choose_targets(model, targets)
    for param_name, p in model.named_parameters():
        # adapters applied by an earlier call keep training
        if not param_name.endswith((".lora_A", ".lora_B")):
            p.requires_grad_(False)
    for name in chosen:
        base = model.get_submodule(name)
        layer = LoRALinear(base, r, alpha, dropout, use_rslora).train(base.training)
        _set_submodule(model, name, layer)
    return model


class ParameterCount(NamedTuple):
    """Trainable and total parameter counts, as PEFT's ``get_nb_trainable_parameters``."""

    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        """Share of parameters that train, in [0, 1]."""
        return self.trainable / self.total if self.total else 0.0


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count ``(trainable, total)`` parameters of ``model`` (shared tensors once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in _check_model(model).parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return ParameterCount(trainable, total)


def _require_lora(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError("model has no LoRA layers; call apply_lora(model, target_modules) first")
    return layers


def _all_in_state(model: nn.Module, merged: bool, action: str) -> list[LoRALinear]:
    layers = _require_lora(model)
    wrong = [name or "<root>" for name, layer in layers if layer.merged != merged]
    if wrong:  # refuse before touching any layer, so the model never ends up half merged
        raise RuntimeError(f"cannot {action}: these LoRA layers are already "
                           f"{'unmerged' if merged else 'merged'}: {wrong}")
    return [layer for _, layer in layers]


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``model`` (see :meth:`LoRALinear.merge`). Returns ``model``."""
    for layer in _all_in_state(model, merged=False, action="merge"):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Unmerge every LoRA layer of ``model`` (see :meth:`LoRALinear.unmerge`). Returns ``model``."""
    for layer in _all_in_state(model, merged=True, action="unmerge"):
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge each LoRA layer and put its plain ``nn.Linear`` (merged weight) back in its place.

    The result has no LoRA left: the same architecture as before ``apply_lora``,
    same outputs as the adapted model, zero extra inference cost. Returns the
    model (or, for a bare ``LoRALinear``, its merged base layer).
    """
    for name, layer in _require_lora(model):
        if not layer.merged:
            layer.merge()
        if not name:
            return layer.base
        _set_submodule(model, name, layer.base)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter: ``{"<path>.lora_A": (r, in), "<path>.lora_B": (out, r)}``, as loralib."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in _require_lora(model):
        state[f"{name}.lora_A"] = layer.lora_A.detach()
        state[f"{name}.lora_B"] = layer.lora_B.detach()
    return state
