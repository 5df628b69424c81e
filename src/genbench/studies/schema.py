"""The study-file schema: one table of fields per section and ONE validator (:func:`validate`).

Each :class:`Field` says its type(s), default and the range it can work with (``ok``, and ``want``: that range in
words for the error line). :func:`validate` checks a mapping against a table: unknown keys are refused with their
dotted name, the nearest valid name (difflib) and the valid keys; every value is type- and range-checked and the
defaults are filled in. :func:`check_size` bounds a loaded file (nodes through YAML aliases, depth) before profiles
are resolved. :mod:`genbench.studies.config` builds the frozen configs from the validated sections.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from genbench.data import DatasetSpec, Option, dataset_names, get_dataset
from genbench.data.base import REQUIRED as DATA_REQUIRED
from genbench.errors import GenbenchError
from genbench.io import name_problem
from genbench.metrics.extractors import BUILTINS as BUILTIN_EXTRACTORS, PREP_RESIZES
from genbench.metrics.file_extractor import FORMATS as EXTRACTOR_FORMATS
from genbench.models.vae import ENCODERS, LIKELIHOODS
from genbench.runtime.device import PRECISIONS
from genbench.runtime.tracking import TRACKERS
from genbench.sampling.diffusion import SAMPLERS
from genbench.training.loop import DIVERGENCE_DEFAULTS

PROFILES = ("smoke", "quick", "full")
MAX_SAMPLES = 1_000_000
"""Upper bound of every image count of a study (n_samples, n_inception, n_eval, holdout...): at the slowest
sampler here (DDPM, 1,000 steps, ~9 s per image on 2 CPU cores) a million images is already years; larger values
are typos, and a count beyond it would make sampling run without end."""
MAX_SEED = 2**63 - 1  # seeds go to torch.Generator.manual_seed / numpy (int64)
MAX_WIDTH = 65_536  # widths, hidden sizes, latent dims: beyond this a layer alone takes gigabytes
MAX_EPOCHS = 100_000
MAX_EXTRACTORS = 8  # extractors a study may name (each costs a pass over every image set)
MIN_KNN_SAMPLES = 10
"""Fewest images the k-NN metrics work with: precision/recall (k=3) and density/coverage (k=5,
metrics/manifold.py) need more than k+1 points per set, and their bootstrap keeps ~63% distinct points."""
MAX_STUDY_BYTES = 1 << 20  # a study file is a few kB; 1 MiB is generous
MAX_STUDY_NODES = 20_000  # YAML nodes (mappings, lists, scalars) counted through aliases, before profiles resolve
MAX_STUDY_DEPTH = 24  # nesting depth of a study file (the bundled ones reach 5)

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


def short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def folder_name(v: str) -> bool:
    """A study or model name becomes a folder name: letters, digits, ``.``, ``_``, ``-``; not ``.``/``..`` (and so
    never a path: :func:`genbench.io.name_problem` holds too)."""
    return (isinstance(v, str) and bool(re.fullmatch(r"[A-Za-z0-9._-]{1,100}", v)) and name_problem(v) is None)


NAME_RULE = "1-100 letters, digits, '.', '_' or '-' (not '.' or '..': it names a folder)"


def unknown_key(where: str, key, valid) -> GenbenchError:
    near = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.6)
    hint = f"did you mean `{near[0]}`? " if near else ""
    return GenbenchError(f"{where}.{str(key)[:60]}: unknown key; {hint}valid keys: {', '.join(map(str, valid))}")


def check_value(v, f: Field, where: str):
    """Check one value against its field (type, then range); returns it (ints given for floats become floats)."""
    types = f.typ if isinstance(f.typ, tuple) else (f.typ,)
    if float in types and _is_int(v):
        v = float(v)
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in types and object not in types):
        tn = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise GenbenchError(f"{where}: expected {tn}, got {type(v).__name__} ({short(v)})"
                            + (f"; give {f.want}" if f.want else ""))
    if f.ok is not None and not f.ok(v) and f.noun:
        raise GenbenchError(f"{where}: unknown {f.noun} {short(v)}; choose {f.want}")
    if f.ok is not None and not f.ok(v):
        raise GenbenchError(f"{where}: value {short(v)} is out of range; give {f.want}")
    return v


def validate(section, schema: dict[str, Field], where: str, *, extra: tuple = ()) -> dict:
    """THE validator: ``section`` must be a mapping whose keys are all in ``schema`` (or ``extra``, left to the
    caller); every field is type- and range-checked, defaults filled in. Returns a new dict.

    Raises:
        GenbenchError: one line: the dotted name of the bad key and what is expected.
    """
    if not isinstance(section, dict):
        raise GenbenchError(f"{where}: expected a mapping, got {type(section).__name__} ({short(section)})")
    for k in section:
        if k not in schema and k not in extra:
            raise unknown_key(where, k, list(schema) + list(extra))
    out = {}
    for k, f in schema.items():
        if k in section:
            out[k] = check_value(section[k], f, f"{where}.{k}")
        elif f.default is _REQUIRED:
            raise GenbenchError(f"{where}: missing field `{k}`" + (f" ({f.want})" if f.want else ""))
        else:
            out[k] = f.default
    return out


# --------------------------------------------------------------------------------------------------------------
# The schema, one table per section

TOP = {
    "name": Field(str, _REQUIRED, folder_name, NAME_RULE),
    "dataset": Field((str, dict)),  # a registered dataset (or a {kind: ...} mapping): checked by dataset_fields
    "seed": _int(0, MAX_SEED, 42),
    "batch_size": _int(1, MAX_SAMPLES, 128),
    "precision": _choice(PRECISIONS, "auto", "precision"),  # auto: bf16 where the hardware has it
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
    "budget": Field((dict, str, type(None)), None),  # equal compute: {images: N} | {flops: F} | {seconds: S}
    "seeds": Field((list, type(None)), None, lambda v: v is None or (1 <= len(v) <= 1000 and all(
        isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_SEED for x in v) and len(set(v)) == len(v)),
        "a list of distinct integer seeds >= 0"),
    "log": Field((list, type(None)), None, lambda v: v is None or all(isinstance(x, str) and x in TRACKERS for x in v),
                 f"a list of trackers among {', '.join(TRACKERS)} (docs/TRACKING.md)"),  # off by default
    # a record, written by `--set` (studies/overrides.py): the overrides already applied to the values above
    "overrides": Field((list, type(None)), None, lambda v: v is None or (len(v) <= 1000 and all(
        isinstance(x, str) for x in v)), "a list of key.path=value strings (the --set overrides applied)"),
}
MODEL = {
    "kind": Field(str),  # a built-in kind, `package.module:Class` or an entry point: families.resolve_kind
    "params": Field((dict, type(None)), None),
    "optimizer": Field(dict),
    "epochs": _int(1, MAX_EPOCHS),
    "batch_size": _int(1, MAX_SAMPLES, None),  # these four default to the study-wide value
    "precision": _choice(PRECISIONS, None),
    "log_every": _int(1, 10**9, None),
    "channels_last": Field(bool, None),
    "compile": Field(bool, None),
    "ema_decay": _float(0, 1, None, hi_open=True, null=True),
    "divergence": Field((dict, type(None)), None),
    "conditional": Field(bool, False),  # a VAE conditioned on the class (num_classes from the dataset)
    "enabled": Field(bool, True),  # False (e.g. per profile) leaves the model out of the study
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
    "inception_precision": _choice((*PRECISIONS, "int8"), "auto", "Inception precision"),  # int8: OpenVINO + nncf
    "inception_backend": _choice(("auto", "torch", "openvino"), "auto", "Inception backend"),
    "classifier_epochs": _int(1, 1000, 3),
    "classifier_min_accuracy": _float(0, 1, 0.99),
    "is_splits": _int(1, 1000, 10),
    "fid_bootstrap": _int(0, 1000, 5),
    "n_manifold": _int(MIN_KNN_SAMPLES, MAX_SAMPLES, 1000),
    "n_memorisation": _int(1, MAX_SAMPLES, 500),
    "cas_steps": _int(1, 10**7, 300),
    "cas_n_test": _int(MIN_KNN_SAMPLES, MAX_SAMPLES, None, null=True),  # CAS scored on this many test images (null: all)
    "sample_batch": _int(1, MAX_SAMPLES, 100),
    "iwae_k": _int(1, 100_000, 100),
    "n_eval": _int(1, MAX_SAMPLES, 1000),
    "curve_points": _int(0, 100, 4),  # quality-vs-compute snapshots per model (0 = no curve)
    "curve_n": _int(MIN_KNN_SAMPLES, MAX_SAMPLES, 500),  # images per snapshot (at most n_samples are drawn)
    # the study's own feature extractors (TorchScript / ONNX files), each entry checked against EXTRACTOR
    "extractors": Field((list, type(None)), None, lambda v: v is None or len(v) <= MAX_EXTRACTORS,
                        f"a list of at most {MAX_EXTRACTORS} mappings {{name, path, ...}}"),
}
EXTRACTOR_NAME = "a lowercase identifier of 1-40 letters, digits and '_' (it names metrics fd_<name>, kid_<name>), " \
                 f"not {' or '.join(BUILTIN_EXTRACTORS)}"
EXTRACTOR = {  # one entry of evaluation.extractors (genbench.metrics.file_extractor.FileExtractorConfig)
    "name": Field(str, _REQUIRED, lambda v: bool(re.fullmatch(r"[a-z][a-z0-9_]{0,39}", v))
                  and v not in BUILTIN_EXTRACTORS, EXTRACTOR_NAME),
    "path": Field(str, _REQUIRED, lambda v: 0 < len(v) <= 4096 and "\0" not in v, "a file path (.pt or .onnx)"),
    "format": _choice(EXTRACTOR_FORMATS, None, "extractor format"),  # null: from the file's suffix
    "input_size": _int(1, 4096, None, null=True),  # null: the images' own size
    "channels": Field(int, 3, lambda v: v in (1, 3), "1 or 3"),
    "range": _num_list(-1e6, 1e6, default=[0.0, 1.0], length=2),
    "mean": Field((list, type(None)), None, lambda v: v is None or (len(v) in (1, 3) and all(_is_num(x) for x in v)),
                  "a list of 1 or 3 numbers or null"),
    "std": Field((list, type(None)), None, lambda v: v is None or (len(v) in (1, 3) and all(
        _is_num(x) and x > 0 for x in v)), "a list of 1 or 3 positive numbers or null"),
    "resize": _choice(PREP_RESIZES, "torch_bilinear", "resize policy"),
    "batch": _int(1, 100_000, 50),
}


def _field(o: Option) -> Field:
    """A dataset spec's :class:`~genbench.data.Option` as a schema field."""
    return Field(o.typ, _REQUIRED if o.default is DATA_REQUIRED else o.default, o.ok, o.want, o.noun)


