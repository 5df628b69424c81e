"""Experiments on trained models that write data only (the report draws them): reconstructions, sample grids,
latent interpolations, the frozen-latent sets, a linear probe on latent means, the encoder comparison and
per-class evaluation of conditional models.

Each function takes (ExperimentContext, options) and returns (result dict, arrays dict). Array keys are
``<model>__<what>``; images are uint8 (N, C, H, W).
"""

from __future__ import annotations

import numpy as np
import torch

from genbench.data.registry import to_float, to_uint8
from genbench.errors import GenbenchError
from genbench.families import drawer
from genbench.metrics import latent as lat
from genbench.metrics.classifier import predict
from genbench.metrics.scores import frechet_distance_to, mean_pairwise_l2
from genbench.sampling.bank import balanced_labels, generate


class SkipExperiment(Exception):
    """The experiment's models are not in this run (a diverged model, ``--only``): it is skipped with a log
    line, not failed (internal signal to :func:`genbench.studies.experiments.run_experiments`)."""


def vaes(ctx, opts: dict) -> list[str]:
    """The models an experiment takes: ``model`` or ``models`` from its options, else every VAE of the study.

    Raises:
        GenbenchError: a named model is not a VAE, or the study has no VAE.
    """
    names = [opts["model"]] if "model" in opts else list(opts.get("models") or [])
    if not names:
        names = [n for n, (_, m) in ctx.models.items() if m.family == "vae"]
        if not names and any(m.family == "vae" for m in ctx.study.models):
            raise SkipExperiment("no VAE of the study was evaluated in this run (diverged, or left out by --only)")
    missing = [n for n in names if n not in ctx.models]
    if missing:
        raise SkipExperiment(f"{', '.join(missing)} not evaluated in this run (diverged, or left out by --only)")
    bad = [n for n in names if ctx.models[n][1].family != "vae"]
    if bad or not names:
        raise GenbenchError(f"this experiment needs VAE models (family vae); {', '.join(bad) or 'the study has none'}"
                            f"; name VAEs with `model:` / `models:` or remove the experiment from the study file")
    return names


def _u8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x).cpu().numpy()


