"""Recommendation datasets: a registry of named sets plus loading of a user's own files.

>>> data = load_dataset("gowalla")          # mirror -> cache -> official URL, sha256-verified
>>> data = load_dataset("ratings.csv", rating_threshold=4, kcore=5, seed=1)

Modules: :mod:`.catalog` (names, URLs, hashes), :mod:`.formats` (file readers),
:mod:`.splits` (threshold / k-core / split steps), :mod:`.load` (the pipeline).
"""
from cptpp.recsys.datasets.catalog import DATASETS, DatasetSpec
from cptpp.recsys.datasets.formats import MalformedLineError, RawInteractions, read_interactions
from cptpp.recsys.datasets.load import (
    LoadOptions,
    dataset_info,
    dataset_location,
    get_spec,
    list_datasets,
    load_dataset,
    load_spec,
)

__all__ = [
    "DATASETS", "DatasetSpec", "LoadOptions", "MalformedLineError", "RawInteractions",
    "dataset_info", "dataset_location", "get_spec", "list_datasets", "load_dataset", "load_spec",
    "read_interactions",
]
