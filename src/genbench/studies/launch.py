"""One study run from its options: what ``genbench run`` and :func:`genbench.api.run` share.

:func:`check_run_options` checks the options that need no file (light imports only, so the command refuses a bad
option at once); :func:`prepare_study` loads the study with its ``--set`` overrides and applies the command-line
replacements (``--log``, ``--budget``) and the checks that need the config (trackers, memory); :func:`launch_study`
runs it, one seed through :func:`genbench.studies.stages.run_study` or several through
:func:`genbench.studies.trials.run_trials`. The report stage is passed in (the report layer sits above this one).

This module imports nothing heavy at its top: :mod:`genbench.cli.checks` takes its memory constants from here.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Iterable

from genbench.errors import GenbenchError

MAX_SEEDS = 1000  # as the study file's `seeds` list
ACTIVATION_FLOATS = 32
"""Floats per image pixel a generation batch is assumed to hold at its peak (network activations, the sampler's
state): the estimate behind the memory check of ``genbench sample`` and of a study's evaluation counts."""
FEATURE_BYTES = 2048 * 4 + 512 * 4  # Inception pool3 + the in-domain classifier's features, per scored image
ENGINES = ("sequential", "ray")


@dataclasses.dataclass(frozen=True)
class Launched:
    """What :func:`launch_study` ran: the study folder (``out/<study>``; with several seeds the folder of the
    trials, holding ``aggregate.json``), the report it wrote (``report/index.html``, or the aggregate report), the
    seeds, the models that diverged (single seed) and the wall time in seconds."""

    study_dir: Path
    report: Path | None
    seeds: tuple[int, ...]
    diverged: tuple[str, ...]
    seconds: float


def check_run_options(*, seeds: int | None = None, overwrite: bool = False, resume: bool = False,
                      engine: str = "sequential", address: str | None = None, mlflow_uri: str | None = None) -> None:
    """The run options that need no file, checked before any heavy import.

    Raises:
        GenbenchError: one line: seeds outside 1..1000, overwrite with resume, an unknown engine, an address
            without the ray engine or malformed, a malformed MLflow URI.
    """
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS):
        raise GenbenchError(f"--seeds {seeds}: give 1..{MAX_SEEDS} (the number of seeds, counting up from the "
                            f"study's seed)")
    if overwrite and resume:
        raise GenbenchError("--overwrite and --resume contradict each other (retrain from scratch, or reuse the "
                            "trained models); give one")
    if engine not in ENGINES:
        raise GenbenchError(f"--engine {engine!r}: choose sequential or ray")
    if address is not None and engine != "ray":
        raise GenbenchError("--address applies to --engine ray only; add --engine ray or drop --address")
    if address is not None:
        from genbench.studies.trials import check_ray_address

        check_ray_address(address)
    if mlflow_uri is not None:
        from genbench.runtime.tracking import check_mlflow_uri

        check_mlflow_uri(mlflow_uri)


def prepare_study(study: str | Path, profile: str = "quick", *, overrides: Iterable[str] = (),
                  log: Iterable[str] | None = None, budget: str | dict | None = None, seeds: int | None = None,
                  mlflow_uri: str | None = None):
    """The study config a run uses, and its seeds: the file (or shipped name) loaded for ``profile`` with its
    ``overrides`` (``--set``), then ``log`` (trackers, replacing the study's ``log``) and ``budget`` (``images=N``,
    ``flops=F``, ``seconds=S``, replacing every model's) applied; the trackers and the memory the evaluation needs
    checked. Returns (StudyConfig, list of seeds: ``seeds`` seeds counting up from the study's seed, else the
    study's ``seeds`` list, else []).

    Raises:
        GenbenchError: one line: the study file, an override, an unknown or uninstalled tracker, an unreachable
            MLflow server, a budget or seed count out of range, evaluation counts beyond the memory cap.
    """
    from genbench.runtime.tracking import check_trackers
    from genbench.studies.config import load_study, parse_budget

    log_to = check_trackers(list(log)) if log else None  # an unknown or uninstalled tracker: one line at once
    cfg = load_study(study, profile, overrides)
    if log_to is not None:
        cfg = dataclasses.replace(cfg, log=tuple(log_to), raw={**cfg.raw, "log": list(log_to)})
    if budget is not None:
        b = parse_budget(budget)
        cfg = dataclasses.replace(cfg, budget=b, models=tuple(dataclasses.replace(m, budget=b) for m in cfg.models),
                                  raw={**cfg.raw, "budget": {b["kind"]: b["value"]}})
    seed_list = list(range(cfg.seed, cfg.seed + seeds)) if seeds else list(cfg.seeds)
    if seed_list and seed_list[-1] > 2**63 - 1:
        raise GenbenchError(f"--seeds {seeds}: the study's seed {cfg.seed} + {seeds} passes 2**63-1; lower the "
                            f"study's seed or --seeds")
    check_trackers_of(cfg.log, mlflow_uri)
    check_memory_study(cfg)
    return cfg, seed_list


