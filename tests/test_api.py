"""The Python API (genbench.score / run / load_run / compare), ``--set`` study overrides, and the PNG / .npz export
of ``genbench sample`` (issue 30).

Fast tests read the committed finished study folder (tests/fixtures/run_schema2/byo-mnist), stub the pipeline's
stages where a command would start work, and train one tiny VAE for one step on 64 random images. The end-to-end
checks (scoring real MNIST through Inception, a smoke study) are marked slow."""

import json
import shutil
import sys
import types
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import yaml

import genbench
from conftest import cli_in_process, refused
from genbench.errors import GenbenchError

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "run_schema2" / "byo-mnist"


class Reached(Exception):
    """Raised by a stubbed stage: the command got that far."""


def _reached(*a, **k):
    raise Reached()


def _refused(*args, needle: str = "") -> None:
    """``genbench ARGS`` in this process: refused in one line containing ``needle``."""
    code, lines, _ = cli_in_process(*args, reached=Reached)
    refused(code, lines, needle)


def _one_line(e: BaseException, needle: str = "") -> str:
    msg = str(e)
    assert "\n" not in msg and needle in msg, msg
    return msg


# --------------------------------------------------------------------------------------------------------------
# Overrides: parsing, schema, profiles, records


@pytest.mark.parametrize("text,value", [("1e-4", 1e-4), ("5E3", 5000.0), ("+2.", 2.0), ("0.5", 0.5), ("7", 7),
                                        ("-3", -3), ("true", True), ("[1, 2]", [1, 2]), ("null", None), ("", None),
                                        ("'1e-4'", "1e-4"), ("ddim", "ddim"), ("{a: 1}", {"a": 1})])
def test_override_values_parse_as_yaml_with_exponent_floats(text, value):
    from genbench.studies.overrides import parse_value

    got = parse_value(text)
    assert got == value and type(got) is type(value), (text, got)


@pytest.mark.parametrize("text,needle", [("x", "key.path=value"), ("=3", "key.path=value"), ("a..b=1", "dotted key"),
                                         ("a.b=[1", "not valid YAML"), ("a b=1", "key.path=value")])
def test_malformed_overrides_are_one_line(text, needle):
    from genbench.studies.overrides import parse_override

    with pytest.raises(GenbenchError) as e:
        parse_override(text)
    assert _one_line(e.value, needle).startswith(f"--set {text}")


def test_overrides_replace_the_active_profile_value_and_are_recorded():
    from genbench.studies.config import load_study

    cfg = load_study("mnist_four", "quick", ["models.gan.optimizer.lr=1e-4", "evaluation.n_samples=500",
                                             "evaluation.n_inception=400", "models.vae.epochs.quick=3"])
    gan, vae = ({m.name: m for m in cfg.models}[k] for k in ("gan", "vae"))
    assert gan.optimizer["lr"] == 1e-4 and gan.optimizer["betas"] == [0.5, 0.999]  # the rest of the section stays
    assert (cfg.evaluation.n_samples, cfg.evaluation.n_inception, vae.epochs) == (500, 400, 3)
    assert cfg.raw["overrides"] == ["models.gan.optimizer.lr=1e-4", "evaluation.n_samples=500",
                                    "evaluation.n_inception=400", "models.vae.epochs.quick=3"]
    assert cfg.raw["evaluation"]["n_samples"] == 500  # the resolved mapping written to study.yaml
    plain = load_study("mnist_four", "quick")
    assert "overrides" not in plain.raw and plain.evaluation.n_samples == 2500


