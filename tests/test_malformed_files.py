"""Malformed files fed to every file loader give GenbenchError/AssetError only, in one line (hypothesis,
derandomized): the MNIST pickle and its converted cache, any asset file, IDX, QuickDraw .npy and CIFAR-10 batches,
checkpoints, history.jsonl, study YAML text and study fields of the wrong type or range. No pickle runs code.
``test_malformed_input_counts`` (run last) checks that each property test fed its inputs.
"""

import gzip
import io as _io
import json
import os
import pickle
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genbench.errors import AssetError, GenbenchError
from genbench.io import read_jsonl
N_EXAMPLES = {"mnist_pickle": 200, "mnist_npz_cache": 100, "asset_file": 50, "idx_file": 150, "quickdraw_npy": 75,
              "cifar10_batch": 100, "checkpoint": 150, "history_jsonl": 100, "study_yaml_text": 150,
              "study_fields": 200}
"""max_examples per property test: 1,275 malformed inputs in all (plus the explicit cases below)."""
TRIED = {k: 0 for k in N_EXAMPLES}
_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _one_line_error(exc_type, fn, *a, **kw):
    """Call ``fn``; it may succeed or raise ``exc_type`` with a one-line message. Anything else fails."""
    try:
        return fn(*a, **kw)
    except exc_type as e:
        msg = str(e)
        assert msg and "\n" not in msg, repr(msg)
        return e


_dtypes = st.sampled_from([np.float32, np.float64, np.uint8, np.int64, np.int32, np.bool_, np.float16])
_shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)
def _full(shape, fill, dtype):
    with np.errstate(invalid="ignore"):
        return np.full(shape, fill).astype(dtype)


_arrays = st.builds(lambda dt, sh, fill: _full(sh, fill, dt), _dtypes, _shapes,
                    st.sampled_from([0, 0.5, 1, 255, -3, float("nan"), float("inf")]))
_right_arrays = st.tuples(st.integers(0, 4), st.sampled_from([0.0, 0.25, 0.999, 1.0, -0.1, float("nan")]),
                          st.sampled_from([0, 9, 10, -1])).map(
    lambda t: (np.full((t[0], 784), t[1], np.float32), np.full((t[0],), t[2], np.int64)))
_leaf = st.one_of(_arrays, st.integers(), st.text(max_size=5), st.none(), _right_arrays)
_nested = st.recursive(_leaf, lambda c: st.one_of(st.lists(c, max_size=4), st.lists(c, max_size=4).map(tuple)),
                       max_leaves=8)
# Exactly the expected ((x, y), (x, y), (x, y)) frame with right/wrong arrays inside, or anything nested.
_mnist_like = st.one_of(st.tuples(_right_arrays, _right_arrays, _right_arrays),
                        st.tuples(*[st.tuples(_arrays, _arrays)] * 3), _nested)


def _gz_pickle(obj) -> bytes:
    return gzip.compress(pickle.dumps(obj, protocol=2))


_mnist_files = st.one_of(
    st.just(b""),
    st.binary(max_size=3000),  # random bytes (almost never gzip)
    st.binary(max_size=3000).map(gzip.compress),  # gzip, not a pickle
    _mnist_like.map(_gz_pickle),  # a pickle of the wrong structure, dtypes, dims or values
    st.tuples(_mnist_like.map(_gz_pickle), st.floats(0, 1)).map(lambda t: t[0][: int(len(t[0]) * t[1])]),  # cut
    st.tuples(_mnist_like.map(_gz_pickle), st.integers(0, 10**6), st.integers(1, 255)).map(  # one byte changed
        lambda t: t[0][: t[1] % max(len(t[0]), 1)] + bytes([(t[0][t[1] % max(len(t[0]), 1)] ^ t[2])
                                                             if t[0] else 1]) + t[0][t[1] % max(len(t[0]), 1) + 1:]),
)


