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
import re
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


# --------------------------------------------------------------------------------------------------------------
# Malformed files fed to every file loader: only GenbenchError / AssetError may come out (hypothesis)

import gzip  # noqa: E402
import io as _io  # noqa: E402
import pickle  # noqa: E402
import tempfile  # noqa: E402
from unittest import mock  # noqa: E402

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from genbench.errors import AssetError  # noqa: E402

N_EXAMPLES = {"mnist_pickle": 200, "mnist_npz_cache": 100, "asset_file": 50, "idx_file": 150, "quickdraw_npy": 75,
              "cifar10_batch": 100, "checkpoint": 150, "history_jsonl": 100, "study_yaml_text": 150,
              "study_fields": 200}
"""max_examples per property test: 1,275 malformed inputs in all (plus the explicit cases below)."""
TRIED = {k: 0 for k in N_EXAMPLES}
_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _one_line_error(exc_type, fn, *a, **kw):
    """Call ``fn``; it may succeed or raise ``exc_type`` with a one-line message. Anything else fails."""
    try:
        return fn(*a, **kw)
    except exc_type as e:
        msg = str(e)
        assert msg and "\n" not in msg, repr(msg)
        return e


_dtypes = st.sampled_from([np.float32, np.float64, np.uint8, np.int64, np.int32, np.bool_, np.float16])
_shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)
def _full(shape, fill, dtype):
    with np.errstate(invalid="ignore"):
        return np.full(shape, fill).astype(dtype)


_arrays = st.builds(lambda dt, sh, fill: _full(sh, fill, dt), _dtypes, _shapes,
                    st.sampled_from([0, 0.5, 1, 255, -3, float("nan"), float("inf")]))
_right_arrays = st.tuples(st.integers(0, 4), st.sampled_from([0.0, 0.25, 0.999, 1.0, -0.1, float("nan")]),
                          st.sampled_from([0, 9, 10, -1])).map(
    lambda t: (np.full((t[0], 784), t[1], np.float32), np.full((t[0],), t[2], np.int64)))
_leaf = st.one_of(_arrays, st.integers(), st.text(max_size=5), st.none(), _right_arrays)
_nested = st.recursive(_leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.lists(c, max_size=4).map(tuple)),
                       max_leaves=8)
# Exactly the expected ((x, y), (x, y), (x, y)) frame with right/wrong arrays inside, or anything nested.
_mnist_like = st.one_of(st.tuples(_right_arrays, _right_arrays, _right_arrays),
                        st.tuples(*[st.tuples(_arrays, _arrays)] * 3), _nested)


def _gz_pickle(obj) -> bytes:
    return gzip.compress(pickle.dumps(obj, protocol=2))


_mnist_files = st.one_of(
    st.just(b""),
    st.binary(max_size=3000),  # random bytes (almost never gzip)
    st.binary(max_size=3000).map(gzip.compress),  # gzip, not a pickle
    _mnist_like.map(_gz_pickle),  # a pickle of the wrong structure, dtypes, dims or values
    st.tuples(_mnist_like.map(_gz_pickle), st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])]),  # cut
    st.tuples(_mnist_like.map(_gz_pickle), st.integers(0, 10**6), st.integers(1, 255)).map(  # one byte changed
        lambda t: t[0][: t[1] % max(len(t[0]), 1)] + bytes([(t[0][t[1] % max(len(t[0]), 1)] ^ t[2])
                                                             if t[0] else 1]) + t[0][t[1] % max(len(t[0]), 1) + 1:]),
)


