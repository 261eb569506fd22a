"""Issue 7: merging never corrupts the model, and a failed call changes nothing.

Each behaviour is checked on the issue's example and on inputs of our own; each
failed call is checked to leave the model exactly as it was (state_dict and
buffers bit for bit, module structure, requires_grad flags, train/eval modes).
"""

from __future__ import annotations

import copy
import warnings
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from _model_state import assert_unchanged, snapshot
from peft import LoraConfig, get_peft_model
from torch import nn
from torch.nn.utils import parametrizations, parametrize

import lora_lab as L
from lora_lab import adapters


class LM(nn.Module):
    """The issue's example: a tiny language model with tied input/output embeddings."""

    def __init__(self, tie: bool = True) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.body = nn.Linear(4, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        if tie:
            self.lm_head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(torch.tanh(self.body(self.embed(ids))))


class Attn(nn.Module):
    def __init__(self, d: int = 6) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.q_proj(x) @ self.k_proj(x).transpose(-1, -2), -1)
        return self.o_proj(w @ self.v_proj(x))


def randomize(model: nn.Module, std: float = 0.5) -> nn.Module:
    """Give every LoRA factor values, as if trained."""
    with torch.no_grad():
        for _, layer in L.lora_layers(model):
            layer.lora_A.normal_(std=std)
            layer.lora_B.normal_(std=std)
    return model


def tiny_llama(tie: bool):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=24,
                                      num_hidden_layers=2, num_attention_heads=2,
                                      num_key_value_heads=2, tie_word_embeddings=tie)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


# =========================================================================== 1. shared weights

def test_tied_lm_head_is_refused_naming_both_users() -> None:
    model = LM()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"lm_head\.weight shares its memory with "
                                         r"\['embed\.weight'\]"):
        L.apply_lora(model, ["lm_head"])
    assert_unchanged(model, before)
    L.apply_lora(LM(tie=False), ["lm_head"])  # untied: fine


@pytest.mark.parametrize("how", ["same bias", "overlapping view", "weight as a buffer elsewhere"])
def test_other_kinds_of_shared_memory_are_refused(how: str) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    if how == "same bias":
        model[1].bias = model[0].bias
        message = r"0\.bias shares its memory with \['1\.bias'\]"
    elif how == "overlapping view":  # two Parameters over the same storage (a fused matrix)
        fused = torch.randn(6, 4)
        model[0].weight = nn.Parameter(fused[:4])
        model[1].weight = nn.Parameter(fused[2:])
        message = r"0\.weight shares its memory with \['1\.weight'\]"
    else:
        model.register_buffer("cache", model[0].weight.detach())
        message = r"0\.weight shares its memory with \['cache'\]"
    before = snapshot(model)
    with pytest.raises(ValueError, match=message):
        L.apply_lora(model, ["0"])
    assert_unchanged(model, before)


def test_disjoint_views_of_one_matrix_are_not_sharing() -> None:
    """Rows 0-1 and rows 2-3 of one storage: merging into one cannot change the other."""
    fused = torch.randn(4, 3)
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(3, 2))
    model[0].weight = nn.Parameter(fused[:2])
    model[1].weight = nn.Parameter(fused[2:])
    other = model[1].weight.detach().clone()
    randomize(L.apply_lora(model, ["0"], r=1))
    L.merge_and_unload(model)
    assert torch.equal(model[1].weight, other)


def test_sharing_that_appears_after_apply_lora_is_refused_by_merge() -> None:
    model = randomize(L.apply_lora(LM(tie=False), ["lm_head"], r=2))
    model.embed.weight = model.lm_head.base.weight  # tied afterwards
    before = snapshot(model)
    for merge in (L.merge_lora, L.merge_and_unload):
        with pytest.raises(ValueError, match=r"lm_head\.weight shares its memory with "
                                             r"\['embed\.weight'\]"):
            merge(model)
        assert_unchanged(model, before)


def test_the_issue_example_logits_are_never_changed() -> None:
    """With the head untied, merge_and_unload leaves the embedding bit for bit as it was."""
    model = LM(tie=False)
    embed = model.embed.weight.detach().clone()
    ids = torch.tensor([[1, 2, 3]])
    randomize(L.apply_lora(model, ["lm_head", "body"], r=2))
    expected = model(ids)
    L.merge_and_unload(model)
    assert torch.equal(model.embed.weight, embed)
    torch.testing.assert_close(model(ids), expected)


