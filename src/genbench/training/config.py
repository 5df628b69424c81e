"""What the training loop reads from a model's config: :class:`TrainConfig`.

The fields are listed once, here; a study's ``ModelConfig`` (:mod:`genbench.studies.config`) extends this frozen
dataclass with the study's own fields and provides the two methods, and the loop never imports studies. The model kind
arrives through :meth:`TrainConfig.model_kind` as a :class:`TrainableKind`, so the loop never imports
``genbench.families`` either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

from torch import nn

DIVERGENCE_DEFAULTS = {"max_retries": 3, "lr_factor": 0.5}
"""What the training loop does on a NaN/inf loss or gradient: go back to the last checkpoint with the learning
rate times ``lr_factor``, at most ``max_retries`` times, then stop."""

BUDGET_KINDS = ("images", "flops", "seconds")
"""The units of an equal-compute budget ``{"kind": ..., "value": ...}``: images seen (counted over all ranks),
training FLOPs (per-step count of the first step x steps) or wall seconds of training."""

StepFn = Callable[..., dict]
"""One optimisation step, ``step(model, opts, x, y, *, generator, autocast, ddp=None) -> {name: float}``
(:func:`genbench.training.objectives.likelihood_step` is one); it raises
:class:`~genbench.training.objectives.NonFiniteStep` instead of applying a NaN/inf update."""


class FamilyParts(Protocol):
    """The part of a family's spec the loop uses (:class:`genbench.families.Family` is one).

    Attributes:
        parts: ``parts(model) -> {name: parameters}``: one Adam per entry (``{"model": ...}`` or the GAN's two).
        ddp: ``ddp(model) -> {entry: ...}``: what :func:`genbench.runtime.distributed.wrap` wraps in DDP.
    """

    parts: Callable[[nn.Module], dict]
    ddp: Callable[[nn.Module], dict]


class TrainableKind(Protocol):
    """A resolved model kind as the loop sees it (:class:`genbench.families.ModelKind` is one)."""

    spec: FamilyParts

    def build(self, params: dict) -> nn.Module:
        """A freshly initialised model (weights drawn from the global RNG)."""
        ...

    def step(self) -> StepFn:
        """The optimisation step of this kind."""
        ...


@dataclass(frozen=True)
class TrainConfig:
    """Every field the training loop reads, typed and listed once. A study's ``ModelConfig`` extends it with the
    study's own fields and defines :meth:`to_dict` and :meth:`model_kind`. Units and meanings:

    Attributes:
        name: the run's name, in the progress bar and in messages.
        kind: the model kind's name; a resumed checkpoint must hold the same kind.
        params: the model constructor's keyword arguments (``mk.build(params)``).
        optimizer: ``{"lr": float, ...}`` for :func:`~genbench.training.objectives.make_optimizers` and
            :func:`~genbench.training.objectives.make_schedulers`.
        epochs: passes over the training split (ignored as a limit when ``budget`` is set).
        batch_size: images per optimisation step, over all data-parallel ranks together (the global batch).
        seed: the run seed; weights, data order, training noise and dropout derive from it.
        precision: ``"fp32"`` or ``"bf16"`` (autocast).
        ema_decay: decay of the weights' exponential moving average, or None for no EMA.
        log_every: a ``history.jsonl`` step line every this many steps.
        threads: intra-op CPU threads (``torch.set_num_threads``), or None to leave torch's choice.
        divergence: ``{"max_retries": int, "lr_factor": float}``; missing keys take :data:`DIVERGENCE_DEFAULTS`.
        channels_last: convolution weights (and so activations) in NHWC memory format.
        compile: ``torch.compile`` the model's sub-networks (no FLOP count then).
        budget: ``{"kind": one of BUDGET_KINDS, "value": number}`` (equal-compute training) or None.
        curve_points: K weights-only snapshots at k/K of the run's compute (0: none).
    """

    name: str
    kind: str
    params: dict
    optimizer: dict
    epochs: int
    batch_size: int
    seed: int
    precision: str
    ema_decay: float | None = None
    log_every: int = 50
    threads: int | None = None
    divergence: dict = field(default_factory=lambda: dict(DIVERGENCE_DEFAULTS))
    channels_last: bool = False
    compile: bool = False
    budget: dict | None = None
    curve_points: int = 0

    def to_dict(self) -> dict:
        """The resolved config as plain data: written to ``config.yaml``, every checkpoint and every snapshot;
        its ``"model"`` entry must match a checkpoint's for a resume."""
        raise NotImplementedError(f"{type(self).__name__} defines no to_dict()")

    def model_kind(self) -> TrainableKind:
        """The model kind: builder, optimiser parts, step and DDP entries."""
        raise NotImplementedError(f"{type(self).__name__} defines no model_kind()")
