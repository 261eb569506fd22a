"""Issue 7, section 2: loading never half-loads, and the config options are checked against PEFT.

Every adapter here is built and saved by PEFT itself (``get_peft_model`` +
``save_pretrained``) unless PEFT cannot build it on this machine; it is then
loaded by ``load_adapter`` and by ``PeftModel.from_pretrained`` and the two
compared, or ``load_adapter`` must refuse it, naming the option, with the model
left exactly as it was.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from _model_state import assert_unchanged, snapshot
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import config as lora_config
from safetensors.torch import load_file, save_file
from torch import nn

import lora_lab as L


class Block(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.q = nn.Linear(d, d)
        self.v = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x) + torch.tanh(self.v(x))


class Net(nn.Module):
    """Embedding, two blocks in a ``layers`` list (for layers_to_transform), a head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.layers = nn.ModuleList([Block(), Block()])
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids)
        for block in self.layers:
            x = x + block(x)
        return self.head(self.norm(x))


IDS = torch.tensor([[1, 5, 7, 2], [3, 3, 0, 15]])


def base() -> Net:
    torch.manual_seed(0)
    return Net()


def peft_save(directory: Path, **options: Any) -> Path:
    """Build an adapter with PEFT, give it trained-looking values, save it with PEFT."""
    options.setdefault("target_modules", ["q", "v"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(base(), LoraConfig(r=2, lora_alpha=6, **options))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_A" not in name:  # B, saved modules, extra parameters
                p.add_(0.3 * torch.randn_like(p))
            elif "lora_A" in name:
                p.normal_(std=0.3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save_pretrained(directory)
    return directory


def edit_config(directory: Path, **fields: Any) -> None:
    path = directory / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(fields)
    path.write_text(json.dumps(config, indent=2))


def peft_load(directory: Path) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(base(), directory).eval()


def assert_reproduces_peft(directory: Path) -> nn.Module:
    """load_adapter == PeftModel.from_pretrained: outputs, and merged weights bit for bit."""
    theirs = peft_load(directory)
    ours = L.load_adapter(base(), directory).eval()
    # the unmerged forwards differ only in the order of the roundings
    torch.testing.assert_close(ours(IDS), theirs(IDS), rtol=1e-6, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged_theirs = theirs.merge_and_unload()
    merged_ours = L.merge_and_unload(copy.deepcopy(ours))
    assert merged_ours.state_dict().keys() == merged_theirs.state_dict().keys()
    for key, value in merged_ours.state_dict().items():
        assert torch.equal(value, merged_theirs.state_dict()[key]), key
    assert torch.equal(merged_ours(IDS), merged_theirs(IDS))
    return ours


# =========================================================================== no partial adapter

def drop_keys(directory: Path, module: str) -> None:
    weights = directory / "adapter_model.safetensors"
    tensors = {k: v.clone() for k, v in load_file(weights).items()}
    save_file({k: v for k, v in tensors.items() if f".{module}." not in k}, weights)


@pytest.mark.parametrize("adapted", [False, True])
def test_the_issue_example_a_module_missing_from_the_weights(tmp_path: Path,
                                                            adapted: bool) -> None:
    """Config targets ["0", "2"], the weights lack every key of "2": refused, nothing changed."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    theirs = get_peft_model(copy.deepcopy(mlp), LoraConfig(r=2, target_modules=["0", "2"]))
    theirs.save_pretrained(tmp_path)
    drop_keys(tmp_path, "2")
    model = L.apply_lora(copy.deepcopy(mlp), ["0", "2"], r=2) if adapted else copy.deepcopy(mlp)
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"the config targets \['2'\] but the weights hold no "
                                         r"lora_A/lora_B for them"):
        L.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_a_whole_block_missing_from_the_weights(tmp_path: Path) -> None:
    peft_save(tmp_path)
    drop_keys(tmp_path, "1")  # both q and v of block 1
    model = base()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"\['layers\.1\.q', 'layers\.1\.v'\]"):
        L.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_tensors_of_modules_the_config_does_not_target(tmp_path: Path) -> None:
    peft_save(tmp_path, target_modules=["q"])
    weights = tmp_path / "adapter_model.safetensors"
    tensors = {k: v.clone() for k, v in load_file(weights).items()}
    tensors = {**tensors, **{k.replace(".q.", ".v."): v.clone() for k, v in tensors.items()}}
    save_file(tensors, weights)  # lora_A/lora_B for v as well, which the config does not name
    model = base()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"the weights hold \['layers\.0\.v', 'layers\.1\.v'\], "
                                         "which the config does not target"):
        L.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_a_stray_tensor_is_refused(tmp_path: Path) -> None:
    peft_save(tmp_path)
    weights = tmp_path / "adapter_model.safetensors"
    tensors = {k: v.clone() for k, v in load_file(weights).items()}
    tensors["base_model.model.norm.weight"] = torch.ones(8)
    save_file(tensors, weights)
    model = base()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"\['norm\.weight'\], which are neither LoRA factors"):
        L.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


def test_a_config_that_selects_more_modules_in_another_model(tmp_path: Path) -> None:
    """The same adapter on a deeper model: its config selects a third block the weights lack."""
    peft_save(tmp_path)
    deeper = base()
    deeper.layers.append(Block())
    before = snapshot(deeper)
    with pytest.raises(ValueError, match=r"targets \['layers\.2\.q', 'layers\.2\.v'\]"):
        L.load_adapter(deeper, tmp_path)
    assert_unchanged(deeper, before)


# =========================================================================== pairing the files

@pytest.mark.parametrize("edit", ["base_model_name_or_path", "re-indented", "keys reordered",
                                  "peft_version", "integral alpha as a float"])
def test_bookkeeping_edits_do_not_break_the_pair(tmp_path: Path, edit: str) -> None:
    source = L.apply_lora(base(), ["q", "v"], r=2, alpha=6)
    with torch.no_grad():
        for _, layer in L.lora_layers(source):
            layer.lora_B.normal_()
    L.save_adapter(source, tmp_path)
    path = tmp_path / "adapter_config.json"
    config = json.loads(path.read_text())
    if edit == "base_model_name_or_path":
        config["base_model_name_or_path"] = "my-org/my-base"
    elif edit == "peft_version":
        config["peft_version"] = "0.21.2"
    elif edit == "integral alpha as a float":
        config["lora_alpha"] = 6.0
    elif edit == "keys reordered":
        config = dict(reversed(list(config.items())))
    path.write_text(json.dumps(config, indent=None if edit == "re-indented" else 4))
    loaded = L.load_adapter(base(), tmp_path)
    torch.testing.assert_close(loaded(IDS), source(IDS), rtol=0, atol=0)


SETTINGS = {
    "r": 3, "lora_alpha": 7, "lora_dropout": 0.25, "use_rslora": True,
    "target_modules": ["q"], "exclude_modules": ["layers.0.q"], "layers_to_transform": [0],
    "layers_pattern": "layers", "modules_to_save": ["head"],
}


@pytest.mark.parametrize("field", sorted(SETTINGS))
def test_a_config_from_another_save_is_refused(tmp_path: Path, field: str) -> None:
    L.save_adapter(L.apply_lora(base(), ["q", "v"], r=2, alpha=6), tmp_path)
    edit_config(tmp_path, **{field: SETTINGS[field]})
    model = base()
    before = snapshot(model)
    with pytest.raises(ValueError, match="different saves"):
        L.load_adapter(model, tmp_path)
    assert_unchanged(model, before)


# =========================================================================== options vs PEFT

ACCEPTED: dict[str, dict[str, Any]] = {
    "init_lora_weights=False": {"init_lora_weights": False},
    "init_lora_weights=gaussian": {"init_lora_weights": "gaussian"},
    "init_lora_weights=orthogonal": {"init_lora_weights": "orthogonal"},
    "init_lora_weights=mica": {"init_lora_weights": "mica"},
    "init_lora_weights=lora_ga": {"init_lora_weights": "lora_ga",
                                  "lora_ga_config": lora_config.LoraGAConfig()},
    "use_rslora": {"use_rslora": True},
    "lora_dropout": {"lora_dropout": 0.1},
    "use_qalora": {"use_qalora": True, "qalora_group_size": 4},
    "ensure_weight_tying": {"ensure_weight_tying": True},
    "exclude_modules (list)": {"exclude_modules": ["layers.0.q"]},
    "exclude_modules (regex)": {"exclude_modules": r"layers\.1\..*"},
    "layers_to_transform + layers_pattern": {"layers_to_transform": [1],
                                             "layers_pattern": "layers"},
    "layers_to_transform (int)": {"layers_to_transform": 0, "layers_pattern": ["blocks",
                                                                               "layers"]},
    "target_modules (regex)": {"target_modules": r".*\.q"},
    "target_modules all-linear": {"target_modules": "all-linear"},
    "modules_to_save": {"modules_to_save": ["norm", "head"]},
    "all-linear + modules_to_save": {"target_modules": "all-linear",
                                     "modules_to_save": ["head"]},
}
# values PEFT normalises when it saves (fan_in_fan_out is reset for nn.Linear) or that
# need data to build (EVA): written into a PEFT-saved config
ACCEPTED_BY_EDIT: dict[str, dict[str, Any]] = {
    "fan_in_fan_out": {"fan_in_fan_out": True},
    "init_lora_weights=eva": {"init_lora_weights": "eva", "eva_config": {"rho": 2.0}},
    "revision and base model": {"revision": "main", "base_model_name_or_path": "my/base"},
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_options_reproduce_peft(tmp_path: Path, name: str) -> None:
    peft_save(tmp_path, **ACCEPTED[name])
    ours = assert_reproduces_peft(tmp_path)
    if name == "lora_dropout":
        assert all(layer.dropout.p == 0.1 for _, layer in L.lora_layers(ours))


@pytest.mark.parametrize("name", sorted(ACCEPTED_BY_EDIT))
def test_accepted_options_written_into_the_config_reproduce_peft(tmp_path: Path,
                                                                 name: str) -> None:
    peft_save(tmp_path)
    edit_config(tmp_path, **ACCEPTED_BY_EDIT[name])
    assert_reproduces_peft(tmp_path)


# name -> (LoraConfig options, the option the message must name)
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "use_dora": ({"use_dora": True}, "use_dora"),
    "lora_bias": ({"lora_bias": True}, "lora_bias"),
    "bias=all": ({"bias": "all"}, "bias"),
    "bias=lora_only": ({"bias": "lora_only"}, "bias"),
    "rank_pattern": ({"rank_pattern": {"layers.0.q": 4}}, "rank_pattern"),
    "alpha_pattern": ({"alpha_pattern": {"layers.0.q": 3}}, "alpha_pattern"),
    "init_lora_weights=pissa": ({"init_lora_weights": "pissa"}, "init_lora_weights"),
    "init_lora_weights=pissa_niter_2": ({"init_lora_weights": "pissa_niter_2"},
                                        "init_lora_weights"),
    "init_lora_weights=olora": ({"init_lora_weights": "olora"}, "init_lora_weights"),
    "kasa_config": ({"kasa_config": lora_config.KasaConfig()}, "kasa_config"),
    "alora_invocation_tokens": ({"alora_invocation_tokens": [5]}, "alora_invocation_tokens"),
    "velora_config": ({"velora_config": lora_config.VeloraConfig()}, "velora_config"),
    "monteclora_config": ({"monteclora_config": lora_config.MontecloraConfig()},
                          "monteclora_config"),
    "target_parameters": ({"target_parameters": ["head.weight"]}, "target_parameters"),
    "use_bdlora": ({"use_bdlora": lora_config.BdLoraConfig(
        target_modules_bd_a=["q"], target_modules_bd_b=["v"], nblocks=2)}, "use_bdlora"),
    "trainable_token_indices": ({"trainable_token_indices": {"embed": [1, 2]}},
                                "trainable_token_indices"),
}
# PEFT cannot build these here (bitsandbytes, Megatron, calibration data, a transformers
# model, several adapters): the option is written into a PEFT-saved config
REFUSED_BY_EDIT: dict[str, dict[str, Any]] = {
    "loftq_config": {"init_lora_weights": "loftq", "loftq_config": {"loftq_bits": 4}},
    "corda_config": {"init_lora_weights": "corda", "corda_config": {"corda_method": "ipm"}},
    "layer_replication": {"layer_replication": [[0, 2], [1, 2]]},
    "megatron_config": {"megatron_config": {"tensor_model_parallel_size": 2}},
    "arrow_config": {"arrow_config": {"top_k": 3}},
    "a_future_peft_option": {"a_future_peft_option": True},
}


def assert_refused(directory: Path, option: str) -> None:
    model = base()
    before = snapshot(model)
    with pytest.raises(ValueError, match=rf"\b{re.escape(option)}="):
        L.load_adapter(model, directory)
    assert_unchanged(model, before)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_options_are_named(tmp_path: Path, name: str) -> None:
    options, option = REFUSED[name]
    peft_save(tmp_path, **options)
    assert_refused(tmp_path, option)


@pytest.mark.parametrize("option", sorted(REFUSED_BY_EDIT))
def test_refused_options_written_into_the_config_are_named(tmp_path: Path,
                                                           option: str) -> None:
    peft_save(tmp_path)
    edit_config(tmp_path, **REFUSED_BY_EDIT[option])
    assert_refused(tmp_path, option)


def test_every_lora_config_field_is_classified() -> None:
    """A new LoraConfig field in a future PEFT must be looked at, not silently accepted."""
    from lora_lab import peft_format

    fields = set(LoraConfig.__dataclass_fields__)
    known = peft_format._ACCEPTED | set(peft_format._REFUSED)
    assert fields - known == set(), "classify these LoraConfig fields in peft_format"


@pytest.mark.filterwarnings("ignore::FutureWarning:transformers")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_task_type_on_a_transformers_model(tmp_path: Path) -> None:
    """A CAUSAL_LM adapter (PeftModelForCausalLM) loads with the same logits."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=24,
                                      num_hidden_layers=2, num_attention_heads=2,
                                      num_key_value_heads=2)
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(config).eval()
    theirs = get_peft_model(copy.deepcopy(llama), LoraConfig(
        r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.3)
    theirs.save_pretrained(tmp_path)
    ids = torch.tensor([[1, 2, 3, 4]])
    reference = PeftModel.from_pretrained(copy.deepcopy(llama), tmp_path).eval()(
        input_ids=ids).logits
    ours = L.load_adapter(copy.deepcopy(llama), tmp_path).eval()
    torch.testing.assert_close(ours(input_ids=ids).logits, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_all_linear_llama_adapter_round_trips_through_peft(tmp_path) -> None:
    """Module order (q, k, v, o, gate, up, down) is not sorted order: save must not care."""
    import copy

    from peft import PeftModel
    from transformers import LlamaConfig, LlamaForCausalLM

    from lora_lab import apply_lora, load_adapter, save_adapter

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=2, vocab_size=13, max_position_embeddings=16)
    base = LlamaForCausalLM(config).eval()
    model = apply_lora(copy.deepcopy(base), "all-linear", r=2, alpha=4)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    save_adapter(model, tmp_path)
    ids = torch.arange(10).unsqueeze(0)
    expected = model(ids).logits
    ours = load_adapter(copy.deepcopy(base), tmp_path)
    theirs = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()
    torch.testing.assert_close(ours(ids).logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(theirs(ids).logits, expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- task_type, alpha

def _tiny_causal_lm() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=2, vocab_size=13, max_position_embeddings=16)
    return LlamaForCausalLM(config).eval()


def test_peft_task_types_are_peft_s_own() -> None:
    from peft import TaskType

    assert list(L.peft_format.PEFT_TASK_TYPES) == [t.value for t in TaskType]


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize(("task_type", "peft_class"), [(None, "PeftModel"),
                                                       ("CAUSAL_LM", "PeftModelForCausalLM")])
def test_task_type_decides_the_class_peft_loads_and_nothing_else(tmp_path: Path, task_type,
                                                                 peft_class: str) -> None:
    from peft import TaskType

    llama = _tiny_causal_lm()
    model = L.apply_lora(copy.deepcopy(llama), ["q_proj", "v_proj"], r=2, alpha=4)
    with torch.no_grad():
        for _, layer in L.lora_layers(model):
            layer.lora_B.normal_()
    L.save_adapter(model, tmp_path, task_type=task_type)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["task_type"] == task_type and config["lora_alpha"] == 4
    assert isinstance(config["lora_alpha"], int)                     # as PEFT writes it: 4
    theirs = PeftModel.from_pretrained(copy.deepcopy(llama), tmp_path).eval()
    assert type(theirs).__name__ == peft_class
    ids = torch.arange(10).unsqueeze(0)
    torch.testing.assert_close(theirs(input_ids=ids).logits, model(input_ids=ids).logits,
                               rtol=1e-5, atol=1e-6)
    if task_type is not None:                                      # the enum is accepted too
        L.save_adapter(model, tmp_path / "enum", task_type=TaskType.CAUSAL_LM)
        saved = json.loads((tmp_path / "enum" / "adapter_config.json").read_text())
        assert saved["task_type"] == "CAUSAL_LM"


def test_a_fractional_alpha_stays_a_float_and_loads_the_same(tmp_path: Path) -> None:
    model = L.apply_lora(base(), ["q", "v"], r=2, alpha=2.5)
    with torch.no_grad():
        for _, layer in L.lora_layers(model):
            layer.lora_B.normal_()
    L.save_adapter(model, tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["lora_alpha"] == 2.5
    expected = model(IDS)
    torch.testing.assert_close(L.load_adapter(base(), tmp_path)(IDS), expected, rtol=0, atol=0)
    torch.testing.assert_close(peft_load(tmp_path)(IDS), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("task_type", "error", "match"), [
    ("causal_lm", ValueError, r"task_type must be None or one of PEFT's task types \['SEQ_CLS'"),
    ("LM", ValueError, "'LM'"),
    (3, TypeError, "task_type must be None or a str"),
])
def test_an_unknown_task_type_is_refused_before_anything_is_written(tmp_path: Path, task_type,
                                                                   error, match) -> None:
    model = L.apply_lora(base(), ["q", "v"], r=2, alpha=4)
    before = snapshot(model)
    with pytest.raises(error, match=match):
        L.save_adapter(model, tmp_path / "adapter", task_type=task_type)
    assert not (tmp_path / "adapter").exists()
    assert_unchanged(model, before)
