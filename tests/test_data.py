"""MNIST from the registry package: shapes, dtypes, checksums, and clean errors for missing/corrupt assets."""

import shutil

import pytest

from genbench.data.assets import ASSETS, verify_asset
from genbench.errors import AssetError


def test_mnist_splits(mnist):
    assert mnist["train"].x.shape == (55000, 1, 28, 28) and mnist["train"].x.dtype.is_floating_point is False
    assert len(mnist["holdout"]) == 5000 and len(mnist["test"]) == 10000
    assert int(mnist["train"].x.max()) == 255 and set(mnist["test"].y.unique().tolist()) == set(range(10))


def test_corrupt_asset_names_both_checksums_and_the_fix(tmp_path, monkeypatch):
    from genbench.data.assets import cache_home

    src = ASSETS["mnist"].path
    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path))
    dst = ASSETS["mnist"].path
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(AssetError) as e:
        verify_asset(ASSETS["mnist"])
    msg = str(e.value)
    assert ASSETS["mnist"].member_sha256 in msg and "genbench data fetch mnist" in msg and str(dst) in msg
    assert cache_home() == tmp_path


def test_missing_asset_message(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path))
    with pytest.raises(AssetError, match="genbench data fetch inception"):
        verify_asset(ASSETS["inception"])
