"""Self-checks of notebook 05: right answers pass (float64 and float32, and torch where a
learner could use it), each typical mistake is rejected with its own hint, the stub gets a
friendly "not yet", and a call that is not an answer is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_lab import checks
from lora_lab.update_analysis import energy_rank


def run(capsys: pytest.CaptureFixture[str], ok: bool) -> str:
    out = capsys.readouterr().out
    assert ok == out.startswith("✅"), out
    return out


def hint_of(out: str) -> str:
    assert "Hint:" in out, out
    return out.split("Hint:", 1)[1].strip()


# --------------------------------------------------------------------------- exercise 1

@pytest.fixture
def s() -> np.ndarray:
    """A spectrum on which every typical mistake gives a different k (see below)."""
    return np.sort(np.concatenate([6 * 0.85 ** np.arange(20), 0.3 * np.ones(44)]))[::-1]


def test_k90_accepts_the_answer_in_every_form(s, capsys) -> None:
    k = energy_rank(s, 0.9)
    assert k == 9
    for answer in (k, np.int64(k), float(k), np.float32(k), torch.tensor(k), np.array([k])):
        assert checks.check_update_k90(answer, s)
        run(capsys, True)
    assert checks.check_update_k90(k, s.astype(np.float32))
    run(capsys, True)


@pytest.mark.parametrize(("answer", "phrase"), [
    (8, "counts from 0"), (7, "printed values only"), (47, "*squared* singular values"),
    (49, "99 %"), (3, "50 %"), (15, "a tenth of the largest"),
    (5, "less than 90 %"), (12, "so do the top 11")])
def test_k90_mistakes_get_their_own_hint(answer, phrase, s, capsys) -> None:
    assert not checks.check_update_k90(answer, s)
    assert phrase in hint_of(run(capsys, False))


def test_k90_hints_are_all_different(s, capsys) -> None:
    hints = set()
    for answer in (8, 7, 47, 49, 3, 15):
        checks.check_update_k90(answer, s)
        hints.add(hint_of(run(capsys, False)))
    assert len(hints) == 6


def test_k90_one_short_names_both_causes(s, capsys) -> None:
    """Review item 21: one below the answer comes from argmax's 0-based position *or* from a
    share rounded up to 90 % by hand; the hint names both."""
    checks.check_update_k90(8, s)
    hint = hint_of(run(capsys, False))
    assert "counts from 0" in hint and "rounded up" in hint


def test_k90_stub_and_non_answers(s, capsys) -> None:
    assert not checks.check_update_k90(..., s)
    assert "not answered yet: k90" in run(capsys, False)
    assert not checks.check_update_k90(None, s)                    # review item 20: not "nan"
    out = run(capsys, False)
    assert "k90 is None, not a number" in out and "nan" not in out
    for bad in ("9", [9, 10]):
        assert not checks.check_update_k90(bad, s)
        assert "should be one number" in run(capsys, False)
    assert not checks.check_update_k90(len, s)
    assert "k90 is a function" in run(capsys, False)
    for bad in (9.5, 0, 65):
        assert not checks.check_update_k90(bad, s)
        assert "is not a rank" in run(capsys, False)


def test_k90_bad_spectrum_is_an_error(s) -> None:
    with pytest.raises(ValueError, match="s must be 1-D"):
        checks.check_update_k90(9, np.ones((3, 3)))
    with pytest.raises(ValueError, match="printed must be between"):
        checks.check_update_k90(9, s, printed=100)
    with pytest.raises(ValueError, match="s must be singular values"):
        checks.check_update_k90(9, s[::-1])


# --------------------------------------------------------------------------- exercise 2

@pytest.mark.parametrize("answers", [
    (1, 0, 1), (1.0, 0.0, 1.0), (3 / 3, 0 / 3, 2 / 2),
    (np.float32(1), np.float32(0), np.float32(1)),
    (torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0, dtype=torch.float32))])
def test_phi_by_hand_accepts_right_answers(answers, capsys) -> None:
    assert checks.check_phi_by_hand(*answers)
    run(capsys, True)


@pytest.mark.parametrize(("answers", "name", "phrase"), [
    ((3, 0, 1), "phi_same", "divide by min(i, j) = 3"),
    ((9, 0, 1), "phi_same", "9 entries"),
    ((0.5, 0, 1), "phi_same", "compared with itself"),
    ((1, 1, 1), "phi_orthogonal", "all 0"),
    ((1, 0.5, 1), "phi_orthogonal", "share no direction at all"),
    ((1, 0, 0.4), "phi_nested", "divides by max(i, j)"),
    ((1, 0, 2), "phi_nested", "divide by min(i, j) = 2"),
    ((1, 0, 5 / 6), "phi_nested", "add up its squared entries"),
    ((1, 0, 0.7), "phi_nested", "add up its squared entries")])
def test_phi_by_hand_mistakes_get_their_own_hint(answers, name, phrase, capsys) -> None:
    assert not checks.check_phi_by_hand(*answers)
    out = run(capsys, False)
    assert f"{name} = " in out and phrase in hint_of(out)


def test_phi_by_hand_hints_keep_exercise_3s_answer(capsys) -> None:
    """Review item 18: no hint of exercise 2 gives away the random baseline of exercise 3."""
    for answers in [(0.5, 0, 1), (1, 0.5, 1), (1, 0, 5 / 6), (1, 0, 0.7), (3, 0, 1)]:
        checks.check_phi_by_hand(*answers)
        hint = hint_of(run(capsys, False))
        assert "max(i, j)" not in hint and "random" not in hint


def test_phi_by_hand_stub_and_non_answers(capsys) -> None:
    assert not checks.check_phi_by_hand(1, ..., 1)
    assert "not answered yet: phi_orthogonal" in run(capsys, False)
    assert not checks.check_phi_by_hand("1", 0, 1)
    assert "phi_same should be one number" in run(capsys, False)


# --------------------------------------------------------------------------- exercise 3

@pytest.mark.parametrize("answer", [0.25, 64 / 256, np.float32(0.25), torch.tensor(0.25),
                                    np.array([0.25])])
def test_random_baseline_accepts_the_answer(answer, capsys) -> None:
    assert checks.check_random_baseline(answer, i=8, j=64, d=256)
    run(capsys, True)


@pytest.mark.parametrize(("answer", "phrase"), [
    (8 / 256, "phi divides by min(i, j)"), (2.0, "before the normalisation"),
    (8 * 64 / 256**2, "not 1/d²"), (1 / 256, "two single directions"),
    (8 / 64, "the room they live in"), (0.0, "random subspaces are not orthogonal"),
    (0.3, "what share of its squared length")])
def test_random_baseline_mistakes_get_their_own_hint(answer, phrase, capsys) -> None:
    assert not checks.check_random_baseline(answer, i=8, j=64, d=256)
    assert phrase in hint_of(run(capsys, False))


def test_random_baseline_stub_and_bad_calls(capsys) -> None:
    assert not checks.check_random_baseline(..., i=8, j=64, d=256)
    assert "not answered yet: chance_8_64" in run(capsys, False)
    with pytest.raises(ValueError, match="i and j must differ"):
        checks.check_random_baseline(0.25, i=8, j=8, d=256)
    with pytest.raises(ValueError, match="j must be between"):
        checks.check_random_baseline(0.25, i=8, j=300, d=256)


# --------------------------------------------------------------------------- exercise 4

AMPLIFICATION = {8: 12.0, 64: 4.0}


@pytest.fixture
def W() -> np.ndarray:
    """A 256 x 256 weight with ||W||_F = 16: the random column at r = 8 is 8 * 16 / 256 = 0.5."""
    M = np.random.default_rng(0).normal(size=(256, 256))
    return 16 * M / np.linalg.norm(M)


@pytest.mark.parametrize(("trend", "answer"), [
    ("down", 0.5), ("Down ", 8 * 16.0 / 256), ("down", np.float32(0.5)), ("down", 0.503),
    ("down", torch.tensor(0.5)), ("down", torch.tensor(0.5, dtype=torch.float64))])
def test_amplification_accepts_right_answers(trend, answer, W, capsys) -> None:
    assert checks.check_amplification_prediction(trend, answer, AMPLIFICATION, W)
    run(capsys, True)


def test_amplification_accepts_a_float32_weight(W, capsys) -> None:
    assert checks.check_amplification_prediction("down", 0.5, AMPLIFICATION,
                                                 W.astype(np.float32))
    run(capsys, True)


@pytest.mark.parametrize(("trend", "answer", "phrase"), [
    ("up", 0.5, "more directions catch more of W"), ("same", 0.5, "more directions catch more"),
    ("down", 0.25, "mean *square*"), ("down", (8 / 256) ** 2 * 16, "apply to ||W||_F²"),
    ("down", np.sqrt(8 / 256) * 16, "on one side only"),
    ("down", np.sqrt(8) * 16 / 256, "not √r"), ("down", 8 / 256, "size of W is missing"),
    ("down", 16.0, "all of W"), ("down", 0, "not orthogonal"),
    ("down", 0.4, "E[U U.T] = (r/m) I")])
def test_amplification_mistakes_get_their_own_hint(trend, answer, phrase, W, capsys) -> None:
    assert not checks.check_amplification_prediction(trend, answer, AMPLIFICATION, W)
    assert phrase in hint_of(run(capsys, False))


def test_amplification_one_sided_hint_names_the_side() -> None:
    """For a non-square W the two one-sided mistakes differ, each with its own side."""
    from lora_lab.checks.nb05 import _random_mistakes

    hints = dict(_random_mistakes(np.ones((64, 256)), 8))
    assert "one side only (U)" in hints[np.sqrt(8 / 64) * 128]
    assert "one side only (V)" in hints[np.sqrt(8 / 256) * 128]


def test_amplification_hint_follows_the_measurement(W, capsys) -> None:
    """If an experiment ever measured the other way, the hint reports it and explains nothing."""
    rising = {8: 2.0, 64: 4.0}
    assert checks.check_amplification_prediction("up", 0.5, rising, W)
    run(capsys, True)
    assert not checks.check_amplification_prediction("down", 0.5, rising, W)
    hint = hint_of(run(capsys, False))
    assert "measured 2 at r = 8 and 4 at r = 64" in hint and "catch more" not in hint
    assert checks.check_amplification_prediction("same", 0.5, {8: 4.0, 64: 3.8}, W)
    run(capsys, True)


def test_amplification_stub_and_non_answers(W, capsys) -> None:
    assert not checks.check_amplification_prediction(..., ..., AMPLIFICATION, W)
    assert "not answered yet: trend, random_8" in run(capsys, False)
    assert not checks.check_amplification_prediction("down", ..., AMPLIFICATION, W)
    assert "not answered yet: random_8" in run(capsys, False)
    assert not checks.check_amplification_prediction("down", None, AMPLIFICATION, W)
    out = run(capsys, False)
    assert "random_8 is None, not a number" in out and "nan" not in out
    assert not checks.check_amplification_prediction("decreases", 0.5, AMPLIFICATION, W)
    assert "trend must be one of" in run(capsys, False)
    assert not checks.check_amplification_prediction(-1, 0.5, AMPLIFICATION, W)
    assert "trend must be one of" in run(capsys, False)
    assert not checks.check_amplification_prediction("down", "0.5", AMPLIFICATION, W)
    assert "random_8 should be one number" in run(capsys, False)
    assert not checks.check_amplification_prediction("down", len, AMPLIFICATION, W)
    assert "random_8 is a function" in run(capsys, False)


def test_amplification_bad_measurements_are_an_error(W) -> None:
    with pytest.raises(TypeError, match="amplification must be"):
        checks.check_amplification_prediction("down", 0.5, [12.0, 4.0], W)
    with pytest.raises(TypeError, match="amplification must be"):
        checks.check_amplification_prediction("down", 0.5, {8: 12.0}, W)
    with pytest.raises(ValueError, match="W must be 2-D"):
        checks.check_amplification_prediction("down", 0.5, AMPLIFICATION, W[0])
    with pytest.raises(ValueError, match="must fit in W"):
        checks.check_amplification_prediction("down", 0.5, AMPLIFICATION, W[:32, :32])
