"""The trainer: a run interrupted mid-epoch and resumed equals an uninterrupted run (weights and history)."""

import dataclasses

import pytest
import torch

from genbench.errors import GenbenchError
from genbench.io import read_jsonl
from genbench.studies.config import ModelConfig
from genbench.training.checkpoint import load_checkpoint
from genbench.training.hooks import Hook, StopRun
from genbench.training.loop import train


class _KillAfter(Hook):
    """A kill after ``n`` steps of this call: the run stops there without writing a checkpoint."""

    def __init__(self, n: int):
        self.left = n

    def on_step(self, state, logs):
        self.left -= 1
        if self.left == 0:
            raise StopRun


def _cfg(kind="vae", params=None, **kw):
    base = dict(name=kind, kind=kind, params=params or {"latent_dim": 4}, optimizer={"lr": 1e-3}, epochs=3,
                batch_size=64, seed=42, precision="fp32", dataset="mnist", log_every=2)
    base.update(kw)
    return ModelConfig(**base)


def _strip(hist):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in hist]


@pytest.mark.slow
@pytest.mark.parametrize("kind,params,ema", [
    ("vae", {"latent_dim": 4}, None),
    ("cgan", {"z_dim": 8, "g_widths": [32, 32], "d_widths": [32], "num_classes": 10, "image_shape": [1, 28, 28],
              "real_label": 0.9}, None),
    ("ddpm", {"widths": [8, 16, 16], "num_classes": 10}, 0.9),
    ("flow", {"widths": [8, 16, 16], "num_classes": 10}, 0.9),
])
def test_resume_equals_uninterrupted(tmp_path, mnist, kind, params, ema):
    data = mnist["train"].subset(slice(0, 512))
    cfg = _cfg(kind, params, ema_decay=ema, epochs=2 if kind in ("ddpm", "flow") else 3)
    full = tmp_path / "full"
    train(cfg, data, full)
    part = tmp_path / "part"
    out = train(cfg, data, part, hooks=[_KillAfter(11)])  # "crash" mid epoch 2, after the epoch-1 checkpoint
    assert out["stopped"]
    train(cfg, data, part, resume=True)
    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(part / "checkpoints" / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    if ema:
        for k in a["ema"]["model"]:
            assert torch.equal(a["ema"]["model"][k], b["ema"]["model"][k]), k
    assert a["step"] == b["step"] and a["images_seen"] == b["images_seen"]
    assert _strip(read_jsonl(full / "history.jsonl")) == _strip(read_jsonl(part / "history.jsonl"))


@pytest.mark.slow
def test_existing_run_needs_resume_or_overwrite(tmp_path, mnist):
    data = mnist["train"].subset(slice(0, 128))
    cfg = _cfg(epochs=1)
    train(cfg, data, tmp_path)
    with pytest.raises(GenbenchError, match="--resume"):
        train(cfg, data, tmp_path)
    changed = dataclasses.replace(cfg, params={"latent_dim": 5})
    with pytest.raises(GenbenchError, match="different model config"):
        train(changed, data, tmp_path, resume=True)


@pytest.mark.slow
def test_checkpoint_from_another_kind_is_refused(tmp_path, mnist):
    train(_cfg(epochs=1), mnist["train"].subset(slice(0, 128)), tmp_path)
    with pytest.raises(GenbenchError, match="holds a 'vae' model"):
        load_checkpoint(tmp_path / "checkpoints" / "last.pt", expect_kind="gan")


def test_a_locked_run_folder_is_refused(tmp_path, mnist):
    from genbench.training.loop import run_lock

    with run_lock(tmp_path):
        with pytest.raises(GenbenchError, match="another genbench process"):
            train(_cfg(epochs=1), mnist["train"].subset(slice(0, 128)), tmp_path)


def test_short_disk_stops_cleanly(tmp_path, mnist, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10, 10, 1000))
    with pytest.raises(GenbenchError, match="MB free"):
        train(_cfg(epochs=1), mnist["train"].subset(slice(0, 128)), tmp_path)
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


