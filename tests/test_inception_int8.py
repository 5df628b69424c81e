"""INT8 Inception (genbench.metrics.inception_int8): built once into GENBENCH_HOME and loaded after, keyed by the
weights' hash, the nncf version and the calibration set's hash; the missing-nncf fallback; the INT8 FID against the
OpenVINO fp32 one on real MNIST.

The build/cache tests quantize a tiny conv net (seconds); only the FID test builds the real Inception model (minutes
the first time on 2 cores, then loaded from the cache). nncf is in the `test` extra; where it is absent the tests
that quantize skip, saying so.
"""

import sys

import numpy as np
import pytest
import torch

from genbench.metrics import inception_int8 as q


def _key(**over):
    base = dict(weights_sha256="a" * 64, nncf="3.4.0", openvino="2026.4.1",
                calibration={"dataset": "mnist", "split": "train", "n": 300, "seed": 0, "sha256": "c" * 64},
                resize="tf1_bilinear", preprocess_version=1)
    return q.model_key(**{**base, **over})


def test_the_key_changes_with_the_weights_nncf_and_calibration(tmp_path):
    stem = q.paths(_key(), tmp_path)[0].name
    assert stem == q.paths(_key(), tmp_path)[0].name  # deterministic
    others = [_key(weights_sha256="b" * 64), _key(nncf="3.5.0"), _key(openvino="2026.5.0"),
              _key(calibration={"dataset": "mnist", "split": "train", "n": 300, "seed": 0, "sha256": "d" * 64}),
              _key(resize="torch_bilinear")]
    names = {q.paths(k, tmp_path)[0].name for k in others}
    assert stem not in names and len(names) == len(others)


def test_the_calibration_hash_covers_indices_and_pixels():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    idx = np.array([3, 7])
    h = q.calibration_sha256(idx, x)
    assert h == q.calibration_sha256(idx.copy(), x.clone()) and len(h) == 64
    y = x.clone()
    y[1, 0, 3, 3] += 1
    assert q.calibration_sha256(idx, y) != h
    assert q.calibration_sha256(np.array([3, 8]), x) != h


def test_the_calibration_set_is_seeded_training_images(mnist):
    x, rec = q.calibration_images(n=20, seed=0)
    x2, rec2 = q.calibration_images(n=20, seed=0)
    assert rec == rec2 and torch.equal(x, x2) and rec["split"] == "train" and rec["n"] == 20
    assert q.calibration_images(n=20, seed=1)[1]["sha256"] != rec["sha256"]
    # training images, never the held-out floor nor the test split (what is scored)
    train = mnist["train"].x.reshape(len(mnist["train"].x), -1)
    flat = x.reshape(len(x), -1)
    assert all(((train == row).all(1)).any() for row in flat[:5])


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _tiny_ov():
    ov = pytest.importorskip("openvino")
    return ov, ov.convert_model(_Tiny().eval(), example_input=torch.zeros(1, 3, 8, 8))


def _pre(u):
    return (u.float().repeat(1, 3, 1, 1) - 128) / 128


