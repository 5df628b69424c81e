"""A study's models: the resolved :class:`ModelConfig` and the parsing of one ``models:`` entry (its kind,
parameters checked against the model class and filled with the dataset's geometry, optimizer, divergence
settings and the model-level ``sampling:`` field). :mod:`genbench.studies.config` parses the rest of a study
file and re-exports these names."""

from __future__ import annotations

import difflib
from dataclasses import KW_ONLY, dataclass, field

from genbench.errors import GenbenchError
from genbench.families import check_settings, get_family, resolve_kind, step_limit
from genbench.runtime.device import resolve_precision
from genbench.studies.schema import DIVERGENCE, MODEL, NAME_RULE, OPTIMIZER, PARAMS, check_value, folder_name, short, validate
from genbench.training.config import TrainConfig
from genbench.training.loop import DIVERGENCE_DEFAULTS


@dataclass(frozen=True)
class ModelConfig(TrainConfig):
    """One model of a study, fully resolved: the fields the training loop reads (:class:`TrainConfig`, where they
    are listed and documented) and, keyword-only, the study's own below."""

    _: KW_ONLY
    dataset: str
    train_subset: int | None = None
    conditional: bool = False  # a VAE conditioned on the class (its params hold num_classes from the dataset)
    sampling: dict = field(default_factory=dict)  # diffusion-family sampler settings (see _sampling_field)

    @property
    def family(self) -> str:
        """The model's family name (training objective, family metrics): :func:`genbench.families.resolve_kind`."""
        return resolve_kind(self.kind).family

    def model_kind(self):
        """The resolved kind (:class:`genbench.families.ModelKind`): class, Family, builder and training step; what
        the training loop receives through this config."""
        return resolve_kind(self.kind)

    def to_dict(self) -> dict:
        return {"name": self.name, "dataset": self.dataset,
                "model": {"kind": self.kind, "resolved_params": self.params},
                "optimizer": self.optimizer, "epochs": self.epochs, "batch_size": self.batch_size,
                "seed": self.seed, "precision": self.precision, "ema_decay": self.ema_decay,
                "log_every": self.log_every, "train_subset": self.train_subset, "divergence": self.divergence,
                "channels_last": self.channels_last, "compile": self.compile, "sampling": self.sampling,
                "budget": self.budget, "curve_points": self.curve_points}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(name=d["name"], kind=d["model"]["kind"], params=d["model"]["resolved_params"],
                   optimizer=d["optimizer"], epochs=d["epochs"], batch_size=d["batch_size"], seed=d["seed"],
                   precision=d["precision"], dataset=d["dataset"], ema_decay=d.get("ema_decay"),
                   log_every=d.get("log_every", 50), train_subset=d.get("train_subset"),
                   divergence=d.get("divergence") or dict(DIVERGENCE_DEFAULTS),
                   channels_last=d.get("channels_last", False), compile=d.get("compile", False),
                   sampling=d.get("sampling") or {}, budget=d.get("budget"),
                   curve_points=d.get("curve_points", 0))


# --- model-level `sampling:` (issue 14) -------------------------------------------------------------------------
# Sampler settings are not model parameters: diffusion-family models know no sampler. The field is validated by
# the model's Family (genbench.families.check_settings) and resolved to {sampler, steps, guidance_scale, eta}.
_LEGACY_SAMPLER_PARAMS = ("sampler", "sampler_steps", "guidance_scale")


def _sampling_field(m: dict, kind: str, params: dict, w: str) -> dict:
    """The resolved ``sampling`` of model mapping ``m`` ({} for one-pass models).

    Raises:
        GenbenchError: sampler settings left in ``params`` (moved), given to a one-pass model, or invalid.
    """
    family = get_family(resolve_kind(kind).family)
    multi_step = family.samplers is not None
    legacy = [k for k in _LEGACY_SAMPLER_PARAMS if k in params] if multi_step else []
    if legacy:
        raise GenbenchError(f"{w}.params: {', '.join(legacy)} moved to the model's `sampling:` field "
                            f"(sampler, steps, guidance_scale, eta), e.g. sampling: {{sampler: ddim, steps: 20}}")
    raw = m.get("sampling")
    if not multi_step:
        if raw is not None:
            raise GenbenchError(f"{w}.sampling: {kind!r} draws in one pass; sampler settings apply to "
                                f"multi-step (diffusion, flow, shortcut) models only")
        return {}
    return check_settings(raw, family, timesteps=step_limit(family, params), where=f"{w}.sampling")


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


