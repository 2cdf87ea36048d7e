"""Dataset layer: file formats, splits, k-core, thresholds, resolution/download with checksums."""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cptpp.config import ConfigError
from cptpp.download import ChecksumError, DownloadError, RemoteFile, read_checksums, resolve_files
from cptpp.recsys import data_commands
from cptpp.recsys.datasets import (
    DatasetSpec,
    MalformedLineError,
    dataset_info,
    dataset_location,
    list_datasets,
    load_dataset,
    load_spec,
    read_interactions,
)
from cptpp.recsys.datasets import splits as S
from cptpp.recsys.datasets.formats import read_adjacency, read_selfrec, read_table, sniff_format
from cptpp.recsys.datasets.load import LoadOptions

MIRROR = os.environ.get("CPTPP_DATA_MIRROR")


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def _pairs(raw) -> set[tuple]:
    return set(zip(raw.users.tolist(), raw.items.tolist()))


@pytest.fixture(autouse=True)
def _isolated_data_dirs(tmp_path, monkeypatch):
    """No test reads ~/.cache or the real mirror unless it asks for it."""
    monkeypatch.setenv("CPTPP_DATA_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CPTPP_DATA_MIRROR", raising=False)


# ----------------------------------------------------------------------------------- formats


def test_adjacency_lines_give_one_pair_per_item(tmp_path):
    raw = read_adjacency(_write(tmp_path / "t.txt", "0 5 7\r\n1 5\n\n2\n3 9 \n"))
    assert _pairs(raw) == {(0, 5), (0, 7), (1, 5), (3, 9)}  # user-only line 2 adds nothing
    assert raw.ratings is None


def test_selfrec_lines(tmp_path):
    raw = read_selfrec(_write(tmp_path / "t.txt", "1:4 5 6\n2:7\n"))
    assert _pairs(raw) == {(1, 4), (1, 5), (1, 6), (2, 7)}


@pytest.mark.parametrize("text,bad_line", [
    ("1:4 5\n2 3:7\n", 2), ("1:4\n2:3:7\n", 2), ("1:4\n:5\n", 2), ("1:4\n2 7\n", 2),
])
def test_selfrec_malformed_names_line(tmp_path, text, bad_line):
    path = _write(tmp_path / "seq.txt", text)
    with pytest.raises(MalformedLineError) as e:
        read_selfrec(path)
    assert f"{path}:{bad_line}:" in str(e.value) and "user:item" in str(e.value)


@pytest.mark.parametrize("sep", ["\t", ",", "::", ";", " "])
def test_table_separators_are_sniffed(tmp_path, sep):
    rows = [(1, 10, 5, 100), (1, 11, 3, 101), (2, 10, 4.5, 102)]
    text = "\n".join(sep.join(map(str, r)) for r in rows) + "\n"
    raw = read_table(_write(tmp_path / "r.txt", text))
    assert _pairs(raw) == {(1, 10), (1, 11), (2, 10)}
    assert raw.ratings.tolist() == [5, 3, 4.5]


def test_table_header_and_string_ids(tmp_path):
    raw = read_table(_write(tmp_path / "r.csv", "user_id,item_id,rating\nA1,B7,5\nA2,B7,2\n"))
    assert _pairs(raw) == {("A1", "B7"), ("A2", "B7")}
    assert raw.ratings.tolist() == [5, 2]


def test_table_pairs_only(tmp_path):
    raw = read_table(_write(tmp_path / "r.tsv", "3\t4\n5\t6\n"))
    assert _pairs(raw) == {(3, 4), (5, 6)} and raw.ratings is None


@pytest.mark.parametrize("text,bad_line,why", [
    ("1\t2\t5\n1\t3\n", 2, "2 fields"),             # missing rating
    ("1\t2\t5\n1\t3\t4\t9\t9\n", 2, "5 fields"),  # too many fields
    ("1\t2\t5\n1\t3.5\t4\n", 2, "integers"),       # fractional item id
    ("a\tb\t5\nc\td\tx\n", 2, "not a number"),     # rating not numeric
])
def test_table_malformed_line_names_file_line_and_format(tmp_path, text, bad_line, why):
    path = _write(tmp_path / "ratings.tsv", text)
    with pytest.raises(MalformedLineError) as e:
        read_table(path)
    msg = str(e.value)
    bad = text.splitlines()[bad_line - 1]
    assert f"{path}:{bad_line}:" in msg and repr(bad) in msg and why in msg
    assert "user item [rating] [timestamp]" in msg


