"""Numbers and option combinations (issue 29, classes 6-7): ``genbench sample`` and ``genbench run`` options out of
range or in combinations that contradict, memory caps, and generated CLI options, endpoints and plugin return
values (hypothesis, derandomized).

Every refused case ends in exit code 2 with one ``genbench: error:`` line (at most two on stderr), no traceback,
and nothing is written outside the folder the command was given. A command that would train or draw has its stage
stubbed (``Reached``). ``test_case_counts`` (run last) prints the number of generated cases (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bad_input_helpers import _cli_lines as _cli
from bad_input_helpers import ROOT, _SETTINGS, _OnePass, _reached
from conftest import refused as _refused
from genbench.errors import GenbenchError
CASES: Counter = Counter()
N_EXAMPLES = {"sample_options": 120, "run_options": 80, "uris": 60, "fetch_urls": 60, "sample_returns": 250,
              "step_returns": 250, "loss_returns": 200}


# --------------------------------------------------------------------------------------------------------------
# 6. Numbers and option combinations

def _fake_run(model):
    return lambda run_dir, **k: (model.eval(), {"config": {"sampling": {}, "dataset": "mnist"}})


def _tiny_ddpm(num_classes=10):
    from genbench.models.ddpm import DDPM

    return DDPM(widths=(8, 8, 8), attention=False, num_classes=num_classes, timesteps=100)


@functools.cache
def _one_tiny_ddpm():
    """One conditional tiny DDPM for every generated ``genbench sample`` case (~25 ms to build; the command only
    reads it before the stubbed ``generate``)."""
    return _tiny_ddpm()


@pytest.mark.parametrize("args,env,needle", [
    (("--n", "1000000"), {"GENBENCH_MAX_MEMORY": "1G"}, "lower --batch"),
    (("--n", "1000000", "--batch", "100"), {"GENBENCH_MAX_MEMORY": "1G"}, "lower --n"),
    (("--n", "100"), {"GENBENCH_MAX_MEMORY": "lots"}, "GENBENCH_MAX_MEMORY"),
    (("--n", "0"), {}, "--n 0"), (("--n", "1000001"), {}, "--n 1000001"),
    (("--batch", "-3"), {}, "--batch -3"), (("--seed", "-1"), {}, "--seed -1"),
    (("--steps", "0"), {}, "--steps 0"), (("--guidance", "inf"), {}, "--guidance inf"),
    (("--guidance", "-0.5"), {}, "--guidance"), (("--guidance", "1e9"), {}, "--guidance"),
    (("--guidance", "2"), {}, "diffusion, flow and shortcut models only"),
])
def test_sample_numbers(args, env, needle, home):
    with mock.patch("genbench.families.load_trained", _fake_run(_OnePass(lambda n: torch.zeros(n, 1, 28, 28)))), \
            mock.patch("genbench.sampling.bank.generate", _reached):
        _refused(*_cli("sample", "RUN", *args, env=env), needle)


def test_guidance_on_an_unconditional_diffusion_model_is_refused(home):
    with mock.patch("genbench.families.load_trained", _fake_run(_tiny_ddpm(0))), \
            mock.patch("genbench.sampling.bank.generate", _reached):
        _refused(*_cli("sample", "RUN", "--guidance", "2"), "unconditional")
        assert _cli("sample", "RUN", "--steps", "10", "--sampler", "ddim")[0] == "reached"


def _study_file(tmp: Path, **changes) -> Path:
    doc = yaml.safe_load((ROOT / "studies" / "mnist_four.yaml").read_text())
    for k, v in changes.items():
        doc[k] = v
    p = tmp / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_study_counts_beyond_memory_refused_naming_the_field(home, tmp_path):
    ev = {"n_samples": 1_000_000, "n_inception": 500}
    with mock.patch("genbench.studies.stages.run_study", _reached):
        _refused(*_cli("run", str(_study_file(tmp_path, evaluation=ev)), env={"GENBENCH_MAX_MEMORY": "1G"}),
                 "evaluation.n_samples")
        assert _cli("run", str(_study_file(tmp_path)), env={"GENBENCH_MAX_MEMORY": "1G"})[0] == "reached"


def test_overridden_options_are_refused(home, tmp_path):
    with mock.patch("genbench.studies.stages.run_study", _reached), \
            mock.patch("genbench.studies.runner.prepare_data", _reached):
        _refused(*_cli("train", "vae", "--study", str(_study_file(tmp_path, budget={"images": 4096})), "--epochs", "3"),
                 "under a budget")
        _refused(*_cli("run", "--mlflow-uri", "http://127.0.0.1:1"), "--mlflow-uri applies to the mlflow tracker")
        _refused(*_cli("run", "--address", "127.0.0.1:6379"), "--engine ray only")
        _refused(*_cli("run", "--engine", "ray"), "several seeds")
        _refused(*_cli("run", "--resume", "--overwrite"), "contradict")
        _refused(*_cli("run", "--seeds", "0"), "--seeds 0")
        _refused(*_cli("run", "--seeds", "5000"), "--seeds 5000")
        _refused(*_cli("run", str(_study_file(tmp_path, seeds=[1, 1]))), "seeds")


def test_debug_still_shows_the_traceback(home):
    from genbench import cli

    with mock.patch.object(sys, "argv", ["genbench", "--debug", "run", "--seeds", "0"]), \
            pytest.raises(GenbenchError, match="--seeds 0"):
        cli.main()
    cli._state["debug"] = False


# --------------------------------------------------------------------------------------------------------------
# 7. Generated options and plugin return values

_ints = st.one_of(st.integers(-10, 10), st.integers(-2**70, 2**70), st.sampled_from([0, 1, 10**6, 10**6 + 1, 2**63]))
_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 1.0, 1000.0, 1000.5]))
_junk = st.sampled_from(["", "x", "1e3", "0x10", "--", " 5", "nan", "1_000"])


def _num(s):
    return s.map(str) | _junk


@settings(max_examples=N_EXAMPLES["sample_options"], **_SETTINGS)
@given(opts=st.fixed_dictionaries({}, optional={"--n": _num(_ints), "--steps": _num(_ints), "--seed": _num(_ints),
                                                "--batch": _num(_ints), "--guidance": _num(_floats),
                                                "--label": _num(_ints)}))
def test_sample_options_property(opts, tmp_path_factory):
    """``genbench sample`` with generated numbers on a conditional diffusion model: refused in one line, or
    accepted with every number in its documented range."""
    CASES["sample_options"] += 1
    args = [x for k, v in opts.items() for x in (k, v)]
    with mock.patch("genbench.families.load_trained", _fake_run(_one_tiny_ddpm())), \
            mock.patch("genbench.sampling.bank.generate", _reached), mock.patch.dict(os.environ, {
                "GENBENCH_MAX_MEMORY": "2G"}):
        code, lines = _cli("sample", "RUN", *args)
    if code == "reached":
        n = int(opts.get("--n", 10))
        assert 1 <= n <= 10**6 and 0 <= int(opts.get("--seed", 42)) < 2**63
        assert 1 <= int(opts.get("--batch", 1)) <= 10**6 and 1 <= int(opts.get("--steps", 1)) <= 100_000
        g = float(opts.get("--guidance", 0))
        assert math.isfinite(g) and 0 <= g <= 1000
        return
    _refused(code, lines)


_budget = st.one_of(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["images", "flops", "seconds", "epochs", ""]),
                              st.one_of(_ints.map(str), _floats.map(str), _junk)), _junk)


@settings(max_examples=N_EXAMPLES["run_options"], **_SETTINGS)
@given(opts=st.fixed_dictionaries({}, optional={"--seeds": _num(_ints), "--budget": _budget,
                                                "--engine": st.sampled_from(["sequential", "ray", "dask", ""]),
                                                "--profile": st.sampled_from(["smoke", "quick", "huge"])}),
       flags=st.lists(st.sampled_from(["--resume", "--overwrite"]), unique=True))
def test_run_options_property(opts, flags, tmp_path_factory):
    CASES["run_options"] += 1
    args = [x for k, v in opts.items() for x in (k, v)] + flags
    cwd = tmp_path_factory.mktemp("run")
    with mock.patch("genbench.studies.stages.run_study", _reached), \
            mock.patch("genbench.studies.trials.run_trials", _reached), contextlib.chdir(cwd):
        code, lines = _cli("run", *args)
    assert not any(cwd.iterdir())
    if code != "reached":
        _refused(code, lines)


_host = st.sampled_from(["127.0.0.1", "localhost", "", "a b", "[::1]", "x" * 300, "h\x00", "ex%41mple"])
_scheme = st.sampled_from(["http", "https", "file", "sqlite", "postgresql", "ray", "ftp", "gopher", "HTTP", "", "s3"])
_port = st.one_of(st.none(), st.integers(-5, 70000).map(str), _junk)
_uri = st.one_of(st.builds(lambda s, h, p, path: f"{s}://{h}{'' if p is None else ':' + p}{path}", _scheme, _host,
                           _port, st.sampled_from(["", "/", "/x/y", "/../..", "?q=1", "#f"])),
                 st.text(max_size=30))


@settings(max_examples=N_EXAMPLES["uris"], **_SETTINGS)
@given(uri=_uri, which=st.sampled_from(["mlflow", "ray"]))
def test_endpoint_options_property(uri, which, tmp_path_factory):
    """Generated MLflow URIs and Ray addresses: refused in one line (a bad form, nothing listening on 127.0.0.1, or
    the option without its tracker) or accepted; never a traceback, never longer than the probe allows."""
    CASES["uris"] += 1
    if "\x00" in uri:
        uri = uri.replace("\x00", "")  # the OS refuses NUL in argv before genbench sees it
    args = (["run", "--log", "mlflow", "--mlflow-uri", uri] if which == "mlflow"
            else ["run", "--engine", "ray", "--seeds", "2", "--address", uri])
    cwd = tmp_path_factory.mktemp("uri")
    t0 = time.monotonic()
    with mock.patch("genbench.studies.stages.run_study", _reached), contextlib.chdir(cwd), \
            mock.patch("genbench.studies.trials.aggregate", _reached), mock.patch("genbench.io.limits.PROBE_WAIT", 0.0), \
            mock.patch.dict(
                sys.modules, {"ray": None}):  # a reachable address goes on to `import ray`: one line, no cluster
        code, lines = _cli(*args, env={"MLFLOW_TRACKING_URI": ""})
    assert time.monotonic() - t0 < 30
    if code != "reached":
        _refused(code, lines)
    leftover = [p for p in cwd.rglob("*") if p.is_file()]
    assert not leftover or all("runs" in p.parts or "mlruns" in p.parts for p in leftover), leftover


@settings(max_examples=N_EXAMPLES["fetch_urls"], **_SETTINGS)
@given(uri=_uri)
def test_fetch_url_property(uri, tmp_path_factory):
    """``data fetch cifar10 --url`` with generated URLs (no retries): one line, nothing outside GENBENCH_HOME."""
    CASES["fetch_urls"] += 1
    uri = uri.replace("\x00", "")
    cwd = tmp_path_factory.mktemp("fetch")
    with contextlib.chdir(cwd):
        code, lines = _cli("data", "fetch", "cifar10", "--url", uri, "--sha256",
                           "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                           env={"GENBENCH_DOWNLOAD_RETRIES": "0", "GENBENCH_HOME": str(cwd / "home")})
    _refused(code, lines)
    assert {p.name for p in cwd.iterdir()} <= {"home"}


_shapes = st.lists(st.integers(0, 5), min_size=0, max_size=5).map(tuple) | st.sampled_from(
    [(4, 1, 28, 28), (4, 3, 28, 28), (4, 1, 28, 28, 1), (3, 1, 28, 28)])
_dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8, torch.int64,
                           torch.bool])
_fill = st.one_of(st.floats(-2, 2), st.sampled_from([float("nan"), float("inf"), -1.0, 1.0, 1.0005, 255.0]))
_tensor = st.builds(lambda s, d, f: torch.full(s, f).to(d) if s else torch.tensor(f).to(d), _shapes, _dtypes, _fill)
_value = st.one_of(_tensor, st.floats(allow_nan=True), st.integers(), st.none(), st.text(max_size=3),
                   st.builds(lambda t: t.numpy(), st.builds(lambda s: torch.zeros(s), _shapes)))


@settings(max_examples=N_EXAMPLES["sample_returns"], **_SETTINGS)
@given(out=st.one_of(_value, st.lists(_tensor, max_size=2)))
def test_sample_returns_property(out):
    """Whatever sample() returns is either a valid batch (float, (4, C, 28, 28), C = 1 or 3, finite, in [-1, 1]) or
    one line naming the model and the contract."""
    from genbench.families import draw

    CASES["sample_returns"] += 1
    try:
        x = draw(_OnePass(out), 4)
    except GenbenchError as e:
        assert "\n" not in str(e) and "_OnePass" in str(e) and "contract" in str(e)
        return
    assert isinstance(x, torch.Tensor) and x.is_floating_point() and x.shape[0] == 4 and x.shape[1] in (1, 3)
    assert x.dim() == 4 and torch.isfinite(x).all() and x.abs().max() <= 1.001


_logs = st.one_of(_value, st.dictionaries(st.one_of(st.sampled_from(["loss", "kl", ""]), st.integers(0, 2)), _value,
                                          max_size=3))


@settings(max_examples=N_EXAMPLES["step_returns"], **_SETTINGS)
@given(logs=_logs)
def test_step_returns_property(logs):
    """Whatever an own genbench_step returns is a dict of floats with 'loss', or one line naming the step."""
    from genbench.families.kinds import checked_step

    CASES["step_returns"] += 1
    step = checked_step(lambda *a, **k: logs, "model kind 'p:M': M.genbench_step")
    try:
        got = step(None, {}, None, None, generator=None, autocast=None)
    except GenbenchError as e:
        assert "\n" not in str(e) and "M.genbench_step" in str(e)
        return
    assert "loss" in got and all(isinstance(k, str) and type(v) is float for k, v in got.items())


@settings(max_examples=N_EXAMPLES["loss_returns"], **_SETTINGS)
@given(losses=st.one_of(_logs, st.fixed_dictionaries({"loss": _tensor}, optional={"kl": _value})),
       grad=st.booleans())
def test_training_losses_returns_property(losses, grad):
    """check_losses passes only a dict whose values are one-element float tensors, 'loss' with a gradient."""
    from genbench.training.objectives import check_losses

    CASES["loss_returns"] += 1
    if grad and isinstance(losses, dict) and isinstance(losses.get("loss"), torch.Tensor) \
            and losses["loss"].is_floating_point():
        losses = {**losses, "loss": losses["loss"].clone().requires_grad_(True)}
    try:
        check_losses(losses, _OnePass(), "training_losses")
    except GenbenchError as e:
        assert "\n" not in str(e) and "_OnePass" in str(e) and "training_losses()" in str(e)
        return
    assert isinstance(losses, dict) and losses["loss"].requires_grad
    assert all(isinstance(v, torch.Tensor) and v.numel() == 1 and v.is_floating_point() for v in losses.values())


def test_case_counts():
    """Run last: the number of generated cases per family (``pytest -s`` shows them)."""
    print("\ngenerated cases:", dict(CASES), "total", sum(CASES.values()))
