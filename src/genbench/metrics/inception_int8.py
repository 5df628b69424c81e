"""INT8 Inception: the OpenVINO pool3 model quantized post-training with NNCF (``nncf.quantize``), built once
and cached under ``<GENBENCH_HOME>/openvino/``.

Calibration: :data:`CALIB_N` images drawn with a fixed seed from a dataset genbench ships (MNIST's train split,
the holdout excluded: training images, never the images being scored), passed through the extractor's own
preprocessing (grey -> 3 channels, the resize policy, ``(u - 128) / 128``), so the activation ranges are those of
the real inputs. The set's sha256 (its indices and pixels) is part of the model's key and of its build record.

Cache layout (one build per key)::

    openvino/inception-int8-<digest>.xml   the quantized IR
    openvino/inception-int8-<digest>.bin   its weights
    openvino/inception-int8-<digest>.json  the build record: key, sha256 of both files, build seconds

``<digest>`` is :func:`~genbench.metrics.feature_cache.key_digest` of the key: the fp32 weights' sha256, the nncf
and OpenVINO versions, the calibration set (dataset, split, N, seed, sha256), the resize policy, the preprocessing
version and the quantization recipe. Each file is written atomically and the record last, holding the sha256 of
the other two: a build is used only when its record matches the key and both files match their sums, so a crash
mid-build, a truncated or a tampered file is rebuilt, never loaded.

nncf is optional (``pip install genbench[int8]``): :func:`nncf_version` says whether it is there without importing
it (the import takes ~4 s; only a build needs it).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from genbench.data.assets import cache_home
from genbench.io import atomic_write_bytes, atomic_write_json, sha256_file
from genbench.metrics.feature_cache import key_digest

FOLDER = "openvino"
CALIB_DATASET, CALIB_SPLIT, CALIB_N, CALIB_SEED = "mnist", "train", 300, 0
# nncf.quantize's arguments; bump RECIPE_VERSION when they change (it is in the key)
RECIPE = {"preset": "performance", "subset_size": CALIB_N, "fast_bias_correction": True}
RECIPE_VERSION = 1


def nncf_version() -> str | None:
    """The installed nncf's version, or None where it cannot be imported (not installed, or its import blocked)."""
    try:
        if importlib.util.find_spec("nncf") is None:
            return None
        return metadata.version("nncf")
    except (ImportError, ValueError, metadata.PackageNotFoundError):
        return None


@functools.lru_cache(maxsize=2)  # each INT8 extractor needs the record (it is in the key): load MNIST once a process
def calibration_images(n: int = CALIB_N, seed: int = CALIB_SEED) -> tuple[torch.Tensor, dict]:
    """``n`` uint8 (N, C, H, W) images of MNIST's train split (the holdout, the real-data floor, excluded) chosen
    by ``numpy.random.default_rng(seed)`` without replacement, and their record: dataset, split, n, seed, sha256
    (of the indices, int64, then the pixels).

    Raises:
        AssetError: MNIST is not in the cache and cannot be fetched.
    """
    from genbench.data import load_dataset

    train = load_dataset(CALIB_DATASET)[CALIB_SPLIT]
    idx = np.sort(np.random.default_rng(seed).choice(len(train.x), size=n, replace=False)).astype(np.int64)
    x = train.x[torch.as_tensor(idx)].contiguous()
    return x, {"dataset": CALIB_DATASET, "split": CALIB_SPLIT, "n": n, "seed": seed,
               "sha256": calibration_sha256(idx, x)}


def calibration_sha256(idx: np.ndarray, x: torch.Tensor) -> str:
    h = hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
    h.update(json.dumps([list(x.shape), str(x.dtype)]).encode())
    h.update(x.contiguous().numpy().tobytes())
    return h.hexdigest()


