"""Data layer: one :class:`DatasetSpec` per dataset in one registry (:mod:`genbench.data.registry`), dataset
loaders (uint8 in memory), registry-package assets and batch iteration.

Adding a dataset is one module defining a ``DatasetSpec`` plus one registration line below (or, for a plugin,
:func:`register_dataset` / a ``genbench.datasets`` entry point).
"""

from genbench.data.assets import cache_home, fetch_asset
from genbench.data.base import Dataset, DatasetInfo, DatasetSpec, Option, Remote
from genbench.data.cifar10 import CIFAR10
from genbench.data.custom import FOLDER, NPZ
from genbench.data.fashion_mnist import FASHION_MNIST
from genbench.data.mnist import MNIST
from genbench.data.quickdraw import QUICKDRAW
from genbench.data.registry import (
    OFFLINE_ENV, dataset_info, dataset_names, fetch_dataset, get_dataset, load_dataset, load_or_fetch, offline,
    register_dataset, unregister_dataset)

for _spec in (MNIST, FASHION_MNIST, QUICKDRAW, CIFAR10, FOLDER, NPZ):  # the registration lines
    register_dataset(_spec)

__all__ = ["Dataset", "DatasetInfo", "DatasetSpec", "Option", "Remote", "cache_home", "dataset_info", "dataset_names",
           "fetch_asset", "fetch_dataset", "get_dataset", "load_dataset", "register_dataset", "unregister_dataset",
           "OFFLINE_ENV", "load_or_fetch", "offline"]
