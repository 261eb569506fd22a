"""The notebook-03 self-checks accept every correct answer and name each typical mistake.

For every checker: correct answers pass (float32 and float64 where numbers are computed,
torch tensors and NumPy numbers where counts are returned); each mistake in the
checker's table is rejected with its own hint; the stub (``NotImplementedError`` or
``...``) gets a friendly "not yet"; something that is not an answer gets a clear
message; a malformed table from the notebook is a ``TypeError``/``ValueError``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _verdicts import assert_accepted, assert_rejected
from torch import nn

from lora_lab import LoRALinear, apply_lora, checks, count_parameters
from lora_lab.checks import nb03


def stub(*args):
    raise NotImplementedError("exercise: write me")


FUNCTION_CHECKS = [checks.check_parameter_count, checks.check_lora_setup,
                   checks.check_expected_output]


@pytest.mark.parametrize("check", FUNCTION_CHECKS)
def test_function_stub_gets_a_friendly_not_yet(capsys, check) -> None:
    assert_rejected(capsys, check(stub), "NotImplementedError", "replace the line")


@pytest.mark.parametrize("check", FUNCTION_CHECKS)
def test_passing_a_non_function_is_a_clear_type_error(check) -> None:
    with pytest.raises(TypeError, match="pass your function itself"):
        check(42)


@pytest.mark.parametrize("check", FUNCTION_CHECKS)
def test_exceptions_and_none_are_reported_not_raised(capsys, check) -> None:
    def broken(*args):
        raise ZeroDivisionError("oops")

    assert_rejected(capsys, check(broken), "ZeroDivisionError: oops")
    assert_rejected(capsys, check(lambda *args: None), "forget the `return`")


def test_checking_does_not_change_the_notebooks_random_numbers(capsys) -> None:
    """Review 03: check_lora_setup ran the learner's apply_lora (which draws A) unforked."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    for answers in ((count, (False, True), setup_right, expected_eval, ("higher", "lower")),
                    (lambda s, r: (1, 2), (True, True), setup_sgd,
                     lambda layer, x: layer.train()(x), ("the same", "the same"))):
        torch.manual_seed(123)
        checks.check_parameter_count(answers[0])
        checks.check_first_adam_step(*answers[1])
        checks.check_lora_setup(answers[2])
        checks.check_expected_output(answers[3])
        checks.check_best_lr_shift(*answers[4], BEST)
        capsys.readouterr()
        assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- parameter count

def count(shapes, r):
    trainable = sum(r * (o + i) for o, i in shapes)
    return trainable, sum(o * i + o for o, i in shapes) + trainable


@pytest.mark.parametrize("convert", [
    lambda t: t, list, lambda t: tuple(float(v) for v in t),
    lambda t: tuple(np.int64(v) for v in t), lambda t: tuple(np.float64(v) for v in t),
    lambda t: tuple(torch.tensor(v) for v in t),
    lambda t: tuple(torch.tensor(float(v), dtype=torch.float64) for v in t),
    lambda t: tuple(torch.tensor(float(v), dtype=torch.float32) for v in t),
])
def test_count_accepts_every_form_of_the_right_numbers(capsys, convert) -> None:
    assert_accepted(capsys, checks.check_parameter_count(lambda s, r: convert(count(s, r))))


@pytest.mark.parametrize("convert", [np.array, lambda t: np.array(t, dtype=np.float32),
                                     torch.tensor,
                                     lambda t: torch.tensor(t, dtype=torch.float32)])
def test_count_accepts_the_pair_as_one_array_or_tensor(capsys, convert) -> None:
    """Review 03: a correct pair in one length-2 tensor was refused as 'not a pair'."""
    assert_accepted(capsys, checks.check_parameter_count(lambda s, r: convert(count(s, r))))


def test_count_reference_is_lora_labs_count_parameters() -> None:
    shapes = [(5, 3), (2, 7)]
    model = apply_lora(nn.ModuleList([nn.Linear(i, o) for o, i in shapes]), "all-linear", r=3)
    assert nb03._reference_counts(shapes, 3) == tuple(count_parameters(model)) == count(shapes, 3)


