"""What the training loop calls around its steps: :class:`Hook` and the hooks every run has.

The loop (:func:`genbench.training.loop.train`) advances a :class:`~genbench.training.state.TrainState`; all
else is a hook, called in list order at five points:

=================  ==================================================================================================
``on_start``       once, after the state is built or resumed, before the first step
``on_step``        after every optimisation step; returning True ends the run after this step (the epoch is closed
                   as a partial one and its checkpoint marked finished: an equal-compute budget); raising
                   :class:`StopRun` abandons the run at once, without a checkpoint, as a kill would
``on_epoch``       after every epoch (``state.epoch`` counts it; ``state.finished`` says whether it is the last)
``on_restore``     after a NaN/inf step sent the state back to the last checkpoint
``on_end``         when the loop ends, by finishing, by :class:`StopRun` or by an error
=================  ==================================================================================================

The hooks of every run, in this order: :class:`History` (``history.jsonl`` and the tracker), :class:`Curve`
(quality-vs-compute snapshots), :class:`Progress` (bar or lines), the caller's hooks, :class:`Budget` and
:class:`Checkpoints`. Hooks of ranks other than 0 write nothing.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from genbench.errors import GenbenchError
from genbench.io import append_jsonl, atomic_write_text, read_jsonl
from genbench.runtime.distributed import Dist
from genbench.training.checkpoint import save_checkpoint
from genbench.training.config import TrainConfig
from genbench.training.curve import Snapshots
from genbench.training.state import TrainState


class StopRun(Exception):
    """Raised by a hook's ``on_step`` to abandon the run at once, as a kill at that point would: no checkpoint
    is written for the steps since the last one and ``train`` returns ``{"stopped": True, "step": step}``."""


class Hook:
    """A hook that does nothing; subclasses override the points they need (see the module docstring)."""

    def on_start(self, state: TrainState) -> None: ...

    def on_step(self, state: TrainState, logs: dict[str, float]) -> bool | None:
        """Args: logs: this step's losses (host floats, averaged over ranks). Returns: True to end the run."""

    def on_epoch(self, state: TrainState, means: dict[str, float], n_steps: int) -> None:
        """Args: means: the epoch's mean of each logged loss; n_steps: steps in this epoch."""

    def on_restore(self, state: TrainState) -> None: ...

    def on_end(self, state: TrainState) -> None: ...


class History(Hook):
    """``history.jsonl``: a step line every ``log_every`` steps and one line per epoch (``step``, ``epoch``,
    ``images_seen``, ``seconds``, the losses); each line also goes to ``tracker`` (a
    :class:`genbench.runtime.tracking.Tracker` or None) as ``train/*`` or ``epoch/*`` scalars.

    Args:
        path: the run's ``history.jsonl``.
        steps_per_epoch: steps of a full epoch (for the fractional ``epoch`` of step lines and ``partial_epoch``).
    """

    def __init__(self, path: Path, tracker, log_every: int, steps_per_epoch: int):
        self.path, self.tracker, self.log_every, self.steps_per_epoch = path, tracker, log_every, steps_per_epoch

    def on_step(self, state: TrainState, logs: dict[str, float]) -> None:
        if state.step % self.log_every == 0:
            self._line("train", {"kind": "step", "step": state.step, "epoch": state.step / self.steps_per_epoch,
                                 "images_seen": state.images_seen, "seconds": state.seconds(), **logs})

    def on_epoch(self, state: TrainState, means: dict[str, float], n_steps: int) -> None:
        partial = {"partial_epoch": n_steps / self.steps_per_epoch} if n_steps < self.steps_per_epoch else {}
        self._line("epoch", {"kind": "epoch", "step": state.step, "epoch": state.epoch,
                             "images_seen": state.images_seen, "seconds": state.train_seconds, **means, **partial})

    def _line(self, prefix: str, record: dict) -> None:
        append_jsonl(self.path, record)
        if self.tracker is not None:
            from genbench.runtime.tracking import history_scalars

            self.tracker.log_scalars(history_scalars(record, prefix), record["step"])


def truncate_history(path: Path, step: int) -> None:
    """Drop history lines written after the checkpoint being resumed (their steps will be redone)."""
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


class Curve(Hook):
    """Quality-vs-compute snapshots (:mod:`genbench.training.curve`) at the steps that reach k/K of the run's
    compute; the seconds spent writing them are left out of the training time.

    Args:
        config: the resolved config stored in each snapshot.
    """

    def __init__(self, snapshots: Snapshots, config: dict, steps_per_epoch: int):
        self.snapshots, self.config, self.steps_per_epoch = snapshots, config, steps_per_epoch

    def on_start(self, state: TrainState) -> None:  # a resumed run keeps its snapshots
        self.snapshots.sync(state.step, state.images_seen, state.flops, state.train_seconds)

    on_restore = on_start

    def on_step(self, state: TrainState, logs: dict[str, float]) -> None:
        ks = self.snapshots.due(state.step, state.images_seen, state.flops, state.seconds())
        if ks:
            state.exclude(self.snapshots.save(
                ks, state.sampling_model.state_dict(), self.config, step=state.step,
                epoch=state.step / self.steps_per_epoch, images_seen=state.images_seen, flops=state.flops,
                seconds=state.seconds(), ema=state.ema is not None))


