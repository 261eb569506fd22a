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

import copy
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ._validate import check_bool, check_int, check_real
from .adapters import (
    TargetRules,
    _all_or_nothing,
    _candidates,
    _check_model,
    _install,
    _keep_problems,
    _linear_names,
    _lora_problems,
    _paths_of,
    _require_lora,
    _sharing_problems,
    lora_layers,
    saved_modules,
    select_modules,
)
from .layers import LoRALinear, check_base_linear, make_dropout

WEIGHTS_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
# safetensors metadata: a hash of the settings (not the bytes) of the config saved with it
SETTINGS_HASH_KEY = "lora_lab_settings_sha256"
_LORA_KEY = re.compile(r"^(?P<path>.+)\.(?P<which>lora_[AB])\.weight$")
# PEFT's task types (peft.utils.peft_types.TaskType, PEFT 0.21): with one of these in
# adapter_config.json, PeftModel.from_pretrained returns the task's class (CAUSAL_LM:
# PeftModelForCausalLM); without one, a plain PeftModel.
PEFT_TASK_TYPES = ("SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS",
                   "FEATURE_EXTRACTION")

# The config fields that decide what a loaded adapter computes: the two files are
# paired on these (canonical JSON, so key order, indentation and extra bookkeeping
# fields such as base_model_name_or_path do not matter).
_SETTINGS = ("r", "lora_alpha", "lora_dropout", "use_rslora", "target_modules",
             "exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save")


# --------------------------------------------------------------------------- shared helpers

def _canonical(value: Any) -> Any:
    """Numbers as floats, lists as sorted lists: equal settings give equal JSON."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return sorted((_canonical(v) for v in value), key=json.dumps)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def _settings_sha256(config: dict[str, Any]) -> str:
    settings = {key: _canonical(config.get(key)) for key in _SETTINGS}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _peft_modules_to_save(model: nn.Module, entries: list[str] | None) -> list[str]:
    """Paths PEFT wraps for ``modules_to_save``: its rule is a plain ``path.endswith(entry)``
    (peft/utils/other.py ``_set_trainable``), so ``"head"`` also selects ``"lm_head"``."""
    if not entries:
        return []
    return sorted(name for name, _ in _candidates(model)
                  if any(name.endswith(entry) for entry in entries))


# --------------------------------------------------------------------------- saving

def _shared_setting(layers: list[tuple[str, LoRALinear]], attr: str) -> Any:
    values = {float(getattr(layer.dropout, "p", 0.0)) if attr == "dropout" else getattr(layer, attr)
              for _, layer in layers}
    if len(values) != 1:
        raise ValueError(f"save_adapter needs one {attr} for all LoRA layers, "
                         f"found {sorted(values)}")
    return values.pop()


def _target_modules_for(model: nn.Module, paths: list[str], keep: list[str]) -> list[str] | str:
    """``target_modules`` that makes PEFT select exactly ``paths``: the list of paths, or, when
    a path is also a dotted suffix of another module's path, a full-match regex."""
    rules = TargetRules(paths, modules_to_save=keep or None)
    selected = sorted({n for names in select_modules(model, rules).values() for n in names})
    return paths if selected == paths else "|".join(re.escape(p) for p in paths)


def _check_peft_reads_it(model: nn.Module, config: dict[str, Any], paths: list[str],
                         keep: list[str]) -> None:
    """``ValueError`` unless PEFT's rules, applied to ``config``, select exactly our modules."""
    rules = TargetRules(config["target_modules"], modules_to_save=keep or None)
    selected = sorted({n for names in select_modules(model, rules).values() for n in names})
    kept = _peft_modules_to_save(model, keep)
    if selected != paths or kept != keep:
        raise ValueError("save_adapter cannot describe this adapter in PEFT's config: PEFT's "
                         f"rules would adapt {selected} (not {paths}) and train {kept} whole "
                         f"(not {keep}); rename the modules so no path ends with another")


def _tensors_to_save(layers: list[tuple[str, LoRALinear]],
                     wrappers: list[tuple[str, Any]]) -> dict[str, torch.Tensor]:
    tensors = {}
    for name, layer in layers:
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A.detach().cpu().contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B.detach().cpu().contiguous()
    for name, wrapper in wrappers:  # PEFT saves the trained copy under the module's own path
        for key, value in wrapper.modules_to_save.state_dict().items():
            tensors[f"{PEFT_PREFIX}{name}.{key}"] = value.detach().cpu().contiguous()
    return tensors


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


