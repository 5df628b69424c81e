"""Dataset facts, kept importable under their old name: each dataset's facts live in its
:class:`~genbench.data.base.DatasetSpec` (:func:`genbench.data.registry.dataset_info` asks the registry).

``DATASET_NAMES`` is the registered names at import time; code that must see datasets registered later asks
:func:`genbench.data.registry.dataset_names`.
"""

from genbench.data.base import DatasetInfo
from genbench.data.registry import dataset_info, dataset_names

DATASET_NAMES = dataset_names()

__all__ = ["DATASET_NAMES", "DatasetInfo", "dataset_info", "dataset_names"]
