"""Known answers: genbench's metrics against the reference implementations on the same features.

- precision / recall / density / coverage vs ``prdc.compute_prdc`` (Naeem et al. 2020, the authors' package);
- KID vs torchmetrics' ``KernelInceptionDistance`` fed the features through an identity ``feature=`` module;
- Inception FID with the OpenVINO backend vs the torch fp32 backend on real MNIST (the 0.5% rule).
"""

import contextlib
import io

import numpy as np
import pytest
import torch

from genbench.metrics.manifold import density_coverage, kid, mmd2_unbiased, precision_recall

prdc = pytest.importorskip("prdc")


def _reference_prdc(gen, real, k):
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
        return {key: float(v) for key, v in prdc.compute_prdc(real_features=real, fake_features=gen,
                                                              nearest_k=k).items()}


@pytest.mark.parametrize("dim,shift,k", [(64, 0.1, 3), (64, 0.5, 5), (2048, 0.05, 3), (2048, 0.0, 5)])
def test_prdc_equals_the_reference_package_on_continuous_features(dim, shift, k):
    rng = np.random.default_rng(dim + k)
    real = rng.normal(size=(300, dim))
    gen = rng.normal(size=(250, dim)) * 1.1 + shift
    ref = _reference_prdc(gen, real, k)
    ours = {**precision_recall(gen, real, k), **density_coverage(gen, real, k)}
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_density_coverage_equal_the_reference_with_tied_distances():
    """Small-integer features: many generated-real distances equal a k-NN radius (duplicated images do this).
    Density and coverage use the reference's open balls; precision and recall the closed balls of
    Kynkaenniemi et al. eq. 1, so they count the ties the reference leaves out (>=)."""
    rng = np.random.default_rng(0)
    real = rng.integers(0, 3, size=(120, 4)).astype(np.float64)
    gen = rng.integers(0, 3, size=(100, 4)).astype(np.float64)
    for k in (3, 5):
        ref = _reference_prdc(gen, real, k)
        dc = density_coverage(gen, real, k)
        assert dc["density"] == pytest.approx(ref["density"], abs=1e-12)
        assert dc["coverage"] == pytest.approx(ref["coverage"], abs=1e-12)
        pr = precision_recall(gen, real, k)
        assert pr["precision"] >= ref["precision"] and pr["recall"] >= ref["recall"]


class _Identity(torch.nn.Module):
    """torchmetrics' ``feature=`` module that returns its input: the metric sees our features as they are."""

    def __init__(self, d):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


def _torchmetrics_kid(gen, real, subsets, subset_size, seed):
    from torchmetrics.image.kid import KernelInceptionDistance

    m = KernelInceptionDistance(feature=_Identity(gen.shape[1]), subsets=subsets, subset_size=subset_size)
    m.update(torch.as_tensor(real), real=True)
    m.update(torch.as_tensor(gen), real=False)
    torch.manual_seed(seed)
    mean, std = m.compute()
    return float(mean), float(std)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_kid_equals_torchmetrics_on_the_whole_sets():
    """subset_size = N: every subset is the whole set (permuted), so both give the one unbiased MMD^2."""
    rng = np.random.default_rng(1)
    real = rng.normal(size=(200, 2048)) * 0.3
    gen = rng.normal(size=(200, 2048)) * 0.35 + 0.05
    ref_mean, _ = _torchmetrics_kid(gen, real, subsets=3, subset_size=200, seed=0)
    mean, std = kid(gen, real, subsets=3, subset_size=200, seed=0)
    assert mean == pytest.approx(ref_mean, rel=1e-10)
    assert std < 1e-12 * abs(mean) + 1e-15
    assert mmd2_unbiased(gen, real) == pytest.approx(ref_mean, rel=1e-10)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_kid_equals_torchmetrics_on_the_same_random_subsets():
    """Reproduce torchmetrics' draws (per subset: randperm of the real set, then of the fake set) and pass them
    to genbench's ``kid``: mean and std over subsets must agree."""
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 64))
    gen = rng.normal(size=(260, 64)) * 1.2 + 0.1
    subsets, size, seed = 20, 50, 7
    torch.manual_seed(seed)
    draws = []
    for _ in range(subsets):
        ir = torch.randperm(len(real))[:size].numpy()
        ig = torch.randperm(len(gen))[:size].numpy()
        draws.append((ig, ir))
    ref_mean, ref_std = _torchmetrics_kid(gen, real, subsets, size, seed)
    mean, std = kid(gen, real, subset_indices=draws)
    assert mean == pytest.approx(ref_mean, rel=1e-9)
    assert std == pytest.approx(ref_std, rel=1e-7)
