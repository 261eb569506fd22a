"""Benchmark one update of notebook 01's rank slider (``lora_lab.widgets.RankSlider``).

Run it from the repository root::

    .venv/bin/python benchmarks/bench_rank_slider.py            # every rank, 3 sweeps
    .venv/bin/python benchmarks/bench_rank_slider.py --quick    # every 8th rank, 1 sweep

What is timed: setting ``slider.value`` on the widget showing the 600 x 512 photo,
exactly what a learner's drag triggers in the kernel: recombining the SVD factors,
measuring the error, updating the artists, re-rendering the PNG and writing it (and
the readout) into the widgets. Ranks are visited in a shuffled order (seeded), so
consecutive updates differ as much as a fast drag. The target is a median of at most
50 ms wall-clock time. CPU time of this process is reported as well: on a machine
shared with other work it shows what the update itself costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Sequence

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the notebooks run
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # after the thread settings, which NumPy reads on import

from lora_lab.widgets import RankSlider, load_sample_image

TARGET_MEDIAN_MS = 50.0


def time_updates(explorer: RankSlider, ranks: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU milliseconds of one slider move to each of ``ranks``, shape (len(ranks),)."""
    wall, cpu = [], []
    for rank in ranks:
        w0, c0 = time.perf_counter(), time.process_time()
        explorer.slider.value = int(rank)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        assert explorer.rank == rank
    return 1e3 * np.array(wall), 1e3 * np.array(cpu)


def describe(name: str, ms: np.ndarray) -> str:
    """One table row: median and spread of ``ms``."""
    p10, p50, p90, p99 = np.percentile(ms, [10, 50, 90, 99])
    return (f"| {name:<9} | {p50:7.1f} | {p10:7.1f} | {p90:7.1f} | {p99:7.1f} "
            f"| {ms.max():7.1f} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every 8th rank, one sweep")
    args = parser.parse_args(argv)

    photo = load_sample_image()
    start = time.perf_counter()
    explorer = RankSlider(photo, rank=1)
    build_ms = 1e3 * (time.perf_counter() - start)

    rng = np.random.default_rng(0)
    step, sweeps = (8, 1) if args.quick else (1, 3)
    ranks = np.concatenate([rng.permutation(np.arange(2, explorer.max_rank + 1, step))
                            for _ in range(sweeps)])
    time_updates(explorer, rng.permutation(np.arange(2, 40))[:10])  # warm-up
    wall, cpu = time_updates(explorer, ranks)

    print(f"RankSlider on the {photo.shape[0]} x {photo.shape[1]} photo; "
          f"{len(ranks)} updates ({sweeps} shuffled sweep(s) of ranks 2..{explorer.max_rank}, "
          f"step {step}); numpy {np.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"build once (SVD + first full draw): {build_ms:.0f} ms; "
          f"PNG per update: {len(explorer.image.value) / 1024:.0f} KiB")
    print("| time (ms) |  median |     p10 |     p90 |     p99 |     max |")
    print("|-----------|---------|---------|---------|---------|---------|")
    print(describe("wall", wall))
    print(describe("CPU", cpu))
    median = float(np.median(wall))
    ok = median <= TARGET_MEDIAN_MS
    print(f"{'PASS' if ok else 'FAIL'}: median update {median:.1f} ms "
          f"(target <= {TARGET_MEDIAN_MS:.0f} ms)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
