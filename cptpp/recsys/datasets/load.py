"""``load_dataset``: a registered name or a user's file/folder -> :class:`Interactions`.

Pipeline (same order for every source):

1. read the raw files (mirror, cache or download for named sets; see :mod:`cptpp.download`);
2. explicit ratings -> implicit: keep ``rating >= rating_threshold``. Default (None): 4 for every
   file with a rating column (the MovieLens sets, as CPTPP does, and user files alike; a note says
   so); ``"all"`` keeps every rating, negative ones included; a number on a file without ratings
   is an error. ``Interactions.rating_threshold`` records the one applied;
3. repeated (user, item) pairs are kept once; with a published split, a test (or valid) pair
   that is also in train is dropped from test (it would be masked at evaluation anyway);
4. ``kcore=k``: iteratively drop users / items with < k interactions. Without a published
   split this runs on all interactions before splitting; with one it runs on train, and
   valid/test pairs whose user or item left the core are dropped (so items seen only in test
   are dropped too);
5. split: a published train/test is kept and ``valid_ratio`` of each user's train pairs
   (rounded half up, train keeps >= 1) become validation, seeded; otherwise a seeded per-user
   random ``split_ratios`` (train, valid, test) split;
6. ids are renumbered contiguously (sorted by raw id); ``raw_user_ids`` / ``raw_item_ids`` keep
   the file's ids. Items of a published split that occur only in test still get an id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cptpp.config import ConfigError
from cptpp.download import Resolved, locate, resolve_files
from cptpp.recsys.datasets import splits as S
from cptpp.recsys.datasets.catalog import DATASETS, DatasetSpec
from cptpp.recsys.config import DEFAULT_RATING_THRESHOLD, check_rating_threshold
from cptpp.recsys.datasets.formats import RawInteractions, read_interactions
from cptpp.recsys.interactions import Interactions

SPLIT_EXTENSIONS = ("", ".txt", ".csv", ".tsv")


@dataclass
class LoadOptions:
    """The knobs of :func:`load_dataset`, validated once."""

    seed: int = 0
    valid_ratio: float = 0.1
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    rating_threshold: float | str | None = None
    kcore: int = 0
    progress: bool = True

    def __post_init__(self):
        if not isinstance(self.seed, (int, np.integer)):
            raise ConfigError(f"seed={self.seed!r} must be an int")
        if not 0 <= self.valid_ratio < 1:
            raise ConfigError(f"valid_ratio={self.valid_ratio!r} must be in [0, 1)")
        r = tuple(float(x) for x in self.split_ratios)
        if len(r) != 3 or min(r) < 0 or r[0] <= 0 or abs(sum(r) - 1) > 1e-6:
            raise ConfigError(f"split_ratios={self.split_ratios!r} must be 3 non-negative numbers "
                              "(train, valid, test) summing to 1 with train > 0, e.g. (0.8, 0.1, 0.1)")
        self.split_ratios = r
        if not isinstance(self.kcore, (int, np.integer)) or self.kcore < 0:
            raise ConfigError(f"kcore={self.kcore!r} must be an int >= 0 (0 or 1 = no filtering)")
        check_rating_threshold(self.rating_threshold)


@dataclass
class _Loaded:
    data: Interactions
    source: str
    location: str
    format: str
    published_split: bool
    extra: dict = field(default_factory=dict)


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return DATASETS.names()


def load_dataset(name_or_path: str, *, seed: int = 0, valid_ratio: float = 0.1,
                 split_ratios=(0.8, 0.1, 0.1), rating_threshold: float | str | None = None,
                 kcore: int = 0, progress: bool = True) -> Interactions:
    """Load a registered dataset (see :func:`list_datasets`) or a user's data as train/valid/test.

    ``name_or_path``: a registered name; a file of ``user item [rating] [timestamp]`` lines
    (header optional; separator tab, comma, whitespace, ``::`` or ``;``), split at random per
    user by ``split_ratios``; or a folder with ``train`` and ``test`` (and optionally ``valid``)
    files (extension .txt/.csv/.tsv or none) in that form or LightGCN ``user item item ...``
    form, used as given (valid carved from train when absent). See the module docstring for
    the order of threshold, k-core and split.
    """
    opts = LoadOptions(seed, valid_ratio, tuple(split_ratios), rating_threshold, kcore, progress)
    return _load(name_or_path, opts).data


def dataset_info(name_or_path: str, **options) -> dict:
    """Counts of a dataset as :func:`load_dataset` (same keyword options) returns it.

    Keys: name, users, items, interactions, density, train, valid, test, source ("mirror",
    "cache", "download" or "path"), location, format, published_split, notes.
    """
    loaded = _load(name_or_path, LoadOptions(**options))
    d = loaded.data
    return {"name": d.name, **d.stats(), "source": loaded.source, "location": loaded.location,
            "format": loaded.format, "published_split": loaded.published_split, "notes": list(d.notes)}


def dataset_location(name: str) -> str:
    """Where a registered dataset would be read from now ("mirror", "cache", "download"), without reading it."""
    spec = get_spec(name)
    return locate("recsys", spec.name, spec.files, mirror_dir=spec.mirror_dir)


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    return DATASETS.get(name)


# ---------------------------------------------------------------------------------------------


def _load(name_or_path: str, opts: LoadOptions) -> _Loaded:
    name_or_path = str(name_or_path)
    if name_or_path in DATASETS:
        return load_spec(DATASETS.get(name_or_path), opts)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return _load_file(path, opts)
    if path.is_dir():
        return _load_folder(path, opts)
    raise ConfigError(f"unknown dataset {name_or_path!r} (and no file or folder at that path); "
                      f"valid names: {', '.join(list_datasets())}")


def load_spec(spec: DatasetSpec, opts: LoadOptions | None = None) -> _Loaded:
    """Load a :class:`DatasetSpec` (registered or not, e.g. in tests)."""
    opts = opts or LoadOptions()
    res: Resolved = resolve_files("recsys", spec.name, spec.files, mirror_dir=spec.mirror_dir,
                                  progress=opts.progress)
    raws = [read_interactions(res.paths[f.name], spec.format, sep=spec.sep) for f in spec.files]
    _check_expected(spec, raws, res)
    notes = [f"{spec.name}: {spec.description}; read from {res.source} {res.folder}"]
    default = spec.default_rating_threshold or DEFAULT_RATING_THRESHOLD
    if spec.published_split:
        data = _from_published(spec.name, raws[0], None, raws[1], opts, notes, default)
    else:
        data = _from_single(spec.name, raws[0], opts, notes, default)
    return _Loaded(data, res.source, str(res.folder), spec.format, spec.published_split)


def _check_expected(spec: DatasetSpec, raws: list[RawInteractions], res: Resolved) -> None:
    """Compare raw counts with the published ones: guards files whose hash was only recorded."""
    if spec.expected is None:
        return
    users = factorize(np.concatenate([r.users for r in raws]))[0]
    items = factorize(np.concatenate([r.items for r in raws]))[0]
    got = (len(users), len(items), sum(len(r) for r in raws))
    if got != spec.expected:
        raise ValueError(
            f"{spec.name}: files in {res.folder} have (users, items, interactions) = {got}, the published "
            f"dataset has {spec.expected}; the files are not the published version -- delete them to download again"
        )


def _load_file(path: Path, opts: LoadOptions) -> _Loaded:
    raw = read_interactions(path)
    notes = [f"{path.name}: user file read as {raw.format}"] + _header_notes([raw])
    data = _from_single(path.stem, raw, opts, notes, DEFAULT_RATING_THRESHOLD)
    return _Loaded(data, "path", str(path), raw.format, False)


def find_split_files(folder: Path) -> dict[str, Path]:
    """``{"train": path, "test": path[, "valid": path]}`` in ``folder``; a clear error otherwise."""
    found: dict[str, Path] = {}
    for split in ("train", "valid", "test"):
        hits = [folder / (split + ext) for ext in SPLIT_EXTENSIONS if (folder / (split + ext)).is_file()]
        if len(hits) > 1:
            raise ConfigError(f"{folder}: more than one {split} file ({', '.join(h.name for h in hits)}); keep one")
        if hits:
            found[split] = hits[0]
    if "train" not in found or "test" not in found:
        names = "/".join(f"{{train,valid,test}}{e}" for e in SPLIT_EXTENSIONS if e)
        raise ConfigError(f"{folder}: expected files named train and test (and optionally valid), "
                          f"each with extension .txt, .csv, .tsv or none (e.g. {names}); found: "
                          f"{', '.join(sorted(p.name for p in folder.iterdir())) or 'nothing'}")
    return found


def _load_folder(folder: Path, opts: LoadOptions) -> _Loaded:
    files = find_split_files(folder)
    raws = {k: read_interactions(p) for k, p in files.items()}
    fmts = sorted({r.format for r in raws.values()})
    notes = [f"{folder.name}: user folder, " + ", ".join(f"{k} read as {r.format}" for k, r in raws.items())]
    notes += _header_notes(list(raws.values()))
    data = _from_published(folder.name, raws["train"], raws.get("valid"), raws["test"], opts, notes,
                           DEFAULT_RATING_THRESHOLD)
    return _Loaded(data, "path", str(folder), "+".join(fmts), True)


# ---------------------------------------------------------------------------------------------
# raw -> Interactions


def _header_notes(raws: list[RawInteractions]) -> list[str]:
    return [f"{Path(r.path).name}: first line {r.header!r} read as column names (a header), not as data"
            for r in raws if r.header is not None]


def _resolve_threshold(raws: list[RawInteractions], requested, default: float, name: str,
                       notes: list[str]) -> float | str | None:
    """The threshold to apply (None: the files have no ratings), with a note saying what it does."""
    rated = [r for r in raws if r.ratings is not None]
    if not rated:
        if requested not in (None, "all"):
            raise ConfigError(f"rating_threshold={requested} but {name} ({raws[0].path}) has no rating column; "
                              "leave rating_threshold unset")
        return None
    n = sum(len(r) for r in rated)
    lo = min(float(r.ratings.min()) for r in rated if len(r)) if n else 0.0
    hi = max(float(r.ratings.max()) for r in rated if len(r)) if n else 0.0
    if requested == "all":
        notes.append(f"rating threshold 'all': every one of {n:,} ratings (from {lo:g} to {hi:g}) is a positive "
                     "interaction")
        return "all"
    if requested is None:
        notes.append(f"explicit ratings (from {lo:g} to {hi:g}): only rating >= {default:g} counts as a positive "
                     "interaction (the default; set --rating-threshold X, or 'all' to keep every rating)")
        return float(default)
    return float(requested)


def _apply_threshold(raw: RawInteractions, threshold: float | str | None) -> RawInteractions:
    if threshold in (None, "all") or raw.ratings is None:
        return raw
    keep = raw.ratings >= threshold
    return RawInteractions(raw.users[keep], raw.items[keep], raw.ratings[keep], raw.path, raw.format, raw.header)


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values ``[k]``, code of each value ``[n]``) with ``uniq[codes] == values``.

    Dense non-negative int ids (the usual case) use a presence table, O(n); others sort.
    """
    if values.dtype.kind in "iu" and len(values) and values.min() >= 0 and values.max() < 4 * len(values) + (1 << 20):
        present = np.zeros(int(values.max()) + 1, dtype=bool)
        present[values] = True
        codes = np.cumsum(present) - 1
        return np.flatnonzero(present).astype(values.dtype), codes[values].astype(np.int64)
    uniq, inv = np.unique(values, return_inverse=True)
    return uniq, inv.astype(np.int64).reshape(-1)


