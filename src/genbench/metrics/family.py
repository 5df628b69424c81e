"""Family-specific metrics, declared once: each names the model families it applies to.

The evaluate stage calls :func:`family_metrics` for every trained model; a metric runs when the model's family
is in its ``families``. No metric is special-cased for one study: every VAE of every study (the MNIST VAE
included) gets the ELBO terms, the IWAE bound, active units and the collapse warning; every GAN gets D(x) and
D(G(z)) from its training history.

Each metric function takes (model, test split, evaluation settings, history rows, seed, the metrics computed so
far for this model) and returns a dict with
``value`` and its provenance (N, split, unit, source), as every metric of ``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from genbench.data.registry import Dataset
from genbench.metrics import latent as lat


@dataclass(frozen=True)
class FamilyMetric:
    """One declared metric: its key in a model's ``metrics``, the families it applies to, and its function."""

    name: str
    families: tuple[str, ...]
    fn: Callable[..., dict | None]
    doc: str


def _elbo(model, test: Dataset, ev, hist, seed, done) -> dict:
    n = min(ev.n_eval, len(test))
    t = lat.elbo_terms(model, test, n=n, seed=seed)
    return {"value": t["elbo"], "std": t["elbo_std_error"], "spread": "standard error over images",
            "recon_nats": t["recon"], "kl_nats": t["kl"], "kl_per_dim_nats": t["kl_per_dim"], "n": t["n"],
            "split": "test", "unit": "nats per image", "likelihood": model.likelihood, "beta": model.beta,
            "encoder": model.encoder_kind, "direction": "higher is better",
            "source": "Kingma & Welling 2014, eq. 10 (beta = 1 bound, one z per image, closed-form KL)"}


def _iwae(model, test: Dataset, ev, hist, seed, done) -> dict:
    r = lat.iwae_nll(model, test, k=ev.iwae_k, n=min(ev.n_eval, len(test)), seed=seed)
    return {**r, "std": r["std_error"], "spread": "standard error over images", "split": "test",
            "direction": "lower is better", "source": "Burda et al. 2016, eq. 8"}


def _active_units(model, test: Dataset, ev, hist, seed, done) -> dict:
    mu, _ = lat.latent_means(model, test, n=min(ev.n_eval, len(test)))
    au = lat.active_units(mu)
    kl = done["elbo"]["kl_nats"] if "elbo" in done else lat.elbo_terms(model, test, n=len(mu), seed=seed)["kl"]
    return {**au, "n": len(mu), "split": "test", "direction": "higher = more of the latent used",
            "collapse_warning": lat.collapse_warning(kl, au["value"], model.latent_dim),
            "source": "Burda et al. 2016, sec. 5.2 (Cov_x E_q[z_u|x] > 0.01)"}


def _d_diagnostics(model, test, ev, hist, seed, done) -> dict | None:
    ep = [r for r in hist if r.get("kind") == "epoch" and "d_x" in r]
    if not ep:
        return None
    last = ep[-1]
    return {"value": last["d_x"], "d_x": last["d_x"], "d_g_z": last["d_g_z"], "loss_d": last.get("loss_d"),
            "loss_g": last.get("loss_g"), "epoch": last.get("epoch"),
            "per_epoch": {"epoch": [r["epoch"] for r in ep], "d_x": [r["d_x"] for r in ep],
                          "d_g_z": [r["d_g_z"] for r in ep]},
            "direction": "D(x) near 1 and D(G(z)) near 0: D wins; both near 0.5: equilibrium",
            "source": "means over the last training epoch of D's probabilities on real and generated images "
                      "(Radford et al. 2016; pytorch/examples dcgan)"}


FAMILY_METRICS: tuple[FamilyMetric, ...] = (
    FamilyMetric("elbo", ("vae",), _elbo, "ELBO with its reconstruction and KL terms (nats per image, test split)"),
    FamilyMetric("iwae_nll", ("vae",), _iwae, "IWAE upper bound on the test negative log-likelihood"),
    FamilyMetric("active_units", ("vae",), _active_units, "active latent units and the posterior-collapse warning"),
    FamilyMetric("d_diagnostics", ("gan",), _d_diagnostics, "D(x) and D(G(z)) over training"),
)


def family_metrics(model, family: str, test: Dataset, ev, hist: list[dict], seed: int) -> dict:
    """Every declared metric that applies to ``family``: ``{name: metric dict}`` (metrics with no data, e.g. a
    GAN history without D diagnostics, are left out)."""
    out = {}
    for fm in FAMILY_METRICS:
        if family in fm.families:
            r = fm.fn(model, test, ev, hist, seed, out)
            if r is not None:
                out[fm.name] = r
    return out
