"""The notebook-06 self-checks accept every correct answer and name each typical mistake.

For every checker: correct answers pass (Python, NumPy and torch numbers, float32 and
float64; strings in any case and spacing); each mistake in the checker's table is
rejected with its own hint; the stub's ``...`` gets a friendly "not yet"; something that
is not an answer gets a clear message; a malformed table from the notebook is a
``TypeError``/``ValueError``. Predictions are judged against the experiment passed in.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lora_lab import checks
from lora_lab.checks import nb06
from lora_lab.memory import LLAMA_2_7B, lora_parameter_count


def assert_accepted(capsys, result: bool) -> None:
    out = capsys.readouterr().out
    assert result is True, out
    assert "✅" in out and "correct" in out


def assert_rejected(capsys, result: bool, *words: str) -> str:
    out = capsys.readouterr().out
    assert result is False, out
    assert "❌" in out and "not yet" in out and "Hint:" in out
    for word in words:
        assert word in out, f"{word!r} not in {out!r}"
    return out


@pytest.fixture(scope="module")
def llama() -> LlamaForCausalLM:
    """3 layers, untied head: 22 Linear modules, 21 of them taken by "all-linear"."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=20, hidden_size=8, intermediate_size=12, num_hidden_layers=3,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    return LlamaForCausalLM(config)


# The experiment of notebook 06 §3 as it came out (LR_SWEEP at the chosen rates): all-linear
# closes more, q,v forgets most; the tables also hold the parameter-matched control q,v r=38.
CODE = {("q,v", 0): 2.74, ("q,v", 1): 2.66, ("q,v r=38", 0): 2.55, ("q,v r=38", 1): 2.59,
        ("all-linear", 0): 2.18, ("all-linear", 1): 2.19, ("full", 0): 1.92, ("full", 1): 1.87}
OLD = {("q,v", 0): 3.43, ("q,v", 1): 3.25, ("q,v r=38", 0): 3.29, ("q,v r=38", 1): 3.22,
       ("all-linear", 0): 2.40, ("all-linear", 1): 2.39, ("full", 0): 2.35, ("full", 1): 2.34}


def test_the_tables_are_the_notebooks_experiment() -> None:
    from lora_lab.language_model import LR_SWEEP, TARGET_VARIANTS

    for (name, seed), loss in CODE.items():
        result = LR_SWEEP[name, TARGET_VARIANTS[name]["lr"], seed]
        assert round(result.code, 2) == loss and round(result.shakespeare, 2) == OLD[name, seed]


# --------------------------------------------------------------------------- exercise 1

@pytest.mark.parametrize("answer", [21, 21.0, np.int64(21), np.float32(21),
                                    torch.tensor(21), torch.tensor(21.0, dtype=torch.float32),
                                    torch.tensor(21.0, dtype=torch.float64), 3 * 7])
def test_all_linear_count_accepts_the_count_in_any_number_type(capsys, llama, answer) -> None:
    assert_accepted(capsys, checks.check_all_linear_count(answer, llama))


@pytest.mark.parametrize(("answer", "words"), [
    (22, ["lm_head included", "output layer"]),
    (23, ["nn.Embedding"]),
    (7, ["one layer's worth", "3 layers"]),
    (12, ["attention projections only", "gate_proj"]),
    (5, ["§1.2's list"]),
])
def test_all_linear_count_names_each_mistake(capsys, llama, answer, words) -> None:
    assert_rejected(capsys, checks.check_all_linear_count(answer, llama), *words)


def test_all_linear_count_stub_and_non_answers(capsys, llama) -> None:
    assert_rejected(capsys, checks.check_all_linear_count(..., llama), "not answered yet",
                    "replace `...`")
    assert_rejected(capsys, checks.check_all_linear_count("21", llama), "one number")
    assert_rejected(capsys, checks.check_all_linear_count(21.5, llama), "whole number")
    assert_rejected(capsys, checks.check_all_linear_count(len, llama), "function")


