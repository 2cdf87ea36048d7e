"""Tables over seeds: one pipeline run folder per (row, seed), read back once finished, summarized as mean ± std.

The PEFT table scripts (``benchmarks/{xprompt,topro,peftt}_table.py``) share this: a :class:`SeedTable` runs
each of their runs (:func:`run_or_read`: ``cptpp <command>`` in its own folder, or the results of a finished
one read back, so a rerun with ``--resume`` never redoes a finished run and continues a killed one inside its
stage) and keeps every finished run in the table's results json, rewritten after each one: run folders are
scratch, the committed json is what carries a table from one session to the next. :func:`mean_std` /
:func:`format_mean_std` summarize a row; :func:`best_constant` is the baseline a trained row must beat (the best
single answer on the evaluation labels), and :func:`clearly_above` says whether it does by more than ``k``
standard deviations.
"""
from __future__ import annotations

import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def run_or_read(command: str, cfg, out: str | Path, run: Callable[..., dict], resume: bool = False
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(results, timing)`` of ``run(cfg, out, resume=resume)`` (a ``cptpp <command>`` pipeline); a finished
    run with the same config is read back without loading anything. A started, unfinished one needs
    ``resume=True`` (the pipeline says so). ``timing``: the run's timing.json (``{}`` when absent)."""
    from cptpp.peft.pipelines.stages import finished_results

    out = Path(out)
    results = finished_results(out, run_entry(command, cfg))
    if results is None:
        results = run(cfg, out, resume=resume)
    path = out / "timing.json"
    return results, json.loads(path.read_text()) if path.exists() else {}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    values = list(values)
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def format_mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """``"61.3 ± 2.0"`` (values times ``scale``); a single value is printed alone, none as ``—``."""
    if not values:
        return "—"
    m, s = mean_std([scale * v for v in values])
    return f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f} ± {s:.{digits}f}"


def clearly_above(values: Sequence[float], baseline: float, k: float = 2.0) -> bool:
    """At least two seeds and ``mean - k * std > baseline``."""
    if len(values) < 2:
        return False
    m, s = mean_std(values)
    return m - k * s > baseline


def best_constant(gold: Sequence[int], metric: Callable[[np.ndarray, np.ndarray], float],
                  classes: Sequence[int] | None = None) -> tuple[float, int]:
    """``(score, class)`` of the best constant prediction under ``metric(pred, gold)``: the majority class for
    accuracy, and for any metric an upper bound on what answering one class everywhere can score on these
    labels. ``classes``: the candidates (default: the labels present in ``gold``)."""
    gold = np.asarray(gold)
    cands = sorted(set(gold.tolist())) if classes is None else list(classes)
    scored = [(metric(np.full_like(gold, c), gold), c) for c in cands]
    return max(scored, key=lambda sc: (sc[0], -sc[1]))


def cpu_minutes(seconds: Sequence[float | None]) -> str:
    """Mean CPU minutes per run (``—`` when no run recorded its time)."""
    known = [s for s in seconds if s is not None and not math.isnan(s)]
    return f"{statistics.mean(known) / 60:.1f}" if known else "—"


def protocol_over_seeds(protocol: str) -> str:
    """A run's protocol line with its seed written generically (``(seed 3)`` -> ``(seeded per run)``)."""
    return re.sub(r"\(seed \d+\)", "(seeded per run)", protocol)


def parse_seeds(text: str) -> list[int]:
    """``"0,1"`` -> ``[0, 1]`` (the tables' ``--seeds``)."""
    return [int(s) for s in text.split(",") if s.strip()]


def seeds_note(done: Sequence[int], asked: Sequence[int]) -> str:
    """``" (1/2 seeds)"`` for a row with fewer finished seeds than asked (a table still being built), else ``""``."""
    return f" ({len(done)}/{len(asked)} seeds)" if len(done) < len(asked) else ""


RUNS_KEY = "finished_runs"  # where a table's json keeps its runs


