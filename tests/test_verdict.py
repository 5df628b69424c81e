"""The verdict rule across training seeds (issue 28): Welch's t-test per pair at 95%, Holm over the pairs of one
metric, K >= 3 seeds or provisional, seeds needed for the undecided pairs. Known answers, each with its numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from genbench.metrics.verdict import (AHEAD, PROVISIONAL, TIE, holm, metric_verdict, pair_statement,
                                      pairwise_verdicts, seeds_needed, welch)


def _pair(pairs, a, b):
    return next(p for p in pairs if {p["a"], p["b"]} == {a, b})


def test_welch_p_value_agrees_with_scipy():
    rng = np.random.default_rng(0)
    for ka, kb in ((3, 3), (3, 5), (4, 2), (10, 7)):
        a, b = rng.normal(30, 5, ka), rng.normal(33, 1, kb)
        w = welch(list(a), list(b))
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert w["p"] == pytest.approx(ref.pvalue, rel=1e-10)
        assert w["t"] == pytest.approx(ref.statistic, rel=1e-10)
        assert w["df"] == pytest.approx(ref.df, rel=1e-10)
    # by hand: a = 1, 2, 3 (s^2 = 1), b = 2, 3, 4.5 (s^2 = 1.58333): t = -1.5 / sqrt(1/3 + 1.58333/3)
    w = welch([1.0, 2.0, 3.0], [2.0, 3.0, 4.5])
    assert w["t"] == pytest.approx(-1.2572371141874241) and w["df"] == pytest.approx(3.8059405940594067)


def test_welch_refuses_one_value_and_nan():
    with pytest.raises(ValueError):
        welch([1.0], [2.0, 3.0])
    with pytest.raises(ValueError):
        welch([1.0, float("nan")], [2.0, 3.0])
    assert welch([1.0, 1.0], [2.0, 2.0])["p"] == 0.0 and welch([1.0, 1.0], [1.0, 1.0])["p"] == 1.0


def test_holm_known_answer():
    # sorted 0.01, 0.02, 0.04: 3 x 0.01 = 0.03, 2 x 0.02 = 0.04, 1 x 0.04 = 0.04 (monotone), in input order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([float("nan")])


def test_a_tie():
    """Overlapping seeds: not distinguishable, with the seeds a decision would take."""
    pairs = pairwise_verdicts({"a": [10.0, 11.0, 12.0], "b": [11.0, 12.0, 11.5]}, lower_is_better=True)
    (p,) = pairs
    assert p["outcome"] == TIE and p["leader"] == "a" and p["p_holm"] == p["p"] > 0.05
    assert p["m_tests"] == 1
    # sd_a = 1, sd_b = 0.5, diff = -0.5 -> sigma^2 = 0.625, d = 0.632: normal approx n0 = ceil(15.70 / 0.4) = 40,
    # then the noncentral-t power step; the answer must reach 80% power at n and not at n - 1
    n = p["seeds_needed"]
    assert n == seeds_needed(-0.5, 1.0, 0.5) and 40 <= n <= 45
    assert "not distinguishable" in pair_statement(p, "FID") and f"about {n} seeds" in pair_statement(p, "FID")


def test_seeds_needed_known_answers():
    """Cohen's (1988) table 2.4.1, two-sided 5%, 80% power: d = 0.5 -> 64 per group, d = 0.8 -> 26, d = 1 -> 17."""
    assert seeds_needed(0.5, 1.0, 1.0) == 64 and seeds_needed(0.8, 1.0, 1.0) == 26 and seeds_needed(1.0, 1.0, 1.0) == 17
    assert seeds_needed(0.0, 1.0, 1.0) is None  # no difference: no K finds it
    assert seeds_needed(5.0, 1.0, 1.0) == 3  # never below the rule's 3 seeds
    assert seeds_needed(1.0, 0.0, 0.0) == 3
    with pytest.raises(ValueError):
        seeds_needed(1.0, -1.0, 1.0)


