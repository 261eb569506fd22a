"""lora_lab.memory counts parameters exactly and compares with the papers' memory figures.

Each paper figure is asserted two-sided: reproduced within a stated margin, or shown NOT to
be reproduced by any of the simple accountings (so a test cannot pass by a loose bound).
"""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, LlamaConfig, LlamaForCausalLM, Qwen2Config

from lora_lab import apply_lora, count_parameters
from lora_lab import memory as mem

GB = 1e9
GIB = 2**30


@pytest.mark.parametrize(("kv", "tied"), [(4, False), (2, False), (1, True)])
def test_count_matches_a_real_transformers_model(kv: int, tied: bool) -> None:
    config = LlamaConfig(hidden_size=48, intermediate_size=100, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=kv, vocab_size=37,
                         tie_word_embeddings=tied)
    model = LlamaForCausalLM(config)
    shape = mem.TransformerShape.from_config(config)
    assert shape.parameter_count() == count_parameters(model).total
    for name, (out_f, in_f) in shape.linear_shapes().items():
        block = "self_attn" if name in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        weight = model.get_submodule(f"model.layers.0.{block}.{name}").weight
        assert tuple(weight.shape) == (out_f, in_f)


@pytest.mark.parametrize("options", [{"head_dim": 32}, {"head_dim": 8, "num_key_value_heads": 2},
                                     {"attention_bias": True}, {"mlp_bias": True},
                                     {"attention_bias": True, "mlp_bias": True,
                                      "tie_word_embeddings": True}])
def test_count_follows_every_llama_option_that_changes_it(options) -> None:
    """The review's cases: head_dim, attention_bias (q, k, v, o only) and mlp_bias."""
    config = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, **options)
    model = LlamaForCausalLM(config)
    shape = mem.TransformerShape.from_config(config)
    assert shape.parameter_count() == count_parameters(model).total
    for name, (out_f, in_f) in shape.linear_shapes().items():
        block = "self_attn" if name in mem.ATTENTION_NAMES else "mlp"
        assert tuple(model.get_submodule(f"model.layers.0.{block}.{name}").weight.shape) == \
            (out_f, in_f)


@pytest.mark.parametrize("config", [
    Qwen2Config(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2),
    GPT2Config(n_embd=64, n_layer=2, n_head=4)])
def test_from_config_refuses_other_architectures(config) -> None:
    with pytest.raises(ValueError, match=f"model_type='{config.model_type}'"):
        mem.TransformerShape.from_config(config)


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["k_proj", "down_proj"], "all-linear",
                                     ("q_proj", "v_proj"), "ALL-LINEAR", "All-Linear"])
@pytest.mark.parametrize("head_dim", [None, 12])
def test_lora_count_matches_apply_lora(targets, head_dim) -> None:
    config = LlamaConfig(hidden_size=32, intermediate_size=72, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=20,
                         head_dim=head_dim)
    torch.manual_seed(0)
    model = apply_lora(LlamaForCausalLM(config), list(targets) if isinstance(targets, tuple)
                       else targets.lower() if isinstance(targets, str) else targets, r=3)
    shape = mem.TransformerShape.from_config(config)
    assert mem.lora_parameter_count(shape, 3, targets) == count_parameters(model).trainable


def test_a_name_listed_twice_counts_once() -> None:
    once = mem.lora_parameter_count(mem.LLAMA_2_7B, 16, ["q_proj"])
    assert mem.lora_parameter_count(mem.LLAMA_2_7B, 16, ["q_proj", "q_proj"]) == once


def test_published_architectures() -> None:
    assert mem.LLAMA_2_7B.parameter_count() == 6_738_415_616  # Llama 2 7B, exactly
    assert round(mem.LLAMA_65B.parameter_count() / 1e9, 1) == 65.3  # LLaMA 65.2B (paper: "65B")
    assert abs(mem.GPT3_175B.parameter_count() / 175e9 - 1) < 0.005  # GPT-3: 175B


def test_qlora_full_finetuning_of_llama_65b_needs_more_than_780_gb() -> None:
    """QLoRA (Dettmers et al., 2023), §1 (not the abstract, which gives only 65B on one
    48 GB GPU): "regular 16-bit finetuning of a LLaMA 65B parameter model requires more than
    780 GB of GPU memory". The default 12 bytes a trained parameter give 783 GB."""
    n = mem.LLAMA_65B.parameter_count()
    need = mem.training_memory(n, n).total
    assert 780 * GB < need < 790 * GB


