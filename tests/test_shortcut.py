"""Shortcut models (Frans et al. 2024, arXiv 2410.12557): the sampler and the self-consistency target against the
exact shortcut of Gaussian data, the loss's grids and its zero consistency term under the exact shortcut, the
U-Net unchanged without a step embedding, a tiny run through the training loop drawn at 1, 2 and 4 NFE, and the
refusals of bad step counts."""

import hashlib
import math

import pytest
import torch
from torch import nn

from genbench.errors import GenbenchError
from genbench.families import build_model, check_settings, draw, get_family, load_trained, nfe, sampler_info
from genbench.models.unet import UNet
from genbench.sampling.shortcut import shortcut_loop

M, S = 0.3, 0.5  # data x_1 ~ N(M, S^2) per pixel


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread (as tests/test_flow.py: two threads on a loaded 2-core machine wait on each other
    for microsecond-sized ops; here 18 s instead of 0.2 s for the forward test)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _sigma(t, s=S):
    """Std of x_t = (1 - t) x_0 + t x_1 for x_0 ~ N(0, 1), x_1 ~ N(m, s^2): sqrt((1 - t)^2 + t^2 s^2)."""
    return torch.sqrt((1 - t) ** 2 + t ** 2 * s ** 2)


def exact_shortcut(x, t, d, m=M, s=S):
    """s*(x, t, d) = (Phi_{t -> t+d}(x) - x) / d for Gaussian data on straight paths. The probability-flow ODE of
    rectified flow keeps z = (x_t - t m) / sigma_t constant (tests/test_flow.py), so the exact flow map is affine,
    Phi_{t -> t+d}(x) = (t + d) m + sigma_{t+d} (x - t m) / sigma_t, and Phi_{0 -> 1}(x_0) = m + s x_0.
    x float (B, C, H, W); t, d float (B,) -> float64 (B, C, H, W)."""
    t, d = t.double().view(-1, 1, 1, 1), d.double().view(-1, 1, 1, 1)
    phi = (t + d) * m + _sigma(t + d, s) * (x.double() - t * m) / _sigma(t, s)
    return (phi - x.double()) / d


class ExactShortcut(nn.Module):
    """A stand-in for ShortcutModel whose network is the exact s* (``forward(x_t, t, y, *, d)``); records every
    call's (batch, t, d)."""

    def __init__(self, max_steps=128, num_classes=0):
        super().__init__()
        self.max_steps, self.num_classes, self.calls = max_steps, num_classes, []

    def forward(self, x, t, y=None, *, d=None):
        d = torch.as_tensor(d, dtype=torch.float64).expand(x.shape[0])
        self.calls.append((x.shape[0], t.clone(), d.clone()))
        return exact_shortcut(x, t, d).float()


@pytest.mark.parametrize("k", [1, 2, 4])
def test_the_sampler_with_the_exact_shortcut_maps_noise_to_the_data(k):
    """K steps of the exact shortcut compose to Phi_{0 -> 1}: x_K = m + s x_0 to float round-off, so the samples'
    mean and std are N(m, s^2)'s within the sampling error of n = 8 x 784 values (5 standard errors: s / sqrt(n) for
    the mean, s / sqrt(2 n) for the std)."""
    x0 = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = ExactShortcut()
    x = shortcut_loop(model, x0, y=None, steps=k)
    assert torch.allclose(x.double(), M + S * x0.double(), atol=1e-5)
    n = x.numel()
    assert abs(x.double().mean().item() - M) < 5 * S / math.sqrt(n)
    assert abs(x.double().std().item() - S) < 5 * S / math.sqrt(2 * n)
    assert len(model.calls) == k  # NFE = K
    for i, (b, t, d) in enumerate(model.calls):
        assert b == 8 and torch.all(d == 1 / k) and torch.allclose(t, torch.full_like(t, i / k))


