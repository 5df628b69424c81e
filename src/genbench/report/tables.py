"""The report's tables from ``metrics.json`` records: the headline comparison (its metric columns come from the
metric registry), KID / precision / recall on both feature sets, memorisation, and the family metrics. Each returns
(header, rows) for :func:`genbench.report.page.table`; cells are the recorded values with their spreads
(``value ± std``), never recomputed.
"""

from __future__ import annotations

from genbench.report.scores import CRITERIA


def _v(m: dict | None, key: str = "value"):
    return None if not m else m.get(key)


def _pm(m: dict | None, digits: int = 4, key: str = "value", std: str = "std") -> str:
    if not m or m.get(key) is None:
        return "-"
    s = f"{m[key]:.{digits}g}"
    if m.get(std) is not None:
        s += f" ± {m[std]:.2g}"
    return s


def _metric_columns(real: dict) -> list[tuple[str, object, object]]:
    """The headline table's metric columns, from the metric registry's specs (a registered metric with
    ``columns`` shows up here with no other edit): (header, display(record), sort value(record))."""
    from genbench.metrics import generic  # noqa: F401 - registers the built-in metrics
    from genbench.metrics.registry import metrics

    cols = sorted(((c, mt.name) for mt in metrics() for c in mt.columns), key=lambda cm: cm[0].order)
    out = []
    for c, name in cols:
        n = _v(real["metrics"].get(name), "n_generated")
        out.append((c.header.replace("{n}", str(n)),
                    lambda r, c=c, name=name: _pm(r["metrics"].get(name), c.digits, c.field, c.std),
                    lambda r, c=c, name=name: _v(r["metrics"].get(name), c.field)))
    return out


def comparison_table(models: list[dict], real: dict, scores: dict) -> tuple[list[str], list[list], list[list]]:
    """The headline table: (header, display rows, raw values for sorting); units and N in the headers. Each
    column is one (header, display, value) triple, so the three lists cannot fall out of step."""
    eff = lambda r: r["metrics"].get("efficiency") or {}  # noqa: E731
    crit = lambda c: (lambda r: (scores.get(r["model"]) or {}).get(c))  # noqa: E731
    cols = [("model", lambda r: r["model"] + (" (floor)" if r["model"] == "real" else ""), lambda r: None),
            ("family", lambda r: r["family"], lambda r: None),
            *_metric_columns(real),
            ("stability cv↓", lambda r: _v(r["metrics"].get("stability"), "cv"),
             lambda r: _v(r["metrics"].get("stability"), "cv")),
            *[(h, (lambda k: lambda r: eff(r).get(k))(k), (lambda k: lambda r: eff(r).get(k))(k))
              for h, k in (("train s", "train_seconds"), ("gen s / 1,000", "gen_seconds_per_1000"), ("NFE", "nfe"))],
            *[(f"{c} (0-1)", crit(c), crit(c)) for c in CRITERIA]]
    header = [h for h, _, _ in cols]
    rows = [[(lambda x: f"{x:.4g}" if isinstance(x, float) else x)(show(r)) for _, show, _ in cols]
            for r in models + [real]]
    vals = [[val(r) for _, _, val in cols] for r in models + [real]]
    return header, rows, vals


def manifold_table(recs: list[dict]) -> tuple[list[str], list[list]]:
    """KID, precision/recall, density/coverage on both feature sets, with N and spreads."""
    header = ["model", "features", "N", "KID↓", "precision↑", "recall↑", "density↑", "coverage↑"]
    rows = []
    for r in recs:
        for feat in ("inception", "classifier"):
            k, p = r["metrics"].get(f"kid_{feat}"), r["metrics"].get(f"prdc_{feat}")
            if not (k or p):
                continue
            rows.append([r["model"], feat, (k or p)["n_generated"], _pm(k, 3),
                         *[_pm(p, 3, q, f"{q}_std") for q in ("precision", "recall", "density", "coverage")]])
    return header, rows


def memorisation_table(recs: list[dict]) -> tuple[list[str], list[list]]:
    """The memorisation metrics with their spreads: C_T, FD to train and to test and their gap, nearest-train L2."""
    header = ["model", "N", "C_T (≈0 generalises, ≪0 copies)", "FD to train", "FD to test", "gap (test − train)",
              "nearest-train L2 (median)"]
    rows = []
    for r in recs:
        me, nt = r["metrics"].get("memorisation"), r["metrics"].get("nearest_train_l2")
        if not (me or nt):
            continue
        rows.append([r["model"], (me or nt)["n_generated"], _pm(me, 3, "c_t", "c_t_std"),
                     _pm(me, 3, "fd_train", "fd_train_std"), _pm(me, 3, "fd_test", "fd_test_std"),
                     _pm(me, 3, "gap", "gap_std"), _pm(nt, 3)])
    return header, rows


def family_tables(models: list[dict]) -> list[tuple[str, list[str], list[list], list[str]]]:
    """(title, header, rows, warnings) per family with declared metrics present."""
    out = []
    vae = [r for r in models if "elbo" in r["metrics"]]
    if vae:
        rows, warn = [], []
        for r in vae:
            m = r["metrics"]
            el, iw, au = m["elbo"], m.get("iwae_nll", {}), m.get("active_units", {})
            rows.append([r["model"], el.get("encoder"), el.get("likelihood"), el.get("beta"), _pm(el, 5),
                         el["recon_nats"], el["kl_nats"], f"{_pm(iw, 5)} (k={iw.get('k')})",
                         f"{au.get('value')}/{au.get('of')}", el["n"]])
            if au.get("collapse_warning"):
                warn.append(f"{r['model']}: {au['collapse_warning']}")
        out.append(("VAE family: ELBO, IWAE bound, active units", ["model", "encoder", "likelihood", "beta",
                    "ELBO↑ (nats/image)", "recon (nats)", "KL (nats)", "IWAE NLL bound↓ (nats)", "active units",
                    "N test"], rows, warn))
    gan = [r for r in models if "d_diagnostics" in r["metrics"]]
    if gan:
        rows = [[r["model"], r["metrics"]["d_diagnostics"]["d_x"], r["metrics"]["d_diagnostics"]["d_g_z"],
                 r["metrics"]["d_diagnostics"].get("loss_d"), r["metrics"]["d_diagnostics"].get("loss_g"),
                 r["metrics"]["d_diagnostics"].get("epoch")] for r in gan]
        out.append(("GAN family: D(x) and D(G(z)) (last epoch means)", ["model", "D(x)", "D(G(z))", "loss D",
                    "loss G", "epoch"], rows, []))
    return out
