"""Which real images a metric compares against: a seeded, class-stratified random order of a split.

Taking the first N images of a split is not a random sample when the split is ordered: MNIST's test split
holds NIST SD-3 writers in its first 5,000 images and SD-1 writers in its last 5,000, and FID at N = 400 moved
by 4-10% between the first 400 test images and a random 400 (shared/MEASURED.md, issue 17).

:func:`reference_order` returns a permutation of the whole split whose every prefix is a class-stratified
random subset (each class holds its share of the first n rows to within one image), so one array serves every
N a study uses (Inception N, classifier-manifold N, the FID-infinity subset sizes) and the subsets are nested.
The order is a pure function of (labels, seed): ``reference_subset(dataset, n, seed)`` is its first n rows,
and the run folder keeps the order as ``reference_indices.npy`` (``heldout_indices.npy`` for the real-data
row) so any tool can rebuild the same subsets.

Stratification (systematic sampling within each class): class c with n_c images gets its images shuffled and
the j-th placed at key (j + u_c) / n_c, u_c ~ U(0, 1) per class; the split is sorted by key (random tie break).
A prefix of length n then holds floor or ceil of n n_c / N images of class c.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

ORDER_VERSION = 1


def reference_order(labels: np.ndarray | torch.Tensor | None, n_total: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n_total)`` whose every prefix is class-stratified.

    Args:
        labels: int (n_total,) class labels, or None / any negative label = unlabelled (plain random order).
        n_total: the split's size.
        seed: the study seed.

    Returns:
        int64 (n_total,) permutation.

    Raises:
        ValueError: ``labels`` does not have ``n_total`` rows.
    """
    rng = np.random.default_rng([seed, ORDER_VERSION, n_total])
    y = None if labels is None else np.asarray(labels).reshape(-1)
    if y is None or len(y) == 0 or (y < 0).any():
        return rng.permutation(n_total).astype(np.int64)
    if len(y) != n_total:
        raise ValueError(f"labels have {len(y)} rows, the split {n_total}")
    key = np.empty(n_total, np.float64)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        key[members] = (np.arange(len(members)) + rng.random()) / len(members)
    tie = rng.random(n_total)
    return np.lexsort((tie, key)).astype(np.int64)


def reference_subset(dataset, n: int, seed: int) -> np.ndarray:
    """Indices (int64 (n,)) of a seeded, class-stratified random subset of ``dataset`` (an object with ``x`` and
    ``y``, e.g. :class:`~genbench.data.registry.Dataset`): the first n rows of :func:`reference_order`.

    Raises:
        ValueError: ``n`` exceeds the split's size.
    """
    if n > len(dataset.x):
        raise ValueError(f"a reference subset of {n} images from a split of {len(dataset.x)}: lower n_inception / "
                         f"n_manifold / n_samples in the study's evaluation section")
    return reference_order(getattr(dataset, "y", None), len(dataset.x), seed)[:n]


def indices_sha256(indices: np.ndarray) -> str:
    """sha256 (hex) of the indices as little-endian int64, in their order: the subset's identity in cache keys
    and in ``metrics.json``."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(indices), dtype="<i8").tobytes()).hexdigest()


def subset_record(split: str, indices: np.ndarray, seed: int, *, stratified: bool, file: str) -> dict:
    """The provenance of one subset as stored in metrics.json: split, n, seed, sha256 of the indices, the file
    that holds the order (its first n rows are the indices)."""
    return {"split": split, "n": int(len(indices)), "seed": int(seed), "order_version": ORDER_VERSION,
            "selection": "seeded class-stratified random" if stratified else "seeded random",
            "indices_sha256": indices_sha256(indices), "file": file, "rebuild": f"np.load('{file}')[:{len(indices)}]"}
