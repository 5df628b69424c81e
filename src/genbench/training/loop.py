"""The training loop: resumable, reproducible, logged.

``train(cfg, data, out_dir)`` trains the model a :class:`~genbench.training.config.TrainConfig` describes (a
study's ``ModelConfig`` is one) on the dataset's training split, writing into ``out_dir``::

    config.yaml           resolved config + package version + git commit
    checkpoints/last.pt   complete checkpoint at the start (epoch 0) and after every epoch (atomic)
    checkpoints/curve_<k>.pt  weights-only snapshots at k/K of the run's compute (``cfg.curve_points`` = K > 0;
                          :mod:`genbench.training.curve`), for the quality-vs-compute curve
    history.jsonl         per logging step and per epoch: step, epoch, images_seen, losses, seconds;
                          one ``{"kind": "divergence"}`` line per NaN/inf step that sent the run back
    status.json           only when the run stopped because it diverged: ``{"status": "diverged", ...}``

The loop below advances a :class:`~genbench.training.state.TrainState` (models, optimizers, EMA, counters, RNGs)
one step at a time; logging, snapshots, the progress bar, budgets and checkpoints are hooks
(:mod:`genbench.training.hooks`), and a NaN/inf step goes to :mod:`genbench.training.divergence`. Callers (and
tests) add their own hooks: one that raises :class:`~genbench.training.hooks.StopRun` is a kill at that step.

Reproducibility: a run killed at any point and resumed with ``resume=True`` restarts from the last completed epoch
and reproduces the uninterrupted run's weights and history (timings aside) on the same machine and thread count.

Data-parallel: launched with ``WORLD_SIZE > 1`` (``accelerate launch`` / ``torchrun``) the same loop runs on
every rank with DDP; ``batch_size`` is the global batch, each rank trains on its slice, only rank 0 writes.
See :mod:`genbench.runtime.distributed` for the rules (the learning rate is not scaled).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from genbench.data.registry import Dataset, batches, num_batches
from genbench.errors import GenbenchError
from genbench.io import atomic_write_text, exclusive_lock
from genbench.runtime.device import BatchShard
from genbench.runtime.device import autocast as dev_autocast, resolve_precision
from genbench.runtime.distributed import Dist, context, env_rank, shard_size, wrap
from genbench.runtime.provenance import provenance, to_yaml
from genbench.training.checkpoint import load_checkpoint
from genbench.training.config import BUDGET_KINDS, DIVERGENCE_DEFAULTS, TrainConfig  # noqa: F401 (re-exported)
from genbench.training.curve import Snapshots, clear_snapshots
from genbench.training.divergence import Divergence
from genbench.training.ema import EMA
from genbench.training.hooks import (Budget, Checkpoints, Curve, History, Hook, Progress, StopRun,
                                     truncate_history)
from genbench.training.objectives import NonFiniteStep, make_optimizers, make_schedulers
from genbench.training.state import TrainState


def train(cfg: TrainConfig, data: Dataset, out_dir: Path, *, resume: bool = False, overwrite: bool = False,
          tracker=None, hooks: Sequence[Hook] = ()) -> dict:
    """Train one model, under a run-folder lock (held by rank 0 in data-parallel runs).

    Args:
        cfg: what to train (:class:`~genbench.training.config.TrainConfig`).
        data: the training split (uint8 N x C x H x W in memory).
        out_dir: the run folder (created if missing).
        resume: continue from ``checkpoints/last.pt`` if present (a finished run returns its summary at once).
        overwrite: start afresh even if a checkpoint exists.
        tracker: a :class:`genbench.runtime.tracking.Tracker` (or None) that gets every ``history.jsonl`` step and
            epoch line as scalars (``train/*``, ``epoch/*``); pass it on rank 0 only.
        hooks: extra :class:`~genbench.training.hooks.Hook` objects, called after the progress bar and before the
            budget and the checkpoint (a hook raising ``StopRun`` stops the run without a checkpoint).

    Returns:
        ``{"train_seconds": s, "steps", "images_seen", "epochs", "params", "flops" (or None), "flops_per_step"
        (or None), "budget", "images_per_second"}`` of the last checkpoint; ``{"stopped": True, "step": n}`` when
        a hook raised ``StopRun``.

    Raises:
        GenbenchError: another process holds the folder; a checkpoint exists and neither ``resume`` nor
            ``overwrite`` is given, or it is from another model; the training split is smaller than one batch;
            the run diverged more than ``max_retries`` times (:mod:`genbench.training.divergence`); too little
            free disk for a checkpoint; an unknown precision.
    """
    out_dir = Path(out_dir)
    with run_lock(out_dir) if env_rank() == 0 else contextlib.nullcontext():
        return _train(cfg, data, out_dir, resume=resume, overwrite=overwrite, tracker=tracker, hooks=list(hooks))


def _train(cfg: TrainConfig, data: Dataset, out_dir: Path, *, resume: bool, overwrite: bool, tracker,
           hooks: list[Hook]) -> dict:
    """The loop (see :func:`train`): build or resume the state, then epochs of steps, each step followed by the
    hooks; a NaN/inf step sends the state back to the last checkpoint (:class:`Divergence`)."""
    dist = context()  # in a data-parallel run only rank 0 writes; the others wait at barriers
    _prepare_folder(out_dir, resume, overwrite, dist)
    state, mk, steps_per_epoch = _build(cfg, data, dist)
    checkpoints = Checkpoints(out_dir, cfg, dist, state)
    done = _resume_or_start(cfg, state, checkpoints, resume, dist)
    if done is not None:
        return _summary(state.model, done)
    budget = cfg.budget  # {"kind": images|flops|seconds, "value": ...}: equal-compute training, epochs no limit
    hooks = _standard_hooks(cfg, state, steps_per_epoch, out_dir, tracker, dist) + hooks + \
        ([Budget(budget, dist)] if budget is not None else []) + [checkpoints]
    divergence = Divergence(cfg, steps_per_epoch, checkpoints, dist)
    step_fn, device = mk.step(), dist.device  # the family's step, or the model class's own genbench_step
    state.model.train()
    if cfg.compile:
        _compile(state.model, out_dir)
    ddp = wrap(dist, state.model, mk.spec.ddp)  # None in a single process
    step_kw = {"generator": BatchShard(state.noise_gen, dist.rank, dist.world) if dist.active else state.noise_gen,
               "autocast": _autocast_factory(cfg.precision, device), **({"ddp": ddp} if ddp is not None else {})}
    shard = (dist.rank, dist.world) if dist.active else None
    for h in hooks:
        h.on_start(state)
    try:
        while not state.finished and (budget is not None or state.epoch < cfg.epochs):
            sums: dict[str, float] = {}
            n_steps, stop = 0, False
            state.start_clock()
            try:
                for x, y in batches(data, cfg.batch_size, state.data_gen, shard=shard):
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    count = state.flops_per_step is None and (budget is not None or state.step == 0) \
                        and not cfg.compile  # FLOPs of the first step (every step until counted under a budget)
                    logs = _optimise(state, step_fn, x, y, count_flops=count, world=dist.world, **step_kw)
                    n_steps += 1
                    for k, v in logs.items():
                        sums[k] = sums.get(k, 0.0) + v
                    stop = any([h.on_step(state, logs) for h in hooks])  # every hook sees the step
                    if stop:
                        break
            except NonFiniteStep as e:
                divergence.recover(state, e, hooks)  # back to the last checkpoint, lower LR (or GenbenchError)
                continue
            state.train_seconds += state.elapsed()
            state.epoch += 1
            state.finished = stop or (budget is None and state.epoch == cfg.epochs)
            means = {k: v / max(n_steps, 1) for k, v in sums.items()}
            for h in hooks:
                h.on_epoch(state, means, n_steps)  # history line, progress, checkpoint
    except StopRun:
        return {"stopped": True, "step": state.step}
    finally:
        for h in hooks:
            h.on_end(state)
    if dist.main:
        (out_dir / "status.json").unlink(missing_ok=True)
    return _summary(state.model, load_checkpoint(checkpoints.path))


def _optimise(state: TrainState, step_fn, x: torch.Tensor, y: torch.Tensor, *, count_flops: bool, world: int,
              **step_kw) -> dict[str, float]:
    """One optimisation step on batch ``x`` (this rank's slice, N x C x H x W) with labels ``y`` (N): the step
    function, the LR schedules, the EMA and the counters. With ``count_flops`` the step's forward + backward
    FLOPs (``torch.utils.flop_counter``) become ``state.flops_per_step``. Returns the step's losses.

    Raises:
        NonFiniteStep: a loss or gradient is NaN/inf (nothing was applied).
    """
    counter = FlopCounterMode(display=False) if count_flops else contextlib.nullcontext()
    with counter:
        logs = step_fn(state.model, state.opts, x, y, **step_kw)
    if count_flops:
        state.flops_per_step = int(counter.get_total_flops())
    for sch in state.scheds.values():
        sch.step()
    if state.ema is not None:
        state.ema.update(state.model)
    state.step += 1
    state.images_seen += x.shape[0] * world
    return logs


def _prepare_folder(out_dir: Path, resume: bool, overwrite: bool, dist: Dist) -> None:
    """Refuse a folder holding a run unless resuming or overwriting; with ``overwrite`` delete the old checkpoint,
    history and status; delete temp files a killed write left behind.

    Raises:
        GenbenchError: a checkpoint exists and neither ``resume`` nor ``overwrite`` is given.
    """
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    if ckpt_path.exists() and not (resume or overwrite):
        raise GenbenchError(f"{out_dir} already holds a run; pass --resume to continue it or --overwrite to "
                            f"start again")
    dist.barrier()  # every rank has looked at the folder before rank 0 changes it
    if overwrite and dist.main:
        for p in (ckpt_path, out_dir / "history.jsonl", out_dir / "status.json"):
            p.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dist.main:
        for folder in (out_dir, out_dir / "checkpoints"):  # temp files (.<name>.*.tmp) of a killed atomic write
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
    dist.barrier()


def _build(cfg: TrainConfig, data: Dataset, dist: Dist):
    """A fresh state: the model (weights drawn from the global RNG seeded ``cfg.seed``), optimizers, schedules,
    EMA and generators. Returns ``(state, model kind, steps per epoch)``.

    Raises:
        GenbenchError: the split holds fewer images than one batch; the batch does not split over the ranks.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # weight initialisation draws from the global RNG
    mk = cfg.model_kind()  # the kind's class and Family (genbench.families): builder, parts, step, DDP entries
    model = mk.build(cfg.params)
    model.to(dist.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D weights NHWC: convolutions then run (and return) NHWC
    opts = make_optimizers(mk.spec.parts(model), cfg.optimizer)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    steps_per_epoch = num_batches(len(data), cfg.batch_size)
    if steps_per_epoch == 0:
        raise GenbenchError(f"training split has {len(data)} images, fewer than batch_size={cfg.batch_size}; "
                            f"lower batch_size or raise train_subset in the study file")
    shard_size(dist, cfg.batch_size)  # the global batch must split evenly over the ranks
    scheds = make_schedulers(opts, cfg.optimizer, steps_per_epoch * cfg.epochs)
    return TrainState.seeded(model, opts, scheds, ema, cfg.seed, dist), mk, steps_per_epoch


def _resume_or_start(cfg: TrainConfig, state: TrainState, checkpoints: Checkpoints, resume: bool,
                     dist: Dist) -> dict | None:
    """Load the checkpoint into ``state`` when resuming (history cut back to it), else clear the old history,
    status and snapshots; write ``config.yaml`` and, for a fresh run, the epoch-0 checkpoint (the restore point
    should epoch 1 diverge). Returns the checkpoint when it marks the run finished (nothing left to train).

    Raises:
        GenbenchError: the checkpoint holds another model kind or config.
    """
    out_dir, path = checkpoints.out_dir, checkpoints.path
    have_ckpt = path.exists()  # read by every rank before rank 0 writes one (save() waits for all)
    if resume and have_ckpt:
        ck = load_checkpoint(path, expect_kind=cfg.kind)
        if ck["config"]["model"] != cfg.to_dict()["model"]:
            raise GenbenchError(f"{path} was trained with a different model config; use --overwrite to "
                                f"start again or restore the original study file")
        state.load(ck, dist, cfg.seed)
        if dist.main:
            truncate_history(out_dir / "history.jsonl", state.step)
        if ck.get("finished"):
            if dist.main:
                (out_dir / "status.json").unlink(missing_ok=True)
            return ck
    elif dist.main:
        (out_dir / "history.jsonl").unlink(missing_ok=True)
        (out_dir / "status.json").unlink(missing_ok=True)
        clear_snapshots(out_dir)  # a fresh run starts its quality-vs-compute curve again
    if dist.main:
        atomic_write_text(out_dir / "config.yaml", to_yaml({**cfg.to_dict(), "provenance": provenance()}))
    if not have_ckpt:
        checkpoints.save(state)
    return None


def _standard_hooks(cfg: TrainConfig, state: TrainState, steps_per_epoch: int, out_dir: Path, tracker,
                    dist: Dist) -> list[Hook]:
    """History (and tracker), curve snapshots and progress: rank 0's; other ranks write nothing."""
    if not dist.main:
        return []
    total = steps_per_epoch * cfg.epochs
    expected = total if cfg.budget is None else Budget.expected_steps(cfg.budget, cfg.batch_size, steps_per_epoch)
    return [History(out_dir / "history.jsonl", tracker, cfg.log_every, steps_per_epoch),
            Curve(Snapshots(cfg.curve_points, cfg.budget, total, out_dir), cfg.to_dict(), steps_per_epoch),
            Progress(cfg.name, expected, state.step)]


def _autocast_factory(precision: str, device: torch.device):
    resolved = resolve_precision(precision, device)  # GenbenchError on an unknown precision
    return lambda: dev_autocast(device, resolved)


def _compile(model: torch.nn.Module, out_dir: Path) -> None:
    """``torch.compile`` (inductor) the ``forward`` of every direct sub-network holding parameters, in place (the
    instance's ``forward`` is replaced, so parameter names and checkpoints are unchanged). The compile cache goes
    to ``<run>/.inductor`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set. Compilation happens in the first steps
    (seconds to minutes on a 2-core CPU); ``benchmarks/train_switches.py`` measures what it buys."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(out_dir).resolve() / ".inductor"))
    for child in model.children():
        if any(True for _ in child.parameters()):
            child.forward = torch.compile(child.forward)


@contextlib.contextmanager
def run_lock(out_dir: Path):
    """Hold an exclusive lock on ``out_dir/.lock`` so two processes cannot write the same run folder.

    Raises:
        GenbenchError: another process holds the lock.
    """
    with exclusive_lock(out_dir / ".lock", f"another genbench process is writing {out_dir}; wait for it or use "
                        f"another --out folder"):
        yield


def _summary(model, ck: dict) -> dict:
    return {"train_seconds": ck["train_seconds"], "steps": ck["step"], "images_seen": ck["images_seen"],
            "epochs": ck["epoch"], "params": sum(p.numel() for p in model.parameters()),
            "flops": ck.get("flops"), "flops_per_step": ck.get("flops_per_step"), "budget": ck.get("budget"),
            "images_per_second": ck["images_seen"] / max(ck["train_seconds"], 1e-9)}
