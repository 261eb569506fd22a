"""Saving and loading an adapter in Hugging Face PEFT's file layout.

``save_adapter`` writes ``adapter_model.safetensors`` and ``adapter_config.json``
exactly as ``peft.PeftModel.save_pretrained`` does for a LoRA adapter, so PEFT's
``PeftModel.from_pretrained(base, directory)`` loads it; ``load_adapter`` reads
that layout (ours or PEFT's own), checks everything before touching the model,
and never unpickles anything (safetensors only).

Why: an adapter is a few kilobytes next to a model of megabytes or gigabytes;
that, and one base serving many tasks, is LoRA's practical pay-off.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ._validate import check_int, check_real
from .adapters import _check_model, _plain_linears, _require_lora, apply_lora, lora_layers
from .layers import LoRALinear, make_dropout

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
CONFIG_HASH_KEY = "lora_lab_config_sha256"  # safetensors metadata: which config goes with it
_KEY = re.compile(r"^base_model\.model\.(?P<path>.+)\.(?P<which>lora_[AB])\.weight$")


# --------------------------------------------------------------------------- saving

def _shared_setting(layers: list[tuple[str, LoRALinear]], attr: str) -> Any:
    values = {float(getattr(layer.dropout, "p", 0.0)) if attr == "dropout" else getattr(layer, attr)
              for _, layer in layers}
    if len(values) != 1:
        raise ValueError(f"save_adapter needs one {attr} for all LoRA layers, "
                         f"found {sorted(values)}")
    return values.pop()


def _target_modules_for(model: nn.Module, paths: list[str]) -> list[str] | str:
    """Adapted paths as PEFT target_modules; a full-match regex when a suffix would over-match."""
    names = [name for name, _ in model.named_modules()]
    ambiguous = any(other != p and other.endswith("." + p) for p in paths for other in names)
    return "|".join(re.escape(p) for p in paths) if ambiguous else paths


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_pair(files: dict[Path, Callable[[str], None]]) -> None:
    """Write every file under a temporary name first, then rename them all.

    A failure while writing leaves the old files untouched; the renames at the
    end are quick and each is atomic. Files get the usual permissions (umask),
    not ``mkstemp``'s private 0600.
    """
    umask = os.umask(0)
    os.umask(umask)
    temps: dict[Path, str] = {}
    try:
        for path, write in files.items():
            fd, temps[path] = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                               dir=path.parent)
            os.close(fd)
            write(temps[path])
            os.chmod(temps[path], 0o666 & ~umask)
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            Path(tmp).unlink(missing_ok=True)


def save_adapter(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Write the adapter of ``model`` to ``directory`` in PEFT's layout; return the directory.

    Files: ``adapter_model.safetensors`` (keys ``base_model.model.<path>.lora_A.weight``
    (r, in) and ``...lora_B.weight`` (out, r)) and ``adapter_config.json``.
    Both are written under temporary names and only then renamed, so a failed
    save leaves the previous adapter as it was; the weights also record a hash
    of their config, so ``load_adapter`` refuses a pair from two different saves.
    Merged layers are saved all the same: merging does not change the factors.
    """
    layers = _require_lora(model)
    if any(not name for name, _ in layers):
        raise ValueError("model is a bare LoRALinear: put it inside a model (e.g. "
                         "nn.Sequential(layer)) so that the adapter has a module path")
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} exists and is not a directory")
    paths = [name for name, _ in layers]
    config = {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": None,
        "inference_mode": True,
        "r": _shared_setting(layers, "r"),
        "lora_alpha": _shared_setting(layers, "alpha"),
        "lora_dropout": _shared_setting(layers, "dropout"),
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
    config_text = json.dumps(config, indent=2) + "\n"
    metadata = {"format": "pt", CONFIG_HASH_KEY: _sha256(config_text)}
    directory.mkdir(parents=True, exist_ok=True)
    _write_pair({
        directory / WEIGHTS_NAME: lambda tmp: save_file(tensors, tmp, metadata=metadata),
        directory / CONFIG_NAME: lambda tmp: Path(tmp).write_text(config_text),
    })
    return directory


# --------------------------------------------------------------------------- loading

class _AdapterConfig(NamedTuple):
    r: int
    alpha: float
    dropout: float
    use_rslora: bool
    sha256: str


# Config fields that describe *where* and *how big* an adapter is, or are bookkeeping:
# any value is fine. Every other field must be absent or empty/false, because it
# names a feature (DoRA, PiSSA, LoftQ, aLoRA, ...) that changes what the adapter computes.
_HARMLESS_FIELDS = {
    "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode",
    "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules",
    "layers_to_transform", "layers_pattern", "auto_mapping", "peft_version",
    "megatron_core", "qalora_group_size", "init_lora_weights", "bias", "use_rslora",
}
# init_lora_weights values that only choose starting values of A and B; "pissa", "olora",
# "corda", "loftq", ... also rewrite the base weights, which this package does not do.
_PLAIN_INITS = (True, False, "gaussian")


def _read_config(path: Path) -> _AdapterConfig:
    try:
        text = path.read_text()
        raw = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable adapter config: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object")
    if raw.get("peft_type") != "LORA":
        raise ValueError(f"{path}: peft_type must be 'LORA', got {raw.get('peft_type')!r}")
    if raw.get("bias", "none") != "none":
        raise ValueError(f"{path}: bias must be 'none', got {raw.get('bias')!r}")
    if raw.get("init_lora_weights", True) not in _PLAIN_INITS:
        raise ValueError(f"{path}: init_lora_weights={raw['init_lora_weights']!r} rewrites the "
                         "base weights; lora_lab supports only plain LoRA adapters")
    unsupported = sorted(k for k, v in raw.items() if k not in _HARMLESS_FIELDS and v)
    if unsupported:
        raise ValueError(f"{path}: lora_lab supports plain LoRA adapters only; these settings "
                         f"are not supported: {', '.join(f'{k}={raw[k]!r}' for k in unsupported)}")
    try:
        use_rslora = raw.get("use_rslora", False)
        if not isinstance(use_rslora, bool):
            raise TypeError(f"use_rslora must be a bool, got {use_rslora!r}")
        return _AdapterConfig(r=check_int(raw.get("r"), "r", minimum=1),
                              alpha=check_real(raw.get("lora_alpha"), "lora_alpha", positive=True),
                              dropout=check_real(raw.get("lora_dropout", 0.0), "lora_dropout",
                                                 low=0.0, high_exclusive=1.0),
                              use_rslora=use_rslora, sha256=_sha256(text))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid adapter config: {exc}") from None


def _read_tensors(path: Path, config: _AdapterConfig) -> dict[str, dict[str, torch.Tensor]]:
    """Parse the safetensors file into ``{module path: {"lora_A": ..., "lora_B": ...}}``."""
    try:
        with safe_open(path, framework="pt") as file:  # safetensors: no pickle, nothing executed
            metadata = file.metadata() or {}
            flat = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a valid safetensors file: {exc}") from None
    saved_with = metadata.get(CONFIG_HASH_KEY)
    if saved_with is not None and saved_with != config.sha256:
        raise ValueError(f"{path} was saved with a different {CONFIG_NAME} than the one beside "
                         "it (the two files come from different saves)")
    per_module: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in flat.items():
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"{path}: unexpected key {key!r}; expected "
                             "'base_model.model.<module>.lora_A.weight' or '...lora_B.weight'")
        if not tensor.is_floating_point() or tensor.ndim != 2:
            raise ValueError(f"{path}: {key} must be a 2-D float tensor, got "
                             f"{tensor.dtype} {tuple(tensor.shape)}")
        if not torch.isfinite(tensor.float()).all():
            raise ValueError(f"{path}: {key} contains NaN or inf")
        per_module.setdefault(match["path"], {})[match["which"]] = tensor
    if not per_module:
        raise ValueError(f"{path} holds no LoRA tensors")
    for name, pair in per_module.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise ValueError(f"{path}: module {name!r} has {sorted(pair)}, needs lora_A and lora_B")
        A, B = pair["lora_A"], pair["lora_B"]
        if A.shape[0] != config.r or B.shape[1] != config.r:
            raise ValueError(f"{path}: module {name!r} has A {tuple(A.shape)} and B "
                             f"{tuple(B.shape)}, inconsistent with r={config.r} in the config")
    return per_module


