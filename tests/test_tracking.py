"""Trackers (issue 16): TensorBoard and MLflow get the losses of every logging step, the final metrics, a sample
grid and the config; each test reads them back with the library's own reader and compares them with the files
genbench wrote (``history.jsonl``, ``metrics.json``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from conftest import cli_in_process
from genbench.errors import GenbenchError
from genbench.io import read_jsonl
from genbench.runtime.tracking import check_trackers, metric_scalars, open_tracker
from genbench.studies.config import ModelConfig, parse_study

STUDY = """\
# the smallest study: one VAE on 256 MNIST images, 20 samples
name: track
dataset: mnist
holdout: 200
train_subset: 256
batch_size: 64
log_every: 1
log: [tensorboard]
models:
  vae: {kind: vae, params: {latent_dim: 4}, optimizer: {lr: 1.0e-3}, epochs: 1}
evaluation: {n_samples: 20, n_inception: 10, classifier_epochs: 1, classifier_min_accuracy: 0.0, cas_steps: 5,
             n_manifold: 20, n_memorisation: 20, iwae_k: 2, n_eval: 20, fid_bootstrap: 20}
"""


def _tb_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}, acc


def _mlflow_runs(uri: str, experiment: str) -> dict:
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 reads file stores only with it
    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name(experiment)
    return c, {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}


@pytest.mark.slow
def test_training_loop_logs_every_history_line(tmp_path, mnist, monkeypatch):
    """The loop's tracker hook: each step and epoch line of history.jsonl arrives in both trackers, same step, same
    value (float32 in TensorBoard); the config arrives once."""
    from genbench.training.loop import train

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = ModelConfig(name="vae", kind="vae", params={"latent_dim": 4}, optimizer={"lr": 1e-3}, epochs=2,
                      batch_size=64, seed=42, precision="fp32", dataset="mnist", log_every=1)
    t = open_tracker(["tensorboard", "mlflow"], log_dir=tmp_path, experiment="loop", run="vae", config=cfg.to_dict())
    train(cfg, mnist["train"].subset(slice(0, 128)), tmp_path / "vae", tracker=t)
    t.close()
    hist = read_jsonl(tmp_path / "vae" / "history.jsonl")
    steps = [(r["step"], r["loss"]) for r in hist if r["kind"] == "step"]
    epochs = [(r["step"], r["kl"]) for r in hist if r["kind"] == "epoch"]
    assert len(steps) == 4 and len(epochs) == 2
    tb, acc = _tb_scalars(tmp_path / "tensorboard" / "vae")
    assert [s for s, _ in tb["train/loss"]] == [s for s, _ in steps]
    # TensorBoard stores float32: the logged float64 comes back rounded to 24 bits (relative error < 6e-8)
    assert [v for _, v in tb["train/loss"]] == pytest.approx([v for _, v in steps], rel=1e-6)
    assert tb["epoch/kl"] == [(s, pytest.approx(v, rel=1e-6)) for s, v in epochs]
    assert "config" in str(acc.Tags())
    c, runs = _mlflow_runs((tmp_path / "mlruns").resolve().as_uri(), "loop")
    run = runs["vae"]
    got = [(m.step, m.value) for m in sorted(c.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)]
    assert got == steps  # MLflow keeps float64: exact
    assert run.data.params["model.kind"] == "vae" and run.data.params["optimizer.lr"] == "0.001"
    assert "config.json" in {a.path for a in c.list_artifacts(run.info.run_id)}


@pytest.mark.slow
def test_study_logs_metrics_grid_and_real_row(tmp_path, monkeypatch):
    """`genbench run --log tensorboard --log mlflow` (the CLI overriding the study's `log: [tensorboard]`): the
    final metrics equal metrics.json, the sample grid is there, and the real-data row has a run of its own."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "track.yaml").write_text(STUDY)
    p = subprocess.run([sys.executable, "-m", "genbench.cli", "run", str(tmp_path / "track.yaml"), "--profile", "smoke",
                        "--out", str(tmp_path / "runs"), "--log", "tensorboard", "--log", "mlflow"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "runs" / "track"
    rows = {r["model"]: r for r in json.loads((d / "metrics.json").read_text())["models"]}
    want = metric_scalars(rows["vae"]["metrics"])
    steps = rows["vae"]["metrics"]["efficiency"]["steps"]
    assert {"eval/fid_inception", "eval/fid_inception.std", "eval/prdc_inception.recall", "eval/elbo"} <= set(want)
    tb, acc = _tb_scalars(d / "tensorboard" / "vae")
    # float32 in TensorBoard (see above); MLflow keeps the float64 the run logged, the same number the run wrote to
    # metrics.json (JSON round-trips a float exactly), so the MLflow checks below are exact
    assert tb["eval/fid_inception"] == [(steps, pytest.approx(want["eval/fid_inception"], rel=1e-6))]
    assert "samples" in acc.Tags()["images"]
    tb_real, _ = _tb_scalars(d / "tensorboard" / "real")
    assert tb_real["eval/fid_inception"][0][1] == pytest.approx(rows["real"]["metrics"]["fid_inception"]["value"],
                                                                 rel=1e-6)
    c, runs = _mlflow_runs((d / "mlruns").resolve().as_uri(), "track")
    assert set(runs) == {"vae", "real"}
    vae = c.get_run(runs["vae"].info.run_id)
    assert {k: vae.data.metrics[k] for k in want} == want  # the last value of every eval/* scalar
    assert len(c.get_metric_history(vae.info.run_id, "train/loss")) == len(
        [r for r in read_jsonl(d / "vae" / "history.jsonl") if r["kind"] == "step"])
    assert {"samples.png", "config.json"} <= {a.path for a in c.list_artifacts(vae.info.run_id)}
    assert runs["real"].data.metrics["eval/fid_inception"] == rows["real"]["metrics"]["fid_inception"]["value"]


def test_bad_tracker_names_and_missing_libraries(tmp_path):
    code, lines, _ = cli_in_process("run", "--log", "wandb", "--out", str(tmp_path))
    assert code == 2 and len(lines) == 1 and "unknown tracker 'wandb'" in lines[0] and "tensorboard" in lines[0]
    with mock.patch.dict(sys.modules, {"mlflow": None}):  # the library not installed
        code, lines, _ = cli_in_process("run", "--log", "mlflow", "--out", str(tmp_path))
    assert code == 2 and len(lines) == 1 and "pip install mlflow" in lines[0]
    with mock.patch.dict(sys.modules, {"tensorboard": None}):
        with pytest.raises(GenbenchError, match="pip install tensorboard"):
            check_trackers(["tensorboard"])
    assert check_trackers(["none"]) == () and check_trackers(["mlflow", "mlflow"]) == ("mlflow",)
    raw = {"name": "s", "dataset": "mnist", "models": {"v": {"kind": "vae", "optimizer": {"lr": 1e-3}, "epochs": 1}}}
    assert parse_study({**raw, "log": ["tensorboard", "mlflow"]}, "smoke").log == ("tensorboard", "mlflow")
    assert parse_study(raw, "smoke").log == ()
    with pytest.raises(GenbenchError, match=r"\.log: .*tensorboard, mlflow"):
        parse_study({**raw, "log": ["wandb"]}, "smoke")


@pytest.mark.slow
def test_train_command_logs_to_the_tracker(tmp_path):
    """`genbench train MODEL --log tensorboard`: every training history line reaches TensorBoard, like `run`."""
    (tmp_path / "track.yaml").write_text(STUDY.replace("log: [tensorboard]\n", ""))
    out = tmp_path / "runs" / "track" / "vae"
    code, lines, _ = cli_in_process("train", "vae", "--study", str(tmp_path / "track.yaml"), "--profile", "smoke",
                       "--out", str(out), "--log", "tensorboard")
    assert code == 0, lines
    tb, _ = _tb_scalars(tmp_path / "runs" / "track" / "tensorboard" / "vae")
    steps = [r for r in read_jsonl(out / "history.jsonl") if r["kind"] == "step"]
    assert steps and len(tb["train/loss"]) == len(steps)
    code, lines, _ = cli_in_process("train", "vae", "--study", str(tmp_path / "track.yaml"), "--log", "wandb",
                       "--out", str(tmp_path / "x"))
    assert code == 2 and len(lines) == 1 and "unknown tracker 'wandb'" in lines[0]