def data_fields(spec: DatasetSpec) -> dict[str, Field]:
    """The ``data:`` section's fields for a dataset: its spec's ``options`` (:mod:`genbench.data`)."""
    return {k: _field(o) for k, o in spec.options.items()}


def dataset_fields(value: str | dict, where: str) -> tuple[DatasetSpec, dict[str, Field]]:
    """The spec a study's ``dataset:`` names (a registered name, or a ``{kind: folder | npz, path: ...}`` mapping)
    and the fields of its options: the ``data:`` section's, or the mapping's own (``kind`` first).

    Raises:
        GenbenchError: an unknown dataset name or mapping kind, in one line listing the registered ones.
    """
    if isinstance(value, dict):
        kinds = dataset_names(by_mapping=True)
        kind = _choice(kinds, noun="dataset kind")
        if "kind" in value and value["kind"] in kinds:
            spec = get_dataset(value["kind"], by_mapping=True)
            return spec, {"kind": kind, **data_fields(spec)}
        union = {k: f for n in kinds for k, f in data_fields(get_dataset(n, by_mapping=True)).items()}
        return None, {"kind": kind, **union}  # validate() then names the bad or missing kind
    try:  # a registered name reads no plugin metadata (every installed package's entry points, ~10 ms): a miss does
        spec = get_dataset(value)
    except GenbenchError:
        names = dataset_names()
        raise GenbenchError(f"{where}: unknown dataset {short(value)}; choose one of {', '.join(names)}, or a "
                            f"mapping {{kind: {' | '.join(dataset_names(by_mapping=True))}, path: ...}}") from None
    return spec, data_fields(spec)