def test_adjacency_malformed_line(tmp_path):
    path = _write(tmp_path / "train.txt", "0 1 2\n1 2 x3\n")
    with pytest.raises(MalformedLineError, match=r"train.txt:2: malformed line '1 2 x3'.*'x'.*user item item"):
        read_adjacency(path)


def test_read_interactions_sniffs_and_dataset_info_counts(tmp_path):
    path = _write(tmp_path / "seq.txt", "\ufeff1:4 5 6\n2:7 4\n")  # with a UTF-8 byte-order mark
    assert read_interactions(path).format == "selfrec" and len(read_interactions(path)) == 5
    info = dataset_info(str(path), split_ratios=(1.0, 0.0, 0.0))
    assert (info["users"], info["items"], info["train"], info["valid"], info["test"]) == (2, 4, 5, 0, 0)
    assert info["source"] == "path" and info["density"] == pytest.approx(5 / 8)


def test_sniff_format():
    assert sniff_format(b"0 1 2 3 4 5\n1 2\n") == "adjacency"
    assert sniff_format(b"0 1 2\n1 2\n") == "adjacency"  # varying field count
    assert sniff_format(b"0 1 5 99\n1 2 4 98\n") == "table"
    assert sniff_format(b"1:2 3\n") == "selfrec"
    assert sniff_format(b"1::2::5::9\n") == "table"


# ------------------------------------------------------------------------------------ splits


def _many_pairs(n_users=40, n_items=60, seed=3):
    rng = np.random.default_rng(seed)
    pairs = [(u, i) for u in range(n_users) for i in rng.choice(n_items, rng.integers(1, 25), replace=False)]
    return np.array(pairs, dtype=np.int64)


def _keyset(a):
    return set(map(tuple, a.tolist()))


def test_random_split_is_deterministic_disjoint_and_per_user():
    pairs = _many_pairs()
    a = S.random_split(pairs, (0.8, 0.1, 0.1), seed=7)
    b = S.random_split(pairs[::-1], (0.8, 0.1, 0.1), seed=7)  # file order must not matter
    c = S.random_split(pairs, (0.8, 0.1, 0.1), seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))
    train, valid, test = map(_keyset, a)
    assert not (train & valid or train & test or valid & test)
    assert train | valid | test == _keyset(pairs)
    users_train = {u for u, _ in train}
    assert {u for u, _ in valid} <= users_train and {u for u, _ in test} <= users_train
    # Per-user counts: round half up of n * ratio, train keeps >= 1.
    n_u = np.bincount(pairs[:, 0])
    for split, ratio in ((a[2], 0.1), (a[1], 0.1)):
        got = np.bincount(split[:, 0], minlength=len(n_u))
        want = np.minimum(np.floor(n_u * ratio + 0.5), n_u - 1)
        assert (got <= want).all() and (got[n_u >= 3] == want[n_u >= 3]).all()


def test_random_split_hand_counts():
    # user 0: 10 pairs -> 8/1/1; user 1: 1 pair -> train only; user 2: 5 pairs -> 3/1/1
    pairs = np.array([(0, i) for i in range(10)] + [(1, 0)] + [(2, i) for i in range(5)])
    train, valid, test = S.random_split(pairs, (0.8, 0.1, 0.1), seed=0)
    assert np.bincount(train[:, 0]).tolist() == [8, 1, 3]
    assert np.bincount(valid[:, 0], minlength=3).tolist() == [1, 0, 1]
    assert np.bincount(test[:, 0], minlength=3).tolist() == [1, 0, 1]


def test_carve_valid_never_empties_train_and_is_seeded():
    train = np.array([(0, 1)] + [(1, i) for i in range(20)] + [(2, 3), (2, 4)])
    t1, v1 = S.carve_valid(train, 0.1, seed=1)
    t2, v2 = S.carve_valid(train, 0.1, seed=1)
    np.testing.assert_array_equal(v1, v2)
    assert np.bincount(v1[:, 0], minlength=3).tolist() == [0, 2, 0]  # 1, 2 pairs -> 0; 20 -> 2
    assert np.bincount(t1[:, 0]).tolist() == [1, 18, 2]
    assert not (_keyset(t1) & _keyset(v1)) and _keyset(t1) | _keyset(v1) == _keyset(train)
    # a single-pair user with a huge ratio still keeps its pair in train
    _, v = S.carve_valid(np.array([(0, 1), (0, 2)]), 0.9, seed=0)
    assert len(v) == 1


