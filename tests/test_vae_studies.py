"""The QuickDraw and CIFAR-10 loaders on small files written in their exact formats, the two studies' smoke
profiles end to end through the CLI on those files, and the one-line error when a dataset is absent."""

import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

from genbench.data.registry import load_dataset
from genbench.errors import AssetError

GENBENCH = [sys.executable, "-m", "genbench.cli"]
QD_CLASSES = ["rabbit", "yoga", "hand", "snowman", "motorbike"]


def _blobs(rng, n, shape, k):
    """Class-dependent uint8 images: a bright square whose position depends on the class, plus noise."""
    x = rng.integers(0, 40, size=(n, *shape), dtype=np.uint8)
    side = shape[-1]
    r0 = (k * 5) % (side - 8)
    x[..., r0:r0 + 8, 4:12] = 230
    return x


@pytest.fixture(scope="module")
def quickdraw_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("quickdraw")
    rng = np.random.default_rng(0)
    for k, c in enumerate(QD_CLASSES):
        arr = _blobs(rng, 60, (28, 28), k).reshape(60, 784)  # numpy_bitmap: uint8 (N, 784)
        name = f"{c}.npy" if k else f"full_numpy_bitmap_{c}.npy"  # both names Google uses
        np.save(d / name, arr)
    return d


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(1)

    def batch(n, label_offset):
        y = [(i + label_offset) % 10 for i in range(n)]
        x = np.stack([_blobs(rng, 1, (3, 32, 32), k)[0] for k in y]).reshape(n, 3072)
        return {b"batch_label": b"x", b"labels": y, b"data": x, b"filenames": [b"f%d.png" % i for i in range(n)]}

    for i in range(1, 6):
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(20, i), f)  # protocol 2 would pickle bytes via _codecs (Python 3 only)
    with open(d / "test_batch", "wb") as f:
        pickle.dump(batch(40, 0), f)  # protocol 2 would pickle bytes via _codecs (Python 3 only)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                                      b"horse", b"ship", b"truck"], b"num_vis": 3072}, f)  # protocol 2 would pickle bytes via _codecs (Python 3 only)
    return d


def test_quickdraw_loader_subsets_and_splits_reproducibly(quickdraw_dir):
    kw = dict(data_dir=str(quickdraw_dir), classes=["yoga", "rabbit"], train_per_class=30, test_per_class=10)
    a = load_dataset("quickdraw", holdout=0, **kw)
    b = load_dataset("quickdraw", holdout=0, **kw)
    assert a["train"].x.shape == (60, 1, 28, 28) and a["test"].x.shape == (20, 1, 28, 28)
    assert a["train"].num_classes == 2 and sorted(a["test"].y.unique().tolist()) == [0, 1]
    assert np.array_equal(a["train"].x.numpy(), b["train"].x.numpy())
    # every split image is a row of its class file, train and test disjoint
    raw = np.load(quickdraw_dir / "yoga.npy")
    tr = a["train"].x[a["train"].y == 0].reshape(-1, 784).numpy()
    te = a["test"].x[a["test"].y == 0].reshape(-1, 784).numpy()
    rows = {r.tobytes(): i for i, r in enumerate(raw)}
    assert all(r.tobytes() in rows for r in tr) and all(r.tobytes() in rows for r in te)
    assert not ({r.tobytes() for r in tr} & {r.tobytes() for r in te})
    c = load_dataset("quickdraw", holdout=0, **{**kw, "seed": 5})
    assert not np.array_equal(a["train"].x.numpy(), c["train"].x.numpy())


def test_quickdraw_loader_errors_name_directory_and_files(quickdraw_dir, tmp_path):
    with pytest.raises(AssetError, match=f"{tmp_path} lacks rabbit.npy"):
        load_dataset("quickdraw", holdout=0, data_dir=str(tmp_path), classes=["rabbit"], train_per_class=1,
                     test_per_class=1)
    with pytest.raises(AssetError, match="fewer than train_per_class"):
        load_dataset("quickdraw", holdout=0, data_dir=str(quickdraw_dir), classes=["yoga"], train_per_class=60,
                     test_per_class=1)


