"""The stage sequence every study goes through, and the entry points that share it.

::

    data -> train (per model) -> generate (bank) -> evaluate (+ real-data floor) -> experiments -> [sweeps] -> report

=====================  ======================================================================================
entry point            stages
=====================  ======================================================================================
:func:`run_study`      all of them, under the study lock (``genbench run``, each trial of ``--seeds``)
:func:`train_model`    train, for one model of a study (``genbench train``)
:func:`evaluate_runs`  generate, evaluate, experiments and report on trained runs (``genbench evaluate``)
:func:`sweep_study`    the sampler sweeps and the report (``genbench sweep``)
=====================  ======================================================================================

``genbench score`` goes through :func:`genbench.studies.score.score_samples` (the evaluate stage on images made
elsewhere). The CLI only parses options and calls one of these; the pieces of each stage (sample banks,
``evaluate_run``, the real-data row, ``metrics.json``) live in :mod:`genbench.studies.runner`. The report stage is
passed in as a callable (``genbench.report.build.build_report``): the report layer sits above this one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from genbench.errors import GenbenchError
from genbench.families import load_trained
from genbench.io import atomic_write_json, atomic_write_text, check_writable_dir, remove_inside, remove_temps
from genbench.metrics.evaluate import EvalContext
from genbench.runtime.distributed import Dist, context, is_main_process
from genbench.runtime.memory import stage
from genbench.runtime.provenance import provenance, to_yaml
from genbench.runtime.tracking import check_trackers, image_grid, metric_scalars, open_tracker
from genbench.sampling.bank import read_bank
from genbench.studies.config import StudyConfig
from genbench.studies import runner
from genbench.studies.runner import (
    _diverged_status, check_run_folder, check_study, check_study_folders, class_names, evaluate_real, evaluate_run,
    is_finished, load_study_dir, log, make_context, study_lock, write_summary)
from genbench.studies.sweeps import parse_sweeps, run_sweeps
from genbench.training import loop

# prepare_data and train are looked up on their modules at call time (runner.prepare_data, loop.train): tests stub
# them there to stop a command at the point where the pipeline would start

Report = Callable[[Path], Path]


# -- genbench run -------------------------------------------------------------------------------------------------
def run_study(study: StudyConfig, out_root: Path, *, overwrite: bool = False, only: list[str] | None = None,
              resume: bool = False, report: Report | None = None, mlflow_uri: str | None = None) -> Path:
    """Run a whole study through the one pipeline. Returns the study folder ``out_root/<study.name>``.

    ``report``: the report stage (``genbench.report.build.build_report``, passed by the caller: this layer sits
    below the report); the study is marked finished once it returns. An interrupted study always continues
    where it stopped. A finished one is only run again with ``resume`` (reuse finished models, banks and
    experiments, evaluate again) or ``overwrite`` (retrain).

    Trackers: the study's ``log`` field (TensorBoard, MLflow; :mod:`genbench.runtime.tracking`) get each model's
    config, losses, final metrics and sample grid, and the real row's metrics; ``mlflow_uri`` is MLflow's tracking
    URI (default: ``MLFLOW_TRACKING_URI``, else ``<study folder>/mlruns``).

    Raises:
        GenbenchError: the study folder holds a finished study and neither ``resume`` nor ``overwrite`` is set;
            another process runs the same study; a stage fails on bad input.
    """
    t_start = time.perf_counter()
    study_dir = check_study_folders(study, out_root)  # before anything is written or deleted there
    if is_finished(study_dir) and not (overwrite or resume):
        raise GenbenchError(f"{study_dir} already holds a finished study; pass --resume to reuse its trained models "
                            f"and evaluate again, or --overwrite to retrain from scratch")
    sweeps = check_study(study)
    check_trackers(study.log)  # an uninstalled tracker library: one line before any work
    stages: dict = {}  # seconds and peak memory per stage (runtime.memory), written to metrics.json
    with stage("data", stages):
        splits = runner.prepare_data(study)  # before the study folder exists: a missing dataset leaves nothing behind
    with study_lock(study_dir):
        _run_locked(study, study_dir, splits, sweeps, overwrite=overwrite, only=only, t_start=t_start,
                    report=report, mlflow_uri=mlflow_uri, stages=stages)
    return study_dir


def _run_locked(study, study_dir, splits, sweeps, *, overwrite, only, t_start, report, mlflow_uri=None,
                stages: dict | None = None) -> None:
    stages = {} if stages is None else stages
    main = is_main_process()  # data-parallel (WORLD_SIZE > 1): every rank trains, rank 0 does everything else
    if main:
        remove_inside(study_dir, study_dir / "finished.json")
        remove_temps(study_dir)  # temp files of atomic writes killed halfway (we hold the lock); no symlink followed
        atomic_write_text(study_dir / "study.yaml", to_yaml({"profile": study.profile, **study.raw}))
    log(f"[data] {study.dataset}: train {len(splits['train'])}, holdout {len(splits['holdout'])}, "
        f"test {len(splits['test'])} (profile {study.profile})")
    models = [m for m in study.models if not only or m.name in only]
    if only and len(models) != len(only):
        raise GenbenchError(f"--only names {only}, the study has {[m.name for m in study.models]}")
    trackers = {m.name: open_tracker(study.log, log_dir=study_dir, experiment=study.name, run=m.name,
                                     config={"study": study.name, "profile": study.profile, **m.to_dict()},
                                     mlflow_uri=mlflow_uri) for m in models} if main and study.log else {}
    try:
        with stage("train", stages):
            diverged = train_stage(study, study_dir, splits, models, trackers, overwrite=overwrite)
        t_train = stages["train"]["seconds"]
        models = [m for m in models if m.name not in diverged]
        if not models:
            raise GenbenchError(f"every model of {study.name} diverged ({', '.join(diverged)}); lower the learning "
                                f"rates in the study file and rerun with --overwrite")
        with stage("evaluate", stages):
            ctx, records, t_eval = evaluate_stage(study, study_dir, splits, models)
        if not main:
            return  # experiments, sweeps and the report are rank 0's alone
        times = {"train_seconds_total": t_train, "evaluate_seconds": t_eval, "diverged": diverged, "stages": stages}
        summary = write_summary(study_dir, study, ctx, records, **times)
        if study.log:  # after metrics.json is written: a tracker that fails does not cost the evaluation
            log_results(study, study_dir, models, records, trackers, mlflow_uri)
        with stage("experiments", stages):
            exp = run_experiment_stage(study, study_dir, splits, ctx, summary, overwrite=overwrite)
        write_summary(study_dir, study, ctx, records, experiments=exp,
                      pipeline_seconds=time.perf_counter() - t_start, **times)
        if sweeps is not None and sweeps.in_study and sweeps.model in {m.name for m in models}:
            with stage("sweeps", stages):
                run_sweeps(study_dir, study, ctx, sweeps, log=log)
        if report is not None:
            with stage("report", stages):
                report(study_dir)
            atomic_write_json(study_dir / "finished.json", {"pipeline_seconds": time.perf_counter() - t_start,
                                                             "stages": stages, "provenance": provenance()})
        log("[stages] " + ", ".join(f"{k} {v['seconds']:.0f} s, peak {v['peak_rss_mib']} MiB"
                                    for k, v in stages.items()))
    finally:
        for t in trackers.values():
            if t is not None:
                t.close()


# -- the stages ---------------------------------------------------------------------------------------------------
def train_stage(study, study_dir: Path, splits, models, trackers: dict, *, overwrite: bool) -> dict[str, dict]:
    """Train (or resume, or skip when finished) every model; returns the diverged ones ``{name: status}``, the
    same on every data-parallel rank. A model that diverged is left out of the evaluation, not fatal."""
    diverged: dict[str, dict] = {}
    for m in models:
        length = (f"budget {m.budget['kind']}={m.budget['value']:g} (it replaces the study's {m.epochs} epochs)"
                  if getattr(m, "budget", None) else f"{m.epochs} epochs")  # reported, never silently ignored
        log(f"[train] {m.name}: {m.kind}, {length}, batch {m.batch_size}, {m.precision}")
        try:
            loop.train(m, splits["train"], study_dir / m.name, resume=not overwrite, overwrite=overwrite,
                  tracker=trackers.get(m.name))
        except GenbenchError as e:
            status = _diverged_status(study_dir / m.name)
            if status is None:
                raise
            log(f"[train] {e}; {m.name} is left out of the evaluation and marked as diverged in the report")
            diverged[m.name] = {**status, "message": str(e)}
    return context().broadcast(diverged)  # rank 0's view (it wrote the status files), the same on every rank


def evaluate_stage(study, study_dir: Path, splits, models) -> tuple[EvalContext, list, float]:
    """Generate (or reuse) each model's bank and score it, then the real-data row: (context, records, seconds).
    Every data-parallel rank generates and extracts features for its share; rank 0 gets the records (the others
    get None entries) and from then on works alone (``ctx.dist`` single-process)."""
    dist = context()
    ctx = make_context(study, splits, dist)
    ctx.out_dir = study_dir  # reference_indices.npy / heldout_indices.npy go into the study folder
    t0 = time.perf_counter()
    records = [evaluate_run(study_dir / m.name, study, ctx, m) for m in models]
    records.append(evaluate_real(study, splits, ctx))
    if dist.main:
        ctx.dist = Dist(device=dist.device)  # from here on rank 0 works alone: no collectives
    return ctx, records, time.perf_counter() - t0


def experiment_stage(study, study_dir: Path, splits, ctx: EvalContext, records: list, summary: dict, *,
                     overwrite: bool = False, t_start: float | None = None, **summary_fields) -> dict:
    """The experiments stage (rank 0): every experiment of the study file on the trained models and their banks;
    ``metrics.json`` is written again with the experiments' entry (and ``pipeline_seconds`` since ``t_start``,
    a ``time.perf_counter()`` value, when given). Returns the new summary."""
    exp = run_experiment_stage(study, study_dir, splits, ctx, summary, overwrite=overwrite)
    if t_start is not None:
        summary_fields["pipeline_seconds"] = time.perf_counter() - t_start
    return write_summary(study_dir, study, ctx, records, experiments=exp, **summary_fields)


def run_experiment_stage(study, study_dir: Path, splits, ctx: EvalContext, summary: dict, *,
                         overwrite: bool = False) -> dict:
    """Every experiment of the study file, on the trained models and their banks; returns the ``experiments``
    entry of ``metrics.json``."""
    if not study.experiments:
        return {}
    from genbench.studies.experiments import ExperimentContext, run_experiments

    records = {r["model"]: r for r in summary["models"] if r["model"] != "real"}
    models, banks = {}, {}
    for m in study.models:
        if m.name not in records:
            continue
        models[m.name] = (load_trained(study_dir / m.name)[0], m)
        got = read_bank(study_dir / m.name, m.sampling or None)
        if got is None:
            raise GenbenchError(f"{study_dir / m.name / 'samples'} holds no bank of the current checkpoint; run "
                                f"`genbench evaluate {study_dir / m.name}` first")
        images, labels, _ = got
        banks[m.name] = (images, labels if (labels >= 0).all() else None)
    ectx = ExperimentContext(study=study, study_dir=study_dir, splits=splits, eval_ctx=ctx, models=models,
                             banks=banks, records=records, overwrite=overwrite, log=log,
                             class_names=class_names(study))
    return run_experiments(ectx)


def log_results(study: StudyConfig, study_dir: Path, models, records: list[dict], trackers: dict,
                mlflow_uri: str | None = None) -> None:
    """The trackers' end-of-study part (rank 0): each model's metrics (``eval/*`` at its last training step) and a
    grid of the first 64 images of its bank; the real row's metrics in a run of its own (``real``)."""
    by_name = {r["model"]: r for r in records if r is not None}
    for m in models:
        t, r = trackers.get(m.name), by_name.get(m.name)
        if t is None or r is None:
            continue
        step = int(r["metrics"].get("efficiency", {}).get("steps") or 0)
        t.log_scalars(metric_scalars(r["metrics"]), step)
        got = read_bank(study_dir / m.name, m.sampling or None)
        if got is not None:
            t.log_image("samples", image_grid(got[0][:64].numpy()), step)
    if "real" in by_name:
        t = open_tracker(study.log, log_dir=study_dir, experiment=study.name, run="real",
                         config={"study": study.name, "profile": study.profile, "row": "real-data floor",
                                 "sample_bank": by_name["real"]["sample_bank"]}, mlflow_uri=mlflow_uri)
        t.log_scalars(metric_scalars(by_name["real"]["metrics"]), 0)
        t.close()


# -- genbench train / evaluate / sweep ---------------------------------------------------------------------------
def train_model(study: StudyConfig, model: str, *, out: Path | None = None, resume: bool = False,
                overwrite: bool = False, trackers: tuple[str, ...] = (), mlflow_uri: str | None = None) -> dict:
    """The train stage for one model of ``study`` into ``out`` (default ``runs/<study>/<model>``), writing the
    study's ``study.yaml`` beside it (what ``genbench evaluate`` reads back). Returns the training summary
    (train_seconds, steps, images_seen, params...). ``trackers``: tracker names (already checked).

    Raises:
        GenbenchError: no such model, an unwritable or foreign ``out`` folder, or a training error.
    """
    m = next((x for x in study.models if x.name == model), None)
    if m is None:
        raise GenbenchError(f"model {model!r} is not in study {study.name}; choose one of "
                            f"{', '.join(x.name for x in study.models)}")
    out = check_writable_dir(out or Path("runs") / study.name / model, "--out")
    check_run_folder(out, "--out")  # --overwrite and temp-file cleanup delete only in a folder genbench wrote
    main = is_main_process()
    if main and not (out.parent / "study.yaml").exists():
        atomic_write_text(out.parent / "study.yaml", to_yaml({"profile": study.profile, **study.raw}))
    data = runner.prepare_data(study)
    tracker = open_tracker(trackers, log_dir=out.parent, experiment=study.name, run=model, mlflow_uri=mlflow_uri,
                           config={"study": study.name, "profile": study.profile, **m.to_dict()}) \
        if trackers and main else None
    try:
        return loop.train(m, data["train"], out, resume=resume, overwrite=overwrite, tracker=tracker)
    finally:
        if tracker is not None:
            tracker.close()


def evaluate_runs(runs: list[Path], *, profile: str | None = None, report: Report | None = None) -> Path | None:
    """The generate, evaluate and experiments stages (and ``report``) on trained runs of one study, merged into
    its ``metrics.json``. Returns the study folder on rank 0, None on other data-parallel ranks.

    Raises:
        GenbenchError: a run folder that is not a model of the study, or a stage's error.
    """
    study_dir = Path(runs[0]).resolve().parent
    cfg = load_study_dir(study_dir, profile)
    by_name = {m.name: m for m in cfg.models}
    for r in runs:  # checked before any work, on every rank alike
        if Path(r).resolve().name not in by_name:
            raise GenbenchError(f"{r} is not a model of study {cfg.name} ({', '.join(by_name)})")
    splits = runner.prepare_data(cfg)
    models = [by_name[Path(r).resolve().name] for r in runs]
    ctx, records, secs = evaluate_stage(cfg, study_dir, splits, models)
    if not is_main_process():
        return None  # rank 0 writes the summary and the report
    summary = write_summary(study_dir, cfg, ctx, records, evaluate_seconds=secs)
    experiment_stage(cfg, study_dir, splits, ctx, records, summary, evaluate_seconds=secs)
    if report is not None:
        report(study_dir)
    return study_dir


def sweep_study(study_dir: Path, *, profile: str | None = None, report: Report | None = None) -> dict:
    """The sampler sweeps of a trained study (its ``sweeps`` section), then ``report``. Returns ``sweeps.json``'s
    content.

    Raises:
        GenbenchError: the study has no ``sweeps`` section, or a sweep's error.
    """
    cfg = load_study_dir(study_dir, profile)
    sw = parse_sweeps(cfg)
    if sw is None:
        raise GenbenchError(f"{Path(study_dir) / 'study.yaml'} has no `sweeps` section; add one (see "
                            f"studies/mnist_four.yaml)")
    splits = runner.prepare_data(cfg)
    res = run_sweeps(Path(study_dir), cfg, make_context(cfg, splits), sw, log=log)
    if report is not None:
        report(Path(study_dir))
    return res


def diverged_models(study_dir: Path) -> list[str]:
    """The models of a finished study that diverged (``metrics.json``'s ``diverged``)."""
    return list(json.loads((Path(study_dir) / "metrics.json").read_text()).get("diverged") or {})
