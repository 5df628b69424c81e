"""Model registry: a study's ``kind`` -> the model class, its family, and a constructor.

A kind is one of three things:

- a built-in name (:data:`MODEL_KINDS`: ``vae``, ``gan``, ``cgan``, ``dcgan``, ``ddpm``, ``flow``);
- an import path ``package.module:ClassName`` (the module is imported, so a study naming one runs that module's
  code, as ``python -c "import package.module"`` would);
- the name of an installed entry point in the group ``genbench.models`` (a package declares
  ``[project.entry-points."genbench.models"] myvae = "mypkg.models:MyVAE"``).

Every class, built-in or not, follows the model protocol (docs/BRING_YOUR_OWN.md); :func:`resolve_kind` checks
it when the class is loaded and names what is missing in one line. The class says which training objective and
family metrics it gets with a class attribute ``genbench_family``:

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
=============  ====================================================================================================

A class may instead supply its own optimisation step as a static method ``genbench_step(model, opts, x, y, *,
generator, autocast, ddp=None) -> dict[str, float]`` (the signature of
:func:`genbench.training.objectives.likelihood_step`); it then needs no ``training_losses``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
from dataclasses import dataclass

from torch import nn

from genbench.errors import GenbenchError
from genbench.models.dcgan import DCGAN
from genbench.models.ddpm import DDPM
from genbench.models.flow import FlowMatching
from genbench.models.gan import MLPGAN
from genbench.models.vae import ConvVAE

# kind -> (class, family). The family selects the training objective and the family metrics.
MODEL_KINDS: dict[str, tuple[type[nn.Module], str]] = {
    "vae": (ConvVAE, "vae"),
    "gan": (MLPGAN, "gan"),
    "cgan": (MLPGAN, "gan"),
    "ddpm": (DDPM, "diffusion"),
    "dcgan": (DCGAN, "gan"),
    "flow": (FlowMatching, "flow"),
}
FAMILIES = ("likelihood", "vae", "gan", "diffusion", "flow")
ENTRY_POINT_GROUP = "genbench.models"

# methods (callables on the class) each family needs; instance attributes are checked once built
_METHODS = {
    "likelihood": ("training_losses", "sample"),
    "vae": ("training_losses", "sample", "encode", "decode", "decode_logits", "log_px_z"),
    "gan": ("sample", "generate", "discriminator_losses", "generator_losses", "generator_parameters",
            "discriminator_parameters"),
    "diffusion": (), "flow": (),
}
_ATTRIBUTES = {"vae": ("latent_dim", "beta", "likelihood", "encoder_kind"), "gan": ("z_dim",)}
_BASES = {"diffusion": DDPM, "flow": FlowMatching}
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
    return GenbenchError(f"unknown model kind {kind!r}; choose one of: {', '.join(MODEL_KINDS)}, an import path "
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
    except Exception as e:  # noqa: BLE001 - the user's module failed at import: SyntaxError, ImportError, ...
        first = (str(e).strip().splitlines() or [""])[0][:160]
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
    if family not in FAMILIES:
        raise GenbenchError(f"{where}: {cls.__name__} sets no valid class attribute `genbench_family` (got "
                            f"{family!r}); add genbench_family = one of {', '.join(map(repr, FAMILIES))} "
                            f"(see {_PROTOCOL})")
    base = _BASES.get(family)
    if base is not None and not issubclass(cls, base):
        raise GenbenchError(f"{where}: family {family!r} is drawn by genbench's samplers, which need "
                            f"{base.__module__}.{base.__name__}; subclass it, or use genbench_family = 'likelihood' "
                            f"with your own sample()")
    step = getattr(cls, "genbench_step", None)
    if step is not None and not callable(step):
        raise GenbenchError(f"{where}: {cls.__name__}.genbench_step is not callable; make it a @staticmethod "
                            f"(model, opts, x, y, *, generator, autocast, ddp=None) -> dict of floats")
    need = [m for m in _METHODS[family] if not (step is not None and m == "training_losses")]
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
    if kind in MODEL_KINDS:
        cls, family = MODEL_KINDS[kind]
        return ModelKind(kind, cls, family)
    if ":" in kind:
        cls, origin = _import(kind), "import"
    else:
        eps = _entry_points()
        if kind not in eps:
            raise _unknown(kind)
        try:
            cls, origin = eps[kind].load(), "entry point"
        except Exception as e:  # noqa: BLE001 - the installed package's import failed
            raise GenbenchError(f"model kind {kind!r}: loading entry point {eps[kind].value!r} failed "
                                f"({type(e).__name__}: {str(e)[:120]}); reinstall or fix that package") from e
    return ModelKind(kind, cls, check_protocol(cls, kind), origin)


def family_of_kind(kind: str) -> str:
    """The family (objective and family metrics) of ``kind``: one of :data:`FAMILIES`."""
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
    missing = [a for a in _ATTRIBUTES.get(family, ()) if not hasattr(model, a)]
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
    except Exception as e:  # noqa: BLE001 - an outside class's constructor failed: one line, not a traceback
        if not mk.external:
            raise
        raise GenbenchError(f"model kind {kind!r}: {mk.cls.__name__}(**params) raised {type(e).__name__}: "
                            f"{str(e)[:120]}; fix its constructor (--debug shows the traceback)") from e
    if mk.external:
        check_instance(model, kind)
    return model, mk.family
