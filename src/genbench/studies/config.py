"""Study configuration: the one validated schema for study files, resolved per profile into frozen dataclasses.

A study file names a dataset, its data options, models (kind, params, optimizer, epochs...), evaluation
settings, experiments, sweeps and a seed. Any value may be given per profile as a mapping with keys among
``smoke``, ``quick``, ``full``::

    epochs: {smoke: 1, quick: 10, full: 40}

and is resolved when the file is loaded with a profile. The resolved config is written into every run folder and
checkpoint. Nothing in a config is executed.

The schema is declarative: one table of fields per section (``TOP``, ``MODEL``, ``OPTIMIZER``, ``EVALUATION``,
``DATA``, ``EXPERIMENTS``, ``SWEEPS``, ``PARAMS``), each field with its type, default and the range it can work
with, and one validator (:func:`_validate`) that checks a section against its table. Every check runs before any
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
:func:`genbench.data.info.dataset_info`, so ``genbench train vae --study cifar10_vae_dcgan`` builds a 3x32x32
model. The split sizes (``holdout`` against the training split) can only be checked once the data is loaded:
:func:`check_split_sizes`.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from genbench.data.info import DATASET_NAMES, dataset_info
from genbench.errors import GenbenchError
from genbench.models.registry import MODEL_KINDS
from genbench.models.vae import ENCODERS, LIKELIHOODS
from genbench.runtime.provenance import provenance, to_yaml  # noqa: F401 - re-exported for callers
from genbench.sampling.diffusion import SAMPLERS
from genbench.training.loop import DIVERGENCE_DEFAULTS

PROFILES = ("smoke", "quick", "full")
STUDIES_DIR = Path(__file__).resolve().parent.parent.parent.parent / "studies"

MAX_SAMPLES = 1_000_000
"""Upper bound of every image count of a study (n_samples, n_inception, n_eval, holdout...): at the slowest
sampler here (DDPM, 1,000 steps, ~9 s per image on 2 CPU cores) a million images is already years; larger values
are typos, and a count beyond it would make sampling run without end."""
MAX_SEED = 2**63 - 1  # seeds go to torch.Generator.manual_seed / numpy (int64)
MAX_WIDTH = 65_536  # widths, hidden sizes, latent dims: beyond this a layer alone takes gigabytes
MAX_EPOCHS = 100_000
MIN_KNN_SAMPLES = 10
"""Fewest images the k-NN metrics work with: precision/recall (k=3) and density/coverage (k=5,
metrics/manifold.py) need more than k+1 points per set, and their bootstrap keeps ~63% distinct points."""
MAX_STUDY_BYTES = 1 << 20  # a study file is a few kB; 1 MiB is generous
MAX_STUDY_NODES = 20_000  # YAML nodes (mappings, lists, scalars) counted through aliases, before profiles resolve
MAX_STUDY_DEPTH = 24  # nesting depth of a study file (the bundled ones reach 5)
EXPERIMENTS = ("reconstructions", "samples", "interpolations", "beta_sweep", "frozen_latent", "linear_probe",
               "encoder_comparison", "per_class")

# --------------------------------------------------------------------------------------------------------------
# The one validator


_REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One field of a section: its type(s), default (``_REQUIRED`` if none), the range it can work with (``ok``)
    and that range in words (``want``, for the error line)."""

    typ: Any
    default: Any = _REQUIRED
    ok: Callable[[Any], bool] | None = None
    want: str = ""
    noun: str = ""  # for a choice: what the value names ("dataset"), so the line reads "unknown dataset 'x'"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _int(lo: int, hi: int | None = None, default=_REQUIRED, null: bool = False) -> Field:
    want = f"an integer in {lo}..{hi:,}" if hi is not None else f"an integer >= {lo}"
    return Field((int, type(None)) if null else int, default,
                 lambda v: v is None or (v >= lo and (hi is None or v <= hi)), want + (" or null" if null else ""))


def _float(lo: float, hi: float, default=_REQUIRED, lo_open=False, hi_open=False, null=False) -> Field:
    want = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"

    def ok(v):
        if v is None:
            return True
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi) and math.isfinite(v)
    return Field((float, type(None)) if null else float, default, ok, want + (" or null" if null else ""))


