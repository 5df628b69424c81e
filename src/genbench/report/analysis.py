"""Sentences generated from the measured numbers (nothing typed in by hand), one per question the report answers.

A run folder holds one training seed, so every sentence that ranks models ("lowest FID") is provisional: the
verdict rule (:func:`genbench.metrics.verdict.pairwise_verdicts`) needs 3 seeds per model, and the only spread a
one-seed run measures is the resampling of its generated images. The sentence names the better mean as
"provisionally ahead" where the gap exceeds the combined sampling spread (:func:`separated`), "not
distinguishable" where it does not, and the ``verdicts`` sentence (:func:`genbench.report.verdicts.provisional_note`)
says why and gives the ``--seeds`` command that would decide.
"""

from __future__ import annotations

import math

from genbench.metrics.verdict import AHEAD, pair_statement, pairwise_verdicts
from genbench.report.verdicts import provisional_note


def separated(a: dict, b: dict) -> bool:
    """True when |a - b| exceeds sqrt(std_a^2 + std_b^2) (two metric dicts with ``value`` and ``std``); a
    metric without a spread never separates. Descriptive only: it compares sampling spreads of one seed."""
    sa, sb = a.get("std"), b.get("std")
    if sa is None or sb is None:
        return False
    return abs(a["value"] - b["value"]) > math.sqrt(sa ** 2 + sb ** 2)


def _rank(models: list[dict], key: str, lower: bool) -> tuple[str, str | None]:
    """(best model, runner-up or None) by metric ``key``."""
    have = [r for r in models if key in r["metrics"] and r["metrics"][key].get("value") is not None]
    if not have:
        return "", None
    s = sorted(have, key=lambda r: r["metrics"][key]["value"], reverse=not lower)
    return s[0]["model"], (s[1]["model"] if len(s) > 1 else None)


def _best_sentence(models: list[dict], key: str, lower: bool, what: str, digits: int = 4) -> str:
    recs = {r["model"]: r["metrics"] for r in models}
    best, second = _rank(models, key, lower)
    if not best:
        return ""
    b = recs[best][key]
    if second is None:
        return f"{what} of {best}: {b['value']:.{digits}g}."
    s = recs[second][key]
    (pair,) = pairwise_verdicts({best: [b["value"]], second: [s["value"]]}, lower)  # one seed each: provisional
    if pair["outcome"] == AHEAD:  # not reachable from one metrics.json; kept so the rule, not this code, decides
        return pair_statement(pair, what, digits)
    if separated(b, s):
        return (f"{'lowest' if lower else 'highest'} {what}, provisional (one training seed): {best} "
                f"({b['value']:.{digits}g} ± {b['std']:.2g}), provisionally ahead of {second} "
                f"({s['value']:.{digits}g} ± {s['std']:.2g}): the gap exceeds their combined sampling spread, which "
                f"leaves out retraining.")
    why = "within the combined sampling spread" if b.get("std") is not None and s.get("std") is not None else \
        "no spread measured, so no ranking"
    return (f"{best} and {second} are not distinguishable by {what} ({b['value']:.{digits}g} vs "
            f"{s['value']:.{digits}g}, {why}; one training seed).")


FEATURE_DIM = 2048
"""Inception pool3's dimension: below this N both FID covariances are singular and FID's bias is large (issue 28)."""


def quality_sentence(models: list[dict], real: dict) -> str:
    """The Inception ranking sentence, under two checks (issue 28):

    - every row (the models and the real-data floor) must be scored at one N: FID and KID depend on N, so rows of
      different N are not ranked, and the sentence names the Ns;
    - below N = 2,048 (the feature dimension) the FID's covariance estimates are singular and its bias large, so
      the ranking uses KID (an unbiased estimator, Binkowski et al. 2018) and says why.
    """
    rows = models + [real]
    ns = {r["model"]: (r["metrics"].get("fid_inception") or {}).get("n_generated") for r in rows
          if r["metrics"].get("fid_inception")}
    if not ns:
        return ""
    if len(set(ns.values())) > 1:
        return ("Not ranked by Inception metrics: the rows were scored at different N ("
                + ", ".join(f"{m} N={n}" for m, n in ns.items()) + "), and FID and KID depend on N; score every "
                "row at one N (evaluation.n_inception, and a holdout at least that large for the real row).")
    n = next(iter(ns.values()))
    if n is not None and n < FEATURE_DIM:
        kid = _best_sentence(models, "kid_inception", True, f"Inception KID (N={n}, unbiased)", 3)
        if kid:
            return (kid + f" Ranked by KID, not FID: at N = {n}, below the 2,048 feature dimensions, FID's "
                    f"covariance estimates are singular and its bias is large (FID values compare only at this N).")
    return _best_sentence(models, "fid_inception", True, f"Inception FID (N={n})")


