"""The verdict rule across training seeds: when may a report say that one model is ahead of another?

One number per training seed and model (a metric of ``metrics.json``, or the ``per_seed`` values of
``aggregate.json``) goes in; one outcome per pair of models comes out:

- ``ahead``: Welch's t-test (:func:`welch`) on the per-seed values rejects equal means at the 5% level after Holm's
  step-down correction over all the tested pairs of that metric (:func:`holm`). Both models need K >= 3 seeds.
- ``not distinguishable``: tested, not rejected. :func:`seeds_needed` then says how many seeds per model would
  detect the observed difference (5% level, 80% power).
- ``provisional``: either model has fewer than 3 seeds. With one seed the only spread measured is the resampling
  of generated images from one trained model, and retraining moves FID about 3x more than that (the "FID
  Lottery", arXiv 2606.20536), so the better mean is named, but as provisional. A pair at K = 2 gets its Welch
  p-value for information; it is not tested and not in Holm's family.

No bootstrap over seeds: with 2-3 values it is anticonservative (its intervals are too narrow). The functions are
pure (numbers in, numbers and words out) so that the aggregate (studies) and every report page (report) draw their
verdicts from this one rule.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Mapping, Sequence

ALPHA = 0.05  # two-sided level of each verdict (95%), family-wise over the pairs of one metric (Holm)
POWER = 0.80  # power of the seeds-needed estimate
MIN_SEEDS = 3  # fewer seeds per model: provisional
AHEAD, TIE, PROVISIONAL = "ahead", "not distinguishable", "provisional"


def _mean_var(x: Sequence[float]) -> tuple[float, float]:
    n = len(x)
    m = math.fsum(x) / n
    return m, (math.fsum((v - m) ** 2 for v in x) / (n - 1) if n > 1 else math.nan)


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's unequal-variances t-test of equal means (Welch 1947, Biometrika 34, eq. for t; degrees of freedom by
    Welch-Satterthwaite, Satterthwaite 1946, Biometrics Bulletin 2, eq. 17):

        t = (mean_a - mean_b) / sqrt(s_a^2 / n_a + s_b^2 / n_b)
        df = (s_a^2/n_a + s_b^2/n_b)^2 / ((s_a^2/n_a)^2 / (n_a - 1) + (s_b^2/n_b)^2 / (n_b - 1))
        p = 2 * P(T_df > |t|)                         (two-sided; scipy.stats.t.sf)

    s^2 the unbiased sample variances. Equals ``scipy.stats.ttest_ind(a, b, equal_var=False)`` (tested).

    Args:
        a, b: per-seed values of one metric for two models, at least 2 each, finite.

    Returns:
        ``{"t", "df", "p", "diff"}`` with ``diff = mean_a - mean_b``. Where both variances are 0, t is +-inf and
        p = 0 if the means differ (t = 0, p = 1 if they are equal) and df is None.

    Raises:
        ValueError: fewer than 2 values in ``a`` or ``b``, or a non-finite value.
    """
    from scipy import stats

    for x in (a, b):
        if len(x) < 2 or not all(math.isfinite(v) for v in x):
            raise ValueError(f"Welch's test needs >= 2 finite values per model, got {list(x)}")
    (ma, va), (mb, vb) = _mean_var(a), _mean_var(b)
    qa, qb = va / len(a), vb / len(b)
    diff = ma - mb
    if qa + qb == 0:
        return {"t": 0.0 if diff == 0 else math.copysign(math.inf, diff), "df": None,
                "p": 1.0 if diff == 0 else 0.0, "diff": diff}
    t = diff / math.sqrt(qa + qb)
    df = (qa + qb) ** 2 / (qa ** 2 / (len(a) - 1) + qb ** 2 / (len(b) - 1))
    return {"t": t, "df": df, "p": float(2 * stats.t.sf(abs(t), df)), "diff": diff}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6, 65-70), in the input order:

        sort p_(1) <= ... <= p_(m);  adj_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))

    Rejecting where ``adj < alpha`` is Holm's procedure at family-wise level alpha (scipy has no Holm; this is
    the same as ``statsmodels.stats.multitest.multipletests(method="holm")``).

    Args:
        pvalues: m p-values in [0, 1].

    Returns:
        The m adjusted p-values, each >= its raw p-value.

    Raises:
        ValueError: a p-value outside [0, 1] or NaN.
    """
    if not all(0.0 <= p <= 1.0 for p in pvalues):
        raise ValueError(f"p-values must lie in [0, 1], got {list(pvalues)}")
    m = len(pvalues)
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def seeds_needed(diff: float, sd_a: float, sd_b: float, *, alpha: float = ALPHA, power: float = POWER,
                 max_seeds: int = 10_000) -> int | None:
    """Seeds per model for Welch's two-sided test at level ``alpha`` to detect a true difference ``diff`` with
    probability ``power``, the per-seed standard deviations taken as known.

    Start from the normal-approximation sample size of a two-sample comparison of means (Chow, Shao & Wang 2008,
    Sample Size Calculations in Clinical Research, 2nd ed., sec. 3.2.1, test for equality):

        n0 = ceil(2 sigma^2 (z_{1-alpha/2} + z_{power})^2 / diff^2),   sigma^2 = (s_a^2 + s_b^2) / 2

    (15.7 sigma^2 / diff^2 at 5% and 80%), then raise n until the test's exact power under the noncentral t
    distribution (Cohen 1988, Statistical Power Analysis, ch. 2; scipy.stats.nct) reaches ``power``:

        power(n) = P(|T'| > t_{1-alpha/2, df}),  T' ~ t'(df, delta),  delta = |diff| / (sigma sqrt(2 / n)),
        df = (n - 1) (s_a^2 + s_b^2)^2 / (s_a^4 + s_b^4)        (Welch-Satterthwaite at n seeds each)

    The normal approximation alone says 3 seeds where 3 seeds did not decide (the t's heavy tails at 2-4 degrees
    of freedom); the t step fixes that. Known answers: diff / sigma = 0.5 needs 64, 0.8 needs 26 (Cohen's table
    2.4.1). Never below :data:`MIN_SEEDS`.

    Args:
        diff: observed difference of the means (metric units).
        sd_a, sd_b: per-seed sample standard deviations (metric units, >= 0).
        alpha, power: level and power, each in (0, 1); pass alpha / m for a Bonferroni bound over m tests.
        max_seeds: stop searching here (the normal approximation is returned beyond it).

    Returns:
        Seeds per model, or None where ``diff`` is 0 (no finite number of seeds detects no difference).

    Raises:
        ValueError: a negative or non-finite standard deviation, non-finite ``diff``, alpha or power outside (0, 1).
    """
    from scipy import stats

    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    if not (math.isfinite(diff) and math.isfinite(sd_a) and math.isfinite(sd_b)) or min(sd_a, sd_b) < 0:
        raise ValueError(f"need a finite difference and finite standard deviations >= 0, got {diff}, {sd_a}, {sd_b}")
    if diff == 0:
        return None
    va, vb = sd_a ** 2, sd_b ** 2
    sigma2 = (va + vb) / 2
    if sigma2 == 0:  # no seed-to-seed variation at all: any K >= MIN_SEEDS separates the means
        return MIN_SEEDS
    z = float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))
    n0 = max(2, math.ceil(2 * sigma2 * z ** 2 / diff ** 2))
    ratio = (va + vb) ** 2 / (va ** 2 + vb ** 2)  # df / (n - 1), in [1, 2]
    for n in range(n0, max_seeds + 1):
        df = (n - 1) * ratio
        nc = abs(diff) / math.sqrt(2 * sigma2 / n)
        crit = float(stats.t.ppf(1 - alpha / 2, df))
        if float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)) >= power:
            return max(MIN_SEEDS, n)
    return max(MIN_SEEDS, n0)


def pairwise_verdicts(per_seed: Mapping[str, Sequence[float]], lower_is_better: bool, *, alpha: float = ALPHA,
                      power: float = POWER, min_seeds: int = MIN_SEEDS) -> list[dict]:
    """The outcome for every pair of models on one metric (module docstring), Holm-corrected over the tested pairs.

    Args:
        per_seed: model name -> its per-seed values of the metric (one per training seed; non-finite values, a
            seed whose metric could not be computed, are dropped and K counts the rest).
        lower_is_better: the metric's direction (True for FID, KID, FD; False for IS, precision, accuracy).
        alpha: family-wise two-sided level over the pairs of this metric (0.05: 95%).
        power: power of the seeds-needed estimate.
        min_seeds: fewer finite values than this for either model makes the pair provisional.

    Returns:
        One dict per pair, in the input order of the models: ``a``, ``b``, ``k_a``, ``k_b``, ``mean_a``, ``mean_b``,
        ``leader`` / ``trailer`` (better / worse mean by the direction; None on equal means), ``outcome`` (``ahead``,
        ``not distinguishable`` or ``provisional``), ``t``, ``df``, ``p`` (Welch, None below 2 seeds), ``p_holm``
        (None for untested pairs), ``m_tests`` (the size of Holm's family), ``m_pairs`` (all pairs),
        ``seeds_needed`` (for pairs not ``ahead`` with >= 2 seeds each: :func:`seeds_needed` at level alpha / m
        over the m pairs of the metric, the strictest step of Holm's correction, so a bound that errs on the side of
        more seeds), ``alpha``.
        A model with no finite value is left out.

    Raises:
        ValueError: alpha, power outside (0, 1), or min_seeds < 2 (Welch's test needs a variance).
    """
    if not (0 < alpha < 1 and 0 < power < 1) or min_seeds < 2:
        raise ValueError(f"alpha, power in (0, 1) and min_seeds >= 2, got {alpha}, {power}, {min_seeds}")
    vals = {n: [float(v) for v in xs if v is not None and math.isfinite(float(v))] for n, xs in per_seed.items()}
    vals = {n: xs for n, xs in vals.items() if xs}
    pairs = []
    for a, b in combinations(vals, 2):
        xa, xb = vals[a], vals[b]
        (ma, va), (mb, vb) = _mean_var(xa), _mean_var(xb)
        better = (ma < mb) if lower_is_better else (ma > mb)
        leader, trailer = (None, None) if ma == mb else ((a, b) if better else (b, a))
        w = welch(xa, xb) if min(len(xa), len(xb)) >= 2 else {"t": None, "df": None, "p": None}
        pairs.append({"a": a, "b": b, "k_a": len(xa), "k_b": len(xb), "mean_a": ma, "mean_b": mb,
                      "sd_a": math.sqrt(va) if len(xa) > 1 else None, "sd_b": math.sqrt(vb) if len(xb) > 1 else None,
                      "leader": leader, "trailer": trailer, "t": w["t"], "df": w["df"], "p": w["p"],
                      "tested": min(len(xa), len(xb)) >= min_seeds, "alpha": alpha})
    tested = [p for p in pairs if p["tested"]]
    for p, adj in zip(tested, holm([p["p"] for p in tested])):
        p["p_holm"] = adj
    for p in pairs:
        p["m_tests"], p["m_pairs"] = len(tested), len(pairs)
        p.setdefault("p_holm", None)
        if not p.pop("tested"):
            p["outcome"] = PROVISIONAL
        else:
            p["outcome"] = AHEAD if p["p_holm"] < alpha and p["leader"] is not None else TIE
        both = p["sd_a"] is not None and p["sd_b"] is not None
        p["seeds_needed"] = (seeds_needed(p["mean_a"] - p["mean_b"], p["sd_a"], p["sd_b"], alpha=alpha / len(pairs),
                                          power=power) if both and p["outcome"] != AHEAD else None)
    return pairs


def _pairs(m: int) -> str:
    return f"{m} pair" + ("" if m == 1 else "s")


def pair_statement(p: dict, what: str, digits: int = 4) -> str:
    """One sentence for a pair of :func:`pairwise_verdicts`; ``what`` names the metric. Only an ``ahead`` outcome
    says "ahead of" without qualification; a provisional one says "provisionally ahead of"."""
    ma, mb = f"{p['mean_a']:.{digits}g}", f"{p['mean_b']:.{digits}g}"
    k = f"K = {p['k_a']}, {p['k_b']} seeds"
    if p["outcome"] == AHEAD:
        lead = p["leader"]
        lm, tm = (ma, mb) if lead == p["a"] else (mb, ma)
        return (f"{lead} ({lm}) ahead of {p['trailer']} ({tm}) by {what}: Welch's t-test, p = {p['p_holm']:.2g} "
                f"after Holm's correction over {_pairs(p['m_tests'])} ({k}).")
    need = (f"; about {p['seeds_needed']} seeds per model would distinguish this difference (80% power at the "
            f"strictest Holm level, {100 * p['alpha']:g}% / {p['m_pairs']})" if p["seeds_needed"] else "")
    if p["outcome"] == TIE:
        return (f"{p['a']} ({ma}) and {p['b']} ({mb}) are not distinguishable by {what}: Welch's t-test, p = "
                f"{p['p_holm']:.2g} after Holm's correction over {_pairs(p['m_tests'])} ({k}){need}.")
    few = min(p["k_a"], p["k_b"])
    order = (f"{p['leader']} provisionally ahead of {p['trailer']}" if p["leader"] else "equal means")
    return (f"{p['a']} ({ma}) vs {p['b']} ({mb}) by {what}: {order}, provisional: {few} seed"
            f"{'s' if few != 1 else ''} (a verdict needs {MIN_SEEDS}){need}.")


def metric_verdict(pairs: list[dict], what: str) -> dict:
    """The verdict on one metric from its :func:`pairwise_verdicts`: the model with the best mean, whether it is
    ``ahead`` of every other model, and one sentence naming only the pairs the rule decided.

    Args:
        pairs: the metric's pairs (one or more models' worth; empty gives an empty statement).
        what: the metric's name in words.

    Returns:
        ``{"best", "separated", "decided", "undecided", "provisional", "statement"}``: counts of ``ahead``,
        ``not distinguishable`` and ``provisional`` pairs, and the sentence.
    """
    if not pairs:
        return {"best": None, "separated": False, "decided": 0, "undecided": 0, "provisional": 0, "statement": ""}
    count = {o: sum(p["outcome"] == o for p in pairs) for o in (AHEAD, TIE, PROVISIONAL)}
    beats: dict[str, set] = {}
    for p in pairs:
        for x in (p["a"], p["b"]):
            beats.setdefault(x, set())
        if p["leader"] is not None:
            beats[p["leader"]].add(p["trailer"])
    best = max(beats, key=lambda x: len(beats[x]))  # the model with the better mean against the most others
    others = set(beats) - {best}
    separated = all(p["outcome"] == AHEAD and p["leader"] == best for p in pairs if best in (p["a"], p["b"])) \
        and bool(others)
    ahead = [f"{p['leader']} ahead of {p['trailer']} (p = {p['p_holm']:.2g})" for p in pairs if p["outcome"] == AHEAD]
    need = [p["seeds_needed"] for p in pairs if p["outcome"] != AHEAD and p["seeds_needed"]]
    parts = []
    if separated:
        parts.append(f"{best} is best by {what}, ahead of every other model")
    elif ahead:
        parts.append(f"by {what}: " + "; ".join(ahead))
    if count[TIE]:
        parts.append(f"{count[TIE]} of {len(pairs)} pairs not distinguishable by {what}")
    if count[PROVISIONAL]:
        k = min(min(p["k_a"], p["k_b"]) for p in pairs if p["outcome"] == PROVISIONAL)
        parts.append(f"{count[PROVISIONAL]} of {len(pairs)} pairs provisional by {what} (best mean: {best}; "
                     f"{k} seed{'s' if k != 1 else ''}, a verdict needs {MIN_SEEDS})")
    tested = count[AHEAD] + count[TIE]
    text = "; ".join(parts) + (" (Welch's t-test, Holm-corrected over the tested pairs, 95%)" if tested else "")
    if need:
        text += f"; up to {max(need)} seeds per model would distinguish the undecided differences (80% power)"
    return {"best": best, "separated": separated, "decided": count[AHEAD], "undecided": count[TIE],
            "provisional": count[PROVISIONAL], "statement": text + "."}
