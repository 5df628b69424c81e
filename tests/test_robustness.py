"""Runs that survive faults and bad input, and lose nothing.

- SIGKILL at random points (seeded), resumed: final weights and history equal an uninterrupted run.
- NaN/inf losses or gradients: the step is not applied, the run goes back to its last checkpoint with a lower
  learning rate, and stops with a one-line error (and ``status.json`` = diverged) after ``max_retries``.
- A finished study is not silently rerun; a second run of it stops at once.
- Bad study files give one line and exit code 2 through the CLI.

Malformed files fed to every file loader are in test_malformed_files.py.
"""

import contextlib
import json
import math
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


from conftest import cli_in_process  # noqa: E402
from test_training import _KillAfter, _cfg, _strip  # noqa: E402  (one config, history and kill helper for both)


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
    from genbench.families import build_model
    from genbench.training.objectives import NonFiniteStep, likelihood_step, make_optimizers

    torch.manual_seed(0)
    model, family = build_model("vae", {"latent_dim": 4})
    opts = make_optimizers({"model": model.parameters()}, {"lr": 1e-3})
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_divergence_then_kill_resumes_with_the_lowered_lr(tmp_path, mnist, monkeypatch):
    """A run that diverged once and was then killed resumes with the lowered LR: same result as unkilled."""
    data = mnist["train"].subset(slice(0, 256))
    cfg = _cfg(epochs=3)
    _inject_nan(monkeypatch, {1})  # epoch 1: back to the epoch-0 checkpoint
    train(cfg, data, tmp_path / "full")
    _inject_nan(monkeypatch, {1})
    assert train(cfg, data, tmp_path / "part", hooks=[_KillAfter(8)])["stopped"]  # killed in epoch 2
    _inject_nan(monkeypatch, set())
    train(cfg, data, tmp_path / "part", resume=True)
    _assert_same_run(tmp_path / "full", tmp_path / "part")


@pytest.mark.slow
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
                        ({"retries": 2}, "divergence.retries: unknown key; did you mean `max_retries`?")]:
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
import dataclasses
import genbench.families as F
import genbench.training.loop as L

_step = F.get_family("gan").step
def slow_step(*a, **kw):  # 5 ms per step so that a kill has a run to land in; numerics untouched
    time.sleep(0.005)
    return _step(*a, **kw)
F.register_family(dataclasses.replace(F.get_family("gan"), step=slow_step), replace=True)

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


@pytest.mark.slow
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
    # The child runs with this process's thread count on the same machine: the same kernels and reduction order,
    # so bit-equality with the in-process run is a fair demand (another thread count would change the sums).
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


def test_run_refuses_a_finished_study_without_resume_or_overwrite(tmp_path, monkeypatch):
    """Finished = the report was written (finished.json). A study killed after metrics.json but before its report
    is not finished and continues without a flag."""
    from genbench.studies import runner

    done = tmp_path / "mnist-four"
    done.mkdir()
    (done / "metrics.json").write_text("{}")
    (done / "finished.json").write_text("{}")
    code, err, _ = cli_in_process("run", "--profile", "smoke", "--out", str(tmp_path))
    assert code == 2 and len(err) == 1, err
    assert "already holds a finished study" in err[0] and "--resume" in err[0] and "--overwrite" in err[0]

    class Reached(Exception):
        pass

    def reached(*a, **k):
        raise Reached

    monkeypatch.setattr(runner, "prepare_data", reached)  # past the guard = the pipeline starts
    for flag in ("--resume", "--overwrite"):
        with pytest.raises(Reached):
            cli_in_process("run", "--profile", "smoke", "--out", str(tmp_path), flag)
    (done / "finished.json").write_text("{}")
    (done / "finished.json").unlink()  # killed before the report: metrics.json alone does not mean finished
    with pytest.raises(Reached):
        cli_in_process("run", "--profile", "smoke", "--out", str(tmp_path))


