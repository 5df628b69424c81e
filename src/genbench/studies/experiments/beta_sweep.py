"""The beta sweep (Higgins et al. 2017): one VAE per beta with a small latent on a class subset, trained epoch by
epoch; after every epoch the test subset's latent means and a strip of reconstructions are saved, so the report
can animate how the latent space organises itself (one GIF per beta) and tabulate the trade-off between the
reconstruction and KL terms at the end.

Files: ``experiments/beta_sweep/runs/beta_<b>/`` is each beta's run folder (checkpoints, history, resumable);
``.../epochs/epoch_NNN.npz`` holds that epoch's latent means and reconstructions (kept, so an interrupted sweep
does not retrain or redraw finished epochs); ``experiments/beta_sweep/arrays.npz`` gathers them for the report.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.io import atomic_savez
from genbench.metrics import latent as lat
from genbench.runtime.distributed import env_world_size
from genbench.studies.experiments.latent_space import _recon, _u8, vaes
from genbench.training.checkpoint import load_checkpoint, save_checkpoint
from genbench.families import load_trained
from genbench.training.loop import train


def _extend_run(run_dir, epochs: int) -> None:
    """Let a finished run train on to ``epochs``: a checkpoint written as the last of a shorter run is marked
    unfinished (the sweep trains epoch by epoch)."""
    path = run_dir / "checkpoints" / "last.pt"
    if path.exists():
        ck = load_checkpoint(path)
        if ck.get("finished") and ck["epoch"] < epochs:
            ck["finished"] = False
            ck.pop("format_version", None)
            save_checkpoint(path, ck)


def exp_beta_sweep(ctx, opts):
    if env_world_size() > 1:
        raise GenbenchError("experiments.beta_sweep trains its own small models and runs in one process; rerun "
                            "`genbench run` on this study without torchrun / accelerate launch (trained models are kept)")
    base_name = vaes(ctx, {"model": opts["model"]} if opts.get("model") else {})[0]
    base = ctx.models[base_name][1]
    betas = [float(b) for b in opts.get("betas", [0.1, 0.5, 1.0])]
    classes = [int(c) for c in opts.get("classes", [0, 1, 7])]
    ld, epochs = int(opts.get("latent_dim", 2)), int(opts.get("epochs", base.epochs))
    n_pts = int(opts.get("n_points", 1000))
    tr, te = ctx.splits["train"], ctx.splits["test"]
    sel = lambda d: d.subset(torch.isin(d.y, torch.tensor(classes)))  # noqa: E731
    tr_s, te_s = sel(tr), sel(te)
    if len(tr_s) < base.batch_size:
        raise GenbenchError(f"experiments.beta_sweep: classes {classes} leave {len(tr_s)} training images, fewer than "
                            f"one batch ({base.batch_size}); choose other classes or a smaller batch_size")
    root = ctx.out_dir("beta_sweep") / "runs"
    rows, arrays = [], {"originals": te_s.x[:8].numpy()}
    for beta in betas:
        cfg = dataclasses.replace(base, name=f"beta_{beta:g}", params={**base.params, "latent_dim": ld, "beta": beta})
        run_dir = root / cfg.name
        mus, recons = [], []
        for e in range(1, epochs + 1):
            epath = run_dir / "epochs" / f"epoch_{e:03d}.npz"
            if epath.exists() and not ctx.overwrite:
                with np.load(epath) as z:
                    mus.append(z["mu"])
                    recons.append(z["recon"])
                    labels = z["labels"]
                continue
            if ctx.overwrite and e == 1:
                train(dataclasses.replace(cfg, epochs=1), tr_s, run_dir, overwrite=True)
            else:
                _extend_run(run_dir, e)
                train(dataclasses.replace(cfg, epochs=e), tr_s, run_dir, resume=True)
            model, _ = load_trained(run_dir)
            mu, labels = lat.latent_means(model, te_s, n=n_pts)
            rec = _u8(_recon(model, te_s.x[:8], te_s.y[:8]))
            atomic_savez(epath, mu=mu.astype(np.float32), recon=rec, labels=labels)
            mus.append(mu.astype(np.float32))
            recons.append(rec)
        _extend_run(run_dir, epochs)
        train(dataclasses.replace(cfg, epochs=epochs), tr_s, run_dir, resume=True)  # no-op when finished
        model, _ = load_trained(run_dir)
        terms = lat.elbo_terms(model, te_s, n=min(ctx.study.evaluation.n_eval, len(te_s)), seed=ctx.study.seed)
        mu, y = lat.latent_means(model, te_s, n=min(ctx.study.evaluation.n_eval, len(te_s)))
        au = lat.active_units(mu)
        key = f"beta_{beta:g}"
        arrays[f"{key}__mu"], arrays[f"{key}__recon"], arrays[f"{key}__labels"] = np.stack(mus), np.stack(recons), labels
        rows.append({"beta": beta, "key": key, "recon_nats": terms["recon"], "kl_nats": terms["kl"],
                     "elbo_nats": terms["elbo"], "silhouette": lat.silhouette(mu, y, seed=ctx.study.seed),
                     "active_units": au["value"], "n_test": terms["n"], "epochs": epochs,
                     "collapse_warning": lat.collapse_warning(terms["kl"], au["value"], ld)})
    names = [ctx.class_names[c] if c < len(ctx.class_names) else str(c) for c in classes]
    return {"rows": rows, "classes": classes, "class_names": names, "latent_dim": ld, "base_model": base_name,
            "train_images": len(tr_s), "split": "test (class subset)", "n_points": n_pts,
            "silhouette": "scikit-learn silhouette_score on the 2-D latent means, Euclidean, labels = classes",
            "source": "beta-VAE, Higgins et al. 2017"}, arrays
