"""Putting LoRA into a whole model: choosing targets, counting, merging, switching off.

``apply_lora`` swaps chosen ``nn.Linear`` modules for :class:`LoRALinear` (and
chosen whole modules for a trainable :class:`ModulesToSaveWrapper`) and freezes
everything else, following PEFT's rules for ``target_modules``;
``merge_lora``/``unmerge_lora``/``merge_and_unload`` fold the updates into the
base weights for inference; ``disable_adapter`` runs the base model for a
while. Saving and loading live in :mod:`lora_lab.peft_format`.

Every function here checks everything it can before it changes anything, and a
failure midway is rolled back: a call either does all it says or leaves the
model as it was.

Why: LoRA is applied to a handful of chosen layers of a big model, never to one
layer alone; this is the bookkeeping that makes that a one-line call.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch import nn

from ._validate import check_bool, check_int, check_real
from .layers import (
    LoRALinear,
    ModulesToSaveWrapper,
    check_base_linear,
    make_dropout,
    shares_memory,
)

ALL_LINEAR = "all-linear"

# --------------------------------------------------------------------------- finding modules


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def lora_layers(model: nn.Module) -> Iterator[tuple[str, LoRALinear]]:
    """Yield ``(module path, layer)`` for every :class:`LoRALinear` in ``model`` (each once)."""
    for name, module in _check_model(model).named_modules():
        if isinstance(module, LoRALinear):
            yield name, module


def saved_modules(model: nn.Module) -> list[tuple[str, ModulesToSaveWrapper]]:
    """``(module path, wrapper)`` for every module trained whole (``modules_to_save``)."""
    return [(name, m) for name, m in _check_model(model).named_modules()
            if isinstance(m, ModulesToSaveWrapper)]


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every named submodule, at every path it is reachable at, except the insides of LoRA
    layers and of wrappers."""
    modules = list(model.named_modules(remove_duplicate=False))
    adapters = tuple(name + "." for name, m in modules
                     if name and isinstance(m, (LoRALinear, ModulesToSaveWrapper)))
    return [(name, m) for name, m in modules if name and not name.startswith(adapters)]


def _is_linear(module: nn.Module) -> bool:
    """``nn.Linear``, an adapted one, or transformers' ``Conv1D``: PEFT's "linear" layers."""
    pytorch_utils = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(pytorch_utils, "Conv1D", ()) if pytorch_utils else ()
    return isinstance(module, (nn.Linear, LoRALinear) + ((conv1d,) if conv1d else ()))


def _linear_names(model: nn.Module) -> list[str]:
    """Paths of the Linear modules (adapted or not), for error messages."""
    return [name for name, m in _candidates(model) if isinstance(m, (nn.Linear, LoRALinear))]


def _output_embedding_name(model: nn.Module) -> str | None:
    """Path of ``get_output_embeddings()`` for a transformers ``PreTrainedModel``, else None."""
    transformers = sys.modules.get("transformers")
    if transformers is None or not isinstance(model, transformers.PreTrainedModel):
        return None
    output = model.get_output_embeddings()
    return next((name for name, m in model.named_modules() if m is output), None)


def _all_linear(model: nn.Module) -> list[str]:
    """PEFT's ``"all-linear"`` (``_maybe_include_all_linear_layers``): every Linear layer,
    except, for a transformers ``PreTrainedModel``, its output embedding (``lm_head``).
    A plain ``nn.Module`` keeps its last layer, as in PEFT."""
    output = _output_embedding_name(model)
    return [name for name, m in _candidates(model) if _is_linear(m) and name != output]


class TargetRules(NamedTuple):
    """What selects the adapted modules, with PEFT's meaning (``LoraConfig`` fields)."""

    target_modules: str | list[str]
    exclude_modules: str | list[str] | None = None
    layers_to_transform: int | list[int] | None = None
    layers_pattern: str | list[str] | None = None
    modules_to_save: list[str] | None = None  # as regular expressions, as PEFT reads them


def _excluded(name: str, rules: TargetRules) -> bool:
    """PEFT's ``check_target_module_exists``: exclude_modules and modules inside modules_to_save."""
    exclude = rules.exclude_modules
    if isinstance(exclude, str) and re.fullmatch(exclude, name):
        return True
    if isinstance(exclude, list) and any(name == e or name.endswith("." + e) for e in exclude):
        return True
    return any(re.match(rf"(^|.*\.){m}($|\..*)", name) for m in rules.modules_to_save or ())


