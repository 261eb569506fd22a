"""lora_lab: the verified companion package of the LoRA Lab course.

Each module teaches one idea, ground floor first:
``lowrank`` (rank and the SVD), ``numpy_lora`` (LoRA by hand), ``layers``
(``LoRALinear``), ``adapters`` (LoRA in a whole model, PEFT-compatible files).
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .lowrank import (
    approximation_error,
    break_even_rank,
    energy_captured,
    energy_curve,
    low_rank_approx,
    matrix_rank,
    singular_values,
    storage_cost,
    subspace_similarity,
    truncated_svd,
    truncation_error,
)
from .numpy_lora import (
    LoRAGrads,
    delta_weight,
    init_lora,
    lora_backward,
    lora_forward,
    lora_scaling,
    merge_weights,
    mse_loss,
    numerical_gradient,
    sgd_step,
    train_lora,
)
from .update_analysis import (
    amplification_factor,
    energy_rank,
    projection_norm,
    random_projection_rms,
    random_similarity,
    random_similarity_grid,
    similarity_grid,
    stable_rank,
)

# The torch-based modules load on first use, so the NumPy-only notebooks (01, 02)
# do not pay for importing torch (PEP 562 module __getattr__).
_TORCH_NAMES = {
    **dict.fromkeys(["LoRALinear", "ModulesToSaveWrapper"], "layers"),
    **dict.fromkeys(["ParameterCount", "apply_lora", "count_parameters", "disable_adapter",
                     "lora_layers", "lora_state_dict", "merge_and_unload", "merge_lora",
                     "saved_modules", "unmerge_lora"],
                    "adapters"),
    **dict.fromkeys(["load_adapter", "save_adapter"], "peft_format"),
    **dict.fromkeys(["History", "accuracy", "predict"], "train"),
    **dict.fromkeys(["VOCAB", "VOCAB_SIZE", "Digits", "build_digits_mlp", "decode", "encode",
                     "load_digits", "load_digits_mlp", "load_text", "load_tiny_llama",
                     "verify_data"], "data"),
}

if TYPE_CHECKING:
    from .adapters import (
        ParameterCount,
        apply_lora,
        count_parameters,
        disable_adapter,
        lora_layers,
        lora_state_dict,
        merge_and_unload,
        merge_lora,
        saved_modules,
        unmerge_lora,
    )
    from .data import (
        VOCAB,
        VOCAB_SIZE,
        Digits,
        build_digits_mlp,
        decode,
        encode,
        load_digits,
        load_digits_mlp,
        load_text,
        load_tiny_llama,
        verify_data,
    )
    from .layers import LoRALinear, ModulesToSaveWrapper
    from .peft_format import load_adapter, save_adapter
    from .train import History, accuracy, predict


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(import_module(f".{_TORCH_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'lora_lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TORCH_NAMES))


__version__ = "0.1.0"

__all__ = [
    "VOCAB",
    "VOCAB_SIZE",
    "Digits",
    "History",
    "LoRAGrads",
    "LoRALinear",
    "ModulesToSaveWrapper",
    "ParameterCount",
    "accuracy",
    "amplification_factor",
    "apply_lora",
    "approximation_error",
    "break_even_rank",
    "build_digits_mlp",
    "count_parameters",
    "decode",
    "delta_weight",
    "disable_adapter",
    "encode",
    "energy_captured",
    "energy_curve",
    "energy_rank",
    "init_lora",
    "load_adapter",
    "load_digits",
    "load_digits_mlp",
    "load_text",
    "load_tiny_llama",
    "lora_backward",
    "lora_forward",
    "lora_layers",
    "lora_scaling",
    "lora_state_dict",
    "low_rank_approx",
    "matrix_rank",
    "merge_and_unload",
    "merge_lora",
    "merge_weights",
    "mse_loss",
    "numerical_gradient",
    "predict",
    "projection_norm",
    "random_projection_rms",
    "random_similarity",
    "random_similarity_grid",
    "save_adapter",
    "saved_modules",
    "sgd_step",
    "similarity_grid",
    "singular_values",
    "stable_rank",
    "storage_cost",
    "subspace_similarity",
    "train_lora",
    "truncated_svd",
    "truncation_error",
    "unmerge_lora",
    "verify_data",
]
