"""The VAE study pipeline: a study file with an ``experiments:`` section (Fashion-MNIST beta-VAE, QuickDraw
encoders, CIFAR-10 VAE vs DCGAN). ``genbench run <file>`` comes here when the file lists experiments; the MNIST
four-model flow (:mod:`genbench.studies.runner`) is untouched.

Steps: load the data (stop at once, one line, when it is absent) -> train every model with
:func:`genbench.training.loop.train` (resumable) -> the in-domain classifier -> score every model -> run the listed
experiments -> ``runs/<study>/metrics.json`` and ``runs/<study>/report/index.html`` + ``figures/``.

Per model: samples from the prior scored by Inception FID at a stated N (test split reference), IS and
FD-classifier with the in-domain classifier (its test accuracy recorded), mean pairwise L2 diversity; per VAE:
the ELBO, reconstruction and KL terms and the KL per latent dimension (nats per image, test split), the IWAE bound
on the test NLL (k samples), active units and a posterior-collapse warning; per GAN: D(x) and D(G(z)).

Experiments, each a key of ``experiments:`` with its options (all optional):

- ``reconstructions: {n: 10}``; ``samples: {n: 64}``; ``interpolations: {pairs: 6, steps: 10}``
- ``beta_sweep: {betas: [0.1, 0.5, 1.0], latent_dim: 2, classes: [0, 1, 7], epochs: E, model: <base VAE>,
  n_points: 1000}``: one model per beta on the class subset, a GIF per beta of the latent scatter and an
  original/reconstruction strip after every epoch, and a table of recon, KL and silhouette per beta.
- ``frozen_latent: {sigmas: [0.1, 0.5, 1.0], model: <VAE>}``: z = sigma * eps (mu frozen at 0) against z ~ N(0, I).
- ``linear_probe: {n_train: 10000, C: 1.0, max_iter: 1000}``
- ``encoder_comparison: {models: [a, b]}``; ``per_class: {model: <conditional VAE>, n_per_class: 100}``

Every experiment takes ``models: [...]`` or ``model: name`` (default: every VAE of the study).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genbench.data.registry import Dataset, load_dataset, to_float, to_uint8
from genbench.errors import GenbenchError
from genbench.io import atomic_write_json, atomic_write_text, read_jsonl
from genbench.metrics import latent as lat
from genbench.metrics.classifier import get_classifier, predict
from genbench.metrics.evaluate import EvalContext
from genbench.metrics.scores import feature_stats, frechet_distance, inception_score, mean_pairwise_l2
from genbench.models.registry import MODEL_KINDS
from genbench.report import vae_figures as vf
from genbench.sampling.bank import balanced_labels, generate
from genbench.studies.config import (STUDIES_DIR, ModelConfig, StudyConfig, check_split_sizes, parse_study,
                                     provenance, read_study_yaml, to_yaml)
from genbench.training.checkpoint import load_checkpoint, save_checkpoint
from genbench.training.loop import load_trained, train

EXPERIMENTS = ("reconstructions", "samples", "interpolations", "beta_sweep", "frozen_latent", "linear_probe",
               "encoder_comparison", "per_class")
IMAGE_SHAPES = {"mnist": (1, 28, 28), "fashion_mnist": (1, 28, 28), "quickdraw": (1, 28, 28),
                "cifar10": (3, 32, 32)}
CLASS_NAMES = {"fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                 "Sneaker", "Bag", "Ankle boot"],
               "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                           "truck"]}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class VAEStudy:
    """A resolved VAE study: the common study config plus data options, VAE evaluation settings, experiments."""

    base: StudyConfig
    data: dict
    experiments: dict
    iwae_k: int
    n_eval: int  # test images for the ELBO terms, the IWAE bound and active units
    conditional: frozenset


def _resolve(study: str) -> Path:
    p = Path(study)
    if not p.exists() and (STUDIES_DIR / f"{study}.yaml").exists():
        p = STUDIES_DIR / f"{study}.yaml"
    return p


def find_vae_study(study: str, profile: str) -> VAEStudy | None:
    """The VAE study in file ``study`` (a path or a bundled study name) for ``profile``, or None when the file
    has no ``experiments:`` section (then it is a study for :mod:`genbench.studies.runner`)."""
    p = _resolve(study)
    if not p.exists():
        return None
    try:
        raw = read_study_yaml(p)  # bounded in size
    except GenbenchError:  # too large / not UTF-8 / not YAML: load_study reports it in one line
        return None
    if not isinstance(raw, dict) or "experiments" not in raw:
        return None
    return parse_vae_study(raw, profile, str(p))


def parse_vae_study(raw: dict, profile: str, source: str) -> VAEStudy:
    """Validate a VAE study mapping. Raises GenbenchError naming the bad field."""
    base = parse_study(raw, profile, source)  # the one schema checks data, experiments and every model
    r = base.raw
    where = Path(source).name
    from genbench.studies.config import resolve_profile

    data = resolve_profile(raw.get("data") or {}, profile)
    exps = resolve_profile(raw.get("experiments") or {}, profile)
    if not isinstance(exps, dict) or not isinstance(data, dict):
        raise GenbenchError(f"{where}: `experiments` and `data` must be mappings")
    unknown = set(exps) - set(EXPERIMENTS)
    if unknown:
        raise GenbenchError(f"{where}.experiments: unknown {', '.join(sorted(unknown))}; choose among "
                            f"{', '.join(EXPERIMENTS)}")
    names = {m.name for m in base.models}
    for e, o in exps.items():
        o = o or {}
        if not isinstance(o, dict):
            raise GenbenchError(f"{where}.experiments.{e}: expected a mapping of options (or nothing)")
        for n in ([o["model"]] if "model" in o else []) + list(o.get("models", [])):
            if n not in names:
                raise GenbenchError(f"{where}.experiments.{e}: no model {n!r}; models: {', '.join(sorted(names))}")
    ev = r.get("evaluation") or {}
    cond = frozenset(n for n, m in (r.get("models") or {}).items() if isinstance(m, dict) and m.get("conditional"))
    return VAEStudy(base=base, data=data, experiments={k: (v or {}) for k, v in exps.items()},
                    iwae_k=int(ev.get("iwae_k", 100)), n_eval=int(ev.get("n_eval", 1000)), conditional=cond)


def _complete(m: ModelConfig, shape: tuple, num_classes: int, conditional: bool) -> ModelConfig:
    """Fill image geometry (and the class count of a conditional VAE) from the dataset."""
    p = dict(m.params)
    if m.kind == "vae":
        p.setdefault("channels", shape[0])
        p.setdefault("image_size", shape[1])
        if conditional:
            p["num_classes"] = num_classes
    elif m.kind == "dcgan":
        p.setdefault("image_shape", list(shape))
    return dataclasses.replace(m, params=p)


def _extend_run(run_dir: Path, epochs: int) -> None:
    """Let a finished run train on to ``epochs`` (used by the beta sweep, which trains epoch by epoch to draw
    the GIF frames): a checkpoint written as the last of a shorter run is marked unfinished."""
    path = run_dir / "checkpoints" / "last.pt"
    if path.exists():
        ck = load_checkpoint(path)
        if ck.get("finished") and ck["epoch"] < epochs:
            ck["finished"] = False
            ck.pop("format_version", None)
            save_checkpoint(path, ck)


class _Eval:
    """Shared scoring: the classifier, Inception FID at a fixed N, sample banks kept in memory."""

    def __init__(self, vs: VAEStudy, splits: dict[str, Dataset]):
        ev = vs.base.evaluation
        clf, info = get_classifier(splits["train"], splits["test"], epochs=ev.classifier_epochs, seed=vs.base.seed,
                                   min_accuracy=ev.classifier_min_accuracy, log=log)
        log(f"[classifier] {splits['test'].name}: test accuracy {info['test_accuracy']:.4f}")
        self.ctx = EvalContext(test=splits["test"], train=splits["train"], classifier=clf, classifier_info=info,
                               eval_cfg=ev, seed=vs.base.seed, log=log)
        self.vs, self.n_fid = vs, min(ev.n_inception, len(splits["test"]))
        self.clf_name = f"{splits['test'].name} classifier (test acc {info['test_accuracy']:.4f})"

    def score(self, images: torch.Tensor, what: str) -> dict:
        """FID (Inception, first n_fid images vs the first n_fid test images), IS and FD on classifier features,
        diversity. images uint8 (N, C, H, W)."""
        ev, seed = self.vs.base.evaluation, self.vs.base.seed
        probs, feats = predict(self.ctx.classifier, images)
        is_m, is_s = inception_score(probs, min(ev.is_splits, max(1, len(images) // 2)))
        n = self.n_fid
        mu, sigma, _ = self.ctx.inception_reference(n)
        log(f"[evaluate] {what}: Inception features of {n} images")
        fi = self.ctx.inception(images[:n], log=log)
        return {
            "fid_inception": {"value": frechet_distance(*feature_stats(fi), mu, sigma), "n_generated": n,
                              "n_reference": n, "reference": "test split (first N)", **self.ctx.inception.key(),
                              "seed": seed, "direction": "lower is better",
                              "note": f"biased upwards at N={n}; compare only values at the same N"},
            "is": {"value": is_m, "std": is_s, "n_generated": len(images), "extractor": self.clf_name,
                   "splits": min(ev.is_splits, max(1, len(images) // 2)), "seed": seed,
                   "range": f"[1, {self.ctx.test.num_classes}]", "direction": "higher is better"},
            "fd_classifier": {"value": frechet_distance(*feature_stats(feats), *self.ctx.classifier_reference()),
                              "n_generated": len(images), "n_reference": len(self.ctx.test), "seed": seed,
                              "extractor": self.clf_name + " penultimate features", "direction": "lower is better"},
            "diversity_l2": {"value": mean_pairwise_l2(images.numpy(), seed=seed), "n": min(len(images), 1000),
                             "unit": "mean pairwise L2 distance, pixels in [0, 1]", "seed": seed},
        }


def _train_all(vs: VAEStudy, models: list[ModelConfig], train_ds: Dataset, study_dir: Path, overwrite: bool) -> None:
    for m in models:
        log(f"[train] {m.name}: {m.kind} {m.params}, {m.epochs} epochs, batch {m.batch_size}, {m.precision}")
        train(m, train_ds, study_dir / m.name, resume=not overwrite, overwrite=overwrite)


def _model_record(vs: VAEStudy, ev: _Eval, m: ModelConfig, run_dir: Path, test: Dataset, banks: dict) -> dict:
    model, ck = load_trained(run_dir)
    seed, n = vs.base.seed, vs.base.evaluation.n_samples
    labels = balanced_labels(n, getattr(model, "num_classes", 0))
    images, secs = generate(model, n, seed=seed, precision=m.precision, labels=labels)
    banks[m.name] = images
    rec = {"kind": m.kind, "family": MODEL_KINDS[m.kind][1], "params": m.params, "seed": seed,
           "conditional": bool(getattr(model, "num_classes", 0)),
           "training": {"epochs": ck["epoch"], "steps": ck["step"], "train_seconds": ck["train_seconds"],
                        "images_per_second": ck["images_seen"] / max(ck["train_seconds"], 1e-9),
                        "precision": m.precision, "batch_size": m.batch_size, "optimizer": m.optimizer,
                        "params": sum(p.numel() for p in model.parameters())},
           "samples": {"n": n, "seed": seed, "labels": "balanced" if labels is not None else "none",
                       "gen_seconds_per_1000": secs, **ev.score(images, m.name)}}
    hist = [r for r in read_jsonl(run_dir / "history.jsonl") if r.get("kind") == "epoch"]
    if rec["family"] == "vae":
        ne = min(vs.n_eval, len(test))
        terms = lat.elbo_terms(model, test, n=ne, seed=seed)
        iw = lat.iwae_nll(model, test, k=vs.iwae_k, n=ne, seed=seed)
        mu, _ = lat.latent_means(model, test, n=ne)
        au = lat.active_units(mu)
        rec["vae"] = {"elbo_nats": terms["elbo"], "recon_nats": terms["recon"], "kl_nats": terms["kl"],
                      "kl_per_dim_nats": terms["kl_per_dim"], "elbo_std_error": terms["elbo_std_error"],
                      "iwae_nll_nats": iw, "active_units": au, "n_test": ne, "split": "test",
                      "likelihood": model.likelihood, "beta": model.beta, "encoder": model.encoder_kind,
                      "collapse_warning": lat.collapse_warning(terms["kl"], au["value"], model.latent_dim)}
        if rec["vae"]["collapse_warning"]:
            log(f"[warning] {m.name}: {rec['vae']['collapse_warning']}")
    else:
        last = hist[-1] if hist else {}
        rec["gan"] = {"d_x": last.get("d_x"), "d_g_z": last.get("d_g_z"), "loss_d": last.get("loss_d"),
                      "loss_g": last.get("loss_g"), "epoch": last.get("epoch"),
                      "note": "means over the last training epoch: D(x) on real, D(G(z)) on generated images "
                              "(probabilities; Radford et al. 2016)"}
    rec["final_epoch"] = {k: v for k, v in (hist[-1] if hist else {}).items() if k not in ("kind",)}
    return rec


def _vaes(vs: VAEStudy, opts: dict) -> list[str]:
    if "model" in opts:
        return [opts["model"]]
    if "models" in opts:
        return list(opts["models"])
    return [m.name for m in vs.base.models if m.kind == "vae"]


def _u8(x: torch.Tensor) -> np.ndarray:
    return to_uint8(x).cpu().numpy()


@torch.no_grad()
def _recon(model, x_u8: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean reconstructions decode(E_q[z|x]) as float [-1, 1]."""
    yy = y if model.num_classes else None
    mu, _ = model.encode(to_float(x_u8), yy)
    return model.decode(mu, yy)