def _in_layers(name: str, rules: TargetRules) -> bool:
    """PEFT's ``layers_to_transform``/``layers_pattern`` filter on the first layer index."""
    wanted = rules.layers_to_transform
    if wanted is None or wanted == []:
        return True
    patterns = rules.layers_pattern
    if not patterns:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", name)
    else:
        patterns = [patterns] if isinstance(patterns, str) else patterns
        found = (re.match(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", name) for p in patterns)
        match = next((m for m in found if m is not None), None)
    if match is None:
        return False
    index = int(match["idx"])
    return index == wanted if isinstance(wanted, int) else index in wanted


def select_modules(model: nn.Module, rules: TargetRules) -> dict[str, list[str]]:
    """``{entry: [module paths it selects]}`` under PEFT's rules.

    A string is a full regular-expression match (``"all-linear"``, in any case:
    see :func:`_all_linear`), a list entry matches a path exactly or as a dotted
    suffix; suffix matches (not exact ones) also pass the ``layers_to_transform``
    filter; ``exclude_modules`` and modules inside ``modules_to_save`` are never
    selected. Source: peft/tuners/tuners_utils.py ``check_target_module_exists``.
    """
    targets = rules.target_modules
    allowed = [name for name, _ in _candidates(model) if not _excluded(name, rules)]
    if isinstance(targets, str) and targets.lower() != ALL_LINEAR:
        return {targets: [n for n in allowed if re.fullmatch(targets, n)]}
    entries = _all_linear(model) if isinstance(targets, str) else targets
    chosen = {e: [n for n in allowed if n == e or (n.endswith("." + e) and _in_layers(n, rules))]
              for e in entries}
    return {targets: sorted({n for ns in chosen.values() for n in ns})} \
        if isinstance(targets, str) else chosen


def _did_you_mean(entry: str, names: list[str]) -> str:
    pool = sorted(set(names) | {n.rpartition(".")[2] for n in names})
    close = difflib.get_close_matches(entry, pool, n=3)
    return f"; {entry!r}: did you mean {' or '.join(map(repr, close))}?" if close else ""


def _string_target_error(model: nn.Module, pattern: str) -> ValueError:
    """The error for a ``target_modules`` string (a regular expression) that matched nothing.

    A string is a full-path regular expression, not a name: ``"q_proj"`` matches a
    module at the top level only. Say so, and show the list that matches by name.
    """
    parts = pattern.split("|")
    plain = all(re.fullmatch(r"[\w.]+", part) for part in parts)
    fix = (f"pass a list instead: target_modules={parts!r}" if plain
           else "pass a list of names instead, e.g. ['q_proj', 'v_proj']")
    paths = _linear_names(model)
    example = f" (such as {paths[0]!r})" if paths else ""
    close = difflib.get_close_matches(pattern, paths, n=3)
    guess = f"; did you mean {' or '.join(map(repr, close))}?" if close and not plain else ""
    return ValueError(f"target_modules={pattern!r} matched no module: a string is a regular "
                      f"expression that must match a whole module path{example}. To match "
                      "layers by name or by the end of their path, as PEFT does for a list, "
                      f"{fix}. The model's Linear modules are: {paths}{guess}")


def _unmatched_entries(model: nn.Module, found: dict[str, list[str]], what: str) -> None:
    """``ValueError`` naming every entry of ``what`` that selects nothing."""
    empty = [entry for entry, names in found.items() if not names]
    if empty:
        noun = "nn.Linear module" if what == "target_modules" else "module"
        hints = "".join(_did_you_mean(e, [n for n, _ in _candidates(model)]) for e in empty)
        raise ValueError(f"{what} entries {empty} matched no {noun}; the model's Linear "
                         f"modules are: {_linear_names(model)}{hints}")


def _paths_of(model: nn.Module) -> dict[int, list[str]]:
    """``id(module) -> every path it is reachable at``."""
    paths: dict[int, list[str]] = {}
    for name, m in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(m), []).append(name)
    return paths


def _lora_problems(model: nn.Module, names: list[str]) -> list[str]:
    """Why each of ``names`` cannot receive a new LoRA adapter (empty list: all can)."""
    problems = []
    paths = _paths_of(model)
    for name in names:
        m = model.get_submodule(name)
        parent = model.get_submodule(name.rpartition(".")[0])
        if isinstance(m, LoRALinear):
            problems.append(f"{name} already has a LoRA adapter")
        elif not isinstance(m, nn.Linear):
            problems.append(f"{name} is a {type(m).__name__}, not an nn.Linear")
        elif len(paths[id(m)]) > 1:
            others = [p for p in paths[id(m)] if p != name]
            problems.append(f"{name} is shared with {others}; adapt each use separately by "
                            "giving them their own Linear")
        elif isinstance(parent, nn.MultiheadAttention):
            problems.append(f"{name} belongs to nn.MultiheadAttention, which reads its weight "
                            "directly and would bypass the adapter")
        else:
            problems += _base_problem(m, name)
    return problems


def _base_problem(linear: nn.Linear, name: str) -> list[str]:
    """[why LoRALinear refuses ``linear``] or []."""
    try:
        check_base_linear(linear, name)
    except (TypeError, ValueError) as exc:
        return [str(exc)]
    return []


# --------------------------------------------------------------------------- shared tensors

def _tensor_owners(model: nn.Module) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """``(name, owning module, tensor)`` for every parameter and buffer, at every path."""
    owners = []
    for path, module in model.named_modules(remove_duplicate=False):
        tensors = [*module._parameters.items(), *module._buffers.items()]
        owners += [(f"{path}.{attr}" if path else attr, module, t) for attr, t in tensors
                   if t is not None and t.numel() and not t.is_meta]
    return owners


def _sharing_problems(model: nn.Module, linears: dict[str, nn.Linear]) -> list[str]:
    """For each ``{path: Linear}``: other modules whose tensors share memory with its weight/bias.

    Merging writes into the weight; if another module (tied embeddings, a view
    of a fused matrix) reads the same memory, the merge would change it too.
    """
    owners = _tensor_owners(model)
    problems = []
    for path, linear in linears.items():
        for attr in ("weight", "bias"):
            tensor = getattr(linear, attr)
            if tensor is None or not tensor.numel():
                continue
            others = sorted({name for name, owner, t in owners
                             if owner is not linear and shares_memory(tensor, t)})
            if others:
                problems.append(f"{path}.{attr} shares its memory with {others}: a merge would "
                                "change those too; give the layer its own weight (untie it) or "
                                "leave it out of target_modules")
    return problems


# --------------------------------------------------------------------------- applying

def _check_names(value: Any, name: str) -> list[str]:
    if (isinstance(value, (list, tuple, set, frozenset)) and value
            and all(isinstance(t, str) and t for t in value)):
        return sorted(value)
    raise TypeError(f"{name} must be a non-empty list of module names, got {value!r}")


def _check_targets(target_modules: Any) -> str | list[str]:
    if isinstance(target_modules, str):
        try:
            re.compile(target_modules)
        except re.error as exc:
            raise ValueError(f"target_modules is not a valid regular expression: {exc}") from None
        return target_modules
    try:
        return _check_names(target_modules, "target_modules")
    except TypeError:
        raise TypeError("target_modules must be a regex string or a non-empty list of module "
                        f"names, got {target_modules!r}") from None


def _choose_modules_to_save(model: nn.Module, entries: list[str]) -> list[str]:
    """Paths selected by ``modules_to_save`` (exact or dotted-suffix match), or ``ValueError``."""
    found = {e: [n for n, _ in _candidates(model) if n == e or n.endswith("." + e)]
             for e in entries}
    _unmatched_entries(model, found, "modules_to_save")
    chosen = sorted({n for names in found.values() for n in names})
    problems = _keep_problems(model, chosen)
    if problems:
        raise ValueError(f"modules_to_save={entries!r} cannot be trained whole: "
                         + "; ".join(problems))
    return chosen


def _keep_problems(model: nn.Module, names: list[str]) -> list[str]:
    """Why each of ``names`` cannot be wrapped in a :class:`ModulesToSaveWrapper`."""
    paths = _paths_of(model)
    problems = [f"{n} lies inside {p}" for n in names for p in names if n.startswith(p + ".")]
    for name in names:
        m = model.get_submodule(name)
        inner = [f"{name}.{n}" if n else name for n, c in m.named_modules()
                 if isinstance(c, (LoRALinear, ModulesToSaveWrapper))]
        if isinstance(m, (nn.ModuleList, nn.ModuleDict)):
            problems.append(f"{name} is a {type(m).__name__}, which has no forward pass")
        elif inner:
            problems.append(f"{name} holds LoRA layers ({inner}) or is trained whole already")
        elif len(paths[id(m)]) > 1:
            problems.append(f"{name} is shared with {[p for p in paths[id(m)] if p != name]}")
    return problems


def _overlap_with_saved(model: nn.Module, targets: str | list[str],
                        found: dict[str, list[str]], keep: list[str]) -> None:
    """``ValueError`` for target entries that select only modules listed in modules_to_save."""
    if not keep:
        return
    unrestricted = select_modules(model, TargetRules(targets))
    overlap = [entry for entry, names in found.items() if not names and unrestricted[entry]]
    if overlap:
        raise ValueError(f"target_modules entries {overlap} select only modules that "
                         f"modules_to_save={keep!r} trains whole; a module is either adapted "
                         "by LoRA or trained whole, not both: remove it from one of the two")


def _choose_targets(model: nn.Module, targets: str | list[str], keep: list[str]) -> list[str]:
    """Paths of the Linear modules ``targets`` selects (none inside ``keep``), or ``ValueError``."""
    rules = TargetRules(targets, modules_to_save=[re.escape(p) for p in keep])
    found = select_modules(model, rules)
    if isinstance(targets, str) and targets.lower() != ALL_LINEAR and not found[targets]:
        raise _string_target_error(model, targets)
    _overlap_with_saved(model, targets, found, keep)
    _unmatched_entries(model, found, "target_modules")
    chosen = sorted({name for names in found.values() for name in names})
    problems = _lora_problems(model, chosen)
    if not problems:
        problems = _sharing_problems(model, {n: model.get_submodule(n) for n in chosen})
    if problems:
        raise ValueError(f"target_modules={targets!r} cannot be adapted: " + "; ".join(problems))
    return chosen


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, module)


