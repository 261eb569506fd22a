"""apply_lora / merging / saving and loading, cross-checked against PEFT."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

import lora_lab as L


class Block(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.q(x) * torch.sigmoid(self.k(x)) + self.v(x))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.layers = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.layers:
            h = h + block(h)
        return self.head(h)


def trained(model: nn.Module) -> nn.Module:
    """Give every LoRA factor B non-zero values, as if trained."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    return model


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_apply_lora_matching_follows_peft() -> None:
    for targets, expected in [
        (["q", "v"], ["layers.0.q", "layers.0.v", "layers.1.q", "layers.1.v"]),
        (["layers.1.q"], ["layers.1.q"]),
        ("layers\\.0\\.(q|k)", ["layers.0.k", "layers.0.q"]),
        (["mlp.0"], ["layers.0.mlp.0", "layers.1.mlp.0"]),
    ]:
        ours = L.apply_lora(Tiny(), targets, r=2)
        assert sorted(n for n, _ in L.lora_layers(ours)) == expected
        theirs = get_peft_model(Tiny(), LoraConfig(r=2, target_modules=targets))
        assert sorted(theirs.targeted_module_names) == expected


def test_apply_lora_freezes_and_counts_like_peft() -> None:
    ours = L.apply_lora(Tiny(), ["q", "v"], r=4, alpha=8)
    theirs = get_peft_model(Tiny(), LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"]))
    assert tuple(L.count_parameters(ours)) == theirs.get_nb_trainable_parameters()
    count = L.count_parameters(ours)
    assert count.trainable == 2 * 2 * 4 * (8 + 8)  # blocks x (q, v) x r x (in + out)
    assert 0 < count.fraction < 1
    assert all("lora_" in n for n, p in ours.named_parameters() if p.requires_grad)


def test_no_match_lists_the_linear_modules() -> None:
    with pytest.raises(ValueError, match=r"matched no nn.Linear.*layers\.0\.q"):
        L.apply_lora(Tiny(), ["query"])


def test_merge_and_unload_gives_plain_linears_with_the_same_outputs() -> None:
    model = trained(L.apply_lora(Tiny(), ["q", "v", "head"], r=2, alpha=4))
    x = torch.randn(5, 4)
    expected = model(x)
    L.merge_lora(model)
    with torch.no_grad():  # a merged model is for inference (training it raises)
        torch.testing.assert_close(model(x), expected)
    L.unmerge_lora(model)
    torch.testing.assert_close(model(x), expected)
    L.merge_and_unload(model)
    assert not list(L.lora_layers(model))
    assert type(model.layers[0].q) is nn.Linear and type(model.head) is nn.Linear
    torch.testing.assert_close(model(x), expected)


def test_merge_and_unload_agrees_with_peft() -> None:
    base = Tiny()
    ours = trained(L.apply_lora(copy.deepcopy(base), ["q", "v"], r=3, alpha=6))
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=3, lora_alpha=6,
                                                            target_modules=["q", "v"]))
    theirs.load_state_dict({f"base_model.model.{k[:-7]}.lora_{k[-1]}.default.weight": v
                            for k, v in L.lora_state_dict(ours).items()}, strict=False)
    merged_ours = L.merge_and_unload(ours).state_dict()
    merged_theirs = theirs.merge_and_unload().state_dict()
    assert merged_ours.keys() == merged_theirs.keys()
    for key in merged_ours:
        torch.testing.assert_close(merged_ours[key], merged_theirs[key])


def test_lora_state_dict_holds_only_the_factors() -> None:
    model = L.apply_lora(Tiny(), ["q"], r=2)
    sd = L.lora_state_dict(model)
    assert sorted(sd) == ["layers.0.q.lora_A", "layers.0.q.lora_B",
                          "layers.1.q.lora_A", "layers.1.q.lora_B"]
    assert sd["layers.0.q.lora_A"].shape == (2, 8)


