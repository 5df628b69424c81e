"""Runs that survive faults and bad input, and lose nothing.

- SIGKILL at random points (seeded), resumed: final weights and history equal an uninterrupted run.
- NaN/inf losses or gradients: the step is not applied, the run goes back to its last checkpoint with a lower
  learning rate, and stops with a one-line error (and ``status.json`` = diverged) after ``max_retries``.
- A finished study is not silently rerun.
- Malformed files fed to every file loader give GenbenchError/AssetError only (hypothesis).
- Bad study files give one line and exit code 2 through the CLI.
"""

import contextlib
import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from genbench.errors import GenbenchError
from genbench.io import read_jsonl
from genbench.studies.config import ModelConfig
from genbench.training.checkpoint import load_checkpoint
from genbench.training.loop import train


def _cfg(kind="vae", params=None, **kw):
    base = dict(name=kind, kind=kind, params=params or {"latent_dim": 4}, optimizer={"lr": 1e-3}, epochs=3,
                batch_size=64, seed=42, precision="fp32", dataset="mnist", log_every=2)
    base.update(kw)
    return ModelConfig(**base)


def _strip(hist):
    return [{k: v for k, v in r.items() if k not in ("seconds",)} for r in hist]


def _assert_same_run(a_dir: Path, b_dir: Path):
    a = load_checkpoint(a_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(b_dir / "checkpoints" / "last.pt")
    assert a["finished"] and b["finished"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for name in a["optimizers"]:
        sa, sb = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
        for i in sa:
            for k, v in sa[i].items():
                assert torch.equal(v, sb[i][k]), (name, i, k)
    assert (a["step"], a["images_seen"], a["epoch"]) == (b["step"], b["images_seen"], b["epoch"])
    assert _strip(read_jsonl(a_dir / "history.jsonl")) == _strip(read_jsonl(b_dir / "history.jsonl"))


# --------------------------------------------------------------------------------------------------------------
# Divergence


class _NaNAfter:
    """Wrap ``training_losses`` so that calls number ``bad`` (0-based, a set, or 'all') return a NaN loss."""

    def __init__(self, orig, bad):
        self.orig, self.bad, self.calls = orig, bad, 0

    def __call__(self, model, *a, **kw):
        out = self.orig(model, *a, **kw)
        i, self.calls = self.calls, self.calls + 1
        if self.bad == "all" or i in self.bad:
            out = dict(out, loss=out["loss"] * float("nan"))
        return out


def _inject_nan(monkeypatch, bad):
    from genbench.models.vae import ConvVAE

    orig = ConvVAE.__dict__["training_losses"]
    orig = getattr(orig, "_genbench_orig", orig)  # never wrap a wrapper
    hook = _NaNAfter(orig, bad)
    wrapper = lambda self, *a, **kw: hook(self, *a, **kw)  # noqa: E731
    wrapper._genbench_orig = orig
    monkeypatch.setattr(ConvVAE, "training_losses", wrapper)
    return hook


def test_nan_step_is_not_applied(mnist):
    from genbench.models import build_model
    from genbench.training.objectives import NonFiniteStep, likelihood_step, make_optimizers

    torch.manual_seed(0)
    model, family = build_model("vae", {"latent_dim": 4})
    opts = make_optimizers(model, family, {"lr": 1e-3})
    x = mnist["train"].x[:16].float() / 127.5 - 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # NaN in one parameter's gradient only (the loss stays finite).
    p = next(model.parameters())
    h = p.register_hook(lambda g: g * float("nan"))
    with pytest.raises(NonFiniteStep, match="gradient"):
        likelihood_step(model, opts, x, None, generator=torch.Generator().manual_seed(0),
                        autocast=contextlib.nullcontext)
    h.remove()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not opts["model"].state  # Adam never stepped


def test_one_nan_retries_with_lower_lr_and_finishes(tmp_path, mnist, monkeypatch, capsys):
    data = mnist["train"].subset(slice(0, 256))  # 4 steps per epoch
    cfg = _cfg(epochs=3, divergence={"max_retries": 2, "lr_factor": 0.25})
    hook = _inject_nan(monkeypatch, {5})  # the 6th step, in epoch 2
    out = train(cfg, data, tmp_path)
    assert out["steps"] == 12 and hook.calls == 12 + 2  # steps 5 and 6 of the first try were redone
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ck["finished"] and ck["divergence"] == {"retries": 1, "lr_scale": 0.25}
    assert ck["optimizers"]["model"]["param_groups"][0]["lr"] == pytest.approx(0.25e-3)
    hist = read_jsonl(tmp_path / "history.jsonl")
    ev = [r for r in hist if r["kind"] == "divergence"]
    assert len(ev) == 1 and ev[0]["at_step"] == 6 and ev[0]["step"] == 4 and ev[0]["action"] == "retry"
    assert ev[0]["lr_scale"] == 0.25 and "loss" in ev[0]["what"]
    steps = [r["step"] for r in hist if r["kind"] == "step"]
    assert steps == [2, 4, 6, 8, 10, 12]  # the failed try's lines were dropped, every step logged once
    assert all(math.isfinite(r["loss"]) for r in hist if r["kind"] in ("step", "epoch"))
    assert not (tmp_path / "status.json").exists()
    assert "learning rate x0.25 (retry 1/2)" in capsys.readouterr().err


def test_divergence_then_kill_resumes_with_the_lowered_lr(tmp_path, mnist, monkeypatch):
    """A run that diverged once and was then killed resumes with the lowered LR: same result as unkilled."""
    data = mnist["train"].subset(slice(0, 256))
    cfg = _cfg(epochs=3)
    _inject_nan(monkeypatch, {1})  # epoch 1: back to the epoch-0 checkpoint
    train(cfg, data, tmp_path / "full")
    _inject_nan(monkeypatch, {1})
    assert train(cfg, data, tmp_path / "part", stop_after_steps=8)["stopped"]  # killed in epoch 2
    _inject_nan(monkeypatch, set())
    train(cfg, data, tmp_path / "part", resume=True)
    _assert_same_run(tmp_path / "full", tmp_path / "part")


def test_persistent_nan_stops_after_max_retries(tmp_path, mnist, monkeypatch):
    data = mnist["train"].subset(slice(0, 256))
    cfg = _cfg(epochs=2, divergence={"max_retries": 2, "lr_factor": 0.5})
    _inject_nan(monkeypatch, "all")
    with pytest.raises(GenbenchError, match="diverged") as e:
        train(cfg, data, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "optimizer.lr" in msg and "--overwrite" in msg
    st = json.loads((tmp_path / "status.json").read_text())
    assert st["status"] == "diverged" and st["retry"] == 3 and st["lr_scale"] == 0.25
    ev = [r for r in read_jsonl(tmp_path / "history.jsonl") if r["kind"] == "divergence"]
    assert [(r["retry"], r["action"], r["lr_scale"]) for r in ev] == [(1, "retry", 0.5), (2, "retry", 0.25),
                                                                        (3, "stop", 0.25)]
    ck = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert ck["epoch"] == 0 and ck["divergence"]["retries"] == 2  # the last good state is kept
    # --overwrite clears the diverged mark.
    _inject_nan(monkeypatch, set())
    train(cfg, data, tmp_path, overwrite=True)
    assert not (tmp_path / "status.json").exists()


def test_divergence_settings_are_validated():
    from genbench.studies.config import parse_study

    raw = {"name": "s", "dataset": "mnist", "models": {"v": {"kind": "vae", "epochs": 1, "optimizer": {"lr": 1e-3}}}}
    assert parse_study(raw, "quick").models[0].divergence == {"max_retries": 3, "lr_factor": 0.5}
    for bad, needle in [({"lr_factor": 1.5}, "lr_factor: value 1.5 is out of range"),
                        ({"max_retries": -1}, "max_retries: value -1 is out of range"),
                        ({"max_retries": "x"}, "max_retries: expected int"),
                        ({"retries": 2}, "unknown field(s) retries")]:
        r = json.loads(json.dumps(raw))
        r["models"]["v"]["divergence"] = bad
        with pytest.raises(GenbenchError, match=None) as e:
            parse_study(r, "quick")
        assert needle in str(e.value)


# --------------------------------------------------------------------------------------------------------------
# SIGKILL at random points

_CHILD = r'''
import json, os, sys, time
import torch
out, threads, pause_at, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg_kw, n_images = json.loads(sys.argv[5]), int(sys.argv[6])
torch.set_num_threads(threads)
from genbench.data import load_dataset
from genbench.studies.config import ModelConfig
import genbench.training.loop as L

_step = L.STEPS["gan"]
def slow_step(*a, **kw):  # 5 ms per step so that a kill has a run to land in; numerics untouched
    time.sleep(0.005)
    return _step(*a, **kw)
L.STEPS["gan"] = slow_step

_replace, _n = os.replace, [0]
def replace(src, dst):  # pause inside the pause_at-th checkpoint write: temp file written, not yet in place
    if str(dst).endswith("last.pt"):
        _n[0] += 1
        if _n[0] == pause_at:
            open(marker, "w").close()
            time.sleep(120)
    return _replace(src, dst)
os.replace = replace

data = load_dataset("mnist")["train"].subset(slice(0, n_images))
L.train(ModelConfig(**cfg_kw), data, out, resume=True)
print("DONE", flush=True)
'''


def _last_step(hist_path: Path) -> int:
    try:
        return max((r.get("step", 0) for r in read_jsonl(hist_path) if r.get("kind") == "step"), default=0)
    except (OSError, ValueError):  # replaced while being read
        return -1


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tmp_path, mnist):
    """Three SIGKILLs per run at seeded random points: one at a random step of epoch 1, one inside a
    checkpoint write (temp file written, ``os.replace`` not yet done) at a random epoch end, one at a random
    later step; each followed by a resume. The final checkpoint (weights, Adam moments, counters) and history
    (timings aside) must equal the uninterrupted run's. The kill points are printed (``pytest -s``)."""
    n_images, bs, epochs = 768, 32, 4
    spe = n_images // bs  # 24 steps per epoch, 96 in all
    cfg_kw = dict(name="cgan", kind="cgan", params={"z_dim": 8, "g_widths": [32, 32], "d_widths": [32],
                  "num_classes": 10, "image_shape": [1, 28, 28], "real_label": 0.9, "dropout": 0.3},
                  optimizer={"lr": 2e-4, "betas": [0.5, 0.999]}, epochs=epochs, batch_size=bs, seed=7,
                  precision="fp32", dataset="mnist", log_every=1)
    full = tmp_path / "full"
    train(ModelConfig(**cfg_kw), mnist["train"].subset(slice(0, n_images)), full)

    part, marker = tmp_path / "part", tmp_path / "paused"
    hist = part / "history.jsonl"
    rng = random.Random(20240607)
    threads = torch.get_num_threads()

    def launch(pause_at=0):
        marker.unlink(missing_ok=True)
        return subprocess.Popen([sys.executable, "-c", _CHILD, str(part), str(threads), str(pause_at),
                                 str(marker), json.dumps(cfg_kw), str(n_images)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def kill_when(proc, cond, what):
        t0 = time.monotonic()
        while not cond():
            assert proc.poll() is None, f"run ended before the kill ({what}): {proc.stderr.read()[-2000:]}"
            assert time.monotonic() - t0 < 60, f"kill point never reached ({what})"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = load_checkpoint(part / "checkpoints" / "last.pt")
        tmp = sorted(p.name for p in (part / "checkpoints").glob(".*.tmp"))
        return {"what": what, "last_logged_step": _last_step(hist), "checkpoint_epoch": ck["epoch"],
                "checkpoint_step": ck["step"], "temp_files_left": tmp}

    kills = []
    # 1: a random step inside epoch 1 (not its last: the kill must lose part of an epoch).
    target = rng.randint(3, spe - 4)
    kills.append(kill_when(launch(), lambda: _last_step(hist) >= target, f"epoch 1, after step {target}"))
    # 2: inside the checkpoint write at the end of a random epoch of the resumed process.
    n_write = rng.randint(1, epochs - 2)
    kills.append(kill_when(launch(pause_at=n_write), marker.exists, f"checkpoint write #{n_write} of this process"))
    # 3: a random step away from an epoch end, beyond every step the history held at kill 2 (those lines are
    # still there until the resumed process cuts the history back to its checkpoint).
    seen = kills[-1]["last_logged_step"]
    target = rng.choice([s for s in range(seen + 1, epochs * spe - 2) if 2 < s % spe < spe - 2])
    kills.append(kill_when(launch(), lambda: _last_step(hist) >= target, f"step {target}"))
    proc = launch()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "DONE" in out, err[-3000:]

    print(f"\n{len(kills)} kill points tried:")
    for k in kills:
        print("  ", k)
    assert kills[0]["last_logged_step"] > kills[0]["checkpoint_step"]  # mid-epoch: steps were lost
    assert kills[1]["temp_files_left"], "the kill inside a checkpoint write left no temp file"
    assert kills[2]["last_logged_step"] > kills[2]["checkpoint_step"]
    assert not list((part / "checkpoints").glob(".*.tmp"))  # the resume cleaned up
    _assert_same_run(full, part)


# --------------------------------------------------------------------------------------------------------------
# The CLI: finished studies and bad study files


def _cli(monkeypatch, capsys, *args):
    """Run ``genbench ARGS`` in this process; returns (exit code, non-empty stderr lines)."""
    from genbench import cli

    monkeypatch.setattr(sys, "argv", ["genbench", *args])
    capsys.readouterr()
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code
    return code, [l for l in capsys.readouterr().err.splitlines() if l.strip()]


def test_run_refuses_a_finished_study_without_resume_or_overwrite(tmp_path, monkeypatch, capsys):
    from genbench.studies import runner

    done = tmp_path / "mnist-four"
    done.mkdir()
    (done / "metrics.json").write_text("{}")
    code, err = _cli(monkeypatch, capsys, "run", "--profile", "smoke", "--out", str(tmp_path))
    assert code == 2 and len(err) == 1, err
    assert "already holds a finished study" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]

    class Reached(Exception):
        pass

    def reached(*a, **k):
        raise Reached

    monkeypatch.setattr(runner, "prepare_data", reached)  # past the guard = the pipeline starts
    for flag in ("--resume", "--overwrite"):
        with pytest.raises(Reached):
            _cli(monkeypatch, capsys, "run", "--profile", "smoke", "--out", str(tmp_path), flag)
    (done / "metrics.json").unlink()  # an interrupted study (no metrics.json) continues without a flag
    with pytest.raises(Reached):
        _cli(monkeypatch, capsys, "run", "--profile", "smoke", "--out", str(tmp_path))