def model_key(*, weights_sha256: str, nncf: str, openvino: str, calibration: dict, resize: str,
              preprocess_version: int) -> dict:
    """The key of one INT8 build: everything its bytes depend on."""
    return {"model": "inception_v3_tf_2015_12_05_pool3", "weights_sha256": weights_sha256, "nncf": nncf,
            "openvino": openvino, "calibration": calibration, "resize": resize,
            "preprocess_version": preprocess_version, "recipe": {**RECIPE, "version": RECIPE_VERSION}}


def paths(key: dict, root: Path | None = None) -> tuple[Path, Path, Path]:
    """(xml, bin, record) of ``key``'s build under ``root`` (default ``<GENBENCH_HOME>/openvino``)."""
    stem = f"inception-int8-{key_digest(key)}"
    root = Path(root) if root is not None else cache_home() / FOLDER
    return root / f"{stem}.xml", root / f"{stem}.bin", root / f"{stem}.json"


def _read_record(key: dict, xml: Path, bin_: Path, rec: Path) -> dict | None:
    """The build record if it matches ``key`` and both files match their recorded sums, else None."""
    try:
        record = json.loads(rec.read_text())
        if record.get("key") != json.loads(json.dumps(key)):
            return None
        if sha256_file(xml) != record["xml_sha256"] or sha256_file(bin_) != record["bin_sha256"]:
            return None
        return record
    except Exception:  # noqa: BLE001 -- unreadable, malformed or missing: any damage means a rebuild
        return None


def load_or_build(ov, fp32_model, key: dict, calibration: torch.Tensor | Callable[[], torch.Tensor],
                  preprocess: Callable[[torch.Tensor], torch.Tensor], *, root: Path | None = None,
                  log: Callable[[str], None] = print):
    """The quantized ``ov.Model`` of ``key`` and its build record (``key``, ``build_seconds``, ``built_now``, the
    files' sha256), from the cache, else quantized now from ``fp32_model`` and cached.

    Args:
        ov: the ``openvino`` module.
        fp32_model: the ``ov.Model`` to quantize (only read on a miss).
        calibration: uint8 (N, C, H, W) calibration images, or a function returning them (called on a miss only).
        preprocess: uint8 (n, C, H, W) -> float (n, 3, S, S), the extractor's own preprocessing.
        root: the cache folder (default ``<GENBENCH_HOME>/openvino``).
        log: receives one line on a build (what, where, how long).
    """
    xml, bin_, rec = paths(key, root)
    record = _read_record(key, xml, bin_, rec) if rec.exists() else None
    if record is not None:
        return ov.Core().read_model(str(xml), str(bin_)), {**record, "built_now": False}
    import nncf

    t0 = time.perf_counter()
    images = calibration() if callable(calibration) else calibration
    data = nncf.Dataset([images[i:i + 1] for i in range(len(images))],
                        lambda x: preprocess(x).numpy())
    quantized = nncf.quantize(fp32_model, data, preset=nncf.QuantizationPreset.PERFORMANCE,
                              subset_size=min(RECIPE["subset_size"], len(images)),
                              fast_bias_correction=RECIPE["fast_bias_correction"])
    with tempfile.TemporaryDirectory() as tmp:
        ov.save_model(quantized, str(Path(tmp) / "m.xml"), compress_to_fp16=False)
        xml_bytes, bin_bytes = (Path(tmp) / "m.xml").read_bytes(), (Path(tmp) / "m.bin").read_bytes()
    seconds = time.perf_counter() - t0
    atomic_write_bytes(xml, xml_bytes)
    atomic_write_bytes(bin_, bin_bytes)
    record = {"key": key, "xml_sha256": hashlib.sha256(xml_bytes).hexdigest(),
              "bin_sha256": hashlib.sha256(bin_bytes).hexdigest(), "build_seconds": round(seconds, 2)}
    atomic_write_json(rec, record)  # last: the build counts only once its record is there
    log(f"[inception] built the INT8 model (nncf {key['nncf']}, {len(images)} calibration images sha256 "
        f"{key['calibration'].get('sha256', '?')[:12]}) in {seconds:.1f} s -> {xml}")
    return quantized, {**record, "built_now": True}
