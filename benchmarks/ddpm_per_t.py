"""Does a DDPM recipe train every timestep, and do its deterministic samplers converge? Two recipes side by side.

Issue 27: the study's DDPM (eps-prediction with Min-SNR-5, Hang et al. 2023) left the network poor at small t
(eps-MSE 0.63 at t = 5 against 0.20 unweighted), and its DDIM stopped improving past 20 steps. This script trains,
in one process, the same U-Net from the same initialisation on the same batches with two recipes:

- ``eps_minsnr5``: prediction_type epsilon, min_snr_gamma 5 (mnist_four's DDPM today);
- ``edm``: prediction_type edm (Karras et al. 2022 preconditioning, log-normal sigma, lambda = 1 / c_out^2;
  :mod:`genbench.models.ddpm`),

then prints, on held-out test images with the same noise for both:

1. the per-timestep eps-MSE and x0-MSE (each recipe's prediction converted to eps and to x0 by
   :meth:`DDPM.predict_eps`), at t = 1 ... 999;
2. a deterministic sampler sweep (DDIM, DPM-Solver++ on log-SNR steps) of the EMA model, N images from the same
   starting noise and labels at every step count, scored by the Frechet distance in the feature space of
   genbench's MNIST classifier (FD-clf; its cached classifier, trained on the train split) against N test images,
   with a bootstrap spread over the generated images (20 resamples), and the conditional accuracy. With
   ``--inception`` also Inception FID (genbench's OpenVINO/TorchScript pool3, the study's extractor).

The network is smaller than the study's (``--widths``) and trained for fewer steps, so that the comparison fits a
few CPU minutes: the numbers rank the recipes' per-t behaviour and sampler convergence, not the study's FID.
Nothing here asserts anything.

    .venv/bin/python benchmarks/ddpm_per_t.py [--steps 800] [--batch 64] [--widths 16 32 32] [--n 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from genbench.data import load_dataset
from genbench.data.tensors import to_float, to_uint8
from genbench.families import draw
from genbench.metrics.classifier import get_classifier, predict
from genbench.metrics.scores import bootstrap_fid, feature_stats, frechet_distance_to
from genbench.models.ddpm import DDPM
from genbench.training.ema import EMA

RECIPES = {"eps_minsnr5": dict(prediction_type="epsilon", min_snr_gamma=5.0), "edm": dict(prediction_type="edm")}
T_GRID = (1, 5, 20, 50, 100, 200, 400, 700, 999)
SWEEP = {"ddim": (10, 20, 50, 100), "dpm_solver_lu": (5, 10, 20, 30)}


def train(recipe: str, data, *, steps: int, batch: int, widths, seed: int) -> tuple[DDPM, float]:
    torch.manual_seed(seed)
    model = DDPM(widths=tuple(widths), num_classes=10, p_uncond=0.1, **RECIPES[recipe])
    return fit(model, data, steps=steps, batch=batch, seed=seed, name=recipe)


def fit(model, data, *, steps: int, batch: int, seed: int, name: str, lr: float = 1e-3, on_step=None):
    """Adam (lr) + EMA 0.999 on ``model.training_losses`` for ``steps`` batches drawn with ``seed`` (the same
    batches for every model given the same seed). ``on_step(i, ema_model)`` after each step, if given. Returns
    (the EMA model in eval mode, training seconds excluding on_step)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ema = EMA(model, 0.999)
    order = torch.Generator().manual_seed(seed)  # the same batches for every recipe
    loss_gen = torch.Generator().manual_seed(seed + 1)
    secs = 0.0
    for i in range(steps):
        t0 = time.perf_counter()
        idx = torch.randint(len(data.x), (batch,), generator=order)
        loss = model.training_losses(to_float(data.x[idx]), data.y[idx], generator=loss_gen)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
        secs += time.perf_counter() - t0
        if (i + 1) % max(1, steps // 4) == 0:
            print(f"  [{name}] step {i + 1}/{steps} loss {loss.item():.4f}", flush=True)
        if on_step is not None:
            on_step(i + 1, ema.model)
    return ema.model.eval(), secs


def score(model, n: int, settings: dict, clf, real_stats, inc=None, inc_real=None) -> dict:
    """Draw n images (labels 0..9 cycling, generator seed 7: the same noise for every setting), FD-clf and its
    bootstrap sd (20 resamples), conditional accuracy, optionally Inception FID; seconds of drawing + scoring."""
    t0 = time.perf_counter()
    labels = torch.arange(n) % 10
    imgs = draw(model, n, y=labels, generator=torch.Generator().manual_seed(7), settings=settings)
    u8 = to_uint8(imgs)
    probs, feats = predict(clf, u8)
    row = {"fd_clf": frechet_distance_to(feats, *real_stats), "fd_clf_std": bootstrap_fid(feats, real_stats, 20, 0),
           "acc": float((probs.argmax(1) == labels.numpy()).mean())}
    if inc is not None:
        fi = inc(u8)
        row.update(fid=frechet_distance_to(fi, *inc_real), fid_std=bootstrap_fid(fi, inc_real, 20, 0))
    row["seconds"] = time.perf_counter() - t0
    return row


def fmt(row: dict) -> str:
    return (f"FD-clf {row['fd_clf']:7.3f} +- {row['fd_clf_std']:.3f}  acc {row['acc']:.3f}"
            + (f"  FID {row['fid']:.2f} +- {row['fid_std']:.2f}" if "fid" in row else ""))


def references(n: int, inception: bool):
    """MNIST train split, the cached classifier, and the statistics of n seeded test images (classifier features,
    and Inception features when asked): (train, clf, real_stats, inc, inc_real, real_u8, real_y)."""
    ds = load_dataset("mnist")
    train_ds, test = ds["train"], ds["test"]
    clf, _ = get_classifier(train_ds, test, log=lambda m: print(m, flush=True))
    pick = torch.randperm(len(test.x), generator=torch.Generator().manual_seed(1234))[:n]
    real_u8, real_y = test.x[pick], test.y[pick]
    real_stats = feature_stats(predict(clf, real_u8)[1])
    inc = inc_real = None
    if inception:
        inc = _inception()
        inc_real = feature_stats(inc(real_u8))
    return train_ds, clf, real_stats, inc, inc_real, real_u8, real_y


def _inception():
    from genbench.metrics.inception import InceptionFeatures  # heavy: only when asked

    net = InceptionFeatures()
    return lambda u8: np.asarray(net(u8))


@torch.no_grad()
def per_t(model: DDPM, x0: torch.Tensor, y: torch.Tensor, seed: int) -> dict[int, tuple[float, float]]:
    """eps-MSE and x0-MSE per timestep of T_GRID (fixed noise per t), whatever the parameterisation."""
    out = {}
    ab_all = model.scheduler.alphas_cumprod
    for t in T_GRID:
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed + t))
        ab = ab_all[t]
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        e_hat = model.predict_eps(x_t, torch.full((len(x0),), t), y)
        x0_hat = (x_t - (1 - ab).sqrt() * e_hat) / ab.sqrt()
        out[t] = (((e_hat - eps) ** 2).mean().item(), ((x0_hat - x0) ** 2).mean().item())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--widths", type=int, nargs=3, default=[16, 32, 32])
    ap.add_argument("--n", type=int, default=1000, help="images per sweep point and test images (FD reference)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES))
    ap.add_argument("--inception", action="store_true", help="also Inception FID (slower)")
    a = ap.parse_args()
    train_ds, clf, real_stats, inc, inc_real, real_u8, real_y = references(a.n, a.inception)
    x_eval, y_eval = to_float(real_u8[:512]), real_y[:512]
    results = {}
    for r in a.recipes:
        model, secs = train(r, train_ds, steps=a.steps, batch=a.batch, widths=a.widths, seed=a.seed)
        print(f"[{r}] trained {a.steps} steps x {a.batch} images in {secs:.0f} s", flush=True)
        results[r] = {"per_t": per_t(model, x_eval, y_eval, a.seed), "sweep": {}}
        for sampler, ks in SWEEP.items():
            for k in ks:
                row = score(model, a.n, {"sampler": sampler, "steps": k, "guidance_scale": a.guidance}, clf,
                            real_stats, inc, inc_real)
                results[r]["sweep"][(sampler, k)] = row
                print(f"  [{r}] {sampler:14s} K={k:4d} {fmt(row)}  ({row['seconds']:.0f} s)", flush=True)
    print(f"\nper-timestep MSE on {len(x_eval)} test images (eps-MSE / x0-MSE), widths {a.widths}, "
          f"{a.steps} steps x batch {a.batch}, seed {a.seed}")
    print("t      " + "  ".join(f"{r:>22s}" for r in a.recipes))
    for t in T_GRID:
        print(f"{t:<6d} " + "  ".join(f"{results[r]['per_t'][t][0]:10.4f} / {results[r]['per_t'][t][1]:9.5f}"
                                      for r in a.recipes))
    print(f"\nsampler sweep, N = {a.n} (same noise and labels at every K), guidance {a.guidance}: FD-clf +- bootstrap "
          f"sd (20 resamples of the generated images), conditional accuracy")
    for sampler, ks in SWEEP.items():
        for k in ks:
            print(f"{sampler:14s} K={k:<4d} " + "  |  ".join(fmt(results[r]["sweep"][(sampler, k)]) for r in a.recipes))


if __name__ == "__main__":
    main()