@dataclass
class SeedTable:
    """One table's runs, kept in its results json ``out/<name>.json`` so that it can be built across sessions.

    Beside the table, the json holds ``finished_runs``: per run name (its folder under ``runs``) the run's
    ``{"command", "config", "results", "timing"}`` (``config`` as its config.json spells it, ``timing`` its
    timing.json). :meth:`run_all` takes a recorded run whose command and config equal the ones it would run
    from the json, without a run folder; any other run it runs (or reads back from its finished folder), and it
    calls the script's ``write`` after each, which rewrites the json (:meth:`write`) and the md atomically:
    a table killed at any moment leaves a consistent partial table that can be committed.
    """

    out: Path
    name: str
    runs: Path
    resume: bool = False
    recorded: dict[str, dict] = field(init=False)
    finished: dict[str, dict] = field(init=False, default_factory=dict)  # this table's runs, in run order

    def __post_init__(self):
        self.out, self.runs = Path(self.out), Path(self.runs)
        self.recorded = recorded_runs(self.json_path)

    @property
    def json_path(self) -> Path:
        return self.out / f"{self.name}.json"

    def restore(self, run_name: str, command: str, cfg) -> bool:
        """Take ``run_name`` from the json when it was recorded with this command and config; say on stderr
        why a recorded run with other settings is run again."""
        from cptpp.config import MISSING, config_differences

        old = self.recorded.get(run_name)
        if old is None:
            return False
        diff = config_differences({"command": old.get("command"), "config": old.get("config", {})},
                                  run_entry(command, cfg))
        if diff:
            shown = lambda v: None if v is MISSING else v  # noqa: E731
            print(f"{self.json_path}: {run_name} was recorded with other settings ("
                  + "; ".join(f"{k}: {shown(a)!r} recorded, {shown(b)!r} now" for k, a, b in diff)
                  + "); running it again", file=sys.stderr, flush=True)
            return False
        self.finished[run_name] = old
        return True

    def run_all(self, command: str, configs: dict[str, Any], run: Callable[..., dict], write: Callable[[], dict],
                describe: Callable[[dict, dict], str] | None = None) -> dict:
        """Finish every run of ``configs`` (run name -> config of ``cptpp <command>``, i.e. ``run(cfg, out,
        resume=)``, at least one): first the recorded ones (one ``write()`` once they are in), then the others
        in order, each followed by ``write()``; returns the last ``write()``'s value. ``describe(results,
        timing)``: the log line printed after a run."""
        todo = [n for n, cfg in configs.items() if not self.restore(n, command, cfg)]
        written = {}
        if len(todo) < len(configs):
            print(f"{self.json_path}: {len(configs) - len(todo)} finished run(s) taken from the json: "
                  f"{', '.join(n for n in configs if n not in todo)}", flush=True)
            written = write()
        for n in todo:
            results, timing = run_or_read(command, configs[n], self.runs / n, run, self.resume)
            self.finished[n] = {**run_entry(command, configs[n]), "results": results, "timing": timing}
            written = write()
            line = f" {describe(results, timing)}" if describe else ""
            print(f"{n}:{line} ({timing.get('cpu_seconds', float('nan')):.0f} CPU s); {self.json_path} "
                  "rewritten", flush=True)
        return written

    def seeds_done(self, row: str, seeds: Sequence[int]) -> list[tuple[int, dict]]:
        """``(seed, entry)`` of the finished runs ``run_name(row, seed)``, in the order of ``seeds``."""
        return [(s, self.finished[run_name(row, s)]) for s in seeds if run_name(row, s) in self.finished]

    def cpu_seconds(self) -> float:
        """CPU seconds over this table's finished runs (from their timing.json; runs without one count 0)."""
        return sum(e["timing"].get("cpu_seconds") or 0.0 for e in self.finished.values())

    def write(self, table: dict[str, Any], markdown: str) -> dict[str, Any]:
        """``out/<name>.json`` (``table`` plus every recorded and finished run) and ``out/<name>.md``, each
        replaced atomically; returns what the json holds. A recorded run this table did not ask for stays."""
        from cptpp.io import write_json, write_text

        results = {**table, RUNS_KEY: {**self.recorded, **self.finished}}
        write_json(self.json_path, results)
        write_text(self.out / f"{self.name}.md", markdown)
        return json.loads(json.dumps(results))


def run_name(row: str, seed: int) -> str:
    """A run's name in a table: its folder under ``--runs`` and its key in ``finished_runs``."""
    return f"{row}-seed{seed}"


def run_entry(command: str, cfg) -> dict[str, Any]:
    """What identifies a run: ``{"command", "config"}`` as its folder's config.json spells it."""
    from cptpp.peft.pipelines.stages import config_dict

    return json.loads(json.dumps({"command": command, "config": config_dict(cfg)}))


def recorded_runs(path: str | Path) -> dict[str, dict]:
    """The ``finished_runs`` of a table's results json (``{}`` when there is no file or it has none, e.g. one
    written before tables kept their runs)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg}); restore it "
                         f"(`git checkout -- {path.name}` in its folder) or move it away to start the table afresh"
                         ) from None
    runs = saved.get(RUNS_KEY) if isinstance(saved, dict) else None
    return runs if isinstance(runs, dict) else {}