def _encode(raws: list[RawInteractions]):
    """Map raw ids of several files to shared codes: pairs ``[n_k, 2]`` per file, raw users, raw items."""
    def common(arrs):
        if len({a.dtype.kind for a in arrs}) > 1:  # int ids in one file, str in another
            arrs = [a.astype(str) for a in arrs]
        uniq, inv = factorize(np.concatenate(arrs))
        return uniq, np.split(inv, np.cumsum([len(a) for a in arrs])[:-1])

    users, ucodes = common([r.users for r in raws])
    items, icodes = common([r.items for r in raws])
    pairs = [np.stack([u, i], axis=1).reshape(-1, 2) for u, i in zip(ucodes, icodes)]
    return pairs, users, items


def _from_single(name: str, raw: RawInteractions, opts: LoadOptions, notes: list[str],
                 default_threshold: float) -> Interactions:
    n_read = len(raw)
    threshold = _resolve_threshold([raw], opts.rating_threshold, default_threshold, name, notes)
    raw = _apply_threshold(raw, threshold)
    if threshold not in (None, "all"):
        notes.append(f"implicit feedback: kept {len(raw):,} of {n_read:,} ratings with rating >= {threshold:g}")
    (pairs,), users, items = _encode([raw])
    uniq = S.unique_pairs(pairs)
    if len(uniq) < len(pairs):
        notes.append(f"{len(pairs) - len(uniq):,} repeated (user, item) pairs kept once")
    if opts.kcore > 1:
        before = len(uniq)
        uniq = uniq[S.kcore_mask(uniq, opts.kcore)]
        notes.append(f"{opts.kcore}-core filter (before splitting): kept {len(uniq):,} of {before:,} pairs")
    train, valid, test = S.random_split(uniq, opts.split_ratios, opts.seed)
    notes.append(f"random per-user split {'/'.join(f'{r:g}' for r in opts.split_ratios)} "
                 f"(train/valid/test, rounded half up, train keeps >= 1), seed {opts.seed}")
    (train, valid, test), ku, ki = S.compact(train, valid, test, num_users=len(users), num_items=len(items))
    return Interactions(name, len(ku), len(ki), train, valid, test, users[ku], items[ki], notes, threshold)