def test_a_second_run_of_the_same_study_stops_at_once(tmp_path):
    """The whole pipeline holds the study lock: a second `genbench run` on the same folder gets one line."""
    import fcntl

    d = tmp_path / "mnist-four"
    d.mkdir()
    with open(d / ".study.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process's run, as seen from this one
        code, err, _ = cli_in_process("run", "--profile", "smoke", "--out", str(tmp_path))
    assert code == 2 and len(err) == 1 and "another genbench process is running the study" in err[0], err

_ORIG_STUDY = (Path(__file__).parent.parent / "studies" / "mnist_four.yaml").read_text()


@pytest.mark.parametrize("old,new,needle", [
    ("dataset: mnist", "dataset: imagenet", "bad.yaml.dataset: unknown dataset 'imagenet'; choose one of mnist"),
    ("epochs: {smoke: 1, quick: 30, full: 40}", "epochs: ten", "bad.yaml.models.vae.epochs: expected int, got str"),
    ("epochs: {smoke: 1, quick: 30, full: 40}", "epochs: 0", "bad.yaml.models.vae.epochs: value 0 is out of range"),
    ("optimizer: {lr: 1.0e-3}", "optimizer: {lr: 5}", "bad.yaml.models.vae.optimizer.lr: value 5.0 is out of range"),
    ("batch_size: 128", "batch_size: -1", "bad.yaml.batch_size: value -1 is out of range"),
    ("channels_last: true ", "channels_last: maybe ", "bad.yaml.models.vae.channels_last: expected bool, got str"),
    ("optimizer: {lr: 1.0e-3}", "optimizer: {lr: 1.0e-3, fused: 1}",
     "bad.yaml.models.vae.optimizer.fused: expected bool, got int"),
    ("sample_batch: {smoke: 100,", "sample_batch: {smoke: 0,", "bad.yaml.evaluation.sample_batch: value 0 is out of range"),
    ("params: {latent_dim: 20,", "params: {latent_dimm: 20,", "bad.yaml.models.vae.params: 'vae' takes no parameter(s) 'latent_dimm'"),
    ("ema_decay: 0.999 ", "ema_decay: 1.5 ", "bad.yaml.models.vae.ema_decay: value 1.5 is out of range"),
    ("n_inception: {smoke: 20,", "n_inception: {smoke: 200,", "n_inception (200) must not exceed n_samples (100)"),
    ("epochs: {smoke: 1, quick: 30, full: 40}", "epochs: {quick: 40}", "has no entry for profile 'smoke'"),
    ("train_subset: {smoke: 1024,", "train_subset: {smoke: -5,", "bad.yaml.train_subset: value -5 is out of range"),
    ("seed: 42", "seed: 4.2", "bad.yaml.seed: expected int, got float"),
    ("name: mnist-four", "name: ../escape", "bad.yaml.name: value '../escape' is out of range; give 1-100 letters, "
     "digits, '.', '_' or '-'"),
    ("  vae:\n    kind: vae", "  vae:\n    kind: vae\n    divergence: {lr_factor: 2}",
     "bad.yaml.models.vae.divergence.lr_factor: value 2.0 is out of range"),
    ("name: mnist-four", "name: [mnist", "not valid YAML"),
    ("name: mnist-four", "name: 2024-13-45", "not valid YAML"),
    (None, "- just\n- a list\n", "a study file must be a YAML mapping"),
    (None, b"\xff\xfe\x00garbage", "give a UTF-8 YAML file"),
])
@pytest.mark.parametrize("command", ["run", "train"])
def test_bad_study_file_gives_one_line_and_exit_2(tmp_path, old, new, needle, command):
    bad = tmp_path / "bad.yaml"
    if old is None:
        bad.write_bytes(new if isinstance(new, bytes) else new.encode())
    else:
        assert old in _ORIG_STUDY, old
        bad.write_text(_ORIG_STUDY.replace(old, new, 1))
    args = (["run", str(bad)] if command == "run" else ["train", "vae", "--study", str(bad)])
    code, err, _ = cli_in_process(*args, "--profile", "smoke", "--out", str(tmp_path / "out"))
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("genbench: error: ") and needle in err[0], err[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written


@pytest.mark.slow
def test_a_diverged_model_is_marked_in_the_report_and_the_others_are_evaluated(tmp_path, monkeypatch):
    """The VAE's loss is NaN at every step: its run stops after max_retries, the study goes on with the GAN,
    metrics.json lists the VAE under ``diverged`` and the report says so instead of plotting it."""
    import json

    _inject_nan(monkeypatch, "all")
    code, err, _ = cli_in_process("run", "--profile", "smoke", "--out", str(tmp_path),
                     "--only", "vae", "--only", "gan")
    assert code in (0, None), err[-5:]
    summary = json.loads((tmp_path / "mnist-four" / "metrics.json").read_text())
    assert [r["model"] for r in summary["models"]] == ["gan", "real"]
    assert summary["diverged"]["vae"]["status"] == "diverged" and "diverged" in summary["diverged"]["vae"]["message"]
    html = (tmp_path / "mnist-four" / "report" / "index.html").read_text()
    assert "vae diverged" in html and "samples_vae.png" not in html
    assert any("vae" in line and "diverged" in line for line in err)