def test_a_clear_win_respects_the_direction():
    seeds = {"flow": [23.1, 23.5, 23.3], "gan": [61.2, 66.9, 63.0]}
    (p,) = pairwise_verdicts(seeds, lower_is_better=True)
    assert p["outcome"] == AHEAD and (p["leader"], p["trailer"]) == ("flow", "gan") and p["p_holm"] < 0.05
    assert p["seeds_needed"] is None
    s = pair_statement(p, "FID")
    assert s.startswith("flow (23.3) ahead of gan (63.7) by FID") and "Holm" in s
    (q,) = pairwise_verdicts(seeds, lower_is_better=False)  # the same numbers as a higher-is-better metric
    assert q["outcome"] == AHEAD and q["leader"] == "gan"
    v = metric_verdict([p], "FID")
    assert v["best"] == "flow" and v["separated"] and v["decided"] == 1


def test_a_win_on_one_metric_and_a_loss_on_another():
    fid = pairwise_verdicts({"vae": [25.1, 26.6, 25.9], "gan": [61.2, 66.9, 63.0]}, lower_is_better=True)
    is_ = pairwise_verdicts({"vae": [6.1, 6.3, 6.2], "gan": [8.0, 8.3, 8.1]}, lower_is_better=False)
    assert fid[0]["outcome"] == is_[0]["outcome"] == AHEAD
    assert fid[0]["leader"] == "vae" and is_[0]["leader"] == "gan"


def test_two_seeds_are_provisional_however_large_the_gap():
    (p,) = pairwise_verdicts({"a": [10.0, 10.1], "b": [50.0, 50.2]}, lower_is_better=True)
    assert p["outcome"] == PROVISIONAL and p["leader"] == "a" and p["p_holm"] is None and p["m_tests"] == 0
    assert p["p"] == pytest.approx(stats.ttest_ind([10.0, 10.1], [50.0, 50.2], equal_var=False).pvalue)
    s = pair_statement(p, "FID")
    assert "provisionally ahead of" in s and "2 seeds" in s and " a ahead of" not in s
    # mixed K: a K = 3 model against a K = 2 one is provisional too
    (q,) = pairwise_verdicts({"a": [10.0, 10.1, 10.2], "b": [50.0, 50.2]}, lower_is_better=True)
    assert q["outcome"] == PROVISIONAL


def test_one_seed_is_provisional_with_no_p_value():
    pairs = pairwise_verdicts({"flow": [23.47], "vae": [25.12], "gan": [66.88]}, lower_is_better=True)
    assert len(pairs) == 3 and all(p["outcome"] == PROVISIONAL for p in pairs)
    assert all(p["p"] is None and p["seeds_needed"] is None for p in pairs)
    v = metric_verdict(pairs, "FID")
    assert v["best"] == "flow" and not v["separated"] and v["provisional"] == 3
    assert "provisional" in v["statement"] and "1 seed," in v["statement"]


def test_holm_changes_an_outcome():
    """a against b and c: each p < 0.05 alone (0.042, 0.034), but Holm over the 3 pairs multiplies the smallest by
    3 (0.10 > 0.05) and stops: uncorrected, a is ahead of both; corrected, no pair is decided."""
    seeds = {"a": [10.0, 11.0, 12.0], "b": [12.4, 13.4, 14.4], "c": [12.6, 13.4, 14.2]}
    pairs = pairwise_verdicts(seeds, lower_is_better=True)
    ab, ac = _pair(pairs, "a", "b"), _pair(pairs, "a", "c")
    assert ab["p"] < 0.05 and ac["p"] < 0.05  # the uncorrected test would rank a ahead of both
    assert ab["p_holm"] == pytest.approx(3 * ac["p"]) and ab["p_holm"] > 0.05
    assert all(p["outcome"] == TIE for p in pairs) and all(p["m_tests"] == 3 for p in pairs)
    one = pairwise_verdicts({"a": seeds["a"], "b": seeds["b"]}, lower_is_better=True)  # a family of one: decided
    assert one[0]["outcome"] == AHEAD
    assert metric_verdict(pairs, "FID")["decided"] == 0


