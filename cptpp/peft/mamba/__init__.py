"""MambaPEFT: LoRA targets, Additional-scan, Affix-tuning, partial tuning and their hybrids for Mamba.

    from cptpp.peft.mamba import MambaPeftConfig, apply_mamba_peft
    apply_mamba_peft(model, MambaPeftConfig(lora_targets=["dt_proj"], lora_rank=4))

Attributes are imported lazily (as in ``cptpp.train``), so that the CLI can read
``cptpp.peft.mamba.pretrain_config`` without importing torch and transformers.
"""
from __future__ import annotations

import importlib

_TUNERS = ("ADDED_NAMES", "LORA_TARGETS", "PARTIAL_TARGETS", "MambaPeftConfig", "apply_mamba_peft",
           "load_mamba_peft", "merge_mamba_peft", "save_mamba_peft", "use_cptpp_scan")
_EXPORTS = {name: "cptpp.peft.mamba.tuners" for name in _TUNERS} | {
    "selective_scan": "cptpp.peft.mamba.scan", "selective_scan_chunked": "cptpp.peft.mamba.scan",
    "PretrainConfig": "cptpp.peft.mamba.pretrain_config", "pretrain": "cptpp.peft.mamba.pretrain",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cptpp.peft.mamba' has no attribute {name!r}")