def _choice(options, default=_REQUIRED, noun: str = "value") -> Field:
    return Field(str, default, lambda v: v in options, f"one of {', '.join(options)}", noun)


def _int_list(length: int | None, lo: int, hi: int, default=_REQUIRED) -> Field:
    n = f"{length} " if length else ""
    return Field(list, default, lambda v: (len(v) == length if length else len(v) >= 1) and all(
        _is_int(x) and lo <= x <= hi for x in v), f"a list of {n}integers in {lo}..{hi:,}")


def _num_list(lo: float, hi: float, hi_open=False, default=_REQUIRED, length=None) -> Field:
    rng = f"[{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return Field(list, default, lambda v: (len(v) == length if length else len(v) >= 1) and all(
        _is_num(x) and lo <= x and (x < hi if hi_open else x <= hi) for x in v),
        f"a list of {length or 'one or more'} numbers in {rng}")


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _folder_name(v: str) -> bool:
    """A study or model name becomes a folder name: letters, digits, ``.``, ``_``, ``-``; not ``.``/``..``."""
    return bool(re.fullmatch(r"[A-Za-z0-9._-]{1,100}", v)) and v not in (".", "..")


NAME_RULE = "1-100 letters, digits, '.', '_' or '-' (not '.' or '..': it names a folder)"


def _unknown_key(where: str, key, valid) -> GenbenchError:
    near = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.6)
    hint = f"did you mean `{near[0]}`? " if near else ""
    return GenbenchError(f"{where}.{str(key)[:60]}: unknown key; {hint}valid keys: {', '.join(map(str, valid))}")


def _value(v, f: Field, where: str):
    """Check one value against its field (type, then range); returns it (ints given for floats become floats)."""
    types = f.typ if isinstance(f.typ, tuple) else (f.typ,)
    if float in types and _is_int(v):
        v = float(v)
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types and object not in types):
        tn = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise GenbenchError(f"{where}: expected {tn}, got {type(v).__name__} ({_short(v)})"
                            + (f"; give {f.want}" if f.want else ""))
    if f.ok is not None and not f.ok(v) and f.noun:
        raise GenbenchError(f"{where}: unknown {f.noun} {_short(v)}; choose {f.want}")
    if f.ok is not None and not f.ok(v):
        raise GenbenchError(f"{where}: value {_short(v)} is out of range; give {f.want}")
    return v


def _validate(section, schema: dict[str, Field], where: str, *, extra: tuple = ()) -> dict:
    """THE validator: ``section`` must be a mapping whose keys are all in ``schema`` (or ``extra``, left to the
    caller); every field is type- and range-checked, defaults filled in. Returns a new dict.

    Raises:
        GenbenchError: one line: the dotted name of the bad key and what is expected.
    """
    if not isinstance(section, dict):
        raise GenbenchError(f"{where}: expected a mapping, got {type(section).__name__} ({_short(section)})")
    for k in section:
        if k not in schema and k not in extra:
            raise _unknown_key(where, k, list(schema) + list(extra))
    out = {}
    for k, f in schema.items():
        if k in section:
            out[k] = _value(section[k], f, f"{where}.{k}")
        elif f.default is _REQUIRED:
            raise GenbenchError(f"{where}: missing field `{k}`" + (f" ({f.want})" if f.want else ""))
        else:
            out[k] = f.default
    return out


# --------------------------------------------------------------------------------------------------------------
# The schema, one table per section