@pytest.mark.filterwarnings("ignore::FutureWarning:transformers")
@pytest.mark.parametrize("tie", [False, True])
def test_all_linear_follows_peft_on_a_transformers_model(tie: bool) -> None:
    model = tiny_llama(tie)
    theirs = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules="all-linear"))
    ours = L.apply_lora(model, "all-linear", r=2)
    assert sorted(n for n, _ in L.lora_layers(ours)) == sorted(theirs.targeted_module_names)
    assert "lm_head" not in dict(L.lora_layers(ours))  # get_output_embeddings() is left out
    with pytest.raises(ValueError, match="shares its memory") if tie else nullcontext():
        L.apply_lora(tiny_llama(tie), ["lm_head"], r=2)


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Attn(), Attn()])
        self.norm = nn.LayerNorm(6)
        self.head = nn.Sequential(nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return self.head(self.norm(x))


@pytest.mark.parametrize("make", [Nested, lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
                                                                nn.Linear(4, 2)), LM])
def test_all_linear_follows_peft_on_plain_modules(make) -> None:
    """A plain nn.Module keeps its last layer (PEFT only drops a PreTrainedModel's lm_head)."""
    torch.manual_seed(0)
    model = make()
    if isinstance(model, LM):  # the tied head is selected, as PEFT does, and then refused
        peft_names = get_peft_model(copy.deepcopy(model), LoraConfig(
            r=1, target_modules="all-linear")).targeted_module_names
        assert "lm_head" in peft_names
        with pytest.raises(ValueError, match=r"lm_head.weight shares its memory"):
            L.apply_lora(model, "all-linear", r=1)
        return
    theirs = get_peft_model(copy.deepcopy(model), LoraConfig(r=1, target_modules="all-linear"))
    ours = L.apply_lora(model, "all-linear", r=1)
    assert sorted(n for n, _ in L.lora_layers(ours)) == sorted(theirs.targeted_module_names)


def test_all_linear_refuses_what_peft_silently_bypasses() -> None:
    """PEFT wraps MultiheadAttention's out_proj, whose weight MHA reads directly; we refuse."""
    layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16)
    selected = adapters.select_modules(layer, adapters.TargetRules("all-linear"))
    theirs = get_peft_model(copy.deepcopy(layer), LoraConfig(r=1, target_modules="all-linear"))
    assert sorted(selected["all-linear"]) == sorted(theirs.targeted_module_names)
    before = snapshot(layer)
    with pytest.raises(ValueError, match=r"self_attn.out_proj belongs to nn.MultiheadAttention"):
        L.apply_lora(layer, "all-linear", r=1)
    assert_unchanged(layer, before)


# =========================================================================== 1. non-finite merges

def fp16_model(big: float = 60000.0) -> nn.Module:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3)).half()
    with torch.no_grad():
        model[1].weight[0, 0] = big
    return L.apply_lora(model, ["0", "1"], r=1, alpha=1)


def test_an_overflowing_merge_is_refused_and_changes_nothing() -> None:
    model = fp16_model()
    with torch.no_grad():
        model[0].lora_B.fill_(0.5)  # layer 0 is fine ...
        model[1].lora_A.zero_()
        model[1].lora_A[0, 0] = 100.0
        model[1].lora_B.zero_()
        model[1].lora_B[0, 0] = 100.0  # ... layer 1 adds 1e4 to 60000: inf in float16
    before = snapshot(model)
    for merge in (L.merge_lora, L.merge_and_unload):
        with pytest.raises(ValueError, match=r"layer '1'.*1 entries of W \+ delta W overflow "
                                             r"torch.float16"):
            merge(model)
        assert_unchanged(model, before)  # layer 0 was not merged either: all or nothing
    with pytest.raises(ValueError, match="overflow"):
        model[1].merge()
    assert_unchanged(model, before)


@pytest.mark.parametrize("dtype,big,update", [(torch.bfloat16, 3e38, 1e38),
                                              (torch.float32, 3e38, 1e38),
                                              (torch.float16, -65000.0, -1000.0)])