def test_saved_adapter_layout_and_peft_loads_it(tmp_path: Path) -> None:
    base = Tiny()
    ours = trained(L.apply_lora(copy.deepcopy(base), ["q", "v"], r=4, alpha=8))
    L.save_adapter(ours, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json",
                                                          "adapter_model.safetensors"]
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8
    assert "base_model.model.layers.0.q.lora_A.weight" in load_file(
        tmp_path / "adapter_model.safetensors")
    peft_model = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    x = torch.randn(6, 4)
    torch.testing.assert_close(peft_model(x), ours(x))


@pytest.mark.parametrize("use_rslora", [False, True])
def test_loads_what_peft_saved(tmp_path: Path, use_rslora: bool) -> None:
    base = Tiny()
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(
        r=2, lora_alpha=5, target_modules=["k", "mlp.2"], use_rslora=use_rslora))
    trained(theirs).save_pretrained(tmp_path)
    ours = L.load_adapter(copy.deepcopy(base), tmp_path)
    assert sorted(n for n, _ in L.lora_layers(ours)) == [
        "layers.0.k", "layers.0.mlp.2", "layers.1.k", "layers.1.mlp.2"]
    x = torch.randn(3, 4)
    torch.testing.assert_close(ours(x), theirs(x))


def test_round_trip_into_an_adapted_model(tmp_path: Path) -> None:
    base = Tiny()
    source = trained(L.apply_lora(copy.deepcopy(base), ["q"], r=2, alpha=3, use_rslora=True))
    L.save_adapter(source, tmp_path)
    target = L.apply_lora(copy.deepcopy(base), ["q"], r=2, alpha=16)
    L.load_adapter(target, tmp_path)
    x = torch.randn(4, 4)
    torch.testing.assert_close(target(x), source(x))


