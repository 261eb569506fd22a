"""The shipped data and models: checksums, shapes, splits, and the numbers data/README.md states."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lora_lab import data as D

README = (Path(D.__file__).resolve().parent.parent / "data" / "README.md").read_text()

# Numbers stated in data/README.md (each test also checks that the README states them).
MLP_HELDOUT_CORRECT = 769  # of 797: "96.5 %"
LLAMA_SLICE_LOSS = 1.4716  # tools/pretrain_tiny_llama.py --eval-only; README: "1.472"


# --------------------------------------------------------------------------- checksums, files

def test_every_shipped_file_matches_its_checksum() -> None:
    D.verify_data()
    assert set(D._SHA256) == set(D._REBUILD)
    for relative, digest in D._SHA256.items():
        assert re.fullmatch(r"[0-9a-f]{64}", digest), relative
        assert digest in README, f"data/README.md does not record the sha256 of {relative}"


def _copy_of_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(D.DATA_DIR, copy)
    monkeypatch.setattr(D, "DATA_DIR", copy)
    return copy


def test_a_missing_file_is_named_with_how_to_rebuild_it(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy_of_data(tmp_path, monkeypatch)
    (copy / "digits_mlp.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"digits_mlp\.safetensors is missing.*"
                                                r"tools/pretrain_digits_mlp\.py"):
        D.load_digits_mlp()


def test_an_altered_file_is_refused_by_name(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    copy = _copy_of_data(tmp_path, monkeypatch)
    with open(copy / "tinyshakespeare" / "input.txt", "ab") as f:
        f.write(b"\n")
    with pytest.raises(ValueError, match=r"tinyshakespeare/input\.txt does not match its "
                                         r"recorded SHA-256"):
        D.load_text("tinyshakespeare")
    with pytest.raises(ValueError, match="relatives must name shipped files"):
        D.verify_data(["nope.txt"])
    with pytest.raises(TypeError, match="relatives must be a list of paths"):
        D.verify_data("digits/split.json")


# --------------------------------------------------------------------------- digits

def test_digits_shapes_dtypes_values() -> None:
    digits = D.load_digits()
    assert digits.images.shape == (1797, 64) and digits.images.dtype == torch.float32
    assert digits.labels.shape == (1797,) and digits.labels.dtype == torch.int64
    assert digits.images.min() == 0 and digits.images.max() == 1
    counts = digits.images * 16
    assert torch.equal(counts, counts.round())  # raw pixel counts 0..16, divided by 16
    assert torch.bincount(digits.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179,
                                                      174, 180]
    assert "1,797" in README and "10.24432/C50P49" in README and "CC BY 4.0" in README


def test_digits_split_is_disjoint_complete_and_stratified() -> None:
    digits = D.load_digits()
    pretrain, heldout = digits.pretrain, digits.heldout
    assert pretrain.dtype == heldout.dtype == torch.int64
    assert len(pretrain) == 1000 and len(heldout) == 797
    assert torch.equal(pretrain, pretrain.sort().values)
    assert torch.equal(heldout, heldout.sort().values)
    assert not set(pretrain.tolist()) & set(heldout.tolist())
    assert torch.equal(torch.cat([pretrain, heldout]).sort().values, torch.arange(1797))
    assert torch.bincount(digits.labels[pretrain]).tolist() == [100] * 10
    assert torch.bincount(digits.labels[heldout]).min() >= 74


def test_digits_mlp_architecture_and_stated_accuracy() -> None:
    model = D.load_digits_mlp()
    assert isinstance(model, nn.Sequential) and not model.training
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linear == ["0", "2", "4"]
    assert [tuple(model[i].weight.shape) for i in (0, 2, 4)] == [(256, 64), (256, 256), (10, 256)]
    digits = D.load_digits()
    with torch.no_grad():
        predicted = model(digits.images[digits.heldout]).argmax(dim=1)
    correct = int((predicted == digits.labels[digits.heldout]).sum())
    assert abs(correct - MLP_HELDOUT_CORRECT) <= 1  # a near-tie may flip on another CPU
    assert f"{100 * MLP_HELDOUT_CORRECT / 797:.1f} %" in README
    assert f"{MLP_HELDOUT_CORRECT} of 797" in README


def test_build_digits_mlp_checks_sizes() -> None:
    assert len(D.build_digits_mlp((3, 2))) == 1
    with pytest.raises(TypeError, match="sizes must be a tuple"):
        D.build_digits_mlp([64, 10])
    with pytest.raises(ValueError, match="sizes must hold ints >= 1"):
        D.build_digits_mlp((64, 0, 10))


# --------------------------------------------------------------------------- characters, texts

def test_vocabulary() -> None:
    assert D.VOCAB_SIZE == 96 and len(set(D.VOCAB)) == 96
    assert D.VOCAB[0] == "\n" and D.VOCAB[1] == " " and D.VOCAB[-1] == "~"
    ids = D.encode(D.VOCAB)
    assert ids.dtype == torch.int64 and torch.equal(ids, torch.arange(96))
    assert D.decode(ids) == D.VOCAB
    assert D.encode("").shape == (0,) and D.decode([]) == ""


@pytest.mark.parametrize("name", sorted(D.TEXTS))
def test_every_shipped_text_fits_the_vocabulary_and_round_trips(name: str) -> None:
    text = D.load_text(name)
    assert "\t" not in text and "\r" not in text
    ids = D.encode(text)  # raises for any character outside the vocabulary
    assert ids.shape == (len(text),) and int(ids.min()) >= 0 and int(ids.max()) < 96
    assert D.decode(ids) == text
    train, validation = D.load_text(name, "train"), D.load_text(name, "validation")
    assert train + validation == text
    assert len(train) == int(0.9 * len(text))


def test_text_sizes_match_the_readme() -> None:
    sizes = {name: len(D.load_text(name)) for name in D.TEXTS}
    assert sizes["tinyshakespeare"] == 1_115_394
    for name in ("python_code", "python_docs"):
        assert 100_000 <= sizes[name] <= 300_000
    for size in sizes.values():
        assert f"{size:,}" in README


def test_tabs_become_four_spaces() -> None:
    assert D.decode(D.encode("\tx")) == "    x"


@pytest.mark.parametrize(("text", "message"), [
    ("caf\u00e9", r"'\u00e9' \(U\+00E9\) at position 3"),
    ("a\r\nb", r"'\\r' \(U\+000D\) at position 1 .*Windows line ending"),
    ("\u201cquoted\u201d", r"U\+201C\) at position 0"),
    ("a\x00", r"U\+0000\) at position 1"),
    ("ab\ud800", r"U\+D800\) at position 2"),
])
def test_encode_refuses_characters_outside_the_vocabulary(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        D.encode(text)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(TypeError, match="text must be a str"):
        D.encode(b"bytes")
    with pytest.raises(ValueError, match=r"ids must be in 0\.\.95, got 96 at position 1"):
        D.decode([0, 96])
    with pytest.raises(ValueError, match=r"ids must be in 0\.\.95, got -1"):
        D.decode(torch.tensor([-1]))
    with pytest.raises(ValueError, match=r"ids must be 1-D .*decode\(ids\[0\]\)"):
        D.decode(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="ids must hold integers"):
        D.decode(torch.zeros(3))
    with pytest.raises(TypeError, match="ids must hold integers"):
        D.decode(np.array([1.5]))
    with pytest.raises(TypeError, match="ids must be a sequence of ints"):
        D.decode("abc")
    with pytest.raises(TypeError, match="ids must be a 1-D sequence of ints"):
        D.decode([[1, 2], [3]])
    with pytest.raises(ValueError, match="name must be one of"):
        D.load_text("shakespeare")
    with pytest.raises(ValueError, match="split must be 'all', 'train' or 'validation'"):
        D.load_text("tinyshakespeare", "test")
    with pytest.raises(ValueError, match="length must be >= 2"):
        D.split_point(1)


# --------------------------------------------------------------------------- tiny Llama

def test_loading_the_tiny_llama_writes_nothing_to_stderr(capfd: pytest.CaptureFixture) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = D.load_tiny_llama()
        with torch.no_grad():
            model(input_ids=D.encode("ROMEO:\n")[None])
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    assert [str(w.message) for w in caught] == []


def test_tiny_llama_config_and_stated_validation_loss() -> None:
    from transformers import LlamaForCausalLM

    model = D.load_tiny_llama()
    assert isinstance(model, LlamaForCausalLM) and not model.training
    config = model.config
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers,
            config.num_attention_heads, config.intermediate_size,
            config.max_position_embeddings) == (96, 96, 3, 4, 256, 256)
    assert not config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == 350_880

    # the fixed slice data/README.md states the loss on: 16 windows of 128 characters, evenly
    # spaced over the validation text (as tools/pretrain_tiny_llama.py's test_slice)
    validation = D.encode(D.load_text("tinyshakespeare", "validation"))
    stride = len(validation) // 16
    windows = torch.stack([validation[i * stride: i * stride + 128] for i in range(16)])
    with torch.no_grad():
        logits = model(input_ids=windows).logits
    assert logits.shape == (16, 128, 96)
    loss = float(nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 96),
                                             windows[:, 1:].reshape(-1)))
    assert abs(loss - LLAMA_SLICE_LOSS) < 0.002
    assert f"{LLAMA_SLICE_LOSS:.3f}" in README
