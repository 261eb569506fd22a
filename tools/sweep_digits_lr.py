"""Sweep the learning rate of the adaptation variants of notebooks 04 and 05, offline.

    OMP_NUM_THREADS=1 python tools/sweep_digits_lr.py          # about ten minutes

For each (shift, variant) pair in ``SWEPT`` -- every variant of ``lora_lab.digits_task``
for "rotate", six for "relabel" -- and each learning rate in ``LRS``, five seeds adapt the
pretrained MLP to ``tuning_split(make_task(shift))`` -- 200 of the 300 adaptation images,
for ``TUNING_EPOCHS`` = 45 epochs, i.e. the same 180 Adam steps with the same learning-rate
schedule as a run on all 300 images -- and count how many of the other 100 (the
*validation* images) they classify right. The test images are never used, so choosing a
learning rate here does not flatter the test accuracies the notebooks report. A run whose
loss becomes NaN/inf counts as 0 correct. Writes ``data/sweeps/digits_lr.csv`` (one line
per run). Notebook 04 reads it, picks each variant's learning rate with
``digits_task.best_lr`` (best worst seed), and makes its other choices (rank, layer) from
``digits_task.validation_accuracies``; ``tests/test_digits_task.py`` re-runs two lines of
the file and checks that the grid brackets every choice.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lora_lab.digits_task import (  # noqa: E402
    LR_SWEEP_FILE,
    TUNING_EPOCHS,
    VARIANTS,
    DigitsTask,
    make_task,
    run_variant,
    tuning_split,
)

LRS = (2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 5e-1, 1.0, 2.0)
SEEDS = (0, 1, 2, 3, 4)
SWEPT = {
    "rotate": [name for name in VARIANTS if name != "frozen"],
    "relabel": ["head only", "full fine-tuning", "LoRA r=8", "logits correction r=8",
                "LoRA r=8 on layer 0", "LoRA r=8 on layer 4"],
}
FIELDS = ("shift", "variant", "lr", "seed", "correct", "total")


def sweep_one(task: DigitsTask, variant: str, lr: float, seed: int) -> dict[str, object]:
    """One run on the tuning split ``task``: a line of the CSV."""
    try:
        correct = run_variant(task, **VARIANTS[variant], lr=lr, seed=seed,
                              epochs=TUNING_EPOCHS).correct
    except FloatingPointError:
        correct = 0
    return {"shift": task.shift, "variant": variant, "lr": f"{lr:g}", "seed": seed,
            "correct": correct, "total": len(task.test_labels)}


def main() -> None:
    torch.set_num_threads(1)
    LR_SWEEP_FILE.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = []
    for shift, variants in SWEPT.items():
        task = tuning_split(make_task(shift))
        for variant in variants:
            for lr in LRS:
                rows.append([sweep_one(task, variant, lr, seed) for seed in SEEDS])
                scores = " ".join(str(row["correct"]) for row in rows[-1])
                print(f"{shift:8} {variant:24} lr={lr:<6g} correct: {scores}", flush=True)
    with LR_SWEEP_FILE.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for group in rows for row in group)
    print(f"{LR_SWEEP_FILE.relative_to(ROOT)}: {sum(map(len, rows))} runs in "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