def _check_directory(directory: Any) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"directory {str(directory)!r} exists and is not a directory")
    return directory


def _check_task_type(task_type: Any) -> str | None:
    """``task_type`` if it is None or one of PEFT's task types, else TypeError/ValueError."""
    if task_type is None:
        return None
    if not isinstance(task_type, str):
        raise TypeError(f"task_type must be None or a str, one of {list(PEFT_TASK_TYPES)}, got "
                        f"{type(task_type).__name__}")
    if task_type not in PEFT_TASK_TYPES:
        raise ValueError(f"task_type must be None or one of PEFT's task types "
                         f"{list(PEFT_TASK_TYPES)}, got {task_type!r}")
    return PEFT_TASK_TYPES[PEFT_TASK_TYPES.index(task_type)]   # a plain str (not an enum)


def _alpha_for_config(alpha: float) -> int | float:
    """``alpha`` as PEFT writes it: an int when it is a whole number (``16``, not ``16.0``)."""
    return int(alpha) if float(alpha).is_integer() else float(alpha)


def save_adapter(model: nn.Module, directory: str | os.PathLike[str], *,
                 task_type: str | None = None) -> Path:
    """Write the adapter of ``model`` to ``directory`` in PEFT's layout; return the directory.

    Files: ``adapter_model.safetensors`` (keys ``base_model.model.<path>.lora_A.weight``
    (r, in) and ``...lora_B.weight`` (out, r); for each module in
    ``modules_to_save`` its trained copy's entries as ``base_model.model.<path>.weight``,
    as PEFT's ``get_peft_model_state_dict`` names them) and ``adapter_config.json``.
    Both are written under temporary names and only then renamed, so a failed
    save leaves the previous adapter as it was; the weights also record a hash
    of the config's settings, so ``load_adapter`` refuses a pair from two
    different saves. Merged layers are saved all the same: merging does not
    change the factors. ``lora_alpha`` is written as an int when it is a whole
    number, as PEFT writes it. ``task_type``: None (PEFT then loads the adapter as
    a plain ``PeftModel``) or one of PEFT's task types :data:`PEFT_TASK_TYPES`, e.g.
    ``"CAUSAL_LM"`` for a ``transformers`` causal LM (``PeftModelForCausalLM``, as
    ``get_peft_model`` with ``LoraConfig(task_type="CAUSAL_LM")`` gives). Raises
    ``ValueError`` for a bare ``LoRALinear``, layers with different
    r/alpha/dropout/use_rslora, a LoRA layer used at two paths, module paths PEFT's
    matching rules could not tell apart, or a ``task_type`` PEFT does not know
    (``TypeError`` if it is not a str); nothing is written then.
    """
    task_type = _check_task_type(task_type)
    layers = _require_lora(model)
    if any(not name for name, _ in layers):
        raise ValueError("model is a bare LoRALinear: put it inside a model (e.g. "
                         "nn.Sequential(layer)) so that the adapter has a module path")
    directory = _check_directory(directory)
    paths_of = _paths_of(model)
    shared = {name: paths_of[id(layer)] for name, layer in layers if len(paths_of[id(layer)]) > 1}
    if shared:
        raise ValueError(f"a LoRA layer used at several paths cannot be saved: {shared}")
    paths = sorted(name for name, _ in layers)  # PEFT's rules select in sorted order
    wrappers = saved_modules(model)
    keep = sorted(name for name, _ in wrappers)
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": None,
        "inference_mode": True,
        "r": _shared_setting(layers, "r"),
        "lora_alpha": _alpha_for_config(_shared_setting(layers, "alpha")),
        "lora_dropout": _shared_setting(layers, "dropout"),
        "target_modules": _target_modules_for(model, paths, keep),
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": _shared_setting(layers, "use_rslora"),
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": keep or None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    _check_peft_reads_it(model, config, paths, keep)
    tensors = _tensors_to_save(layers, wrappers)
    config_text = json.dumps(config, indent=2) + "\n"
    metadata = {"format": "pt", SETTINGS_HASH_KEY: _settings_sha256(config)}
    directory.mkdir(parents=True, exist_ok=True)
    _write_pair({
        directory / WEIGHTS_NAME: lambda tmp: save_file(tensors, tmp, metadata=metadata),
        directory / CONFIG_NAME: lambda tmp: Path(tmp).write_text(config_text),
    })
    return directory


