"""Model kinds: a study's ``kind`` -> the model class, its :class:`~genbench.families.base.Family`, a constructor.

A kind is one of three things:

- a built-in name, declared by its family's module (``kinds`` of each registered Family: ``vae``, ``gan``,
  ``cgan``, ``dcgan``, ``sngan``, ``ddpm``, ``flow``, ``shortcut``);
- an import path ``package.module:ClassName`` (the module is imported, so a study naming one runs that module's
  code, as ``python -c "import package.module"`` would);
- the name of an installed entry point in the group ``genbench.models`` (a package declares
  ``[project.entry-points."genbench.models"] myvae = "mypkg.models:MyVAE"``).

Every class, built-in or not, follows the model protocol (docs/BRING_YOUR_OWN.md); :func:`resolve_kind` checks
it when the class is loaded and names what is missing in one line. The class says which training objective and
family metrics it gets with a class attribute ``genbench_family``, the name of a registered family (the built-in
ones below, or one a plugin registers; :mod:`genbench.families.base`):

=============  ====================================================================================================
family         what the class offers (besides ``num_classes`` and ``sample(n, y=None, generator=None)``)
=============  ====================================================================================================
``likelihood`` ``training_losses(x, y=None, *, generator=None) -> {"loss": scalar, ...}``: one Adam minimises
               ``loss``; the generic metrics only.
``vae``        the likelihood objective plus genbench's VAE interface (``encode``, ``decode``, ``decode_logits``,
               ``log_px_z``, attributes ``latent_dim``, ``beta``, ``likelihood``, ``encoder_kind``): it gets the
               VAE family metrics (ELBO, IWAE bound, active units) and the VAE experiments. Subclassing
               :class:`~genbench.models.vae.ConvVAE` gives all of it.
``gan``        the adversarial pair: ``generate(z, y)``, ``discriminator_losses``, ``generator_losses``,
               ``generator_parameters()``, ``discriminator_parameters()`` and ``z_dim``; two Adams, one D step
               then one G step per batch (as :class:`~genbench.models.gan.MLPGAN`).
``diffusion``  a subclass of :class:`~genbench.models.ddpm.DDPM` (genbench's samplers use its noise schedule).
``flow``       a subclass of :class:`~genbench.models.flow.FlowMatching`.
``shortcut``   a subclass of :class:`~genbench.models.shortcut.ShortcutModel` (its sampler calls
               ``model(x_t, t, y, d=d)`` and reads ``max_steps``).
=============  ====================================================================================================

A class may instead supply its own optimisation step as a static method ``genbench_step(model, opts, x, y, *,
generator, autocast, ddp=None) -> dict[str, float]`` (the signature of
:func:`genbench.training.objectives.likelihood_step`); it then needs no ``training_losses``.

Loading a trained run (:func:`load_trained`) and a curve snapshot (:func:`load_snapshot`) build the model through
the same door.

Out-of-tree code is held to its contract at the boundary (issue 29): a module or entry point that raises *or calls
``sys.exit``* while it is imported, or a constructor that does, is one line naming it (``KeyboardInterrupt`` still
stops the run); a class's own ``genbench_step`` (and a plugin family's step) is wrapped by :func:`checked_step`,
which refuses a return value that is not a dict of loss name -> float holding the family's loss keys. The
objectives check ``training_losses`` (:mod:`genbench.training.objectives`) and :func:`genbench.families.draw.draw`
checks what ``sample()`` returns.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass

from pathlib import Path

from torch import nn

from genbench.errors import GenbenchError
from genbench.families.base import Family, builtin_kinds, family_names, get_family

ENTRY_POINT_GROUP = "genbench.models"
_PROTOCOL = "docs/BRING_YOUR_OWN.md"


@dataclass(frozen=True)
class ModelKind:
    """A resolved model kind: the study's ``name`` for it, the class, its family and where it came from
    (``builtin``, ``import`` or ``entry point``)."""

    name: str
    cls: type
    family: str
    origin: str = "builtin"

    @property
    def external(self) -> bool:
        return self.origin != "builtin"

    @property
    def spec(self) -> Family:
        """The registered :class:`Family` (looked up on each access, so a replaced registration is seen)."""
        return get_family(self.family)

    def build(self, params: dict) -> nn.Module:
        """The model built from ``params`` (:func:`build_model`)."""
        return build_model(self.name, params)[0]

    def step(self):
        """The optimisation step: the class's own ``genbench_step`` when it has one, else the family's; a step
        written outside genbench comes wrapped in :func:`checked_step`."""
        own = getattr(self.cls, "genbench_step", None)
        if own is not None:
            return checked_step(own, f"model kind {self.name!r}: {self.cls.__name__}.genbench_step",
                                self.spec.loss_keys)
        step = self.spec.step
        if getattr(step, "__module__", "").startswith("genbench."):
            return step
        return checked_step(step, f"model kind {self.name!r}: the step of family {self.family!r}",
                            self.spec.loss_keys)

    def param_names(self) -> list[str]:
        """The constructor's keyword parameters, with those of the parent constructors it passes ``**kwargs``
        to (a subclass of ConvVAE written as ``__init__(self, *, extra=1, **kw)`` takes ConvVAE's too)."""
        return _init_chain(self.cls)[0]

    def takes_any_keyword(self) -> bool:
        """True when ``**kwargs`` end outside nn.Module (then unknown parameter names cannot be refused early)."""
        return _init_chain(self.cls)[1]


def _init_chain(cls: type) -> tuple[list[str], bool]:
    """(keyword parameter names along the ``__init__`` chain that forwards ``**kwargs``, whether the chain ends
    in an open ``**kwargs``). nn.Module's own ``__init__`` takes no model parameters and closes the chain."""
    names: list[str] = []
    open_kw = False
    for c in cls.__mro__:
        if c in (nn.Module, object):
            return names, False
        if "__init__" not in vars(c):
            continue
        params = list(inspect.signature(c.__init__).parameters.values())[1:]  # without self
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                  and p.name not in names]
        open_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        if not open_kw:
            break
    return names, open_kw