def test_lora_paper_gpt3_figures() -> None:
    """LoRA (Hu et al., 2021) §4.2: with r = 4 on W_q and W_v, training needs 350 GB
    instead of 1.2 TB and a checkpoint is 35 MB instead of 350 GB; the saving is "up to 2/3"
    because frozen weights need no optimiser state."""
    n = mem.GPT3_175B.parameter_count()
    lora = mem.lora_parameter_count(mem.GPT3_175B, 4, ["q_proj", "v_proj"])
    assert lora == 96 * 2 * 4 * 2 * 12288
    with_lora = mem.training_memory(n + lora, lora).total
    assert abs(with_lora / (350 * GB) - 1) < 0.005          # 349.4 GB: reproduced, two-sided
    assert 0.07 < 2 * lora / 35e6 - 1 < 0.08                # 37.7 MB: the 35 MB to within 8 %
    per_parameter = 1.2e12 / n                              # 6.9 bytes: no whole-byte reading
    assert 6.8 < per_parameter < 6.9
    for total_bytes in (4, 6, 8, 12, 16):                   # none within 10 % of 1.2 TB
        assert abs(total_bytes * n / 1.2e12 - 1) > 0.1
    weights_and_adam = 6 * n                                # 16-bit weights + two moments
    assert abs(weights_and_adam / with_lora - 3) < 0.01     # the "up to 2/3" reading: 1.05 TB


def test_7b_full_finetuning_nearly_fills_an_80_gib_gpu() -> None:
    n = mem.LLAMA_2_7B.parameter_count()
    twelve = mem.training_memory(n, n).total
    sixteen = mem.training_memory(n, n, optimizer_bytes=12).total   # + fp32 master copy
    assert 80 * GB < twelve < 81 * GB and 75 < twelve / GIB < 76 < 80 < sixteen / GIB
    assert round(sixteen / GB) == 108


def test_four_bit_weights_are_half_a_byte() -> None:
    m = mem.training_memory(1001, 0, weight_bytes=0.5)
    assert m == (500.5, 0, 0) and m.total == 500.5


def test_training_memory_counts_each_part() -> None:
    m = mem.training_memory(1000, 10, weight_bytes=4, gradient_bytes=4, optimizer_bytes=8)
    assert m == (4000, 40, 80) and m.total == 4120


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: mem.training_memory(10, 11), ValueError, "trainable_parameters"),
    (lambda: mem.training_memory(10, 1, weight_bytes=0), ValueError, "weight_bytes"),
    (lambda: mem.training_memory(10, 1, optimizer_bytes=17), ValueError,
     r"optimizer_bytes must be in \(0, 16\]"),
    (lambda: mem.training_memory(10, 1, gradient_bytes=True), TypeError, "gradient_bytes"),
    (lambda: mem.training_memory(10, 1, weight_bytes="2"), TypeError, "weight_bytes"),
    (lambda: mem.training_memory(10.0, 1), TypeError, "total_parameters"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 0, ["q_proj"]), ValueError, "r"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 8, ["q_porj"]), ValueError, "q_porj"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 8, "q_proj"), TypeError,
     r"in a list: \['q_proj'\]"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 8, {"q_proj": 1}), TypeError, "target"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 8, []), TypeError, "non-empty"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 8, ["q_proj", 3]), TypeError, "names"),
    (lambda: mem.lora_parameter_count("llama", 8, ["q_proj"]), TypeError, "shape"),
    (lambda: mem.TransformerShape(2, 30, 8, 8, n_heads=4), ValueError, "divisible"),
    (lambda: mem.TransformerShape(2, 30, 8, 8, n_heads=4, head_dim=0), ValueError, "head_dim"),
    (lambda: mem.TransformerShape(2, 32, 8, 8, n_heads=4, mlp_bias=1), TypeError, "mlp_bias"),
    (lambda: mem.TransformerShape(2, 32, 8, 8, n_heads=4, n_kv_heads=8), ValueError,
     "n_kv_heads"),
    (lambda: mem.TransformerShape(2, 32, 8, 8, n_heads=4, bias=1), TypeError, "bias"),
    (lambda: mem.TransformerShape.from_config(object()), TypeError, "LlamaConfig"),
])
def test_bad_input(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
