"""Data layer: registry-package assets, dataset loaders (uint8 in memory) and batch iteration."""

from genbench.data.assets import cache_home, fetch_asset
from genbench.data.info import DatasetInfo, dataset_info
from genbench.data.registry import DATASETS, Dataset, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetInfo", "cache_home", "dataset_info", "fetch_asset", "load_dataset"]
