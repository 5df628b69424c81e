"""SNGAN (models/sngan.py): shapes and range, spectral norm on every D layer, the projection term, known answers for
the hinge loss and R1, the kind in the registry and in study files, and a short run of the real training loop."""

import pytest
import torch
import yaml
from torch import nn
from torch.nn.utils import parametrize

from genbench.families import build_model, builtin_kinds, draw, get_family, resolve_kind
from genbench.models.sngan import SNGAN, hinge_d_loss, hinge_g_loss, ns_d_loss, ns_g_loss, r1_penalty

TINY = {"z_dim": 16, "width": 8}


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_samples_shape_dtype_range_and_labels(shape, num_classes):
    torch.manual_seed(0)
    model, fam = build_model("sngan", {**TINY, "num_classes": num_classes, "image_shape": list(shape)})
    assert fam == "gan" and model.num_classes == num_classes
    model.eval()
    y = torch.arange(6) % 10 if num_classes else None
    a = draw(model, 6, y=y, generator=torch.Generator().manual_seed(3))
    b = draw(model, 6, y=y, generator=torch.Generator().manual_seed(3))
    assert a.shape == (6, *shape) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1 and torch.equal(a, b)
    if num_classes:  # the label reaches G (conditional BatchNorm): other labels, other images, same noise
        with torch.no_grad():
            for bn in (model.generator.bn0, model.generator.bn1, model.generator.bn2):
                bn.gain.weight.normal_(1, 0.5)
        c = draw(model, 6, y=y, generator=torch.Generator().manual_seed(3))
        d = draw(model, 6, y=(y + 1) % 10, generator=torch.Generator().manual_seed(3))
        assert not torch.equal(c, d)
        with pytest.raises(TypeError):
            model.generate(torch.randn(2, 16), None)  # a conditional G needs labels


def test_bad_geometry_loss_and_r1_settings_are_refused():
    for kw in ({"image_shape": [1, 28, 30]}, {"image_shape": [1, 30, 30]}, {"loss": "wgan"}, {"r1_gamma": -1.0},
               {"r1_every": 0}):
        with pytest.raises(ValueError):
            SNGAN(**TINY, **kw)


def test_every_discriminator_layer_with_weights_is_spectrally_normalised():
    model = SNGAN(**TINY, num_classes=10)
    layers = [m for m in model.discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert len(layers) == 7  # 5 convs, psi, the class embedding
    for m in layers:
        assert parametrize.is_parametrized(m, "weight"), m
        assert type(m.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    # after enough power iterations every normalised weight has largest singular value 1
    model.train()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        for _ in range(30):
            model.discriminate(x, torch.arange(4))
    model.eval()
    for m in layers:
        w = m.weight.detach()
        w = w.flatten(1) if w.dim() > 2 else w
        assert torch.linalg.matrix_norm(w, 2).item() == pytest.approx(1.0, abs=2e-2), m
    # G is not normalised (Miyato et al. 2018 normalise D only)
    assert not any(parametrize.is_parametrized(m) for m in model.generator.modules())


def test_projection_term_makes_the_logit_depend_on_the_label():
    torch.manual_seed(0)
    model = SNGAN(**TINY, num_classes=10).eval()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        a, b = model.discriminate(x, y), model.discriminate(x, (y + 5) % 10)
        phi = model.discriminator.features(x)
        want = model.discriminator.psi(phi).squeeze(1) + (model.discriminator.embed(y) * phi).sum(1)
    assert a.shape == (4,) and not torch.allclose(a, b)
    torch.testing.assert_close(a, want)  # Miyato & Koyama 2018, eq. 3: psi(phi(x)) + <embed(y), phi(x)>
    unc = SNGAN(**TINY).eval()
    assert unc.discriminator.embed is None and unc.discriminate(x).shape == (4,)


def test_hinge_and_ns_losses_on_hand_made_logits():
    d_real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - .): 0, 0.5, 2 -> mean 2.5 / 3
    d_fake = torch.tensor([-2.0, 0.0, 1.0])  # relu(1 + .): 0, 1, 2 -> mean 1
    assert hinge_d_loss(d_real, d_fake).item() == pytest.approx(2.5 / 3 + 1.0)
    assert hinge_g_loss(d_fake).item() == pytest.approx(1 / 3)  # -mean(-2, 0, 1)
    sp = torch.nn.functional.softplus
    assert ns_d_loss(d_real, d_fake).item() == pytest.approx((sp(-d_real).mean() + sp(d_fake).mean()).item())
    assert ns_g_loss(torch.zeros(5)).item() == pytest.approx(torch.log(torch.tensor(2.0)).item())  # -log sigmoid(0)


def test_r1_equals_gamma_over_two_squared_weight_norm_for_a_linear_d():
    """D(x) = <w, x> + b has grad_x D = w for every x, so R1 = gamma / 2 * ||w||^2 (Mescheder et al. 2018, eq. 9)."""
    torch.manual_seed(0)
    lin = nn.Linear(12, 1)
    x = torch.randn(5, 3, 2, 2, requires_grad=True)
    d = lin(x.flatten(1)).squeeze(1)
    r1 = r1_penalty(d, x, gamma=3.0)
    want = 0.5 * 3.0 * lin.weight.pow(2).sum()
    torch.testing.assert_close(r1, want)
    r1.backward()  # the penalty trains D: d/dw (gamma/2 ||w||^2) = gamma * w
    torch.testing.assert_close(lin.weight.grad, 3.0 * lin.weight.detach())


def test_discriminator_losses_add_r1_only_when_due_and_lazily():
    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 28, 28) * 2 - 1, torch.arange(4)
    plain = SNGAN(**TINY, num_classes=10)
    fake = plain.generate(torch.randn(4, 16), y)
    d0 = plain.discriminator_losses(x, y, fake, y)
    assert d0["r1"].item() == 0 and 0 < d0["d_x"] < 1 and 0 < d0["d_g_z"] < 1 and torch.isfinite(d0["loss"])
    lazy = SNGAN(**TINY, num_classes=10, r1_gamma=10.0, r1_every=2)
    lazy.load_state_dict(plain.state_dict())
    assert int(lazy.d_steps) == 1  # the buffer counts D steps (one above) and travels with the weights
    lazy.d_steps.zero_()
    got = [lazy.discriminator_losses(x, y, fake, y)["r1"].item() for _ in range(4)]
    assert got[0] > 0 and got[1] == 0 and got[2] > 0 and got[3] == 0 and int(lazy.d_steps) == 4
    g = plain.generator_losses(fake, y)["loss"]
    g.backward()
    assert all(p.grad is not None for p in plain.generator_parameters() if p.requires_grad)


