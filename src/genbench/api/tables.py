"""The result objects of the Python API: rows of a ``metrics.json`` with attribute and dict access, and tables of
rows with ``to_frame()`` (pandas, an optional extra: ``pip install 'genbench[notebook]'``).

A :class:`Row` is one row of a ``metrics.json`` (a model, a scored sample set, or ``real``, the real-data floor):
``row["fid_inception"]`` and ``row.fid_inception`` are that metric's record as written (a dict with ``value``,
``std``, ``n_generated``, ``extractor``...; docs/METRICS.md), ``row.value("fid_inception")`` its value (a float).
A :class:`Table` holds rows in their file order (``real`` last), indexed by name. :class:`Scores` (what
:func:`genbench.score` returns) is the scored row with the whole table beside it; :class:`RunResult` (what
:func:`genbench.run` and :func:`genbench.load_run` return) a study folder's paths and table.

``to_frame()`` flattens each row into one line of a DataFrame: ``model``, ``kind``, ``family`` (and ``run`` in a
:func:`genbench.compare` table), then per metric ``<metric>`` (its ``value``) and ``<metric>_std`` (its ``std``,
where present); a metric without one ``value`` contributes the entries that have a ``_std`` partner
(``prdc_inception_precision``, ``prdc_inception_precision_std``, ...), and ``efficiency`` all its numeric entries
(``efficiency_train_seconds``, ``efficiency_gen_seconds_per_1000``, ...). Units are the metrics' own (FID, nats,
seconds). A metric a row lacks is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

from genbench.errors import GenbenchError

ID_COLUMNS = ("run", "model", "kind", "family")


def _pandas():
    try:
        import pandas
    except ImportError:
        raise GenbenchError("to_frame() needs pandas, an optional extra: pip install 'genbench[notebook]' (or pip "
                            "install pandas); to_records() gives the same rows as a list of dicts") from None
    return pandas


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def flatten(metrics: Mapping) -> dict[str, float]:
    """One row's metrics as flat columns (module docstring): ``{"fid_inception": 480.2, "fid_inception_std": 6.3,
    ...}``; numbers as floats."""
    out: dict[str, float] = {}
    for m, v in metrics.items():
        if _number(v):
            out[m] = float(v)
        elif isinstance(v, Mapping) and "value" in v:
            if _number(v["value"]):
                out[m] = float(v["value"])
            if _number(v.get("std")):
                out[f"{m}_std"] = float(v["std"])
        elif isinstance(v, Mapping):
            for k, x in v.items():
                if _number(x) and (m == "efficiency" or f"{k}_std" in v or (k.endswith("_std") and k[:-4] in v)):
                    out[f"{m}_{k}"] = float(x)
    return out


class _ReadOnlyItems(Mapping):
    """A read-only mapping whose keys are also attributes (``r.fid_inception`` is ``r["fid_inception"]``); an
    unknown key is an AttributeError carrying the KeyError's line."""

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(e.args[0]) from None

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is read-only")


