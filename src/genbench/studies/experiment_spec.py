"""One :class:`Experiment` spec per experiment, in one registry: its options schema, which models it takes,
its checks, how it runs and how the report renders it.

An experiment is registered once (:func:`register_experiment`); the study schema, the config checks, the
experiments stage and the report all read the spec. ``run`` and ``render`` may be given as ``"module:function"``
strings, imported when first used: the report is a layer above the studies, so a spec names its render function
instead of importing it (an out-of-tree experiment names its own).

``run(ctx, opts) -> (result dict, arrays dict)`` gets an :class:`~genbench.studies.experiments.ExperimentContext`
and the validated options; ``render(parts, result, arrays, figdir, rel, study_dir, info)`` appends HTML parts
from the experiment's files only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from genbench.errors import GenbenchError
from genbench.runtime.registry import Registry
from genbench.studies.schema import MAX_EPOCHS, MAX_SAMPLES, MAX_WIDTH, SELECT, Field, _float, _int, _int_list, _num_list

TAKES = ("vae", "any", "conditional")


@dataclass(frozen=True)
class Experiment:
    """An experiment run after the evaluate stage on the trained study.

    Attributes:
        name: the key under a study's ``experiments:`` (a Python identifier; it names a folder).
        title: the report section's title.
        options: the schema of its options (``{key: Field}``; ``model``/``models`` are added).
        run: ``run(ctx, opts) -> (result, arrays)``, or its ``"module:function"``.
        render: the report's ``render(parts, result, arrays, figdir, rel, study_dir, info)``, or its
            ``"module:function"``.
        takes: which models it may be given: ``"vae"`` (VAEs only), ``"any"``, ``"conditional"`` (class-conditional
            models of any family; the study needs a conditional VAE).
        check: ``check(opts, info, where)`` further checks against the dataset's info (GenbenchError), or None.
        doc: one line for the docs.
    """

    name: str
    title: str
    options: Mapping[str, Field]
    run: Callable | str
    render: Callable | str
    takes: str = "vae"
    check: Callable[[dict, Any, str], None] | None = None
    doc: str = ""
    schema: Mapping[str, Field] = field(init=False, repr=False)

    def __post_init__(self):
        if self.takes not in TAKES:
            raise GenbenchError(f"experiment {self.name!r}: takes must be one of {', '.join(TAKES)}")
        object.__setattr__(self, "schema", {**self.options, **SELECT})

    def run_fn(self) -> Callable:
        return _resolve(self.run, self.name)

    def render_fn(self) -> Callable:
        return _resolve(self.render, self.name)


def _resolve(ref: Callable | str, name: str) -> Callable:
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise GenbenchError(f"experiment {name!r}: cannot import {ref!r} ({type(e).__name__}); fix the spec") from e


_REGISTRY: Registry[Experiment] = Registry("experiment", Experiment, "genbench.studies.experiments.Experiment",
                                           "register_experiment")


def register_experiment(exp: Experiment, *, replace: bool = False) -> Experiment:
    """Add ``exp`` (after those registered before it: experiments run in registration order). Returns it.

    Raises:
        GenbenchError: not an :class:`Experiment`, or its name is taken (and ``replace`` is False).
    """
    return _REGISTRY.add(exp, replace=replace)


def unregister_experiment(name: str) -> None:
    """Remove an experiment (tests that register one of their own clean up with this)."""
    _REGISTRY.remove(name)


def experiment_names() -> tuple[str, ...]:
    """The registered experiments, in the order they run."""
    return _REGISTRY.names()


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; GenbenchError when there is none."""
    return _REGISTRY.get(name)


# --------------------------------------------------------------------------------------------------------------
# The built-in experiments

def _beta_sweep_classes(opts: dict, info, where: str) -> None:
    if info.num_classes and max(opts["classes"]) >= info.num_classes:
        raise GenbenchError(f"{where}.classes: {opts['classes']} has labels outside 0..{info.num_classes - 1}")


_LS = "genbench.studies.experiments.latent_space"
_R = "genbench.report.experiments"
for _e in (
    Experiment("reconstructions", "Reconstructions", {"n": _int(1, 1000, 10)}, f"{_LS}:exp_reconstructions",
               f"{_R}:render_reconstructions", doc="test images and their reconstructions decode(E_q[z|x])"),
    Experiment("samples", "Sample grids", {"n": _int(1, 10_000, 64)}, f"{_LS}:exp_samples", f"{_R}:render_samples",
               takes="any", doc="a grid of samples per model"),
    Experiment("interpolations", "Latent interpolations", {"pairs": _int(1, 1000, 6), "steps": _int(2, 1000, 10)},
               f"{_LS}:exp_interpolations", f"{_R}:render_interpolations",
               doc="linear paths between the latent means of test-image pairs"),
    Experiment("beta_sweep", "beta sweep",
               {"betas": _num_list(0, 1e6, default=[0.1, 0.5, 1.0]), "latent_dim": _int(1, MAX_WIDTH, 2),
                "classes": _int_list(None, 0, 100_000, [0, 1, 7]), "epochs": _int(1, MAX_EPOCHS, None, null=True),
                "n_points": _int(1, MAX_SAMPLES, 1000)},
               "genbench.studies.experiments.beta_sweep:exp_beta_sweep", f"{_R}:render_beta_sweep",
               check=_beta_sweep_classes, doc="one small VAE per beta on a class subset, latents per epoch"),
    Experiment("frozen_latent", "Frozen latent", {"sigmas": _num_list(0, 1e6, default=[0.1, 0.5, 1.0])},
               f"{_LS}:exp_frozen_latent", f"{_R}:render_frozen_latent", doc="decode z = sigma * eps"),
    Experiment("linear_probe", "Linear probe",
               {"n_train": _int(2, MAX_SAMPLES, 10000), "C": _float(0, 1e12, 1.0, lo_open=True),
                "max_iter": _int(1, 10**7, 1000)},
               f"{_LS}:exp_linear_probe", f"{_R}:render_linear_probe",
               doc="a logistic-regression probe on the latent means"),
    Experiment("encoder_comparison", "Encoder comparison", {}, f"{_LS}:exp_encoder_comparison",
               f"{_R}:render_encoder_comparison", doc="the VAEs' encoders side by side"),
    Experiment("nearest_neighbours", "Nearest training neighbours", {"n": _int(1, MAX_SAMPLES, 500),
                                                                      "show": _int(1, 100, 8)},
               f"{_LS}:exp_nearest_neighbours", f"{_R}:render_nearest_neighbours", takes="any",
               doc="each model's most-copied samples beside their nearest training images, real held-out as floor"),
    Experiment("per_class", "Conditional samples per class", {"n_per_class": _int(1, MAX_SAMPLES, 100)},
               f"{_LS}:exp_per_class", f"{_R}:render_per_class", takes="conditional",
               doc="class-conditional samples scored by the classifier, per class"),
):
    register_experiment(_e)
