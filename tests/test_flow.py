"""Flow matching (Lipman et al. 2023; Liu et al. 2023): the Euler and Heun ODE samplers against the exact
solution of Gaussian data, a tiny model trained for the test whose samples converge with NFE, and resume."""

import math

import pytest
import torch
from torch import nn

from genbench.families import check_settings, draw, nfe
from genbench.sampling.flow import flow_loop


class GaussianVelocity(nn.Module):
    """The exact marginal velocity for data x_1 ~ N(m, s^2 I) on the straight path x_t = (1 - t) x_0 + t x_1,
    x_0 ~ N(0, I): with sigma_t^2 = (1 - t)^2 + t^2 s^2, E[x_1 | x_t] = m + t s^2 (x_t - t m) / sigma_t^2 and
    E[x_0 | x_t] = (1 - t) (x_t - t m) / sigma_t^2 (Gaussian conditioning), so
    v(x, t) = E[x_1 - x_0 | x_t] = m + (t s^2 - (1 - t)) (x_t - t m) / sigma_t^2. The ODE keeps
    (x_t - t m) / sigma_t constant, so its exact solution from x_0 is x_1 = m + s x_0."""

    num_classes = 0

    def __init__(self, m: float, s: float):
        super().__init__()
        self.m, self.s = m, s

    def forward(self, x, t, y=None):
        t = t.double().view(-1, 1, 1, 1)
        var = (1 - t) ** 2 + t ** 2 * self.s ** 2
        return (self.m + (t * self.s ** 2 - (1 - t)) * (x.double() - t * self.m) / var).float()


def test_euler_and_heun_converge_to_the_exact_solution_heun_faster():
    """Max |error| over 8 x 784 values falls with K for both; Heun (second order) at K steps is closer to the
    exact solution than Euler at K, and Euler's error halves when K doubles (first order). Measured: Euler
    0.41, 0.22, 0.11, 0.058; Heun (midpoint last step) 0.057, 0.018, 0.0045, 0.0011 at K = 5, 10, 20, 40."""
    model = GaussianVelocity(0.2, 0.3)
    x0 = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    exact = 0.2 + 0.3 * x0.double()
    ks = (5, 10, 20, 40)
    err = {(s, k): (flow_loop(model, x0, y=None, sampler=s, steps=k).double() - exact).abs().max().item()
           for s in ("euler", "heun") for k in ks}
    for s in ("euler", "heun"):
        e = [err[s, k] for k in ks]
        assert all(b < a for a, b in zip(e, e[1:])) and e[-1] < e[0] / 4, (s, e)
    for k in ks:
        assert err["heun", k] < err["euler", k], (k, err)
    for k in ks[:-1]:  # measured ratios: Euler 0.53, 0.52, 0.51; Heun 0.32, 0.25, 0.24
        assert 0.45 < err["euler", 2 * k] / err["euler", k] < 0.6, err  # first order (0.5 in the limit)
        assert err["heun", 2 * k] / err["heun", k] < 0.4, err  # second order (0.25 in the limit)
        assert err["heun", k] < err["euler", 2 * k] / 3, err  # at equal NFE Heun wins by far (3.8x at K = 5)


def test_heun_never_evaluates_the_velocity_at_the_data_end():
    """Data on one point m (s = 0): the exact field v(x, t) = (m - x) / (1 - t) is undefined at t = 1 (0 / 0,
    as for the exact-black background of MNIST), and every exact step lands on the straight line to m. Heun
    with a midpoint last step returns m exactly at any K; the old trapezoid on the last step evaluated v at
    t = 1 and returned NaN, and the network's guess there ruined MNIST samples (issue 14)."""
    model = GaussianVelocity(0.2, 0.0)
    x0 = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for k in (1, 2, 5, 10):
        for s in ("euler", "heun"):
            x = flow_loop(model, x0, y=None, sampler=s, steps=k)
            assert torch.isfinite(x).all() and torch.allclose(x, torch.full_like(x, 0.2), atol=1e-5), (s, k)


