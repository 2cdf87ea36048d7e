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
                  *, seed: int = 0, metric: str = "accuracy") -> dict[str, Any]:
    """Run ``n_trials`` of ``run(config, lr) -> fit results``; write ``out/trials.jsonl`` and ``out/best.json``.

    Returns the best record: its config, lr, validation metrics, test metrics and parameter counts.
    """
    import optuna

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials.jsonl").write_text("")
    results: dict[int, dict[str, Any]] = {}

    def objective(trial) -> float:
        sampled = suggest_config(trial)
        if sampled is None:
            raise optuna.TrialPruned("no method enabled")
        cfg, lr = sampled
        res = run(cfg, lr)
        results[trial.number] = {"trial": trial.number, "config": asdict(cfg), "methods": cfg.methods(), "lr": lr,
                                 "valid": res["valid"], "test": res["test"],
                                 "trainable_params": res["trainable_params"],
                                 "trainable_percent": res["trainable_percent"]}
        # The per-trial log holds validation numbers only: selection never sees test.
        append_jsonl(out / "trials.jsonl", {k: v for k, v in results[trial.number].items() if k != "test"})
        return res["valid"][metric]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError(f"none of the {n_trials} trials completed; raise the trial budget")
    best = results[study.best_trial.number] | {"n_trials": n_trials, "completed": len(done)}
    write_json(out / "best.json", best)
    return best
