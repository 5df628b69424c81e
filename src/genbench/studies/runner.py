"""The pieces of the one study pipeline (the stage sequence itself is :mod:`genbench.studies.stages`), for every
study file: data -> train each model -> sample bank per model (saved with its
manifest) -> evaluate (generic metrics on Inception and in-domain classifier features, the real-data floor,
declared family metrics) -> experiments (data only) -> report (rendered from the files by the caller's
``report`` stage, :mod:`genbench.report`, which sits above this layer).

Each stage is a function of (study config, run folder), writes its own files into ``runs/<study>/`` and is
skipped when its output is current (a finished checkpoint, a bank whose manifest names the current checkpoint,
an experiment whose ``result.json`` key matches), so an interrupted ``genbench run`` picks up where it stopped.
A study is *finished* when its report is written (``finished.json``), not when ``metrics.json`` is: a run killed
between the two continues. The whole pipeline holds ``runs/<study>/.study.lock``, so a second ``genbench run`` on
the same folder stops at once instead of repeating the evaluation concurrently.

Every number lands in ``runs/<study>/metrics.json`` (schema: docs/METRICS.md, ``schema_version``
:data:`SCHEMA_VERSION`) with its provenance.

Data-parallel (``torchrun`` / ``accelerate launch``): every rank trains, then every rank takes part in the
evaluation of each run: the bank's generation and the feature extraction are sharded over the ranks and
gathered (:mod:`genbench.runtime.distributed`); rank 0 computes the metrics and alone writes the bank, the
``metrics.json`` files, the experiments, the sweeps and the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import sys
import time
from pathlib import Path

import torch

from genbench.data.info import dataset_info
from genbench.data.registry import Dataset, load_or_fetch
from genbench.errors import GenbenchError
from genbench.io import atomic_write_json, exclusive_lock, inside, own_folder, read_jsonl
from genbench.metrics.classifier import get_classifier
from genbench.metrics.evaluate import EvalContext, classifier_fd, evaluate_images
from genbench.metrics.family import FAMILY_METRICS, family_metrics
from genbench.metrics.stability import stability
from genbench.families import build_model, drawer, get_family, load_snapshot, load_trained, resolve_kind, sampler_info
from genbench.runtime.distributed import Dist, is_main_process, main_first
from genbench.runtime.provenance import provenance
from genbench.sampling.bank import balanced_labels, generate, read_bank, write_bank
from genbench.studies.config import StudyConfig, check_split_sizes, load_run_study
from genbench.studies.sweeps import parse_sweeps
from genbench.runtime.device import get_device
from genbench.training.checkpoint import load_checkpoint
from genbench.training.curve import list_snapshots, save_seconds

SCHEMA_VERSION = 2
"""Version of the ``metrics.json`` schema (docs/METRICS.md). 1: the MNIST four-model schema before the one
pipeline; 2: one schema for every study (dataset facts, family metrics, experiments, merged evaluations)."""


def log(msg: str) -> None:
    if is_main_process():  # data-parallel: one line, from rank 0
        print(msg, file=sys.stderr, flush=True)


def data_options(study: StudyConfig) -> dict:
    """The loader options of the study's ``data:`` section (QuickDraw's class shuffle seeded by the study)."""
    opts = dict(study.data)
    if study.dataset == "quickdraw" and study.dataset_spec is None:
        opts.setdefault("seed", study.seed)
    return opts


def prepare_data(study: StudyConfig) -> dict[str, Dataset]:
    """The data stage: splits ``train`` (cut to ``train_subset``), ``holdout`` and ``test``.

    Raises:
        GenbenchError / AssetError: the dataset is not cached and cannot be fetched (or ``$GENBENCH_OFFLINE``),
            or not found, in one line naming the fix.
    """
    with main_first():  # data-parallel: rank 0 fills the dataset cache before the others read it
        splits = load_or_fetch(study.dataset_source, holdout=study.holdout, log=log, **data_options(study))
    if study.models and study.models[0].train_subset:
        splits["train"] = splits["train"].subset(slice(0, study.models[0].train_subset))
    check_split_sizes(study, len(splits["train"]), len(splits["holdout"]))  # a huge holdout is named as such
    return splits


def class_names(study: StudyConfig) -> list[str]:
    return list(dataset_info(study.dataset_source, classes=study.data.get("classes")).class_names)


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
                settings: dict | None = None, model=None) -> tuple[torch.Tensor, torch.Tensor | None, dict | None]:
    """Reuse the run's bank if it matches the checkpoint, size and sampler ``settings`` (the model's resolved
    ``sampling`` field; empty for one-pass models), else generate and save one.

    Returns (uint8 (N, C, H, W), int64 (N,) labels or None, the bank's manifest). Under DDP (``dist`` active)
    every rank calls it and gets the full images and labels: rank 0 decides whether its bank is reused (and
    sends it to the others), otherwise every rank generates its share of the batches; rank 0 writes the bank
    and the others wait at a barrier. Their manifest is None. ``model``: the run's trained model when the caller
    loaded it already (else it is loaded here if a bank has to be generated).
    """
    dist = dist or Dist()
    n = study.evaluation.n_samples
    settings = settings or None
    got = read_bank(run_dir, settings) if dist.main else None
    reuse = got is not None and got[2]["n"] == n and got[2]["seed"] == study.seed
    if dist.broadcast(reuse):
        images, labels, manifest = dist.broadcast(got)  # ranks > 0 need the images for their shard of features
        return images, (labels if (labels >= 0).all() else None), manifest if dist.main else None
    if model is None:
        model, _ = load_trained(run_dir)
    labels = balanced_labels(n, getattr(model, "num_classes", 0))
    info = sampler_info(model, settings)
    log(f"[sample] {run_dir.name}: {n} images, {info['sampler']} ({info['nfe']} NFE)"
        + (f", sharded over {dist.world} ranks" if dist.active else ""))
    batch = study.evaluation.sample_batch
    images, secs = generate(model, n, seed=study.seed, precision=precision, labels=labels, batch=batch, dist=dist,
                            draw=drawer(settings))
    manifest = None
    if dist.main:
        manifest = write_bank(run_dir, info, images, labels, seed=study.seed, precision=precision,
                              gen_seconds_per_1000=secs, batch=batch, ranks=dist.world, settings=settings)
    dist.barrier()
    return images, labels, manifest


def evaluate_run(run_dir: Path, study: StudyConfig, ctx: EvalContext, mcfg) -> dict | None:
    """Generate (or reuse the bank) and score one trained run: the generic metrics, stability, efficiency and
    every family metric declared for its family (:data:`genbench.metrics.family.FAMILY_METRICS`); writes
    ``<run>/metrics.json``. Under DDP every rank calls it (sharded generation and features); rank 0 writes and
    returns the record, the others None."""
    model, ck = load_trained(run_dir)  # read once: the bank (if generated), the family metrics and the record
    images, labels, manifest = sample_bank(run_dir, study, mcfg.precision, ctx.dist, mcfg.sampling, model=model)
    metrics = evaluate_images(ctx, images, labels, what=run_dir.name)
    curve = evaluate_curve(run_dir, study, ctx, mcfg, images)
    if metrics is None:  # a data-parallel rank > 0: its part (generation, features) is done
        return None
    family = mcfg.family
    spec = get_family(family)
    hist = read_jsonl(run_dir / "history.jsonl")
    metrics["stability"] = {"value": None, **stability(hist, spec.stability_keys)}
    metrics["stability"]["value"] = metrics["stability"]["score"]
    params = sum(p.numel() for p in model.parameters())
    metrics["efficiency"] = {
        "train_seconds": ck["train_seconds"], "epochs": ck["epoch"], "steps": ck["step"],
        "images_seen": ck["images_seen"], "images_per_second": ck["images_seen"] / max(ck["train_seconds"], 1e-9),
        "seconds_per_step": ck["train_seconds"] / max(ck["step"], 1),
        "gen_seconds_per_1000": manifest["gen_seconds_per_1000"], "sampler": manifest["sampler"],
        "sampler_steps": manifest["steps"], "nfe": manifest["nfe"], "guidance_scale": manifest["guidance_scale"],
        "precision": manifest["precision"], "params": params, "threads": torch.get_num_threads(),
        "flops": ck.get("flops"), "flops_per_step": ck.get("flops_per_step"), "budget": ck.get("budget")}
    t0 = time.perf_counter()
    fam = family_metrics(model, family, ctx.test, study.evaluation, hist, study.seed)
    metrics.update(fam)
    if fam:
        log(f"[evaluate] {run_dir.name}: {', '.join(fam)} ({time.perf_counter() - t0:.1f} s)")
    warn = (fam.get("active_units") or {}).get("collapse_warning")
    if warn:
        log(f"[warning] {run_dir.name}: {warn}")
    record = {"model": mcfg.name, "kind": mcfg.kind, "family": family, "loss_keys": list(spec.loss_keys),
              "conditional": bool(
        getattr(model, "num_classes", 0)), "metrics": metrics, "family_metrics": sorted(fam),
        "sample_bank": manifest, "seed": study.seed, "params": mcfg.params,
        "training": {"epochs": ck["epoch"], "batch_size": mcfg.batch_size, "optimizer": mcfg.optimizer,
                     "precision": mcfg.precision, "ema_decay": mcfg.ema_decay},
        "files": {"config": f"{mcfg.name}/config.yaml", "history": f"{mcfg.name}/history.jsonl",
                  "checkpoint": f"{mcfg.name}/checkpoints/last.pt", "bank": f"{mcfg.name}/samples/bank.npz",
                  "manifest": f"{mcfg.name}/samples/manifest.json", "metrics": f"{mcfg.name}/metrics.json"},
        "provenance": provenance()}
    if curve is not None:
        record["curve"] = curve
    atomic_write_json(run_dir / "metrics.json", record)
    return record


def evaluate_curve(run_dir: Path, study: StudyConfig, ctx: EvalContext, mcfg, bank: torch.Tensor) -> dict | None:
    """The quality-vs-compute curve of one run: the classifier Fréchet distance (:func:`classifier_fd`, against
    the whole test split like the study's ``fd_classifier``) of ``n = min(curve_n, n_samples)`` images drawn from
    each snapshot the training wrote (:mod:`genbench.training.curve`), with the model's own sampler settings, seed
    and batches, in order of compute.

    The snapshot at the checkpoint's own step holds the weights the bank was drawn from (EMA weights when the run
    keeps one), and the bank's first n images are exactly what drawing n images from it gives (balanced labels and
    per-batch seeds are prefixes), so that point reuses ``bank[:n]`` instead of sampling again.

    Under DDP every rank calls it (sharded generation and features); rank 0 gets the record, the others None.
    Returns None (with a log line) when the run wrote no snapshots (``evaluation.curve_points: 0`` or a run trained
    before the curve existed).

    Returns:
        ``{"points": [{k, fraction, steps, epochs, images, flops, seconds, fd_classifier, fd_std, n, source}],
        "target", "n", "weights", "extractor", "reference", "spread", "sampler", "eval_seconds",
        "snapshot_save_seconds"}`` (seconds: training wall seconds at the snapshot, without snapshot writes).
    """
    t0 = time.perf_counter()
    ck = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    points_k = int(ck["config"].get("curve_points") or 0)
    files = list_snapshots(run_dir, points_k) if points_k else []
    if not files:
        if points_k:
            log(f"[curve] {run_dir.name}: no snapshots in {run_dir / 'checkpoints'}; no quality-vs-compute curve")
        return None
    ev = study.evaluation
    n = min(ev.curve_n, ev.n_samples)
    points, meta = [], {}
    for path in files:
        model, meta = load_snapshot(path)
        if meta["step"] == ck["step"] and len(bank) >= n:
            images, source = bank[:n], "bank"
        else:
            model.to(get_device())
            images, _ = generate(model, n, seed=study.seed, precision=mcfg.precision, warmup=False,
                                 labels=balanced_labels(n, getattr(model, "num_classes", 0)), batch=ev.sample_batch,
                                 dist=ctx.dist, draw=drawer(mcfg.sampling or None))
            source = "snapshot"
        fd = classifier_fd(ctx, images)
        if fd is not None:
            points.append({"k": meta["k"], "fraction": meta["fraction"], "steps": meta["step"],
                           "epochs": meta["epoch"], "images": meta["images_seen"], "flops": meta["flops"],
                           "seconds": meta["train_seconds"], "fd_classifier": fd["value"], "fd_std": fd["std"],
                           "n": n, "source": source, "save_seconds": save_seconds(run_dir, meta["k"], meta["step"])})
    if not ctx.dist.main:
        return None
    secs = time.perf_counter() - t0
    log(f"[curve] {run_dir.name}: {len(points)} points, FD " + " -> ".join(f"{p['fd_classifier']:.3g}" for p in points)
        + f" (N={n} each, {secs:.1f} s)")
    return {"points": points, "target": meta["target"], "points_planned": points_k, "n": n,
            "weights": meta["weights"], "extractor": f"{ctx.test.name} classifier penultimate (128-d)",
            "reference": f"whole test split ({len(ctx.test)} images), as fd_classifier", "spread": fd["spread"],
            "sampler": sampler_info(model, mcfg.sampling or None), "eval_seconds": secs,
            "snapshot_save_seconds": sum(p["save_seconds"] or 0.0 for p in points),
            "note": f"FD at N={n} is biased upwards against the study's fd_classifier at N={ev.n_samples}: compare "
                    f"points of the curve with each other"}


def evaluate_real(study: StudyConfig, splits: dict[str, Dataset], ctx: EvalContext) -> dict | None:
    """The real-data floor: the held-out training slice scored exactly like a model's samples (under DDP every
    rank calls it; rank 0 gets the record, the others None). Its features come from the feature cache after the
    first evaluation of the same images with the same extractors (:mod:`genbench.metrics.feature_cache`).

    Raises:
        GenbenchError: the study holds out no images (``holdout: 0``), so there is no floor to score.
    """
    hold = splits["holdout"]
    if len(hold) < 2:
        raise GenbenchError(f"{study.name}: holdout is {len(hold)} images, so there is no real-data floor; set "
                            f"`holdout:` in the study file (e.g. 5000, the last training images, never trained on)")
    n = min(study.evaluation.n_samples, len(hold))
    if n < study.evaluation.n_samples:
        log(f"[evaluate] warning: holdout has {len(hold)} images < n_samples; the real floor uses N={n}")
    idx = torch.as_tensor(ctx.heldout_indices(hold, n))  # seeded stratified random subset, not the first n
    metrics = evaluate_images(ctx, hold.x[idx], hold.y[idx], what="real (held-out train slice)",
                              source=("holdout", idx.numpy()))  # real images: their features come from the cache
    if metrics is None:
        return None
    return {"model": "real", "kind": "real", "family": "real", "conditional": True, "metrics": metrics,
            "family_metrics": [],
            "sample_bank": {"n": n, "source": f"last {len(hold)} images of the training split, never trained on",
                            "subset": ctx.heldout_record(idx.numpy())}}


def write_summary(study_dir: Path, study: StudyConfig, ctx: EvalContext, records: list[dict], *,
                  experiments: dict | None = None, **timings) -> dict:
    """Write the study's ``metrics.json`` (atomically; schema docs/METRICS.md): every model's record plus the
    real-data floor, the dataset facts, the classifier, the evaluation settings, the experiments, provenance (with
    ``feature_cache``: which features of real images this process read from the feature cache, which it computed)
    and the given timings (seconds). Records of models not in ``records`` are kept from an earlier ``metrics.json``
    of the same study (``genbench evaluate`` on some of its models merges), as are its experiments."""
    old = _read_summary(study_dir)
    new_names = {r["model"] for r in records}
    kept = [r for r in (old or {}).get("models", []) if r.get("model") not in new_names] \
        if old and old.get("schema_version") == SCHEMA_VERSION else []
    order = [m.name for m in study.models]  # the study's models, then any others (scored sample sets), then real
    merged = sorted(kept + records, key=lambda r: len(order) + 1 if r["model"] == "real" else
                    order.index(r["model"]) if r["model"] in order else len(order))
    info = dataset_info(study.dataset_source, classes=study.data.get("classes"))
    summary = {"schema_version": SCHEMA_VERSION, "study": study.name, "dataset": study.dataset,
               "dataset_info": {**dataclasses.asdict(info), "train": len(ctx.train), "test": len(ctx.test),
                                "holdout": study.holdout, "options": study.dataset_spec or study.data},
               "profile": study.profile, "seed": study.seed,
               "classifier": ctx.classifier_info, "evaluation": study.evaluation.record(),
               "family_metrics": {fm.name: {"families": list(fm.families), "doc": fm.doc} for fm in FAMILY_METRICS},
               "models": merged,
               "experiments": experiments if experiments is not None else (old or {}).get("experiments", {}),
               "provenance": {**provenance(), **({"overrides": list(study.raw["overrides"])}
                                                if study.raw.get("overrides") else {})}, **timings}
    if hasattr(ctx, "feature_cache"):  # which features of real images came from the feature cache
        summary["provenance"]["feature_cache"] = ctx.feature_cache.record()
    if ctx._inception is not None:
        summary["inception_seconds_per_image"] = ctx.inception.seconds / max(ctx.inception.images, 1)
    atomic_write_json(study_dir / "metrics.json", summary)
    return summary


def _read_summary(study_dir: Path) -> dict | None:
    p = Path(study_dir) / "metrics.json"
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):  # a FIFO there must not block: treated as unreadable
            return None
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def load_study_dir(study_dir: Path, profile: str | None = None) -> StudyConfig:
    """The study config a run folder was made with (its ``study.yaml``), optionally under another profile.

    Raises:
        GenbenchError: the folder holds no ``study.yaml``.
    """
    return load_run_study(Path(study_dir) / "study.yaml", profile)  # one line for a missing or damaged file


def _diverged_status(run_dir: Path) -> dict | None:
    """The run's ``status.json`` if training stopped because it diverged (see :mod:`genbench.training.loop`)."""
    p = run_dir / "status.json"
    try:
        st = json.loads(p.read_text()) if p.exists() else None
    except (OSError, ValueError):
        return None
    return st if isinstance(st, dict) and st.get("status") == "diverged" else None


