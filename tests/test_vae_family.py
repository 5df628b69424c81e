"""The VAE family: known answers for the bounds and the KL, the row-by-row RNN encoder, and beta/conditioning
changing only what they should. Also the DCGAN on the shared adversarial step."""

import numpy as np
import pytest
import torch

from genbench.data.registry import Dataset
from genbench.errors import GenbenchError
from genbench.metrics.latent import (active_units, collapse_warning, elbo_terms, iwae_log_likelihood, iwae_nll,
                                     linear_probe, silhouette, slerp)
from genbench.families import build_model
from genbench.models.vae import ConvVAE, RowGRUEncoder, gaussian_kl, gaussian_kl_between


def _vae(**kw):
    torch.manual_seed(0)
    return ConvVAE(**{"latent_dim": 4, "hidden": 32, **kw}).eval()


def _images(n=16, c=1, s=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, c, s, s), generator=g) * 2 - 1


def test_kl_of_identical_gaussians_is_zero():
    g = torch.Generator().manual_seed(1)
    mu, lv = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    assert torch.allclose(gaussian_kl_between(mu, lv, mu, lv), torch.zeros(8), atol=1e-6)
    assert torch.allclose(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))
    # and the prior form agrees with the general one against N(0, I)
    z = torch.zeros_like(mu)
    assert torch.allclose(gaussian_kl(mu, lv), gaussian_kl_between(mu, lv, z, z), atol=1e-5)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_iwae_bound_is_above_the_elbo_and_tightens_with_k(likelihood):
    model = _vae(likelihood=likelihood, gaussian_std=0.3)
    x = _images(32)
    ds = Dataset(((x + 1) * 127.5).round().to(torch.uint8), torch.zeros(32, dtype=torch.long), 1, "t")
    elbo = elbo_terms(model, ds, seed=0)["elbo"]
    bounds = {k: float(iwae_log_likelihood(model, ds.x.float() / 127.5 - 1, None, k=k,
                                           generator=torch.Generator().manual_seed(3)).mean())
              for k in (1, 10, 100)}
    assert abs(bounds[1] - elbo) < 0.05 * abs(elbo) + 1.0  # L_1 is the ELBO in expectation
    assert bounds[100] >= elbo
    assert bounds[1] < bounds[10] < bounds[100]
    nll = iwae_nll(model, ds, k=100, n=32)
    assert nll["k"] == 100 and nll["n"] == 32 and nll["value"] <= -elbo


def test_rnn_encoder_reads_rows_as_time_steps():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)  # B=2, C=3, H=4, W=5
    seq = RowGRUEncoder.rows(x)
    assert seq.shape == (2, 4, 15)  # (B, H time steps, C*W inputs)
    assert torch.equal(seq[1, 2], x[1, :, 2, :].reshape(-1))  # step t is row t, all channels
    enc = RowGRUEncoder(channels=3, width=5, hidden=7)
    assert enc.gru.input_size == 15 and enc.gru.bidirectional
    assert enc(x).shape == (2, 14)
    model = _vae(encoder="rnn", rnn_hidden=16)
    mu, logvar = model.encode(_images(3))
    assert mu.shape == logvar.shape == (3, 4)
    # a row permutation changes the code (order matters), so rows are read as a sequence
    x3 = _images(3)
    assert not torch.allclose(model.encode(x3)[0], model.encode(x3.flip(2))[0])


@pytest.mark.parametrize("encoder", ["conv", "mlp", "rnn"])
def test_encoders_share_one_decoder(encoder):
    m = _vae(encoder=encoder, rnn_hidden=8)
    ref = _vae()
    dec = {k: v.shape for k, v in m.state_dict().items() if k.startswith(("dec", "fc_"))}
    assert dec == {k: v.shape for k, v in ref.state_dict().items() if k.startswith(("dec", "fc_"))}
    out = m.training_losses(_images(4), generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "recon", "kl"} and torch.isfinite(out["loss"])