def test_the_int8_model_is_built_once_then_loaded(tmp_path, monkeypatch):
    pytest.importorskip("nncf", reason="nncf is not installed (pip install genbench[int8]); the INT8 build is untested")
    import nncf

    ov, model = _tiny_ov()
    calib = torch.randint(0, 256, (16, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    key = _key(calibration={"n": 16, "sha256": q.calibration_sha256(np.arange(16), calib)})
    lines = []
    m1, rec1 = q.load_or_build(ov, model, key, calib, _pre, root=tmp_path, log=lines.append)
    assert rec1["built_now"] and rec1["build_seconds"] > 0 and rec1["key"]["calibration"]["sha256"] == key[
        "calibration"]["sha256"]
    assert len(lines) == 1 and "built the INT8 model" in lines[0] and "s ->" in lines[0]
    xml, bin_, rec = q.paths(key, tmp_path)
    assert xml.exists() and bin_.exists() and rec.exists()
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files

    def boom(*a, **k):
        raise AssertionError("rebuilt although the cache holds the build")

    monkeypatch.setattr(nncf, "quantize", boom)
    m2, rec2 = q.load_or_build(ov, model, key, lambda: boom(), _pre, root=tmp_path, log=lines.append)
    assert not rec2["built_now"] and rec2["build_seconds"] == rec1["build_seconds"] and len(lines) == 1
    x = _pre(calib[:4]).numpy()
    core = ov.Core()
    y1 = core.compile_model(m1, "CPU")(x)[0]
    y2 = core.compile_model(m2, "CPU")(x)[0]
    np.testing.assert_array_equal(y1, y2)  # the saved IR is the quantized model
    monkeypatch.undo()

    # a damaged file is rebuilt, never trusted; another key builds its own files
    bin_.write_bytes(bin_.read_bytes()[:-8])
    assert q.load_or_build(ov, model, key, calib, _pre, root=tmp_path, log=lines.append)[1]["built_now"]
    assert q.load_or_build(ov, model, key, calib, _pre, root=tmp_path, log=lines.append)[1]["built_now"] is False
    other = {**key, "nncf": "0.0.0"}
    assert q.load_or_build(ov, model, other, calib, _pre, root=tmp_path, log=lines.append)[1]["built_now"]
    assert len(list(tmp_path.glob("inception-int8-*.json"))) == 2


@pytest.mark.slow  # loads and converts the real Inception model (tens of seconds on 2 cores)
def test_without_nncf_int8_falls_back_with_one_line(monkeypatch):
    pytest.importorskip("openvino")
    from genbench.metrics.inception import InceptionFeatures
    from genbench.runtime.device import resolve_precision

    monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` raises ImportError, find_spec gives None
    assert q.nncf_version() is None
    lines = []
    inc = InceptionFeatures(backend="openvino", precision="int8", log=lines.append)
    assert len(lines) == 1 and "nncf" in lines[0] and "falling back" in lines[0], lines
    assert inc.precision == resolve_precision("auto") and inc.int8 is None
    assert "int8_model" not in inc.key() and inc.provenance() == inc.key()


def test_int8_asks_for_the_openvino_backend():
    from genbench.errors import GenbenchError
    from genbench.metrics.inception import InceptionFeatures

    with pytest.raises(GenbenchError, match="int8 runs on the OpenVINO backend"):
        InceptionFeatures(backend="torch", precision="int8")


# -- the real model: FID against OpenVINO fp32 on real MNIST ---------------------------------------------------------
N_INT8 = 64  # per set, as the OpenVINO known-answer test: both backends see the same images, so the gap is numerics
# INT8 does NOT meet the 0.5% rule the default backend must (benchmarks/inception_int8.py, N = 200: real floor +0.36%,
# noise -1.5%, blur +4.3%), which is why it is only an explicit choice; this bounds the drift it is documented with
INT8_FID_TOLERANCE = 0.06


@pytest.mark.slow  # builds the INT8 Inception once into GENBENCH_HOME (minutes on 2 cores), then 256 images x 2
def test_int8_fid_against_openvino_fp32(mnist):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf", reason="nncf is not installed (pip install genbench[int8]); INT8 FID unmeasured")
    from genbench.metrics.inception import InceptionFeatures
    from genbench.metrics.reference import reference_subset
    from genbench.metrics.scores import fid_from_features

    a = mnist["test"].x[torch.as_tensor(reference_subset(mnist["test"], N_INT8, 0))]
    b = mnist["holdout"].x[torch.as_tensor(reference_subset(mnist["holdout"], N_INT8, 0))]
    ref = InceptionFeatures(backend="openvino", precision="fp32")
    i8 = InceptionFeatures(backend="openvino", precision="int8")
    again = InceptionFeatures(backend="openvino", precision="int8")
    assert i8.key()["precision"] == "int8" and not again.provenance()["int8_built_now"]  # built once, loaded after
    assert i8.key() == again.key() and len(i8.key()["int8_calibration"]["sha256"]) == 64
    fid_ref = fid_from_features(ref(a), ref(b))
    fid_i8 = fid_from_features(i8(a), i8(b))
    assert abs(fid_i8 / fid_ref - 1) < INT8_FID_TOLERANCE, (fid_i8, fid_ref)
