"""Prompt-attention vs self-attention vs linear models on the contextual mixture (Oymak et al., ICML 2023).

    .venv/bin/python benchmarks/prompt_attention_study.py            # ~2-4 minutes on 2 CPU cores

Two sweeps, each model trained by full-batch Adam on the logistic loss, test accuracy on 2000 fresh
examples, mean over seeds:
  (a) training-set size n at fixed noise (sample efficiency);
  (b) irrelevant-token noise strength rho at fixed n.
For the softmax prompt-attention models it also reports the attention mass the prompt puts on the
context-relevant tokens (the paper's "the prompt attends to the relevant tokens").

Writes benchmarks/results/prompt_attention.{json,csv,md} and prompt_attention.png.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cptpp.io import write_json  # noqa: E402
from cptpp.peft.prompt_attention import (MODELS, ContextualMixtureConfig, PromptAttention, accuracy,  # noqa: E402
                                         sample_mixture, train_model)

RESULTS = ROOT / "benchmarks" / "results"


def relevant_attention(model, data) -> float | None:
    """Mean softmax attention mass on relevant tokens (softmax prompt-attention only)."""
    if type(model) is not PromptAttention:
        return None
    with torch.no_grad():
        return float((model.attention(data.X) * data.relevant).sum(1).mean())


def run_setting(cfg: ContextualMixtureConfig, n_train: int, seeds: list[int], steps: int, lr: float) -> list[dict]:
    rows = []
    for name, make in MODELS.items():
        accs, masses = [], []
        for seed in seeds:
            train = sample_mixture(cfg, n_train, seed=1000 + seed)
            test = sample_mixture(cfg, 2000, seed=5000 + seed)
            torch.manual_seed(seed)
            model = make(cfg.dim, seed)
            train_model(model, train, steps=steps, lr=lr)
            accs.append(accuracy(model, test))
            masses.append(relevant_attention(model, test))
        rows.append({"model": name, "n_train": n_train, "noise_strength": cfg.noise_strength,
                     "relevant_fraction": cfg.relevant_fraction, "test_accuracy": sum(accs) / len(accs),
                     "min_accuracy": min(accs), "max_accuracy": max(accs),
                     "relevant_attention": None if masses[0] is None else sum(masses) / len(masses)})
    return rows


def plot(rows_n: list[dict], rows_rho: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for ax, rows, key, label in ((axes[0], rows_n, "n_train", "training examples n"),
                                 (axes[1], rows_rho, "noise_strength", "irrelevant-token noise rho")):
        for name in MODELS:
            pts = [(r[key], r["test_accuracy"]) for r in rows if r["model"] == name]
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        if key == "n_train":
            ax.set_xscale("log", base=2)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> None:
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    floats = lambda s: [float(x) for x in s.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-train", type=ints, default=[16, 32, 64, 256])
    p.add_argument("--noise", type=floats, default=[0.0, 1.0, 2.0, 4.0])
    p.add_argument("--fixed-n", type=int, default=64)
    p.add_argument("--fixed-noise", type=float, default=3.0)
    p.add_argument("--relevant-fraction", type=float, default=0.1)
    p.add_argument("--seq-len", type=int, default=20)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--seeds", type=ints, default=[0, 1])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = ContextualMixtureConfig(seq_len=args.seq_len, dim=args.dim, relevant_fraction=args.relevant_fraction,
                                   noise_strength=args.fixed_noise)
    t0 = time.perf_counter()
    rows_n = [r for n in args.n_train for r in run_setting(base, n, args.seeds, args.steps, args.lr)]
    rows_rho = [r for rho in args.noise
                for r in run_setting(replace(base, noise_strength=rho), args.fixed_n, args.seeds, args.steps, args.lr)]
    seconds = time.perf_counter() - t0
    write_json(out / "prompt_attention.json", {"args": vars(args), "data": asdict(base), "seconds": seconds,
                                               "sweep_n": rows_n, "sweep_noise": rows_rho})
    with open(out / "prompt_attention.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["sweep", *rows_n[0]])
        w.writeheader()
        w.writerows([{"sweep": "n_train", **r} for r in rows_n] + [{"sweep": "noise", **r} for r in rows_rho])
    lines = [f"Contextual mixture: T={args.seq_len}, d={args.dim}, relevant fraction {args.relevant_fraction}, "
             f"kappa {base.context_overlap}, sigma {base.sigma}; {args.steps} full-batch Adam steps (lr {args.lr}); "
             f"test accuracy (%) on 2000 fresh examples, mean over seeds {args.seeds}. {seconds:.0f}s on CPU.", ""]
    for title, rows, key in ((f"(a) noise rho={args.fixed_noise}, by training size n", rows_n, "n_train"),
                             (f"(b) n={args.fixed_n}, by noise strength rho", rows_rho, "noise_strength")):
        cols = sorted({r[key] for r in rows})
        lines += [title, "", f"| model | {' | '.join(f'{key}={c:g}' for c in cols)} |",
                  "|---|" + "---|" * len(cols)]
        for name in MODELS:
            cells = [next(r for r in rows if r["model"] == name and r[key] == c) for c in cols]
            text = [f"{100 * c['test_accuracy']:.1f}" + (f" (attn {c['relevant_attention']:.2f})"
                                                         if c["relevant_attention"] is not None else "") for c in cells]
            lines.append(f"| {name} | {' | '.join(text)} |")
        lines.append("")
    lines.append("attn = mean softmax attention mass the prompt puts on the context-relevant tokens "
                 f"(uniform attention would give {args.relevant_fraction:.2f}).")
    (out / "prompt_attention.md").write_text("\n".join(lines) + "\n")
    plot(rows_n, rows_rho, out / "prompt_attention.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