def test_the_kind_is_registered_and_a_study_file_can_use_it():
    from genbench.studies.catalog import resolve_study
    from genbench.studies.config import parse_study

    assert builtin_kinds()["sngan"] == (SNGAN, "gan")
    mk = resolve_kind("sngan")
    assert mk.spec is get_family("gan") and not mk.external
    assert {"gan", "cgan", "dcgan"} <= set(get_family("gan").kinds)  # the seed's kinds stay
    raw = yaml.safe_load(resolve_study("mnist_four").read_text())
    raw["models"] = {"sngan": {"kind": "sngan", "params": {"z_dim": 64, "width": 16, "num_classes": 10,
                                                           "r1_gamma": 0.1, "loss": "hinge"},
                               "optimizer": {"lr": 2.0e-4, "betas": [0.0, 0.9]}, "ema_decay": 0.999,
                               "epochs": {"smoke": 1, "quick": 1, "full": 1}}}
    cfg = parse_study(raw, "smoke")
    (m,) = cfg.models
    assert m.kind == "sngan" and m.params["image_shape"] == [1, 28, 28] and m.params["num_classes"] == 10
    model, _ = build_model(m.kind, m.params)
    assert isinstance(model, SNGAN) and model.r1_gamma == 0.1
    from genbench.errors import GenbenchError

    raw["models"]["sngan"]["params"]["loss"] = "wgan"
    with pytest.raises(GenbenchError, match="loss"):
        parse_study(raw, "smoke")


def test_the_data_parallel_entries_cover_g_and_d():
    model = SNGAN(**TINY, num_classes=10)
    entries = get_family("gan").ddp(model)
    for name, sub in (("generate", model.generator), ("discriminate", model.discriminator)):
        fn, mods, params = entries[name]
        assert {id(p) for p in params} == {id(p) for p in sub.parameters()}
        assert {k: v for k, v in mods.items() if v is not None} == {name.replace("generate", "generator")
                                                                    .replace("discriminate", "discriminator"): sub}


def test_twenty_steps_of_the_training_loop_with_ema_and_r1(mnist, tmp_path):
    """The real loop (adversarial_step, fp32) on 320 MNIST images, batch 16: finite losses, the EMA copy in the
    checkpoint, and load_trained (what sample/score/sweep use) returns the EMA generator's weights."""
    from genbench.families import load_trained
    from genbench.io import read_jsonl
    from genbench.studies.config import ModelConfig
    from genbench.training.loop import train

    params = {**TINY, "num_classes": 10, "r1_gamma": 1.0, "r1_every": 2, "image_shape": [1, 28, 28]}
    cfg = ModelConfig(name="sngan", kind="sngan", params=params, optimizer={"lr": 2e-4, "betas": [0.0, 0.9]},
                      epochs=1, batch_size=16, seed=0, precision="fp32", dataset="mnist", log_every=1,
                      ema_decay=0.999)
    summary = train(cfg, mnist["train"].subset(slice(0, 320)), tmp_path / "sngan")
    assert summary["steps"] == 20
    hist = [r for r in read_jsonl(tmp_path / "sngan" / "history.jsonl") if r["kind"] == "step"]
    assert len(hist) == 20
    assert all(torch.isfinite(torch.tensor([r["loss_g"], r["loss_d"], r["d_x"], r["d_g_z"]])).all() for r in hist)
    model, ck = load_trained(tmp_path / "sngan")
    assert ck["ema"] and int(ck["model"]["d_steps"]) == 20
    name = "generator.out.weight"
    assert torch.equal(model.state_dict()[name], ck["ema"]["model"][name])
    assert not torch.equal(ck["ema"]["model"][name], ck["model"][name])  # the averaged G, not the last one
    x = draw(model, 5, y=torch.arange(5), generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