def test_ambiguous_paths_are_saved_as_an_exact_regex(tmp_path: Path) -> None:
    model = nn.Sequential()
    model.add_module("q", nn.Linear(3, 3))
    model.add_module("inner", nn.Sequential())
    model.inner.add_module("q", nn.Linear(3, 3))
    L.apply_lora(model, "q", r=1)  # only the top-level q
    L.save_adapter(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["target_modules"] == "q"  # a regex: a list entry "q" would also match inner.q
    fresh = copy.deepcopy(model)
    L.merge_and_unload(fresh)
    peft_model = PeftModel.from_pretrained(fresh, tmp_path)
    assert sorted(peft_model.targeted_module_names) == ["q"]


# --------------------------------------------------------------------------- failed loads

def _with_tensors(change):
    """A corruption that rewrites the weights file after ``change(tensors)``."""
    def corrupt_weights(weights: Path, config_path: Path) -> None:
        tensors = {k: v.clone() for k, v in load_file(weights).items()}  # not views of the file
        save_file(change(tensors), weights)
    return corrupt_weights


def _with_config(**fields: object):
    """A corruption that rewrites the config with ``fields``."""
    def corrupt_config(weights: Path, config_path: Path) -> None:
        config = json.loads(config_path.read_text())
        config.update(fields)
        config_path.write_text(json.dumps(config))
    return corrupt_config


def _wrong_shape(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    key = next(k for k in tensors if k.endswith("lora_B.weight"))
    tensors[key] = torch.zeros(tensors[key].shape[0] + 1, tensors[key].shape[1])
    return tensors


def _nan(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    tensors[next(iter(tensors))][0, 0] = float("nan")
    return tensors


CORRUPTIONS = {
    "truncated file": lambda w, c: w.write_bytes(w.read_bytes()[:50]),
    "pickle instead": lambda w, c: torch.save({k: v.clone() for k, v in load_file(w).items()},
                                              w),  # clone: not views of the file it overwrites
    "wrong shape": _with_tensors(_wrong_shape),
    "missing B": _with_tensors(lambda t: {k: v for k, v in t.items()
                                          if "layers.1.q.lora_B" not in k}),
    "unknown module": _with_tensors(lambda t: {k.replace("layers.1.q", "layers.1.query"): v
                                               for k, v in t.items()}),
    "nan": _with_tensors(_nan),
    "bad json": lambda w, c: c.write_text("{not json"),
    "other rank": _with_config(r=3),
    "dora": _with_config(use_dora=True),
    "no weights": lambda w, c: w.unlink(),
}


def corrupt(directory: Path, how: str) -> None:
    CORRUPTIONS[how](directory / "adapter_model.safetensors", directory / "adapter_config.json")


@pytest.mark.parametrize("how", ["truncated file", "pickle instead", "wrong shape", "missing B",
                                 "unknown module", "nan", "bad json", "other rank", "dora",
                                 "no weights"])
@pytest.mark.parametrize("adapted", [False, True])
def test_a_failed_load_leaves_the_model_untouched(tmp_path: Path, how: str,
                                                  adapted: bool) -> None:
    source = trained(L.apply_lora(Tiny(), ["q"], r=2))
    L.save_adapter(source, tmp_path)
    corrupt(tmp_path, how)
    model = L.apply_lora(Tiny(), ["q"], r=2) if adapted else Tiny()
    before_state, before_repr = state(model), repr(model)
    with pytest.raises(ValueError):
        L.load_adapter(model, tmp_path)
    assert repr(model) == before_repr
    after = state(model)
    assert after.keys() == before_state.keys()
    for key in after:
        torch.testing.assert_close(after[key], before_state[key], rtol=0, atol=0)


def test_adapter_for_another_architecture(tmp_path: Path) -> None:
    L.save_adapter(trained(L.apply_lora(Tiny(), ["q"], r=2)), tmp_path)
    with pytest.raises(ValueError, match="another architecture"):
        L.load_adapter(L.apply_lora(Tiny(), ["v"], r=2), tmp_path)
    other = nn.Sequential(nn.Linear(4, 8))
    with pytest.raises(ValueError, match="another architecture"):
        L.load_adapter(other, tmp_path)


def test_save_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = trained(L.apply_lora(Tiny(), ["q"], r=2))
    L.save_adapter(model, tmp_path)
    good = (tmp_path / "adapter_model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("lora_lab.peft_format.save_file", crash)
    with torch.no_grad():
        model.layers[0].q.lora_B.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        L.save_adapter(model, tmp_path)
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == good  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json",
                                                          "adapter_model.safetensors"]


def test_merged_model_must_be_unmerged_before_loading(tmp_path: Path) -> None:
    model = trained(L.apply_lora(Tiny(), ["q"], r=2))
    L.save_adapter(model, tmp_path)
    L.merge_lora(model)
    with pytest.raises(ValueError, match="unmerge"):
        L.load_adapter(model, tmp_path)


def test_adapter_is_kilobytes(tmp_path: Path) -> None:
    model = L.apply_lora(Tiny(), ["q", "v"], r=2)
    L.save_adapter(model, tmp_path)
    full = tmp_path / "full.safetensors"
    save_file({k: v.contiguous() for k, v in Tiny().state_dict().items()}, full)
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < full.stat().st_size


# --------------------------------------------------------------------------- edge cases

def test_new_layers_follow_the_model_mode(tmp_path: Path) -> None:
    model = Tiny().eval()
    L.apply_lora(model, ["q"], r=2, dropout=0.5)
    trained(model)
    x = torch.randn(4, 4)
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)  # no dropout in eval mode
    L.save_adapter(model, tmp_path)
    loaded = L.load_adapter(Tiny().eval(), tmp_path)
    assert not any(m.training for m in loaded.modules())


def test_lora_linear_exposes_weight_and_bias() -> None:
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    L.apply_lora(layer, ["linear1"], r=2)
    assert layer.linear1.weight is layer.linear1.base.weight
    assert layer(torch.randn(2, 3, 8)).shape == (2, 3, 8)
    with pytest.raises(ValueError, match="MultiheadAttention"):
        L.apply_lora(layer, ["out_proj"], r=2)


@pytest.mark.parametrize("targets,message", [
    (["q"], "already has a LoRA adapter"),
    (["layers.0"], "is a Block, not an nn.Linear"),
])
def test_targets_that_cannot_be_adapted_are_named(targets: list[str], message: str) -> None:
    model = L.apply_lora(Tiny(), ["q"], r=2)
    before = repr(model)
    with pytest.raises(ValueError, match=message):
        L.apply_lora(model, targets, r=2)
    assert repr(model) == before


def test_shared_linear_is_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 3))
    model.add_module("again", model[0])
    with pytest.raises(ValueError, match="shared"):
        L.apply_lora(model, ["0"], r=1)


