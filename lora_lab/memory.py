"""What fine-tuning costs in memory, computed from a model's shape rather than quoted.

A decoder-only transformer's parameter count follows from a handful of integers
(layers, width, MLP width, vocabulary, heads). From it, and from how many bytes
each stored number takes, follow the memory for the weights, their gradients
and Adam's two moments — for full fine-tuning and for LoRA, where only the
adapters have gradients and optimiser state.

Counted: weights, gradients, optimiser state. NOT counted: activations (they
depend on batch size and sequence length), temporary buffers, the CUDA context.
So these are lower bounds on what a GPU needs, and the ratios between methods
are what they show best.

Why: "LoRA needs 3× less memory" is a claim about bytes; here every byte is
accounted for, and compared with the published figures of the LoRA paper
(Hu et al., 2021, §4.2) and the QLoRA paper (Dettmers et al., 2023, §1): the
defaults reproduce QLoRA's 780 GB and the LoRA paper's 350 GB; the LoRA paper's
1.2 TB for full fine-tuning needs an accounting the paper does not state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._validate import check_int, check_real

LLAMA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GPT_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "fc_in", "fc_out")


ATTENTION_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class TransformerShape:
    """The sizes that fix a decoder-only transformer's parameter count.

    Llama-style by default (rotary positions, RMSNorm, gated MLP with
    ``gate_proj``/``up_proj``/``down_proj``, no biases); ``gated_mlp=False``,
    ``bias=True`` and ``n_positions`` describe a GPT-2/GPT-3-style model
    (learned positions, LayerNorm with bias, a bias on every Linear, MLP
    ``fc_in``/``fc_out``). Linear modules carry PEFT's/transformers' names; the
    LoRA paper's W_q, W_k, W_v, W_o are ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``.
    ``n_kv_heads`` < ``n_heads`` is grouped-query attention (smaller k, v).
    ``head_dim``: the width of one head (None: ``d_model // n_heads``, which must then
    divide evenly); the attention's inner width is ``n_heads * head_dim``.
    ``attention_bias`` / ``mlp_bias``: Llama's options of the same names, a bias on
    ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj`` / on the MLP's three Linears.
    Raises ``TypeError``/``ValueError`` naming a field of the wrong type or range.
    """

    n_layers: int
    d_model: int
    d_ff: int
    vocab_size: int
    n_heads: int
    n_kv_heads: int | None = None
    head_dim: int | None = None
    gated_mlp: bool = True
    bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    tied_embeddings: bool = False
    n_positions: int = 0

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "d_ff", "vocab_size", "n_heads"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.n_positions, "n_positions", minimum=0)
        kv = self.n_kv_heads if self.n_kv_heads is not None else self.n_heads
        check_int(kv, "n_kv_heads", minimum=1, maximum=self.n_heads)
        if self.head_dim is not None:
            check_int(self.head_dim, "head_dim", minimum=1)
        elif self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads="
                             f"{self.n_heads} (or give head_dim)")
        if self.n_heads % kv:
            raise ValueError(f"n_heads={self.n_heads} must be divisible by n_kv_heads={kv}")
        for name in ("gated_mlp", "bias", "attention_bias", "mlp_bias", "tied_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, config: Any) -> TransformerShape:
        """Read a transformers ``LlamaConfig`` (``model_type == "llama"``).

        Reads the sizes, ``num_key_value_heads``, ``head_dim``, ``attention_bias``,
        ``mlp_bias`` and ``tie_word_embeddings``. Other architectures differ in ways these
        fields cannot express (Qwen2 has biases on q, k, v but not o; GPT-2 has learned
        positions and LayerNorm), so their configs are refused: ``ValueError`` naming the
        ``model_type``; ``TypeError`` for an object that is not a config.
        """
        model_type = getattr(config, "model_type", None)
        if not isinstance(model_type, str):
            raise TypeError(f"config must be a transformers LlamaConfig, got "
                            f"{type(config).__name__}")
        if model_type != "llama":
            raise ValueError(f"config has model_type={model_type!r}; from_config reads Llama "
                             "configs only (model_type 'llama'): describe other architectures "
                             "with TransformerShape(...) directly")
        try:
            return cls(n_layers=config.num_hidden_layers, d_model=config.hidden_size,
                       d_ff=config.intermediate_size, vocab_size=config.vocab_size,
                       n_heads=config.num_attention_heads,
                       n_kv_heads=getattr(config, "num_key_value_heads", None),
                       head_dim=getattr(config, "head_dim", None),
                       tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
                       attention_bias=bool(getattr(config, "attention_bias", False)),
                       mlp_bias=bool(getattr(config, "mlp_bias", False)))
        except AttributeError as exc:
            raise TypeError(f"config must look like a transformers LlamaConfig: {exc}") from None

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """The (out, in) shape of each Linear weight in ONE layer, by module name."""
        d = self.d_model
        head = self.head_dim if self.head_dim is not None else d // self.n_heads
        inner, kv = head * self.n_heads, head * (self.n_kv_heads or self.n_heads)
        shapes = {"q_proj": (inner, d), "k_proj": (kv, d), "v_proj": (kv, d),
                  "o_proj": (d, inner)}
        if self.gated_mlp:
            return shapes | {"gate_proj": (self.d_ff, d), "up_proj": (self.d_ff, d),
                             "down_proj": (d, self.d_ff)}
        return shapes | {"fc_in": (self.d_ff, d), "fc_out": (d, self.d_ff)}

    def _has_bias(self, name: str) -> bool:
        """Whether the Linear ``name`` of a layer has a bias vector."""
        return self.bias or (self.attention_bias if name in ATTENTION_NAMES else self.mlp_bias)

    def parameter_count(self) -> int:
        """All parameters: embeddings, every layer's Linears (+ biases) and norms, the head."""
        shapes = self.linear_shapes()
        per_layer = sum(o * i + (o if self._has_bias(name) else 0)
                        for name, (o, i) in shapes.items())
        norm = 2 * self.d_model if self.bias else self.d_model  # LayerNorm has a bias, RMSNorm not
        per_layer += 2 * norm
        embeddings = self.vocab_size * self.d_model * (1 if self.tied_embeddings else 2)
        return self.n_layers * per_layer + embeddings + self.n_positions * self.d_model + norm


