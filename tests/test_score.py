"""``genbench score`` (issue 16): images made elsewhere scored with a study's protocol.

Real MNIST test images written as PNG class folders must score like the real-data row (held-out training images)
at the same N; uniform noise must score far worse. Both calls use the smoke profile's settings with N = 100
(Inception N = 100), so each is one small evaluation; the Inception reference statistics of that N are cached
after the first.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bad_input_helpers import _cli  # in-process `genbench ARGS`: (exit code, stderr lines, stdout)

N = 100


def _score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genbench.cli", "score", *args], capture_output=True, text=True)


def _rows(out: Path) -> dict:
    return {r["model"]: r for r in json.loads((out / "metrics.json").read_text())["models"]}


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory, mnist):
    """150 MNIST test images as PNG files in class folders 0..9: the end of the study's seeded reference order,
    so none of them is in the N-image reference subset they are compared with."""
    from PIL import Image

    from genbench.metrics.reference import reference_order

    test = mnist["test"]
    idx = reference_order(test.y.numpy(), len(test), 42)[-150:]
    root = tmp_path_factory.mktemp("score") / "mnist_test_pngs"
    for i in idx:
        d = root / str(int(test.y[i]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.x[i, 0].numpy()).save(d / f"{int(i):05d}.png")
    return root


@pytest.fixture(scope="module")
def scored_real(real_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("score_out") / "real_pngs"
    p = _score(str(real_folder), "--reference", "mnist", "--out", str(out), "--profile", "smoke", "--n", str(N),
               "--n-inception", str(N))
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


@pytest.mark.slow
def test_real_images_score_like_the_real_row(scored_real):
    out, p = scored_real
    rows = _rows(out)
    assert list(rows) == ["mnist_test_pngs", "real"]  # the scored set, then the floor, as in a study
    s, r = rows["mnist_test_pngs"], rows["real"]
    fs, fr = s["metrics"]["fid_inception"], r["metrics"]["fid_inception"]
    assert fs["n_generated"] == fr["n_generated"] == N and s["sample_bank"]["n"] == r["sample_bank"]["n"] == N
    assert fs["reference_subset"] == fr["reference_subset"]  # the same seeded test subset for both rows
    assert s["conditional"] and "conditional_accuracy" in s["metrics"] and "cas" in s["metrics"]  # labels read
    # Both rows are real MNIST against the same reference, so they differ only by which 100 real images were drawn.
    # The bootstrap std estimates that sampling spread for each row; 3x their combined spread bounds the gap.
    spread = math.hypot(fs["std"], fr["std"])
    assert abs(fs["value"] - fr["value"]) < 3 * spread, (fs["value"], fr["value"], spread)
    ks, kr = s["metrics"]["kid_inception"], r["metrics"]["kid_inception"]
    assert abs(ks["value"] - kr["value"]) < 3 * math.hypot(ks["std"], kr["std"])
    bank = np.load(out / "mnist_test_pngs" / "samples" / "bank.npz")
    assert bank["images"].shape == (N, 1, 28, 28) and bank["images"].dtype == np.uint8
    assert np.bincount(bank["labels"], minlength=10).min() >= 8  # a class-stratified subset of the 150 files
    html = (out / "report" / "index.html").read_text()
    assert "mnist_test_pngs" in html and "genbench score" in html
    assert "mnist_test_pngs: FID" in p.stdout


@pytest.mark.slow
def test_noise_scores_clearly_worse(scored_real, tmp_path):
    out_real, _ = scored_real
    fid_real = _rows(out_real)["mnist_test_pngs"]["metrics"]["fid_inception"]
    x = np.random.default_rng(0).integers(0, 256, (N, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", x=x)
    out = tmp_path / "out"
    p = _score(str(tmp_path / "noise.npz"), "--reference", "mnist", "--out", str(out), "--profile", "smoke", "--n",
               str(N), "--n-inception", str(N), "--no-report")
    assert p.returncode == 0, p.stderr[-3000:]
    rows = _rows(out)
    f = rows["noise"]["metrics"]["fid_inception"]
    assert not rows["noise"]["conditional"] and "conditional_accuracy" not in rows["noise"]["metrics"]
    assert f["value"] > 3 * fid_real["value"] and f["value"] - fid_real["value"] > 20 * math.hypot(
        f["std"], fid_real["std"]), (f, fid_real)
    assert not (out / "report").exists()


def _png(path: Path, size=(28, 28), value=0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint8)).save(path)


def _one_line(result: tuple, *needles: str) -> None:
    """``result`` from bad_input_helpers' in-process ``_cli``: (exit code, non-empty stderr lines, stdout)."""
    code, lines, _ = result
    assert code == 2 and len(lines) == 1 and lines[0].startswith("genbench: error:"), (code, lines)
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_input_one_line(tmp_path):
    """Each mistake ends before any data or model is loaded: one line naming the problem and the fix, exit 2."""
    out = str(tmp_path / "out")
    common = ("--reference", "mnist", "--out", out, "--profile", "smoke")
    _one_line(_cli("score", str(tmp_path / "missing"), *common), "not found")
    (tmp_path / "empty").mkdir()
    _one_line(_cli("score", str(tmp_path / "empty"), *common), "holds no .png")
    _png(tmp_path / "mixed" / "a.png")
    _png(tmp_path / "mixed" / "b.png", size=(32, 32))
    _one_line(_cli("score", str(tmp_path / "mixed"), *common), "mixed sizes", "resize")
    for i in range(3):
        _png(tmp_path / "big" / f"{i}.png", size=(32, 32))
    _one_line(_cli("score", str(tmp_path / "big"), *common), "28x28")
    _png(tmp_path / "badsub" / "cats" / "a.png")
    _one_line(_cli("score", str(tmp_path / "badsub"), *common), "not a label index")
    for i in range(30):
        _png(tmp_path / "few" / f"{i}.png")
    _one_line(_cli("score", str(tmp_path / "few"), *common), "holds 30 images", "--n 30")  # smoke N = 100
    np.savez(tmp_path / "nox.npz", images=np.zeros((30, 28, 28), np.uint8))
    _one_line(_cli("score", str(tmp_path / "nox.npz"), *common), "no array `x`", "images")
    np.savez(tmp_path / "float.npz", x=np.zeros((30, 28, 28), np.float32))
    _one_line(_cli("score", str(tmp_path / "float.npz"), *common), "float32", "uint8")
    np.savez(tmp_path / "shape.npz", x=np.zeros((30, 28), np.uint8))
    _one_line(_cli("score", str(tmp_path / "shape.npz"), *common), "shape (30, 28)")
    np.savez(tmp_path / "labels.npz", x=np.zeros((30, 28, 28), np.uint8), y=np.arange(29))
    _one_line(_cli("score", str(tmp_path / "labels.npz"), *common), "y must be")
    _one_line(_cli("score", str(tmp_path / "few"), "--reference", "mnsit", "--out", out), "mnsit", "mnist")
    _one_line(_cli("score", str(tmp_path / "few"), *common, "--n", "5"), "--n 5")
    _one_line(_cli("score", str(tmp_path / "few"), *common, "--n", "30", "--n-inception", "40"), "--n-inception 40")
    assert not (tmp_path / "out" / "metrics.json").exists()
