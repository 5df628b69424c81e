"""CLI misuse, options and paths give one line (issue 18 classes 1, 5, 9); `genbench train` writes the study.yaml
that `genbench evaluate` reads; and a sample of bad input through the installed ``genbench`` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from bad_input_helpers import ROOT, _cli, _one_line, _reached, _study_text

@pytest.mark.parametrize("args,needle", [
    ([], "Missing command"), (["frobnicate"], "No such command 'frobnicate'"), (["evaluate"], "Missing argument"),
    (["--threads", "abc", "run"], "Invalid value for '--threads'"), (["--threads", "0", "run"], "--threads 0"),
    (["--threads", "-1", "run"], "--threads -1"), (["--device", "mps", "run"], "--device 'mps' is not supported"),
    (["train", "vae", "--epochs", "0"], "--epochs 0"), (["sample", "x", "--n", "0"], "--n 0"),
    (["sample", "x", "--steps", "0"], "--steps 0"), (["data"], "Missing command"),
    (["run", "--bogus"], "No such option"),
    (["--device", "cuda:7", "run"], "cuda:7"),
])
def test_cli_misuse_gives_one_line(args, needle):
    before = os.environ.get("GENBENCH_DEVICE")
    code, err, _ = _cli(*args)
    _one_line(code, err)
    assert needle in err[0], err[0]
    assert os.environ.get("GENBENCH_DEVICE") == before  # a refused --device changes nothing


def test_unwritable_paths_give_one_line(tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    for args, needle in [(["run", "--profile", "smoke", "--out", str(f / "sub")], f"inside {f}, which is a file"),
                         (["run", "--profile", "smoke", "--out", str(f)], "is not a folder"),
                         (["run", "--profile", "smoke", "--out", "/sys/genbench-out"], "cannot write into /sys"),
                         (["train", "vae", "--profile", "smoke", "--out", str(f / "x")], "which is a file"),
                         (["sample", str(tmp_path), "--out", str(tmp_path)], "is a folder; give the path of a .png"),
                         (["sample", str(tmp_path), "--out", str(f / "x.png")], "is not a folder")]:
        code, err, _ = _cli(*args)
        _one_line(code, err)
        assert needle in err[0], err[0]
    for home, needle in [(f, "GENBENCH_HOME"), ("/sys/genbench-home", "cannot write into /sys")]:
        monkeypatch.setenv("GENBENCH_HOME", str(home))
        code, err, _ = _cli("run", "--profile", "smoke", "--out", str(tmp_path / "out"))
        _one_line(code, err)
        assert needle in err[0] and str(home) in err[0], err[0]


@pytest.mark.slow
def test_train_writes_the_study_yaml_that_evaluate_reads(tmp_path):
    """Issue 18 class 9: `genbench train` then `genbench evaluate` used to fail (no study.yaml). The training and
    the data are stubbed: this checks the files and the hand-over, not the numbers."""
    from genbench.studies import runner
    from genbench.training import loop

    out = tmp_path / "runs" / "mnist-four" / "gan"
    with mock.patch.object(loop, "train", lambda *a, **k: {"steps": 0}), \
            mock.patch.object(runner, "prepare_data", lambda cfg: {"train": None}):
        code, err, stdout = _cli("--threads", "1", "train", "gan", "--profile", "smoke", "--out", str(out))
    assert code == 0 and not err, err
    written = yaml.safe_load((out.parent / "study.yaml").read_text())
    assert written["profile"] == "smoke" and written["name"] == "mnist-four"
    out.mkdir(parents=True)
    with mock.patch.object(runner, "prepare_data", _reached):
        code, err, _ = _cli("--threads", "1", "evaluate", str(out))
    assert code == "reached", err  # the study folder was read back; evaluation would start here
    (out.parent / "study.yaml").write_text("name: [")
    code, err, _ = _cli("--threads", "1", "evaluate", str(out))
    _one_line(code, err)
    assert f"{out.parent / 'study.yaml'} is damaged" in err[0] and "genbench run" in err[0], err[0]


_SUBPROCESS_EDITS = [("top", 0, (("modles",), {})), ("model", 0, (("optimizer", "betas"), [1.5, 0.999])),
                     ("top", 0, (("evaluation", "n_inception"), 4)), ("bomb", 5, (12, 10)), ("nest", 7, 60),
                     ("typo", 11, None)]


@pytest.mark.slow
def test_a_sample_through_the_installed_command(tmp_path):
    """20 cases through the real ``genbench`` console script (typer's own click included): six generated study
    files and fourteen misuses, at most four processes at a time; each exit code 2 with one line on stderr."""
    exe = Path(sys.executable).with_name("genbench")
    if not exe.exists():
        pytest.skip("no installed genbench console script beside this Python")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    cases = []
    for i, e in enumerate(_SUBPROCESS_EDITS):
        p = tmp_path / f"s{i}.yaml"
        p.write_text(_study_text("mnist_four", [e]))
        cases.append(["--threads", "1", "run", str(p), "--profile", "smoke", "--out", str(tmp_path / "out")])
    cases += [[], ["frobnicate"], ["evaluate"], ["--threads", "abc", "run"], ["--threads", "0", "run"],
              ["--threads", "-1", "run"], ["--device", "mps", "run"], ["sample", str(tmp_path), "--n", "0"],
              ["sample", str(tmp_path), "--steps", "0"], ["train", "vae", "--epochs", "-2"], ["data"],
              ["data", "fetch"], ["run", "--bogus"], ["report"]]
    assert len(cases) == 20
    running: list = []
    for a in cases + [None] * 4:
        if a is not None:
            running.append((a, subprocess.Popen([str(exe), *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                text=True, env=env, cwd=tmp_path)))
        if len(running) >= 4 or (a is None and running):
            args, p = running.pop(0)
            try:
                _, err = p.communicate(timeout=300)
            finally:
                if p.poll() is None:
                    p.kill()
            lines = [line for line in err.splitlines() if line.strip()]
            assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("genbench: error: "), \
                (args, err[-2000:])
    assert not (tmp_path / "out").exists()
