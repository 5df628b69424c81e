"""The page of a several-seed study: ``runs/<study>/report/index.html`` from ``aggregate.json`` alone (each seed's
full report stays in its trial folder). Every value is a mean over n seeds with its 95% t-interval, beside the mean
within-run spread; a comparison is stated in words only where the intervals separate."""

from __future__ import annotations

import json
from pathlib import Path

from genbench.errors import GenbenchError
from genbench.io import atomic_write_text
from genbench.report.page import Page, e, table


def _ci(v: dict | None) -> str:
    if not v:
        return "-"
    if v.get("half_width") is None:
        return f"{v['mean']:.4g}"
    return f"{v['mean']:.4g} ± {v['half_width']:.2g}"


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
    s.append("<ul>" + "".join(f"<li>{e(c['statement'])} ({e(c['test'])})</li>" for c in agg["comparisons"]) + "</ul>")
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
