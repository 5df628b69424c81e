"""One battery shared by all diffusion samplers: shapes, range, determinism; DDIM eta=0 deterministic given
x_T; DDIM with eta=1 over every timestep equals the DDPM posterior (ancestral) step; and the deterministic
samplers converge to the exact probability-flow ODE solution of Gaussian data as their step count grows."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from genbench.families import build_model
from genbench.errors import GenbenchError
from genbench.sampling.diffusion import SAMPLERS, diffusion_loop, guided, make_scheduler, max_lu_steps
from genbench.families import draw


def sample_diffusion(model, n, *, y, generator, sampler, steps, guidance_scale):
    return draw(model, n, y=y, generator=generator,
                settings={"sampler": sampler, "steps": steps, "guidance_scale": guidance_scale})


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
        if sampler == "dpm_solver_lu" and max_lu_steps(model.schedule_config) < 10:
            with pytest.raises(GenbenchError, match="repeats timesteps"):  # refused, not sampled with repeats
                make_scheduler(model, sampler, 10)
            continue
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
            eps = guided(model, x, torch.full((2,), int(t)), None, 1.0)
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


class GaussianEps(nn.Module):
    """The exact eps-prediction for data x0 ~ N(m, s^2 I) under the DDPM's linear schedule (T = 1000):
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps gives E[eps | x_t] = sqrt(1 - abar_t) (x_t - sqrt(abar_t) m)
    / (abar_t s^2 + 1 - abar_t) (Gaussian conditioning). It has the interface the samplers call: a network
    ``model(x_t, t, y)``, ``schedule_config`` and ``num_classes``.

    The probability-flow ODE (Song et al. 2021b, eq. 13) keeps (x_t - sqrt(abar_t) m) / sqrt(abar_t s^2 + 1 -
    abar_t) constant (each side is a standard normal along the flow and the map is monotone), so the exact
    ODE solution from x_T at t = T - 1 is x0 = m + s * that standardized value: :meth:`exact`."""

    def __init__(self, m: float, s: float):
        super().__init__()
        self.m, self.s, self.num_classes = m, s, 0
        self.schedule_config = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                    beta_schedule="linear", prediction_type="epsilon")
        self.abar = DDPMScheduler(**self.schedule_config).alphas_cumprod.double()

    def forward(self, x, t, y=None):
        a = self.abar[t].view(-1, 1, 1, 1)
        return (torch.sqrt(1 - a) * (x.double() - torch.sqrt(a) * self.m) / (a * self.s ** 2 + 1 - a)).float()

    def exact(self, x_T):
        a = float(self.abar[-1])
        return self.m + self.s * (x_T.double() - math.sqrt(a) * self.m) / math.sqrt(a * self.s ** 2 + 1 - a)


def test_deterministic_samplers_converge_to_the_exact_ode_solution():
    """DDIM (eta = 0) and DPM-Solver++(2M) from the same x_T at K = 10, 20, 50, 100 steps, against the exact
    solution of the probability-flow ODE for x0 ~ N(0.2, 0.3^2 I) (99.6 % of the exact values lie in [-1, 1]).

    Measured (max |error| over 8 x 784 values): DDIM 0.45, 0.24, 0.10, 0.053 (first order: K * error ~ 5);
    DPM-Solver++ 0.41, 0.16, 0.019, 0.0012. The samplers' output is compared before the final clamp to the
    image range: it is the ODE's solution that they claim to compute.

    The old DDIM step (diffusers' clip_sample=True without use_clipped_model_output, before issue 14) fails
    here: its error stays at 0.29 from K = 20 on, since the few values whose x0 prediction is clipped leave
    the trajectory at every step. The DDIM-vs-DPM distance at equal K is not asserted to fall: at K = 10 both
    samplers share most of their (large) error and are close to each other (0.036), at K = 20-50 they are
    0.085 apart, at K = 100 0.052; what falls with K is each one's distance to the exact solution and to the
    high-step reference (DPM-Solver++-100), which the test checks."""
    model = GaussianEps(0.2, 0.3)
    x_T = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    exact = model.exact(x_T)
    ks = (10, 20, 50, 100)
    out = {(s, k): diffusion_loop(model, x_T, y=None, generator=None, sampler=s, steps=k).double()
           for s in ("ddim", "dpm_solver") for k in ks}
    err = {sk: (x - exact).abs().max().item() for sk, x in out.items()}
    ref = out["dpm_solver", 100]
    to_ref = {k: (out["ddim", k] - ref).abs().max().item() for k in ks}
    for s in ("ddim", "dpm_solver"):
        e = [err[s, k] for k in ks]
        assert all(b < a for a, b in zip(e, e[1:])), (s, e)  # falls with every refinement
        assert e[-1] < e[0] / 5, (s, e)  # K = 100 far below K = 10
    d = [to_ref[k] for k in ks]
    assert all(b < a for a, b in zip(d, d[1:])) and d[-1] < d[0] / 5, d
    assert err["ddim", 100] < 0.07 and err["dpm_solver", 100] < 0.005
    for k in (20, 50, 100):  # the second-order multistep solver is the more accurate one at equal NFE
        assert err["dpm_solver", k] < err["ddim", k]


def _study_with(**ddpm):
    from genbench.studies.config import load_study, parse_study

    raw = dict(load_study("mnist_four", "smoke").raw)
    raw["models"] = {**raw["models"], "ddpm": {**raw["models"]["ddpm"], **ddpm}}
    return parse_study(raw, "smoke", "mnist_four.yaml")


@pytest.mark.parametrize("change,needle", [
    ({"sampling": {"sampler": "euler"}}, "models.ddpm.sampling.sampler: 'euler' is not a diffusion sampler"),
    ({"sampling": {"steps": 0}}, "models.ddpm.sampling.steps: expected an integer in 1..100,000, got 0"),
    ({"sampling": {"sampler": "ddim", "steps": 30}}, "DDIM with 30 steps needs a divisor of T=1000"),
    ({"sampling": {"guidance_scale": -1}}, "models.ddpm.sampling.guidance_scale: expected a number in [0, 1000], got -1"),
    ({"sampling": {"eta": 1.5}}, "models.ddpm.sampling.eta: expected a number in [0, 1]"),
    ({"sampling": {"stepz": 5}}, "models.ddpm.sampling: unknown key(s) stepz"),
    ({"params": {"widths": [8, 16, 16], "sampler_steps": 20}},
     "params: sampler_steps moved to the model's `sampling:`"),
])
def test_study_sampling_field_is_validated_in_one_line(change, needle):
    from genbench.errors import GenbenchError

    with pytest.raises(GenbenchError) as e:
        _study_with(**change)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_study_sampling_field_resolves_per_profile_and_defaults():
    s = _study_with(sampling={"sampler": "dpm_solver", "steps": {"smoke": 7, "quick": 20, "full": 100}})
    assert next(m for m in s.models if m.name == "ddpm").sampling == {"sampler": "dpm_solver", "steps": 7,
                                                                       "guidance_scale": 1.0, "eta": 0.0}
    assert _study_with(sampling={"sampler": "ddpm"}).models[3].sampling["steps"] == 1000  # ancestral: all T
    assert all(m.sampling == {} for m in s.models if m.kind in ("vae", "gan", "cgan"))


def test_a_run_folder_study_yaml_from_before_issue_14_is_upgraded(tmp_path):
    """`genbench sweep/evaluate` on an old run folder: its study.yaml held the DDPM's sampler settings in params;
    load_study_dir moves them into `sampling` (a study file a user edits gets the one-line error instead)."""
    import yaml

    from genbench.studies.config import load_study
    from genbench.studies.runner import load_study_dir

    raw = dict(load_study("mnist_four", "quick").raw)
    ddpm = dict(raw["models"]["ddpm"])
    ddpm.pop("sampling")
    ddpm["params"] = {**ddpm["params"], "sampler": "ddim", "sampler_steps": 20, "guidance_scale": 1.5}
    raw["models"] = {k: v for k, v in raw["models"].items() if k != "flow"} | {"ddpm": ddpm}
    raw["sweeps"] = {**raw["sweeps"], "models": ["ddpm"], "reference": {"sampler": "ddpm", "steps": 1000}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({"profile": "quick", **raw}))
    s = load_study_dir(tmp_path)
    m = next(m for m in s.models if m.name == "ddpm")
    assert m.sampling == {"sampler": "ddim", "steps": 20, "guidance_scale": 1.5, "eta": 0.0}
    assert "sampler" not in m.params and "guidance_scale" not in m.params


def test_dpm_solver_lu_refuses_repeated_timesteps_early_and_late():
    """Log-SNR-uniform steps crowd t = 0: on T = 1,000 linear betas they stay distinct up to 38 steps. More are
    refused when the study is read (the family's check) and when a scheduler is built for a model."""
    from genbench.families import check_settings, get_family

    cfg = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    assert max_lu_steps(cfg) == 38
    fam = get_family("diffusion")
    assert check_settings({"sampler": "dpm_solver_lu", "steps": 30}, fam, timesteps=1000)["steps"] == 30
    with pytest.raises(GenbenchError, match="at most 38"):
        check_settings({"sampler": "dpm_solver_lu", "steps": 50}, fam, timesteps=1000)
    model = type("M", (), {"schedule_config": {**cfg, "prediction_type": "epsilon"}})()
    with pytest.raises(GenbenchError, match="repeats timesteps"):
        make_scheduler(model, "dpm_solver_lu", 50)
    assert len(set(make_scheduler(model, "dpm_solver_lu", 30).timesteps.tolist())) == 30
