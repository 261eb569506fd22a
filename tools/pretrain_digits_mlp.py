"""Pretrain the digits MLP of notebook 04 and save it as ``data/digits_mlp.safetensors``.

    OMP_NUM_THREADS=1 python tools/pretrain_digits_mlp.py          # a few seconds

The model is ``lora_lab.data.build_digits_mlp()``: Linear(64, 256), ReLU, Linear(256, 256),
ReLU, Linear(256, 10). It trains on the 1,000 ``pretrain`` images of ``load_digits()`` only
(pixels / 16, in [0, 1]) with Adam (learning rate 1e-3, mini-batches of 50, 40 epochs,
cross-entropy), seeded and single-threaded, then reports its accuracy on the 797 ``heldout``
images, which it never saw. The weights are saved with safetensors (no pickle), with the
architecture, seed and accuracy as metadata (one key, ``"lora_lab"``, holding JSON); the script
prints the SHA-256 that ``lora_lab/data.py`` records.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lora_lab.data import DIGITS_MLP_SIZES, build_digits_mlp, load_digits, sha256_of  # noqa: E402

SEED = 0
EPOCHS = 40
BATCH = 50
LR = 1e-3
OUT = ROOT / "data" / "digits_mlp.safetensors"


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(dim=1) == labels).float().mean())


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    digits = load_digits()
    x, y = digits.images[digits.pretrain], digits.labels[digits.pretrain]
    model = build_digits_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        for rows in torch.randperm(len(y), generator=generator).split(BATCH):
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if (epoch + 1) % 10 == 0:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}")
    model.eval()
    held_x, held_y = digits.images[digits.heldout], digits.labels[digits.heldout]
    train_acc, held_acc = accuracy(model, x, y), accuracy(model, held_x, held_y)
    correct = round(held_acc * len(held_y))
    print(f"accuracy: pretrain {100 * train_acc:.1f} %, heldout {100 * held_acc:.1f} % "
          f"({correct} of {len(held_y)})")
    metadata = {
        "architecture": "Sequential(Linear(64,256), ReLU, Linear(256,256), ReLU, Linear(256,10))",
        "sizes": ",".join(map(str, DIGITS_MLP_SIZES)),
        "input": "float32 (N, 64) = raw pixel counts / 16, in [0, 1]",
        "trained_on": "load_digits().pretrain (1000 images, 100 per digit)",
        "training": f"Adam lr={LR}, batch {BATCH}, {EPOCHS} epochs, cross-entropy, 1 thread",
        "seed": str(SEED),
        "heldout_accuracy": f"{held_acc:.4f} ({correct}/{len(held_y)})",
        "torch_version": torch.__version__,
    }
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    # one metadata key: safetensors writes several in a random order, which changes the bytes
    save_file(state, OUT, metadata={"lora_lab": json.dumps(metadata, sort_keys=True)})
    OUT.chmod(0o644)  # safetensors writes the file owner-readable only
    data = OUT.read_bytes()
    print(f"{OUT.relative_to(ROOT)}: {len(data):,} bytes, sha256 {sha256_of(data)}")


if __name__ == "__main__":
    main()