def _entry_points() -> dict:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _unknown(kind: str) -> GenbenchError:
    eps = sorted(_entry_points())
    return GenbenchError(f"unknown model kind {kind!r}; choose one of: {', '.join(builtin_kinds())}, an import path "
                         f"`package.module:ClassName`, or an installed `{ENTRY_POINT_GROUP}` entry point ("
                         + (", ".join(eps) if eps else "none installed") + ")")


def _import(kind: str) -> type:
    """The class named by ``package.module:ClassName`` (the module imported)."""
    mod_name, _, attr = kind.partition(":")
    if not mod_name or not attr or mod_name.endswith(".py") or not all(
            p.isidentifier() for p in mod_name.split(".") + attr.split(".")):
        raise GenbenchError(f"model kind {kind!r}: an import path is `package.module:ClassName` (a dotted module "
                            f"name, no '.py' or '/'); fix the spelling")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise GenbenchError(f"model kind {kind!r}: no module named {e.name or mod_name!r}; install the package or "
                            f"add the folder holding it to PYTHONPATH") from e
    except (Exception, SystemExit) as e:  # noqa: BLE001 - the module failed at import: SyntaxError, sys.exit...
        first = _first_line(e)
        raise GenbenchError(f"model kind {kind!r}: importing {mod_name!r} failed ({type(e).__name__}: {first}); "
                            f"fix that module (`python -c \"import {mod_name}\"` shows the traceback)") from e
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            classes = sorted(n for n, v in vars(mod).items() if isinstance(v, type) and issubclass(v, nn.Module)
                             and v.__module__ == mod.__name__)
            raise GenbenchError(f"model kind {kind!r}: module {mod_name!r} has no attribute {attr!r}; check the name "
                                f"after ':' (its nn.Module classes: {', '.join(classes) or 'none'})")
        obj = getattr(obj, part)
    return obj


