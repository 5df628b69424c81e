"""Diffusion sampler sweeps: quality vs network evaluations (NFE) and vs guidance scale.

A study file may hold a ``sweeps`` section (values per profile like everywhere else)::

    sweeps:
      model: ddpm                     # a diffusion model of the study
      in_study: {smoke: true, quick: false, full: true}   # run inside `genbench run` (else `genbench sweep`)
      n: {smoke: 8, quick: 200, full: 1000}               # images per setting (the same N for every setting)
      n_inception: {smoke: 8, quick: 200, full: 1000}     # of those, how many get Inception features
      samplers: {ddim: [10, 20, 50, 100], dpm_solver: [10, 20, 50, 100]}
      reference: {sampler: ddpm, steps: 1000}             # 1,000-step ancestral sampling
      tolerance: 0.10                 # a fast setting is acceptable if its metric <= (1 + tol) * reference
      tolerance_metric: fid_inception # or fd_classifier
      guidance_scales: [0, 1, 1.5, 2, 3, 4]
      guidance_sampler: {sampler: ddim, steps: 25}
      eta: 0.0                        # DDIM stochasticity

Every setting samples N images with balanced labels 0..K-1 from the same seed (so the same x_T: a paired
comparison), times the generation after one shared warm-up, and caches the images as a sample bank under
``<study>/<model>/sweeps/`` keyed by the checkpoint's sha256, so the expensive 1,000-step reference runs once.
Scores: FD on the in-domain classifier's features and Inception FID (each against the test split, at the
setting's N), conditional accuracy (classifier on real data), IS (classifier, one split over the N images),
seconds per 1,000 images and NFE (x2 per step under classifier-free guidance). The result is ``<study>/sweeps.json``; the report draws it.

The chosen setting is the fastest (measured seconds per 1,000 images) whose ``tolerance_metric`` stays within
``tolerance`` of the reference; the report's efficiency criterion for the model uses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from genbench.errors import GenbenchError
from genbench.io import atomic_write_json, sha256_file
from genbench.metrics.classifier import predict
from genbench.metrics.scores import conditional_accuracy, feature_stats, frechet_distance, inception_score
from genbench.sampling.bank import balanced_labels, generate, load_images, save_images
from genbench.sampling.diffusion import SAMPLERS, make_scheduler

METRICS = ("fid_inception", "fd_classifier")


@dataclass(frozen=True)
class SweepConfig:
    """A resolved ``sweeps`` section. Step counts are inference steps; NFE is derived per setting."""

    model: str
    in_study: bool
    n: int
    n_inception: int
    samplers: tuple[tuple[str, tuple[int, ...]], ...]
    reference: tuple[str, int]
    tolerance: float
    tolerance_metric: str
    guidance_scales: tuple[float, ...]
    guidance_sampler: tuple[str, int] | None
    eta: float
    batch: int


def _setting(d, where: str) -> tuple[str, int]:
    if not isinstance(d, dict) or not isinstance(d.get("sampler"), str) or not isinstance(d.get("steps"), int):
        raise GenbenchError(f"{where}: expected a mapping {{sampler: <name>, steps: <int>}}, got {d!r}")
    if d["sampler"] not in SAMPLERS:
        raise GenbenchError(f"{where}.sampler: unknown sampler {d['sampler']!r}; choose one of {', '.join(SAMPLERS)}")
    if d["steps"] < 1:
        raise GenbenchError(f"{where}.steps: must be >= 1, got {d['steps']}")
    return d["sampler"], d["steps"]


def parse_sweeps(study) -> SweepConfig | None:
    """The study's resolved ``sweeps`` section, validated; None if the study has none.

    Raises:
        GenbenchError: one line naming the bad field.
    """
    raw = study.raw.get("sweeps")
    if raw is None:
        return None
    w = f"{Path(study.source).name}.sweeps"
    if not isinstance(raw, dict):
        raise GenbenchError(f"{w}: expected a mapping")
    names = {m.name: m for m in study.models}
    model = raw.get("model")
    if model not in names or names[model].kind != "ddpm":
        raise GenbenchError(f"{w}.model: {model!r} is not a diffusion model of this study "
                            f"({', '.join(n for n, m in names.items() if m.kind == 'ddpm') or 'none'})")

    def num(key, typ, default, ok, what):
        v = raw.get(key, default)
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, typ) or isinstance(v, bool) or not ok(v):
            raise GenbenchError(f"{w}.{key}: expected {what}, got {v!r}")
        return v

    n = num("n", int, 200, lambda v: v >= 2, "an integer >= 2")
    n_inc = num("n_inception", int, n, lambda v: 2 <= v <= n, f"an integer in [2, n={n}]")
    samplers = raw.get("samplers", {"ddim": [10, 20, 50, 100], "dpm_solver": [10, 20, 50, 100]})
    if not isinstance(samplers, dict) or not samplers:
        raise GenbenchError(f"{w}.samplers: expected a mapping sampler -> list of steps")
    sam = []
    for s, steps in samplers.items():
        if s not in SAMPLERS:
            raise GenbenchError(f"{w}.samplers: unknown sampler {s!r}; choose among {', '.join(SAMPLERS)}")
        if not isinstance(steps, list) or not steps or not all(isinstance(k, int) and k >= 1 for k in steps):
            raise GenbenchError(f"{w}.samplers.{s}: expected a list of positive step counts, got {steps!r}")
        sam.append((s, tuple(steps)))
    ref = _setting(raw.get("reference", {"sampler": "ddpm", "steps": 1000}), f"{w}.reference")
    gs = raw.get("guidance_scales", [0, 1, 1.5, 2, 3, 4])
    if not isinstance(gs, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                           for v in gs):
        raise GenbenchError(f"{w}.guidance_scales: expected a list of numbers >= 0, got {gs!r}")
    gsam = raw.get("guidance_sampler")
    metric = raw.get("tolerance_metric", "fid_inception")
    if metric not in METRICS:
        raise GenbenchError(f"{w}.tolerance_metric: {metric!r}; choose one of {', '.join(METRICS)}")
    return SweepConfig(
        model=model, in_study=bool(raw.get("in_study", False)), n=n, n_inception=n_inc, samplers=tuple(sam),
        reference=ref, tolerance=num("tolerance", float, 0.10, lambda v: v >= 0, "a number >= 0"),
        tolerance_metric=metric, guidance_scales=tuple(float(v) for v in gs),
        guidance_sampler=_setting(gsam, f"{w}.guidance_sampler") if gsam is not None else None,
        eta=num("eta", float, 0.0, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        batch=num("batch", int, study.evaluation.sample_batch, lambda v: v >= 1, "an integer >= 1"))


def _bank(run_dir: Path, model, key: dict, n: int, seed: int, precision: str, batch: int, ck_sha: str,
          log) -> tuple:
    """Images for one setting: reuse the cached ones if they were made from this checkpoint (``ck_sha``) with
    these settings, else generate (timed) and save them. Returns (uint8 images, labels, seconds per 1,000,
    cached?)."""
    name = f"{key['sampler']}-{key['steps']}-w{key['guidance_scale']:g}-eta{key['eta']:g}-n{n}"
    path, man_path = run_dir / "sweeps" / f"{name}.npz", run_dir / "sweeps" / f"{name}.json"
    want = {**key, "n": n, "seed": seed, "precision": precision, "batch": batch, "checkpoint_sha256": ck_sha}
    got = load_images(path, man_path, want)
    if got is not None:
        return got[0], got[1], got[2]["seconds_per_1000"], True
    labels = balanced_labels(n, model.num_classes)
    kw = {"sampler": key["sampler"], "steps": key["steps"], "guidance_scale": key["guidance_scale"],
          "eta": key["eta"]}
    log(f"[sweep] {name}: {n} images, {key['nfe']} NFE per image")
    images, secs = generate(model, n, seed=seed, precision=precision, batch=batch, labels=labels, warmup=False,
                            sample_kwargs=kw)
    save_images(path, man_path, images, labels, seed=seed, manifest={**want, "seconds_per_1000": secs})
    return images, labels, secs, False


def _score(ctx, images: torch.Tensor, labels: torch.Tensor, n_inception: int) -> dict:
    probs, feats = predict(ctx.classifier, images)
    k = ctx.test.num_classes
    ca = conditional_accuracy(probs.argmax(1), labels.numpy(), k)
    mu, sigma, _ = ctx.inception_reference(n_inception)
    fi = ctx.inception(images[:n_inception], log=lambda *_: None)
    return {"fd_classifier": frechet_distance(*feature_stats(feats), *ctx.classifier_reference()),
            "fid_inception": frechet_distance(*feature_stats(fi), mu, sigma),
            "conditional_accuracy": ca["overall"], "is": inception_score(probs, 1)[0]}  # one split: N is small


def run_sweeps(study_dir: Path, study, ctx, cfg: SweepConfig, log=print) -> dict:
    """Run the NFE and guidance sweeps of ``cfg`` on the trained model in ``study_dir/<cfg.model>``.

    Writes ``<study_dir>/sweeps.json`` (atomically) and returns its content.

    Raises:
        GenbenchError: the model has not been trained, or a setting is invalid (e.g. DDIM steps not dividing T).
    """
    from genbench.studies.config import provenance
    from genbench.training.loop import load_trained

    t0 = time.perf_counter()
    run_dir = Path(study_dir) / cfg.model
    if not (run_dir / "checkpoints" / "last.pt").exists():
        raise GenbenchError(f"no trained {cfg.model} in {run_dir}; run `genbench run` (or train {cfg.model}) first")
    model, ck = load_trained(run_dir)
    ck_sha = sha256_file(run_dir / "checkpoints" / "last.pt")  # once: every setting's cache is keyed on it
    mcfg = next(m for m in study.models if m.name == cfg.model)
    precision = mcfg.precision
    # check every setting before spending time on any of them
    nfe_settings = [(s, k) for s, steps in cfg.samplers for k in steps]
    for s, k in nfe_settings + [cfg.reference]:
        make_scheduler(model, s, k)
    gsam = cfg.guidance_sampler or (model.sampler, model.sampler_steps)
    make_scheduler(model, *gsam)
    w0 = model.guidance_scale
    # one shared warm-up (not timed), so no setting pays first-call costs
    with torch.inference_mode():
        model.sample(4, y=torch.arange(4) % max(model.num_classes, 1) if model.num_classes else None,
                     generator=torch.Generator().manual_seed(0), sampler="ddim", steps=10)

    def one(sampler: str, steps: int, w: float) -> dict:
        key = {"sampler": sampler, "steps": model.timesteps if sampler == "ddpm" else steps,
               "guidance_scale": float(w), "eta": cfg.eta if sampler == "ddim" else 0.0,
               "nfe": model.nfe(sampler, steps, w)}
        images, labels, secs, cached = _bank(run_dir, model, key, cfg.n, study.seed, precision, cfg.batch, ck_sha,
                                             log)
        rec = {**key, "n": cfg.n, "n_inception": cfg.n_inception, "seconds_per_1000": secs,
               "timing": "cached bank (measured when it was made)" if cached else "measured in this run",
               **_score(ctx, images, labels, cfg.n_inception)}
        log(f"[sweep] {sampler}-{key['steps']} w={w:g}: FID {rec['fid_inception']:.2f} FD-clf "
            f"{rec['fd_classifier']:.2f} acc {rec['conditional_accuracy']:.3f} {secs:.1f} s/1000")
        return rec

    reference = one(*cfg.reference, w0)
    reference["is_reference"] = True
    settings = [reference] + [one(s, k, w0) for s, k in nfe_settings
                              if (s, model.timesteps if s == "ddpm" else k) != (reference["sampler"], reference["steps"])]
    guidance = [one(*gsam, w) for w in cfg.guidance_scales]
    limit = reference[cfg.tolerance_metric] * (1 + cfg.tolerance)
    ok = [r for r in settings if r[cfg.tolerance_metric] <= limit]
    chosen = min(ok, key=lambda r: r["seconds_per_1000"])  # the reference itself always qualifies
    result = {
        "model": cfg.model, "n": cfg.n, "n_inception": cfg.n_inception, "seed": study.seed,
        "precision": precision, "guidance_scale": w0, "reference": {"sampler": reference["sampler"],
                                                                      "steps": reference["steps"]},
        "tolerance": cfg.tolerance, "tolerance_metric": cfg.tolerance_metric, "limit": limit,
        "chosen": {k: chosen[k] for k in ("sampler", "steps", "nfe", "guidance_scale", "eta", "seconds_per_1000",
                                          cfg.tolerance_metric)},
        "settings": settings, "guidance": guidance,
        "guidance_sampler": {"sampler": gsam[0], "steps": gsam[1]},
        "extractors": {"fid_inception": ctx.inception.key(),
                       "classifier": f"{ctx.test.name} classifier (test acc "
                                     f"{ctx.classifier_info['test_accuracy']:.4f})"},
        "notes": f"every setting: N={cfg.n} images, balanced labels, seed {study.seed} (same x_T); FID against the "
                 f"first {cfg.n_inception} test images; FD-classifier against the whole test split; "
                 "seconds per 1,000 images measured after a shared warm-up",
        "checkpoint_epoch": ck["epoch"], "provenance": provenance(), "seconds": time.perf_counter() - t0}
    atomic_write_json(Path(study_dir) / "sweeps.json", result)
    log(f"[sweep] chosen: {chosen['sampler']}-{chosen['steps']} ({chosen['nfe']} NFE, "
        f"{chosen['seconds_per_1000']:.1f} s/1000) within {cfg.tolerance:.0%} of the reference "
        f"{cfg.tolerance_metric}")
    return result
