"""Do the feature spaces agree? Each model's rank under each extractor, Kendall's tau between the rankings, and the
pairs that one space calls significant while another orders them the other way (issue 28).

Stein et al. 2023 (dgm-eval) found that Inception ranks modern models unlike human judges and unlike DINOv2, so a
verdict that only one feature space supports should say so. The functions are pure (numbers in, numbers out); the
report renders them (:mod:`genbench.report.extractors`).

- Ranks: 1 = best (lowest distance); equal values share the better rank ("1224" competition ranking).
- Kendall's tau-b (Kendall 1945, Biometrika 33, 239-251; ``scipy.stats.kendalltau``) between two spaces' values
  over the models both have. It is descriptive, not a test: with n models, one swapped pair moves it by
  4 / (n (n - 1)) (0.2 at n = 5, 0.13 at n = 6), and no p-value is attached.
- Significant: the verdict rule of :func:`genbench.metrics.verdict.pairwise_verdicts` (Welch's t-test on the
  per-seed values, Holm over the pairs of one space, 95%; provisional below 3 seeds). A pair is flagged when it is
  ``ahead`` in one space and its means are in the opposite order in another.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Mapping, Sequence

from genbench.metrics.verdict import AHEAD, MIN_SEEDS, pairwise_verdicts


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b between two paired sequences (``scipy.stats.kendalltau``; equal to tau-a without ties):

        tau_b = (C - D) / sqrt((C + D + T_x) (C + D + T_y))

    C, D the concordant and discordant pairs, T_x, T_y the pairs tied only in x or only in y.

    Returns:
        tau in [-1, 1]; None below 2 pairs or where either sequence is constant (tau undefined).

    Raises:
        ValueError: sequences of different lengths.
    """
    from scipy import stats

    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs paired sequences, got lengths {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    tau = float(stats.kendalltau(x, y).statistic)
    return None if math.isnan(tau) else tau


def tau_step(n: int) -> float | None:
    """How far one swapped pair of adjacent ranks moves tau among ``n`` untied models: 2 / C(n, 2) each way,
    4 / (n (n - 1)) in all. None below 2 models."""
    return 4.0 / (n * (n - 1)) if n >= 2 else None


def ranks(values: Mapping[str, float], lower_is_better: bool = True) -> dict[str, int]:
    """Rank of each model, 1 = best; equal values share the better rank (competition ranking: 1, 2, 2, 4)."""
    sign = 1.0 if lower_is_better else -1.0
    return {m: 1 + sum(sign * w < sign * v for w in values.values()) for m, v in values.items()}


def agreement(spaces: Mapping[str, Mapping[str, Sequence[float]]], lower_is_better: bool = True) -> dict:
    """Rankings of the same models in several feature spaces, their Kendall taus, and the flagged pairs.

    Args:
        spaces: space name (``Inception``...) -> model -> the per-seed values of that space's distance (one value
            per training seed; a one-seed run gives one each). Non-finite values are dropped; only models with a
            value in every space are ranked.
        lower_is_better: the direction shared by every space's distance (FD, FID, KID: True).

    Returns:
        ``{"spaces", "models", "means" {space: {model: mean}}, "ranks" {space: {model: rank}}, "taus" [{"a", "b",
        "tau", "n"}] per pair of spaces, "tau_step", "verdicts" {space: pairwise_verdicts}, "flags", "k" (the fewest
        seeds of any model), "significant" (pairs ahead in some space)}``. Each flag: ``{"leader", "trailer",
        "significant_in", "p_holm", "reversed_in", "means_significant", "means_reversed", "reversal_significant"}``
        (the last True where the other space also calls the reversed order significant).
    """
    clean = {s: {m: [float(v) for v in xs if v is not None and math.isfinite(float(v))] for m, xs in per.items()}
             for s, per in spaces.items()}
    names = list(spaces)
    models = [m for m in (next(iter(clean.values()), {}) if clean else {})
              if all(clean[s].get(m) for s in names)]
    per = {s: {m: clean[s][m] for m in models} for s in names}
    means = {s: {m: math.fsum(v) / len(v) for m, v in per[s].items()} for s in names}
    rk = {s: ranks(means[s], lower_is_better) for s in names}
    taus = [{"a": a, "b": b, "tau": kendall_tau([means[a][m] for m in models], [means[b][m] for m in models]),
             "n": len(models)} for a, b in combinations(names, 2)]
    verdicts = {s: pairwise_verdicts(per[s], lower_is_better) if len(models) >= 2 else [] for s in names}
    better = (lambda u, v: u < v) if lower_is_better else (lambda u, v: u > v)
    flags = []
    for s in names:
        for p in verdicts[s]:
            if p["outcome"] != AHEAD:
                continue
            lead, trail = p["leader"], p["trailer"]
            for o in names:
                if o == s or not better(means[o][trail], means[o][lead]):
                    continue
                twin = next(q for q in verdicts[o] if {q["a"], q["b"]} == {lead, trail})
                flags.append({"leader": lead, "trailer": trail, "significant_in": s, "p_holm": p["p_holm"],
                              "reversed_in": o, "means_significant": [means[s][lead], means[s][trail]],
                              "means_reversed": [means[o][lead], means[o][trail]],
                              "reversal_significant": twin["outcome"] == AHEAD and twin["leader"] == trail})
    k = min((len(v) for s in names for v in per[s].values()), default=0)
    return {"spaces": names, "models": models, "means": means, "ranks": rk, "taus": taus,
            "tau_step": tau_step(len(models)), "verdicts": verdicts, "flags": flags, "k": k,
            "significant": sum(p["outcome"] == AHEAD for s in names for p in verdicts[s])}


def tau_sentence(n: int) -> str:
    """The report's caveat on tau for ``n`` ranked models."""
    step = tau_step(n)
    if step is None:
        return "Kendall's tau needs at least 2 models."
    return (f"Kendall's tau is descriptive, not a test: with {n} models one swapped pair moves it by {step:.2g} "
            f"(4 / (n (n - 1))), so it moves in steps that size and a tau below 1 may be one swap of two close models.")


def flag_sentence(f: dict) -> str:
    """One flagged pair in words."""
    ms, mr = f["means_significant"], f["means_reversed"]
    return (f"{f['leader']} is significantly ahead of {f['trailer']} under {f['significant_in']} ({ms[0]:.4g} vs "
            f"{ms[1]:.4g}, p = {f['p_holm']:.2g} after Holm) but behind it under {f['reversed_in']} ({mr[0]:.4g} vs "
            f"{mr[1]:.4g}" + (", also significant there" if f["reversal_significant"] else ", not significant there")
            + "): the verdict depends on the feature space.")


def no_flag_sentence(result: dict) -> str:
    """Why nothing is flagged: no significant pair (and why), or every significant pair keeps its order."""
    if result["k"] < MIN_SEEDS:
        return (f"No pair is flagged: with {result['k']} training seed{'s' if result['k'] != 1 else ''} per model no "
                f"pair can be significant (the verdict rule needs {MIN_SEEDS} seeds per model), so the rank "
                f"differences above are provisional.")
    if not result["significant"]:
        return "No pair is flagged: no pair is significant under any feature space."
    return ("No pair is flagged: every pair that is significant under one feature space keeps its order under the "
            "others.")
