"""The feature cache (issue 26): features of real images are computed once per complete key and read back by every
later evaluation, with the same values; a damaged file is rebuilt, never trusted; only rank 0 reads and writes.

The fast tests use a tiny deterministic stub in place of Inception (a fixed float32 projection of the pixels, with
a call counter), an untrained seeded classifier on 12 x 12 images and a counting wrapper around the classifier's
``predict``, so a whole ``evaluate_images`` of the real-data row takes well under a second. The slow test runs
``genbench score`` twice on the same GENBENCH_HOME.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import same_metrics, seeded_classifier
from genbench.data.registry import Dataset
from genbench.metrics import evaluate as E
from genbench.metrics.feature_cache import FeatureCache, images_sha256, key_digest, weights_sha256

N_TEST, N_TRAIN, N_HOLD, N, M = 60, 80, 40, 30, 20  # split sizes; images scored (N), of which Inception (M)
EVAL = SimpleNamespace(is_splits=2, cas_steps=2, n_memorisation=10, n_manifold=N, n_inception=M, fid_bootstrap=2,
                       resize="tf1_bilinear", inception_precision="fp32")


class StubInception:
    """A deterministic stand-in for InceptionFeatures: float32 projection of the pixels to 16 features (widened to
    float64 like pool3 outputs), counting its calls and images."""

    name, num_features, batch, device = "stub", 16, 7, torch.device("cpu")

    def __init__(self, precision: str = "fp32"):
        self.precision, self.calls, self.images, self.seconds = precision, 0, 0, 0.0
        self.w = torch.randn(144, 16, generator=torch.Generator().manual_seed(0))

    def key(self) -> dict:
        return {"extractor": self.name, "resize": "none", "precision": self.precision, "backend": "stub",
                "preprocess_version": 1}

    def __call__(self, x, log=None, dist=None) -> np.ndarray:
        self.calls += 1
        self.images += len(x)
        return (x.float().flatten(1) @ self.w / 255).double().numpy()


@pytest.fixture
def data():
    return _data()


def _data() -> dict:
    """The toy splits (uint8 1 x 12 x 12 noise, labels cycling over 10 classes) and a generated set."""
    g = torch.Generator().manual_seed(1)
    img = lambda n: torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8, generator=g)  # noqa: E731
    lab = lambda n: torch.arange(n) % 10  # noqa: E731
    return {"test": Dataset(img(N_TEST), lab(N_TEST), 10, "toy"), "train": Dataset(img(N_TRAIN), lab(N_TRAIN), 10, "toy"),
            "holdout": Dataset(img(N_HOLD), lab(N_HOLD), 10, "toy"), "gen": img(N)}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def predicted(monkeypatch):
    """Counts the classifier's forward passes over images (calls, images) made through the evaluate module."""
    seen = {"calls": 0, "images": 0}
    real = E.predict

    def counting(model, x, *a, **k):
        seen["calls"] += 1
        seen["images"] += len(x)
        return real(model, x, *a, **k)

    monkeypatch.setattr(E, "predict", counting)
    return seen


def _ctx(data, *, seed: int = 3, inception=None, classifier=None, logs=None) -> E.EvalContext:
    ctx = E.EvalContext(test=data["test"], train=data["train"], classifier=classifier or seeded_classifier(),
                        classifier_info={"test_accuracy": 0.0}, eval_cfg=EVAL, seed=seed,
                        log=(logs.append if logs is not None else (lambda *_: None)))
    ctx._inception = inception or StubInception()
    return ctx


def _real_row(ctx, data, *, cached: bool = True) -> dict:
    """The real-data row as evaluate_real scores it: the seeded held-out subset, with its source (cached) or not."""
    hold = data["holdout"]
    idx = ctx.heldout_indices(hold, N)
    x, y = hold.x[torch.as_tensor(idx)], hold.y[torch.as_tensor(idx)]
    out = E.evaluate_images(ctx, x, y, what="real", source=("holdout", idx) if cached else None)
    out.pop("eval_seconds")
    return out


