"""The one report builder: ``runs/<study>/report/`` from the study folder's files alone (``metrics.json``,
histories, sample banks, experiment results, sweeps); no training, sampling or feature extraction.

The same page for every study; each section renders when its data exists: a summary and the comparison table
first (sortable, units and N in the headers, the real-data row marked as the floor), then one section per
question (quality, stability, controllability, efficiency), the family metrics, the experiments, the
normalised scores and the provenance, with a table of contents. Dataset facts (shape, classes, what the images
show) come from ``metrics.json``'s ``dataset_info`` (the data layer's :mod:`genbench.data.info`). Also writes
``metrics.csv``, ``summary.md`` and ``figures/interactive.html`` (plotly.js inlined: works offline).
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from genbench.errors import GenbenchError
from genbench.io import atomic_write_text, read_jsonl, regular_file, safe_name
from genbench.report import figures as F
from genbench.report.analysis import analysis
from genbench.report.curves import curve_sentences, curve_table, finite_curves, quality_curves
from genbench.report.experiments import render_experiments
from genbench.report.interactive import interactive_fragments, interactive_page
from genbench.report.page import Page, e, figure, table
from genbench.report.scores import FORMULAS, normalised_scores
from genbench.report.tables import comparison_table, family_tables, manifold_table, memorisation_table
from genbench.report.extractors import from_summary as extractor_values, render as render_extractors
from genbench.report.verdicts import numerics_text, rerun_command

SCHEMA_VERSION = 2  # the metrics.json schema this builder reads (docs/METRICS.md)


def _bank(study_dir: Path, name: str):
    p = study_dir / name / "samples" / "bank.npz"
    if not p.exists():
        return None
    try:
        with np.load(p) as z:
            return z["images"], z["labels"]
    except (OSError, ValueError, KeyError):
        return None


def load_summary(study_dir: Path) -> dict:
    """``metrics.json`` of a study folder, checked for the schema this builder reads.

    Raises:
        GenbenchError: missing, not JSON, another schema version, or without a real-data row or models.
    """
    mpath = Path(study_dir) / "metrics.json"
    if not mpath.exists():
        raise GenbenchError(f"no metrics.json in {study_dir}; run `genbench run` or `genbench evaluate` first")
    regular_file(mpath, "metrics file", "rerun `genbench evaluate` on the study's models to rewrite it")
    try:
        summary = json.loads(mpath.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as ex:
        raise GenbenchError(f"{mpath} is not valid JSON ({type(ex).__name__}); rerun `genbench evaluate` on the "
                            f"study's models to rewrite it") from None
    if not isinstance(summary, dict) or summary.get("schema_version") != SCHEMA_VERSION:
        got = summary.get("schema_version", 1) if isinstance(summary, dict) else "?"
        raise GenbenchError(f"{mpath} has metrics schema {got}, this genbench reads {SCHEMA_VERSION}; rerun "
                            f"`genbench run --resume` (or `genbench evaluate`) on the study to rewrite it")
    recs = summary.get("models") or []
    if not any(r.get("model") == "real" for r in recs) or len(recs) < 2:
        raise GenbenchError(f"{mpath} lacks the real-data row or models; rerun `genbench evaluate` on the study")
    for r in recs:  # a row's name becomes figure and folder names: never a path out of the study folder
        safe_name(r.get("model"), f"{mpath}: model")
    return summary


def build_report(study_dir: Path) -> Path:
    """Render the report of a study folder. Returns ``report/index.html``.

    Raises:
        GenbenchError: no readable metrics.json of the current schema (run ``genbench run`` or ``evaluate``).
    """
    t0 = time.perf_counter()
    study_dir = Path(study_dir)
    summary = load_summary(study_dir)
    info = summary.get("dataset_info") or {}
    recs = summary["models"]
    real = next(r for r in recs if r["model"] == "real")
    models = [r for r in recs if r["model"] != "real"]
    rep, fig = study_dir / "report", study_dir / "report" / "figures"
    names = [r["model"] for r in models]
    sw_path = study_dir / "sweeps.json"
    try:
        sweeps = json.loads(sw_path.read_text()) if sw_path.exists() else None
    except (OSError, ValueError):
        sweeps = None
    fast = {sweeps["model"]: sweeps["chosen"]["seconds_per_1000"]} if sweeps else {}
    trained = [r for r in models if "efficiency" in r["metrics"]]  # not sample sets scored by `genbench score`
    scores = {r["model"]: normalised_scores(r, real, fast.get(r["model"])) for r in trained}
    hist = {r["model"]: read_jsonl(study_dir / r["model"] / "history.jsonl") for r in trained}
    families = {r["model"]: r["family"] for r in models}
    loss_keys = {r["model"]: F.curve_keys(r) for r in models}
    classes = list(info.get("class_names") or [])
    k = info.get("num_classes") or len(classes)

    def rel(p: Path) -> str:
        return p.relative_to(rep).as_posix()

    page = Page(summary["study"])
    plots = interactive_fragments(summary, scores, hist)
    sentences = analysis(models, real, info, summary)  # one seed: every ranking provisional (issue 28)
    # --- summary and table ---------------------------------------------------------------------------------------
    s = page.section("summary", "Summary")
    s.append("<p>Every number on this page was computed by this run and read from the files beside it "
             "(<a href='../metrics.json'>metrics.json</a>, histories, sample banks, experiment results). The "
             "<i>real (floor)</i> row scores held-out real training images exactly like a model's samples: the floor "
             "(FID, FD) or ceiling (IS, accuracy) each number should be read against. ± values are the spreads named "
             "in <a href='#provenance'>Provenance</a>.</p>")
    s += [f"<p class='warn'><b>{e(n)} diverged</b>: {e(d.get('message', ''))} It is not evaluated and not plotted; "
          f"see <code>{e(n)}/status.json</code>.</p>" for n, d in (summary.get("diverged") or {}).items()]
    s.append("<ul>" + "".join(f"<li><b>{e(q)}</b>: {e(t)}</li>" for q, t in sentences.items()) + "</ul>")
    header, rows, vals = comparison_table(models, real, scores)
    s.append(table(header, rows, sortable=True, floor_rows={len(rows) - 1}, values=vals))
    s.append("<p class='note'>Click a column header to sort. <a href='metrics.csv'>metrics.csv</a> · "
             "<a href='figures/interactive.html'>interactive plots on their own page</a></p>")
    buf = io.StringIO()
    csv.writer(buf).writerows([header] + rows)
    atomic_write_text(rep / "metrics.csv", buf.getvalue())

    # --- quality ---------------------------------------------------------------------------------------------
    q = page.section("quality", "Quality: samples and distances to real data")
    panels, grids = [], []
    for r in models:
        b = _bank(study_dir, r["model"])
        if b is None:
            continue
        imgs, labels = b
        if r["conditional"] and (labels >= 0).all() and k:
            per = 10
            mosaic = F.tile(F.class_grid(imgs, labels, k=k, per=per), k, per)
            panels.append((f"{r['model']} (rows = class)", mosaic))
            p = F.image_figure(mosaic, "", fig / f"grid_{r['model']}.png")
            grids.append(figure(rel(p), f"{r['model']}: {per} samples per requested class, rows = "
                                        f"{', '.join(classes[:k]) if classes else 'classes 0..' + str(k - 1)}"))
        else:
            panels.append((f"{r['model']} (random)", F.tile(imgs[:100], 10, 10)))
            p = F.image_figure(F.tile(imgs[:30], 3, 10), "", fig / f"samples_{r['model']}.png", width=8)
            grids.append(figure(rel(p), f"{r['model']}: the first 30 images of its sample bank"))
    if panels:
        q.append(figure(rel(F.comparison(panels, fig / "comparison.png")),
                        f"The models side by side ({info.get('title', summary['dataset'])}, {info.get('content', '')})"))
        q.append("<div class='grid'>" + "".join(grids) + "</div>")
    recs_all = models + [real]
    bar_names = names + ["real"]
    fid = [r["metrics"].get("fid_inception") or {} for r in recs_all]
    if all(fid):
        q.append(figure(rel(F.bars(bar_names, [m["value"] for m in fid], [m.get("std") for m in fid], "FID", "",
                                   fig / "fid.png")),
                        f"FID on Inception pool3 ({fid[0].get('resize')}), N={fid[0]['n_generated']} against "
                        f"{fid[0].get('reference', 'the test split')}, ± {fid[0].get('spread', 'spread')}; lower is better"))
    fits = {r["model"]: r["metrics"]["fid_inf_inception"] for r in recs_all
            if (r["metrics"].get("fid_inf_inception") or {}).get("ns")}
    if fits:
        q.append(figure(rel(F.fid_infinity_fits(fits, fig / "fid_infinity.png")),
                        "FID-infinity (Chong & Forsyth 2020): FID of nested random subsets at several N against 1/N, "
                        "the fitted line and its intercept at 1/N = 0 (diamonds). Below N of a few thousand the fit "
                        "is not exactly linear, so compare FID-infinity at the same N too"))
    fd = [r["metrics"]["fd_classifier"] for r in recs_all]
    q.append(figure(rel(F.bars(bar_names, [m["value"] for m in fd], [m.get("std") for m in fd], "FD", "",
                               fig / "fd_classifier.png")),
                    f"Fréchet distance on the in-domain classifier's features, N={fd[0]['n_generated']} vs the test "
                    f"split ({fd[0]['n_reference']}), ± {fd[0].get('spread', 'spread')}; lower is better"))
    ism = [r["metrics"]["is"] for r in recs_all]
    q.append(figure(rel(F.bars(bar_names, [m["value"] for m in ism], [m["std"] for m in ism], "IS", "",
                               fig / "is.png")),
                    f"Inception Score computed with the {info.get('title', '')} classifier (range 1..{k}), "
                    f"N={ism[0]['n_generated']}, ± std over {ism[0]['splits']} splits; higher is better"))
    pr = {}
    for feat in ("inception", "classifier"):
        pts = {r["model"]: (r["metrics"][f"prdc_{feat}"]["precision"], r["metrics"][f"prdc_{feat}"]["recall"])
               for r in recs_all if f"prdc_{feat}" in r["metrics"]}
        if pts:
            pr[f"{feat} (N={recs_all[0]['metrics'][f'prdc_{feat}']['n_generated']})"] = pts
    if pr:
        q.append(figure(rel(F.precision_recall_scatter(pr, fig / "precision_recall.png")),
                        "Precision (fidelity) and recall (coverage), k = 3 (Kynkäänniemi et al. 2019), on both "
                        "feature sets; the star is real held-out data"))
    pc = {r["model"]: r["metrics"]["per_class"] for r in recs_all
          if (r["metrics"].get("per_class") or {}).get("classes")}
    if pc:
        worst = ", ".join(f"{m}: {e['worst']['name']} (FD {e['worst']['fd']:.3g})" for m, e in pc.items()
                          if e.get("worst"))
        first = next(iter(pc.values()))
        q.append(figure(rel(F.per_class(pc, fig / "per_class.png")),
                        f"Per-class quality of the conditional models: for each requested class, the generated images "
                        f"against the test images of that class on the classifier's features (about "
                        f"{first['classes'][0]['n_generated']} per class; FD against all of the class's test images, "
                        f"precision and recall k = 3 at equal N); ± {first.get('spread', 'spread')}. The real row is "
                        f"each class's floor. Worst class: {worst}. {first['inception_fid_per_class'].get('note', '')}"))
    mh, mr = manifold_table(recs_all)
    q += ["<h3>KID, precision/recall, density/coverage on both feature sets</h3>", table(mh, mr)]
    meh, mer = memorisation_table(recs_all)
    if mer:
        q += ["<h3>Memorisation</h3>",
              "<p>On the classifier's features: the C_T data-copying test (Meehan et al. 2020: a z-score per k-means "
              "cell of how much nearer the samples lie to their nearest training image than test images do, "
              "averaged over the cells; about 0 for a model that generalises, ≪ 0 for one that copies, ≫ 0 for one "
              "that underfits), the Fréchet distance to a seeded train subset and to the test split and their gap "
              "(the real row's gap is the floor for images never trained on), and the median pixel L2 distance to "
              "the nearest training image. ± bootstrap std of the samples.</p>", table(meh, mer)]

    # --- feature extractors: the ranking in every feature space --------------------------------------------------
    parts = render_extractors(extractor_values(summary), rerun_command(summary) if trained else None)
    if parts:
        fx = page.section("extractors", "Feature extractors: does the ranking depend on the feature space?")
        fx += parts

    fam = page.section("families", "Family metrics")
    for title, fh, fr, warn in family_tables(models):
        fam += [f"<h3>{e(title)}</h3>", table(fh, fr)] + [f"<p class='warn'>{e(w)}</p>" for w in warn]

    # --- stability -------------------------------------------------------------------------------------------
    st = page.section("stability", "Training stability")
    if hist:  # a report of scored sample sets only (`genbench score`) has no training
        st.append(figure(rel(F.training_curves(hist, fig / "training_curves.png", families, loss_keys)),
                         "Training curves per model against epochs: G and D losses and D(x), D(G(z)) for GANs; the "
                         "loss (negative ELBO) with its reconstruction and KL terms for VAEs (nats per image); the "
                         "denoising loss for diffusion models"))
        st.append(plots["curves"])
    mc = [(r["model"], r["metrics"]["mode_coverage"]) for r in recs_all if "mode_coverage" in r["metrics"]]
    if mc:
        st.append(table(["model", f"classes covered (of {k})", "KL to uniform (nats)", "N"],
                        [[n, m["value"], m["kl_to_uniform_nats"], m["n_generated"]] for n, m in mc]))

    # --- controllability -------------------------------------------------------------------------------------
    per = {r["model"]: r["metrics"]["conditional_accuracy"]["per_class"] for r in models
           if r["conditional"] and "conditional_accuracy" in r["metrics"]}
    if per:
        c = page.section("controllability", "Controllability")
        c.append(figure(rel(F.per_class_bars(per, fig / "per_class_accuracy.png", classes)),
                        "Share of samples generated for each class that the classifier puts in that class"))

    # --- efficiency ------------------------------------------------------------------------------------------
    if trained:  # models trained by a study (scored sample sets have no training or generation to time)
        ef = page.section("efficiency", "Efficiency")
        eff = [r["metrics"]["efficiency"] for r in trained]
        ef.append(figure(rel(F.bars([r["model"] for r in trained], [x["gen_seconds_per_1000"] for x in eff], None,
                                    "seconds per 1,000 images", "",
                                    fig / "gen_time.png", log=True,
                                    annotate=[f"{x['gen_seconds_per_1000']:.3g} s\n{x['sampler']}\n{x['nfe']} NFE"
                                              for x in eff])),
                         "Generation time per 1,000 images (log axis), with the sampler and network evaluations per image"))
        budgets = {json.dumps(x.get("budget"), sort_keys=True) for x in eff}
        if any(x.get("budget") for x in eff):
            b = eff[0].get("budget") or {}
            ef.append(f"<p>Equal-compute comparison: every model trained under the budget <b>{e(str(b.get('kind')))} = "
                      f"{b.get('value', 0):g}</b> and stopped at the first step past it (its epochs setting ignored)"
                      + (" (<span class='warn'>models ran under different budgets</span>)" if len(budgets) > 1 else "")
                      + (". Wall-clock budgets depend on the machine's load; prefer an images or FLOPs budget where "
                         "results must reproduce." if b.get("kind") == "seconds" else ".") + "</p>")
        ef.append(table(["model", "params", "epochs", "steps", "images seen", "training FLOPs", "train s", "images / s",
                         "s / step", "precision"],
                        [[r["model"], x["params"], x["epochs"], x["steps"], x["images_seen"],
                          f"{x['flops']:.3g}" if x.get("flops") else "-", x["train_seconds"], x["images_per_second"],
                          x["seconds_per_step"], x["precision"]] for r, x in zip(trained, eff)]))
        if sweeps:
            from genbench.report.sweeps import sweep_table, sweep_text

            sh, sr = sweep_table(sweeps)
            ef += [f"<h3>Diffusion sampler sweeps</h3><p>{e(sweep_text(sweeps))}</p>", table(sh, sr),
                   figure(rel(F.sweep_nfe(sweeps, fig / "sweep_nfe.png")),
                          f"{sweeps['model']}: quality vs network evaluations and vs seconds per 1,000 images")]
            if sweeps.get("guidance"):
                ef.append(figure(rel(F.sweep_guidance(sweeps, fig / "sweep_guidance.png")),
                                 f"{sweeps['model']}: conditional accuracy and FID vs classifier-free guidance scale"))

    # --- quality vs compute ---------------------------------------------------------------------------------
    curves = finite_curves(models)
    if curves:
        cv = page.section("curve", "Quality vs compute")
        cv.append("<p>" + " ".join(e(t) for t in curve_sentences(curves)) + "</p>")
        cv.append(figure(rel(quality_curves(curves, fig / "quality_curve.png")),
                         "Classifier Fréchet distance of samples drawn from weights saved at k/K of each model's "
                         "training compute, against images seen, training FLOPs and seconds (log axes); error bars: "
                         "bootstrap std of the generated set. The dotted line marks the budget"))
        cv.append(table(*curve_table(curves)))

    # --- experiments -----------------------------------------------------------------------------------------
    ex = page.section("experiments", "Experiments")
    if summary.get("experiments"):
        ex.append("<p>Each experiment's numbers are in <code>experiments/&lt;name&gt;/result.json</code>.</p>")
    render_experiments(page, study_dir, summary, fig, rel)

    # --- normalised scores -----------------------------------------------------------------------------------
    sc = page.section("scores", "Normalised scores")
    if scores:  # plotly.js is inlined with the training curves, which exist whenever scores do
        sc.append("<ul>" + "".join(f"<li><b>{e(a)}</b> = {e(b)}</li>" for a, b in FORMULAS.items()) + "</ul>")
        sc.append(plots["scores3d"])
        sc.append("<div class='grid'>" + figure(rel(F.radar(scores, fig / "radar.png")), "The four criteria per model")
                  + figure(rel(F.heatmap(scores, fig / "heatmap.png")), "The same scores as a heatmap") + "</div>")

    # --- provenance ------------------------------------------------------------------------------------------
    pv = page.section("provenance", "Provenance and files")
    pv.append(_provenance(summary, trained, [r for r in models if r not in trained]))
    atomic_write_text(rep / "index.html", page.render(_header(summary, info)))
    atomic_write_text(fig / "interactive.html", interactive_page(summary, scores, hist))
    atomic_write_text(rep / "summary.md", _markdown(summary, sentences, header, rows))
    atomic_write_text(rep / "build_seconds.txt", f"{time.perf_counter() - t0:.2f}\n")
    return rep / "index.html"


def _header(summary: dict, info: dict) -> str:
    shape = "x".join(map(str, info.get("image_shape", [])))
    return (f"<h1>{e(summary['study'])}</h1><div>{e(info.get('title', summary['dataset']))} "
            f"({e(info.get('content', ''))}, {e(shape)}, {info.get('num_classes', '?')} classes; train "
            f"{info.get('train', '?')}, held out {info.get('holdout', '?')}, test {info.get('test', '?')}), profile "
            f"<code>{e(summary['profile'])}</code>, seed {summary['seed']}</div>")


def _provenance(summary: dict, models: list[dict], scored: list[dict] = ()) -> str:
    """The provenance list: classifier, N, settings, versions, each trained model's sampler and files, and where
    each scored sample set (``genbench score``) came from."""
    prov, ev, clf = summary["provenance"], summary["evaluation"], summary["classifier"]
    fid = next((r["metrics"].get("fid_inception") for r in summary["models"] if r["model"] == "real"), {}) or {}
    items = [
        f"Classifier ({e(summary['dataset'])}): test accuracy {clf['test_accuracy']:.4f} on {clf['n_test']} test "
        f"images, trained {clf['epochs']} epochs on {clf['train_images']} images.",
        f"N = {ev['n_samples']} samples per model for the classifier metrics; Inception metrics on N = "
        f"{ev['n_inception']} against {e(str(fid.get('reference', 'the test split')))}, resize "
        f"<code>{e(ev['resize'])}</code>, precision <code>{e(ev['inception_precision'])}</code>; FID spread: "
        f"{e(str(fid.get('spread')))}.",
        f"Seed {summary['seed']}; genbench {e(str(prov['genbench_version']))}, commit "
        f"<code>{e(str(prov['git_commit']))}</code>, torch {e(str(prov['torch']))}, {prov['threads']} threads.",
        *[e(t) for t in [numerics_text(prov)] if t],
        *[f"{e(r['model'])} ({e(r['kind'])}): sampler {e(str(r['metrics']['efficiency']['sampler']))}, "
          f"{r['metrics']['efficiency']['sampler_steps']} steps, {r['metrics']['efficiency']['nfe']} NFE, "
          f"precision {e(r['metrics']['efficiency']['precision'])}, {r['metrics']['efficiency']['params']:,} "
          f"parameters; files: " + " · ".join(f"<a href='../{e(p)}'>{e(k)}</a>" for k, p in (r.get("files") or {}).items()
                                              if k != "checkpoint") for r in models],
    ]
    items += [f"{e(r['model'])}: {r['sample_bank']['n']} images scored with <code>genbench score</code>, a "
              f"{e(str(r['sample_bank'].get('selection')))}, from <code>{e(str(r['sample_bank'].get('source')))}</code> "
              f"({e(str(r['sample_bank'].get('format')))}); labels {e(str(r['sample_bank'].get('labels')))}"
              for r in scored]
    sw = summary.get("scored_with")
    if sw:
        items.append(f"Evaluation settings of study <code>{e(str(sw.get('study')))}</code>, profile "
                     f"<code>{e(str(sw.get('profile')))}</code> (N overridden where `--n` was given).")
    if "pipeline_seconds" in summary:
        items.append(f"Pipeline wall time (train, sample, evaluate, experiments): {summary['pipeline_seconds']:.0f} s.")
    if summary.get("stages"):
        items.append("Stages, wall seconds and peak resident memory: " + "; ".join(
            f"{e(k)} {v['seconds']:.0f} s, {v['peak_rss_mib'] if v.get('peak_rss_mib') is not None else '?'} MiB"
            + (" (peak since the process started)" if v.get("peak_scope") == "process" else "")
            + (f", CUDA {v['peak_cuda_mib']} MiB" if v.get("peak_cuda_mib") is not None else "")
            for k, v in summary["stages"].items()) + ".")
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _md_cell(v) -> str:
    """A markdown table cell: ``|`` and HTML-significant characters escaped."""
    import html

    return html.escape(str(v if v is not None else "-")).replace("|", "\\|")


def _markdown(summary: dict, sentences: dict, header: list[str], rows: list[list]) -> str:
    """The table and the analysis as markdown (for notes and docs), with the run's provenance."""
    prov, ev, clf = summary["provenance"], summary["evaluation"], summary["classifier"]
    lines = [f"# {_md_cell(summary['study'])} ({summary['dataset']}, profile {summary['profile']})", "",
             f"genbench {prov['genbench_version']}, commit {prov['git_commit']}, torch {prov['torch']}, "
             f"{prov['threads']} threads, seed {summary['seed']}. Classifier test accuracy "
             f"{clf['test_accuracy']:.4f} ({clf['n_test']} images). N = {ev['n_samples']} samples per model for "
             f"classifier metrics, {ev['n_inception']} for Inception FID/KID ({ev['resize']}, "
             f"{ev['inception_precision']}).", "",
             *[f"**{_md_cell(n)} diverged**: {_md_cell(d.get('message', ''))}\n"
               for n, d in (summary.get("diverged") or {}).items()],
             "| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
    lines += ["", *[f"- **{q}**: {t}" for q, t in sentences.items()], "",
              *[f"- **{a}** = {b}" for a, b in FORMULAS.items()]]
    if "pipeline_seconds" in summary:
        lines.append(f"\nPipeline wall time: {summary['pipeline_seconds']:.0f} s.")
    return "\n".join(lines) + "\n"
