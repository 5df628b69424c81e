"""The study pipeline: fetch -> classifier -> train each model -> sample bank -> evaluate (the report is
rendered from its files by :mod:`genbench.report`, called by the CLI).

Each step writes its own files into ``runs/<study>/`` and is skipped when its output already matches (a
finished checkpoint, a bank whose manifest names the current checkpoint), so an interrupted ``genbench run``
picks up where it stopped. Every number lands in ``runs/<study>/metrics.json`` with its provenance.

Data-parallel (``torchrun`` / ``accelerate launch``): every rank trains, then every rank takes part in the
evaluation of each run: the bank's generation and the feature extraction are sharded over the ranks and
gathered (:mod:`genbench.runtime.distributed`); rank 0 computes the metrics and alone writes the bank, the
``metrics.json`` files, the sweeps and the report. The other ranks wait at barriers and leave once the last
collective step (the real-data floor) is done.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import torch

from genbench.data.registry import Dataset, load_dataset
from genbench.errors import GenbenchError
from genbench.io import atomic_write_json, atomic_write_text, read_jsonl
from genbench.metrics.classifier import get_classifier
from genbench.metrics.evaluate import EvalContext, evaluate_images
from genbench.metrics.stability import stability
from genbench.models.registry import MODEL_KINDS
from genbench.sampling.bank import balanced_labels, generate, read_bank, sampler_info, write_bank
from genbench.runtime.provenance import provenance, to_yaml
from genbench.studies.config import StudyConfig, parse_study, upgrade_legacy_sampling
from genbench.studies.sweeps import parse_sweeps, run_sweeps
from genbench.runtime.distributed import Dist, context, is_main_process, main_first
from genbench.training.loop import load_trained, train


def log(msg: str) -> None:
    if is_main_process():  # data-parallel: one line, from rank 0
        print(msg, file=sys.stderr, flush=True)


def prepare_data(study: StudyConfig) -> dict[str, Dataset]:
    with main_first():  # data-parallel: rank 0 fills the dataset cache before the others read it
        splits = load_dataset(study.dataset, holdout=study.holdout)
    if study.models and study.models[0].train_subset:
        splits["train"] = splits["train"].subset(slice(0, study.models[0].train_subset))
    return splits


def make_context(study: StudyConfig, splits: dict[str, Dataset], dist: Dist | None = None) -> EvalContext:
    """The evaluation context: the cached (or freshly trained) classifier and the real splits. Under DDP
    (``dist`` active) every rank calls it; rank 0 trains and caches the classifier first, then the others load
    it, and the context's feature extraction is sharded over ``dist``."""
    ev = study.evaluation
    with main_first():  # data-parallel: rank 0 trains and caches the classifier, the others then load it
        clf, info = get_classifier(splits["train"], splits["test"], epochs=ev.classifier_epochs, seed=study.seed,
                                   min_accuracy=ev.classifier_min_accuracy, log=log)
    log(f"[classifier] test accuracy {info['test_accuracy']:.4f} ({info['cache']})")
    return EvalContext(test=splits["test"], train=splits["train"], classifier=clf, classifier_info=info,
                       eval_cfg=ev, seed=study.seed, log=log, dist=dist or Dist())


def sample_bank(run_dir: Path, study: StudyConfig, precision: str, dist: Dist | None = None,
                settings: dict | None = None) -> tuple[torch.Tensor, torch.Tensor | None, dict | None]:
    """Reuse the run's bank if it matches the checkpoint, size and sampler ``settings`` (the model's resolved
    ``sampling`` field; empty for one-pass models), else generate and save one.

    Returns (uint8 (N, C, H, W), int64 (N,) labels or None, the bank's manifest). Under DDP (``dist`` active)
    every rank calls it and gets the full images and labels: rank 0 decides whether its bank is reused (and
    sends it to the others), otherwise every rank generates its share of the batches; rank 0 writes the bank
    and the others wait at a barrier. Their manifest is None.
    """
    dist = dist or Dist()
    n = study.evaluation.n_samples
    settings = settings or None
    got = read_bank(run_dir, settings) if dist.main else None
    reuse = got is not None and got[2]["n"] == n and got[2]["seed"] == study.seed
    if dist.broadcast(reuse):
        images, labels, manifest = dist.broadcast(got)  # ranks > 0 need the images for their shard of features
        return images, (labels if (labels >= 0).all() else None), manifest if dist.main else None
    model, _ = load_trained(run_dir)
    labels = balanced_labels(n, getattr(model, "num_classes", 0))
    info = sampler_info(model, settings)
    log(f"[sample] {run_dir.name}: {n} images, {info['sampler']} ({info['nfe']} NFE)"
        + (f", sharded over {dist.world} ranks" if dist.active else ""))
    batch = study.evaluation.sample_batch
    images, secs = generate(model, n, seed=study.seed, precision=precision, labels=labels, batch=batch, dist=dist,
                            settings=settings)
    manifest = None
    if dist.main:
        manifest = write_bank(run_dir, model, images, labels, seed=study.seed, precision=precision,
                              gen_seconds_per_1000=secs, batch=batch, ranks=dist.world, settings=settings)
    dist.barrier()
    return images, labels, manifest


