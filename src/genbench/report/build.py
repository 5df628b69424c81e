"""Build ``runs/<study>/report/`` from ``metrics.json``, histories and sample banks alone (no training, no
sampling, no feature extraction): static PNG figures, ``metrics.csv``, an interactive plotly page that works
offline, and ``index.html`` with a generated analysis of the four criteria.
"""

from __future__ import annotations

import csv
import html
import io
import json
import time
from pathlib import Path

import numpy as np

from genbench.errors import GenbenchError
from genbench.io import atomic_write_text, read_jsonl
from genbench.report import figures as F
from genbench.report.interactive import interactive_page
from genbench.report.scores import CRITERIA, FORMULAS, normalised_scores


def _fmt(m: dict | None, digits: int = 3) -> str:
    if not m:
        return "n/a"
    v = m.get("value")
    if v is None:
        return "n/a"
    s = f"{v:.{digits}g}"
    if m.get("std") is not None:
        s += f" ± {m['std']:.2g}"
    return s


def _pm(d: dict, key: str) -> str:
    if not d:
        return "n/a"
    sd = d.get(f"{key}_std")
    return f"{d[key]:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


def _bank(study_dir: Path, name: str):
    p = study_dir / name / "samples" / "bank.npz"
    if not p.exists():
        return None
    with np.load(p) as z:
        return z["images"], z["labels"]


def analysis(models: list[dict], real: dict, scores: dict[str, dict]) -> list[str]:
    """Sentences generated from the measured numbers (nothing typed in by hand)."""
    out = []
    fid = {r["model"]: r["metrics"]["fid_inception"] for r in models}
    n = next(iter(fid.values()))["n_generated"] if fid else 0
    best = min(fid, key=lambda k: fid[k]["value"])
    out.append(f"Sharpness / image quality: lowest Inception FID is {best} ({fid[best]['value']:.1f} at N={n}); "
               f"real held-out images score {real['metrics']['fid_inception']['value']:.1f} at the same N, the floor. "
               + "Classifier IS: " + ", ".join(f"{r['model']} {r['metrics']['is']['value']:.2f}" for r in models)
               + f" (real {real['metrics']['is']['value']:.2f}).")
    stab = {r["model"]: r["metrics"]["stability"] for r in models}
    steady = max(stab, key=lambda k: stab[k]["score"])
    shaky = min(stab, key=lambda k: stab[k]["score"])
    collapse = [r["model"] for r in models if r["metrics"]["mode_coverage"]["value"] < real["metrics"]["mode_coverage"]["value"]]
    out.append(f"Training stability: steadiest loss is {steady} (cv {stab[steady]['cv']:.3f}), least steady "
               f"{shaky} (cv {stab[shaky]['cv']:.3f}). Mode coverage: "
               + ", ".join(f"{r['model']} {r['metrics']['mode_coverage']['value']}/10 classes (KL to uniform "
                           f"{r['metrics']['mode_coverage']['kl_to_uniform_nats']:.3f} nats)" for r in models)
               + (f"; fewer classes than real data for {', '.join(collapse)} (mode dropping)." if collapse
                  else "; no model drops a class."))
    cond = [r for r in models if r["conditional"] and "conditional_accuracy" in r["metrics"]]
    if cond:
        out.append("Controllability: " + ", ".join(
            f"{r['model']} puts {100 * r['metrics']['conditional_accuracy']['value']:.1f}% of samples in the requested "
            f"class" for r in cond) + f" (the classifier labels real held-out images correctly "
            f"{100 * real['metrics']['conditional_accuracy']['value']:.1f}% of the time); "
            + ", ".join(r["model"] for r in models if not r["conditional"]) + " cannot be steered by label.")
    eff = {r["model"]: r["metrics"]["efficiency"] for r in models}
    fast = min(eff, key=lambda k: eff[k]["gen_seconds_per_1000"])
    slow = max(eff, key=lambda k: eff[k]["gen_seconds_per_1000"])
    out.append(f"Efficiency: fastest generation {fast} ({eff[fast]['gen_seconds_per_1000']:.3g} s per 1,000 images, "
               f"{eff[fast]['nfe']} NFE), slowest {slow} ({eff[slow]['gen_seconds_per_1000']:.3g} s, "
               f"{eff[slow]['sampler']}, {eff[slow]['nfe']} NFE), {eff[slow]['gen_seconds_per_1000'] / max(eff[fast]['gen_seconds_per_1000'], 1e-9):.0f}x apart. "
               "Training time: " + ", ".join(f"{k} {v['train_seconds']:.0f} s" for k, v in eff.items()) + ".")
    return out


