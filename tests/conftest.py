"""Shared fixtures and helpers. Real MNIST comes from the genbench cache (``make test`` fetches it first).

The helpers are imported by the test modules (``from conftest import cli_in_process``: pytest puts this folder on
``sys.path``)."""

import contextlib
import io
import os
import signal
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

GENBENCH = [sys.executable, "-m", "genbench.cli"]


_COMMANDS: dict = {}  # the Typer app -> its click command; "get_command" -> typer's own function


def _command_built_once(typer_instance):
    """``typer.main.get_command`` for ``cli_in_process``: Typer builds the click command from the decorated
    functions on every call of the app (~10-30 ms, once per process in real use); the tests reuse it (click
    makes a fresh context per invocation)."""
    if typer_instance not in _COMMANDS:
        _COMMANDS[typer_instance] = _COMMANDS["get_command"](typer_instance)
    return _COMMANDS[typer_instance]


def cli_in_process(*args: str, reached: type[BaseException] | tuple = (), env: dict | None = None,
                   timeout: int | None = None) -> tuple[int | str, list[str], str]:
    """``genbench ARGS`` through ``genbench.cli.main`` in this process (so a test's monkeypatches apply), its
    stderr and stdout captured: (exit code, the non-empty stderr lines, stdout).

    The exit code is SystemExit's as the process would report it (None -> 0, a message -> 1); 0 when main returns.
    An exception of a type in ``reached`` (a stub a test put in a later stage to stop there) ends the call with code
    ``"reached"``; any other exception propagates. ``env``: variables set for the call. ``timeout``: seconds
    before a SIGALRM deadline raises TimeoutError (a read that blocks fails the test instead of hanging it)."""
    import typer.main

    from genbench import cli

    _COMMANDS.setdefault("get_command", typer.main.get_command)

    def _late(*_):
        raise TimeoutError(f"genbench {' '.join(args)} did not return within {timeout} s")

    err, out = io.StringIO(), io.StringIO()
    code: int | str = 0
    old = signal.signal(signal.SIGALRM, _late) if timeout else None
    if timeout:
        signal.alarm(timeout)
    try:
        with mock.patch.object(sys, "argv", ["genbench", *args]), mock.patch.dict(os.environ, env or {}), \
                mock.patch.object(typer.main, "get_command", _command_built_once), \
                contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                cli.main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except reached:
                code = "reached"
    finally:
        if timeout:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        cli._state["debug"] = False  # --debug sets it for the process; the next call starts without
    return code, [line for line in err.getvalue().splitlines() if line.strip()], out.getvalue()


def refused(code, lines, needle: str = "") -> None:
    """A clean refusal: exit code 2, one line (two at most) ``genbench: error: ...`` containing ``needle``, and
    no traceback."""
    assert code == 2, (code, lines[-5:])
    assert 1 <= len(lines) <= 2 and lines[0].startswith("genbench: error: "), lines[-5:]
    assert not any("Traceback" in x for x in lines), lines
    assert needle in lines[0], (needle, lines[0])


def cli_subprocess(*args: str, env: dict | None = None, cwd=None, timeout: float | None = None):
    """``python -m genbench.cli ARGS`` in a child process (``env``: variables added to this process's
    environment); the ``CompletedProcess`` with text stdout and stderr."""
    return subprocess.run([*GENBENCH, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **env} if env else None)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty working folder and GENBENCH_HOME, with sentinels beside them that must survive (the bad-input files
    of issue 29: nothing is written outside the folder a command was given)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("keep")
    yield work
    assert sentinel.read_text() == "keep"
    assert {p.name for p in work.iterdir()} <= {"runs"}, sorted(p.name for p in work.iterdir())



def seeded_classifier(seed: int = 0):
    """An untrained classifier (1 channel, 10 classes) with weights seeded by ``seed``, in eval mode: the same
    weights in every process, where a test needs a classifier but not a trained one."""
    from genbench.models.classifier import Classifier

    torch.manual_seed(seed)
    return Classifier(channels=1, num_classes=10).eval()


def same_metrics(a, b, path: str = "") -> None:
    """Exact equality of nested metric dicts (NaN equals NaN); ``path`` names the differing entry."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            same_metrics(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple, np.ndarray)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)
    elif isinstance(a, float):
        assert a == b or (np.isnan(a) and np.isnan(b)), (path, a, b)
    else:
        assert a == b, (path, a, b)

@pytest.fixture(scope="session")
def mnist():
    from genbench.data import load_dataset

    return load_dataset("mnist")


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """The bundled MNIST study, smoke profile, run through the CLI on a 1,024-image slice of real MNIST."""
    out = tmp_path_factory.mktemp("runs")
    p = cli_subprocess("run", "--profile", "smoke", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    return out / "mnist-four"
