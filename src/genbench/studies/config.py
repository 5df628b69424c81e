"""Study configuration: the one validated schema for study files, resolved per profile into frozen dataclasses.

A study file names a dataset, its data options, models (kind, params, optimizer, epochs...), evaluation
settings, experiments, sweeps and a seed. Any value may be given per profile as a mapping with keys among
``smoke``, ``quick``, ``full``::

    epochs: {smoke: 1, quick: 10, full: 40}

and is resolved when the file is loaded with a profile. The resolved config is written into every run folder and
checkpoint. Nothing in a config is executed, with one exception the user writes on purpose: a model ``kind``
given as an import path (``mypkg.models:MyVAE``) or entry point imports that module
(:func:`genbench.families.resolve_kind`).

``dataset`` is a built-in dataset's name or a mapping naming the study's own images (``{kind: folder, path: ...,
image_size: 32, channels: 3}`` or ``{kind: npz, path: ...}``, :mod:`genbench.data.custom`); a relative ``path`` is
read from the study file's folder and stored absolute in the resolved config.

The schema is declarative: one table of fields per section (``TOP``, ``MODEL``, ``OPTIMIZER``, ``EVALUATION``,
``SWEEPS``, ``PARAMS``, and each experiment's options from its spec in :mod:`genbench.studies.experiment_spec`; the ``data:`` section's and a ``dataset:`` mapping's fields come
from the dataset's :class:`~genbench.data.DatasetSpec`), each field with its type, default and the range it can work
with, and one validator (:func:`~genbench.studies.schema.validate`) that checks a section against its table
(both in :mod:`genbench.studies.schema`). Every check runs before any
work starts, so a bad value costs a second, not a training run:

- an unknown key is refused with its dotted name, the nearest valid name and the valid keys (a typo such as
  ``modles:`` or ``learning_rate:`` never runs silently with defaults);
- every value is checked against the range it can work with (Adam's betas in [0, 1), a seed in 0..2**63-1,
  positive widths, ``n_inception`` large enough for the k-NN metrics and at most ``n_samples``, sample counts
  at most :data:`MAX_SAMPLES`, so sampling stays finite);
- model parameters are checked against the model class's constructor and, for the common ones, their type and
  range;
- a loaded file is bounded in bytes, YAML nodes and depth before profiles are resolved (a YAML alias bomb is
  refused in one line instead of filling the memory).

Dataset geometry and class count are filled in ONCE here for every model kind from
the dataset's registered spec (:func:`genbench.data.dataset_info`), so ``genbench train vae --study cifar10_vae_dcgan`` builds a 3x32x32
model. The split sizes (``holdout`` against the training split) can only be checked once the data is loaded:
:func:`check_split_sizes`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from genbench.data import dataset_info
from genbench.errors import GenbenchError
from genbench.io import regular_file
from genbench.metrics.file_extractor import FileExtractorConfig, check_file
from genbench.runtime.device import resolve_precision
from genbench.runtime.provenance import provenance, to_yaml  # noqa: F401 - re-exported for callers
from genbench.studies.catalog import resolve_study, studies_dir
from genbench.studies.schema import (  # noqa: F401 - constants and resolve_profile re-exported for callers
    DIVERGENCE, EVALUATION, EXTRACTOR, MAX_SAMPLES, MAX_SEED,
    MAX_STUDY_BYTES, MAX_STUDY_DEPTH, MAX_STUDY_NODES, MIN_KNN_SAMPLES, MODEL, NAME_RULE, OPTIMIZER, PARAMS,
    PROFILES, SELECT, SWEEPS, TOP, Field, check_size, check_value, dataset_fields, folder_name,
    resolve_profile, short, validate)
from genbench.studies.experiment_spec import experiment_names, get_experiment
from genbench.studies.overrides import apply_overrides, blame
from genbench.studies.model_config import ModelConfig, parse_model, upgrade_legacy_sampling  # noqa: F401
STUDIES_DIR = studies_dir()  # the shipped study files (genbench/studies/files), see studies/catalog.py

# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    n_samples: int  # images per model for classifier metrics (IS, FD-classifier, modes, conditional accuracy)
    n_inception: int  # images per model for Inception FID (<= n_samples)
    resize: str = "tf1_bilinear"
    inception_precision: str = "auto"  # auto | bf16 | fp32 resolved when a study is parsed; int8: NNCF-quantized
    # OpenVINO model (genbench.metrics.inception_int8), not the default: see docs/METRICS.md
    inception_backend: str = "auto"  # auto | torch | openvino (genbench.metrics.inception: auto = openvino on CPU)
    classifier_epochs: int = 3
    classifier_min_accuracy: float = 0.99
    is_splits: int = 10
    fid_bootstrap: int = 5  # bootstrap resamples for the Inception FID spread (0 = none)
    n_manifold: int = 1000  # samples for KID / precision / recall / density / coverage on classifier features
    n_memorisation: int = 500  # samples checked against the training set (nearest-neighbour distance)
    cas_steps: int = 300  # CAS classifier optimisation steps (batch 128)
    cas_n_test: int | None = None  # CAS test images: None = the whole test split, else a seeded stratified subset
    sample_batch: int = 100  # images per generation batch of the sample bank (CPU: 100 is ~2x faster per
    #                          DDPM image than 500, benchmarks/README.md; a GPU wants larger)
    iwae_k: int = 100  # importance samples of the IWAE bound on the test NLL (VAEs)
    n_eval: int = 1000  # test images for the ELBO terms, the IWAE bound and active units (VAEs)
    curve_points: int = 4  # quality-vs-compute curve: snapshots at 1/K..K/K of each model's compute (0 = none)
    curve_n: int = 500  # images sampled per snapshot for the curve's classifier FD (at most n_samples are used)
    extractors: tuple[FileExtractorConfig, ...] = ()  # the study's own feature extractors (metrics/file_extractor.py)

    def record(self) -> dict:
        """The settings as ``metrics.json`` records them: ``extractors`` only where the study names some, so a
        study without them writes the same ``evaluation`` entry as before they existed."""
        out = dataclasses.asdict(self)
        if not out["extractors"]:
            del out["extractors"]
        return out


@dataclass(frozen=True)
class StudyConfig:
    name: str
    dataset: str
    profile: str
    seed: int
    holdout: int
    models: tuple[ModelConfig, ...]
    evaluation: EvalConfig
    source: str = ""
    raw: dict = field(default_factory=dict, compare=False)
    data: dict = field(default_factory=dict)  # the dataset loader's options (``data:``), resolved
    experiments: dict = field(default_factory=dict)  # experiment name -> its options, resolved and checked
    budget: dict | None = None  # the equal-compute budget every model trains under (None: each its own epochs)
    seeds: tuple = ()  # several seeds: one trial per seed (studies/trials.py); () = the single `seed`
    log: tuple = ()  # experiment trackers (genbench.runtime.tracking): tensorboard, mlflow; () = none
    dataset_spec: dict | None = None  # the study's own dataset (folder / npz, path absolute); None = built-in

    @property
    def dataset_source(self) -> str | dict:
        """What :func:`genbench.data.load_dataset` and :func:`genbench.data.dataset_info` take for this study."""
        return self.dataset_spec if self.dataset_spec is not None else self.dataset


# --------------------------------------------------------------------------------------------------------------
# Parsing


def _experiments(exps: dict, where: str, models: tuple[ModelConfig, ...], info) -> dict:
    by_name = {m.name: m for m in models}
    out = {}
    for e, o in validate(exps, {k: Field((dict, type(None)), None) for k in experiment_names()},
                          where).items():
        if e not in exps:
            continue
        w = f"{where}.{e}"
        spec = get_experiment(e)
        o = validate(o or {}, spec.schema, w)
        named = ([o["model"]] if o["model"] is not None else []) + list(o["models"] or [])
        for n in named:
            if n not in by_name:
                raise GenbenchError(f"{w}: no model {short(n)}; models: {', '.join(by_name)}")
            if spec.takes == "vae" and by_name[n].family != "vae":
                raise GenbenchError(f"{w}: {n!r} is a {by_name[n].kind}; this experiment takes VAEs "
                                    f"({', '.join(x for x, m in by_name.items() if m.family == 'vae') or 'none here'})")
        if spec.takes == "conditional":  # (it would fail after all the training)
            for n in named:
                if not by_name[n].params.get("num_classes"):
                    raise GenbenchError(f"{w}: {n!r} is not class-conditional; name a VAE with `conditional: true`")
            if not any(m.family == "vae" and m.params.get("num_classes") for m in models):
                raise GenbenchError(f"{w}: no conditional VAE in the study; add `conditional: true` to one")
        if spec.check is not None:
            spec.check(o, info, w)
        given = exps[e] or {}  # defaults filled in, except the model selection (absent = every suitable model)
        out[e] = {k: v for k, v in o.items() if k in given or (v is not None and k not in SELECT)}
    return out


def parse_study(raw: dict, profile: str, source: str = "<dict>") -> StudyConfig:
    """Validate a study mapping (already parsed from YAML) for ``profile``.

    Raises:
        GenbenchError: one line naming the bad field and what is expected.
    """
    if profile not in PROFILES:
        raise GenbenchError(f"unknown profile {short(profile)}; choose one of {', '.join(PROFILES)}")
    if not isinstance(raw, dict):
        raise GenbenchError(f"{source}: a study file must be a YAML mapping")
    where = Path(source).name
    check_size(raw, where)
    try:
        r = resolve_profile(raw, profile)
    except RecursionError as e:
        raise GenbenchError(f"{where}: nested too deeply (or a YAML alias refers to itself)") from e
    top = validate(r, TOP, where)
    spec = None
    dataset, fields = dataset_fields(top["dataset"], f"{where}.dataset")  # the registered DatasetSpec
    if isinstance(top["dataset"], dict):  # the study's own images (a `folder` / `npz` spec, genbench.data.custom)
        spec = validate(top["dataset"], fields, f"{where}.dataset")
        spec["path"] = _absolute(spec["path"], source)
        r = {**r, "dataset": {**r["dataset"], "path": spec["path"]}}  # the run folder's study.yaml: absolute
        info = dataset_info(spec)
        spec["name"] = info.name
        top["dataset"] = info.name
        if top["data"]:
            raise GenbenchError(f"{where}.data: a study's own dataset takes its options in the `dataset:` mapping "
                                f"({', '.join(fields)}); drop the `data:` section")
        data = {}
    else:
        data = validate(top["data"] or {}, fields, f"{where}.data")
        data = {k: v for k, v in data.items() if k in (top["data"] or {})}  # the loader keeps its own defaults
        info = dataset_info(dataset.name, **data)
    models = tuple(parse_model(n, m, f"{where}.models.{n}" if isinstance(n, str) else f"{where}.models", top, info)
                   for n, m in top["models"].items() if not (isinstance(m, dict) and m.get("enabled") is False))
    if not models:
        raise GenbenchError(f"{where}.models: every model has `enabled: false` in profile {profile}; enable one")
    we = f"{where}.evaluation"
    ev = validate(top["evaluation"] or {}, EVALUATION, we)
    ev["extractors"] = _extractors(ev["extractors"] or [], f"{we}.extractors", source)
    if ev["extractors"]:  # the run folder's study.yaml: absolute paths
        r = {**r, "evaluation": {**r["evaluation"], "extractors": [
            {**e, "path": c.path} for e, c in zip(r["evaluation"]["extractors"], ev["extractors"])]}}
    ev = EvalConfig(**ev)
    if ev.inception_precision != "int8":  # int8 stays as asked: the extractor falls back (one line) without nncf
        ev = dataclasses.replace(ev, inception_precision=resolve_precision(ev.inception_precision))
    if ev.n_inception > ev.n_samples:
        raise GenbenchError(f"{we}.n_inception ({ev.n_inception}) must not exceed n_samples ({ev.n_samples})")
    experiments = _experiments(top["experiments"] or {}, f"{where}.experiments", models, info)
    if top["sweeps"] is not None:
        validate(top["sweeps"], SWEEPS, f"{where}.sweeps")
    budget = parse_budget(top["budget"], f"{where}.budget")
    models = tuple(dataclasses.replace(m, budget=budget, curve_points=ev.curve_points) for m in models)
    seeds = top["seeds"] or []
    if len(set(seeds)) != len(seeds):
        raise GenbenchError(f"{where}.seeds: the seeds must be distinct, got {seeds}")
    return StudyConfig(name=top["name"], dataset=top["dataset"], profile=profile, seed=top["seed"],
                       holdout=top["holdout"], models=models, evaluation=ev, source=str(source), raw=r,
                       data=data, experiments=experiments, budget=budget, seeds=tuple(seeds),
                       log=tuple(dict.fromkeys(top["log"] or ())), dataset_spec=spec)


def _extractors(entries: list, where: str, source: str) -> tuple[FileExtractorConfig, ...]:
    """The ``evaluation.extractors`` entries as configs: each validated against ``EXTRACTOR``, its path made absolute
    (relative to the study file) and its file checked (there, regular, a known format whose runtime is installed;
    the network itself is loaded when the evaluation starts).

    Raises:
        GenbenchError: one line naming the entry (``evaluation.extractors.<name>``) and the fix.
    """
    out, seen = [], set()
    for i, e in enumerate(entries):
        w = f"{where}[{i}]"
        e = validate(e, EXTRACTOR, w)
        w = f"{where}.{e['name']}"
        if e["name"] in seen:
            raise GenbenchError(f"{w}: the name {e['name']!r} is given twice; give each extractor its own name")
        seen.add(e["name"])
        lo, hi = e["range"]
        if not lo < hi:
            raise GenbenchError(f"{w}.range: {e['range']} is empty; give [low, high] with low < high, e.g. [0, 1]")
        for k in ("mean", "std"):
            if e[k] is not None and len(e[k]) not in (1, e["channels"]):
                raise GenbenchError(f"{w}.{k}: {len(e[k])} values for {e['channels']} channels; give 1 or "
                                    f"{e['channels']}")
        cfg = FileExtractorConfig(
            name=e["name"], path=_absolute(e["path"], source), format=e["format"], input_size=e["input_size"],
            channels=e["channels"], value_range=(float(lo), float(hi)),
            mean=None if e["mean"] is None else tuple(float(v) for v in e["mean"]),
            std=None if e["std"] is None else tuple(float(v) for v in e["std"]), resize=e["resize"], batch=e["batch"])
        check_file(cfg, w)
        out.append(cfg)
    return tuple(out)


def _absolute(path: str, source: str) -> str:
    """A custom dataset's ``path``, absolute: a relative one is read from the study file's folder (from the
    working directory when the study did not come from a file)."""
    p = Path(path).expanduser()
    src = Path(source)
    if not p.is_absolute() and source and not source.startswith("<") and src.exists():
        p = src.resolve().parent / p
    return str(p.resolve())


def parse_budget(v, where: str = "--budget") -> dict | None:
    """An equal-compute budget from ``images=N`` / ``flops=F`` / ``seconds=S`` (a string, as on the command line)
    or a mapping ``{images: N}``; None stays None.

    Raises:
        GenbenchError: not one of the three kinds, or not a positive number.
    """
    if v is None:
        return None
    from genbench.training.loop import BUDGET_KINDS

    if isinstance(v, str) and "=" in v:
        k, _, num = v.partition("=")
        try:
            v = {k.strip(): float(num)}
        except ValueError:
            v = {k.strip(): num}
    if not (isinstance(v, dict) and len(v) == 1):
        raise GenbenchError(f"{where}: expected one of images=N, flops=F, seconds=S (e.g. images=4096), got {short(v)}")
    (kind, value), = v.items()
    if kind not in BUDGET_KINDS or isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or value > 1e21:
        raise GenbenchError(f"{where}: expected one of images=N, flops=F, seconds=S with a positive number up to "
                            f"1e21 (e.g. images=4096), got {short(kind)}={short(value)}")
    return {"kind": kind, "value": int(value) if kind != "seconds" else float(value)}


def check_split_sizes(study: StudyConfig, n_train: int, n_holdout: int) -> None:
    """After the data is loaded: the held-out slice must leave every model at least one batch to train on.

    Args:
        n_train, n_holdout: images in the loaded training split (after ``train_subset``) and held-out slice.

    Raises:
        GenbenchError: naming ``holdout`` (when it took the images) or ``batch_size``.
    """
    total = n_train + n_holdout
    for m in study.models:
        if n_train >= m.batch_size:
            continue
        if n_holdout and total >= m.batch_size:  # the held-out slice took the images: blame it, not batch_size
            raise GenbenchError(f"{Path(study.source).name}.holdout: {study.holdout} held-out images leave "
                                f"{n_train} of the {total} training images, fewer than one batch of "
                                f"{m.batch_size} ({m.name}); give holdout at most {total - m.batch_size}")
        raise GenbenchError(f"{Path(study.source).name}.models.{m.name}.batch_size: {m.batch_size} is more than "
                            f"the {n_train} training images; lower batch_size or raise train_subset")


def load_study(path: str | Path, profile: str = "quick", overrides: Iterable[str] = ()) -> StudyConfig:
    """Load a study YAML file (a path, or the name of a bundled study such as ``mnist_four``).

    Args:
        overrides: ``key.path=value`` strings (``--set``, :mod:`genbench.studies.overrides`) applied to the file's
            mapping before it is validated, and recorded in the config's ``raw["overrides"]``.

    Raises:
        GenbenchError: the file is missing, unreadable, too large, not UTF-8, not YAML, or fails
            :func:`parse_study`; an override is malformed or fails the schema (naming the override).
    """
    p = resolve_study(path)  # a path, or a shipped study's name (one line listing them when neither)
    raw = read_study_yaml(p)
    overrides = list(overrides or ())
    if not overrides:
        return parse_study(raw, profile, str(p))
    if profile not in PROFILES:  # before the overrides, which address profiles
        raise GenbenchError(f"unknown profile {short(profile)}; choose one of {', '.join(PROFILES)}")
    try:
        parse_study(raw, profile, str(p))  # the file's own mistakes are not blamed on an override
    except GenbenchError as e:
        raise GenbenchError(f"{e} (before the --set overrides)") from None
    raw = apply_overrides(raw, overrides, profile)
    try:
        return parse_study(raw, profile, str(p))
    except GenbenchError as e:
        raise blame(e, overrides) from None


def load_run_study(spath: Path, profile: str | None = None) -> StudyConfig:
    """The study config a run folder was made with (its ``study.yaml``: the resolved study plus ``profile``),
    optionally under another profile.

    Raises:
        GenbenchError: one line: the file is missing, or damaged (naming it and the command that rewrites it).
    """
    spath = Path(spath)
    if profile is not None and profile not in PROFILES:
        raise GenbenchError(f"unknown profile {short(profile)}; choose one of {', '.join(PROFILES)}")
    if not spath.exists():
        raise GenbenchError(f"{spath} not found: give a study folder written by `genbench run` (runs/<study>)")
    try:
        raw = read_study_yaml(spath)
        if not isinstance(raw, dict):
            raise GenbenchError(f"a {type(raw).__name__}, not a mapping")
        raw = upgrade_legacy_sampling(raw)  # a run folder written before sampler settings left the DDPM's params
        prof = raw.pop("profile", "quick")
        if prof not in PROFILES:
            raise GenbenchError(f"profile {short(prof)}")
        return parse_study(raw, profile or prof, str(spath))
    except GenbenchError as e:
        raise GenbenchError(f"{spath} is damaged ({e}); delete it and rerun `genbench run <study file> --resume` "
                            f"(or `genbench train`) to write it again") from None


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML was built with it (its wheels are): the same Python constructors as
``yaml.safe_load``, ~10x faster to parse. libyaml caps nesting at 1,000 levels (a one-line YAML error); a file
nested less deeply is refused by :func:`~genbench.studies.schema.check_size` (``MAX_STUDY_DEPTH``) instead of
exhausting Python's recursion limit in the pure-Python composer."""


def read_study_yaml(p: Path) -> Any:
    """The parsed YAML of a study file (or a run's ``study.yaml``), bounded to :data:`MAX_STUDY_BYTES`.

    Raises:
        GenbenchError: unreadable, too large, not UTF-8 or not YAML.
    """
    regular_file(p, "study file", "give a UTF-8 YAML file")  # a FIFO or device: refused, not read (it could block)
    try:
        with open(p, "rb") as f:
            blob = f.read(MAX_STUDY_BYTES + 1)
        text = blob.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GenbenchError(f"cannot read study file {p} ({type(e).__name__}); give a UTF-8 YAML file") from e
    if len(blob) > MAX_STUDY_BYTES:
        raise GenbenchError(f"{p}: larger than {MAX_STUDY_BYTES // 1024} KiB; a study file is a few kB")
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)
    except Exception as e:  # noqa: BLE001 - YAMLError, or a ValueError from a value such as 2024-13-01
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise GenbenchError(f"{p}: not valid YAML ({first[:120]})") from e
