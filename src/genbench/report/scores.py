"""Normalised criteria in [0, 1] (higher is better), computed from measured metrics. The formulas are shown in
the report next to the absolute values they come from.
"""

from __future__ import annotations

import math

FORMULAS = {
    "quality": "0.5 * clip((IS - 1) / (IS_real - 1), 0, 1) + 0.5 * clip(FID_real / FID, 0, 1)  "
               "(IS on the classifier; FID on Inception pool3 at the same N; 'real' = held-out real images)",
    "stability": "1 / (1 + cv), cv = std / |mean| of the training loss over the last half of logged steps "
                 "(worse of G and D for GANs)",
    "controllability": "conditional accuracy of label-conditioned samples (classifier on real data); "
                       "0 for unconditional models, which cannot be steered by label",
    "efficiency": "clip(1 - log10(gen_seconds_per_1000 / 0.01) / 5, 0, 1): 0.01 s per 1,000 images -> 1, "
                  "1,000 s -> 0; for a model with a sampler sweep, the fastest setting whose quality stays within the "
                  "sweep's tolerance of the reference sampler",
}
CRITERIA = tuple(FORMULAS)


def _clip(v: float) -> float:
    return float(min(max(v, 0.0), 1.0))


def normalised_scores(record: dict, real: dict, gen_seconds_per_1000: float | None = None) -> dict[str, float]:
    """The four criteria of one model, each in [0, 1] (see ``FORMULAS``). ``gen_seconds_per_1000`` overrides
    the model's default-sampler generation time (the sweep's chosen setting)."""
    m, r = record["metrics"], real["metrics"]
    q_is = _clip((m["is"]["value"] - 1) / max(r["is"]["value"] - 1, 1e-9))
    q_fid = _clip(r["fid_inception"]["value"] / max(m["fid_inception"]["value"], 1e-9))
    ctrl = m["conditional_accuracy"]["value"] if "conditional_accuracy" in m and record["conditional"] else 0.0
    g = max(gen_seconds_per_1000 or m["efficiency"]["gen_seconds_per_1000"], 1e-2)
    stab = m["stability"]["score"]
    return {"quality": 0.5 * q_is + 0.5 * q_fid, "stability": stab if stab == stab else 0.0,
            "controllability": float(ctrl), "efficiency": _clip(1 - math.log10(g / 0.01) / 5)}