# -- reuse --------------------------------------------------------------------------------------------------------
def test_a_second_evaluation_computes_no_real_features_and_gives_the_same_numbers(data, home, predicted):
    """First context: the test split's classifier features, the Inception reference and the real row's features are
    computed and stored. A second context (another process, same GENBENCH_HOME) reads every one of them: no
    classifier pass, no Inception call for real images; the generated set is extracted as always. Every number of
    the real row equals the first run's and the uncached path's."""
    ctx1 = _ctx(data)
    first = _real_row(ctx1, data)
    # classifier: test split + real row + the memorisation train subset; Inception: reference + real row
    assert predicted["calls"] == 3 and ctx1.inception.calls == 2
    assert ctx1.feature_cache.record()["computed"] == 5 and ctx1.feature_cache.record()["from_cache"] == 0

    predicted.update(calls=0, images=0)
    logs: list[str] = []
    ctx2 = _ctx(data, logs=logs)
    second = _real_row(ctx2, data)
    assert predicted["calls"] == 0 and ctx2.inception.calls == 0, (predicted, ctx2.inception.calls)
    rec = ctx2.feature_cache.record()
    assert (rec["from_cache"], rec["computed"]) == (5, 0) and all(e["from_cache"] for e in rec["lookups"])
    assert sum("from the cache" in line for line in logs) == 5 and not any("computing" in line for line in logs)
    same_metrics(first, second)

    gen = E.evaluate_images(ctx2, data["gen"], None, what="gen")  # generated images: always extracted
    assert gen is not None and predicted["calls"] == 1 and ctx2.inception.calls == 1 and ctx2.inception.images == M

    ctx3 = _ctx(data)  # the path without the real row's cache: the same numbers
    same_metrics(first, _real_row(ctx3, data, cached=False))