@settings(max_examples=N_EXAMPLES["mnist_pickle"], **_SETTINGS)
@given(blob=_mnist_files)
def test_mnist_asset_decoder_only_raises_asset_error(blob):
    from genbench.data import mnist as M

    TRIED["mnist_pickle"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "mnist.pkl.gz"
        p.write_bytes(blob)
        with mock.patch.object(M, "fetch_asset", lambda name: p):
            out = _one_line_error(AssetError, M.convert_mnist)
    assert isinstance(out, AssetError)  # nothing here is the real MNIST


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/genbench-pickle-ran",))


def test_mnist_asset_decoder_runs_no_code():
    from genbench.data import mnist as M

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "mnist.pkl.gz"
        p.write_bytes(_gz_pickle(((_Evil(), 1), (2, 3), (4, 5))))
        with mock.patch.object(M, "fetch_asset", lambda name: p), pytest.raises(AssetError, match="not allowed"):
            M.convert_mnist()
    assert not Path("/tmp/genbench-pickle-ran").exists()


def test_real_mnist_asset_still_decodes():
    from genbench.data.assets import ASSETS
    from genbench.data.mnist import decode_mnist_pickle

    parts = decode_mnist_pickle(ASSETS["mnist"].path)
    assert [len(x) for x, _ in parts] == [50000, 10000, 10000]


def _npz(**arrays) -> bytes:
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_npz_files = st.one_of(
    st.just(b""), st.binary(max_size=2000),
    st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test", "other"]), _arrays,
                    max_size=5).map(lambda d: _npz(**d)),
    st.tuples(st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test"]), _arrays, min_size=4),
              st.floats(0, 1)).map(lambda t: (lambda b: b[: int(len(b) * t[1])])(_npz(**t[0]))),
)


@settings(max_examples=N_EXAMPLES["mnist_npz_cache"], **_SETTINGS)
@given(cache=_npz_files, asset=st.one_of(st.none(), st.binary(max_size=500)))
def test_mnist_cache_and_asset_only_raise_asset_error(cache, asset):
    """A damaged converted cache is rejected and rebuilt from the asset; a damaged (or absent) asset then
    fails its checksum: AssetError, with no download attempted."""
    from genbench.data import assets as A
    from genbench.data.mnist import load_mnist

    TRIED["mnist_npz_cache"] += 1
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_HOME": d}), \
            mock.patch.object(A.subprocess, "run", side_effect=AssertionError("no downloads in tests")):
        (Path(d) / "datasets").mkdir()
        (Path(d) / "datasets" / "mnist.npz").write_bytes(cache)
        if asset is not None:
            A.ASSETS["mnist"].path.parent.mkdir(parents=True)
            A.ASSETS["mnist"].path.write_bytes(asset)
        out = _one_line_error(AssetError, load_mnist, fetch=asset is not None)
    assert isinstance(out, AssetError)


def test_mnist_cache_with_right_shapes_but_wrong_dtypes_or_labels_is_rejected(tmp_path, monkeypatch):
    from genbench.data import mnist as M

    monkeypatch.setenv("GENBENCH_HOME", str(tmp_path))
    monkeypatch.setattr(M, "convert_mnist", lambda: (_ for _ in ()).throw(AssetError("rebuild")))
    good = {"x_train": np.zeros((60000, 1, 28, 28), np.uint8), "y_train": np.zeros(60000, np.int64),
            "x_test": np.zeros((10000, 1, 28, 28), np.uint8), "y_test": np.zeros(10000, np.int64)}
    (tmp_path / "datasets").mkdir()
    cache = tmp_path / "datasets" / "mnist.npz"
    for key, bad in [("x_train", good["x_train"].astype(np.int8)), ("y_test", good["y_test"].astype(np.float64)),
                     ("y_train", np.full(60000, 10, np.int64)), ("y_test", np.zeros(9999, np.int64))]:
        np.savez(cache, **{**good, key: bad})
        with pytest.raises(AssetError, match="rebuild"):
            M.load_mnist()
    np.savez(cache, **good)  # right shapes and types, but all zeros and written without a checksum record
    with pytest.raises(AssetError, match="rebuild"):
        M.load_mnist()
    from genbench.data.cache import save_arrays

    save_arrays("mnist", good, source="test")  # as written from a verified asset: trusted while it matches
    assert M.load_mnist()["x_train"].dtype == np.uint8


@settings(max_examples=N_EXAMPLES["asset_file"], **_SETTINGS)
@given(blob=st.binary(max_size=5000), name=st.sampled_from(["mnist", "inception"]))
def test_any_asset_file_fails_its_checksum_cleanly(blob, name):
    from genbench.data import assets as A

    TRIED["asset_file"] += 1
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_HOME": d}):
        A.ASSETS[name].path.parent.mkdir(parents=True)
        A.ASSETS[name].path.write_bytes(blob)
        e = _one_line_error(AssetError, A.fetch_asset, name)
        assert isinstance(e, AssetError) and "corrupt" in str(e)
        A.ASSETS[name].path.unlink()
        A.ASSETS[name].path.mkdir()  # a folder where the file should be
        assert isinstance(_one_line_error(AssetError, A.verify_asset, A.ASSETS[name]), AssetError)