def analysis(models: list[dict], real: dict, info: dict, summary: dict | None = None) -> dict[str, str]:
    """One sentence per question (quality, stability, controllability, efficiency) from ``metrics.json`` records;
    ``info`` is the summary's ``dataset_info``. Missing metrics leave their question out. With ``summary`` (the
    whole ``metrics.json`` of a one-seed run) a ``verdicts`` sentence comes first: every ranking is provisional,
    why, and the ``genbench run ... --seeds 3`` command that would decide."""
    out: dict[str, str] = {}
    if summary is not None and len(models) > 1:
        out["verdicts"] = provisional_note(summary)
    rm = real["metrics"]
    k = info.get("num_classes") or len(rm.get("mode_coverage", {}).get("histogram") or [])
    fid = rm.get("fid_inception", {})
    q = quality_sentence(models, real)
    if q:
        out["quality"] = (q + f" Real held-out {info.get('content', 'images')} score FID "
                          f"{fid['value']:.1f} at N = {fid.get('n_generated')}: the floor. "
                          + _best_sentence(models, "fd_classifier", True, "classifier-feature FD", 3))
    stab = {r["model"]: r["metrics"]["stability"] for r in models if "stability" in r["metrics"]}
    if stab:
        steady = max(stab, key=lambda m: stab[m]["score"])
        mc = {r["model"]: r["metrics"]["mode_coverage"] for r in models if "mode_coverage" in r["metrics"]}
        drop = [m for m, v in mc.items() if v["value"] < rm["mode_coverage"]["value"]]
        out["stability"] = (f"Lowest loss variation over the last half of training, provisional: {steady} (cv "
                            f"{stab[steady]['cv']:.3f}; cv is one run's statistic with no spread, so it ranks but does "
                            f"not prove). Mode coverage: " + ", ".join(f"{m} {v['value']}/{k} classes" for m, v in mc.items())
                            + (f"; fewer classes than real data for {', '.join(drop)} (mode dropping)." if drop
                               else "; no model drops a class."))
    cond = [r for r in models if r["conditional"] and "conditional_accuracy" in r["metrics"]]
    if cond:
        out["controllability"] = (
            "Share of label-conditioned samples the in-domain classifier puts in the requested class: "
            + ", ".join(f"{r['model']} {100 * r['metrics']['conditional_accuracy']['value']:.1f}% ± "
                        f"{100 * r['metrics']['conditional_accuracy']['std']:.1f}" for r in cond)
            + f" (real held-out images: {100 * rm['conditional_accuracy']['value']:.1f}%). "
            + (", ".join(r["model"] for r in models if not r["conditional"]) + " cannot be steered by label."
               if any(not r["conditional"] for r in models) else ""))
    eff = {r["model"]: r["metrics"]["efficiency"] for r in models if "efficiency" in r["metrics"]}
    if eff:
        fast = min(eff, key=lambda m: eff[m]["gen_seconds_per_1000"])
        slow = max(eff, key=lambda m: eff[m]["gen_seconds_per_1000"])
        out["efficiency"] = (
            f"Fastest generation {fast} ({eff[fast]['gen_seconds_per_1000']:.3g} s per 1,000 images, "
            f"{eff[fast]['nfe']} NFE), slowest {slow} ({eff[slow]['gen_seconds_per_1000']:.3g} s, "
            f"{eff[slow]['sampler']}, {eff[slow]['nfe']} NFE). Training: "
            + ", ".join(f"{m} {v['train_seconds']:.0f} s ({v['epochs']} epochs)" for m, v in eff.items()) + ".")
    return out
