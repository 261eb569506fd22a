"""Putting LoRA into a whole model, and saving just the adapter.

``apply_lora`` swaps chosen ``nn.Linear`` modules for :class:`LoRALinear` and
freezes everything else; ``save_adapter``/``load_adapter`` write and read
Hugging Face PEFT's on-disk layout, so an adapter trained here loads in PEFT
and the other way round.

Why: an adapter is a few kilobytes next to a model of megabytes or gigabytes;
that, and one base serving many tasks, is LoRA's practical pay-off.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ._validate import check_int, check_real
from .layers import LoRALinear, make_dropout
from .numpy_lora import lora_scaling

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
_KEY = re.compile(r"^base_model\.model\.(?P<path>.+)\.(?P<which>lora_[AB])\.weight$")


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


def _plain_linears(model: nn.Module) -> list[str]:
    """Paths of ``nn.Linear`` modules that are not already the base of a LoRA layer."""
    inside_lora = {f"{name}.base" for name, _ in lora_layers(model)}
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name and name not in inside_lora]


def _matches(name: str, target_modules: str | Sequence[str]) -> bool:
    """PEFT's rule: a string is a full regex match; a list entry matches exactly or as a suffix."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


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
    string is a regular expression that must match the full path.
    Returns ``model``. Raises ``ValueError`` listing the Linear modules that
    exist when nothing matches.
    """
    model = _check_model(model)
    targets = _check_targets(target_modules)
    # validate the hyper-parameters once, before touching the model
    check_int(r, "r", minimum=1)
    check_real(alpha, "alpha", positive=True)
    make_dropout(dropout)
    if not isinstance(use_rslora, bool):
        raise TypeError(f"use_rslora must be a bool, got {type(use_rslora).__name__}")
    linears = _plain_linears(model)
    chosen = [name for name in linears if _matches(name, targets)]
    if not chosen:
        raise ValueError(f"target_modules={target_modules!r} matched no nn.Linear module; "
                         f"the model's Linear modules are: {linears}")
    for param_name, p in model.named_parameters():
        # adapters applied by an earlier call keep training
        if not param_name.endswith((".lora_A", ".lora_B")):
            p.requires_grad_(False)
    for name in chosen:
        base = model.get_submodule(name)
        _set_submodule(model, name, LoRALinear(base, r, alpha, dropout, use_rslora))
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


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``model`` (see :meth:`LoRALinear.merge`). Returns ``model``."""
    for _, layer in _require_lora(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Unmerge every LoRA layer of ``model`` (see :meth:`LoRALinear.unmerge`). Returns ``model``."""
    for _, layer in _require_lora(model):
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge each LoRA layer and put its plain ``nn.Linear`` (merged weight) back in its place.

    The result has no LoRA left: the same architecture as before ``apply_lora``,
    same outputs as the adapted model, zero extra inference cost.
    """
    for name, layer in _require_lora(model):
        if not layer.merged:
            layer.merge()
        _set_submodule(model, name, layer.base)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter: ``{"<path>.lora_A": (r, in), "<path>.lora_B": (out, r)}``, as loralib."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in _require_lora(model):
        state[f"{name}.lora_A"] = layer.lora_A.detach()
        state[f"{name}.lora_B"] = layer.lora_B.detach()
    return state


# --------------------------------------------------------------------------- saving

def _shared_setting(layers: list[tuple[str, LoRALinear]], attr: str) -> Any:
    values = {getattr(layer, attr) for _, layer in layers}
    if len(values) != 1:
        raise ValueError(f"save_adapter needs one {attr} for all LoRA layers, "
                         f"found {sorted(values)}")
    return values.pop()


def _target_modules_for(model: nn.Module, paths: list[str]) -> list[str] | str:
    """Adapted paths as PEFT target_modules; a full-match regex when a suffix would over-match."""
    names = [name for name, _ in model.named_modules()]
    ambiguous = any(other != p and other.endswith("." + p) for p in paths for other in names)
    return "|".join(re.escape(p) for p in paths) if ambiguous else paths


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_adapter(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Write the adapter of ``model`` to ``directory`` in PEFT's layout; return the directory.

    Files: ``adapter_model.safetensors`` (keys ``base_model.model.<path>.lora_A.weight``
    (r, in) and ``...lora_B.weight`` (out, r)) and ``adapter_config.json``.
    Each file is written under a temporary name and renamed, so a crash never
    leaves a half-written adapter. Merged layers are saved all the same: the
    factors do not change when merging.
    """
    layers = _require_lora(model)
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} exists and is not a directory")
    paths = [name for name, _ in layers]
    dropouts = {float(getattr(layer.dropout, "p", 0.0)) for _, layer in layers}
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": None,
        "inference_mode": True,
        "r": _shared_setting(layers, "r"),
        "lora_alpha": _shared_setting(layers, "alpha"),
        "lora_dropout": max(dropouts),
        "target_modules": _target_modules_for(model, paths),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": _shared_setting(layers, "use_rslora"),
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    tensors = {}
    for name, layer in layers:
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach().cpu().contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B.detach().cpu().contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory / WEIGHTS_NAME,
                  lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    _atomic_write(directory / CONFIG_NAME,
                  lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    return directory


# --------------------------------------------------------------------------- loading

class _AdapterConfig(NamedTuple):
    r: int
    alpha: float
    dropout: float
    use_rslora: bool


def _read_config(path: Path) -> _AdapterConfig:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable adapter config: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object")
    if raw.get("peft_type") != "LORA":
        raise ValueError(f"{path}: peft_type must be 'LORA', got {raw.get('peft_type')!r}")
    unsupported = {"use_dora": True, "fan_in_fan_out": True}
    for key, bad in unsupported.items():
        if raw.get(key) == bad:
            raise ValueError(f"{path}: {key}={bad} is not supported by lora_lab")
    if raw.get("bias", "none") != "none":
        raise ValueError(f"{path}: bias must be 'none', got {raw.get('bias')!r}")
    for key in ("rank_pattern", "alpha_pattern", "modules_to_save", "lora_bias",
                "layer_replication", "target_parameters", "trainable_token_indices"):
        if raw.get(key):
            raise ValueError(f"{path}: {key} is not supported by lora_lab, got {raw[key]!r}")
    try:
        use_rslora = raw.get("use_rslora", False)
        if not isinstance(use_rslora, bool):
            raise TypeError(f"use_rslora must be a bool, got {use_rslora!r}")
        return _AdapterConfig(r=check_int(raw.get("r"), "r", minimum=1),
                              alpha=check_real(raw.get("lora_alpha"), "lora_alpha", positive=True),
                              dropout=check_real(raw.get("lora_dropout", 0.0), "lora_dropout",
                                                 low=0.0, high_exclusive=1.0),
                              use_rslora=use_rslora)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid adapter config: {exc}") from None


def _read_tensors(path: Path, r: int) -> dict[str, dict[str, torch.Tensor]]:
    """Parse the safetensors file into ``{module path: {"lora_A": ..., "lora_B": ...}}``."""
    try:
        flat = load_file(path)  # safetensors: no pickle, nothing executed
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a valid safetensors file: {exc}") from None
    per_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"{path}: unexpected key {key!r}; expected "
                             "'base_model.model.<module>.lora_A.weight' or '...lora_B.weight'")
        if not tensor.is_floating_point() or tensor.ndim != 2:
            raise ValueError(f"{path}: {key} must be a 2-D float tensor, got "
                             f"{tensor.dtype} {tuple(tensor.shape)}")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: {key} contains NaN or inf")
        per_module.setdefault(match["path"], {})[match["which"]] = tensor
    if not per_module:
        raise ValueError(f"{path} holds no LoRA tensors")
    for name, pair in per_module.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise ValueError(f"{path}: module {name!r} has {sorted(pair)}, needs lora_A and lora_B")
        A, B = pair["lora_A"], pair["lora_B"]
        if A.shape[0] != r or B.shape[1] != r:
            raise ValueError(f"{path}: module {name!r} has A {tuple(A.shape)} and B "
                             f"{tuple(B.shape)}, inconsistent with r={r} in the config")
    return per_module


def load_adapter(model: nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Load an adapter in PEFT's layout (ours or PEFT's own) into ``model``; return ``model``.

    If ``model`` has no LoRA layers yet, they are created on exactly the saved
    modules; otherwise the saved modules must be exactly the model's LoRA
    layers. Every key, shape and value is checked *before* anything is
    changed, so a wrong or corrupt adapter raises ``ValueError`` and leaves
    ``model`` as it was. Only safetensors is read: no pickle is ever loaded.
    """
    model = _check_model(model)
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            raise ValueError(f"directory {str(directory)!r} has no {name}")
    config = _read_config(directory / CONFIG_NAME)
    saved = _read_tensors(directory / WEIGHTS_NAME, config.r)

    existing = dict(lora_layers(model))
    if existing:
        if set(saved) != set(existing):
            raise ValueError("the adapter was saved for another architecture: it adapts "
                             f"{sorted(saved)}, the model has LoRA on {sorted(existing)}")
        other_rank = {name: layer.r for name, layer in existing.items() if layer.r != config.r}
        if other_rank:
            raise ValueError(f"the adapter has r={config.r}, the model's LoRA layers have "
                             f"{other_rank}")
        merged = [name for name, layer in existing.items() if layer.merged]
        if merged:
            raise ValueError(f"unmerge the model before loading an adapter; merged: {merged}")
        shapes = {name: (layer.out_features, layer.in_features) for name, layer in existing.items()}
    else:
        modules = dict(model.named_modules())
        missing = [name for name in saved if not isinstance(modules.get(name), nn.Linear)]
        if missing:
            raise ValueError("the adapter was saved for another architecture: the model has no "
                             f"nn.Linear at {missing}; its Linear modules are "
                             f"{_plain_linears(model)}")
        shapes = {name: (modules[name].out_features, modules[name].in_features) for name in saved}
    for name, pair in saved.items():
        out_f, in_f = shapes[name]
        if pair["lora_A"].shape != (config.r, in_f) or pair["lora_B"].shape != (out_f, config.r):
            raise ValueError(f"the adapter was saved for another architecture: {name!r} needs "
                             f"A ({config.r}, {in_f}) and B ({out_f}, {config.r}), the file has "
                             f"{tuple(pair['lora_A'].shape)} and {tuple(pair['lora_B'].shape)}")

    # every check passed: now, and only now, change the model
    if not existing:
        pattern = "|".join(re.escape(name) for name in saved)
        apply_lora(model, pattern, r=config.r, alpha=config.alpha, dropout=config.dropout,
                   use_rslora=config.use_rslora)
    with torch.no_grad():
        for name, layer in lora_layers(model):
            layer.alpha, layer.use_rslora = config.alpha, config.use_rslora
            layer.scaling = lora_scaling(config.alpha, config.r, config.use_rslora)
            layer.dropout = make_dropout(config.dropout)
            layer.lora_A.copy_(saved[name]["lora_A"])
            layer.lora_B.copy_(saved[name]["lora_B"])
    return model
