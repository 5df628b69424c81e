"""Known-answer tests of the metric functions."""

import numpy as np
import pytest
import torch
from scipy import linalg

from genbench.metrics.inception import resize, resize_tf1_bilinear
from genbench.metrics.scores import (
    conditional_accuracy, feature_stats, fid_from_features, frechet_distance, inception_score, mean_pairwise_l2,
    mode_coverage)
from genbench.metrics.stability import series_stats, stability


def _scipy_fid(m1, s1, m2, s2):
    """Independent float64 reference: the TTUR formulation with scipy.linalg.sqrtm."""
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_of_a_set_with_itself_is_zero():
    f = np.random.default_rng(0).standard_normal((500, 32))
    assert fid_from_features(f, f) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_two_known_gaussians():
    # N(mu1, diag(a)) vs N(mu2, diag(b)): ||mu1-mu2||^2 + sum(a + b - 2 sqrt(ab)).
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + np.sum(a + b - 2 * np.sqrt(a * b))
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fid_matches_independent_scipy_implementation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 64)) @ rng.standard_normal((64, 64)) * 0.3
    y = rng.standard_normal((2000, 64)) @ rng.standard_normal((64, 64)) * 0.3 + 0.2
    ours = frechet_distance(*feature_stats(x), *feature_stats(y))
    ref = _scipy_fid(*feature_stats(x), *feature_stats(y))
    assert abs(ours - ref) / ref < 1e-6


def test_fid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_score_bounds():
    k = 10
    uniform = np.full((1000, k), 1 / k)
    assert inception_score(uniform, 10)[0] == pytest.approx(1.0, abs=1e-9)
    onehot = np.eye(k)[np.arange(1000) % k]
    mean, std = inception_score(onehot, 10)
    assert mean == pytest.approx(k, rel=1e-6) and std < 1e-6
    collapsed = np.eye(k)[np.zeros(1000, int)]
    assert inception_score(collapsed, 10)[0] == pytest.approx(1.0, abs=1e-6)


def test_conditional_accuracy_and_mode_coverage():
    labels = np.arange(100) % 10
    pred = labels.copy()
    pred[:10] = 0  # first of each class -> 0; class 0 stays right
    ca = conditional_accuracy(pred, labels, 10)
    assert ca["overall"] == pytest.approx(0.91)
    assert ca["per_class"][0] == 1.0 and ca["per_class"][1] == pytest.approx(0.9)
    mc = mode_coverage(np.zeros(100, int), 10)
    assert mc["modes_covered"] == 1 and mc["kl_to_uniform_nats"] == pytest.approx(np.log(10))
    assert mode_coverage(labels, 10)["kl_to_uniform_nats"] == pytest.approx(0.0)


def test_diversity_zero_for_identical_images():
    x = np.zeros((50, 1, 4, 4), np.uint8)
    assert mean_pairwise_l2(x) == 0.0
    y = np.stack([np.zeros((1, 4, 4)), np.full((1, 4, 4), 255)]).astype(np.uint8)
    assert mean_pairwise_l2(y) == pytest.approx(4.0)  # sqrt(16 pixels * 1^2)


def test_tf1_resize_known_values():
    # TF1 resize_bilinear(align_corners=False) samples source x = dst * in/out without half-pixel offset:
    # [0, 10] -> 4 samples at 0, 0.5, 1, 1.5 -> [0, 5, 10, 10].
    x = torch.tensor([[[[0.0, 10.0], [0.0, 10.0]]]])
    out = resize_tf1_bilinear(x, 4)
    assert torch.allclose(out[0, 0, 0], torch.tensor([0.0, 5.0, 10.0, 10.0]))
    # The torch policy (half-pixel centres) differs on the same input.
    assert not torch.allclose(resize(x, 4, "torch_bilinear"), out)


def test_stability_statistics():
    flat = series_stats([1.0] * 100)
    assert flat["cv"] == 0.0
    noisy = series_stats(list(1 + 0.5 * np.random.default_rng(0).standard_normal(200)))
    assert 0.3 < noisy["cv"] < 0.7
    hist = [{"kind": "step", "loss": 1.0 + 0.1 * (i % 2)} for i in range(100)]
    s = stability(hist, ("loss",))  # the VAE family's stability keys
    assert s["score"] == pytest.approx(1 / (1 + s["cv"])) and s["per_loss"]["loss"]["oscillation"] == 1.0


