"""The course's shipped data sets and pretrained models, loaded from ``data/`` and checksummed.

Nothing is downloaded: every file lives in the repository's ``data/`` folder (beside this
package) and is checked against the SHA-256 recorded below before it is used, so a notebook
always trains on exactly the bytes its stored outputs were made with. ``data/README.md`` says
where each file comes from, under which licence, and which script in ``tools/`` rebuilds it.

- :func:`load_digits`, :func:`load_digits_mlp`: UCI handwritten digits (8 x 8) and a small MLP
  pretrained on part of them (notebook 04).
- :func:`encode`, :func:`decode`, :data:`VOCAB`: the one character vocabulary of every text in
  the course.
- :func:`load_text`: Tiny Shakespeare and two texts frozen from Python's standard library, each
  with a fixed train/validation split (notebook 06).
- :func:`load_tiny_llama`: a tiny Llama-architecture character model pretrained on Tiny
  Shakespeare, in Hugging Face's format (notebook 06).

Why: a fine-tuning lesson needs a real pretrained model and real data; shipping small, fixed,
checksummed copies keeps the course offline and its numbers reproducible.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
"""The repository's ``data/`` folder, beside the ``lora_lab`` package."""

# --------------------------------------------------------------------------- checksums

_SHA256: dict[str, str] = {
    "digits/digits.csv.gz": "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22",
    "digits/split.json": "fc021584f7685579604da487949c12295d54e3c3e72011f10395432a43e85ffc",
    "digits_mlp.safetensors": "e897bfd6570ed29734e42969be4d96178d33668be07228385608ba7587fdd1ab",
    "tinyshakespeare/input.txt":
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "texts/python_code.txt": "9db2ecdfcd683f1aacce0838a555cae3bc0d1ca0f5381420bfc51ed2d299b357",
    "texts/python_docs.txt": "9e5f25a2690d604492d65260e8b5b4ad147be2d52996c44f5b8aadd2008ac3cb",
    "texts/PSF_LICENSE.txt": "3b2f81fe21d181c499c59a256c8e1968455d6689d269aa85373bfb6af41da3bf",
    "tiny_llama/config.json":
        "57598fc50e75e434d5a0fb3d762193cb6421d1940524dff04343a9de31b94c96",
    "tiny_llama/generation_config.json":
        "e5c6e58a01492ff8b88e11c8545ad8747e6449f0cf250083c544c0013105dfb9",
    "tiny_llama/model.safetensors":
        "fdf6d55f4268203d2c69649b93a9b565c1f87e9ce4e4c75086ef4d05aab0ca13",
}

_REBUILD: dict[str, str] = {
    "digits/digits.csv.gz": "python tools/build_digits.py",
    "digits/split.json": "python tools/build_digits.py",
    "digits_mlp.safetensors": "python tools/pretrain_digits_mlp.py",
    "tinyshakespeare/input.txt": "copy it from karpathy/char-rnn (see data/README.md)",
    "texts/python_code.txt": "python tools/build_texts.py",
    "texts/python_docs.txt": "python tools/build_texts.py",
    "texts/PSF_LICENSE.txt": "python tools/build_texts.py",
    "tiny_llama/config.json": "python tools/pretrain_tiny_llama.py",
    "tiny_llama/generation_config.json": "python tools/pretrain_tiny_llama.py",
    "tiny_llama/model.safetensors": "python tools/pretrain_tiny_llama.py",
}