def test_overflow_in_every_dtype(dtype: torch.dtype, big: float, update: float) -> None:
    layer = L.LoRALinear(nn.Linear(2, 2).to(dtype), r=1, alpha=1)
    with torch.no_grad():
        layer.base.weight[1, 1] = big
        layer.lora_A.fill_(1.0)
        layer.lora_B.fill_(update)
    w = layer.base.weight.detach().clone()
    with pytest.raises(ValueError, match=f"overflow {dtype}"):
        layer.merge()
    assert torch.equal(layer.base.weight, w) and not layer.merged


@pytest.mark.parametrize("where,value", [("lora_B", float("nan")), ("lora_A", float("inf")),
                                         ("lora_B", float("-inf"))])
def test_non_finite_factors_are_refused(where: str, value: float) -> None:
    model = randomize(L.apply_lora(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)),
                                   ["0", "1"], r=2))
    with torch.no_grad():
        getattr(model[1], where)[0, 0] = value
    before = snapshot(model)
    with pytest.raises(ValueError, match=f"layer '1': {where} contains NaN or inf"):
        L.merge_lora(model)
    assert_unchanged(model, before)


def test_a_failure_in_the_middle_of_merging_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even an unforeseen error (out of memory copying a weight) leaves nothing merged."""
    model = randomize(L.apply_lora(nn.Sequential(*[nn.Linear(3, 3) for _ in range(4)]),
                                   ["0", "1", "2", "3"], r=1))
    before = snapshot(model)
    real_merge, calls = L.LoRALinear.merge, []

    def merge_then_fail(self: L.LoRALinear) -> None:
        calls.append(self)
        if len(calls) == 3:
            raise RuntimeError("out of memory")
        real_merge(self)

    monkeypatch.setattr(L.LoRALinear, "merge", merge_then_fail)
    for call in (L.merge_lora, L.merge_and_unload):
        calls.clear()
        with pytest.raises(RuntimeError, match="out of memory"):
            call(model)
        assert_unchanged(model, before)


# =========================================================================== 1. exact unmerge

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
def test_unmerge_restores_the_weight_bit_for_bit(dtype: torch.dtype) -> None:
    """Recomputing W - scaling*B@A cannot undo the rounding of the merge; we restore W0."""
    torch.manual_seed(1)
    layer = L.LoRALinear(nn.Linear(64, 48).to(dtype), r=4, alpha=8)
    with torch.no_grad():
        layer.lora_A.normal_()
        layer.lora_B.normal_()
    w0 = layer.base.weight.detach().clone()
    for _ in range(3):
        layer.merge()
        assert not torch.equal(layer.base.weight, w0)
        layer.unmerge()
        assert torch.equal(layer.base.weight, w0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_merges_equal_peft_merges_in_every_dtype(dtype: torch.dtype) -> None:
    """Bit-identical to PEFT's merge; factors get at least float32 and the base's precision."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(32, 24)).to(dtype)
    ours = L.apply_lora(copy.deepcopy(model), ["0"], r=4, alpha=8)
    assert ours[0].lora_A.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    theirs = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8,
                                                             target_modules=["0"]))
    peft_layer = theirs.base_model.model[0]
    with torch.no_grad():
        ours[0].lora_A.normal_()
        ours[0].lora_B.normal_()
        peft_layer.lora_A["default"].weight.copy_(ours[0].lora_A)
        peft_layer.lora_B["default"].weight.copy_(ours[0].lora_B)
    L.merge_lora(ours)
    peft_layer.merge()
    assert torch.equal(ours[0].base.weight, peft_layer.base_layer.weight)
    if dtype == torch.float64:  # merged in float64, not through float32
        exact = (model[0].weight + 2.0 * (ours[0].lora_B @ ours[0].lora_A)).detach()
        torch.testing.assert_close(ours[0].base.weight, exact, rtol=1e-15, atol=0)


