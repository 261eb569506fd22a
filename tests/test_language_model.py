"""lora_lab.language_model: windows, loss, generation and fine-tuning of a causal LM.

Most tests use a tiny random LlamaForCausalLM (fast, context 64 characters); the notebook-06
tests use the shipped model, and the slow one reruns the learning-rate sweep behind
``TARGET_VARIANTS`` (``LR_SWEEP``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lora_lab import apply_lora, count_parameters, lora_layers
from lora_lab.data import VOCAB_SIZE, encode, load_text, load_tiny_llama, split_point
from lora_lab.language_model import (
    LR_FACTORS,
    LR_SWEEP,
    TARGET_VARIANTS,
    SweepResult,
    best_lr,
    char_windows,
    finetune,
    fit_and_tuning_text,
    generate_text,
    lr_sweep,
    next_char_loss,
    text_loss,
)
from lora_lab.memory import TransformerShape, lora_parameter_count
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
    (torch.zeros(2, 5, 96), torch.full((2, 5), 96), ValueError, r"0\.\.95"),
    (torch.zeros(2, 5, 96), torch.full((2, 5), -1), ValueError, "targets"),
    (torch.zeros(2, 5, dtype=torch.int64), torch.zeros(2, 5, 96), TypeError, r"\(2, 5\)"),
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
    (None, torch.zeros(5, dtype=torch.int64), 4, ValueError, "2-D"),
    (None, torch.zeros(2, 1, dtype=torch.int64), 4, ValueError, "L >= 2"),
    (None, torch.zeros(2, 5, dtype=torch.int64), 0, ValueError, "batch_size"),
    (None, torch.full((2, 5), VOCAB_SIZE), 4, ValueError, r"ids in 0\.\.95"),
    (None, torch.full((2, 5), -1), 4, ValueError, "from -1"),
    (None, torch.zeros(2, 65, dtype=torch.int64), 4, ValueError, "context of 64"),
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
    ("a", 5, {"temperature": 5.0}, ValueError, "temperature=5.0 needs sampling"),
    ("a", 5, {"temperature": 1.0}, ValueError, "pass seed"),
    ("a", 5, {"seed": -2}, ValueError, "seed"),
    ("a", 5, {"seed": 0.5}, TypeError, "seed"),
    ("é", 5, {}, ValueError, "outside"),
    ("ab", 63, {}, ValueError, "len\\(prompt\\) \\+ n_chars .* context of 64 .* got 65"),
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
    (None, None, {"r": 4}, ValueError, "r=4 applies to LoRA only"),
    (None, None, {"target_modules": ["q_proj"], "r": 0}, ValueError, "r must be >= 1"),
    (None, torch.zeros(4, 66, dtype=torch.int64), {}, ValueError, "context of 64 .* got 65"),
    (None, torch.full((4, 9), 200), {}, ValueError, r"ids in 0\.\.95"),
    (None, torch.zeros(9, dtype=torch.int64), {}, ValueError, "2-D"),
])
def test_finetune_rejects_bad_input(base, windows, kwargs, error, match) -> None:
    w = char_windows(TEXT, 13, 8, seed=0) if windows is None else windows
    settings = {"lr": 0.01} | kwargs
    model = tiny_llama() if base is None else base
    before = state(model) if isinstance(model, torch.nn.Module) else None
    with pytest.raises(error, match=match):
        finetune(model, w, **settings)
    if before is not None:                                  # the base is left exactly as it was
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        assert not list(lora_layers(model))


def test_a_window_as_long_as_the_context_fits() -> None:
    model = tiny_llama()
    w = char_windows(TEXT, 64, 3)
    assert text_loss(model, w) > 0                                   # L = 64 = the context
    assert len(generate_text(model, "a", 63)) == 64
    assert len(finetune(model, char_windows(TEXT, 65, 4, seed=0), lr=0.01,
                        batch_size=4)[1].loss) == 1                  # inputs: 64 characters


def test_failed_calls_leave_the_model_and_the_random_numbers_alone() -> None:
    model = tiny_llama().train()
    before = state(model)
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    for call in (lambda: text_loss(model, torch.full((2, 5), 200)),
                 lambda: generate_text(model, "a", 100),
                 lambda: generate_text(model, "a", 5, temperature=0.5)):
        with pytest.raises(ValueError):
            call()
    assert torch.equal(torch.rand(3), expected)
    assert model.training and all(torch.equal(v, before[k]) for k, v in
                                  model.state_dict().items())


def test_finetune_leaves_the_callers_random_numbers_alone() -> None:
    base = tiny_llama()
    w = char_windows(TEXT, 13, 8, seed=0)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first, _ = finetune(base, w, target_modules=["q_proj"], r=2, lr=0.01, seed=3, batch_size=4)
    assert torch.equal(torch.rand(3), expected)
    again, _ = finetune(base, w, target_modules=["q_proj"], r=2, lr=0.01, seed=3, batch_size=4)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in first.state_dict().items())


# --------------------------------------------------------------------------- the sweep

def test_fit_and_tuning_text_cut_the_training_text_by_the_90_percent_rule() -> None:
    fit, tuning = fit_and_tuning_text("x" * 95 + "y" * 5)
    assert (len(fit), len(tuning)) == (split_point(100), 100 - split_point(100)) == (90, 10)
    code = load_text("python_code", "train")
    fit, tuning = fit_and_tuning_text(code)
    assert fit + tuning == code and len(fit) == 162_029
    assert "# ---- Lib/pprint.py ----" in tuning and "# ---- Lib/pprint.py ----" not in fit
    with pytest.raises(TypeError, match="text"):
        fit_and_tuning_text(encode("abc"))
    with pytest.raises(ValueError, match="length"):
        fit_and_tuning_text("a")


def test_lr_sweep_runs_finetune_at_every_rate_and_best_lr_reads_only_the_tuning_loss() -> None:
    base = tiny_llama()
    w = char_windows(TEXT, 13, 8, seed=0)
    evaluation = char_windows(TEXT, 16, 4)
    variants = {"q": {"target_modules": ["q_proj"], "r": 2, "lr": 0.01}}
    sweep = lr_sweep(base, w, evaluation, evaluation[:2], evaluation[2:], variants=variants,
                     factors=(0.5, 2.0), seeds=(0, 1))
    assert sorted(sweep) == [("q", lr, s) for lr in (0.005, 0.02) for s in (0, 1)]
    model, _ = finetune(base, w, seed=1, target_modules=["q_proj"], r=2, lr=0.02)
    assert sweep["q", 0.02, 1] == SweepResult(text_loss(model, evaluation),
                                              text_loss(model, evaluation[:2]),
                                              text_loss(model, evaluation[2:]))
    made_up = {("a", 0.1, 0): SweepResult(2.0, 9.0, 9.0), ("a", 0.2, 0): SweepResult(3.0, 1.0, 1.0),
               ("a", 0.1, 1): SweepResult(2.2, 9.0, 9.0), ("a", 0.2, 1): SweepResult(1.5, 1.0, 1.0)}
    assert best_lr(made_up, "a") == 0.1          # mean tuning 2.1 < 2.25; code/old play no part
    with pytest.raises(ValueError, match="'b' is not in the sweep"):
        best_lr(made_up, "b")


def test_the_stored_sweep_chose_every_rate_on_the_tuning_loss_inside_its_grid() -> None:
    for name, settings in TARGET_VARIANTS.items():
        grid = sorted({lr for variant, lr, _ in LR_SWEEP if variant == name})
        assert grid == [settings["lr"] * f for f in LR_FACTORS], name
        assert {s for variant, _, s in LR_SWEEP if variant == name} == {0, 1}
        assert best_lr(LR_SWEEP, name) == settings["lr"] not in (grid[0], grid[-1]), name
    assert len(LR_SWEEP) == len(TARGET_VARIANTS) * len(LR_FACTORS) * 2


def test_the_rank_38_control_trains_exactly_as_many_numbers_as_all_linear() -> None:
    shape = TransformerShape.from_config(load_tiny_llama().config)
    counts = {name: lora_parameter_count(shape, v["r"], v["target_modules"])
              for name, v in TARGET_VARIANTS.items() if v["target_modules"]}
    assert counts == {"q,v": 4_608, "q,v r=38": 43_776, "all-linear": 43_776}


# --------------------------------------------------------------------------- notebook 06

def test_notebook06_shakespeare_sample_stands_for_the_whole_validation_text() -> None:
    """The notebook measures Shakespeare on 200 of the 871 windows of 128 characters."""
    torch.set_num_threads(1)
    base = load_tiny_llama()
    text = load_text("tinyshakespeare", "validation")
    every, sample = char_windows(text, 128), char_windows(text, 128, 200)
    assert len(every) == 871
    whole, part = text_loss(base, every), text_loss(base, sample)
    assert abs(part - whole) < 0.02
    assert abs(whole - 1.563) < 0.001 and abs(part - 1.574) < 0.001      # data/README.md


@pytest.mark.slow
def test_the_stored_sweep_is_what_lr_sweep_computes() -> None:
    """LR_SWEEP again (about 90 s): notebook 06 §3's setting -- 320 windows of 65 characters
    of the fit text, 40 steps of 8; tuning loss on every window of 128 of the tuning text,
    validation losses on every window of 128 of the code and on 200 of Shakespeare."""
    torch.set_num_threads(1)
    fit, tuning = fit_and_tuning_text(load_text("python_code", "train"))
    sweep = lr_sweep(load_tiny_llama(), char_windows(fit, 65, 320, seed=0),
                     char_windows(tuning, 128),
                     char_windows(load_text("python_code", "validation"), 128),
                     char_windows(load_text("tinyshakespeare", "validation"), 128, 200))
    assert sorted(sweep) == sorted(LR_SWEEP)
    for key, result in sweep.items():
        assert max(abs(a - b) for a, b in zip(result, LR_SWEEP[key], strict=True)) < 0.01, key
    for name, settings in TARGET_VARIANTS.items():
        assert best_lr(sweep, name) == settings["lr"], name