def _gauss(n, d, shift=0.0, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_kid_identical_near_zero_and_disjoint_large():
    from genbench.metrics.manifold import kid

    a, b = _gauss(400, 16, seed=1), _gauss(400, 16, seed=2)
    same, _ = kid(a, b, subsets=20, subset_size=200)
    far, _ = kid(a + 5.0, b, subsets=20, subset_size=200)
    assert abs(same) < 0.05 and far > 10 * max(abs(same), 1e-3)
    # Seeded subsets: the same call gives the same answer.
    assert kid(a, b, subsets=5, subset_size=100, seed=3) == kid(a, b, subsets=5, subset_size=100, seed=3)


def test_precision_recall_density_coverage_known_answers():
    from genbench.metrics.manifold import density_coverage, precision_recall

    real, same = _gauss(500, 8, seed=1), _gauss(500, 8, seed=2)
    pr = precision_recall(same, real, k=3)
    assert pr["precision"] > 0.8 and pr["recall"] > 0.8
    dc = density_coverage(same, real, k=5)
    assert 0.8 < dc["density"] < 1.2 and dc["coverage"] > 0.8
    far = _gauss(500, 8, shift=20.0, seed=3)
    pr = precision_recall(far, real, k=3)
    dc = density_coverage(far, real, k=5)
    assert pr["precision"] == 0.0 and pr["recall"] == 0.0 and dc["density"] == 0.0 and dc["coverage"] == 0.0


def test_nearest_train_distance_finds_copies():
    from genbench.metrics.manifold import nearest_train_distance

    train = np.random.default_rng(0).integers(0, 256, (50, 1, 4, 4)).astype(np.uint8)
    d = nearest_train_distance(train[:5], train)
    assert np.allclose(d, 0, atol=1e-3)


def _torch_fidelity_resize():
    """torch-fidelity's TF1 resize, read out of its wheel (``make test`` downloads it to .cache/wheels) and
    executed as a lone module: installing the package would make torchmetrics import it, and its __init__
    imports torchvision, which does not import beside this torch."""
    import types
    import zipfile
    from pathlib import Path

    wheels = sorted((Path(__file__).parent.parent / ".cache" / "wheels").glob("torch_fidelity-*.whl"))
    if not wheels:
        pytest.skip("torch-fidelity wheel missing: run `make test` (it downloads it with pip --no-deps)")
    src = zipfile.ZipFile(wheels[-1]).read("torch_fidelity/interpolate_compat_tensorflow.py").decode()
    mod = types.ModuleType("tf_interp")
    exec(compile(src, "torch_fidelity/interpolate_compat_tensorflow.py", "exec"), mod.__dict__)  # noqa: S102
    return mod.interpolate_bilinear_2d_like_tensorflow1x


def test_tf1_resize_matches_torch_fidelity(mnist):
    ref = _torch_fidelity_resize()
    x = mnist["test"].x[:8].float().repeat(1, 3, 1, 1)
    ours = resize_tf1_bilinear(x, 299)
    theirs = ref(x, size=(299, 299), align_corners=False)
    assert ours.shape == theirs.shape == (8, 3, 299, 299)
    assert (ours - theirs).abs().max().item() < 1e-3
    # And the PyTorch policy really is different on digits (the reason the policy is named and recorded).
    assert (resize(x, 299, "torch_bilinear") - theirs).abs().max().item() > 50


def test_prdc_spread_is_reported_and_small_for_matched_sets():
    from genbench.metrics.manifold import prdc_with_spread

    out = prdc_with_spread(_gauss(300, 8, seed=1), _gauss(300, 8, seed=2), n_boot=5)
    for k in ("precision", "recall", "density", "coverage"):
        assert 0 <= out[f"{k}_std"] < 0.1


@pytest.mark.slow
@pytest.mark.slow  # trains a classifier (150 steps)
def test_cas_on_real_data_is_near_the_classifier_accuracy(mnist):
    """CAS with real images in place of generated ones must approach a real-trained classifier's accuracy (scored on
    2,000 test images: all 10,000 cost most of the test's 207 s on an AVX2 CPU)."""
    from genbench.metrics.classifier import classification_accuracy_score

    hold = mnist["holdout"]
    out = classification_accuracy_score(hold.x, hold.y, mnist["test"].subset(slice(0, 2000)), steps=150, seed=0)
    assert out["n_train"] == 5000 and out["value"] > 0.97


def test_classifier_cache_key_names_the_thread_count_and_device():
    """CPU kernels reduce in a thread-count-dependent order: the same seed trains different classifier weights on
    1 and 2 threads (MNIST 99.52% vs 99.55%), so the cache must not hand one to the other."""
    from genbench.metrics.classifier import _key

    class Split:
        name, shape, y = "toy", (1, 28, 28), torch.arange(10)

        def __len__(self):
            return 10

    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _key(Split(), 3, 42, torch.device("cpu"))
        torch.set_num_threads(2)
        two = _key(Split(), 3, 42, torch.device("cpu"))
        assert one != two and two == _key(Split(), 3, 42, torch.device("cpu"))
        assert two != _key(Split(), 3, 42, torch.device("cuda"))
    finally:
        torch.set_num_threads(n)
