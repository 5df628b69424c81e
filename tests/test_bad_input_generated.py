"""Bad input gets one line, every time (issue 18): the generated study files and corrupted derived files.

Two families of generated cases (hypothesis, derandomized):

- study files made from the bundled ones by the schema (the edits are in bad_input_helpers.py): wrong types,
  out-of-range values, unknown keys (typos of valid ones and foreign names), deleted fields, YAML aliases (shared
  nodes, alias bombs) and deep nesting. Each goes through ``genbench.cli.main`` (``genbench run FILE``) in this
  process; the outcome must be exit code 2 with exactly one line on stderr, or a study that validates (the
  pipeline stage after validation is stubbed: it would train) and whose models build.
- corrupted copies of every file genbench reads back: a checkpoint (``genbench sample``), a sample bank and its
  manifest (the bank stage), the classifier cache, the feature cache (reference statistics), ``metrics.json``
  (``genbench report``) and a run's ``study.yaml`` (``genbench evaluate``). A cache must be rebuilt (and say so),
  a run file must give one line naming it.

``test_outcome_counts`` (run last) prints how many cases ended each way (``pytest -s``). The fixed cases of issue
18 are in test_bad_input_studies.py, test_bad_input_byo.py and test_bad_input_cli.py (with a sample through the
installed ``genbench`` command).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bad_input_helpers import (STUDY_NAMES, _SETTINGS, _apply, _cli, _one_line, _reached, _run_study_file,
                               _study_edit, _study_text, _values)
N_EXAMPLES = {"study_file": 300, "checkpoint": 120, "bank": 100, "classifier_cache": 10, "reference_stats": 80,
              "metrics_json": 60, "run_study_yaml": 100}
"""max_examples per generated family: 770 cases (plus 20 through the installed command). The classifier-cache
family retrains a classifier per case (its 30 cases cost ~8 minutes of CI under load), so 10; the study-file
family sits in the fast tier, so 300."""
OUTCOMES: dict[str, Counter] = {k: Counter() for k in N_EXAMPLES}



# --------------------------------------------------------------------------------------------------------------
# Generated study files
def _check_accepted(path: Path, profile: str) -> None:
    """A study that validated: every model builds from its resolved parameters (the DDPM's U-Net, ~1 s to
    build, only checked by its constructor's parameter names, which the schema did)."""
    from genbench.families import build_model
    from genbench.studies.config import load_study

    cfg = load_study(path, profile)
    for m in cfg.models:
        small = sum(v for v in m.params.values() if isinstance(v, int) and not isinstance(v, bool)) < 5000 and all(
            sum(x for x in v if isinstance(x, int)) < 5000 for v in m.params.values() if isinstance(v, list))
        if m.kind != "ddpm" and small:
            build_model(m.kind, m.params)
@settings(max_examples=N_EXAMPLES["study_file"], **_SETTINGS)
@given(study=st.sampled_from(STUDY_NAMES), edits=st.lists(_study_edit, min_size=1, max_size=3),
       profile=st.sampled_from(["smoke", "quick", "full"]))
def test_generated_study_files_give_one_line_or_validate(study, edits, profile):
    text = _study_text(study, edits)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "gen.yaml"
        p.write_text(text)
        code, lines, _ = _run_study_file(p, profile, Path(d) / "out")
        if code == "reached":
            assert not lines, lines
            _check_accepted(p, profile)
            OUTCOMES["study_file"]["validated"] += 1
        else:
            _one_line(code, lines)
            OUTCOMES["study_file"]["exit 2, one line"] += 1
        assert not (Path(d) / "out").exists()  # nothing written before the stage
# --------------------------------------------------------------------------------------------------------------
# Corrupted copies of every file genbench reads back


def _damage(blob: bytes, how) -> bytes:
    kind, a, b = how
    n = len(blob)
    if kind == "cut":
        return blob[: int(n * a)]
    if kind == "flip" and n:
        i = int(a * (n - 1))
        return blob[:i] + bytes([blob[i] ^ (b or 1)]) + blob[i + 1:]
    if kind == "zero" and n:
        i = int(a * (n - 1))
        return blob[:i] + bytes(min(64, n - i)) + blob[i + 64:]
    if kind == "junk":
        return bytes((i * 37 + b) % 256 for i in range(int(a * 3000)))
    return b""


_damages = st.tuples(st.sampled_from(["cut", "flip", "zero", "junk", "empty"]), st.floats(0, 1),
                     st.integers(0, 255))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist):
    """A tiny trained VAE run inside a study folder: checkpoint, sample bank, the smoke study's study.yaml."""
    from genbench.runtime.provenance import to_yaml
    from genbench.sampling.bank import generate, write_bank
    from genbench.studies.config import ModelConfig, load_study
    from genbench.families import load_trained, sampler_info
    from genbench.training.loop import train

    root = tmp_path_factory.mktemp("bad_input")
    study = load_study("mnist_four", "smoke")
    (root / "study.yaml").write_text(to_yaml({"profile": "smoke", **study.raw}))
    cfg = ModelConfig(name="vae", kind="vae", params={"latent_dim": 2, "hidden": 16, "channels": 1, "image_size": 28},
                      optimizer={"lr": 1e-3}, epochs=1, batch_size=64, seed=0, precision="fp32", dataset="mnist")
    train(cfg, mnist["train"].subset(slice(0, 128)), root / "vae")
    model, _ = load_trained(root / "vae")
    images, secs = generate(model, 20, seed=study.seed, precision="fp32", batch=20)
    write_bank(root / "vae", sampler_info(model), images, None, seed=study.seed, precision="fp32", gen_seconds_per_1000=secs)
    (root / "metrics.json").write_text(json.dumps({"study": "mnist-four", "models": [
        {"model": "vae", "kind": "vae", "family": "vae", "metrics": {"is": {"value": 2.0}}},
        {"model": "real", "kind": "real", "family": "real", "metrics": {"is": {"value": 9.0}}}]}))
    return root