def test_nan_seeds_are_dropped_and_counted():
    (p,) = pairwise_verdicts({"a": [1.0, float("nan"), 1.1, 1.2], "b": [3.0, 3.1, 3.2]}, lower_is_better=True)
    assert p["k_a"] == 3 and p["outcome"] == AHEAD
    assert pairwise_verdicts({"a": [float("nan")], "b": [1.0]}, True) == []
    assert math.isclose(pairwise_verdicts({"a": [1.0], "b": [2.0]}, True)[0]["mean_b"], 2.0)


def test_provenance_records_what_decides_the_numerics():
    """ISA flags from /proc/cpuinfo (x86 and aarch64 spellings), oneDNN / MKL versions from torch's build string,
    and the live thread counts; no cpuinfo: platform only, flags unknown."""
    from genbench.runtime.provenance import _cpuinfo, _library_versions, numerics, provenance

    c = _cpuinfo("processor : 0\nmodel name : Intel Xeon\nflags : fpu avx2 fma avx512f amx_tile\n")
    assert c["model"] == "Intel Xeon" and c["source"] == "/proc/cpuinfo"
    assert c["isa"]["avx2"] and c["isa"]["avx512f"] and c["isa"]["amx_tile"] and not c["isa"]["avx512_bf16"]
    assert _cpuinfo("")["isa"] is None and _cpuinfo("")["source"] == "platform"
    v = _library_versions("  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel\n"
                          "  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)\n")
    assert v == {"onednn": "3.12.0", "mkl": "2024.2"}
    assert _library_versions("") == {"onednn": None, "mkl": None}
    n = provenance()["numerics"]
    assert set(n) >= {"cpu", "torch_cpu_capability", "onednn", "mkl", "threads", "interop_threads", "env"}
    assert n["threads"] == numerics()["threads"] >= 1


def _aggregate(tmp_path, per_seed: dict, seeds: list[int], old: bool = False):
    """An ``aggregate.json`` as :func:`genbench.studies.trials.aggregate` writes it, from per-seed FIDs and IS
    (``old``: comparisons as written before the verdict rule, without pairs), and its rendered page."""
    import json

    from genbench.report.aggregate import build_aggregate_report
    from genbench.studies.trials import comparisons, t_interval

    rows = {}
    for name, (fid, is_) in per_seed.items():
        rows[name] = {"family": "vae", "metrics": {
            k: {**t_interval(v), "per_seed": dict(zip(map(str, seeds), v)), "within_run_spread_mean": 0.5,
                "lower_is_better": lower} for k, v, lower in (("fid_inception.value", fid, True),
                                                             ("is.value", is_, False))}}
    comps = comparisons(rows)
    if old:
        comps = [{"metric": c["metric"], "best": c["best"], "separated": False, "test": "non-overlapping",
                  "statement": "old"} for c in comps]
    agg = {"study": "mnist-four", "seeds": seeds, "n": len(seeds), "budget": {"kind": "images", "value": 1500},
           "models": rows, "comparisons": comps, "trials": {str(s): f"seeds/seed_{s}/mnist-four" for s in seeds},
           "note": "n", "wall_clock_note": None}
    d = tmp_path / "mnist-four"
    d.mkdir(parents=True)
    (d / "aggregate.json").write_text(json.dumps(agg))
    return agg, build_aggregate_report(d).read_text()