def build_report(study_dir: Path) -> Path:
    """Render the report of a study folder. Returns ``report/index.html``.

    Raises:
        GenbenchError: no metrics.json (run ``genbench run`` or ``genbench evaluate`` first).
    """
    t0 = time.perf_counter()
    study_dir = Path(study_dir)
    mpath = study_dir / "metrics.json"
    if not mpath.exists():
        raise GenbenchError(f"no metrics.json in {study_dir}; run `genbench run` or `genbench evaluate` first")
    summary = json.loads(mpath.read_text())
    recs = summary["models"]
    real = next((r for r in recs if r["model"] == "real"), None)
    models = [r for r in recs if r["model"] != "real"]
    if real is None or not models:
        raise GenbenchError(f"{mpath} lacks the real-data row or models; re-run `genbench evaluate`")
    rep = study_dir / "report"
    fig = rep / "figures"
    names = [r["model"] for r in models]
    sw_path = study_dir / "sweeps.json"
    sweeps = json.loads(sw_path.read_text()) if sw_path.exists() else None
    fast = {sweeps["model"]: sweeps["chosen"]["seconds_per_1000"]} if sweeps else {}
    scores = {r["model"]: normalised_scores(r, real, fast.get(r["model"])) for r in models}
    hist = {n: read_jsonl(study_dir / n / "history.jsonl") for n in names}
    figs: list[tuple[str, str]] = []

    def add(title: str, path: Path):
        figs.append((title, path.relative_to(rep).as_posix()))

    # Samples: 10 random per model, class grids for conditional models, the side-by-side comparison.
    panels = []
    for r in models:
        b = _bank(study_dir, r["model"])
        if b is None:
            continue
        imgs, labels = b
        add(f"{r['model']}: 10 samples", F.image_figure(F.tile(imgs[:10], 1, 10), f"{r['model']}: 10 samples",
                                                      fig / f"samples_{r['model']}.png", width=8))
        if r["conditional"] and (labels >= 0).all():
            grid = F.tile(F.class_grid(imgs, labels), 10, 10)
            add(f"{r['model']}: digits 0-9 (rows), 10 each",
                F.image_figure(grid, f"{r['model']}: rows = requested label 0..9", fig / f"grid_{r['model']}.png"))
            panels.append((f"{r['model']} (rows = label 0..9)", grid))
        else:
            panels.append((f"{r['model']} (random)", F.tile(imgs[:100], 10, 10)))
    if panels:
        add("Comparison: the models side by side", F.comparison(panels, fig / "comparison.png"))
    add("Training curves", F.training_curves(hist, fig / "training_curves.png"))
    fidm = [r["metrics"]["fid_inception"] for r in models + [real]]
    n_fid = fidm[0]["n_generated"]
    add("FID (Inception)", F.bars(names + ["real"], [m["value"] for m in fidm], [m.get("std") for m in fidm],
                                  f"FID, N={n_fid} (lower is better)",
                                  f"FID on Inception pool3 ({fidm[0]['resize']}), N={n_fid} vs test", fig / "fid.png"))
    fdm = [r["metrics"]["fd_classifier"] for r in models + [real]]
    add("Frechet distance on classifier features", F.bars(
        names + ["real"], [m["value"] for m in fdm], [m.get("std") for m in fdm], "FD (lower is better)",
        f"FD on classifier features, N={fdm[0]['n_generated']} vs test ({fdm[0]['n_reference']}), ± bootstrap std",
        fig / "fd_classifier.png"))
    ism = [r["metrics"]["is"] for r in models + [real]]
    add("Inception Score (classifier)", F.bars(names + ["real"], [m["value"] for m in ism], [m["std"] for m in ism],
                                               "IS (higher is better)",
                                               f"IS on the MNIST classifier, N={ism[0]['n_generated']}, ± std over "
                                               f"{ism[0]['splits']} splits", fig / "is.png"))
    eff = [r["metrics"]["efficiency"] for r in models]
    add("Generation time", F.bars(names, [e["gen_seconds_per_1000"] for e in eff], None, "seconds per 1,000 images",
                                  "Generation time per 1,000 images (log axis)", fig / "gen_time.png", log=True,
                                  annotate=[f"{e['gen_seconds_per_1000']:.3g} s\n{e['sampler']}\n{e['nfe']} NFE"
                                            for e in eff]))
    add("Radar chart", F.radar(scores, fig / "radar.png"))
    add("Heatmap", F.heatmap(scores, fig / "heatmap.png"))
    add("3-D performance", F.performance_3d(scores, fig / "performance_3d.png"))
    pr = {}
    for feat in ("inception", "classifier"):
        pts = {r["model"]: (r["metrics"][f"prdc_{feat}"]["precision"], r["metrics"][f"prdc_{feat}"]["recall"])
               for r in models + [real] if f"prdc_{feat}" in r["metrics"]}
        if pts:
            pr[f"{feat} (N={(models + [real])[0]['metrics'][f'prdc_{feat}']['n_generated']})"] = pts
    if pr:
        add("Precision / recall", F.precision_recall_scatter(pr, fig / "precision_recall.png"))
    per = {r["model"]: r["metrics"]["conditional_accuracy"]["per_class"] for r in models
           if r["conditional"] and "conditional_accuracy" in r["metrics"]}
    if per:
        add("Conditional accuracy per class", F.per_class_bars(per, fig / "per_class_accuracy.png"))

    if sweeps:
        add(f"{sweeps['model']}: sampler sweep (quality vs NFE and seconds)", F.sweep_nfe(sweeps, fig / "sweep_nfe.png"))
        if sweeps.get("guidance"):
            add(f"{sweeps['model']}: guidance sweep", F.sweep_guidance(sweeps, fig / "sweep_guidance.png"))

    header = ["model", "FID↓ (N)", "KID↓", "FD-clf↓", "IS↑", "prec.↑", "recall↑", "cond. acc↑", "CAS↑", "modes",
              "NN-train L2", "stab. cv↓", "train s", "gen s/1k", "NFE"] + list(CRITERIA)
    rows = []
    for r in models + [real]:
        m = r["metrics"]
        e = m.get("efficiency", {})
        s = scores.get(r["model"])
        fid = m["fid_inception"]
        prdc = m.get("prdc_inception", {})
        kid_m = m.get("kid_inception")
        rows.append([r["model"], f"{_fmt(fid, 4)} ({fid['n_generated']})",
                     f"{kid_m['value']:.3g} ± {kid_m['std']:.2g}" if kid_m else "n/a",
                     _fmt(m["fd_classifier"]), _fmt(m["is"]),
                     _pm(prdc, "precision"), _pm(prdc, "recall"),
                     _fmt(m.get("conditional_accuracy")), _fmt(m.get("cas")),
                     str(m["mode_coverage"]["value"]),
                     f"{m['nearest_train_l2']['value']:.2f}" if "nearest_train_l2" in m else "n/a",
                     f"{m['stability']['cv']:.3f}" if "stability" in m else "-",
                     f"{e['train_seconds']:.0f}" if e else "-", f"{e['gen_seconds_per_1000']:.3g}" if e else "-",
                     str(e.get("nfe", "-")) if e else "-"] + ([f"{s[c]:.2f}" for c in CRITERIA] if s else ["-"] * 4))
    add("Metrics table", F.table(header, rows, fig / "metrics_table.png", f"{summary['study']} ({summary['profile']})"))
    buf = io.StringIO()
    csv.writer(buf).writerows([header] + rows)
    atomic_write_text(rep / "metrics.csv", buf.getvalue())
    atomic_write_text(fig / "interactive.html", interactive_page(summary, scores, hist))
    sw_header, sw_rows = sweep_table(sweeps) if sweeps else ([], [])
    atomic_write_text(rep / "index.html", _page(summary, models, real, scores, figs, header, rows,
                                                sweeps, sw_header, sw_rows))
    atomic_write_text(rep / "summary.md", _markdown(summary, models, real, scores, header, rows,
                                                    sweeps, sw_header, sw_rows))
    summary_t = time.perf_counter() - t0
    atomic_write_text(rep / "build_seconds.txt", f"{summary_t:.2f}\n")
    return rep / "index.html"


