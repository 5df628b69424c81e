"""Report sections of the experiments, rendered from ``runs/<study>/experiments/<name>/result.json`` and
``arrays.npz`` (and the models' histories) only: every figure is drawn here, none by the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genbench.io import name_problem, read_jsonl
from genbench.report import figures as F
from genbench.report import vae_figures as vf
from genbench.report.page import Page, figure, table
from genbench.studies.experiment_spec import experiment_names, get_experiment

def _load(study_dir: Path, name: str) -> tuple[dict, dict] | None:
    d = study_dir / "experiments" / name
    try:
        res = json.loads((d / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(res, dict):
        return None
    named = list(res["models"]) if isinstance(res.get("models"), dict) else []
    named += [res["model"]] if "model" in res else []
    if any(name_problem(m) is not None for m in named):  # model names become figure file names: no paths
        return None
    arrays = {}
    if (d / "arrays.npz").exists():
        with np.load(d / "arrays.npz") as z:
            arrays = {k: z[k] for k in z.files}
    return res, arrays


def render_experiments(page: Page, study_dir: Path, summary: dict, figdir: Path, rel) -> None:
    """Add one subsection per experiment listed in ``summary['experiments']`` whose files exist."""
    info = summary.get("dataset_info", {})
    for name in summary.get("experiments") or {}:
        spec = get_experiment(name) if name in experiment_names() else None  # a registered name only: it names
        got = _load(study_dir, name) if spec is not None else None  # a folder
        if got is None:
            continue
        res, arrays = got
        parts = page.section(f"exp-{name}", spec.title, level=3)
        spec.render_fn()(parts, res, arrays, figdir, rel, study_dir, info)
        parts.append(f"<p class='note'>{res.get('seconds', 0):.1f} s; options {json.dumps(res.get('options', {}))}; "
                     f"data: <a href='../experiments/{name}/result.json'>result.json</a></p>")


def render_reconstructions(parts, res, arrays, figdir, rel, study_dir, info):
    for m, r in res["models"].items():
        p = vf.strip([arrays[f"{m}__originals"], arrays[f"{m}__reconstructions"]], "", figdir / f"recon_{m}.png")
        parts.append(figure(rel(p), f"{m}: test images (top) and reconstructions decode(E_q[z|x]) (bottom); squared "
                                    f"error {r['squared_error_per_image']:.2f} per image over {r['n']} test images "
                                    f"(pixels in [0, 1])"))


def render_samples(parts, res, arrays, figdir, rel, study_dir, info):
    for m, r in res["models"].items():
        imgs = arrays[f"{m}__images"]
        p = F.image_figure(F.tile(imgs, -(-len(imgs) // 8), 8), "", figdir / f"exp_samples_{m}.png")
        parts.append(figure(rel(p), f"{m}: {r['n']} samples from its bank" + (" (rows = classes)" if r["rows_by_class"]
                                                                               else "")))


def render_nearest_neighbours(parts, res, arrays, figdir, rel, study_dir, info):
    floor = res["models"].get("real")
    for m, r in res["models"].items():
        p = vf.strip([arrays[f"{m}__samples"], arrays[f"{m}__neighbours"]], "", figdir / f"nearest_{m}.png")
        d = ", ".join(f"{v:.2f}" for v in r["distances"])
        parts.append(figure(rel(p), f"{m}: the {len(r['distances'])} of its first {r['n']} "
                                    f"{'held-out real images' if m == 'real' else 'samples'} nearest to a training "
                                    f"image (top) and those training images (bottom); L2 {d} (pixels in [0, 1]); "
                                    f"median over all {r['n']}: {r['median']:.2f}"
                                    + ("" if m == "real" or floor is None else
                                       f" (held-out real images, never trained on: {floor['median']:.2f}, nearest "
                                       f"{floor['distances'][0]:.2f})")))


def render_interpolations(parts, res, arrays, figdir, rel, study_dir, info):
    for m, r in res["models"].items():
        for kind in ("linear", "spherical"):
            a = arrays[f"{m}__{kind}"]  # (pairs, steps, C, H, W)
            p = F.image_figure(F.tile(a.reshape(-1, *a.shape[2:]), a.shape[0], a.shape[1]), "",
                               figdir / f"interp_{kind}_{m}.png")
            parts.append(figure(rel(p), f"{m}, {kind} interpolation between pairs of test images (rows = pairs); "
                                        f"mean step L2 {r[kind]['mean_step_l2']:.3f} (lower = smoother)"))


def render_beta_sweep(parts, res, arrays, figdir, rel, study_dir, info):
    rows = res["rows"]
    parts.append(f"<p>{res['latent_dim']}-D latent, classes {', '.join(res['class_names'])}, {res['train_images']} "
                 f"training images, base model {res['base_model']}; terms in nats per image on the class subset of the "
                 f"test split; silhouette: {res['silhouette']}.</p>")
    parts.append(table(["beta", "recon (nats)", "KL (nats)", "ELBO (nats)", "silhouette", "active units", "epochs",
                        "N"], [[r["beta"], r["recon_nats"], r["kl_nats"], r["elbo_nats"], r["silhouette"],
                                r["active_units"], r["epochs"], r["n_test"]] for r in rows]))
    parts += [f"<p class='warn'>beta = {r['beta']:g}: {r['collapse_warning']}</p>" for r in rows
              if r.get("collapse_warning")]
    names = dict(zip(res["classes"], res["class_names"]))
    gifs = []
    for r in rows:
        k = r["key"]
        mus, recons, labels = arrays[f"{k}__mu"], arrays[f"{k}__recon"], arrays[f"{k}__labels"]
        frames = [vf.latent_frame(mu, labels, names, arrays["originals"], rec,
                                  f"beta = {r['beta']:g}, epoch {i + 1}/{len(mus)}") for i, (mu, rec) in
                  enumerate(zip(mus, recons))]
        p = vf.gif(frames, figdir / f"beta_{r['beta']:g}.gif")
        gifs.append(figure(rel(p), f"beta = {r['beta']:g}: latent means of the test subset and reconstructions after "
                                   f"each of {len(mus)} epochs"))
    parts.append("<div class='grid'>" + "".join(gifs) + "</div>")


def render_frozen_latent(parts, res, arrays, figdir, rel, study_dir, info):
    sets = res["sets"]
    parts.append(table(["set", f"FID (N={res['n']})", "diversity L2"],
                       [[k, v["fid_inception"]["value"], v["diversity_l2"]] for k, v in sets.items()]))
    panels = [(f"{k}\nFID {v['fid_inception']['value']:.1f}", F.tile(arrays[f"set_{i}"], 4, 4))
              for i, (k, v) in enumerate(sets.items())]
    p = F.comparison(panels, figdir / f"frozen_latent_{res['model']}.png")
    parts.append(figure(rel(p), f"{res['model']}: {res['note']}"))


def render_linear_probe(parts, res, arrays, figdir, rel, study_dir, info):
    parts.append(table(["model", "test accuracy", "chance", "train N", "test N", "probe"],
                       [[m, r["value"], r["chance"], r["n_train"], r["n_test"], r["probe"]]
                        for m, r in res["models"].items()]))


def render_encoder_comparison(parts, res, arrays, figdir, rel, study_dir, info):
    rows = res["models"]
    parts.append(table(["model", "encoder", "test recon", "test KL", "IWAE NLL", "FID (N)", "IS", "train s", "epochs"],
                       [[m, r["encoder"], r["test_recon_nats"], r["test_kl_nats"], r["iwae_nll_nats"],
                         f"{r['fid_inception']:.1f} ({r['fid_n']})", r["is"], r["train_seconds"], r["epochs"]]
                        for m, r in rows.items()]))
    hists = {m: read_jsonl(study_dir / m / "history.jsonl") for m in rows}
    p = vf.curves(hists, ("loss", "recon", "kl"), figdir / "encoder_comparison.png", "")
    parts.append(figure(rel(p), f"training loss and its terms per epoch (train split, one z per image); {res['budget']}"))


def render_per_class(parts, res, arrays, figdir, rel, study_dir, info):
    for m, r in res["models"].items():
        parts.append(table(["class", "accuracy", "mean confidence"],
                           [[c, a, q] for c, a, q in zip(r["classes"], r["accuracy"], r["mean_confidence"])]))
        p = vf.per_class_bars(r["classes"], r["accuracy"], r["mean_confidence"], figdir / f"per_class_{m}.png", "")
        parts.append(figure(rel(p), f"{m}: overall {r['overall']:.3f} on {r['n_per_class']} samples per class; "
                                    f"{r['classifier']}; confidence = {r['confidence']}"))
        g = arrays[f"{m}__grid"]
        p = F.image_figure(F.tile(g, len(r["classes"]), 10), "", figdir / f"per_class_grid_{m}.png")
        parts.append(figure(rel(p), f"{m}: 10 samples per class (rows: {', '.join(r['classes'])})"))
