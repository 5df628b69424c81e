"""One place per idea (issue 25): a Family and a Metric registered from outside genbench reach training,
metrics.json and the report with no other edit; the built-in tables are the registries' contents."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from genbench.studies.catalog import resolve_study


# -- families -----------------------------------------------------------------------------------------------------
def test_every_builtin_kind_resolves_to_its_registered_family():
    from genbench.families import builtin_kinds, get_family, resolve_kind

    want = {"vae": "vae", "gan": "gan", "cgan": "gan", "dcgan": "gan", "sngan": "gan", "ddpm": "diffusion", "flow": "flow",
            "shortcut": "shortcut"}
    assert {k: f for k, (_, f) in builtin_kinds().items()} == want
    for kind, fam in want.items():
        mk = resolve_kind(kind)
        assert mk.family == fam and mk.spec is get_family(fam) and mk.cls.genbench_family == fam
    assert get_family("gan").stability_keys == ("loss_g", "loss_d")
    assert get_family("flow").samplers.evals_per_step == {"heun": 2}
    assert get_family("vae").samplers is None


def test_registering_a_family_twice_or_under_a_taken_kind_is_refused():
    from genbench.errors import GenbenchError
    from genbench.families import Family, get_family, register_family

    gan = get_family("gan")
    assert register_family(gan) is gan  # the same object again: a module imported twice
    with pytest.raises(GenbenchError, match="registered already"):
        register_family(dataclasses.replace(gan))
    with pytest.raises(GenbenchError, match="belong to another family"):
        register_family(Family(name="other", doc="", step=gan.step, kinds={"gan": object}))
    with pytest.raises(GenbenchError, match="unknown model family 'nope'"):
        get_family("nope")


class _Affine(torch.nn.Module):
    """A one-parameter-per-pixel model of a toy family: x ~ mu + noise; sample() draws around mu."""

    genbench_family = "toy_affine"

    def __init__(self, *, image_shape=(1, 28, 28)):
        super().__init__()
        self.num_classes = 0
        self.mu = torch.nn.Parameter(torch.zeros(image_shape))

    @torch.no_grad()
    def sample(self, n, y=None, generator=None):
        return (self.mu + 0.1 * torch.randn((n, *self.mu.shape), generator=generator)).clamp(-1, 1)


def _toy_step(model, opts, x, y, *, generator, autocast, ddp=None):
    """Mean matching with an L1 term: logs the two named terms the toy family declares as its loss keys."""
    from genbench.training.objectives import checked_values

    with autocast():
        l2 = (x.mean(0) - model.mu).pow(2).mean()
        l1 = (x.mean(0) - model.mu).abs().mean()
        losses = {"loss": l2 + l1, "l2": l2, "l1": l1}
    opts["model"].zero_grad(set_to_none=True)
    losses["loss"].backward()
    logs = checked_values(losses, opts["model"], "loss", ddp)
    opts["model"].step()
    return logs


def test_a_toy_family_registered_from_tests_drives_the_training_loop(tmp_path, mnist):
    """One Family object, one registration: the loop trains with its step and parts, history.jsonl holds its loss
    keys, the stability metric reads its stability keys, and drawing goes through the model's own sample()."""
    from genbench.families import Family, draw, get_family, register_family, resolve_kind
    from genbench.io import read_jsonl
    from genbench.metrics.stability import stability
    from genbench.studies.config import ModelConfig
    from genbench.training.loop import train

    fam = register_family(Family(name="toy_affine", doc="toy", step=_toy_step, loss_keys=("l2", "l1"),
                                 stability_keys=("l1",), methods=("sample",)), replace=True)
    kind = f"{__name__}:_Affine"
    resolve_kind.cache_clear()
    assert resolve_kind(kind).spec is fam
    cfg = ModelConfig(name="toy", kind=kind, params={"image_shape": [1, 28, 28]}, optimizer={"lr": 1e-2}, epochs=1,
                      batch_size=32, seed=0, precision="fp32", dataset="mnist", log_every=1)
    data = mnist["train"].subset(slice(0, 256))
    summary = train(cfg, data, tmp_path / "toy")
    assert summary["steps"] == 8
    hist = [r for r in read_jsonl(tmp_path / "toy" / "history.jsonl") if r["kind"] == "step"]
    assert len(hist) == 8 and all({"l2", "l1"} <= set(r) for r in hist)
    assert hist[-1]["loss"] < hist[0]["loss"]
    st = stability(hist, get_family("toy_affine").stability_keys)
    assert list(st["per_loss"]) == ["l1"]
    model = resolve_kind(kind).build({"image_shape": [1, 28, 28]})
    x = draw(model, 3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 28, 28)


