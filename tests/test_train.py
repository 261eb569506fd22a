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
    frozen = 4 * 8 + 8 + 8 * 2 + 2  # the base MLP's weights and biases
    assert memory == TrainingMemory(4 * trainable, 4 * trainable, 8 * trainable, 4 * frozen)
    assert memory.total == 16 * trainable
    assert memory.overall == 16 * trainable + 4 * frozen
    assert history.adam_state_bytes == memory.adam_moments
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters()
                if p.grad is not None)
    assert grads == memory.gradients


def test_training_memory_follows_the_dtype_and_counts_shared_tensors_once() -> None:
    model = toy_model().double()
    assert training_memory(model).parameters == 8 * (4 * 8 + 8 + 8 * 2 + 2)
    assert training_memory(model).frozen == 0  # full fine-tuning: nothing frozen
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, shared)
    assert training_memory(tied).parameters == 4 * 12
    frozen = training_memory(nn.Sequential(nn.Linear(2, 2).requires_grad_(False)))
    assert frozen.total == 0 and frozen.overall == frozen.frozen == 4 * 6


def test_every_variant_counts_every_weight_once_in_overall() -> None:
    """Full fine-tuning holds 4 copies of every weight; LoRA one copy of every base weight
    plus 4 of each adapter number: the frozen weights are not "the same in every variant"."""
    full = toy_model()
    lora = apply_lora(toy_model(), ["0", "2"], r=2)
    n, extra = 4 * 8 + 8 + 8 * 2 + 2, 2 * (4 + 8) + 2 * (8 + 2)
    assert training_memory(full).overall == 4 * 4 * n
    assert training_memory(lora).overall == 4 * n + 4 * 4 * extra


def test_progress_bar_is_tqdm_on_stderr_outside_jupyter(capsys: pytest.CaptureFixture) -> None:
    x, y = toy_data(n=8)
    train(toy_model(), x, y, epochs=2, progress=True, desc="demo")
    err = capsys.readouterr().err
    assert "demo" in err and "2/2" in err
    train(toy_model(), x, y, epochs=2, progress=False, desc="quiet")
    assert capsys.readouterr().err == ""


def test_a_nan_model_is_not_blamed_on_the_learning_rate() -> None:
    x, y = toy_data()
    model = toy_model()
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    before = state(model)
    with pytest.raises(FloatingPointError, match=r"step 0 .*before any update.*not the cause"):
        train(model, x, y, progress=False)
    for key, value in before.items():  # NaN == NaN here
        torch.testing.assert_close(state(model)[key], value, rtol=0, atol=0, equal_nan=True)


def test_a_diverging_run_raises_and_restores_the_model() -> None:
    """lr = 1e30: after the first step the logits overflow; the model is put back."""
    x, y = toy_data()
    model = toy_model()
    model.eval()
    before = state(model)
    grads = [p.grad for p in model.parameters()]
    with pytest.raises(FloatingPointError, match=r"at step [1-9]\d* of 30.*lr=1e\+30.*restored"):
        train(model, x, y, lr=1e30, epochs=3, batch_size=4, progress=False)
    assert_same_state(state(model), before)
    assert [p.grad for p in model.parameters()] == grads == [None] * 4
    assert not model.training


class StopError(Exception):
    pass


def test_an_error_inside_the_model_mid_run_restores_parameters_grads_and_buffers() -> None:
    """A model that fails at its 5th call (after 4 Adam steps): train re-raises, and the
    parameters, their earlier .grad and a buffer are what they were before the call."""
    x, y = toy_data()
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    calls = []

    def fail_late(module, args):
        calls.append(1)
        if len(calls) == 5:
            raise StopError("simulated failure")

    model.register_forward_pre_hook(fail_late)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    before = state(model)  # includes BatchNorm's running statistics
    with pytest.raises(StopError):
        train(model, x, y, lr=0.1, epochs=3, batch_size=10, progress=False)
    assert len(calls) == 5
    assert_same_state(state(model), before)
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert model[3].weight.grad is None


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
    ({"seed": 2**64}, ValueError, "seed"),
    ({"loss_fn": "mse"}, TypeError, "loss_fn"),
    ({"progress": "no"}, TypeError, "progress"),
    ({"progress": 1}, TypeError, "progress"),
    ({"desc": 3}, TypeError, "desc"),
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
     TypeError, "inputs are torch.int64 but the model failed on them"),
    ((None, torch.ones(4, 4), torch.zeros(4)), TypeError, "labels"),
    ((None, torch.ones(4, 4), torch.zeros(3, dtype=torch.int64)), ValueError, "same number"),
    ((None, torch.ones(0, 4), torch.zeros(0, dtype=torch.int64)), ValueError, "N >= 1"),
    ((None, [[1.0] * 4], torch.zeros(1, dtype=torch.int64)), TypeError, "inputs"),
    ((None, torch.ones(4, 4, dtype=torch.bool), torch.zeros(4, dtype=torch.int64)), TypeError,
     "inputs"),
    ((None, torch.ones(4, 4, dtype=torch.float64), torch.zeros(4, dtype=torch.int64)),
     TypeError, r"inputs are torch.float64 but the model computes in torch.float32"),
    ((None, torch.tensor([[1.0] * 4, [float("nan")] * 4]), torch.zeros(2, dtype=torch.int64)),
     ValueError, r"inputs contain NaN or inf \(first in row 1\)"),
    ((None, torch.ones(4, 4), torch.full((4,), 2)), ValueError, r"labels must be class .*0\.\.1"),
    ((None, torch.ones(4, 4), torch.full((4,), -3)), ValueError, "labels"),
    ((None, torch.ones(4, 4), torch.full((4,), -100)), ValueError, "labels are all -100"),
    ((None, torch.ones(4, 4), torch.zeros(4, 2, dtype=torch.int64)), ValueError,
     r"labels of shape \(N,\)"),
])
def test_bad_data_is_refused(args, error, name) -> None:
    model = toy_model()
    before = state(model)
    model_arg = model if args[0] is None else args[0]
    with pytest.raises(error, match=name):
        train(model_arg, args[1], args[2], progress=False)
    assert_same_state(state(model), before)