class Progress(Hook):
    """tqdm bar on a terminal; one plain line per epoch otherwise (rank 0 only: other ranks get :class:`Hook`).

    Args:
        total_steps: steps the run is expected to take (exact unless a FLOP or seconds budget ends it).
    """

    def __init__(self, name: str, total_steps: int, start_step: int):
        self.name, self.total, self.tty = name, total_steps, sys.stderr.isatty()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=name, unit="step", dynamic_ncols=True)
        self.t0, self.s0 = time.perf_counter(), start_step

    def on_step(self, state: TrainState, logs: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in list(logs.items())[:3]}, refresh=False)

    def on_epoch(self, state: TrainState, means: dict[str, float], n_steps: int) -> None:
        if self.bar is None:
            el = time.perf_counter() - self.t0
            rate = (state.step - self.s0) / max(el, 1e-9)
            eta = (self.total - state.step) / max(rate, 1e-9)
            terms = " ".join(f"{k}={v:.4g}" for k, v in means.items())
            print(f"[{self.name}] epoch {state.epoch} step {state.step}/{self.total} {rate:.2f} step/s ETA {eta:.0f}s "
                  f"{terms}", file=sys.stderr, flush=True)

    def on_restore(self, state: TrainState) -> None:
        """Move back to the restored step."""
        self.s0, self.t0 = state.step, time.perf_counter()
        if self.bar is not None:
            self.bar.n = state.step
            self.bar.refresh()

    def on_end(self, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()


class Budget(Hook):
    """The stopping rule of an equal-compute run: it ends at the first step whose cumulative images seen, training
    FLOPs (per-step count x steps) or training seconds reach ``budget["value"]``. Under DDP rank 0 decides a
    seconds budget for every rank (wall clocks differ).

    Args:
        budget: ``{"kind": "images" | "flops" | "seconds", "value": number}``.
    """

    def __init__(self, budget: dict, dist: Dist):
        self.kind, self.value, self.dist = budget["kind"], budget["value"], dist

    def on_step(self, state: TrainState, logs: dict[str, float]) -> bool:
        used = {"images": state.images_seen, "flops": state.step * (state.flops_per_step or 0),
                "seconds": state.seconds()}[self.kind]
        spent = used >= self.value
        return bool(self.dist.broadcast(spent) if self.dist.active and self.kind == "seconds" else spent)

    @staticmethod
    def expected_steps(budget: dict, batch_size: int, steps_per_epoch: int) -> int:
        """Steps the progress bar expects under a budget (exact for images; a guess for FLOPs and seconds)."""
        if budget["kind"] == "images":
            return max(1, -(-int(budget["value"]) // batch_size))
        return steps_per_epoch


class Checkpoints(Hook):
    """``checkpoints/last.pt``: the complete state (:meth:`TrainState.checkpoint`), written atomically by rank 0
    after every epoch (and by the loop at the start and after a divergence); every rank waits for the write.

    Args:
        out_dir: the run folder.
        cfg: the run's config (stored in the checkpoint with its budget).
        state: the run's state (its size sets the free disk needed: about twice the checkpoint, plus 16 MB).
    """

    def __init__(self, out_dir: Path, cfg: TrainConfig, dist: Dist, state: TrainState):
        self.out_dir, self.path, self.cfg, self.dist = out_dir, out_dir / "checkpoints" / "last.pt", cfg, dist
        n_params = sum(p.numel() for p in state.model.parameters())
        self.need_bytes = 2 * 4 * n_params * (4 if state.ema is None else 5) + (16 << 20)

    def save(self, state: TrainState) -> None:
        """Write the checkpoint (a collective under DDP).

        Raises:
            GenbenchError: less free disk than the checkpoint needs.
        """
        rng = state.rng_state(self.dist)
        if self.dist.main:
            check_free_disk(self.out_dir, self.need_bytes)
            save_checkpoint(self.path, state.checkpoint(self.cfg.to_dict(), rng, self.cfg.budget))
        self.dist.barrier()  # the other ranks may read it from here on

    def on_epoch(self, state: TrainState, means: dict[str, float], n_steps: int) -> None:
        self.save(state)


def check_free_disk(path: Path, need_bytes: int) -> None:
    """Stop cleanly when the disk holding ``path`` has less than ``need_bytes`` free (checked before writing
    checkpoints).

    Raises:
        GenbenchError: not enough space.
    """
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise GenbenchError(f"only {free / 1e6:.0f} MB free on the disk of {path}, need {need_bytes / 1e6:.0f} MB "
                            f"for the checkpoint; free some space and rerun with --resume")
