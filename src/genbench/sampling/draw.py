"""One door for drawing images from any genbench model, with the sampler settings kept out of the models.

Diffusion-family models (:class:`genbench.models.ddpm.DDPM`, family ``diffusion``;
:class:`genbench.models.flow.FlowMatching`, family ``flow``) are a network, a noise schedule or path, and a
training loss: they know no sampler. How to draw from them is a *settings* mapping, a study's model-level
``sampling:`` field (values per profile like every field)::

    sampling: {sampler: ddim, steps: {smoke: 5, quick: 20, full: 100}, guidance_scale: 1.5, eta: 0.0}

validated by :func:`check_settings`. :func:`draw` runs the family's loop (:mod:`genbench.sampling.diffusion`,
:mod:`genbench.sampling.flow`) and clamps to the image range; every other model draws with its own
``sample(n, y, generator)`` (one decoder or generator pass). The bank, the sweeps and ``genbench sample`` call
:func:`draw`; :func:`sampler_info` gives the manifest fields (sampler, steps, NFE, guidance scale).
"""

from __future__ import annotations

import math

import torch

from genbench.errors import GenbenchError
from genbench.models.ddpm import DDPM
from genbench.models.flow import FlowMatching
from genbench.sampling.diffusion import SAMPLERS, diffusion_loop
from genbench.sampling.flow import FLOW_SAMPLERS, flow_loop

FAMILY_SAMPLERS = {"diffusion": SAMPLERS, "flow": FLOW_SAMPLERS}
DEFAULTS = {"diffusion": {"sampler": "ddim", "steps": 50, "guidance_scale": 1.0, "eta": 0.0},
            "flow": {"sampler": "heun", "steps": 20, "guidance_scale": 1.0, "eta": 0.0}}
KEYS = ("sampler", "steps", "guidance_scale", "eta")


def family_of(model) -> str | None:
    """"diffusion", "flow", or None for a model that samples in one pass (VAE, GANs)."""
    if isinstance(model, DDPM):
        return "diffusion"
    if isinstance(model, FlowMatching):
        return "flow"
    return None


def _number(v) -> bool:
    """A finite int or float (not a bool, NaN or inf)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_settings(raw: dict | None, family: str, *, timesteps: int = 1000, where: str = "sampling") -> dict:
    """Resolve and validate sampler settings for a model of ``family`` (defaults: :data:`DEFAULTS`).

    Args:
        raw: a mapping with keys among sampler, steps, guidance_scale, eta (missing keys take the defaults).
        family: "diffusion" or "flow".
        timesteps: the diffusion model's T (DDIM steps must divide it).
        where: the field's location for error messages (e.g. ``mnist_four.yaml.models.ddpm.sampling``).

    Returns:
        {"sampler": str, "steps": int, "guidance_scale": float, "eta": float}; for the DDPM ancestral sampler
        ``steps`` is T (it always walks every timestep).

    Raises:
        GenbenchError: one line naming the bad key and the allowed values.
    """
    if family not in FAMILY_SAMPLERS:
        raise GenbenchError(f"{where}: sampler settings apply to diffusion and flow models only")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise GenbenchError(f"{where}: expected a mapping with keys among {', '.join(KEYS)}, got {raw!r}")
    unknown = sorted(map(str, set(raw) - set(KEYS)))
    if unknown:
        raise GenbenchError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}")
    s = {**DEFAULTS[family], **raw}
    names = FAMILY_SAMPLERS[family]
    if s["sampler"] not in names:
        raise GenbenchError(f"{where}.sampler: {s['sampler']!r} is not a {family} sampler; choose one of "
                            f"{', '.join(names)}")
    if not isinstance(s["steps"], int) or isinstance(s["steps"], bool) or s["steps"] < 1:
        raise GenbenchError(f"{where}.steps: expected an integer >= 1, got {s['steps']!r}")
    if s["sampler"] == "ddpm":
        s["steps"] = timesteps
    if s["sampler"] == "ddim" and timesteps % s["steps"]:
        divisors = [d for d in (10, 20, 25, 50, 100, 250, 500, 1000) if timesteps % d == 0]
        raise GenbenchError(f"{where}.steps: DDIM with {s['steps']} steps needs a divisor of T={timesteps} (the "
                            f"step would leave the timestep list); e.g. {', '.join(map(str, divisors))}")
    if not _number(s["guidance_scale"]) or s["guidance_scale"] < 0:
        raise GenbenchError(f"{where}.guidance_scale: expected a number >= 0, got {s['guidance_scale']!r}")
    if not _number(s["eta"]) or not 0 <= s["eta"] <= 1:
        raise GenbenchError(f"{where}.eta: expected a number in [0, 1], got {s['eta']!r}")
    return {"sampler": s["sampler"], "steps": s["steps"], "guidance_scale": float(s["guidance_scale"]),
            "eta": float(s["eta"])}


def resolve(model, settings: dict | None) -> dict | None:
    """The model's validated settings (None for one-pass models, which must get none).

    Raises:
        GenbenchError: settings for a one-pass model, or invalid settings (:func:`check_settings`).
    """
    family = family_of(model)
    if family is None:
        if settings:
            raise GenbenchError("sampler settings (--sampler/--steps, `sampling:`) apply to diffusion and flow "
                                "models only")
        return None
    return check_settings(settings, family, timesteps=getattr(model, "timesteps", 1000))


def nfe(model, settings: dict | None) -> int:
    """Network evaluations per image: steps (x2 for Heun), x2 with classifier-free guidance (w not 0 or 1 on a
    conditional model); 1 for one-pass models."""
    s = resolve(model, settings)
    if s is None:
        return 1
    per_step = 2 if s["sampler"] == "heun" else 1
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
        return model.sample(n, y=y, generator=generator)
    device = next(model.parameters()).device
    if model.num_classes and y is None:
        y = torch.randint(0, model.num_classes, (n,), generator=generator)
    if y is not None:
        y = y.to(device)
    x = torch.randn((n, *model.image_shape), generator=generator).to(device)
    if isinstance(model, FlowMatching):
        x = flow_loop(model, x, y=y, sampler=s["sampler"], steps=s["steps"], guidance_scale=s["guidance_scale"])
    else:
        x = diffusion_loop(model, x, y=y, generator=generator, sampler=s["sampler"], steps=s["steps"],
                           guidance_scale=s["guidance_scale"], eta=s["eta"])
    return x.clamp(-1, 1)