def _copy(src: Path, d: str) -> Path:
    dst = Path(d) / src.name
    shutil.copytree(src, dst)
    return dst


_REAL_STATE_EDITS = st.sampled_from(["drop_key", "shape", "latent_dim", "hidden", "unknown_param", "param_type",
                                     "model_not_dict", "ema_garbage", "no_params", "kind"])


def _edit_checkpoint(path: Path, edit: str) -> None:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    params = ck["config"]["model"]["resolved_params"]
    k0 = sorted(ck["model"])[0]
    if edit == "drop_key":
        ck["model"].pop(k0)
    elif edit == "shape":
        ck["model"][k0] = torch.zeros(3, 3)
    elif edit == "latent_dim":
        params["latent_dim"] = 5
    elif edit == "hidden":
        params["hidden"] = 17
    elif edit == "unknown_param":
        params["frobs"] = 1
    elif edit == "param_type":
        params["latent_dim"] = "two"
    elif edit == "model_not_dict":
        ck["model"] = [1, 2]
    elif edit == "ema_garbage":
        ck["ema"] = {"model": {"x": torch.ones(1)}}
    elif edit == "no_params":
        ck["config"]["model"].pop("resolved_params")
    elif edit == "kind":
        ck["config"]["model"]["kind"] = "gan"
    torch.save(ck, path)


@pytest.mark.slow
@settings(max_examples=N_EXAMPLES["checkpoint"], **_SETTINGS)
@given(damage=st.one_of(_damages, _REAL_STATE_EDITS))
def test_corrupted_checkpoint_gives_one_line_or_samples(trained, damage):
    with tempfile.TemporaryDirectory() as d:
        run = _copy(trained / "vae", d)
        ck = run / "checkpoints" / "last.pt"
        if isinstance(damage, str):
            _edit_checkpoint(ck, damage)
        else:
            ck.write_bytes(_damage(ck.read_bytes(), damage))
        code, err, out = _cli("--threads", "1", "sample", str(run), "--n", "4", "--out", str(Path(d) / "s.png"))
        if code == 0:
            assert (Path(d) / "s.png").exists() and "4 images" in out
            OUTCOMES["checkpoint"]["success"] += 1
        else:
            _one_line(code, err)
            assert str(ck) in err[0] and ("retrain" in err[0] or "train first" in err[0]), err[0]
            OUTCOMES["checkpoint"]["exit 2, one line"] += 1


@pytest.mark.slow
@settings(max_examples=N_EXAMPLES["bank"], **_SETTINGS)
@given(damage=_damages, which=st.sampled_from(["bank.npz", "manifest.json"]))
def test_corrupted_bank_is_generated_again(trained, damage, which):
    """The bank stage (``runner.sample_bank``) on a damaged bank or manifest: regenerated and rewritten (a
    damaged one with a log line), or reused when the damage left it valid."""
    import dataclasses

    from genbench.sampling.bank import read_bank
    from genbench.studies.config import load_study
    from genbench.studies.runner import sample_bank

    study = load_study("mnist_four", "smoke")
    study = dataclasses.replace(study, evaluation=dataclasses.replace(study.evaluation, n_samples=20))
    with tempfile.TemporaryDirectory() as d:
        run = _copy(trained / "vae", d)
        f = run / "samples" / which
        f.write_bytes(_damage(f.read_bytes(), damage))
        with contextlib.redirect_stderr(io.StringIO()):
            reused = read_bank(run) is not None
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            images, labels, manifest = sample_bank(run, study, "fp32")
        assert images.shape == (20, 1, 28, 28) and images.dtype == torch.uint8
        again = read_bank(run)
        assert again is not None and torch.equal(again[0], images)  # a valid bank is on disk now
        if reused:
            OUTCOMES["bank"]["success (still valid)"] += 1
        else:
            assert "[sample]" in err.getvalue()
            OUTCOMES["bank"]["rebuilt" + (" (said damaged)" if "damaged" in err.getvalue() else " (stale)")] += 1