def _from_published(name: str, train_raw: RawInteractions, valid_raw: RawInteractions | None,
                    test_raw: RawInteractions, opts: LoadOptions, notes: list[str],
                    default_threshold: float) -> Interactions:
    raws = [r for r in (train_raw, valid_raw, test_raw) if r is not None]
    threshold = _resolve_threshold(raws, opts.rating_threshold, default_threshold, name, notes)
    if threshold not in (None, "all"):
        notes.append(f"implicit feedback: kept ratings >= {threshold:g}")
    raws = [_apply_threshold(r, threshold) for r in raws]
    pairs, users, items = _encode(raws)
    train = S.unique_pairs(pairs[0])
    valid = S.unique_pairs(pairs[1]) if valid_raw is not None else None
    test = S.unique_pairs(pairs[-1])
    for label, arr in (("test", test), ("valid", valid)):
        if arr is None:
            continue
        kept = S.remove_pairs(arr, train)
        if label == "valid":
            kept = S.remove_pairs(kept, test)
        if len(kept) < len(arr):
            also = "train or test" if label == "valid" else "train"
            notes.append(f"{len(arr) - len(kept):,} {label} pairs also in {also} dropped from {label}")
        if label == "test":
            test = kept
        else:
            valid = kept
    if opts.kcore > 1:
        before = len(train)
        train = train[S.kcore_mask(train, opts.kcore)]
        in_u = np.zeros(len(users), bool)
        in_i = np.zeros(len(items), bool)
        in_u[train[:, 0]] = True
        in_i[train[:, 1]] = True
        lost = 0
        kept_eval = []
        for arr in (valid, test):
            if arr is None:
                kept_eval.append(None)
                continue
            keep = in_u[arr[:, 0]] & in_i[arr[:, 1]]
            lost += int((~keep).sum())
            kept_eval.append(arr[keep])
        valid, test = kept_eval
        notes.append(f"{opts.kcore}-core filter on train: kept {len(train):,} of {before:,} train pairs; "
                     f"dropped {lost:,} valid/test pairs whose user or item left the core")
    if valid is None:
        train, valid = S.carve_valid(train, opts.valid_ratio, opts.seed)
        notes.append(f"published train/test split; valid = {opts.valid_ratio:g} of each user's train pairs "
                     f"(rounded half up, train keeps >= 1), seed {opts.seed}")
    else:
        notes.append("published train/valid/test split used as given")
    (train, valid, test), ku, ki = S.compact(train, valid, test, num_users=len(users), num_items=len(items))
    seen = np.zeros(len(ki), dtype=bool)
    seen[train[:, 1]] = True
    seen[valid[:, 1]] = True
    test_only = np.flatnonzero(~seen)
    if len(test_only):
        notes.append(f"{len(test_only):,} items occur only in test; they have ids (num_items counts them) "
                     "but no training interactions")
    return Interactions(name, len(ku), len(ki), train, valid, test, users[ku], items[ki], notes, threshold)
