"""Quality-vs-compute snapshots (issue 13): small weights-only checkpoints at k/K of a run's compute.

A run with ``curve_points`` K > 0 writes ``checkpoints/curve_<k>.pt`` (k = 1..K) at the first training step whose
compute reaches k/K of its target: the budget's images, FLOPs or seconds under an equal-compute budget, else the
run's total steps (``epochs x steps per epoch``). Point K is therefore the end of training (a budget run stops at
the same step). The evaluation stage (:mod:`genbench.studies.runner`) samples a few images from each snapshot and
scores them with the in-domain classifier's Fréchet distance, which gives the curve a reader uses to see which
model was still improving when its budget ran out.

A snapshot holds the weights that sampling uses (the EMA weights when the run keeps an EMA, else the model's),
the resolved model config, and the compute at that point: ``step``, ``epoch`` (fractional), ``images_seen``,
``flops`` (per-step count x steps, or None), ``train_seconds``, plus ``k``, ``points``, ``fraction`` and the
``target`` it is a fraction of. It is written atomically (:func:`genbench.io.atomic_torch_save`: a kill mid-write
leaves the old file or none, and the loop deletes the temp file at its next start) and read with
``torch.load(weights_only=True)``; ``checkpoints/curve_log.jsonl`` gets one line per write with its wall seconds.

Resume: the next snapshot due is derived from the restored state (the first k whose threshold the restored
compute has not reached), so a resumed run keeps the snapshots it already wrote and keeps counting; a snapshot
written after the epoch checkpoint it resumes from is written again at the same step (same weights: training is
reproducible). A fresh run (no checkpoint, or ``--overwrite``) deletes the old snapshots. The time spent writing
snapshots is not counted as training time (nor against a seconds budget); the log records it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from genbench.errors import GenbenchError
from genbench.io import append_jsonl, atomic_torch_save, read_jsonl

SNAPSHOT_VERSION = 1
SAVE_LOG = "curve_log.jsonl"  # one line per snapshot written: k, step, save_seconds (wall seconds of the write)


def snapshot_path(run_dir: Path, k: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"curve_{k}.pt"


def clear_snapshots(run_dir: Path) -> None:
    """Delete a run folder's curve snapshots (a fresh run starts its curve again)."""
    for p in (Path(run_dir) / "checkpoints").glob("curve_*.pt"):
        p.unlink(missing_ok=True)
    (Path(run_dir) / "checkpoints" / SAVE_LOG).unlink(missing_ok=True)


class Snapshots:
    """When to write the snapshots of one run and how.

    Args:
        points: K, the number of snapshots (0: none).
        budget: the run's equal-compute budget ``{"kind": images|flops|seconds, "value": v}`` or None.
        total_steps: the run's steps when it trains by epochs (ignored under a budget).
        run_dir: the run folder; ``write``: whether this process writes (rank 0 of a data-parallel run).
    """

    def __init__(self, points: int, budget: dict | None, total_steps: int, run_dir: Path, write: bool = True):
        self.points, self.budget, self.total, self.run_dir, self.write = int(points or 0), budget, total_steps, \
            Path(run_dir), write
        self.next = 1
        self.target = {"kind": budget["kind"], "value": budget["value"]} if budget else \
            {"kind": "steps", "value": total_steps}

    def threshold(self, k: int) -> float:
        """Compute at which snapshot k is due: k/K of the target (steps rounded up to a whole step)."""
        v = self.target["value"] * k / self.points
        return math.ceil(v - 1e-9) if self.target["kind"] == "steps" else v

    def used(self, step: int, images_seen: int, flops: int | None, seconds: float) -> float:
        return {"steps": step, "images": images_seen, "flops": flops or 0, "seconds": seconds}[self.target["kind"]]

    def sync(self, step: int, images_seen: int, flops: int | None, seconds: float) -> None:
        """After a (re)start or a restore: the next snapshot due is the first whose threshold is not reached."""
        u = self.used(step, images_seen, flops, seconds)
        self.next = next((k for k in range(1, self.points + 1) if u < self.threshold(k)), self.points + 1)

    def due(self, step: int, images_seen: int, flops: int | None, seconds: float) -> list[int]:
        """The snapshots (k) this step reaches, in order; marks them done."""
        out = []
        u = self.used(step, images_seen, flops, seconds)
        while self.next <= self.points and u >= self.threshold(self.next):
            out.append(self.next)
            self.next += 1
        return out

    def save(self, ks: list[int], weights: dict, config: dict, *, step: int, epoch: float, images_seen: int,
             flops: int | None, seconds: float, ema: bool) -> float:
        """Write snapshots ``ks`` (one file each; several when one step passes several thresholds). Returns the
        wall seconds spent (0 on processes that do not write)."""
        if not (ks and self.write):
            return 0.0
        t0 = time.perf_counter()
        state = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
        for k in ks:
            atomic_torch_save(snapshot_path(self.run_dir, k), {
                "snapshot_version": SNAPSHOT_VERSION, "kind": "curve_snapshot", "config": config, "model": state,
                "weights": "ema" if ema else "model", "k": k, "points": self.points, "fraction": k / self.points,
                "target": dict(self.target), "step": step, "epoch": epoch, "images_seen": images_seen,
                "flops": flops, "train_seconds": seconds})
        spent = time.perf_counter() - t0
        for k in ks:  # a file cannot hold its own write time: it goes into the log beside the snapshots
            append_jsonl(self.run_dir / "checkpoints" / SAVE_LOG, {"k": k, "step": step, "save_seconds": spent / len(ks)})
        return spent


def list_snapshots(run_dir: Path, points: int | None = None) -> list[Path]:
    """The run's snapshot files in order of k (only those of a curve of ``points`` snapshots when given)."""
    files = []
    for p in (Path(run_dir) / "checkpoints").glob("curve_*.pt"):
        try:
            k = int(p.stem.split("_", 1)[1])
        except ValueError:
            continue
        if points is None or 1 <= k <= points:
            files.append((k, p))
    return [p for _, p in sorted(files)]


def save_seconds(run_dir: Path, k: int, step: int) -> float | None:
    """Wall seconds the training spent writing snapshot k at ``step`` (the last such write in the log), or None."""
    got = [r["save_seconds"] for r in read_jsonl(Path(run_dir) / "checkpoints" / SAVE_LOG)
           if r.get("k") == k and r.get("step") == step]
    return got[-1] if got else None


def snapshot_error(path: Path, e: BaseException) -> GenbenchError:
    """The one-line error for a snapshot that cannot be read or loaded."""
    return GenbenchError(f"{path} is not a readable curve snapshot ({type(e).__name__}); delete it (the curve "
                         f"then lacks that point) or retrain with --overwrite")


def read_snapshot(path: Path) -> dict:
    """A snapshot file's dict (weights under ``model``, the model config under ``config.model``); the model is
    built from it by :func:`genbench.families.kinds.load_snapshot`.

    Raises:
        GenbenchError: unreadable or not a genbench curve snapshot.
    """
    path = Path(path)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(ck, dict) and ck.get("kind") == "curve_snapshot"):
            raise ValueError("not a curve snapshot")
    except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, ValueError...
        raise snapshot_error(path, e) from e
    return ck
