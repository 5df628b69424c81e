"""The generic sample metrics every model and the real-data row get, registered in the order ``metrics.json``
lists them (:mod:`genbench.metrics.registry`). Each compute function reads the shared features of
:class:`~genbench.metrics.registry.Inputs`; the formulas live in :mod:`genbench.metrics.scores`,
:mod:`genbench.metrics.manifold` and :mod:`genbench.metrics.classifier`, with their sources.
"""

from __future__ import annotations

import numpy as np
import torch

from genbench.metrics.classifier import classification_accuracy_score
from genbench.metrics.manifold import kid, nearest_train_distance, prdc_with_spread
from genbench.metrics.registry import Column, Inputs, Metric, register_metric
from genbench.metrics.scores import (
    bootstrap_fid, bootstrap_fid_both, conditional_accuracy, feature_stats, fid_infinity, frechet_distance,
    frechet_distance_to, inception_score, mean_pairwise_l2_with_spread, mode_coverage, mode_coverage_spread)

MIN_FID_RESAMPLES = 20  # bootstrap resamples behind every Inception FID spread (the study's fid_bootstrap, at least)
SPREAD_RESAMPLES = 20  # bootstrap resamples behind the spreads of diversity, mode coverage and memorisation


def binomial_se(p: float, n: int) -> float:
    """Standard error of a proportion p measured on n independent trials: sqrt(p (1 - p) / n)."""
    return float(np.sqrt(max(p * (1 - p), 0.0) / max(n, 1)))


def _conditional(x: Inputs) -> bool:
    return x.conditional


def _is(x: Inputs) -> dict:
    ev, k = x.ctx.eval_cfg, x.ctx.test.num_classes
    mean, std = inception_score(x.probs, ev.is_splits)
    return {"value": mean, "std": std, "n_generated": x.n, "splits": ev.is_splits, "extractor": x.clf_name,
            "direction": "higher is better", "range": f"[1, {k}]"}


def _fd_classifier(x: Inputs) -> dict:
    return {"value": frechet_distance(*feature_stats(x.feats), *x.clf_ref),
            "std": bootstrap_fid(x.feats, x.clf_ref, n_boot=10, seed=x.ctx.seed), "spread": "bootstrap std, 10",
            "n_generated": x.n, "n_reference": len(x.ctx.test), "reference": "test split",
            "extractor": x.clf_name + " penultimate (128-d)", "direction": "lower is better"}


def _mode_coverage(x: Inputs) -> dict:
    k = x.ctx.test.num_classes
    pred = x.probs.argmax(1)
    mc, sp = mode_coverage(pred, k), mode_coverage_spread(pred, k, n_boot=SPREAD_RESAMPLES, seed=x.ctx.seed)
    return {"value": mc["modes_covered"], "std": sp["modes_covered_std"], "kl_to_uniform_nats": mc["kl_to_uniform_nats"],
            "kl_to_uniform_nats_std": sp["kl_to_uniform_nats_std"], "histogram": mc["histogram"], "n_generated": x.n,
            "extractor": x.clf_name, "spread": f"bootstrap std over {SPREAD_RESAMPLES} resamples of the samples",
            "direction": f"higher is better (max {k}); KL lower is better"}


def _diversity(x: Inputs) -> dict:
    d = mean_pairwise_l2_with_spread(x.images.numpy(), seed=x.ctx.seed, n_boot=SPREAD_RESAMPLES)
    return {"value": d["value"], "std": d["std"], "n_generated": d["n_generated"],
            "spread": f"bootstrap std over {SPREAD_RESAMPLES} resamples of the images (pairs of distinct draws)",
            "direction": "higher = more diverse (pixels in [0, 1])"}


def _conditional_accuracy(x: Inputs) -> dict:
    ca = conditional_accuracy(x.probs.argmax(1), x.labels.numpy(), x.ctx.test.num_classes)
    return {"value": ca["overall"], "std": binomial_se(ca["overall"], x.n), "spread": "binomial standard error",
            "per_class": ca["per_class"], "n_generated": x.n, "extractor": x.clf_name,
            "direction": "higher is better"}


def _cas(x: Inputs) -> dict:
    ctx, ev = x.ctx, x.ctx.eval_cfg
    n_cas = getattr(ev, "cas_n_test", None)  # None: the whole test split; else its seeded stratified prefix
    test = ctx.test if not n_cas or n_cas >= len(ctx.test) else \
        ctx.test.subset(torch.as_tensor(ctx.reference_indices(n_cas)))
    cas = classification_accuracy_score(x.images, x.labels, test, steps=ev.cas_steps, seed=ctx.seed)
    return {**cas, "std": binomial_se(cas["value"], cas["n_test"]), "spread": "binomial standard error on the test split"}


