"""`cptpp data list` and `cptpp data info NAME|PATH`: what datasets exist and what they hold."""
from __future__ import annotations

import argparse

from cptpp.recsys.config import RATING_THRESHOLD_HELP


def _rating_threshold(text: str):
    """A number, or 'all' (keep every rating)."""
    if text == "all":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'all'") from None


def add_commands(subparsers) -> None:
    """Add ``data list`` and ``data info`` to the top-level ``subparsers``."""
    from cptpp.config import add_dataclass_options
    from cptpp.recsys.config import DataConfig

    data = subparsers.add_parser("data", help="recommendation datasets: list, info",
                                 description="The recommendation datasets: `data list` shows the registered ones "
                                             "and where each is read from; `data info` loads one and prints its "
                                             "counts and split. " + DATA_LOCATION)
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = sub.add_parser("list", help="registered datasets and where each would be read from",
                       description="List the registered datasets: published counts, split, and where each would "
                                   "be read from (mirror, cache or download). " + DATA_LOCATION)
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="load a dataset (name or file/folder) and print its counts",
                       description="Load a dataset as `cptpp train --dataset NAME|PATH` would (same split options, "
                                   "same defaults) and print users, items, interactions, density and split sizes.")
    p.add_argument("name", metavar="NAME|PATH", help="a registered dataset name, a ratings file or a folder")
    add_dataclass_options(p, DataConfig, skip=("dataset", "device"))
    p.add_argument("--split-ratios", type=_ratios, default=(0.8, 0.1, 0.1), metavar="TRAIN,VALID,TEST",
                   help="per-user random split of datasets without a published split (default: 0.8,0.1,0.1)")
    p.set_defaults(func=cmd_info)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


DATA_LOCATION = ("Data is looked for in $CPTPP_DATA_MIRROR/recsys/NAME/ (a local copy; set CPTPP_DATA_MIRROR to "
                 "the folder that holds recsys/), then in $CPTPP_DATA_HOME/recsys/NAME/ (default "
                 "~/.cache/cptpp), and is downloaded from the official URL into the latter otherwise.")


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers TRAIN,VALID,TEST such as 0.8,0.1,0.1, got {text!r}")
    return vals


def format_table(rows: list[list[str]], header: list[str]) -> str:
    """Left-aligned columns; numbers right-aligned. ``rows`` of equal length to ``header``."""
    cells = [header] + rows
    widths = [max(len(r[c]) for r in cells) for c in range(len(header))]

    def fmt(row):
        return "  ".join(v.rjust(w) if v.replace(",", "").replace(".", "").isdigit() else v.ljust(w)
                         for v, w in zip(row, widths)).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def list_table() -> str:
    from cptpp.recsys.datasets import dataset_location, get_spec, list_datasets

    rows = []
    for name in list_datasets():
        spec = get_spec(name)
        users, items, inter = (f"{v:,}" for v in spec.expected) if spec.expected else ("?", "?", "?")
        split = "published" if spec.published_split else "random"
        rows.append([name, users, items, inter, split, dataset_location(name), spec.description])
    return format_table(rows, ["name", "users", "items", "interactions", "split", "from", "description"])


def info_table(info: dict) -> str:
    keys = ["users", "items", "interactions", "train", "valid", "test"]
    lines = [f"{info['name']}  ({info['source']}: {info['location']}, format {info['format']})"]
    lines += [f"  {k:<13}{info[k]:>12,}" for k in keys]
    lines.append(f"  {'density':<13}{info['density']:>12.6f}")
    lines += ["  notes:"] + [f"    - {n}" for n in info["notes"]]
    return "\n".join(lines)


def cmd_list(args) -> int:
    print(list_table())
    print("\n(counts are the raw published files; 'from' = mirror ($CPTPP_DATA_MIRROR), cache or download)")
    return 0


def cmd_info(args) -> int:
    from cptpp.config import build_configs
    from cptpp.recsys.config import DataConfig
    from cptpp.recsys.datasets import dataset_info

    keys = ("data_seed", "valid_ratio", "rating_threshold", "kcore")
    (cfg,) = build_configs((DataConfig,), {}, {k: getattr(args, k) for k in keys}, source="command line")
    info = dataset_info(args.name, seed=cfg.data_seed, valid_ratio=cfg.valid_ratio,
                        split_ratios=args.split_ratios, rating_threshold=cfg.rating_threshold, kcore=cfg.kcore)
    print(info_table(info))
    return 0
