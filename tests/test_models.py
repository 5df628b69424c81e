"""Shape, range and objective tests of every model family."""

import pytest
import torch

from genbench.families import build_model
from genbench.models.vae import gaussian_kl
from genbench.sampling.diffusion import guided
from genbench.families import draw
from genbench.training.ema import EMA

CASES = [
    ("vae", {"latent_dim": 4}),
    ("vae", {"latent_dim": 4, "num_classes": 10}),
    ("gan", {"z_dim": 8, "g_widths": [16, 16], "d_widths": [16]}),
    ("cgan", {"z_dim": 8, "g_widths": [16, 16], "d_widths": [16], "num_classes": 10}),
    ("sngan", {"z_dim": 8, "width": 8}),
    ("sngan", {"z_dim": 8, "width": 8, "num_classes": 10}),
    ("ddpm", {"widths": [8, 16, 16]}),
    ("ddpm", {"widths": [8, 16, 16], "num_classes": 10}),
    ("flow", {"widths": [8, 16, 16]}),
    ("flow", {"widths": [8, 16, 16], "num_classes": 10}),
    ("shortcut", {"widths": [8, 16, 16]}),
    ("shortcut", {"widths": [8, 16, 16], "num_classes": 10}),
]
# how the diffusion-family cases draw (sampler settings belong to the sampling layer, not to the models)
SETTINGS = {"ddpm": {"sampler": "ddim", "steps": 4, "guidance_scale": 2.0},
            "flow": {"sampler": "heun", "steps": 3, "guidance_scale": 2.0},
            "shortcut": {"sampler": "shortcut", "steps": 4, "guidance_scale": 2.0}}


@pytest.mark.parametrize("kind,params", CASES)
def test_sample_shape_range_and_determinism(kind, params):
    torch.manual_seed(0)
    model, _ = build_model(kind, params)
    model.eval()
    y = torch.arange(6) % 10 if params.get("num_classes") else None
    st = SETTINGS.get(kind)
    a = draw(model, 6, y=y, generator=torch.Generator().manual_seed(3), settings=st)
    b = draw(model, 6, y=y, generator=torch.Generator().manual_seed(3), settings=st)
    assert a.shape == (6, 1, 28, 28) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind,params", [c for c in CASES if c[0] in ("vae", "ddpm", "flow", "shortcut")])
def test_training_losses_are_finite_scalars(kind, params):
    model, _ = build_model(kind, params)
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    y = torch.arange(4) if params.get("num_classes") else None
    losses = model.training_losses(x, y)
    assert losses["loss"].ndim == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()


def test_gan_losses_and_diagnostics():
    model, _ = build_model("cgan", {"z_dim": 8, "g_widths": [16], "d_widths": [16], "num_classes": 10,
                                    "real_label": 0.9})
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    y = torch.arange(4)
    fake = model.generate(torch.randn(4, 8), y)
    d = model.discriminator_losses(x, y, fake, y)
    assert 0 < d["d_x"] < 1 and 0 < d["d_g_z"] < 1 and torch.isfinite(d["loss"])
    assert torch.isfinite(model.generator_losses(fake, y)["loss"])


def test_gaussian_kl_known_answers():
    assert gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)).tolist() == [0.0, 0.0]
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension.
    assert gaussian_kl(torch.ones(1, 4), torch.zeros(1, 4)).item() == pytest.approx(2.0)


def test_conditional_model_requires_labels():
    model, _ = build_model("vae", {"latent_dim": 4, "num_classes": 10})
    with pytest.raises(ValueError, match="pass labels"):
        model.training_losses(torch.zeros(2, 1, 28, 28))


def test_guidance_scale_one_and_zero_reduce_to_conditional_and_unconditional():
    torch.manual_seed(0)
    model, _ = build_model("ddpm", {"widths": [8, 16, 16], "num_classes": 10})
    model.eval()
    x, t, y = torch.randn(3, 1, 28, 28), torch.tensor([5, 500, 900]), torch.tensor([1, 2, 3])
    with torch.no_grad():
        cond = model.unet(x, t, y)
        unc = model.unet(x, t, torch.full_like(y, 10))
        assert torch.allclose(guided(model, x, t, y, 1.0), cond)
        assert torch.allclose(guided(model, x, t, y, 0.0), unc)
        assert torch.allclose(guided(model, x, t, y, 3.0), unc + 3 * (cond - unc), atol=1e-5)


def test_models_know_no_sampler():
    """Diffusion-family models are network + schedule/path + loss: no sampler method, setting or import."""
    import inspect

    import genbench.models.ddpm as ddpm_mod
    import genbench.models.flow as flow_mod
    import genbench.models.shortcut as shortcut_mod

    for kind in ("ddpm", "flow", "shortcut"):
        model, _ = build_model(kind, {"widths": [8, 16, 16]})
        assert not hasattr(model, "sample") and not hasattr(model, "sampler")
    for mod in (ddpm_mod, flow_mod, shortcut_mod):
        src = inspect.getsource(mod)
        assert "from genbench.sampling" not in src and "import genbench.sampling" not in src