def _nearest_train(x: Inputs) -> dict:
    nn_d = nearest_train_distance(x.images.numpy()[:x.ctx.eval_cfg.n_memorisation], x.ctx.train.x.numpy())
    rng = np.random.default_rng(x.ctx.seed)
    boots = [np.median(nn_d[rng.integers(0, len(nn_d), len(nn_d))]) for _ in range(SPREAD_RESAMPLES)]
    return {"value": float(np.median(nn_d)), "std": float(np.std(boots)),
            "spread": f"bootstrap std of the median over {SPREAD_RESAMPLES} resamples of the samples",
            "p01": float(np.quantile(nn_d, 0.01)), "n_generated": len(nn_d),
            "n_train": len(x.ctx.train), "direction": "near 0 = copies of training images (memorisation)",
            "stat": "median over samples of the L2 distance (pixels in [0, 1]) to the nearest training image; "
                    "p01 = 1st percentile"}


def _pair(x: Inputs, space: str) -> tuple[np.ndarray, np.ndarray]:
    """(generated, reference) features of one space at equal N; the reference rows are the saved subset order, so
    the first n are the n-subset ``reference_record(n)`` describes."""
    if space == "classifier":
        gen, real = x.feats[:x.ctx.eval_cfg.n_manifold], x.clf_ref_manifold
    elif space == "inception":
        gen, real = x.feats_i, x.inc_ref
    else:  # a study's own extractor: the Inception protocol
        gen, real = x.spaces[space]["gen"], x.spaces[space]["ref"]
    n = min(len(gen), len(real))
    return gen[:n], real[:n]


