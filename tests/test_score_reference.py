"""``genbench score --reference PATH`` (issue 30): your own reference folder or ``.npz``, its statistics built once
and cached, the real-data floor from a held-out split of it; and ``labels.csv`` beside a flat folder of samples.

The reference is 400 MNIST test images written as PNG class folders (80 test, 320 training images of which the
last 40 are held out as the floor); the samples are 60 other MNIST images (training split) in a flat folder with
``labels.csv``, as ``genbench sample --png`` writes them. The smoke profile with N = 40 keeps each score small.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import genbench
from genbench.errors import GenbenchError

N = 40


def _write_class_folders(root: Path, x: np.ndarray, y: np.ndarray) -> Path:
    from PIL import Image

    for i, (img, k) in enumerate(zip(x, y)):
        d = root / str(int(k))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(d / f"{i:05d}.png")
    return root


@pytest.fixture(scope="module")
def own_reference(tmp_path_factory, mnist):
    test = mnist["test"]
    return _write_class_folders(tmp_path_factory.mktemp("ownref") / "digits", test.x[:400].numpy(),
                                test.y[:400].numpy())


@pytest.fixture(scope="module")
def labelled_samples(tmp_path_factory, mnist):
    """60 MNIST training images as an export folder: 000000.png ... and labels.csv."""
    from genbench.sampling.export import write_png_folder

    train = mnist["train"]
    return write_png_folder(tmp_path_factory.mktemp("samples") / "pngs", train.x[:60].numpy(),
                            train.y[:60].numpy(), manifest={"source": "test"})


# ------------------------------------------------------------------------------------------- fast: no evaluation


def test_reference_source_names_paths_and_refusals(tmp_path):
    from genbench.studies.score import reference_source

    assert reference_source("mnist") == "mnist"
    (tmp_path / "imgs").mkdir()
    assert reference_source(str(tmp_path / "imgs")) == {"kind": "folder", "path": str((tmp_path / "imgs").resolve())}
    np.savez(tmp_path / "ref.npz", x=np.zeros((4, 28, 28), np.uint8))
    assert reference_source(tmp_path / "ref.npz")["kind"] == "npz"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        (tmp_path / "mnist").mkdir()
        assert reference_source("mnist") == "mnist"  # the dataset name wins; ./mnist names the folder
        assert reference_source("./mnist")["kind"] == "folder"
        assert reference_source(Path("mnist"))["kind"] == "folder"  # a Path is always a path
    finally:
        os.chdir(cwd)
    with pytest.raises(GenbenchError, match="not a dataset genbench knows and not found"):
        reference_source(str(tmp_path / "nope"))
    (tmp_path / "ref.txt").write_text("x")
    with pytest.raises(GenbenchError, match="neither a folder nor an .npz"):
        reference_source(str(tmp_path / "ref.txt"))
    os.mkfifo(tmp_path / "fifo.npz")  # refused by stat before anything opens it (a read would block)
    with pytest.raises(GenbenchError, match="FIFO"):
        reference_source(str(tmp_path / "fifo.npz"))


def test_own_reference_protocol_holdout_and_caps(own_reference, tmp_path):
    from genbench.studies.score import score_config

    cfg = score_config(str(own_reference), study=None, profile="smoke", n=N, n_inception=None)
    assert (cfg.dataset_spec["kind"], cfg.dataset_spec["path"]) == ("folder", str(own_reference.resolve()))
    assert cfg.holdout == N and cfg.evaluation.n_samples == N  # the floor at the samples' N
    assert cfg.evaluation.classifier_min_accuracy == 0.0  # the default protocol asks for no minimum
    assert cfg.experiments == {} or not cfg.experiments
    from genbench.data.custom import custom_arrays

    a = custom_arrays(cfg.dataset_spec)
    n_train, n_test = len(a["x_train"]), len(a["x_test"])  # a class-stratified 20% (rounded per class) is test
    assert n_train + n_test == 400 and abs(n_test - 80) <= 5
    big = score_config(str(own_reference), study=None, profile="quick", n=200, n_inception=None)
    assert big.holdout == n_train // 2  # half the training images: the rest trains the classifier
    assert big.evaluation.n_inception == n_test  # capped by the test split, with a log line
    with pytest.raises(GenbenchError, match="--n-inception 90"):
        score_config(str(own_reference), study=None, profile="quick", n=200, n_inception=90)  # asked: not capped
    small = _write_class_folders(tmp_path / "small", np.zeros((50, 1, 28, 28), np.uint8), np.arange(50) % 2)
    with pytest.raises(GenbenchError, match="at least .* images"):
        score_config(str(small), study=None, profile="smoke", n=N, n_inception=None)


def test_same_out_folder_refuses_another_reference_content(own_reference, tmp_path):
    from genbench.studies import score as sc

    cfg = sc.score_config(str(own_reference), study=None, profile="smoke", n=N, n_inception=None)
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({
        "dataset": cfg.dataset, "seed": cfg.seed, "evaluation": cfg.evaluation.record(),
        "scored_with": {"reference": {"content": "digits-aaaaaaaaaaaa"}}}))
    sc._check_same_settings(out, cfg, {"content": "digits-aaaaaaaaaaaa"})  # the same content: rows are added
    with pytest.raises(GenbenchError, match="made otherwise"):
        sc._check_same_settings(out, cfg, {"content": "digits-bbbbbbbbbbbb"})  # same folder name, other pixels


def test_labels_csv_is_read_and_checked(labelled_samples, mnist, tmp_path):
    from genbench.data.images import read_images

    x, y, _ = read_images(labelled_samples, channels=1)
    assert np.array_equal(y.numpy(), mnist["train"].y[:60].numpy()) and len(x) == 60
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in sorted(labelled_samples.glob("*.png"))[:3]:
        (bad / f.name).write_bytes(f.read_bytes())
    cases = {
        "": "is empty",
        "name,class\n000000.png,1\n": "not the header",
        "filename,label\n000000.png,1\n000001.png,2\n": "no label for 1 of the 3",
        "filename,label\n000000.png,1\n000001.png,2\n000002.png,x\n": "line 4",
        "filename,label\n000000.png,1\n000001.png,2\n000002.png,-1\n": "line 4",
        "filename,label\n000000.png,1\n000000.png,2\n000002.png,3\n": "listed twice",
        "filename,label\n000000.png,1\n000001.png,2\n000002.png,3\nother.png,4\n": "not images of",
    }
    for text, needle in cases.items():
        (bad / "labels.csv").write_text(text)
        with pytest.raises(GenbenchError, match=needle):
            read_images(bad, channels=1)
    (bad / "labels.csv").write_bytes(b"filename,label\n\xff\xfe,1\n")
    with pytest.raises(GenbenchError, match="not UTF-8"):
        read_images(bad, channels=1)
    (bad / "labels.csv").unlink()
    os.mkfifo(bad / "labels.csv")
    with pytest.raises(GenbenchError, match="FIFO"):
        read_images(bad, channels=1)
    (bad / "labels.csv").unlink()
    (bad / "labels.csv").write_text("filename,label\n")
    (bad / "0").mkdir()
    for f in list(bad.glob("*.png")):
        f.rename(bad / "0" / f.name)
    with pytest.raises(GenbenchError, match="two sources of labels"):
        read_images(bad, channels=1)


# ------------------------------------------------------------------------------------------ slow: two evaluations


@pytest.mark.slow
def test_scoring_twice_against_a_folder_computes_its_reference_once(own_reference, labelled_samples, tmp_path,
                                                                    monkeypatch):
    """On a fresh GENBENCH_HOME (Inception weights and datasets linked from the usual one): the first score trains
    the folder's classifier and computes its reference features; the second reads all of them from the cache."""
    from genbench.data.assets import cache_home

    home = tmp_path / "home"
    home.mkdir()
    for sub in ("assets", "datasets"):
        if (cache_home() / sub).exists():
            (home / sub).symlink_to(cache_home() / sub)
    monkeypatch.setenv("GENBENCH_HOME", str(home))
    first = genbench.score(labelled_samples, own_reference, out=tmp_path / "a", profile="smoke", n=N)
    clf = Path(first.summary["classifier"]["cache"])
    assert clf.parent == home / "classifiers" and clf.name.startswith("digits-")  # keyed by the content name
    trained_at = clf.stat().st_mtime_ns
    second = genbench.score(labelled_samples, str(own_reference), out=tmp_path / "b", profile="smoke", n=N)
    ref = first.summary["scored_with"]["reference"]
    assert ref["path"] == str(own_reference.resolve()) and ref["format"] == "folder"
    assert ref["content"].startswith("digits-") and ref["splits"]["holdout"] == N
    assert sum(ref["splits"].values()) == 400
    assert second.summary["scored_with"]["reference"] == ref
    a, b = first.summary["provenance"]["feature_cache"], second.summary["provenance"]["feature_cache"]
    assert a["computed"] > 0 and b["computed"] == 0 and b["from_cache"] == a["from_cache"] + a["computed"]
    assert clf.stat().st_mtime_ns == trained_at  # the in-domain classifier was read from the cache, not retrained
    assert first.value("fid_inception") == second.value("fid_inception")
    # labels.csv made the samples conditional: conditional accuracy is computed against the folder's classes
    assert first.conditional_accuracy is not None and first.real.name == "real"
    real = next(r for r in first.summary["models"] if r["model"] == "real")
    assert real["sample_bank"]["n"] == N  # the floor at the samples' N, from the reference's held-out split
    assert first.real.fid_inception["n_generated"] == first.fid_inception["n_generated"]
