"""Model families: one :class:`Family` spec per family in one registry (:mod:`genbench.families.base`).

A family composes a model (:mod:`genbench.models`), a training objective (:mod:`genbench.training.objectives`) and
samplers (:mod:`genbench.sampling`), so it lives above those three and below the metrics and studies that ask it.
Adding a family is one module defining a ``Family`` plus one registration line below (or, for a plugin,
:func:`register_family` / a ``genbench.families`` entry point).
"""

from genbench.families.base import (
    FAMILY_ENTRY_POINT_GROUP, Family, Samplers, builtin_kinds, family_names, family_of, get_family, register_family)
from genbench.families.diffusion import DIFFUSION
from genbench.families.flow import FLOW
from genbench.families.gan import GAN
from genbench.families.likelihood import LIKELIHOOD
from genbench.families.shortcut import SHORTCUT
from genbench.families.vae import VAE

for _f in (LIKELIHOOD, VAE, GAN, DIFFUSION, FLOW, SHORTCUT):  # the registration lines
    register_family(_f)

from genbench.families.draw import (  # noqa: E402 - after the registrations they read
    check_settings, draw, drawer, multi_step_families, nfe, resolve, sampler_family, sampler_info, step_limit)
from genbench.families.kinds import (  # noqa: E402
    ENTRY_POINT_GROUP, ModelKind, build_model, check_instance, check_protocol, family_of_kind, load_snapshot,
    load_trained, resolve_kind)

__all__ = ["ENTRY_POINT_GROUP", "FAMILY_ENTRY_POINT_GROUP", "Family", "ModelKind", "Samplers", "build_model",
           "builtin_kinds", "check_instance", "check_protocol", "check_settings", "draw", "drawer", "family_names",
           "family_of", "family_of_kind", "get_family", "load_snapshot", "load_trained", "multi_step_families",
           "nfe", "register_family", "resolve", "resolve_kind", "sampler_family", "sampler_info", "step_limit"]
