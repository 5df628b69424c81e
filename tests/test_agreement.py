"""genbench's FID and KID against torch-fidelity 0.4.0 and clean-fid 0.1.35 (``legacy_tensorflow``), issue 28.

The references' module files are read out of their wheels in .cache/wheels (``make setup`` downloads both with
``pip download --no-deps``) by benchmarks/agreement.py, which also runs the full comparison on MNIST and prints the
table in docs/METRICS.md. Neither package is installed or imported as a package, and torchvision never is.

Layer 1 (fast): the same feature arrays through each implementation's statistics, KID on identical subsets.
Layer 2 (resize fast, network slow): the same uint8 images through each feature pipeline, same weights.

Every tolerance below is a rounding bound computed from the data (the unit roundoff of the arithmetic, the sizes
summed over, the magnitudes that cancel), not a fitted number; each says which.
"""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import agreement as A  # noqa: E402 - the loaders live beside the benchmark that prints the table

EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps


def _need(name):
    if A.wheel(name) is None:
        pytest.skip(f"{name} missing from .cache/wheels: run `make setup` (it downloads it with pip --no-deps)")


@pytest.fixture(scope="module")
def tfid():
    _need(A.TORCH_FIDELITY)
    return A.load_torch_fidelity()


@pytest.fixture(scope="module")
def cfid():
    _need(A.CLEAN_FID)
    return A.load_clean_fid()


def _features(n=1200, d=256, shift=0.0, seed=0, dtype=np.float64):
    """Inception-like features: non-negative (pool3 follows a ReLU), correlated (a random mixing), mean ~0.5, with
    N > D so both covariances are full rank (the N < D case is the benchmark's, see docs/METRICS.md)."""
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(99).normal(size=(d, d)) / np.sqrt(d)
    z = rng.normal(size=(n, d)) @ mix + shift
    return np.abs(z).astype(dtype) * 0.5


def test_reference_modules_load_without_torchvision(tfid, cfid):
    assert "torchvision" not in sys.modules
    assert not any(m == "torch_fidelity" or m.startswith(("torch_fidelity.", "cleanfid")) for m in sys.modules)
    assert callable(tfid.metric_fid.fid_statistics_to_metric) and callable(cfid.fid.frechet_distance)


def _fid_tolerance(a, b):
    """Absolute bound on the difference of two float64 FIDs computed by different backward-stable methods (genbench:
    two symmetric eigendecompositions; torch-fidelity: eigenvalues of the unsymmetric S1 S2; clean-fid: Schur-based
    ``sqrtm``). Each finds the eigenvalues of S1 S2 to within delta = D eps ||S1|| ||S2|| (backward error of the
    QR/Schur algorithm, Golub & Van Loan 7.5.2); the square root turns an absolute error delta on an eigenvalue
    lambda into at most sqrt(delta) (at lambda ~ 0), so the trace term moves by at most 2 D sqrt(delta); the
    traces and ||mu1 - mu2||^2 add D eps (Tr S1 + Tr S2 + ||mu1 - mu2||^2)."""
    (m1, s1), (m2, s2) = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    d = len(m1)
    delta = d * EPS64 * np.linalg.norm(s1, 2) * np.linalg.norm(s2, 2)
    return 2 * d * math.sqrt(delta) + d * EPS64 * (np.trace(s1) + np.trace(s2) + ((m1 - m2) ** 2).sum())


@pytest.mark.parametrize("shift", [0.0, 0.3])  # two samples of one law (FID ~ bias only), and a shifted law
def test_fid_matches_torch_fidelity_and_clean_fid_on_the_same_features(tfid, cfid, shift):
    from genbench.metrics.scores import feature_stats, fid_between, frechet_distance

    a, b = _features(seed=1), _features(seed=2, shift=shift)
    ours = frechet_distance(*feature_stats(a), *feature_stats(b))
    tf = tfid.metric_fid.fid_statistics_to_metric(tfid.metric_fid.fid_features_to_statistics(torch.from_numpy(a)),
                                                  tfid.metric_fid.fid_features_to_statistics(torch.from_numpy(b)),
                                                  False)["frechet_inception_distance"]
    cf = float(np.real(cfid.fid.fid_from_feats(a, b)))
    tol = _fid_tolerance(a, b)
    assert ours > 100 * tol  # the bound is meaningful: far below the value compared
    assert abs(ours - tf) <= tol and abs(ours - cf) <= tol, (ours, tf, cf, tol)
    # fid_between (genbench's N <= D path) on a slice below D: one more exact route, the same bound.
    a2, b2 = a[:200], b[:200]
    assert abs(fid_between(a2, b2) - frechet_distance(*feature_stats(a2), *feature_stats(b2))) <= _fid_tolerance(a2, b2)