def _weights(s):
    return sum(o * i for o, i in s)


def _biases(s):
    return sum(o for o, _ in s)


def _lora(s, r):
    return sum(r * (o + i) for o, i in s)


@pytest.mark.parametrize(("wrong", "hint"), [
    (lambda s, r: (_lora(s, r) + _biases(s), _weights(s) + 2 * _biases(s) + _lora(s, r)),
     "biases stay frozen"),
    (lambda s, r: (_weights(s), _weights(s) + _biases(s) + _lora(s, r)),
     "size of the full weights"),
    (lambda s, r: (_weights(s) + _biases(s) + _lora(s, r),) * 2, "freezes every base parameter"),
    (lambda s, r: (r * sum(o for o, _ in s), count(s, r)[1]), "you counted B (out × r) only"),
    (lambda s, r: (r * sum(i for _, i in s), count(s, r)[1]), "you counted A (r × in) only"),
    (lambda s, r: (sum(o + i for o, i in s), count(s, r)[1]), "multiply by r"),
    (lambda s, r: (_lora(s, r), _weights(s) + _biases(s)), "the new A and B included"),
    (lambda s, r: (_lora(s, r), _weights(s) + _lora(s, r)), "also has a bias"),
    (lambda s, r: (_lora(s, r), _weights(s)), "weights, biases and the adapter"),
    (lambda s, r: (_lora(s, r), _weights(s) + sum(i for _, i in s) + _lora(s, r)),
     "out_features, not in_features"),  # shapes read as (in, out): a bias of in_features
    (lambda s, r: (_lora(s, r), _lora(s, r)), "the trainable count again"),
    (lambda s, r: count(s, r)[::-1], "the pair is swapped"),
    (lambda s, r: (count(s, r)[0], 7), "write down, for each layer"),
])
def test_count_rejects_each_typical_mistake_with_its_own_hint(capsys, wrong, hint) -> None:
    assert_rejected(capsys, checks.check_parameter_count(wrong), hint)


@pytest.mark.parametrize(("answer", "hint"), [
    (lambda s, r: count(s, r)[0], "not a pair"),
    (lambda s, r: (1, 2, 3), "not a pair"),
    (lambda s, r: torch.tensor([1, 2, 3]), "not a pair"),
    (lambda s, r: (0.5, 2.0), "two whole numbers"),
    (lambda s, r: ("24", "130"), "two whole numbers"),
])
def test_count_explains_answers_that_are_not_two_counts(capsys, answer, hint) -> None:
    assert_rejected(capsys, checks.check_parameter_count(answer), hint)


# --------------------------------------------------------------------------- first Adam step

@pytest.mark.parametrize(("a", "b"), [(False, True), (np.bool_(False), np.bool_(True)),
                                      (torch.tensor(False), torch.tensor(True))])
def test_first_step_accepts_the_right_prediction(capsys, a, b) -> None:
    assert_accepted(capsys, checks.check_first_adam_step(a, b))


def test_first_step_experiment_is_run_not_hard_coded(monkeypatch, capsys) -> None:
    assert nb03._first_adam_step() == (False, True)
    monkeypatch.setattr(nb03, "_first_adam_step", lambda: (True, True))
    assert_accepted(capsys, checks.check_first_adam_step(True, True))


@pytest.mark.parametrize(("a", "b", "hints"), [
    (True, True, ["a_changes = True", "A cannot move in the first step"]),
    (False, False, ["b_changes = False", "B does move"]),
    (True, False, ["A cannot move", "B does move"]),
])
def test_first_step_rejects_each_wrong_prediction_with_its_own_hint(capsys, a, b,
                                                                     hints) -> None:
    out = assert_rejected(capsys, checks.check_first_adam_step(a, b), *hints)
    if a is True and b is True:
        assert "B does move" not in out