@pytest.mark.slow
def test_two_fresh_runs_are_bit_identical(tmp_path, mnist):
    data = mnist["train"].subset(slice(0, 256))
    cfg = _cfg(epochs=1)
    train(cfg, data, tmp_path / "a")
    train(cfg, data, tmp_path / "b")
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("kind,params", [
    ("vae", {"latent_dim": 4}),
    ("gan", {"z_dim": 8, "g_widths": [32, 32], "d_widths": [32], "image_shape": [1, 28, 28]}),
])
def test_fused_adam_keeps_the_loss_curve(tmp_path, mnist, kind, params):
    """The trainer's default fused Adam (optimizer.fused, a speed switch) follows torch's default multi-tensor Adam:
    the same update up to float round-off, so 24 logged steps of the same run agree closely."""
    data = mnist["train"].subset(slice(0, 768))
    runs = {}
    for fused in (True, False):
        cfg = _cfg(kind, params, optimizer={"lr": 1e-3, "fused": fused}, epochs=2, precision="bf16", log_every=1)
        train(cfg, data, tmp_path / str(fused))
        runs[fused] = [r for r in read_jsonl(tmp_path / str(fused) / "history.jsonl") if r.get("kind") == "step"]
        ck = load_checkpoint(tmp_path / str(fused) / "checkpoints" / "last.pt")
        assert all(o["param_groups"][0]["fused"] is fused for o in ck["optimizers"].values())
    keys = [k for k in runs[True][0] if k.startswith("loss")]
    assert len(runs[True]) == len(runs[False]) >= 20 and keys
    for a, b in zip(runs[True], runs[False]):
        for k in keys:
            assert abs(a[k] - b[k]) <= 0.02 * abs(b[k]) + 1e-3, (a["step"], k, a[k], b[k])


@pytest.mark.slow
@pytest.mark.parametrize("switch", [{"precision": "bf16"}, {"channels_last": True}, {"compile": True}])
def test_speed_switches_keep_the_loss_curve(tmp_path, mnist, switch):
    """Each speed switch of the trainer (bf16 autocast, channels_last, torch.compile) against the plain fp32 NCHW
    eager run of a small conv VAE on real MNIST: 16 logged steps agree within 2% (bf16 round-off grows over the
    steps; channels_last and compile change only the summation order)."""
    data = mnist["train"].subset(slice(0, 512))
    hist = {}
    for name, kw in (("base", {}), ("switch", switch)):
        cfg = _cfg("vae", {"latent_dim": 4}, epochs=2, log_every=1, **kw)
        train(cfg, data, tmp_path / name)
        hist[name] = [r["loss"] for r in read_jsonl(tmp_path / name / "history.jsonl") if r.get("kind") == "step"]
        assert load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["config"] == cfg.to_dict()
    assert len(hist["base"]) == len(hist["switch"]) == 16
    for i, (a, b) in enumerate(zip(hist["switch"], hist["base"])):
        assert abs(a - b) <= 0.02 * abs(b), (i, a, b)


@pytest.mark.slow
def test_format1_ddpm_checkpoint_loads_with_its_sampler_settings_moved(tmp_path, mnist):
    """Checkpoints written before issue 14 (format 1) kept the DDPM's sampler settings in its params; loading
    moves them into config.sampling, so the run samples, resumes and evaluates as before."""
    from genbench.io import atomic_torch_save
    from genbench.families import load_trained

    data = mnist["train"].subset(slice(0, 128))
    params = {"widths": [8, 16, 16], "num_classes": 10, "timesteps": 50}
    cfg = _cfg("ddpm", params, epochs=1, sampling={"sampler": "ddim", "steps": 10, "guidance_scale": 1.5,
                                                    "eta": 0.0})
    train(cfg, data, tmp_path / "run")
    ck_path = tmp_path / "run" / "checkpoints" / "last.pt"
    ck = torch.load(ck_path, weights_only=True)
    assert ck["format_version"] == 2 and ck["config"]["sampling"]["steps"] == 10
    old = dict(ck, format_version=1)  # what a format-1 checkpoint held
    old["config"] = {k: v for k, v in ck["config"].items() if k != "sampling"}
    old["config"]["model"] = {"kind": "ddpm", "resolved_params": {**params, "sampler": "ddim",
                                                                   "sampler_steps": 10, "guidance_scale": 1.5}}
    atomic_torch_save(ck_path, old)
    got = load_checkpoint(ck_path, expect_kind="ddpm")
    assert got["config"]["model"]["resolved_params"] == params
    assert got["config"]["sampling"] == {"sampler": "ddim", "steps": 10, "guidance_scale": 1.5, "eta": 0.0}
    model, ck2 = load_trained(tmp_path / "run")
    assert not hasattr(model, "sampler") and ck2["config"]["sampling"]["guidance_scale"] == 1.5
    assert train(cfg, data, tmp_path / "run", resume=True)["epochs"] == 1  # the finished run is recognised
    old["config"]["model"]["resolved_params"] = dict(params)  # format 1 without sampler params: old defaults
    atomic_torch_save(ck_path, old)
    assert load_checkpoint(ck_path)["config"]["sampling"] == {"sampler": "ddim", "steps": 50,
                                                              "guidance_scale": 1.0, "eta": 0.0}