def launch_study(study: str | Path = "mnist_four", *, profile: str = "quick", out: str | Path = "runs",
                 overrides: Iterable[str] = (), overwrite: bool = False, resume: bool = False,
                 only: Iterable[str] | None = None, budget: str | dict | None = None, seeds: int | None = None,
                 engine: str = "sequential", address: str | None = None, log: Iterable[str] | None = None,
                 mlflow_uri: str | None = None, report: Callable[[Path], Path] | None = None,
                 aggregate_report: Callable[[Path], Path] | None = None, trials: bool = True) -> Launched | None:
    """Run a whole study (``genbench run``): check the options, prepare the config (:func:`prepare_study`), then
    run one seed (:func:`genbench.studies.stages.run_study`) or several (:func:`genbench.studies.trials.run_trials`
    and ``aggregate_report``). An interrupted study continues where it stopped; a finished one needs ``resume``
    or ``overwrite``. Returns None on a data-parallel rank other than 0 (it only trains and evaluates its share).
    ``trials=False`` (:func:`genbench.api.run`) refuses several seeds.

    Raises:
        GenbenchError: one line for any bad option, study or override, and for a stage's error on bad input.
    """
    check_run_options(seeds=seeds, overwrite=overwrite, resume=resume, engine=engine, address=address,
                      mlflow_uri=mlflow_uri)
    from genbench.io import check_writable_dir
    from genbench.runtime.distributed import is_main_process
    from genbench.runtime.tracking import check_trackers
    from genbench.studies import stages

    if log:
        check_trackers(list(log))  # before the folder checks and the heavy imports: one line at once
    out = Path(out)
    check_writable_dir(out, "--out")
    t0 = time.perf_counter()
    cfg, seed_list = prepare_study(study, profile, overrides=overrides, log=log, budget=budget, seeds=seeds,
                                   mlflow_uri=mlflow_uri)
    if engine == "ray" and len(seed_list) < 2:
        raise GenbenchError("--engine ray runs several seeds, and this run has one; give --seeds K (K >= 2) or "
                            "drop --engine")
    if mlflow_uri:  # through the environment, so that every trial (and Ray worker) of several seeds sees it
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    only = list(only) if only else None
    if len(seed_list) > 1:
        if not trials:
            raise GenbenchError(f"study {cfg.name} runs {len(seed_list)} seeds, and genbench.run() runs one; pass "
                                f"overrides=['seeds=null'], or run the seeds with `genbench run "
                                f"--seeds K`")
        if only:
            raise GenbenchError("--only cannot be combined with several seeds; run the seeds of the whole study")
        from genbench.studies.trials import run_trials

        path = run_trials(cfg, out, seed_list, engine=engine, address=address, overwrite=overwrite, report=report)
        rep = aggregate_report(path.parent) if aggregate_report is not None else None
        return Launched(path.parent, rep, tuple(seed_list), (), time.perf_counter() - t0)
    d = stages.run_study(cfg, out, overwrite=overwrite, only=only, resume=resume, report=report)
    if not is_main_process():
        return None
    rep = d / "report" / "index.html"
    return Launched(d, rep if rep.exists() else None, (cfg.seed,), tuple(stages.diverged_models(d)),
                    time.perf_counter() - t0)


def check_trackers_of(names, mlflow_uri: str | None) -> None:
    """``--mlflow-uri`` only with the mlflow tracker; a server URI (option or MLFLOW_TRACKING_URI) probed before
    any work.

    Raises:
        GenbenchError: ``--mlflow-uri`` without the mlflow tracker, or an unreachable server.
    """
    names = tuple(names or ())
    if mlflow_uri is not None and "mlflow" not in names:
        raise GenbenchError("--mlflow-uri applies to the mlflow tracker, which this run does not use; add --log "
                            "mlflow (or the study's log: [mlflow]) or drop --mlflow-uri")
    if "mlflow" in names:
        from genbench.runtime.tracking import probe_mlflow

        uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            probe_mlflow(uri, "--mlflow-uri" if mlflow_uri else "MLFLOW_TRACKING_URI")


def check_memory_study(cfg) -> None:
    """``genbench run``: a model's sample bank (uint8), the features of its scored images, one generation batch.

    Raises:
        GenbenchError: the estimate passes the memory cap (:func:`genbench.io.check_memory`).
    """
    from genbench.io import check_memory

    numel = None
    try:
        if cfg.dataset_spec is None:
            from genbench.data.info import dataset_info

            c, h, w = dataset_info(cfg.dataset).image_shape
            numel = c * h * w
    except Exception:  # noqa: BLE001 - a dataset whose shape is known only once loaded: no estimate here
        numel = None
    if numel is None:
        return
    ev = cfg.evaluation
    n = max(ev.n_samples, ev.n_eval, ev.curve_n)
    need = n * (numel * 2 + FEATURE_BYTES) + ev.sample_batch * numel * 4 * ACTIVATION_FLOATS
    check_memory(need, f"{Path(cfg.source).name or 'the study'}: evaluation.n_samples {ev.n_samples:,} "
                 f"(sample_batch {ev.sample_batch:,})", "lower evaluation.n_samples (and n_eval, curve_n, "
                 "sample_batch) in the study file, or use a smaller profile")
