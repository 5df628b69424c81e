"""The ``Family`` spec and its registry: everything that differs between model families, in one object.

A family (``vae``, ``gan``, ``diffusion``, ``flow``, ``shortcut``, ``likelihood``, or one a plugin registers) is what a model
class names with its class attribute ``genbench_family``. Every layer that used to switch on the family name asks
the registry instead (:func:`get_family`):

=================  ==============================================================================================
field              used by
=================  ==============================================================================================
``kinds``          the built-in model kinds of the family (study ``kind:`` name -> ``nn.Module`` class; the builder
                   is the class, its config schema the constructor's keywords: :mod:`genbench.families.kinds`)
``step``           the training loop: one optimisation step (:mod:`genbench.training.objectives`)
``parts``          the training loop: the parameter groups that get one Adam each (``{"model": ...}`` or
                   ``{"g": ..., "d": ...}``)
``ddp``            data-parallel training: the entry points DDP wraps (:class:`genbench.runtime.distributed.Wrapped`)
``samplers``       drawing: the sampler names, their default settings and the loop (:mod:`genbench.families.draw`);
                   empty for one-pass families, which draw with the model's own ``sample``
``loss_keys``      the report's training-curve panels; ``stability_keys`` the stability metric's loss series
``conditional``    whether the family's models may be class-conditional (``num_classes > 0``)
``fills_classes``  study files: whether ``conditional: true`` applies to the family's built-in kinds, filling
                   ``num_classes`` from the dataset (:mod:`genbench.studies.model_config`)
``methods`` ...    the protocol an outside class of the family must follow (docs/BRING_YOUR_OWN.md)
=================  ==============================================================================================

The loop, the samplers and the DDP wrappers live below this package and never import it: they receive what they
need from a :class:`Family` as arguments. Anchors: diffusers' scheduler objects (a sampler is data plus a loop),
EDM's losses as small callables. A plugin registers its own ``Family`` with :func:`register_family`, or through an
entry point in the group ``genbench.families`` whose object is a ``Family`` (docs/BRING_YOUR_OWN.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from torch import nn

from genbench.errors import GenbenchError
from genbench.runtime.registry import Registry

FAMILY_ENTRY_POINT_GROUP = "genbench.families"


def single_part(model: nn.Module) -> dict:
    """One Adam over every parameter: ``{"model": model.parameters()}``."""
    return {"model": model.parameters()}


def whole_model_ddp(model: nn.Module) -> dict:
    """DDP wraps the model behind a ``forward`` that is ``training_losses`` (one optimizer)."""
    return {"training_losses": (model.training_losses, {"model": model}, None)}


@dataclass(frozen=True)
class Samplers:
    """How a multi-step family draws: sampler names, default settings, NFE per step, the loop.

    Attributes:
        names: the sampler names a study's ``sampling.sampler`` may take.
        defaults: ``{"sampler", "steps", "guidance_scale", "eta"}`` when a study gives none.
        loop: ``loop(model, x, *, y, generator, settings) -> x`` from the starting noise ``x`` (float32 (n, C, H, W),
            standard normal) to an image batch (not clamped).
        evals_per_step: network evaluations per step of a sampler (default 1; Heun 2).
        check: ``check(settings, timesteps, where)`` for sampler-specific rules (raises GenbenchError), or None;
            ``timesteps`` is the value of the model parameter ``limit`` names.
        fixed_steps: samplers whose step count is the model's ``timesteps`` whatever was asked (DDPM ancestral).
        sweep_steps: the sampler sweep's default step grid per sampler (``genbench sweep``, quality vs NFE).
        reference: (sampler, steps) of the sweep's converged reference (many steps of an accurate sampler).
        limit: (name, default) of the model parameter (and attribute) that bounds the step count, handed to
            ``check`` and ``fixed_steps``: the DDPM's ``timesteps`` T (default 1000), a shortcut model's
            ``max_steps``.
    """

    names: tuple[str, ...]
    defaults: Mapping[str, object]
    loop: Callable
    evals_per_step: Mapping[str, int] = field(default_factory=dict)
    check: Callable | None = None
    fixed_steps: tuple[str, ...] = ()
    sweep_steps: Mapping[str, list] = field(default_factory=dict)
    reference: tuple[str, int] | None = None
    limit: tuple[str, int] = ("timesteps", 1000)


@dataclass(frozen=True)
class Family:
    """One model family (see the module docstring for where each field is used).

    Attributes:
        name: the value of a model class's ``genbench_family``.
        doc: one line for listings and error messages.
        step: ``step(model, opts, x, y, *, generator, autocast, ddp=None) -> dict[str, float]``: one optimisation
            step (x float32 (B, C, H, W) in [-1, 1], y int64 (B,)); returns the losses to log.
        kinds: built-in kind name -> model class.
        parts: ``parts(model) -> {name: parameters}``, one Adam per entry.
        ddp: ``ddp(model) -> {entry: (bound method, {name: sub-module}, parameters or None)}``: what DDP wraps; the
            parameters, when given, must be exactly the sub-modules' (checked).
        samplers: a :class:`Samplers` for multi-step families, None for one-pass families (``model.sample``).
        loss_keys: history keys drawn in the training-curve figure, in order.
        stability_keys: history keys whose series give the stability metric (the worst one counts).
        conditional: whether the family's models may take ``num_classes > 0``.
        fills_classes: whether a study's ``conditional: true`` applies to the family's built-in kinds (their
            ``num_classes`` is then filled from the dataset: the VAE); other families are conditioned by their
            kind (``cgan``) or ``params.num_classes``. An outside class takes the flag when its constructor
            takes ``num_classes``.
        methods: callables an outside class of this family must have.
        attributes: instance attributes an outside model of this family must have once built.
        base: a class outside classes must subclass (genbench's samplers need its noise schedule), or None.
    """

    name: str
    doc: str
    step: Callable
    kinds: Mapping[str, type] = field(default_factory=dict)
    parts: Callable[[nn.Module], dict] = single_part
    ddp: Callable[[nn.Module], dict] = whole_model_ddp
    samplers: Samplers | None = None
    loss_keys: tuple[str, ...] = ("loss",)
    stability_keys: tuple[str, ...] = ("loss",)
    conditional: bool = True
    fills_classes: bool = False
    methods: tuple[str, ...] = ("training_losses", "sample")
    attributes: tuple[str, ...] = ()
    base: type | None = None


_REGISTRY: Registry[Family] = Registry("family", Family, "genbench.families.Family", "register_family",
                                      entry_point_group=FAMILY_ENTRY_POINT_GROUP)
_KIND_OWNER: dict[str, str] = {}


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add ``family`` to the registry (one line per family module). Returns it.

    Raises:
        GenbenchError: a family of that name, or one of its kind names, is registered already (and ``replace`` is
            False), or ``family`` is not a :class:`Family`.
    """
    def kinds_free(f: Family) -> None:
        taken = [k for k in f.kinds if _KIND_OWNER.get(k, f.name) != f.name]
        if taken and not replace:
            raise GenbenchError(f"family {f.name!r}: kind(s) {', '.join(taken)} belong to another family already")

    _REGISTRY.add(family, replace=replace, check=kinds_free)
    for k in family.kinds:
        _KIND_OWNER[k] = family.name
    return family


def family_names() -> tuple[str, ...]:
    """The registered family names, built-ins first."""
    return _REGISTRY.names()


def builtin_kinds() -> dict[str, tuple[type, str]]:
    """Every registered built-in kind: ``{kind: (class, family name)}``."""
    return {k: (cls, f.name) for f in _REGISTRY.values() for k, cls in f.kinds.items()}


def get_family(name: str) -> Family:
    """The registered :class:`Family` called ``name`` (entry points are loaded on the first miss).

    Raises:
        GenbenchError: no such family.
    """
    if _REGISTRY.find(name) is None:
        raise GenbenchError(f"unknown model family {name!r}; registered: {', '.join(_REGISTRY)} (a plugin registers "
                            f"one with genbench.families.register_family)")
    return _REGISTRY[name]


def family_of(model: nn.Module) -> Family:
    """The :class:`Family` of a built model, from its class attribute ``genbench_family``.

    Raises:
        GenbenchError: the class names no registered family.
    """
    return get_family(getattr(type(model), "genbench_family", None) or "")
