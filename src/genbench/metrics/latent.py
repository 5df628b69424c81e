"""VAE metrics: ELBO terms, the importance-weighted likelihood bound, active units, posterior collapse, and
latent-space scores (linear probe, silhouette) with scikit-learn.

Every likelihood number is in nats per image, for the model's own likelihood on targets ``(x + 1) / 2``
(Bernoulli: the BCE of training on grey levels, not binarised, so not comparable with binarised-MNIST NLLs of
the literature; Gaussian: a density with the stated variance). They compare models with the same likelihood on
the same data, not across likelihoods.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genbench.data.registry import Dataset, to_float
from genbench.models.vae import gaussian_kl, gaussian_kl_per_dim, log_normal

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016, sec. 5.2
COLLAPSE_KL_NATS = 0.5  # below this total KL per image the posterior carries almost no information


def _batches(ds: Dataset, n: int | None, batch: int):
    m = len(ds) if n is None else min(n, len(ds))
    for i in range(0, m, batch):
        yield to_float(ds.x[i:min(i + batch, m)]), ds.y[i:min(i + batch, m)]


def _y(model, y: torch.Tensor) -> torch.Tensor | None:
    return y if getattr(model, "num_classes", 0) else None


@torch.no_grad()
def latent_means(model, ds: Dataset, *, n: int | None = None, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means E_q[z|x] of the first ``n`` images: (float64 (N, latent_dim), labels int64 (N,))."""
    model.eval()
    dev = next(model.parameters()).device
    mus, ys = [], []
    for x, y in _batches(ds, n, batch):
        mu, _ = model.encode(x.to(dev), _y(model, y.to(dev)))
        mus.append(mu.double().cpu().numpy())
        ys.append(y.numpy())
    return np.concatenate(mus), np.concatenate(ys)


@torch.no_grad()
def elbo_terms(model, ds: Dataset, *, n: int | None = None, seed: int = 0, batch: int = 500) -> dict:
    """ELBO terms on the first ``n`` images of ``ds`` (Kingma & Welling 2014, eq. 10), in nats per image,
    with one z ~ q(z|x) per image and the KL in closed form.

    Returns: ``elbo`` (= -(recon + kl), the beta = 1 bound whatever the training beta), ``recon``
    (-E_q log p(x|z)), ``kl`` (KL(q(z|x) || N(0, I))), ``kl_per_dim`` (list, latent_dim), ``n``.
    """
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    rec, kls, kld = [], [], []
    for x, y in _batches(ds, n, batch):
        x, yy = x.to(dev), _y(model, y.to(dev))
        mu, logvar = model.encode(x, yy)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.randn(mu.shape, generator=gen).to(dev) * torch.exp(0.5 * logvar)
        rec.append((-model.log_px_z(model.decode_logits(z, yy), x)).double().cpu())
        kls.append(gaussian_kl(mu, logvar).double().cpu())
        kld.append(gaussian_kl_per_dim(mu, logvar).double().cpu())
    recon, kl = torch.cat(rec), torch.cat(kls)
    return {"elbo": float(-(recon + kl).mean()), "recon": float(recon.mean()), "kl": float(kl.mean()),
            "kl_per_dim": torch.cat(kld).mean(0).tolist(), "n": len(recon),
            "elbo_std_error": float((recon + kl).std() / math.sqrt(max(len(recon), 1)))}


@torch.no_grad()
def iwae_log_likelihood(model, x: torch.Tensor, y: torch.Tensor | None, *, k: int,
                        generator: torch.Generator, chunk: int = 100) -> torch.Tensor:
    """The importance-weighted lower bound on log p(x) (Burda et al. 2016, eq. 8), per image, in nats:

        L_k = log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x),   z_i ~ q(z|x)

    L_1 is the ELBO in expectation; E[L_k] rises with k towards log p(x). x float32 (B, C, S, S) in [-1, 1],
    y int64 (B,) or None -> float64 (B,). Samples are drawn ``chunk`` at a time (memory B * chunk images).
    """
    mu, logvar = model.encode(x, y)
    mu, logvar = mu.float(), logvar.float()
    b, d = mu.shape
    logw = []
    for i in range(0, k, chunk):
        m = min(chunk, k - i)
        eps = torch.randn((m, b, d), generator=generator).to(mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)  # (m, B, D)
        zf = z.reshape(m * b, d)
        yf = y.repeat(m) if y is not None else None
        logits = model.decode_logits(zf, yf).view(m, b, *x.shape[1:])
        lpx = model.log_px_z(logits, x)  # (m, B)
        lpz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
        lqz = log_normal(z, mu, logvar)
        logw.append((lpx + lpz - lqz).double())
    logw = torch.cat(logw)  # (k, B)
    return (torch.logsumexp(logw, 0) - math.log(k)).cpu()


