"""One door for drawing images from any genbench model, with the sampler settings kept out of the models.

Diffusion-family models (:class:`genbench.models.ddpm.DDPM`, family ``diffusion``;
:class:`genbench.models.flow.FlowMatching`, family ``flow``; :class:`genbench.models.shortcut.ShortcutModel`,
family ``shortcut``) are a network, a noise schedule or path, and a training loss: they know no sampler. How to
draw from them is a *settings* mapping, a study's model-level ``sampling:`` field (values per profile like every
field)::

    sampling: {sampler: ddim, steps: {smoke: 5, quick: 20, full: 100}, guidance_scale: 1.5, eta: 0.0}

validated by :func:`check_settings` against the family's :class:`~genbench.families.base.Samplers` (names,
defaults, sampler-specific rules). :func:`draw` runs the family's loop (:mod:`genbench.sampling.diffusion`,
:mod:`genbench.sampling.flow`, :mod:`genbench.sampling.shortcut`) and clamps to the image range; a family
without samplers draws with the model's own ``sample(n, y, generator)`` (one decoder or generator pass). The bank
(through :func:`drawer`), the sweeps and ``genbench sample`` call :func:`draw`; :func:`sampler_info` gives the
manifest fields (sampler, steps, NFE, guidance scale).

Nothing a model returns is scored unchecked (issue 29): :func:`check_images` holds every batch :func:`draw`
returns to the contract (a floating tensor (n, C, H, W), C = 1 or 3, the model's ``image_shape`` when it has one,
finite, in [-1, 1]); one line names the model class and what broke. The value check is one host sync per
generation batch (a min and a max), against the whole sampling of that batch.
"""

from __future__ import annotations

import math

import torch

from genbench.errors import GenbenchError
from genbench.families.base import Family, family_names, family_of, get_family

KEYS = ("sampler", "steps", "guidance_scale", "eta")
MAX_STEPS = 100_000  # as --steps and the sampler_steps parameter
MAX_GUIDANCE = 1000.0  # as the guidance_scale model parameter (studies/schema.py)
RANGE_TOLERANCE = 1e-3  # a sample() output beyond [-1 - tol, 1 + tol] breaks the contract (round-off passes)


def check_images(x, n: int, model, where: str = "sample()") -> None:
    """Refuse a batch that breaks the contract ``float (n, C, H, W) in [-1, 1]``, C in (1, 3).

    Raises:
        GenbenchError: one line naming the model class, ``where`` and what was wrong.
    """
    cls = type(model)
    name = f"{cls.__module__}:{cls.__qualname__}"

    def bad(what: str) -> GenbenchError:
        return GenbenchError(f"model {name}: {where} {what}; the contract is a float tensor (n, C, H, W) with C = 1 "
                             f"or 3, values in [-1, 1] (see docs/BRING_YOUR_OWN.md)")

    if not isinstance(x, torch.Tensor):
        r = " ".join(repr(x).split())
        raise bad(f"returned {type(x).__name__} ({r if len(r) <= 40 else r[:37] + '...'}), not a torch.Tensor")
    if not x.is_floating_point():
        raise bad(f"returned dtype {x.dtype}, not floating point (uint8 images: divide by 127.5 and subtract 1)")
    shape = tuple(x.shape)
    if x.dim() != 4 or shape[0] != n or shape[1] not in (1, 3) or min(shape) < 1:
        raise bad(f"returned shape {shape} for n={n}")
    want = getattr(model, "image_shape", None)
    if isinstance(want, (tuple, list)) and len(want) == 3 and tuple(shape[1:]) != tuple(int(v) for v in want):
        raise bad(f"returned images of shape {shape[1:]}, but the model's image_shape is {tuple(want)}")
    lo, hi = torch.stack([x.min(), x.max()]).float().tolist()  # one host sync; NaN propagates through min/max
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise bad("returned NaN or infinite values")
    if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise bad(f"returned values in [{lo:.4g}, {hi:.4g}], outside [-1, 1] (map them there, e.g. tanh or "
                  f"2 * x - 1 for [0, 1])")


def multi_step_families() -> dict[str, Family]:
    """The registered families that draw with samplers (diffusion, flow, shortcut, ...): ``{name: Family}``."""
    return {n: f for n in family_names() if (f := get_family(n)).samplers is not None}


def sampler_family(sampler: str) -> str | None:
    """The name of the family whose samplers include ``sampler`` (None if none does)."""
    return next((n for n, f in multi_step_families().items() if sampler in f.samplers.names), None)


def _spec(model) -> Family | None:
    """The model's Family when it draws with samplers, None for one-pass models."""
    fam = family_of(model)
    return fam if fam.samplers is not None else None