def test_the_exact_shortcut_is_self_consistent():
    """s*(x, t, 2d) = (s*(x, t, d) + s*(x + d s*(x, t, d), t + d, d)) / 2 (Frans et al. 2024, eq. 4) for every
    step 2d = 1, 1/2, ..., 1/64 and every t on its grid: residual 0 to float64 round-off."""
    x = torch.randn(4, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    for j in range(7):
        big = 2.0 ** -j
        for t0 in torch.arange(0, 1, big, dtype=torch.float64):
            t, d2, d = (torch.full((4,), v, dtype=torch.float64) for v in (float(t0), big, big / 2))
            s1 = exact_shortcut(x, t, d)
            s2 = exact_shortcut(x + d.view(-1, 1, 1, 1) * s1, t + d, d)
            assert (exact_shortcut(x, t, d2) - (s1 + s2) / 2).abs().max().item() < 1e-12, (j, float(t0))


def test_the_loss_draws_the_paper_grids_and_its_consistency_term_is_zero_for_the_exact_shortcut():
    """The model's own loss with its network replaced by s*: the consistency share (first floor(B/4) rows) asks
    s(x_t, t, 2d) with 2d a power of two in [2/M, 1] and t a multiple of 2d with t + 2d <= 1, its targets two
    s(., ., d) calls at t and t + d; the flow-matching share asks d = 1/M at multiples of 1/M. loss_sc is 0 to
    float round-off; loss = ((B - n) loss_fm + n loss_sc) / B."""
    model, _ = build_model("shortcut", {"widths": [8, 16, 16], "max_steps": 16})
    exact = ExactShortcut(max_steps=16)
    model.forward = exact.forward
    b = 64
    x = M + S * torch.randn(b, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    out = model.training_losses(x, None, generator=torch.Generator().manual_seed(3))
    assert out["loss_sc"].item() < 1e-10
    assert 0 < out["loss_fm"].item() < 10
    n = b // 4
    assert out["loss"].item() == pytest.approx(((b - n) * out["loss_fm"].item() + n * out["loss_sc"].item()) / b,
                                               rel=1e-5)
    (nb1, t1, d1), (nb2, t2, d2), (nb, t, d) = exact.calls  # two target calls, then the prediction
    assert nb1 == nb2 == n and nb == b
    big, tc = d[:n], t[:n]
    levels = -torch.log2(big)
    assert torch.all(levels == levels.round()) and levels.min() >= 0 and levels.max() <= 3  # 2d in {1, .., 2/16}
    assert torch.all(tc / big == (tc / big).round()) and torch.all(tc + big <= 1)
    assert torch.equal(d1, big / 2) and torch.equal(d2, big / 2) and torch.equal(t1, tc)
    assert torch.allclose(t2.double(), tc.double() + big / 2)
    assert torch.all(d[n:] == 1 / 16) and torch.all(t[n:] * 16 == (t[n:] * 16).round()) and t[n:].max() < 1
    assert len(set(levels.tolist())) > 1  # the levels are drawn, not fixed


@pytest.mark.parametrize("num_classes", [0, 10])
def test_forward_shapes_loss_terms_and_backward(num_classes):
    torch.manual_seed(0)
    model, _ = build_model("shortcut", {"widths": [8, 8, 8], "attention": False, "num_classes": num_classes,
                                        "image_shape": [1, 8, 8]})
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    y = torch.arange(8) if num_classes else None
    out = model(x, torch.rand(8), y, d=torch.full((8,), 0.25))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(model(x, torch.zeros(8), y), model(x, torch.zeros(8), y, d=1 / 128))  # d None = 1/M
    losses = model.training_losses(x, y, generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"loss", "loss_fm", "loss_sc"} and set(losses) == set(get_family("shortcut").loss_keys)
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert model.unet.step_mlp[0].weight.grad.abs().sum() > 0  # the step embedding is trained
    model.eval()
    for k in (1, 2, 4):
        a = draw(model, 4, y=torch.arange(4) if num_classes else None, generator=torch.Generator().manual_seed(1),
                 settings={"steps": k, "guidance_scale": 2.0})
        assert a.shape == (4, 1, 8, 8) and a.min() >= -1 and a.max() <= 1


def test_the_unet_without_a_step_embedding_is_unchanged():
    """The default U-Net's state_dict keys and shapes hash to those of the code before ``step_embedding`` existed
    (commit d71e31b: 124 and 125 keys), so existing checkpoints load; with a step embedding whose output layer is
    zeroed, the same seed gives the same other weights and the same output."""
    for kw, n, digest in (({}, 124, "5671180e5143c15c5400577b7afb356e686b9466812e0b4d35de96a308bea8a8"),
                          ({"num_classes": 10, "widths": (8, 16, 16)}, 125,
                           "c8ac6ae3efce8f7458a228330372532ffeefaa74a7b09873a0167cbb5d32cb92")):
        sd = UNet(**kw).state_dict()
        s = ";".join(f"{k}:{tuple(v.shape)}" for k, v in sd.items())
        assert len(sd) == n and hashlib.sha256(s.encode()).hexdigest() == digest
    torch.manual_seed(0)
    plain = UNet(widths=(8, 16, 16), num_classes=3)
    torch.manual_seed(0)
    stepped = UNet(widths=(8, 16, 16), num_classes=3, step_embedding=True)
    extra = set(stepped.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("step_mlp.") for k in extra)
    assert all(torch.equal(v, stepped.state_dict()[k]) for k, v in plain.state_dict().items())
    nn.init.zeros_(stepped.step_mlp[2].weight)
    nn.init.zeros_(stepped.step_mlp[2].bias)
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([3.0, 700.0]), torch.tensor([0, 3])
    assert torch.equal(plain(x, t, y), stepped(x, t, y, step=torch.tensor([0.0, 500.0])))


def test_settings_nfe_and_guidance():
    assert check_settings(None, "shortcut") == {"sampler": "shortcut", "steps": 2, "guidance_scale": 1.0, "eta": 0.0}
    model, _ = build_model("shortcut", {"widths": [8, 16, 16], "num_classes": 10, "max_steps": 8})
    for k in (1, 2, 4, 8):
        assert nfe(model, {"steps": k}) == k
        assert nfe(model, {"steps": k, "guidance_scale": 2.0}) == 2 * k
    assert sampler_info(model, {"steps": 4})["nfe"] == 4
    # guidance through the shared guided(): one batched call of 2n rows per step, d bound to 1/K on every row
    exact = ExactShortcut(max_steps=8, num_classes=10)
    x0 = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    x = shortcut_loop(exact, x0, y=torch.tensor([1, 2, 3]), steps=4, guidance_scale=3.0)
    assert torch.allclose(x.double(), M + S * x0.double(), atol=1e-5)  # s_c = s_u here, so any w gives s*
    assert [b for b, _, _ in exact.calls] == [6] * 4 and all(torch.all(d == 0.25) for _, _, d in exact.calls)


@pytest.mark.parametrize("steps,needle", [
    (3, "power of two of steps up to its max_steps=8"), (6, "use one of 1, 2, 4, 8"),
    (16, "got 16; use one of 1, 2, 4, 8"), (0, "expected an integer in 1..100,000"),
])
def test_bad_step_counts_are_refused_in_one_line(steps, needle):
    model, _ = build_model("shortcut", {"widths": [8, 8, 8], "attention": False, "max_steps": 8,
                                        "image_shape": [1, 8, 8]})
    for call in (lambda: draw(model, 2, settings={"steps": steps}),
                 lambda: check_settings({"steps": steps}, "shortcut", timesteps=8, where="s.yaml.models.sc.sampling")):
        with pytest.raises(GenbenchError) as e:
            call()
        assert needle in str(e.value) and "\n" not in str(e.value)
    if steps:
        with pytest.raises(GenbenchError, match="power of two"):
            shortcut_loop(model, torch.randn(1, 1, 8, 8), y=None, steps=steps)


@pytest.mark.parametrize("params,needle", [
    ({"max_steps": 100}, "max_steps must be a power of two >= 2 (e.g. 64, 128, 256), got 100"),
    ({"max_steps": 1}, "max_steps must be a power of two >= 2"),
    ({"consistency_fraction": 1.0}, "consistency_fraction must be in [0, 1)"),
])
def test_bad_model_parameters_are_refused_in_one_line(params, needle):
    with pytest.raises(GenbenchError) as e:
        build_model("shortcut", {"widths": [8, 16, 16], **params})
    assert needle in str(e.value) and "\n" not in str(e.value)


def _study(sampling=None, **params):
    from genbench.studies.config import parse_study

    m = {"kind": "shortcut", "params": {"widths": [8, 8, 8], "attention": False, "num_classes": 10, **params},
         "optimizer": {"lr": 1e-3}, "epochs": 1}
    if sampling is not None:
        m["sampling"] = sampling
    return parse_study({"name": "s", "dataset": "mnist", "batch_size": 16, "log_every": 1, "models": {"sc": m}},
                       "smoke")


def test_a_study_refuses_steps_beyond_max_steps_before_training():
    with pytest.raises(GenbenchError, match=r"sc\.sampling\.steps: .*max_steps=8 .*got 16"):
        _study({"steps": 16}, max_steps=8)
    with pytest.raises(GenbenchError, match=r"sc\.params\.max_steps: .*a power of two in 2\.\.1,048,576"):
        _study({"steps": 1}, max_steps=100)
    assert _study({"steps": 8}, max_steps=8).models[0].sampling["steps"] == 8


def test_tiny_run_through_the_training_loop_draws_at_1_2_and_4_nfe(tmp_path):
    """Two steps of the normal training path (study parser, loop, checkpoint, history with the loss terms), then
    the trained run loaded and drawn at K = 1, 2, 4 (NFE K; 2K under guidance)."""
    from genbench.data.registry import Dataset
    from genbench.io import read_jsonl
    from genbench.training.loop import train

    study = _study({"steps": 4, "guidance_scale": 1.5}, max_steps=8)
    g = torch.Generator().manual_seed(0)
    data = Dataset(torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8, generator=g),
                   torch.arange(32) % 10, 10, "noise")
    train(study.models[0], data, tmp_path / "sc")
    steps = [r for r in read_jsonl(tmp_path / "sc" / "history.jsonl") if r.get("kind") == "step"]
    assert len(steps) == 2 and all({"loss", "loss_fm", "loss_sc"} <= set(r) for r in steps)
    model, ck = load_trained(tmp_path / "sc")
    assert type(model).__name__ == "ShortcutModel" and model.max_steps == 8
    assert ck["config"]["sampling"] == {"sampler": "shortcut", "steps": 4, "guidance_scale": 1.5, "eta": 0.0}
    for k in (1, 2, 4):
        s = {"steps": k, "guidance_scale": 1.5}
        x = draw(model, 6, y=torch.arange(6), generator=torch.Generator().manual_seed(k), settings=s)
        assert x.shape == (6, 1, 28, 28) and torch.isfinite(x).all() and x.abs().max() <= 1
        assert nfe(model, s) == 2 * k and nfe(model, {"steps": k}) == k
        assert sampler_info(model, s) == {"sampler": "shortcut", "steps": k, "nfe": 2 * k, "guidance_scale": 1.5,
                                          "eta": 0.0}