# -- metrics ------------------------------------------------------------------------------------------------------
def _dummy_metric():
    from genbench.metrics.registry import Column, Metric

    def compute(x):
        v = x.images.float().mean().item() / 255
        return {"value": v, "std": 0.0, "n_generated": x.n, "direction": "none"}

    return Metric("mean_intensity", ("images",), compute, "none", "none",
                  columns=(Column("mean intensity (N={n})", order=5),), doc="mean pixel value in [0, 1]")


def test_evaluate_images_iterates_the_registry_and_extracts_only_what_is_needed(monkeypatch):
    """With only a metric that needs the images, evaluate_images computes it and touches neither the classifier
    nor Inception (the context has neither)."""
    from genbench.metrics import registry
    from genbench.metrics.evaluate import EvalContext, evaluate_images

    m = _dummy_metric()
    only = registry.Registry("metric", registry.Metric, "Metric", "register_metric")
    only.add(m)
    monkeypatch.setattr(registry, "_METRICS", only)
    images = torch.full((6, 1, 8, 8), 51, dtype=torch.uint8)
    ctx = EvalContext(test=None, train=None, classifier=None, classifier_info={},
                      eval_cfg=SimpleNamespace(n_inception=6))
    out = evaluate_images(ctx, images, None, what="t")
    assert set(out) == {"mean_intensity", "eval_seconds"} and out["mean_intensity"]["value"] == pytest.approx(0.2)


def test_the_headline_columns_come_from_the_metric_specs():
    """The report's table: a registered metric with a Column appears in the header (N from the real row) and in
    every row, values aligned with their sort values; built-in columns keep their order."""
    from genbench.metrics.registry import register_metric, unregister_metric
    from genbench.report.tables import comparison_table

    register_metric(_dummy_metric())
    try:
        recs = [{"model": name, "family": "vae", "metrics": {"mean_intensity": {"value": v, "std": 0.01,
                                                                                 "n_generated": 100}}}
                for name, v in (("a", 0.25), ("real", 0.5))]
        header, rows, vals = comparison_table(recs[:1], recs[1], {})
    finally:
        unregister_metric("mean_intensity")
    i = header.index("mean intensity (N=100)")
    assert header[:3] == ["model", "family", "mean intensity (N=100)"] and header[3].startswith("FID↓ Inception")
    assert rows[0][i] == "0.25 ± 0.01" and vals[0][i] == 0.25 and vals[1][i] == 0.5
    assert rows[1][0] == "real (floor)" and len({len(header), len(rows[0]), len(vals[1])}) == 1


@pytest.mark.slow
def test_a_registered_metric_reaches_metrics_json_and_the_report(smoke_study, tmp_path, monkeypatch, capsys):
    """`genbench evaluate` and `genbench report` on a copy of the smoke study, with one more metric registered
    in-process: its value is in metrics.json for the model and the real row, and its column in the report."""
    from genbench.cli import app
    from genbench.metrics.registry import register_metric, unregister_metric

    study = tmp_path / "study"
    shutil.copytree(smoke_study, study)
    register_metric(_dummy_metric())
    try:
        with contextlib.suppress(SystemExit):
            app(["--threads", "2", "evaluate", str(study / "vae")], standalone_mode=False)
    finally:
        unregister_metric("mean_intensity")
    recs = {r["model"]: r for r in json.loads((study / "metrics.json").read_text())["models"]}
    for name in ("vae", "real"):
        v = recs[name]["metrics"]["mean_intensity"]["value"]
        assert np.isfinite(v) and 0 < v < 1
    html = (study / "report" / "index.html").read_text()
    assert "mean intensity (N=" in html


