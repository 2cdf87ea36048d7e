"""Prompt-attention vs self-attention vs linear models on the contextual mixture (Oymak et al., ICML 2023).

    .venv/bin/python benchmarks/prompt_attention_study.py            # ~1-4 minutes on 2 CPU cores

Three sweeps, each model trained by full-batch Adam on the logistic loss, test accuracy on 2000 fresh
examples, mean over seeds:
  (a) training-set size n at fixed noise (sample efficiency);
  (b) irrelevant-token noise strength rho at fixed n;
  (c) fraction zeta of context-relevant tokens at fixed n and rho.
A setting shared by two sweeps is trained once. For the softmax prompt-attention models it also reports
the attention mass the prompt puts on the context-relevant tokens (the paper's "the prompt attends to
the relevant tokens"), next to the mass uniform attention would give (k/T relevant tokens).

Each seed is one `cptpp prompt-attention` run (``cptpp.peft.pipelines.prompt_attention``) in ``--runs`` (default
``runs/prompt_attention-<time>/seed<seed>``); this script averages them. ``--runs DIR --resume`` continues a
killed study. Needs ``cptpp`` importable (``pip install -e .``).

Writes benchmarks/results/prompt_attention.{json,csv,md} and prompt_attention.png.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import torch

from cptpp.io import write_json
from cptpp.peft.prompt_attention import MODELS
from cptpp.peft.pipelines.prompt_attention import PromptAttentionRunConfig, run_prompt_attention

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def mean_over_seeds(per_seed: list[list[dict]]) -> list[dict]:
    """Rows of one sweep from each seed's run (same order in every run) -> one row per setting and model:
    mean, min and max test accuracy, mean attention mass."""
    rows = []
    for same in zip(*per_seed):
        accs = [r["test_accuracy"] for r in same]
        masses = [r["relevant_attention"] for r in same]
        rows.append({"model": same[0]["model"], "n_train": same[0]["n_train"],
                     "noise_strength": same[0]["noise_strength"], "relevant_fraction": same[0]["relevant_fraction"],
                     "test_accuracy": sum(accs) / len(accs), "min_accuracy": min(accs), "max_accuracy": max(accs),
                     "relevant_attention": None if masses[0] is None else sum(masses) / len(masses),
                     "uniform_attention": same[0]["uniform_attention"]})
    return rows


# (sweep name, row key, axis label, table title template)
SWEEPS = (("n_train", "n_train", "training examples n", "(a) noise rho={rho:g}, zeta={zeta:g}, by training size n"),
          ("noise", "noise_strength", "irrelevant-token noise rho", "(b) n={n}, zeta={zeta:g}, by noise strength rho"),
          ("relevant_fraction", "relevant_fraction", "fraction of relevant tokens zeta",
           "(c) n={n}, rho={rho:g}, by fraction of context-relevant tokens zeta"))


def plot(sweeps: dict[str, list[dict]], path: Path) -> None:
    """One accuracy panel per sweep, plus the prompt's attention mass on relevant tokens vs zeta."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for ax, (sweep, key, label, _) in zip(axes, SWEEPS):
        rows = sweeps[sweep]
        for name in MODELS:
            pts = sorted((r[key], r["test_accuracy"]) for r in rows if r["model"] == name)
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        if key == "n_train":
            ax.set_xscale("log", base=2)
    axes[0].legend(fontsize=7)
    ax = axes[3]
    rows = sweeps["relevant_fraction"]
    for name in MODELS:
        pts = sorted((r["relevant_fraction"], r["relevant_attention"]) for r in rows
                     if r["model"] == name and r["relevant_attention"] is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    base = sorted({(r["relevant_fraction"], r["uniform_attention"]) for r in rows})
    ax.plot([b[0] for b in base], [b[1] for b in base], "k--", label="uniform attention (k/T)")
    ax.set_xlabel("fraction of relevant tokens zeta")
    ax.set_ylabel("attention mass on relevant tokens")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
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
    p.add_argument("--relevant-fraction", type=float, default=0.1, help="zeta for sweeps (a) and (b)")
    p.add_argument("--fractions", type=floats, default=[0.05, 0.1, 0.2, 0.4], help="zeta values of sweep (c)")
    p.add_argument("--seq-len", type=int, default=20)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--seeds", type=ints, default=[0, 1])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--runs", default=None, help="folder for the `cptpp prompt-attention` run folders (one per "
                   "seed; default: runs/prompt_attention-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the runs in --runs (a killed study)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs or time.strftime("runs/prompt_attention-%Y%m%d-%H%M%S"))
    t0 = time.perf_counter()
    per_seed = []
    for seed in args.seeds:
        cfg = PromptAttentionRunConfig(seed=seed, n_train=args.n_train, noise=args.noise, fractions=args.fractions,
                                       fixed_n=args.fixed_n, fixed_noise=args.fixed_noise,
                                       relevant_fraction=args.relevant_fraction, seq_len=args.seq_len, dim=args.dim,
                                       steps=args.steps, lr=args.lr)
        per_seed.append(run_prompt_attention(cfg, runs / f"seed{seed}", resume=args.resume))
    sweeps = {k: mean_over_seeds([r["sweeps"][k] for r in per_seed]) for k in per_seed[0]["sweeps"]}
    trained = per_seed[0]["trained_settings"]
    base = per_seed[0]["data"]
    seconds = time.perf_counter() - t0
    recorded = {k: v for k, v in vars(args).items() if k not in ("runs", "resume", "out")}  # no machine paths
    write_json(out / "prompt_attention.json", {"args": recorded, "data": base, "seconds": seconds,
                                               "trained_settings": trained,
                                               **{f"sweep_{k}": v for k, v in sweeps.items()}})
    with open(out / "prompt_attention.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["sweep", *sweeps["n_train"][0]])
        w.writeheader()
        w.writerows([{"sweep": k, **r} for k, rows in sweeps.items() for r in rows])
    header = (f"Contextual mixture: T={args.seq_len}, d={args.dim}, kappa {base['context_overlap']}, "
              f"sigma {base['sigma']}; {args.steps} full-batch Adam steps (lr {args.lr}) for every sweep; "
              f"test accuracy (%) on 2000 fresh "
              f"examples, mean over seeds {args.seeds}. {trained} distinct settings x {len(MODELS)} models, "
              f"{seconds:.0f}s on CPU (1 thread).")
    lines = [header, ""]
    fmt = {"n": args.fixed_n, "rho": args.fixed_noise, "zeta": args.relevant_fraction}
    for sweep, key, _, title in SWEEPS:
        rows = sweeps[sweep]
        cols = sorted({r[key] for r in rows})
        lines += [title.format(**fmt), "", f"| model | {' | '.join(f'{key}={c:g}' for c in cols)} |",
                  "|---|" + "---|" * len(cols)]
        for name in MODELS:
            cells = [next(r for r in rows if r["model"] == name and r[key] == c) for c in cols]
            text = [f"{100 * c['test_accuracy']:.1f}" + (f" (attn {c['relevant_attention']:.2f})"
                                                         if c["relevant_attention"] is not None else "") for c in cells]
            lines.append(f"| {name} | {' | '.join(text)} |")
        uniform = [next(r["uniform_attention"] for r in rows if r[key] == c) for c in cols]
        lines += [f"| (uniform attention mass) | {' | '.join(f'{u:.2f}' for u in uniform)} |", ""]
    lines.append("attn = mean softmax attention mass the prompt puts on the context-relevant tokens; the last row "
                 "of each table is what uniform attention would give (k/T, with k = max(1, round(zeta T)) relevant "
                 "tokens).")
    (out / "prompt_attention.md").write_text("\n".join(lines) + "\n")
    plot(sweeps, out / "prompt_attention.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
