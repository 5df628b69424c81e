"""One battery shared by all diffusion samplers: shapes, range, determinism; DDIM eta=0 deterministic given
x_T; DDIM with eta=1 over every timestep equals the DDPM posterior (ancestral) step."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from genbench.models import build_model
from genbench.sampling.diffusion import SAMPLERS, make_scheduler, sample_diffusion


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m, _ = build_model("ddpm", {"widths": [8, 16, 16], "num_classes": 10, "timesteps": 50})
    return m.eval()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_shapes_range_and_seeded_determinism(model, sampler):
    y = torch.arange(4)
    a = sample_diffusion(model, 4, y=y, generator=torch.Generator().manual_seed(1), sampler=sampler, steps=5,
                         guidance_scale=1.5)
    b = sample_diffusion(model, 4, y=y, generator=torch.Generator().manual_seed(1), sampler=sampler, steps=5,
                         guidance_scale=1.5)
    c = sample_diffusion(model, 4, y=y, generator=torch.Generator().manual_seed(2), sampler=sampler, steps=5,
                         guidance_scale=1.5)
    assert a.shape == (4, 1, 28, 28) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_timesteps_come_from_one_decreasing_list(model):
    for sampler in SAMPLERS:
        ts = make_scheduler(model, sampler, 10).timesteps
        assert (ts[:-1] > ts[1:]).all() and int(ts[0]) < model.timesteps and int(ts[-1]) >= 0


def test_ddim_eta0_is_deterministic_given_xT(model):
    """With eta=0 the DDIM update has no noise: two different generators after the same x_T agree."""
    sch = make_scheduler(model, "ddim", 10)
    x_t = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    outs = []
    for seed in (1, 2):
        x = x_t.clone()
        g = torch.Generator().manual_seed(seed)
        for t in sch.timesteps:
            eps = model.guided_output(x, torch.full((2,), int(t)), None, 1.0)
            x = sch.step(eps, t, x, eta=0.0, generator=g).prev_sample
        outs.append(x)
    assert torch.equal(outs[0], outs[1])


def test_ddim_eta1_over_all_steps_equals_ddpm_posterior_step():
    """DDIM's sigma_t with eta=1 is the DDPM posterior std (Song et al. 2021, eq. 16); with every timestep the
    two updates coincide, noise included (same generator state)."""
    cfg = dict(num_train_timesteps=20, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    ddpm = DDPMScheduler(**cfg, clip_sample=False, variance_type="fixed_small")
    ddim = DDIMScheduler(**cfg, clip_sample=False, set_alpha_to_one=False, timestep_spacing="leading")
    ddpm.set_timesteps(20)
    ddim.set_timesteps(20)
    assert torch.equal(ddpm.timesteps, ddim.timesteps)
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    eps = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    for t in ddpm.timesteps[:-1]:  # the last step (t=0) has no noise in either
        a = ddpm.step(eps, t, x, generator=torch.Generator().manual_seed(5)).prev_sample
        b = ddim.step(eps, t, x, eta=1.0, generator=torch.Generator().manual_seed(5)).prev_sample
        assert torch.allclose(a, b, atol=1e-5), int(t)


def test_ddim_refuses_step_counts_whose_previous_timestep_leaves_the_list(model):
    """diffusers' DDIM derives t_prev = t - T // steps; genbench only allows step counts where that is the next
    entry of the one timestep list (T=50 here: 5 and 10 divide it, 3 and 7 do not)."""
    from genbench.errors import GenbenchError

    for ok in (1, 2, 5, 10, 25, 50):
        ts = [int(t) for t in make_scheduler(model, "ddim", ok).timesteps]
        assert [t - 50 // ok for t in ts][:-1] == ts[1:]
    for bad in (3, 7, 30):
        with pytest.raises(GenbenchError, match="choose steps dividing 50"):
            make_scheduler(model, "ddim", bad)
