"""lora_lab.train: the training loop, accuracy and training memory."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lora_lab import apply_lora
from lora_lab.train import History, TrainingMemory, accuracy, predict, train, training_memory


def toy_data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two well-separated blobs in 4-D, labels 0 and 1."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    inputs = torch.randn(n, 4, generator=g) + 3.0 * labels[:, None].float()
    return inputs, labels


def toy_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- train


def test_train_learns_and_returns_its_history() -> None:
    x, y = toy_data()
    model = toy_model()
    before = accuracy(model, x, y)
    history = train(model, x, y, lr=0.05, epochs=20, batch_size=10, progress=False)
    assert isinstance(history, History)
    assert history.steps_per_epoch == 4
    assert len(history.loss) == 20 * 4
    assert history.loss[-1] < 0.2 * history.loss[0]
    assert accuracy(model, x, y) == 1.0 > before or before == 1.0
    assert history.seconds > 0


def test_train_is_seeded_and_the_seed_matters() -> None:
    x, y = toy_data()
    runs = []
    for seed in (0, 0, 1):
        model = toy_model()
        runs.append((train(model, x, y, lr=0.01, epochs=3, batch_size=8, seed=seed,
                           progress=False).loss, state(model)))
    assert runs[0][0] == runs[1][0]
    assert_same_state(runs[0][1], runs[1][1])
    assert runs[0][0] != runs[2][0]  # another order of the mini-batches


def test_full_batch_by_default_and_partial_last_batch() -> None:
    x, y = toy_data(n=10)
    assert train(toy_model(), x, y, epochs=2, progress=False).steps_per_epoch == 1
    assert train(toy_model(), x, y, epochs=1, batch_size=4, progress=False).steps_per_epoch == 3


def test_the_loop_is_the_one_written_out_in_notebook_04() -> None:
    """Adam, a seeded permutation per epoch, zero_grad/backward/step, the learning rate
    falling linearly from lr towards 0: step for step."""
    x, y = toy_data(n=12)
    model, twin = toy_model(), toy_model()
    history = train(model, x, y, lr=0.02, epochs=2, batch_size=5, seed=3, progress=False)
    optimizer = torch.optim.Adam(twin.parameters(), lr=0.02)
    order, losses, total = torch.Generator().manual_seed(3), [], 2 * 3
    for _ in range(2):
        for rows in torch.randperm(12, generator=order).split(5):
            for group in optimizer.param_groups:
                group["lr"] = 0.02 * (1 - len(losses) / total)
            loss = nn.functional.cross_entropy(twin(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert history.loss == losses
    assert_same_state(state(model), state(twin))


def test_only_trainable_parameters_change_and_mode_is_restored() -> None:
    x, y = toy_data()
    model = apply_lora(toy_model(), ["0"], r=2, alpha=4)
    model.eval()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    train(model, x, y, lr=0.05, epochs=2, progress=False)
    assert not model.training
    for key, value in frozen.items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.get_submodule("0").lora_B.abs().sum() > 0


def test_adam_state_is_measured_and_matches_training_memory() -> None:
    x, y = toy_data()
    model = apply_lora(toy_model(), ["0", "2"], r=2)
    history = train(model, x, y, epochs=1, progress=False)
    memory = training_memory(model)
    trainable = 2 * (4 + 8) + 2 * (8 + 2)
    assert memory == TrainingMemory(4 * trainable, 4 * trainable, 8 * trainable)
    assert memory.total == 16 * trainable
    assert history.adam_state_bytes == memory.adam_moments
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters()
                if p.grad is not None)
    assert grads == memory.gradients


def test_training_memory_follows_the_dtype_and_counts_shared_tensors_once() -> None:
    model = toy_model().double()
    assert training_memory(model).parameters == 8 * (4 * 8 + 8 + 8 * 2 + 2)
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, shared)
    assert training_memory(tied).parameters == 4 * 12
    assert training_memory(nn.Sequential(nn.Linear(2, 2).requires_grad_(False))).total == 0


def test_progress_bar_is_tqdm_on_stderr_outside_jupyter(capsys: pytest.CaptureFixture) -> None:
    x, y = toy_data(n=8)
    train(toy_model(), x, y, epochs=2, progress=True, desc="demo")
    err = capsys.readouterr().err
    assert "demo" in err and "2/2" in err
    train(toy_model(), x, y, epochs=2, progress=False, desc="quiet")
    assert capsys.readouterr().err == ""


def test_a_diverging_loss_raises_floating_point_error() -> None:
    x, y = toy_data()
    model = toy_model()
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"lr=.*too large"):
        train(model, x, y, progress=False)


def test_custom_loss_function() -> None:
    x = torch.randn(16, 4)
    y = torch.zeros(16, dtype=torch.int64)
    model = toy_model()
    history = train(model, x, y, epochs=5, lr=0.1, progress=False,
                    loss_fn=lambda out, target: out[:, 1].mean())
    assert history.loss[-1] < history.loss[0]


def model_and_data():
    x, y = toy_data()
    return toy_model(), x, y


@pytest.mark.parametrize(("kwargs", "error", "name"), [
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": -1e-3}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"lr": "0.1"}, TypeError, "lr"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": 1.5}, TypeError, "epochs"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 41}, ValueError, "batch_size"),
    ({"batch_size": 2.0}, TypeError, "batch_size"),
    ({"seed": -1}, ValueError, "seed"),
    ({"loss_fn": "mse"}, TypeError, "loss_fn"),
])
def test_bad_arguments_are_refused_before_anything_changes(kwargs, error, name) -> None:
    model, x, y = model_and_data()
    before = state(model)
    with pytest.raises(error, match=name):
        train(model, x, y, progress=False, **kwargs)
    assert_same_state(state(model), before)


@pytest.mark.parametrize(("args", "error", "name"), [
    (("model", torch.ones(4, 4), torch.zeros(4, dtype=torch.int64)), TypeError, "model"),
    ((None, torch.ones(4, 4, dtype=torch.int64), torch.zeros(4, dtype=torch.int64)),
     TypeError, "inputs"),
    ((None, torch.ones(4, 4), torch.zeros(4)), TypeError, "labels"),
    ((None, torch.ones(4, 4), torch.zeros(3, dtype=torch.int64)), ValueError, "same number"),
    ((None, torch.ones(0, 4), torch.zeros(0, dtype=torch.int64)), ValueError, "N >= 1"),
    ((None, [[1.0] * 4], torch.zeros(1, dtype=torch.int64)), TypeError, "inputs"),
])
def test_bad_data_is_refused(args, error, name) -> None:
    model = toy_model()
    before = state(model)
    model_arg = model if args[0] is None else args[0]
    with pytest.raises(error, match=name):
        train(model_arg, args[1], args[2], progress=False)
    assert_same_state(state(model), before)


def test_a_model_without_trainable_parameters_is_refused() -> None:
    model, x, y = model_and_data()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="requires gradients"):
        train(model, x, y, progress=False)


# --------------------------------------------------------------------------- evaluation


def test_predict_and_accuracy_use_eval_mode_and_restore_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 3)).train()
    x = torch.randn(30, 4)
    first = predict(model, x)
    assert model.training
    assert torch.equal(predict(model, x), first)  # no dropout: the same every time
    assert first.dtype == torch.int64 and first.shape == (30,)
    assert accuracy(model, x, first) == 1.0
    assert accuracy(model, x, (first + 1) % 3) == 0.0
    copy_ = copy.deepcopy(model).eval()
    assert torch.equal(copy_(x).argmax(1), first)


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda m: predict("m", torch.ones(2, 4)), TypeError, "model"),
    (lambda m: predict(m, torch.ones(2, 4, dtype=torch.int64)), TypeError, "inputs"),
    (lambda m: predict(m, torch.ones(4)), ValueError, "logits"),
    (lambda m: accuracy(m, torch.ones(2, 4), torch.zeros(3, dtype=torch.int64)), ValueError,
     "same number"),
    (lambda m: training_memory("m"), TypeError, "model"),
])
def test_evaluation_rejects_bad_input(call, error, name) -> None:
    with pytest.raises(error, match=name):
        call(toy_model())
