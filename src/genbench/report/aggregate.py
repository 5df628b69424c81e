"""The page of a several-seed study: ``runs/<study>/report/index.html`` from ``aggregate.json`` alone (each seed's
full report stays in its trial folder). Every value is a mean over n seeds with its 95% t-interval, beside the mean
within-run spread. The verdicts come from :mod:`genbench.metrics.verdict` (Welch's t-test on the per-seed values,
Holm over the pairs of each metric, 95%; provisional below 3 seeds): one sentence per metric and a table of every
pair's outcome. An ``aggregate.json`` written before the rule (no ``pairs``) gets them from its ``per_seed`` values."""

from __future__ import annotations

import json
from pathlib import Path

from genbench.errors import GenbenchError
from genbench.io import atomic_write_text
from genbench.metrics.verdict import MIN_SEEDS
from genbench.report.extractors import from_aggregate as extractor_values, render as render_extractors
from genbench.report.page import Page, e, table
from genbench.report.verdicts import pairs_table, rerun_command


def _ci(v: dict | None) -> str:
    if not v:
        return "-"
    if v.get("half_width") is None:
        return f"{v['mean']:.4g}"
    return f"{v['mean']:.4g} ± {v['half_width']:.2g}"


def _rerun(study_dir: Path, agg: dict) -> str:
    """The ``--seeds 3`` command for this study: the profile read from a trial's metrics.json where one is readable."""
    profile = None
    for p in (agg.get("trials") or {}).values():
        try:
            profile = json.loads((study_dir / p / "metrics.json").read_text()).get("profile")
            break
        except (OSError, ValueError, AttributeError):
            continue
    b = agg.get("budget")
    return rerun_command({"study": agg["study"], "profile": profile,
                          "models": [{"metrics": {"efficiency": {"budget": b}}}] if b else []})


def build_aggregate_report(study_dir: Path) -> Path:
    """Render ``report/index.html`` of a several-seed study; returns its path.

    Raises:
        GenbenchError: no readable ``aggregate.json``.
    """
    study_dir = Path(study_dir)
    try:
        agg = json.loads((study_dir / "aggregate.json").read_text())
    except (OSError, ValueError) as ex:
        raise GenbenchError(f"no readable aggregate.json in {study_dir}; run `genbench run --seeds K` first") from ex
    n = agg["n"]
    keys = [k for k in next(iter(agg["models"].values()))["metrics"] if k != "compute"]
    page = Page(f"{agg['study']} ({n} seeds)")
    s = page.section("summary", f"Mean over {n} seeds ± 95% t-interval (n = {n})")
    rows = [[name, r["family"], *[_ci(r["metrics"].get(k)) for k in keys]] for name, r in agg["models"].items()]
    s.append(table(["model", "family", *keys], rows, sortable=True,
                   floor_rows={i for i, name in enumerate(agg["models"]) if name == "real"}))
    s.append("<h3>Within-run spreads (mean over seeds)</h3>")
    s.append(table(["model", *keys], [[name, *[(r["metrics"].get(k) or {}).get("within_run_spread_mean")
                                               for k in keys]] for name, r in agg["models"].items()]))
    comps = agg.get("comparisons") or []
    if not comps or any("pairs" not in c for c in comps):  # written before the verdict rule: same rule, same numbers
        from genbench.studies.trials import comparisons

        comps = comparisons(agg["models"])
    v = page.section("verdicts", "Verdicts across seeds")
    v.append("<p>A pair of models is ranked only where Welch's t-test on the per-seed values rejects equal means at "
             "95% after Holm's correction over the pairs of that metric; below 3 seeds per model a pair is "
             "provisional. <i>Seeds needed</i>: seeds per model for 80% power to detect the observed difference at "
             "the strictest Holm level (noncentral t; genbench.metrics.verdict).</p>")
    if n < MIN_SEEDS:
        v.append(f"<p class='warn'>{n} seeds: every verdict is provisional. Run <code>{e(_rerun(study_dir, agg))}"
                 f"</code> to decide.</p>")
    v.append("<ul>" + "".join(f"<li>{e(c['statement'])}</li>" for c in comps) + "</ul>")
    v.append(table(*pairs_table(comps)))
    parts = render_extractors(extractor_values(agg), _rerun(study_dir, agg) if n < MIN_SEEDS else None)
    if parts:
        fx = page.section("extractors", "Feature extractors: does the ranking depend on the feature space?")
        fx += parts
    b = agg.get("budget")
    c = page.section("compute", "Compute per model" + (f" under the budget {b['kind']} = {b['value']:g}" if b else ""))
    ck = ["steps", "images_seen", "flops", "train_seconds"]
    c.append(table(["model", *ck], [[name, *[_ci((r["metrics"].get("compute") or {}).get(k)) for k in ck]]
                                    for name, r in agg["models"].items() if name != "real"]))
    if agg.get("wall_clock_note"):
        c.append(f"<p class='warn'>{e(agg['wall_clock_note'])}</p>")
    t = page.section("trials", "Trials")
    t.append("<ul>" + "".join(f"<li>seed {e(sd)}: <a href='../{e(p)}/report/index.html'>report</a> · "
                              f"<a href='../{e(p)}/metrics.json'>metrics.json</a></li>" for sd, p in agg["trials"].items())
             + "</ul>" + f"<p class='note'>{e(agg['note'])}</p>")
    header = f"<h1>{e(agg['study'])}</h1><div>{n} seeds: {', '.join(map(str, agg['seeds']))}</div>"
    return atomic_write_text(study_dir / "report" / "index.html", page.render(header))
