"""genbench from Python (a notebook, a script, another tool): the commands' code paths as four functions.

::

    import genbench

    s = genbench.score(images_uint8, reference="mnist", profile="smoke")   # (N, 1, 28, 28) uint8 array or tensor
    s.fid_inception["value"], s["fd_classifier"]["std"], s.real.value("fid_inception")
    r = genbench.run("mnist_four", profile="smoke", overrides=["models.gan.optimizer.lr=1e-4"])
    r.vae.fid_inception, r.report, r.to_frame()
    genbench.compare([genbench.load_run("runs/mnist-four"), "other/mnist-four"]).to_frame()

===================  ====================================================  =========================================
function             code path                                             returns
===================  ====================================================  =========================================
:func:`score`        ``genbench score`` (:func:`genbench.studies.score     :class:`~genbench.api.tables.Scores`
                     .score_samples`)
:func:`run`          ``genbench run`` (:func:`genbench.studies.launch      :class:`~genbench.api.tables.RunResult`
                     .launch_study`)
:func:`load_run`     reads a study folder's ``metrics.json``               :class:`~genbench.api.tables.RunResult`
:func:`compare`      several finished study folders                        :class:`~genbench.api.tables.Table`
===================  ====================================================  =========================================

Every user mistake is a :class:`genbench.errors.GenbenchError` with one line naming the problem and the fix, as on
the command line. ``to_frame()`` needs pandas (``pip install 'genbench[notebook]'``). This package sits at the top
layer beside :mod:`genbench.cli` and imports its layers lazily (``import genbench`` stays light).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Iterable

from genbench.api.tables import Row, RunResult, Scores, Table
from genbench.errors import GenbenchError

__all__ = ["score", "run", "load_run", "compare", "Scores", "RunResult", "Table", "Row"]


def score(samples, reference: str | os.PathLike, *, out: str | os.PathLike | None = None, profile: str = "quick",
          study: str | None = None, n: int | None = None, n_inception: int | None = None, name: str | None = None,
          labels=None, report: bool = False) -> Scores:
    """Score images made by any model with a study's protocol, as ``genbench score`` does: the study's classifier
    and Inception features, the same seeded reference subsets of the test split, N, bootstrap spreads and the
    real-data floor row, so the numbers compare with a ``genbench run`` of that study at that profile.

    Args:
        samples: the images: a uint8 numpy array or torch tensor of shape (N, C, H, W) (also (N, H, W) or
            (N, H, W, C)), values 0..255, C the reference's channels (1 is tiled to 3 for a 3-channel reference);
            or a folder of PNG/JPEG files (class sub-folders ``0``, ``1``, ..., or a ``labels.csv``, for labels); or an ``.npz`` with
            uint8 ``x`` and optional int ``y``. Floats in [-1, 1] go through
            :func:`genbench.data.tensors.to_uint8` first. H x W must be the reference's (no resizing).
        reference: the real images: a dataset (``mnist``, ``fashion_mnist``, ``cifar10``, ``quickdraw``), or your
            own folder of PNG/JPEG images (class sub-folders optional) or ``.npz`` (a ``Path``, or a string that
            is not a dataset name), whose reference statistics are computed once and cached under GENBENCH_HOME
            keyed by its content hash and the protocol (:mod:`genbench.studies.score`).
        out: the output folder (``metrics.json``, the scored bank, the subset orders; the report with
            ``report=True``); None scores in a temporary folder that is deleted afterwards.
        profile: ``smoke`` | ``quick`` | ``full``: whose evaluation settings (N, spreads) apply.
        study: the study file or shipped name whose evaluation settings apply (default: the shipped study of
            ``reference``).
        n: images scored, a seeded (class-stratified when labelled) subset of the N given (default: the profile's
            ``n_samples``; at least 20); n_inception: of those, for the Inception metrics.
        name: the row's name (default: the folder or file name; ``samples`` for an array).
        labels: for an array, int (N,) class labels 0..K-1 (conditional accuracy and CAS are then computed), or None.
        report: write ``out/report/index.html`` too (needs ``out``).

    Returns:
        :class:`~genbench.api.tables.Scores`: the scored row's metrics (``s.fid_inception["value"]``, FID in
        Inception pool3 units; ``s.fd_classifier``, ``s["is"]``...; docs/METRICS.md gives each metric's units and
        range), ``s.real`` (the real-data floor row), ``s.table``, ``s.summary``, ``s.to_frame()``.

    Raises:
        GenbenchError: one line: images of another dtype, shape or size than the reference's, fewer than N, labels
            out of range, an unknown reference, study or profile, an ``out`` folder scored with other settings,
            ``report=True`` without ``out``.
    """
    from genbench.studies.score import default_name, score_samples

    if name is None:  # the name score_samples gives the row
        name = default_name(Path(samples)) if isinstance(samples, (str, os.PathLike)) else "samples"
    if report and out is None:
        raise GenbenchError("score(report=True) writes the report into `out`; give out=FOLDER")
    if out is None:
        with tempfile.TemporaryDirectory(prefix="genbench-score-") as tmp:
            summary = score_samples(samples, Path(tmp), reference=reference, profile=profile, study=study, n=n,
                                    n_inception=n_inception, name=name, labels=labels)
        return Scores(summary, name, None, None)
    from genbench.io import check_writable_dir

    out = check_writable_dir(Path(out), "out")
    summary = score_samples(samples, out, reference=reference, profile=profile, study=study, n=n,
                            n_inception=n_inception, name=name, labels=labels)
    rep = None
    if report:
        from genbench.report.build import build_report

        rep = build_report(out)
    return Scores(summary, name, out, rep)


def run(study: str | os.PathLike = "mnist_four", *, profile: str = "quick", out: str | os.PathLike = "runs",
        overrides: Iterable[str] = (), **options) -> RunResult:
    """Run a whole study (train every model, sample, evaluate, experiments, report), as ``genbench run`` does
    through the same code path (:func:`genbench.studies.launch.launch_study`).

    Args:
        study: a study file, or a shipped study's name (``genbench studies`` lists them).
        profile: ``smoke`` (seconds to minutes, for tests), ``quick`` (minutes per model on a 2-core CPU) or
            ``full``.
        out: the runs folder; the study is written to ``out/<study name>``.
        overrides: ``key.path=value`` strings, as ``--set`` (``models.gan.optimizer.lr=1e-4``,
            ``evaluation.n_samples=500``, ``models.vae.epochs.quick=5``); validated by the study schema and
            recorded in ``study.yaml`` and the provenance.
        **options: the command's other options: ``overwrite`` / ``resume`` (bool), ``only`` (model names),
            ``budget`` (``"images=N"``, ``"flops=F"``, ``"seconds=S"``), ``log`` (tracker names), ``mlflow_uri``.

    Returns:
        :class:`~genbench.api.tables.RunResult` of the study folder ``out/<study name>``.

    Raises:
        GenbenchError: one line: a bad option value, an unknown study, profile or override key (naming the
            nearest valid key), a study that lists several seeds (run them with ``genbench run``; this function
            runs one), a finished study without ``resume``/``overwrite``, a stage's error on bad input.
        TypeError: an option name ``run()`` does not take.
    """
    from genbench.report.build import build_report
    from genbench.studies.launch import launch_study

    allowed = {"overwrite", "resume", "only", "budget", "log", "mlflow_uri"}
    bad = sorted(set(options) - allowed)
    if bad:
        raise TypeError(f"run() got unknown option(s) {', '.join(bad)}; it takes {', '.join(sorted(allowed))}")
    if isinstance(overrides, str):
        overrides = [overrides]
    done = launch_study(study, profile=profile, out=out, overrides=overrides, report=build_report,
                        trials=False, **options)
    if done is None:  # a data-parallel rank other than 0
        raise GenbenchError("run() on a data-parallel rank other than 0 has no result; read it on rank 0")
    return load_run(done.study_dir)


def load_run(path: str | os.PathLike) -> RunResult:
    """A finished study folder (``runs/<study>``, written by ``genbench run``, ``evaluate`` or ``score``), read from
    its ``metrics.json`` only (nothing is recomputed or loaded from checkpoints).

    Args:
        path: the study folder, or its ``metrics.json``.

    Returns:
        :class:`~genbench.api.tables.RunResult`: ``study_dir``, ``metrics_path``, ``report`` (None when the folder
        has no ``report/index.html``), ``summary`` and ``metrics`` (one :class:`Row` per model, ``real`` last).

    Raises:
        GenbenchError: one line: no such folder, no ``metrics.json``, or one genbench did not write (not JSON,
            another schema version, no models or real-data row, rows without a metrics mapping).
    """
    from genbench.report.build import load_summary

    p = Path(path)
    d = p.parent if p.name == "metrics.json" else p
    if not d.is_dir():
        raise GenbenchError(f"{d} is not a folder; give a study folder written by `genbench run` (runs/<study>)")
    try:
        summary = load_summary(d)
    except (AttributeError, TypeError, KeyError) as e:  # valid JSON of another shape
        summary = e
    bad = _not_genbench(summary)
    if bad:
        raise GenbenchError(f"{d / 'metrics.json'} is not a genbench metrics file ({bad}); give a study folder "
                            f"written by `genbench run`, or rerun `genbench evaluate` on it")
    rep = d / "report" / "index.html"
    return RunResult(d, summary, rep if rep.is_file() else None)


def _not_genbench(summary) -> str | None:
    """Why a loaded ``metrics.json`` is not genbench's (None when it is)."""
    if isinstance(summary, Exception):
        return f"{type(summary).__name__}"
    if not isinstance(summary.get("study"), str):
        return "no study name"
    for r in summary["models"]:
        if not isinstance(r, dict) or not isinstance(r.get("metrics"), dict):
            return "a row without a metrics mapping"
    return None