TOP = {
    "name": Field(str, _REQUIRED, _folder_name, NAME_RULE),
    "dataset": _choice(DATASET_NAMES, noun="dataset"),
    "seed": _int(0, MAX_SEED, 42),
    "batch_size": _int(1, MAX_SAMPLES, 128),
    "precision": _choice(("bf16", "fp32"), "bf16", "precision"),
    "holdout": _int(0, MAX_SAMPLES, 5000),
    "train_subset": _int(1, MAX_SAMPLES * 10, None, null=True),
    "threads": _int(1, 1024, None, null=True),
    "log_every": _int(1, 10**9, 50),
    "channels_last": Field(bool, False),
    "compile": Field(bool, False),
    "models": Field(dict, _REQUIRED, lambda v: len(v) >= 1, "a mapping of one or more models"),
    "evaluation": Field((dict, type(None)), None),
    "data": Field((dict, type(None)), None),
    "experiments": Field((dict, type(None)), None),
    "sweeps": Field((dict, type(None)), None),
}
MODEL = {
    "kind": _choice(tuple(MODEL_KINDS), noun="model kind"),
    "params": Field((dict, type(None)), None),
    "optimizer": Field(dict),
    "epochs": _int(1, MAX_EPOCHS),
    "batch_size": _int(1, MAX_SAMPLES, None),  # these four default to the study-wide value
    "precision": _choice(("bf16", "fp32"), None),
    "log_every": _int(1, 10**9, None),
    "channels_last": Field(bool, None),
    "compile": Field(bool, None),
    "ema_decay": _float(0, 1, None, hi_open=True, null=True),
    "divergence": Field((dict, type(None)), None),
    "conditional": Field(bool, False),  # a VAE conditioned on the class (num_classes from the dataset)
    # --- sampling settings (sampler, steps, guidance_scale, eta): another change fills this in (ModelConfig
    # --- .sampling); here it is only required to be a mapping and is stored as given.
    "sampling": Field((dict, type(None)), None),
}
OPTIMIZER = {
    "lr": _float(0, 1, _REQUIRED, lo_open=True, hi_open=True),
    "betas": _num_list(0, 1, hi_open=True, default=[0.9, 0.999], length=2),
    "fused": Field(bool, True),
    "schedule": _choice(("constant", "cosine"), "constant", "schedule"),
}
DIVERGENCE = {"max_retries": _int(0, 100, DIVERGENCE_DEFAULTS["max_retries"]),
              "lr_factor": _float(0, 1, DIVERGENCE_DEFAULTS["lr_factor"], lo_open=True, hi_open=True)}
EVALUATION = {
    "n_samples": _int(20, MAX_SAMPLES, 2000),
    "n_inception": _int(MIN_KNN_SAMPLES, MAX_SAMPLES, 500),
    "resize": _choice(("tf1_bilinear", "torch_bilinear"), "tf1_bilinear", "resize policy"),
    "inception_precision": _choice(("bf16", "fp32"), "bf16"),
    "classifier_epochs": _int(1, 1000, 3),
    "classifier_min_accuracy": _float(0, 1, 0.99),
    "is_splits": _int(1, 1000, 10),
    "fid_bootstrap": _int(0, 1000, 5),
    "n_manifold": _int(MIN_KNN_SAMPLES, MAX_SAMPLES, 1000),
    "n_memorisation": _int(1, MAX_SAMPLES, 500),
    "cas_steps": _int(1, 10**7, 300),
    "sample_batch": _int(1, MAX_SAMPLES, 100),
    "iwae_k": _int(1, 100_000, 100),
    "n_eval": _int(1, MAX_SAMPLES, 1000),
}
DATA = {  # options of the dataset loaders (genbench.data.registry.load_dataset)
    "data_dir": Field((str, type(None)), None),
    "classes": Field(list, None, lambda v: 1 <= len(v) <= 1000 and all(isinstance(c, str) and c for c in v)
                     and len(set(v)) == len(v), "a list of distinct class names"),
    "train_per_class": _int(1, MAX_SAMPLES, 4000),
    "test_per_class": _int(1, MAX_SAMPLES, 1000),
    "seed": _int(0, MAX_SEED, 0),
}
DATA_OPTIONS = {"mnist": (), "fashion_mnist": ("data_dir",), "cifar10": ("data_dir",),
                "quickdraw": ("data_dir", "classes", "train_per_class", "test_per_class", "seed")}
_SEL = {"model": Field(str, None), "models": Field(list, None, lambda v: all(isinstance(x, str) for x in v),
                                                   "a list of model names")}
