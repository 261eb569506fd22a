"""How long does each lesson take to run? Every notebook, fresh kernel, one thread.

Executes each lesson notebook (and, with ``--solutions``, each solutions notebook)
top to bottom in a fresh kernel, as ``pytest --nbval`` does, without changing any
file, and prints a markdown table of seconds against the course's budgets
(03 ≤ 15 s, 04 ≤ 30 s, 05 ≤ 15 s, 06 ≤ 40 s, all lessons together ≤ 120 s). Exits 1
if a budget is exceeded. The time includes starting the kernel and importing
torch, as a learner's "Restart & Run All" does. Run it on an idle machine: other
load inflates every number.

Usage: ``python benchmarks/time_notebooks.py [--solutions] [--repeat N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = {"03": 15.0, "04": 30.0, "05": 15.0, "06": 40.0}
TOTAL_BUDGET_S = 120.0


def run_once(path: Path) -> float:
    """Seconds to execute ``path`` in a fresh kernel (the file is not written)."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solutions", action="store_true", help="time the solutions too")
    parser.add_argument("--repeat", type=int, default=1, help="runs per notebook (median)")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.solutions:
        paths += sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
    print("| notebook | seconds | budget |\n|---|--:|--:|")
    over, lessons_total = [], 0.0
    for path in paths:
        seconds = statistics.median(run_once(path) for _ in range(max(args.repeat, 1)))
        budget = BUDGET_S.get(path.name[:2]) if path.parent.name == "notebooks" else None
        if path.parent.name == "notebooks":
            lessons_total += seconds
        if budget is not None and seconds > budget:
            over.append(path.name)
        limit = f"≤ {budget:.0f}" if budget else ""
        print(f"| `{path.relative_to(ROOT / 'notebooks')}` | {seconds:.1f} | {limit} |", flush=True)
    print(f"| **all lessons** | **{lessons_total:.1f}** | ≤ {TOTAL_BUDGET_S:.0f} |")
    if lessons_total > TOTAL_BUDGET_S:
        over.append("all lessons")
    if over:
        print(f"\nover budget: {', '.join(over)}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
