"""``genbench score``: score images made elsewhere (a folder of PNG/JPEG or an ``.npz``) with a study's protocol.

The samples go through exactly the evaluate stage of a study (:func:`genbench.metrics.evaluate.evaluate_images`
with the study's evaluation settings at the chosen profile): the same classifier, the same seeded
class-stratified reference subsets of the test split, the same N, bootstrap spreads, FID-infinity, KID, PRDC,
classifier FD, IS, conditional accuracy and CAS when labels are given, and the real-data floor row
(:func:`genbench.studies.runner.evaluate_real`: the held-out training slice at the same N). The numbers are
therefore comparable with the rows of a ``genbench run`` of that study at that profile (and the same seed).

Which N images are scored: a seeded random subset of the given ones (class-stratified when labelled,
:func:`genbench.metrics.reference.reference_order`, seed = the study's seed), never "the first N files"; the
Inception metrics use the first ``n_inception`` of that subset, which is itself a stratified subset.

Output folder (``--out DIR``)::

    DIR/metrics.json                 the study schema (docs/METRICS.md): the samples' record and the real row
    DIR/<name>/metrics.json          the samples' record
    DIR/<name>/samples/bank.npz      the N scored images (uint8) and labels, + manifest.json (where they came from)
    DIR/reference_indices.npy, DIR/heldout_indices.npy   the subset orders, as in a study folder
    DIR/report/                      written by the caller's report stage (genbench.report.build.build_report)

Scoring a second set into the same ``DIR`` (another ``--name``) adds its row, so one report compares several
sets; a ``DIR`` scored with other settings (reference, N, profile, seed) is refused.

Your own reference (``--reference PATH``, a folder of PNG/JPEG images with optional class sub-folders, or an
``.npz``; the convention of clean-fid's ``make_custom_stats``): the path becomes the protocol study's dataset,
``{kind: folder | npz, path: PATH}`` (:mod:`genbench.data.custom`), so it is split as a study's own images are:
a seeded class-stratified 20% is the test split, the reference of every metric; the rest trains the in-domain
classifier, except its last ``holdout`` images (min(N, half the rest)), never trained on, which are the real-data
floor row. Its reference statistics (Inception features of the reference subset, the classifier and its
features) are computed once and cached under GENBENCH_HOME keyed by the reference's content hash (the dataset's
content name, :func:`genbench.data.base.content_name`) and the protocol (extractor, N, subset indices; the
feature cache's key, :mod:`genbench.metrics.feature_cache`), so scoring against the same folder again reuses
them. ``metrics.json`` records ``scored_with.reference`` (path, content name, split sizes) beside the feature
cache's keys in ``provenance.feature_cache``. The protocol is ``--study``'s evaluation section, or
:data:`OWN_REFERENCE_PROTOCOL`'s with no minimum classifier accuracy (a user's classes may be hard, or one);
N (``--n``) and the Inception N are capped by what the reference's splits hold, with one log line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import yaml

from genbench.data.custom import custom_arrays
from genbench.data.images import array_images, read_images
from genbench.data.info import DATASET_NAMES, dataset_info
from genbench.errors import GenbenchError
from genbench.io import atomic_write_json, inside, regular_file
from genbench.metrics.evaluate import evaluate_images
from genbench.metrics.reference import indices_sha256, reference_order
from genbench.runtime.provenance import provenance
from genbench.sampling.bank import save_images
from genbench.studies.catalog import shipped
from genbench.studies.config import StudyConfig, load_study, parse_study
from genbench.studies.schema import MIN_KNN_SAMPLES, folder_name
from genbench.studies import runner
from genbench.studies.runner import evaluate_real, log, make_context, study_lock, write_summary

MIN_N = 20  # the schema's smallest n_samples (evaluation.n_samples)
OWN_REFERENCE_PROTOCOL = "mnist_four"
"""The shipped study whose evaluation settings score against a reference given as a path (unless ``--study``)."""
MIN_CLASSIFIER_TRAIN = 100
"""Training images an own reference must keep for its in-domain classifier after the test split and holdout."""


def reference_source(reference) -> str | dict:
    """``--reference`` as a study's ``dataset:``: a dataset genbench knows, as its name; an existing folder or
    ``.npz`` file, as ``{"kind": "folder" | "npz", "path": <absolute path>}``. A dataset name wins over a folder
    of that name in the working folder (give ``./mnist`` for the folder).

    Raises:
        GenbenchError: neither a known dataset nor an existing folder / regular ``.npz`` file.
    """
    name = os.fspath(reference)
    if not isinstance(reference, os.PathLike) and name in DATASET_NAMES:
        return name
    p = Path(name).expanduser()
    fix = (f"give a dataset genbench knows ({', '.join(DATASET_NAMES)}), a folder of PNG/JPEG images (class "
           f"sub-folders optional) or an .npz with a uint8 array `x`")
    if p.is_dir():
        return {"kind": "folder", "path": str(p.resolve())}
    if p.suffix.lower() == ".npz" and p.exists():
        regular_file(p, "--reference", fix)
        return {"kind": "npz", "path": str(p.resolve())}
    what = "not found" if not p.exists() else "neither a folder nor an .npz file"
    raise GenbenchError(f"--reference {name!r} is not a dataset genbench knows and {what}; {fix}")


def default_study(reference: str) -> str:
    """The shipped study whose dataset is ``reference`` (its evaluation settings are the protocol).

    Raises:
        GenbenchError: ``reference`` is not a dataset genbench knows, or no shipped study uses it.
    """
    if reference not in DATASET_NAMES:
        raise GenbenchError(f"--reference {reference!r} is not a dataset genbench knows; choose one of "
                            f"{', '.join(DATASET_NAMES)}")
    for name, path in shipped().items():
        if (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("dataset") == reference:
            return name
    raise GenbenchError(f"no shipped study uses {reference}; pass --study FILE with `dataset: {reference}`")


def default_name(samples: Path) -> str:
    """The row name of a sample set: its folder or file name when that is a valid name, else ``samples``."""
    stem = Path(samples).stem
    return stem if folder_name(stem) and stem != "real" else "samples"


def score_config(reference, *, study: str | None, profile: str, n: int | None,
                 n_inception: int | None) -> StudyConfig:
    """The study config whose evaluation settings score the samples: the study's, with N (``n_samples``) and
    the Inception N overridden when given (Inception N defaults to min(the profile's ``n_inception``, N)).
    ``reference``: a dataset name, or a folder / ``.npz`` path (:func:`reference_source`; module docstring).

    Raises:
        GenbenchError: unknown reference or profile, the study is of another dataset, N out of range, an own
            reference too small for a test split, a holdout and a classifier.
    """
    source = reference_source(reference)
    own = isinstance(source, dict)
    cfg = load_study(study or (OWN_REFERENCE_PROTOCOL if own else default_study(source)), profile)
    if not own and cfg.dataset != source:
        raise GenbenchError(f"study {cfg.name} is of {cfg.dataset}, not {source}; pass --study with a study of "
                            f"{source} or drop --study")
    raw = dict(cfg.raw)
    ev = dict(cfg.raw.get("evaluation") or {})
    if n is not None:
        if n < MIN_N:
            raise GenbenchError(f"--n {n}: score at least {MIN_N} images (metrics at smaller N mean little)")
        ev["n_samples"] = n
    n_samples = ev.get("n_samples", cfg.evaluation.n_samples)
    ni = n_inception if n_inception is not None else min(cfg.evaluation.n_inception, n_samples)
    if own:
        raw, ni = _own_reference(raw, source, ev, n_samples, ni, given=n_inception is not None,
                                 default_protocol=study is None)
    if not MIN_KNN_SAMPLES <= ni <= n_samples:
        raise GenbenchError(f"--n-inception {ni}: give {MIN_KNN_SAMPLES}..{n_samples} (at most N)")
    ev["n_inception"] = ni
    return parse_study({**raw, "evaluation": ev}, profile, cfg.source)


def _own_reference(raw: dict, source: dict, ev: dict, n_samples: int, ni: int, *, given: bool,
                   default_protocol: bool) -> tuple[dict, int]:
    """The protocol study's raw dict with the reference at ``source`` as its dataset, and the Inception N.

    The holdout (the real-data floor) is min(N, half the training split); the Inception N, unless ``given``, is
    capped by the test split. With the default protocol the classifier must reach no minimum accuracy.

    Raises:
        GenbenchError: the reference's errors (:func:`genbench.data.custom.custom_arrays`), or too few images.
    """
    arrays = custom_arrays(source)
    n_train, n_test = len(arrays["x_train"]), len(arrays["x_test"])
    holdout = min(n_samples, n_train // 2)
    if n_train - holdout < MIN_CLASSIFIER_TRAIN or holdout < MIN_KNN_SAMPLES:
        raise GenbenchError(f"--reference {source['path']}: {n_train + n_test} images leave {n_train} for training "
                            f"and the real-data floor; give a reference of at least "
                            f"{int((2 * max(MIN_CLASSIFIER_TRAIN, MIN_KNN_SAMPLES)) / 0.8) + 1} images (thousands for "
                            f"numbers worth quoting)")
    if given and ni > n_test:
        raise GenbenchError(f"--n-inception {ni} exceeds the {n_test} test images of --reference {source['path']} "
                            f"(a seeded 20% of it); give --n-inception {n_test} or fewer, or a larger reference")
    if not given and ni > n_test:
        log(f"[score] the reference's test split holds {n_test} images: Inception metrics at N = {n_test} "
            f"(not {ni}); a larger reference gives a larger N")
        ni = n_test
    if holdout < n_samples:
        log(f"[score] the reference leaves {holdout} held-out images: the real-data floor row is at N = {holdout} "
            f"(the samples at N = {n_samples})")
    raw = {**raw, "dataset": source, "holdout": holdout}
    for key in ("data", "train_subset", "experiments", "sweeps"):
        raw.pop(key, None)  # the protocol study's own data options and extra stages do not apply
    if default_protocol:
        ev["classifier_min_accuracy"] = 0.0
    return raw, ni


def score_samples(samples, out_dir: Path, *, reference: str, profile: str = "quick", study: str | None = None,
                  n: int | None = None, n_inception: int | None = None, name: str | None = None,
                  labels=None) -> dict:
    """Score the images at ``samples`` against ``reference`` and write ``out_dir`` (module docstring).

    Args:
        samples: a folder of PNG/JPEG images (optional class sub-folders ``0``, ``1``, ...) or an ``.npz``
            (:mod:`genbench.data.images`), or the images themselves: a uint8 numpy array or torch tensor
            (N, C, H, W) (:func:`genbench.data.images.array_images`).
        labels: for images given in memory, their int (N,) class labels, or None (unconditional).
        out_dir: the output folder (created).
        reference: dataset name (``mnist``, ...); its shape must be the images' shape.
        profile: the study profile whose evaluation settings apply.
        study: a study file or shipped name (default: the shipped study of ``reference``).
        n: images scored (default: the profile's ``n_samples``); n_inception: of those, for Inception metrics.
        name: the row's name (default: the folder or file name; ``samples`` for images given in memory).

    Returns:
        the summary written to ``out_dir/metrics.json``.

    Raises:
        GenbenchError: bad input, in one line (see :func:`genbench.data.images.read_images`, :func:`score_config`),
            fewer images than N, labels outside the reference's classes, a shape other than the reference's,
            an ``out_dir`` scored with other settings.
    """
    t0 = time.perf_counter()
    in_memory = not isinstance(samples, (str, os.PathLike))
    if not in_memory:
        samples = Path(samples)
        if labels is not None:
            raise GenbenchError(f"labels go with images given in memory; {samples} carries its own (class "
                                f"sub-folders, or the .npz's `y`)")
    out_dir = Path(out_dir)
    what = "samples (in memory)" if in_memory else str(samples)
    name = ("samples" if in_memory else default_name(samples)) if name is None else name  # '' is refused
    if not folder_name(name) or name == "real":
        raise GenbenchError(f"--name {name!r}: give 1-100 letters, digits, '.', '_' or '-', not 'real' (the floor row)")
    row_dir = inside(out_dir, out_dir / name, "--name")  # the row's folder; folder_name already refuses paths
    cfg = score_config(reference, study=study, profile=profile, n=n, n_inception=n_inception)
    ev = cfg.evaluation
    info = dataset_info(cfg.dataset_source, classes=cfg.data.get("classes"))
    x, y, source = (array_images(samples, labels, channels=info.image_shape[0]) if in_memory
                     else read_images(samples, channels=info.image_shape[0]))
    if tuple(x.shape[1:]) != tuple(info.image_shape):
        c, h, w = info.image_shape
        raise GenbenchError(f"{what}: images are {'x'.join(map(str, x.shape[1:]))} (C x H x W), {info.name} "
                            f"images are {c}x{h}x{w}; resize them to {w}x{h} first (genbench does not resize)")
    if y is not None and info.num_classes and int(y.max()) >= info.num_classes:
        raise GenbenchError(f"{what}: label {int(y.max())} is outside {info.name}'s classes 0..{info.num_classes - 1}"
                            f"; fix the labels (class sub-folder names) or give unlabelled images")
    if len(x) < ev.n_samples:
        raise GenbenchError(f"{what} holds {len(x)} images, fewer than N = {ev.n_samples} (profile {profile}); "
                            f"pass --n {len(x)} or fewer (and compare only with numbers at the same N)")
    idx = reference_order(y, len(x), cfg.seed)[:ev.n_samples]  # seeded (stratified) subset, not the first N files
    images, labels = x[idx], (y[idx] if y is not None else None)
    splits = runner.prepare_data(cfg)  # through the module: tests stub the data stage there
    ref = _reference_record(cfg, splits)
    _check_same_settings(out_dir, cfg, ref)
    if ev.n_inception > len(splits["test"]):
        raise GenbenchError(f"--n-inception {ev.n_inception} exceeds {info.name}'s {len(splits['test'])} test images")
    out_dir.mkdir(parents=True, exist_ok=True)
    with study_lock(out_dir):
        ctx = make_context(cfg, splits)
        ctx.out_dir = out_dir  # reference_indices.npy / heldout_indices.npy, as in a study folder
        log(f"[score] {name}: {ev.n_samples} of {len(x)} images from {what} ({source['format']}"
            f"{', labelled' if y is not None else ''}) against {info.name}, profile {profile}")
        metrics = evaluate_images(ctx, images, labels, what=name)
        manifest = {"n": int(ev.n_samples), "seed": cfg.seed, "source": source["path"], "format": source["format"],
                    "n_available": int(len(x)), "subset_indices_sha256": indices_sha256(idx),
                    "selection": ("seeded class-stratified random" if y is not None else "seeded random")
                    + f" subset of the {len(x)} given images (sorted by label, then file name)",
                    "labels": "given" if y is not None else "none (unconditional)", "sampler": "external"}
        save_images(row_dir / "samples" / "bank.npz", row_dir / "samples" / "manifest.json", images,
                    labels, seed=cfg.seed, manifest=manifest)
        record = {"model": name, "kind": "samples", "family": "external", "conditional": labels is not None,
                  "metrics": metrics, "family_metrics": [], "sample_bank": manifest, "seed": cfg.seed,
                  "files": {"bank": f"{name}/samples/bank.npz", "manifest": f"{name}/samples/manifest.json",
                            "metrics": f"{name}/metrics.json"},
                  "provenance": provenance()}
        atomic_write_json(row_dir / "metrics.json", record)
        real = evaluate_real(cfg, splits, ctx)
        scored = dataclasses.replace(cfg, name=f"score-{info.name}", models=())
        return write_summary(out_dir, scored, ctx, [record, real], evaluate_seconds=time.perf_counter() - t0,
                             scored_with={"command": "genbench score", "study": cfg.name, "profile": profile,
                                          "study_file": cfg.source, "reference": ref})


def _reference_record(cfg: StudyConfig, splits: dict) -> dict:
    """What the samples were scored against: the dataset (its content name, which for an own reference carries the
    sha256 of its pixels and labels and keys its cached statistics), its path for an own reference, and the splits'
    sizes."""
    rec = {"dataset": cfg.dataset, "content": splits["test"].name,
           "splits": {k: len(v) for k, v in splits.items()}}
    if cfg.dataset_spec is not None:
        rec.update(path=cfg.dataset_spec["path"], format=cfg.dataset_spec["kind"],
                   test_fraction=cfg.dataset_spec.get("test_fraction", 0.2),
                   split_seed=cfg.dataset_spec.get("split_seed", 0))
    return rec


def _check_same_settings(out_dir: Path, cfg: StudyConfig, ref: dict) -> None:
    """A ``metrics.json`` already in ``out_dir`` must come from the same reference, seed and evaluation settings
    (its rows are kept beside the new one).

    Raises:
        GenbenchError: it does not.
    """
    p = out_dir / "metrics.json"
    if not p.exists():
        return
    regular_file(p, "--out", f"give another --out folder or delete {p}")
    try:
        old = json.loads(p.read_text())
    except (OSError, ValueError):
        old = None
    new_ev = cfg.evaluation.record()
    old_ref = (old.get("scored_with") or {}).get("reference") if isinstance(old, dict) else None
    if not isinstance(old, dict) or old.get("dataset") != cfg.dataset or old.get("seed") != cfg.seed \
            or old.get("evaluation") != new_ev or "scored_with" not in old \
            or (old_ref or {}).get("content", ref["content"]) != ref["content"]:
        raise GenbenchError(f"{out_dir} already holds results made otherwise (another study, reference, N, profile "
                            f"or seed); give another --out folder or delete {p}")