def _idx(magic: int, dims: list[int], data: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + data


_idx_files = st.one_of(
    st.just(b""), st.binary(max_size=2000), st.binary(max_size=2000).map(gzip.compress),
    st.tuples(st.sampled_from([0x801, 0x803, 0x802, 0x808, 0x80D, 0x0, 0x1803, 0x804]),
              st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 30), max_size=4), st.binary(max_size=3000)).map(
        lambda t: gzip.compress(_idx(*t))),  # wrong magic, wrong dims, sizes that do not match
    st.tuples(st.integers(0, 20), st.integers(0, 30), st.integers(0, 30), st.floats(0, 1)).map(  # valid, then cut
        lambda t: (lambda b: b[: int(len(b) * t[3])])(gzip.compress(_idx(0x803, list(t[:3]), bytes(t[0] * t[1] * t[2]))))),
    st.tuples(st.integers(0, 20), st.integers(0, 30), st.integers(0, 30)).map(  # valid file, wrong image size
        lambda t: gzip.compress(_idx(0x803, list(t), bytes(t[0] * t[1] * t[2])))),
)


@settings(max_examples=N_EXAMPLES["idx_file"], **_SETTINGS)
@given(images=_idx_files, labels=st.one_of(_idx_files, st.integers(0, 20).map(
    lambda n: gzip.compress(_idx(0x801, [n], bytes(range(n)))))))
