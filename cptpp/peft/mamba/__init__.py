"""MambaPEFT: LoRA targets, Additional-scan, Affix-tuning, partial tuning and their hybrids for Mamba.

    from cptpp.peft.mamba import MambaPeftConfig, apply_mamba_peft
    apply_mamba_peft(model, MambaPeftConfig(lora_targets=["dt_proj"], lora_rank=4))
"""
from cptpp.peft.mamba.adapters import (
    LORA_TARGETS,
    PARTIAL_TARGETS,
    MambaPeftConfig,
    ParamCount,
    apply_mamba_peft,
    count_parameters,
    load_mamba_peft,
    mamba_peft_state_dict,
    merge_mamba_peft,
    save_mamba_peft,
    use_cptpp_scan,
)
from cptpp.peft.mamba.scan import selective_scan

__all__ = [
    "LORA_TARGETS", "PARTIAL_TARGETS", "MambaPeftConfig", "ParamCount", "apply_mamba_peft", "count_parameters",
    "load_mamba_peft", "mamba_peft_state_dict", "merge_mamba_peft", "save_mamba_peft", "selective_scan",
    "use_cptpp_scan",
]