@pytest.fixture(scope="module")
def classifier_cache(mnist, tmp_path_factory):
    """A classifier cache written by get_classifier (a 2-step classifier on 256 images): (splits, cache file
    relative to GENBENCH_HOME, its bytes, its info)."""
    from genbench.metrics.classifier import get_classifier

    train, test = mnist["train"].subset(slice(0, 256)), mnist["test"].subset(slice(0, 200))
    home = tmp_path_factory.mktemp("home")
    with mock.patch.dict(os.environ, {"GENBENCH_HOME": str(home)}):
        _, info = get_classifier(train, test, epochs=1, seed=0, min_accuracy=0.0, log=lambda m: None)
    path = Path(info["cache"])
    return (train, test), path.relative_to(home), path.read_bytes(), info


@pytest.mark.slow
@settings(max_examples=N_EXAMPLES["classifier_cache"], **_SETTINGS)
@given(damage=st.one_of(_damages, st.sampled_from(["state", "info", "list"])))
def test_corrupted_classifier_cache_is_trained_again(classifier_cache, damage):
    from genbench.metrics.classifier import get_classifier

    (train, test), rel, blob, info = classifier_cache
    logs: list[str] = []
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_HOME": d}):
        path = Path(d) / rel
        path.parent.mkdir(parents=True)
        if isinstance(damage, str):
            ck = torch.load(io.BytesIO(blob), weights_only=True)
            bad = {"state": {**ck, "model": {"w": torch.ones(1)}}, "info": {**ck, "info": "x"}, "list": [1]}[damage]
            torch.save(bad, path)
        else:
            path.write_bytes(_damage(blob, damage))
        model, info2 = get_classifier(train, test, epochs=1, seed=0, min_accuracy=0.0, log=logs.append)
        assert 0 <= info2["test_accuracy"] <= 1 and model is not None
        if any("damaged" in line for line in logs):
            assert info2["test_accuracy"] == info["test_accuracy"]  # the same seeded classifier again
            assert torch.load(path, weights_only=True)["info"]["test_accuracy"] == info["test_accuracy"]  # rewritten
            OUTCOMES["classifier_cache"]["rebuilt"] += 1
        else:
            OUTCOMES["classifier_cache"]["success (still valid)"] += 1


@settings(max_examples=N_EXAMPLES["reference_stats"], **_SETTINGS)
@given(damage=st.one_of(_damages, st.sampled_from(["no_mu", "shape", "nan", "pickle"])))
def test_corrupted_reference_statistics_are_computed_again(damage):
    """The feature cache that holds the reference statistics (genbench.metrics.feature_cache): a damaged file is
    removed with one line, never read as numbers other than those stored."""
    from genbench.metrics.feature_cache import FeatureCache

    logs: list[str] = []
    n, dim = 12, 8
    key = {"dataset": "toy", "split": "test", "n": n}
    shapes = {"features": (n, dim), "mu": (dim,), "sigma": (dim, dim)}
    good = dict(mu=np.zeros(dim), sigma=np.eye(dim), features=np.ones((n, dim)))
    with tempfile.TemporaryDirectory() as d:
        cache = FeatureCache(Path(d), log=logs.append)
        path = cache.write(key, good)
        if damage == "no_mu":
            cache.write(key, {k: v for k, v in good.items() if k != "mu"})
        elif damage == "shape":
            cache.write(key, {**good, "features": np.ones((n - 1, dim))})
        elif damage == "nan":
            cache.write(key, {**good, "sigma": np.full((dim, dim), np.nan)})
        elif damage == "pickle":
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
            np.savez(path, **{**arrays, "mu": np.array([{"a": 1}], dtype=object)})
        else:
            path.write_bytes(_damage(path.read_bytes(), damage))
        got = cache.read(key, shapes, "reference statistics")
        if got is None:
            assert len(logs) == 1 and "damaged" in logs[0] and "computing them again" in logs[0]
            assert not path.exists()  # removed: the next run computes and writes it again
            OUTCOMES["reference_stats"]["rebuilt"] += 1
        else:
            assert all(np.array_equal(got[k], good[k]) for k in good) and not logs
            OUTCOMES["reference_stats"]["success (still valid)"] += 1