# --------------------------------------------------------------------------- loading: config

# LoraConfig fields (peft/tuners/lora/config.py) that load_adapter reproduces, or
# that do not change what PeftModel.from_pretrained computes for nn.Linear targets
# (fan_in_fan_out is reset for nn.Linear; use_qalora only acts on GPTQ layers; the
# eva/lora_ga/mica/orthogonal/gaussian inits only choose starting values of A and B).
_ACCEPTED = {
    "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode",
    "auto_mapping", "peft_version", "r", "lora_alpha", "lora_dropout", "use_rslora",
    "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern",
    "modules_to_save", "fan_in_fan_out", "ensure_weight_tying", "use_qalora",
    "qalora_group_size", "megatron_core", "eva_config", "lora_ga_config", "runtime_config",
    "bias", "init_lora_weights",
}
_PLAIN_INITS = (True, False, "gaussian", "orthogonal", "eva", "lora_ga", "mica")
# Fields that change what the adapter computes; any non-empty value is refused.
_REFUSED = {
    "use_dora": "DoRA rescales the weight by a learned magnitude vector",
    "lora_bias": "adds a trained bias to lora_B",
    "rank_pattern": "gives some layers another rank",
    "alpha_pattern": "gives some layers another alpha",
    "alora_invocation_tokens": "aLoRA applies the update only after the invocation tokens",
    "velora_config": "VeLoRA is a variant with its own saved state",
    "monteclora_config": "MonteCLoRA samples the update",
    "use_bdlora": "BD-LoRA uses block-diagonal factors",
    "arrow_config": "Arrow routes between several adapters",
    "kasa_config": "KaSA truncates the base weight and adds a learned diagonal",
    "target_parameters": "adapts raw parameters rather than nn.Linear modules",
    "trainable_token_indices": "trains rows of the embedding matrix",
    "layer_replication": "duplicates layers of the base model",
    "megatron_config": "builds Megatron parallel layers",
    "loftq_config": "LoftQ quantises the base weights",
    "corda_config": "CorDA rewrites the base weights",
}


class _AdapterConfig(NamedTuple):
    r: int
    alpha: float
    dropout: float
    use_rslora: bool
    rules: TargetRules
    modules_to_save: list[str] | None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable adapter config: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return raw


def _option_problem(key: str, value: Any) -> str | None:
    """Why the config field ``key`` = ``value`` cannot be reproduced, or None if it can."""
    if key == "bias" and value != "none":
        return f"bias={value!r} (also trains and saves the base layers' biases)"
    if key == "init_lora_weights" and value not in _PLAIN_INITS:
        return (f"init_lora_weights={value!r} (rewrites the base weights when the adapter is "
                "created, and PEFT does it again on loading)")
    if key in _ACCEPTED or not value:
        return None
    reason = _REFUSED.get(key, "an option lora_lab does not know")
    return f"{key}={value!r} ({reason})"


def _check_options(raw: dict[str, Any], path: Path) -> None:
    if raw.get("peft_type") != "LORA":
        raise ValueError(f"{path}: peft_type must be 'LORA', got {raw.get('peft_type')!r}")
    problems = [p for key, value in sorted(raw.items())
                if (p := _option_problem(key, value)) is not None]
    if problems:
        raise ValueError(f"{path}: lora_lab loads plain LoRA adapters only; these settings "
                         f"would change the outputs: {'; '.join(problems)}")


def _names_or_none(raw: dict[str, Any], key: str, *, regex: bool = False,
                   allow_str: bool = True) -> str | list[str] | None:
    """A config field holding None, a string (if allowed) or a list of strings."""
    value = raw.get(key)
    if value is None or (allow_str and isinstance(value, str)):
        items = [value] if isinstance(value, str) else []
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        kinds = "a string or a list of strings" if allow_str else "a list of strings"
        raise TypeError(f"{key} must be {kinds} or null, got {value!r}")
    for item in items if regex else ():
        try:
            re.compile(item)
        except re.error as exc:
            raise ValueError(f"{key} entry {item!r} is not a valid regular expression: "
                             f"{exc}") from None
    return value


