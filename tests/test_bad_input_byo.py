"""Bring your own model and data (issue 16), refused in one line: a wrong import path, a class off the protocol,
an empty or mixed-size image folder, an npz without x. Module names are unique per case (imports are cached per
process).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from bad_input_helpers import _cli, _one_line, _run_study_file

_BYO_MODULE = """
import torch
from torch import nn


class NoFamily(nn.Module):
    def __init__(self, *, image_shape=(1, 28, 28)):
        super().__init__()
        self.num_classes = 0

    def sample(self, n, y=None, generator=None):
        return torch.zeros(n, 1, 28, 28)


class NoLosses(NoFamily):
    genbench_family = "likelihood"


class BadFamily(NoFamily):
    genbench_family = "autoregressive"


class NoClasses(NoLosses):
    def __init__(self, *, image_shape=(1, 28, 28)):
        nn.Module.__init__(self)

    def training_losses(self, x, y=None, *, generator=None):
        return {"loss": x.mean()}


class FakeDiffusion(NoLosses):
    genbench_family = "diffusion"


NOT_A_CLASS = 3
"""


def _byo_study(tmp_path: Path, kind: str | None = None, dataset=None) -> Path:
    raw = {"name": "byo", "dataset": dataset or "mnist", "holdout": 20, "batch_size": 32,
           "models": {"m": {"kind": kind or "vae", "optimizer": {"lr": 1e-3}, "epochs": 1}}}
    p = tmp_path / "byo.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("kind,needle", [
    ("nosuchpkg_16a.models:MyVAE", "byo.yaml.models.m.kind: model kind 'nosuchpkg_16a.models:MyVAE': no module named "
                                   "'nosuchpkg_16a'; install the package or add the folder holding it to PYTHONPATH"),
    ("{mod}:MyVAE", "has no attribute 'MyVAE'; check the name after ':' (its nn.Module classes: BadFamily, "
                    "FakeDiffusion, NoClasses, NoFamily, NoLosses)"),
    ("{mod}:NOT_A_CLASS", "'int' is not a torch.nn.Module subclass"),
    ("{mod}:NoFamily", "NoFamily sets no valid class attribute `genbench_family` (got None); add genbench_family = "),
    ("{mod}:BadFamily", "(got 'autoregressive')"),
    ("{mod}:NoLosses", "NoLosses (genbench_family 'likelihood') lacks training_losses(); implement it"),
    ("{mod}:FakeDiffusion", "family 'diffusion' is drawn by genbench's samplers, which need genbench.models.ddpm.DDPM"),
    ("{mod}:NoClasses", "NoClasses has no integer attribute num_classes >= 0 (got None); set self.num_classes"),
    ("{mod}.py:MyVAE", "an import path is `package.module:ClassName`"),
    ("vea", "unknown model kind 'vea'; choose one of: vae, gan"),
])
def test_byo_model_mistakes_give_one_line(tmp_path, monkeypatch, kind, needle):
    mod = f"byo_bad_{abs(hash((kind, str(tmp_path)))) % 10**8}"
    (tmp_path / f"{mod}.py").write_text(_BYO_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    p = _byo_study(tmp_path, kind=kind.format(mod=mod))
    if "NoClasses" in kind:  # the instance attributes are checked when the model is built: the training stage
        code, err, _ = _cli("--threads", "1", "run", str(p), "--profile", "smoke", "--out", str(tmp_path / "out"))
    else:
        code, err, _ = _run_study_file(p, "smoke", tmp_path / "out")
    _one_line(code, err)
    assert needle.format(mod=mod) in err[0], err[0]


def _png(path: Path, size: tuple[int, int], value: int = 128) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)


@pytest.mark.parametrize("case,needle", [
    ("missing", "does not exist or is not a folder"),
    ("empty", "holds no .png/.jpg/.jpeg images; put the images there"),
    ("mixed", "mixes image sizes: 30 of 28x28 (e.g. 000.png) and 2 of 32x32 (e.g. big0.png); crop or resize them"),
    ("not_square", "the images are 28x20, not square; crop them"),
    ("top_and_sub", "mixes 1 images at its top level (e.g. stray.png) with class sub-folders (a, b); move them"),
    ("broken", "cannot read image"),
    ("npz_no_x", "has no array 'x' (it has: images, y); save the images as x = uint8"),
    ("npz_float", "images are float32, not uint8; convert them"),
    ("npz_shape", "shape (30, 5) is not (N, H, W)"),
    ("kind", "byo.yaml.dataset.kind: unknown dataset kind 'zip'; choose one of folder, npz"),
    ("channels", "byo.yaml.dataset.channels: value 4 is out of range; give 1 or 3"),
    ("data_section", "byo.yaml.data: a study's own dataset takes its options in the `dataset:` mapping"),
])
def test_byo_dataset_mistakes_give_one_line(tmp_path, case, needle):
    d = tmp_path / "imgs"
    spec = {"kind": "folder", "path": "imgs"}
    if case == "empty":
        (d / "a").mkdir(parents=True)
        (d / "notes.txt").write_text("no images")
    elif case in ("mixed", "broken"):
        for i in range(30):
            _png(d / "a" / f"{i:03d}.png", (28, 28))
        if case == "mixed":
            _png(d / "b" / "big0.png", (32, 32))
            _png(d / "b" / "big1.png", (32, 32))
        else:
            (d / "b").mkdir()
            (d / "b" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    elif case == "not_square":
        for i in range(4):
            _png(d / f"{i}.png", (28, 20))
    elif case == "top_and_sub":
        _png(d / "a" / "0.png", (28, 28))
        _png(d / "b" / "0.png", (28, 28))
        _png(d / "stray.png", (28, 28))
    elif case.startswith("npz"):
        arrays = {"npz_no_x": {"images": np.zeros((30, 28, 28), np.uint8), "y": np.zeros(30, np.int64)},
                  "npz_float": {"x": np.zeros((30, 28, 28), np.float32)},
                  "npz_shape": {"x": np.zeros((30, 5), np.uint8)}}[case]
        np.savez(tmp_path / "a.npz", **arrays)
        spec = {"kind": "npz", "path": "a.npz"}
    elif case == "kind":
        spec = {"kind": "zip", "path": "imgs"}
    elif case == "channels":
        spec = {"kind": "folder", "path": "imgs", "channels": 4}
    p = _byo_study(tmp_path, dataset=spec)
    if case == "data_section":
        _png(d / "0.png", (28, 28))
        raw = yaml.safe_load(p.read_text())
        p.write_text(yaml.safe_dump({**raw, "data": {"data_dir": "x"}}))
    code, err, _ = _cli("--threads", "1", "run", str(p), "--profile", "smoke", "--out", str(tmp_path / "out"))
    _one_line(code, err)
    assert needle in err[0], err[0]
    assert not (tmp_path / "out" / "byo").exists()  # refused before the study folder is made