@pytest.mark.slow
@settings(max_examples=N_EXAMPLES["metrics_json"], **_SETTINGS)
@given(damage=st.one_of(_damages, st.sampled_from(['[]', '{"models": 5}', '{"models": [1]}', 'null', '"x"',
                                                    '{"models": [{"model": "real"}]}'])))
def test_corrupted_metrics_json_gives_one_line(trained, damage):
    with tempfile.TemporaryDirectory() as d:
        sd = Path(d) / "study"
        sd.mkdir()
        (sd / "metrics.json").write_bytes(damage.encode() if isinstance(damage, str) else
                                          _damage((trained / "metrics.json").read_bytes(), damage))
        code, err, _ = _cli("report", str(sd))
        _one_line(code, err)
        assert "metrics.json" in err[0] and "genbench" in err[0][len("genbench: error: "):], err[0]
        OUTCOMES["metrics_json"]["exit 2, one line"] += 1


@pytest.mark.slow
@settings(max_examples=N_EXAMPLES["run_study_yaml"], **_SETTINGS)
@given(damage=st.one_of(_damages, st.tuples(st.just("edit"), st.integers(0, 10**6), _values)))
def test_corrupted_run_study_yaml_gives_one_line(trained, damage):
    from genbench.studies import runner

    with tempfile.TemporaryDirectory() as d:
        sd = Path(d) / "study"
        sd.mkdir()
        shutil.copytree(trained / "vae", sd / "vae")
        text = (trained / "study.yaml").read_bytes()
        if damage[0] == "edit":
            raw = yaml.safe_load(text)
            _apply(raw, "mnist_four", ("set", damage[1], damage[2]))
            text = yaml.safe_dump(raw).encode()
        else:
            text = _damage(text, damage)
        (sd / "study.yaml").write_bytes(text)
        with mock.patch.object(runner, "prepare_data", _reached):
            code, err, _ = _cli("--threads", "1", "evaluate", str(sd / "vae"))
        if code == "reached":
            OUTCOMES["run_study_yaml"]["success (still valid)"] += 1
        else:
            _one_line(code, err)
            assert str(sd / "study.yaml") in err[0], err[0]
            assert "is damaged" in err[0] or "not found" in err[0] or "is not a model of study" in err[0], err[0]
            OUTCOMES["run_study_yaml"]["exit 2, one line"] += 1


PROPERTY_TESTS = {"study_file": "test_generated_study_files_give_one_line_or_validate",
                  "checkpoint": "test_corrupted_checkpoint_gives_one_line_or_samples",
                  "bank": "test_corrupted_bank_is_generated_again",
                  "classifier_cache": "test_corrupted_classifier_cache_is_trained_again",
                  "reference_stats": "test_corrupted_reference_statistics_are_computed_again",
                  "metrics_json": "test_corrupted_metrics_json_gives_one_line",
                  "run_study_yaml": "test_corrupted_run_study_yaml_gives_one_line"}


def test_outcome_counts(request):
    """Runs last in this module: each generated family whose test ran in this session fed at least half its
    max_examples (hypothesis runs all of them unless the strategy's space is exhausted; measured: every family at
    exactly max_examples) and took the error path at least once (an exit 2 or a rebuild: a generator that only
    makes valid inputs tests nothing); the study-file generator also makes files that validate (both sides of
    the validation). The counts are printed (pytest -s)."""
    assert set(PROPERTY_TESTS) == set(N_EXAMPLES)
    ran = {item.originalname for item in request.session.items if item.module is request.module}
    families = [k for k, name in PROPERTY_TESTS.items() if name in ran]
    total = sum(sum(c.values()) for c in OUTCOMES.values())
    print(f"\nbad-input cases: {total} generated + 20 through the installed command")
    for k, c in OUTCOMES.items():
        print(f"  {k}: {dict(c)}")
    if not families:
        pytest.skip("no generated family of this module ran in this session")
    for k in families:
        c = OUTCOMES[k]
        assert sum(c.values()) >= N_EXAMPLES[k] // 2, (k, dict(c), N_EXAMPLES[k])
        assert sum(v for o, v in c.items() if not o.startswith(("success", "validated"))) > 0, (k, dict(c))
    if "study_file" in families:
        assert OUTCOMES["study_file"]["validated"] > 0, dict(OUTCOMES["study_file"])