def test_cifar10_loader_reads_the_python_pickles(cifar_dir):
    for d in (cifar_dir, cifar_dir.parent):  # the batches folder or its parent
        s = load_dataset("cifar10", holdout=0, data_dir=str(d))
        assert s["train"].x.shape == (100, 3, 32, 32) and s["test"].x.shape == (40, 3, 32, 32)
    with open(cifar_dir / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    # row layout: 1024 R, 1024 G, 1024 B, each 32 rows of 32
    assert np.array_equal(s["train"].x[20].numpy(), raw[b"data"][0].reshape(3, 32, 32))
    assert s["train"].y[20].item() == raw[b"labels"][0]
    with pytest.raises(AssetError, match="lacks data_batch_1"):
        load_dataset("cifar10", holdout=0, data_dir=str(cifar_dir / "nope"))


def _run(study, tmp_path, env_extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env_extra}
    return subprocess.run([*GENBENCH, "--threads", "1", "run", f"studies/{study}.yaml", "--profile", "smoke",
                           "--out", str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(__file__)))


def _check_one_schema(d, models):
    """Every study writes the one metrics.json schema: the real-data floor row, N and a spread beside every
    sample-based metric on both feature sets, family metrics, a report with the floor row and metrics.csv."""
    s = json.loads((d / "metrics.json").read_text())
    assert s["schema_version"] == 2 and [r["model"] for r in s["models"]] == [*models, "real"]
    for r in s["models"]:
        m = r["metrics"]
        for key in ("fid_inception", "fd_classifier", "is", "kid_inception", "kid_classifier"):
            assert m[key]["n_generated"] > 0 and m[key].get("std") is not None, (r["model"], key)
        for feat in ("inception", "classifier"):
            p = m[f"prdc_{feat}"]
            assert all(p[f"{q}_std"] is not None for q in ("precision", "recall", "density", "coverage"))
    html = (d / "report" / "index.html").read_text()
    text = re.sub(r"<script.*?</script>", "", html, flags=re.S)  # the page's words, not plotly.js's
    assert "real (floor)" in html and (d / "report" / "metrics.csv").exists()
    assert (d / "report" / "figures" / "training_curves.png").exists() and "id='curves'" in html.replace('"', "'")
    assert (d / "finished.json").exists()
    return s, text


@pytest.mark.slow
def test_quickdraw_study_smoke(quickdraw_dir, tmp_path):
    p = _run("quickdraw_vae", tmp_path, {"GENBENCH_QUICKDRAW_DIR": str(quickdraw_dir)})
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "quickdraw-vae"
    s, html = _check_one_schema(d, ["rnn_vae", "cnn_vae", "cvae"])
    assert s["dataset_info"]["class_names"] == QD_CLASSES and s["dataset_info"]["train"] == 180
    assert "digits" not in html
    recs = {r["model"]: r for r in s["models"]}
    for name in ("rnn_vae", "cnn_vae", "cvae"):
        m = recs[name]["metrics"]
        assert m["iwae_nll"]["value"] <= -m["elbo"]["value"] + 5 * m["elbo"]["std"] + 1
        assert len(m["elbo"]["kl_per_dim_nats"]) == 32 and m["fid_inception"]["n_generated"] == 20
        assert set(recs[name]["family_metrics"]) == {"elbo", "iwae_nll", "active_units"}
    assert recs["rnn_vae"]["metrics"]["elbo"]["encoder"] == "rnn" and recs["cvae"]["conditional"]
    ex = d / "experiments"
    pc = json.loads((ex / "per_class" / "result.json").read_text())["models"]["cvae"]
    assert pc["classes"] == QD_CLASSES and len(pc["accuracy"]) == 5 and "test acc" in pc["classifier"]
    enc = json.loads((ex / "encoder_comparison" / "result.json").read_text())
    assert set(enc["models"]) == {"rnn_vae", "cnn_vae"}
    for fig in ("encoder_comparison.png", "per_class_cvae.png", "recon_rnn_vae.png", "interp_spherical_cvae.png"):
        assert (d / "report" / "figures" / fig).exists() and fig in html
    # report-only from the saved files: `genbench report` renders the same page again
    (d / "report" / "index.html").unlink()
    p = subprocess.run([*GENBENCH, "report", str(d)], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(__file__)))
    assert p.returncode == 0, p.stderr[-3000:]
    assert re.sub(r"<script.*?</script>", "", (d / "report" / "index.html").read_text(), flags=re.S) == html
    # a rerun finds every stage current: nothing is trained, sampled or experimented again
    p = subprocess.run([*GENBENCH, "--threads", "1", "run", "studies/quickdraw_vae.yaml", "--profile", "smoke",
                        "--out", str(tmp_path), "--resume"], capture_output=True, text=True,
                       env={**os.environ, "GENBENCH_QUICKDRAW_DIR": str(quickdraw_dir)},
                       cwd=os.path.dirname(os.path.dirname(__file__)))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "[sample]" not in p.stderr and p.stderr.count("current, skipped") == 6


