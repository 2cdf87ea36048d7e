"""Tables over seeds: one pipeline run folder per (row, seed), read back once finished, summarized as mean ± std.

The PEFT table scripts (``benchmarks/{xprompt,topro,peftt}_table.py``) share this: :func:`run_or_read` runs
``cptpp <command>`` in its own folder, or reads the results of a finished one (so a rerun with ``--resume``
never redoes a finished run, and continues a killed one inside its stage), and returns its ``timing.json``
beside; :func:`mean_std` / :func:`format_mean_std` summarize a row; :func:`best_constant` is the baseline a
trained row must beat (the best single answer on the evaluation labels), and :func:`clearly_above` says
whether it does by more than ``k`` standard deviations.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def run_or_read(command: str, cfg, out: str | Path, run: Callable[..., dict], resume: bool = False
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(results, timing)`` of ``run(cfg, out, resume=resume)`` (a ``cptpp <command>`` pipeline); a finished
    run with the same config is read back without loading anything. A started, unfinished one needs
    ``resume=True`` (the pipeline says so). ``timing``: the run's timing.json (``{}`` when absent)."""
    from cptpp.peft.pipelines.stages import config_dict, finished_results

    out = Path(out)
    results = finished_results(out, {"command": command, "config": config_dict(cfg)})
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


def write_table(out: str | Path, name: str, results: dict[str, Any], markdown: str) -> None:
    """``out/<name>.json`` (the results) and ``out/<name>.md`` (the table), and print the table."""
    from cptpp.io import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", results)
    (out / f"{name}.md").write_text(markdown)
    print(markdown)


def protocol_over_seeds(protocol: str) -> str:
    """A run's protocol line with its seed written generically (``(seed 3)`` -> ``(seeded per run)``)."""
    return re.sub(r"\(seed \d+\)", "(seeded per run)", protocol)
