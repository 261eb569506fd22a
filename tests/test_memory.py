"""lora_lab.memory counts parameters exactly and reproduces the papers' memory figures."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lora_lab import apply_lora, count_parameters
from lora_lab import memory as mem

GB = 1e9


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


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["k_proj", "down_proj"], "all-linear"])
def test_lora_count_matches_apply_lora(targets) -> None:
    config = LlamaConfig(hidden_size=32, intermediate_size=72, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=20)
    torch.manual_seed(0)
    model = apply_lora(LlamaForCausalLM(config), targets, r=3)
    shape = mem.TransformerShape.from_config(config)
    assert mem.lora_parameter_count(shape, 3, targets) == count_parameters(model).trainable


def test_published_architectures() -> None:
    assert mem.LLAMA_2_7B.parameter_count() == 6_738_415_616  # Llama 2 7B, exactly
    assert round(mem.LLAMA_65B.parameter_count() / 1e9, 1) == 65.3  # LLaMA 65.2B (paper: "65B")
    assert abs(mem.GPT3_175B.parameter_count() / 175e9 - 1) < 0.005  # GPT-3: 175B


def test_qlora_full_finetuning_of_llama_65b_needs_more_than_780_gb() -> None:
    """QLoRA (Dettmers et al., 2023), abstract: 16-bit full fine-tuning of LLaMA 65B
    needs "more than 780 GB of GPU memory": 16-bit weights and gradients, fp32 Adam."""
    n = mem.LLAMA_65B.parameter_count()
    need = mem.training_memory(n, n).total
    assert 780 * GB < need < 800 * GB


def test_lora_paper_gpt3_figures() -> None:
    """LoRA (Hu et al., 2021) §4.2: with r = 4 on W_q and W_v, training needs 350 GB
    instead of 1.2 TB and a checkpoint is 35 MB instead of 350 GB."""
    n = mem.GPT3_175B.parameter_count()
    lora = mem.lora_parameter_count(mem.GPT3_175B, 4, ["q_proj", "v_proj"])
    assert lora == 96 * 2 * 4 * 2 * 12288
    assert round(n * 2 / GB) == 349  # the frozen fp16 weights: the paper's 350 GB
    with_lora = mem.training_memory(n + lora, lora)
    assert with_lora.total / GB < 350.5  # the adapter and its Adam state add < 0.3 GB
    assert abs(lora * 2 / 2**20 - 35) < 1.5  # 16-bit adapter: 36.0 MiB, the paper's "35MB"
    # the paper's 1.2 TB lies between 16-bit Adam moments (8 bytes a parameter) and none
    full16 = mem.training_memory(n, n, optimizer_bytes=4).total
    assert 1.2e12 < full16 < 1.5e12


def test_training_memory_counts_each_part() -> None:
    m = mem.training_memory(1000, 10, weight_bytes=4, gradient_bytes=4, optimizer_bytes=8)
    assert m == (4000, 40, 80) and m.total == 4120


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: mem.training_memory(10, 11), ValueError, "trainable_parameters"),
    (lambda: mem.training_memory(10, 1, weight_bytes=0), ValueError, "weight_bytes"),
    (lambda: mem.training_memory(10.0, 1), TypeError, "total_parameters"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 0, ["q_proj"]), ValueError, "r"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 8, ["q_porj"]), ValueError, "q_porj"),
    (lambda: mem.lora_parameter_count(mem.LLAMA_2_7B, 8, "q_proj"), TypeError, "target"),
    (lambda: mem.lora_parameter_count("llama", 8, ["q_proj"]), TypeError, "shape"),
    (lambda: mem.TransformerShape(2, 30, 8, 8, n_heads=4), ValueError, "divisible"),
    (lambda: mem.TransformerShape(2, 32, 8, 8, n_heads=4, n_kv_heads=8), ValueError,
     "n_kv_heads"),
    (lambda: mem.TransformerShape(2, 32, 8, 8, n_heads=4, bias=1), TypeError, "bias"),
    (lambda: mem.TransformerShape.from_config(object()), TypeError, "LlamaConfig"),
])
def test_bad_input(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
