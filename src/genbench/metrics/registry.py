"""The sample-metric registry: one :class:`Metric` spec per metric, in the order ``metrics.json`` lists them.

Anchor: torch-fidelity's ``registry.py`` and ``calculate_metrics`` (each metric names the features it needs; one
call computes every requested metric on shared features). The evaluate stage
(:func:`genbench.metrics.evaluate.evaluate_images`) extracts the features the applicable metrics need, once, then
calls each spec's ``compute``; the report derives its headline columns from the same specs (``columns``), so a
metric registered here (built-in in :mod:`genbench.metrics.generic`, or a plugin's through
:func:`register_metric`) reaches ``metrics.json`` and the report with no other edit.

Family metrics (ELBO, active units, D(x)...) that need the model, not only its samples, are declared in
:mod:`genbench.metrics.family`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from genbench.errors import GenbenchError
from genbench.runtime.registry import Registry

NEEDS = ("images", "labels", "classifier", "inception", "train", "train_features")
"""What a metric may need: the uint8 images, their conditioning labels, the in-domain classifier's predictions and
features (with its reference statistics), Inception pool3 features (with the reference subset's), the training
split (memorisation), the classifier features of the seeded train subset the size of the test split."""


@dataclass
class Inputs:
    """What the evaluate stage hands every metric (rank 0, after the collective feature extraction).

    Attributes:
        ctx: the :class:`~genbench.metrics.evaluate.EvalContext` (eval config, test/train splits, seed, reference
            subsets and their records).
        images: uint8 (N, C, H, W); labels: int64 (N,) or None (unconditional).
        conditional: labels given and all >= 0.
        n: N, the number of images; m: the Inception N (``min(n_inception, N)``).
        probs: float (N, K) classifier softmax; feats: float (N, 128) classifier penultimate features.
        clf_ref: (mu, sigma) float64 of the classifier features of the whole test split.
        clf_ref_manifold: float (n_manifold, 128) classifier features of the reference subset.
        clf_name: the classifier's provenance string (name and test accuracy).
        feats_i: float64 (m, 2048) Inception pool3 features of the first m images (None if not needed).
        inc_mu, inc_sigma, inc_ref: the Inception reference subset's mean (2048,), covariance (2048, 2048) and
            features (m, 2048), float64 (None if not needed).
        train_feats: float64 (min(N_test, N_train), 128) classifier features of the seeded train subset
            (:meth:`~genbench.metrics.evaluate.EvalContext.train_features`; None if not needed).
        spaces: per extractor of the study's own (``evaluation.extractors``) ``{"gen": float64 (m, D) features of
            the first m images, "mu", "sigma", "ref": the m-image reference subset's statistics and features,
            "describe": the extractor in words, "key": its cache key}``; empty when the study names none.
    """

    ctx: object
    images: object
    labels: object
    conditional: bool
    n: int
    m: int
    probs: np.ndarray | None = None
    feats: np.ndarray | None = None
    clf_ref: tuple | None = None
    clf_ref_manifold: np.ndarray | None = None
    clf_name: str = ""
    feats_i: np.ndarray | None = None
    inc_mu: np.ndarray | None = None
    inc_sigma: np.ndarray | None = None
    inc_ref: np.ndarray | None = None
    train_feats: np.ndarray | None = None
    spaces: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    """One column of the report's headline table, read from a metric's ``metrics.json`` entry.

    Attributes:
        header: the column title; ``{n}`` is replaced by the real-data row's N of this metric.
        field: the value key (``value``; ``precision`` for PRDC...); std: its spread key, or None.
        digits: significant digits shown.
        order: its place among the metric columns (ascending; ties keep registration order).
    """

    header: str
    field: str = "value"
    std: str | None = "std"
    digits: int = 4
    order: int = 1000


def always(inputs: Inputs) -> bool:
    return True


@dataclass(frozen=True)
class Metric:
    """One sample metric.

    Attributes:
        name: its key in ``metrics.json`` (``models[i].metrics[name]``).
        needs: the inputs it reads (:data:`NEEDS`).
        compute: ``compute(inputs) -> dict``: ``{"value", "std"?, provenance...}`` (see docs/METRICS.md).
        direction: "lower" or "higher" is better, or "none".
        spread: how its ``std`` is computed, in words ("" if it has none).
        applies: ``applies(inputs) -> bool``: whether this image set gets it (conditional-only metrics...).
        columns: its columns in the report's headline table (none: it shows in its own sections only).
        doc: one line with the formula's source.
    """

    name: str
    needs: tuple[str, ...]
    compute: Callable[[Inputs], dict]
    direction: str
    spread: str = ""
    applies: Callable[[Inputs], bool] = always
    columns: tuple[Column, ...] = ()
    doc: str = ""


_METRICS: Registry[Metric] = Registry("metric", Metric, "genbench.metrics.registry.Metric", "register_metric",
                                     identifier=False)


def register_metric(metric: Metric, *, replace: bool = False) -> Metric:
    """Add ``metric`` to the registry (after those registered before it). Returns it.

    Raises:
        GenbenchError: the name is taken (and ``replace`` is False), or ``needs`` names an unknown input.
    """
    def known_needs(m: Metric) -> None:
        bad = [x for x in m.needs if x not in NEEDS]
        if bad:
            raise GenbenchError(f"metric {m.name!r}: unknown input(s) {', '.join(bad)}; needs are among "
                                f"{', '.join(NEEDS)}")

    return _METRICS.add(metric, replace=replace, check=known_needs)


def unregister_metric(name: str) -> None:
    """Remove a metric (tests that register a dummy one clean up with this)."""
    _METRICS.remove(name)


def metrics() -> tuple[Metric, ...]:
    """Every registered metric, in registration order."""
    return _METRICS.values()


def get_metric(name: str) -> Metric:
    """The metric called ``name``.

    Raises:
        GenbenchError: no such metric.
    """
    return _METRICS.get(name)
