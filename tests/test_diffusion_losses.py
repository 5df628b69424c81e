"""Known answers for the diffusion-family training-loss options (issue 14): Min-SNR-gamma weighting of the DDPM
loss (Hang et al. 2023) and logit-normal time sampling of flow matching (Esser et al. 2024)."""

import pytest
import torch

from genbench.models.ddpm import DDPM
from genbench.models.flow import FlowMatching


def _snr(model, t):
    ab = model.scheduler.alphas_cumprod[t].double()
    return ab / (1 - ab)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_match_the_paper(prediction_type):
    m = DDPM(widths=(8, 8, 8), attention=False, min_snr_gamma=5.0, prediction_type=prediction_type)
    t = torch.tensor([0, 10, 100, 300, 600, 999])
    snr = _snr(m, t)
    want = torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64))
    want = want / (snr + 1) if prediction_type == "v_prediction" else want / snr
    got = m.min_snr_weight(t).double()
    assert torch.allclose(got, want, rtol=1e-5)
    # high-SNR (early) timesteps are down-weighted, low-SNR ones keep weight 1 (epsilon) / SNR/(SNR+1) (v)
    assert got[0] < 0.01 and got[-1] > (0.99 if prediction_type == "epsilon" else 0.0)


def test_min_snr_loss_is_the_weighted_mean_of_per_sample_errors():
    torch.manual_seed(0)
    plain = DDPM(widths=(8, 8, 8), attention=False)
    weighted = DDPM(widths=(8, 8, 8), attention=False, min_snr_gamma=5.0)
    weighted.load_state_dict(plain.state_dict())
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    lp = plain.training_losses(x, generator=torch.Generator().manual_seed(1))["loss"]
    lw = weighted.training_losses(x, generator=torch.Generator().manual_seed(1))["loss"]
    assert torch.isfinite(lw) and lw < lp  # every weight is <= 1 for epsilon-prediction, most far below


def test_bad_min_snr_gamma_is_refused():
    with pytest.raises(ValueError, match="min_snr_gamma"):
        DDPM(widths=(8, 8, 8), attention=False, min_snr_gamma=0)


def test_logit_normal_times_concentrate_in_the_middle():
    m = FlowMatching(widths=(8, 8, 8), attention=False, time_sampling="logit_normal")
    seen = []
    m.unet.forward = lambda x, t, y=None: (seen.append(t / m.time_scale), torch.zeros_like(x))[1]
    for s in range(40):
        m.training_losses(torch.zeros(100, 1, 28, 28), generator=torch.Generator().manual_seed(s))
    t = torch.cat(seen)
    # sigmoid(N(0, 1)): median 0.5, P(0.2689 < t < 0.7311) = P(|u| < 1) = 0.6827; uniform would give 0.4621
    assert abs(t.median().item() - 0.5) < 0.02
    inside = ((t > 0.2689) & (t < 0.7311)).float().mean().item()
    assert abs(inside - 0.6827) < 0.03
    with pytest.raises(ValueError, match="time_sampling"):
        FlowMatching(widths=(8, 8, 8), attention=False, time_sampling="beta")


# ----------------------------------------------------------------------------------------------------------------
# EDM preconditioning of the DDPM (Karras et al. 2022; issue 27). The samplers' known answer with the exact
# denoiser is in tests/test_samplers_gaussian.py (ExactEDM).


def _edm(**kw):
    return DDPM(widths=(8, 8, 8), attention=False, prediction_type="edm", **kw)


class _Identity(torch.nn.Module):
    def forward(self, x, t, y=None):
        return x


