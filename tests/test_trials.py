"""Fair comparisons (issue 13): equal-compute budgets, several seeds with t-intervals, sequential and Ray engines,
resumed sweeps that skip finished trials."""

import json
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


def _tiny_study(tmp_path) -> Path:
    """The MNIST study's VAE and GAN at the smoke profile, with small evaluation sizes and no sweep (each trial
    is then a few seconds of training and mostly evaluation)."""
    raw = yaml.safe_load((ROOT / "studies" / "mnist_four.yaml").read_text())
    raw["models"] = {k: raw["models"][k] for k in ("vae", "gan")}
    raw.pop("sweeps")
    raw["experiments"] = {}
    raw["evaluation"].update({"n_samples": 60, "n_inception": 20, "cas_steps": 2, "n_manifold": 20,
                              "n_memorisation": 20})
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _check_aggregate(out: Path, budget: int):
    d = out / "mnist-four"
    agg = json.loads((d / "aggregate.json").read_text())
    assert agg["seeds"] == [42, 43] and agg["n"] == 2 and agg["budget"] == {"kind": "images", "value": budget}
    for name in ("vae", "gan"):
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


def test_budget_and_two_seeds_sequential_then_resume_skips(tmp_path):
    study = _tiny_study(tmp_path)
    cmd = [*GENBENCH, "run", str(study), "--profile", "smoke", "--budget", "images=2048", "--seeds", "2",
           "--out", str(tmp_path / "runs")]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    _check_aggregate(tmp_path / "runs", 2048)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)  # a resumed sweep: nothing retrained
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stderr.count("finished, skipped") == 2 and "[train]" not in p.stderr


def test_two_seeds_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("ray")
    study = _tiny_study(tmp_path)
    env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([*GENBENCH, "run", str(study), "--profile", "smoke", "--budget", "images=2048",
                        "--seeds", "2", "--engine", "ray", "--out", str(tmp_path / "runs")],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "2 trials submitted to Ray" in p.stderr
    _check_aggregate(tmp_path / "runs", 2048)
