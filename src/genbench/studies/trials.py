"""Several seeds of one study: independent trials, run one after another or on a Ray cluster, and their aggregate.

A trial is the whole study (train, bank, evaluate, experiments, report) under one seed, in its own folder
``runs/<study>/seeds/seed_<s>/``. The aggregate (``runs/<study>/aggregate.json``) is built from those folders only:
for each model and metric, the mean over seeds with a 95% confidence interval from the t-distribution with n - 1
degrees of freedom (n seeds, named), beside the mean of the within-run spreads and the per-seed values; and, per
metric, the verdict of every pair of models from :mod:`genbench.metrics.verdict` (Welch's t-test on the per-seed
values, Holm-corrected, 95%; provisional below 3 seeds), which the several-seed report renders. A killed sweep
resumes by skipping finished trials (``finished.json``); a trial killed halfway resumes like any study.

Engines: ``sequential`` (default) runs the trials in this process; ``ray`` submits one task per trial to a Ray
cluster (``ray.init(address=...)``; no address starts a local instance with the machine's CPUs), each task running
the same :func:`genbench.studies.stages.run_study`. The address is checked when the option is parsed
(:func:`check_ray_address`: ``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST[:PORT]``) and probed before
``ray.init`` (one TCP connection, 3 tries within ~17 s), so a cluster nobody runs is one line in seconds rather
than Ray's own minute of reconnecting. Data-parallel training inside a trial still goes through
accelerate / torchrun when the trial is launched that way (sequential engine).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable

from genbench.errors import GenbenchError
from genbench.io import atomic_write_json, check_url, probe_tcp
from genbench.metrics.verdict import metric_verdict, pairwise_verdicts
from genbench.runtime.provenance import provenance
from genbench.studies.config import StudyConfig
from genbench.studies.runner import is_finished, log
from genbench.studies.stages import run_study

ENGINES = ("sequential", "ray")
AGG_METRICS = (("fid_inception", "value", True), ("kid_inception", "value", True), ("fd_classifier", "value", True),
               ("is", "value", False), ("prdc_inception", "precision", False), ("prdc_inception", "recall", False),
               ("conditional_accuracy", "value", False), ("stability", "cv", True))
"""(metric, field, lower is better) aggregated across seeds."""


def agg_metrics(summary: dict) -> tuple[tuple[str, str, bool], ...]:
    """:data:`AGG_METRICS` plus ``fd_<name>`` and ``kid_<name>`` of each extractor the study names (their metrics
    carry a ``space`` field), read from one seed's ``metrics.json``."""
    real = next((r for r in summary.get("models", []) if r.get("model") == "real"), {})
    own = [(k, "value", True) for k, m in (real.get("metrics") or {}).items()
           if k.startswith(("fd_", "kid_")) and isinstance(m, dict) and m.get("space")]
    return AGG_METRICS + tuple(own)


RAY_CLIENT_PORT = 10001  # a ray:// address without a port
_RAY_FIX = "give auto, local, HOST:PORT (the head's GCS port, e.g. 10.0.0.1:6379) or ray://HOST:10001"


def check_ray_address(address) -> tuple[str, int] | None:
    """(host, port) of a Ray ``--address`` to probe, or None for ``auto`` / ``local`` / no address.

    Raises:
        GenbenchError: any other form: an unknown scheme, no host, a port outside 1..65535 (one line).
    """
    import re

    if address is None or address in ("auto", "local"):
        return None
    if not isinstance(address, str) or not address.strip():
        raise GenbenchError(f"--address {address!r}: empty; {_RAY_FIX}, or leave it out for a local instance")
    if "://" in address:
        u = check_url(address, "--address", ("ray",), _RAY_FIX)
        return u.hostname, u.port or RAY_CLIENT_PORT
    m = re.fullmatch(r"([A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})", address)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        shown = repr(address) if len(repr(address)) <= 60 else repr(address)[:57] + "..."
        raise GenbenchError(f"--address {shown} is not a Ray address; {_RAY_FIX}")
    return m.group(1).strip("[]"), int(m.group(2))