def _param_names(kind: str) -> list[str]:
    return resolve_kind(kind).param_names()


def _unknown_params(kind: str, params: dict) -> list:
    """Keys of ``params`` the model class does not take (none if it takes ``**kwargs``)."""
    if resolve_kind(kind).takes_any_keyword():
        return []
    return sorted((k for k in params if k not in _param_names(kind)), key=str)


def _geometry(kind: str, shape: list) -> dict:
    """The image geometry filled into a model's params: whichever of ``image_shape`` or ``channels`` +
    ``image_size`` the kind's class (from the family registry) takes in its constructor; the VAE takes the pair,
    the other built-ins ``image_shape``."""
    names = resolve_kind(kind).param_names()
    fill = {"image_shape": shape} if "image_shape" in names else {}
    fill.update({k: v for k, v in (("channels", shape[0]), ("image_size", shape[1])) if k in names})
    return fill


def _takes_classes(kind: str) -> bool:
    """Whether ``conditional: true`` applies: a built-in kind of a family that fills the class count
    (:attr:`genbench.families.Family.fills_classes`: the VAE), or an outside class whose constructor takes
    num_classes."""
    mk = resolve_kind(kind)
    if mk.external:
        return "num_classes" in mk.param_names()
    return get_family(mk.family).fills_classes


def _params(kind: str, params: dict, w: str, info, conditional: bool) -> dict:
    """The model's parameters: names checked against its constructor, common ones type- and range-checked,
    geometry and class count filled in from the dataset."""
    bad = _unknown_params(kind, params)
    if bad:
        names = _param_names(kind)
        near = difflib.get_close_matches(str(bad[0]), names, n=1, cutoff=0.6)
        raise GenbenchError(f"{w}.params: {kind!r} takes no parameter(s) {', '.join(map(repr, bad))}"
                            + (f"; did you mean `{near[0]}`?" if near else "") + f"; it takes {', '.join(names)}")
    p = {k: check_value(v, PARAMS[k], f"{w}.params.{k}") if k in PARAMS else v for k, v in params.items()}
    shape = list(info.image_shape)
    fill = _geometry(kind, shape)
    for k, v in fill.items():
        if k in p and p[k] != v:
            raise GenbenchError(f"{w}.params.{k}: {p[k]} does not match the images of {info.name} "
                                f"{tuple(shape)}; drop it (it is filled in from the dataset)")
        p[k] = v
    if conditional and _takes_classes(kind):
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
    return p


def parse_model(mname, m, w: str, top: dict, info) -> ModelConfig:
    """One ``models:`` entry ``m`` named ``mname`` at dotted place ``w``, with the study's top-level values
    ``top`` and the dataset's ``info``; GenbenchError (one line) on any bad value."""
    if not (isinstance(mname, str) and folder_name(mname)):
        raise GenbenchError(f"{w}: bad model name {short(mname)}; use {NAME_RULE}")
    m = validate(m, MODEL, w)
    try:
        resolve_kind(m["kind"])  # an import path or entry point is imported and its class checked here
    except GenbenchError as e:
        raise GenbenchError(f"{w}.kind: {e}") from None
    if m["conditional"] and not _takes_classes(m["kind"]):
        raise GenbenchError(f"{w}.conditional: applies to VAEs; a {m['kind']} is conditioned by "
                            f"params.num_classes")
    sampling = _sampling_field(m, m["kind"], dict(m["params"] or {}), w)  # before _params: names moved fields
    params = _params(m["kind"], dict(m["params"] or {}), w, info, m["conditional"])
    opt = validate(m["optimizer"], OPTIMIZER, f"{w}.optimizer")
    opt = {**m["optimizer"], **{k: v for k, v in opt.items() if k in m["optimizer"] or k == "fused"}}
    if "lr" in opt:
        opt["lr"] = float(opt["lr"])
    div = validate(m["divergence"] or {}, DIVERGENCE, f"{w}.divergence")
    pick = lambda k: top[k] if m[k] is None else m[k]  # noqa: E731 - a model's value or the study-wide one
    return ModelConfig(
        name=mname, kind=m["kind"], params=params, optimizer=opt, epochs=m["epochs"], batch_size=pick("batch_size"),
        seed=top["seed"], precision=resolve_precision(pick("precision")), dataset=top["dataset"], ema_decay=m["ema_decay"],
        log_every=pick("log_every"), train_subset=top["train_subset"], threads=top["threads"], divergence=div,
        channels_last=pick("channels_last"), compile=pick("compile"), conditional=m["conditional"],
        sampling=sampling)