# Published architectures (from the papers' tables), for checking the arithmetic.
LLAMA_2_7B = TransformerShape(n_layers=32, d_model=4096, d_ff=11008, vocab_size=32000, n_heads=32)
LLAMA_65B = TransformerShape(n_layers=80, d_model=8192, d_ff=22016, vocab_size=32000, n_heads=64)
GPT3_175B = TransformerShape(n_layers=96, d_model=12288, d_ff=4 * 12288, vocab_size=50257,
                             n_heads=96, gated_mlp=False, bias=True, tied_embeddings=True,
                             n_positions=2048)


def _target_names(shapes: dict[str, tuple[int, int]], target_modules: Any) -> list[str]:
    """The names ``target_modules`` selects (see :func:`lora_parameter_count`), checked."""
    if isinstance(target_modules, str):
        if target_modules.lower() == "all-linear":  # case-insensitive, as PEFT compares it
            return list(shapes)
        raise TypeError("target_modules must be a list of module names or 'all-linear'; a "
                        f"single name must be in a list: [{target_modules!r}]")
    if not isinstance(target_modules, (list, tuple)) or not target_modules:
        raise TypeError("target_modules must be a non-empty list of module names or "
                        f"'all-linear', got {target_modules!r}")
    if not all(isinstance(name, str) for name in target_modules):
        raise TypeError(f"target_modules must hold module names (str), got {target_modules!r}")
    unknown = [name for name in target_modules if name not in shapes]
    if unknown:
        raise ValueError(f"target_modules has {unknown}; this model's Linear modules are "
                         f"{list(shapes)}")
    return list(dict.fromkeys(target_modules))


def lora_parameter_count(shape: TransformerShape, r: int,
                         target_modules: Sequence[str] | str) -> int:
    """Trainable LoRA parameters: ``n_layers * sum(r * (out + in))`` over the targets.

    ``target_modules``: a list (or tuple) of names from
    :meth:`TransformerShape.linear_shapes` (a name listed twice counts once), or
    ``"all-linear"`` in any case, as PEFT accepts it (every Linear inside the layers;
    the output head is left out, as PEFT does). ``r`` >= 1. Raises ``ValueError`` for
    an unknown name or r < 1, ``TypeError`` for anything else (a single name not in
    a list, a dict, a non-int r).
    """
    if not isinstance(shape, TransformerShape):
        raise TypeError(f"shape must be a TransformerShape, got {type(shape).__name__}")
    r = check_int(r, "r", minimum=1)
    shapes = shape.linear_shapes()
    names = _target_names(shapes, target_modules)
    return shape.n_layers * sum(r * sum(shapes[name]) for name in names)


class TrainingMemory(NamedTuple):
    """Bytes for weights, gradients and optimiser state (activations not counted).

    Not to be confused with :class:`lora_lab.train.TrainingMemory` (notebook 04), which
    *measures* the tensors of a model in memory; this one is an estimate from counts.
    """

    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


def _bytes_per_number(value: Any, name: str) -> float:
    """A size in bytes per stored number: a real in (0, 16] (0.5 for 4-bit numbers)."""
    size = check_real(value, name, positive=True)
    if size > 16:
        raise ValueError(f"{name} must be in (0, 16] bytes per number, got {size:g}")
    return size


def training_memory(total_parameters: int, trainable_parameters: int, *,
                    weight_bytes: float = 2, gradient_bytes: float = 2,
                    optimizer_bytes: float = 8) -> TrainingMemory:
    """Memory to fine-tune a model of ``total_parameters`` with ``trainable_parameters`` trained.

    Every parameter is stored (``weight_bytes`` each: 2 for fp16/bf16, 4 for fp32,
    0.5 for 4-bit numbers without their scales); only trainable ones have a gradient
    (``gradient_bytes``) and optimiser state (``optimizer_bytes``). Each size is a real
    number of bytes in (0, 16]. The defaults, 2 + 2 + 8 = 12 bytes per trained
    parameter, are one accounting of mixed-precision training with Adam: 16-bit
    weights and gradients, Adam's two moments in fp32. It reproduces QLoRA's "more
    than 780 GB" for full 16-bit fine-tuning of LLaMA 65B (Dettmers et al., 2023, §1).
    The other usual accounting also keeps an fp32 master copy of every trained weight
    (16 bytes in all, as in the ZeRO paper): ``optimizer_bytes=12``. Full fine-tuning:
    ``trainable_parameters == total_parameters``. Returns bytes (floats). Raises
    ``ValueError`` if trainable exceeds total or a size is out of range, ``TypeError``
    for a non-int count or a non-real size.

    Not to be confused with :func:`lora_lab.train.training_memory` (notebook 04),
    which takes a model and measures its tensors in their own dtype.
    """
    total = check_int(total_parameters, "total_parameters", minimum=1)
    trainable = check_int(trainable_parameters, "trainable_parameters", minimum=0,
                          maximum=total)
    weight, gradient, optimizer = (_bytes_per_number(b, name) for b, name in
                                   ((weight_bytes, "weight_bytes"),
                                    (gradient_bytes, "gradient_bytes"),
                                    (optimizer_bytes, "optimizer_bytes")))
    return TrainingMemory(total * weight, trainable * gradient, trainable * optimizer)