def with_seed(study: StudyConfig, seed: int) -> StudyConfig:
    """The study with every seed replaced (models, evaluation, the raw file written to ``study.yaml``)."""
    models = tuple(dataclasses.replace(m, seed=seed) for m in study.models)
    raw = {**study.raw, "seed": seed}
    raw.pop("seeds", None)
    return dataclasses.replace(study, seed=seed, models=models, raw=raw, seeds=())


def trial_root(out_root: Path, study: StudyConfig) -> Path:
    return Path(out_root) / study.name / "seeds"


def _run_one(study: StudyConfig, root: str, seed: int, overwrite: bool, report) -> str:
    s = with_seed(study, seed)
    out = Path(root) / f"seed_{seed}"
    if is_finished(out / s.name) and not overwrite:
        return str(out / s.name)
    return str(run_study(s, out, overwrite=overwrite, resume=True, report=report))


def run_trials(study: StudyConfig, out_root: Path, seeds: list[int], *, engine: str = "sequential",
               address: str | None = None, overwrite: bool = False,
               report: Callable[[Path], Path] | None = None, num_cpus: int | None = None) -> Path:
    """Run the study once per seed and write ``runs/<study>/aggregate.json``; returns that path.

    Raises:
        GenbenchError: an unknown engine, fewer than 2 seeds, or Ray not installed / not reachable.
    """
    if engine not in ENGINES:
        raise GenbenchError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if len(seeds) < 2:
        raise GenbenchError("several seeds need at least 2 (e.g. --seeds 3); one seed is a plain `genbench run`")
    target = check_ray_address(address) if engine == "ray" else None
    if target is not None:  # nothing listening: one line in seconds (before any folder), not Ray's reconnect loop
        probe_tcp(*target, f"Ray cluster --address {address}",
                  "start the cluster (ray start --head) or fix --address, or use --engine sequential")
    root = trial_root(out_root, study)
    root.mkdir(parents=True, exist_ok=True)
    todo = [s for s in seeds if overwrite or not is_finished(root / f"seed_{s}" / study.name)]
    for s in seeds:
        if s not in todo:
            log(f"[trials] seed {s}: finished, skipped")
    if engine == "sequential":
        for s in todo:
            log(f"[trials] seed {s}")
            _run_one(study, str(root), s, overwrite, report)
    elif todo:
        try:
            import ray
        except ImportError as e:
            raise GenbenchError("the ray engine needs Ray: pip install 'genbench[cluster]' (ray>=2.40), "
                                "or use --engine sequential") from e
        started = False
        if not ray.is_initialized():
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                         log_to_driver=False, ignore_reinit_error=True)
            except Exception as e:  # noqa: BLE001 - ConnectionError and Ray's own errors: one line
                raise GenbenchError(f"cannot start or reach Ray ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                                    f"check --address, or use --engine sequential") from e
            started = True
        try:
            task = ray.remote(num_cpus=1)(_run_one)
            refs = [task.remote(study, str(root), s, overwrite, report) for s in todo]
            log(f"[trials] {len(refs)} trials submitted to Ray")
            ray.get(refs)
        finally:
            if started:
                ray.shutdown()
    return aggregate(out_root, study, seeds)


def t_interval(values: list[float], confidence: float = 0.95) -> dict:
    """Mean and the two-sided ``confidence`` interval of the mean, Student's t with n - 1 degrees of freedom
    (scipy.stats.t): half-width = t_{(1+c)/2, n-1} * s / sqrt(n), s the sample standard deviation."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "half_width": None, "low": None, "high": None, "n": n, "std": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    h = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "half_width": h, "low": mean - h, "high": mean + h, "n": n, "std": sd,
            "confidence": confidence, "method": f"Student t, {n - 1} degrees of freedom"}


def aggregate(out_root: Path, study: StudyConfig, seeds: list[int]) -> Path:
    """``runs/<study>/aggregate.json`` from the finished trials' ``metrics.json`` files.

    Raises:
        GenbenchError: a trial's metrics.json is missing (the trial did not finish).
    """
    root = trial_root(out_root, study)
    per_seed = {}
    for s in seeds:
        p = root / f"seed_{s}" / study.name / "metrics.json"
        try:
            per_seed[s] = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise GenbenchError(f"{p} is missing or unreadable: trial seed {s} did not finish; run the same "
                                f"command again to resume it") from e
    names = [r["model"] for r in per_seed[seeds[0]]["models"]]
    rows = {}
    for name in names:
        row = {}
        for metric, field, lower in agg_metrics(per_seed[seeds[0]]):
            vals, spreads = [], []
            for s in seeds:
                rec = next((r for r in per_seed[s]["models"] if r["model"] == name), None)
                m = (rec or {}).get("metrics", {}).get(metric)
                if m is None or m.get(field) is None:
                    break
                vals.append(float(m[field]))
                sd = m.get("std" if field == "value" else f"{field}_std")
                if sd is not None:
                    spreads.append(float(sd))
            else:
                row[f"{metric}.{field}"] = {**t_interval(vals), "per_seed": dict(zip(map(str, seeds), vals)),
                                            "within_run_spread_mean": sum(spreads) / len(spreads) if spreads else None,
                                            "lower_is_better": lower}
        rec0 = next(r for r in per_seed[seeds[0]]["models"] if r["model"] == name)
        eff = [next(r for r in per_seed[s]["models"] if r["model"] == name)["metrics"].get("efficiency") for s in seeds]
        if all(eff):
            row["compute"] = {k: t_interval([float(e[k] or 0) for e in eff]) for k in ("steps", "images_seen",
                                                                                     "train_seconds")}
            fl = [e.get("flops") for e in eff]
            if all(fl):
                row["compute"]["flops"] = t_interval([float(f) for f in fl])
        rows[name] = {"family": rec0["family"], "metrics": row}
    out = {"study": study.name, "seeds": list(seeds), "n": len(seeds), "budget": study.budget,
           "models": rows, "comparisons": comparisons(rows),
           "trials": {str(s): f"seeds/seed_{s}/{study.name}" for s in seeds},
           "note": "mean over seeds and a 95% t-interval of the mean (n seeds); within_run_spread_mean is the mean "
                   "of each run's own spread (bootstrap, subsets or binomial, as its metrics.json names); comparisons: "
                   "Welch's t-test per pair of models on the per-seed values, Holm-corrected over the pairs of one "
                   "metric, 95%, provisional below 3 seeds (genbench.metrics.verdict)",
           "wall_clock_note": "seconds budgets depend on the machine's load; images or FLOPs budgets reproduce"
           if study.budget and study.budget["kind"] == "seconds" else None,
           "provenance": provenance()}
    path = Path(out_root) / study.name / "aggregate.json"
    atomic_write_json(path, out)
    return path


def comparisons(rows: dict) -> list[dict]:
    """For each aggregated metric, the verdict of :func:`genbench.metrics.verdict.pairwise_verdicts` on the models'
    per-seed values (the real-data row left out): every pair's Welch p-value, Holm-adjusted p-value, outcome and
    seeds needed, the best mean and whether the rule puts it ahead of every other model.

    Args:
        rows: ``aggregate.json``'s ``models`` (each metric with ``per_seed`` and ``lower_is_better``).

    Returns:
        One dict per metric: ``metric``, ``best``, ``separated``, ``test``, ``statement``, ``pairs``.
    """
    out = []
    keys = sorted({k for r in rows.values() for k in r["metrics"] if k != "compute"})
    for k in keys:
        have = {n: r["metrics"][k] for n, r in rows.items() if k in r["metrics"] and n != "real"}
        if len(have) < 2 or not all("per_seed" in v for v in have.values()):
            continue
        lower = next(iter(have.values()))["lower_is_better"]
        pairs = pairwise_verdicts({n: list(v["per_seed"].values()) for n, v in have.items()}, lower)
        v = metric_verdict(pairs, k)
        out.append({"metric": k, "best": v["best"], "separated": v["separated"], "lower_is_better": lower,
                    "test": "Welch's t-test on the per-seed values, Holm's correction over the pairs of the metric, "
                            "95%; provisional below 3 seeds", "statement": v["statement"], "pairs": pairs})
    return out