def merged_layer(dtype: torch.dtype = torch.float16) -> tuple[L.LoRALinear, torch.Tensor]:
    torch.manual_seed(3)
    layer = L.LoRALinear(nn.Linear(8, 6).to(dtype), r=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.normal_()
    w0 = layer.base.weight.detach().clone()
    layer.merge()
    return layer, w0


@pytest.mark.parametrize("attr,value", [("alpha", 8), ("use_rslora", True)])
def test_settings_cannot_change_while_merged(attr: str, value: object) -> None:
    layer, w0 = merged_layer()
    merged_w = layer.base.weight.detach().clone()
    with pytest.raises(RuntimeError, match=f"cannot change {attr} while the layer is merged"):
        setattr(layer, attr, value)
    assert torch.equal(layer.base.weight, merged_w)
    layer.unmerge()
    assert torch.equal(layer.base.weight, w0)  # the issue's route: off by 1.24 before
    setattr(layer, attr, value)  # fine once unmerged
    assert getattr(layer, attr) == value


def test_r_is_read_only() -> None:
    layer, _ = merged_layer()
    with pytest.raises(AttributeError, match="r is fixed"):
        layer.r = 4
    layer.unmerge()
    with pytest.raises(AttributeError, match="r is fixed"):
        layer.r = 4
    assert layer.r == 2 and layer.scaling == 2.0


@pytest.mark.parametrize("edit", ["in place", "through .data", "new Parameter"])
@pytest.mark.parametrize("factor", ["lora_A", "lora_B"])
def test_factor_edits_while_merged(edit: str, factor: str) -> None:
    """The merged forward refuses to use a stale update; unmerge is exact all the same."""
    layer, w0 = merged_layer(torch.float32)
    x = torch.randn(3, 8)
    with torch.no_grad():
        if edit == "in place":
            getattr(layer, factor).add_(1.0)
        elif edit == "through .data":  # bypasses autograd's version counter
            getattr(layer, factor).data.add_(1.0)
        else:
            setattr(layer, factor, nn.Parameter(getattr(layer, factor) + 1.0))
    if edit != "through .data":  # .data bypasses autograd's version counter: not seen
        with pytest.raises(RuntimeError, match="changed after merge"):
            layer(x)
    with pytest.raises(RuntimeError, match="changed after merge"):
        L.merge_and_unload(nn.Sequential(layer))
    layer.unmerge()
    assert torch.equal(layer.base.weight, w0)
    expected = layer.base(x) + x @ layer.delta_weight().T  # the edited update now applies
    torch.testing.assert_close(layer(x), expected)


def test_a_base_weight_changed_while_merged_is_not_silently_undone() -> None:
    layer, _ = merged_layer(torch.float32)
    model = nn.Sequential(layer)
    with torch.no_grad():
        layer.base.weight.add_(1.0)  # e.g. the base was unfrozen and trained while merged
    trained = layer.base.weight.detach().clone()
    before = snapshot(model)
    for call in (layer.unmerge, lambda: L.unmerge_lora(model)):
        with pytest.raises(RuntimeError, match="base weight was changed after merge"):
            call()
        assert_unchanged(model, before)
    assert torch.equal(L.merge_and_unload(model)[0].weight, trained)  # kept as it is


def test_copies_and_conversions_of_merged_models_unmerge_exactly() -> None:
    layer, w0 = merged_layer(torch.float32)
    clone = copy.deepcopy(nn.Sequential(layer))
    L.unmerge_lora(clone)
    assert torch.equal(clone[0].base.weight, w0)
    half = copy.deepcopy(nn.Sequential(layer)).half()  # model.half() after merging
    L.unmerge_lora(half)
    assert torch.equal(half[0].base.weight, w0.half())


def test_half_after_apply_lora_merges_in_float32() -> None:
    """model.half() converts the factors too; the merge is still computed in float32."""
    model = randomize(L.apply_lora(nn.Sequential(nn.Linear(16, 8)), ["0"], r=2)).half()
    layer = model[0]
    assert layer.lora_A.dtype == torch.float16
    w0 = layer.base.weight.detach().clone()
    expected = (w0.float() + layer.scaling * (layer.lora_B.float() @ layer.lora_A.float())).half()
    L.merge_lora(model)
    assert torch.equal(layer.base.weight, expected)
    L.unmerge_lora(model)
    assert torch.equal(layer.base.weight, w0)


def test_merging_in_training_mode_with_dropout_gives_the_eval_output() -> None:
    """Merging folds in the expected update (dropout off): deterministic in both modes."""
    torch.manual_seed(4)
    layer = L.LoRALinear(nn.Linear(8, 4), r=2, alpha=2, dropout=0.5).train()
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 8)
    eval_output = layer.eval()(x)
    layer.train()
    assert not torch.equal(layer(x), layer(x))  # dropout is random before merging
    layer.merge()
    with torch.no_grad():  # training mode, but not training: a merged layer allows that
        torch.testing.assert_close(layer(x), eval_output)
        assert torch.equal(layer(x), layer(x))


