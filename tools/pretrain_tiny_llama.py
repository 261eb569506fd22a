"""Pretrain the tiny Llama-architecture character model of notebook 06 on Tiny Shakespeare.

    OMP_NUM_THREADS=1 python tools/pretrain_tiny_llama.py            # about half an hour of CPU
    OMP_NUM_THREADS=1 python tools/pretrain_tiny_llama.py --eval-only   # re-evaluate the saved one
    OMP_NUM_THREADS=1 python tools/pretrain_tiny_llama.py --bench       # time it (needs peft)

writes ``data/tiny_llama/`` (``config.json``, ``generation_config.json``,
``model.safetensors``) with ``save_pretrained`` and prints the validation losses and SHA-256
digests that ``data/README.md`` and ``lora_lab/data.py`` record. Everything is
``transformers``' own ``LlamaForCausalLM``; the only code here is the data sampling and the
training loop.

Data: ``data/tinyshakespeare/input.txt`` encoded with ``lora_lab.data.encode``; the first 90 %
(by position) is the training text, the last 10 % the validation text. Each step trains on
``--batch`` windows of ``--block`` characters starting at uniformly random (seeded) positions of
the training text, predicting every character from the ones before it in its window. AdamW
(betas 0.9, 0.99; weight decay on matrices only), linear warm-up then cosine decay to a tenth of
the peak learning rate, gradients clipped to norm 1. Single-threaded and seeded, so a rerun on
the same machine and software gives the same file.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lora_lab.data import VOCAB_SIZE, decode, encode, load_text, sha256_of  # noqa: E402

CONFIG = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 96,
    "intermediate_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,  # lm_head is its own Linear (PEFT's all-linear leaves it out)
    "bos_token_id": None,  # the character vocabulary has no special tokens
    "eos_token_id": None,
    "pad_token_id": None,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "tiny_llama")
    parser.add_argument("--eval-only", action="store_true",
                        help="only evaluate the model saved in --out (no training)")
    parser.add_argument("--bench", action="store_true",
                        help="only time training steps and a forward pass of the saved model")
    return parser.parse_args()


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay to a tenth of ``--lr``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def windows(ids: torch.Tensor, length: int, count: int | None = None) -> torch.Tensor:
    """Consecutive non-overlapping windows of ``length`` ids from the start: (count, length)."""
    available = len(ids) // length
    count = available if count is None else min(count, available)
    return ids[: count * length].view(count, length)


@torch.no_grad()
def mean_loss(model: torch.nn.Module, batch: torch.Tensor, chunk: int = 32) -> float:
    """Mean cross-entropy (nats per predicted character) over the rows of ``batch``."""
    total, count = 0.0, 0
    for rows in batch.split(chunk):
        logits = model(input_ids=rows).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, VOCAB_SIZE), rows[:, 1:].reshape(-1), reduction="sum")
        total += float(loss)
        count += rows[:, 1:].numel()
    return total / count


def make_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only (not on norms)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.99))


def train(model: torch.nn.Module, train_ids: torch.Tensor, val_ids: torch.Tensor,
          args: argparse.Namespace) -> None:
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = make_optimizer(model, args)
    probe = windows(val_ids, args.block, 32)
    start = time.perf_counter()
    for step in range(args.steps):
        offsets = torch.randint(0, len(train_ids) - args.block - 1, (args.batch,),
                                generator=generator)
        batch = torch.stack([train_ids[o: o + args.block + 1] for o in offsets.tolist()])
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        model.train()
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % args.eval_every == 0 or step == 0:
            model.eval()
            minutes = (time.perf_counter() - start) / 60
            print(f"step {step + 1:6d}  train {loss.item():.3f}  "
                  f"val(probe) {mean_loss(model, probe):.3f}  {minutes:6.1f} min", flush=True)
    print(f"training: {args.steps} steps in {(time.perf_counter() - start) / 60:.1f} min",
          flush=True)


def test_slice(val_ids: torch.Tensor) -> torch.Tensor:
    """The fixed slice tests/test_data.py checks: 16 windows of 128 characters, evenly spaced
    over the validation text (window i starts at i * (len // 16)): (16, 128)."""
    stride = len(val_ids) // 16
    return torch.stack([val_ids[i * stride: i * stride + 128] for i in range(16)])


def report(model: torch.nn.Module, val_ids: torch.Tensor, args: argparse.Namespace) -> None:
    """Print the validation losses data/README.md states and two samples."""
    model.eval()
    print(f"validation loss, all {len(val_ids) // args.block} windows of {args.block}: "
          f"{mean_loss(model, windows(val_ids, args.block)):.4f} nats/char")
    print(f"validation loss, test slice (16 windows of 128): "
          f"{mean_loss(model, test_slice(val_ids)):.4f} nats/char")
    prompt = encode("ROMEO:\n")[None]
    greedy = model.generate(prompt, max_new_tokens=150, do_sample=False)
    print("greedy:\n" + decode(greedy[0]))
    torch.manual_seed(args.seed)
    sample = model.generate(prompt, max_new_tokens=200, do_sample=True, temperature=0.8,
                            top_k=None, top_p=None)
    print("sampled (temperature 0.8, seed 0):\n" + decode(sample[0]))


def _median_ms(run: Callable[[], object], repeats: int = 31) -> tuple[float, float]:
    """Median wall-clock and CPU milliseconds of ``run()`` after 5 warm-up calls."""
    for _ in range(5):
        run()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return 1000 * statistics.median(wall), 1000 * statistics.median(cpu)


def bench(folder: Path) -> None:
    """Time one training step (batch 16 x 64) fully and with PEFT's LoRA, and a forward pass."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    x = torch.randint(0, VOCAB_SIZE, (16, 64), generator=torch.Generator().manual_seed(0))
    variants = {"full fine-tuning": None, "LoRA r=8 on q_proj, v_proj": ["q_proj", "v_proj"],
                "LoRA r=8 on all-linear": "all-linear"}
    for label, targets in variants.items():
        model = LlamaForCausalLM.from_pretrained(folder, local_files_only=True)
        if targets is not None:
            model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16,
                                                     target_modules=targets))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])

        def step(model: torch.nn.Module = model, optimizer: torch.optim.Optimizer = optimizer):
            loss = model(input_ids=x, labels=x).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        wall, cpu = _median_ms(step)
        print(f"training step 16 x 64, {label}: {wall:.1f} ms wall, {cpu:.1f} ms CPU")
    model = LlamaForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    x = torch.randint(0, VOCAB_SIZE, (16, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        wall, cpu = _median_ms(lambda: model(input_ids=x))
    print(f"forward 16 x 128 (no grad): {wall:.1f} ms wall, {cpu:.1f} ms CPU")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    warnings.filterwarnings("ignore", module="transformers")
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    val_ids = encode(load_text("tinyshakespeare", "validation"))
    if args.bench:
        bench(args.out)
        return
    if args.eval_only:
        report(LlamaForCausalLM.from_pretrained(args.out, local_files_only=True), val_ids, args)
        return

    train_ids = encode(load_text("tinyshakespeare", "train"))
    model = LlamaForCausalLM(LlamaConfig(**CONFIG))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters; {len(train_ids):,} training and {len(val_ids):,} "
          f"validation characters; {vars(args)}", flush=True)
    train(model, train_ids, val_ids, args)
    report(model, val_ids, args)

    model.save_pretrained(args.out)
    for file in sorted(args.out.iterdir()):
        file.chmod(0o644)  # save_pretrained may write the weights owner-readable only
        print(f"{file}: {file.stat().st_size:,} bytes, "
              f"sha256 {sha256_of(file.read_bytes())}")


if __name__ == "__main__":
    main()
