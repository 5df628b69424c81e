"""The quality-vs-compute section: every model's curve (classifier FD at k/K of its compute, read from the ``curve``
of its ``metrics.json`` record) in one figure, and a sentence on who was still improving.

"Still improving" is decided on the last segment of a curve only: the FD fell from point K-1 to point K by more
than twice the standard error of that difference, taken as sqrt(std_{K-1}^2 + std_K^2) from each point's bootstrap
std (resamples of the generated set, reference fixed). That spread is within one run at one seed: it says nothing
about seed-to-seed variation, and the report says so with N.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from genbench.report.figures import COLORS, plt, save

UNITS = {"images": "images seen", "flops": "training FLOPs", "seconds": "training seconds"}


def quality_curves(curves: dict[str, dict], path: Path) -> Path:
    """One PNG: classifier FD against images seen, training FLOPs (when every point has them) and training seconds,
    log x, every model's curve with bootstrap error bars; a dotted line at the budget where it is in those units."""
    have_flops = all(p.get("flops") for c in curves.values() for p in c["points"])
    axes_keys = ["images"] + (["flops"] if have_flops else []) + ["seconds"]
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(4.6 * len(axes_keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], axes_keys):
        for i, (name, c) in enumerate(curves.items()):
            pts = [p for p in c["points"] if p.get(key)]
            if not pts:
                continue
            ax.errorbar([p[key] for p in pts], [p["fd_classifier"] for p in pts],
                        yerr=[p.get("fd_std") or 0 for p in pts], fmt="o-", ms=4, capsize=3,
                        color=COLORS[i % len(COLORS)], label=name)
        target = next(iter(curves.values())).get("target") or {}
        if target.get("kind") == key:
            ax.axvline(target["value"], color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        if all(p["fd_classifier"] > 0 for c in curves.values() for p in c["points"]):
            ax.set_yscale("log")  # models' FDs differ by orders of magnitude early in training
        ax.set_xlabel(UNITS[key] + " (log)")
        ax.set_ylabel("FD classifier, log (lower is better)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    return save(fig, path)


def last_segment(c: dict) -> dict | None:
    """The verdict on a curve's last segment: ``{"verdict": improving|worse|flat, "drop", "se", "per_doubling",
    "from", "to"}`` (drop = FD_{K-1} - FD_K; per_doubling = drop / log2 of the images ratio), None under 2 points."""
    pts = c.get("points") or []
    if len(pts) < 2:
        return None
    a, b = pts[-2], pts[-1]
    drop = a["fd_classifier"] - b["fd_classifier"]
    se = math.sqrt((a.get("fd_std") or 0.0) ** 2 + (b.get("fd_std") or 0.0) ** 2)
    ratio = b["images"] / a["images"] if a.get("images") else None
    verdict = "improving" if drop > 2 * se else "worse" if drop < -2 * se else "flat"
    return {"verdict": verdict, "drop": drop, "se": se, "from": a, "to": b,
            "per_doubling": drop / math.log2(ratio) if ratio and ratio > 1 else None}


def curve_sentences(curves: dict[str, dict]) -> list[str]:
    """Plain sentences: who was still improving at the end of training, who had levelled off or got worse, with
    the numbers, N, the spread used and its limits; then the curve's measured cost."""
    segs = {n: last_segment(c) for n, c in curves.items()}
    groups = {"improving": [], "flat": [], "worse": []}
    for name, s in segs.items():
        if s is None:
            continue
        a, b = s["from"], s["to"]
        per = f", FD {-s['per_doubling']:+.3g} per doubling of images" if s["per_doubling"] is not None else ""
        groups[s["verdict"]].append(f"{name} (FD {a['fd_classifier']:.3g} → {b['fd_classifier']:.3g} from "
                                    f"{a['images']:,} to {b['images']:,} images{per}; 2 SE = {2 * s['se']:.2g})")
    out = []
    if groups["improving"]:
        out.append("Still improving when training stopped (the FD fell over the last segment of the curve by more "
                   "than twice its standard error): " + "; ".join(groups["improving"]) + ". More compute would "
                   "likely have helped these models.")
    if groups["flat"]:
        out.append("Levelled off (last-segment change within twice its standard error): " + "; ".join(groups["flat"])
                   + ".")
    if groups["worse"]:
        out.append("Got worse over the last segment (FD rose by more than twice its standard error): "
                   + "; ".join(groups["worse"]) + ".")
    ns = sorted({c["n"] for c in curves.values()})
    first = next(iter(curves.values()))
    out.append(f"Each point is one run at one seed scored on N = {', '.join(map(str, ns))} generated images against "
               f"the {first.get('reference', 'test split')}; the standard error is the {first.get('spread', 'bootstrap std')}"
               f" of each point, so it covers the finite sample, not seed-to-seed variation (run with --seeds K for "
               f"that). FD at this N is biased upwards: compare points with each other, not with the table's "
               f"fd_classifier.")
    ev = sum(c.get("eval_seconds") or 0 for c in curves.values())
    sv = sum(c.get("snapshot_save_seconds") or 0 for c in curves.values())
    out.append(f"Cost of the curves: {ev:.1f} s of evaluation (sampling the snapshots and the classifier FD) and "
               f"{sv:.2f} s of snapshot writes during training, over {len(curves)} models.")
    return out


def curve_table(curves: dict[str, dict]) -> tuple[list[str], list[list]]:
    header = ["model", "k/K", "steps", "epochs", "images seen", "training FLOPs", "train s", "FD classifier↓", "N",
              "drawn from"]
    rows = [[name, f"{p['k']}/{c.get('points_planned', len(c['points']))}", p["steps"], f"{p['epochs']:.3g}",
             p["images"], f"{p['flops']:.3g}" if p.get("flops") else "-", f"{p['seconds']:.3g}",
             f"{p['fd_classifier']:.4g} ± {p['fd_std']:.2g}" if p.get("fd_std") is not None
             else f"{p['fd_classifier']:.4g}", p["n"], p.get("source")]
            for name, c in curves.items() for p in c["points"]]
    return header, rows


def finite_curves(models: list[dict]) -> dict[str, dict]:
    """The curves of the model records that have one, keeping their points with a finite FD (a curve left with
    none is dropped)."""
    out = {}
    for r in models:
        c = r.get("curve") or {}
        pts = [p for p in c.get("points") or [] if isinstance(p.get("fd_classifier"), (int, float))
               and np.isfinite(p["fd_classifier"])]
        if pts:
            out[r["model"]] = {**c, "points": pts}
    return out
