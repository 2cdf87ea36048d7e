"""`cptpp search`: hyperparameter search over any `cptpp train` option, on the validation metric.

    cptpp search --dataset ml-100k --recommender sgl --epochs 100 --patience 0 --trials 20 \\
        --space cl_weight=logfloat:0.01:0.5 --space tau=choice:0.2,0.5 --out runs/search-sgl

Each trial is one `cptpp train` run (same data, same loop, same early stopping) with the fixed
options given on the command line (or ``--config``) plus the trial's values; its score is the
best validation ``--metric`` of that run. Test metrics are recorded per trial but never used to
choose. What RecBole's ``run_hyper`` offers, with Optuna underneath:

* ``--space KEY=SPEC`` (repeatable), KEY any `train` option, SPEC ``choice:a,b,...``,
  ``float:lo:hi``, ``logfloat:lo:hi`` or ``int:lo:hi``; ``--sampler tpe|random|grid`` (grid needs
  only ``choice`` spaces and runs every combination).
* Resumable: the study lives in ``OUT/study.db`` (SQLite) and trial ``k``'s run in
  ``OUT/trials/<params hash>/``; the same command plus ``--resume`` continues until ``--trials`` trials
  are complete — a trial killed mid-run is retried with the same values and resumes from its
  checkpoint, and a finished run is never trained twice. One search process per ``OUT``.
* ``OUT/results.md``: every trial ranked by the validation metric; ``OUT/best_config.json``:
  the fixed options plus the best values, for ``cptpp train --config OUT/best_config.json``.

Needs Optuna (``pip install 'cptpp[search]'``).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from cptpp.config import ConfigError, add_dataclass_options, load_json_config

SPEC_KINDS = ("choice", "float", "logfloat", "int")
SAMPLERS = ("tpe", "random", "grid")


@dataclass
class Space:
    """One searched option: ``kind`` in SPEC_KINDS, ``choices`` or ``lo``/``hi``."""

    key: str
    kind: str
    choices: tuple = ()
    lo: float = 0.0
    hi: float = 0.0

    def suggest(self, trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.lo), int(self.hi))
        return trial.suggest_float(self.key, self.lo, self.hi, log=self.kind == "logfloat")


def _number(text: str) -> int | float | str:
    for tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            pass
    return text


def parse_space(text: str, valid_keys) -> Space:
    """``KEY=choice:a,b`` / ``KEY=float:lo:hi`` / ``KEY=logfloat:lo:hi`` / ``KEY=int:lo:hi``."""
    key, sep, spec = text.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not sep or ":" not in spec:
        raise ConfigError(f"--space {text!r}: expected KEY=KIND:..., KIND one of {', '.join(SPEC_KINDS)} "
                          "(e.g. tau=choice:0.2,0.5 or lr=logfloat:1e-4:1e-2)")
    if key not in valid_keys:
        raise ConfigError(f"--space {text!r}: {key!r} is not a train option; valid: {', '.join(sorted(valid_keys))}")
    kind, _, rest = spec.partition(":")
    if kind not in SPEC_KINDS:
        raise ConfigError(f"--space {text!r}: kind {kind!r} is not valid; choose one of: {', '.join(SPEC_KINDS)}")
    if kind == "choice":
        choices = tuple(_number(c) for c in rest.split(",") if c)
        if not choices:
            raise ConfigError(f"--space {text!r}: choice needs at least one value")
        return Space(key, kind, choices=choices)
    try:
        lo, hi = (float(v) for v in rest.split(":"))
    except ValueError:
        raise ConfigError(f"--space {text!r}: {kind} needs LO:HI numbers") from None
    if not lo < hi or (kind == "logfloat" and lo <= 0):
        raise ConfigError(f"--space {text!r}: need LO < HI" + (" and LO > 0 for logfloat" if kind == "logfloat" else ""))
    return Space(key, kind, lo=lo, hi=hi)


def _train_keys() -> set[str]:
    from cptpp.recsys.commands import CONFIG_CLASSES

    return {f.name for cls in CONFIG_CLASSES for f in dataclasses.fields(cls) if f.init}


def add_parser(sub) -> None:
    from cptpp.recsys.commands import CONFIG_CLASSES

    p = sub.add_parser("search", help="hyperparameter search over `train` options on the validation metric",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", action="append", default=[], metavar="KEY=SPEC",
                   help="a searched option: KEY=choice:a,b | float:lo:hi | logfloat:lo:hi | int:lo:hi (repeatable)")
    p.add_argument("--trials", type=int, default=20, help="complete trials wanted in the study (default 20; "
                   "grid: every combination)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="tpe (Optuna's default), random, or grid (every combination of choice spaces; default tpe)")
    p.add_argument("--resume", action="store_true",
                   help="continue the study in --out: finished trials are kept, a killed one is retried and resumes")
    p.add_argument("--search-seed", type=int, default=0, help="the sampler's seed (default 0)")
    p.add_argument("--config", help="JSON file of flat train options held fixed; command-line options override it")
    add_dataclass_options(p, *CONFIG_CLASSES, skip=("resume",))
    p.set_defaults(func=run_search)


def _params_key(params: dict) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def run_search(args) -> int:
    try:
        import optuna
    except ImportError:
        raise ConfigError("cptpp search needs Optuna: pip install 'cptpp[search]'") from None
    from cptpp.recsys.commands import _train_recommender

    keys = _train_keys()
    fixed = load_json_config(args.config) if args.config else {}
    fixed.update({k: v for k, v in vars(args).items() if k in keys and v is not None})
    if not fixed.get("out"):
        raise ConfigError("cptpp search needs --out DIR (the study and every trial's run live there)")
    out = Path(fixed.pop("out"))
    fixed.pop("resume", None)  # the study's resume, not a trial's: each trial resumes its own run
    if (out / "study.db").exists() and not args.resume:
        raise ConfigError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
    if args.resume and not (out / "study.db").exists():
        raise ConfigError(f"nothing to resume in {out} (no study.db); check --out")
    spaces = [parse_space(s, keys - {"out", "resume"}) for s in args.space]
    if not spaces:
        raise ConfigError("give at least one --space KEY=SPEC (e.g. --space lr=logfloat:1e-4:1e-2)")
    if len({s.key for s in spaces}) != len(spaces):
        raise ConfigError("each --space key may appear once")
    if str(fixed.get("eval_every", 1)) == "0":
        raise ConfigError("search scores trials on validation; eval_every=0 has none")
    fixed.setdefault("progress", False)
    metric = str(fixed.get("metric", "recall@20"))
    if args.sampler == "grid" and any(s.kind != "choice" for s in spaces):
        raise ConfigError("--sampler grid needs only choice spaces")
    # Grid = every combination enqueued as a fixed trial (resume-safe: a killed point is enqueued
    # again, a finished one never), so the sampler only fills trials for tpe/random.
    sampler = (optuna.samplers.TPESampler(seed=args.search_seed) if args.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=args.search_seed))
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{out.resolve() / 'study.db'}"
    study = optuna.create_study(study_name="search", storage=storage, direction="maximize", sampler=sampler,
                                load_if_exists=True)
    study.set_user_attr("fixed", fixed)
    study.set_user_attr("metric", metric)
    state = optuna.trial.TrialState
    for t in study.trials:  # killed mid-run last time: fail it, retry its values (the run resumes)
        if t.state == state.RUNNING:
            study.tell(t.number, state=state.FAIL)
            if args.sampler != "grid":
                study.enqueue_trial(t.params)

    def complete() -> list[dict]:
        return [t.params for t in study.trials if t.state == state.COMPLETE]

    if args.sampler == "grid":
        # trials enqueued but never started (a search killed early) keep their values in system_attrs
        pending = [t.system_attrs.get("fixed_params", {}) for t in study.trials if t.state == state.WAITING]
        for values in itertools.product(*(s.choices for s in spaces)):
            point = dict(zip((s.key for s in spaces), values))
            if point not in complete() and point not in pending:
                study.enqueue_trial(point)
        n_trials = sum(t.state == state.WAITING for t in study.trials)
    else:
        n_trials = max(0, args.trials - len(complete()))

    def objective(trial) -> float:
        params = {s.key: s.suggest(trial) for s in spaces}
        run_dir = out / "trials" / _params_key(params)
        trial.set_user_attr("run_dir", str(run_dir))
        if (run_dir / "results.json").exists():  # trained before (a resumed study, or TPE repeating itself)
            results = json.loads((run_dir / "results.json").read_text())
        else:
            values = {**fixed, **params, "out": str(run_dir)}
            if (run_dir / "checkpoint.pt").exists():
                values["resume"] = True
            ns = argparse.Namespace(config=None, **{k: values.get(k) for k in keys})
            print(f"trial {trial.number}: {json.dumps(params)}", file=sys.stderr, flush=True)
            results = _train_recommender(ns, {})[0]
        trial.set_user_attr("best_epoch", results["best_epoch"])
        trial.set_user_attr("epochs_run", results["epochs_run"])
        trial.set_user_attr("test", results["test"])  # recorded, never used to choose
        return float(results["valid"][metric])

    # A trial that raises stops the search (the error is the user's to see); rerunning continues.
    study.optimize(objective, n_trials=n_trials)
    table = results_table(study, metric)
    (out / "results.md").write_text(table + "\n")
    best = study.best_trial
    (out / "best_config.json").write_text(json.dumps({**fixed, **best.params}, indent=2, sort_keys=True) + "\n")
    print(table)
    print(f"best: trial {best.number}, valid {metric} {best.value:.4f} (test {metric} "
          f"{best.user_attrs['test'].get(metric, float('nan')):.4f} at its best-validation epoch); "
          f"`cptpp train --config {out / 'best_config.json'}` reruns it")
    return 0


def results_table(study, metric: str) -> str:
    """Markdown: complete trials ranked by the validation metric, with their values and best epoch."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    done.sort(key=lambda t: -t.value)
    keys = sorted({k for t in done for k in t.params})
    head = ["rank", "trial", f"valid {metric}", "best epoch", "epochs run", *keys]
    lines = [f"Search over {', '.join(keys)}; fixed: {json.dumps(study.user_attrs.get('fixed', {}), sort_keys=True)}",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, t in enumerate(done, 1):
        vals = [f"{t.params[k]:.4g}" if isinstance(t.params[k], float) else str(t.params[k]) for k in keys]
        lines.append("| " + " | ".join([str(rank), str(t.number), f"{t.value:.4f}", str(t.user_attrs["best_epoch"]),
                                         str(t.user_attrs["epochs_run"]), *vals]) + " |")
    return "\n".join(lines)