@settings(max_examples=N_EXAMPLES["mnist_pickle"], **_SETTINGS)
@given(blob=_mnist_files)
def test_mnist_asset_decoder_only_raises_asset_error(blob):
    from genbench.data import mnist as M

    TRIED["mnist_pickle"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "mnist.pkl.gz"
        p.write_bytes(blob)
        with mock.patch.object(M, "fetch_asset", lambda name: p):
            out = _one_line_error(AssetError, M.convert_mnist)
    assert isinstance(out, AssetError)  # nothing here is the real MNIST


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/genbench-pickle-ran",))


def test_mnist_asset_decoder_runs_no_code():
    from genbench.data import mnist as M

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "mnist.pkl.gz"
        p.write_bytes(_gz_pickle(((_Evil(), 1), (2, 3), (4, 5))))
        with mock.patch.object(M, "fetch_asset", lambda name: p), pytest.raises(AssetError, match="not allowed"):
            M.convert_mnist()
    assert not Path("/tmp/genbench-pickle-ran").exists()


def test_real_mnist_asset_still_decodes():
    from genbench.data.assets import ASSETS
    from genbench.data.mnist import decode_mnist_pickle

    parts = decode_mnist_pickle(ASSETS["mnist"].path)
    assert [len(x) for x, _ in parts] == [50000, 10000, 10000]


def _npz(**arrays) -> bytes:
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_npz_files = st.one_of(
    st.just(b""), st.binary(max_size=2000),
    st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test", "other"]), _arrays,
                    max_size=5).map(lambda d: _npz(**d)),
    st.tuples(st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test"]), _arrays, min_size=4),
              st.floats(0, 1)).map(lambda t: (lambda b: b[: int(len(b) * t[1])])(_npz(**t[0]))),
)


@settings(max_examples=N_EXAMPLES["mnist_npz_cache"], **_SETTINGS)
@given(cache=_npz_files, asset=st.one_of(st.none(), st.binary(max_size=500)))
def test_mnist_cache_and_asset_only_raise_asset_error(cache, asset):
    """A damaged converted cache is rejected and rebuilt from the asset; a damaged (or absent) asset then
    fails its checksum: AssetError, with no download attempted."""
    from genbench.data import assets as A
    from genbench.data.mnist import load_mnist

    TRIED["mnist_npz_cache"] += 1
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_HOME": d}), \
            mock.patch.object(A.subprocess, "run", side_effect=AssertionError("no downloads in tests")):
        (Path(d) / "datasets").mkdir()
        (Path(d) / "datasets" / "mnist.npz").write_bytes(cache)
        if asset is not None:
            A.ASSETS["mnist"].path.parent.mkdir(parents=True)
            A.ASSETS["mnist"].path.write_bytes(asset)
        out = _one_line_error(AssetError, load_mnist, fetch=asset is not None)
    assert isinstance(out, AssetError)


def test_mnist_cache_with_right_shapes_but_wrong_dtypes_or_labels_is_rejected(tmp_path, monkeypatch):
    from genbench.data import mnist as M

    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(M, "convert_mnist", lambda: (_ for _ in ()).throw(AssetError("rebuild")))
    good = {"x_train": np.zeros((60000, 1, 28, 28), np.uint8), "y_train": np.zeros(60000, np.int64),
            "x_test": np.zeros((10000, 1, 28, 28), np.uint8), "y_test": np.zeros(10000, np.int64)}
    (tmp_path / "datasets").mkdir()
    cache = tmp_path / "datasets" / "mnist.npz"
    for key, bad in [("x_train", good["x_train"].astype(np.int8)), ("y_test", good["y_test"].astype(np.float64)),
                     ("y_train", np.full(60000, 10, np.int64)), ("y_test", np.zeros(9999, np.int64))]:
        np.savez(cache, **{**good, key: bad})
        with pytest.raises(AssetError, match="rebuild"):
            M.load_mnist()
    np.savez(cache, **good)  # right shapes and types, but all zeros and written without a checksum record
    with pytest.raises(AssetError, match="rebuild"):
        M.load_mnist()
    from genbench.data.cache import save_arrays

    save_arrays("mnist", good, source="test")  # as written from a verified asset: trusted while it matches
    assert M.load_mnist()["x_train"].dtype == np.uint8


@settings(max_examples=N_EXAMPLES["asset_file"], **_SETTINGS)
@given(blob=st.binary(max_size=5000), name=st.sampled_from(["mnist", "inception"]))
def test_any_asset_file_fails_its_checksum_cleanly(blob, name):
    from genbench.data import assets as A

    TRIED["asset_file"] += 1
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_HOME": d}):
        A.ASSETS[name].path.parent.mkdir(parents=True)
        A.ASSETS[name].path.write_bytes(blob)
        e = _one_line_error(AssetError, A.fetch_asset, name)
        assert isinstance(e, AssetError) and "corrupt" in str(e)
        A.ASSETS[name].path.unlink()
        A.ASSETS[name].path.mkdir()  # a folder where the file should be
        assert isinstance(_one_line_error(AssetError, A.verify_asset, A.ASSETS[name]), AssetError)


