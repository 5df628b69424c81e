"""The experiments stage: each experiment a function of the trained study that writes data only.

An experiment listed under a study's ``experiments:`` runs after the evaluate stage and writes
``runs/<study>/experiments/<name>/result.json`` (numbers with their provenance) and, where it has images or
latents, ``arrays.npz`` beside it. It draws nothing: the report renders every figure (strips, grids, GIFs,
curves) from these files. An experiment is skipped when its ``result.json`` carries the same key (options,
evaluation settings, the checkpoints' sha256), so a rerun or a resumed study does not repeat it.

Any experiment runs on any study whose models support it: the VAE experiments take every VAE of the study
(or ``model:`` / ``models:``), ``per_class`` takes conditional models of any family.

Experiments and their options (all optional):

- ``reconstructions: {n: 10}``; ``samples: {n: 64}``; ``interpolations: {pairs: 6, steps: 10}``
- ``beta_sweep: {betas: [0.1, 0.5, 1.0], latent_dim: 2, classes: [0, 1, 7], epochs: E, model: <VAE>,
  n_points: 1000}``: one VAE per beta on a class subset, trained epoch by epoch, the latent means and
  reconstructions after every epoch saved (the report turns them into one GIF per beta).
- ``frozen_latent: {sigmas: [0.1, 0.5, 1.0], model: <VAE>}``: decode z = sigma * eps (mu frozen at 0).
- ``linear_probe: {n_train: 10000, C: 1.0, max_iter: 1000}``
- ``encoder_comparison: {models: [a, b]}``; ``per_class: {model: <conditional model>, n_per_class: 100}``
- ``nearest_neighbours: {n: 500, show: 8}``: each model's ``show`` samples (of its first ``n``) nearest to a
  training image beside those training images, and the same for held-out real images (the floor).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genbench.io import atomic_savez, atomic_write_json
from genbench.studies.experiment_spec import experiment_names, get_experiment


@dataclass
class ExperimentContext:
    """What an experiment may read: the study, its folder, the data splits, the evaluation context, the trained
    models (name -> (module in eval mode, ModelConfig)), their sample banks (name -> (uint8 images, labels))
    and evaluation records (name -> the model's record of ``metrics.json``)."""

    study: object
    study_dir: Path
    splits: dict
    eval_ctx: object
    models: dict
    banks: dict
    records: dict
    overwrite: bool = False
    log: object = print
    class_names: list = field(default_factory=list)

    def out_dir(self, name: str) -> Path:
        d = self.study_dir / "experiments" / name
        d.mkdir(parents=True, exist_ok=True)
        return d


def _key(ctx: ExperimentContext, name: str, opts: dict) -> str:
    ck = {m: (ctx.records.get(m) or {}).get("sample_bank", {}).get("checkpoint_sha256") for m in sorted(ctx.models)}
    ev = ctx.study.evaluation
    blob = json.dumps({"experiment": name, "options": opts, "checkpoints": ck, "seed": ctx.study.seed,
                       "evaluation": [ev.n_samples, ev.n_inception, ev.n_eval, ev.resize, ev.inception_precision]},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_result(ctx: ExperimentContext, name: str, result: dict, arrays: dict | None = None) -> dict:
    """Write ``experiments/<name>/arrays.npz`` (if any) then ``result.json`` (atomically, in that order: a
    result.json present means its arrays are complete)."""
    d = ctx.out_dir(name)
    if arrays:
        atomic_savez(d / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        result = {**result, "arrays": "arrays.npz"}
    atomic_write_json(d / "result.json", result)
    return result


def run_experiments(ctx: ExperimentContext) -> dict:
    """Run the study's experiments in the order they are registered
    (:func:`~genbench.studies.experiment_spec.experiment_names`); returns ``{name: {"seconds",
    "skipped", "path"}}`` for ``metrics.json``. Each experiment's own numbers are in its ``result.json``."""
    from genbench.studies.experiments import latent_space

    out = {}
    for name, opts in ctx.study.experiments.items():
        assert name in experiment_names(), name
        key = _key(ctx, name, opts)
        path = ctx.study_dir / "experiments" / name / "result.json"
        try:
            old = json.loads(path.read_text()) if path.exists() and not ctx.overwrite else None
        except (OSError, ValueError):
            old = None  # unreadable: run it again
        if old is not None and old.get("key") == key:
            out[name] = {"seconds": old.get("seconds", 0.0), "skipped": True,
                         "path": f"experiments/{name}/result.json"}
            ctx.log(f"[experiment] {name}: current, skipped")
            continue
        ctx.log(f"[experiment] {name}")
        t0 = time.perf_counter()
        try:
            result, arrays = get_experiment(name).run_fn()(ctx, opts)
        except latent_space.SkipExperiment as e:
            ctx.log(f"[experiment] {name}: skipped, {e}")
            continue
        secs = time.perf_counter() - t0
        save_result(ctx, name, {"experiment": name, "options": opts, "key": key, "seed": ctx.study.seed,
                                "seconds": secs, **result}, arrays)
        out[name] = {"seconds": secs, "skipped": False, "path": f"experiments/{name}/result.json"}
    return out
