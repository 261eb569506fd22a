"""Benchmark ``lora_lab.LoRALinear`` against PEFT, loralib and a fully trainable ``nn.Linear``.

Run it from the repository root::

    .venv/bin/python benchmarks/bench_lora_linear.py            # full run, a few minutes
    .venv/bin/python benchmarks/bench_lora_linear.py --quick    # smoke test, seconds

What is timed
-------------
* **Training step**: ``zero_grad(set_to_none=True)``, forward of a batch, backward of the
  loss ``<out, G>`` for a fixed random ``G`` (so the upstream gradient is dense, as in a
  real network, without adding an elementwise loss to the timing). The input does not
  require a gradient unless ``--input-grad`` is given (the layer is then costed as a
  middle layer: the backward also computes ``dL/dx``).
* **Merged forward**: inference (``torch.no_grad``) through a merged ``LoRALinear``
  versus a plain ``nn.Linear`` of the same shape: merging must make the adapter free.

The three LoRA variants wrap one shared frozen base layer and hold identical adapters
(``lora_B`` non-zero, so the adapter path does real work); they are checked to compute
the same output before any timing. All variants of a
(shape, threads) group are timed in one process, round-robin within every repeat (the
starting variant rotates from repeat to repeat), after warm-up. Reported times are
medians over repeats; reported ratios are medians of the per-repeat ratios, which
cancels most of the drift caused by other processes sharing the CPU.

Two clocks are read around every measurement: the wall clock (what you wait for) and
the process CPU time (summed over threads). On a quiet machine they tell the same
story (CPU = threads x wall). On a shared one the wall clock also counts the time the
benchmark spent descheduled, so its ratios scatter by +-10 % or more; on 1 thread the
CPU-time ratios stay much tighter and are the ones to trust there (on 2 threads the
CPU time also counts OpenMP threads spinning while they wait for a descheduled
sibling, so it is noisy too). The header prints the load average and the share of
the requested CPU the benchmark actually got, to tell which case a run was.

The verdict columns say ``ok`` when the median ratio meets the target, ``~ noise``
when it misses but the lower quartile still meets it (the difference is within the
run-to-run scatter), and ``SLOWER`` when even the lower quartile misses.

The trainable-state memory is ``4 x (trainable parameters) x 4 bytes`` (fp32 parameters,
gradients and Adam's two moments), counted from each variant's actual trainable
parameters.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import loralib
import peft
import torch
from torch import nn

from lora_lab.layers import LoRALinear

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
ALPHA = 16.0
BYTES_PER_TRAINABLE = 4 * 4  # fp32 parameter + gradient + Adam m + Adam v
TRAIN_TARGET = 1.0  # ours / PEFT training step
MERGED_TARGET = 1.03  # merged LoRALinear / nn.Linear forward
MIN_MEASURE_S = 0.02  # each measurement loops the step until it lasts at least this long

VARIANTS = ("ours", "peft", "loralib")


@dataclass
class Config:
    """What to run: shapes, ranks, thread counts, batch and repeats."""

    sizes: Sequence[int]
    ranks: Sequence[int]
    threads: Sequence[int]
    batch: int
    repeats: int
    warmup: int
    budget: float
    input_grad: bool


Samples = dict[str, dict[str, list[float]]]  # clock -> task -> seconds per call, per repeat


@dataclass
class GroupResult:
    """One (size, threads) group, per clock: median step times (s), paired-ratio quartiles.

    ``cpu_share`` is CPU time over (wall time x threads) summed over all measurements:
    1.0 when the benchmark had its threads to itself, lower when it had to share.
    """

    size: int
    threads: int
    repeats: int
    cpu_share: float = 1.0
    times: dict[str, dict[str, float]] = field(default_factory=dict)
    ratios: dict[str, dict[tuple[str, str], tuple[float, ...]]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Building the variants


def make_base(size: int, seed: int) -> nn.Linear:
    """A "pretrained" ``size x size`` linear layer with bias, reproducible from ``seed``."""
    torch.manual_seed(seed)
    return nn.Linear(size, size)


def build_ours(base: nn.Linear, r: int) -> LoRALinear:
    """Our ``LoRALinear`` around ``base``, with a non-zero ``lora_B`` (the reference adapter)."""
    layer = LoRALinear(base, r=r, alpha=ALPHA)
    with torch.no_grad():
        layer.lora_B.normal_(0.0, 0.02)
    return layer


class _Holder(nn.Module):
    """The smallest model PEFT can wrap: one ``nn.Linear`` named ``lin``."""

    def __init__(self, lin: nn.Linear) -> None:
        super().__init__()
        self.lin = lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def build_peft(ref: LoRALinear) -> nn.Module:
    """PEFT's own ``peft.tuners.lora.Linear`` (via ``get_peft_model``) around ``ref.base``.

    The adapter is copied from ``ref``. The returned module is the LoRA layer itself, so
    the timing does not include the ``PeftModel`` wrapper's dispatch.
    """
    config = peft.LoraConfig(r=ref.r, lora_alpha=ALPHA, lora_dropout=0.0,
                             target_modules=["lin"], bias="none")
    model = peft.get_peft_model(_Holder(ref.base), config)
    layer = model.base_model.model.lin
    if not isinstance(layer, peft.tuners.lora.Linear):
        raise TypeError(f"expected peft.tuners.lora.Linear, got {type(layer).__name__}")
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(ref.lora_A)
        layer.lora_B["default"].weight.copy_(ref.lora_B)
    return layer


def build_loralib(ref: LoRALinear) -> nn.Module:
    """``loralib.Linear`` (``merge_weights=False``) on ``ref.base``'s frozen parameters.

    The adapter is copied from ``ref``; only the adapter is trainable, as in ``ref``.
    """
    layer = loralib.Linear(ref.in_features, ref.out_features, r=ref.r, lora_alpha=ALPHA,
                           merge_weights=False)
    layer.weight = ref.base.weight
    layer.bias = ref.base.bias
    loralib.mark_only_lora_as_trainable(layer, bias="none")
    with torch.no_grad():
        layer.lora_A.copy_(ref.lora_A)
        layer.lora_B.copy_(ref.lora_B)
    return layer


def trainable_params(module: nn.Module) -> int:
    """Number of parameters of ``module`` that require a gradient."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def state_mib(module: nn.Module) -> float:
    """Trainable state (params + grads + Adam m, v) of ``module`` in MiB, fp32."""
    return trainable_params(module) * BYTES_PER_TRAINABLE / 2**20


