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
accounted for, and checked against the published figures of the LoRA paper
(Hu et al., 2021, §4.2) and the QLoRA paper (Dettmers et al., 2023).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._validate import check_int

LLAMA_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GPT_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "fc_in", "fc_out")


@dataclass(frozen=True)
class TransformerShape:
    """The sizes that fix a decoder-only transformer's parameter count.

    Llama-style by default (rotary positions, RMSNorm, gated MLP with
    ``gate_proj``/``up_proj``/``down_proj``, no biases); ``gated_mlp=False``,
    ``bias=True`` and ``n_positions`` describe a GPT-2/GPT-3-style model
    (learned positions, LayerNorm with bias, MLP ``fc_in``/``fc_out``).
    Linear modules carry PEFT's/transformers' names; the LoRA paper's
    W_q, W_k, W_v, W_o are ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``.
    ``n_kv_heads`` < ``n_heads`` is grouped-query attention (smaller k, v).
    """

    n_layers: int
    d_model: int
    d_ff: int
    vocab_size: int
    n_heads: int
    n_kv_heads: int | None = None
    gated_mlp: bool = True
    bias: bool = False
    tied_embeddings: bool = False
    n_positions: int = 0

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "d_ff", "vocab_size", "n_heads"):
            check_int(getattr(self, name), name, minimum=1)
        check_int(self.n_positions, "n_positions", minimum=0)
        kv = self.n_kv_heads if self.n_kv_heads is not None else self.n_heads
        check_int(kv, "n_kv_heads", minimum=1, maximum=self.n_heads)
        if self.d_model % self.n_heads or self.n_heads % kv:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads="
                             f"{self.n_heads}, and n_heads by n_kv_heads={kv}")
        for name in ("gated_mlp", "bias", "tied_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, config: Any) -> TransformerShape:
        """Read a transformers ``LlamaConfig`` (or any object with its attribute names)."""
        try:
            return cls(n_layers=config.num_hidden_layers, d_model=config.hidden_size,
                       d_ff=config.intermediate_size, vocab_size=config.vocab_size,
                       n_heads=config.num_attention_heads,
                       n_kv_heads=getattr(config, "num_key_value_heads", None),
                       tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
                       bias=bool(getattr(config, "attention_bias", False)))
        except AttributeError as exc:
            raise TypeError(f"config must look like a transformers LlamaConfig: {exc}") from None

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """The (out, in) shape of each Linear weight in ONE layer, by module name."""
        d, head = self.d_model, self.d_model // self.n_heads
        kv = head * (self.n_kv_heads or self.n_heads)
        shapes = {"q_proj": (d, d), "k_proj": (kv, d), "v_proj": (kv, d), "o_proj": (d, d)}
        if self.gated_mlp:
            return shapes | {"gate_proj": (self.d_ff, d), "up_proj": (self.d_ff, d),
                             "down_proj": (d, self.d_ff)}
        return shapes | {"fc_in": (self.d_ff, d), "fc_out": (d, self.d_ff)}

    def parameter_count(self) -> int:
        """All parameters: embeddings, every layer's Linears (+ biases) and norms, the head."""
        linears = self.linear_shapes().values()
        per_layer = sum(o * i for o, i in linears)
        norm = 2 * self.d_model if self.bias else self.d_model  # LayerNorm has a bias, RMSNorm not
        if self.bias:
            per_layer += sum(o for o, _ in linears)
        per_layer += 2 * norm
        embeddings = self.vocab_size * self.d_model * (1 if self.tied_embeddings else 2)
        return self.n_layers * per_layer + embeddings + self.n_positions * self.d_model + norm


# Published architectures (from the papers' tables), for checking the arithmetic.
LLAMA_2_7B = TransformerShape(n_layers=32, d_model=4096, d_ff=11008, vocab_size=32000, n_heads=32)
LLAMA_65B = TransformerShape(n_layers=80, d_model=8192, d_ff=22016, vocab_size=32000, n_heads=64)
GPT3_175B = TransformerShape(n_layers=96, d_model=12288, d_ff=4 * 12288, vocab_size=50257,
                             n_heads=96, gated_mlp=False, bias=True, tied_embeddings=True,
                             n_positions=2048)


def lora_parameter_count(shape: TransformerShape, r: int,
                         target_modules: Sequence[str] | str) -> int:
    """Trainable LoRA parameters: ``n_layers * sum(r * (out + in))`` over the targets.

    ``target_modules`` lists names from :meth:`TransformerShape.linear_shapes`, or is
    ``"all-linear"`` (every Linear inside the layers; the output head is left out,
    as PEFT does). Raises ``ValueError`` for an unknown name.
    """
    if not isinstance(shape, TransformerShape):
        raise TypeError(f"shape must be a TransformerShape, got {type(shape).__name__}")
    r = check_int(r, "r", minimum=1)
    shapes = shape.linear_shapes()
    names = list(shapes) if target_modules == "all-linear" else target_modules
    if isinstance(names, str) or not names:
        raise TypeError("target_modules must be a non-empty list of module names or "
                        f"'all-linear', got {target_modules!r}")
    unknown = [name for name in names if name not in shapes]
    if unknown:
        raise ValueError(f"target_modules has {unknown}; this model's Linear modules are "
                         f"{list(shapes)}")
    return shape.n_layers * sum(r * sum(shapes[name]) for name in dict.fromkeys(names))


class TrainingMemory(NamedTuple):
    """Bytes for weights, gradients and optimiser state (activations not counted)."""

    weights: int
    gradients: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer


def training_memory(total_parameters: int, trainable_parameters: int, *,
                    weight_bytes: int = 2, gradient_bytes: int = 2,
                    optimizer_bytes: int = 8) -> TrainingMemory:
    """Memory to fine-tune a model of ``total_parameters`` with ``trainable_parameters`` trained.

    Every parameter is stored (``weight_bytes`` each: 2 for fp16/bf16, 4 for fp32);
    only trainable ones have a gradient (``gradient_bytes``) and Adam's two moments
    (``optimizer_bytes``: 8 for two fp32 moments, as in mixed-precision training).
    The defaults, 2 + 2 + 8 = 12 bytes per trained parameter, are the setting of
    QLoRA's "more than 780 GB" for full 16-bit fine-tuning of LLaMA 65B. Full
    fine-tuning: ``trainable_parameters == total_parameters``. Raises
    ``ValueError`` if trainable exceeds total.
    """
    total = check_int(total_parameters, "total_parameters", minimum=1)
    trainable = check_int(trainable_parameters, "trainable_parameters", minimum=0,
                          maximum=total)
    sizes = [check_int(b, name, minimum=1, maximum=16) for b, name in
             ((weight_bytes, "weight_bytes"), (gradient_bytes, "gradient_bytes"),
              (optimizer_bytes, "optimizer_bytes"))]
    return TrainingMemory(total * sizes[0], trainable * sizes[1], trainable * sizes[2])