def _number(v) -> bool:
    """A finite int or float (not a bool, NaN or inf)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def step_limit(family: str | Family, source) -> int:
    """The value of the family's step-bounding parameter (``samplers.limit``: the DDPM's ``timesteps``, a shortcut
    model's ``max_steps``) for ``source``, a built model (its attribute) or a study's params mapping; the default
    when absent or not a positive integer."""
    fam = family if isinstance(family, Family) else get_family(family)
    name, default = fam.samplers.limit if fam.samplers is not None else ("timesteps", 1000)
    v = source.get(name, default) if isinstance(source, dict) else getattr(source, name, default)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else default


def check_settings(raw: dict | None, family: str | Family, *, timesteps: int = 1000, where: str = "sampling") -> dict:
    """Resolve and validate sampler settings for a model of ``family`` (defaults: its ``samplers.defaults``).

    Args:
        raw: a mapping with keys among sampler, steps, guidance_scale, eta (missing keys take the defaults).
        family: a multi-step family or its name ("diffusion", "flow", "shortcut", ...).
        timesteps: the value of the family's ``samplers.limit`` parameter (:func:`step_limit`): the diffusion
            model's T (DDIM steps must divide it), a shortcut model's max_steps (steps at most that).
        where: the field's location for error messages (e.g. ``mnist_four.yaml.models.ddpm.sampling``).

    Returns:
        {"sampler": str, "steps": int, "guidance_scale": float, "eta": float}; for the DDPM ancestral sampler
        ``steps`` is T (it always walks every timestep).

    Raises:
        GenbenchError: one line naming the bad key and the allowed values.
    """
    fam = family if isinstance(family, Family) else get_family(family)
    if fam.samplers is None:
        raise GenbenchError(f"{where}: sampler settings apply to multi-step models only "
                            f"({', '.join(multi_step_families())})")
    family, sam = fam.name, fam.samplers
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise GenbenchError(f"{where}: expected a mapping with keys among {', '.join(KEYS)}, got {raw!r}")
    unknown = sorted(map(str, set(raw) - set(KEYS)))
    if unknown:
        raise GenbenchError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}")
    s = {**sam.defaults, **raw}
    names = sam.names
    if s["sampler"] not in names:
        raise GenbenchError(f"{where}.sampler: {s['sampler']!r} is not a {family} sampler; choose one of "
                            f"{', '.join(names)}")
    if not isinstance(s["steps"], int) or isinstance(s["steps"], bool) or not 1 <= s["steps"] <= MAX_STEPS:
        raise GenbenchError(f"{where}.steps: expected an integer in 1..{MAX_STEPS:,}, got {s['steps']!r}")
    if s["sampler"] in sam.fixed_steps:
        s["steps"] = timesteps
    if sam.check is not None:
        sam.check(s, timesteps, where)
    if not _number(s["guidance_scale"]) or not 0 <= s["guidance_scale"] <= MAX_GUIDANCE:
        raise GenbenchError(f"{where}.guidance_scale: expected a number in [0, {MAX_GUIDANCE:g}], got "
                            f"{s['guidance_scale']!r}")
    if not _number(s["eta"]) or not 0 <= s["eta"] <= 1:
        raise GenbenchError(f"{where}.eta: expected a number in [0, 1], got {s['eta']!r}")
    return {"sampler": s["sampler"], "steps": s["steps"], "guidance_scale": float(s["guidance_scale"]),
            "eta": float(s["eta"])}


def resolve(model, settings: dict | None) -> dict | None:
    """The model's validated settings (None for one-pass models, which must get none).

    Raises:
        GenbenchError: settings for a one-pass model, or invalid settings (:func:`check_settings`).
    """
    fam = _spec(model)
    if fam is None:
        if settings:
            raise GenbenchError(f"sampler settings (--sampler/--steps, `sampling:`) apply to multi-step models only "
                                f"({', '.join(multi_step_families())})")
        return None
    return check_settings(settings, fam, timesteps=step_limit(fam, model))


def nfe(model, settings: dict | None) -> int:
    """Network evaluations per image: steps (x2 for Heun), x2 with classifier-free guidance (w not 0 or 1 on a
    conditional model); 1 for one-pass models."""
    s = resolve(model, settings)
    if s is None:
        return 1
    per_step = _spec(model).samplers.evals_per_step.get(s["sampler"], 1)
    cfg = 2 if model.num_classes and s["guidance_scale"] not in (0.0, 1.0) else 1
    return s["steps"] * per_step * cfg


def sampler_info(model, settings: dict | None = None) -> dict:
    """Manifest fields: sampler name, steps, NFE per image, guidance scale (None if unconditional) and eta."""
    s = resolve(model, settings)
    if s is None:
        kind = "decoder" if hasattr(model, "latent_dim") else "generator"
        return {"sampler": f"single {kind} pass", "steps": 1, "nfe": 1, "guidance_scale": None}
    return {"sampler": s["sampler"], "steps": s["steps"], "nfe": nfe(model, s),
            "guidance_scale": s["guidance_scale"] if model.num_classes else None, "eta": s["eta"]}


@torch.no_grad()
def draw(model, n: int, *, y: torch.Tensor | None = None, generator: torch.Generator | None = None,
         settings: dict | None = None) -> torch.Tensor:
    """Draw n images from any genbench model.

    Args:
        model: a genbench model in eval mode (the EMA copy for evaluation), on its device.
        n: number of images.
        y: int64 (n,) labels for conditional models; None draws uniform labels (conditional diffusion-family
            models, from ``generator``) or none (unconditional).
        generator: CPU generator; draws the labels (if drawn), the starting noise and every stochastic step.
        settings: sampler settings for diffusion-family models (:func:`check_settings`; None = defaults);
            must be None or empty for one-pass models.

    Returns:
        float32 (n, C, H, W) in [-1, 1].

    Raises:
        GenbenchError: invalid settings.
    """
    s = resolve(model, settings)
    if s is None:
        x = model.sample(n, y=y, generator=generator)
        check_images(x, n, model)
        return x
    device = next(model.parameters()).device
    if model.num_classes and y is None:
        y = torch.randint(0, model.num_classes, (n,), generator=generator)
    if y is not None:
        y = y.to(device)
    x = torch.randn((n, *model.image_shape), generator=generator).to(device)
    x = _spec(model).samplers.loop(model, x, y=y, generator=generator, settings=s)
    x = x.clamp(-1, 1)  # NaN passes clamp: check_images still sees it
    check_images(x, n, model, f"the {s['sampler']} sampler")
    return x


def drawer(settings: dict | None = None):
    """``draw`` with the sampler settings bound: ``f(model, n, *, y, generator) -> images``, the form
    :func:`genbench.sampling.bank.generate` takes."""
    def f(model, n, *, y=None, generator=None):
        return draw(model, n, y=y, generator=generator, settings=settings)

    return f
