"""Bring your own model and data (issue 16): the tutorial of docs/BRING_YOUR_OWN.md, run as written.

- An out-of-tree package (written to tmp_path, on PYTHONPATH) holds two models: a VAE with an MLP decoder
  (subclass of genbench's ConvVAE, family ``vae``) and a from-scratch Gaussian model (family ``likelihood``,
  its own ``sample``). A study names them by import path next to the built-in VAE and runs the smoke profile
  through the CLI on MNIST: each gets a checkpoint, a bank, every metric and a report row, the VAE its family
  metrics too; ``genbench sample`` rebuilds it from the kind string in its checkpoint.
- A folder of 200 real MNIST digits as PNGs in class sub-folders runs the smoke study end to end; an ``.npz``
  of the same images gives the same splits' classes and shapes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs" / "BRING_YOUR_OWN.md"


def _tutorial_block(name: str) -> str:
    """The code block of docs/BRING_YOUR_OWN.md that follows the marker ``<!-- name -->``: the test runs the
    tutorial's own text, so the two cannot drift apart."""
    text = DOCS.read_text()
    m = re.search(rf"<!-- {re.escape(name)} -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert m, f"no block {name} in {DOCS}"
    return m.group(1)


def _run(*args, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "genbench.cli", "--threads", "2", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def byo_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("byo")
    pkg = root / "src" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(_tutorial_block("mypkg/models.py"))
    (pkg / "family.py").write_text(_tutorial_block("mypkg/family.py"))
    (root / "study.yaml").write_text(_tutorial_block("my_study.yaml"))
    p = _run("run", "study.yaml", "--profile", "smoke", "--out", "runs", cwd=root, pythonpath=root / "src")
    assert p.returncode == 0, p.stderr[-3000:]
    return root


@pytest.mark.slow
def test_outside_models_run_next_to_the_baseline(byo_study):
    d = byo_study / "runs" / "byo-mnist"
    summary = json.loads((d / "metrics.json").read_text())
    recs = {r["model"]: r for r in summary["models"]}
    assert list(recs) == ["vae", "mlp_vae", "gauss", "moments", "real"]
    assert recs["mlp_vae"]["kind"] == "mypkg.models:MLPDecoderVAE" and recs["mlp_vae"]["family"] == "vae"
    assert recs["gauss"]["family"] == "likelihood"
    generic = set(recs["vae"]["metrics"]) - {"elbo", "iwae_nll", "active_units"}
    for name in ("mlp_vae", "gauss"):
        m = recs[name]["metrics"]
        assert generic <= set(m), generic - set(m)  # every generic metric a built-in model gets
        assert np.isfinite(m["fid_inception"]["value"]) and m["fid_inception"]["n_generated"] == 20
        assert (d / name / "checkpoints" / "last.pt").exists() and (d / name / "samples" / "bank.npz").exists()
    # the family metrics of a VAE, and the VAE experiments, reach the outside VAE; not the likelihood model
    assert {"elbo", "iwae_nll", "active_units"} <= set(recs["mlp_vae"]["metrics"])
    assert "elbo" not in recs["gauss"]["metrics"]
    assert recs["mlp_vae"]["params"]["dec_hidden"] == 64 and recs["mlp_vae"]["params"]["channels"] == 1
    assert (d / "experiments" / "reconstructions").exists()
    # the MLP decoder is really in the checkpoint
    import torch

    ck = torch.load(d / "mlp_vae" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert any(k.startswith("mlp_dec.") for k in ck["model"]) and not any(k.startswith("dec.") for k in ck["model"])
    html = (d / "report" / "index.html").read_text()
    assert "mlp_vae" in html and "gauss" in html


@pytest.mark.slow
def test_a_family_registered_outside_trains_scores_and_reports(byo_study):
    """The tutorial's toy Family (one module, one registration line): its own step trained the model (its loss
    keys are in history.jsonl), metrics.json records the family and its loss keys, and the report shows the row
    and draws those keys (the curves figure exists beside the row), with no edit inside genbench."""
    d = byo_study / "runs" / "byo-mnist"
    rec = next(r for r in json.loads((d / "metrics.json").read_text())["models"] if r["model"] == "moments")
    assert rec["family"] == "moments" and rec["loss_keys"] == ["mean_err", "var_err"]
    assert np.isfinite(rec["metrics"]["fid_inception"]["value"]) and "elbo" not in rec["metrics"]
    steps = [json.loads(line) for line in (d / "moments" / "history.jsonl").read_text().splitlines()]
    steps = [r for r in steps if r["kind"] == "step"]
    assert steps and all({"mean_err", "var_err"} <= set(r) for r in steps)
    assert steps[-1]["loss"] < steps[0]["loss"]  # the family's step moved the weights the right way
    html = (d / "report" / "index.html").read_text()
    assert "moments" in html and (d / "report" / "figures" / "training_curves.png").exists()


@pytest.mark.slow
def test_outside_model_samples_from_its_checkpoint(byo_study, tmp_path):
    """``genbench sample`` rebuilds the outside model from the kind string in its checkpoint."""
    d = byo_study / "runs" / "byo-mnist"
    p = _run("sample", str(d / "mlp_vae"), "--n", "4", "--out", str(tmp_path / "s.png"), cwd=byo_study,
             pythonpath=byo_study / "src")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "s.png").stat().st_size > 0
    # without the package on the path: one line naming the module and the fix
    p = _run("sample", str(d / "mlp_vae"), "--n", "4", "--out", str(tmp_path / "t.png"), cwd=byo_study)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "no module named 'mypkg'" in p.stderr and "PYTHONPATH" in p.stderr


def _write_pngs(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    from PIL import Image

    for i, (img, lab) in enumerate(zip(x, y)):
        sub = folder / f"digit_{lab}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(sub / f"{i:04d}.png")


@pytest.fixture(scope="module")
def digits(mnist):
    """200 real MNIST training digits, 20 per class: uint8 (200, 1, 28, 28) and int64 (200,) labels."""
    tr = mnist["train"]
    y = tr.y.numpy()
    idx = np.concatenate([np.flatnonzero(y == c)[:20] for c in range(10)])
    return tr.x.numpy()[idx], y[idx]


@pytest.mark.slow
def test_folder_dataset_runs_the_smoke_study(tmp_path, digits):
    x, y = digits
    _write_pngs(tmp_path / "digits", x, y)
    (tmp_path / "folder_study.yaml").write_text(_tutorial_block("folder_study.yaml"))
    p = _run("run", "folder_study.yaml", "--profile", "smoke", "--out", "runs", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "runs" / "my-digits"
    s = json.loads((d / "metrics.json").read_text())
    info = s["dataset_info"]
    assert info["name"] == "digits" and info["image_shape"] == [1, 28, 28] and info["num_classes"] == 10
    assert info["class_names"] == [f"digit_{c}" for c in range(10)]
    assert (info["train"], info["test"], info["holdout"]) == (140, 40, 20)  # 4 of 20 per class to test
    recs = {r["model"]: r for r in s["models"]}
    assert set(recs) == {"vae", "real"}
    for r in recs.values():
        assert np.isfinite(r["metrics"]["fid_inception"]["value"])
    assert "conditional_accuracy" in recs["real"]["metrics"]  # the held-out real images carry their labels
    assert (d / "report" / "index.html").exists()
    # the run folder's study.yaml holds the absolute path: `genbench evaluate` works from any folder
    from genbench.studies.config import load_run_study

    cwd = os.getcwd()
    try:
        os.chdir("/")
        again = load_run_study(d / "study.yaml")
    finally:
        os.chdir(cwd)
    assert again.dataset_spec["path"] == str((tmp_path / "digits").resolve()) and again.dataset == "digits"


def test_npz_and_folder_give_the_same_dataset(tmp_path, digits):
    from genbench.data import load_dataset
    from genbench.data.custom import custom_info

    x, y = digits
    _write_pngs(tmp_path / "digits", x, y)
    np.savez(tmp_path / "digits.npz", x=x[:, 0], y=y)  # (N, H, W) works as well as (N, C, H, W)
    spec = {"kind": "folder", "path": str(tmp_path / "digits"), "test_fraction": 0.2, "split_seed": 0}
    a = load_dataset(spec, holdout=20)
    b = load_dataset({**spec, "kind": "npz", "path": str(tmp_path / "digits.npz")}, holdout=20)
    for split in ("train", "holdout", "test"):
        assert a[split].x.shape == b[split].x.shape and a[split].x.dtype.is_floating_point is False
        assert np.bincount(a[split].y.numpy(), minlength=10).tolist() == \
            np.bincount(b[split].y.numpy(), minlength=10).tolist()
    assert sorted(a["test"].x.reshape(len(a["test"]), -1).sum(1).tolist()) == \
        sorted(b["test"].x.reshape(len(b["test"]), -1).sum(1).tolist())  # the same images, PNG round trip exact
    assert a["train"].name.startswith("digits-") and a["train"].name != "digits"  # keyed by content
    # resized to image_size, converted to 3 channels
    c = load_dataset({**spec, "image_size": 32, "channels": 3}, holdout=20)
    assert c["train"].x.shape[1:] == (3, 32, 32) and c["train"].name != a["train"].name
    assert custom_info({**spec, "image_size": 32, "channels": 3}).image_shape == (3, 32, 32)


@pytest.mark.slow
def test_own_step_function_is_used(tmp_path):
    """A class with its own ``genbench_step`` is trained by it (no training_losses needed)."""
    mod = tmp_path / "stepmod_byo.py"
    mod.write_text(textwrap.dedent('''
        import torch
        from torch import nn

        class Const(nn.Module):
            genbench_family = "likelihood"
            calls = 0

            @staticmethod
            def genbench_step(model, opts, x, y, *, generator, autocast, ddp=None):
                Const.calls += 1
                loss = (model.mean - x.mean(0)).pow(2).mean()
                opts["model"].zero_grad()
                loss.backward()
                opts["model"].step()
                return {"loss": loss.item()}

            def __init__(self, *, image_shape=(1, 28, 28), num_classes=0):
                super().__init__()
                self.num_classes = 0
                self.mean = nn.Parameter(torch.zeros(image_shape))

            def sample(self, n, y=None, generator=None):
                return self.mean.detach().expand(n, *self.mean.shape).clamp(-1, 1)
    '''))
    sys.path.insert(0, str(tmp_path))
    try:
        import torch

        from genbench.studies.config import parse_study
        from genbench.training.loop import train
        from genbench.data.registry import Dataset

        study = parse_study({"name": "s", "dataset": "mnist", "batch_size": 32, "models": {"c": {
            "kind": "stepmod_byo:Const", "optimizer": {"lr": 0.1}, "epochs": 2}}}, "smoke")
        data = Dataset(torch.full((64, 1, 28, 28), 255, dtype=torch.uint8), torch.zeros(64, dtype=torch.long), 10,
                       "ones")
        train(study.models[0], data, tmp_path / "run")
        import stepmod_byo

        assert stepmod_byo.Const.calls == 4  # 2 epochs of 64 images in batches of 32
        hist = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in hist if r["kind"] == "epoch"] == [1, 2] and hist[-1]["loss"] < 1.0
    finally:
        sys.path.remove(str(tmp_path))


def test_entry_point_names_a_model(tmp_path, monkeypatch):
    """An installed package's ``genbench.models`` entry point is a model kind (here a dist-info folder on
    sys.path, which is what pip installs)."""
    (tmp_path / "ep_byo_models.py").write_text(textwrap.dedent('''
        from genbench.models.vae import ConvVAE

        class TinyVAE(ConvVAE):
            pass
    '''))
    info = tmp_path / "ep_byo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-byo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[genbench.models]\nep_byo_vae = ep_byo_models:TinyVAE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from genbench.errors import GenbenchError
    from genbench.families import resolve_kind
    from genbench.studies.config import parse_study

    mk = resolve_kind("ep_byo_vae")
    assert (mk.origin, mk.family, mk.cls.__name__) == ("entry point", "vae", "TinyVAE")
    study = parse_study({"name": "s", "dataset": "mnist", "models": {"v": {
        "kind": "ep_byo_vae", "params": {"latent_dim": 4}, "optimizer": {"lr": 1e-3}, "epochs": 1}}}, "smoke")
    assert study.models[0].params["image_size"] == 28 and study.models[0].family == "vae"
    with pytest.raises(GenbenchError, match=r"unknown model kind 'ep_byo_vea'.*entry point \(ep_byo_vae\)"):
        resolve_kind("ep_byo_vea")
