"""Issue 25, dataset step: adding a dataset is one module plus one registration line.

A toy ``DatasetSpec`` (64 random 1 x 8 x 8 images, two classes, built here: no download) is registered from the
test and then goes through the same doors as the built-in datasets: ``load_dataset`` / ``dataset_info``, the study
schema (``dataset: toy8`` and its own ``data:`` option), ``genbench data fetch`` (its ``fetch``), and the pipeline's
data stage. One test runs the whole smoke pipeline on it (tiny model, N = 20): the toy appears in training,
``metrics.json`` and the report with no other edit. Also: no import circle among the data modules (the two the
issue names dissolved into the specs).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from genbench.data import (
    DatasetSpec, Option, dataset_info, dataset_names, fetch_dataset, get_dataset, load_dataset, register_dataset,
    unregister_dataset)
from genbench.data.base import MAX_IMAGES, int_option
from genbench.errors import AssetError, GenbenchError

SRC = Path(__file__).resolve().parent.parent / "src" / "genbench"
FETCHED: list[dict] = []


def _toy_arrays(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` random 1 x 8 x 8 uint8 images (class 1 brighter than class 0), three quarters train, one test."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = (rng.integers(0, 128, (n, 1, 8, 8)) + 120 * y[:, None, None, None]).astype(np.uint8)
    k = n * 3 // 4
    return {"x_train": x[:k], "y_train": y[:k].astype(np.int64), "x_test": x[k:], "y_test": y[k:].astype(np.int64)}


def _fetch_toy(*, url, sha256, force, source_dir, progress, classes) -> str:
    FETCHED.append({"url": url, "force": force})
    return "toy8: 48 train + 16 test images from thin air"


TOY = DatasetSpec(
    name="toy8", title="Toy-8", image_shape=(1, 8, 8), num_classes=2, class_names=("dark", "bright"),
    content="random squares", citation="this test", load=lambda n=64, seed=0: _toy_arrays(n, seed),
    splits={"train": 48, "test": 16}, options={"n": int_option(8, 4096, 64), "seed": int_option(0, 99, 0)},
    fetch=_fetch_toy,
)


@pytest.fixture()
def toy():
    register_dataset(TOY)  # the one registration line
    yield TOY
    unregister_dataset(TOY.name)


def _study(**top) -> dict:
    return {"name": "toy-study", "dataset": "toy8", "seed": 0, "batch_size": 16, "holdout": 8, "log_every": 1,
            "models": {"vae": {"kind": "vae", "epochs": 1, "optimizer": {"lr": 1e-3},
                               "params": {"latent_dim": 2, "hidden": 16, "encoder": "mlp"}}},
            "evaluation": {"n_samples": 20, "n_inception": 10, "classifier_epochs": 1, "classifier_min_accuracy": 0.0,
                           "cas_steps": 2, "iwae_k": 2, "n_eval": 8, "n_manifold": 10, "n_memorisation": 8,
                           "curve_points": 0, "fid_bootstrap": 0, "is_splits": 1},
            **top}


def test_a_registered_dataset_loads_through_the_same_door(toy):
    assert "toy8" in dataset_names() and get_dataset("toy8") is TOY
    s = load_dataset("toy8", holdout=8)
    assert [len(s[k]) for k in ("train", "holdout", "test")] == [40, 8, 16]
    assert s["train"].shape == (1, 8, 8) and s["train"].x.dtype.is_floating_point is False
    assert s["train"].num_classes == 2 and s["test"].name == "toy8"
    assert np.array_equal(s["holdout"].x.numpy(), _toy_arrays()["x_train"][40:])  # the floor: the last 8
    assert len(load_dataset("toy8", holdout=0, n=16)["train"]) == 12  # its own option reaches its loader
    info = dataset_info("toy8")
    assert info.image_shape == (1, 8, 8) and info.class_names == ("dark", "bright") and info.title == "Toy-8"
    with pytest.raises(GenbenchError, match="dataset 'toy8': unexpected option"):
        load_dataset("toy8", data_dir="x")


def test_registering_twice_or_a_wrong_object_is_one_line(toy):
    with pytest.raises(GenbenchError, match="registered already"):
        register_dataset(DatasetSpec(**{**TOY.__dict__, "title": "other"}))
    with pytest.raises(GenbenchError, match="expected a genbench.data.DatasetSpec"):
        register_dataset({"name": "toy9"})
    with pytest.raises(GenbenchError, match="unknown dataset 'toy9'; choose one of: mnist"):
        get_dataset("toy9")
    with pytest.raises(GenbenchError, match="unknown dataset kind 'toy8'"):
        load_dataset({"kind": "toy8", "path": "x"})  # a named dataset is not a `dataset:` mapping's kind


def test_the_study_schema_asks_the_registry(toy):
    from genbench.studies.config import parse_study

    study = parse_study(_study(data={"n": 32}), "smoke")
    assert study.dataset == "toy8" and study.data == {"n": 32}
    assert study.models[0].params["image_size"] == 8 and study.models[0].params["channels"] == 1
    with pytest.raises(GenbenchError, match=r"s.yaml.data.data_dir: unknown key; valid keys: n, seed"):
        parse_study(_study(data={"data_dir": "x"}), "smoke", "s.yaml")
    with pytest.raises(GenbenchError, match=r"s.yaml.data.n: value 2 is out of range; give an integer in 8..4,096"):
        parse_study(_study(data={"n": 2}), "smoke", "s.yaml")
    unregister_dataset("toy8")
    with pytest.raises(GenbenchError, match=r"s.yaml.dataset: unknown dataset 'toy8'; choose one of mnist"):
        parse_study(_study(), "smoke", "s.yaml")


def test_data_stage_and_fetch(toy):
    from genbench.studies.config import parse_study
    from genbench.studies.runner import prepare_data

    splits = prepare_data(parse_study(_study(), "smoke"))
    assert len(splits["train"]) == 40 and len(splits["holdout"]) == 8
    assert fetch_dataset("toy8", url="http://mirror/", force=True) == "toy8: 48 train + 16 test images from thin air"
    assert FETCHED[-1] == {"url": "http://mirror/", "force": True}
    with pytest.raises(AssetError, match="--dir applies to fashion_mnist, quickdraw, cifar10"):
        fetch_dataset("toy8", source_dir="/tmp")


def test_options_and_real_floor_live_in_each_built_in_spec():
    from genbench.studies.schema import MAX_SAMPLES

    assert MAX_IMAGES == MAX_SAMPLES
    assert set(dataset_names()) >= {"mnist", "fashion_mnist", "cifar10", "quickdraw"}
    assert dataset_names(by_mapping=True) == ("folder", "npz")
    assert set(get_dataset("quickdraw").options) == {"data_dir", "classes", "train_per_class", "test_per_class", "seed"}
    assert dict(get_dataset("mnist").splits) == {"train": 60000, "test": 10000} and not get_dataset("mnist").options
    for name in dataset_names():
        spec = get_dataset(name)
        assert spec.real_floor and spec.fetch is not None and all(isinstance(o, Option) for o in spec.options.values())
        checksummed = [h for r in spec.sources for h in r.files.values()]
        assert name == "quickdraw" or (checksummed and all(h and h.startswith("sha256:") for h in checksummed))
    assert get_dataset("folder", by_mapping=True).content_key  # a folder's name does not say which images


def _data_imports() -> dict[str, set[str]]:
    """module -> the genbench.data modules it imports (anywhere in the file, function bodies included)."""
    out = {}
    for f in (SRC / "data").glob("*.py"):
        mod = f"genbench.data.{f.stem}" if f.stem != "__init__" else "genbench.data"
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("genbench.data"):
                deps |= {f"{node.module}.{a.name}" if node.module == "genbench.data" else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("genbench.data")}
        out[mod] = {d for d in deps if d != mod}
    return out


def test_no_import_circle_among_the_data_modules():
    graph = _data_imports()
    graph.pop("genbench.data")  # the package's face: it imports every spec to register it, nothing imports it back
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            assert state.get(d) != 1, f"import circle: {' -> '.join(path + [m, d])}"
            if d in graph and d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert graph["genbench.data.sources"].isdisjoint({"genbench.data.cifar10", "genbench.data.quickdraw"})
    assert "genbench.data.registry" not in graph["genbench.data.custom"]


@pytest.mark.slow
def test_the_toy_runs_the_pipeline_into_metrics_and_the_report(toy, tmp_path):
    """The whole smoke pipeline on the toy in this process (its registration is not visible to a subprocess)."""
    from genbench.report.build import build_report
    from genbench.studies.config import parse_study
    from genbench.studies.stages import run_study

    d = run_study(parse_study(_study(), "smoke"), tmp_path, report=build_report)
    s = json.loads((d / "metrics.json").read_text())
    assert s["dataset"] == "toy8" and s["dataset_info"]["title"] == "Toy-8"
    assert s["dataset_info"]["class_names"] == ["dark", "bright"] and s["dataset_info"]["train"] == 40
    assert {r["model"] for r in s["models"]} == {"vae", "real"}
    assert (d / "vae" / "checkpoints").is_dir()
    assert "Toy-8" in (d / "report" / "index.html").read_text()


@pytest.mark.parametrize("bad, needle", [
    (lambda a: [a["x_train"]], "not a mapping"),
    (lambda a: {**a, "x_train": a["x_train"].astype(np.float32)}, "x_train as ndarray float32"),
    (lambda a: {**a, "x_test": a["x_test"][:, :, :4]}, "x_test as ndarray uint8 (16, 1, 4, 8)"),
    (lambda a: {**a, "y_train": a["y_train"][:5]}, "y_train as ndarray int64 (5,)"),
    (lambda a: {**a, "y_test": a["y_test"].astype(np.float64)}, "y_test as ndarray float64"),
    (lambda a: {**a, "y_train": a["y_train"] + 5}, "labels outside 0..1"),
])
def test_a_loader_that_breaks_the_contract_is_one_line_naming_the_dataset(bad, needle):
    """Issue 29, class 5: a dataset whose loader yields the wrong types or shapes is refused before anything
    trains on it, in one line naming the dataset and the contract."""
    from genbench.errors import GenbenchError

    spec = DatasetSpec(**{**TOY.__dict__, "name": "toybad", "load": lambda n=64, seed=0: bad(_toy_arrays(n, seed))})
    register_dataset(spec)
    try:
        with pytest.raises(GenbenchError) as e:
            load_dataset("toybad", holdout=8)
    finally:
        unregister_dataset("toybad")
    msg = str(e.value)
    assert "dataset 'toybad'" in msg and needle in msg and "\n" not in msg, msg