def test_edm_coefficients_are_table_1():
    """c_skip, c_out, c_in of Karras et al. 2022, Table 1 at sigma_data = 0.5, read back through ``denoise`` with a
    network F that returns its input: D = c_skip x + c_out c_in x. At sigma -> 0 D -> x (c_skip -> 1, c_out -> 0);
    at sigma = sigma_data c_skip = 1/2 and c_out c_in = sigma sigma_data / (2 sigma_data^2) = 1/2."""
    m = _edm()
    m.unet = _Identity()  # F(c_in x) = c_in x
    x = torch.randn(3, 1, 28, 28)
    sigma = torch.tensor([1e-4, 0.5, 80.0])
    got = m.denoise(x, sigma)
    s = sigma.double().view(-1, 1, 1, 1)
    c_skip = 0.25 / (s ** 2 + 0.25)
    c_out = s * 0.5 / (s ** 2 + 0.25).sqrt()
    c_in = 1 / (s ** 2 + 0.25).sqrt()
    want = (c_skip + c_out * c_in) * x.double()
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-6)
    assert torch.allclose(got[1], x[1], rtol=1e-5)  # 1/2 + 1/2


def test_edm_noise_label_inverts_the_schedule():
    """c_noise(sigma_t) = t on every integer timestep (the VP column of Table 1), monotone in between, clamped
    outside the schedule's range."""
    m = _edm()
    ab = m.scheduler.alphas_cumprod.double()
    t = torch.arange(0, 1000, 37)
    sig = ((1 - ab[t]) / ab[t]).sqrt()
    assert torch.allclose(m.noise_label(sig).double(), t.double(), atol=1e-3)
    grid = torch.logspace(-3, 3, 200)
    lab = m.noise_label(grid)
    assert (lab[1:] >= lab[:-1]).all() and lab[0] == 0 and lab[-1] == 999


def test_edm_loss_is_lambda_weighted_denoising_error():
    """The loss is mean lambda(sigma) ||D(x + sigma n; sigma) - x||^2, lambda = (sigma^2 + sigma_data^2) /
    (sigma sigma_data)^2 (Karras et al. 2022, eq. 8, Table 1), recomputed here from the same draws (order: ln sigma,
    n, the label mask), with ln sigma ~ N(-1.2, 1.2^2) clamped to the schedule's range."""
    torch.manual_seed(0)
    m = _edm()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    got = m.training_losses(x, generator=torch.Generator().manual_seed(7))["loss"]
    g = torch.Generator().manual_seed(7)
    ls = m._log_sigmas
    sigma = (-1.2 + 1.2 * torch.randn(5, generator=g)).clamp(float(ls[0]), float(ls[-1])).exp()
    n = torch.randn(x.shape, generator=g)
    s = sigma.view(-1, 1, 1, 1)
    lam = (s ** 2 + 0.25) / (s * 0.5) ** 2
    with torch.no_grad():
        want = (lam * (m.denoise(x + s * n, sigma) - x) ** 2).mean()
    assert torch.allclose(got.detach(), want, rtol=1e-5)


def test_edm_forward_is_the_denoiser_of_the_vp_state():
    """forward(x_t, t) with x_t = sqrt(abar_t) (x0 + sigma_t n) equals D(x0 + sigma_t n; sigma_t): the VP state is the
    EDM state scaled by s(t) = sqrt(abar_t) (Karras et al. 2022, eq. 4), and the schedulers run with
    prediction_type "sample"; predict_eps converts D to eps = (x_t - sqrt(abar) D) / sqrt(1 - abar)."""
    torch.manual_seed(0)
    m = _edm().eval()
    assert m.schedule_config["prediction_type"] == "sample"
    t = torch.tensor([3, 250, 900])
    ab = m.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    sig = ((1 - ab) / ab).sqrt()
    xe = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        d = m.denoise(xe, sig.flatten())
        assert torch.allclose(m(ab.sqrt() * xe, t), d, rtol=1e-4, atol=1e-5)
        eps = m.predict_eps(ab.sqrt() * xe, t)
        assert torch.allclose(ab.sqrt() * d + (1 - ab).sqrt() * eps, ab.sqrt() * xe, atol=1e-4)


def test_edm_trains_and_refuses_min_snr():
    torch.manual_seed(0)
    m = _edm(num_classes=3)
    x, y = torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 1, 2, 0])
    loss = m.training_losses(x, y, generator=torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in m.unet.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="min_snr_gamma: null"):
        _edm(min_snr_gamma=5.0)
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        DDPM(widths=(8, 8, 8), prediction_type="x0")
