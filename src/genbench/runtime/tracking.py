"""Optional experiment trackers: TensorBoard and MLflow. Off by default; ``genbench run --log tensorboard --log
mlflow`` or the study field ``log: [tensorboard, mlflow]`` turns them on (docs/TRACKING.md).

What is logged, per trained model (one TensorBoard run folder / one MLflow run each):

- the resolved model config, once, when the tracker opens (TensorBoard: a text summary ``config``; MLflow: the
  flattened config as run parameters and ``config.json`` as an artifact);
- the losses of every logging step, exactly the numbers of its ``history.jsonl`` line, as scalars ``train/<name>``
  at the training step (and each epoch's means as ``epoch/<name>``);
- after the evaluate stage, every numeric field of every metric as ``eval/<metric>`` (the ``value``) and
  ``eval/<metric>.<field>`` (``std``, ``precision``, ...), at the model's last training step;
- a grid of the first 64 images of the sample bank (``samples``: TensorBoard image, MLflow ``samples.png``).

The real-data floor row gets a run of its own (``real``) with its ``eval/*`` scalars, so every number can be
read against it in the tracker too. The files genbench writes (``history.jsonl``, ``metrics.json``) stay the
record; the trackers are views. Only rank 0 of a data-parallel run logs.

TensorBoard writes event files under ``runs/<study>/tensorboard/<model>/`` (``tensorboard --logdir
runs/<study>/tensorboard``). MLflow logs to the tracking URI given (``--mlflow-uri`` or ``MLFLOW_TRACKING_URI``),
else to the file store ``runs/<study>/mlruns``; the experiment is the study's name, the run the model's name, and
a resumed run logs into the MLflow run it started (found by its ``genbench_run`` tag). MLflow >= 3.7 refuses file
stores unless ``MLFLOW_ALLOW_FILE_STORE=true``; genbench sets it (when unset) for a ``file:`` URI only.

Endpoints (issue 29): a tracking URI is checked when the option is parsed (:func:`check_mlflow_uri`: a local
path, ``file:``, ``http(s)://host``, ``sqlite:///``, ``postgresql://``/``mysql://``/``mssql://`` or
``databricks``; any other scheme is one line). A server URI is probed before any work (:func:`probe_mlflow`: a TCP
connection, 3 tries, so nothing listening fails in seconds with one line naming the URI), and MLflow's own HTTP
retries are bounded (``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 2, ``MLFLOW_HTTP_REQUEST_TIMEOUT`` 10 s, when unset);
a server that answers with errors is one line too (:class:`MlflowTracker`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np

from genbench.errors import GenbenchError
from genbench.io import check_url, inside, probe_tcp, safe_name

TRACKERS = ("tensorboard", "mlflow")
INSTALL = {"tensorboard": "pip install tensorboard (or pip install 'genbench[tracking]')",
           "mlflow": "pip install mlflow-skinny (or mlflow; or pip install 'genbench[tracking]')"}
SKIP_FIELDS = frozenset({"n_generated", "n_reference", "n_train", "n_test", "n", "resamples", "subsets", "subset_size",
                         "splits", "k_pr", "k_dc", "of", "order_version", "preprocess_version", "seed", "threads"})
"""Numeric fields of a metric object that are settings or counts, not measurements: not logged as scalars."""


class Tracker(Protocol):
    """What the training loop and the study pipeline call. Values are plain Python floats; ``step`` counts
    optimizer steps; images are uint8 (H, W, C) with C = 1 or 3."""

    def log_scalars(self, values: Mapping[str, float], step: int) -> None: ...
    def log_image(self, tag: str, image: np.ndarray, step: int) -> None: ...
    def log_config(self, config: Mapping) -> None: ...
    def close(self) -> None: ...


def check_trackers(names) -> tuple[str, ...]:
    """The tracker names, validated and deduplicated (order kept); ``none`` alone means no tracker.

    Raises:
        GenbenchError: an unknown name (one line listing the known ones), or a tracker whose library is not
            installed (one line naming the pip install).
    """
    out: list[str] = []
    for n in names or ():
        if not isinstance(n, str) or n not in TRACKERS + ("none",):
            raise GenbenchError(f"unknown tracker {n!r}; choose {', '.join(TRACKERS)} (or none)")
        if n != "none" and n not in out:
            out.append(n)
    for n in out:
        try:
            if n == "tensorboard":
                import tensorboard  # noqa: F401 - torch.utils.tensorboard needs it
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            else:
                import mlflow  # noqa: F401
        except ImportError:
            raise GenbenchError(f"the {n} tracker needs its library: {INSTALL[n]}") from None
    return tuple(out)


MLFLOW_SCHEMES = ("file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")
_DB_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
_MLFLOW_FIX = "fix --mlflow-uri or MLFLOW_TRACKING_URI (a folder, file:, http(s)://host:port, sqlite:///, ...)"


def check_mlflow_uri(uri, what: str = "--mlflow-uri") -> str:
    """``uri`` if MLflow can use it: a local path (no scheme), or a URI with a scheme among
    :data:`MLFLOW_SCHEMES` (``http(s)`` and the databases with a host). Nothing is contacted.

    Raises:
        GenbenchError: an unknown scheme, no host, a bad port, control characters (one line).
    """
    from urllib.parse import urlsplit

    if not isinstance(uri, str) or not uri.strip():
        raise GenbenchError(f"{what} {uri!r}: empty; {_MLFLOW_FIX}, or leave it out for runs/<study>/mlruns")
    if uri == "databricks" or uri.startswith("databricks://"):
        return uri
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError:
        scheme = "?"
    if not scheme and not any(ord(c) < 32 or ord(c) == 127 for c in uri):
        return uri  # a local folder: MLflow's file store
    if scheme in ("file", "sqlite"):
        check_url(uri, what, MLFLOW_SCHEMES, _MLFLOW_FIX, host_needed=False)
        return uri
    check_url(uri, what, MLFLOW_SCHEMES, _MLFLOW_FIX)
    return uri


def probe_mlflow(uri: str, what: str = "MLflow tracking URI") -> None:
    """For a server URI (``http(s)``, a database with a host): one TCP connection, at most 3 tries within ~17 s
    (:func:`genbench.io.probe_tcp`). Local stores are not probed.

    Raises:
        GenbenchError: ``<what> <uri> is unreachable (...); ...`` in one line.
    """
    from urllib.parse import urlsplit

    check_mlflow_uri(uri, what)
    u = urlsplit(uri)
    scheme = u.scheme.lower().split("+")[0]
    if scheme not in _DB_PORTS or not u.hostname:
        return
    probe_tcp(u.hostname, u.port or _DB_PORTS[scheme], f"{what} {uri}",
              "start the tracking server, fix --mlflow-uri / MLFLOW_TRACKING_URI, or drop --log mlflow")


def open_tracker(names, *, log_dir: Path, experiment: str, run: str, config: Mapping | None = None,
                 mlflow_uri: str | None = None) -> Tracker | None:
    """One tracker that logs to every tracker in ``names`` (None when there are none).

    Args:
        names: tracker names (:func:`check_trackers`).
        log_dir: the study folder; TensorBoard writes to ``log_dir/tensorboard/<run>``, MLflow's default file
            store is ``log_dir/mlruns``.
        experiment, run: the study's and the model's names (MLflow experiment and run; TensorBoard run folder).
        config: logged once (:meth:`Tracker.log_config`).
        mlflow_uri: MLflow tracking URI (default: ``MLFLOW_TRACKING_URI``, else the file store above).
    """
    names = check_trackers(names)
    got: list[Tracker] = []
    for n in names:
        if n == "tensorboard":
            tb = Path(log_dir) / "tensorboard"
            got.append(TensorBoardTracker(inside(tb, tb / safe_name(run, "tracker run name"), "tracker run name")))
        else:
            uri = mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
            if uri:
                probe_mlflow(uri, "--mlflow-uri" if mlflow_uri else "MLFLOW_TRACKING_URI")
            got.append(MlflowTracker(uri or (Path(log_dir) / "mlruns").resolve().as_uri(), experiment, run,
                                     key=str((Path(log_dir) / run).resolve())))
    if not got:
        return None
    t = got[0] if len(got) == 1 else Fanout(got)
    if config is not None:
        t.log_config(config)
    return t


class Fanout:
    """Several trackers as one."""

    def __init__(self, trackers: list):
        self.trackers = trackers

    def log_scalars(self, values, step):
        for t in self.trackers:
            t.log_scalars(values, step)

    def log_image(self, tag, image, step):
        for t in self.trackers:
            t.log_image(tag, image, step)

    def log_config(self, config):
        for t in self.trackers:
            t.log_config(config)

    def close(self):
        for t in self.trackers:
            t.close()


class TensorBoardTracker:
    """``torch.utils.tensorboard.SummaryWriter`` on ``log_dir`` (event files; read them with ``tensorboard
    --logdir`` or ``tensorboard.backend.event_processing.event_accumulator``)."""

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_scalars(self, values, step):
        for k, v in values.items():
            self.writer.add_scalar(k, v, global_step=int(step))

    def log_image(self, tag, image, step):
        self.writer.add_image(tag, np.asarray(image), global_step=int(step), dataformats="HWC")

    def log_config(self, config):
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, sort_keys=True, default=str) + "\n```")

    def close(self):
        self.writer.close()


class MlflowTracker:
    """One MLflow run through ``mlflow.tracking.MlflowClient`` (no global active run, so several models' runs
    can be open at once)."""

    MAX_PARAM = 500  # characters of one parameter value kept (MLflow's limit is larger; configs are short)
    HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                   "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}

    def __init__(self, uri: str, experiment: str, run: str, *, key: str):
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 refuses file stores otherwise
        for k, v in self.HTTP_LIMITS.items():  # MLflow's defaults retry for minutes against a dead server
            os.environ.setdefault(k, v)
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._Metric, self._Param, self.uri = Metric, Param, uri
        try:
            self.client = MlflowClient(tracking_uri=uri)
            exp = self.client.get_experiment_by_name(experiment)
            eid = exp.experiment_id if exp is not None else self.client.create_experiment(experiment)
            tag = hashlib.sha256(key.encode()).hexdigest()[:32]
            found = self.client.search_runs([eid], filter_string=f"tags.genbench_run = '{tag}'", max_results=1)
            if found:
                self.run_id = found[0].info.run_id
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                self.run_id = self.client.create_run(eid, run_name=run, tags={"genbench_run": tag,
                                                                              "genbench_folder": key}).info.run_id
        except GenbenchError:
            raise
        except Exception as e:  # noqa: BLE001 - MlflowException, requests' errors, a server that is not MLflow
            first = (str(e).strip().splitlines() or [""])[0][:140]
            raise GenbenchError(f"MLflow tracking URI {uri} did not work ({type(e).__name__}: {first}; MLflow "
                                f"retried at most {os.environ['MLFLOW_HTTP_REQUEST_MAX_RETRIES']} times); check "
                                f"that an MLflow server answers there, or drop --log mlflow") from e

    def log_scalars(self, values, step):
        import time

        ts = int(time.time() * 1000)
        ms = [self._Metric(k, float(v), ts, int(step)) for k, v in values.items()]
        for i in range(0, len(ms), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=ms[i:i + 1000])

    def log_image(self, tag, image, step):
        a = np.asarray(image)
        self.client.log_image(self.run_id, a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a,
                              artifact_file=f"{tag}.png")

    def log_config(self, config):
        self.client.log_dict(self.run_id, json.loads(json.dumps(config, default=str)), "config.json")
        have = self.client.get_run(self.run_id).data.params  # a resumed run: parameters are write-once
        ps = [self._Param(k, str(v)[:self.MAX_PARAM]) for k, v in _flatten(config).items() if k not in have]
        for i in range(0, len(ps), 100):
            self.client.log_batch(self.run_id, params=ps[i:i + 100])

    def close(self):
        self.client.set_terminated(self.run_id)


def _flatten(d: Mapping, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def history_scalars(record: Mapping, prefix: str) -> dict[str, float]:
    """The numbers of one ``history.jsonl`` line as scalars ``<prefix>/<name>`` (``kind`` and ``step`` left out:
    the step is the scalar's x)."""
    return {f"{prefix}/{k}": float(v) for k, v in record.items()
            if k not in ("kind", "step") and _number(v)}


def metric_scalars(metrics: Mapping) -> dict[str, float]:
    """A ``metrics.json`` record's ``metrics`` as scalars: ``eval/<metric>`` for each ``value``,
    ``eval/<metric>.<field>`` for the other numeric fields (not ``/``: MLflow's file store keeps ``a/b`` as a
    file inside folder ``a``, so ``eval/is`` and ``eval/is/std`` could not both exist) (spreads, precision/recall..., efficiency), leaving
    out counts and settings (:data:`SKIP_FIELDS`) and non-finite numbers."""
    out: dict[str, float] = {}
    for name, m in metrics.items():
        if _number(m) and math.isfinite(m):
            out[f"eval/{name}"] = float(m)
        if not isinstance(m, Mapping):
            continue
        for k, v in m.items():
            if k in SKIP_FIELDS or not _number(v) or not math.isfinite(v):
                continue
            out[f"eval/{name}" if k == "value" else f"eval/{name}.{k}"] = float(v)
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def image_grid(images: np.ndarray, cols: int = 8, pad: int = 2) -> np.ndarray:
    """Tile uint8 (N, C, H, W) images (C = 1 or 3) into one uint8 (rows*(H+pad)+pad, cols*(W+pad)+pad, C) grid,
    row by row, on a white background."""
    n, c, h, w = images.shape
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = \
            images[i].transpose(1, 2, 0)
    return grid
