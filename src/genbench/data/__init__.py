"""Data layer: registry-package assets, dataset loaders (uint8 in memory) and batch iteration."""

from genbench.data.assets import cache_home, fetch_asset
from genbench.data.registry import DATASETS, Dataset, load_dataset

__all__ = ["DATASETS", "Dataset", "cache_home", "fetch_asset", "load_dataset"]