# --- experiments -----------------------------------------------------------------------------------------------

def exp_reconstructions(vs, ctx, opts):
    out, n, test = {}, int(opts.get("n", 10)), ctx["splits"]["test"]
    for name in _vaes(vs, opts):
        model, _ = ctx["models"][name]
        rec = _recon(model, test.x[:n], test.y[:n])
        big = _recon(model, test.x[:min(1000, len(test))], test.y[:min(1000, len(test))])
        mse = float(((big + 1) / 2 - (to_float(test.x[:len(big)]) + 1) / 2).pow(2).flatten(1).sum(1).mean())
        fig = vf.strip([test.x[:n].numpy(), _u8(rec)], f"{name}: test originals (top), reconstructions decode(mu) "
                       f"(bottom)", ctx["figdir"] / f"recon_{name}.png")
        out[name] = {"figure": fig.name, "squared_error_per_image": mse, "n": len(big), "split": "test",
                     "unit": "sum over pixels of squared error, pixels in [0, 1]"}
    return out


def exp_samples(vs, ctx, opts):
    out, n = {}, int(opts.get("n", 64))
    for m in vs.base.models:
        if "models" in opts and m.name not in opts["models"]:
            continue
        imgs = ctx["banks"][m.name][:n].numpy()
        cols = 8
        k = ctx["models"][m.name][0].num_classes
        if k:  # the bank's labels are balanced 0..K-1: rows by class
            idx = np.concatenate([np.arange(c, len(ctx["banks"][m.name]), k)[:cols] for c in range(k)])
            imgs = ctx["banks"][m.name][idx].numpy()
        fig = vf.image_figure(vf.tile(imgs, -(-len(imgs) // cols), cols),
                              f"{m.name}: samples from N(0, I)" + (" (rows = classes)" if k else ""),
                              ctx["figdir"] / f"samples_{m.name}.png")
        out[m.name] = {"figure": fig.name, "n": len(imgs), "seed": vs.base.seed}
    return out


def exp_interpolations(vs, ctx, opts):
    out, test = {}, ctx["splits"]["test"]
    pairs, steps = int(opts.get("pairs", 6)), int(opts.get("steps", 10))
    t = torch.linspace(0, 1, steps)
    for name in _vaes(vs, opts):
        model, _ = ctx["models"][name]
        xa, xb = test.x[:pairs], test.x[pairs:2 * pairs]
        ya, yb = test.y[:pairs], test.y[pairs:2 * pairs]
        cond = model.num_classes > 0
        with torch.no_grad():
            za, _ = model.encode(to_float(xa), ya if cond else None)
            zb, _ = model.encode(to_float(xb), yb if cond else None)
            res = {}
            for kind, f in (("linear", lambda a, b: (1 - t[:, None]) * a + t[:, None] * b), ("spherical", lat.slerp)):
                rows = []
                for i in range(pairs):
                    z = f(za[i].float(), zb[i].float(), t) if kind == "spherical" else f(za[i].float(), zb[i].float())
                    rows.append(model.decode(z, ya[i].repeat(steps) if cond else None))
                imgs = torch.stack(rows)  # (pairs, steps, C, H, W)
                step_l2 = float(((imgs[:, 1:] - imgs[:, :-1]) / 2).flatten(2).norm(dim=2).mean())
                fig = vf.image_figure(vf.tile(_u8(imgs.flatten(0, 1)), pairs, steps),
                                      f"{name}: {kind} interpolation between test images (rows = pairs)",
                                      ctx["figdir"] / f"interp_{kind}_{name}.png")
                res[kind] = {"figure": fig.name, "mean_step_l2": step_l2}
        out[name] = {**res, "pairs": pairs, "steps": steps, "split": "test",
                     "note": "mean_step_l2: L2 between consecutive frames, pixels in [0, 1] (lower = smoother)"}
    return out


def exp_beta_sweep(vs, ctx, opts):
    base_name = opts.get("model") or _vaes(vs, {})[0]
    base = ctx["models"][base_name][1]
    betas = [float(b) for b in opts.get("betas", [0.1, 0.5, 1.0])]
    classes = [int(c) for c in opts.get("classes", [0, 1, 7])]
    ld, epochs = int(opts.get("latent_dim", 2)), int(opts.get("epochs", base.epochs))
    n_pts = int(opts.get("n_points", 1000))
    tr, te = ctx["splits"]["train"], ctx["splits"]["test"]
    sel = lambda d: d.subset(torch.isin(d.y, torch.tensor(classes)))  # noqa: E731
    tr_s, te_s = sel(tr), sel(te)
    names = dict(enumerate(CLASS_NAMES.get(vs.base.dataset, [])))
    rows, gifs = [], {}
    for beta in betas:
        cfg = dataclasses.replace(base, name=f"beta_{beta:g}", params={**base.params, "latent_dim": ld, "beta": beta})
        run_dir = ctx["study_dir"] / "beta_sweep" / cfg.name
        frames = []
        if ctx["overwrite"]:
            for f in (run_dir / "frames").glob("*.png"):
                f.unlink()
        for e in range(1, epochs + 1):
            fpath = run_dir / "frames" / f"epoch_{e:03d}.png"
            if fpath.exists():  # drawn by an earlier (interrupted or finished) run of this sweep
                frames.append(vf.read_png(fpath))
                continue
            if ctx["overwrite"] and e == 1:
                train(dataclasses.replace(cfg, epochs=1), tr_s, run_dir, overwrite=True)
            else:
                _extend_run(run_dir, e)
                train(dataclasses.replace(cfg, epochs=e), tr_s, run_dir, resume=True)
            model, _ = load_trained(run_dir)
            mu, y = lat.latent_means(model, te_s, n=n_pts)
            frames.append(vf.latent_frame(mu, y, names, te_s.x[:8].numpy(), _u8(_recon(model, te_s.x[:8], te_s.y[:8])),
                                          f"beta = {beta:g}, epoch {e}/{epochs}"))
            vf.write_png(frames[-1], fpath)
        _extend_run(run_dir, epochs)
        train(dataclasses.replace(cfg, epochs=epochs), tr_s, run_dir, resume=True)  # no-op when finished
        model, _ = load_trained(run_dir)
        gif = vf.gif(frames, ctx["figdir"] / f"beta_{beta:g}.gif")
        terms = lat.elbo_terms(model, te_s, n=min(vs.n_eval, len(te_s)), seed=vs.base.seed)
        mu, y = lat.latent_means(model, te_s, n=min(vs.n_eval, len(te_s)))
        au = lat.active_units(mu)
        rows.append({"beta": beta, "recon_nats": terms["recon"], "kl_nats": terms["kl"], "elbo_nats": terms["elbo"],
                     "silhouette": lat.silhouette(mu, y, seed=vs.base.seed), "active_units": au["value"],
                     "collapse_warning": lat.collapse_warning(terms["kl"], au["value"], ld), "gif": gif.name,
                     "n_test": terms["n"], "epochs": epochs})
        gifs[beta] = gif.name
    return {"rows": rows, "classes": classes, "latent_dim": ld, "base_model": base_name, "train_images": len(tr_s),
            "split": "test (class subset)", "seed": vs.base.seed,
            "silhouette": "scikit-learn silhouette_score on the 2-D latent means, Euclidean, labels = classes"}


def exp_frozen_latent(vs, ctx, opts):
    name = opts.get("model") or _vaes(vs, {})[0]
    model, m = ctx["models"][name]
    n = ctx["eval"].n_fid
    sigmas = [float(s) for s in opts.get("sigmas", [0.1, 0.5, 1.0])]
    sets = {"standard N(0, I)": (ctx["banks"][name][:n], ctx["records"][name]["samples"])}
    for s in sigmas:
        g = torch.Generator().manual_seed(vs.base.seed + 7)
        with torch.no_grad():
            z = s * torch.randn((n, model.latent_dim), generator=g)
            y = balanced_labels(n, model.num_classes)
            imgs = to_uint8(torch.cat([model.decode(z[i:i + 500], y[i:i + 500] if y is not None else None)
                                       for i in range(0, n, 500)]))
        sets[f"mu = 0, sigma = {s:g}"] = (imgs, None)
    out = {}
    panels = []
    for label, (imgs, scored) in sets.items():
        sc = scored if scored is not None else ctx["eval"].score(imgs, f"{name} {label}")
        out[label] = {"fid_inception": sc["fid_inception"], "diversity_l2": sc["diversity_l2"], "n": n}
        panels.append((f"{label}\nFID {sc['fid_inception']['value']:.1f} (N={n}), div "
                       f"{sc['diversity_l2']['value']:.2f}", vf.tile(imgs[:16].numpy(), 4, 4)))
    from genbench.report.figures import comparison

    fig = comparison(panels, ctx["figdir"] / f"frozen_latent_{name}.png")
    return {"model": name, "sets": out, "figure": fig.name, "seed": vs.base.seed,
            "note": "the standard set is the model's sample bank; sigma sets decode z = sigma * eps, eps ~ N(0, I)"}


def exp_linear_probe(vs, ctx, opts):
    out = {}
    n_tr = int(opts.get("n_train", 10000))
    for name in _vaes(vs, opts):
        model, _ = ctx["models"][name]
        ztr, ytr = lat.latent_means(model, ctx["splits"]["train"], n=n_tr)
        zte, yte = lat.latent_means(model, ctx["splits"]["test"])
        out[name] = {**lat.linear_probe(ztr, ytr, zte, yte, C=float(opts.get("C", 1.0)),
                                        max_iter=int(opts.get("max_iter", 1000)), seed=vs.base.seed),
                     "features": f"posterior means E_q[z|x], {model.latent_dim}-d, frozen encoder",
                     "train_split": f"first {len(ztr)} training images", "test_split": "test"}
    return out


def exp_encoder_comparison(vs, ctx, opts):
    names = _vaes(vs, opts)
    hists = {n: read_jsonl(ctx["study_dir"] / n / "history.jsonl") for n in names}
    fig = vf.curves(hists, ("loss", "recon", "kl"), ctx["figdir"] / "encoder_comparison.png",
                    "training loss and its terms per epoch (train split, one z per image)")
    rows = {}
    for n in names:
        r = ctx["records"][n]
        rows[n] = {"encoder": r["vae"]["encoder"], "train_final": r["final_epoch"],
                   "test_recon_nats": r["vae"]["recon_nats"], "test_kl_nats": r["vae"]["kl_nats"],
                   "iwae_nll_nats": r["vae"]["iwae_nll_nats"]["value"], "fid_inception": r["samples"]["fid_inception"]["value"],
                   "is": r["samples"]["is"]["value"], "train_seconds": r["training"]["train_seconds"],
                   "epochs": r["training"]["epochs"]}
    return {"models": rows, "figure": fig.name, "fid_n": ctx["eval"].n_fid,
            "budget": "same decoder, epochs, batch size and optimizer (see each model's training record)"}


def exp_per_class(vs, ctx, opts):
    names = [n for n in _vaes(vs, opts) if ctx["models"][n][0].num_classes]
    if not names:
        raise GenbenchError("experiments.per_class: no conditional VAE in the study; add `conditional: true` to one")
    out = {}
    for name in names:
        model, m = ctx["models"][name]
        k, per = model.num_classes, int(opts.get("n_per_class", 100))
        labels = torch.arange(k).repeat_interleave(per)
        imgs, _ = generate(model, len(labels), seed=vs.base.seed + 11, precision=m.precision, labels=labels)
        probs, _ = predict(ctx["eval"].ctx.classifier, imgs)
        pred, lab = probs.argmax(1), labels.numpy()
        acc = [float((pred[lab == c] == c).mean()) for c in range(k)]
        conf = [float(probs[lab == c, c].mean()) for c in range(k)]
        cname = ctx["class_names"]
        fig = vf.per_class_bars(cname, acc, conf, ctx["figdir"] / f"per_class_{name}.png",
                                f"{name}: in-domain classifier on {per} samples per class")
        grid = vf.image_figure(vf.tile(imgs.numpy()[np.concatenate([np.arange(c * per, c * per + 10) for c in range(k)])],
                                       k, 10), f"{name}: 10 samples per class (rows: {', '.join(cname)})",
                               ctx["figdir"] / f"per_class_grid_{name}.png")
        out[name] = {"classes": cname, "accuracy": acc, "mean_confidence": conf, "overall": float((pred == lab).mean()),
                     "n_per_class": per, "seed": vs.base.seed + 11, "figure": fig.name, "grid": grid.name,
                     "classifier": ctx["eval"].clf_name,
                     "confidence": "mean softmax probability of the class the sample was generated for"}
    return out


EXPERIMENT_FNS = {"reconstructions": exp_reconstructions, "samples": exp_samples,
                  "interpolations": exp_interpolations, "beta_sweep": exp_beta_sweep,
                  "frozen_latent": exp_frozen_latent, "linear_probe": exp_linear_probe,
                  "encoder_comparison": exp_encoder_comparison, "per_class": exp_per_class}


def run_vae_study(vs: VAEStudy, out_root: Path, *, overwrite: bool = False) -> Path:
    """Run a VAE study end to end; returns ``out_root/<name>`` (holding metrics.json and report/)."""
    t0 = time.perf_counter()
    study = vs.base
    opts = {**vs.data}
    if study.dataset == "quickdraw":
        opts.setdefault("seed", study.seed)
    splits = load_dataset(study.dataset, holdout=study.holdout, **opts)  # stops here when the data is absent
    if study.models and study.models[0].train_subset:
        splits["train"] = splits["train"].subset(slice(0, study.models[0].train_subset))
    check_split_sizes(study, len(splits["train"]), len(splits["holdout"]))
    study_dir = Path(out_root) / study.name
    figdir = study_dir / "report" / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(study_dir / "study.yaml", to_yaml({"profile": study.profile, **study.raw,
                                                           "data": vs.data, "experiments": vs.experiments}))
    k = splits["test"].num_classes
    names = list(vs.data.get("classes") or CLASS_NAMES.get(study.dataset) or range(k))
    class_names = [str(c) for c in names] if len(names) == k else [str(c) for c in range(k)]
    log(f"[data] {study.dataset}: train {len(splits['train'])}, test {len(splits['test'])} (profile {study.profile})")
    shape = tuple(splits["test"].shape)
    models = [_complete(m, shape, k, m.name in vs.conditional) for m in study.models]
    t_train = time.perf_counter()
    _train_all(vs, models, splits["train"], study_dir, overwrite)
    t_train = time.perf_counter() - t_train
    ev = _Eval(vs, splits)
    banks: dict = {}
    records = {m.name: _model_record(vs, ev, m, study_dir / m.name, splits["test"], banks) for m in models}
    ctx = {"splits": splits, "models": {m.name: (load_trained(study_dir / m.name)[0], m) for m in models},
           "banks": banks, "records": records, "eval": ev, "figdir": figdir, "study_dir": study_dir,
           "overwrite": overwrite, "class_names": class_names}
    results, exp_seconds = {}, {}
    for name in EXPERIMENTS:
        if name in vs.experiments:
            te = time.perf_counter()
            log(f"[experiment] {name}")
            results[name] = EXPERIMENT_FNS[name](vs, ctx, vs.experiments[name])
            exp_seconds[name] = time.perf_counter() - te
    summary = {"study": study.name, "dataset": study.dataset, "profile": study.profile, "seed": study.seed,
               "data": {"train": len(splits["train"]), "test": len(splits["test"]), "shape": list(shape),
                        "classes": class_names, "options": vs.data},
               "classifier": ev.ctx.classifier_info, "evaluation": {**dataclasses.asdict(study.evaluation),
                                                                   "n_fid": ev.n_fid, "iwae_k": vs.iwae_k,
                                                                   "n_eval": vs.n_eval},
               "models": records, "experiments": results, "provenance": provenance(),
               "seconds": {"train": t_train, "experiments": exp_seconds, "total": time.perf_counter() - t0}}
    if ev.ctx._inception is not None:
        summary["inception_seconds_per_image"] = ev.ctx.inception.seconds / max(ev.ctx.inception.images, 1)
    atomic_write_json(study_dir / "metrics.json", summary)
    from genbench.report.vae_page import build_vae_report

    build_vae_report(study_dir)
    return study_dir