@contextmanager
def _all_or_nothing(model: nn.Module) -> Iterator[None]:
    """Undo every module swap and ``requires_grad``/train-mode change if the body raises."""
    modules = {id(m): (m, dict(m._modules), m.training) for m in model.modules()}
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield
    except BaseException:
        for m, children, training in modules.values():
            m._modules.clear()
            m._modules.update(children)
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)
        raise


def _freeze_all_but_adapters(model: nn.Module) -> None:
    """Freeze every parameter except LoRA factors and trainable copies (kept as they are)."""
    keep = {id(p) for _, layer in lora_layers(model) for p in (layer.lora_A, layer.lora_B)}
    keep |= {id(p) for _, w in saved_modules(model) for p in w.modules_to_save.parameters()}
    for p in model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)


def apply_lora(model: nn.Module, target_modules: str | Sequence[str], r: int = 8,
               alpha: float = 16, dropout: float = 0.0, use_rslora: bool = False,
               modules_to_save: Sequence[str] | None = None) -> nn.Module:
    """Replace matching ``nn.Linear`` modules of ``model`` by :class:`LoRALinear`, in place.

    Every other parameter is frozen, so only the LoRA factors train.
    ``target_modules`` follows PEFT: a list entry matches a module path exactly
    or as a dotted suffix (``"q"`` matches ``"layers.0.attn.q"``); a single
    string is a regular expression that must match the full path, and
    ``"all-linear"`` selects every Linear layer (for a transformers
    ``PreTrainedModel`` all but the output embedding ``get_output_embeddings()``;
    a plain module keeps its last layer, as in PEFT; layers adapted by an earlier
    call count as Linear too, as in PEFT, and are then refused).

    ``modules_to_save`` (PEFT's option) names whole modules, matched like list
    entries, to train beside LoRA, e.g. a new classification head: each is
    wrapped in a :class:`ModulesToSaveWrapper` whose trainable copy is used,
    and no LoRA is put inside them. New layers take the model's train/eval
    mode. Returns ``model``.

    Raises ``ValueError`` naming the entry (and listing the Linear modules,
    with a "did you mean") if any entry of ``target_modules`` or
    ``modules_to_save`` matches nothing, and naming any match that cannot be
    adapted: not a Linear, already adapted, a module used at two paths, a
    weight or bias sharing memory with another module (tied embeddings: a
    merge would change both), inside ``nn.MultiheadAttention``, or one
    :class:`LoRALinear` refuses (parametrized weight, meta device...). All or
    nothing: on any error, even running out of memory on the last layer, the
    model is left exactly as it was.
    """
    model = _check_model(model)
    targets = _check_targets(target_modules)
    check_int(r, "r", minimum=1)
    check_real(alpha, "alpha", positive=True)
    make_dropout(dropout)
    check_bool(use_rslora, "use_rslora")
    keep_entries = [] if not modules_to_save else _check_names(modules_to_save,
                                                                "modules_to_save")
    if isinstance(model, (nn.Linear, LoRALinear)):
        raise ValueError("model is itself a single layer: wrap it directly with "
                         "LoRALinear(layer); apply_lora adapts layers inside a model")
    keep = _choose_modules_to_save(model, keep_entries) if keep_entries else []
    chosen = _choose_targets(model, targets, keep)
    _install(model, chosen, keep, r=r, alpha=alpha, dropout=dropout, use_rslora=use_rslora)
    return model


