"""Shared fixtures. Real MNIST comes from the genbench cache (``make test`` fetches it first)."""

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def mnist():
    from genbench.data import load_dataset

    return load_dataset("mnist")