def evaluate_run(run_dir: Path, study: StudyConfig, ctx: EvalContext, mcfg) -> dict | None:
    """Sample (or reuse the bank) and score one trained run; writes ``<run>/metrics.json``. Under DDP every
    rank calls it (sharded generation and features); rank 0 writes and returns the record, the others None."""
    images, labels, manifest = sample_bank(run_dir, study, mcfg.precision, ctx.dist, mcfg.sampling)
    metrics = evaluate_images(ctx, images, labels, what=run_dir.name)
    if metrics is None:  # a data-parallel rank > 0: its part (generation, features) is done
        return None
    model, ck = load_trained(run_dir)
    family = MODEL_KINDS[mcfg.kind][1]
    hist = read_jsonl(run_dir / "history.jsonl")
    # flow matching logs one "loss" like the DDPM; metrics.stability names its losses per family and has no
    # "flow" entry yet (metrics/ is another session's; add "flow": ("loss",) to MAIN_LOSSES there)
    metrics["stability"] = {"value": None, **stability(hist, "diffusion" if family == "flow" else family)}
    metrics["stability"]["value"] = metrics["stability"]["score"]
    params = sum(p.numel() for p in model.parameters())
    metrics["efficiency"] = {
        "train_seconds": ck["train_seconds"], "epochs": ck["epoch"], "steps": ck["step"],
        "images_seen": ck["images_seen"], "images_per_second": ck["images_seen"] / max(ck["train_seconds"], 1e-9),
        "seconds_per_step": ck["train_seconds"] / max(ck["step"], 1),
        "gen_seconds_per_1000": manifest["gen_seconds_per_1000"], "sampler": manifest["sampler"],
        "sampler_steps": manifest["steps"], "nfe": manifest["nfe"], "guidance_scale": manifest["guidance_scale"],
        "precision": manifest["precision"], "params": params, "threads": torch.get_num_threads()}
    record = {"model": mcfg.name, "kind": mcfg.kind, "family": family, "conditional": bool(
        getattr(model, "num_classes", 0)), "metrics": metrics, "sample_bank": manifest, "seed": study.seed,
        "provenance": provenance()}
    atomic_write_json(run_dir / "metrics.json", record)
    return record


def evaluate_real(study: StudyConfig, splits: dict[str, Dataset], ctx: EvalContext) -> dict | None:
    """The real-data floor: the held-out training slice scored exactly like a model's samples (under DDP every
    rank calls it; rank 0 gets the record, the others None)."""
    hold = splits["holdout"]
    n = min(study.evaluation.n_samples, len(hold))
    if n < study.evaluation.n_samples:
        log(f"[evaluate] warning: holdout has {len(hold)} images < n_samples; the real floor uses N={n}")
    metrics = evaluate_images(ctx, hold.x[:n], hold.y[:n], what="real (held-out train slice)")
    if metrics is None:
        return None
    return {"model": "real", "kind": "real", "family": "real", "conditional": True, "metrics": metrics,
            "sample_bank": {"n": n, "source": f"last {len(hold)} images of the training split, never trained on"}}


def write_summary(study_dir: Path, study: StudyConfig, ctx: EvalContext, records: list[dict], **timings) -> dict:
    """Write the study's ``metrics.json`` (atomically): every model's record plus the real-data floor, the
    classifier, the evaluation settings, provenance and the given timings (seconds)."""
    summary = {"study": study.name, "dataset": study.dataset, "profile": study.profile, "seed": study.seed,
               "classifier": ctx.classifier_info, "evaluation": dataclasses.asdict(study.evaluation),
               "models": records, "provenance": provenance(), **timings}
    if ctx._inception is not None:
        summary["inception_seconds_per_image"] = ctx.inception.seconds / max(ctx.inception.images, 1)
    atomic_write_json(study_dir / "metrics.json", summary)
    return summary