def _install(model: nn.Module, chosen: list[str], keep: list[str], **settings: Any) -> None:
    """Wrap the Linear modules at ``chosen`` and the modules at ``keep``; freeze the rest.

    The paths are checked already. All or nothing: every new module is built
    before the first swap, and any failure undoes everything.
    """
    with _all_or_nothing(model):
        new: dict[str, nn.Module] = {}
        for name in chosen:  # build every new layer first ...
            base = model.get_submodule(name)
            try:
                new[name] = LoRALinear(base, **settings).train(base.training)
            except (RuntimeError, MemoryError) as exc:  # out of memory, typically
                raise RuntimeError(f"building the LoRA layer for {name!r} failed: "
                                   f"{exc}") from exc
        for name in keep:
            new[name] = ModulesToSaveWrapper(model.get_submodule(name))
        for name, module in new.items():  # ... then swap them in and freeze
            _set_submodule(model, name, module)
        _freeze_all_but_adapters(model)


class ParameterCount(NamedTuple):
    """Trainable and total parameter counts, as PEFT's ``get_nb_trainable_parameters``."""

    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        """Share of parameters that train, in [0, 1]."""
        return self.trainable / self.total if self.total else 0.0


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count ``(trainable, total)`` parameters of ``model`` (shared tensors once).

    A module in ``modules_to_save`` counts twice in ``total`` (its frozen
    original and its trainable copy) and once in ``trainable``, as in PEFT.
    """
    seen: set[int] = set()
    trainable = total = 0
    for p in _check_model(model).parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return ParameterCount(trainable, total)


# --------------------------------------------------------------------------- merging

def _require_lora(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    layers = list(lora_layers(model))
    if not layers:
        raise ValueError("model has no LoRA layers; call apply_lora(model, target_modules) first")
    return layers


def _refuse_disabled(layers: list[tuple[str, LoRALinear]], action: str) -> None:
    if any(layer._adapter_disabled for _, layer in layers):
        raise RuntimeError(f"cannot {action} inside disable_adapter(); do it after the with-block")


def _check_mergeable(model: nn.Module, layers: list[tuple[str, LoRALinear]],
                     action: str) -> None:
    """Refuse, before anything is written, if any layer's merge would corrupt the model."""
    _refuse_disabled(layers, action)
    problems = _sharing_problems(model, {name: layer.base for name, layer in layers})
    if problems:
        raise ValueError(f"cannot {action}: " + "; ".join(problems))
    for name, layer in layers:
        try:
            layer.check_weight_not_shared()  # another LoRALinear on the same base, say
            layer.merged_weight()
        except ValueError as exc:
            raise ValueError(f"cannot {action} layer {name or '<root>'!r}: {exc}") from None