def test_a_lora_layer_at_two_paths_is_unloaded_at_both() -> None:
    layer = randomize(nn.Sequential(L.LoRALinear(nn.Linear(3, 3), r=1)))[0]
    model = nn.Sequential(layer, nn.ReLU(), layer)
    x = torch.randn(2, 3)
    expected = model(x)
    L.merge_and_unload(model)
    assert type(model[0]) is nn.Linear and model[2] is model[0]
    torch.testing.assert_close(model(x), expected)


def test_saving_a_lora_layer_used_twice_is_refused(tmp_path: Path) -> None:
    layer = L.LoRALinear(nn.Linear(3, 3), r=1)
    with pytest.raises(ValueError, match="used at several paths"):
        L.save_adapter(nn.Sequential(layer, layer), tmp_path)
    assert not list(tmp_path.iterdir())


# =========================================================================== 1. bases refused

class Scale(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w


def parametrized(kind: str) -> nn.Linear:
    layer = nn.Linear(4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old hooks are deprecated
        if kind == "weight_norm":
            return parametrizations.weight_norm(layer)
        if kind == "spectral_norm":
            return parametrizations.spectral_norm(layer)
        if kind == "orthogonal":
            return parametrizations.orthogonal(nn.Linear(3, 3))
        if kind == "custom":
            parametrize.register_parametrization(layer, "weight", Scale())
            return layer
        if kind == "custom on the bias":
            parametrize.register_parametrization(layer, "bias", Scale())
            return layer
        if kind == "old weight_norm hook":
            return torch.nn.utils.weight_norm(layer)
        return torch.nn.utils.spectral_norm(layer)


KINDS = ["weight_norm", "spectral_norm", "orthogonal", "custom", "custom on the bias",
         "old weight_norm hook", "old spectral_norm hook"]


@pytest.mark.parametrize("kind", KINDS)
def test_parametrized_weights_are_refused_everywhere(kind: str) -> None:
    """Merging wrote into a tensor the layer recomputes (output off by 2.2): refuse instead."""
    pattern = "is not a parameter of the layer" if kind.startswith("old") else "is parametrized"
    base = parametrized(kind)
    with pytest.raises(ValueError, match=f"base{'.weight' if kind.startswith('old') else ''} "
                                         f"{pattern}"):
        L.LoRALinear(base)
    model = nn.Sequential(parametrized(kind), nn.Linear(3, 2))
    before = snapshot(model)
    with pytest.raises(ValueError, match=f"0{'.weight' if kind.startswith('old') else ''} "
                                         f"{pattern}"):
        L.apply_lora(model, ["0", "1"])
    assert_unchanged(model, before)


def test_weights_that_are_not_parameters_or_have_no_values_are_refused() -> None:
    computed = nn.Linear(3, 2)
    source = nn.Parameter(torch.randn(2, 3))
    del computed.weight
    computed.weight = source * 2  # a non-leaf tensor, recomputed by whoever set it
    with pytest.raises(ValueError, match=r"base.weight is not a parameter of the layer"):
        L.LoRALinear(computed)
    with pytest.raises(ValueError, match="meta device"):
        L.LoRALinear(nn.Linear(3, 2, device="meta"))
    integer = nn.Linear(3, 2)
    integer.weight = nn.Parameter(torch.zeros(2, 3, dtype=torch.int64), requires_grad=False)
    with pytest.raises(TypeError, match="floating point"):
        L.LoRALinear(integer)


# =========================================================================== 3. all or nothing

def attention_model() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(Attn(), nn.ReLU(), Attn())


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_apply_lora_failing_on_the_kth_layer_changes_nothing(
        k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    model = attention_model().eval()
    model[0].q_proj.weight.requires_grad_(True)
    model[2].v_proj.bias.requires_grad_(False)  # a mix of flags, all to be kept
    before = snapshot(model)
    real, calls = adapters.LoRALinear, []

    class FailsOnTheKth(real):
        def __init__(self, *args: object, **kwargs: object) -> None:
            calls.append(1)
            if len(calls) == k:
                raise RuntimeError("CUDA out of memory (simulated)")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(adapters, "LoRALinear", FailsOnTheKth)
    with pytest.raises(RuntimeError, match=r"building the LoRA layer for .* failed"):
        L.apply_lora(model, ["q_proj", "v_proj"], r=2, modules_to_save=["1"])
    assert_unchanged(model, before)
    monkeypatch.setattr(adapters, "LoRALinear", real)
    L.apply_lora(model, ["q_proj", "v_proj"], r=2)  # a retry works
    assert len(list(L.lora_layers(model))) == 4


def test_apply_lora_with_an_impossible_rank_changes_nothing() -> None:
    """r = 2**46 asks for petabytes: the allocator refuses at once (nothing is touched)."""
    model = attention_model()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match=r"building the LoRA layer for '0.q_proj' failed"):
        L.apply_lora(model, ["q_proj", "v_proj"], r=2**46)
    assert_unchanged(model, before)


@pytest.mark.parametrize("targets,bad,hint", [
    (["q_proj", "v_porj"], "v_porj", "v_proj"),
    (["0.q_proj", "3.k_proj"], "3.k_proj", "0.k_proj"),
    (["o_proj", "out_proj"], "out_proj", "o_proj"),
])
def test_every_target_entry_must_match(targets: list[str], bad: str, hint: str) -> None:
    model = attention_model()
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        L.apply_lora(model, targets)
    message = str(info.value)
    assert f"['{bad}'] matched no nn.Linear module" in message
    assert "'0.q_proj'" in message and "'2.o_proj'" in message  # the Linear modules listed
    assert f"'{hint}'" in message.split(f"'{bad}': did you mean")[1]
    assert_unchanged(model, before)


def test_every_modules_to_save_entry_must_match() -> None:
    model = attention_model()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"modules_to_save entries \['hed'\] matched no module"):
        L.apply_lora(model, ["q_proj"], modules_to_save=["2.o_proj", "hed"])
    assert_unchanged(model, before)


def test_an_entry_matching_only_modules_to_save_is_refused() -> None:
    """PEFT never puts LoRA inside a module trained whole; an entry left with nothing is named."""
    model = attention_model()
    with pytest.raises(ValueError, match=r"\['o_proj'\] select only modules that modules_to_save"):
        L.apply_lora(model, ["q_proj", "o_proj"], modules_to_save=["o_proj"])
    L.apply_lora(model, "all-linear", modules_to_save=["o_proj"])  # all but the saved ones
    assert sorted(n for n, _ in L.lora_layers(model)) == [
        f"{i}.{p}_proj" for i in (0, 2) for p in "kqv"]


# =========================================================================== review 03: merging a
# layer alone, training while merged, a string of targets

def two_layers_on(shared: str) -> tuple[L.LoRALinear, L.LoRALinear]:
    """Two LoRA layers whose base weights are one tensor: one base wrapped twice, or tied."""
    torch.manual_seed(0)
    first = nn.Linear(4, 4)
    second = first if shared == "one base" else nn.Linear(4, 4)
    if shared == "tied weights":
        second.weight = first.weight
    pair = L.LoRALinear(first, r=2), L.LoRALinear(second, r=2)
    for layer in pair:
        randomize(nn.ModuleList([layer]))
    return pair


@pytest.mark.parametrize("shared", ["one base", "tied weights"])
@pytest.mark.parametrize("copied", [False, True])
def test_merging_a_layer_whose_weight_another_lora_layer_reads_is_refused(shared: str,
                                                                         copied: bool) -> None:
    """The reviewer's case: merging one layer used to change the other layer's output."""
    pair = two_layers_on(shared)
    if copied:  # a deep copy keeps the sharing, and its layers are known too
        pair = copy.deepcopy(pair)
    a, b = pair
    x = torch.randn(3, 4)
    holders = [nn.ModuleList([layer]) for layer in pair]
    before = [snapshot(holder) for holder in holders]
    with torch.no_grad():
        b_output = b(x)
    with pytest.raises(ValueError, match=r"another LoRALinear .*its own nn\.Linear"):
        a.merge()
    with pytest.raises(ValueError, match=r"cannot merge.*(another LoRALinear|shares its memory)"):
        L.merge_lora(nn.Sequential(a, b))  # the model-level check names the paths
    for holder, state in zip(holders, before, strict=True):
        assert_unchanged(holder, state)
    with torch.no_grad():
        assert torch.equal(b(x), b_output)


@pytest.mark.parametrize("cycle", [False, True])
def test_a_layer_merges_once_the_other_layer_on_its_weight_is_gone(cycle: bool) -> None:
    """As in digits_task.truncate_lora: a new layer on the base replaces the old one."""
    a, b = two_layers_on("one base")
    if cycle:  # kept alive by a reference cycle until the garbage collector runs
        b.myself = [b]
    del b  # only a weak reference was kept: nothing stops the merge now
    a.merge()
    assert a.merged


def test_a_plain_module_tied_to_the_weight_is_invisible_to_a_layer_but_not_to_merge_lora() -> None:
    """Documented limit: LoRALinear.merge() cannot see an nn.Embedding; merge_lora refuses."""
    model = randomize(L.apply_lora(LM(tie=False), ["lm_head"], r=2))
    model.embed.weight = model.lm_head.base.weight  # tied after apply_lora
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"shares its memory with \['embed\.weight'\]"):
        L.merge_lora(model)
    assert_unchanged(model, before)
    embedding = model.embed.weight.detach().clone()
    model.lm_head.merge()  # what the docstring warns about: the write goes into the tensor
    assert not torch.equal(model.embed.weight, embedding)