def load_study_dir(study_dir: Path, profile: str | None = None) -> StudyConfig:
    """The study config a run folder was made with (its ``study.yaml``), optionally under another profile.

    Raises:
        GenbenchError: the folder holds no ``study.yaml``.
    """
    import yaml

    spath = Path(study_dir) / "study.yaml"
    if not spath.exists():
        raise GenbenchError(f"{spath} not found: give a study folder written by `genbench run` (runs/<study>)")
    raw = upgrade_legacy_sampling(yaml.safe_load(spath.read_text()))  # a run folder from before issue 14
    prof = raw.pop("profile", "quick")
    return parse_study(raw, profile or prof, str(spath))


def _diverged_status(run_dir: Path) -> dict | None:
    """The run's ``status.json`` if training stopped because it diverged (see :mod:`genbench.training.loop`)."""
    import json

    p = run_dir / "status.json"
    try:
        st = json.loads(p.read_text()) if p.exists() else None
    except (OSError, ValueError):
        return None
    return st if isinstance(st, dict) and st.get("status") == "diverged" else None


def run_study(study: StudyConfig, out_root: Path, *, overwrite: bool = False, only: list[str] | None = None,
              resume: bool = False) -> Path:
    """Run a whole study. Returns the study folder ``out_root/<study.name>``.

    An interrupted study (no ``metrics.json`` yet) always continues where it stopped. A finished one is only
    run again with ``resume`` (reuse finished models and banks, evaluate again) or ``overwrite`` (retrain).

    Raises:
        GenbenchError: the study folder holds a finished study and neither ``resume`` nor ``overwrite`` is set.
    """
    t_start = time.perf_counter()
    study_dir = Path(out_root) / study.name
    if (study_dir / "metrics.json").exists() and not (overwrite or resume):
        raise GenbenchError(f"{study_dir} already holds a finished study (metrics.json); pass --resume to reuse "
                            f"its trained models and evaluate again, or --overwrite to retrain from scratch")
    study_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()  # data-parallel (WORLD_SIZE > 1): every rank trains, rank 0 does everything else
    if main:
        atomic_write_text(study_dir / "study.yaml", to_yaml({"profile": study.profile, **study.raw}))
    sweeps = parse_sweeps(study)  # validated before any training
    splits = prepare_data(study)
    log(f"[data] {study.dataset}: train {len(splits['train'])}, holdout {len(splits['holdout'])}, "
        f"test {len(splits['test'])} (profile {study.profile})")
    models = [m for m in study.models if not only or m.name in only]
    if only and len(models) != len(only):
        raise GenbenchError(f"--only names {only}, the study has {[m.name for m in study.models]}")
    diverged: dict[str, dict] = {}
    for m in models:
        log(f"[train] {m.name}: {m.kind}, {m.epochs} epochs, batch {m.batch_size}, {m.precision}")
        try:
            train(m, splits["train"], study_dir / m.name, resume=not overwrite, overwrite=overwrite)
        except GenbenchError as e:
            status = _diverged_status(study_dir / m.name)
            if status is None:
                raise
            log(f"[train] {e}; {m.name} is left out of the evaluation and marked as diverged in the report")
            diverged[m.name] = {**status, "message": str(e)}
    # evaluation: every data-parallel rank generates and extracts features for its share; rank 0 writes
    dist = context()
    diverged = dist.broadcast(diverged)  # rank 0's view (it wrote the status files), the same on every rank
    models = [m for m in models if m.name not in diverged]
    if not models:
        raise GenbenchError(f"every model of {study.name} diverged ({', '.join(diverged)}); lower the learning "
                            f"rates in the study file and rerun with --overwrite")
    ctx = make_context(study, splits, dist)
    records = [evaluate_run(study_dir / m.name, study, ctx, m) for m in models]
    records.append(evaluate_real(study, splits, ctx))
    if not main:
        return study_dir  # sweeps and the report are rank 0's alone
    ctx.dist = Dist(device=dist.device)  # from here on rank 0 works alone: no collectives
    write_summary(study_dir, study, ctx, records, pipeline_seconds=time.perf_counter() - t_start,
                  diverged=diverged)
    if sweeps is not None and sweeps.in_study and sweeps.model in {m.name for m in models}:
        run_sweeps(study_dir, study, ctx, sweeps, log=log)
    return study_dir  # the report stage is the caller's (genbench.cli): studies sit below report