def test_override_enters_a_per_profile_mapping_at_the_active_profile(tmp_path):
    from genbench.studies.config import load_study

    doc = yaml.safe_load((ROOT / "studies" / "mnist_four.yaml").read_text())
    doc["models"]["gan"]["optimizer"] = {"smoke": {"lr": 1e-3}, "quick": {"lr": 2e-4, "betas": [0.5, 0.999]},
                                         "full": {"lr": 1e-4}}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    cfg = load_study(p, "quick", ["models.gan.optimizer.lr=3e-4"])
    assert {m.name: m for m in cfg.models}["gan"].optimizer["lr"] == 3e-4
    assert {m.name: m for m in cfg.models}["gan"].optimizer["betas"] == [0.5, 0.999]
    smoke = load_study(p, "smoke", ["models.gan.optimizer.lr.smoke=5e-4", "seed=7"])
    assert {m.name: m for m in smoke.models}["gan"].optimizer["lr"] == 5e-4 and smoke.seed == 7


@pytest.mark.parametrize("override,needle", [
    ("evaluation.n_samplez=500", "did you mean `n_samples`?"),
    ("models.gan.optimizer.lrr=1e-4", "did you mean `lr`?"),
    ("modles.gan.optimizer.lr=1e-4", "did you mean `models`?"),
    ("models.ganx.optimizer.lr=1e-4", "did you mean `gan`?"),
    ("models.vae.params.latent_dimm=3", "did you mean `latent_dim`?"),
    ("models.gan.optimizer.lr=2", "out of range"),
    ("models.gan.optimizer.lr=fast", "expected float"),
    ("evaluation.n_samples=100", "must not exceed n_samples"),
    ("models.vae.epochs.full=5", "this run uses profile quick"),
    ("seed.x=1", "not a mapping"),
    ("models.ddpm.params.widths.0=8", "set the whole list"),
])
def test_bad_override_is_one_line_naming_it(override, needle):
    from genbench.studies.config import load_study

    with pytest.raises(GenbenchError) as e:
        load_study("mnist_four", "quick", [override])
    assert _one_line(e.value, needle).startswith(f"--set {override}:"), str(e.value)


def test_run_set_through_the_cli_validates_and_reaches_the_stage_with_the_overrides(tmp_path):
    seen = {}

    def stub(cfg, out, **k):
        seen["cfg"] = cfg
        raise Reached()

    with mock.patch("genbench.studies.stages.run_study", stub):
        code, lines, _ = cli_in_process("--threads", "1", "run", "--profile", "smoke", "--out", str(tmp_path),
                                        "--set", "models.gan.optimizer.lr=1e-4", "--set", "evaluation.n_samples=40",
                                        reached=Reached)
        assert code == "reached", lines
        _refused("run", "--out", str(tmp_path), "--set", "evaluation.n_samplez=40", needle="did you mean `n_samples`?")
        _refused("run", "--out", str(tmp_path), "--set", "evaluation.n_samples", needle="key.path=value")
    cfg = seen["cfg"]
    assert cfg.evaluation.n_samples == 40 and {m.name: m for m in cfg.models}["gan"].optimizer["lr"] == 1e-4
    assert cfg.raw["overrides"] == ["models.gan.optimizer.lr=1e-4", "evaluation.n_samples=40"]
    assert not any(tmp_path.iterdir())  # nothing written before the stage


def test_train_set_writes_the_overrides_into_study_yaml(tmp_path):
    out = tmp_path / "mnist-four" / "vae"
    with mock.patch("genbench.studies.runner.prepare_data", _reached):
        code, lines, _ = cli_in_process("--threads", "1", "train", "vae", "--profile", "smoke", "--out", str(out),
                                        "--set", "models.vae.optimizer.lr=5e-4", reached=Reached)
    assert code == "reached", lines
    written = yaml.safe_load((tmp_path / "mnist-four" / "study.yaml").read_text())
    assert written["overrides"] == ["models.vae.optimizer.lr=5e-4"] and written["profile"] == "smoke"
    assert written["models"]["vae"]["optimizer"]["lr"] == 5e-4
    from genbench.studies.config import load_run_study

    again = load_run_study(tmp_path / "mnist-four" / "study.yaml")  # the run folder's study.yaml reads back
    assert again.raw["overrides"] == ["models.vae.optimizer.lr=5e-4"]