def test_kcore_is_iterative():
    # k=2: user 3 has 1 pair -> dropped; then item 2 has 1 pair -> dropped; then user 2 has 1 -> dropped.
    pairs = np.array([(0, 0), (0, 1), (1, 0), (1, 1), (2, 1), (2, 2), (3, 2)])
    keep = S.kcore_mask(pairs, 2)
    assert _keyset(pairs[keep]) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert S.kcore_mask(pairs, 0).all() and S.kcore_mask(pairs, 1).all()


def test_remove_and_unique_pairs():
    a = np.array([(0, 1), (0, 1), (2, 3), (1, 0)])
    np.testing.assert_array_equal(S.unique_pairs(a), [(0, 1), (1, 0), (2, 3)])
    np.testing.assert_array_equal(S.remove_pairs(a, np.array([(0, 1), (5, 5)])), [(2, 3), (1, 0)])


# --------------------------------------------------------------------------- load_dataset on user data


def test_user_file_threshold_kcore_and_raw_ids(tmp_path):
    rows = ["user,item,rating"]
    rows += [f"u{u},i{i},{5 if (u + i) % 3 else 2}" for u in range(12) for i in range(10)]
    rows += ["lonely,i0,5"]
    path = _write(tmp_path / "ratings.csv", "\n".join(rows) + "\n")
    everything = load_dataset(str(path), rating_threshold=0)
    assert len(everything.train) + len(everything.valid) + len(everything.test) == 121
    d = load_dataset(str(path), rating_threshold=4, kcore=2, seed=3)
    n_kept = sum(1 for u in range(12) for i in range(10) if (u + i) % 3)
    assert sum(map(len, (d.train, d.valid, d.test))) == n_kept  # 'lonely' has 1 pair < 2-core
    assert "lonely" not in set(d.raw_user_ids.tolist())
    # raw ids map contiguous ids back to the file's ids, and every kept pair is a high rating
    for u, i in np.concatenate([d.train, d.valid, d.test]).tolist():
        ru, ri = d.raw_user_ids[u], d.raw_item_ids[i]
        assert (int(ru[1:]) + int(ri[1:])) % 3
    assert any("rating >= 4" in n for n in d.notes)
    np.testing.assert_array_equal(d.test, load_dataset(str(path), rating_threshold=4, kcore=2, seed=3).test)


def test_user_file_without_ratings_rejects_threshold(tmp_path):
    path = _write(tmp_path / "pairs.tsv", "1\t2\n1\t3\n")
    with pytest.raises(ConfigError, match="no rating column"):
        load_dataset(str(path), rating_threshold=4)


