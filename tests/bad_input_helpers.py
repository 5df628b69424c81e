"""Helpers shared by the bad-input test files (issues 18 and 29).

- the stubbed stage that marks an accepted input (``Reached``), the in-process CLI and the one-line check;
- the study-file edits that test_bad_input_generated.py generates and the other issue-18 files reuse;
- the one-pass outside model of the issue-29 files (test_bad_input_plugins.py, test_bad_input_options.py).

Imported as ``from bad_input_helpers import ...`` (pytest puts tests/ on ``sys.path``). The names are those the
tests used when each issue's cases were one file, so the tests moved verbatim.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from unittest import mock

import torch
import yaml
from hypothesis import HealthCheck
from hypothesis import strategies as st
from torch import nn

from conftest import cli_in_process
from genbench.studies.config import MAX_SAMPLES, MAX_STUDY_DEPTH
ROOT = Path(__file__).resolve().parent.parent
STUDY_NAMES = ("mnist_four", "fashion_beta_vae", "quickdraw_vae", "cifar10_vae_dcgan")
STUDIES = {n: yaml.safe_load((ROOT / "studies" / f"{n}.yaml").read_text()) for n in STUDY_NAMES}
_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


class Reached(Exception):
    """Raised by a stubbed stage: the input passed every check before it (it was accepted)."""

def _reached(*a, **k):
    raise Reached


_cli = functools.partial(cli_in_process, reached=Reached)
"""``genbench ARGS`` in this process: (exit code or 'reached', non-empty stderr lines, stdout)."""


def _one_line(code, lines) -> None:
    assert code == 2, (code, lines[-5:])
    assert len(lines) == 1 and lines[0].startswith("genbench: error: "), lines[-5:]
    assert "Traceback" not in lines[0]


def _cli_lines(*args: str, env: dict | None = None, timeout: int = 60) -> tuple[int | str, list[str]]:
    """``genbench ARGS`` in this process with a SIGALRM deadline: (exit code or 'reached', stderr lines)."""
    code, err, _ = cli_in_process(*args, reached=Reached, env=env, timeout=timeout)
    return code, err




# --------------------------------------------------------------------------------------------------------------
# Generated study files


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))


PATHS = {n: sorted(_paths(r), key=str) for n, r in STUDIES.items()}
def _get(obj, path):
    """The node at ``path``, or None when an edit removed or replaced a mapping on the way."""
    for k in path:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


SECTIONS = {n: [()] + [p for p in PATHS[n] if isinstance(_get(STUDIES[n], p), dict)] for n in STUDY_NAMES}

# Values at the edges of what the schema accepts, and of every type.
_EDGE = [0, -1, 1, 2, 3, 6, 9, 10, 19, 20, 2**31, 2**63 - 1, 2**63, 2**64, -2**63 - 1, MAX_SAMPLES,
         MAX_SAMPLES + 1, 10**9, 0.0, 0.5, 0.999, 1.0, 1.5, -0.5, 1e-12, 1e308, float("nan"), float("inf"),
         float("-inf"), True, False, None, "", "x", "ten", "bf16", "fp32", "vae", "mnist", "../x", "a/b",
         [], [0.5], [1.5, 0.999], [0.5, 0.999], [0.9, 1.0], ["a", "b"], [0, 1, 7], [-1, 5], [64, 0, 64],
         {}, {"smoke": 1}, {"quick": 1, "full": 2}, {"smoke": 1, "quick": 2, "full": 3}, {"x": 1}]
_values = st.one_of(st.sampled_from(_EDGE), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.integers(-3, 300), max_size=4),
                    st.dictionaries(st.text(max_size=5), st.integers(-2, 5), max_size=2))
# Targeted: the examples of issue 18 classes 3 and 4, at the model/evaluation they belong to.
_TARGETED = [
    (("optimizer", "betas"), [1.5, 0.999]), (("optimizer", "betas"), 0.5), (("optimizer", "betas"), [0.9]),
    (("optimizer", "learning_rate"), 1e-3), (("optimizer", "lr"), 0), (("optimizer", "lr"), 2.0),
    (("params", "hidden"), -1), (("params", "latent_dim"), 0), (("params", "z_dim"), 0),
    (("params", "g_widths"), [256, -1]), (("params", "widths"), [32, 64]), (("params", "dropout"), 1.0),
    (("params", "channels"), 3), (("params", "image_shape"), [3, 32, 32]), (("params", "num_classes"), 7),
    (("params", "sampler_steps"), 5000), (("epochs",), 0), (("batch_size",), 0), (("learning_rate",), 0.1),
    (("conditional",), True), (("sampling",), 5), (("sampling",), {"sampler": "ddim"}),
]
_TOP_TARGETED = [
    (("seed",), 2**64), (("seed",), -1), (("holdout",), -1), (("holdout",), 10**9), (("modles",), {}),
    (("evaluation", "n_inception"), 4), (("evaluation", "n_inception"), 6), (("evaluation", "n_samples"), 10**9),
    (("evaluation", "n_inception"), 10**9), (("evaluation", "iwae_k"), 0), (("evaluation", "n_eval"), -3),
    (("evaluation", "n_sample"), 100), (("experiments", "recon"), {}), (("experiments", "samples", "n"), 0),
    (("experiments", "per_class", "model"), "nope"), (("data", "classes"), []), (("data", "clases"), ["a"]),
    (("data", "train_per_class"), 0), (("sweeps", "n"), 10**9), (("sweeps", "mdoel"), "ddpm"),
    (("evaluation", "curve_points"), -1), (("evaluation", "curve_n"), 5), (("evaluation", "cas_n_test"), 0),
]
_FOREIGN = ["learning_rate", "modles", "epoch", "n_sample", "lr_decay", "kind_", "Params", "evalution", "seeds",
            "experiment", "betas", "gpu", "data_dirs", "classes", "weight_decay", 1, None]


def _typo(key) -> str:
    s = str(key)
    return (s[:-1] + s[-1] * 2) if s else "x"


def _nested(depth: int, leaf=1):
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


def _bomb(levels: int, width: int):
    """A YAML alias bomb when dumped: each level a list of ``width`` references to the level below."""
    v = [1] * width
    for _ in range(levels):
        v = [v] * width
    return v


def _set(raw: dict, path: tuple, value) -> None:
    node = raw
    for k in path[:-1]:
        if not isinstance(node, dict):
            return
        node = node.setdefault(k, {}) if not isinstance(node.get(k), (list, int, str, float)) else node.get(k)
    if isinstance(node, dict):
        node[path[-1]] = value


_study_edit = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10**6), _values),  # a random field, a value of any type
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.none()),
    st.tuples(st.just("typo"), st.integers(0, 10**6), st.none()),  # a valid key misspelt
    st.tuples(st.just("foreign"), st.integers(0, 10**6), st.sampled_from(_FOREIGN)),  # an unknown key added
    st.tuples(st.just("model"), st.integers(0, 10**6), st.sampled_from(_TARGETED)),  # issue 18's examples
    st.tuples(st.just("top"), st.integers(0, 10**6), st.sampled_from(_TOP_TARGETED)),
    st.tuples(st.just("nest"), st.integers(0, 10**6), st.integers(1, 3 * MAX_STUDY_DEPTH)),  # deep nesting
    st.tuples(st.just("bomb"), st.integers(0, 10**6), st.tuples(st.integers(1, 12), st.integers(2, 10))),
    st.tuples(st.just("share"), st.integers(0, 10**6), st.none()),  # a model reused through an alias
)


def _apply(raw: dict, study: str, edit) -> None:
    what, i, v = edit
    paths = PATHS[study]
    path = paths[i % len(paths)]
    parent = _get(raw, path[:-1])
    if what == "set":
        _set(raw, path, v)
    elif what == "delete" and isinstance(parent, dict):
        parent.pop(path[-1], None)
    elif what == "typo" and isinstance(parent, dict) and path[-1] in parent:
        parent[_typo(path[-1])] = parent.pop(path[-1])
    elif what == "foreign":
        sec = SECTIONS[study][i % len(SECTIONS[study])]
        node = _get(raw, sec)
        if isinstance(node, dict):
            node[v] = 1
    elif what == "model":
        m = sorted(raw["models"])[i % len(raw["models"])] if isinstance(raw.get("models"), dict) and raw["models"] \
            else None
        if m is not None and isinstance(raw["models"][m], dict):
            _set(raw["models"][m], v[0], copy.deepcopy(v[1]))
    elif what == "top":
        _set(raw, v[0], copy.deepcopy(v[1]))
    elif what == "nest":
        _set(raw, path, _nested(v))
    elif what == "bomb":
        _set(raw, path, _bomb(*v))
    elif what == "share" and isinstance(raw.get("models"), dict) and raw["models"]:
        m = sorted(raw["models"])[i % len(raw["models"])]
        raw["models"][f"{m}_copy"] = raw["models"][m]  # the same object: dumped as an anchor and an alias


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter (safe_dump's, ~5x faster) where built


def _study_text(study: str, edits) -> str:
    raw = copy.deepcopy(STUDIES[study])
    for e in edits:
        _apply(raw, study, e)
    return yaml.dump(raw, Dumper=_DUMPER, sort_keys=False, width=10**6)


def _run_study_file(path: Path, profile: str, out: Path):
    from genbench.studies import stages

    with mock.patch.object(stages, "run_study", _reached):
        return _cli("--threads", "1", "run", str(path), "--profile", profile, "--out", str(out))


# --------------------------------------------------------------------------------------------------------------
# The one-pass outside model (issue 29)


class _OnePass(nn.Module):
    """A one-pass outside model whose sample() returns whatever the test sets."""

    genbench_family = "likelihood"

    def __init__(self, out=None):
        super().__init__()
        self.num_classes, self.w, self.out = 0, nn.Parameter(torch.zeros(1)), out

    def training_losses(self, x, y=None, *, generator=None):
        return {"loss": self.w.sum()}

    def sample(self, n, y=None, generator=None):
        return self.out(n) if callable(self.out) else self.out