def test_a_loss_that_is_not_one_number_is_refused_and_the_model_kept() -> None:
    model, x, y = model_and_data()
    before = state(model)
    with pytest.raises(ValueError, match=r"loss_fn must return one number.*\(40,\).*mean"):
        train(model, x, y, progress=False,
              loss_fn=lambda out, t: nn.functional.cross_entropy(out, t, reduction="none"))
    with pytest.raises(TypeError, match=r"loss_fn must return a torch\.Tensor"):
        train(model, x, y, progress=False, loss_fn=lambda out, t: 0.5)
    assert_same_state(state(model), before)


def test_a_loss_that_no_trainable_parameter_reaches_is_named() -> None:
    class Unused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frozen = nn.Linear(4, 2).requires_grad_(False)
            self.unused = nn.Parameter(torch.zeros(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.frozen(x)

    x, y = toy_data()
    model = Unused()
    with pytest.raises(ValueError, match="does not depend on any parameter"):
        train(model, x, y, progress=False)
    with pytest.raises(ValueError, match="detaches"):
        train(toy_model(), x, y, progress=False,
              loss_fn=lambda out, t: nn.functional.cross_entropy(out.detach(), t))


def test_some_ignored_labels_train_and_an_all_ignored_batch_is_named() -> None:
    x, y = toy_data()
    some = y.clone()
    some[:5] = -100
    assert len(train(toy_model(), x, some, epochs=2, progress=False).loss) == 2
    model = toy_model()
    before = state(model)
    batches = y.clone()
    batches[:20] = -100  # with batch_size 20 and this order, some batch is all ignored
    with pytest.raises(FloatingPointError, match="-100"):
        train(model, x, batches, lr=0.01, epochs=5, batch_size=1, progress=False)
    assert_same_state(state(model), before)


def test_integer_inputs_and_per_position_labels_with_a_loss_of_ones_own() -> None:
    """Token ids (N, L) in, next-token targets (N, L): what notebook 06's language model needs."""
    torch.manual_seed(0)
    vocab, length = 5, 6
    model = nn.Sequential(nn.Embedding(vocab, 8), nn.Linear(8, vocab))
    ids = torch.randint(vocab, (12, length + 1))

    def next_token_loss(logits, targets):
        return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    history = train(model, ids[:, :-1], ids[:, 1:], lr=0.05, epochs=5, batch_size=4,
                    loss_fn=next_token_loss, progress=False)
    assert len(history.loss) == 5 * 3 and history.loss[-1] < history.loss[0]
    with pytest.raises(TypeError, match="labels"):
        train(model, ids[:, :-1], ids[:, 1:].float(), loss_fn=next_token_loss, progress=False)
    with pytest.raises(ValueError, match="same number"):
        train(model, ids[:, :-1], ids[:5, 1:], loss_fn=next_token_loss, progress=False)


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


def nan_weights(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    return model


@pytest.mark.parametrize(("call", "error", "name"), [
    (lambda m: predict("m", torch.ones(2, 4)), TypeError, "model"),
    (lambda m: predict(m, torch.ones(2, 4, dtype=torch.int64)), TypeError, "inputs"),
    (lambda m: predict(m, torch.ones(4)), ValueError, "logits"),
    (lambda m: accuracy(m, torch.ones(2, 4), torch.zeros(3, dtype=torch.int64)), ValueError,
     "same number"),
    (lambda m: training_memory("m"), TypeError, "model"),
    (lambda m: predict(m, torch.ones(2, 4, dtype=torch.float64)), TypeError,
     "inputs are torch.float64"),
    (lambda m: predict(m, torch.full((2, 4), float("nan"))), ValueError, "inputs contain NaN"),
    (lambda m: accuracy(m, torch.full((2, 4), float("nan")), torch.zeros(2, dtype=torch.int64)),
     ValueError, "inputs contain NaN"),
    (lambda m: accuracy(m, torch.ones(2, 4), torch.tensor([0, 2])), ValueError,
     r"labels must be class indices 0\.\.1"),
    (lambda m: accuracy(m, torch.ones(2, 4), torch.tensor([0, -100])), ValueError, "labels"),
    (lambda m: accuracy(m, torch.ones(2, 4), torch.zeros(2, 1, dtype=torch.int64)), ValueError,
     r"labels must have shape \(N,\)"),
    (lambda m: predict(nan_weights(m), torch.ones(2, 4)), ValueError, "NaN or inf logits"),
])
def test_evaluation_rejects_bad_input(call, error, name) -> None:
    with pytest.raises(error, match=name):
        call(toy_model())