def test_cached_arrays_equal_the_computed_ones_bit_for_bit(data, home):
    ctx1, ctx2 = _ctx(data), _ctx(data)
    mu1, sigma1, f1 = ctx1.inception_reference(M)
    mu2, sigma2, f2 = ctx2.inception_reference(M)
    assert ctx2.inception.calls == 0 and f2.dtype == np.float64 and f2.shape == (M, 16)
    for a, b in ((mu1, mu2), (sigma1, sigma2), (f1, f2)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(f1, StubInception()(data["test"].x[torch.as_tensor(ctx1.reference_indices(M))]))
    c1, c2 = ctx1.classifier_reference(), ctx2.classifier_reference()
    assert all(np.array_equal(a, b) for a, b in zip(c1, c2))
    stored = next(home.glob("features/*.npz"))
    sidecar = json.loads(stored.with_suffix(".json").read_text())
    assert set(sidecar) >= {"key", "arrays", "what", "file"} and all("sha256" in a for a in sidecar["arrays"].values())


def test_the_train_subset_is_cached_per_space_and_n(data, home, predicted, tmp_path):
    ctx1 = _ctx(data)
    ctx1.out_dir = tmp_path / "study"
    fi, fc = ctx1.train_features(25), ctx1.train_features(25, "classifier")
    idx = ctx1.train_indices(25)
    np.testing.assert_array_equal(np.load(tmp_path / "study" / "train_indices.npy")[:25], idx)
    assert np.bincount(data["train"].y[torch.as_tensor(idx)].numpy(), minlength=10).min() >= 2  # stratified
    assert np.array_equal(fi, StubInception()(data["train"].x[torch.as_tensor(idx)]))
    assert fc.shape == (25, 128) and predicted["calls"] == 1
    ctx2 = _ctx(data)
    assert np.array_equal(ctx2.train_features(25), fi) and np.array_equal(ctx2.train_features(25, "classifier"), fc)
    assert ctx2.inception.calls == 0 and predicted["calls"] == 1
    ctx2.train_features(26)  # another N: other indices, computed
    assert ctx2.inception.calls == 1
    with pytest.raises(ValueError, match="choose inception or classifier"):
        ctx2.train_features(5, "pixels")


# -- the key ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["seed", "extractor", "classifier", "pixels"])
def test_a_changed_key_computes_again(data, home, predicted, change):
    """Another subset (seed), another extractor key (precision), other classifier weights or other pixels under the
    same name and indices: those features are computed again; the others still come from the cache."""
    _real_row(_ctx(data), data)
    predicted.update(calls=0)
    if change == "pixels":  # the same dataset name and split, one pixel of the held-out split changed
        hold = data["holdout"]
        x = hold.x.clone()
        x[_ctx(data).heldout_indices(hold, N)[0], 0, 0, 0] ^= 1  # the first image of the real row
        data = {**data, "holdout": Dataset(x, hold.y, 10, "toy")}
    ctx = _ctx(data, seed=4 if change == "seed" else 3,
               inception=StubInception("bf16" if change == "extractor" else "fp32"),
               classifier=seeded_classifier(1) if change == "classifier" else None)
    _real_row(ctx, data)
    computed = {e["features"] for e in ctx.feature_cache.record()["lookups"] if not e["from_cache"]}
    train = f"classifier features of {min(N_TEST, N_TRAIN)} train images"  # the memorisation subset (seeded)
    expect = {"seed": {f"classifier features of {N} holdout images", f"Inception reference statistics of {M} test "
                       f"images", f"Inception features of {M} holdout images", train},
              "extractor": {f"Inception reference statistics of {M} test images",
                            f"Inception features of {M} holdout images"},
              "classifier": {f"classifier features of {N_TEST} test images",
                             f"classifier features of {N} holdout images", train},
              "pixels": {f"classifier features of {N} holdout images", f"Inception features of {M} holdout images"}}
    assert computed == expect[change]


def test_key_helpers_name_content_not_identity():
    a = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    assert images_sha256(a) == images_sha256(a.clone()) != images_sha256(a.view(3, 1, 2, 8).contiguous())
    assert weights_sha256(seeded_classifier(0)) == weights_sha256(seeded_classifier(0)) \
        != weights_sha256(seeded_classifier(1))
    assert key_digest({"a": 1, "b": 2}) == key_digest({"b": 2, "a": 1}) != key_digest({"a": 1, "b": 3})


# -- damage -------------------------------------------------------------------------------------------------------
KEY = {"dataset": "toy", "split": "test", "n": 50}
SHAPES = {"features": (50, 32), "mu": (32,)}


def _arrays() -> dict:
    f = np.random.default_rng(0).normal(size=(50, 32)).astype(np.float32).astype(np.float64)  # widened float32
    return {"features": f, "mu": f.mean(0)}


def _counting():
    calls = []

    def compute():
        calls.append(1)
        return _arrays()

    return calls, compute


def _rewrite_npz(path: Path, **change) -> None:
    """Rewrite the npz with some arrays replaced, the metadata kept (a poisoned file with a valid zip)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(path, **{**arrays, **change})


@pytest.mark.parametrize("damage", ["truncate", "flip_data", "zero_tail", "empty", "junk", "poison_values",
                                    "wrong_shape", "other_key", "nan", "npy", "no_meta", "fifo"])
def test_a_damaged_file_is_removed_and_rebuilt_with_identical_values(tmp_path, damage):
    logs: list[str] = []
    cache = FeatureCache(tmp_path / "features", log=logs.append)
    calls, compute = _counting()
    want = cache.get("toy features", KEY, compute, shapes=SHAPES)
    path = cache.path(KEY)
    blob = path.read_bytes()
    stored_f = want["features"].astype(np.float32).tobytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip_data":  # inside the features' bytes: the zip CRC and the sha256 both disagree
        i = blob.find(stored_f[:64]) + 100
        path.write_bytes(blob[:i] + bytes([blob[i] ^ 0x10]) + blob[i + 1:])
    elif damage == "zero_tail":
        path.write_bytes(blob[:-200] + bytes(200))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "junk":
        path.write_bytes(bytes((i * 37) % 256 for i in range(3000)))
    elif damage == "poison_values":  # a valid zip whose features were changed, the metadata kept
        _rewrite_npz(path, features=(want["features"] + 1).astype(np.float32))
    elif damage == "wrong_shape":  # consistent metadata, but not the rows this key's subset has
        cache.write(KEY, {**want, "features": want["features"][:-1]})
    elif damage == "other_key":  # another key's (valid) file copied under this key's name
        other = cache.write({**KEY, "n": 49}, want)
        path.write_bytes(other.read_bytes())
    elif damage == "nan":
        bad = want["mu"].copy()
        bad[3] = np.nan
        cache.write(KEY, {**want, "mu": bad})
    elif damage == "npy":
        np.save(path.with_suffix(".tmp.npy"), want["features"])
        os.replace(path.with_suffix(".tmp.npy"), path)
    elif damage == "no_meta":
        np.savez(path, **want)
    elif damage == "fifo":
        path.unlink()
        os.mkfifo(path)
    logs.clear()
    got = cache.get("toy features", KEY, compute, shapes=SHAPES)  # a FIFO must not block this read
    assert len(calls) == 2, damage  # detected: computed again
    assert len(logs) == 1 and "damaged" in logs[0] and "removed" in logs[0], logs
    for k in want:
        assert np.array_equal(got[k], want[k]) and got[k].dtype == want[k].dtype
    logs.clear()
    again = FeatureCache(tmp_path / "features", log=logs.append).get("toy features", KEY, compute, shapes=SHAPES)
    assert len(calls) == 2 and "from the cache" in logs[0]  # the rebuilt file is good
    assert all(np.array_equal(again[k], want[k]) for k in want)


def test_a_cache_that_cannot_be_written_costs_the_reuse_not_the_evaluation(tmp_path, monkeypatch):
    import genbench.metrics.feature_cache as F
    from genbench.errors import GenbenchError

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    logs: list[str] = []
    calls, compute = _counting()
    monkeypatch.setattr(F, "atomic_savez", full)
    got = FeatureCache(tmp_path, log=logs.append).get("toy", KEY, compute, shapes=SHAPES)
    assert all(np.array_equal(got[k], v) for k, v in _arrays().items())
    assert len(logs) == 2 and "No space left on device" in logs[1] and "not cached" in logs[1]
    monkeypatch.undo()
    cache = FeatureCache(tmp_path, log=logs.append)
    cache.path(KEY).mkdir(parents=True)  # a folder where the file belongs: one line naming it, nothing deleted
    with pytest.raises(GenbenchError, match="is a folder where genbench keeps a file"):
        cache.get("toy", KEY, compute, shapes=SHAPES)
    assert cache.path(KEY).is_dir()


def test_a_flipped_byte_anywhere_never_gives_other_values(tmp_path):
    """Flip one byte at 60 places across the file: each read either rebuilds (one log line) or, where the byte is
    one no reader uses (a zip timestamp), returns the stored values; never different numbers."""
    logs: list[str] = []
    cache = FeatureCache(tmp_path, log=logs.append)
    calls, compute = _counting()
    want = cache.get("toy", KEY, compute)
    path = cache.path(KEY)
    blob = path.read_bytes()
    rebuilt = 0
    for i in np.linspace(0, len(blob) - 1, 60).astype(int):
        path.write_bytes(blob[:i] + bytes([blob[i] ^ 0xFF]) + blob[i + 1:])
        logs.clear()
        n = len(calls)
        got = cache.get("toy", KEY, compute)
        assert all(np.array_equal(got[k], want[k]) for k in want), i
        rebuilt += len(calls) - n
        assert len(logs) == 1 and (("damaged" in logs[0]) == (len(calls) > n)), (i, logs)
    assert rebuilt >= 50


def test_the_reference_statistics_rebuild_through_the_context(data, home):
    first = _ctx(data).inception_reference(M)
    ref_file = next(p for p in home.glob("features/*.json")
                    if "reference" in json.loads(p.read_text())["what"]).with_suffix(".npz")
    ref_file.write_bytes(ref_file.read_bytes()[:-1000])
    logs: list[str] = []
    ctx = _ctx(data, logs=logs)
    again = ctx.inception_reference(M)
    assert ctx.inception.calls == 1 and sum("damaged" in line for line in logs) == 1
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


# -- concurrency and data-parallel ------------------------------------------------------------------------------
def test_concurrent_writers_and_readers_see_whole_files_only(tmp_path):
    """Writers replace the file again and again while readers read it: every read is a miss or the exact arrays,
    never a damaged file (the write is a temp file + fsync + os.replace); no temp file stays behind."""
    big = {"features": np.random.default_rng(1).normal(size=(2000, 256)).astype(np.float32).astype(np.float64)}
    logs: list[str] = []
    cache = FeatureCache(tmp_path, log=logs.append)
    stop, bad, seen = threading.Event(), [], []

    def writer():
        for _ in range(15):
            cache.write(KEY, big, "big")
        stop.set()

    def reader():
        while not stop.is_set():
            got = cache.read(KEY, {"features": (2000, 256)}, "big")
            if got is not None:
                seen.append(1)
                if not np.array_equal(got["features"], big["features"]):
                    bad.append(1)

    threads = [threading.Thread(target=writer), threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not bad and not [line for line in logs if "damaged" in line], logs[:3]
    assert seen and not list(tmp_path.glob(".*.tmp"))


def test_two_processes_computing_at_once_both_get_the_features(tmp_path):
    """Two lookups of one key at the same time (threads standing for processes): both compute, both return the
    same arrays, the file left is whole and then serves a third lookup."""
    calls: list = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return _arrays()

    out = [None, None]
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, FeatureCache(tmp_path, log=lambda *_: None)
                                                                 .get("toy", KEY, slow, shapes=SHAPES)))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 2 and all(np.array_equal(out[0][k], out[1][k]) for k in out[0])
    assert FeatureCache(tmp_path, log=lambda *_: None).get("toy", KEY, slow, shapes=SHAPES) is not None
    assert len(calls) == 2 and len(list(tmp_path.glob("*.npz"))) == 1


class FakeDist:
    """A rank of a data-parallel run without a process group: ``broadcast`` hands back rank 0's answer."""

    def __init__(self, rank: int, answer=None):
        self.rank, self.world, self.answer = rank, 2, answer

    main = property(lambda self: self.rank == 0)
    active = property(lambda self: True)

    def broadcast(self, obj):
        return obj if self.main else self.answer


@pytest.mark.parametrize("rank0_has_it", [True, False])
def test_only_rank_0_reads_and_writes(tmp_path, rank0_has_it):
    """A rank > 0 neither reads nor writes: on rank 0's hit it gets None without computing; on a miss it takes
    part in the computation (a collective) and writes nothing. Rank 0 writes on a miss."""
    calls, compute = _counting()
    cache = FeatureCache(tmp_path / "r1", log=lambda *_: None)
    got = cache.get("toy", KEY, compute, shapes=SHAPES, dist=FakeDist(1, answer=rank0_has_it))
    assert (got is None) == rank0_has_it and len(calls) == (0 if rank0_has_it else 1)
    assert not (tmp_path / "r1").exists() and cache.events == []
    cache0 = FeatureCache(tmp_path / "r0", log=lambda *_: None)
    got0 = cache0.get("toy", KEY, compute, shapes=SHAPES, dist=FakeDist(0))
    assert got0 is not None and cache0.path(KEY).exists()


def test_metrics_json_records_the_cache_lookups(data, home, tmp_path):
    from genbench.studies.config import load_study
    from genbench.studies.runner import write_summary

    _real_row(_ctx(data), data)
    ctx = _ctx(data)
    _real_row(ctx, data)
    summary = write_summary(tmp_path, load_study("mnist_four", "smoke"), ctx, [{"model": "real", "metrics": {}}])
    fc = json.loads((tmp_path / "metrics.json").read_text())["provenance"]["feature_cache"]
    assert fc == json.loads(json.dumps(summary["provenance"]["feature_cache"]))
    assert fc["from_cache"] == 5 and fc["computed"] == 0 and fc["folder"] == str(home / "features")
    assert {e["features"] for e in fc["lookups"]} == {
        f"classifier features of {N_TEST} test images", f"classifier features of {N} holdout images",
        f"classifier features of {min(N_TEST, N_TRAIN)} train images",
        f"Inception reference statistics of {M} test images", f"Inception features of {M} holdout images"}


# -- end to end -----------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_second_genbench_score_extracts_no_real_features(tmp_path, mnist):
    """``genbench score`` of one .npz twice on one fresh GENBENCH_HOME (its datasets, Inception weights and
    classifiers linked from the usual cache): the first computes the reference, real-row and test-split features,
    the second reads every one of them (no ``computing`` line, metrics.json says 5 from the cache, 0 computed) and
    gives the same numbers."""
    from conftest import cli_subprocess
    from genbench.data.assets import cache_home

    home = tmp_path / "home"
    home.mkdir()
    for sub in ("assets", "datasets", "classifiers"):
        if (cache_home() / sub).exists():
            (home / sub).symlink_to(cache_home() / sub)
    test = mnist["test"]
    np.savez(tmp_path / "imgs.npz", x=test.x[-120:].numpy(), y=test.y[-120:].numpy())
    out = tmp_path / "out"
    args = ("--threads", "1", "score", str(tmp_path / "imgs.npz"), "--reference", "mnist", "--out", str(out),
            "--profile", "smoke", "--n", "100", "--n-inception", "100")
    runs = []
    for _ in range(2):
        p = cli_subprocess(*args, env={"GENBENCH_HOME": str(home)})
        assert p.returncode == 0, p.stderr[-3000:]
        runs.append((p.stderr, json.loads((out / "metrics.json").read_text())))
    (err1, m1), (err2, m2) = runs
    fc1, fc2 = m1["provenance"]["feature_cache"], m2["provenance"]["feature_cache"]
    assert (fc1["computed"], fc1["from_cache"]) == (5, 0), fc1  # + the memorisation train subset's features
    assert (fc2["computed"], fc2["from_cache"]) == (0, 5), fc2
    assert "[features]" in err1 and "computing" in err1
    assert not [line for line in err2.splitlines() if line.startswith("[features]") and "from the cache" not in line]
    rows1, rows2 = ({r["model"]: r["metrics"] for r in m["models"]} for m in (m1, m2))
    for name in ("imgs", "real"):
        a, b = dict(rows1[name]), dict(rows2[name])
        a.pop("eval_seconds"), b.pop("eval_seconds")
        same_metrics(a, b, name)


def test_the_size_cap_removes_the_least_recently_used_files(tmp_path, monkeypatch):
    """Three ~1 MiB entries under a 3 MiB cap: writing the third (over 3 MiB with the headers) removes the least recently used one (the first,
    unless a hit refreshed it), never the file just written; 0 means no cap; a bad value is one line."""
    import os

    from genbench.errors import GenbenchError
    from genbench.metrics.feature_cache import SIZE_ENV

    logs: list[str] = []
    cache = FeatureCache(tmp_path, log=logs.append)
    arr = {"features": np.random.default_rng(0).standard_normal((1, 2**17))}  # float64, not float32-exact: 1 MiB
    keys = [{"k": i} for i in range(3)]
    monkeypatch.setenv(SIZE_ENV, "3")
    cache.write(keys[0], arr, "a")
    cache.write(keys[1], arr, "b")
    old = cache.path(keys[0]).stat().st_mtime - 100
    os.utime(cache.path(keys[0]), (old, old))
    os.utime(cache.path(keys[1]), (old + 10, old + 10))
    assert cache.get("a", keys[0], lambda: arr)  # a hit refreshes the first file: now the second is the oldest
    cache.write(keys[2], arr, "c")
    left = {p.name for p in tmp_path.glob("*.npz")}
    assert left == {cache.path(keys[0]).name, cache.path(keys[2]).name}, left
    assert not cache.path(keys[1]).with_suffix(".json").exists() and "least recently used" in logs[-1]
    monkeypatch.setenv(SIZE_ENV, "0")
    cache.write(keys[1], arr, "b")
    assert len(list(tmp_path.glob("*.npz"))) == 3  # no cap
    monkeypatch.setenv(SIZE_ENV, "lots")
    with pytest.raises(GenbenchError, match="whole MiB"):
        cache.write(keys[1], arr, "b")