SELECT = {"model": Field(str, None), "models": Field(list, None, lambda v: all(isinstance(x, str) for x in v),
                                                   "a list of model names")}
SWEEPS = {  # the keys of genbench.studies.sweeps.parse_sweeps, which checks their values
    k: Field(object, None) for k in ("model", "models", "in_study", "samplers", "reference", "tolerance", "tolerance_metric",
                                     "guidance_scales", "guidance_sampler", "eta")}
SWEEPS.update({"n": _int(2, MAX_SAMPLES, None, null=True), "n_inception": _int(2, MAX_SAMPLES, None, null=True),
               "batch": _int(1, MAX_SAMPLES, None, null=True)})
PARAMS = {  # type and range of the common model parameters (the constructor decides which a kind takes)
    **{k: _int(1, MAX_WIDTH) for k in ("latent_dim", "hidden", "z_dim", "ngf", "ndf", "label_dim", "rnn_hidden",
                                       "channels", "width")},
    "num_classes": _int(0, 100_000), "image_size": _int(4, 1024), "kl_anneal_steps": _int(0, 10**9),
    "timesteps": _int(1, 100_000), "sampler_steps": _int(1, 100_000),
    "r1_every": _int(1, 10**6), "r1_gamma": _float(0, 1e6), "loss": _choice(("hinge", "ns")),
    "beta": _float(0, 1e6), "gaussian_std": _float(0, 1e6, lo_open=True),
    "dropout": _float(0, 1, hi_open=True), "p_uncond": _float(0, 1), "real_label": _float(0, 1, lo_open=True),
    "guidance_scale": _float(0, 1e3), "beta_start": _float(0, 1, lo_open=True, hi_open=True),
    "beta_end": _float(0, 1, lo_open=True, hi_open=True),
    "widths": _int_list(3, 1, MAX_WIDTH), "g_widths": _int_list(None, 1, MAX_WIDTH),
    "d_widths": _int_list(None, 1, MAX_WIDTH), "image_shape": _int_list(3, 1, 1024),
    "attention": Field(bool), "batchnorm": Field(bool),
    "encoder": _choice(ENCODERS, noun="encoder"), "likelihood": _choice(LIKELIHOODS, noun="likelihood"),
    "sampler": _choice(SAMPLERS, noun="sampler"),
    "prediction_type": _choice(("epsilon", "v_prediction", "edm")),  # edm: Karras et al. 2022 preconditioning
    "sigma_data": _float(0, 1e3, lo_open=True), "p_mean": _float(-20, 20), "p_std": _float(0, 20, lo_open=True),
    "time_sampling": _choice(("uniform", "logit_normal")),  # flow matching's training-time distribution
    "max_steps": Field(int, _REQUIRED, lambda v: 2 <= v <= 2**20 and v & (v - 1) == 0,  # shortcut models
                       "a power of two in 2..1,048,576"),
    "consistency_fraction": _float(0, 1, hi_open=True),
    "beta_schedule": _choice(("linear", "scaled_linear", "squaredcos_cap_v2")),
}


# --------------------------------------------------------------------------------------------------------------
# Profiles and the size bound


def resolve_profile(obj: Any, profile: str) -> Any:
    """Replace every ``{smoke: a, quick: b, full: c}`` mapping by the value for ``profile``."""
    if isinstance(obj, dict):
        if obj and all(isinstance(k, str) for k in obj) and set(obj) <= set(PROFILES):
            if profile not in obj:
                raise GenbenchError(f"a per-profile value {short(obj)} has no entry for profile {profile!r}")
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
