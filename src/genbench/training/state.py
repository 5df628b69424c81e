"""The state a training run carries from step to step: :class:`TrainState`.

Everything a checkpoint restores lives here (models, optimizers, schedulers, EMA, counters, RNGs), so a resume
and a divergence restore are one call, :meth:`TrainState.load`, and a checkpoint is one dict,
:meth:`TrainState.checkpoint`. Reproducibility: one ``torch.Generator`` per purpose (data order, training noise)
plus the global RNG for dropout, all seeded from the run seed (:meth:`TrainState.seeded`) and saved in every
checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from genbench.runtime.distributed import Dist
from genbench.training.ema import EMA


def _no_divergence() -> dict:
    return {"retries": 0, "lr_scale": 1.0}


@dataclass
class TrainState:
    """Models, optimizers, EMA, counters and RNGs of one run; the loop and its hooks read and advance it.

    Attributes:
        model: the model being trained (unwrapped: DDP wrappers only hold references to it).
        opts: ``{part: optimizer}``, one Adam per part of the family.
        scheds: ``{part: LR scheduler}`` (empty without a schedule).
        ema: the weights' moving average, or None.
        data_gen: the generator of the data order (one permutation per epoch, same on every rank).
        noise_gen: the generator of the training noise (same on every rank; each uses its slice).
        epoch: epochs completed (a budget run's last one may be partial).
        step: optimisation steps taken.
        images_seen: training images used, over all ranks.
        train_seconds: wall seconds of training up to the end of the last epoch (snapshot writes excluded);
            :meth:`seconds` adds the running epoch.
        divergence: ``{"retries": int, "lr_scale": float}``: NaN/inf restores so far and the learning rate's
            accumulated factor.
        flops_per_step: training FLOPs of one step (counted on the first step), or None when not counted.
        finished: the run reached its end (set by the loop at the end of its last epoch).
    """

    model: nn.Module
    opts: dict
    scheds: dict
    ema: EMA | None
    data_gen: torch.Generator
    noise_gen: torch.Generator
    epoch: int = 0
    step: int = 0
    images_seen: int = 0
    train_seconds: float = 0.0
    divergence: dict = field(default_factory=_no_divergence)
    flops_per_step: int | None = None
    finished: bool = False
    _t0: float = field(default=0.0, repr=False)  # perf_counter at the start of the running epoch

    @classmethod
    def seeded(cls, model: nn.Module, opts: dict, scheds: dict, ema: EMA | None, seed: int, dist: Dist) -> "TrainState":
        """A fresh state: data generator seeded ``seed``, noise ``seed + 1``, and the global RNG (dropout)
        re-seeded per rank (:func:`dropout_seed`), after the weights were drawn from it."""
        data_gen = torch.Generator().manual_seed(seed)  # same on every rank: one permutation, sliced per rank
        noise_gen = torch.Generator().manual_seed(seed + 1)  # same on every rank, see BatchShard
        torch.manual_seed(dropout_seed(seed, dist.rank))  # dropout: each rank its own masks
        return cls(model, opts, scheds, ema, data_gen, noise_gen)

    # --- the training clock: seconds of the running epoch, minus what hooks excluded ---
    def start_clock(self) -> None:
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        """Wall seconds of the running epoch so far (excluded time left out)."""
        return time.perf_counter() - self._t0

    def seconds(self) -> float:
        """Training wall seconds of the whole run so far."""
        return self.train_seconds + self.elapsed()

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` of the running epoch out of the training time (a snapshot write)."""
        self._t0 += seconds

    @property
    def flops(self) -> int | None:
        """Training FLOPs so far (per-step count x steps), or None when not counted."""
        return self.flops_per_step * self.step if self.flops_per_step else None

    @property
    def sampling_model(self) -> nn.Module:
        """The weights sampling uses: the EMA's when the run keeps one."""
        return self.ema.model if self.ema is not None else self.model

    def rng_state(self, dist: Dist) -> dict:
        """Every RNG state (a collective under DDP: each rank's dropout RNG is gathered)."""
        rng = {"data": self.data_gen.get_state(), "noise": self.noise_gen.get_state(), "torch": torch.get_rng_state()}
        if dist.active:  # every rank's dropout RNG, so a resumed DDP run reproduces the uninterrupted one
            from accelerate.utils import gather_object

            rng["torch_ranks"] = gather_object([torch.get_rng_state()])
        return rng

    def checkpoint(self, config: dict, rng: dict, budget: dict | None) -> dict:
        """The checkpoint dict (:mod:`genbench.training.checkpoint` adds the format version).

        Args:
            config: the resolved config (``TrainConfig.to_dict()``).
            rng: :meth:`rng_state`.
            budget: the run's equal-compute budget or None (stored for the summary).
        """
        return {
            "config": config, "model": self.model.state_dict(),  # the unwrapped model, as single-process
            "optimizers": {k: o.state_dict() for k, o in self.opts.items()},
            "schedulers": {k: sch.state_dict() for k, sch in self.scheds.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "epoch": self.epoch, "step": self.step, "images_seen": self.images_seen,
            "train_seconds": self.train_seconds, "rng": rng, "divergence": dict(self.divergence),
            "finished": self.finished, "flops_per_step": self.flops_per_step, "flops": self.flops, "budget": budget,
        }

    def load(self, ck: dict, dist: Dist, seed: int) -> None:
        """Restore everything from checkpoint ``ck`` (a resume, or the way back after a divergence); the
        ``finished`` mark is not restored (only unfinished checkpoints train on)."""
        self.model.load_state_dict(ck["model"])
        self.model.to(dist.device)
        for k, o in self.opts.items():
            o.load_state_dict(ck["optimizers"][k])
        for k, sch in self.scheds.items():
            sch.load_state_dict(ck["schedulers"][k])
        if self.ema is not None:
            self.ema.load_state_dict(ck["ema"])
        self.data_gen.set_state(ck["rng"]["data"])
        self.noise_gen.set_state(ck["rng"]["noise"])
        restore_global_rng(ck, dist, seed)
        self.epoch, self.step, self.images_seen = ck["epoch"], ck["step"], ck["images_seen"]
        self.train_seconds = ck["train_seconds"]
        self.divergence = dict(ck.get("divergence") or _no_divergence())
        self.flops_per_step = ck.get("flops_per_step") or self.flops_per_step

    def scale_lr(self, factor: float) -> None:
        """Multiply every optimizer's learning rate (and a cosine schedule's base) by ``factor``."""
        for o in self.opts.values():
            for g in o.param_groups:
                g["lr"] *= factor
                if "initial_lr" in g:
                    g["initial_lr"] *= factor
        for sch in self.scheds.values():
            sch.base_lrs = [b * factor for b in sch.base_lrs]


def dropout_seed(seed: int, rank: int) -> int:
    """Seed of the global RNG (dropout) after initialisation: ``seed + 2`` in a single process and on rank 0;
    other data-parallel ranks get their own stream, else every rank would reuse rank 0's dropout masks."""
    return seed + 2 + 1_000_003 * rank


def restore_global_rng(ck: dict, dist: Dist, seed: int) -> None:
    """The global RNG state of this rank from a checkpoint: a DDP checkpoint of the same world size holds every
    rank's; otherwise rank 0 takes the saved state and other ranks a fresh stream derived from the step (a
    resume on a different number of processes continues correctly but not bit-for-bit)."""
    states = ck["rng"].get("torch_ranks")
    if dist.active and states is not None and len(states) == dist.world:
        torch.set_rng_state(states[dist.rank])
    elif dist.main:
        torch.set_rng_state(ck["rng"]["torch"])
    else:
        torch.manual_seed(dropout_seed(seed, dist.rank) + 7919 * ck["step"])