EXPERIMENT_OPTIONS = {
    "reconstructions": {"n": _int(1, 1000, 10), **_SEL},
    "samples": {"n": _int(1, 10_000, 64), **_SEL},
    "interpolations": {"pairs": _int(1, 1000, 6), "steps": _int(2, 1000, 10), **_SEL},
    "beta_sweep": {"betas": _num_list(0, 1e6, default=[0.1, 0.5, 1.0]), "latent_dim": _int(1, MAX_WIDTH, 2),
                   "classes": _int_list(None, 0, 100_000, [0, 1, 7]), "epochs": _int(1, MAX_EPOCHS, None, null=True),
                   "n_points": _int(1, MAX_SAMPLES, 1000), **_SEL},
    "frozen_latent": {"sigmas": _num_list(0, 1e6, default=[0.1, 0.5, 1.0]), **_SEL},
    "linear_probe": {"n_train": _int(2, MAX_SAMPLES, 10000), "C": _float(0, 1e12, 1.0, lo_open=True),
                     "max_iter": _int(1, 10**7, 1000), **_SEL},
    "encoder_comparison": {**_SEL},
    "per_class": {"n_per_class": _int(1, MAX_SAMPLES, 100), **_SEL},
}
SWEEPS = {  # the keys of genbench.studies.sweeps.parse_sweeps, which checks their values
    k: Field(object, None) for k in ("model", "in_study", "samplers", "reference", "tolerance", "tolerance_metric",
                                     "guidance_scales", "guidance_sampler", "eta")}
SWEEPS.update({"n": _int(2, MAX_SAMPLES, None, null=True), "n_inception": _int(2, MAX_SAMPLES, None, null=True),
               "batch": _int(1, MAX_SAMPLES, None, null=True)})
PARAMS = {  # type and range of the common model parameters (the constructor decides which a kind takes)
    **{k: _int(1, MAX_WIDTH) for k in ("latent_dim", "hidden", "z_dim", "ngf", "ndf", "label_dim", "rnn_hidden",
                                       "channels")},
    "num_classes": _int(0, 100_000), "image_size": _int(4, 1024), "kl_anneal_steps": _int(0, 10**9),
    "timesteps": _int(1, 100_000), "sampler_steps": _int(1, 100_000),
    "beta": _float(0, 1e6), "gaussian_std": _float(0, 1e6, lo_open=True),
    "dropout": _float(0, 1, hi_open=True), "p_uncond": _float(0, 1), "real_label": _float(0, 1, lo_open=True),
    "guidance_scale": _float(0, 1e3), "beta_start": _float(0, 1, lo_open=True, hi_open=True),
    "beta_end": _float(0, 1, lo_open=True, hi_open=True),
    "widths": _int_list(3, 1, MAX_WIDTH), "g_widths": _int_list(None, 1, MAX_WIDTH),
    "d_widths": _int_list(None, 1, MAX_WIDTH), "image_shape": _int_list(3, 1, 1024),
    "attention": Field(bool), "batchnorm": Field(bool),
    "encoder": _choice(ENCODERS, noun="encoder"), "likelihood": _choice(LIKELIHOODS, noun="likelihood"),
    "sampler": _choice(SAMPLERS, noun="sampler"),
    "prediction_type": _choice(("epsilon", "v_prediction")),
    "beta_schedule": _choice(("linear", "scaled_linear", "squaredcos_cap_v2")),
}


# --------------------------------------------------------------------------------------------------------------
# Profiles and the size bound


def resolve_profile(obj: Any, profile: str) -> Any:
    """Replace every ``{smoke: a, quick: b, full: c}`` mapping by the value for ``profile``."""
    if isinstance(obj, dict):
        if obj and all(isinstance(k, str) for k in obj) and set(obj) <= set(PROFILES):
            if profile not in obj:
                raise GenbenchError(f"a per-profile value {_short(obj)} has no entry for profile {profile!r}")
            return resolve_profile(obj[profile], profile)
        return {k: resolve_profile(v, profile) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve_profile(v, profile) for v in obj]
    return obj


def check_size(raw: Any, where: str) -> None:
    """Refuse a study mapping with more than :data:`MAX_STUDY_NODES` nodes or deeper than
    :data:`MAX_STUDY_DEPTH`, counting through YAML aliases (a shared node counts once per reference, as
    resolving profiles would copy it). Stops counting at the bound, so a billion-node alias bomb costs
    microseconds.

    Raises:
        GenbenchError: one line with the bound that was passed.
    """
    stack, n = [(raw, 1)], 0
    while stack:
        obj, depth = stack.pop()
        n += 1
        if n > MAX_STUDY_NODES:
            raise GenbenchError(f"{where}: more than {MAX_STUDY_NODES:,} values (YAML aliases counted once per "
                                f"use); a study file is a few hundred; remove the repeated aliases")
        if depth > MAX_STUDY_DEPTH:
            raise GenbenchError(f"{where}: nested more than {MAX_STUDY_DEPTH} levels deep (or a YAML alias refers "
                                f"to itself); flatten the file")
        if isinstance(obj, dict):
            stack.extend((v, depth + 1) for v in obj.values())
            n += len(obj)  # the keys
        elif isinstance(obj, (list, tuple)):
            stack.extend((v, depth + 1) for v in obj)