def test_overrides_go_into_the_provenance_of_metrics_json(tmp_path):
    from genbench.studies.config import load_study
    from genbench.studies.runner import write_summary

    cfg = load_study("mnist_four", "smoke", ["evaluation.n_samples=40"])
    ctx = types.SimpleNamespace(train=range(3), test=range(2), classifier_info={}, _inception=None)
    summary = write_summary(tmp_path, cfg, ctx, [{"model": "real", "metrics": {}}])
    assert summary["provenance"]["overrides"] == ["evaluation.n_samples=40"]
    assert json.loads((tmp_path / "metrics.json").read_text())["provenance"]["overrides"] == ["evaluation.n_samples=40"]


def test_api_run_shares_the_cli_path(tmp_path):
    seen = {}

    def stub(cfg, out, **k):
        seen.update(cfg=cfg, out=out, **k)
        raise Reached()

    with mock.patch("genbench.studies.stages.run_study", stub), pytest.raises(Reached):
        genbench.run("mnist_four", profile="smoke", out=tmp_path, overrides=["evaluation.n_samples=40"], resume=True,
                     budget="images=512")
    assert seen["cfg"].evaluation.n_samples == 40 and seen["resume"] is True and seen["out"] == tmp_path
    assert {m.budget["value"] for m in seen["cfg"].models} == {512} and seen["report"] is not None
    with pytest.raises(TypeError, match="epochz"):
        genbench.run("mnist_four", epochz=3)
    with pytest.raises(GenbenchError, match="contradict"):
        genbench.run("mnist_four", overwrite=True, resume=True)
    with mock.patch("genbench.studies.stages.run_study", stub), pytest.raises(GenbenchError, match="runs one"):
        genbench.run("mnist_four", profile="smoke", out=tmp_path, overrides=["seeds=[1, 2]"])


# --------------------------------------------------------------------------------------------------------------
# Results: load_run, Scores, RunResult, compare, to_frame