def _idx(magic: int, dims: list[int], data: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + data


_idx_files = st.one_of(
    st.just(b""), st.binary(max_size=2000), st.binary(max_size=2000).map(gzip.compress),
    st.tuples(st.sampled_from([0x801, 0x803, 0x802, 0x808, 0x80D, 0x0, 0x1803, 0x804]),
              st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 30), max_size=4), st.binary(max_size=3000)).map(
        lambda t: gzip.compress(_idx(*t))),  # wrong magic, wrong dims, sizes that do not match
    st.tuples(st.integers(0, 20), st.integers(0, 30), st.integers(0, 30), st.floats(0, 1)).map(  # valid, then cut
        lambda t: (lambda b: b[: int(len(b) * t[3])])(gzip.compress(_idx(0x803, list(t[:3]), bytes(t[0] * t[1] * t[2]))))),
    st.tuples(st.integers(0, 20), st.integers(0, 30), st.integers(0, 30)).map(  # valid file, wrong image size
        lambda t: gzip.compress(_idx(0x803, list(t), bytes(t[0] * t[1] * t[2])))),
)


@settings(max_examples=N_EXAMPLES["idx_file"], **_SETTINGS)
@given(images=_idx_files, labels=st.one_of(_idx_files, st.integers(0, 20).map(
    lambda n: gzip.compress(_idx(0x801, [n], bytes(range(n)))))))
