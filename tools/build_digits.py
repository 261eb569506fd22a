"""Build ``data/digits/``: the UCI handwritten digits and their fixed, stratified split.

    python tools/build_digits.py [--source PATH/TO/digits.csv.gz]

1. Copies ``digits.csv.gz`` byte for byte from scikit-learn's installed package
   (``sklearn/datasets/data/digits.csv.gz``: 1,797 rows of 64 pixel counts 0..16 and the label),
   after checking its SHA-256. scikit-learn is needed only here, as the source of the file; the
   course itself never imports it.
2. Writes ``split.json``: with ``numpy.random.default_rng(0)``, for each digit 0..9 in turn,
   the first 100 of a random permutation of that digit's row indices go to ``pretrain``
   (1,000 rows, exactly 100 per digit); all other rows (797) are ``heldout``. Both lists are
   sorted.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "digits"
SOURCE_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
SEED = 0
PER_CLASS = 100


def default_source() -> Path:
    import sklearn  # only to find the file it ships

    return Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"


def make_split(labels: np.ndarray) -> dict[str, object]:
    rng = np.random.default_rng(SEED)
    pretrain: list[int] = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        pretrain += rng.permutation(rows)[:PER_CLASS].tolist()
    heldout = sorted(set(range(len(labels))) - set(pretrain))
    return {
        "description": f"{PER_CLASS} images per digit for pretraining (numpy default_rng({SEED}),"
                       " digits 0..9 in turn, first rows of a permutation), the rest held out",
        "seed": SEED,
        "pretrain": sorted(pretrain),
        "heldout": heldout,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=None)
    args = parser.parse_args()
    source = args.source or default_source()
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{source} has SHA-256 {digest}, expected {SOURCE_SHA256}")
    OUT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, OUT / "digits.csv.gz")

    with gzip.open(OUT / "digits.csv.gz", "rt") as f:
        labels = np.loadtxt(f, delimiter=",", dtype=np.int64)[:, -1]
    split = make_split(labels)
    text = "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in split.items())
    (OUT / "split.json").write_text(text + "\n}\n", encoding="ascii")
    for name in ("digits.csv.gz", "split.json"):
        data = (OUT / name).read_bytes()
        print(f"data/digits/{name}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    print("class counts (all):", np.bincount(labels).tolist())
    print("class counts (heldout):", np.bincount(labels[split["heldout"]]).tolist())


if __name__ == "__main__":
    main()
