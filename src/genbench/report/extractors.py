"""The report's "Feature extractors" section: each model's rank under each feature space (FID on Inception, FD on
the in-domain classifier, FD on each extractor the study names), Kendall's tau between the rankings, and the pairs
significant under one space and reversed under another. The numbers come from :mod:`genbench.metrics.agreement`;
this module only collects the values from ``metrics.json`` or ``aggregate.json`` and renders them."""

from __future__ import annotations

from genbench.metrics.agreement import agreement, flag_sentence, no_flag_sentence, tau_sentence
from genbench.metrics.verdict import MIN_SEEDS
from genbench.report.page import e, table

BUILTIN_SPACES = (("FID Inception", "fid_inception"), ("FD classifier", "fd_classifier"))


def spaces_of(metrics: dict) -> list[tuple[str, str]]:
    """(title, metric key) of every feature space a record's metrics hold: the two built-ins, then each
    ``fd_<name>`` of a study's own extractor (recognised by its ``space`` field)."""
    own = [(f"FD {m['space']}", k) for k, m in metrics.items()
           if k.startswith("fd_") and isinstance(m, dict) and m.get("space")]
    return [(t, k) for t, k in BUILTIN_SPACES if k in metrics] + own


def from_summary(summary: dict) -> dict[str, dict[str, list[float]]]:
    """space title -> model -> [value] from a one-seed ``metrics.json`` (the real-data row left out: it is the
    floor, not a contender)."""
    models = [r for r in summary.get("models", []) if r.get("model") != "real"]
    real = next((r for r in summary.get("models", []) if r.get("model") == "real"), {"metrics": {}})
    out = {}
    for title, key in spaces_of(real.get("metrics") or {}):
        out[title] = {r["model"]: [(r["metrics"].get(key) or {}).get("value")] for r in models
                      if (r["metrics"].get(key) or {}).get("value") is not None}
    return out


def from_aggregate(agg: dict) -> dict[str, dict[str, list[float]]]:
    """space title -> model -> per-seed values from ``aggregate.json`` (``<metric>.value`` rows with ``per_seed``)."""
    rows = {n: r for n, r in (agg.get("models") or {}).items() if n != "real"}
    keys = sorted({k[:-len(".value")] for r in rows.values() for k in r["metrics"]
                   if k.endswith(".value") and k.startswith(("fid_inception", "fd_"))})
    titles = dict((k, t) for t, k in BUILTIN_SPACES)
    out = {}
    for key in [k for _, k in BUILTIN_SPACES if k in keys] + [k for k in keys if k not in titles]:
        out[titles.get(key, f"FD {key[3:]}")] = {n: list(r["metrics"][f"{key}.value"]["per_seed"].values())
                                                for n, r in rows.items() if f"{key}.value" in r["metrics"]}
    return out


def render(spaces: dict[str, dict[str, list[float]]], rerun: str | None = None) -> list[str]:
    """The section's HTML pieces (empty below two spaces or two models)."""
    if len(spaces) < 2:
        return []
    res = agreement(spaces)
    models, names = res["models"], res["spaces"]
    if len(models) < 2:
        return []
    k = res["k"]
    out = [f"<p>Each model's rank (1 = closest to the real data) under each feature space, with the mean distance"
           f"{' over ' + str(k) + ' seeds' if k > 1 else ''}. Stein et al. 2023 found that Inception ranks modern "
           f"models poorly; a ranking that only one space supports should be quoted with that space named. The "
           f"spaces' distances are in their own units: compare ranks, not values, across columns.</p>"]
    out.append(table(["model", *names], [[m, *[f"{res['ranks'][s][m]} ({res['means'][s][m]:.4g})" for s in names]]
                                         for m in sorted(models, key=lambda m: res["ranks"][names[0]][m])]))
    out.append(table(["space A", "space B", "Kendall τ", "models"],
                     [[t["a"], t["b"], "-" if t["tau"] is None else f"{t['tau']:.2f}", t["n"]] for t in res["taus"]]))
    out.append(f"<p class='note'>{e(tau_sentence(len(models)))}</p>")
    if res["flags"]:
        out.append("<ul>" + "".join(f"<li class='warn'>{e(flag_sentence(f))}</li>" for f in res["flags"]) + "</ul>")
    else:
        text = no_flag_sentence(res)
        if rerun and k < MIN_SEEDS:
            text += f" To decide, run `{rerun}`."
        out.append(f"<p>{e(text)}</p>")
    return out
