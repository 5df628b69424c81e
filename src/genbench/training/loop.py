"""The training loop: resumable, reproducible, logged.

``train(cfg, out_dir)`` trains the model described by a ``ModelConfig`` (:mod:`genbench.studies.config`) on the
dataset's training split, writing into ``out_dir``::

    config.yaml           resolved config + package version + git commit
    checkpoints/last.pt   complete checkpoint at the start (epoch 0) and after every epoch (atomic)
    checkpoints/curve_<k>.pt  weights-only snapshots at k/K of the run's compute (``cfg.curve_points`` = K > 0;
                          :mod:`genbench.training.curve`), for the quality-vs-compute curve
    history.jsonl         per logging step and per epoch: step, epoch, images_seen, losses, seconds;
                          one ``{"kind": "divergence"}`` line per NaN/inf step that sent the run back
    status.json           only when the run stopped because it diverged: ``{"status": "diverged", ...}``

Reproducibility: one ``torch.Generator`` per purpose (data order, training noise) plus the global RNG for
dropout, all seeded from the run seed and saved in every checkpoint. A run killed at any point and resumed
with ``resume=True`` restarts from the last completed epoch and reproduces the uninterrupted run's weights
and history (timings aside) on the same machine and thread count.

Data-parallel: launched with ``WORLD_SIZE > 1`` (``accelerate launch`` / ``torchrun``) the same loop runs on
every rank with DDP; ``batch_size`` is the global batch, each rank trains on its slice, only rank 0 writes.
See :mod:`genbench.runtime.distributed` for the rules (the learning rate is not scaled).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from genbench.data.registry import Dataset, batches, num_batches
from genbench.runtime.device import BatchShard
from genbench.runtime.device import autocast as dev_autocast
from genbench.runtime.distributed import Dist, context, env_rank, shard_size, wrap
from genbench.runtime.provenance import provenance, to_yaml
from genbench.errors import GenbenchError
from genbench.io import append_jsonl, atomic_write_json, atomic_write_text, exclusive_lock, read_jsonl
from genbench.training.checkpoint import load_checkpoint, save_checkpoint
from genbench.training.config import BUDGET_KINDS, DIVERGENCE_DEFAULTS, TrainConfig  # noqa: F401 (re-exported)
from genbench.training.curve import Snapshots, clear_snapshots
from genbench.training.ema import EMA
from genbench.training.objectives import NonFiniteStep, make_optimizers, make_schedulers



def _autocast_factory(precision: str, device: torch.device):
    if precision in ("bf16", "fp32"):
        return lambda: dev_autocast(device, precision)
    raise GenbenchError(f"unknown precision {precision!r}; use 'bf16' or 'fp32'")


def _compile(model: torch.nn.Module, out_dir: Path) -> None:
    """``torch.compile`` (inductor) the ``forward`` of every direct sub-network holding parameters, in place (the
    instance's ``forward`` is replaced, so parameter names and checkpoints are unchanged). The compile cache goes
    to ``<run>/.inductor`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set. Compilation happens in the first steps
    (seconds to minutes on a 2-core CPU); ``benchmarks/train_switches.py`` measures what it buys."""
    import os

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(out_dir).resolve() / ".inductor"))
    for child in model.children():
        if any(True for _ in child.parameters()):
            child.forward = torch.compile(child.forward)


def _truncate_history(path: Path, step: int) -> None:
    """Drop history lines written after the checkpoint being resumed (their steps will be redone)."""
    import json

    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


class Progress:
    """tqdm bar on a terminal; one plain line per epoch otherwise."""

    def __init__(self, name: str, total_steps: int, start_step: int):
        self.name, self.total, self.tty = name, total_steps, sys.stderr.isatty()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc=name, unit="step", dynamic_ncols=True)
        self.t0, self.s0 = time.perf_counter(), start_step

    def step(self, logs: dict) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in list(logs.items())[:3]}, refresh=False)

    def epoch(self, epoch: int, step: int, logs: dict) -> None:
        if self.bar is None:
            el = time.perf_counter() - self.t0
            rate = (step - self.s0) / max(el, 1e-9)
            eta = (self.total - step) / max(rate, 1e-9)
            terms = " ".join(f"{k}={v:.4g}" for k, v in logs.items())
            print(f"[{self.name}] epoch {epoch} step {step}/{self.total} {rate:.2f} step/s ETA {eta:.0f}s {terms}",
                  file=sys.stderr, flush=True)

    def reset(self, step: int) -> None:
        """Move back to ``step`` (after a divergence restored an earlier state)."""
        self.s0, self.t0 = step, time.perf_counter()
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Silent:
    """Progress of a data-parallel rank other than 0: says nothing."""

    def step(self, logs: dict) -> None: ...
    def epoch(self, epoch: int, step: int, logs: dict) -> None: ...
    def reset(self, step: int) -> None: ...
    def close(self) -> None: ...


@contextlib.contextmanager
def run_lock(out_dir: Path):
    """Hold an exclusive lock on ``out_dir/.lock`` so two processes cannot write the same run folder.

    Raises:
        GenbenchError: another process holds the lock.
    """
    with exclusive_lock(out_dir / ".lock", f"another genbench process is writing {out_dir}; wait for it or use "
                        f"another --out folder"):
        yield


def check_free_disk(path: Path, need_bytes: int) -> None:
    """Stop cleanly when the disk holding ``path`` has less than ``need_bytes`` free (checked before writing
    checkpoints).

    Raises:
        GenbenchError: not enough space.
    """
    import shutil

    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise GenbenchError(f"only {free / 1e6:.0f} MB free on the disk of {path}, need {need_bytes / 1e6:.0f} MB "
                            f"for the checkpoint; free some space and rerun with --resume")


def train(cfg: TrainConfig, data: Dataset, out_dir: Path, *, resume: bool = False, overwrite: bool = False,
          stop_after_steps: int | None = None, tracker=None) -> dict:
    """Train one model (under a run-folder lock, held by rank 0 in data-parallel runs); see :func:`_train`.
    ``tracker``: a :class:`genbench.runtime.tracking.Tracker` (or None) that gets every ``history.jsonl``
    step and epoch line as scalars (``train/*``, ``epoch/*``); pass it on rank 0 only."""
    out_dir = Path(out_dir)
    with run_lock(out_dir) if env_rank() == 0 else contextlib.nullcontext():
        return _train(cfg, data, out_dir, resume=resume, overwrite=overwrite, stop_after_steps=stop_after_steps,
                      tracker=tracker)


def _remove_stale_temps(out_dir: Path) -> None:
    """Delete temp files (``.<name>.*.tmp``) that a process killed inside an atomic write left behind."""
    for folder in (out_dir, out_dir / "checkpoints"):
        for p in folder.glob(".*.tmp"):
            p.unlink(missing_ok=True)


def _scale_lr(opts: dict, scheds: dict, factor: float) -> None:
    """Multiply every optimizer's learning rate (and a cosine schedule's base) by ``factor``."""
    for o in opts.values():
        for g in o.param_groups:
            g["lr"] *= factor
            if "initial_lr" in g:
                g["initial_lr"] *= factor
    for sch in scheds.values():
        sch.base_lrs = [b * factor for b in sch.base_lrs]


def _train(cfg: TrainConfig, data: Dataset, out_dir: Path, *, resume: bool = False, overwrite: bool = False,
           stop_after_steps: int | None = None, tracker=None) -> dict:
    """Train one model. Returns a summary dict (train_seconds, steps, images_seen, params).

    Args:
        cfg: what to train (:class:`genbench.training.config.TrainConfig`; a study's ``ModelConfig`` is one).
        data: the training split (uint8 in memory).
        out_dir: run folder.
        resume: continue from ``checkpoints/last.pt`` if present.
        overwrite: start afresh even if a checkpoint exists.
        stop_after_steps: testing hook; stop (without a checkpoint) after this many steps of this call,
            simulating a crash.

    Divergence: a step whose loss or gradients are NaN/inf is not applied (see
    :mod:`genbench.training.objectives`). The loop then restores the last checkpoint (the state at the start
    of the current epoch: a fresh run writes an epoch-0 checkpoint for this), multiplies the learning rate by
    ``cfg.divergence["lr_factor"]``, saves that state as the new checkpoint, logs a ``{"kind": "divergence"}``
    line to ``history.jsonl`` and trains on. The retry count and the accumulated LR scale live in the
    checkpoint, so a resumed run continues with the lowered LR. One divergence more than
    ``cfg.divergence["max_retries"]`` stops the run: ``status.json`` gets ``{"status": "diverged", ...}`` and
    a GenbenchError is raised.

    Raises:
        GenbenchError: a checkpoint exists and neither ``resume`` nor ``overwrite`` is given, or it is from
            another model; the training split is smaller than one batch; the run diverged more than
            ``max_retries`` times; too little free disk for a checkpoint.
    """

    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoints" / "last.pt"
    hist_path = out_dir / "history.jsonl"
    status_path = out_dir / "status.json"
    dist = context()
    main = dist.main  # in a data-parallel run only rank 0 writes; the others wait at barriers
    if ckpt_path.exists() and not (resume or overwrite):
        raise GenbenchError(f"{out_dir} already holds a run; pass --resume to continue it or --overwrite to "
                            f"start again")
    dist.barrier()  # every rank has looked at the folder before rank 0 changes it
    if overwrite and main:
        for p in (ckpt_path, hist_path, status_path):
            p.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    if main:
        _remove_stale_temps(out_dir)
    dist.barrier()
    div_cfg = {**DIVERGENCE_DEFAULTS, **(getattr(cfg, "divergence", None) or {})}

    torch.set_num_threads(cfg.threads) if cfg.threads else None
    device = dist.device
    torch.manual_seed(cfg.seed)  # weight initialisation draws from the global RNG
    mk = cfg.model_kind()  # the kind's class and Family (genbench.families): builder, parts, step, DDP entries
    model = mk.build(cfg.params)
    model.to(device)
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
    data_gen = torch.Generator().manual_seed(cfg.seed)  # same on every rank: one permutation, sliced per rank
    noise_gen = torch.Generator().manual_seed(cfg.seed + 1)  # same on every rank, see BatchShard
    torch.manual_seed(_dropout_seed(cfg.seed, dist.rank))  # dropout: each rank its own masks
    start_epoch, step, images_seen, train_seconds = 0, 0, 0, 0.0
    div = {"retries": 0, "lr_scale": 1.0}
    budget = getattr(cfg, "budget", None)  # {"kind": images|flops|seconds, "value": ...}: equal-compute training
    flops = {"per_step": None}  # training FLOPs of one step (torch.utils.flop_counter on this run's first step)
    n_params = sum(p.numel() for p in model.parameters())
    ckpt_bytes = 2 * 4 * n_params * (4 if ema is None else 5) + (16 << 20)

    def restore(ck: dict) -> None:
        nonlocal start_epoch, step, images_seen, train_seconds, div
        model.load_state_dict(ck["model"])
        model.to(device)
        for k, o in opts.items():
            o.load_state_dict(ck["optimizers"][k])
        for k, sch in scheds.items():
            sch.load_state_dict(ck["schedulers"][k])
        if ema is not None:
            ema.load_state_dict(ck["ema"])
        data_gen.set_state(ck["rng"]["data"])
        noise_gen.set_state(ck["rng"]["noise"])
        _restore_global_rng(ck, dist, cfg.seed)
        start_epoch, step, images_seen = ck["epoch"], ck["step"], ck["images_seen"]
        train_seconds = ck["train_seconds"]
        div = dict(ck.get("divergence") or {"retries": 0, "lr_scale": 1.0})
        flops["per_step"] = ck.get("flops_per_step") or flops["per_step"]

    def checkpoint(epoch: int, finished: bool | None = None) -> None:
        rng = {"data": data_gen.get_state(), "noise": noise_gen.get_state(), "torch": torch.get_rng_state()}
        if dist.active:  # every rank's dropout RNG, so a resumed DDP run reproduces the uninterrupted one
            from accelerate.utils import gather_object

            rng["torch_ranks"] = gather_object([torch.get_rng_state()])
        if main:
            check_free_disk(out_dir, ckpt_bytes)
            save_checkpoint(ckpt_path, {
                "config": cfg.to_dict(), "model": model.state_dict(),  # the unwrapped model, as single-process
                "optimizers": {k: o.state_dict() for k, o in opts.items()},
                "schedulers": {k: sch.state_dict() for k, sch in scheds.items()},
                "ema": ema.state_dict() if ema is not None else None,
                "epoch": epoch, "step": step, "images_seen": images_seen, "train_seconds": train_seconds,
                "rng": rng, "divergence": dict(div),
                "finished": (epoch == cfg.epochs and budget is None) if finished is None else finished,
                "flops_per_step": flops["per_step"], "flops": flops["per_step"] * step if flops["per_step"] else None,
                "budget": budget,
            })
        dist.barrier()  # the other ranks may read it from here on

    have_ckpt = ckpt_path.exists()  # read by every rank before rank 0 writes one (checkpoint() waits for all)
    if resume and have_ckpt:
        ck = load_checkpoint(ckpt_path, expect_kind=cfg.kind)
        if ck["config"]["model"] != cfg.to_dict()["model"]:
            raise GenbenchError(f"{ckpt_path} was trained with a different model config; use --overwrite to "
                                f"start again or restore the original study file")
        restore(ck)
        if main:
            _truncate_history(hist_path, step)
        if ck.get("finished"):
            if main:
                status_path.unlink(missing_ok=True)
            return _summary(model, ck)
    elif main:
        hist_path.unlink(missing_ok=True)
        status_path.unlink(missing_ok=True)
        clear_snapshots(out_dir)  # a fresh run starts its quality-vs-compute curve again

    if main:
        atomic_write_text(out_dir / "config.yaml", to_yaml({**cfg.to_dict(), "provenance": provenance()}))
    if not have_ckpt:
        checkpoint(0)  # the restore point should epoch 1 diverge
    step_fn = mk.step()  # the family's step, or the model class's own genbench_step
    autocast = _autocast_factory(cfg.precision, device)
    total = steps_per_epoch * cfg.epochs if budget is None else _budget_steps(budget, cfg.batch_size, steps_per_epoch)
    prog = Progress(cfg.name, total, step) if main else _Silent()
    curve = Snapshots(getattr(cfg, "curve_points", 0), budget, steps_per_epoch * cfg.epochs, out_dir, main)
    used_flops = lambda: flops["per_step"] * step if flops["per_step"] else None  # noqa: E731
    curve.sync(step, images_seen, used_flops(), train_seconds)  # a resumed run keeps its snapshots
    done_this_call = 0
    model.train()
    if cfg.compile:
        _compile(model, out_dir)
    ddp = wrap(dist, model, mk.spec.ddp)  # None in a single process
    step_kw = {"ddp": ddp} if ddp is not None else {}
    shard = (dist.rank, dist.world) if dist.active else None
    noise = BatchShard(noise_gen, dist.rank, dist.world) if dist.active else noise_gen
    epoch = start_epoch
    spent = False  # the budget is used up (budget runs only; epochs then is no limit)
    while (epoch < cfg.epochs if budget is None else not spent):
        sums: dict[str, float] = {}
        n_steps = 0
        t_epoch = time.perf_counter()
        try:
            for x, y in batches(data, cfg.batch_size, data_gen, shard=shard):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if flops["per_step"] is None and (budget is not None or step == 0) and not cfg.compile:
                    with FlopCounterMode(display=False) as fc:  # forward + backward of one training step
                        logs = step_fn(model, opts, x, y, generator=noise, autocast=autocast, **step_kw)
                    flops["per_step"] = int(fc.get_total_flops())
                else:
                    logs = step_fn(model, opts, x, y, generator=noise, autocast=autocast, **step_kw)
                for sch in scheds.values():
                    sch.step()
                if ema is not None:
                    ema.update(model)
                step += 1
                n_steps += 1
                images_seen += x.shape[0] * dist.world
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                if main and step % cfg.log_every == 0:
                    _log_line(hist_path, tracker, "train", {
                        "kind": "step", "step": step, "epoch": step / steps_per_epoch, "images_seen": images_seen,
                        "seconds": train_seconds + time.perf_counter() - t_epoch, **logs})
                ks = curve.due(step, images_seen, used_flops(), train_seconds + time.perf_counter() - t_epoch)
                if ks:  # quality-vs-compute snapshots (training/curve.py); their write time is not training time
                    t_epoch += curve.save(ks, (ema.model if ema is not None else model).state_dict(), cfg.to_dict(),
                                          step=step, epoch=step / steps_per_epoch, images_seen=images_seen,
                                          flops=used_flops(), seconds=train_seconds + time.perf_counter() - t_epoch,
                                          ema=ema is not None)
                prog.step(logs)
                done_this_call += 1
                if stop_after_steps is not None and done_this_call >= stop_after_steps:
                    prog.close()
                    return {"stopped": True, "step": step}
                if budget is not None and _budget_spent(budget, images_seen, step * (flops["per_step"] or 0),
                                                        train_seconds + time.perf_counter() - t_epoch, dist):
                    spent = True
                    break
        except NonFiniteStep as e:
            wasted = time.perf_counter() - t_epoch
            _on_divergence(cfg, div_cfg, e, step + 1, steps_per_epoch, ckpt_path, hist_path, status_path, dist)
            restore(load_checkpoint(ckpt_path))
            curve.sync(step, images_seen, used_flops(), train_seconds)
            div = {"retries": div["retries"] + 1, "lr_scale": div["lr_scale"] * div_cfg["lr_factor"]}
            _scale_lr(opts, scheds, div_cfg["lr_factor"])
            train_seconds += wasted
            checkpoint(start_epoch)
            epoch = start_epoch
            prog.reset(step)
            continue
        train_seconds += time.perf_counter() - t_epoch
        means = {k: v / max(n_steps, 1) for k, v in sums.items()}
        if main:
            _log_line(hist_path, tracker, "epoch", {
                "kind": "epoch", "step": step, "epoch": epoch + 1, "images_seen": images_seen,
                "seconds": train_seconds, **means,
                **({"partial_epoch": n_steps / steps_per_epoch} if n_steps < steps_per_epoch else {})})
        prog.epoch(epoch + 1, step, means)
        checkpoint(epoch + 1, finished=True if spent else None)
        epoch += 1
    prog.close()
    if main:
        status_path.unlink(missing_ok=True)
    return _summary(model, load_checkpoint(ckpt_path))


def _log_line(hist_path: Path, tracker, prefix: str, record: dict) -> None:
    """Append one ``history.jsonl`` line and hand its numbers to the tracker (if any) as ``<prefix>/<name>``."""
    append_jsonl(hist_path, record)
    if tracker is not None:
        from genbench.runtime.tracking import history_scalars

        tracker.log_scalars(history_scalars(record, prefix), record["step"])


def _budget_steps(budget: dict, batch_size: int, steps_per_epoch: int) -> int:
    """Steps the progress bar expects under a budget (exact for images; a guess for FLOPs and seconds)."""
    if budget["kind"] == "images":
        return max(1, -(-int(budget["value"]) // batch_size))
    return steps_per_epoch


def _budget_spent(budget: dict, images_seen: int, flops: int, seconds: float, dist: Dist) -> bool:
    """The stopping rule of an equal-compute run: True at the first step whose cumulative images seen, training
    FLOPs (per-step count x steps) or wall seconds reach the budget. Under DDP rank 0 decides for every rank
    (wall clocks differ)."""
    kind, value = budget["kind"], budget["value"]
    used = {"images": images_seen, "flops": flops, "seconds": seconds}[kind]
    return bool(dist.broadcast(used >= value) if dist.active and kind == "seconds" else used >= value)


def _dropout_seed(seed: int, rank: int) -> int:
    """Seed of the global RNG (dropout) after initialisation: ``seed + 2`` in a single process and on rank 0;
    other data-parallel ranks get their own stream, else every rank would reuse rank 0's dropout masks."""
    return seed + 2 + 1_000_003 * rank


def _restore_global_rng(ck: dict, dist: Dist, seed: int) -> None:
    """The global RNG state of this rank from a checkpoint: a DDP checkpoint of the same world size holds every
    rank's; otherwise rank 0 takes the saved state and other ranks a fresh stream derived from the step (a
    resume on a different number of processes continues correctly but not bit-for-bit)."""
    states = ck["rng"].get("torch_ranks")
    if dist.active and states is not None and len(states) == dist.world:
        torch.set_rng_state(states[dist.rank])
    elif dist.main:
        torch.set_rng_state(ck["rng"]["torch"])
    else:
        torch.manual_seed(_dropout_seed(seed, dist.rank) + 7919 * ck["step"])


def _on_divergence(cfg, div_cfg: dict, e: NonFiniteStep, at_step: int, steps_per_epoch: int, ckpt_path: Path,
                   hist_path: Path, status_path: Path, dist: Dist | None = None) -> None:
    """Log one divergence (history line, stderr); stop the run if the retries are used up.

    The history is cut back to the checkpoint being restored, then the event is appended (once: a run killed
    before its post-divergence checkpoint replays the same divergence on resume, and that is not logged twice).

    Raises:
        GenbenchError: this divergence is one more than ``max_retries`` (``status.json`` marks the run
            diverged).
    """
    ck = load_checkpoint(ckpt_path)
    prev = ck.get("divergence") or {"retries": 0, "lr_scale": 1.0}
    retry = prev["retries"] + 1
    stop = retry > div_cfg["max_retries"]
    lr_scale = prev["lr_scale"] * (1.0 if stop else div_cfg["lr_factor"])
    event = {"kind": "divergence", "step": ck["step"], "epoch": ck["epoch"], "at_step": at_step,
             "at_epoch": at_step / steps_per_epoch, "what": e.what, "retry": retry,
             "max_retries": div_cfg["max_retries"], "lr_scale": lr_scale, "action": "stop" if stop else "retry"}
    dist = dist or Dist()
    if dist.main:
        _truncate_history(hist_path, ck["step"])
        if not any(r.get("kind") == "divergence" and r.get("retry") == retry and r.get("at_step") == at_step
                   for r in read_jsonl(hist_path)):
            append_jsonl(hist_path, event)
    if stop:
        if dist.main:
            atomic_write_json(status_path, {"status": "diverged", **{k: v for k, v in event.items() if k != "kind"},
                                            "lr": [g["lr"] for o in ck["optimizers"].values()
                                                   for g in o["param_groups"]]})
        dist.barrier()  # status.json is written before any rank stops
        raise GenbenchError(f"{cfg.name}: training diverged (NaN/inf {e.what} at step {at_step}) and "
                            f"{div_cfg['max_retries']} retries with a lower learning rate did not help; lower "
                            f"optimizer.lr or raise divergence.max_retries in the study file, then retrain with "
                            f"--overwrite")
    if dist.main:
        print(f"[{cfg.name}] NaN/inf {e.what} at step {at_step}: back to epoch {ck['epoch']} (step {ck['step']}), "
              f"learning rate x{lr_scale:g} (retry {retry}/{div_cfg['max_retries']})", file=sys.stderr, flush=True)


def _summary(model, ck: dict) -> dict:
    return {"train_seconds": ck["train_seconds"], "steps": ck["step"], "images_seen": ck["images_seen"],
            "epochs": ck["epoch"], "params": sum(p.numel() for p in model.parameters()),
            "flops": ck.get("flops"), "flops_per_step": ck.get("flops_per_step"), "budget": ck.get("budget"),
            "images_per_second": ck["images_seen"] / max(ck["train_seconds"], 1e-9)}

