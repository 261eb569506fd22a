"""disable_adapter and modules_to_save, checked against PEFT's own implementations."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import pytest
import torch
from _model_state import assert_unchanged, snapshot
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from torch import nn

import lora_lab as L


class Classifier(nn.Module):
    """A pretrained body and a new head, the classic modules_to_save case."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8))
        self.norm = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.body(x)))


X = torch.linspace(-2, 2, 30).reshape(5, 6)


def base() -> Classifier:
    torch.manual_seed(0)
    return Classifier().eval()


def train_a_little(model: nn.Module, steps: int = 3) -> nn.Module:
    """A few SGD steps on every trainable parameter (LoRA factors and saved copies)."""
    model.train()
    for module in model.modules():  # frozen BatchNorm statistics stay as they are
        if isinstance(module, nn.BatchNorm1d):
            module.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1)
    torch.manual_seed(1)
    target = torch.randint(0, 3, (5,))
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(X), target).backward()
        optimizer.step()
    return model.eval()


def peft_twin(ours: nn.Module, **options: object) -> nn.Module:
    """PEFT's model of the same base holding the same adapter values as ``ours``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = get_peft_model(base(), LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"],
                                                   **options))
    state = {}
    for name, layer in L.lora_layers(ours):
        state[f"base_model.model.{name}.lora_A.default.weight"] = layer.lora_A
        state[f"base_model.model.{name}.lora_B.default.weight"] = layer.lora_B
    for name, wrapper in L.saved_modules(ours):
        for key, value in wrapper.modules_to_save.state_dict().items():
            state[f"base_model.model.{name}.modules_to_save.default.{key}"] = value
    missing = set(state) - set(theirs.state_dict())
    assert not missing, missing
    theirs.load_state_dict(state, strict=False)
    return theirs.eval()


def adapted(modules_to_save: list[str] | None = None) -> nn.Module:
    return train_a_little(L.apply_lora(base(), ["0", "2"], r=2, alpha=4,
                                       modules_to_save=modules_to_save))


# =========================================================================== disable_adapter

@pytest.mark.parametrize("keep", [None, ["head"], ["norm", "head"]])
def test_disable_adapter_matches_peft(keep: list[str] | None) -> None:
    ours = adapted(keep)
    theirs = peft_twin(ours, modules_to_save=keep)
    adapted_output = ours(X)
    torch.testing.assert_close(adapted_output, theirs(X))
    with L.disable_adapter(ours) as inside:
        assert inside is ours
        plain = ours(X)
        with theirs.disable_adapter():
            torch.testing.assert_close(plain, theirs(X), rtol=0, atol=0)
    assert torch.equal(plain, base()(X))  # exactly the base model
    assert torch.equal(ours(X), adapted_output)


def test_disable_adapter_restores_even_if_the_body_raises() -> None:
    model = adapted(["head"])
    before = snapshot(model)
    expected = model(X)
    with pytest.raises(KeyError), L.disable_adapter(model):
        raise KeyError("boom")
    assert_unchanged(model, before)
    assert torch.equal(model(X), expected)


def test_disable_adapter_nests() -> None:
    model = adapted(["head"])
    plain, expected = base()(X), model(X)
    with L.disable_adapter(model):
        with L.disable_adapter(model):
            assert torch.equal(model(X), plain)
        assert torch.equal(model(X), plain)  # still disabled: the outer block goes on
    assert torch.equal(model(X), expected)


def test_disable_adapter_on_a_merged_model() -> None:
    """Merged layers are unmerged inside (exactly the base) and merged again, bit for bit."""
    model = adapted(["head"])
    theirs = peft_twin(model, modules_to_save=["head"])
    L.merge_lora(model)
    theirs.merge_adapter()
    merged = snapshot(model)
    merged_output = model(X)
    with L.disable_adapter(model):
        assert not any(layer.merged for _, layer in L.lora_layers(model))
        assert torch.equal(model(X), base()(X))
        with theirs.disable_adapter():  # PEFT unmerges too (approximately)
            torch.testing.assert_close(model(X), theirs(X))
    assert_unchanged(model, merged)
    assert torch.equal(model(X), merged_output)


def test_disable_adapter_on_a_partly_merged_model() -> None:
    model = adapted()
    model.body[0].merge()
    before = snapshot(model)
    with L.disable_adapter(model):
        assert torch.equal(model(X), base()(X))
    assert_unchanged(model, before)
    assert model.body[0].merged and not model.body[2].merged


def test_merging_inside_disable_adapter_is_refused() -> None:
    model = adapted()
    with L.disable_adapter(model):
        inside = snapshot(model)
        for call in (L.merge_lora, L.merge_and_unload, lambda m: m.body[0].merge()):
            with pytest.raises(RuntimeError, match="disable"):
                call(model)
            assert_unchanged(model, inside)


def test_disable_adapter_leaves_trainability_alone() -> None:
    """PEFT switches requires_grad off inside; we leave it, and no gradient reaches the adapter."""
    model = adapted(["head"])
    flags = [(n, p.requires_grad) for n, p in model.named_parameters()]
    with L.disable_adapter(model):
        assert [(n, p.requires_grad) for n, p in model.named_parameters()] == flags
        assert not model(X).requires_grad  # the adapter is off the graph: no gradient


def test_disable_adapter_needs_lora_layers() -> None:
    with pytest.raises(ValueError, match="no LoRA layers"), L.disable_adapter(base()):
        pass
    with pytest.raises(TypeError, match="model must"), L.disable_adapter("model"):
        pass


# =========================================================================== modules_to_save

def test_modules_to_save_trains_a_copy_and_counts_like_peft() -> None:
    model = L.apply_lora(base(), ["0", "2"], r=2, alpha=4, modules_to_save=["head"])
    wrapper = model.head
    assert isinstance(wrapper, L.ModulesToSaveWrapper)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "body.0.lora_A", "body.0.lora_B", "body.2.lora_A", "body.2.lora_B",
        "head.modules_to_save.weight", "head.modules_to_save.bias"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = get_peft_model(base(), LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"],
                                                   modules_to_save=["head"]))
    assert tuple(L.count_parameters(model)) == theirs.get_nb_trainable_parameters()
    original = wrapper.original_module.weight.detach().clone()
    train_a_little(model)
    assert torch.equal(wrapper.original_module.weight, original)
    assert not torch.equal(wrapper.modules_to_save.weight, original)
    assert wrapper.weight is wrapper.modules_to_save.weight  # attributes read through
    assert wrapper.out_features == 3


def test_lora_state_dict_and_merge_and_unload_carry_the_head() -> None:
    model = adapted(["norm", "head"])
    state = L.lora_state_dict(model)
    assert sorted(k for k in state if "lora" not in k) == [
        "head.bias", "head.weight", "norm.bias", "norm.num_batches_tracked",
        "norm.running_mean", "norm.running_var", "norm.weight"]
    assert torch.equal(state["head.weight"], model.head.modules_to_save.weight)
    theirs = peft_twin(model, modules_to_save=["norm", "head"])
    expected = model(X)
    L.merge_and_unload(model)
    assert type(model.head) is nn.Linear and type(model.norm) is nn.BatchNorm1d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged_theirs = theirs.merge_and_unload()
    assert model.state_dict().keys() == merged_theirs.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, merged_theirs.state_dict()[key]), key
    torch.testing.assert_close(model(X), expected)


def test_our_save_loads_in_peft(tmp_path: Path) -> None:
    model = adapted(["norm", "head"])
    L.save_adapter(model, tmp_path)
    keys = load_file(tmp_path / "adapter_model.safetensors")
    assert "base_model.model.head.weight" in keys  # PEFT's saved names: no wrapper infix
    assert "base_model.model.norm.running_mean" in keys
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = PeftModel.from_pretrained(base(), tmp_path).eval()
    torch.testing.assert_close(theirs(X), model(X), rtol=1e-6, atol=1e-6)
    assert torch.equal(theirs.base_model.model.head.modules_to_save["default"].weight,
                       model.head.modules_to_save.weight)


def test_peft_save_loads_in_lora_lab(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = get_peft_model(base(), LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"],
                                                   modules_to_save=["norm", "head"]))
        train_a_little(theirs)
        theirs.save_pretrained(tmp_path)
    ours = L.load_adapter(base(), tmp_path).eval()
    torch.testing.assert_close(ours(X), theirs(X), rtol=1e-6, atol=1e-6)
    assert torch.equal(ours.head.modules_to_save.weight,
                       theirs.base_model.model.head.modules_to_save["default"].weight)
    assert sorted(n for n, _ in L.saved_modules(ours)) == ["head", "norm"]


def test_a_reload_never_leaves_the_head_random(tmp_path: Path) -> None:
    trained = adapted(["head"])
    L.save_adapter(trained, tmp_path)
    fresh = L.load_adapter(base(), tmp_path)  # into the pretrained base: the head comes back
    assert torch.equal(fresh.head.modules_to_save.weight, trained.head.modules_to_save.weight)
    assert torch.equal(fresh(X), trained(X))
    again = L.apply_lora(base(), ["0", "2"], r=2, alpha=4, modules_to_save=["head"])
    L.load_adapter(again, tmp_path)  # into a model adapted the same way
    assert torch.equal(again(X), trained(X))
    no_head = L.apply_lora(base(), ["0", "2"], r=2, alpha=4)  # adapted, but no trainable head
    before = snapshot(no_head)
    with pytest.raises(ValueError, match=r"trains \['head'\] whole \(modules_to_save\)"):
        L.load_adapter(no_head, tmp_path)
    assert_unchanged(no_head, before)


def test_a_model_with_a_head_refuses_an_adapter_without_one(tmp_path: Path) -> None:
    L.save_adapter(adapted(), tmp_path)
    model = L.apply_lora(base(), ["0", "2"], r=2, alpha=4, modules_to_save=["head"])
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"trains \[\] whole"):
        L.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_incomplete_head_weights_are_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    L.save_adapter(adapted(["norm"]), tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    tensors = {k: v.clone() for k, v in load_file(weights).items() if "running_var" not in k}
    save_file(tensors, weights)
    model = base()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'norm' \(modules_to_save\) are incomplete: missing "
                                         r"\['running_var'\]"):
        L.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


@pytest.mark.parametrize("keep,message", [
    (["body", "body.0"], "body.0 lies inside body"),
    (["body"], r"body holds LoRA layers \(\['body\.2'\]\)"),  # adapted before
    (["layers"], "layers is a ModuleList"),
    (["shared"], r"is shared with \['head'\]"),
])
def test_modules_that_cannot_be_trained_whole(keep: list[str], message: str) -> None:
    model = base()
    model.layers = nn.ModuleList([nn.Linear(2, 2)])
    model.shared = model.head
    L.apply_lora(model, ["body.2"])
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        L.apply_lora(model, ["0"], modules_to_save=keep)
    assert_unchanged(model, before)


def test_wrapped_models_copy_and_pickle() -> None:
    model = adapted(["head"])
    expected = model(X)
    assert torch.equal(copy.deepcopy(model)(X), expected)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer, weights_only=False)(X), expected)


def test_unmerging_inside_disable_adapter_names_the_with_block() -> None:
    """Review 03: a merged model's unmerge inside the block used to say "already unmerged"."""
    model = adapted()
    L.merge_lora(model)
    with L.disable_adapter(model):
        inside = snapshot(model)
        for call in (L.unmerge_lora, lambda m: m.body[0].unmerge()):
            with pytest.raises(RuntimeError, match="disable_adapter") as info:
                call(model)
            assert "already unmerged" not in str(info.value)
            assert_unchanged(model, inside)
    assert all(layer.merged for _, layer in L.lora_layers(model))  # merged again on exit