def test_import_genbench_stays_light_and_exports_the_api():
    import subprocess

    code = ("import sys, genbench; assert 'torch' not in sys.modules and 'genbench.api' not in sys.modules; "
            "f = genbench.load_run; assert 'genbench.api' in sys.modules and 'torch' not in sys.modules; "
            "assert {'score', 'run', 'load_run', 'compare'} <= set(dir(genbench)); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "ok", r.stderr[-2000:]
    with pytest.raises(AttributeError):
        genbench.no_such_name


def test_load_run_reads_a_finished_study_folder():
    r = genbench.load_run(FIXTURE)
    assert r.study_dir == FIXTURE and r.metrics_path == FIXTURE / "metrics.json" and r.report is None
    assert r.name == "byo-mnist" and list(r) == ["vae", "mlp_vae", "gauss", "moments", "real"]
    assert r.vae.fid_inception["value"] == pytest.approx(480.152760307648)
    assert r["vae"]["fid_inception"] is r.vae.fid_inception and r.vae.value("is") == pytest.approx(1.0000010115329967)
    assert r.real.record["model"] == "real" and "fid_inception" in r.real and len(r.vae) == len(r.vae.metrics)
    assert genbench.load_run(FIXTURE / "metrics.json").summary == r.summary
    with pytest.raises(KeyError, match="no row 'vea'"):
        r["vea"]
    with pytest.raises(AttributeError, match="no metric 'fid'"):
        r.vae.fid
    with pytest.raises(AttributeError, match="read-only"):
        r.vae.name = "x"


def test_load_run_refuses_what_genbench_did_not_write(tmp_path):
    with pytest.raises(GenbenchError) as e:
        genbench.load_run(tmp_path / "absent")
    _one_line(e.value, "not a folder")
    with pytest.raises(GenbenchError) as e:
        genbench.load_run(tmp_path)
    _one_line(e.value, "no metrics.json")
    for doc in ("not json", json.dumps([1, 2]), json.dumps({"schema_version": 2, "models": ["real", "x"]}),
                json.dumps({"schema_version": 2, "study": "s", "models": [{"model": "real", "metrics": 3},
                                                                          {"model": "vae", "metrics": {}}]}),
                json.dumps({"schema_version": 1, "models": []})):
        (tmp_path / "metrics.json").write_text(doc)
        with pytest.raises(GenbenchError) as e:
            genbench.load_run(tmp_path)
        _one_line(e.value, str(tmp_path / "metrics.json"))


def test_to_records_flattens_values_and_spreads():
    recs = genbench.load_run(FIXTURE).to_records()
    assert [r["model"] for r in recs] == ["vae", "mlp_vae", "gauss", "moments", "real"]
    assert len({tuple(r) for r in recs}) == 1  # every row has the same columns
    vae = recs[0]
    assert list(vae)[:3] == ["model", "kind", "family"]
    assert vae["fid_inception"] == pytest.approx(480.152760307648) and vae["fid_inception_std"] > 0
    assert "prdc_inception_precision" in vae and "prdc_inception_precision_std" in vae
    assert vae["efficiency_train_seconds"] > 0 and vae["elbo"] < 0
    assert np.isnan(recs[-1]["elbo"])  # real has no ELBO: NaN, not a missing key


def test_to_frame_builds_a_dataframe_and_needs_pandas(monkeypatch):
    r = genbench.load_run(FIXTURE)
    made = {}

    class FakeFrame:
        def __init__(self, rows, columns=None):
            made.update(rows=rows, columns=columns)

    monkeypatch.setitem(sys.modules, "pandas", types.SimpleNamespace(DataFrame=FakeFrame))
    assert isinstance(r.to_frame(), FakeFrame)
    assert made["rows"] == r.to_records() and made["columns"][:3] == ["model", "kind", "family"]
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    for obj in (r, r.metrics, genbench.compare([FIXTURE]), genbench.Scores(r.summary, "vae")):
        with pytest.raises(GenbenchError) as e:
            obj.to_frame()
        _one_line(e.value, "pip install 'genbench[notebook]'")


def test_to_frame_with_pandas():
    pd = pytest.importorskip("pandas")
    df = genbench.load_run(FIXTURE).to_frame()
    assert isinstance(df, pd.DataFrame) and list(df["model"]) == ["vae", "mlp_vae", "gauss", "moments", "real"]
    assert df.loc[0, "fid_inception"] == pytest.approx(480.152760307648)
    c = genbench.compare({"a": FIXTURE, "b": FIXTURE}).to_frame()
    assert list(c.columns[:2]) == ["run", "model"] and len(c) == 10


def test_scores_give_the_scored_row_and_the_whole_summary():
    summary = json.loads((FIXTURE / "metrics.json").read_text())
    s = genbench.Scores(summary, "gauss", out=None)
    assert s.name == "gauss" and s.fid_inception["value"] == s["fid_inception"]["value"] == s.value("fid_inception")
    assert s.real.name == "real" and list(s.table) == ["vae", "mlp_vae", "gauss", "moments", "real"]
    assert s.summary["evaluation"]["n_samples"] == 100 and s.out is None and s.report is None
    assert [r["model"] for r in s.to_records()] == list(s.table)
    assert "fid_inception" in dir(s) and "gauss" in repr(s)


def test_compare_names_each_run(tmp_path):
    a, b = tmp_path / "a" / "byo-mnist", tmp_path / "b" / "byo-mnist"
    shutil.copytree(FIXTURE, a)
    shutil.copytree(FIXTURE, b)
    t = genbench.compare([a, genbench.load_run(b)])
    assert len(t) == 10 and [r.run for r in t.rows][::5] == ["a/byo-mnist", "b/byo-mnist"]
    assert t["b/byo-mnist/vae"].value("is") == pytest.approx(1.0000010115329967)
    recs = t.to_records()
    assert list(recs[0])[:2] == ["run", "model"] and recs[5]["run"] == "b/byo-mnist"
    named = genbench.compare({"lr=1e-3": a, "lr=1e-4": b})
    assert [r.run for r in named.rows][::5] == ["lr=1e-3", "lr=1e-4"]
    assert [r.run for r in genbench.compare([a, a]).rows][::5] == ["0:byo-mnist", "1:byo-mnist"]
    with pytest.raises(GenbenchError, match="at least one run"):
        genbench.compare([])
    with pytest.raises(GenbenchError, match="no metrics.json"):
        genbench.compare([a, tmp_path])


# --------------------------------------------------------------------------------------------------------------
# score(): images in memory (the refusals come before any data is loaded)


@pytest.mark.parametrize("images,labels,needle", [
    (torch.zeros(30, 1, 28, 28), None, "not uint8"),
    (np.zeros((30, 1, 32, 32), np.uint8), None, "resize them to 28x28"),
    (np.zeros((30, 2, 28, 28), np.uint8), None, "(N, H, W), (N, C, H, W) or (N, H, W, C)"),
    ([[1, 2]], None, "give a uint8 numpy array or torch tensor"),
    (np.zeros((30, 28, 28), np.uint8), np.arange(29), "labels of shape (30,)"),
    (np.zeros((30, 28, 28), np.uint8), np.full(30, 12), "outside mnist's classes"),
    (np.zeros((10, 28, 28), np.uint8), None, "fewer than N = 100"),
])
def test_score_refuses_bad_arrays_in_one_line(images, labels, needle, tmp_path):
    with mock.patch("genbench.studies.runner.prepare_data", _reached), pytest.raises(GenbenchError) as e:
        genbench.score(images, "mnist", profile="smoke", labels=labels)
    _one_line(e.value, needle)
    with pytest.raises(GenbenchError, match="labels go with images given in memory"):
        genbench.score(tmp_path, "mnist", profile="smoke", labels=np.zeros(3, np.int64), out=tmp_path / "o")
    with pytest.raises(GenbenchError, match="give out=FOLDER"):
        genbench.score(np.zeros((30, 28, 28), np.uint8), "mnist", report=True)


def test_array_images_match_the_npz_reader(tmp_path):
    from genbench.data.images import array_images, read_images

    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    y = np.arange(6)
    np.savez(tmp_path / "s.npz", x=x, y=y)
    a, la, src = array_images(torch.from_numpy(x), torch.from_numpy(y), channels=3)
    b, lb, _ = read_images(tmp_path / "s.npz", channels=3)
    assert a.shape == (6, 3, 28, 28) and torch.equal(a, b) and torch.equal(la, lb) and src["format"] == "array"


# --------------------------------------------------------------------------------------------------------------
# Export: PNG folder and .npz


def _images(n, c=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_folder_round_trip_in_bank_order(tmp_path, channels):
    from genbench.data.images import read_images
    from genbench.sampling.export import write_npz, write_png_folder

    x, y = _images(12, channels), np.arange(12) % 10
    d = write_png_folder(tmp_path / "pngs", x, y, manifest={"source": "test"})
    names = sorted(p.name for p in d.iterdir())
    assert names == [f"{i:06d}.png" for i in range(12)] + ["export.json", "labels.csv"]
    assert (d / "labels.csv").read_text().splitlines()[:3] == ["filename,label", "000000.png,0", "000001.png,1"]
    assert json.loads((d / "export.json").read_text())["complete"] is True
    back, labels, _ = read_images(d, channels=channels)  # flat folder in name (= bank) order, labels.csv's labels
    assert np.array_equal(back.numpy(), x) and np.array_equal(labels.numpy(), y)
    (d / "labels.csv").unlink()
    assert read_images(d, channels=channels)[1] is None  # without labels.csv: unlabelled
    write_npz(tmp_path / "s.npz", x, y)
    bx, by, _ = read_images(tmp_path / "s.npz", channels=channels)
    assert np.array_equal(bx.numpy(), x) and np.array_equal(by.numpy(), y)


def test_png_export_refuses_foreign_folders_and_cleans_its_own(tmp_path):
    from genbench.sampling.export import png_names, write_npz, write_png_folder

    d = tmp_path / "pngs"
    write_png_folder(d, _images(12))
    write_png_folder(d, _images(3, seed=1))  # again, smaller: none of the 12 is left behind
    assert sorted(p.name for p in d.iterdir()) == ["000000.png", "000001.png", "000002.png", "export.json"]
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(GenbenchError) as e:
        write_png_folder(foreign, _images(2))
    _one_line(e.value, "genbench did not write")
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]
    with pytest.raises(GenbenchError, match="ending in .npz"):
        write_npz(tmp_path / "s.png", _images(2))
    with pytest.raises(GenbenchError, match="uint8"):
        write_png_folder(tmp_path / "f", _images(2).astype(np.float32))
    assert png_names(1_000_001)[-1] == "1000000.png" and png_names(2) == ["000000.png", "000001.png"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A class-conditional VAE trained for one step on 64 random 28x28 images, with a sample bank of 20."""
    from genbench.data.base import Dataset
    from genbench.families import load_trained, sampler_info
    from genbench.sampling.bank import balanced_labels, generate, write_bank
    from genbench.studies.config import ModelConfig
    from genbench.training.loop import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("api_export")
    data = Dataset(torch.from_numpy(_images(64)), torch.arange(64) % 10, 10, "mnist")
    cfg = ModelConfig(name="cvae", kind="vae", params={"latent_dim": 2, "hidden": 16, "channels": 1, "image_size": 28,
                                                       "num_classes": 10},
                      optimizer={"lr": 1e-3}, epochs=1, batch_size=64, seed=0, precision="fp32", dataset="mnist",
                      conditional=True, log_every=1)
    train(cfg, data, root / "cvae")
    model, _ = load_trained(root / "cvae")
    labels = balanced_labels(20, 10)
    images, secs = generate(model, 20, seed=42, precision="fp32", batch=20, labels=labels, warmup=False)
    write_bank(root / "cvae", sampler_info(model), images, labels, seed=42, precision="fp32", gen_seconds_per_1000=secs)
    return root / "cvae"


def test_sample_exports_pngs_labels_and_npz(tiny_run, tmp_path):
    from genbench.data.images import read_images

    png, npz = tmp_path / "pngs", tmp_path / "s.npz"
    code, lines, out = cli_in_process("--threads", "1", "sample", str(tiny_run), "--n", "12", "--png", str(png),
                                      "--npz", str(npz))
    assert code == 0, lines
    assert "12 images" in out and not (tiny_run / "samples" / "sample.png").exists()  # no grid unless --out
    with np.load(npz) as z:
        x, y = z["x"], z["y"]
    assert x.shape == (12, 1, 28, 28) and x.dtype == np.uint8 and list(y) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    back, _, _ = read_images(png, channels=1)
    assert np.array_equal(back.numpy(), x)
    rows = (png / "labels.csv").read_text().splitlines()
    assert rows[0] == "filename,label" and rows[11] == "000010.png,0" and len(rows) == 13
    meta = json.loads((png / "export.json").read_text())
    assert meta["seed"] == 42 and meta["n"] == 12 and meta["source"] == str(tiny_run.resolve())
    grid = tmp_path / "g.png"  # --out with --png: both
    code, lines, _ = cli_in_process("--threads", "1", "sample", str(tiny_run), "--n", "3", "--label", "7", "--png",
                                    str(png), "--out", str(grid))
    assert code == 0 and grid.exists(), lines
    assert (png / "labels.csv").read_text().splitlines()[1:] == ["000000.png,7", "000001.png,7", "000002.png,7"]
    assert not (png / "000003.png").exists()


def test_sample_bank_exports_the_saved_bank(tiny_run, tmp_path):
    from genbench.data.images import read_images
    from genbench.sampling.bank import read_bank

    png = tmp_path / "bank_pngs"
    code, lines, out = cli_in_process("sample", str(tiny_run), "--bank", "--png", str(png))
    assert code == 0 and "20 images" in out, lines
    images, labels, _ = read_bank(tiny_run)
    back, _, _ = read_images(png, channels=1)
    assert torch.equal(back, images)
    assert [int(r.split(",")[1]) for r in (png / "labels.csv").read_text().splitlines()[1:]] == labels.tolist()


@pytest.mark.parametrize("args,needle", [
    (("--bank",), "add --png DIR"),
    (("--bank", "--png", "{tmp}/p", "--n", "5"), "drop --n"),
    (("--bank", "--png", "{tmp}/p", "--seed", "1"), "drop --seed"),
    (("--npz", "{tmp}/x.png"), "ending in .npz"),
    (("--png", "{tmp}/foreign"), "genbench did not write"),
])
def test_sample_export_refusals(args, needle, tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "mine.txt").write_text("x")
    with mock.patch("genbench.families.load_trained", _reached):  # every refusal comes before the model is loaded
        _refused("sample", "RUN", *(a.format(tmp=tmp_path) for a in args), needle=needle)


# --------------------------------------------------------------------------------------------------------------
# End to end (slow: Inception features of real MNIST, a smoke study)


@pytest.mark.slow
def test_score_an_in_memory_tensor_like_its_npz(mnist, tmp_path):
    test = mnist["test"]
    x, y = test.x[:200], test.y[:200]
    s = genbench.score(x, "mnist", profile="smoke", labels=y)
    assert s.name == "samples" and s.out is None and np.isfinite(s.value("fid_inception"))
    assert s.fid_inception["n_generated"] == 20 and s.real.name == "real" and "conditional_accuracy" in s
    np.savez(tmp_path / "s.npz", x=x.numpy(), y=y.numpy())
    t = genbench.score(tmp_path / "s.npz", "mnist", profile="smoke", out=tmp_path / "o", name="samples")
    for m in ("fid_inception", "fd_classifier", "is", "kid_inception", "conditional_accuracy"):
        assert s.value(m) == t.value(m), m


@pytest.mark.slow
def test_exported_pngs_score_as_the_bank(smoke_study, tmp_path):
    run = smoke_study / "vae"  # unconditional: the flat PNG folder and the .npz are both unlabelled
    png, npz = tmp_path / "pngs", tmp_path / "bank.npz"
    code, lines, _ = cli_in_process("--threads", "1", "sample", str(run), "--bank", "--png", str(png), "--npz", str(npz))
    assert code == 0, lines
    a = genbench.score(png, "mnist", profile="smoke", name="png")
    b = genbench.score(npz, "mnist", profile="smoke", name="npz")
    for m in ("fid_inception", "fd_classifier", "kid_inception", "is"):
        assert a.value(m) == pytest.approx(b.value(m), rel=1e-9, abs=0), m


@pytest.mark.slow
def test_api_run_with_overrides_end_to_end(tmp_path):
    r = genbench.run("mnist_four", profile="smoke", out=tmp_path, only=["vae"],
                     overrides=["models.vae.optimizer.lr=5e-4", "evaluation.n_samples=40"])
    assert r.study_dir == tmp_path / "mnist-four" and r.report is not None and r.report.exists()
    assert r.vae.fid_inception["n_generated"] == 20 and r.real.name == "real"
    assert r.summary["provenance"]["overrides"] == ["models.vae.optimizer.lr=5e-4", "evaluation.n_samples=40"]
    assert yaml.safe_load((r.study_dir / "study.yaml").read_text())["overrides"] == r.summary["provenance"]["overrides"]
    assert genbench.load_run(r.study_dir).summary == r.summary
