"""Hybrid MambaPEFT search (Optuna TPE): which methods to combine and their hyperparameters.

MambaPEFT searches in two stages (methods, then hyperparameters); here one TPE study samples both
jointly from ``suggest_config``. Trials are ranked by validation accuracy only; the test accuracy of
the best trial is reported once, at the end.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from cptpp.io import append_jsonl, write_json
from cptpp.peft.mamba.tuners import MambaPeftConfig

# The single methods the MambaPEFT tables compare: (key, row name, config, learning rate).
SINGLE_METHODS = [
    ("lora_in_proj_x", "LoRA in_proj (x half)", MambaPeftConfig(lora_targets=["in_proj_x"], lora_rank=64), 3e-3),
    ("lora_x_proj", "LoRA x_proj", MambaPeftConfig(lora_targets=["x_proj"], lora_rank=8), 3e-3),
    ("lora_dt_proj", "LoRA dt_proj", MambaPeftConfig(lora_targets=["dt_proj"], lora_rank=8), 3e-3),
    ("lora_out_proj", "LoRA out_proj", MambaPeftConfig(lora_targets=["out_proj"], lora_rank=8), 3e-3),
    ("lora_conv1d", "LoRA conv1d", MambaPeftConfig(lora_targets=["conv1d"], lora_rank=4), 3e-3),
    ("lora_embeddings", "LoRA embeddings", MambaPeftConfig(lora_targets=["embeddings"], lora_rank=8), 3e-3),
    ("additional_scan", "Additional-scan (N'=6)", MambaPeftConfig(scan_states=6), 3e-3),
    ("affix", "Affix-tuning (prefix 4)", MambaPeftConfig(affix_tokens=4), 3e-3),
    ("partial", "Partial (A_log, D, conv1d, dt bias, norms)",
     MambaPeftConfig(partial_targets=["A_log", "D", "conv1d", "dt_bias", "norm"]), 3e-3),
]

SEARCH_LORA_TARGETS = ("in_proj_x", "x_proj", "dt_proj", "out_proj", "conv1d")
SEARCH_PARTIAL_TARGETS = ("A_log", "D", "conv1d", "dt_bias", "norm")


def suggest_config(trial) -> tuple[MambaPeftConfig, float] | None:
    """Sample (config, learning rate) from ``trial``; None when the sample enables no method."""
    lora = [t for t in SEARCH_LORA_TARGETS if trial.suggest_categorical(f"lora_{t}", [False, True])]
    partial = [t for t in SEARCH_PARTIAL_TARGETS if trial.suggest_categorical(f"partial_{t}", [False, True])]
    rank = trial.suggest_categorical("lora_rank", [4, 8, 16, 32, 64]) if lora else 8
    scan = trial.suggest_categorical("scan_states", [0, 2, 4, 6, 8])
    affix = trial.suggest_categorical("affix_tokens", [0, 1, 2, 4])
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    if not (lora or partial or scan or affix):
        return None
    return MambaPeftConfig(lora_targets=lora, lora_rank=rank, scan_states=scan, affix_tokens=affix,
                           partial_targets=partial), lr


def hybrid_search(run: Callable[[MambaPeftConfig, float], dict[str, Any]], n_trials: int, out: str | Path,
                  *, seed: int = 0, metric: str = "accuracy", resume: bool = False) -> dict[str, Any]:
    """Run ``n_trials`` of ``run(config, lr) -> fit results``; write ``out/trials.jsonl`` and ``out/best.json``.

    The Optuna study lives in ``out/study.db`` with every finished trial's record, so ``resume=True``
    continues a killed search: finished trials are kept and only the rest of the budget runs (a trial
    that was running when the search was killed is left out and run again as a new trial).
    Returns the best record: its config, lr, validation metrics, test metrics and parameter counts.
    """
    import optuna

    from cptpp.config import ConfigError

    out = Path(out)
    db = out / "study.db"
    if db.exists() and not resume:
        raise ConfigError(f"{out} already holds a search ({db}); pass --resume to continue it or choose another --out")
    if resume and not db.exists():
        raise ConfigError(f"--resume: no search to continue in {out} (no {db.name}); drop --resume to start one")
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        (out / "trials.jsonl").write_text("")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{db.resolve()}"
    # a resumed search must not replay the first session's random start-up samples
    n_before = len(optuna.load_study(study_name="mamba-search", storage=storage).trials) if resume else 0
    study = optuna.create_study(study_name="mamba-search", storage=storage, load_if_exists=resume,
                                direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed + n_before))
    finished = _finished(optuna, study.trials)
    results: dict[int, dict[str, Any]] = {t.number: t.user_attrs["record"] for t in finished
                                          if "record" in t.user_attrs}

    def objective(trial) -> float:
        sampled = suggest_config(trial)
        if sampled is None:
            raise optuna.TrialPruned("no method enabled")
        cfg, lr = sampled
        res = run(cfg, lr)
        record = {"trial": trial.number, "config": asdict(cfg), "methods": cfg.methods(), "lr": lr,
                  "valid": res["valid"], "test": res["test"], "trainable_params": res["trainable_params"],
                  "trainable_percent": res["trainable_percent"]}
        results[trial.number] = record
        trial.set_user_attr("record", record)
        # The per-trial log holds validation numbers only: selection never sees test.
        append_jsonl(out / "trials.jsonl", {k: v for k, v in record.items() if k != "test"})
        return res["valid"][metric]

    study.optimize(objective, n_trials=max(0, n_trials - len(finished)))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError(f"none of the {n_trials} trials completed; raise the trial budget")
    best = results[study.best_trial.number] | {"n_trials": n_trials, "completed": len(done)}
    write_json(out / "best.json", best)
    return best


def _finished(optuna, trials) -> list:
    """Trials that count against the budget: completed or pruned (not ones killed while running)."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t for t in trials if t.state in states]