def _kid(space: str):
    def compute(x: Inputs) -> dict:
        gen, real = _pair(x, space)
        n = len(gen)
        size = max(2, min(1000, n // 2))  # subsets smaller than N, or the spread over subsets would be 0
        km, ks = kid(gen, real, subsets=100, subset_size=size, seed=x.ctx.seed)
        return {"value": km, "std": ks, "n_generated": n, "n_reference": n, "subsets": 100, "subset_size": size,
                "kernel": "cubic polynomial (x.y/d + 1)^3", "direction": "lower is better",
                "spread": "std over subsets", "reference_subset": x.ctx.reference_record(n)}
    return compute


def _prdc(space: str):
    def compute(x: Inputs) -> dict:
        gen, real = _pair(x, space)
        n = len(gen)
        prdc = prdc_with_spread(gen, real, k_pr=3, k_dc=5, n_boot=10, seed=x.ctx.seed)
        return {**prdc, "k_pr": 3, "k_dc": 5, "n_generated": n, "n_reference": n,
                "spread": "bootstrap std of the generated set, 10", "direction": "higher is better",
                "reference_subset": x.ctx.reference_record(n)}
    return compute


def _fd_at_m(x: Inputs, gen: np.ndarray, ref: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> dict:
    """The Fréchet distance of the m generated features to the m-image reference subset's statistics, with the
    bootstrap spread of both sides (:func:`bootstrap_fid_both`): the fields every equal-N FD shares."""
    ev, m = x.ctx.eval_cfg, x.m
    n_boot = max(ev.fid_bootstrap, MIN_FID_RESAMPLES) if ev.fid_bootstrap > 0 else 0
    sp = bootstrap_fid_both(gen, ref, (mu, sigma), n_boot=n_boot, seed=x.ctx.seed) if n_boot else {}
    return {"value": frechet_distance_to(gen, mu, sigma), "std": sp.get("std"),
            "std_generated": sp.get("std_generated"), "std_reference": sp.get("std_reference"),
            "spread": f"bootstrap: {n_boot} resamples of the generated features (reference statistics fixed) and "
                      f"{n_boot} of the reference subset's (generated statistics fixed), stds added in quadrature"
                      if n_boot else "none (fid_bootstrap: 0)",
            "resamples": n_boot, "n_generated": m, "n_reference": m,
            "reference": "test split, seeded class-stratified random subset",
            "reference_subset": x.ctx.reference_record(m)}


def _fid(x: Inputs) -> dict:
    return {**_fd_at_m(x, x.feats_i, x.inc_ref, x.inc_mu, x.inc_sigma), **_inception_provenance(x),
            "direction": "lower is better",
            "note": f"FID at N={x.m} is biased upwards; compare values at the same N, or FID-infinity"}


def _fd_space(space: str):
    def compute(x: Inputs) -> dict:
        s = x.spaces[space]
        return {**_fd_at_m(x, s["gen"], s["ref"], s["mu"], s["sigma"]), "space": space, "extractor": s["describe"],
                "extractor_key": s["key"], "direction": "lower is better",
                "note": f"FD in {space}'s feature space ({s['gen'].shape[1]}-d) at N={x.m}, biased upwards like FID: "
                        f"compare values at the same N"}
    return compute


def _kid_space(space: str):
    kid_of = _kid(space)

    def compute(x: Inputs) -> dict:
        return {**kid_of(x), "space": space, "extractor": x.spaces[space]["describe"]}
    return compute


def space_metrics(space: str) -> tuple[Metric, ...]:
    """The metrics of a study's own feature space ``space`` (``evaluation.extractors``), in ``metrics.json`` order:
    ``fd_<space>`` (Fréchet distance, Heusel et al. 2017, eq. 6, at the Inception N against the same reference
    subset, spread as FID's) and ``kid_<space>`` (Binkowski et al. 2018, eq. 4, subsets as ``kid_inception``).
    Not registered: they exist only for the studies that name the extractor."""
    return (Metric(f"fd_{space}", ("images",), _fd_space(space), "lower",
                   "bootstrap std of the generated and the reference features",
                   doc=f"Fréchet distance on {space} features (Heusel et al. 2017, eq. 6)"),
            Metric(f"kid_{space}", ("images",), _kid_space(space), "lower", "std over subsets",
                   doc=f"KID on {space} features (Binkowski et al. 2018, eq. 4)"))


def _inception_provenance(x: Inputs) -> dict:
    """The extractor's key, and for INT8 its build record (an extractor without ``provenance``: its key)."""
    inc = x.ctx.inception
    return inc.provenance() if hasattr(inc, "provenance") else inc.key()


def _fid_inf(x: Inputs) -> dict:
    m = x.m
    fi = fid_infinity(x.feats_i, x.inc_ref, seed=x.ctx.seed)
    return {**fi, "n_generated": m, "n_reference": m, "reference_subset": x.ctx.reference_record(m),
            **_inception_provenance(x), "direction": "lower is better",
            "method": "Chong & Forsyth 2020: FID of nested random subsets of the generated and reference sets (N vs "
                      "N) at the sizes ns, least-squares line in 1/N, intercept at 1/N = 0",
            "note": "less biased than FID at N, but FID_N is linear in 1/N only for N >> 2048: below that compare "
                    "FID-infinity only at the same N; the real-data row's FID-infinity is the floor at this N"}


CLF, INC = ("images", "classifier"), ("images", "inception")
for _m in (  # the registration lines, in metrics.json order
    Metric("is", CLF, _is, "higher", "std over splits", columns=(Column("IS↑ classifier (N={n})", digits=3, order=50),),
           doc="Inception Score on the in-domain classifier (Salimans et al. 2016, eq. in sec. 4)"),
    Metric("fd_classifier", CLF, _fd_classifier, "lower", "bootstrap std, 10",
           columns=(Column("FD↓ classifier (N={n})", order=40),), doc="Fréchet distance on classifier features (Heusel et "
                                                            "al. 2017, eq. 6)"),
    Metric("mode_coverage", CLF, _mode_coverage, "higher", "bootstrap std of the samples",
           columns=(Column("modes", order=100),),
           doc="classes covered by the classifier's predictions; KL of their histogram to uniform"),
    Metric("diversity_l2", ("images",), _diversity, "none", "bootstrap std of the images",
           doc="mean pairwise L2 distance in pixel space"),
    Metric("conditional_accuracy", CLF + ("labels",), _conditional_accuracy, "higher", "binomial standard error",
           applies=_conditional, columns=(Column("cond. acc↑", digits=3, order=80),),
           doc="GAN-test: the classifier's accuracy on label-conditioned samples (Shmelkov et al. 2018)"),
    Metric("cas", ("images", "labels"), _cas, "higher", "binomial standard error on the test split",
           applies=_conditional, columns=(Column("CAS↑", digits=3, order=90),),
           doc="Classification Accuracy Score: train on generated, test on real (Ravuri & Vinyals 2019)"),
    Metric("nearest_train_l2", ("images", "train"), _nearest_train, "none", "bootstrap std of the median",
           doc="memorisation: median L2 distance to the nearest training image"),
    Metric("kid_classifier", CLF, _kid("classifier"), "lower", "std over subsets",
           doc="KID, cubic polynomial kernel, unbiased MMD (Binkowski et al. 2018, eq. 4)"),
    Metric("prdc_classifier", CLF, _prdc("classifier"), "higher", "bootstrap std of the generated set, 10",
           doc="precision/recall (Kynkäänniemi et al. 2019, k=3), density/coverage (Naeem et al. 2020, k=5)"),
    Metric("fid_inception", INC, _fid, "lower", "bootstrap std of the generated and the reference features",
           columns=(Column("FID↓ Inception (N={n})", order=10),), doc="FID on Inception pool3 (Heusel et al. 2017, eq. 6)"),
    Metric("fid_inf_inception", INC, _fid_inf, "lower", "standard error of the fitted intercept",
           applies=lambda x: x.m >= 8,
           columns=(Column("FID-inf↓ (fit)", order=20),), doc="FID-infinity (Chong & Forsyth 2020)"),
    Metric("kid_inception", INC, _kid("inception"), "lower", "std over subsets",
           columns=(Column("KID↓ Inception (N={n})", digits=3, order=30),),
           doc="KID on Inception pool3 (Binkowski et al. 2018, eq. 4)"),
    Metric("prdc_inception", INC, _prdc("inception"), "higher", "bootstrap std of the generated set, 10",
           columns=(Column("precision↑ Inception", "precision", "precision_std", 3, 60),
                    Column("recall↑ Inception", "recall", "recall_std", 3, 70)),
           doc="precision/recall, density/coverage on Inception pool3"),
):
    register_metric(_m)