def check_same_output(layers: dict[str, nn.Module], x: torch.Tensor) -> None:
    """Raise if the LoRA variants disagree: the timings must compare the same computation."""
    with torch.no_grad():
        outs = {name: layer(x) for name, layer in layers.items()}
    ref = outs["ours"]
    for name, out in outs.items():
        if not torch.allclose(out, ref, rtol=1e-4, atol=1e-4):
            err = (out - ref).abs().max().item()
            raise AssertionError(f"{name} disagrees with ours (max abs diff {err:.3g})")


# --------------------------------------------------------------------------------------
# Timing


def train_step_fn(module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> Callable[[], None]:
    """One training step of ``module``: zero grads, forward, backward of ``<out, grad_out>``."""

    def step() -> None:
        module.zero_grad(set_to_none=True)
        if x.grad is not None:
            x.grad = None
        module(x).backward(grad_out)

    return step


def forward_fn(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """One inference forward of ``module`` under ``torch.no_grad``."""

    def step() -> None:
        with torch.no_grad():
            module(x)

    return step


def calibrate(fn: Callable[[], None]) -> tuple[int, float]:
    """How many calls of ``fn`` make one measurement last ``MIN_MEASURE_S``, and their time."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    loops = max(1, math.ceil(MIN_MEASURE_S / max(once, 1e-6)))
    return loops, loops * once


def measure(fn: Callable[[], None], loops: int) -> dict[str, float]:
    """Seconds per call of ``fn`` on every clock, averaged over ``loops`` back-to-back calls."""
    start = {clock: read() for clock, read in CLOCKS.items()}
    for _ in range(loops):
        fn()
    return {clock: (read() - start[clock]) / loops for clock, read in CLOCKS.items()}


def time_round_robin(tasks: dict[str, Callable[[], None]], repeats: int, warmup: int,
                     budget: float) -> Samples:
    """Per-call seconds of every task, for every repeat and clock, interleaved round-robin.

    Each repeat runs every task once; the starting task rotates so that no task always
    follows the same neighbour. At least ``repeats`` repeats, more if they fit in
    ``budget`` seconds (cheap groups get more samples). Garbage collection is paused
    while timing.
    """
    names = list(tasks)
    for _ in range(warmup):
        for name in names:
            tasks[name]()
    calibrated = {name: calibrate(tasks[name]) for name in names}
    loops = {name: n for name, (n, _) in calibrated.items()}
    round_s = sum(seconds for _, seconds in calibrated.values())
    repeats = max(repeats, int(budget / round_s))
    samples: Samples = {clock: {name: [] for name in names} for clock in CLOCKS}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(repeats):
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                for clock, seconds in measure(tasks[name], loops[name]).items():
                    samples[clock][name].append(seconds)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def paired_ratios(samples: dict[str, list[float]], num: str, den: str) -> tuple[float, ...]:
    """Quartiles (25 %, median, 75 %) over repeats of ``num / den`` timed in the same repeat."""
    ratios = [a / b for a, b in zip(samples[num], samples[den], strict=True)]
    if len(ratios) < 2:
        return (ratios[0],) * 3
    return tuple(statistics.quantiles(ratios, n=4, method="inclusive"))


# --------------------------------------------------------------------------------------
# One (size, threads) group


def run_group(size: int, threads: int, cfg: Config,
              memory: dict[tuple[int, int], dict[str, float]]) -> GroupResult:
    """Build every variant for one shape, time them all interleaved on ``threads`` threads."""
    torch.set_num_threads(threads)
    seed = 1000 + size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg.batch, size, generator=gen, requires_grad=cfg.input_grad)
    grad_out = torch.randn(cfg.batch, size, generator=gen)

    # All LoRA variants share one frozen base layer: their base GEMMs read the same
    # memory, so where the allocator happened to put a weight cannot favour one of them.
    base = make_base(size, seed)
    tasks: dict[str, Callable[[], None]] = {}
    for r in cfg.ranks:
        ours = build_ours(base, r)
        layers = {"ours": ours, "peft": build_peft(ours), "loralib": build_loralib(ours)}
        check_same_output(layers, x.detach())
        for name, layer in layers.items():
            layer.train()
            tasks[f"{name}/r{r}"] = train_step_fn(layer, x, grad_out)
            memory.setdefault((size, r), {})[name] = state_mib(layer)
    full = make_base(size, seed)
    tasks["full"] = train_step_fn(full, x, grad_out)
    for r in cfg.ranks:
        memory[(size, r)]["full"] = state_mib(full)

    # Merged forward: a merged LoRALinear against a plain nn.Linear sharing its merged
    # weight W + scaling BA, so the two differ only in the wrapper's own overhead.
    merged = build_ours(make_base(size, seed), max(cfg.ranks)).eval()
    merged.merge()
    plain = nn.Linear(size, size).eval()
    plain.weight, plain.bias = merged.base.weight, merged.base.bias
    tasks["merged"] = forward_fn(merged, x)
    tasks["linear"] = forward_fn(plain, x)

    samples = time_round_robin(tasks, cfg.repeats, cfg.warmup, cfg.budget)
    total = {clock: sum(map(sum, per_task.values())) for clock, per_task in samples.items()}
    result = GroupResult(size=size, threads=threads, repeats=len(samples["wall"]["full"]),
                         cpu_share=total["cpu"] / (total["wall"] * threads))
    pairs = [("merged", "linear")]
    for r in cfg.ranks:
        pairs += [(f"ours/r{r}", f"peft/r{r}"), (f"ours/r{r}", f"loralib/r{r}"),
                  (f"ours/r{r}", "full")]
    for clock, per_task in samples.items():
        result.times[clock] = {name: statistics.median(s) for name, s in per_task.items()}
        result.ratios[clock] = {pair: paired_ratios(per_task, *pair) for pair in pairs}
    return result


# --------------------------------------------------------------------------------------
# Reporting


def verdict(q: tuple[float, ...], target: float) -> str:
    """``ok`` / ``~ noise`` / ``SLOWER`` for ratio quartiles ``q`` against ``target``."""
    if q[1] <= target:
        return "ok"
    return "~ noise" if q[0] <= target else "**SLOWER**"


def with_iqr(q: tuple[float, ...]) -> str:
    """``median [q1, q3]`` of a ratio, three decimals."""
    return f"{q[1]:.3f} [{q[0]:.3f}, {q[2]:.3f}]"


def load_average() -> float:
    """The 1-minute load average (NaN where the OS does not report it)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return math.nan


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo when available, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


CLOCK_TITLES = {
    "wall": "wall clock, ms per step",
    "cpu": "process CPU time (all threads), ms per step",
}


def print_training_table(results: list[GroupResult], cfg: Config, clock: str) -> None:
    """The training-step table on one clock."""
    print(f"### Training step (zero_grad + forward + backward): {CLOCK_TITLES[clock]}\n")
    print("| in × out | r | threads | ours | PEFT | loralib | full `nn.Linear` "
          "| ours/PEFT [quartiles] | ours/loralib | ours/full | ≤ 1.0 vs PEFT |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|")
    for res in results:
        t, q = res.times[clock], res.ratios[clock]
        for r in cfg.ranks:
            vs_peft = q[(f"ours/r{r}", f"peft/r{r}")]
            vs_lib = q[(f"ours/r{r}", f"loralib/r{r}")][1]
            vs_full = q[(f"ours/r{r}", "full")][1]
            print(f"| {res.size}×{res.size} | {r} | {res.threads} "
                  f"| {t[f'ours/r{r}'] * 1e3:.2f} | {t[f'peft/r{r}'] * 1e3:.2f} "
                  f"| {t[f'loralib/r{r}'] * 1e3:.2f} | {t['full'] * 1e3:.2f} "
                  f"| {with_iqr(vs_peft)} | {vs_lib:.3f} | {vs_full:.3f} "
                  f"| {verdict(vs_peft, TRAIN_TARGET)} |")
    print()


def print_merged_table(results: list[GroupResult], cfg: Config) -> None:
    """The merged-forward table: wall-clock times, ratios on both clocks."""
    print(f"### Merged forward (inference, no_grad), wall-clock ms per batch; "
          f"merged r = {max(cfg.ranks)}\n")
    print("| in × out | threads | merged `LoRALinear` | `nn.Linear` "
          "| ratio, wall [quartiles] | ratio, CPU [quartiles] | ≤ 1.03 (CPU) |")
    print("|---|--:|--:|--:|--:|--:|:-:|")
    for res in results:
        wall = res.ratios["wall"][("merged", "linear")]
        cpu = res.ratios["cpu"][("merged", "linear")]
        t = res.times["wall"]
        print(f"| {res.size}×{res.size} | {res.threads} | {t['merged'] * 1e3:.2f} "
              f"| {t['linear'] * 1e3:.2f} | {with_iqr(wall)} | {with_iqr(cpu)} "
              f"| {verdict(cpu, MERGED_TARGET)} |")
    print()


def print_memory_table(memory: dict[tuple[int, int], dict[str, float]]) -> None:
    """Trainable state per variant, from each variant's own trainable parameters."""
    print("### Trainable state (params + grads + Adam m, v; fp32), MiB\n")
    print("| in × out | r | ours | PEFT | loralib | full `nn.Linear` |")
    print("|---|--:|--:|--:|--:|--:|")
    for (size, r), mem in sorted(memory.items()):
        cells = " | ".join(f"{mem[name]:.3f}" for name in (*VARIANTS, "full"))
        print(f"| {size}×{size} | {r} | {cells} |")
    print()


def print_summary(results: list[GroupResult], cfg: Config) -> None:
    """One line per clock: worst and median ratio against the targets."""
    print("**Summary**\n")
    for clock in CLOCKS:
        train = [res.ratios[clock][(f"ours/r{r}", f"peft/r{r}")][1]
                 for res in results for r in cfg.ranks]
        merged = [res.ratios[clock][("merged", "linear")][1] for res in results]
        print(f"- {clock}: ours/PEFT training step median {statistics.median(train):.3f}, "
              f"worst {max(train):.3f}; {sum(v <= TRAIN_TARGET for v in train)}/{len(train)} "
              f"configs ≤ {TRAIN_TARGET}. Merged forward / `nn.Linear` worst "
              f"{max(merged):.3f} (target ≤ {MERGED_TARGET}).")


def print_report(results: list[GroupResult], memory: dict[tuple[int, int], dict[str, float]],
                 cfg: Config, elapsed: float, load: tuple[float, float]) -> None:
    """Print the environment, then markdown tables: training (both clocks), merged, memory."""
    print("## LoRA Lab benchmark: `LoRALinear` vs PEFT vs loralib vs `nn.Linear`\n")
    print(f"- torch {torch.__version__}, peft {peft.__version__}, "
          f"loralib {importlib.metadata.version('loralib')}, "
          f"Python {platform.python_version()}; {cpu_name()}, {os.cpu_count()} "
          f"logical CPU(s), {platform.machine()}")
    print(f"- fp32, batch {cfg.batch}, square layers with bias, alpha {ALPHA:g}, dropout 0; "
          f"input requires grad: {cfg.input_grad}")
    reps = ", ".join(f"{res.size}/{res.threads}t: {res.repeats}" for res in results)
    print(f"- medians of interleaved repeats (size/threads: repeats — {reps}) after "
          f"{cfg.warmup} warm-up rounds; each repeat loops a step for >= "
          f"{MIN_MEASURE_S * 1000:.0f} ms; ratios are medians [quartiles] of per-repeat ratios")
    shares = ", ".join(f"{res.size}/{res.threads}t {res.cpu_share:.0%}" for res in results)
    print(f"- 1-min load average {load[0]:.2f} before, {load[1]:.2f} after; CPU share "
          f"obtained (size/threads): {shares}; total wall time {elapsed:.0f} s\n")
    for clock in CLOCKS:
        print_training_table(results, cfg, clock)
    print_merged_table(results, cfg)
    print_memory_table(memory)
    print_summary(results, cfg)


# --------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Command-line options; ``--quick`` shrinks everything to a smoke test."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 1024x1024, r=16, 1 thread, 5 repeats")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=21, help="timed repeats (median)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--budget", type=float, default=20.0,
                        help="seconds of timing per (size, threads) group: cheap groups "
                             "get more than --repeats repeats")
    parser.add_argument("--input-grad", action="store_true",
                        help="the input requires grad (time the layer as a middle layer)")
    args = parser.parse_args(argv)
    if args.quick:
        return Config(sizes=[1024], ranks=[16], threads=[1], batch=args.batch, repeats=5,
                      warmup=1, budget=0.0, input_grad=args.input_grad)
    return Config(sizes=args.sizes, ranks=args.ranks, threads=args.threads, batch=args.batch,
                  repeats=args.repeats, warmup=args.warmup, budget=args.budget,
                  input_grad=args.input_grad)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every (size, threads) group and print the markdown report."""
    cfg = parse_args(argv)
    load_before = load_average()
    start = time.perf_counter()
    memory: dict[tuple[int, int], dict[str, float]] = {}
    results = []
    for size in cfg.sizes:
        for threads in cfg.threads:
            print(f"timing {size}×{size} on {threads} thread(s)...", file=sys.stderr, flush=True)
            results.append(run_group(size, threads, cfg, memory))
            gc.collect()
    print_report(results, memory, cfg, time.perf_counter() - start,
                 (load_before, load_average()))


if __name__ == "__main__":
    main()