@torch.no_grad()
def _recon(model, x_u8: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean reconstructions decode(E_q[z|x]) as float [-1, 1]."""
    yy = y if model.num_classes else None
    mu, _ = model.encode(to_float(x_u8), yy)
    return model.decode(mu, yy)


def exp_reconstructions(ctx, opts):
    res, arr, n, test = {}, {}, int(opts.get("n", 10)), ctx.splits["test"]
    for name in vaes(ctx, opts):
        model, _ = ctx.models[name]
        m = min(1000, len(test))
        big = _recon(model, test.x[:m], test.y[:m])
        mse = float(((big + 1) / 2 - (to_float(test.x[:m]) + 1) / 2).pow(2).flatten(1).sum(1).mean())
        arr[f"{name}__originals"], arr[f"{name}__reconstructions"] = test.x[:n].numpy(), _u8(big[:n])
        res[name] = {"squared_error_per_image": mse, "n": m, "split": "test (first N)", "shown": n,
                     "unit": "sum over pixels of squared error, pixels in [0, 1]"}
    return {"models": res}, arr


def exp_samples(ctx, opts):
    res, arr, n = {}, {}, int(opts.get("n", 64))
    for name in opts.get("models") or list(ctx.models):
        if name not in ctx.models:
            raise SkipExperiment(f"{name} not evaluated in this run (diverged, or left out by --only)")
        images, labels = ctx.banks[name]
        k = ctx.models[name][0].num_classes if hasattr(ctx.models[name][0], "num_classes") else 0
        if k and labels is not None:  # the bank's labels are balanced 0..K-1: 8 per class, rows by class
            idx = np.concatenate([np.nonzero(labels.numpy() == c)[0][:8] for c in range(k)])
        else:
            idx = np.arange(min(n, len(images)))
        arr[f"{name}__images"] = images[idx].numpy()
        res[name] = {"n": len(idx), "rows_by_class": bool(k), "source": "the model's sample bank",
                     "bank_seed": ctx.records[name]["sample_bank"].get("seed")}
    return {"models": res}, arr


def exp_interpolations(ctx, opts):
    res, arr, test = {}, {}, ctx.splits["test"]
    pairs, steps = int(opts.get("pairs", 6)), int(opts.get("steps", 10))
    t = torch.linspace(0, 1, steps)
    for name in vaes(ctx, opts):
        model, _ = ctx.models[name]
        xa, xb, ya = test.x[:pairs], test.x[pairs:2 * pairs], test.y[:pairs]
        cond = model.num_classes > 0
        r = {}
        with torch.no_grad():
            za, _ = model.encode(to_float(xa), ya if cond else None)
            zb, _ = model.encode(to_float(xb), test.y[pairs:2 * pairs] if cond else None)
            for kind in ("linear", "spherical"):
                rows = []
                for i in range(pairs):
                    a, b = za[i].float(), zb[i].float()
                    z = lat.slerp(a, b, t) if kind == "spherical" else (1 - t[:, None]) * a + t[:, None] * b
                    rows.append(model.decode(z, ya[i].repeat(steps) if cond else None))
                imgs = torch.stack(rows)  # (pairs, steps, C, H, W)
                r[kind] = {"mean_step_l2": float(((imgs[:, 1:] - imgs[:, :-1]) / 2).flatten(2).norm(dim=2).mean())}
                arr[f"{name}__{kind}"] = _u8(imgs)
        res[name] = {**r, "pairs": pairs, "steps": steps, "split": "test (images 0..2*pairs-1)",
                     "note": "mean_step_l2: L2 between consecutive frames, pixels in [0, 1] (lower = smoother)",
                     "source": "spherical: Shoemake 1985, White 2016"}
    return {"models": res}, arr


def _fid(ctx, images: torch.Tensor) -> dict:
    """Inception FID of ``images`` against the study's Inception reference at the same N (evaluate stage's)."""
    n = len(images)
    mu, sigma, _ = ctx.eval_ctx.inception_reference(n)
    feats = ctx.eval_ctx.inception(images, log=ctx.log)
    return {"value": frechet_distance_to(feats, mu, sigma), "n_generated": n, "n_reference": n,
            **ctx.eval_ctx.inception.key(), "direction": "lower is better"}


def exp_frozen_latent(ctx, opts):
    name = vaes(ctx, {"model": opts["model"]} if opts.get("model") else {})[0]
    model, _ = ctx.models[name]
    n = min(ctx.study.evaluation.n_inception, len(ctx.banks[name][0]))
    sigmas = [float(s) for s in opts.get("sigmas", [0.1, 0.5, 1.0])]
    bank = ctx.banks[name][0][:n]
    rec = ctx.records[name]["metrics"]
    sets = {"standard N(0, I)": {"fid_inception": rec["fid_inception"],
                                 "diversity_l2": mean_pairwise_l2(bank.numpy(), seed=ctx.study.seed)}}
    arr = {"set_0": bank[:16].numpy()}
    for i, s in enumerate(sigmas, start=1):
        g = torch.Generator().manual_seed(ctx.study.seed + 7)
        with torch.no_grad():
            z = s * torch.randn((n, model.latent_dim), generator=g)
            y = balanced_labels(n, model.num_classes)
            imgs = to_uint8(torch.cat([model.decode(z[j:j + 500], y[j:j + 500] if y is not None else None)
                                       for j in range(0, n, 500)]))
        sets[f"mu = 0, sigma = {s:g}"] = {"fid_inception": _fid(ctx, imgs),
                                          "diversity_l2": mean_pairwise_l2(imgs.numpy(), seed=ctx.study.seed)}
        arr[f"set_{i}"] = imgs[:16].numpy()
    return {"model": name, "sets": sets, "n": n, "set_order": list(sets),
            "note": "the standard set is the model's sample bank; sigma sets decode z = sigma * eps, eps ~ N(0, I) "
                    "(mu frozen at 0); diversity: mean pairwise L2, pixels in [0, 1]"}, arr


def exp_linear_probe(ctx, opts):
    res, n_tr = {}, int(opts.get("n_train", 10000))
    for name in vaes(ctx, opts):
        model, _ = ctx.models[name]
        ztr, ytr = lat.latent_means(model, ctx.splits["train"], n=n_tr)
        zte, yte = lat.latent_means(model, ctx.splits["test"])
        res[name] = {**lat.linear_probe(ztr, ytr, zte, yte, C=float(opts.get("C", 1.0)),
                                        max_iter=int(opts.get("max_iter", 1000)), seed=ctx.study.seed),
                     "features": f"posterior means E_q[z|x], {model.latent_dim}-d, frozen encoder",
                     "train_split": f"first {len(ztr)} training images", "test_split": "test"}
    return {"models": res}, {}


def exp_encoder_comparison(ctx, opts):
    rows = {}
    for n in vaes(ctx, opts):
        m = ctx.records[n]["metrics"]
        e = m["efficiency"]
        rows[n] = {"encoder": m["elbo"]["encoder"], "test_recon_nats": m["elbo"]["recon_nats"],
                   "test_kl_nats": m["elbo"]["kl_nats"], "iwae_nll_nats": m["iwae_nll"]["value"],
                   "fid_inception": m["fid_inception"]["value"], "fid_n": m["fid_inception"]["n_generated"],
                   "is": m["is"]["value"], "train_seconds": e["train_seconds"], "epochs": e["epochs"]}
    return {"models": rows, "curves": "the models' history.jsonl (loss, recon, kl per epoch)",
            "budget": "same decoder, epochs, batch size and optimizer (see each model's config.yaml)"}, {}


def exp_per_class(ctx, opts):
    names = [opts["model"]] if "model" in opts else list(opts.get("models") or [])
    if [n for n in names if n not in ctx.models]:
        raise SkipExperiment(f"{', '.join(n for n in names if n not in ctx.models)} not evaluated in this run")
    names = names or [n for n, (mod, _) in ctx.models.items() if getattr(mod, "num_classes", 0)]
    names = [n for n in names if getattr(ctx.models[n][0], "num_classes", 0)]
    if not names:
        raise GenbenchError("experiments.per_class: no conditional model in the study; add `conditional: true` to a "
                            "VAE (or use a cgan / conditional ddpm), or remove the experiment")
    res, arr = {}, {}
    for name in names:
        model, m = ctx.models[name]
        k, per = model.num_classes, int(opts.get("n_per_class", 100))
        labels = torch.arange(k).repeat_interleave(per)
        imgs, _ = generate(model, len(labels), seed=ctx.study.seed + 11, precision=m.precision, labels=labels,
                           batch=ctx.study.evaluation.sample_batch, draw=drawer(m.sampling or None))
        probs, _ = predict(ctx.eval_ctx.classifier, imgs)
        pred, lab = probs.argmax(1), labels.numpy()
        res[name] = {"classes": ctx.class_names[:k], "accuracy": [float((pred[lab == c] == c).mean()) for c in range(k)],
                     "mean_confidence": [float(probs[lab == c, c].mean()) for c in range(k)],
                     "overall": float((pred == lab).mean()), "n_per_class": per, "seed": ctx.study.seed + 11,
                     "classifier": ctx.records[name]["metrics"]["is"]["extractor"],
                     "confidence": "mean softmax probability of the class the sample was generated for"}
        arr[f"{name}__grid"] = imgs.numpy()[np.concatenate([np.arange(c * per, c * per + 10) for c in range(k)])]
    return {"models": res}, arr


def exp_nearest_neighbours(ctx, opts):
    """Each model's most-copied samples beside their nearest training images (pixel L2, pixels in [0, 1]): of the
    first ``n`` images of its bank, the ``show`` closest to the training split, and, as the floor, the same for
    ``n`` held-out real images (never trained on). Memorisation shows as distances far below the floor's."""
    from genbench.metrics.manifold import nearest_train

    n, show = int(opts.get("n", 500)), int(opts.get("show", 8))
    train = ctx.splits["train"].x.numpy()
    sets = {name: ctx.banks[name][0][:n].numpy() for name in (opts.get("models") or list(ctx.models))
            if name in ctx.banks}
    hold = ctx.splits.get("holdout")
    if hold is not None and len(hold):
        sets["real"] = hold.x[:n].numpy()
    res, arr = {}, {}
    for name, imgs in sets.items():
        d, j = nearest_train(imgs, train)
        top = np.argsort(d, kind="stable")[:show]
        arr[f"{name}__samples"], arr[f"{name}__neighbours"] = imgs[top], train[j[top]]
        res[name] = {"n": len(imgs), "distances": d[top].tolist(), "train_indices": j[top].tolist(),
                     "median": float(np.median(d)), "p01": float(np.quantile(d, 0.01)),
                     "source": "held-out training images, never trained on" if name == "real" else "sample bank"}
    return {"models": res, "unit": "L2 distance, pixels in [0, 1]", "train_images": len(train)}, arr