def load_adapter(model: nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Load an adapter in PEFT's layout (ours or PEFT's own) into ``model``; return ``model``.

    If ``model`` has no LoRA layers yet, they are created on exactly the saved
    modules; otherwise the saved modules must be exactly the model's LoRA
    layers. Every key, shape and value is checked *before* anything is
    changed, so a wrong or corrupt adapter raises ``ValueError`` and leaves
    ``model`` as it was. Only safetensors is read: no pickle is ever loaded.
    As with :func:`apply_lora`, the adapter is left trainable and every other
    parameter frozen (PEFT's ``from_pretrained`` freezes the adapter too unless
    ``is_trainable=True``).
    """
    model = _check_model(model)
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            nested = sorted(p.parent.name for p in directory.glob(f"*/{CONFIG_NAME}"))
            hint = f"; PEFT saves named adapters in subfolders, try {nested}" if nested else ""
            raise ValueError(f"directory {str(directory)!r} has no {name}{hint}")
    config = _read_config(directory / CONFIG_NAME)
    saved = _read_tensors(directory / WEIGHTS_NAME, config)

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
            if float(getattr(layer.dropout, "p", 0.0)) != config.dropout:
                layer.dropout = make_dropout(config.dropout).train(layer.training)
            layer.lora_A.copy_(saved[name]["lora_A"])
            layer.lora_B.copy_(saved[name]["lora_B"])
    return model
