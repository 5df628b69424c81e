"""Interactive plotly figures: the 3-D quality / stability / controllability plot and the training curves.

``interactive_fragments`` gives the two plots as HTML fragments for the report page (plotly.js inlined once, in
the first fragment of the page: no CDN, works offline; ``responsive`` and 100% wide, so they size to the page);
``interactive_page`` the same plots as a page of their own (``figures/interactive.html``).
"""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from genbench.report.figures import curve_keys

CONFIG = {"responsive": True, "displaylogo": False}


def _figures(summary: dict, scores: dict[str, dict], hist: dict[str, list[dict]]) -> tuple[go.Figure, go.Figure]:
    recs = {r["model"]: r for r in summary["models"]}
    fig3 = go.Figure()
    for name, s in scores.items():
        m = recs[name]["metrics"]
        fid = m.get("fid_inception") or {}
        hover = "<br>".join([f"<b>{html.escape(name)}</b>", *[f"{k}: {v:.3f}" for k, v in s.items()],
                             f"FID: {fid.get('value', float('nan')):.2f} (N={fid.get('n_generated')})",
                             f"IS: {m['is']['value']:.2f} ± {m['is']['std']:.2f}",
                             f"gen s/1000: {m['efficiency']['gen_seconds_per_1000']:.3g}"])
        fig3.add_trace(go.Scatter3d(x=[s["quality"]], y=[s["stability"]], z=[s["controllability"]],
                                    mode="markers+text", text=[html.escape(name)], name=html.escape(name),
                                    hovertext=[hover], hoverinfo="text", marker={"size": 8}))
    fig3.update_layout(title="Quality / stability / controllability (normalised, formulas above)", height=520,
                       autosize=True, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                       scene={"xaxis": {"title": {"text": "quality"}, "range": [0, 1]},
                              "yaxis": {"title": {"text": "stability"}, "range": [0, 1]},
                              "zaxis": {"title": {"text": "controllability"}, "range": [0, 1]}})
    names = list(hist)
    cols = 2
    rows = max(1, -(-len(names) // cols))
    keys = {r["model"]: curve_keys(r) for r in summary["models"]}
    figc = make_subplots(rows=rows, cols=cols, subplot_titles=[html.escape(n) for n in names])
    for i, name in enumerate(names):
        steps = [r for r in hist[name] if r.get("kind") == "step"] or \
            [r for r in hist[name] if r.get("kind") == "epoch"]
        for k in keys.get(name, ()):
            if steps and k in steps[0]:
                figc.add_trace(go.Scatter(x=[r["epoch"] for r in steps], y=[r[k] for r in steps], mode="lines",
                                          name=f"{html.escape(name)}: {k}"), row=i // cols + 1, col=i % cols + 1)
    figc.update_layout(title="Training curves (x = epoch; zoom and hover for values)", height=320 * rows,
                       autosize=True, margin={"l": 40, "r": 10, "t": 60, "b": 30})
    return fig3, figc


def interactive_fragments(summary: dict, scores: dict[str, dict], hist: dict[str, list[dict]]) -> dict[str, str]:
    """``{"curves": ..., "scores3d": ...}`` HTML fragments; plotly.js is inlined in ``curves`` (the first on the
    page), so ``scores3d`` must come after it."""
    fig3, figc = _figures(summary, scores, hist)
    kw = {"full_html": False, "config": CONFIG, "default_width": "100%"}
    return {"curves": figc.to_html(include_plotlyjs=True, div_id="curves", **kw),
            "scores3d": fig3.to_html(include_plotlyjs=False, div_id="scores3d", **kw)}


def interactive_page(summary: dict, scores: dict[str, dict], hist: dict[str, list[dict]]) -> str:
    """The two plots as one offline page."""
    f = interactive_fragments(summary, scores, hist)
    return ("<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>genbench interactive</title>"
            "</head><body>" + f["curves"] + f["scores3d"] + "</body></html>")
