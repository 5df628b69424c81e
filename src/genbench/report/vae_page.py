"""The report page of a VAE study, rendered from ``runs/<study>/metrics.json`` and the figures the experiments
wrote (``report/figures/``) only. Every number is shown with its N, extractor or split, and seed."""

from __future__ import annotations

import html
import json
from pathlib import Path

from genbench.io import atomic_write_text


def _f(v, d: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{d}f}"
    return html.escape(str(v))


def _table(header: list[str], rows: list[list]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    b = "".join("<tr>" + "".join(f"<td>{_f(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def _img(name: str, alt: str) -> str:
    return f'<figure><img src="figures/{html.escape(name)}" alt="{html.escape(alt)}"><figcaption>' \
           f"{html.escape(alt)}</figcaption></figure>"


def model_rows(s: dict) -> tuple[list[str], list[list]]:
    header = ["model", "kind", "epochs", "train s", "FID (N)", "IS (classifier)", "FD-classifier", "diversity L2",
              "ELBO", "recon", "KL", "IWAE NLL bound (k)", "active units", "D(x) / D(G(z))"]
    rows = []
    for name, r in s["models"].items():
        sm, v, g = r["samples"], r.get("vae"), r.get("gan")
        rows.append([name, r["kind"], r["training"]["epochs"], r["training"]["train_seconds"],
                     f"{sm['fid_inception']['value']:.1f} ({sm['fid_inception']['n_generated']})",
                     f"{sm['is']['value']:.2f} ± {sm['is']['std']:.2f}", sm["fd_classifier"]["value"],
                     sm["diversity_l2"]["value"],
                     v and v["elbo_nats"], v and v["recon_nats"], v and v["kl_nats"],
                     v and f"{v['iwae_nll_nats']['value']:.2f} ({v['iwae_nll_nats']['k']})",
                     v and f"{v['active_units']['value']}/{v['active_units']['of']}",
                     g and f"{_f(g['d_x'])} / {_f(g['d_g_z'])}"])
    return header, rows


def build_vae_report(study_dir: Path) -> Path:
    """Write ``<study_dir>/report/index.html`` from ``metrics.json``; returns its path."""
    study_dir = Path(study_dir)
    s = json.loads((study_dir / "metrics.json").read_text())
    ev, clf, ex = s["evaluation"], s["classifier"], s["experiments"]
    parts = [f"<h1>{html.escape(s['study'])}</h1>",
             f"<p>Dataset {html.escape(s['dataset'])} (train {s['data']['train']}, test {s['data']['test']}, "
             f"{'x'.join(map(str, s['data']['shape']))}), profile <b>{html.escape(s['profile'])}</b>, seed {s['seed']}, "
             f"genbench {html.escape(str(s['provenance'].get('genbench_version')))} commit "
             f"{html.escape(str(s['provenance'].get('git_commit')))}, {s['seconds']['total']:.0f} s in all.</p>",
             f"<p>FID: Inception-v3 pool3 (TF 2015-12-05 graph), resize {html.escape(ev['resize'])}, "
             f"{html.escape(ev['inception_precision'])}, N = {ev['n_fid']} generated vs the first {ev['n_fid']} test "
             f"images (biased upwards at small N; compare at equal N only). IS and FD-classifier: genbench's "
             f"{html.escape(s['dataset'])} classifier, test accuracy {clf['test_accuracy']:.4f} on {clf['n_test']} "
             f"images, on {ev['n_samples']} samples. ELBO, reconstruction and KL terms in nats per image on "
             f"{ev['n_eval']} test images; the IWAE bound with k = {ev['iwae_k']} (Burda et al. 2016); active units: "
             f"latent dimensions whose posterior-mean variance over the test images exceeds 0.01.</p>"]
    header, rows = model_rows(s)
    parts += ["<h2>Models</h2>", _table(header, rows)]
    warn = [f"{n}: {r['vae']['collapse_warning']}" for n, r in s["models"].items()
            if r.get("vae") and r["vae"]["collapse_warning"]]
    parts += [f'<p class="warn">{html.escape(w)}</p>' for w in warn]
    if "reconstructions" in ex:
        parts.append("<h2>Reconstructions</h2>")
        for n, r in ex["reconstructions"].items():
            parts.append(_img(r["figure"], f"{n}: squared error {r['squared_error_per_image']:.2f} per image "
                                           f"(pixels in [0, 1], {r['n']} test images)"))
    if "samples" in ex:
        parts.append("<h2>Samples from N(0, I)</h2>")
        parts += [_img(r["figure"], f"{n}: {r['n']} samples, seed {r['seed']}") for n, r in ex["samples"].items()]
    if "interpolations" in ex:
        parts.append("<h2>Latent interpolations</h2>")
        for n, r in ex["interpolations"].items():
            for k in ("linear", "spherical"):
                parts.append(_img(r[k]["figure"], f"{n}, {k}: mean step L2 {r[k]['mean_step_l2']:.3f}"))
    if "beta_sweep" in ex:
        b = ex["beta_sweep"]
        parts += ["<h2>beta sweep</h2>",
                  f"<p>{b['latent_dim']}-D latent, classes {b['classes']}, {b['train_images']} training images, "
                  f"base {html.escape(b['base_model'])}; terms on the class subset of the test split; "
                  f"{html.escape(b['silhouette'])}.</p>",
                  _table(["beta", "recon (nats)", "KL (nats)", "ELBO", "silhouette", "active units", "epochs", "N"],
                         [[r["beta"], r["recon_nats"], r["kl_nats"], r["elbo_nats"], f"{r['silhouette']:.3f}",
                           r["active_units"], r["epochs"], r["n_test"]] for r in b["rows"]])]
        parts += [_img(r["gif"], f"beta = {r['beta']:g}: latent means and reconstructions over training")
                  for r in b["rows"]]
    if "frozen_latent" in ex:
        f = ex["frozen_latent"]
        parts += ["<h2>Frozen latent</h2>",
                  _table(["set", "FID (N)", "diversity L2"],
                         [[k, f"{v['fid_inception']['value']:.1f} ({v['n']})", v["diversity_l2"]["value"]]
                          for k, v in f["sets"].items()]), _img(f["figure"], html.escape(f["note"]))]
    if "linear_probe" in ex:
        parts += ["<h2>Linear probe</h2>",
                  _table(["model", "test accuracy", "chance", "train N", "test N", "probe"],
                         [[n, r["value"], r["chance"], r["n_train"], r["n_test"], r["probe"]]
                          for n, r in ex["linear_probe"].items()])]
    if "encoder_comparison" in ex:
        e = ex["encoder_comparison"]
        parts += ["<h2>Encoder comparison</h2>",
                  _table(["model", "encoder", "train loss (last epoch)", "test recon", "test KL", "IWAE NLL",
                          f"FID (N={e['fid_n']})", "IS", "train s"],
                         [[n, r["encoder"], r["train_final"].get("loss"), r["test_recon_nats"], r["test_kl_nats"],
                           r["iwae_nll_nats"], r["fid_inception"], r["is"], r["train_seconds"]]
                          for n, r in e["models"].items()]), _img(e["figure"], e["budget"])]
    if "per_class" in ex:
        parts.append("<h2>Conditional samples per class</h2>")
        for n, r in ex["per_class"].items():
            parts += [_table(["class", "accuracy", "mean confidence"],
                             [[c, a, q] for c, a, q in zip(r["classes"], r["accuracy"], r["mean_confidence"])]),
                      f"<p>{html.escape(n)}: overall {r['overall']:.3f}, {r['n_per_class']} samples per class, "
                      f"{html.escape(r['classifier'])}.</p>", _img(r["figure"], r["confidence"]),
                      _img(r["grid"], "10 samples per class")]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%}"
             ".warn{color:#b00}figure{margin:8px 0}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(s['study'])}</title>" \
           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    return atomic_write_text(study_dir / "report" / "index.html", page)