def test_beta_changes_only_the_kl_weight():
    x = _images(8)
    a, b = _vae(beta=1.0), _vae(beta=4.0)
    la = a.training_losses(x, generator=torch.Generator().manual_seed(5))
    lb = b.training_losses(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(la["recon"], lb["recon"]) and torch.equal(la["kl"], lb["kl"])
    assert torch.allclose(lb["loss"], lb["recon"] + 4.0 * lb["kl"])
    assert torch.allclose(la["loss"], la["recon"] + la["kl"])
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_kl_annealing_ramps_the_weight_and_counts_steps():
    m = _vae(beta=2.0, kl_anneal_steps=4).train()
    ws = [m.training_losses(_images(2), generator=torch.Generator().manual_seed(0))["kl_weight"].item()
          for _ in range(6)]
    assert ws == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert int(m.state_dict()["anneal_step"]) == 6


def test_conditioning_adds_only_the_label_embedding():
    plain, cond = _vae(), _vae(num_classes=3, label_dim=5)
    ps, cs = plain.state_dict(), cond.state_dict()
    assert set(cs) - set(ps) == {"label_emb.weight"} and set(ps) <= set(cs)
    changed = {k for k in ps if ps[k].shape != cs[k].shape}
    assert changed == {"enc_fc.0.weight", "dec_fc.0.weight"}  # label concatenated to encoder features and to z
    with pytest.raises(ValueError, match="pass labels"):
        cond.encode(_images(2))
    z = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.full((4,), 2, dtype=torch.long)
    assert torch.equal(cond.decode(z, y0), cond.decode(z, y0))
    assert not torch.allclose(cond.decode(z, y0), cond.decode(z, y1))
    s0 = cond.sample(4, y=y0, generator=torch.Generator().manual_seed(1))
    s1 = cond.sample(4, y=y1, generator=torch.Generator().manual_seed(1))
    assert s0.shape == (4, 1, 28, 28) and not torch.allclose(s0, s1)
    assert s0.min() >= -1 and s0.max() <= 1


def test_image_size_and_channels_are_parameters():
    m = _vae(channels=3, image_size=32, batchnorm=True)
    assert m.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 3, 32, 32)
    with pytest.raises(GenbenchError, match="bad parameters"):
        build_model("vae", {"encoder": "transformer"})


def test_default_vae_keeps_its_parameter_layout():
    m = ConvVAE(latent_dim=20)
    assert [k for k in m.state_dict()] == [
        "enc.0.weight", "enc.0.bias", "enc.2.weight", "enc.2.bias", "enc_fc.0.weight", "enc_fc.0.bias",
        "fc_mu.weight", "fc_mu.bias", "fc_logvar.weight", "fc_logvar.bias", "dec_fc.0.weight", "dec_fc.0.bias",
        "dec_fc.2.weight", "dec_fc.2.bias", "dec.0.weight", "dec.0.bias", "dec.2.weight", "dec.2.bias"]


def test_active_units_probe_silhouette_and_collapse():
    rng = np.random.default_rng(0)
    mu = np.c_[rng.normal(0, 1, 500), rng.normal(0, 0.01, 500)]  # one active, one dead dimension
    au = active_units(mu)
    assert au["value"] == 1 and au["of"] == 2 and au["threshold"] == 0.01
    assert collapse_warning(0.1, 1, 2) and collapse_warning(5.0, 0, 2) and collapse_warning(5.0, 1, 2) is None
    y = np.repeat([0, 1], 250)
    z = np.c_[y * 5.0 + rng.normal(0, 0.5, 500), rng.normal(0, 1, 500)]
    p = linear_probe(z[::2], y[::2], z[1::2], y[1::2])
    assert p["value"] > 0.95 and "LogisticRegression" in p["probe"]
    assert silhouette(z, y) > 0.5 > silhouette(rng.normal(size=(500, 2)), y)


def test_slerp_endpoints_and_norm():
    z0, z1 = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    path = slerp(z0, z1, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], z0) and torch.allclose(path[-1], z1, atol=1e-6)
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0), atol=1e-5)


def test_dcgan_trains_with_the_shared_adversarial_step():
    from genbench.families import get_family
    from genbench.training.objectives import make_optimizers

    torch.manual_seed(0)
    model, family = build_model("dcgan", {"z_dim": 8, "ngf": 8, "ndf": 8, "image_shape": [3, 32, 32]})
    assert family == "gan"
    spec = get_family(family)
    opts = make_optimizers(spec.parts(model), {"lr": 2e-4, "betas": [0.5, 0.999]})
    import contextlib

    logs = spec.step(model, opts, _images(8, 3, 32), torch.zeros(8, dtype=torch.long),
                         generator=torch.Generator().manual_seed(0), autocast=contextlib.nullcontext)
    assert {"loss_d", "loss_g", "d_x", "d_g_z"} <= set(logs) and 0 < logs["d_x"] < 1
    model.eval()
    s = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 3, 32, 32) and s.abs().max() <= 1
