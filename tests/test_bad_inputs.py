"""Bad input gets a clear error: the right exception type, naming the argument at fault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import lora_lab as L
from lora_lab import numpy_lora as nl

M = np.arange(12.0).reshape(3, 4)
W0, A, B = np.ones((4, 6)), np.ones((2, 6)), np.zeros((4, 2))
X = np.ones((5, 6))
NAN = np.array([[1.0, np.nan], [0.0, 1.0]])


def model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def adapted() -> nn.Module:
    return L.apply_lora(model(), ["0"], r=2)


# (id, call, exception type, text the message must contain: the argument's name)
CASES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("rank of a 1-D array", lambda: L.matrix_rank(np.ones(3)), ValueError, "M must be 2-D"),
    ("rank of a string", lambda: L.matrix_rank("abc"), TypeError, "M"),
    ("rank with negative tol", lambda: L.matrix_rank(M, tol=-1.0), ValueError, "tol"),
    ("svd with k = 0", lambda: L.truncated_svd(M, 0), ValueError, "k must be"),
    ("svd with k > min(m, n)", lambda: L.truncated_svd(M, 4), ValueError,
     "k must be between 1 and 3"),
    ("svd with float k", lambda: L.truncated_svd(M, 2.0), TypeError, "k must be an int"),
    ("svd with bool k", lambda: L.low_rank_approx(M, True), TypeError, "k must be an int"),
    ("approx of NaN matrix", lambda: L.low_rank_approx(NAN, 1), ValueError, "M contains NaN"),
    ("approx of 3-D array", lambda: L.low_rank_approx(np.ones((2, 2, 2)), 1), ValueError, "M"),
    ("approx of object array", lambda: L.low_rank_approx(np.array([[None]]), 1), TypeError, "M"),
    ("approx of empty matrix", lambda: L.low_rank_approx(np.ones((0, 3)), 1), ValueError, "M"),
    ("error with mismatched shapes", lambda: L.approximation_error(M, M.T), ValueError, "approx"),
    ("error with unknown norm", lambda: L.approximation_error(M, M, "nuc"), ValueError, "norm"),
    ("truncation error of unsorted s", lambda: L.truncation_error(np.array([1.0, 2.0]), 1),
     ValueError, "s must be"),
    ("energy with k too large", lambda: L.energy_captured(np.array([2.0, 1.0]), 3), ValueError,
     "k must be"),
    ("storage with m = 0", lambda: L.storage_cost(0, 5, 1), ValueError, "m must be"),
    ("break-even with float n", lambda: L.break_even_rank(3, 2.5), TypeError, "n must be"),
    ("similarity with row mismatch", lambda: L.subspace_similarity(M, M.T), ValueError, "X and Y"),
    ("similarity with i = 0", lambda: L.subspace_similarity(M, M, i=0), ValueError, "i must be"),
    ("init with r = 0", lambda: L.init_lora(6, 4, 0), ValueError, "r must be"),
    ("init with negative in_features", lambda: L.init_lora(-6, 4, 2), ValueError, "in_features"),
    ("forward with A of wrong width", lambda: L.lora_forward(X, W0, np.ones((2, 5)), B, 1.0),
     ValueError, "A must have shape"),
    ("forward with swapped A and B", lambda: L.lora_forward(X, W0, B, A, 1.0), ValueError,
     "A must"),
    ("forward with x of wrong width", lambda: L.lora_forward(np.ones((5, 4)), W0, A, B, 1.0),
     ValueError, "x must have in_features=6"),
    ("forward with NaN x", lambda: L.lora_forward(np.full((1, 6), np.nan), W0, A, B, 1.0),
     ValueError, "x contains NaN"),
    ("forward with string alpha", lambda: L.lora_forward(X, W0, A, B, "16"), TypeError, "alpha"),
    ("forward with inf alpha", lambda: L.lora_forward(X, W0, A, B, np.inf), ValueError, "alpha"),
    ("backward with wrong grad_h", lambda: L.lora_backward(X, W0, A, B, 1.0, np.ones((5, 3))),
     ValueError, "grad_h"),
    ("mse with mismatched target", lambda: L.mse_loss(np.ones((2, 3)), np.ones((3, 2))),
     ValueError, "target"),
    ("numerical gradient of a non-callable", lambda: L.numerical_gradient(3, M), TypeError,
     "f must"),
    ("numerical gradient with eps = 0", lambda: L.numerical_gradient(np.sum, M, eps=0.0),
     ValueError, "eps"),
    ("sgd with negative lr", lambda: L.sgd_step(A, B, nl.LoRAGrads(A, B, X), -0.1), ValueError,
     "lr"),
    ("sgd with grads of the wrong shape",
     lambda: L.sgd_step(A, B, nl.LoRAGrads(np.ones((3, 6)), B, X), 0.1), ValueError, "grads.A"),
    ("scaling with use_rslora='no'", lambda: L.lora_scaling(16, 4, "no"), TypeError, "use_rslora"),
    ("numerical gradient of a vector function", lambda: L.numerical_gradient(lambda m: m, M),
     TypeError, "f must return one number"),
    ("numerical gradient of a NaN function", lambda: L.numerical_gradient(lambda m: np.nan, M),
     ValueError, "f returned nan"),
    ("train with NaN alpha", lambda: L.train_lora(X, np.ones((5, 4)), W0, 2, np.nan, 0.1, 5),
     ValueError, "alpha must be finite"),
    ("LoRALinear fed float64", lambda: L.LoRALinear(nn.Linear(3, 2))(torch.ones(1, 3).double()),
     TypeError, "x must have the layer's dtype"),
    ("train with zero steps", lambda: L.train_lora(X, np.ones((5, 4)), W0, 2, 1.0, 0.1, 0),
     ValueError, "steps"),
    ("train with y of wrong shape", lambda: L.train_lora(X, np.ones((5, 3)), W0, 2, 1.0, 0.1, 5),
     ValueError, "y must have shape"),
    ("LoRALinear on a Conv2d", lambda: L.LoRALinear(nn.Conv2d(1, 1, 1)), TypeError, "base must"),
    ("LoRALinear with r = 0", lambda: L.LoRALinear(nn.Linear(3, 3), r=0), ValueError, "r must"),
    ("LoRALinear with r = 2.5", lambda: L.LoRALinear(nn.Linear(3, 3), r=2.5), TypeError, "r must"),
    ("LoRALinear with dropout 1", lambda: L.LoRALinear(nn.Linear(3, 3), dropout=1.0), ValueError,
     "dropout must be in [0.0, 1.0)"),
    ("LoRALinear with negative dropout", lambda: L.LoRALinear(nn.Linear(3, 3), dropout=-0.1),
     ValueError, "dropout"),
    ("LoRALinear with alpha 0", lambda: L.LoRALinear(nn.Linear(3, 3), alpha=0), ValueError,
     "alpha must be > 0"),
    ("LoRALinear with use_rslora='yes'", lambda: L.LoRALinear(nn.Linear(3, 3), use_rslora="yes"),
     TypeError, "use_rslora"),
    ("LoRALinear fed the wrong width", lambda: L.LoRALinear(nn.Linear(3, 2))(torch.ones(4, 5)),
     ValueError, "x must have in_features=3"),
    ("LoRALinear fed a NumPy array", lambda: L.LoRALinear(nn.Linear(3, 2))(np.ones((1, 3))),
     TypeError, "x must be a torch.Tensor"),
    ("apply_lora to a non-module", lambda: L.apply_lora("gpt2", ["q"]), TypeError, "model must"),
    ("apply_lora matching nothing", lambda: L.apply_lora(model(), ["q_proj"]), ValueError,
     "target_modules"),
    ("apply_lora with empty targets", lambda: L.apply_lora(model(), []), TypeError,
     "target_modules"),
    ("apply_lora with a bad regex", lambda: L.apply_lora(model(), "(q"), ValueError,
     "target_modules"),
    ("apply_lora with dropout 2", lambda: L.apply_lora(model(), ["0"], dropout=2.0), ValueError,
     "dropout"),
    ("merge a model without LoRA", lambda: L.merge_lora(model()), ValueError, "apply_lora"),
    ("count parameters of a list", lambda: L.count_parameters([1, 2]), TypeError, "model must"),
    ("save with an int directory", lambda: L.save_adapter(adapted(), 3), TypeError, "directory"),
    ("load from a missing directory", lambda: L.load_adapter(model(), "/nonexistent/adapter"),
     ValueError, "directory"),
    ("apply_lora with a typo among the targets", lambda: L.apply_lora(model(), ["0", "22"]),
     ValueError, "['22'] matched no nn.Linear module"),
    ("apply_lora with modules_to_save a string",
     lambda: L.apply_lora(model(), ["0"], modules_to_save="2"), TypeError, "modules_to_save"),
    ("apply_lora with modules_to_save matching nothing",
     lambda: L.apply_lora(model(), ["0"], modules_to_save=["head"]), ValueError,
     "modules_to_save entries ['head']"),
    ("apply_lora with use_rslora=1", lambda: L.apply_lora(model(), ["0"], use_rslora=1),
     TypeError, "use_rslora"),
    ("LoRALinear alpha set to a string", lambda: setattr(L.LoRALinear(nn.Linear(3, 3)), "alpha",
                                                         "8"), TypeError, "alpha"),
    ("LoRALinear alpha set to -1", lambda: setattr(L.LoRALinear(nn.Linear(3, 3)), "alpha", -1),
     ValueError, "alpha must be > 0"),
    ("LoRALinear on a meta-device layer", lambda: L.LoRALinear(nn.Linear(3, 3, device="meta")),
     ValueError, "meta device"),
    ("disable_adapter on a string", lambda: L.disable_adapter("model").__enter__(), TypeError,
     "model must"),
    ("disable_adapter without LoRA", lambda: L.disable_adapter(model()).__enter__(), ValueError,
     "apply_lora"),
    ("ModulesToSaveWrapper of a ModuleList",
     lambda: L.ModulesToSaveWrapper(nn.ModuleList([nn.Linear(2, 2)])), TypeError,
     "modules_to_save"),
]


@pytest.mark.parametrize("call,exc,text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_named(call: Callable[[], Any], exc: type[Exception], text: str) -> None:
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value), f"message {str(info.value)!r} should mention {text!r}"
    # never a cryptic shape error from inside NumPy or torch
    assert info.type in (ValueError, TypeError)


def test_the_table_is_large_and_distinct() -> None:
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


def test_load_adapter_with_a_file_as_directory(tmp_path: Path) -> None:
    file = tmp_path / "adapter"
    file.write_text("x")
    with pytest.raises(ValueError, match="directory"):
        L.load_adapter(model(), file)