@pytest.mark.slow
def test_cifar10_study_smoke(cifar_dir, tmp_path):
    p = _run("cifar10_vae_dcgan", tmp_path, {"GENBENCH_CIFAR10_DIR": str(cifar_dir.parent)})
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "cifar10-vae-dcgan"
    s, html = _check_one_schema(d, ["vae", "dcgan"])
    assert s["dataset_info"]["image_shape"] == [3, 32, 32] and s["dataset_info"]["train"] == 64
    assert "digits" not in html and "CIFAR-10" in html
    recs = {r["model"]: r for r in s["models"]}
    assert recs["vae"]["params"]["latent_dim"] == 64 and recs["dcgan"]["kind"] == "dcgan"
    g = recs["dcgan"]["metrics"]["d_diagnostics"]
    assert 0 <= g["d_x"] <= 1 and 0 <= g["d_g_z"] <= 1
    assert recs["dcgan"]["training"]["optimizer"]["betas"] == [0.5, 0.999]
    assert "elbo" in recs["vae"]["metrics"] and "elbo" not in recs["dcgan"]["metrics"]
    lp = json.loads((d / "experiments" / "linear_probe" / "result.json").read_text())
    assert 0 <= lp["models"]["vae"]["value"] <= 1
    assert recs["vae"]["metrics"]["fid_inception"]["n_generated"] == 20
    assert (d / "report" / "figures" / "samples_dcgan.png").exists()


def test_absent_dataset_stops_at_once_with_one_line(tmp_path):
    """In process (``cli_in_process``: the same ``main``, exit code and stderr; a child process cost ~5 s)."""
    from conftest import cli_in_process

    study = os.path.join(os.path.dirname(os.path.dirname(__file__)), "studies", "cifar10_vae_dcgan.yaml")
    code, lines, _ = cli_in_process("--threads", "1", "run", study, "--profile", "smoke", "--out", str(tmp_path),
                                    env={"GENBENCH_CIFAR10_DIR": str(tmp_path / "missing")})
    assert code == 2
    assert len(lines) == 1 and str(tmp_path / "missing") in lines[0] and "data_batch_1" in lines[0], lines
    assert not (tmp_path / "cifar10-vae-dcgan").exists()


