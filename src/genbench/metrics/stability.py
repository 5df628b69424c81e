"""Training stability from loss histories (no hand-set scores).

For a loss series L_1..L_n (the per-step log of the model's main losses), over its last half:
- ``cv``: coefficient of variation std(L) / |mean(L)| (fluctuation relative to level);
- ``trend``: least-squares slope over the last half, times its length, divided by |mean| (relative drift
  over the window; ~0 when converged, negative while still improving);
- ``oscillation``: fraction of sign changes between consecutive differences (0.5 ~ noise, 1 = zig-zag).
The stability score is ``1 / (1 + cv)`` in (0, 1], higher is steadier. For adversarial models the score is
taken on the worse (max cv) of the generator and discriminator losses.
"""

from __future__ import annotations

import numpy as np



def series_stats(values) -> dict:
    v = np.asarray(values, np.float64)
    v = v[len(v) // 2:]
    if len(v) < 3:
        return {"cv": float("nan"), "trend": float("nan"), "oscillation": float("nan"), "n": int(len(v))}
    mean = v.mean()
    cv = float(v.std() / max(abs(mean), 1e-12))
    slope = np.polyfit(np.arange(len(v)), v, 1)[0]
    d = np.diff(v)
    osc = float(np.mean(np.sign(d[1:]) != np.sign(d[:-1])))
    return {"cv": cv, "trend": float(slope * len(v) / max(abs(mean), 1e-12)), "oscillation": osc,
            "n": int(len(v))}


def stability(history: list[dict], keys: tuple[str, ...] = ("loss",)) -> dict:
    """The stability of a run from its ``history.jsonl`` records; ``keys``: the loss series to judge (the family's
    ``stability_keys``: ``("loss_g", "loss_d")`` for GANs), the worst one counts."""
    if isinstance(keys, str):  # a family name or one key by mistake: its characters are no loss keys
        raise TypeError(f"stability: keys must be a tuple of history keys, got the string {keys!r}")
    steps = [r for r in history if r.get("kind") == "step"]
    per = {k: series_stats([r[k] for r in steps if k in r]) for k in keys}
    worst = max(per.values(), key=lambda s: s["cv"] if s["cv"] == s["cv"] else -1)
    return {"per_loss": per, "cv": worst["cv"], "score": float(1 / (1 + worst["cv"])) if worst["cv"] == worst["cv"]
            else float("nan"), "window": "last half of logged steps",
            "formula": "score = 1 / (1 + cv), cv = std/|mean| of the loss over the last half of training"}