# --------------------------------------------------------------------------------------------------------------
# The resolved config


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
    conditional: bool = False  # a VAE conditioned on the class (its params hold num_classes from the dataset)
    # --- sampling settings (``sampling: {sampler, steps, guidance_scale, eta}`` in the study file): stored as
    # --- given here, a mapping or None; the sampling change validates it and adds it to to_dict/from_dict.
    sampling: dict | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "dataset": self.dataset,
                "model": {"kind": self.kind, "resolved_params": self.params},
                "optimizer": self.optimizer, "epochs": self.epochs, "batch_size": self.batch_size,
                "seed": self.seed, "precision": self.precision, "ema_decay": self.ema_decay,
                "log_every": self.log_every, "train_subset": self.train_subset, "divergence": self.divergence,
                "channels_last": self.channels_last, "compile": self.compile}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(name=d["name"], kind=d["model"]["kind"], params=d["model"]["resolved_params"],
                   optimizer=d["optimizer"], epochs=d["epochs"], batch_size=d["batch_size"], seed=d["seed"],
                   precision=d["precision"], dataset=d["dataset"], ema_decay=d.get("ema_decay"),
                   log_every=d.get("log_every", 50), train_subset=d.get("train_subset"),
                   divergence=d.get("divergence") or dict(DIVERGENCE_DEFAULTS),
                   channels_last=d.get("channels_last", False), compile=d.get("compile", False))


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
    iwae_k: int = 100  # importance samples of the IWAE bound on the test NLL (VAEs)
    n_eval: int = 1000  # test images for the ELBO terms, the IWAE bound and active units (VAEs)


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


# --------------------------------------------------------------------------------------------------------------
# Parsing