def test_user_folder_published_split_kcore_and_test_only_items(tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    # LightGCN-style train; test has item 99 (only in test) and a pair duplicated from train.
    _write(folder / "train.txt", "10 1 2 3\n11 1 2\n12 2 3 4 5\n13 7\n")
    _write(folder / "test", "10 4 99\n11 3 1\n13 1\n")
    d = load_dataset(str(folder), valid_ratio=0.0)
    raw = lambda arr: {(int(d.raw_user_ids[u]), int(d.raw_item_ids[i])) for u, i in arr.tolist()}  # noqa: E731
    assert raw(d.test) == {(10, 4), (10, 99), (11, 3), (13, 1)}  # (11, 1) is in train -> dropped
    assert len(d.valid) == 0 and d.num_items == 7  # 99 occurs only in test and still has an id
    assert d.raw_item_ids.tolist() == [1, 2, 3, 4, 5, 7, 99]
    assert any("only in test" in n for n in d.notes) and any("dropped from test" in n for n in d.notes)
    # 2-core on train: user 13 (1 train pair) and items 4, 5, 7 (1 pair each) leave; so do their test pairs
    k = load_dataset(str(folder), valid_ratio=0.0, kcore=2)
    raw_k = lambda arr: {(int(k.raw_user_ids[u]), int(k.raw_item_ids[i])) for u, i in arr.tolist()}  # noqa: E731
    assert raw_k(k.train) == {(10, 1), (10, 2), (10, 3), (11, 1), (11, 2), (12, 2), (12, 3)}
    assert raw_k(k.test) == {(11, 3)}


def test_user_folder_with_valid_file_used_as_given(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    _write(folder / "train.csv", "u,i\n1,1\n1,2\n2,1\n")
    _write(folder / "valid.csv", "u,i\n1,3\n")
    _write(folder / "test.csv", "u,i\n2,2\n")
    d = load_dataset(str(folder))
    assert (len(d.train), len(d.valid), len(d.test)) == (3, 1, 1)


def test_user_folder_missing_files_is_clear(tmp_path):
    (tmp_path / "d").mkdir()
    _write(tmp_path / "d" / "train.txt", "1 2\n")
    with pytest.raises(ConfigError, match="expected files named train and test"):
        load_dataset(str(tmp_path / "d"))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        load_dataset("no-such-set")
    for name in ("gowalla", "ml-100k", "ml-1m", "yelp2018", "amazon-book", "amazon-beauty"):
        assert name in str(e.value)


def test_bad_options_are_config_errors():
    for kw in ({"valid_ratio": 1.0}, {"split_ratios": (0.5, 0.1, 0.1)}, {"kcore": -1},
               {"rating_threshold": float("nan")}, {"rating_threshold": "most"}):
        with pytest.raises(ConfigError):
            LoadOptions(**kw)


def test_registry_covers_the_issue_list():
    assert set(list_datasets()) == {"ml-100k", "ml-1m", "ml-1m-implicit", "gowalla", "yelp2018", "amazon-book",
                                    "amazon-beauty", "amazon-cds", "amazon-electronics"}


# ----------------------------------------------------------------------- resolution / download


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verify_then_cache(http_dir, tmp_path):
    root, base = http_dir
    body = b"0 1 2\n1 2\n"
    (root / "train.txt").write_bytes(body)
    files = (RemoteFile("train.txt", f"{base}/train.txt", _sha(body)),)
    first = resolve_files("recsys", "tiny", files, progress=False)
    assert first.source == "download" and first.paths["train.txt"].read_bytes() == body
    assert first.paths["train.txt"].parent == tmp_path / "cache" / "recsys" / "tiny"
    (root / "train.txt").unlink()  # second use must not touch the network
    assert resolve_files("recsys", "tiny", files, progress=False).source == "cache"


def test_download_checksum_mismatch_names_file_and_hashes(http_dir, tmp_path):
    root, base = http_dir
    (root / "train.txt").write_bytes(b"tampered\n")
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as e:
        resolve_files("recsys", "tiny", (RemoteFile("train.txt", f"{base}/train.txt", wrong),), progress=False)
    msg = str(e.value)
    assert "train.txt" in msg and wrong in msg and _sha(b"tampered\n") in msg
    assert not (tmp_path / "cache" / "recsys" / "tiny" / "train.txt").exists()  # nothing half-written


def test_archive_member_download_and_trust_on_first_use(http_dir, tmp_path):
    root, base = http_dir
    ratings = b"".join(f"{u}\t{i}\t{1 + (u * i) % 5}\t0\n".encode() for u in range(1, 6) for i in range(1, 9))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("set/ratings.tsv", ratings)
        zf.writestr("set/README", b"x")
    (root / "set.zip").write_bytes(buf.getvalue())
    spec = DatasetSpec("tinyzip", "test set", "table",
                       (RemoteFile("ratings.tsv", f"{base}/set.zip", None, member="set/ratings.tsv"),),
                       published_split=False, sep="\t", default_rating_threshold=4.0, expected=(5, 8, 40))
    loaded = load_spec(spec, LoadOptions(progress=False))
    assert loaded.source == "download"
    n_high = sum(1 + (u * i) % 5 >= 4 for u in range(1, 6) for i in range(1, 9))
    d = loaded.data
    assert len(d.train) + len(d.valid) + len(d.test) == n_high  # default threshold 4 applied
    cache = tmp_path / "cache" / "recsys" / "tinyzip"
    assert read_checksums(cache / "SHA256SUMS") == {"ratings.tsv": _sha(ratings)}
    assert sorted(p.name for p in cache.iterdir()) == ["SHA256SUMS", "ratings.tsv"]  # archive removed
    (cache / "ratings.tsv").write_bytes(ratings[:-10])  # truncate the cached copy
    with pytest.raises(ChecksumError, match=r"ratings.tsv.*expected sha256 " + _sha(ratings)):
        load_spec(spec, LoadOptions(progress=False))
    # Deleting the file re-downloads it; a changed upstream file must still match the recorded hash.
    (cache / "ratings.tsv").unlink()
    with zipfile.ZipFile(root / "set.zip", "w") as zf:
        zf.writestr("set/ratings.tsv", ratings.replace(b"\t0\n", b"\t1\n"))
    with pytest.raises(ChecksumError, match="SHA256SUMS"):
        load_spec(spec, LoadOptions(progress=False))
    assert not (cache / "ratings.tsv").exists()


def test_corrupted_mirror_file_fails_checksum(tmp_path, monkeypatch):
    folder = tmp_path / "mirror" / "recsys" / "tiny-folder"
    folder.mkdir(parents=True)
    _write(folder / "train.txt", "0 1\n")
    _write(folder / "test.txt", "0 2\n")
    monkeypatch.setenv("CPTPP_DATA_MIRROR", str(tmp_path / "mirror"))
    files = (RemoteFile("train.txt", "http://127.0.0.1:9/none", _sha(b"0 1\n")),
             RemoteFile("test.txt", "http://127.0.0.1:9/none", _sha(b"0 2 3\n")))
    with pytest.raises(ChecksumError, match=rf"{folder / 'test.txt'}: expected sha256 {_sha(b'0 2 3' + bytes([10]))}"):
        resolve_files("recsys", "tiny", files, mirror_dir="tiny-folder")
    ok = files[:1]
    assert resolve_files("recsys", "tiny", ok, mirror_dir="tiny-folder").source == "mirror"


def test_unreachable_download_says_where_to_put_files(tmp_path):
    files = (RemoteFile("ratings.dat", "http://127.0.0.1:9/ml.zip", None, member="ml/ratings.dat"),)
    with pytest.raises(DownloadError, match=r"could not download http://127.0.0.1:9/ml.zip.*ratings.dat"):
        resolve_files("recsys", "nothing", files, progress=False)


# ------------------------------------------------------------------------------------- CLI


def test_data_commands(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    data_commands.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_datasets()) and "29,858" in out
    path = _write(tmp_path / "r.tsv", "".join(f"{u}\t{i}\n" for u in range(4) for i in range(10)))
    args = parser.parse_args(["data", "info", str(path), "--split-ratios", "0.6,0.2,0.2"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "interactions" in out and "40" in out and "24" in out  # 4 users x (6 train)


# -------------------------------------------------------------------------- real mirror smoke


def _mirror_has(folder: str) -> bool:
    return bool(MIRROR) and (Path(MIRROR) / "recsys" / folder).is_dir()


@pytest.mark.skipif(not _mirror_has("gowalla"), reason="CPTPP_DATA_MIRROR/recsys/gowalla not available")
def test_mirror_gowalla_counts(monkeypatch):
    monkeypatch.setenv("CPTPP_DATA_MIRROR", MIRROR)
    d = load_dataset("gowalla", progress=False)
    assert (d.num_users, d.num_items) == (29_858, 40_981)
    assert len(d.train) + len(d.valid) == 810_128 and len(d.test) == 217_242
    assert dataset_location("gowalla") == "mirror"


@pytest.mark.skipif(not _mirror_has("ml-100k"), reason="CPTPP_DATA_MIRROR/recsys/ml-100k not available")
def test_mirror_ml100k_counts(monkeypatch):
    monkeypatch.setenv("CPTPP_DATA_MIRROR", MIRROR)
    d = load_dataset("ml-100k", rating_threshold=0, progress=False)
    assert (d.num_users, d.num_items) == (943, 1682)
    assert len(d.train) + len(d.valid) + len(d.test) == 100_000
    implicit = load_dataset("ml-100k", progress=False)  # default threshold 4: 34,174 + 21,201 ratings
    assert len(implicit.train) + len(implicit.valid) + len(implicit.test) == 55_375
