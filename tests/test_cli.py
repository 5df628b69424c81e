"""The CLI end to end: the smoke study on a small slice of real MNIST, report-only, and one-line errors."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GENBENCH = [sys.executable, "-m", "genbench.cli"]


def _run(*args, cwd=None):
    return subprocess.run([*GENBENCH, *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow
def test_smoke_study_writes_runs_metrics_and_report(smoke_study):
    d = smoke_study
    summary = json.loads((d / "metrics.json").read_text())
    names = [r["model"] for r in summary["models"]]
    assert names == ["vae", "gan", "cgan", "ddpm", "flow", "real"]
    for r in summary["models"]:
        m = r["metrics"]
        assert m["fid_inception"]["n_generated"] == 20 and m["fid_inception"]["resize"] == "tf1_bilinear"
        assert 1.0 <= m["is"]["value"] <= 10.0
    cond = {r["model"] for r in summary["models"] if "conditional_accuracy" in r["metrics"]}
    assert {"cgan", "ddpm", "flow", "real"} <= cond and "gan" not in cond
    for name in ("vae", "gan", "cgan", "ddpm", "flow"):
        assert (d / name / "checkpoints" / "last.pt").exists()
        assert (d / name / "samples" / "bank.npz").exists()
        man = json.loads((d / name / "samples" / "manifest.json").read_text())
        assert man["n"] == 100 and man["seed"] == 42
    eff = {r["model"]: r["metrics"]["efficiency"] for r in summary["models"] if r["model"] != "real"}
    assert (eff["ddpm"]["sampler"], eff["ddpm"]["sampler_steps"], eff["ddpm"]["nfe"]) == ("ddim", 5, 10)
    assert (eff["flow"]["sampler"], eff["flow"]["sampler_steps"], eff["flow"]["nfe"]) == ("heun", 3, 12)
    html = (d / "report" / "index.html").read_text()
    for fig in ("comparison.png", "training_curves.png", "grid_cgan.png", "radar.png", "fid.png"):
        assert (d / "report" / "figures" / fig).exists() and fig in html
    assert not [t for t in re.findall(r"<script[^>]*>", html) if "src=" in t]  # offline: plotly.js inlined
    # the one schema: family metrics on the VAE and the GANs, experiments on the VAE, FID-infinity with its fit
    recs = {r["model"]: r for r in summary["models"]}
    assert summary["schema_version"] == 2 and {"elbo", "iwae_nll", "active_units"} <= set(recs["vae"]["metrics"])
    assert "d_diagnostics" in recs["gan"]["metrics"] and "elbo" not in recs["ddpm"]["metrics"]
    assert set(summary["experiments"]) == {"reconstructions", "interpolations", "linear_probe", "nearest_neighbours"}
    assert "fid_inf_inception" in recs["real"]["metrics"] and "fid_infinity.png" in html
    assert (d / "reference_indices.npy").exists() and (d / "heldout_indices.npy").exists()


def _timeless(x):
    """A metrics dict without its wall-clock timings (keys naming seconds), which no rerun reproduces."""
    if isinstance(x, dict):
        return {k: _timeless(v) for k, v in x.items() if "seconds" not in k}
    if isinstance(x, list):
        return [_timeless(v) for v in x]
    return x


@pytest.mark.slow
def test_report_only_and_evaluate_only(smoke_study, tmp_path):
    p = _run("report", str(smoke_study))
    assert p.returncode == 0, p.stderr
    before = json.loads((smoke_study / "metrics.json").read_text())
    # evaluate a copy (the study is shared by the session's tests) from which the two models' records are gone:
    # the evaluation must write them again, so an evaluate that did nothing fails
    d = tmp_path / smoke_study.name
    shutil.copytree(smoke_study, d)
    redo = ("gan", "vae")
    gone = {**before, "models": [r for r in before["models"] if r["model"] not in redo]}
    (d / "metrics.json").write_text(json.dumps(gone))
    for name in redo:
        (d / name / "metrics.json").unlink()
    p = _run("evaluate", str(d / "gan"), str(d / "vae"), "--no-report")
    assert p.returncode == 0, p.stderr[-2000:]
    after = json.loads((d / "metrics.json").read_text())
    # evaluate on two models merges their new records and keeps the others, in the study's order
    assert [r["model"] for r in after["models"]] == [r["model"] for r in before["models"]]
    assert after["schema_version"] == before["schema_version"] == 2
    # The banks are reused (same checkpoint) and the evaluation is seeded, on the same machine with the same thread
    # count as the run: the same images give exactly the same numbers, timings aside.
    b = {r["model"]: r for r in before["models"]}
    for r in after["models"]:
        assert _timeless(r["metrics"]) == _timeless(b[r["model"]]["metrics"]), r["model"]
    for name in redo:
        rec = json.loads((d / name / "metrics.json").read_text())
        assert _timeless(rec["metrics"]) == _timeless(b[name]["metrics"]), name


@pytest.mark.slow
def test_sample_command(smoke_study, tmp_path):
    out = tmp_path / "s.png"
    p = _run("sample", str(smoke_study / "cgan"), "--n", "10", "--label", "7", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    for run, extra in (("ddpm", ["--sampler", "dpm_solver", "--steps", "3"]), ("flow", ["--sampler", "euler"]),
                       ("ddpm", [])):
        p = _run("sample", str(smoke_study / run), "--n", "4", "--label", "3", "--out", str(out), *extra)
        assert p.returncode == 0 and "4 images" in p.stdout, p.stderr
    for run, extra, needle in (("ddpm", ["--sampler", "heun"], "'heun' is not a diffusion sampler"),
                               ("ddpm", ["--sampler", "ddim", "--steps", "7"], "DDIM with 7 steps"),
                               ("gan", ["--steps", "5"], "apply to diffusion, flow and shortcut models only")):
        p = _run("sample", str(smoke_study / run), "--n", "2", "--out", str(out), *extra)
        assert p.returncode == 2 and needle in p.stderr, p.stderr


@pytest.mark.parametrize("args,needle", [
    (["run", "no_such_study"], "study file no_such_study not found"),
    (["run", "--profile", "huge"], "unknown profile 'huge'"),
    (["data", "fetch", "imagenet"], "unknown dataset or asset 'imagenet'"),
    (["report", "/nonexistent"], "no metrics.json"),
    (["train", "transformer"], "model 'transformer' is not in study"),
])
def test_bad_input_gives_one_line_and_exit_2(args, needle):
    """In process (``cli_in_process``: the same ``main``, its exit code and stderr; a subprocess per case cost ~8 s
    of interpreter and torch start-up); one case also runs as a real process below."""
    from conftest import cli_in_process

    code, lines, _ = cli_in_process(*args)
    assert code == 2 and len(lines) == 1 and needle in lines[0], (code, lines)


def test_a_real_process_exits_2_with_one_line():
    p = _run("run", "no_such_study")
    lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "study file no_such_study not found" in lines[0], p.stderr


def test_bad_study_field(tmp_path):
    from conftest import cli_in_process

    bad = tmp_path / "bad.yaml"
    src = (Path(__file__).parent.parent / "studies" / "mnist_four.yaml").read_text()
    bad.write_text(src.replace("kind: gan", "kind: gam"))
    code, lines, _ = cli_in_process("run", str(bad), "--profile", "smoke", "--out", str(tmp_path))
    assert code == 2 and any("bad.yaml.models.gan.kind: unknown model kind 'gam'" in line for line in lines), lines
