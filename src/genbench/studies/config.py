"""Study configuration: YAML files validated into frozen dataclasses, with profiles.

A study file names a dataset, models (kind, params, optimizer, epochs...), evaluation settings and a seed.
Any value may be given per profile as a mapping with keys among ``smoke``, ``quick``, ``full``::

    epochs: {smoke: 1, quick: 10, full: 40}

and is resolved when the file is loaded with a profile. The resolved config is written into every run
folder and checkpoint. Nothing in a config is executed.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genbench.errors import GenbenchError
from genbench.models.registry import MODEL_KINDS
from genbench.runtime.provenance import provenance, to_yaml  # noqa: F401 - re-exported for callers
from genbench.training.loop import DIVERGENCE_DEFAULTS

PROFILES = ("smoke", "quick", "full")
DATASET_INFO = {"mnist": {"image_shape": (1, 28, 28), "num_classes": 10}}
DATASET_INFO.update({"fashion_mnist": {"image_shape": (1, 28, 28), "num_classes": 10},
                     "quickdraw": {"image_shape": (1, 28, 28), "num_classes": None},  # len(data.classes)
                     "cifar10": {"image_shape": (3, 32, 32), "num_classes": 10}})
STUDIES_DIR = Path(__file__).resolve().parent.parent.parent.parent / "studies"


def resolve_profile(obj: Any, profile: str) -> Any:
    """Replace every ``{smoke: a, quick: b, full: c}`` mapping by the value for ``profile``."""
    if isinstance(obj, dict):
        if obj and set(obj) <= set(PROFILES):
            if profile not in obj:
                raise GenbenchError(f"a per-profile value {obj} has no entry for profile {profile!r}")
            return resolve_profile(obj[profile], profile)
        return {k: resolve_profile(v, profile) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve_profile(v, profile) for v in obj]
    return obj


def _folder_name(v: str) -> bool:
    """A study or model name becomes a folder name: letters, digits, ``.``, ``_``, ``-``; not ``.``/``..``."""
    return bool(re.fullmatch(r"[A-Za-z0-9._-]+", v)) and v not in (".", "..")


def _param_names(kind: str) -> list[str]:
    sig = inspect.signature(MODEL_KINDS[kind][0])
    return [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _unknown_params(kind: str, params: dict) -> list:
    """Keys of ``params`` the model class does not take (none if it takes ``**kwargs``)."""
    sig = inspect.signature(MODEL_KINDS[kind][0])
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return []
    return sorted((k for k in params if k not in _param_names(kind)), key=str)


def _get(d: dict, key: str, typ, where: str, default=dataclasses.MISSING, check=None):
    if key not in d:
        if default is dataclasses.MISSING:
            raise GenbenchError(f"{where}: missing field `{key}`")
        return default
    v = d[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        tn = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise GenbenchError(f"{where}.{key}: expected {tn}, got {type(v).__name__} ({v!r})")
    if check is not None and not check(v):
        raise GenbenchError(f"{where}.{key}: value {v!r} is out of range")
    return v


@dataclass(frozen=True)
class ModelConfig:
    """One model of a study, fully resolved."""

    name: str
    kind: str
    params: dict
    optimizer: dict
    epochs: int
    batch_size: int
    seed: int
    precision: str
    dataset: str
    ema_decay: float | None = None
    log_every: int = 50
    train_subset: int | None = None
    threads: int | None = None
    divergence: dict = field(default_factory=lambda: dict(DIVERGENCE_DEFAULTS))
    channels_last: bool = False  # convolution weights (and so activations) in NHWC memory format
    compile: bool = False  # torch.compile the model's sub-networks for training (inductor)
    sampling: dict = field(default_factory=dict)  # diffusion-family sampler settings (see _sampling_field)

    def to_dict(self) -> dict:
        return {"name": self.name, "dataset": self.dataset,
                "model": {"kind": self.kind, "resolved_params": self.params},
                "optimizer": self.optimizer, "epochs": self.epochs, "batch_size": self.batch_size,
                "seed": self.seed, "precision": self.precision, "ema_decay": self.ema_decay,
                "log_every": self.log_every, "train_subset": self.train_subset, "divergence": self.divergence,
                "channels_last": self.channels_last, "compile": self.compile, "sampling": self.sampling}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(name=d["name"], kind=d["model"]["kind"], params=d["model"]["resolved_params"],
                   optimizer=d["optimizer"], epochs=d["epochs"], batch_size=d["batch_size"], seed=d["seed"],
                   precision=d["precision"], dataset=d["dataset"], ema_decay=d.get("ema_decay"),
                   log_every=d.get("log_every", 50), train_subset=d.get("train_subset"),
                   divergence=d.get("divergence") or dict(DIVERGENCE_DEFAULTS),
                   channels_last=d.get("channels_last", False), compile=d.get("compile", False),
                   sampling=d.get("sampling") or {})


# --- model-level `sampling:` (issue 14) -------------------------------------------------------------------------
# Sampler settings are not model parameters: diffusion-family models know no sampler. The field is validated by
# the sampling layer (genbench.sampling.draw.check_settings) and resolved to {sampler, steps, guidance_scale, eta}.
_LEGACY_SAMPLER_PARAMS = ("sampler", "sampler_steps", "guidance_scale")


def _sampling_field(m: dict, kind: str, params: dict, w: str) -> dict:
    """The resolved ``sampling`` of model mapping ``m`` ({} for one-pass models).

    Raises:
        GenbenchError: sampler settings left in ``params`` (moved), given to a one-pass model, or invalid.
    """
    from genbench.sampling.draw import FAMILY_SAMPLERS, check_settings

    family = MODEL_KINDS[kind][1]
    legacy = [k for k in _LEGACY_SAMPLER_PARAMS if k in params] if family in FAMILY_SAMPLERS else []
    if legacy:
        raise GenbenchError(f"{w}.params: {', '.join(legacy)} moved to the model's `sampling:` field "
                            f"(sampler, steps, guidance_scale, eta), e.g. sampling: {{sampler: ddim, steps: 20}}")
    raw = m.get("sampling")
    if family not in FAMILY_SAMPLERS:
        if raw is not None:
            raise GenbenchError(f"{w}.sampling: {kind!r} draws in one pass; sampler settings apply to "
                                f"diffusion and flow models only")
        return {}
    T = params.get("timesteps", 1000)
    return check_settings(raw, family, timesteps=T if isinstance(T, int) and T >= 1 else 1000, where=f"{w}.sampling")


def upgrade_legacy_sampling(raw: dict) -> dict:
    """A copy of a study mapping written before issue 14 (a run folder's ``study.yaml``) with each DDPM's
    ``params.sampler`` / ``sampler_steps`` / ``guidance_scale`` moved into its ``sampling`` field; study files
    a user edits are not upgraded silently (:func:`_sampling_field` names the move)."""
    models = raw.get("models") if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        return raw
    out = {}
    for name, m in models.items():
        params = m.get("params") if isinstance(m, dict) else None
        if isinstance(m, dict) and m.get("kind") == "ddpm" and isinstance(params, dict) and "sampling" not in m:
            moved = {"sampler": "sampler", "sampler_steps": "steps", "guidance_scale": "guidance_scale"}
            sampling = {new: params[old] for old, new in moved.items() if old in params}
            m = {**m, "params": {k: v for k, v in params.items() if k not in moved}, "sampling": sampling}
        out[name] = m
    return {**raw, "models": out}
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    n_samples: int  # images per model for classifier metrics (IS, FD-classifier, modes, conditional accuracy)
    n_inception: int  # images per model for Inception FID (<= n_samples)
    resize: str = "tf1_bilinear"
    inception_precision: str = "bf16"
    classifier_epochs: int = 3
    classifier_min_accuracy: float = 0.99
    is_splits: int = 10
    fid_bootstrap: int = 5  # bootstrap resamples for the Inception FID spread (0 = none)
    n_manifold: int = 1000  # samples for KID / precision / recall / density / coverage on classifier features
    n_memorisation: int = 500  # samples checked against the training set (nearest-neighbour distance)
    cas_steps: int = 300  # CAS classifier optimisation steps (batch 128)
    sample_batch: int = 100  # images per generation batch of the sample bank (CPU: 100 is ~2x faster per
    #                          DDPM image than 500, benchmarks/README.md; a GPU wants larger)


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


def parse_study(raw: dict, profile: str, source: str = "<dict>") -> StudyConfig:
    """Validate a study mapping (already parsed from YAML) for ``profile``.

    Raises:
        GenbenchError: one line naming the bad field and what is expected.
    """
    if profile not in PROFILES:
        raise GenbenchError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if not isinstance(raw, dict):
        raise GenbenchError(f"{source}: a study file must be a YAML mapping")
    where = Path(source).name
    try:
        r = resolve_profile(raw, profile)
    except RecursionError as e:
        raise GenbenchError(f"{where}: nested too deeply (or a YAML alias refers to itself)") from e
    name = _get(r, "name", str, where, check=_folder_name)
    dataset = _get(r, "dataset", str, where)
    if dataset not in DATASET_INFO:
        raise GenbenchError(f"{where}.dataset: unknown dataset {dataset!r}; choose one of "
                            f"{', '.join(DATASET_INFO)}")
    info = DATASET_INFO[dataset]
    seed = _get(r, "seed", int, where, 42)
    batch_size = _get(r, "batch_size", int, where, 128, lambda v: v > 0)
    precision = _get(r, "precision", str, where, "bf16", lambda v: v in ("bf16", "fp32"))
    train_subset = _get(r, "train_subset", (int, type(None)), where, None, lambda v: v is None or v >= 1)
    threads = _get(r, "threads", (int, type(None)), where, None, lambda v: v is None or v >= 1)
    log_every = _get(r, "log_every", int, where, 50, lambda v: v > 0)
    channels_last = _get(r, "channels_last", bool, where, False)  # study-wide defaults of the speed switches
    compile_ = _get(r, "compile", bool, where, False)
    models_raw = _get(r, "models", dict, where)
    models = []
    for mname, m in models_raw.items():
        w = f"{where}.models.{mname}"
        if not (isinstance(mname, str) and _folder_name(mname)):
            raise GenbenchError(f"{w}: a model name must be letters, digits, '.', '_' or '-' (it names a folder)")
        if not isinstance(m, dict):
            raise GenbenchError(f"{w}: expected a mapping")
        kind = _get(m, "kind", str, w)
        if kind not in MODEL_KINDS:
            raise GenbenchError(f"{w}.kind: unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
        params = dict(_get(m, "params", dict, w, {}))
        sampling = _sampling_field(m, kind, params, w)
        bad = _unknown_params(kind, params)
        if bad:
            raise GenbenchError(f"{w}.params: {kind!r} takes no parameter(s) {', '.join(map(repr, bad))}; "
                                f"it takes {', '.join(_param_names(kind))}")
        if kind in ("gan", "cgan", "ddpm", "flow"):
            params.setdefault("image_shape", list(info["image_shape"]))
        if kind == "cgan":
            params.setdefault("num_classes", info["num_classes"])
        opt = dict(_get(m, "optimizer", dict, w, {}))
        _get(opt, "lr", float, f"{w}.optimizer", check=lambda v: 0 < v < 1)
        opt["fused"] = _get(opt, "fused", bool, f"{w}.optimizer", True)  # recorded in the run's config
        div = dict(_get(m, "divergence", dict, w, {}))
        unknown = set(div) - set(DIVERGENCE_DEFAULTS)
        if unknown:
            raise GenbenchError(f"{w}.divergence: unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
                                f"allowed: {', '.join(DIVERGENCE_DEFAULTS)}")
        div = {"max_retries": _get(div, "max_retries", int, f"{w}.divergence", 3, lambda v: v >= 0),
               "lr_factor": _get(div, "lr_factor", float, f"{w}.divergence", 0.5, lambda v: 0 < v < 1)}
        models.append(ModelConfig(
            name=mname, kind=kind, params=params, optimizer=opt,
            epochs=_get(m, "epochs", int, w, check=lambda v: v >= 1),
            batch_size=_get(m, "batch_size", int, w, batch_size, lambda v: v > 0), seed=seed,
            precision=_get(m, "precision", str, w, precision, lambda v: v in ("bf16", "fp32")),
            dataset=dataset, ema_decay=_get(m, "ema_decay", (float, type(None)), w, None,
                                             lambda v: v is None or 0 <= v < 1),
            log_every=_get(m, "log_every", int, w, log_every, lambda v: v > 0), train_subset=train_subset,
            threads=threads, divergence=div,
            channels_last=_get(m, "channels_last", bool, w, channels_last),
            compile=_get(m, "compile", bool, w, compile_), sampling=sampling))
    e = _get(r, "evaluation", dict, where, {})
    we = f"{where}.evaluation"
    ev = EvalConfig(
        n_samples=_get(e, "n_samples", int, we, 2000, lambda v: v >= 20),
        n_inception=_get(e, "n_inception", int, we, 500, lambda v: v >= 2),
        resize=_get(e, "resize", str, we, "tf1_bilinear", lambda v: v in ("tf1_bilinear", "torch_bilinear")),
        inception_precision=_get(e, "inception_precision", str, we, "bf16", lambda v: v in ("bf16", "fp32")),
        classifier_epochs=_get(e, "classifier_epochs", int, we, 3, lambda v: v >= 1),
        classifier_min_accuracy=_get(e, "classifier_min_accuracy", float, we, 0.99, lambda v: 0 <= v <= 1),
        is_splits=_get(e, "is_splits", int, we, 10, lambda v: v >= 1),
        fid_bootstrap=_get(e, "fid_bootstrap", int, we, 5, lambda v: v >= 0),
        n_manifold=_get(e, "n_manifold", int, we, 1000, lambda v: v >= 10),
        n_memorisation=_get(e, "n_memorisation", int, we, 500, lambda v: v >= 1),
        cas_steps=_get(e, "cas_steps", int, we, 300, lambda v: v >= 1),
        sample_batch=_get(e, "sample_batch", int, we, 100, lambda v: v >= 1),
    )
    if ev.n_inception > ev.n_samples:
        raise GenbenchError(f"{we}.n_inception ({ev.n_inception}) must not exceed n_samples ({ev.n_samples})")
    return StudyConfig(name=name, dataset=dataset, profile=profile, seed=seed,
                       holdout=_get(r, "holdout", int, where, 5000, lambda v: v >= 0), models=tuple(models),
                       evaluation=ev, source=str(source), raw=r)


def load_study(path: str | Path, profile: str = "quick") -> StudyConfig:
    """Load a study YAML file (a path, or the name of a bundled study such as ``mnist_four``).

    Raises:
        GenbenchError: the file is missing, unreadable, not UTF-8, not YAML, or fails :func:`parse_study`.
    """
    p = Path(path)
    if not p.exists():
        cand = STUDIES_DIR / f"{path}.yaml"
        if cand.exists():
            p = cand
        else:
            raise GenbenchError(f"study file {path} not found; give a path or one of: "
                                f"{', '.join(sorted(q.stem for q in STUDIES_DIR.glob('*.yaml')))}")
    try:
        text = p.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GenbenchError(f"cannot read study file {p} ({type(e).__name__}); give a UTF-8 YAML file") from e
    try:
        raw = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - YAMLError, or a ValueError from a value such as 2024-13-01
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise GenbenchError(f"{p}: not valid YAML ({first})") from e
    return parse_study(raw, profile, str(p))