def test_fashion_mnist_idx_reader_and_missing_files(tmp_path, monkeypatch):
    import gzip

    from genbench.data.assets import ASSETS, verify_debian_asset
    from genbench.data.fashion_mnist import read_idx

    imgs = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
    (tmp_path / "i.gz").write_bytes(gzip.compress(np.array([0x803, 2, 28, 28], ">i4").tobytes() + imgs.tobytes()))
    assert np.array_equal(read_idx(tmp_path / "i.gz"), imgs)
    (tmp_path / "l.gz").write_bytes(gzip.compress(np.array([0x801, 3], ">i4").tobytes() + bytes([9, 0, 3])))
    assert read_idx(tmp_path / "l.gz").tolist() == [9, 0, 3]
    (tmp_path / "bad.gz").write_bytes(gzip.compress(np.array([0x803, 5, 28, 28], ">i4").tobytes() + b"\0"))
    with pytest.raises(AssetError, match="header says"):
        read_idx(tmp_path / "bad.gz")
    monkeypatch.setenv("GENBENCH_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(AssetError) as e:
        verify_debian_asset(ASSETS["fashion_mnist"])
    msg = str(e.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte.gz" in msg and "dataset-fashion-mnist" in msg
    for f, _ in ASSETS["fashion_mnist"].files:
        (tmp_path / f).write_bytes(b"not it")
    with pytest.raises(AssetError, match="sha256"):
        verify_debian_asset(ASSETS["fashion_mnist"])


@pytest.mark.slow
def test_fashion_mnist_study_smoke_runs_beta_sweep_gifs_and_frozen_latent(tmp_path):
    """The Fashion-MNIST study on the real data (``genbench data fetch fashion_mnist``, which make test runs):
    its beta sweep with a GIF per beta, the frozen-latent FIDs and the linear probe, through the one pipeline."""
    p = subprocess.run([*GENBENCH, "--threads", "2", "run", "studies/fashion_beta_vae.yaml", "--profile", "smoke",
                        "--out", str(tmp_path)], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(__file__)))
    assert p.returncode == 0, p.stderr[-3000:]
    d = tmp_path / "fashion-beta-vae"
    s, html = _check_one_schema(d, ["vae"])
    assert s["dataset_info"]["class_names"][0] == "T-shirt/top" and "Fashion-MNIST" in html
    ex = d / "experiments"
    bs = json.loads((ex / "beta_sweep" / "result.json").read_text())
    assert [r["beta"] for r in bs["rows"]] == [0.1, 0.5, 1.0] and bs["latent_dim"] == 2
    assert bs["class_names"] == ["T-shirt/top", "Trouser", "Sneaker"]
    with np.load(ex / "beta_sweep" / "arrays.npz") as z:
        assert z["beta_0.1__mu"].shape[-1] == 2 and z["beta_1__recon"].dtype == np.uint8
    for b in ("0.1", "0.5", "1"):
        gif = d / "report" / "figures" / f"beta_{b}.gif"
        assert gif.read_bytes()[:6] == b"GIF89a" and f"beta_{b}.gif" in html
    fl = json.loads((ex / "frozen_latent" / "result.json").read_text())
    order = ["standard N(0, I)", "mu = 0, sigma = 0.1", "mu = 0, sigma = 0.5", "mu = 0, sigma = 1"]
    assert fl["set_order"] == order and list(fl["sets"]) == order and fl["model"] == "vae"
    vae = next(r for r in s["models"] if r["model"] == "vae")
    assert fl["sets"][order[0]]["fid_inception"] == vae["metrics"]["fid_inception"]  # the model's own bank
    fids = [fl["sets"][k]["fid_inception"]["value"] for k in order]
    assert all(np.isfinite(f) and f > 0 for f in fids), fids
    assert all(fl["sets"][k]["fid_inception"]["n_generated"] == fl["n"] for k in order[1:])
    # the sigma sets decode the same eps scaled by sigma: the images spread out as sigma grows (a decoder that
    # ignored z, or sets all drawn with one sigma, would give equal diversities; measured on a smoke VAE: 0.097,
    # 0.35, 0.68 for sigma 0.1, 0.5, 1)
    div = [fl["sets"][k]["diversity_l2"] for k in order[1:]]
    assert div[0] < div[1] < div[2], div
    lp = json.loads((ex / "linear_probe" / "result.json").read_text())
    assert lp["models"]["vae"]["value"] > lp["models"]["vae"]["chance"]