def test_idx_loader_only_raises_asset_error(images, labels):
    """Fashion-MNIST's IDX reader and loader (checksums bypassed: the files are given to the conversion)."""
    from genbench.data import fashion_mnist as F

    TRIED["idx_file"] += 1
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_HOME": d}), \
            mock.patch.object(F, "verify_debian_asset", lambda asset, src: Path(d)):
        for prefix in ("train", "t10k"):
            (Path(d) / f"{prefix}-images-idx3-ubyte.gz").write_bytes(images)
            (Path(d) / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(labels)
        _one_line_error(AssetError, F.read_idx, Path(d) / "train-images-idx3-ubyte.gz")
        out = _one_line_error(AssetError, F.load_fashion_mnist, d)
        if not isinstance(out, AssetError):
            assert out["x_train"].shape[1:] == (1, 28, 28) and out["y_train"].shape == (len(out["x_train"]),)


@settings(max_examples=N_EXAMPLES["quickdraw_npy"], **_SETTINGS)
@given(blob=st.one_of(st.just(b""), st.binary(max_size=2000),
                      st.tuples(_arrays, st.floats(0, 1)).map(
                          lambda t: (lambda b: b[: max(1, int(len(b) * t[1]))])(_npy(t[0]))),
                      _arrays.map(lambda a: _npy(a)),
                      st.integers(0, 12).map(lambda n: _npy(np.zeros((n, 784), np.uint8)))))
def test_quickdraw_loader_only_raises_asset_error(blob):
    from genbench.data.quickdraw import load_quickdraw

    TRIED["quickdraw_npy"] += 1
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_QUICKDRAW_DIR": d}):
        (Path(d) / "cat.npy").write_bytes(blob)
        out = _one_line_error(AssetError, load_quickdraw, None, ["cat"], train_per_class=5, test_per_class=3)
        if not isinstance(out, AssetError):
            assert out["x_train"].shape == (5, 1, 28, 28) and out["x_test"].shape == (3, 1, 28, 28)


def _npy(a) -> bytes:
    buf = _io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


_cifar_like = st.one_of(
    st.fixed_dictionaries({b"data": _arrays, b"labels": st.lists(st.integers(-2, 12), max_size=5)}),
    st.integers(0, 4).map(lambda n: {b"data": np.zeros((n, 3072), np.uint8), b"labels": [3] * n}),
    st.dictionaries(st.sampled_from([b"data", b"labels", "data"]), _leaf, max_size=3), _nested)


@settings(max_examples=N_EXAMPLES["cifar10_batch"], **_SETTINGS)
@given(blob=st.one_of(st.just(b""), st.binary(max_size=2000), _cifar_like.map(lambda o: pickle.dumps(o, 2)),
                      st.tuples(_cifar_like, st.floats(0, 1)).map(
                          lambda t: (lambda b: b[: int(len(b) * t[1])])(pickle.dumps(t[0], 2)))),
       meta=st.one_of(st.binary(max_size=200), st.just(pickle.dumps({b"label_names": [b"cat"] * 10})),
                      st.just(pickle.dumps([1, 2]))))
def test_cifar10_loader_only_raises_asset_error(blob, meta):
    from genbench.data.cifar10 import FILES, load_cifar10

    TRIED["cifar10_batch"] += 1
    with tempfile.TemporaryDirectory() as d:
        for f in FILES[:-1]:
            (Path(d) / f).write_bytes(blob)
        (Path(d) / "batches.meta").write_bytes(meta)
        with mock.patch.dict(os.environ, {"GENBENCH_CIFAR10_DIR": d}):
            out = _one_line_error(AssetError, load_cifar10, None)
        if not isinstance(out, AssetError):
            assert out["x_train"].shape[1:] == (3, 32, 32)


def test_cifar10_pickle_runs_no_code(tmp_path, monkeypatch):
    from genbench.data.cifar10 import FILES, load_cifar10

    for f in FILES:
        (tmp_path / f).write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    monkeypatch.setenv("GENBENCH_CIFAR10_DIR", str(tmp_path))
    with pytest.raises(AssetError, match="not allowed"):
        load_cifar10(None)
    assert not Path("/tmp/genbench-pickle-ran").exists()


def _torch_bytes(obj) -> bytes:
    buf = _io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


_REAL_CKPT = {"format_version": 1, "config": {"model": {"kind": "vae", "resolved_params": {}}},
              "model": {"w": torch.zeros(3)}, "optimizers": {}, "schedulers": {}, "ema": None, "epoch": 1, "step": 2,
              "images_seen": 3, "train_seconds": 0.5, "rng": {"torch": torch.get_rng_state()}, "finished": False}
_ckpt_values = st.one_of(st.integers(), st.text(max_size=4), st.none(), st.floats(), st.just(torch.ones(2)),
                         st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
_ckpt_files = st.one_of(
    st.just(b""), st.binary(max_size=3000),
    st.floats(0, 1).map(lambda f: (lambda b: b[: int(len(b) * f)])(_torch_bytes(_REAL_CKPT))),  # truncated
    st.dictionaries(st.sampled_from(list(_REAL_CKPT)), _ckpt_values, max_size=4).map(  # fields replaced/missing
        lambda d: _torch_bytes({k: v for k, v in {**_REAL_CKPT, **d}.items() if not (v is None and k in d)})),
    _ckpt_values.map(_torch_bytes),  # not a dict at all
)


@settings(max_examples=N_EXAMPLES["checkpoint"], **_SETTINGS)
@given(blob=_ckpt_files)
def test_checkpoint_loader_only_raises_genbench_error(blob):
    from genbench.training.checkpoint import load_checkpoint

    TRIED["checkpoint"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "last.pt"
        p.write_bytes(blob)
        _one_line_error(GenbenchError, load_checkpoint, p, expect_kind="vae")


_jsonl_files = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.one_of(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps),
                       st.text(max_size=20), st.just("[1, 2]"), st.just("5"), st.just("{\"kind\": \"st")),
             max_size=8).map(lambda ls: "\n".join(ls).encode()),
)


