"""Fair comparisons (issue 13): equal-compute budgets, several seeds with t-intervals, sequential and Ray engines,
resumed sweeps that skip finished trials."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genbench.studies.trials import t_interval

ROOT = Path(__file__).resolve().parent.parent
GENBENCH = [sys.executable, "-m", "genbench.cli", "--threads", "1"]


def test_t_interval_known_answer():
    r = t_interval([1.0, 2.0, 3.0])  # s = 1, t_{0.975, 2} = 4.302653
    assert r["mean"] == 2.0 and r["std"] == pytest.approx(1.0)
    assert r["half_width"] == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-6) and r["n"] == 3
    assert t_interval([5.0])["half_width"] is None


@pytest.mark.slow
def test_budget_stops_at_the_first_step_past_it(mnist, tmp_path):
    """An images budget: the run stops at the first step whose images seen reach the budget, mid-epoch, with a
    complete finished checkpoint; a FLOPs budget likewise, counted per step by torch.utils.flop_counter."""
    from genbench.studies.config import ModelConfig
    from genbench.training.checkpoint import load_checkpoint
    from genbench.training.loop import train

    data = mnist["train"].subset(slice(0, 512))
    base = dict(name="v", kind="vae", params={"latent_dim": 4, "hidden": 32}, optimizer={"lr": 1e-3}, epochs=1,
                batch_size=64, seed=0, precision="fp32", dataset="mnist", log_every=2)
    s = train(ModelConfig(**base, budget={"kind": "images", "value": 1000}), data, tmp_path / "a")
    ck = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    assert ck["finished"] and ck["images_seen"] == 1024 and ck["step"] == 16  # 15 * 64 = 960 < 1000 <= 1024
    assert s["flops_per_step"] > 0 and s["flops"] == s["flops_per_step"] * 16
    per = s["flops_per_step"]
    train(ModelConfig(**base, budget={"kind": "flops", "value": 3.5 * per}), data, tmp_path / "b")
    ck = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert ck["step"] == 4 and ck["finished"] and ck["epoch"] == 1  # 3 steps < 3.5 x per-step <= 4 steps


def _tiny_study(tmp_path, models=("vae", "gan")) -> Path:
    """The MNIST study's ``models`` at the smoke profile (its curve: K = 2), with the smallest evaluation sizes the
    schema takes (CAS of the real row on 1,000 test images, not 10,000: that pass dominated a trial) and no sweep
    (each trial is then a few seconds of training and mostly evaluation)."""
    raw = yaml.safe_load((ROOT / "studies" / "mnist_four.yaml").read_text())
    raw["models"] = {k: raw["models"][k] for k in models}
    raw.pop("sweeps")
    raw["experiments"] = {}
    raw["evaluation"].update({"n_samples": 20, "n_inception": 10, "cas_steps": 2, "n_manifold": 10,
                              "n_memorisation": 10, "n_eval": 20, "iwae_k": 2, "cas_n_test": 1000})
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _check_aggregate(out: Path, budget: int, names=("vae", "gan")):
    d = out / "mnist-four"
    agg = json.loads((d / "aggregate.json").read_text())
    assert agg["seeds"] == [42, 43] and agg["n"] == 2 and agg["budget"] == {"kind": "images", "value": budget}
    for name in names:
        fid = agg["models"][name]["metrics"]["fid_inception.value"]
        assert set(fid["per_seed"]) == {"42", "43"} and fid["half_width"] is not None and fid["n"] == 2
        comp = agg["models"][name]["metrics"]["compute"]["images_seen"]
        assert abs(comp["mean"] - budget) <= 0.1 * budget  # images: exactly the first batch boundary past it
    assert "real" in agg["models"]
    for s in (42, 43):
        m = json.loads((d / "seeds" / f"seed_{s}" / "mnist-four" / "metrics.json").read_text())
        assert m["seed"] == s and all(r["metrics"]["efficiency"]["budget"]["value"] == budget
                                      for r in m["models"] if r["model"] != "real")
    html = (d / "report" / "index.html").read_text()
    assert "95% t-interval" in html and "seed_43" in html


def _check_curves(d: Path, names, budget: int, n: int):
    """The quality-vs-compute curve (issue 13) of each model of a budget study: K = 2 points (smoke) at 1/2 and 2/2
    of the images budget, images increasing, the last point at the end of training (the finished checkpoint's
    steps and images), finite FD on n images; the report draws the figure and says who was still improving."""
    for name in names:
        rec = json.loads((d / name / "metrics.json").read_text())
        c, eff = rec["curve"], rec["metrics"]["efficiency"]
        pts = c["points"]
        assert c["points_planned"] == 2 == len(pts) and c["target"] == {"kind": "images", "value": budget}
        assert [p["fraction"] for p in pts] == [0.5, 1.0]
        assert all(a["images"] < b["images"] and a["steps"] < b["steps"] for a, b in zip(pts, pts[1:]))
        assert pts[0]["images"] >= budget / 2 > pts[0]["images"] - 128  # the first step past half the budget
        assert (pts[-1]["steps"], pts[-1]["images"]) == (eff["steps"], eff["images_seen"])
        assert all(math.isfinite(p["fd_classifier"]) and p["fd_classifier"] >= 0 and p["n"] == n for p in pts)
        assert [p["source"] for p in pts] == ["snapshot", "bank"]
    html = (d / "report" / "index.html").read_text()
    assert "figures/quality_curve.png" in html and f"N = {n} generated images" in html
    assert any(s in html for s in ("Still improving", "Levelled off", "Got worse"))
    assert (d / "report" / "figures" / "quality_curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_budget_and_two_seeds_sequential_then_resume_skips(tmp_path):
    study = _tiny_study(tmp_path)
    cmd = [*GENBENCH, "run", str(study), "--profile", "smoke", "--budget", "images=1500", "--seeds", "2",
           "--out", str(tmp_path / "runs")]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    _check_aggregate(tmp_path / "runs", 1500)
    _check_curves(tmp_path / "runs" / "mnist-four" / "seeds" / "seed_43" / "mnist-four", ("vae", "gan"), 1500, 20)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)  # a resumed sweep: nothing retrained
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("finished, skipped") == 2 and "[train]" not in p.stderr


@pytest.mark.slow
def test_two_seeds_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray")
    study = _tiny_study(tmp_path, models=("vae",))  # the engine is under test; the sequential test has two models
    env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([*GENBENCH, "run", str(study), "--profile", "smoke", "--budget", "images=1500",
                        "--seeds", "2", "--engine", "ray", "--out", str(tmp_path / "runs")],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 trials submitted to Ray" in p.stderr
    _check_aggregate(tmp_path / "runs", 1500, ("vae",))