def test_flow_settings_and_nfe():
    assert check_settings(None, "flow") == {"sampler": "heun", "steps": 20, "guidance_scale": 1.0, "eta": 0.0}
    from genbench.errors import GenbenchError
    from genbench.families import build_model

    with pytest.raises(GenbenchError, match="'ddim' is not a flow sampler; choose one of euler, heun"):
        check_settings({"sampler": "ddim"}, "flow", where="x.sampling")
    model, _ = build_model("flow", {"widths": [8, 16, 16], "num_classes": 10})
    assert nfe(model, {"sampler": "euler", "steps": 7, "guidance_scale": 1.0}) == 7
    assert nfe(model, {"sampler": "heun", "steps": 7, "guidance_scale": 1.0}) == 14
    assert nfe(model, {"sampler": "heun", "steps": 7, "guidance_scale": 2.0}) == 28


@pytest.fixture
def one_thread():
    """Tiny tensors: one thread. With two on a loaded 2-core machine this test's training took 183 s instead of
    9 s (threads waiting on each other for microsecond-sized ops)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_tiny_trained_flow_model_samples_converge_with_nfe(one_thread):
    """A small flow model trained 300 steps (~9 s) on a toy set of 8 x 8 images (a square at one of 4
    positions, label = position, plus pixel noise of std 0.3): from the same noise, Heun at K steps is closer to
    the K = 128 Heun result than Euler at K, also at equal NFE (Heun K vs Euler 2K), both get closer as K grows,
    and conditional samples are brighter on the labelled square.

    Measured (mean |x - ref|): Euler 0.16, 0.084, 0.034, 0.016 and Heun 0.027, 0.032, 0.0047, 0.0026 at
    K = 2, 4, 8, 16 (Heun's midpoint last step evaluates the stiff field at t = 1 - h/2, so Heun is not
    monotone from K = 2 to 4 and only just beats Euler-8 at K = 4 (0.032 vs 0.034); the trapezoidal last
    step, which evaluated at t = 1, measured 0.027, 0.0078, 0.0036, 0.0026 here but ruined MNIST samples). Without the pixel noise (data on 4 points) the learned field is stiff near t = 1 and Heun
    was WORSE than Euler up to K = 8 (0.26 vs 0.084 at K = 2), better from K = 16: second order pays only where
    the field is smooth on the step's scale."""
    from genbench.families import build_model

    torch.manual_seed(0)
    base = -0.5 * torch.ones(4, 1, 8, 8)
    for i, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        base[i, :, r:r + 4, c:c + 4] = 0.5
    model, _ = build_model("flow", {"widths": [8, 16, 16], "attention": False, "num_classes": 4,
                                    "p_uncond": 0.1, "image_shape": [1, 8, 8]})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        y = torch.randint(0, 4, (32,), generator=g)
        x = base[y] + 0.3 * torch.randn(32, 1, 8, 8, generator=g)
        loss = model.training_losses(x, y, generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1.0  # E||x_1 - x_0||^2 is ~1.4 for this data; the velocity field is learned in part
    model.eval()
    y = torch.arange(8) % 4
    x0 = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    ref = flow_loop(model, x0, y=y, sampler="heun", steps=128)
    ks = (2, 4, 8, 16)
    dist = {(s, k): (flow_loop(model, x0, y=y, sampler=s, steps=k) - ref).abs().mean().item()
            for s in ("euler", "heun") for k in ks}
    d = [dist["euler", k] for k in ks]
    assert all(b < a for a, b in zip(d, d[1:])), ("euler", d)
    assert dist["heun", 16] < dist["heun", 8] < dist["heun", 4] / 4, dist
    for k in ks:
        assert dist["heun", k] < dist["euler", k], dist
    assert dist["heun", 8] < dist["euler", 16] / 3, dist  # equal NFE
    x = draw(model, 8, y=y, generator=torch.Generator().manual_seed(2),
             settings={"sampler": "heun", "steps": 16, "guidance_scale": 1.0})
    assert x.shape == (8, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    on = base[y] > 0
    inside, outside = (x * on).sum((1, 2, 3)) / 16, (x * ~on).sum((1, 2, 3)) / 48
    assert (inside > outside + 0.4).all(), (inside, outside)