def test_the_aggregate_stores_and_renders_the_pairwise_verdicts(tmp_path):
    """Three seeds, three models: flow clearly ahead of gan on FID and behind it on IS; vae and flow tied on FID.
    aggregate.json holds every pair's outcome from the rule, and the page its table (Holm p, outcome, seeds
    needed); the same file without pairs (written before the rule) renders the same verdicts."""
    seeds = [42, 43, 44]
    per = {"flow": ([23.1, 23.5, 23.3], [6.1, 6.3, 6.2]), "vae": ([23.0, 24.6, 22.9], [6.0, 6.4, 6.3]),
           "gan": ([61.2, 66.9, 63.0], [8.0, 8.3, 8.1])}
    agg, page = _aggregate(tmp_path / "new", per, seeds)
    fid = next(c for c in agg["comparisons"] if c["metric"] == "fid_inception.value")
    fg = _pair(fid["pairs"], "flow", "gan")
    assert fg["outcome"] == AHEAD and fg["leader"] == "flow" and fg["m_tests"] == 3
    fv = _pair(fid["pairs"], "flow", "vae")
    assert fv["outcome"] == TIE and fv["seeds_needed"] >= 3
    is_ = next(c for c in agg["comparisons"] if c["metric"] == "is.value")
    assert _pair(is_["pairs"], "flow", "gan")["leader"] == "gan" and is_["best"] == "gan" and is_["separated"]
    for h in ("Verdicts across seeds", "p after Holm", "seeds needed", "flow ahead of gan", "not distinguishable",
              "Welch"):
        assert h in page, h
    assert "every verdict is provisional" not in page
    _, old_page = _aggregate(tmp_path / "old", per, seeds, old=True)
    assert "flow ahead of gan" in old_page and "p after Holm" in old_page


def test_two_seed_aggregate_is_provisional_with_the_command(tmp_path):
    per = {"flow": ([23.1, 23.5], [6.1, 6.3]), "gan": ([61.2, 66.9], [8.0, 8.3])}
    agg, page = _aggregate(tmp_path, per, [42, 43])
    assert all(p["outcome"] == PROVISIONAL for c in agg["comparisons"] for p in c["pairs"])
    assert "every verdict is provisional" in page
    assert "genbench run mnist_four --budget images=1500 --seeds 3" in page
    assert "flow ahead of gan" not in page


def test_scored_sample_sets_get_what_would_decide_instead_of_a_run_command():
    from genbench.report.verdicts import provisional_note

    s = {"study": "score-mnist", "seed": 0, "profile": "quick",
         "models": [{"model": "x", "kind": "samples"}, {"model": "y", "kind": "samples"}, {"model": "real"}]}
    note = provisional_note(s)
    assert "provisional" in note and "sampling-only" in note and "genbench run" not in note
    assert "at least 3 independently trained models" in note


# -- the quality sentence's N checks (issue 28) ---------------------------------------------------------------------
def _row(name, fid, fid_std, kid, kid_std, n):
    return {"model": name, "conditional": False, "metrics": {
        "fid_inception": {"value": fid, "std": fid_std, "n_generated": n},
        "kid_inception": {"value": kid, "std": kid_std, "n_generated": n}}}


def test_below_the_feature_dimension_the_ranking_uses_kid():
    from genbench.report.analysis import quality_sentence

    # FID says a, KID says b: at N = 500 the sentence must rank by KID and say why
    models = [_row("a", 30.0, 1.0, 0.020, 0.001, 500), _row("b", 40.0, 1.0, 0.010, 0.001, 500)]
    text = quality_sentence(models, _row("real", 10.0, 0.5, 0.001, 0.0005, 500))
    assert text.startswith("lowest Inception KID") and "b (0.01" in text and "Ranked by KID, not FID" in text
    assert "2,048" in text
    big = [_row("a", 30.0, 1.0, 0.020, 0.001, 5000), _row("b", 40.0, 1.0, 0.010, 0.001, 5000)]
    text = quality_sentence(big, _row("real", 10.0, 0.5, 0.001, 0.0005, 5000))
    assert text.startswith("lowest Inception FID (N=5000)") and "a (30" in text and "KID" not in text


def test_rows_at_different_n_are_not_ranked():
    from genbench.report.analysis import quality_sentence

    models = [_row("a", 30.0, 1.0, 0.02, 0.001, 2000), _row("b", 40.0, 1.0, 0.01, 0.001, 2000)]
    text = quality_sentence(models, _row("real", 10.0, 0.5, 0.001, 0.0005, 1000))  # a real row at a smaller N
    assert text.startswith("Not ranked by Inception metrics") and "real N=1000" in text and "a N=2000" in text