def compare(runs: Iterable | Mapping) -> Table:
    """The rows of several finished study folders in one table, with a ``run`` column naming the run each row came
    from (rows are indexed ``run/model``: ``t["a/vae"]``), e.g. two runs of one study with different ``--set``.

    Args:
        runs: :class:`RunResult` objects or study folder paths; or a mapping ``{label: run}`` to name them. Without
            labels a run is named by its folder name, or by as many trailing path parts as make the names distinct.

    Returns:
        :class:`~genbench.api.tables.Table`; ``to_frame()`` gives a DataFrame with the ``run`` column first. Numbers
        from runs with different evaluation settings (dataset, profile, N) are not comparable: compare runs of one
        study and profile.

    Raises:
        GenbenchError: no runs, a folder :func:`load_run` refuses, two runs given the same label.
    """
    items = list(runs.items()) if isinstance(runs, Mapping) else [(None, r) for r in runs]
    if not items:
        raise GenbenchError("compare() needs at least one run (a RunResult or a study folder)")
    loaded = [(label, r if isinstance(r, RunResult) else load_run(r)) for label, r in items]
    labels = [str(label) for label, _ in loaded] if isinstance(runs, Mapping) else \
        _distinct_labels([r.study_dir for _, r in loaded])
    if len(set(labels)) != len(labels):
        raise GenbenchError(f"compare(): two runs are named alike ({', '.join(labels)}); give {{label: run}} with "
                            f"distinct labels")
    return Table([Row(rec.record, label) for label, (_, r) in zip(labels, loaded) for rec in r.metrics.rows])


def _distinct_labels(dirs: list[Path]) -> list[str]:
    """The shortest trailing parts of each folder's resolved path that tell the folders apart."""
    parts = [Path(d).resolve().parts for d in dirs]
    for k in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-k:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i}:{Path(d).name}" for i, d in enumerate(dirs)]  # the same folder twice