def _layer_indices(raw: dict[str, Any]) -> int | list[int] | None:
    value = raw.get("layers_to_transform")
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        return value
    raise TypeError(f"layers_to_transform must be an int, a list of ints or null, got {value!r}")


def _parse_config(raw: dict[str, Any], path: Path) -> _AdapterConfig:
    try:
        targets = _names_or_none(raw, "target_modules", regex=True)
        if not targets:
            raise ValueError("target_modules must name the adapted modules, got "
                             f"{raw.get('target_modules')!r}")
        rules = TargetRules(targets, _names_or_none(raw, "exclude_modules", regex=True),
                            _layer_indices(raw), _names_or_none(raw, "layers_pattern"),
                            _names_or_none(raw, "modules_to_save", regex=True, allow_str=False))
        return _AdapterConfig(r=check_int(raw.get("r"), "r", minimum=1),
                              alpha=check_real(raw.get("lora_alpha"), "lora_alpha", positive=True),
                              dropout=check_real(raw.get("lora_dropout", 0.0), "lora_dropout",
                                                 low=0.0, high_exclusive=1.0),
                              use_rslora=check_bool(raw.get("use_rslora", False), "use_rslora"),
                              rules=rules, modules_to_save=rules.modules_to_save)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid adapter config: {exc}") from None


# --------------------------------------------------------------------------- loading: weights

def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(path, framework="pt") as file:  # safetensors: no pickle, nothing executed
            metadata = file.metadata() or {}
            flat = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a valid safetensors file: {exc}") from None
    if not flat:
        raise ValueError(f"{path} holds no tensors")
    return flat, metadata


def _check_tensor(path: Path, key: str, tensor: torch.Tensor, lora: bool) -> None:
    if lora and (not tensor.is_floating_point() or tensor.ndim != 2):
        raise ValueError(f"{path}: {key} must be a 2-D float tensor, got "
                         f"{tensor.dtype} {tuple(tensor.shape)}")
    if tensor.is_floating_point() and not torch.isfinite(tensor.float()).all():
        raise ValueError(f"{path}: {key} contains NaN or inf")


