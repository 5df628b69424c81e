"""Quality-vs-compute curve (issue 13): snapshots at k/K of a run's compute, kept across a resume, and the curve the
evaluation and the report make of them (the study-level check runs inside tests/test_trials.py's sequential test,
on the study it trains anyway)."""

import pytest
import torch

from genbench.families import load_snapshot
from genbench.training.curve import list_snapshots, snapshot_path

from test_training import _KillAfter  # noqa: E402  (a kill at a given step, as a hook)


def _cfg(**kw):
    from genbench.studies.config import ModelConfig

    base = dict(name="v", kind="vae", params={"latent_dim": 4, "hidden": 32}, optimizer={"lr": 1e-3}, epochs=1,
                batch_size=64, seed=0, precision="fp32", dataset="mnist", log_every=2, ema_decay=0.9,
                budget={"kind": "images", "value": 1024}, curve_points=4)
    return ModelConfig(**{**base, **kw})


@pytest.mark.slow
def test_snapshots_at_budget_fractions_survive_a_resume(mnist, tmp_path):
    """An images budget of 1,024 with K = 4 and batch 64: snapshots at 256/512/768/1,024 images (steps 4, 8, 12,
    16), EMA weights, the last at the end of training. A run stopped at step 10 (after its epoch-1 checkpoint at
    step 8) and resumed keeps snapshots 1-2 untouched, writes 3-4, and ends with the uninterrupted run's weights;
    a temp file of a write killed halfway is removed and never read as a snapshot."""
    from genbench.training.checkpoint import load_checkpoint
    from genbench.training.loop import train

    data = mnist["train"].subset(slice(0, 512))  # 8 steps per epoch
    train(_cfg(), data, tmp_path / "a")
    files = list_snapshots(tmp_path / "a", 4)
    assert [p.name for p in files] == [f"curve_{k}.pt" for k in (1, 2, 3, 4)]
    metas = [load_snapshot(p)[1] for p in files]
    assert [m["step"] for m in metas] == [4, 8, 12, 16] and [m["images_seen"] for m in metas] == [256, 512, 768, 1024]
    assert [m["fraction"] for m in metas] == [0.25, 0.5, 0.75, 1.0] and all(m["weights"] == "ema" for m in metas)
    assert all(m["flops"] == m["step"] * metas[0]["flops"] // 4 for m in metas)
    assert [m["train_seconds"] for m in metas] == sorted(m["train_seconds"] for m in metas)
    ck = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    assert ck["step"] == 16 and ck["finished"]
    last = torch.load(files[-1], weights_only=True)["model"]
    assert all(torch.equal(last[k], v) for k, v in ck["ema"]["model"].items())  # point K = the final EMA weights

    b = tmp_path / "b"
    assert train(_cfg(), data, b, hooks=[_KillAfter(10)])["stopped"]
    kept = {k: (snapshot_path(b, k).stat().st_mtime_ns, snapshot_path(b, k).read_bytes()) for k in (1, 2)}
    assert not snapshot_path(b, 3).exists()
    (b / "checkpoints" / ".curve_3.pt.x1y2.tmp").write_bytes(b"half a file")  # a write killed halfway
    train(_cfg(), data, b, resume=True)
    assert not list((b / "checkpoints").glob(".*.tmp"))
    assert [p.name for p in list_snapshots(b, 4)] == [p.name for p in files]
    for k in (1, 2):
        assert (snapshot_path(b, k).stat().st_mtime_ns, snapshot_path(b, k).read_bytes()) == kept[k]
    for k in (1, 2, 3, 4):
        wa = torch.load(snapshot_path(tmp_path / "a", k), weights_only=True)["model"]
        wb = torch.load(snapshot_path(b, k), weights_only=True)["model"]
        assert all(torch.equal(wa[n], wb[n]) for n in wa), k
        assert load_snapshot(snapshot_path(b, k))[1]["images_seen"] == metas[k - 1]["images_seen"]

    train(_cfg(curve_points=2), data, b, overwrite=True)  # a fresh run starts its curve again
    assert [p.name for p in list_snapshots(b)] == ["curve_1.pt", "curve_2.pt"]


@pytest.mark.slow
def test_epochs_mode_snapshots_at_step_fractions(mnist, tmp_path):
    """Without a budget the fractions are of the run's total steps (2 epochs x 8 steps, K = 3: steps 6, 11, 16),
    model weights when there is no EMA; curve_points 0 writes none."""
    from genbench.training.loop import train

    data = mnist["train"].subset(slice(0, 512))
    train(_cfg(budget=None, epochs=2, ema_decay=None, curve_points=3), data, tmp_path / "a")
    metas = [load_snapshot(p)[1] for p in list_snapshots(tmp_path / "a")]
    assert [m["step"] for m in metas] == [6, 11, 16] and metas[-1]["target"] == {"kind": "steps", "value": 16}
    assert all(m["weights"] == "model" for m in metas)
    train(_cfg(budget=None, curve_points=0), data, tmp_path / "b")
    assert list_snapshots(tmp_path / "b") == []