def test_flow_loss_regresses_the_straight_path_velocity():
    """With a network that returns the exact conditional velocity x_1 - x_0 (known here because the test draws
    the same t and x_0 as the loss), the flow-matching loss is zero; with a zero network it is E||x_1 - x_0||^2."""
    torch.manual_seed(0)
    model, _ = build_model("flow", {"widths": [8, 16, 16], "num_classes": 10, "p_uncond": 0.0})
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    g = torch.Generator().manual_seed(7)
    t = torch.rand((5,), generator=g)
    x0 = torch.randn(x.shape, generator=g)
    x_t = (1 - t.view(5, 1, 1, 1)) * x0 + t.view(5, 1, 1, 1) * x

    def exact(xt, tt, y):
        assert torch.allclose(xt, x_t) and torch.allclose(tt, t)
        return x - x0
    model.forward = exact
    loss = model.training_losses(x, torch.arange(5), generator=torch.Generator().manual_seed(7))["loss"]
    assert loss.item() < 1e-10
    model.forward = lambda xt, tt, y: torch.zeros_like(xt)
    loss = model.training_losses(x, torch.arange(5), generator=torch.Generator().manual_seed(7))["loss"]
    assert loss.item() == pytest.approx(((x - x0) ** 2).mean().item(), rel=1e-5)


def test_ema_update_arithmetic():
    lin = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(lin.weight, 0.0)
    ema = EMA(lin, decay=0.9)
    torch.nn.init.constant_(lin.weight, 1.0)
    d0 = ema.current_decay()  # warm-up: min(0.9, 1/10) = 0.1
    ema.update(lin)
    assert d0 == pytest.approx(0.1)
    assert ema.model.weight.item() == pytest.approx(0.9)  # 0.1 * 0 + 0.9 * 1


def test_cpu_dropout_mask_statistics_scale_and_eval_identity():
    from genbench.models.gan import Dropout

    drop = Dropout(0.3)
    x = torch.ones(400, 1000)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    p_exact = round(0.3 * 65536) / 65536
    # 400,000 Bernoulli draws: the kept fraction is 1 - p within 5 standard errors (sd ~ 7e-4)
    assert abs(kept.float().mean().item() - (1 - p_exact)) < 5 * (p_exact * (1 - p_exact) / x.numel()) ** 0.5
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p_exact)))  # inverted dropout: E[y] = x
    # every 16-bit lane of the 64-bit words is used: per-lane kept fractions agree with each other
    lanes = kept.flatten()[: 4 * (x.numel() // 4)].view(-1, 4).float().mean(0)
    assert (lanes - (1 - p_exact)).abs().max() < 0.01
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # drawn from torch's default generator: seeded runs repeat
    torch.manual_seed(0)
    assert torch.equal(drop(x.bfloat16()).float() != 0, kept)  # same mask whatever the dtype
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert not Dropout(1.0).train()(x).any()


def test_joint_real_fake_discriminator_forward_equals_two_forwards():
    """discriminator_losses runs D once on [real; fake]; without dropout that is exactly two separate forwards."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model, _ = build_model("cgan", {"z_dim": 8, "g_widths": [16], "d_widths": [32, 16], "num_classes": 10,
                                    "real_label": 0.9, "dropout": 0.0})
    x, y = torch.rand(5, 1, 28, 28) * 2 - 1, torch.arange(5)
    fake, yf = model.generate(torch.randn(5, 8), y.flip(0)), y.flip(0)
    d = model.discriminator_losses(x, y, fake, yf)
    dr, df = model.discriminate(x, y), model.discriminate(fake, yf)
    want = (F.binary_cross_entropy_with_logits(dr, torch.full_like(dr, 0.9))
            + F.binary_cross_entropy_with_logits(df, torch.zeros_like(df)))
    torch.testing.assert_close(d["loss"], want)
    torch.testing.assert_close(d["d_x"], torch.sigmoid(dr).mean())
    torch.testing.assert_close(d["d_g_z"], torch.sigmoid(df).mean())


def test_discriminator_forward_is_joint_only_without_batch_statistics():
    """MLP D (no BatchNorm): the joint [real; fake] forward equals two forwards. DCGAN's D has BatchNorm, so in
    train mode a joint forward would mix real and fake batch statistics: it must score them separately (as
    pytorch/examples' DCGAN does), and its losses must equal the separate-forward computation."""
    import torch.nn.functional as F

    from genbench.families import build_model

    torch.manual_seed(0)
    for kind, params, joint in (("gan", {"z_dim": 8, "g_widths": [16], "d_widths": [16], "dropout": 0.0,
                                         "image_shape": [1, 28, 28]}, True),
                                ("dcgan", {"z_dim": 8, "ngf": 8, "ndf": 8, "image_shape": [3, 32, 32]}, False)):
        model, _ = build_model(kind, params)
        model.train()
        assert model.joint_discriminator_forward is joint
        c, h, w = params["image_shape"]
        x = torch.rand(6, c, h, w) * 2 - 1
        fake = model.generate(torch.randn(6, 8), None)
        d = model.discriminator_losses(x, None, fake, None)
        d_real, d_fake = model.discriminate(x, None), model.discriminate(fake.detach(), None)
        want = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        assert torch.allclose(d["loss"], want, atol=1e-5), kind
        if not joint:  # the joint forward really differs with BatchNorm in train mode, so the check can fail
            both = model.discriminate(torch.cat([x, fake.detach()]), None)
            joint_loss = (F.binary_cross_entropy_with_logits(both[:6], torch.ones(6))
                          + F.binary_cross_entropy_with_logits(both[6:], torch.zeros(6)))
            assert not torch.allclose(joint_loss, want, atol=1e-4)