class Row(_ReadOnlyItems):
    """One row of a ``metrics.json``: a mapping from metric name to its record (dict access, attribute access,
    ``keys()``, ``in``). ``name`` is the row's name (``model``), ``record`` the whole row as written (with
    ``sample_bank``, ``provenance``, ...), ``run`` the run it came from in a :func:`genbench.compare` table."""

    __slots__ = ("name", "record", "run")

    def __init__(self, record: Mapping, run: str | None = None):
        object.__setattr__(self, "record", dict(record))
        object.__setattr__(self, "name", str(record.get("model")))
        object.__setattr__(self, "run", run)

    @property
    def metrics(self) -> dict:
        """The row's metrics: name -> record (a dict, or a number such as ``eval_seconds``)."""
        return self.record.get("metrics") or {}

    def __getitem__(self, metric: str):
        try:
            return self.metrics[metric]
        except KeyError:
            raise KeyError(f"{self.name} has no metric {metric!r}; it has {', '.join(self.metrics)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __dir__(self):
        return sorted(set(super().__dir__()) | {m for m in self.metrics if m.isidentifier()})

    def value(self, metric: str) -> float:
        """The metric's ``value`` as a float (NaN when the metric has none).

        Raises:
            KeyError: the row has no such metric.
        """
        v = self[metric]
        v = v.get("value") if isinstance(v, Mapping) else v
        return float(v) if _number(v) else math.nan

    def flat(self) -> dict[str, Any]:
        """The row as one flat dict: ``run`` (when set), ``model``, ``kind``, ``family``, then :func:`flatten`."""
        ids = {"run": self.run} if self.run is not None else {}
        ids.update(model=self.name, kind=self.record.get("kind"), family=self.record.get("family"))
        return {**ids, **flatten(self.metrics)}

    def __repr__(self) -> str:
        shown = ", ".join(f"{m}={self.value(m):.4g}" for m in list(self.metrics)[:4]
                          if isinstance(self.metrics[m], Mapping) and "value" in self.metrics[m]
                          or _number(self.metrics[m]))
        return f"<{type(self).__name__} {self.name}: {shown}{', ...' if len(self) > 4 else ''}>"


class Table(_ReadOnlyItems):
    """Rows in file order (``real`` last), indexed by name (``run/model`` in a :func:`genbench.compare` table):
    ``table["vae"]``, ``table.vae``, ``for name in table``, ``table.rows``; :meth:`to_frame` for pandas."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[Row]):
        object.__setattr__(self, "rows", list(rows))

    @classmethod
    def from_summary(cls, summary: Mapping, run: str | None = None) -> "Table":
        """The rows of a ``metrics.json`` mapping (its ``models`` list)."""
        return cls([Row(r, run) for r in summary.get("models") or []])

    def _key(self, row: Row) -> str:
        return f"{row.run}/{row.name}" if row.run is not None else row.name

    def __getitem__(self, name: str) -> Row:
        for r in self.rows:
            if self._key(r) == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {', '.join(self)}")

    def __iter__(self) -> Iterator[str]:
        return (self._key(r) for r in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __dir__(self):
        return sorted(set(super().__dir__()) | {k for k in self if k.isidentifier()})

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per row (:meth:`Row.flat`), every dict with the same keys (NaN where a row lacks one)."""
        flats = [r.flat() for r in self.rows]
        cols = list(dict.fromkeys(k for f in flats for k in f))
        ids = [c for c in ID_COLUMNS if c in cols]
        cols = ids + [c for c in cols if c not in ids]
        return [{c: f.get(c, math.nan) for c in cols} for f in flats]

    def to_frame(self):
        """A pandas DataFrame, one line per row (module docstring for the columns).

        Raises:
            GenbenchError: pandas is not installed (one line naming ``pip install 'genbench[notebook]'``).
        """
        pd = _pandas()
        recs = self.to_records()
        return pd.DataFrame(recs, columns=list(recs[0]) if recs else list(ID_COLUMNS[1:]))

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {', '.join(self)}>"


class Scores(Row):
    """What :func:`genbench.score` returns: the scored row (attribute and dict access to its metrics:
    ``s.fid_inception["value"]``, ``s["fid_inception"]``, ``s.value("fid_inception")``), with ``table`` (every row
    of the summary, the real-data floor ``real`` included), ``real`` (that row), ``summary`` (the whole
    ``metrics.json`` mapping: evaluation settings, classifier, provenance), ``out`` (the output folder, None when it
    was temporary) and ``report`` (``report/index.html``, or None)."""

    __slots__ = ("table", "summary", "out", "report")

    def __init__(self, summary: Mapping, name: str, out: Path | None = None, report: Path | None = None):
        table = Table.from_summary(summary)
        super().__init__(table[name].record)
        for k, v in (("table", table), ("summary", dict(summary)), ("out", out), ("report", report)):
            object.__setattr__(self, k, v)

    @property
    def real(self) -> Row:
        """The real-data floor row (held-out real images scored like the samples)."""
        return self.table["real"]

    def to_records(self) -> list[dict[str, Any]]:
        """:meth:`Table.to_records` of every row (the scored one and ``real``)."""
        return self.table.to_records()

    def to_frame(self):
        """:meth:`Table.to_frame` of every row (the scored one and ``real``).

        Raises:
            GenbenchError: pandas is not installed.
        """
        return self.table.to_frame()


class RunResult(Mapping):
    """A finished study folder (what :func:`genbench.run` and :func:`genbench.load_run` return): ``study_dir``,
    ``metrics_path`` (``metrics.json``), ``report`` (``report/index.html``, or None when the folder has none),
    ``summary`` (the ``metrics.json`` mapping) and ``metrics`` (a :class:`Table`). Indexing goes to the table:
    ``result["vae"]`` / ``result.vae`` is that model's :class:`Row`, ``result.vae.fid_inception["value"]`` a number;
    ``to_frame()`` one line per row."""

    __slots__ = ("study_dir", "metrics_path", "report", "summary", "metrics")

    def __init__(self, study_dir: Path, summary: Mapping, report: Path | None = None):
        study_dir = Path(study_dir)
        for k, v in (("study_dir", study_dir), ("metrics_path", study_dir / "metrics.json"), ("report", report),
                     ("summary", dict(summary)), ("metrics", Table.from_summary(summary))):
            object.__setattr__(self, k, v)

    @property
    def name(self) -> str:
        """The study's name (``metrics.json``'s ``study``)."""
        return str(self.summary.get("study"))

    def __getitem__(self, model: str) -> Row:
        return self.metrics[model]

    def __getattr__(self, model: str) -> Row:
        if model.startswith("_"):
            raise AttributeError(model)
        return getattr(self.metrics, model)

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(dir(self.metrics)))

    def to_records(self) -> list[dict[str, Any]]:
        return self.metrics.to_records()

    def to_frame(self):
        """:meth:`Table.to_frame` of the study's rows.

        Raises:
            GenbenchError: pandas is not installed.
        """
        return self.metrics.to_frame()

    def __repr__(self) -> str:
        return f"<RunResult {self.name} at {self.study_dir}: {', '.join(self)}>"