def test_all_linear_and_root_layers() -> None:
    model = L.apply_lora(Tiny(), "all-linear", r=1)
    assert len(list(L.lora_layers(model))) == 2 + 2 * 5  # embed, head, 5 per block
    with pytest.raises(ValueError, match="wrap it directly"):
        L.apply_lora(nn.Linear(3, 3), ".*")
    layer = L.LoRALinear(nn.Linear(3, 2), r=1)
    with torch.no_grad():
        layer.lora_B.fill_(1.0)
    x = torch.randn(2, 3)
    expected = layer(x)
    plain = L.merge_and_unload(layer)
    assert type(plain) is nn.Linear
    torch.testing.assert_close(plain(x), expected)


def test_merge_lora_is_all_or_nothing() -> None:
    model = trained(L.apply_lora(Tiny(), ["q"], r=2))
    model.layers[0].q.merge()
    w1 = model.layers[1].q.base.weight.detach().clone()
    with pytest.raises(RuntimeError, match="already merged"):
        L.merge_lora(model)
    torch.testing.assert_close(model.layers[1].q.base.weight, w1, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="unmerge"):
        model.layers[0].q.reset_lora_parameters()


def test_a_save_that_fails_half_way_keeps_the_old_pair(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    model = trained(L.apply_lora(Tiny(), ["q"], r=2))
    L.save_adapter(model, tmp_path)
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert oct((tmp_path / "adapter_config.json").stat().st_mode & 0o777) != "0o600"

    def full_disk(self: Path, text: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", full_disk)
    with torch.no_grad():
        model.layers[0].q.lora_B.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        L.save_adapter(model, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old


def test_weights_and_config_from_different_saves_are_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    L.save_adapter(trained(L.apply_lora(Tiny(), ["q"], r=2, alpha=4)), first)
    L.save_adapter(trained(L.apply_lora(Tiny(), ["q"], r=2, alpha=16)), second)
    (first / "adapter_config.json").write_bytes((second / "adapter_config.json").read_bytes())
    with pytest.raises(ValueError, match="different saves"):
        L.load_adapter(Tiny(), first)


@pytest.mark.parametrize("field,value", [("init_lora_weights", "pissa"),
                                         ("init_lora_weights", "olora"),
                                         ("alora_invocation_tokens", [5]),
                                         ("loftq_config", {"loftq_bits": 4}),
                                         ("lora_bias", True)])
def test_adapters_that_change_the_base_are_refused(tmp_path: Path, field: str,
                                                   value: object) -> None:
    L.save_adapter(trained(L.apply_lora(Tiny(), ["q"], r=2)), tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    config[field] = value
    config_text = json.dumps(config)
    (tmp_path / "adapter_config.json").write_text(config_text)
    tensors = {k: v.clone() for k, v in load_file(tmp_path / "adapter_model.safetensors").items()}
    save_file(tensors, tmp_path / "adapter_model.safetensors")  # no hash: as PEFT writes it
    with pytest.raises(ValueError, match=field):
        L.load_adapter(Tiny(), tmp_path)


def test_named_peft_adapter_gets_a_hint(tmp_path: Path) -> None:
    theirs = get_peft_model(Tiny(), LoraConfig(r=2, target_modules=["q"]), adapter_name="style")
    theirs.save_pretrained(tmp_path, selected_adapters=["style"])
    if (tmp_path / "adapter_config.json").exists():
        pytest.skip("this PEFT version saves a single named adapter at the top level")
    with pytest.raises(ValueError, match="style"):
        L.load_adapter(Tiny(), tmp_path)


def test_a_target_that_is_also_trained_whole_is_named() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 3))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"\['2'\] select only modules that modules_to_save"):
        L.apply_lora(model, ["0", "2"], r=2, modules_to_save=["2"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model[2], nn.Linear)  # nothing was swapped in