def test_all_linear_count_does_not_touch_the_model_or_the_random_numbers(capsys, llama) -> None:
    before = {k: v.clone() for k, v in llama.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    checks.check_all_linear_count(21, llama)
    capsys.readouterr()
    assert torch.equal(torch.rand(3), expected)
    assert all(torch.equal(v, before[k]) for k, v in llama.state_dict().items())
    assert not any("lora" in name for name, _ in llama.named_parameters())


# --------------------------------------------------------------------------- exercise 2

@pytest.mark.parametrize(("closes", "forgets"), [("all-linear", "q,v"), ("All Linear", "Q,V"),
                                                 ("all_linear", " q,v "), ("ALL-LINEAR", "qv")])
def test_target_prediction_accepts_the_measured_answer(capsys, closes, forgets) -> None:
    assert_accepted(capsys, checks.check_target_prediction(closes, forgets, CODE, OLD))


def test_target_prediction_rejects_each_wrong_prediction_with_its_hint(capsys) -> None:
    out = assert_rejected(capsys, checks.check_target_prediction("q,v", "q,v", CODE, OLD),
                          "all-linear reached a lower", "MLP's gate_proj", "q,v r=38")
    assert "2.18–2.19" in out and "2.66–2.74" in out
    out = assert_rejected(capsys, checks.check_target_prediction("all-linear", "full", CODE,
                                                                  OLD),
                          "q,v forgot more", "how far the update moves it")
    assert "3.25–3.43" in out
    assert_rejected(capsys, checks.check_target_prediction("all-linear", "all-linear", CODE, OLD),
                    "q,v forgot more", "seed by seed")


def test_target_prediction_names_a_variant_that_really_beat_the_answer(capsys) -> None:
    """The review's case: q,v's seeds straddle the others, so only full beat all-linear on
    every seed; the message must name full, not the first 'most forgetful' candidate."""
    old = {("q,v", 0): 3.0, ("q,v", 1): 2.0, ("all-linear", 0): 2.3, ("all-linear", 1): 2.4,
           ("full", 0): 2.6, ("full", 1): 2.7}
    out = assert_rejected(capsys, checks.check_target_prediction("all-linear", "all-linear",
                                                                  CODE, old),
                          "full forgot more on every seed", "2.60–2.70 against 2.30–2.40")
    assert "q,v forgot more" not in out
    for answer in ("q,v", "full"):                  # neither beat the other on every seed
        assert_accepted(capsys, checks.check_target_prediction("all-linear", answer, CODE, old))


def test_target_prediction_follows_the_experiment_not_a_fixed_answer(capsys) -> None:
    flipped = {(name, s): 5.0 - loss for (name, s), loss in CODE.items()}   # q,v now lowest
    assert_accepted(capsys, checks.check_target_prediction("q,v", "q,v", flipped, OLD))
    assert_rejected(capsys, checks.check_target_prediction("all-linear", "q,v", flipped, OLD),
                    "q,v reached a lower", "q,v came out ahead")
    overlap = CODE | {("q,v", 1): 2.0}                                      # ranges overlap
    for answer in ("q,v", "all-linear"):
        assert_accepted(capsys, checks.check_target_prediction(answer, "q,v", overlap, OLD))


def test_target_prediction_stub_and_non_answers(capsys) -> None:
    assert_rejected(capsys, checks.check_target_prediction(..., ..., CODE, OLD),
                    "closes_more, forgets_most are still `...`")
    assert_rejected(capsys, checks.check_target_prediction("full", "q,v", CODE, OLD),
                    "closes_more must be one of")
    assert_rejected(capsys, checks.check_target_prediction("all-linear", 3, CODE, OLD),
                    "forgets_most must be one of")


@pytest.mark.parametrize("table", [[], {}, {"q,v": 2.5}, {("q,v", 0): 2.5},
                                   {(3, 0): 1.0, **CODE},
                                   {k: v for k, v in CODE.items() if k[0] != "full"}])
def test_target_prediction_refuses_a_malformed_experiment(table) -> None:
    with pytest.raises(TypeError, match="code_loss"):
        checks.check_target_prediction("all-linear", "q,v", table, OLD)


# --------------------------------------------------------------------------- exercise 3

@pytest.mark.parametrize("answer", ["code", " Code", "default", "DEFAULT"])
def test_active_adapter_accepts_the_measured_one(capsys, answer) -> None:
    assert_accepted(capsys, checks.check_active_adapter(answer, "code"))


def test_active_adapter_hint_names_set_adapter(capsys) -> None:
    assert_rejected(capsys, checks.check_active_adapter("docs", "code"), "load_adapter only loads",
                    "set_adapter('docs')")
    assert_rejected(capsys, checks.check_active_adapter("code", "docs"), "active_adapter")
    assert_accepted(capsys, checks.check_active_adapter("docs", "docs"))


def test_active_adapter_stub_non_answers_and_bad_measurement(capsys) -> None:
    assert_rejected(capsys, checks.check_active_adapter(..., "code"), "not answered yet")
    assert_rejected(capsys, checks.check_active_adapter("the first", "code"), "must be one of")
    with pytest.raises(ValueError, match="measured"):
        checks.check_active_adapter("code", "neither")


# --------------------------------------------------------------------------- exercise 4

QV = lora_parameter_count(LLAMA_2_7B, 16, ["q_proj", "v_proj"])
ALL = lora_parameter_count(LLAMA_2_7B, 16, "all-linear")


def test_the_7b_counts_are_what_the_notebook_derives() -> None:
    assert QV == 32 * 2 * 16 * 8192 == 8_388_608
    assert ALL == 32 * (4 * 16 * 8192 + 3 * 16 * (4096 + 11008)) == 39_976_960


@pytest.mark.parametrize("convert", [int, float, np.int64, np.float64,
                                     lambda v: torch.tensor(v, dtype=torch.float32),
                                     lambda v: torch.tensor(v, dtype=torch.float64),
                                     torch.tensor])
def test_7b_count_accepts_the_counts_in_any_number_type(capsys, convert) -> None:
    assert_accepted(capsys, checks.check_7b_lora_count(convert(QV), convert(ALL)))


ONE = {name: lora_parameter_count(LLAMA_2_7B, 16, [name]) for name in ("q_proj", "down_proj")}


@pytest.mark.parametrize(("qv", "all_linear", "words"), [
    (QV // 32, ALL, ["one layer's adapters", "32 layers"]),
    (QV // 16, ALL, ["multiply by r"]),
    (QV // 2, ALL, ["that is half", "matrices are missing", "q_proj, v_proj",
                    "only A or only B", "r·(in + out)"]),
    (ONE["q_proj"], ALL, ["that is half", "matrices are missing"]),     # v_proj forgotten
    (QV, ALL - ONE["down_proj"], ["one matrix per layer is missing", "MLP's three"]),
    (QV, ALL - ONE["q_proj"], ["one matrix per layer is missing", "four attention"]),
    (32 * 16 * 2 * 4096 * 4096, ALL, ["r·in·out"]),
    (32 * 2 * 4096 * 4096, ALL, ["stay frozen"]),
    (QV, ALL + 16 * (4096 + 32000), ["lm_head"]),
    (QV, 32 * 7 * 16 * 8192, ["11,008 × 4,096"]),
    (QV, lora_parameter_count(LLAMA_2_7B, 16, ["q_proj", "k_proj", "v_proj", "o_proj"]),
     ["attention projections only"]),
    (QV, ALL // 32, ["one layer's adapters"]),
    (QV + 1, ALL, ["r·(in + out), then multiply"]),
])
def test_7b_count_names_each_mistake(capsys, qv, all_linear, words) -> None:
    assert_rejected(capsys, checks.check_7b_lora_count(qv, all_linear), *words)


def test_7b_count_stub_and_non_answers(capsys) -> None:
    assert_rejected(capsys, checks.check_7b_lora_count(..., ALL), "qv_r16 is still `...`")
    assert_rejected(capsys, checks.check_7b_lora_count(QV, ...), "all_linear_r16 is still")
    assert_rejected(capsys, checks.check_7b_lora_count([QV, ALL], ALL), "one number")
    assert_rejected(capsys, checks.check_7b_lora_count(QV + 0.5, ALL), "whole number")


# --------------------------------------------------------------------------- exercise 5

def test_memory_needs_are_lora_lab_memory_figures() -> None:
    need = nb06._memory_needs()
    assert need["full"] > 80e9 and 14e9 < need["all-linear r=64"]
    assert need["q,v r=16"] < need["all-linear r=16"] < nb06.BUDGET_BYTES < need["all-linear r=64"]


@pytest.mark.parametrize("answer", ["all-linear r=16", "All Linear r = 16", "all_linear r=16"])
def test_memory_choice_accepts_all_linear_r16(capsys, answer) -> None:
    assert_accepted(capsys, checks.check_memory_choice(answer, CODE))


@pytest.mark.parametrize(("answer", "words"), [
    ("full", ["80.9 GB", "2 + 8 more"]),
    ("all-linear r=64", ["15.4 GB", "rank-64 adapter"]),
    ("q,v r=16", ["13.6 GB", "so does all-linear r=16 (14.0 GB)", "closed more of the gap",
                  "only 0.4 GB more"]),
])
def test_memory_choice_names_each_mistake(capsys, answer, words) -> None:
    assert_rejected(capsys, checks.check_memory_choice(answer, CODE), *words)


def test_memory_choice_follows_the_experiment(capsys) -> None:
    flipped = {(name, s): 5.0 - loss for (name, s), loss in CODE.items()}   # q,v now better
    assert_accepted(capsys, checks.check_memory_choice("q,v r=16", flipped))
    assert_rejected(capsys, checks.check_memory_choice("all-linear r=16", flipped),
                    "q,v closed more")


def test_memory_choice_stub_non_answers_and_bad_experiment(capsys) -> None:
    assert_rejected(capsys, checks.check_memory_choice(..., CODE), "choice is still `...`")
    assert_rejected(capsys, checks.check_memory_choice("LoRA", CODE), "must be one of")
    with pytest.raises(TypeError, match="code_loss"):
        checks.check_memory_choice("all-linear r=16", {"q,v": 1.0})


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], "all-linear"])
def test_7b_count_every_listed_mistake_gets_its_own_hint(capsys, targets) -> None:
    mistakes = nb06._count_mistakes(LLAMA_2_7B, 16, targets)
    right = lora_parameter_count(LLAMA_2_7B, 16, targets)
    assert right not in mistakes
    for value, hint in mistakes.items():
        pair = (value, ALL) if targets != "all-linear" else (QV, value)
        out = assert_rejected(capsys, checks.check_7b_lora_count(*pair))
        assert hint[:60] in " ".join(out.split()), (value, out)