def test_fid_agrees_with_float32_features_as_the_references_hand_them(tfid, cfid):
    """Both references average float32 features in float32 (``np.mean`` keeps the dtype; ``np.cov`` widens), so
    mu carries a rounding of up to log2(N) eps32 max|f| per coordinate (pairwise summation); ||mu1 - mu2||^2 moves
    by at most 2 ||mu1 - mu2|| sqrt(D) that, plus the float64 bound. genbench widens to float64 first."""
    from genbench.metrics.scores import feature_stats, frechet_distance

    a, b = _features(seed=1, dtype=np.float32), _features(seed=2, shift=0.3, dtype=np.float32)
    ours = frechet_distance(*feature_stats(a), *feature_stats(b))
    tf = tfid.metric_fid.fid_statistics_to_metric(tfid.metric_fid.fid_features_to_statistics(torch.from_numpy(a)),
                                                  tfid.metric_fid.fid_features_to_statistics(torch.from_numpy(b)),
                                                  False)["frechet_inception_distance"]
    cf = float(np.real(cfid.fid.fid_from_feats(a, b)))
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dmu = np.linalg.norm(a64.mean(0) - b64.mean(0))
    err_mu = 2 * math.log2(len(a)) * EPS32 * max(np.abs(a).max(), np.abs(b).max())
    tol = _fid_tolerance(a64, b64) + 2 * dmu * math.sqrt(a.shape[1]) * err_mu + a.shape[1] * err_mu**2
    assert abs(ours - tf) <= tol and abs(ours - cf) <= tol, (ours, tf, cf, tol)
    assert tol / ours < 1e-4  # far inside the 0.5%


def _kid_tolerance(a, b, subsets):
    """Absolute bound on the difference of two float64 evaluations of the same unbiased MMD^2 sums in different
    orders: each kernel value k = (x.y / d + 1)^3 carries (d + 3) eps relative (the dot product, then the cube), and
    a sum's order changes it by at most m^2 eps max|k|; both enter eq. 3 with weights adding to 4 (Kxx, Kyy, 2 Kxy)."""
    m = len(subsets[0][0])
    d = a.shape[1]
    kmax = max(((x @ y.T / d + 1) ** 3).max() for x, y in ((a, a), (b, b), (a, b)))
    return 4 * kmax * EPS64 * (d + 3 + m * m)


def test_kid_matches_torch_fidelity_on_its_own_subsets(tfid):
    """torch-fidelity draws its subsets from np.random.RandomState(rng_seed), set 1 then set 2 per subset;
    genbench's ``kid`` takes those index pairs (``subset_indices``). Other subsets would differ by about the KID's
    std over subsets, far above the bound, so agreement also shows the draws are identical."""
    from genbench.metrics.manifold import kid

    a, b = _features(600, seed=1), _features(500, seed=2, shift=0.5)
    subs = A.torch_fidelity_kid_subsets(len(a), len(b), 20, 200, 7)
    ours, ours_std = kid(a, b, subset_indices=subs)
    ref = tfid.metric_kid.kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=20,
                                                 kid_subset_size=200, rng_seed=7, verbose=False)
    tol = _kid_tolerance(a, b, subs)
    assert ours > 1000 * tol
    assert abs(ours - ref["kernel_inception_distance_mean"]) <= tol
    assert abs(ours_std - ref["kernel_inception_distance_std"]) <= tol  # both ddof 0
    # And genbench's own seeded subsets are another draw: the value moves by about the spread, not by rounding.
    assert abs(kid(a, b, subsets=20, subset_size=200, seed=7)[0] - ours) > 100 * tol


def test_kid_matches_clean_fid_on_its_own_subsets(cfid):
    """clean-fid's ``kernel_distance`` draws from the global np.random, feats2's subset before feats1's, and
    returns the mean only."""
    from genbench.metrics.manifold import kid

    a, b = _features(600, seed=1), _features(500, seed=2, shift=0.5)
    subs = A.clean_fid_kid_subsets(len(a), len(b), 20, 200, 7)
    state = np.random.get_state()
    try:
        np.random.seed(7)
        ref = cfid.fid.kernel_distance(a, b, num_subsets=20, max_subset_size=200)
    finally:
        np.random.set_state(state)
    ours = kid(a, b, subset_indices=subs)[0]
    assert abs(ours - ref) <= _kid_tolerance(a, b, subs)