@contextlib.contextmanager
def study_lock(study_dir: Path):
    """Hold an exclusive lock on ``study_dir/.study.lock`` for the whole pipeline (rank 0 only under DDP).

    Raises:
        GenbenchError: another process is running this study.
    """
    if not is_main_process():
        yield
        return
    with exclusive_lock(study_dir / ".study.lock", f"another genbench process is running the study in "
                        f"{study_dir}; wait for it to finish (or stop it), then run again"):
        yield


STUDY_MARKERS = ("study.yaml", ".study.lock", "metrics.json", "finished.json")
"""Files genbench writes in a study folder first: a folder holding none of them (and anything else) is not one."""
RUN_MARKERS = ("config.yaml", "checkpoints", ".lock")
"""The same for a model's run folder (``genbench train --out``, ``runs/<study>/<model>``)."""


def check_run_folder(run_dir: Path, what: str) -> Path:
    """A run folder genbench may train into and delete its own files in (``--overwrite``, temp files): absent,
    empty or a genbench run folder, whose ``checkpoints`` and ``samples`` do not lead out through a symlink.

    Raises:
        GenbenchError: one line naming the folder and the fix.
    """
    return own_folder(run_dir, RUN_MARKERS, what, subfolders=("checkpoints", "samples"))


def check_study_folders(study: StudyConfig, out_root: Path) -> Path:
    """The study folder ``out_root/<study.name>`` and its model folders, checked before anything is written or
    deleted there: inside ``out_root``, genbench's own (:func:`check_run_folder`). Returns the study folder.

    Raises:
        GenbenchError: one line naming the folder and the fix.
    """
    study_dir = inside(out_root, Path(out_root) / study.name, "study name")
    own_folder(study_dir, STUDY_MARKERS, "the study folder")
    for m in study.models:
        check_run_folder(inside(study_dir, study_dir / m.name, "model name"), f"the run folder of {m.name}")
    return study_dir


def is_finished(study_dir: Path) -> bool:
    """A study is finished once its report is written (``finished.json``), not when ``metrics.json`` is."""
    return (Path(study_dir) / "finished.json").exists()


def check_study(study: StudyConfig):
    """Checks that need the whole study, done before any work (sweeps, DDIM step counts, the instance attributes
    of outside models: each is built once). Returns the parsed sweeps (:func:`parse_sweeps`; None without).

    Raises:
        GenbenchError: one line naming the field.
    """
    sweeps = parse_sweeps(study)  # sampler settings (DDIM steps dividing T, ...) were checked with the schema
    for m in study.models:  # an outside model's class was checked on load; its instance (num_classes...) here
        if resolve_kind(m.kind).external:
            build_model(m.kind, m.params)
    return sweeps
