"""lora_lab.language_model: windows, loss, generation and fine-tuning of a causal LM.

Most tests use a tiny random LlamaForCausalLM (fast); the last, slow one reruns the
learning-rate sweep behind notebook 06's ``TARGET_VARIANTS`` on the shipped model.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lora_lab import apply_lora, count_parameters, lora_layers
from lora_lab.data import VOCAB_SIZE, encode, load_text, load_tiny_llama
from lora_lab.language_model import (
    TARGET_VARIANTS,
    char_windows,
    finetune,
    generate_text,
    next_char_loss,
    text_loss,
)
from lora_lab.train import train

TEXT = "def f(x):\n    return x + 1\n" * 20


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB_SIZE, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=64, bos_token_id=None, eos_token_id=None,
                         pad_token_id=None)
    return LlamaForCausalLM(config).eval()


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- char_windows

def test_evaluation_windows_are_consecutive_and_spread_over_the_text() -> None:
    ids = torch.arange(100)
    every = char_windows(ids, 10)
    assert every.shape == (10, 10) and torch.equal(every.flatten(), ids)
    assert char_windows(ids, 10, 4)[:, 0].tolist() == [0, 30, 60, 90]
    assert char_windows(ids, 10, 1)[:, 0].tolist() == [0]
    assert torch.equal(char_windows(ids, 10, 10), every)
    assert torch.equal(char_windows(ids[:25], 10), ids[:20].view(2, 10))   # the tail is dropped


def test_training_windows_are_seeded_random_slices_of_the_text() -> None:
    ids = encode(TEXT)
    w = char_windows(TEXT, 9, 50, seed=3)
    assert w.shape == (50, 9) and w.dtype == torch.int64
    assert torch.equal(w, char_windows(ids, 9, 50, seed=3))                # str or ids alike
    assert not torch.equal(w, char_windows(TEXT, 9, 50, seed=4))
    text = TEXT.replace("\t", "    ")
    for row in w:                                                           # real slices
        assert "".join(chr(int(i) + 31) if i else "\n" for i in row) in text


def test_windows_of_the_whole_text_fit_exactly() -> None:
    w = char_windows("abcd", 4, 3, seed=0)
    assert (w == encode("abcd")).all()


@pytest.mark.parametrize(("args", "kwargs", "error", "match"), [
    ((TEXT, 1), {}, ValueError, "length"),
    ((TEXT, 2.0), {}, TypeError, "length"),
    (("abc", 4), {}, ValueError, "fewer than length"),
    ((TEXT, 10, 10_000), {}, ValueError, "count"),
    ((TEXT, 10, 0), {}, ValueError, "count"),
    ((TEXT, 10), {"seed": 0}, TypeError, "count is required"),
    ((TEXT, 10, 5), {"seed": -1}, ValueError, "seed"),
    ((torch.zeros(50), 10), {}, TypeError, "text"),
    ((torch.zeros(5, 10, dtype=torch.int64), 2), {}, ValueError, "1-D"),
    ((["a", "b"], 2), {}, TypeError, "text"),
    (("é" * 10, 2), {}, ValueError, "outside"),
])
def test_char_windows_rejects_bad_input(args, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        char_windows(*args, **kwargs)


# --------------------------------------------------------------------------- losses

def test_next_char_loss_is_transformers_own_loss() -> None:
    model = tiny_llama()
    w = char_windows(TEXT, 12, 6, seed=0)
    with torch.no_grad():
        ours = next_char_loss(model(w[:, :-1]), w[:, 1:])
        theirs = model(input_ids=w, labels=w).loss
        from_logits = next_char_loss(model(w[:, :-1]).logits, w[:, 1:])
    torch.testing.assert_close(ours, theirs)
    assert torch.equal(ours, from_logits)


def test_next_char_loss_is_differentiable() -> None:
    model = tiny_llama()
    w = char_windows(TEXT, 12, 4, seed=0)
    next_char_loss(model(w[:, :-1]), w[:, 1:]).backward()
    assert model.lm_head.weight.grad is not None


@pytest.mark.parametrize(("output", "targets", "error", "match"), [
    (torch.zeros(2, 5, 96), torch.zeros(2, 5), TypeError, "int64"),
    (torch.zeros(2, 5, 96), torch.zeros(2, 4, dtype=torch.int64), ValueError, "shape"),
    (torch.zeros(10, 96), torch.zeros(10, dtype=torch.int64), TypeError, "logits"),
    ("logits", torch.zeros(2, 5, dtype=torch.int64), TypeError, "logits"),
])
def test_next_char_loss_rejects_bad_input(output, targets, error, match) -> None:
    with pytest.raises(error, match=match):
        next_char_loss(output, targets)


def test_text_loss_is_the_mean_over_windows_in_any_batching() -> None:
    model = tiny_llama().train()
    w = char_windows(TEXT, 16, 10)
    with torch.no_grad():
        expected = float(model.eval()(input_ids=w, labels=w).loss)
    model.train()
    assert text_loss(model, w) == pytest.approx(expected, rel=1e-6)
    assert text_loss(model, w, batch_size=3) == pytest.approx(expected, rel=1e-6)
    assert model.training                                                  # mode restored


@pytest.mark.parametrize(("model", "windows", "batch", "error", "match"), [
    ("model", torch.zeros(2, 5, dtype=torch.int64), 4, TypeError, "model"),
    (torch.nn.Linear(2, 2), torch.zeros(2, 5, dtype=torch.int64), 4, TypeError, "model"),
    (None, torch.zeros(2, 5), 4, TypeError, "windows"),
    (None, torch.zeros(5, dtype=torch.int64), 4, TypeError, "windows"),
    (None, torch.zeros(2, 1, dtype=torch.int64), 4, ValueError, "L >= 2"),
    (None, torch.zeros(2, 5, dtype=torch.int64), 0, ValueError, "batch_size"),
])
def test_text_loss_rejects_bad_input(model, windows, batch, error, match) -> None:
    with pytest.raises(error, match=match):
        text_loss(tiny_llama() if model is None else model, windows, batch_size=batch)


# --------------------------------------------------------------------------- generation

def test_greedy_generation_is_deterministic_and_has_the_asked_length() -> None:
    model = tiny_llama()
    text = generate_text(model, "def ", 30)
    assert text.startswith("def ") and len(text) == 34
    assert generate_text(model, "def ", 30) == text


def test_sampling_is_seeded_and_leaves_the_callers_random_numbers_alone() -> None:
    model = tiny_llama().train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = generate_text(model, "a", 40, seed=0, temperature=0.8)
    assert torch.equal(torch.rand(3), expected)
    assert generate_text(model, "a", 40, seed=0, temperature=0.8) == first
    assert generate_text(model, "a", 40, seed=1, temperature=0.8) != first
    assert model.training                                                  # mode restored


@pytest.mark.parametrize(("prompt", "n", "kwargs", "error", "match"), [
    ("", 5, {}, TypeError, "prompt"),
    (3, 5, {}, TypeError, "prompt"),
    ("a", 0, {}, ValueError, "n_chars"),
    ("a", 5, {"temperature": 0.0, "seed": 0}, ValueError, "temperature"),
    ("a", 5, {"seed": -2}, ValueError, "seed"),
    ("é", 5, {}, ValueError, "outside"),
])
def test_generate_text_rejects_bad_input(prompt, n, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        generate_text(tiny_llama(), prompt, n, **kwargs)


def test_generate_text_needs_a_generating_model() -> None:
    with pytest.raises(TypeError, match="model"):
        generate_text(torch.nn.Linear(2, 2), "a", 3)


# --------------------------------------------------------------------------- finetune

def test_finetune_is_apply_lora_then_train_and_leaves_the_base_alone() -> None:
    base = tiny_llama()
    before = state(base)
    w = char_windows(TEXT, 13, 16, seed=0)
    model, history = finetune(base, w, target_modules=["q_proj", "v_proj"], r=2, lr=0.01,
                              seed=5, batch_size=4)
    torch.manual_seed(5)
    by_hand = apply_lora(copy.deepcopy(base), ["q_proj", "v_proj"], r=2, alpha=4)
    expected = train(by_hand, w[:, :-1], w[:, 1:], lr=0.01, epochs=1, batch_size=4, seed=5,
                     loss_fn=next_char_loss, progress=False)
    assert history.loss == expected.loss and len(history.loss) == 4
    assert not model.training and len(list(lora_layers(model))) == 4
    assert count_parameters(model).trainable == 2 * 2 * 2 * (16 + 16)
    for key, value in base.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_full_finetuning_trains_every_parameter() -> None:
    base = tiny_llama()
    w = char_windows(TEXT, 13, 8, seed=0)
    model, history = finetune(base, w, lr=0.01, batch_size=4)
    assert not list(lora_layers(model)) and len(history.loss) == 2
    assert not torch.equal(model.lm_head.weight, base.lm_head.weight)


@pytest.mark.parametrize(("base", "windows", "kwargs", "error", "match"), [
    ("model", None, {}, TypeError, "base"),
    (None, torch.zeros(4, 5), {}, TypeError, "windows"),
    (None, None, {"seed": -1}, ValueError, "seed"),
    (None, None, {"lr": 0.0}, ValueError, "lr"),
    (None, None, {"target_modules": ["q_porj"]}, ValueError, "q_porj"),
])
def test_finetune_rejects_bad_input(base, windows, kwargs, error, match) -> None:
    w = char_windows(TEXT, 13, 8, seed=0) if windows is None else windows
    settings = {"lr": 0.01} | kwargs
    with pytest.raises(error, match=match):
        finetune(tiny_llama() if base is None else base, w, **settings)


# --------------------------------------------------------------------------- notebook 06

@pytest.mark.slow
def test_each_variants_learning_rate_is_the_best_of_its_factor_2_grid() -> None:
    """The sweep behind TARGET_VARIANTS (about a minute): notebook 06 §3's setting, 320
    windows of 65 characters of Python code, 40 steps of 8, held-out loss on 48 windows of
    128 spread over the validation text, two seeds; ranked by the mean over the seeds."""
    torch.set_num_threads(1)
    base = load_tiny_llama()
    windows = char_windows(load_text("python_code", "train"), 65, 320, seed=0)
    held_out = char_windows(load_text("python_code", "validation"), 128, 48)
    for name, settings in TARGET_VARIANTS.items():
        mean = {}
        for factor in (0.5, 1.0, 2.0):
            lr = settings["lr"] * factor
            losses = [text_loss(finetune(base, windows, seed=seed, **settings | {"lr": lr})[0],
                                held_out) for seed in (0, 1)]
            mean[factor] = sum(losses) / 2
        assert min(mean, key=mean.get) == 1.0, (name, mean)
