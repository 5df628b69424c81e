"""Out-of-tree code that breaks its contract (issue 29, class 5): plugins that raise or exit at import or in
their constructor, ``training_losses`` and own steps that return the wrong thing (in a real 2-step training loop
on 64 tiny images), and ``sample()`` batches that must never be scored.

Every refused case ends in one line naming the class and the contract; through the CLI, exit code 2 with one
``genbench: error:`` line, no traceback.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml

from bad_input_helpers import _cli_lines as _cli
from bad_input_helpers import _OnePass, _reached
from conftest import refused as _refused
from genbench.errors import GenbenchError

# --------------------------------------------------------------------------------------------------------------
# 5. Out-of-tree code that breaks its contract

MODEL_SRC = '''
import torch
from torch import nn

class M(nn.Module):
    genbench_family = "likelihood"

    def __init__(self, *, image_shape=(1, 28, 28), num_classes=0):
        super().__init__()
        self.num_classes = 0
        self.w = nn.Parameter(torch.zeros(image_shape))

    def training_losses(self, x, y=None, *, generator=None):
        return {"loss": (self.w - x.mean(0)).pow(2).mean()}

    def sample(self, n, y=None, generator=None):
        return self.w.detach().expand(n, *self.w.shape).clamp(-1, 1)
'''


def _study(tmp: Path, kind: str, **extra) -> Path:
    doc = {"name": "s", "dataset": "mnist", "batch_size": 32,
           "models": {"m": {"kind": kind, "optimizer": {"lr": 0.1}, "epochs": 1}}, **extra}
    p = tmp / "study.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


_N = Counter()


def _module(tmp: Path, prefix: str, source: str) -> str:
    """A fresh module name on sys.path (resolve_kind is cached by kind)."""
    _N[prefix] += 1
    name = f"bad2_{prefix}_{_N[prefix]}"
    (tmp / f"{name}.py").write_text(textwrap.dedent(source))
    return name


@pytest.mark.parametrize("head,needle", [
    ("raise RuntimeError('boom')", "RuntimeError: boom"),
    ("import sys; sys.exit(0)", "sys.exit(0)"),
    ("import sys; sys.exit(3)", "sys.exit(3)"),
    ("import sys; sys.exit('bye')", "sys.exit('bye')"),
    ("raise SystemExit", "sys.exit(None)"),
    ("import nonexistent_pkg_xyz", "nonexistent_pkg_xyz"),
    ("def f(:\n    pass", "SyntaxError"),
])
def test_plugin_that_fails_or_exits_at_import(head, needle, home, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _module(tmp_path, "imp", head + "\n" + MODEL_SRC)
    with mock.patch("genbench.studies.stages.run_study", _reached):
        code, lines = _cli("run", str(_study(tmp_path, f"{name}:M")))
    _refused(code, lines, name)
    assert needle in lines[0], lines[0]


def test_plugin_keyboard_interrupt_at_import_still_stops(home, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _module(tmp_path, "kbd", "raise KeyboardInterrupt\n" + MODEL_SRC)
    code, _ = _cli("run", str(_study(tmp_path, f"{name}:M")))
    assert code == 130


def test_plugin_constructor_that_exits(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _module(tmp_path, "ctor", MODEL_SRC.replace("super().__init__()", "super().__init__(); import sys; "
                                                       "sys.exit(0)"))
    from genbench.families import build_model

    with pytest.raises(GenbenchError, match=r"M\(\*\*params\) raised SystemExit: it called sys.exit\(0\)"):
        build_model(f"{name}:M", {})


LOSS_BODIES = {
    "a float": 'return 0.5',
    "a non-scalar loss": 'return {"loss": (self.w - x.mean(0)).pow(2)}',
    "no loss key": 'return {"total": (self.w - x.mean(0)).pow(2).mean()}',
    "a list": 'return [(self.w - x.mean(0)).pow(2).mean()]',
    "a detached loss": 'return {"loss": (self.w - x.mean(0)).pow(2).mean().detach()}',
    "an int tensor": 'return {"loss": (self.w - x.mean(0)).pow(2).mean(), "n": torch.tensor(3)}',
}


@pytest.mark.parametrize("what", LOSS_BODIES)
def test_training_losses_that_break_the_contract(what, tmp_path, monkeypatch):
    """A few real training steps through the loop: the first step refuses the return value, naming the class."""
    monkeypatch.syspath_prepend(str(tmp_path))
    src = MODEL_SRC.replace('return {"loss": (self.w - x.mean(0)).pow(2).mean()}', LOSS_BODIES[what])
    name = _module(tmp_path, "loss", src)
    with pytest.raises(GenbenchError) as e:
        _train(tmp_path, f"{name}:M")
    msg = str(e.value)
    assert "\n" not in msg and f"{name}:M" in msg and "training_losses()" in msg and "contract" in msg, msg


STEP_BODIES = {
    "a float": "return 0.5",
    "no loss key": 'return {"total": 0.5}',
    "a tensor": 'return {"loss": torch.ones(3)}',
    "None": "return None",
    "a bool": 'return {"loss": True}',
}


@pytest.mark.parametrize("what", STEP_BODIES)
def test_own_step_that_breaks_the_contract(what, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    src = MODEL_SRC.replace("    def training_losses", f'''    @staticmethod
    def genbench_step(model, opts, x, y, *, generator, autocast, ddp=None):
        {STEP_BODIES[what]}

    def training_losses''')
    name = _module(tmp_path, "step", src)
    with pytest.raises(GenbenchError) as e:
        _train(tmp_path, f"{name}:M")
    msg = str(e.value)
    assert "\n" not in msg and "M.genbench_step" in msg and "'loss'" in msg, msg


def _train(tmp: Path, kind: str) -> None:
    from genbench.data.registry import Dataset
    from genbench.studies.config import parse_study
    from genbench.training.loop import train

    study = parse_study({"name": "s", "dataset": "mnist", "batch_size": 32, "models": {"c": {
        "kind": kind, "optimizer": {"lr": 0.1}, "epochs": 1}}}, "smoke")
    data = Dataset(torch.full((64, 1, 28, 28), 255, dtype=torch.uint8), torch.zeros(64, dtype=torch.long), 10, "ones")
    train(study.models[0], data, tmp / "run")


SAMPLE_OUTS = {
    "a float": lambda n: 0.5,
    "a numpy array": lambda n: np.zeros((n, 1, 28, 28), np.float32),
    "uint8": lambda n: torch.zeros(n, 1, 28, 28, dtype=torch.uint8),
    "3-D": lambda n: torch.zeros(n, 28, 28),
    "wrong n": lambda n: torch.zeros(n + 1, 1, 28, 28),
    "2 channels": lambda n: torch.zeros(n, 2, 28, 28),
    "NaN": lambda n: torch.full((n, 1, 28, 28), float("nan")),
    "[0, 255]": lambda n: torch.full((n, 1, 28, 28), 200.0),
}


@pytest.mark.parametrize("what", SAMPLE_OUTS)
def test_sample_that_breaks_the_contract_is_not_scored(what):
    """The bank draws through families.draw: a bad batch never reaches to_uint8."""
    from genbench.families import drawer
    from genbench.sampling.bank import generate

    with pytest.raises(GenbenchError) as e:
        generate(_OnePass(SAMPLE_OUTS[what]), 5, seed=0, precision="fp32", batch=5, warmup=False, draw=drawer(None))
    assert "\n" not in str(e.value) and "_OnePass" in str(e.value) and "contract" in str(e.value)