@settings(max_examples=N_EXAMPLES["history_jsonl"], **_SETTINGS)
@given(blob=_jsonl_files)
def test_history_reader_only_raises_genbench_error(blob):
    TRIED["history_jsonl"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "history.jsonl"
        p.write_bytes(blob)
        out = _one_line_error(GenbenchError, read_jsonl, p)
        assert isinstance(out, GenbenchError) or all(isinstance(r, dict) for r in out)


def test_history_torn_last_line_is_skipped_but_damage_inside_is_an_error(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert read_jsonl(p) == [{"step": 1}, {"step": 2}]
    p.write_text('{"step": 1}\nxx\n{"step": 3}\n')
    with pytest.raises(GenbenchError, match="line 2 is not a JSON object"):
        read_jsonl(p)


_STUDY = (Path(__file__).parent.parent / "studies" / "mnist_four.yaml").read_text()


@settings(max_examples=N_EXAMPLES["study_yaml_text"], **_SETTINGS)
@given(blob=st.one_of(st.binary(max_size=500), st.text(max_size=300).map(str.encode),
                      st.tuples(st.floats(0, 1), st.binary(max_size=20)).map(  # the real file cut + junk
                          lambda t: _STUDY.encode()[: int(len(_STUDY) * t[0])] + t[1])))
def test_study_file_loader_only_raises_genbench_error(blob):
    from genbench.studies.config import load_study

    TRIED["study_yaml_text"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.yaml"
        p.write_bytes(blob)
        for profile in ("smoke", "full"):
            _one_line_error(GenbenchError, load_study, p, profile)


def _field_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _field_paths(v, prefix + (k,))


_RAW = __import__("yaml").safe_load(_STUDY)
_PATHS = sorted(_field_paths(_RAW), key=str)
_values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.integers(-3, 300), max_size=3),
                    st.dictionaries(st.sampled_from(["smoke", "quick", "x", "kind"]), st.integers(-2, 5), max_size=2))


@settings(max_examples=N_EXAMPLES["study_fields"], **_SETTINGS)
@given(edits=st.lists(st.tuples(st.sampled_from(_PATHS), st.one_of(_values, st.just("__delete__"))),
                      min_size=1, max_size=3), profile=st.sampled_from(["smoke", "quick", "full"]))
def test_study_with_wrong_field_types_or_ranges_only_raises_genbench_error(edits, profile):
    """The bundled study with 1-3 fields replaced by values of random types (or deleted): parse_study either
    accepts it or names the field in one line; if accepted, every model can be built from it."""
    import copy

    from genbench.families import build_model
    from genbench.studies.config import parse_study

    TRIED["study_fields"] += 1
    raw = copy.deepcopy(_RAW)
    for path, value in edits:
        node = raw
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if value == "__delete__":
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
    out = _one_line_error(GenbenchError, parse_study, raw, profile, "s.yaml")
    if not isinstance(out, GenbenchError):
        for m in out.models:
            if m.kind in ("vae", "cgan", "gan"):  # the DDPM's U-Net takes a second to build
                _one_line_error(GenbenchError, build_model, m.kind, m.params)


PROPERTY_TESTS = {"mnist_pickle": "test_mnist_asset_decoder_only_raises_asset_error",
                  "mnist_npz_cache": "test_mnist_cache_and_asset_only_raise_asset_error",
                  "asset_file": "test_any_asset_file_fails_its_checksum_cleanly",
                  "idx_file": "test_idx_loader_only_raises_asset_error",
                  "quickdraw_npy": "test_quickdraw_loader_only_raises_asset_error",
                  "cifar10_batch": "test_cifar10_loader_only_raises_asset_error",
                  "checkpoint": "test_checkpoint_loader_only_raises_genbench_error",
                  "history_jsonl": "test_history_reader_only_raises_genbench_error",
                  "study_yaml_text": "test_study_file_loader_only_raises_genbench_error",
                  "study_fields": "test_study_with_wrong_field_types_or_ranges_only_raises_genbench_error"}


def test_malformed_input_counts(request):
    """Runs after the property tests of this module: each one that ran in this session really fed its inputs (a
    strategy that filters everything out, or a test that returns before its counter, would pass vacuously).
    Hypothesis runs max_examples cases unless the strategy's space is exhausted; each space here is far larger
    (measured: every family at exactly max_examples), so fewer than half means the generator broke. The counts are
    printed (pytest -s)."""
    assert set(PROPERTY_TESTS) == set(N_EXAMPLES)
    ran = {item.originalname for item in request.session.items if item.module is request.module}
    families = [k for k, name in PROPERTY_TESTS.items() if name in ran]
    print(f"\nmalformed inputs tried: {TRIED} = {sum(TRIED.values())} (max_examples {sum(N_EXAMPLES.values())})")
    if not families:
        pytest.skip("no property test of this module ran in this session")
    short = {k: TRIED[k] for k in families if TRIED[k] < N_EXAMPLES[k] // 2}
    assert not short, f"property tests that fed fewer than half their max_examples: {short} of {N_EXAMPLES}"


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
