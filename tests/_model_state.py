"""Everything about a model that a failed call must leave exactly as it was.

``snapshot(model)`` records the full state_dict and every buffer (bit for bit,
NaN included), the module structure (names, types and identities), every
parameter's identity and ``requires_grad`` flag, every module's train/eval
mode and every LoRA layer's merged flag; ``assert_unchanged(model, before)``
compares all of it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _bits(t: torch.Tensor) -> tuple[torch.dtype, tuple[int, ...], bytes]:
    flat = t.detach().cpu().contiguous().reshape(-1)
    return t.dtype, tuple(t.shape), flat.view(torch.uint8).numpy().tobytes()


def snapshot(model: nn.Module) -> dict[str, Any]:
    modules = list(model.named_modules(remove_duplicate=False))
    return {
        "state": {k: _bits(v) for k, v in model.state_dict().items()},
        "buffers": {k: _bits(v) for k, v in model.named_buffers(remove_duplicate=False)},
        "structure": [(name, type(m), id(m)) for name, m in modules],
        "parameters": [(name, id(p), p.requires_grad)
                       for name, p in model.named_parameters(remove_duplicate=False)],
        "modes": [(name, m.training) for name, m in modules],
        "merged": [(name, m.merged) for name, m in modules if hasattr(m, "merged")],
        "repr": repr(model),
    }


def assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    after = snapshot(model)
    for key in before:
        assert after[key] == before[key], f"the model's {key} changed"
