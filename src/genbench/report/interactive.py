"""The interactive page: plotly 3-D performance plot and training curves, plotly.js inlined (works offline)."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def interactive_page(summary: dict, scores: dict[str, dict], hist: dict[str, list[dict]]) -> str:
    recs = {r["model"]: r for r in summary["models"]}
    fig3 = go.Figure()
    for name, s in scores.items():
        m = recs[name]["metrics"]
        hover = "<br>".join([f"<b>{html.escape(name)}</b>", *[f"{k}: {v:.3f}" for k, v in s.items()],
                             f"FID: {m['fid_inception']['value']:.2f} (N={m['fid_inception']['n_generated']})",
                             f"IS: {m['is']['value']:.2f} ± {m['is']['std']:.2f}",
                             f"gen s/1000: {m['efficiency']['gen_seconds_per_1000']:.3g}"])
        fig3.add_trace(go.Scatter3d(x=[s["quality"]], y=[s["stability"]], z=[s["controllability"]],
                                    mode="markers+text", text=[html.escape(name)], name=html.escape(name),
                                    hovertext=[hover], hoverinfo="text", marker={"size": 8}))
    fig3.update_layout(title="Quality / stability / controllability (normalised)", height=560,
                       scene={"xaxis": {"title": {"text": "quality"}, "range": [0, 1]},
                              "yaxis": {"title": {"text": "stability"}, "range": [0, 1]},
                              "zaxis": {"title": {"text": "controllability"}, "range": [0, 1]}})
    names = list(hist)
    figc = make_subplots(rows=2, cols=2, subplot_titles=[html.escape(n) for n in names[:4]])
    for i, name in enumerate(names[:4]):
        steps = [r for r in hist[name] if r.get("kind") == "step"]
        for k in ("loss", "recon", "kl", "loss_g", "loss_d"):
            if steps and k in steps[0]:
                figc.add_trace(go.Scatter(x=[r["epoch"] for r in steps], y=[r[k] for r in steps], mode="lines",
                                          name=f"{html.escape(name)}: {k}"), row=i // 2 + 1, col=i % 2 + 1)
    figc.update_layout(title="Training curves (x = epoch)", height=700)
    body = fig3.to_html(full_html=False, include_plotlyjs=True) + figc.to_html(full_html=False,
                                                                              include_plotlyjs=False)
    return ("<!doctype html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'><title>genbench interactive</title></head><body>"
            + body + "</body></html>")