def test_idx_loader_only_raises_asset_error(images, labels):
    """Fashion-MNIST's IDX reader and loader (checksums bypassed: the files are given to the conversion)."""
    from genbench.data import fashion_mnist as F

    TRIED["idx_file"] += 1
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_HOME": d}), \
            mock.patch.object(F, "verify_debian_asset", lambda asset, src: Path(d)):
        for prefix in ("train", "t10k"):
            (Path(d) / f"{prefix}-images-idx3-ubyte.gz").write_bytes(images)
            (Path(d) / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(labels)
        _one_line_error(AssetError, F.read_idx, Path(d) / "train-images-idx3-ubyte.gz")
        out = _one_line_error(AssetError, F.load_fashion_mnist, d)
        if not isinstance(out, AssetError):
            assert out["x_train"].shape[1:] == (1, 28, 28) and out["y_train"].shape == (len(out["x_train"]),)


@settings(max_examples=N_EXAMPLES["quickdraw_npy"], **_SETTINGS)
@given(blob=st.one_of(st.just(b""), st.binary(max_size=2000),
                      st.tuples(_arrays, st.floats(0, 1)).map(
                          lambda t: (lambda b: b[: max(1, int(len(b) * t[1]))])(_npy(t[0]))),
                      _arrays.map(lambda a: _npy(a)),
                      st.integers(0, 12).map(lambda n: _npy(np.zeros((n, 784), np.uint8)))))
def test_quickdraw_loader_only_raises_asset_error(blob):
    from genbench.data.quickdraw import load_quickdraw

    TRIED["quickdraw_npy"] += 1
    with tempfile.TemporaryDirectory() as d, mock.patch.dict(os.environ, {"GENBENCH_QUICKDRAW_DIR": d}):
        (Path(d) / "cat.npy").write_bytes(blob)
        out = _one_line_error(AssetError, load_quickdraw, None, ["cat"], train_per_class=5, test_per_class=3)
        if not isinstance(out, AssetError):
            assert out["x_train"].shape == (5, 1, 28, 28) and out["x_test"].shape == (3, 1, 28, 28)


def _npy(a) -> bytes:
    buf = _io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


_cifar_like = st.one_of(
    st.fixed_dictionaries({b"data": _arrays, b"labels": st.lists(st.integers(-2, 12), max_size=5)}),
    st.integers(0, 4).map(lambda n: {b"data": np.zeros((n, 3072), np.uint8), b"labels": [3] * n}),
    st.dictionaries(st.sampled_from([b"data", b"labels", "data"]), _leaf, max_size=3), _nested)


@settings(max_examples=N_EXAMPLES["cifar10_batch"], **_SETTINGS)
@given(blob=st.one_of(st.just(b""), st.binary(max_size=2000), _cifar_like.map(lambda o: pickle.dumps(o, 2)),
                      st.tuples(_cifar_like, st.floats(0, 1)).map(
                          lambda t: (lambda b: b[: int(len(b) * t[1])])(pickle.dumps(t[0], 2)))),
       meta=st.one_of(st.binary(max_size=200), st.just(pickle.dumps({b"label_names": [b"cat"] * 10})),
                      st.just(pickle.dumps([1, 2]))))
def test_cifar10_loader_only_raises_asset_error(blob, meta):
    from genbench.data.cifar10 import FILES, load_cifar10

    TRIED["cifar10_batch"] += 1
    with tempfile.TemporaryDirectory() as d:
        for f in FILES[:-1]:
            (Path(d) / f).write_bytes(blob)
        (Path(d) / "batches.meta").write_bytes(meta)
        with mock.patch.dict(os.environ, {"GENBENCH_CIFAR10_DIR": d}):
            out = _one_line_error(AssetError, load_cifar10, None)
        if not isinstance(out, AssetError):
            assert out["x_train"].shape[1:] == (3, 32, 32)


def test_cifar10_pickle_runs_no_code(tmp_path, monkeypatch):
    from genbench.data.cifar10 import FILES, load_cifar10

    for f in FILES:
        (tmp_path / f).write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    monkeypatch.setenv("GENBENCH_CIFAR10_DIR", str(tmp_path))
    with pytest.raises(AssetError, match="not allowed"):
        load_cifar10(None)
    assert not Path("/tmp/genbench-pickle-ran").exists()


def _torch_bytes(obj) -> bytes:
    buf = _io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


_REAL_CKPT = {"format_version": 1, "config": {"model": {"kind": "vae", "resolved_params": {}}},
              "model": {"w": torch.zeros(3)}, "optimizers": {}, "schedulers": {}, "ema": None, "epoch": 1, "step": 2,
              "images_seen": 3, "train_seconds": 0.5, "rng": {"torch": torch.get_rng_state()}, "finished": False}
_ckpt_values = st.one_of(st.integers(), st.text(max_size=4), st.none(), st.floats(), st.just(torch.ones(2)),
                         st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
_ckpt_files = st.one_of(
    st.just(b""), st.binary(max_size=3000),
    st.floats(0, 1).map(lambda f: (lambda b: b[: int(len(b) * f)])(_torch_bytes(_REAL_CKPT))),  # truncated
    st.dictionaries(st.sampled_from(list(_REAL_CKPT)), _ckpt_values, max_size=4).map(  # fields replaced/missing
        lambda d: _torch_bytes({k: v for k, v in {**_REAL_CKPT, **d}.items() if not (v is None and k in d)})),
    _ckpt_values.map(_torch_bytes),  # not a dict at all
)


@settings(max_examples=N_EXAMPLES["checkpoint"], **_SETTINGS)
@given(blob=_ckpt_files)
def test_checkpoint_loader_only_raises_genbench_error(blob):
    from genbench.training.checkpoint import load_checkpoint

    TRIED["checkpoint"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "last.pt"
        p.write_bytes(blob)
        _one_line_error(GenbenchError, load_checkpoint, p, expect_kind="vae")


_jsonl_files = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.one_of(st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps),
                       st.text(max_size=20), st.just("[1, 2]"), st.just("5"), st.just("{\"kind\": \"st")),
             max_size=8).map(lambda ls: "\n".join(ls).encode()),
)


