"""The named recommendation datasets: where each is published, its sha256s and how to read it.

Hashes come from the SOURCE.txt of each folder of the data mirror (files byte-identical to the
published ones). ``sha256=None`` marks files with no copy here: they are hashed on first
download and verified after (see :mod:`cptpp.download`); the published user / item /
interaction counts in ``expected`` then guard that first download.

Each set is also registered as a :class:`cptpp.download.DataSpec` (area ``"recsys"``) in the one
dataset registry :data:`cptpp.download.DATA` that holds the text and code sets too; this module's
:data:`DATASETS` adds what reading a recommendation set needs (format, split, counts).
To add a set: one ``_add(DatasetSpec(...))`` below.
"""
from __future__ import annotations

from dataclasses import dataclass

from cptpp.download import DataSpec, RemoteFile, data_spec, register_data
from cptpp.registry import Registry

_GH = "https://raw.githubusercontent.com"
_LIGHTGCN = f"{_GH}/kuandeng/LightGCN/b067ec05f16a24e0e1efe63cd82385f0c469af20/Data"
_RECZOO = f"{_GH}/reczoo/RecZoo/fd2379d3b5df99d23513a8c423c083d27a45126d/data"
_GROUPLENS = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset.

    ``format`` is how its files are read: "table" (one rating per line; ``sep``), "adjacency"
    (LightGCN ``user item item ...``) or "selfrec" (``user:item item ...``). With a published
    split, ``files`` holds ``train`` then ``test`` (a validation set is carved from train);
    otherwise ``files`` holds one ratings file and a seeded per-user random split is made.
    ``expected`` is (users, items, interactions) of the raw files, as published.
    """

    name: str
    description: str
    format: str
    files: tuple[RemoteFile, ...]
    published_split: bool
    mirror_dir: str | None = None
    sep: str | None = None
    default_rating_threshold: float | None = None
    expected: tuple[int, int, int] | None = None
    homepage: str = ""

    @property
    def has_ratings(self) -> bool:
        return self.format == "table" and not self.published_split

    @property
    def data(self) -> DataSpec:
        """This set's entry in the dataset registry (files, URLs, sha256)."""
        return data_spec("recsys", self.name)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def _add(spec: DatasetSpec) -> DatasetSpec:
    register_data(DataSpec("recsys", spec.name, spec.files, spec.mirror_dir, spec.homepage))
    return DATASETS.register(spec.name)(spec)


def _lightgcn_pair(base: str, train_sha: str | None, test_sha: str | None) -> tuple[RemoteFile, ...]:
    return (RemoteFile("train.txt", f"{base}/train.txt", train_sha),
            RemoteFile("test.txt", f"{base}/test.txt", test_sha))


_add(DatasetSpec(
    "ml-100k", "MovieLens 100K ratings (GroupLens u.data); implicit = rating >= 4 by default",
    "table",
    (RemoteFile("u.data", f"{_GROUPLENS}/ml-100k.zip",
                "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490", member="ml-100k/u.data"),),
    published_split=False, sep="\t", default_rating_threshold=4.0, expected=(943, 1682, 100_000),
    homepage="https://grouplens.org/datasets/movielens/100k/",
))
_add(DatasetSpec(
    "ml-1m", "MovieLens 1M ratings (GroupLens ratings.dat); implicit = rating >= 4 by default",
    "table",
    (RemoteFile("ratings.dat", f"{_GROUPLENS}/ml-1m.zip", None, member="ml-1m/ratings.dat"),),
    published_split=False, mirror_dir="ml-1m", sep="::", default_rating_threshold=4.0,
    expected=(6040, 3706, 1_000_209), homepage="https://grouplens.org/datasets/movielens/1m/",
))
_add(DatasetSpec(
    "ml-1m-implicit", "MovieLens 1M, every rating as an interaction, ReSN's published random 80/20 split",
    "adjacency",
    _lightgcn_pair(f"{_GH}/LIN452/ReSN/a190a0737a4b0a5975dcf26e2308c049a3569bc1/data/ml-1m",
                   "917e2eabe7d102a603c8594f522a1569cb69d26d63f0d9d2f071f0a6d2ea0149",
                   "c52de8b0cb2fe1eec9c9746a16127636fa1236aed023179a44d303b69f1a4078"),
    published_split=True, mirror_dir="ml-1m-resn-split", expected=(6040, 3706, 1_000_209),
    homepage="https://github.com/LIN452/ReSN",
))
_add(DatasetSpec(
    "gowalla", "Gowalla check-ins, LightGCN/NGCF published split",
    "adjacency",
    _lightgcn_pair(f"{_LIGHTGCN}/gowalla",
                   "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62",
                   "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3"),
    published_split=True, expected=(29_858, 40_981, 1_027_370),
    homepage="https://github.com/kuandeng/LightGCN",
))
_add(DatasetSpec(
    "yelp2018", "Yelp 2018 challenge, LightGCN/NGCF published split",
    "adjacency", _lightgcn_pair(f"{_LIGHTGCN}/yelp2018", None, None),
    published_split=True, expected=(31_668, 38_048, 1_561_406),
    homepage="https://github.com/kuandeng/LightGCN",
))
_add(DatasetSpec(
    "amazon-book", "Amazon Book reviews, LightGCN/NGCF published split",
    "adjacency", _lightgcn_pair(f"{_LIGHTGCN}/amazon-book", None, None),
    published_split=True, expected=(52_643, 91_599, 2_984_108),
    homepage="https://github.com/kuandeng/LightGCN",
))
_add(DatasetSpec(
    "amazon-beauty", "Amazon Beauty 5-core, SELFRec leave-last-out split (test = each user's last item)",
    "selfrec",
    _lightgcn_pair(f"{_GH}/Coder-Yu/SELFRec/5b0229423cb1c727e85a704d63e460368c8b9dde/dataset/amazon-beauty",
                   "54d2d8905408cc11aef96834a7f60e0cb9d7a2593f797ea0a188e7c1ffe95380",
                   "66f2b03db1850a53a0103ddd6adda93cede7228294cf46a2dcdf3b349b80cf88"),
    published_split=True, expected=(22_363, 12_101, 198_502),
    homepage="https://github.com/Coder-Yu/SELFRec",
))
_add(DatasetSpec(
    "amazon-cds", "Amazon CDs (BARS AmazonCDs_m1, from BGCF), published split",
    "adjacency",
    _lightgcn_pair(f"{_RECZOO}/AmazonCDs_m1",
                   "c4caee7d5fe27fb5489466729b358eefe15155cec37f73ce2a4b5c74c8b73d51",
                   "ef686ffd39ca5ad4c8ee9dc8eeb3333ccc5bfe548f55e0d403d210ff7f248d2d"),
    published_split=True, expected=(43_169, 35_648, 777_426),
    homepage="https://openbenchmark.github.io/BARS/",
))
_add(DatasetSpec(
    "amazon-electronics", "Amazon Electronics (BARS AmazonElectronics_m1, from NBPO), published split",
    "adjacency",
    _lightgcn_pair(f"{_RECZOO}/AmazonElectronics_m1",
                   "884a6569732136656d67e530798ecfcb6b9def627e81685c30cb18697a7d668f",
                   "33b54edda8047be66ae135b9b52934f07858c482ec2a54995054e4eb2157f89d"),
    published_split=True, expected=(1_435, 1_522, 35_931),
    homepage="https://openbenchmark.github.io/BARS/",
))
