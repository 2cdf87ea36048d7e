"""MambaPEFT LoRA training step: factored ``W x + s B (A x)`` vs the merged ``W + s B @ A`` rebuilt each step.

Usage: ``python benchmarks/mamba_lora_speed.py [--hidden 768] [--layers 4] [--batch 4] [--seq 256] [--rank 8]``

A randomly initialized transformers ``MambaForCausalLM`` (nothing is downloaded) with LoRA on
in_proj, x_proj and out_proj; one training step (forward, backward, Adam on the adapters) timed
with the adapters applied factored (the default) and with ``lora_factored = False`` (the reference,
measured in the same run), after checking that both give the same loss. Reports seconds per step,
the ratio, and tokens per second.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import MambaConfig, MambaForCausalLM

from cptpp.peft.mamba import MambaPeftConfig, apply_mamba_peft
from cptpp.train.loop import resolve_device

TARGETS = ["in_proj", "x_proj", "out_proj"]


def set_factored(model: torch.nn.Module, factored: bool) -> None:
    for m in model.modules():
        if hasattr(m, "mamba_peft") and hasattr(m.mamba_peft, "lora_factored"):
            m.mamba_peft.lora_factored = factored


def time_steps(model, ids, repeats: int, device) -> list[float]:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for step in range(repeats + 1):  # the first step warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = model(ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    cfg = MambaConfig(vocab_size=1024, hidden_size=args.hidden, num_hidden_layers=args.layers, state_size=16)
    model = apply_mamba_peft(MambaForCausalLM(cfg), MambaPeftConfig(lora_targets=TARGETS, lora_rank=args.rank))
    model.to(device).train()
    with torch.no_grad():  # non-zero B so both paths do the real work
        for name, p in model.named_parameters():
            if name.endswith(".B"):
                p.normal_(0, 0.01)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(1))
    ids = ids.to(device)
    with torch.no_grad():
        set_factored(model, True)
        fact_loss = float(model(ids, labels=ids).loss)
        set_factored(model, False)
        merged_loss = float(model(ids, labels=ids).loss)
    print(f"loss factored {fact_loss:.6f} | merged {merged_loss:.6f} (difference {abs(fact_loss - merged_loss):.1e})")
    result = {}
    for factored in (False, True):
        set_factored(model, factored)
        result[factored] = statistics.median(time_steps(model, ids, args.repeats, device))
    tokens = args.batch * args.seq
    print(f"Mamba hidden {args.hidden}, {args.layers} layers, LoRA rank {args.rank} on {', '.join(TARGETS)}; "
          f"batch {args.batch} x {args.seq} tokens on {device} ({torch.get_num_threads()} threads), "
          f"median of {args.repeats} training steps:")
    for factored, name in ((False, "merged W + sBA"), (True, "factored sB(Ax)")):
        print(f"  {name:16s}: {result[factored]:.3f} s/step, {tokens / result[factored]:,.0f} tokens/s")
    print(f"  ratio merged / factored: {result[False] / result[True]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
