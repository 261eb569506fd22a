"""LoRALinear against the NumPy derivation, PEFT's LoRA layer and loralib.Linear."""

from __future__ import annotations

import copy

import loralib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig, get_peft_model
from torch import nn

from lora_lab import LoRALinear
from lora_lab import numpy_lora as nl


class One(nn.Module):
    """A model holding one Linear, so PEFT can wrap it."""

    def __init__(self, d_in: int = 12, d_out: int = 7) -> None:
        super().__init__()
        self.lin = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def ours_with_random_B(base: nn.Linear, **kw) -> LoRALinear:
    layer = LoRALinear(copy.deepcopy(base), **kw)
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


def peft_twin(ours: LoRALinear, use_rslora: bool = False):
    """PEFT's LoRA layer holding exactly our base and factors."""
    model = One(ours.in_features, ours.out_features)
    model.lin.load_state_dict(ours.base.state_dict())
    cfg = LoraConfig(r=ours.r, lora_alpha=ours.alpha, target_modules=["lin"],
                     use_rslora=use_rslora)
    peft_model = get_peft_model(model, cfg)
    layer = peft_model.base_model.model.lin
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ours.lora_A)
        layer.lora_B["default"].weight.copy_(ours.lora_B)
    return peft_model, layer


def test_init_and_freezing() -> None:
    base = nn.Linear(16, 5)
    layer = LoRALinear(base, r=4, alpha=8)
    assert layer.lora_A.shape == (4, 16) and layer.lora_B.shape == (5, 4)
    assert torch.all(layer.lora_B == 0) and layer.lora_A.abs().max() <= 1 / 4
    assert layer.scaling == 2.0 and not layer.merged
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)  # B = 0: unchanged at step 0


def test_matches_numpy_lora_outputs_and_gradients() -> None:
    layer = ours_with_random_B(nn.Linear(6, 4, bias=False), r=3, alpha=5).double()
    x = torch.randn(8, 6, dtype=torch.float64)
    target = torch.randn(8, 4, dtype=torch.float64)
    h = layer(x)
    nn.functional.mse_loss(h, target).backward()
    W0, A, B = (t.detach().numpy() for t in (layer.base.weight, layer.lora_A, layer.lora_B))
    np.testing.assert_allclose(h.detach().numpy(), nl.lora_forward(x.numpy(), W0, A, B, 5))
    _, grad_h = nl.mse_loss(h.detach().numpy(), target.numpy())
    grads = nl.lora_backward(x.numpy(), W0, A, B, 5, grad_h)
    np.testing.assert_allclose(layer.lora_A.grad.numpy(), grads.A, rtol=1e-10)
    np.testing.assert_allclose(layer.lora_B.grad.numpy(), grads.B, rtol=1e-10)


@pytest.mark.parametrize("use_rslora", [False, True])
@pytest.mark.parametrize("r,alpha", [(1, 1), (4, 16), (8, 8)])
def test_matches_peft(use_rslora: bool, r: int, alpha: int) -> None:
    ours = ours_with_random_B(nn.Linear(12, 7), r=r, alpha=alpha, use_rslora=use_rslora)
    _, theirs = peft_twin(ours, use_rslora)
    assert ours.scaling == pytest.approx(theirs.scaling["default"])
    x = torch.randn(10, 12)
    out_ours, out_theirs = ours(x), theirs(x)
    torch.testing.assert_close(out_ours, out_theirs)
    out_ours.square().sum().backward()
    out_theirs.square().sum().backward()
    torch.testing.assert_close(ours.lora_A.grad, theirs.lora_A["default"].weight.grad)
    torch.testing.assert_close(ours.lora_B.grad, theirs.lora_B["default"].weight.grad)
    torch.testing.assert_close(ours.delta_weight(), theirs.get_delta_weight("default"))
    ours.merge()
    theirs.merge()
    torch.testing.assert_close(ours.base.weight, theirs.base_layer.weight)


def test_matches_loralib() -> None:
    ours = ours_with_random_B(nn.Linear(9, 5), r=4, alpha=12)
    theirs = loralib.Linear(9, 5, r=4, lora_alpha=12, merge_weights=False)
    with torch.no_grad():
        theirs.weight.copy_(ours.base.weight)
        theirs.bias.copy_(ours.base.bias)
        theirs.lora_A.copy_(ours.lora_A)
        theirs.lora_B.copy_(ours.lora_B)
    x = torch.randn(6, 9)
    torch.testing.assert_close(ours(x), theirs(x))
    ours(x).sum().backward()
    theirs(x).sum().backward()
    torch.testing.assert_close(ours.lora_A.grad, theirs.lora_A.grad)
    torch.testing.assert_close(ours.lora_B.grad, theirs.lora_B.grad)


