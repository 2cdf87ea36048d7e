"""`cptpp prompt-attention`: the prompt-attention study for one seed (see :mod:`cptpp.peft.prompt_attention`).

Three sweeps over the contextual mixture, every model of :data:`~cptpp.peft.prompt_attention.MODELS` trained
by ``train_model`` (full-batch Adam on the logistic loss) and tested on 2000 fresh examples:
(a) training-set size n at noise ``fixed_noise``; (b) noise strength rho at n = ``fixed_n``; (c) fraction
zeta of context-relevant tokens at n = ``fixed_n``, rho = ``fixed_noise``. A setting shared by two sweeps
is trained once; each setting is a stage (``stages/rho<rho>_zeta<zeta>_n<n>/result.json``), so a resumed
run skips the settings already done. For softmax prompt-attention it also reports the attention mass the
prompt puts on the relevant tokens. Averages over seeds are the benchmark's job (one run per seed).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cptpp.config import check_range
from cptpp.peft.pipelines.stages import StageRun, config_dict

TEST_SIZE = 2000
# (sweep name, the row key it varies)
SWEEPS = (("n_train", "n_train"), ("noise", "noise_strength"), ("relevant_fraction", "relevant_fraction"))


@dataclass
class PromptAttentionRunConfig:
    seed: int = field(default=0, metadata={"help": "seed of the data (train 1000+seed, test 5000+seed) and models"})
    n_train: list[int] = field(default_factory=lambda: [16, 32, 64, 256],
                               metadata={"help": "sweep (a): training-set sizes, comma-separated"})
    noise: list[float] = field(default_factory=lambda: [0.0, 1.0, 2.0, 4.0],
                               metadata={"help": "sweep (b): irrelevant-token noise strengths rho"})
    fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4],
                                   metadata={"help": "sweep (c): fractions zeta of context-relevant tokens"})
    fixed_n: int = field(default=64, metadata={"help": "training-set size of sweeps (b) and (c)"})
    fixed_noise: float = field(default=3.0, metadata={"help": "rho of sweeps (a) and (c)"})
    relevant_fraction: float = field(default=0.1, metadata={"help": "zeta of sweeps (a) and (b)"})
    seq_len: int = field(default=20, metadata={"help": "tokens per example T"})
    dim: int = field(default=16, metadata={"help": "token dimension d"})
    steps: int = field(default=200, metadata={"help": "full-batch Adam steps per model"})
    lr: float = field(default=0.05, metadata={"help": "Adam learning rate"})

    def __post_init__(self):
        for n in [*self.n_train, self.fixed_n]:
            check_range("n_train", n, 1)
        for rho in [*self.noise, self.fixed_noise]:
            check_range("noise", rho, 0)
        for z in [*self.fractions, self.relevant_fraction]:
            check_range("fractions", z, 0, 1, lo_open=True)
        check_range("seq_len", self.seq_len, 1)
        check_range("dim", self.dim, 6)  # q_star, v_star and the 4 irrelevant contexts are orthonormal
        check_range("steps", self.steps, 1)
        check_range("lr", self.lr, 0, lo_open=True)

    def settings(self) -> dict[str, list[tuple[float, float, int]]]:
        """Per sweep, its ``(rho, zeta, n)`` settings in order."""
        return {
            "n_train": [(self.fixed_noise, self.relevant_fraction, n) for n in self.n_train],
            "noise": [(rho, self.relevant_fraction, self.fixed_n) for rho in self.noise],
            "relevant_fraction": [(self.fixed_noise, z, self.fixed_n) for z in self.fractions],
        }


def train_setting(data_cfg, n_train: int, seed: int, steps: int, lr: float) -> list[dict[str, Any]]:
    """Every model trained on one setting with one seed: test accuracy and (softmax prompt-attention) the
    mean attention mass on relevant tokens."""
    import torch

    from cptpp.peft.prompt_attention import MODELS, PromptAttention, accuracy, sample_mixture, train_model

    rows = []
    for name, make in MODELS.items():
        train = sample_mixture(data_cfg, n_train, seed=1000 + seed)
        test = sample_mixture(data_cfg, TEST_SIZE, seed=5000 + seed)
        torch.manual_seed(seed)
        model = make(data_cfg.dim, seed)
        train_model(model, train, steps=steps, lr=lr)
        mass = None
        if type(model) is PromptAttention:
            with torch.no_grad():
                mass = float((model.attention(test.X) * test.relevant).sum(1).mean())
        rows.append({"model": name, "n_train": n_train, "noise_strength": data_cfg.noise_strength,
                     "relevant_fraction": data_cfg.relevant_fraction, "test_accuracy": accuracy(model, test),
                     "relevant_attention": mass, "uniform_attention": data_cfg.num_relevant / data_cfg.seq_len})
    return rows


def run_prompt_attention(cfg: PromptAttentionRunConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) the three sweeps for ``cfg.seed``; returns and writes results.json."""
    from cptpp.peft.prompt_attention import ContextualMixtureConfig

    run = StageRun(out, {"command": "prompt-attention", "config": config_dict(cfg)}, resume)
    base = ContextualMixtureConfig(seq_len=cfg.seq_len, dim=cfg.dim, relevant_fraction=cfg.relevant_fraction,
                                   noise_strength=cfg.fixed_noise)
    done: dict[tuple, list[dict]] = {}
    sweeps = {}
    for sweep, settings in cfg.settings().items():
        sweeps[sweep] = []
        for rho, zeta, n in settings:
            if (rho, zeta, n) not in done:
                data_cfg = replace(base, noise_strength=rho, relevant_fraction=zeta)
                done[rho, zeta, n] = run.cached(f"rho{rho:g}_zeta{zeta:g}_n{n}", lambda: train_setting(
                    data_cfg, n, cfg.seed, cfg.steps, cfg.lr))
            sweeps[sweep] += done[rho, zeta, n]
    return run.finish({"seed": cfg.seed, "data": config_dict(base), "trained_settings": len(done),
                       "sweeps": sweeps})