def _split_weights(flat: dict[str, torch.Tensor], path: Path, r: int) -> tuple[
        dict[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """``({module: {"lora_A": A, "lora_B": B}}, {other key: tensor})``, keys without prefix."""
    lora: dict[str, dict[str, torch.Tensor]] = {}
    other: dict[str, torch.Tensor] = {}
    for key, tensor in flat.items():
        if not key.startswith(PEFT_PREFIX):
            raise ValueError(f"{path}: unexpected key {key!r}; PEFT's keys start with "
                             f"{PEFT_PREFIX!r}")
        match = _LORA_KEY.match(key[len(PEFT_PREFIX):])
        _check_tensor(path, key, tensor, lora=match is not None)
        if match is None:
            other[key[len(PEFT_PREFIX):]] = tensor
        else:
            lora.setdefault(match["path"], {})[match["which"]] = tensor
    for name, pair in lora.items():
        if set(pair) != {"lora_A", "lora_B"}:
            raise ValueError(f"{path}: module {name!r} has {sorted(pair)}, needs lora_A and lora_B")
        if pair["lora_A"].shape[0] != r or pair["lora_B"].shape[1] != r:
            raise ValueError(f"{path}: module {name!r} has A {tuple(pair['lora_A'].shape)} and B "
                             f"{tuple(pair['lora_B'].shape)}, inconsistent with r={r} in the "
                             "config")
    return lora, other


# --------------------------------------------------------------------------- loading: the plan

def _lora_targets(model: nn.Module, config: _AdapterConfig,
                  lora: dict[str, dict[str, torch.Tensor]]) -> list[str]:
    """The modules the config selects in ``model``; they must be exactly those in the weights."""
    selected = select_modules(model, config.rules)
    targets = sorted({n for names in selected.values() for n in names})
    if not targets:
        raise ValueError("the adapter was saved for another architecture: target_modules="
                         f"{config.rules.target_modules!r} selects no module of this model; "
                         f"its Linear modules are {_linear_names(model)}")
    missing = [t for t in targets if t not in lora]
    unexpected = sorted(set(lora) - set(targets))
    parts = ([f"the config targets {missing} but the weights hold no lora_A/lora_B for them"]
             if missing else [])
    parts += [f"the weights hold {unexpected}, which the config does not target"] \
        if unexpected else []
    if parts:
        raise ValueError("the adapter is incomplete or was saved for another architecture: "
                         + "; ".join(parts))
    return targets


def _check_existing(existing: dict[str, LoRALinear], targets: list[str], r: int) -> None:
    if sorted(existing) != targets:
        raise ValueError("the adapter was saved for another architecture: it adapts "
                         f"{targets}, the model has LoRA on {sorted(existing)}")
    other_rank = {name: layer.r for name, layer in existing.items() if layer.r != r}
    if other_rank:
        raise ValueError(f"the adapter has r={r}, the model's LoRA layers have {other_rank}")
    merged = [name for name, layer in existing.items() if layer.merged]
    if merged:
        raise ValueError(f"unmerge the model before loading an adapter; merged: {merged}")


def _check_new_targets(model: nn.Module, targets: list[str]) -> None:
    problems = _lora_problems(model, targets)
    if not problems:
        problems = _sharing_problems(model, {t: model.get_submodule(t) for t in targets})
    if problems:
        raise ValueError("the adapter cannot be put on this model: " + "; ".join(problems))
    for name in targets:
        check_base_linear(model.get_submodule(name), name)


def _check_shapes(model: nn.Module, lora: dict[str, dict[str, torch.Tensor]], r: int) -> None:
    for name, pair in lora.items():
        layer = model.get_submodule(name)
        out_f, in_f = layer.out_features, layer.in_features
        if pair["lora_A"].shape != (r, in_f) or pair["lora_B"].shape != (out_f, r):
            raise ValueError(f"the adapter was saved for another architecture: {name!r} needs "
                             f"A ({r}, {in_f}) and B ({out_f}, {r}), the file has "
                             f"{tuple(pair['lora_A'].shape)} and {tuple(pair['lora_B'].shape)}")


def _check_module_state(name: str, module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``state`` must hold every entry of ``module.state_dict()``, shaped alike, and no other."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"the weights of {name!r} (modules_to_save) are incomplete: missing "
                         f"{missing}, unexpected {unexpected}")
    for key, tensor in state.items():
        want = expected[key]
        if tensor.shape != want.shape or tensor.is_floating_point() != want.is_floating_point():
            raise ValueError(f"{name}.{key} (modules_to_save) must be {want.dtype} "
                             f"{tuple(want.shape)}, the file has {tensor.dtype} "
                             f"{tuple(tensor.shape)}")


def _saved_module_states(model: nn.Module, config: _AdapterConfig,
                         other: dict[str, torch.Tensor],
                         adapted: bool) -> dict[str, dict[str, torch.Tensor]]:
    """``{path: state}`` for the modules trained whole (``modules_to_save``), all checked."""
    keep = _peft_modules_to_save(model, config.modules_to_save)
    wrappers = dict(saved_modules(model))
    if (adapted or wrappers) and sorted(wrappers) != keep:
        raise ValueError(f"the adapter trains {keep} whole (modules_to_save), the model has "
                         f"trainable copies of {sorted(wrappers)}; load it into a model "
                         "without LoRA, which gets exactly the adapter's modules")
    owner = {key: next((p for p in keep if key.startswith(p + ".")), None) for key in other}
    unexpected = sorted(key for key, p in owner.items() if p is None)
    if unexpected:
        raise ValueError(f"the weights hold {unexpected}, which are neither LoRA factors nor "
                         f"entries of a module in modules_to_save={config.modules_to_save!r}")
    if not wrappers and keep:
        problems = _keep_problems(model, keep)
        if problems:
            raise ValueError("the adapter's modules_to_save cannot be trained whole in this "
                             "model: " + "; ".join(problems))
    states: dict[str, dict[str, torch.Tensor]] = {}
    for path in keep:
        module = wrappers[path].modules_to_save if path in wrappers else model.get_submodule(path)
        states[path] = {k[len(path) + 1:]: v for k, v in other.items() if owner[k] == path}
        _check_module_state(path, module, states[path])
    return states


@contextmanager
def _undo_values_on_error(model: nn.Module) -> Iterator[None]:
    """Put back every adapter value and setting if the body raises."""
    layers = [(layer, layer.lora_A.detach().clone(), layer.lora_B.detach().clone(),
               layer.alpha, layer.use_rslora, layer.dropout) for _, layer in lora_layers(model)]
    copies = [(w, copy.deepcopy(w.modules_to_save.state_dict())) for _, w in saved_modules(model)]
    try:
        yield
    except BaseException:
        with torch.no_grad():
            for layer, A, B, alpha, use_rslora, dropout in layers:
                layer.lora_A.copy_(A)
                layer.lora_B.copy_(B)
                layer.alpha, layer.use_rslora, layer.dropout = alpha, use_rslora, dropout
        for wrapper, state in copies:
            wrapper.modules_to_save.load_state_dict(state)
        raise


def _find_files(directory: Any) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / name).is_file():
            nested = sorted(p.parent.name for p in directory.glob(f"*/{CONFIG_NAME}"))
            hint = f"; PEFT saves named adapters in subfolders, try {nested}" if nested else ""
            raise ValueError(f"directory {str(directory)!r} has no {name}{hint}")
    return directory


def _write_values(model: nn.Module, config: _AdapterConfig,
                  lora: dict[str, dict[str, torch.Tensor]],
                  states: dict[str, dict[str, torch.Tensor]]) -> None:
    with torch.no_grad():
        for name, layer in lora_layers(model):
            layer.alpha, layer.use_rslora = config.alpha, config.use_rslora
            if float(getattr(layer.dropout, "p", 0.0)) != config.dropout:
                layer.dropout = make_dropout(config.dropout).train(layer.training)
            layer.lora_A.copy_(lora[name]["lora_A"])
            layer.lora_B.copy_(lora[name]["lora_B"])
    for path, wrapper in saved_modules(model):
        wrapper.modules_to_save.load_state_dict(states[path])


def load_adapter(model: nn.Module, directory: str | os.PathLike[str]) -> nn.Module:
    """Load an adapter in PEFT's layout (ours or PEFT's own) into ``model``; return ``model``.

    The config's ``target_modules`` (with ``exclude_modules``,
    ``layers_to_transform``/``layers_pattern`` and ``modules_to_save``) is
    resolved against ``model`` with PEFT's matching rules, and the weights must
    hold exactly those modules' ``lora_A``/``lora_B``, plus every entry of each
    module in ``modules_to_save`` and nothing else: no partial adapter is ever
    loaded. If ``model`` has no LoRA layers yet, they (and the trainable copies
    of ``modules_to_save``) are created; otherwise they must be exactly the
    model's. Config options that would change the outputs (DoRA, PiSSA,
    rank_pattern, ...) are refused by name; the two files must come from the
    same save (compared on their settings, not their bytes).

    Every key, shape and value is checked *before* anything is changed, so a
    wrong or corrupt adapter raises ``ValueError`` and leaves ``model`` as it
    was. Only safetensors is read: no pickle is ever loaded. As with
    :func:`apply_lora`, the adapter is left trainable and every other parameter
    frozen (PEFT's ``from_pretrained`` freezes the adapter too unless
    ``is_trainable=True``).
    """
    model = _check_model(model)
    directory = _find_files(directory)
    raw = _read_json(directory / CONFIG_NAME)
    flat, metadata = _read_weights(directory / WEIGHTS_NAME)
    saved_with = metadata.get(SETTINGS_HASH_KEY)
    if saved_with is not None and saved_with != _settings_sha256(raw):
        raise ValueError(f"{directory / WEIGHTS_NAME} was saved with other settings than those "
                         f"in the {CONFIG_NAME} beside it (the two files come from different "
                         "saves)")
    _check_options(raw, directory / CONFIG_NAME)
    config = _parse_config(raw, directory / CONFIG_NAME)
    lora, other = _split_weights(flat, directory / WEIGHTS_NAME, config.r)

    existing = dict(lora_layers(model))
    targets = _lora_targets(model, config, lora)
    if existing:
        _check_existing(existing, targets, config.r)
    else:
        _check_new_targets(model, targets)
    _check_shapes(model, lora, config.r)
    states = _saved_module_states(model, config, other, adapted=bool(existing))

    # every check passed: now, and only now, change the model
    with _all_or_nothing(model), _undo_values_on_error(model):
        if not existing:
            _install(model, targets, sorted(states), r=config.r, alpha=config.alpha,
                     dropout=config.dropout, use_rslora=config.use_rslora)
        _write_values(model, config, lora, states)
    return model