def test_merge_unmerge_and_forward_while_merged() -> None:
    layer = ours_with_random_B(nn.Linear(12, 7), r=4, alpha=8)
    w0 = layer.base.weight.detach().clone()
    x = torch.randn(5, 12)
    before = layer(x)
    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer.base.weight, w0 + layer.delta_weight())
    layer.eval()  # a merged layer is for inference: in training mode it would refuse
    torch.testing.assert_close(layer(x), layer.base(x), rtol=0, atol=0)  # base alone
    torch.testing.assert_close(layer(x), before)
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()
    layer.unmerge()
    assert torch.equal(layer.base.weight, w0)  # the saved original, not W - delta W
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.integers(1, 8), alpha=st.floats(0.5, 64),
       scale=st.floats(0.01, 10),
       dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]))
def test_merge_unmerge_round_trip_property(seed: int, r: int, alpha: float, scale: float,
                                           dtype: torch.dtype) -> None:
    """Bit for bit in every dtype, however large the update is next to W0."""
    torch.manual_seed(seed)
    layer = LoRALinear(nn.Linear(20, 10).to(dtype), r=r, alpha=alpha)
    with torch.no_grad():
        layer.lora_B.normal_(std=scale)
    w0 = layer.base.weight.detach().clone()
    layer.merge()
    layer.unmerge()
    assert torch.equal(layer.base.weight, w0)


def test_dropout_only_on_the_lora_branch() -> None:
    layer = ours_with_random_B(nn.Linear(8, 3), r=2, alpha=2, dropout=0.5)
    x = torch.randn(4, 8)
    layer.train()
    torch.manual_seed(123)
    out = layer(x)
    torch.manual_seed(123)
    dropped = nn.functional.dropout(x, 0.5, training=True)
    expected = layer.base(x) + layer.scaling * dropped @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(out, expected)
    layer.eval()
    torch.testing.assert_close(layer(x), layer.base(x) + x @ layer.delta_weight().T)  # no dropout


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_bases_keep_their_dtype(dtype: torch.dtype) -> None:
    base32 = nn.Linear(16, 8)
    layer = ours_with_random_B(base32.to(dtype), r=4, alpha=8)
    x = torch.randn(3, 16, dtype=dtype)
    out = layer(x)
    assert out.dtype == dtype and layer.lora_A.dtype == torch.float32
    reference = (x.float() @ layer.base.weight.float().T + layer.base.bias.float()
                 + x.float() @ layer.delta_weight().T)
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float32: 1e-5}[dtype]
    torch.testing.assert_close(out.float(), reference, rtol=tol, atol=tol)
    out.float().sum().backward()
    assert layer.lora_A.grad is not None and layer.base.weight.grad is None
    layer.merge()
    assert layer.base.weight.dtype == dtype
    with torch.no_grad():
        torch.testing.assert_close(layer(x).float(), reference, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,factors", [(torch.float16, torch.float32),
                                            (torch.bfloat16, torch.float32),
                                            (torch.float32, torch.float32),
                                            (torch.float64, torch.float64)])
def test_factor_dtype_is_at_least_float32_and_the_base_precision(dtype: torch.dtype,
                                                                  factors: torch.dtype) -> None:
    layer = LoRALinear(nn.Linear(4, 3).to(dtype), r=2)
    assert layer.lora_A.dtype == layer.lora_B.dtype == factors
    x = torch.randn(2, 4, dtype=dtype)
    assert layer(x).dtype == dtype


def test_a_failed_construction_leaves_the_base_trainable() -> None:
    """Arguments are checked and the factors allocated before the base is frozen."""
    base = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(base, dropout=1.5)
    with pytest.raises(RuntimeError):  # petabytes: the allocator refuses at once
        LoRALinear(base, r=2**48)
    assert all(p.requires_grad for p in base.parameters())


def test_rslora_scaling() -> None:
    assert LoRALinear(nn.Linear(4, 4), r=16, alpha=8, use_rslora=True).scaling == 2.0
    assert LoRALinear(nn.Linear(4, 4), r=16, alpha=8).scaling == 0.5


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.integers(1, 8), alpha=st.floats(0.1, 64),
       d_in=st.integers(1, 12), d_out=st.integers(1, 12), batch=st.integers(1, 5),
       use_rslora=st.booleans())
def test_zero_B_means_the_base_output_property(seed: int, r: int, alpha: float, d_in: int,
                                               d_out: int, batch: int, use_rslora: bool) -> None:
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out)
    layer = LoRALinear(base, r=r, alpha=alpha, use_rslora=use_rslora)
    x = torch.randn(batch, d_in)
    torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)


def test_scaling_follows_alpha() -> None:
    layer = LoRALinear(nn.Linear(4, 4), r=4, alpha=8)
    layer.alpha = 32
    assert layer.scaling == 8.0
    layer.use_rslora = True
    assert layer.scaling == 16.0
