"""Diffusion-family sampler sweeps: quality vs network evaluations (NFE) and vs guidance scale, for every
diffusion (DDPM), flow-matching and shortcut model the sweep names.

A study file may hold a ``sweeps`` section (values per profile like everywhere else)::

    sweeps:
      models: [ddpm, flow]            # diffusion-family models of the study (or `model: ddpm` for one)
      in_study: {smoke: true, quick: false, full: true}   # run inside `genbench run` (else `genbench sweep`)
      n: {smoke: 8, quick: 200, full: 1000}               # images per setting (the same N for every setting)
      n_inception: {smoke: 8, quick: 200, full: 1000}     # of those, how many get Inception features
      samplers: {ddim: [10, 20, 50, 100], dpm_solver: [10, 20, 50, 100], euler: [5, 10, 20, 50], heun: [5, 10, 25]}
      reference: [{sampler: ddpm, steps: 1000}, {sampler: heun, steps: 100}]   # one per family (or one mapping)
      tolerance: 0.10                 # a fast setting is acceptable if its metric <= (1 + tol) * reference
      tolerance_metric: fid_inception # or fd_classifier
      guidance_scales: [0, 1, 1.5, 2, 3, 4]
      guidance_sampler: [{sampler: ddim, steps: 25}, {sampler: heun, steps: 10}]   # default: the model's sampling
      eta: 0.0                        # DDIM stochasticity

Each model takes the samplers, reference and guidance sampler of its family (diffusion: ddpm, ddim,
dpm_solver; flow: euler, heun; shortcut: shortcut, whose default grid 1, 2, 4, 8 steps and reference 128 steps
suit its default max_steps = 128). Every setting samples N images with balanced labels 0..K-1 from the same seed
(so the same x_T: a paired comparison), times the generation after one shared warm-up, and caches the images as
a sample bank under ``<study>/<model>/sweeps/`` keyed by the checkpoint's sha256, so the expensive 1,000-step
reference runs once. Scores: FD on the in-domain classifier's features and Inception FID (each against the test
split, at the setting's N), conditional accuracy (classifier on real data), IS (classifier, one split over the N
images), seconds per 1,000 images and NFE (per step 1, 2 for Heun; x2 under classifier-free guidance).

The result is ``<study>/sweeps.json``: ``models`` holds one block per model (settings, guidance rows, reference,
chosen setting; every row names its ``model``); the top level repeats the first model's block as before, for
readers of a single-model sweep (the report). The chosen setting is the fastest (measured seconds per 1,000
images) whose ``tolerance_metric`` stays within ``tolerance`` of that model's reference; the report's
efficiency criterion uses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from genbench.errors import GenbenchError
from genbench.io import atomic_write_json, sha256_file
from genbench.metrics.classifier import predict
from genbench.metrics.scores import conditional_accuracy, feature_stats, frechet_distance, frechet_distance_to, inception_score
from genbench.sampling.bank import balanced_labels, generate, load_images, save_images
from genbench.families import (
    check_settings, draw, drawer, load_trained, multi_step_families, nfe, sampler_family, step_limit)

METRICS = ("fid_inception", "fd_classifier")


def _family_samplers() -> dict[str, tuple[str, ...]]:
    """{family: its sampler names} for every registered multi-step family."""
    return {n: f.samplers.names for n, f in multi_step_families().items()}


def _all_samplers() -> tuple[str, ...]:
    return tuple(s for names in _family_samplers().values() for s in names)


def _default_samplers() -> dict[str, list]:
    """The default step grid per sampler (each family's ``samplers.sweep_steps``)."""
    return {s: k for f in multi_step_families().values() for s, k in f.samplers.sweep_steps.items()}


def _default_reference(family: str) -> tuple[str, int]:
    return multi_step_families()[family].samplers.reference


def _family(sampler: str) -> str:
    return sampler_family(sampler)


@dataclass(frozen=True)
class SweepConfig:
    """A resolved ``sweeps`` section. Step counts are inference steps; NFE is derived per setting.
    ``model`` is the first of ``models`` (the one the top level of ``sweeps.json`` repeats)."""

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
    models: tuple[str, ...] = ()
    families: tuple[tuple[str, str], ...] = ()  # (model, family)
    references: tuple[tuple[str, int], ...] = ()  # one per family present
    guidance_samplers: tuple[tuple[str, int], ...] = ()

    def family(self, model: str) -> str:
        return dict(self.families)[model]

    def for_family(self, settings: tuple, family: str):
        return next((s for s in settings if _family(s[0]) == family), None)


def _setting(d, where: str) -> tuple[str, int]:
    if not isinstance(d, dict) or not isinstance(d.get("sampler"), str) or not isinstance(d.get("steps"), int):
        raise GenbenchError(f"{where}: expected a mapping {{sampler: <name>, steps: <int>}}, got {d!r}")
    if d["sampler"] not in _all_samplers():
        raise GenbenchError(f"{where}.sampler: unknown sampler {d['sampler']!r}; choose one of "
                            f"{', '.join(_all_samplers())}")
    if d["steps"] < 1:
        raise GenbenchError(f"{where}.steps: must be >= 1, got {d['steps']}")
    return d["sampler"], d["steps"]


def _settings(v, where: str) -> tuple[tuple[str, int], ...]:
    """One setting mapping or a list of them (one per family)."""
    items = v if isinstance(v, list) else [v]
    out = tuple(_setting(d, f"{where}[{i}]" if isinstance(v, list) else where) for i, d in enumerate(items))
    fams = [_family(s) for s, _ in out]
    if len(set(fams)) != len(fams):
        raise GenbenchError(f"{where}: give at most one setting per family ({', '.join(_family_samplers())})")
    return out


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
    names = {m.name: m.family for m in study.models}
    eligible = [n for n, f in names.items() if f in _family_samplers()]
    if "models" in raw and "model" in raw:
        raise GenbenchError(f"{w}: give `models` (a list of model names) or `model` (one), not both")
    key = "models" if "models" in raw else "model"
    chosen = raw.get(key)
    chosen = chosen if isinstance(chosen, list) else [chosen]
    for model in chosen:
        if model not in eligible:
            raise GenbenchError(f"{w}.{key}: {model!r} is not a diffusion or flow model of this study "
                                f"({', '.join(eligible) or 'none'})")
    if not chosen or len(set(chosen)) != len(chosen):
        raise GenbenchError(f"{w}.{key}: expected distinct model names, got {raw.get(key)!r}")
    fams = {names[m] for m in chosen}

    def num(key, typ, default, ok, what):
        v = raw.get(key, default)
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, typ) or isinstance(v, bool) or not ok(v):
            raise GenbenchError(f"{w}.{key}: expected {what}, got {v!r}")
        return v

    n = num("n", int, 200, lambda v: v >= 2, "an integer >= 2")
    n_inc = num("n_inception", int, n, lambda v: 2 <= v <= n, f"an integer in [2, n={n}]")
    samplers = raw.get("samplers", {s: k for s, k in _default_samplers().items() if _family(s) in fams})
    if not isinstance(samplers, dict) or not samplers:
        raise GenbenchError(f"{w}.samplers: expected a mapping sampler -> list of steps")
    sam = []
    for s, steps in samplers.items():
        if s not in _all_samplers():
            raise GenbenchError(f"{w}.samplers: unknown sampler {s!r}; choose among {', '.join(_all_samplers())}")
        if not isinstance(steps, list) or not steps or not all(isinstance(k, int) and k >= 1 for k in steps):
            raise GenbenchError(f"{w}.samplers.{s}: expected a list of positive step counts, got {steps!r}")
        sam.append((s, tuple(steps)))
    default_ref = [{"sampler": _default_reference(f)[0], "steps": _default_reference(f)[1]} for f in sorted(fams)]
    refs = _settings(raw.get("reference", default_ref), f"{w}.reference")
    gsam = raw.get("guidance_sampler")
    gsams = _settings(gsam, f"{w}.guidance_sampler") if gsam is not None else ()
    for m in chosen:
        f = names[m]
        if not any(_family(s) == f for s, _ in sam):
            raise GenbenchError(f"{w}.samplers: none for {f} model {m!r}; add one of {', '.join(_family_samplers()[f])}")
        if not any(_family(s) == f for s, _ in refs):
            raise GenbenchError(f"{w}.reference: none for {f} model {m!r}; add {{sampler: <one of "
                                f"{', '.join(_family_samplers()[f])}>, steps: <int>}}")
    gs = raw.get("guidance_scales", [0, 1, 1.5, 2, 3, 4])
    if not isinstance(gs, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                           for v in gs):
        raise GenbenchError(f"{w}.guidance_scales: expected a list of numbers >= 0, got {gs!r}")
    metric = raw.get("tolerance_metric", "fid_inception")
    if metric not in METRICS:
        raise GenbenchError(f"{w}.tolerance_metric: {metric!r}; choose one of {', '.join(METRICS)}")
    first = names[chosen[0]]
    return SweepConfig(
        model=chosen[0], in_study=bool(raw.get("in_study", False)), n=n, n_inception=n_inc, samplers=tuple(sam),
        reference=next(r for r in refs if _family(r[0]) == first),
        tolerance=num("tolerance", float, 0.10, lambda v: v >= 0, "a number >= 0"),
        tolerance_metric=metric, guidance_scales=tuple(float(v) for v in gs),
        guidance_sampler=next((g for g in gsams if _family(g[0]) == first), None),
        eta=num("eta", float, 0.0, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        batch=num("batch", int, study.evaluation.sample_batch, lambda v: v >= 1, "an integer >= 1"),
        models=tuple(chosen), families=tuple((m, names[m]) for m in chosen), references=refs,
        guidance_samplers=gsams)


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
    settings = {k: key[k] for k in ("sampler", "steps", "guidance_scale", "eta")}
    log(f"[sweep] {run_dir.name} {name}: {n} images, {key['nfe']} NFE per image")
    images, secs = generate(model, n, seed=seed, precision=precision, batch=batch, labels=labels, warmup=False,
                            draw=drawer(settings))
    save_images(path, man_path, images, labels, seed=seed, manifest={**want, "seconds_per_1000": secs})
    return images, labels, secs, False


def _score(ctx, images: torch.Tensor, labels: torch.Tensor, n_inception: int) -> dict:
    probs, feats = predict(ctx.classifier, images)
    k = ctx.test.num_classes
    ca = conditional_accuracy(probs.argmax(1), labels.numpy(), k)
    mu, sigma, _ = ctx.inception_reference(n_inception)
    fi = ctx.inception(images[:n_inception], log=lambda *_: None)
    return {"fd_classifier": frechet_distance(*feature_stats(feats), *ctx.classifier_reference()),
            "fid_inception": frechet_distance_to(fi, mu, sigma),  # n x n, no 2048-d decomposition
            "conditional_accuracy": ca["overall"], "is": inception_score(probs, 1)[0]}  # one split: N is small


def _sweep_one(study_dir: Path, study, ctx, cfg: SweepConfig, name: str, log) -> dict:
    """The sweep block of one model (see the module notes)."""
    run_dir = Path(study_dir) / name
    if not (run_dir / "checkpoints" / "last.pt").exists():
        raise GenbenchError(f"no trained {name} in {run_dir}; run `genbench run` (or train {name}) first")
    model, ck = load_trained(run_dir)
    ck_sha = sha256_file(run_dir / "checkpoints" / "last.pt")  # once: every setting's cache is keyed on it
    mcfg = next(m for m in study.models if m.name == name)
    family, precision = cfg.family(name), mcfg.precision
    T = step_limit(family, model)  # the DDPM's T, a shortcut model's max_steps
    own = mcfg.sampling or check_settings(None, family, timesteps=T)
    w0 = own["guidance_scale"]

    def settings(sampler: str, steps: int, w: float) -> dict:  # validated: refuses e.g. DDIM steps not dividing T
        return check_settings({"sampler": sampler, "steps": steps, "guidance_scale": w,
                               "eta": cfg.eta if sampler == "ddim" else 0.0}, family, timesteps=T,
                              where=f"sweeps ({name})")

    nfe_settings = [(s, k) for s, steps in cfg.samplers if _family(s) == family for k in steps]
    ref = cfg.for_family(cfg.references, family)
    gsam = cfg.for_family(cfg.guidance_samplers, family) or (own["sampler"], own["steps"])
    for s, k in nfe_settings + [ref, gsam]:  # check every setting before spending time on any of them
        settings(s, k, w0)
    with torch.inference_mode():  # one shared warm-up (not timed), so no setting pays first-call costs
        draw(model, 4, y=torch.arange(4) % model.num_classes if model.num_classes else None,
             generator=torch.Generator().manual_seed(0), settings=settings(*gsam, w0))

    def one(sampler: str, steps: int, w: float) -> dict:
        st = settings(sampler, steps, w)
        key = {**st, "nfe": nfe(model, st)}
        images, labels, secs, cached = _bank(run_dir, model, key, cfg.n, study.seed, precision, cfg.batch, ck_sha,
                                             log)
        rec = {"model": name, **key, "n": cfg.n, "n_inception": cfg.n_inception, "seconds_per_1000": secs,
               "timing": "cached bank (measured when it was made)" if cached else "measured in this run",
               **_score(ctx, images, labels, cfg.n_inception)}
        log(f"[sweep] {name} {sampler}-{key['steps']} w={w:g}: FID {rec['fid_inception']:.2f} FD-clf "
            f"{rec['fd_classifier']:.2f} acc {rec['conditional_accuracy']:.3f} {secs:.1f} s/1000")
        return rec

    reference = one(*ref, w0)
    reference["is_reference"] = True
    rest = [one(s, k, w0) for s, k in nfe_settings
            if (s, settings(s, k, w0)["steps"]) != (reference["sampler"], reference["steps"])]
    settings_rows = [reference] + rest
    guidance = [one(*gsam, w) for w in cfg.guidance_scales]
    limit = reference[cfg.tolerance_metric] * (1 + cfg.tolerance)
    ok = [r for r in settings_rows if r[cfg.tolerance_metric] <= limit]
    chosen = min(ok, key=lambda r: r["seconds_per_1000"])  # the reference itself always qualifies
    log(f"[sweep] {name} chosen: {chosen['sampler']}-{chosen['steps']} ({chosen['nfe']} NFE, "
        f"{chosen['seconds_per_1000']:.1f} s/1000) within {cfg.tolerance:.0%} of the reference "
        f"{cfg.tolerance_metric}")
    return {"model": name, "family": family, "precision": precision, "guidance_scale": w0,
            "reference": {"sampler": reference["sampler"], "steps": reference["steps"]},
            "limit": limit,
            "chosen": {k: chosen[k] for k in ("sampler", "steps", "nfe", "guidance_scale", "eta",
                                              "seconds_per_1000", cfg.tolerance_metric)},
            "settings": settings_rows, "guidance": guidance,
            "guidance_sampler": {"sampler": gsam[0], "steps": gsam[1]}, "checkpoint_epoch": ck["epoch"]}


def run_sweeps(study_dir: Path, study, ctx, cfg: SweepConfig, log=print) -> dict:
    """Run the NFE and guidance sweeps of ``cfg`` on each trained model it names (``study_dir/<model>``).

    Writes ``<study_dir>/sweeps.json`` (atomically) and returns its content.

    Raises:
        GenbenchError: a model has not been trained, or a setting is invalid (e.g. DDIM steps not dividing T).
    """
    from genbench.studies.config import provenance

    t0 = time.perf_counter()
    models = cfg.models or (cfg.model,)
    blocks = {name: _sweep_one(study_dir, study, ctx, cfg, name, log) for name in models}
    common = {"n": cfg.n, "n_inception": cfg.n_inception, "seed": study.seed, "tolerance": cfg.tolerance,
              "tolerance_metric": cfg.tolerance_metric,
              "extractors": {"fid_inception": ctx.inception.key(),
                             "classifier": f"{ctx.test.name} classifier (test acc "
                                           f"{ctx.classifier_info['test_accuracy']:.4f})"},
              "notes": f"every setting: N={cfg.n} images, balanced labels, seed {study.seed} (same x_T per model); "
                       f"FID against the study's random test reference (the first {cfg.n_inception} of "
                       "reference_indices.npy, seeded and class-stratified); "
                       "FD-classifier against the whole test "
                       "split; seconds per 1,000 images measured after a shared warm-up"}
    result = {**blocks[models[0]], **common, "models": {k: {**b, **common} for k, b in blocks.items()},
              "provenance": provenance(), "seconds": time.perf_counter() - t0}
    atomic_write_json(Path(study_dir) / "sweeps.json", result)
    return result