def sha256_of(data: bytes) -> str:
    """Hexadecimal SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _read_verified(relative: str) -> bytes:
    """Bytes of ``data/<relative>`` after checking them against the recorded SHA-256.

    Raises ``FileNotFoundError`` (with the command that rebuilds the file) if it is missing and
    ``ValueError`` naming the file if its content differs from the shipped one.
    """
    path = DATA_DIR / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; it ships with the LoRA Lab repository "
                                f"(rebuild it with `{_REBUILD[relative]}` from the repository "
                                "root, or restore it with `git checkout -- data/`)")
    data = path.read_bytes()
    expected = _SHA256[relative]
    if sha256_of(data) != expected:
        raise ValueError(f"{path} does not match its recorded SHA-256 ({expected}): the file "
                         f"was changed or corrupted; restore it with `git checkout -- "
                         f"data/{relative}` (or rebuild it with `{_REBUILD[relative]}` and "
                         "record the new checksum in lora_lab/data.py)")
    return data


def verify_data(relatives: list[str] | None = None) -> None:
    """Check shipped files against their recorded SHA-256 (all of them by default).

    Raises ``FileNotFoundError`` or ``ValueError`` naming the first file that is missing or
    differs. Why: one call tells a learner whether their ``data/`` folder is intact.
    """
    if isinstance(relatives, str):
        raise TypeError(f"relatives must be a list of paths, got the str {relatives!r}; "
                        f"write [{relatives!r}]")
    for relative in _SHA256 if relatives is None else relatives:
        if relative not in _SHA256:
            raise ValueError(f"relatives must name shipped files {sorted(_SHA256)}, "
                             f"got {relative!r}")
        _read_verified(relative)


# --------------------------------------------------------------------------- digits

DIGITS_SIDE = 8
"""Digit images are 8 x 8 pixels."""
DIGITS_MAX_COUNT = 16
"""Raw pixel values count the ink in a 4 x 4 block of the 32 x 32 scan: 0..16."""


class Digits(NamedTuple):
    """The 1,797 UCI handwritten digits with their fixed split.

    Attributes:
        images: float32 tensor (1797, 64), pixel values in [0, 1] (raw count / 16), each row an
            8 x 8 image flattened row by row (``images.reshape(-1, 8, 8)`` gives the pictures).
        labels: int64 tensor (1797,), the digit 0..9 shown.
        pretrain: int64 tensor (1000,), sorted row indices of the 100 images per digit on which
            the shipped MLP was pretrained.
        heldout: int64 tensor (797,), sorted row indices of all other images, never seen in
            pretraining: the adaptation notebooks draw their training and test sets from these.
    """

    images: torch.Tensor
    labels: torch.Tensor
    pretrain: torch.Tensor
    heldout: torch.Tensor


def _parse_digits_csv(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Pixels uint8 (N, 64) and labels uint8 (N,) from the gzipped CSV (65 columns a row)."""
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != DIGITS_SIDE**2 + 1:
        raise ValueError(f"digits.csv.gz must have 65 columns, got {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > DIGITS_MAX_COUNT or labels.min() < 0 or labels.max() > 9:
        raise ValueError("digits.csv.gz holds values outside 0..16 (pixels) or 0..9 (labels)")
    return pixels.astype(np.uint8), labels.astype(np.uint8)


def _parse_split(raw: bytes, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``pretrain`` and ``heldout`` index lists of split.json, checked to partition 0..n-1."""
    split = json.loads(raw)
    pretrain = torch.tensor(split["pretrain"], dtype=torch.int64)
    heldout = torch.tensor(split["heldout"], dtype=torch.int64)
    together = torch.cat([pretrain, heldout]).sort().values
    if not torch.equal(together, torch.arange(n)):
        raise ValueError(f"digits/split.json must split the indices 0..{n - 1} into two "
                         "disjoint parts")
    return pretrain, heldout


def load_digits() -> Digits:
    """Load the UCI digits (1,797 images of 8 x 8 pixels) and their fixed split.

    Returns a :class:`Digits`: ``images`` float32 (1797, 64) in [0, 1], ``labels`` int64
    (1797,), and index tensors ``pretrain`` (1000,) and ``heldout`` (797,). Raises
    ``FileNotFoundError``/``ValueError`` if a file in ``data/digits/`` is missing or altered.
    """
    pixels, labels = _parse_digits_csv(_read_verified("digits/digits.csv.gz"))
    pretrain, heldout = _parse_split(_read_verified("digits/split.json"), len(labels))
    images = torch.from_numpy(pixels.astype(np.float32) / DIGITS_MAX_COUNT)
    return Digits(images, torch.from_numpy(labels.astype(np.int64)), pretrain, heldout)


DIGITS_MLP_SIZES = (64, 256, 256, 10)
"""Layer widths of the pretrained digits MLP: 64 pixels in, 10 class logits out."""


def build_digits_mlp(sizes: tuple[int, ...] = DIGITS_MLP_SIZES) -> nn.Sequential:
    """A freshly initialised MLP ``Linear, ReLU, Linear, ReLU, ..., Linear``.

    With the default ``sizes`` (64, 256, 256, 10) its Linear layers are named ``"0"``, ``"2"``,
    ``"4"`` (the ReLUs are ``"1"`` and ``"3"``); it maps (N, 64) pixels in [0, 1] to (N, 10)
    logits. Why: the architecture lives in code, the shipped file holds only weights.
    """
    if not isinstance(sizes, tuple) or len(sizes) < 2:
        raise TypeError(f"sizes must be a tuple of at least two ints, got {sizes!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"sizes must hold ints >= 1, got {sizes!r}")
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def load_digits_mlp() -> nn.Sequential:
    """The MLP 64-256-256-10 pretrained on ``load_digits().pretrain``, in eval mode.

    Input: float32 (N, 64) pixels in [0, 1] (``load_digits().images``); output: (N, 10) logits.
    Linear layers ``"0"``, ``"2"``, ``"4"``. Weights come from ``data/digits_mlp.safetensors``
    (no pickle), checked against their SHA-256 first; every parameter is trainable, as after
    ``nn.Module`` construction. Its accuracy on the held-out images is stated in data/README.md.
    """
    from safetensors.torch import load

    state = load(_read_verified("digits_mlp.safetensors"))
    model = build_digits_mlp()
    model.load_state_dict(state, strict=True)
    return model.eval()


# --------------------------------------------------------------------------- characters

VOCAB = "\n" + "".join(chr(code) for code in range(32, 127))
"""The 96 characters every text model in the course knows: id 0 is newline, ids 1..95 are the
printable ASCII characters from space (32) to tilde (126), in code order."""
VOCAB_SIZE = len(VOCAB)
TAB_WIDTH = 4
"""``encode`` turns each tab into this many spaces; every other character outside ``VOCAB`` is
refused."""


def _first_outside_vocab(text: str) -> tuple[int, str]:
    for position, char in enumerate(text):
        if char not in VOCAB:
            return position, char
    raise AssertionError("unreachable: called only when a character is outside VOCAB")


def encode(text: str) -> torch.Tensor:
    """Character ids of ``text``: int64 tensor (len(text),), values in 0..95.

    The rule: newline -> 0, printable ASCII ``chr(c)`` (32 <= c <= 126) -> c - 31, tab -> four
    spaces (so the result is longer than ``text`` by 3 per tab). Any other character (``\\r``,
    non-ASCII letters, typographic quotes, ...) raises ``ValueError`` naming it and its position,
    instead of being silently dropped or replaced.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = text.replace("\t", " " * TAB_WIDTH)
    codes = np.frombuffer(text.encode("utf-8", errors="surrogatepass"), dtype=np.uint8)
    valid = (codes == 10) | ((codes >= 32) & (codes <= 126))
    if len(codes) != len(text) or not valid.all():  # a non-ASCII char takes several bytes
        position, char = _first_outside_vocab(text)
        hint = " (Windows line ending? use text.replace('\\r\\n', '\\n'))" if char == "\r" else ""
        raise ValueError(f"text holds {char!r} (U+{ord(char):04X}) at position {position} "
                         "(after tabs became 4 spaces), which is outside the course's vocabulary "
                         f"of newline and printable ASCII{hint}")
    return torch.from_numpy(np.where(codes == 10, 0, codes.astype(np.int64) - 31))


def _ids_as_array(ids: Any) -> np.ndarray:
    """``ids`` (1-D tensor, array or sequence of ints) as an int64 NumPy array."""
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"ids must hold integers, got dtype {ids.dtype}")
        array = ids.detach().cpu().numpy()
    else:
        if isinstance(ids, (str, bytes)):
            raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}")
        try:
            array = np.asarray(ids)
        except (TypeError, ValueError) as exc:  # ragged lists and the like
            raise TypeError(f"ids must be a 1-D sequence of ints: {exc}") from None
        if array.size and array.dtype.kind not in "iu":
            raise TypeError(f"ids must hold integers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"ids must be 1-D (one sequence; for a batch decode each row: "
                         f"decode(ids[0])), got shape {tuple(array.shape)}")
    return array.astype(np.int64)


def decode(ids: Any) -> str:
    """The text of character ids ``ids``: a 1-D int tensor, NumPy array or list, values 0..95.

    Inverse of :func:`encode` (except that tabs come back as four spaces). Raises
    ``ValueError`` naming the first id outside 0..95.
    """
    array = _ids_as_array(ids)
    bad = np.flatnonzero((array < 0) | (array >= VOCAB_SIZE))
    if bad.size:
        raise ValueError(f"ids must be in 0..{VOCAB_SIZE - 1}, got {int(array[bad[0]])} at "
                         f"position {int(bad[0])}")
    codes = np.where(array == 0, 10, array + 31).astype(np.uint8)
    return codes.tobytes().decode("ascii")


# --------------------------------------------------------------------------- texts

TEXTS = {
    "tinyshakespeare": "tinyshakespeare/input.txt",
    "python_code": "texts/python_code.txt",
    "python_docs": "texts/python_docs.txt",
}
"""Names accepted by :func:`load_text`, with their files under ``data/``."""
TRAIN_FRACTION = 0.9
"""Every text is split by position: the first 90 % (``int(0.9 * len(text))`` characters) for
training, the rest for validation."""

Split = Literal["all", "train", "validation"]


def split_point(length: int) -> int:
    """Index of the first validation character of a text of ``length`` characters."""
    length = int(length)
    if length < 2:
        raise ValueError(f"length must be >= 2 to leave something on each side, got {length}")
    return int(TRAIN_FRACTION * length)


def load_text(name: str, split: Split = "all") -> str:
    """One of the shipped texts, every character in :data:`VOCAB`.

    ``name``: ``"tinyshakespeare"`` (1,115,394 characters of Shakespeare's plays),
    ``"python_code"`` (Python source of standard-library modules) or ``"python_docs"`` (the
    Python language reference's prose); ``split``: ``"all"``, ``"train"`` (the first 90 %) or
    ``"validation"`` (the last 10 %). Checked against its SHA-256 before it is returned.
    """
    if name not in TEXTS:
        raise ValueError(f"name must be one of {sorted(TEXTS)}, got {name!r}")
    if split not in ("all", "train", "validation"):
        raise ValueError(f"split must be 'all', 'train' or 'validation', got {split!r}")
    text = _read_verified(TEXTS[name]).decode("ascii")
    if split == "all":
        return text
    cut = split_point(len(text))
    return text[:cut] if split == "train" else text[cut:]


# --------------------------------------------------------------------------- tiny Llama

TINY_LLAMA_FILES = ("config.json", "generation_config.json", "model.safetensors")
"""The files of ``data/tiny_llama/`` that ``from_pretrained`` reads, each checksummed."""


def load_tiny_llama() -> LlamaForCausalLM:
    """The tiny Llama-architecture character model pretrained on Tiny Shakespeare, in eval mode.

    A ``transformers.LlamaForCausalLM`` (config in ``data/tiny_llama/config.json``; vocabulary:
    :data:`VOCAB`, ids from :func:`encode`), loaded with ``from_pretrained`` from
    ``data/tiny_llama`` offline (``local_files_only=True``) after its files pass their SHA-256
    checks. Input: int64 ids (batch, length <= 256); output ``.logits``: (batch, length, 96).
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    for file in TINY_LLAMA_FILES:
        _read_verified(f"tiny_llama/{file}")
    # transformers draws a "Loading weights" progress bar on stderr; silence it for this call
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(DATA_DIR / "tiny_llama",
                                                     local_files_only=True)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return model.eval()
