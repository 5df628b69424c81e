"""Shared fixtures. Real MNIST comes from the genbench cache (``make test`` fetches it first)."""

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def mnist():
    from genbench.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """The bundled MNIST study, smoke profile, run through the CLI on a 1,024-image slice of real MNIST."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("runs")
    p = subprocess.run([sys.executable, "-m", "genbench.cli", "run", "--profile", "smoke", "--out", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return out / "mnist-four"