def _merge_all(layers: list[LoRALinear]) -> None:
    """Merge every layer; if one fails (out of memory...), unmerge those already merged."""
    done: list[LoRALinear] = []
    try:
        for layer in layers:
            layer.merge()
            done.append(layer)
    except BaseException:
        for layer in reversed(done):
            layer.unmerge()
        raise


def _in_state(layers: list[tuple[str, LoRALinear]], merged: bool, action: str) -> None:
    wrong = [name or "<root>" for name, layer in layers if layer.merged != merged]
    if wrong:  # refuse before touching any layer, so the model never ends up half merged
        raise RuntimeError(f"cannot {action}: these LoRA layers are already "
                           f"{'unmerged' if merged else 'merged'}: {wrong}")


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA layer of ``model`` (see :meth:`LoRALinear.merge`). Returns ``model``.

    All or nothing: every layer is checked first (not merged yet, not inside
    :func:`disable_adapter`, no other module sharing its weight, ``W + delta W``
    finite in the weight's dtype), so a ``RuntimeError``/``ValueError`` naming
    the layer leaves every weight untouched. :func:`unmerge_lora` restores the
    original weights bit for bit.
    """
    layers = _require_lora(model)
    _in_state(layers, merged=False, action="merge")
    _check_mergeable(model, layers, "merge")
    _merge_all([layer for _, layer in layers])
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Unmerge every LoRA layer of ``model`` (see :meth:`LoRALinear.unmerge`). Returns ``model``.

    Restores each original weight bit for bit. Raises ``RuntimeError`` before
    touching anything inside :func:`disable_adapter` (which unmerges merged
    layers until its with-block ends), if a layer is not merged, or if its
    merged weight was changed since (restoring would undo that change).
    """
    layers = _require_lora(model)
    _refuse_disabled(layers, "unmerge")
    _in_state(layers, merged=True, action="unmerge")
    for name, layer in layers:
        try:
            layer._check_can_unmerge()
        except RuntimeError as exc:
            raise RuntimeError(f"cannot unmerge layer {name or '<root>'!r}: {exc}") from None
    for _, layer in layers:
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge each LoRA layer and put its plain ``nn.Linear`` (merged weight) back in its place.

    The result has no LoRA left: the same architecture as before ``apply_lora``,
    same outputs as the adapted model, zero extra inference cost. A module in
    ``modules_to_save`` is replaced by its trained copy, as in PEFT. Layers
    already merged keep their merged weight. Returns the model (or, for a bare
    ``LoRALinear``, its merged base layer). All or nothing, with the checks of
    :func:`merge_lora` (and ``RuntimeError`` if a merged layer's factors were
    edited since it was merged); while it runs it holds a copy of every weight
    it merges, so that a failure midway can be undone.
    """
    layers = _require_lora(model)
    to_merge = [(name, layer) for name, layer in layers if not layer.merged]
    _check_mergeable(model, to_merge, "merge_and_unload")
    for name, layer in layers:
        if layer.merged:
            try:
                layer._check_merge_is_current(thorough=True)
            except RuntimeError as exc:
                raise RuntimeError(f"cannot merge_and_unload layer {name!r}: {exc}") from None
    _merge_all([layer for _, layer in to_merge])
    if not layers[0][0]:  # a bare LoRALinear
        return layers[0][1].base
    paths = _paths_of(model)
    swaps = [(path, layer.base) for _, layer in layers for path in paths[id(layer)]]
    swaps += [(path, w.modules_to_save) for _, w in saved_modules(model) for path in paths[id(w)]]
    with _all_or_nothing(model):
        for path, module in swaps:
            _set_submodule(model, path, module)
    return model


@contextmanager
def disable_adapter(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: inside it, ``model`` computes its base model's outputs.

    ``with disable_adapter(model): ...`` mirrors PEFT's ``with
    peft_model.disable_adapter():``: every :class:`LoRALinear` computes only
    ``base(x)`` and every module in ``modules_to_save`` runs its original.
    Merged layers are unmerged on entry (PEFT unmerges them too, on their next
    forward) and, unlike PEFT, merged again on exit, bit for bit as before. On
    exit, even if the body raises, every layer returns to its previous state;
    nested blocks work. Trainability (``requires_grad``) is left alone (PEFT
    switches it off inside). Merging or unmerging inside the block raises
    ``RuntimeError``. Yields ``model``.
    """
    layers = _require_lora(model)
    wrappers = [w for _, w in saved_modules(model)]
    merged = [(name, layer) for name, layer in layers if layer.merged]
    for name, layer in merged:  # all checks before the first change
        try:
            layer._check_can_unmerge()
            layer._check_merge_is_current(thorough=True)
        except RuntimeError as exc:
            raise RuntimeError(f"disable_adapter: layer {name!r}: {exc}") from None
    for _, layer in merged:
        layer.unmerge()
    states = [(m, m._adapter_disabled) for _, m in layers] + [(w, w._adapter_disabled)
                                                               for w in wrappers]
    for m, _ in states:
        m._adapter_disabled = True
    try:
        yield model
    finally:
        for m, previous in states:
            m._adapter_disabled = previous
        _check_mergeable(model, merged, "merge again after disable_adapter")
        _merge_all([layer for _, layer in merged])


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter, as loralib: ``{"<path>.lora_A": (r, in), "<path>.lora_B": (out, r)}``.

    Modules in ``modules_to_save`` add their trained copy's entries under the
    module's own path (``"<path>.weight"``, ...), as PEFT saves them.
    """
    state: dict[str, torch.Tensor] = {}
    for name, layer in _require_lora(model):
        state[f"{name}.lora_A"] = layer.lora_A.detach()
        state[f"{name}.lora_B"] = layer.lora_B.detach()
    for name, wrapper in saved_modules(model):
        for key, value in wrapper.modules_to_save.state_dict().items():
            state[f"{name}.{key}"] = value.detach()
    return state