def sweep_table(sw: dict) -> tuple[list[str], list[list[str]]]:
    """Rows of the sampler and guidance sweeps (every setting at the same N)."""
    header = ["sampler", "steps", "w", "NFE", f"FID↓ (N={sw['n_inception']})", f"FD-clf↓ (N={sw['n']})",
              "cond. acc↑", "IS↑ (1 split)", "s / 1k", "note"]
    c = sw["chosen"]
    rows = []
    for part, rs in (("", sw["settings"]), ("guidance sweep", sw.get("guidance", []))):
        for r in rs:
            note = "reference" if r.get("is_reference") else ""
            if not part and (r["sampler"], r["steps"]) == (c["sampler"], c["steps"]):
                note = (note + ", " if note else "") + "chosen (fastest within tolerance)"
            rows.append([r["sampler"], str(r["steps"]), f"{r['guidance_scale']:g}", str(r["nfe"]),
                         f"{r['fid_inception']:.2f}", f"{r['fd_classifier']:.2f}", f"{r['conditional_accuracy']:.3f}",
                         f"{r['is']:.2f}", f"{r['seconds_per_1000']:.1f}", part or note])
    return header, rows


def _sweep_text(sw: dict) -> str:
    c, ref = sw["chosen"], sw["reference"]
    return (f"{sw['model']}: every setting draws N={sw['n']} images (balanced labels, seed {sw['seed']}, the same "
            f"x_T), FID on the first {sw['n_inception']} of them. Chosen for the efficiency score: "
            f"{c['sampler']}-{c['steps']} ({c['nfe']} NFE, {c['seconds_per_1000']:.1f} s per 1,000 images), the "
            f"fastest setting whose {sw['tolerance_metric']} stays within {sw['tolerance']:.0%} of the "
            f"{ref['sampler']}-{ref['steps']} reference (limit {sw['limit']:.2f}).")


