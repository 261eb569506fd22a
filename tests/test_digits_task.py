"""lora_lab.digits_task: the shifted-digits task of notebooks 04 and 05."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lora_lab import count_parameters, lora_layers, merge_lora
from lora_lab import digits_task as dt
from lora_lab.data import load_digits, load_digits_mlp
from lora_lab.lowrank import low_rank_approx, matrix_rank
from lora_lab.train import accuracy

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rotate_task() -> dt.DigitsTask:
    return dt.make_task("rotate")


@pytest.fixture(scope="module")
def small_lora() -> nn.Module:
    """A briefly trained LoRA r=4 model (all layers) on the rotated digits."""
    task = dt.make_task("rotate")
    return dt.run_variant(task, "lora", r=4, lr=1e-2, epochs=2).model


# --------------------------------------------------------------------------- the shifts


def test_rotate_turns_each_picture_counter_clockwise() -> None:
    images = load_digits().images[:5]
    turned = dt.rotate(images)
    expected = np.rot90(images.numpy().reshape(5, 8, 8), 1, axes=(1, 2)).reshape(5, 64)
    np.testing.assert_array_equal(turned.numpy(), expected)
    assert turned.shape == images.shape and turned.dtype == images.dtype
    np.testing.assert_array_equal(dt.rotate(images, 0).numpy(), images.numpy())
    four = dt.rotate(dt.rotate(dt.rotate(turned, 1), 1), 1)
    np.testing.assert_array_equal(four.numpy(), images.numpy())


def test_rotation_is_a_fixed_permutation_of_the_pixels() -> None:
    index = torch.arange(64, dtype=torch.float64)[None]
    order = dt.rotate(index)[0].long()
    assert sorted(order.tolist()) == list(range(64))
    images = load_digits().images[:20]
    np.testing.assert_array_equal(dt.rotate(images).numpy(), images[:, order].numpy())


def test_relabel_moves_every_label_on_by_offset() -> None:
    labels = torch.arange(10)
    assert dt.relabel(labels).tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert dt.relabel(labels, 0).tolist() == labels.tolist()
    assert dt.relabel(labels, 9).tolist() == [9, 0, 1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda: dt.rotate(np.ones((2, 64))), TypeError, "images"),
    (lambda: dt.rotate(torch.ones(2, 64, dtype=torch.int64)), TypeError, "images"),
    (lambda: dt.rotate(torch.ones(2, 63)), ValueError, "images"),
    (lambda: dt.rotate(torch.ones(2, 64), 4), ValueError, "quarter_turns"),
    (lambda: dt.rotate(torch.ones(2, 64), 1.0), TypeError, "quarter_turns"),
    (lambda: dt.relabel(torch.ones(3)), TypeError, "labels"),
    (lambda: dt.relabel(torch.tensor([10])), ValueError, "labels"),
    (lambda: dt.relabel(torch.tensor([[1]])), ValueError, "labels"),
    (lambda: dt.relabel(torch.tensor([1]), 10), ValueError, "offset"),
])
def test_shifts_reject_bad_input(call, error, name) -> None:
    with pytest.raises(error, match=name):
        call()


# --------------------------------------------------------------------------- the task


def test_stratified_split_is_fixed_balanced_and_disjoint() -> None:
    labels = load_digits().labels
    chosen, rest = dt.stratified_split(labels, 7)
    assert torch.equal(chosen, dt.stratified_split(labels, 7)[0])
    assert torch.bincount(labels[chosen], minlength=10).tolist() == [7] * 10
    assert sorted(torch.cat([chosen, rest]).tolist()) == list(range(len(labels)))
    assert not torch.equal(chosen, dt.stratified_split(labels, 7, seed=1)[0])


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"per_class": 0}, ValueError, "per_class"),
    ({"per_class": 500}, ValueError, "per_class"),
    ({"per_class": 2.0}, TypeError, "per_class"),
    ({"per_class": 2, "seed": -1}, ValueError, "seed"),
])
def test_stratified_split_rejects_bad_input(kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        dt.stratified_split(load_digits().labels, **kwargs)


def test_make_task_sizes_and_balance(rotate_task: dt.DigitsTask) -> None:
    t = rotate_task
    assert t.shift == "rotate"
    assert t.adapt_images.shape == (300, 64) and t.test_images.shape == (497, 64)
    assert t.adapt_images.dtype == torch.float64 == dt.DTYPE
    assert torch.bincount(t.adapt_labels, minlength=10).tolist() == [30] * 10
    assert len(t.test_labels) == len(t.original_test_labels) == 497


def test_every_shift_uses_the_same_pictures(rotate_task: dt.DigitsTask) -> None:
    plain, relabelled = dt.make_task("none"), dt.make_task("relabel")
    digits = load_digits()
    heldout = digits.images[digits.heldout].double()
    # no test picture is an adaptation picture, and none was seen in pretraining
    together = torch.cat([plain.adapt_images, plain.test_images])
    assert torch.equal(together.sort(dim=0).values, heldout.sort(dim=0).values)
    assert torch.equal(rotate_task.test_images, dt.rotate(plain.test_images))
    assert torch.equal(rotate_task.original_test_images, plain.test_images)
    assert torch.equal(relabelled.test_images, plain.test_images)
    assert torch.equal(relabelled.test_labels, dt.relabel(plain.test_labels))
    assert torch.equal(relabelled.original_test_labels, plain.test_labels)


def test_make_task_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shift"):
        dt.make_task("mirror")
    with pytest.raises(TypeError, match="dtype"):
        dt.make_task("rotate", dtype=torch.int64)
    assert dt.make_task("none", dtype=torch.float32).test_images.dtype == torch.float32


def test_a_sweep_run_takes_as_many_steps_as_a_run_on_the_whole_adaptation_set(
        rotate_task: dt.DigitsTask) -> None:
    """TUNING_EPOCHS on the 200 tuning images = EPOCHS on the 300: 180 Adam steps, the same
    learning-rate schedule (the sweep chooses learning rates for the runs it stands for)."""
    tuning = dt.tuning_split(rotate_task)
    steps = {name: -(-len(t.adapt_labels) // dt.BATCH_SIZE) * epochs
             for name, t, epochs in (("tuning", tuning, dt.TUNING_EPOCHS),
                                     ("task", rotate_task, dt.EPOCHS))}
    assert steps == {"tuning": 180, "task": 180}
    run = dt.run_variant(tuning, "head", lr=0.01, epochs=dt.TUNING_EPOCHS)
    assert len(run.history.loss) == 180


def test_tuning_split_never_uses_the_test_images(rotate_task: dt.DigitsTask) -> None:
    tuning = dt.tuning_split(rotate_task)
    assert tuning.adapt_images.shape == (200, 64) and tuning.test_images.shape == (100, 64)
    assert torch.bincount(tuning.test_labels, minlength=10).tolist() == [10] * 10
    pool = {tuple(row.tolist()) for row in rotate_task.adapt_images}
    used = torch.cat([tuning.adapt_images, tuning.test_images])
    assert {tuple(row.tolist()) for row in used} <= pool
    with pytest.raises(TypeError, match="task"):
        dt.tuning_split("rotate")


# --------------------------------------------------------------------------- the variants


@pytest.mark.parametrize(("name", "trainable"), [
    ("frozen", 0), ("head only", 256 * 10 + 10), ("full fine-tuning", 85_002),
    ("LoRA r=1", 1098), ("LoRA r=8", 8 * (64 + 256 + 256 + 256 + 256 + 10)),
    ("logits correction r=8", 8 * 20), ("LoRA r=8 on layer 0", 8 * (64 + 256)),
    ("LoRA r=8 + new head", 8 * (64 + 256 + 256 + 256) + 2570),
    ("LoRA r=64", 64 * (64 + 256 + 256 + 256 + 256 + 10)),
])
def test_variants_train_what_their_name_says(name: str, trainable: int) -> None:
    model = dt.build_variant(**dt.VARIANTS[name])
    assert count_parameters(model).trainable == trainable
    assert not model.training
    assert next(model.parameters()).dtype == torch.float64


def test_every_variant_starts_as_the_pretrained_model(rotate_task: dt.DigitsTask) -> None:
    x = rotate_task.test_images[:50]
    base = load_digits_mlp().double()
    for name, spec in dt.VARIANTS.items():
        if spec.get("new_head"):
            continue
        torch.testing.assert_close(dt.build_variant(**spec)(x), base(x), msg=name)


def test_the_seed_fixes_the_random_factor_and_the_new_head() -> None:
    a, b = dt.build_variant("lora", r=2, seed=3), dt.build_variant("lora", r=2, seed=3)
    c = dt.build_variant("lora", r=2, seed=4)
    assert torch.equal(a.get_submodule("0").lora_A, b.get_submodule("0").lora_A)
    assert not torch.equal(a.get_submodule("0").lora_A, c.get_submodule("0").lora_A)
    heads = [dt.replace_head(load_digits_mlp(), seed).get_submodule("4").weight
             for seed in (0, 0, 1)]
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])
    assert not torch.equal(heads[0], load_digits_mlp().get_submodule("4").weight)
    assert heads[0].abs().max() <= 1 / 16  # nn.Linear's default range U(+-1/sqrt(256))


def test_logits_correction_is_just_another_head() -> None:
    """z + s B A z with z = W h + b equals a head with weight (I + s B A) W and bias (I + s B A) b.

    This is why it cannot beat training the head itself.
    """
    torch.manual_seed(0)
    model = dt.build_variant("logits", r=3)
    with torch.no_grad():
        model.lora_B.normal_()
    mix = torch.eye(10, dtype=torch.float64) + model.scaling * model.lora_B @ model.lora_A
    head = load_digits_mlp().double()
    with torch.no_grad():
        head[4].weight.copy_(mix @ head[4].weight)
        head[4].bias.copy_(mix @ head[4].bias)
    x = torch.rand(20, 64, dtype=torch.float64)
    torch.testing.assert_close(model(x), head(x))


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"method": "lora-ish"}, ValueError, "method"),
    ({"method": "lora", "r": 0}, ValueError, "r"),
    ({"method": "head", "target_modules": ("0",)}, ValueError, "target_modules"),
    ({"method": "head", "target_modules": ("0", "2", "4")}, ValueError, "target_modules"),
    ({"method": "full", "modules_to_save": ("4",)}, ValueError, "modules_to_save"),
    ({"method": "lora", "seed": -2}, ValueError, "seed"),
    ({"method": "lora", "dtype": "float64"}, TypeError, "dtype"),
    ({"method": "lora", "target_modules": ["7"]}, ValueError, "7"),
    # a string is not a list of paths: "02" would silently adapt layers 0 and 2
    ({"method": "lora", "target_modules": "02"}, TypeError, r"target_modules.*\['0', '2'\]"),
    ({"method": "lora", "target_modules": "0"}, TypeError, "target_modules"),
    ({"method": "lora", "target_modules": ()}, TypeError, "target_modules"),
    ({"method": "lora", "target_modules": (0,)}, TypeError, "target_modules"),
    ({"method": "lora", "modules_to_save": "4", "target_modules": ("0",)}, TypeError,
     "modules_to_save"),
    # r and alpha mean nothing to these methods: refused, not ignored
    ({"method": "head", "r": 3}, ValueError, r"r applies to method='lora' or 'logits'"),
    ({"method": "full", "alpha": 4.0}, ValueError, "alpha applies"),
    ({"method": "frozen", "r": 8}, ValueError, "r applies"),
    # no layer's update can use more than min(in, out) directions
    ({"method": "lora", "r": 1000}, ValueError, r"r must be between 1 and 256"),
    ({"method": "lora", "r": 65, "target_modules": ("0",)}, ValueError, "between 1 and 64"),
    ({"method": "lora", "r": 11, "target_modules": ("4",)}, ValueError, "between 1 and 10"),
    ({"method": "logits", "r": 11}, ValueError, "between 1 and 10"),
    ({"method": "lora", "r": 2.0}, TypeError, "r must be an int"),
    ({"method": "lora", "alpha": 0.0}, ValueError, "alpha"),
    # a layer is adapted or trained whole, not both (named here, not deep in apply_lora)
    ({"method": "lora", "modules_to_save": ("4",)}, ValueError,
     r"both name \['4'\]: a layer is either adapted by LoRA or trained whole"),
    # a new random head that nothing trains
    ({"method": "lora", "new_head": True}, ValueError, r"new_head=True needs the new head"),
    ({"method": "lora", "new_head": True, "target_modules": ("0",),
      "modules_to_save": ("2",)}, ValueError, "new_head"),
    ({"method": "frozen", "new_head": True}, ValueError, "new_head"),
    ({"method": "logits", "new_head": True}, ValueError, "new_head"),
    ({"method": "head", "new_head": 1}, TypeError, "new_head must be a bool"),
])
def test_build_variant_rejects_bad_input(kwargs, error, name) -> None:
    with pytest.raises(error, match=name):
        dt.build_variant(**kwargs)


@pytest.mark.parametrize(("kwargs", "trainable"), [
    ({"method": "lora", "r": 16}, 16 * (64 + 256 + 256 + 256 + 256 + 10)),  # head: rank <= 10
    ({"method": "lora", "r": 64, "target_modules": ("0",)}, 64 * (64 + 256)),
    ({"method": "lora", "r": 10, "target_modules": ("4",)}, 10 * (256 + 10)),
    ({"method": "logits", "r": 10}, 10 * 20),
    ({"method": "head", "new_head": True}, 2570),
    ({"method": "lora", "target_modules": ("0",), "modules_to_save": ("4",), "new_head": True},
     8 * (64 + 256) + 2570),
    ({"method": "lora", "target_modules": ["0", "2"]}, 8 * (64 + 256 + 256 + 256)),
])
def test_build_variant_accepts_the_edges_of_the_allowed_ranges(kwargs, trainable) -> None:
    assert count_parameters(dt.build_variant(**kwargs)).trainable == trainable


def test_replace_head_and_logits_correction_reject_bad_input() -> None:
    with pytest.raises(TypeError, match="model"):
        dt.replace_head(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="seed"):
        dt.replace_head(load_digits_mlp(), -1)
    with pytest.raises(TypeError, match="base"):
        dt.LogitsCorrection("model")
    with pytest.raises(ValueError, match="r"):
        dt.LogitsCorrection(load_digits_mlp(), r=0)
    with pytest.raises(ValueError, match="alpha"):
        dt.LogitsCorrection(load_digits_mlp(), alpha=0)


def test_run_variant_trains_and_reports(rotate_task: dt.DigitsTask) -> None:
    frozen = dt.run_variant(rotate_task, "frozen")
    assert frozen.history is None and frozen.trainable == 0
    assert frozen.correct == round(frozen.accuracy * 497)
    assert frozen.accuracy < 0.15  # the pretrained model cannot read sideways digits
    head = dt.run_variant(rotate_task, "head", lr=0.05, epochs=3)
    assert len(head.history.loss) == 3 * 6
    assert head.accuracy > frozen.accuracy + 0.2
    assert head.accuracy == accuracy(head.model, rotate_task.test_images,
                                     rotate_task.test_labels)
    with pytest.raises(TypeError, match="task"):
        dt.run_variant("rotate", "head")


@pytest.mark.parametrize(("method", "kwargs", "error", "name"), [
    ("head", {"lr": -1.0}, ValueError, "lr"),
    ("frozen", {"lr": -1.0}, ValueError, r"lr applies to methods that train"),
    ("frozen", {"lr": 0.01}, ValueError, r"'frozen' trains nothing"),
    ("head", {"epochs": 0}, ValueError, "epochs"),
    ("head", {"batch_size": 301}, ValueError, "batch_size"),
    ("head", {"progress": "no"}, TypeError, "progress"),
    ("head", {"r": 4}, ValueError, "r applies"),
])
def test_run_variant_checks_everything_before_building(rotate_task, method, kwargs, error,
                                                       name) -> None:
    with pytest.raises(error, match=name):
        dt.run_variant(rotate_task, method, **kwargs)


def test_the_pretrained_model_reads_upright_test_digits(rotate_task: dt.DigitsTask) -> None:
    model = load_digits_mlp().double()
    assert accuracy(model, rotate_task.original_test_images,
                    rotate_task.original_test_labels) > 0.93


# --------------------------------------------------------------------------- truncation


def test_truncating_at_the_adapters_rank_keeps_the_model(small_lora: nn.Module,
                                                         rotate_task: dt.DigitsTask) -> None:
    x = rotate_task.test_images[:64]
    same = dt.truncate_lora(small_lora, 4)
    torch.testing.assert_close(same(x), small_lora(x))
    assert [layer.r for _, layer in lora_layers(same)] == [4, 4, 4]


def test_truncation_is_the_best_low_rank_approximation(small_lora: nn.Module) -> None:
    before = {name: layer.delta_weight().detach().clone()
              for name, layer in lora_layers(small_lora)}
    short = dt.truncate_lora(small_lora, 1)
    for name, layer in lora_layers(short):
        assert layer.r == 1 and layer.scaling == 1.0
        delta = layer.delta_weight().detach().numpy()
        assert matrix_rank(delta) == 1
        np.testing.assert_allclose(delta, low_rank_approx(before[name].numpy(), 1), atol=1e-12)
    for name, layer in lora_layers(small_lora):  # the original is untouched
        assert torch.equal(layer.delta_weight(), before[name])


def test_truncate_lora_rejects_bad_input(small_lora: nn.Module) -> None:
    with pytest.raises(ValueError, match="no LoRA"):
        dt.truncate_lora(load_digits_mlp(), 1)
    with pytest.raises(ValueError, match="rank"):
        dt.truncate_lora(small_lora, 0)
    with pytest.raises(ValueError, match="rank"):
        dt.truncate_lora(small_lora, 5)
    with pytest.raises(TypeError, match="rank"):
        dt.truncate_lora(small_lora, 2.0)
    merged = dt.truncate_lora(small_lora, 4)
    merge_lora(merged)
    with pytest.raises(ValueError, match="merged"):
        dt.truncate_lora(merged, 2)


def test_truncating_one_layer_keeps_the_others(small_lora: nn.Module,
                                               rotate_task: dt.DigitsTask) -> None:
    short = dt.truncate_lora(small_lora, 1, ["0"])
    ranks = {name: layer.r for name, layer in lora_layers(short)}
    assert ranks == {"0": 1, "2": 4, "4": 4}
    kept = dict(lora_layers(small_lora))
    for name in ("2", "4"):
        assert torch.equal(dict(lora_layers(short))[name].delta_weight(),
                           kept[name].delta_weight())
    with pytest.raises(ValueError, match=r"layers \['3'\] are not LoRA layers"):
        dt.truncate_lora(small_lora, 1, ["3"])
    with pytest.raises(TypeError, match="layers"):
        dt.truncate_lora(small_lora, 1, "0")


def test_truncating_a_non_finite_update_is_refused(small_lora: nn.Module) -> None:
    broken = dt.truncate_lora(small_lora, 4)
    with torch.no_grad():
        dict(lora_layers(broken))["2"].lora_B.fill_(float("nan"))
    with pytest.raises(ValueError, match="update of layer '2' contains NaN"):
        dt.truncate_lora(broken, 2)
    assert dt.truncate_lora(broken, 2, ["0"]) is not None  # layer 2 is kept, not cut


@pytest.fixture(scope="module")
def rank_models(rotate_task: dt.DigitsTask) -> dict[int, list[nn.Module]]:
    """Briefly trained LoRA models of ranks 1 and 2, two seeds each."""
    return {r: [dt.run_variant(rotate_task, "lora", r=r, lr=1e-2, epochs=2, seed=seed).model
                for seed in (0, 1)] for r in (1, 2)}


def test_rank_study_measures_every_adapter(rotate_task: dt.DigitsTask, rank_models) -> None:
    models = {r: group[0] for r, group in rank_models.items()}
    study = dt.rank_study(models, rotate_task, shown=6)
    assert study.ranks.tolist() == [1, 2]
    assert study.trainable.tolist() == [1098, 2196]
    assert study.spectra.shape == (2, 2) and study.spectra[0, 1] < 1e-12 < study.spectra[0, 0]
    assert study.truncated_accuracy[-1] == study.accuracy[-1]
    for i, r in enumerate((1, 2)):
        assert study.accuracy[i] == accuracy(models[r], rotate_task.test_images,
                                             rotate_task.test_labels)
    assert study.seed_accuracy.shape == (2, 1)
    assert study.images.shape == (6, 8, 8) and study.predictions.shape == (2, 6)
    assert study.test_size == 497 and study.layer == "0"
    with pytest.raises(ValueError, match="layer"):
        dt.rank_study(models, rotate_task, layer="3")
    with pytest.raises(ValueError, match="shown"):
        dt.rank_study(models, rotate_task, shown=0)
    with pytest.raises(TypeError, match="models"):
        dt.rank_study({}, rotate_task)


def test_rank_study_of_several_seeds_shows_the_first_and_measures_all(
        rotate_task: dt.DigitsTask, rank_models) -> None:
    study = dt.rank_study(rank_models, rotate_task, shown=4)
    x, y = rotate_task.test_images, rotate_task.test_labels
    expected = [[accuracy(m, x, y) for m in rank_models[r]] for r in (1, 2)]
    np.testing.assert_array_equal(study.seed_accuracy, expected)
    np.testing.assert_array_equal(study.accuracy, study.seed_accuracy[:, 0])
    first = dt.rank_study({r: g[0] for r, g in rank_models.items()}, rotate_task, shown=4)
    np.testing.assert_array_equal(study.spectra, first.spectra)
    np.testing.assert_array_equal(study.predictions, first.predictions)


def test_rank_study_cuts_only_the_layer_it_shows(rotate_task: dt.DigitsTask,
                                                 rank_models) -> None:
    study = dt.rank_study(rank_models, rotate_task, layer="2")
    top = rank_models[2][0]
    x, y = rotate_task.test_images, rotate_task.test_labels
    assert study.truncated_accuracy[0] == accuracy(dt.truncate_lora(top, 1, ["2"]), x, y)


@pytest.mark.parametrize(("models", "error", "message"), [
    (lambda m: {1: m[2][0], 2: m[2][1]}, ValueError, r"models\[1\] must be a LoRA model of rank 1"),
    (lambda m: {8: m[2][0]}, ValueError, r"rank 8.*rank \[2\]"),
    (lambda m: {"1": m[1][0]}, TypeError, "keys of models must be ranks"),
    (lambda m: {True: m[1][0]}, TypeError, "keys of models must be ranks"),
    (lambda m: {1: load_digits_mlp().double()}, ValueError, "LoRA layers of rank none"),
    (lambda m: {1: m[1], 2: m[2][:1]}, ValueError, "same number of models"),
    (lambda m: {1: []}, TypeError, r"models\[1\]"),
    (lambda m: [m[1][0]], TypeError, "models must be a non-empty dict"),
])
def test_rank_study_rejects_mislabelled_or_broken_models(rotate_task, rank_models, models,
                                                        error, message) -> None:
    with pytest.raises(error, match=message):
        dt.rank_study(models(rank_models), rotate_task)


def test_rank_study_refuses_a_model_with_a_non_finite_update(rotate_task, rank_models) -> None:
    broken = dt.truncate_lora(rank_models[2][0], 2)
    with torch.no_grad():
        dict(lora_layers(broken))["0"].lora_B.fill_(float("nan"))
    with pytest.raises(ValueError, match="rank-2 model contains NaN"):
        dt.rank_study({1: rank_models[1][0], 2: broken}, rotate_task)


# --------------------------------------------------------------------------- the sweep


def test_the_grid_brackets_every_choice() -> None:
    """No variant's learning rate is the smallest or the largest one tried: a choice at an
    edge of the grid might only be the best of the rates tried, not a best rate."""
    sys.path.insert(0, str(ROOT / "tools"))
    import sweep_digits_lr as tool

    rows = dt.load_lr_sweep()
    for shift, variants in tool.SWEPT.items():
        for variant in variants:
            assert min(tool.LRS) < dt.best_lr(rows, shift, variant) < max(tool.LRS), variant


def test_validation_accuracies_are_the_seeds_at_the_chosen_rate() -> None:
    rows = dt.load_lr_sweep()
    lr = dt.best_lr(rows, "rotate", "LoRA r=8")
    got = dt.validation_accuracies(rows, "rotate", "LoRA r=8")
    expected = [r.correct / 100 for r in sorted(rows, key=lambda r: r.seed)
                if (r.shift, r.variant, r.lr) == ("rotate", "LoRA r=8", lr)]
    assert got == expected and len(got) == 5
    assert dt.validation_accuracies(rows, "rotate", "LoRA r=8", lr=0.001) != got
    with pytest.raises(ValueError, match="no rows"):
        dt.validation_accuracies(rows, "rotate", "LoRA r=3")
    with pytest.raises(ValueError, match=r"at lr=0\.003"):
        dt.validation_accuracies(rows, "rotate", "LoRA r=8", lr=0.003)


def test_the_shipped_sweep_covers_the_tools_grid() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import sweep_digits_lr as tool

    rows = dt.load_lr_sweep()
    keys = {(r.shift, r.variant, r.lr, r.seed) for r in rows}
    assert len(keys) == len(rows)
    expected = {(shift, variant, lr, seed) for shift, variants in tool.SWEPT.items()
                for variant in variants for lr in tool.LRS for seed in tool.SEEDS}
    assert keys == expected
    assert all(r.total == 100 and 0 <= r.correct <= 100 for r in rows)


@pytest.mark.parametrize(("shift", "variant", "seed"), [("rotate", "LoRA r=8", 0),
                                                        ("relabel", "head only", 1)])
def test_two_lines_of_the_shipped_sweep_reproduce(shift: str, variant: str, seed: int) -> None:
    rows = dt.load_lr_sweep()
    lr = dt.best_lr(rows, shift, variant)
    line = next(r for r in rows if (r.shift, r.variant, r.lr, r.seed) == (shift, variant, lr,
                                                                           seed))
    task = dt.tuning_split(dt.make_task(shift))
    run = dt.run_variant(task, **dt.VARIANTS[variant], lr=lr, seed=seed,
                         epochs=dt.TUNING_EPOCHS)
    assert run.correct == line.correct


def test_best_lr_takes_the_best_worst_seed_and_the_smaller_on_ties(tmp_path: Path) -> None:
    path = tmp_path / "sweep.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["shift", "variant", "lr", "seed", "correct", "total"])
        writer.writerows([["rotate", "v", 0.01, 0, 90, 100], ["rotate", "v", 0.01, 1, 50, 100],
                          ["rotate", "v", 0.001, 0, 70, 100], ["rotate", "v", 0.001, 1, 70, 100],
                          ["rotate", "v", 0.1, 0, 70, 100], ["rotate", "v", 0.1, 1, 80, 100]])
    rows = dt.load_lr_sweep(path)
    assert rows[0].accuracy == 0.9
    assert dt.best_lr(rows, "rotate", "v") == 0.001  # 0.01 has a bad seed; 0.001 ties 0.1
    with pytest.raises(ValueError, match="no rows"):
        dt.best_lr(rows, "relabel", "v")