# -- experiments ----------------------------------------------------------------------------------------------
def test_a_registered_experiment_is_validated_run_and_rendered_from_its_one_spec(tmp_path):
    """An Experiment registered from tests: its options are checked by the study schema (an unknown option is one
    line), the experiments stage runs it and saves its result, and the report renders that result with the spec's
    title and render function: no other table names it."""
    from genbench.errors import GenbenchError
    from genbench.report.experiments import render_experiments
    from genbench.report.page import Page
    from genbench.studies.config import load_study
    from genbench.studies.experiment_spec import Experiment, register_experiment, unregister_experiment
    from genbench.studies.experiments import ExperimentContext, run_experiments
    from genbench.studies.schema import _int

    calls = []

    def run(ctx, opts):
        calls.append(opts)
        return {"answer": 6 * opts["k"]}, {"grid": np.zeros((2, 2), np.uint8)}

    def render(parts, res, arrays, figdir, rel, study_dir, info):
        parts.append(f"<p>toy answer {res['answer']} on {arrays['grid'].shape}</p>")

    register_experiment(Experiment("toy_probe", "Toy probe", {"k": _int(1, 10, 7)}, run, render, takes="any"))
    try:
        raw = yaml.safe_load(resolve_study("mnist_four").read_text())
        raw["experiments"] = {"toy_probe": {"k": 3}}
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump(raw))
        cfg = load_study(path, "smoke")
        assert cfg.experiments == {"toy_probe": {"k": 3}}
        raw["experiments"] = {"toy_probe": {"kk": 3}}
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(GenbenchError, match=r"toy_probe.*kk"):
            load_study(path, "smoke")
        ctx = ExperimentContext(study=cfg, study_dir=tmp_path / "study", splits={}, eval_ctx=None, models={},
                                banks={}, records={}, log=lambda *_: None)
        out = run_experiments(ctx)
        assert calls == [{"k": 3}] and out["toy_probe"]["skipped"] is False
        assert json.loads((tmp_path / "study/experiments/toy_probe/result.json").read_text())["answer"] == 18
        page = Page("t")
        render_experiments(page, tmp_path / "study", {"experiments": out}, tmp_path, str)
        html = page.render("")
        assert "Toy probe" in html and "toy answer 18 on (2, 2)" in html
    finally:
        unregister_experiment("toy_probe")


# -- entry points -------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Thing:
    name: str


THING = _Thing("thing_a")
OTHER = _Thing("thing_b")


def _install(site, dist: str, line: str) -> None:
    """A dist-info folder in ``site`` with one ``genbench_test.things`` entry point (what pip writes; ``dist`` has
    no dash: the folder name is split at the first one)."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[genbench_test.things]\n{line}\n")


def test_entry_points_are_read_once_until_a_package_is_installed(tmp_path, monkeypatch):
    """The registry reads every installed package's metadata once; again only when sys.path or a directory on it
    changed (a package installed there), so a plugin installed later is still found, and a removed spec comes back."""
    import importlib.metadata
    import os

    from genbench.runtime.registry import Registry

    scans = []
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **k: scans.append(k) or real(**k))
    reg = Registry("thing", _Thing, "_Thing", "register_thing", entry_point_group="genbench_test.things")
    assert reg.find("thing_a") is None and reg.find("thing_a") is None and reg.names() == ()
    assert len(scans) == 1  # nothing changed between the lookups: one scan
    site = tmp_path / "site"
    site.mkdir()
    _install(site, "thing_a", "thing_a = test_registries:THING")
    monkeypatch.syspath_prepend(str(site))
    assert reg.find("thing_a") is THING and len(scans) == 2  # sys.path changed
    assert reg.find("thing_b") is None and len(scans) == 2
    _install(site, "thing_b", "thing_b = test_registries:OTHER")
    st = os.stat(site)
    os.utime(site, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the install a second later (timestamps are coarse)
    assert reg.find("thing_b") is OTHER and len(scans) == 3  # a directory on sys.path changed
    reg.remove("thing_a")
    assert reg.find("thing_a") is THING and len(scans) == 4