def _markdown(summary, models, real, scores, header, rows, sweeps=None, sw_header=(), sw_rows=()) -> str:
    """The same table and analysis as markdown (for notes and docs), with the run's provenance."""
    prov, ev, clf = summary["provenance"], summary["evaluation"], summary["classifier"]
    lines = [f"# {summary['study']} ({summary['dataset']}, profile {summary['profile']})", "",
             f"genbench {prov['genbench_version']}, commit {prov['git_commit']}, torch {prov['torch']}, "
             f"{prov['threads']} threads, seed {summary['seed']}. Classifier test accuracy "
             f"{clf['test_accuracy']:.4f} ({clf['n_test']} images). N = {ev['n_samples']} samples per model for "
             f"classifier metrics, {ev['n_inception']} for Inception FID/KID ({ev['resize']}, "
             f"{ev['inception_precision']}).", "",
             *[f"**{name} diverged**: {d.get('message', '')} Not evaluated, not plotted.\n"
               for name, d in (summary.get("diverged") or {}).items()],
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", *[f"- {s}" for s in analysis(models, real, scores)], "",
              *[f"- **{k}** = {v}" for k, v in FORMULAS.items()]]
    if sweeps:
        lines += ["", "## Diffusion sampler sweeps", "", _sweep_text(sweeps), "",
                  "| " + " | ".join(sw_header) + " |", "|" + "---|" * len(sw_header),
                  *["| " + " | ".join(r) + " |" for r in sw_rows]]
    if "pipeline_seconds" in summary:
        lines.append(f"\nPipeline wall time (train + sample + evaluate): {summary['pipeline_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def _page(summary, models, real, scores, figs, header, rows, sweeps=None, sw_header=(), sw_rows=()) -> str:
    e = html.escape
    clf = summary["classifier"]
    ev = summary["evaluation"]
    prov = summary["provenance"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>",
        f"<title>genbench: {e(summary['study'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "figure{margin:1.5em 0}img{max-width:100%}code{background:#f4f4f4}</style></head><body>",
        f"<h1>{e(summary['study'])}: {e(summary['dataset'])}, profile <code>{e(summary['profile'])}</code></h1>",
        "<p>Every number below was computed by this run from the files beside this page "
        "(<code>metrics.json</code>, histories, sample banks).</p>",
        *[f"<p style='color:#b00'><b>{e(name)} diverged</b>: {e(d.get('message', ''))} It is not evaluated and "
          f"not plotted; see <code>{e(name)}/status.json</code> and its history.</p>"
          for name, d in (summary.get("diverged") or {}).items()],
        "<h2>Analysis (generated from the measured numbers)</h2><ul>",
        *[f"<li>{e(s)}</li>" for s in analysis(models, real, scores)],
        "</ul><h2>Metrics</h2><table><tr>", *[f"<th>{e(h)}</th>" for h in header], "</tr>",
        *["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows],
        "</table><p><a href='metrics.csv'>metrics.csv</a> · <a href='../metrics.json'>metrics.json</a> · "
        "<a href='figures/interactive.html'>interactive plots</a></p>",
        *([f"<h2>Diffusion sampler sweeps</h2><p>{e(_sweep_text(sweeps))}</p><table><tr>",
           *[f"<th>{e(h)}</th>" for h in sw_header], "</tr>",
           *["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in sw_rows],
           "</table><p><a href='../sweeps.json'>sweeps.json</a></p>"] if sweeps else []),
        "<h2>How to read the scores</h2><ul>",
        *[f"<li><b>{e(k)}</b> = {e(v)}</li>" for k, v in FORMULAS.items()],
        "</ul><p>The <i>real</i> row scores held-out real training images exactly like a model's samples: the floor "
        "(or ceiling) each metric should be read against.</p>",
        "<h2>Provenance</h2><ul>",
        f"<li>Classifier: test accuracy {clf['test_accuracy']:.4f} on {clf['n_test']} test images, trained "
        f"{clf['epochs']} epochs on {clf['train_images']} images.</li>",
        f"<li>Samples per model N={ev['n_samples']} for classifier metrics; Inception FID at N={ev['n_inception']} "
        f"against the first N test images, resize <code>{e(ev['resize'])}</code>, precision "
        f"<code>{e(ev['inception_precision'])}</code>.</li>",
        f"<li>Seed {summary['seed']}; genbench {e(str(prov['genbench_version']))}, commit "
        f"<code>{e(str(prov['git_commit']))}</code>, torch {e(str(prov['torch']))}, {prov['threads']} threads.</li>",
        *[f"<li>{e(r['model'])}: sampler {e(str(r['metrics']['efficiency']['sampler']))}, "
          f"{r['metrics']['efficiency']['sampler_steps']} steps, {r['metrics']['efficiency']['nfe']} NFE, "
          f"precision {e(r['metrics']['efficiency']['precision'])}, {r['metrics']['efficiency']['params']:,} "
          f"parameters.</li>" for r in models],
        "</ul><h2>Figures</h2>",
        "<iframe src='figures/interactive.html' title='interactive plots' style='width:100%;height:620px;border:0'>"
        "</iframe>",
        *[f"<figure><img src='{e(p)}' alt='{e(t)}'><figcaption>{e(t)}</figcaption></figure>" for t, p in figs],
        "</body></html>",
    ]
    return "\n".join(parts)