def test_kid_float32_features_as_the_references_hand_them(tfid):
    """torch-fidelity (and clean-fid) compute the kernels in the features' dtype: float32 in their pipelines. Each
    kernel value then carries (d + 3) eps32 relative in the worst case (sqrt(d) typically), and the three sums of
    eq. 3 cancel down to the KID: bound 4 max|k| eps32 (d + 3 + log2(m^2)) (numpy's pairwise summation)."""
    from genbench.metrics.manifold import kid

    a, b = _features(600, seed=1, dtype=np.float32), _features(500, seed=2, shift=0.5, dtype=np.float32)
    subs = A.torch_fidelity_kid_subsets(len(a), len(b), 20, 200, 7)
    ours = kid(a, b, subset_indices=subs)[0]
    ref = tfid.metric_kid.kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=20,
                                                 kid_subset_size=200, rng_seed=7, verbose=False)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    kmax = max(((x @ y.T / a.shape[1] + 1) ** 3).max() for x, y in ((a64, a64), (b64, b64), (a64, b64)))
    tol = 4 * kmax * EPS32 * (a.shape[1] + 3 + math.log2(200**2))
    assert abs(ours - ref["kernel_inception_distance_mean"]) <= tol
    # The worst case is loose (about 3% of this KID); the realised difference is what issue 28's 0.5% is about.
    assert abs(ours - ref["kernel_inception_distance_mean"]) / ours < 5e-3


def test_clean_fid_legacy_tensorflow_resize_is_genbench_tf1_resize(mnist):
    """clean-fid's legacy_tensorflow resize (the NVIDIA TorchScript's shifted affine_grid + grid_sample, rebuilt in
    :class:`agreement.NvidiaInception`) against genbench's TF1 gather, on digits, after clean-fid's ToTensor()*255.

    Bound: grid_sample recomputes each source coordinate from a float32 normalised grid, off by about
    (W / 2) * 4 eps32 pixels (affine_grid's base, the shift, the unnormalisation), times a digit's steepest
    step (255 per pixel), plus 2 * 255 eps32 for the two lerps and the ToTensor round trip."""
    from genbench.metrics.inception import resize_tf1_bilinear

    x = mnist["test"].x[:16]
    nv = A.NvidiaInception(torch.nn.Identity())
    theirs = nv.resize(A.clean_fid_input(x))
    ours = resize_tf1_bilinear(x.float().repeat(1, 3, 1, 1), 299)
    assert (A.clean_fid_input(x) - x.float()).abs().max() <= 255 * EPS32
    tol = 255 * (x.shape[-1] / 2) * 4 * EPS32 + 2 * 255 * EPS32
    assert theirs.shape == ours.shape and (theirs - ours).abs().max().item() <= tol
    # A resize without the shift (plain half-pixel grid_sample, i.e. PyTorch's bilinear) is far off: the check bites.
    plain = torch.nn.functional.interpolate(x.float().repeat(1, 3, 1, 1), size=(299, 299), mode="bilinear")
    assert (plain - ours).abs().max().item() > 50


def test_torch_fidelity_weights_map_one_to_one(tfid, tmp_path):
    """genbench's Inception tensors fill torch-fidelity's graph exactly (its strict load_state_dict accepts them)."""
    m = A.torch_fidelity_extractor(tfid, tmp_path)
    conv = [k for k in m.state_dict() if k.endswith("conv.weight")]
    assert len(conv) == len(A._LAYOUT) == 94


@pytest.mark.slow  # three Inception passes over 8 digits: 32 s at one thread (shared 2-core machine)
def test_same_images_give_the_same_features_in_all_three_pipelines(mnist, tfid, cfid, tmp_path):
    """Layer 2: 8 MNIST digits through genbench (torch backend, fp32), torch-fidelity's own extractor and
    clean-fid's legacy_tensorflow model, all holding one set of weights.

    Bound: the three run the same fp32 graph with different kernels and op orders (conv + functional batch norm vs
    Conv2d + BatchNorm2d; gather vs grid_sample resize). Each conv accumulates K terms (fan-in K <= 448 * 9 = 4032)
    with relative error about sqrt(K) eps32 (random-walk rounding); over the ~100 conv layers the errors add at
    most linearly: 100 sqrt(4032) eps32 ~ 8e-4 of the largest feature."""
    from genbench.metrics.inception import InceptionFeatures

    x = mnist["test"].x[:8]
    g = A.features(InceptionFeatures(precision="fp32", backend="torch"), x, batch=8)
    m_tf = A.torch_fidelity_extractor(tfid, tmp_path)
    t = A.features(lambda b: m_tf(b.repeat(1, 3, 1, 1))[0], x, batch=8)
    m_cf = A.clean_fid_extractor(cfid, tmp_path)
    c = A.features(lambda b: m_cf(A.clean_fid_input(b)), x, batch=8)
    tol = 100 * math.sqrt(4032) * EPS32 * np.abs(g).max()
    assert np.abs(t - g).max() <= tol and np.abs(c - g).max() <= tol, (np.abs(t - g).max(), np.abs(c - g).max(), tol)
