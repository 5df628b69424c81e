"""SIGKILL during the stages after training (sample generation, evaluation, the sampler sweep, the report), then
`genbench run` again: the study finishes with the same numbers as an uninterrupted run (issue 18)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, "-m", "genbench.cli", "--threads", "1", "run"]
# stage -> the stderr text after which the kill lands (the stage is then under way)
KILL_AFTER = {"generation": "[sample] ddpm", "evaluation": "[evaluate] ddpm: Inception features",
              "sweep": "[sweep] ddpm ddim-2", "report": "chosen:"}


def _study(tmp_path) -> Path:
    """The MNIST study's VAE and DDPM at the smoke profile, the smallest evaluation the schema takes (CAS on 1,000
    test images: scoring all 10,000 twice per run dominated the test), the smoke sweep on the DDPM."""
    raw = yaml.safe_load((ROOT / "studies" / "mnist_four.yaml").read_text())
    raw["models"] = {k: raw["models"][k] for k in ("vae", "ddpm")}
    raw["experiments"] = {"reconstructions": {"n": 4}}
    raw["evaluation"].update({"n_samples": 20, "n_inception": 10, "cas_steps": 2, "n_manifold": 10,
                              "n_memorisation": 10, "n_eval": 20, "iwae_k": 2, "cas_n_test": 1000})
    raw["sweeps"].update({"models": ["ddpm"], "samplers": {"ddim": [2]}, "reference": {"sampler": "ddim", "steps": 4},
                          "guidance_scales": [0], "guidance_sampler": {"sampler": "ddim", "steps": 2},
                          "n": 8, "n_inception": 8})
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def _numbers(d: Path) -> list:
    """Every model's metrics and quality-vs-compute curve without wall times, and the sweep's quality numbers."""
    drop = {"eval_seconds", "gen_seconds_per_1000", "efficiency", "provenance", "seconds_per_1000", "seconds",
            "save_seconds", "snapshot_save_seconds"}

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in drop}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    m = json.loads((d / "metrics.json").read_text())
    sw = json.loads((d / "sweeps.json").read_text())
    return [strip([[r["metrics"], r.get("curve")] for r in m["models"]]),
            strip([[r.get("fid_inception"), r.get("fd_classifier")] for r in sw["settings"]])]


def _run_and_kill(study: Path, out: Path, after: str) -> str:
    p = subprocess.Popen([*RUN, str(study), "--profile", "smoke", "--out", str(out)], cwd=ROOT,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen = ""
    for line in p.stderr:
        seen += line
        if after in line:
            time.sleep(0.3)  # inside the stage that follows the line
            p.send_signal(signal.SIGKILL)
            break
    p.wait(timeout=600)
    return seen


@pytest.mark.slow
def test_sigkill_in_each_stage_after_training_then_run_again_gives_the_same_numbers(tmp_path):
    """One study killed four times in a row, each time in a later stage, then finished by a plain `genbench run`
    (no --resume: a study is finished only once its report is written); its numbers equal an uninterrupted run's,
    and no temp file of an interrupted atomic write is left behind."""
    study = _study(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([*RUN, str(study), "--profile", "smoke", "--out", str(tmp_path / "ref")], cwd=ROOT,
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    want = _numbers(tmp_path / "ref" / "mnist-four")
    out = tmp_path / "runs"
    d = out / "mnist-four"
    for stage, after in KILL_AFTER.items():
        seen = _run_and_kill(study, out, after)
        assert after in seen, (stage, seen[-2000:])
        assert not (d / "finished.json").exists(), stage  # killed before its report: not finished
    p = subprocess.run([*RUN, str(study), "--profile", "smoke", "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (d / "finished.json").exists() and (d / "report" / "index.html").exists()
    # exact: both runs on this machine in the same environment (OMP_NUM_THREADS=1), so the same kernels and
    # reduction order; what differs is only where each stage was killed and resumed
    assert _numbers(d) == want
    assert not list(d.rglob(".*.tmp"))