def training_setup(keep_head: bool) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    model = randomize(L.apply_lora(model, ["0"], r=2, modules_to_save=["2"] if keep_head
                                   else None))
    return model, torch.randn(5, 4)


@pytest.mark.parametrize("keep_head", [False, True])
def test_training_a_merged_model_is_refused_with_a_clear_message(keep_head: bool) -> None:
    """Without a trainable head PyTorch used to fail with a generic message; with one, LoRA
    silently did not learn (no gradient reached lora_A/lora_B)."""
    model, x = training_setup(keep_head)
    L.merge_lora(model)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match=r"merged.*training mode.*unmerge first.*model\.eval"):
        model(x)
    assert_unchanged(model, before)
    with torch.no_grad():  # inference is fine: under no_grad ...
        expected = model(x)
    assert torch.equal(model.eval()(x), expected)  # ... and in eval mode
    model.train()
    for _, layer in L.lora_layers(model):  # frozen factors: nothing would be lost
        layer.lora_A.requires_grad_(False)
        layer.lora_B.requires_grad_(False)
    assert torch.equal(model(x), expected)


def test_after_unmerging_the_factors_train_again() -> None:
    model, x = training_setup(keep_head=True)
    L.unmerge_lora(L.merge_lora(model))
    model(x).square().mean().backward()
    assert all(layer.lora_B.grad is not None and layer.lora_B.grad.any()
               for _, layer in L.lora_layers(model))


@pytest.mark.parametrize("targets,fix", [("q_proj", "target_modules=['q_proj']"),
                                         ("q_proj|v_proj", "target_modules=['q_proj', 'v_proj']"),
                                         (r"(q|v)_proj", "e.g. ['q_proj', 'v_proj']")])
def test_a_string_of_names_is_explained_as_a_full_path_regex(targets: str, fix: str) -> None:
    """The reviewer's case: 'q_proj' (a string) used to get "did you mean 'q_proj'?"."""
    model = attention_model()
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        L.apply_lora(model, targets)
    message = str(info.value)
    assert f"target_modules={targets!r} matched no module" in message
    assert "a string is a regular expression that must match a whole module path" in message
    assert fix in message and "'0.q_proj'" in message  # the Linear modules listed
    assert "did you mean 'q_proj'" not in message
    assert_unchanged(model, before)
    L.apply_lora(model, [targets] if "|" not in targets and "(" not in targets
                 else ["q_proj", "v_proj"])  # the suggested list works


def test_a_misspelt_full_path_regex_gets_a_did_you_mean() -> None:
    with pytest.raises(ValueError, match=r"did you mean '0\.q_proj'"):
        L.apply_lora(attention_model(), r"0\.q_prj")