@settings(max_examples=N_EXAMPLES["history_jsonl"], **_SETTINGS)
@given(blob=_jsonl_files)
def test_history_reader_only_raises_genbench_error(blob):
    TRIED["history_jsonl"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "history.jsonl"
        p.write_bytes(blob)
        out = _one_line_error(GenbenchError, read_jsonl, p)
        assert isinstance(out, GenbenchError) or all(isinstance(r, dict) for r in out)


def test_history_torn_last_line_is_skipped_but_damage_inside_is_an_error(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert read_jsonl(p) == [{"step": 1}, {"step": 2}]
    p.write_text('{"step": 1}\nxx\n{"step": 3}\n')
    with pytest.raises(GenbenchError, match="line 2 is not a JSON object"):
        read_jsonl(p)


_STUDY = (Path(__file__).parent.parent / "studies" / "mnist_four.yaml").read_text()


@settings(max_examples=N_EXAMPLES["study_yaml_text"], **_SETTINGS)
@given(blob=st.one_of(st.binary(max_size=500), st.text(max_size=300).map(str.encode),
                      st.tuples(st.floats(0, 1), st.binary(max_size=20)).map(  # the real file cut + junk
                          lambda t: _STUDY.encode()[: int(len(_STUDY) * t[0])] + t[1])))
def test_study_file_loader_only_raises_genbench_error(blob):
    from genbench.studies.config import load_study

    TRIED["study_yaml_text"] += 1
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "s.yaml"
        p.write_bytes(blob)
        for profile in ("smoke", "full"):
            _one_line_error(GenbenchError, load_study, p, profile)


def _field_paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _field_paths(v, prefix + (k,))


_RAW = __import__("yaml").safe_load(_STUDY)
_PATHS = sorted(_field_paths(_RAW), key=str)
_values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8), st.lists(st.integers(-3, 300), max_size=3),
                    st.dictionaries(st.sampled_from(["smoke", "quick", "x", "kind"]), st.integers(-2, 5), max_size=2))


@settings(max_examples=N_EXAMPLES["study_fields"], **_SETTINGS)
@given(edits=st.lists(st.tuples(st.sampled_from(_PATHS), st.one_of(_values, st.just("__delete__"))),
                      min_size=1, max_size=3), profile=st.sampled_from(["smoke", "quick", "full"]))
def test_study_with_wrong_field_types_or_ranges_only_raises_genbench_error(edits, profile):
    """The bundled study with 1-3 fields replaced by values of random types (or deleted): parse_study either
    accepts it or names the field in one line; if accepted, every model can be built from it."""
    import copy

    from genbench.families import build_model
    from genbench.studies.config import parse_study

    TRIED["study_fields"] += 1
    raw = copy.deepcopy(_RAW)
    for path, value in edits:
        node = raw
        for k in path[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if value == "__delete__":
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
    out = _one_line_error(GenbenchError, parse_study, raw, profile, "s.yaml")
    if not isinstance(out, GenbenchError):
        for m in out.models:
            if m.kind in ("vae", "cgan", "gan"):  # the DDPM's U-Net takes a second to build
                _one_line_error(GenbenchError, build_model, m.kind, m.params)


PROPERTY_TESTS = {"mnist_pickle": "test_mnist_asset_decoder_only_raises_asset_error",
                  "mnist_npz_cache": "test_mnist_cache_and_asset_only_raise_asset_error",
                  "asset_file": "test_any_asset_file_fails_its_checksum_cleanly",
                  "idx_file": "test_idx_loader_only_raises_asset_error",
                  "quickdraw_npy": "test_quickdraw_loader_only_raises_asset_error",
                  "cifar10_batch": "test_cifar10_loader_only_raises_asset_error",
                  "checkpoint": "test_checkpoint_loader_only_raises_genbench_error",
                  "history_jsonl": "test_history_reader_only_raises_genbench_error",
                  "study_yaml_text": "test_study_file_loader_only_raises_genbench_error",
                  "study_fields": "test_study_with_wrong_field_types_or_ranges_only_raises_genbench_error"}


def test_malformed_input_counts(request):
    """Runs after the property tests of this module: each one that ran in this session really fed its inputs (a
    strategy that filters everything out, or a test that returns before its counter, would pass vacuously).
    Hypothesis runs max_examples cases unless the strategy's space is exhausted; each space here is far larger
    (measured: every family at exactly max_examples), so fewer than half means the generator broke. The counts are
    printed (pytest -s)."""
    assert set(PROPERTY_TESTS) == set(N_EXAMPLES)
    ran = {item.originalname for item in request.session.items if item.module is request.module}
    families = [k for k, name in PROPERTY_TESTS.items() if name in ran]
    print(f"\nmalformed inputs tried: {TRIED} = {sum(TRIED.values())} (max_examples {sum(N_EXAMPLES.values())})")
    if not families:
        pytest.skip("no property test of this module ran in this session")
    short = {k: TRIED[k] for k in families if TRIED[k] < N_EXAMPLES[k] // 2}
    assert not short, f"property tests that fed fewer than half their max_examples: {short} of {N_EXAMPLES}"
