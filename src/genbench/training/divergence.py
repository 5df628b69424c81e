"""What the loop does when a step's loss or gradient is NaN/inf: :class:`Divergence`.

A step whose loss or gradients are NaN/inf is not applied (the step function raises
:class:`~genbench.training.objectives.NonFiniteStep` first). The loop then restores the last checkpoint (the state
at the start of the current epoch: a fresh run writes an epoch-0 checkpoint for this), multiplies the learning
rate by ``divergence["lr_factor"]``, saves that state as the new checkpoint, logs a ``{"kind": "divergence"}``
line to ``history.jsonl`` and trains on. The retry count and the accumulated LR scale live in the checkpoint, so
a resumed run continues with the lowered LR. One divergence more than ``divergence["max_retries"]`` stops the
run: ``status.json`` gets ``{"status": "diverged", ...}`` and a GenbenchError is raised.
"""

from __future__ import annotations

import sys

from genbench.errors import GenbenchError
from genbench.io import append_jsonl, atomic_write_json, read_jsonl
from genbench.runtime.distributed import Dist
from genbench.training.checkpoint import load_checkpoint
from genbench.training.config import DIVERGENCE_DEFAULTS, TrainConfig
from genbench.training.hooks import Checkpoints, Hook, truncate_history
from genbench.training.objectives import NonFiniteStep
from genbench.training.state import TrainState


class Divergence:
    """The way back from a NaN/inf step of one run.

    Args:
        cfg: the run's config (``name``, ``seed``, ``divergence``: missing keys take
            :data:`~genbench.training.config.DIVERGENCE_DEFAULTS`).
        steps_per_epoch: steps of a full epoch (for the event's fractional ``at_epoch``).
        checkpoints: the run's checkpoint writer (read back to restore, written after the restore).
    """

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, checkpoints: Checkpoints, dist: Dist):
        self.cfg, self.steps_per_epoch, self.checkpoints, self.dist = cfg, steps_per_epoch, checkpoints, dist
        self.settings = {**DIVERGENCE_DEFAULTS, **(cfg.divergence or {})}
        self.hist_path = checkpoints.out_dir / "history.jsonl"
        self.status_path = checkpoints.out_dir / "status.json"

    def recover(self, state: TrainState, e: NonFiniteStep, hooks: list[Hook]) -> None:
        """Log the event, restore ``state`` from the last checkpoint (the hooks' ``on_restore`` see it as
        restored), lower the learning rate, count the wasted seconds as training time and checkpoint.

        Raises:
            GenbenchError: this divergence is one more than ``max_retries`` (``status.json`` marks the run
                diverged).
        """
        wasted = state.elapsed()
        self.log(e, state.step + 1)
        state.load(load_checkpoint(self.checkpoints.path), self.dist, self.cfg.seed)
        for h in hooks:
            h.on_restore(state)
        factor = self.settings["lr_factor"]
        state.divergence = {"retries": state.divergence["retries"] + 1,
                            "lr_scale": state.divergence["lr_scale"] * factor}
        state.scale_lr(factor)
        state.train_seconds += wasted
        self.checkpoints.save(state)

    def log(self, e: NonFiniteStep, at_step: int) -> None:
        """Log one divergence at step ``at_step`` (history line, stderr); stop the run if the retries are used up.

        The history is cut back to the checkpoint being restored, then the event is appended (once: a run killed
        before its post-divergence checkpoint replays the same divergence on resume, and that is not logged
        twice).

        Raises:
            GenbenchError: as :meth:`recover`.
        """
        s, dist = self.settings, self.dist
        ck = load_checkpoint(self.checkpoints.path)
        prev = ck.get("divergence") or {"retries": 0, "lr_scale": 1.0}
        retry = prev["retries"] + 1
        stop = retry > s["max_retries"]
        lr_scale = prev["lr_scale"] * (1.0 if stop else s["lr_factor"])
        event = {"kind": "divergence", "step": ck["step"], "epoch": ck["epoch"], "at_step": at_step,
                 "at_epoch": at_step / self.steps_per_epoch, "what": e.what, "retry": retry,
                 "max_retries": s["max_retries"], "lr_scale": lr_scale, "action": "stop" if stop else "retry"}
        if dist.main:
            truncate_history(self.hist_path, ck["step"])
            if not any(r.get("kind") == "divergence" and r.get("retry") == retry and r.get("at_step") == at_step
                       for r in read_jsonl(self.hist_path)):
                append_jsonl(self.hist_path, event)
        if stop:
            if dist.main:
                lrs = [g["lr"] for o in ck["optimizers"].values() for g in o["param_groups"]]
                atomic_write_json(self.status_path, {"status": "diverged", **{k: v for k, v in event.items()
                                                                              if k != "kind"}, "lr": lrs})
            dist.barrier()  # status.json is written before any rank stops
            raise GenbenchError(
                f"{self.cfg.name}: training diverged (NaN/inf {e.what} at step {at_step}) and {s['max_retries']} "
                f"retries with a lower learning rate did not help; lower optimizer.lr or raise "
                f"divergence.max_retries in the study file, then retrain with --overwrite")
        if dist.main:
            print(f"[{self.cfg.name}] NaN/inf {e.what} at step {at_step}: back to epoch {ck['epoch']} (step "
                  f"{ck['step']}), learning rate x{lr_scale:g} (retry {retry}/{s['max_retries']})",
                  file=sys.stderr, flush=True)