def _param_names(kind: str) -> list[str]:
    sig = inspect.signature(MODEL_KINDS[kind][0])
    return [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _unknown_params(kind: str, params: dict) -> list:
    """Keys of ``params`` the model class does not take (none if it takes ``**kwargs``)."""
    sig = inspect.signature(MODEL_KINDS[kind][0])
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return []
    return sorted((k for k in params if k not in _param_names(kind)), key=str)


def _params(kind: str, params: dict, w: str, info, conditional: bool) -> dict:
    """The model's parameters: names checked against its constructor, common ones type- and range-checked,
    geometry and class count filled in from the dataset."""
    bad = _unknown_params(kind, params)
    if bad:
        names = _param_names(kind)
        near = difflib.get_close_matches(str(bad[0]), names, n=1, cutoff=0.6)
        raise GenbenchError(f"{w}.params: {kind!r} takes no parameter(s) {', '.join(map(repr, bad))}"
                            + (f"; did you mean `{near[0]}`?" if near else "") + f"; it takes {', '.join(names)}")
    p = {k: _value(v, PARAMS[k], f"{w}.params.{k}") if k in PARAMS else v for k, v in params.items()}
    shape = list(info.image_shape)
    if kind == "vae":
        fill = {"channels": shape[0], "image_size": shape[1]}
    else:
        fill = {"image_shape": shape}
    for k, v in fill.items():
        if k in p and p[k] != v:
            raise GenbenchError(f"{w}.params.{k}: {p[k]} does not match the images of {info.name} "
                                f"{tuple(shape)}; drop it (it is filled in from the dataset)")
        p[k] = v
    if kind == "vae" and conditional:
        if not info.num_classes:
            raise GenbenchError(f"{w}.conditional: {info.name} has no classes until data.classes names them; "
                                f"add data.classes or drop `conditional`")
        p["num_classes"] = info.num_classes
    elif kind == "cgan":
        p.setdefault("num_classes", info.num_classes)
    k = p.get("num_classes")
    if k and info.num_classes and k != info.num_classes:
        raise GenbenchError(f"{w}.params.num_classes: {k}, but {info.name} has {info.num_classes} classes; "
                            f"give {info.num_classes} or 0 (unconditional)")
    if kind == "ddpm" and p.get("sampler", "ddim") == "ddim":
        t, s = p.get("timesteps", 1000), p.get("sampler_steps", 50)
        if s > t:
            raise GenbenchError(f"{w}.params.sampler_steps: {s} is more than timesteps={t}; give at most {t}")
    return p


def _model(mname, m, w: str, top: dict, info) -> ModelConfig:
    if not (isinstance(mname, str) and _folder_name(mname)):
        raise GenbenchError(f"{w}: bad model name {_short(mname)}; use {NAME_RULE}")
    m = _validate(m, MODEL, w)
    if m["conditional"] and m["kind"] != "vae":
        raise GenbenchError(f"{w}.conditional: applies to VAEs; a {m['kind']} is conditioned by "
                            f"params.num_classes")
    params = _params(m["kind"], dict(m["params"] or {}), w, info, m["conditional"])
    opt = _validate(m["optimizer"], OPTIMIZER, f"{w}.optimizer")
    opt = {**m["optimizer"], **{k: v for k, v in opt.items() if k in m["optimizer"] or k == "fused"}}
    if "lr" in opt:
        opt["lr"] = float(opt["lr"])
    div = _validate(m["divergence"] or {}, DIVERGENCE, f"{w}.divergence")
    if m["sampling"] is not None and not isinstance(m["sampling"], dict):
        raise GenbenchError(f"{w}.sampling: expected a mapping")
    pick = lambda k: top[k] if m[k] is None else m[k]  # noqa: E731 - a model's value or the study-wide one
    return ModelConfig(
        name=mname, kind=m["kind"], params=params, optimizer=opt, epochs=m["epochs"], batch_size=pick("batch_size"),
        seed=top["seed"], precision=pick("precision"), dataset=top["dataset"], ema_decay=m["ema_decay"],
        log_every=pick("log_every"), train_subset=top["train_subset"], threads=top["threads"], divergence=div,
        channels_last=pick("channels_last"), compile=pick("compile"), conditional=m["conditional"],
        sampling=dict(m["sampling"]) if m["sampling"] is not None else None)


def _experiments(exps: dict, where: str, models: tuple[ModelConfig, ...], info) -> dict:
    by_name = {m.name: m for m in models}
    out = {}
    for e, o in _validate(exps, {k: Field((dict, type(None)), None) for k in EXPERIMENT_OPTIONS},
                          where).items():
        if e not in exps:
            continue
        w = f"{where}.{e}"
        o = _validate(o or {}, EXPERIMENT_OPTIONS[e], w)
        for n in ([o["model"]] if o["model"] is not None else []) + list(o["models"] or []):
            if n not in by_name:
                raise GenbenchError(f"{w}: no model {_short(n)}; models: {', '.join(by_name)}")
        if e == "per_class":
            names = [o["model"]] if o["model"] else list(o["models"] or by_name)
            for n in names:
                if not by_name[n].params.get("num_classes"):
                    raise GenbenchError(f"{w}: model {n!r} is not class-conditional; name a conditional one "
                                        f"(`conditional: true` or params.num_classes)")
        if e == "beta_sweep" and info.num_classes and max(o["classes"]) >= info.num_classes:
            raise GenbenchError(f"{w}.classes: {o['classes']} has labels outside 0..{info.num_classes - 1}")
        given = exps[e] or {}  # defaults filled in, except the model selection (absent = every suitable model)
        out[e] = {k: v for k, v in o.items() if k in given or (v is not None and k not in _SEL)}
    return out


def parse_study(raw: dict, profile: str, source: str = "<dict>") -> StudyConfig:
    """Validate a study mapping (already parsed from YAML) for ``profile``.

    Raises:
        GenbenchError: one line naming the bad field and what is expected.
    """
    if profile not in PROFILES:
        raise GenbenchError(f"unknown profile {_short(profile)}; choose one of {', '.join(PROFILES)}")
    if not isinstance(raw, dict):
        raise GenbenchError(f"{source}: a study file must be a YAML mapping")
    where = Path(source).name
    check_size(raw, where)
    try:
        r = resolve_profile(raw, profile)
    except RecursionError as e:
        raise GenbenchError(f"{where}: nested too deeply (or a YAML alias refers to itself)") from e
    top = _validate(r, TOP, where)
    data = _validate(top["data"] or {}, {k: DATA[k] for k in DATA_OPTIONS[top["dataset"]]}, f"{where}.data")
    data = {k: v for k, v in data.items() if k in (top["data"] or {})}  # the loader keeps its own defaults
    info = dataset_info(top["dataset"], classes=data.get("classes"))
    models = tuple(_model(n, m, f"{where}.models.{n}" if isinstance(n, str) else f"{where}.models", top, info)
                   for n, m in top["models"].items())
    we = f"{where}.evaluation"
    ev = EvalConfig(**_validate(top["evaluation"] or {}, EVALUATION, we))
    if ev.n_inception > ev.n_samples:
        raise GenbenchError(f"{we}.n_inception ({ev.n_inception}) must not exceed n_samples ({ev.n_samples})")
    experiments = _experiments(top["experiments"] or {}, f"{where}.experiments", models, info)
    if top["sweeps"] is not None:
        _validate(top["sweeps"], SWEEPS, f"{where}.sweeps")
    return StudyConfig(name=top["name"], dataset=top["dataset"], profile=profile, seed=top["seed"],
                       holdout=top["holdout"], models=models, evaluation=ev, source=str(source), raw=r,
                       data=data, experiments=experiments)


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


def load_study(path: str | Path, profile: str = "quick") -> StudyConfig:
    """Load a study YAML file (a path, or the name of a bundled study such as ``mnist_four``).

    Raises:
        GenbenchError: the file is missing, unreadable, too large, not UTF-8, not YAML, or fails
            :func:`parse_study`.
    """
    p = Path(path)
    if not p.exists():
        cand = STUDIES_DIR / f"{path}.yaml"
        if cand.exists():
            p = cand
        else:
            raise GenbenchError(f"study file {path} not found; give a path or one of: "
                                f"{', '.join(sorted(q.stem for q in STUDIES_DIR.glob('*.yaml')))}")
    return parse_study(read_study_yaml(p), profile, str(p))


def load_run_study(spath: Path, profile: str | None = None) -> StudyConfig:
    """The study config a run folder was made with (its ``study.yaml``: the resolved study plus ``profile``),
    optionally under another profile.

    Raises:
        GenbenchError: one line: the file is missing, or damaged (naming it and the command that rewrites it).
    """
    spath = Path(spath)
    if profile is not None and profile not in PROFILES:
        raise GenbenchError(f"unknown profile {_short(profile)}; choose one of {', '.join(PROFILES)}")
    if not spath.exists():
        raise GenbenchError(f"{spath} not found: give a study folder written by `genbench run` (runs/<study>)")
    try:
        raw = read_study_yaml(spath)
        if not isinstance(raw, dict):
            raise GenbenchError(f"a {type(raw).__name__}, not a mapping")
        prof = raw.pop("profile", "quick")
        if prof not in PROFILES:
            raise GenbenchError(f"profile {_short(prof)}")
        return parse_study(raw, profile or prof, str(spath))
    except GenbenchError as e:
        raise GenbenchError(f"{spath} is damaged ({e}); delete it and rerun `genbench run <study file> --resume` "
                            f"(or `genbench train`) to write it again") from None


def read_study_yaml(p: Path) -> Any:
    """The parsed YAML of a study file (or a run's ``study.yaml``), bounded to :data:`MAX_STUDY_BYTES`.

    Raises:
        GenbenchError: unreadable, too large, not UTF-8 or not YAML.
    """
    try:
        with open(p, "rb") as f:
            blob = f.read(MAX_STUDY_BYTES + 1)
        text = blob.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GenbenchError(f"cannot read study file {p} ({type(e).__name__}); give a UTF-8 YAML file") from e
    if len(blob) > MAX_STUDY_BYTES:
        raise GenbenchError(f"{p}: larger than {MAX_STUDY_BYTES // 1024} KiB; a study file is a few kB")
    try:
        return yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - YAMLError, or a ValueError from a value such as 2024-13-01
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise GenbenchError(f"{p}: not valid YAML ({first[:120]})") from e