def _first_line(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"[:160]
    return (str(e).strip().splitlines() or [""])[0][:160]


def check_protocol(cls, kind: str) -> str:
    """Check that ``cls`` follows the model protocol; returns its family.

    Raises:
        GenbenchError: one line naming the first thing missing and the fix.
    """
    where = f"model kind {kind!r}"
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise GenbenchError(f"{where}: {getattr(cls, '__name__', type(cls).__name__)!r} is not a torch.nn.Module "
                            f"subclass; point at a model class (see {_PROTOCOL})")
    family = getattr(cls, "genbench_family", None)
    if not isinstance(family, str) or not family:
        family = None
    else:
        try:
            spec = get_family(family)
        except GenbenchError:
            family = None
    if family is None:
        got = getattr(cls, "genbench_family", None)
        raise GenbenchError(f"{where}: {cls.__name__} sets no valid class attribute `genbench_family` (got "
                            f"{got!r}); add genbench_family = one of {', '.join(map(repr, family_names()))} "
                            f"(see {_PROTOCOL})")
    base = spec.base
    if base is not None and not issubclass(cls, base):
        raise GenbenchError(f"{where}: family {family!r} is drawn by genbench's samplers, which need "
                            f"{base.__module__}.{base.__name__}; subclass it, or use genbench_family = 'likelihood' "
                            f"with your own sample()")
    step = getattr(cls, "genbench_step", None)
    if step is not None and not callable(step):
        raise GenbenchError(f"{where}: {cls.__name__}.genbench_step is not callable; make it a @staticmethod "
                            f"(model, opts, x, y, *, generator, autocast, ddp=None) -> dict of floats")
    need = [m for m in spec.methods if not (step is not None and m == "training_losses")]
    missing = [m for m in need if not callable(getattr(cls, m, None))]
    if missing:
        raise GenbenchError(f"{where}: {cls.__name__} (genbench_family {family!r}) lacks "
                            f"{', '.join(m + '()' for m in missing)}; implement "
                            f"{'them' if len(missing) > 1 else 'it'} (see {_PROTOCOL})")
    return family


@functools.lru_cache(maxsize=None)
def resolve_kind(kind: str) -> ModelKind:
    """The :class:`ModelKind` of a study's ``kind`` string (built-in name, import path or entry point), its
    class checked against the model protocol.

    Raises:
        GenbenchError: unknown kind, a module that cannot be imported, a missing attribute, or a class that does
            not follow the protocol (one line each, naming the fix).
    """
    if not isinstance(kind, str):
        raise GenbenchError(f"model kind {kind!r}: expected a string")
    builtin = builtin_kinds()
    if kind in builtin:
        cls, family = builtin[kind]
        return ModelKind(kind, cls, family)
    if ":" in kind:
        cls, origin = _import(kind), "import"
    else:
        eps = _entry_points()
        if kind not in eps:
            raise _unknown(kind)
        try:
            cls, origin = eps[kind].load(), "entry point"
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the installed package's import failed or exited
            raise GenbenchError(f"model kind {kind!r}: loading entry point {eps[kind].value!r} failed "
                                f"({type(e).__name__}: {_first_line(e)[:120]}); reinstall or fix that package") from e
    return ModelKind(kind, cls, check_protocol(cls, kind), origin)


def _bad_logs(logs, keys) -> str | None:
    """What is wrong with a step's return value (None: a dict of str -> int/float holding ``keys``)."""
    import numbers

    if not isinstance(logs, dict):
        return f"returned {type(logs).__name__} ({_short(logs)}), not a dict"
    missing = [k for k in keys if k not in logs]
    if missing:
        return f"returned a dict without {', '.join(map(repr, missing))} (keys: {_short(list(logs))})"
    for k, v in logs.items():
        if not isinstance(k, str) or not k:
            return f"returned a dict with the key {_short(k)}, not a loss name"
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            what = (f"a tensor of shape {tuple(v.shape)}" if hasattr(v, "shape") and hasattr(v, "dtype")
                    else type(v).__name__)
            return f"returned {k!r}: {what}, not a float (return loss.item())"
    return None


def _short(v) -> str:
    r = " ".join(repr(v).split())
    return r if len(r) <= 50 else r[:47] + "..."


def checked_step(fn, where: str, keys=("loss",)):
    """``fn`` (a training step written outside genbench) with its return value checked on every call: a dict of
    loss name -> Python float holding the family's loss ``keys``. No host sync: the values are floats already.

    Raises (from the wrapped call):
        GenbenchError: ``<where> returned ...; it must return a dict of loss name -> float with <keys>``.
    """
    keys = tuple(keys or ())

    @functools.wraps(fn)
    def step(model, opts, x, y, **kw):
        logs = fn(model, opts, x, y, **kw)
        bad = _bad_logs(logs, keys)
        if bad is not None:
            raise GenbenchError(f"{where} {bad}; the contract is a dict of loss name -> float with "
                                f"{', '.join(map(repr, keys)) or 'any keys'} (see {_PROTOCOL})")
        return {k: float(v) for k, v in logs.items()}

    step.genbench_checked = True
    return step


def family_of_kind(kind: str) -> str:
    """The family name (objective and family metrics) of ``kind``: a registered family."""
    return resolve_kind(kind).family


def check_instance(model: nn.Module, kind: str) -> None:
    """The protocol's instance attributes, after construction: ``num_classes`` an int >= 0, and the family's
    attributes (``latent_dim``... for ``vae``, ``z_dim`` for ``gan``).

    Raises:
        GenbenchError: one line naming the missing attribute.
    """
    k = getattr(model, "num_classes", None)
    name = type(model).__name__
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise GenbenchError(f"model kind {kind!r}: {name} has no integer attribute num_classes >= 0 (got {k!r}); "
                            f"set self.num_classes in __init__ (0 = unconditional)")
    family = getattr(type(model), "genbench_family", None) or resolve_kind(kind).family
    missing = [a for a in get_family(family).attributes if not hasattr(model, a)]
    if missing:
        raise GenbenchError(f"model kind {kind!r}: {name} (genbench_family {family!r}) has no attribute(s) "
                            f"{', '.join(missing)}; set them in __init__ (see {_PROTOCOL})")


def build_model(kind: str, params: dict) -> tuple[nn.Module, str]:
    """Instantiate model ``kind`` with ``params`` (keywords); returns (module, family).

    Raises:
        GenbenchError: unknown kind or a class off the protocol (:func:`resolve_kind`), a parameter the model
            does not take, or a built model without the protocol's attributes.
    """
    mk = resolve_kind(kind)
    try:
        model = mk.cls(**params)
    except (TypeError, ValueError) as e:
        raise GenbenchError(f"bad parameters for model {kind!r}: {e}; see the study file's `params`") from e
    except (Exception, SystemExit) as e:  # noqa: BLE001 - an outside class's constructor failed: one line
        if not mk.external:
            raise
        raise GenbenchError(f"model kind {kind!r}: {mk.cls.__name__}(**params) raised {type(e).__name__}: "
                            f"{_first_line(e)[:120]}; fix its constructor (--debug shows the traceback)") from e
    if mk.external:
        check_instance(model, kind)
    return model, mk.family


def load_trained(run_dir: Path, *, use_ema: bool = True):
    """Load a trained model for sampling/evaluation: (model in eval mode on the run's device, checkpoint dict).

    Uses the EMA weights when the run kept an EMA (and ``use_ema``).

    Raises:
        GenbenchError: no readable checkpoint, a damaged config, or weights that do not fit the model config.
    """
    from genbench.runtime.device import get_device
    from genbench.training.checkpoint import load_checkpoint

    path = Path(run_dir) / "checkpoints" / "last.pt"
    ck = load_checkpoint(path)
    mcfg = ck["config"]["model"]
    fix = f"retrain it (`genbench train {Path(run_dir).name} --overwrite` or `genbench run --overwrite`) or restore it"
    if not isinstance(mcfg.get("resolved_params"), dict):
        raise GenbenchError(f"{path} is a damaged genbench checkpoint (no config.model.resolved_params); {fix}")
    resolve_kind(mcfg["kind"])  # an outside model's package must be importable: its own one-line error
    try:
        model, _ = build_model(mcfg["kind"], mcfg["resolved_params"])
    except (GenbenchError, RuntimeError) as e:  # parameters a model cannot be built from (a negative width...)
        raise GenbenchError(f"{path}: its model config does not build ({str(e)[:160]}); {fix}") from e
    try:
        state = ck["ema"]["model"] if (use_ema and ck.get("ema")) else ck["model"]
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as e:  # missing/unexpected keys, size mismatch, not a mapping
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise GenbenchError(f"{path}: its weights do not match its own model config ({first}); {fix}") from e
    return model.to(get_device()).eval(), ck


def load_snapshot(path: Path):
    """A quality-vs-compute snapshot's model (eval mode, CPU) and its record (everything but the weights); the
    file is read and checked by :func:`genbench.training.curve.read_snapshot`.

    Raises:
        GenbenchError: unreadable or not a genbench curve snapshot, or weights that do not fit its config.
    """
    from genbench.training.curve import read_snapshot, snapshot_error

    ck = read_snapshot(path)
    try:
        mcfg = ck["config"]["model"]
        model, _ = build_model(mcfg["kind"], mcfg["resolved_params"])
        model.load_state_dict(ck["model"])
    except Exception as e:  # noqa: BLE001 - KeyError, RuntimeError (state dict), a model that does not build
        raise snapshot_error(path, e) from e
    return model.eval(), {k: v for k, v in ck.items() if k != "model"}
