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