@pytest.mark.parametrize(("a", "b", "words"), [
    (..., True, ["not answered yet", "a_changes", "replace `...`"]),
    (False, ..., ["not answered yet", "b_changes"]),
    ("no", True, ["must be True or False"]),
    (False, 1, ["must be True or False"]),
])
def test_first_step_stub_and_non_answers(capsys, a, b, words) -> None:
    assert_rejected(capsys, checks.check_first_adam_step(a, b), *words)


# --------------------------------------------------------------------------- lora_setup

def setup_right(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def setup_all_parameters_after(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.Adam(model.parameters(), lr=lr)


def setup_sgd(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)


def setup_adamw(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)


def setup_regex(model, lr):
    apply_lora(model, r"(q|v)_proj", r=4, alpha=8)
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


@pytest.mark.parametrize("answer", [setup_right, setup_all_parameters_after, setup_adamw,
                                    setup_regex])
def test_setup_accepts_every_adam_that_trains_the_adapter(capsys, answer) -> None:
    assert_accepted(capsys, checks.check_lora_setup(answer))


def setup_trap(model, lr):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return optimizer


def setup_unrelated(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.Adam([nn.Parameter(torch.zeros(3))], lr=lr)


def setup_only_b(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.Adam([p for n, p in model.named_parameters() if n.endswith("lora_B")],
                            lr=lr)


def setup_fixed_lr(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)


def setup_all_linear(model, lr):
    apply_lora(model, "all-linear", r=4, alpha=8)
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def setup_default_rank(model, lr):
    apply_lora(model, ["q_proj", "v_proj"])
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def setup_copy(model, lr):
    other = apply_lora(copy.deepcopy(model), ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.Adam([p for p in other.parameters() if p.requires_grad], lr=lr)


def setup_returns_model(model, lr):
    return apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)


def setup_unfreezes_everything(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    model.requires_grad_(True)
    return torch.optim.Adam(model.parameters(), lr=lr)


def setup_freezes_a(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    for name, p in model.named_parameters():
        if name.endswith("lora_A"):
            p.requires_grad_(False)
    return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def setup_huge_weight_decay(model, lr):
    apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                             weight_decay=1e6)


@pytest.mark.parametrize(("answer", "hint"), [
    (setup_trap, "create it after apply_lora"),
    (setup_unrelated, "give the optimizer the trainable parameters"),
    (setup_only_b, "only some of the LoRA factors"),
    (setup_fixed_lr, "pass the function's lr argument"),
    (setup_all_linear, "expected ['q_proj', 'v_proj']"),
    (setup_default_rank, "pass r=4, alpha=8"),
    (setup_copy, "on the model you were given"),
    (setup_returns_model, "not an optimizer"),
    (setup_sgd, "the exercise asks for Adam"),
    (setup_unfreezes_everything, "don't unfreeze the model's own weights"),
    (setup_freezes_a, "must stay trainable"),
    (setup_huge_weight_decay, "raised the loss"),
])
def test_setup_rejects_each_typical_mistake_with_its_own_hint(capsys, answer, hint) -> None:
    out = assert_rejected(capsys, checks.check_lora_setup(answer), hint)
    if answer is setup_freezes_a:  # review 03: it was told to do what it had done
        assert "every parameter that requires a gradient" not in out


# --------------------------------------------------------------------------- expected output

def expected_formula(layer, x):
    return layer.base(x) + layer.scaling * (x @ layer.lora_A.T) @ layer.lora_B.T


def expected_eval(layer, x):
    with torch.no_grad():
        return layer.eval()(x)


def expected_in_float32(layer, x):
    """Computed in float32 even for a float64 layer: accepted at float32's precision."""
    x32, A, B = x.float(), layer.lora_A.float(), layer.lora_B.float()
    return layer.base.float()(x32) + layer.scaling * (x32 @ A.T) @ B.T


def expected_numpy(layer, x):
    return expected_eval(layer, x).double().numpy()


@pytest.mark.parametrize("answer", [expected_formula, expected_eval, expected_in_float32,
                                    expected_numpy])
def test_expected_output_accepts_every_correct_answer(capsys, answer) -> None:
    assert_accepted(capsys, checks.check_expected_output(answer))


def sampled_average(layer, x, n: int = 2000):
    """A Monte-Carlo average over n masks, seeded: the same every call, but not exact."""
    torch.manual_seed(0)
    with torch.no_grad():
        return layer.train()(x.expand(n, *x.shape)).mean(0)


def _branch(layer, x):
    return layer.scaling * (x @ layer.lora_A.T) @ layer.lora_B.T


@pytest.mark.parametrize(("answer", "hint"), [
    (lambda layer, x: layer.base(x) + (1 - layer.dropout.p) * _branch(layer, x),
     "no factor (1 - p)"),
    (lambda layer, x: layer.base(x) + _branch(layer, x) / (1 - layer.dropout.p),
     "do not divide by 1 - p"),
    (lambda layer, x: layer.base(x), "the branch s B A x is still there"),
    (lambda layer, x: layer.base(x) + (x @ layer.lora_A.T) @ layer.lora_B.T,
     "multiplied by the scaling"),
    (lambda layer, x: layer.train()(x), "changes from call to call"),
    (lambda layer, x: expected_eval(layer, x).T, "expected shape"),
    (lambda layer, x: 2 * expected_eval(layer, x), "only dropout(x) is random"),
    (lambda layer, x: sampled_average(layer, x), "close, but not exact"),
    (lambda layer, x: x @ (layer.weight + layer.delta_weight()).T, "adds its bias"),
])
def test_expected_output_rejects_each_typical_mistake_with_its_own_hint(capsys, answer,
                                                                        hint) -> None:
    out = assert_rejected(capsys, checks.check_expected_output(answer), hint)
    if hint != "close, but not exact":  # the sampling hint is for sampled answers only
        assert "sampled masks" not in out


def test_expected_output_catches_an_edit_of_x(capsys) -> None:
    def in_place(layer, x):
        out = expected_formula(layer, x)
        x.zero_()
        return out

    assert_rejected(capsys, checks.check_expected_output(in_place),
                    "changed its argument x in place")


def test_expected_output_cases_are_train_mode_layers_with_dropout() -> None:
    layer, x = nb03._dropout_layer(torch.float64, 0.25, 1)
    assert isinstance(layer, LoRALinear) and layer.training and layer.dropout.p == 0.25
    assert layer.lora_B.any() and x.dtype == torch.float64


# --------------------------------------------------------------------------- best lr shift

BEST = {("alpha/r", 1): 0.008, ("alpha/r", 4): 0.016, ("alpha/r", 64): 0.016,
        ("alpha/sqrt(r)", 1): 0.008, ("alpha/sqrt(r)", 4): 0.008, ("alpha/sqrt(r)", 64): 0.004}


@pytest.mark.parametrize(("ours", "rs"), [("higher", "lower"), (" Up", "down"),
                                          ("larger", "smaller"), ("HIGHER", "Lower ")])
def test_shift_accepts_the_right_directions_in_any_spelling(capsys, ours, rs) -> None:
    assert_accepted(capsys, checks.check_best_lr_shift(ours, rs, BEST))


def test_shift_answer_follows_the_sweep_not_a_fixed_answer(capsys) -> None:
    flat = {**BEST, ("alpha/r", 64): 0.008, ("alpha/sqrt(r)", 64): 0.016}
    assert_accepted(capsys, checks.check_best_lr_shift("the same", "higher", flat))
    assert_accepted(capsys, checks.check_best_lr_shift("unchanged", "up", flat))
    assert_rejected(capsys, checks.check_best_lr_shift("higher", "lower", flat),
                    "best_lr_alpha_r, best_lr_rslora does not match",
                    "'higher' is what the first step's size suggests",
                    "'lower' is what the first step's progress suggests",
                    "from 0.008 at r = 1 to 0.016 at r = 64")


@pytest.mark.parametrize(("ours", "rs", "words", "absent"), [
    ("the same", "lower", ["best_lr_alpha_r", "from 0.008 at r = 1 to 0.016 at r = 64",
                           "'the same' is what the first step's progress suggests",
                           "its size", "suggests higher"], "best_lr_rslora"),
    ("lower", "lower", ["best_lr_alpha_r", "neither guide", "suggests lower under alpha/r"],
     "best_lr_rslora"),
    ("higher", "higher", ["best_lr_rslora", "from 0.008 at r = 1 to 0.004 at r = 64",
                          "neither guide", "higher under alpha/sqrt(r)"], "best_lr_alpha_r"),
    ("higher", "the same", ["best_lr_rslora", "'the same' is what the first step's size suggests",
                            "suggests lower"], "best_lr_alpha_r"),
    ("lower", "higher", ["best_lr_alpha_r, best_lr_rslora", "suggests lower under alpha/r",
                         "higher under alpha/sqrt(r)"], None),
])
def test_shift_rejects_each_wrong_direction_with_its_own_hint(capsys, ours, rs, words,
                                                              absent) -> None:
    out = assert_rejected(capsys, checks.check_best_lr_shift(ours, rs, BEST), *words)
    assert "Which guide a whole run follows, if either, is what the sweep measures" in out
    if absent:
        assert absent not in out.split("Hint:")[0]


def test_shift_hints_never_point_against_the_sweep(capsys) -> None:
    """Every hint describes a guide and then the measurement: whatever the sweep found, a
    hint names the measured learning rates, never a direction of its own."""
    for ours_64 in (0.004, 0.008, 0.016):
        for rs_64 in (0.004, 0.008, 0.016):
            table = {**BEST, ("alpha/r", 64): ours_64, ("alpha/sqrt(r)", 64): rs_64}
            for ours in ("higher", "lower", "the same"):
                for rs in ("higher", "lower", "the same"):
                    result = checks.check_best_lr_shift(ours, rs, table)
                    out = capsys.readouterr().out
                    if not result:
                        assert "the sweep found" in out and "Hint:" in out


@pytest.mark.parametrize(("ours", "rs", "words"), [
    (..., "lower", ["not answered yet", "best_lr_alpha_r", "replace `...`"]),
    ("higher", ..., ["not answered yet", "best_lr_rslora"]),
    ("sideways", "lower", ["best_lr_alpha_r = 'sideways' is not one of"]),
    ("higher", 0.004, ["best_lr_rslora = 0.004 is not one of"]),
])
def test_shift_stub_and_non_answers(capsys, ours, rs, words) -> None:
    assert_rejected(capsys, checks.check_best_lr_shift(ours, rs, BEST), *words)


@pytest.mark.parametrize(("best", "error"), [
    ("table", TypeError),
    ({("alpha/r", 1, 0.008): 0.1}, TypeError),
    ({("adam", 1): 0.1}, TypeError),
    ({("alpha/r", 1): 0.008, ("alpha/r", 64): 0.016}, ValueError),
    ({("alpha/r", 1): 0.008, ("alpha/sqrt(r)", 1): 0.008}, ValueError),
    ({**BEST, ("alpha/r", 64): float("nan")}, ValueError),
    ({**BEST, ("alpha/r", 64): -0.1}, ValueError),
])
def test_shift_refuses_a_malformed_table(best, error) -> None:
    with pytest.raises(error, match="best"):
        checks.check_best_lr_shift("higher", "lower", best)


def test_setup_rejects_an_optimizer_that_climbs(capsys) -> None:
    """The same gap as a huge weight decay: it holds the factors at lr, but goes uphill."""
    def setup_maximize(model, lr):
        apply_lora(model, ["q_proj", "v_proj"], r=4, alpha=8)
        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr,
                                maximize=True)

    assert_rejected(capsys, checks.check_lora_setup(setup_maximize), "raised the loss")