def iwae_nll(model, ds: Dataset, *, k: int = 100, n: int = 1000, seed: int = 0, batch: int = 50) -> dict:
    """-L_k averaged over the first ``n`` images: an upper bound on the test negative log-likelihood, nats per
    image (Burda et al. 2016, eq. 8), with its standard error over images."""
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    vals = [iwae_log_likelihood(model, x.to(dev), _y(model, y.to(dev)), k=k, generator=gen)
            for x, y in _batches(ds, n, batch)]
    v = -torch.cat(vals)
    return {"value": float(v.mean()), "std_error": float(v.std() / math.sqrt(max(len(v), 1))), "k": k,
            "n": len(v), "unit": "nats per image", "bound": "upper bound on -log p(x) (IWAE, Burda et al. 2016)"}


def active_units(mu: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> dict:
    """Active units (Burda et al. 2016, sec. 5.2): dimension u is active when Cov_x(E_q[z_u|x]) > threshold.
    mu float (N, D) posterior means over a data set -> count, per-dimension variances, threshold."""
    var = np.var(np.asarray(mu, np.float64), axis=0, ddof=1)
    return {"value": int((var > threshold).sum()), "of": int(var.size), "variance_per_dim": var.tolist(),
            "threshold": threshold}


def collapse_warning(kl_nats: float, n_active: int, latent_dim: int) -> str | None:
    """A posterior-collapse warning (or None): total KL below ``COLLAPSE_KL_NATS`` nats per image, or no
    active unit, means the decoder ignores z."""
    if kl_nats < COLLAPSE_KL_NATS or n_active == 0:
        return (f"posterior collapse: KL {kl_nats:.3f} nats per image, {n_active}/{latent_dim} active units; "
                f"the decoder ignores z (lower beta, anneal the KL, or weaken the decoder)")
    return None


def linear_probe(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray, *,
                 C: float = 1.0, max_iter: int = 1000, seed: int = 0) -> dict:
    """Logistic regression (scikit-learn, lbfgs, multinomial) on standardised frozen latent means; test
    accuracy in [0, 1] (higher = more linearly decodable labels), with the probe's settings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, random_state=seed))
    clf.fit(z_train, y_train)
    acc = float((clf.predict(z_test) == y_test).mean())
    return {"value": acc, "n_train": len(z_train), "n_test": len(z_test),
            "probe": f"sklearn LogisticRegression(lbfgs, C={C}, max_iter={max_iter}) on standardised latent means",
            "chance": float(np.bincount(y_test).max() / len(y_test)), "direction": "higher is better"}


def silhouette(z: np.ndarray, labels: np.ndarray, *, max_n: int = 2000, seed: int = 0) -> float:
    """Silhouette score (Rousseeuw 1987; scikit-learn, Euclidean) of the latent means grouped by class:
    range [-1, 1], higher = better separated clusters. At most ``max_n`` points (seeded subsample)."""
    from sklearn.metrics import silhouette_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(silhouette_score(z, labels, sample_size=min(max_n, len(z)), random_state=seed))


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for Gaussian latents) between rows z0, z1 (D,) at
    fractions t (T,) -> (T, D). Falls back to linear when the vectors are (anti)parallel."""
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.arccos((a * b).sum().clamp(-1, 1))
    t = t[:, None]
    if omega.abs() < 1e-4 or (math.pi - omega).abs() < 1e-4:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)
