"""Self-checks of notebook 04: right answers pass, each typical mistake gets its own hint."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from lora_lab import apply_lora, checks
from lora_lab.data import load_digits_mlp

RESULTS = {  # made-up accuracies per seed, shaped like the notebook's comparison
    "frozen": [0.10, 0.10, 0.10],
    "logits correction r=8": [0.69, 0.70, 0.71],
    "head only": [0.80, 0.82, 0.83],
    "LoRA r=8": [0.92, 0.93, 0.95],
    "full fine-tuning": [0.94, 0.96, 0.97],  # overlaps LoRA r=8: either order is right
}
RIGHT = ["full fine-tuning", "LoRA r=8", "head only", "logits correction r=8", "frozen"]


class Run(NamedTuple):
    accuracy: float


def verdict_of(capsys: pytest.CaptureFixture, ok: bool) -> str:
    out = capsys.readouterr().out
    assert ok == out.startswith("✅"), out
    return out


# --------------------------------------------------------------------------- ranking


@pytest.mark.parametrize("ranking", [
    RIGHT, ["LoRA r=8", "full fine-tuning", "head only", "logits correction r=8", "frozen"],
    tuple(RIGHT)])
def test_ranking_accepts_every_order_the_experiment_allows(ranking, capsys) -> None:
    assert checks.check_ranking(ranking, RESULTS)
    verdict_of(capsys, True)


def test_ranking_accepts_runs_as_well_as_numbers(capsys) -> None:
    runs = {name: [Run(a) for a in values] for name, values in RESULTS.items()}
    assert checks.check_ranking(RIGHT, runs)
    verdict_of(capsys, True)


@pytest.mark.parametrize(("ranking", "hint"), [
    (["full fine-tuning", "LoRA r=8", "logits correction r=8", "head only", "frozen"],
     "just another head"),
    (["full fine-tuning", "head only", "LoRA r=8", "logits correction r=8", "frozen"],
     "cannot change how those features are computed"),
    (["frozen", "full fine-tuning", "LoRA r=8", "head only", "logits correction r=8"],
     "1 in 10"),
])
def test_ranking_mistakes_get_their_own_hint(ranking, hint, capsys) -> None:
    assert not checks.check_ranking(ranking, RESULTS)
    out = verdict_of(capsys, False)
    assert hint in out and "on every seed" in out


def test_ranking_names_a_separated_pair_with_both_ranges(capsys) -> None:
    wrong = ["LoRA r=8", "full fine-tuning", "logits correction r=8", "head only", "frozen"]
    checks.check_ranking(wrong, RESULTS)
    out = verdict_of(capsys, False)
    assert "'head only' (80.0–83.0 %)" in out and "(69.0–71.0 %)" in out


@pytest.mark.parametrize("answer", [["full fine-tuning", "LoRA"], "full fine-tuning", 3,
                                    [*RIGHT, "frozen"], [*RIGHT[:-1], 0.1]])
def test_ranking_must_list_exactly_the_names(answer, capsys) -> None:
    assert not checks.check_ranking(answer, RESULTS)
    assert "exactly these names" in verdict_of(capsys, False)


VALIDATION = {  # the same methods on other images and seeds: head only and LoRA r=8 overlap
    "frozen": [0.10] * 5,
    "logits correction r=8": [0.66, 0.68, 0.70, 0.71, 0.69],
    "head only": [0.77, 0.78, 0.80, 0.79, 0.86],
    "LoRA r=8": [0.85, 0.91, 0.93, 0.95, 0.92],
    "full fine-tuning": [0.93, 0.94, 0.94, 0.93, 0.95],
}


def test_ranking_with_validation_counts_a_pair_only_where_both_separate_it(capsys) -> None:
    """head only < LoRA r=8 on the test seeds, but not on validation: either order passes;
    logits < head only on both: that order is still enforced, with both sets named."""
    swapped = ["full fine-tuning", "head only", "LoRA r=8", "logits correction r=8", "frozen"]
    assert not checks.check_ranking(swapped, RESULTS)
    verdict_of(capsys, False)
    assert checks.check_ranking(swapped, RESULTS, validation=VALIDATION)
    verdict_of(capsys, True)
    wrong = ["full fine-tuning", "LoRA r=8", "logits correction r=8", "head only", "frozen"]
    assert not checks.check_ranking(wrong, RESULTS, validation=VALIDATION)
    assert "validation images too" in verdict_of(capsys, False)
    with pytest.raises(TypeError, match="validation"):
        checks.check_ranking(RIGHT, RESULTS, validation={"frozen": [0.1]})


def test_ranking_stub_is_not_yet_and_bad_results_are_an_error(capsys) -> None:
    assert not checks.check_ranking(..., RESULTS)
    assert "not answered yet" in verdict_of(capsys, False)
    with pytest.raises(TypeError, match="results"):
        checks.check_ranking(RIGHT, [0.1, 0.2])
    with pytest.raises(TypeError, match="results"):
        checks.check_ranking(RIGHT, {"frozen": 0.1})


# --------------------------------------------------------------------------- memory


def lora_mlp(dtype: torch.dtype) -> torch.nn.Module:
    return apply_lora(load_digits_mlp().to(dtype), ["0", "2", "4"], r=8)


TRAINABLE = 8 * (64 + 256) + 8 * (256 + 256) + 8 * (256 + 10)


@pytest.mark.parametrize(("dtype", "size"), [(torch.float64, 8), (torch.float32, 4)])
def test_memory_right_answer_passes_in_either_dtype(dtype, size, capsys) -> None:
    assert TRAINABLE == 8784
    assert checks.check_training_memory(TRAINABLE, 4 * size * TRAINABLE, lora_mlp(dtype))
    verdict_of(capsys, True)
    assert checks.check_training_memory(float(TRAINABLE), 4 * size * TRAINABLE,
                                        lora_mlp(dtype))
    verdict_of(capsys, True)


@pytest.mark.parametrize(("params", "hint"), [
    (85_002, "what full fine-tuning trains"),
    (85_002 + TRAINABLE, "frozen ones included"),
    (TRAINABLE + 522, "LoRA adds no bias"),
    (8 * (64 + 256 + 256 + 256), "the head (256 → 10) is adapted too"),
    (8 * (64 * 256 + 256 * 256 + 256 * 10), "add, they do not multiply"),
    (8 * (256 + 256 + 10), "you counted B"),
    (8 * (64 + 256 + 256), "you counted A"),
])
def test_memory_count_mistakes_get_their_own_hint(params, hint, capsys) -> None:
    assert not checks.check_training_memory(params, 32 * TRAINABLE, lora_mlp(torch.float64))
    out = verdict_of(capsys, False)
    assert "lora_r8_params" in out and hint in out


@pytest.mark.parametrize(("size", "hint"), [
    (4 * TRAINABLE, "computes in float64 (8 bytes"),
    (8 * TRAINABLE, "a gradient for every trainable number"),
    (16 * TRAINABLE + 1, "write the shapes"),
    (24 * TRAINABLE, "Adam keeps two moments"),
    (32 * TRAINABLE + 8 * 85_002, "that adds the frozen weights"),
])
def test_memory_byte_mistakes_get_their_own_hint(size, hint, capsys) -> None:
    assert not checks.check_training_memory(TRAINABLE, size, lora_mlp(torch.float64))
    out = verdict_of(capsys, False)
    assert "lora_r8_bytes" in out and hint in out


def test_memory_one_value_two_slips_gets_both_hints(capsys) -> None:
    """In float64, 4 copies x 4 bytes = 2 copies x 8 bytes: a learner who forgot Adam's
    moments must not be told only about the size of a number."""
    assert 4 * 4 * TRAINABLE == 2 * 8 * TRAINABLE
    assert not checks.check_training_memory(TRAINABLE, 16 * TRAINABLE, lora_mlp(torch.float64))
    out = verdict_of(capsys, False)
    assert "two different slips" in out
    assert "wrong size of a number" in out and "Adam's two moments" in out


def test_memory_the_float64_hint_never_fires_for_a_float32_model(capsys) -> None:
    for size, hint in ((4 * TRAINABLE, "a gradient for every"), (8 * TRAINABLE, "two moments")):
        checks.check_training_memory(TRAINABLE, size, lora_mlp(torch.float32))
        out = verdict_of(capsys, False)
        assert "float64" not in out and hint in out


def test_memory_stub_and_non_numbers(capsys) -> None:
    model = lora_mlp(torch.float64)
    assert not checks.check_training_memory(..., ..., model)
    assert "lora_r8_params, lora_r8_bytes" in verdict_of(capsys, False)
    assert not checks.check_training_memory("8784", 1, model)
    assert "must be a number" in verdict_of(capsys, False)
    assert not checks.check_training_memory(True, 1, model)
    assert "must be a number" in verdict_of(capsys, False)


# --------------------------------------------------------------------------- smallest rank

RANKS = {1: [0.78, 0.84, 0.86], 2: [0.86, 0.89, 0.91], 4: [0.92, 0.93, 0.94],
         8: [0.91, 0.93, 0.95], 16: [0.93, 0.94, 0.95]}


def test_smallest_rank_right_answer_passes(capsys) -> None:
    assert checks.check_smallest_rank(4, RANKS, 0.9)
    verdict_of(capsys, True)
    runs = {r: [Run(a) for a in values] for r, values in RANKS.items()}
    assert checks.check_smallest_rank(2, runs, 0.85)
    verdict_of(capsys, True)


@pytest.mark.parametrize(("answer", "hint"), [
    (2, "on some seeds only"),
    (8, "a smaller rank does too"),
    (16, "a smaller rank does too"),
    (1, "on some seeds only"),
])
def test_smallest_rank_mistakes_get_their_own_hint(answer, hint, capsys) -> None:
    assert not checks.check_smallest_rank(answer, RANKS, 0.9 if answer != 1 else 0.85)
    assert hint in verdict_of(capsys, False)


def test_smallest_rank_below_every_seed_and_nothing_reaching(capsys) -> None:
    assert not checks.check_smallest_rank(1, RANKS, 0.9)
    assert "on any seed" in verdict_of(capsys, False)
    assert not checks.check_smallest_rank(4, RANKS, 0.99)
    assert "no rank reached" in verdict_of(capsys, False)


def test_smallest_rank_none_is_right_exactly_when_no_rank_reaches(capsys) -> None:
    assert checks.check_smallest_rank(None, RANKS, 0.99)
    verdict_of(capsys, True)
    assert not checks.check_smallest_rank(None, RANKS, 0.9)
    assert "one of the ranks tried" in verdict_of(capsys, False)
    assert not checks.check_smallest_rank(16, RANKS, 0.99)
    assert "the answer is None" in verdict_of(capsys, False)


@pytest.mark.parametrize("answer", [True, False, np.True_])
def test_smallest_rank_rejects_bools(answer, capsys) -> None:
    """True == 1 in Python: without this, True would count as rank 1."""
    assert not checks.check_smallest_rank(answer, {1: [0.95], 2: [0.96]}, 0.9)
    assert "one of the ranks tried" in verdict_of(capsys, False)


def test_smallest_rank_stub_unknown_rank_and_bad_arguments(capsys) -> None:
    assert not checks.check_smallest_rank(..., RANKS, 0.9)
    assert "not answered yet" in verdict_of(capsys, False)
    assert not checks.check_smallest_rank(3, RANKS, 0.9)
    assert "one of the ranks tried" in verdict_of(capsys, False)
    with pytest.raises(ValueError, match="threshold"):
        checks.check_smallest_rank(4, RANKS, 90)
    with pytest.raises(TypeError, match="results"):
        checks.check_smallest_rank(4, [0.9], 0.9)


# --------------------------------------------------------------------------- target layer

LAYERS = {"0": [0.92, 0.93, 0.94], "2": [0.89, 0.91, 0.94], "4": [0.77, 0.80, 0.82]}


@pytest.mark.parametrize("answer", ["0", "2", 0, " '0' ", np.int64(2)])
def test_target_layer_accepts_every_layer_not_beaten(answer, capsys) -> None:
    assert checks.check_target_layer(answer, LAYERS)
    verdict_of(capsys, True)


def test_target_layer_says_when_an_accepted_choice_is_tied_with_a_better_mean(capsys) -> None:
    assert checks.check_target_layer("2", LAYERS)
    out = verdict_of(capsys, True)
    assert "layer 0 had a higher mean (93.0 % against 91.3 %)" in out
    assert "cannot tell the two apart" in out
    assert checks.check_target_layer("0", LAYERS)
    assert "Note" not in verdict_of(capsys, True)


def test_target_layer_rejects_bools(capsys) -> None:
    assert not checks.check_target_layer(False, {"0": [0.9], "False": [0.8]} | LAYERS)
    assert "must be one of" in verdict_of(capsys, False)


def test_target_layer_head_gets_its_hint(capsys) -> None:
    assert not checks.check_target_layer("4", LAYERS)
    out = verdict_of(capsys, False)
    assert "head only sees the 256 features" in out and "77.0–82.0 %" in out
    assert "close to training the head" not in out


def test_target_layer_other_layers_get_their_own_hints(capsys) -> None:
    beaten = {"0": [0.70, 0.72], "2": [0.90, 0.91], "4": [0.80, 0.81]}
    assert not checks.check_target_layer("0", beaten)
    assert "reads the pixels directly" in verdict_of(capsys, False)
    beaten = {"0": [0.90, 0.91], "2": [0.70, 0.72], "4": [0.80, 0.81]}
    assert not checks.check_target_layer("2", beaten)
    out = verdict_of(capsys, False)
    assert "re-mixes the 256 features" in out and "everything" not in out


def test_target_layer_stub_unknown_layer_and_bad_results(capsys) -> None:
    assert not checks.check_target_layer(..., LAYERS)
    assert "not answered yet" in verdict_of(capsys, False)
    assert not checks.check_target_layer("1", LAYERS)
    assert "must be one of" in verdict_of(capsys, False)
    assert not checks.check_target_layer(["0"], LAYERS)
    assert "must be one of" in verdict_of(capsys, False)
    with pytest.raises(TypeError, match="results"):
        checks.check_target_layer("0", "results")
