"""A user's feature extractor from a file: a TorchScript archive (``torch.jit.save``) or an ONNX model.

A study names it in its evaluation section (docs/METRICS.md, "Feature extractors")::

    evaluation:
      extractors:
        - {name: dinov2, path: dinov2_vits14.onnx, input_size: 224, range: [0, 1],
           mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], resize: torch_bicubic}

The network takes float32 (B, channels, input_size, input_size) prepared by :class:`~genbench.metrics.extractors.Prep`
and returns one float (B, D) tensor (trailing dimensions of size 1 are dropped: (B, D, 1, 1) pool outputs work).
genbench never downloads a network: the user exports it (docs/METRICS.md has the DINOv2 recipe).

Loading is safe by construction: the file is read once into memory (its sha256 and the network come from the same
bytes), TorchScript through ``torch.jit.load`` (TorchScript's own format, never ``torch.load`` of a pickle) and ONNX
through ``onnxruntime.InferenceSession`` on the CPU. Every problem is one :class:`~genbench.errors.GenbenchError`
line naming the file and the fix: no file, not a regular file, an unknown suffix, onnxruntime missing, not loadable,
more than one input or output, an output of the wrong type, shape or dtype, NaN or infinite features. The network
is probed on two images of the study's data when it is loaded, so a wrong export fails before any model is scored.

Cache key (:meth:`key`): the file's sha256, its format, the runtime and its version, the preparation and
:data:`PREP_VERSION`; the evaluation context adds the batch and device. The name is not part of it: renaming an
extractor reuses its features.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.io import regular_file
from genbench.metrics.extractors import Extractor, Prep
from genbench.runtime.device import get_device
from genbench.runtime.distributed import Dist

SUFFIXES = {".pt": "torchscript", ".pts": "torchscript", ".torchscript": "torchscript", ".onnx": "onnx"}
FORMATS = ("torchscript", "onnx")
PREP_VERSION = 1  # part of the cache key: raise it when Prep's arithmetic changes
EXPORT_HINT = "export it as docs/METRICS.md (Feature extractors) shows"
ONNX_MISSING = ("an ONNX extractor needs onnxruntime, which is not installed; `pip install 'genbench[onnx]'` (or "
                "`pip install onnxruntime`), or export the network to TorchScript (.pt) instead")


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


@dataclass(frozen=True)
class FileExtractorConfig:
    """One entry of a study's ``evaluation.extractors`` (validated by :mod:`genbench.studies.schema`).

    Attributes:
        name: the space's name: its metrics are ``fd_<name>`` and ``kid_<name>``.
        path: the file, absolute.
        format: ``torchscript`` or ``onnx`` (None: from the suffix, :data:`SUFFIXES`).
        input_size, channels, value_range, mean, std, resize, batch: the :class:`Prep` of its input.
    """

    name: str
    path: str
    format: str | None = None
    input_size: int | None = None
    channels: int = 3
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str = "torch_bilinear"
    batch: int = 50

    @property
    def prep(self) -> Prep:
        return Prep(size=self.input_size, channels=self.channels, value_range=tuple(self.value_range),
                    mean=None if self.mean is None else tuple(self.mean),
                    std=None if self.std is None else tuple(self.std), resize=self.resize, batch=self.batch)

    def resolved_format(self, where: str = "") -> str:
        """``format``, or the one the file's suffix names.

        Raises:
            GenbenchError: no format given and an unknown suffix.
        """
        if self.format is not None:
            return self.format
        fmt = SUFFIXES.get(Path(self.path).suffix.lower())
        if fmt is None:
            raise GenbenchError(f"{where or self.name}: cannot tell the format of {self.path} from its suffix; name the "
                                f"file .pt (TorchScript) or .onnx, or set `format: torchscript | onnx`")
        return fmt


def check_file(cfg: FileExtractorConfig, where: str) -> str:
    """What a study file's parse checks without loading the network: the file is there and regular, its format is
    known and its runtime installed. Returns the format.

    Raises:
        GenbenchError: one line naming the problem and the fix.
    """
    p = regular_file(cfg.path, f"{where}: extractor file", EXPORT_HINT)
    if not p.exists():
        raise GenbenchError(f"{where}: no extractor file at {p}; {EXPORT_HINT}, or fix `path`")
    fmt = cfg.resolved_format(where)
    if fmt == "onnx" and _onnxruntime() is None:
        raise GenbenchError(f"{where}: {ONNX_MISSING}")
    return fmt


def _first_line(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


class _Network:
    """The loaded network: ``__call__(float32 (B, C, S, S) tensor) -> float64 numpy (B, D)``, checked."""

    def __init__(self, cfg: FileExtractorConfig, where: str, device: torch.device):
        self.where, self.fmt = where, check_file(cfg, where)
        self.path = Path(cfg.path)
        try:
            blob = self.path.read_bytes()
        except OSError as e:
            raise GenbenchError(f"{where}: cannot read {self.path} ({e.strerror or type(e).__name__})") from None
        self.sha256 = hashlib.sha256(blob).hexdigest()
        self.device = device if self.fmt == "torchscript" else torch.device("cpu")
        if self.fmt == "torchscript":
            try:
                self.net = torch.jit.load(io.BytesIO(blob), map_location="cpu").eval().to(self.device)
            except Exception as e:  # noqa: BLE001 - RuntimeError from the archive reader, and others: one line
                raise GenbenchError(f"{where}: {self.path} is not a loadable TorchScript file ({_first_line(e)}); "
                                    f"save it with torch.jit.save(torch.jit.trace(net, example)), {EXPORT_HINT}") \
                    from None
            self.runtime = f"torch {torch.__version__}"
        else:
            ort = _onnxruntime()
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1  # the study's threads
            try:
                self.net = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 - InvalidProtobuf, Fail... : one line
                raise GenbenchError(f"{where}: {self.path} is not a loadable ONNX file ({_first_line(e)}); "
                                    f"{EXPORT_HINT}") from None
            ins, outs = self.net.get_inputs(), self.net.get_outputs()
            if len(ins) != 1 or len(outs) != 1:
                raise GenbenchError(f"{where}: {self.path} has {len(ins)} inputs and {len(outs)} outputs; export a "
                                    f"network with one image input and one (N, D) feature output")
            if ins[0].type != "tensor(float)":
                raise GenbenchError(f"{where}: {self.path} takes {ins[0].type}; export it with a float32 input")
            self.input_name = ins[0].name
            self.runtime = f"onnxruntime {ort.__version__}"

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        n = len(x)
        try:
            if self.fmt == "torchscript":
                with torch.no_grad():
                    out = self.net(x.to(self.device))
            else:
                out = self.net.run(None, {self.input_name: x.numpy()})[0]
        except Exception as e:  # noqa: BLE001 - the network failed on this input: one line
            raise GenbenchError(f"{self.where}: {self.path} failed on a batch of shape {tuple(x.shape)} "
                                f"({_first_line(e)}); check input_size and channels, and export with a dynamic batch "
                                f"axis") from None
        return self._check(out, n)

    def _check(self, out, n: int) -> np.ndarray:
        where = f"{self.where}: {self.path}"
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu()
            if not out.is_floating_point():
                raise GenbenchError(f"{where} returned {out.dtype} features; it must return floating-point (N, D)")
            out = out.float().numpy()
        elif not isinstance(out, np.ndarray):
            raise GenbenchError(f"{where} returned a {type(out).__name__}, not one tensor; export a network whose "
                                f"forward returns one (N, D) feature tensor")
        if out.dtype.kind != "f":
            raise GenbenchError(f"{where} returned {out.dtype} features; it must return floating-point (N, D)")
        shape = out.shape
        while out.ndim > 2 and out.shape[-1] == 1:
            out = out.reshape(out.shape[:-1])
        if out.ndim != 2 or out.shape[0] != n or out.shape[1] < 1:
            raise GenbenchError(f"{where} returned shape {tuple(shape)} for {n} images; it must return (N, D) features "
                                f"(pool, or take the CLS token, before exporting)")
        if not np.isfinite(out).all():
            raise GenbenchError(f"{where} returned NaN or infinite features for {n} images; check the input range "
                                f"and normalisation (range, mean, std)")
        return out.astype(np.float64)


def load_file_extractor(cfg: FileExtractorConfig, probe: torch.Tensor, *, where: str | None = None,
                        device: torch.device | None = None, log=None) -> Extractor:
    """Load a file extractor and probe it.

    Args:
        cfg: the study's entry.
        probe: uint8 (2, C, H, W) images of the study's data: the network must turn them into (2, D) features.
        where: the entry's name in error lines (default ``evaluation.extractors.<name>``).
        device: TorchScript networks run here (default: genbench's device); ONNX runs on the CPU.
        log: optional ``log(str)`` for one progress line every 10 batches.

    Returns:
        The :class:`Extractor` (``features`` float64 (N, D)).

    Raises:
        GenbenchError: one line (module docstring).
    """
    where = where or f"evaluation.extractors.{cfg.name}"
    net = _Network(cfg, where, device or get_device())
    prep = cfg.prep
    dim = net(prep(probe)).shape[1]
    key = {"extractor": "file", "format": net.fmt, "file_sha256": net.sha256, "runtime": net.runtime,
           "prep": prep.record(), "preprocess_version": PREP_VERSION}

    @torch.no_grad()
    def extract(x_uint8: torch.Tensor, dist: Dist | None = None) -> np.ndarray:
        dist = dist or Dist()
        out = []
        starts = dist.batch_starts(len(x_uint8), prep.batch)
        for j, i in enumerate(starts):
            out.append(torch.from_numpy(net(prep(x_uint8[i:i + prep.batch]))))
            if log and j % 10 == 9:
                log(f"[{cfg.name}] {i + len(out[-1]) - starts.start}/{starts.stop - starts.start} images")
        feats = dist.gather_rows(torch.cat(out) if out else torch.zeros(0, dim, dtype=torch.float64))
        return feats.numpy()

    return Extractor(name=cfg.name, title=cfg.name, dim=dim, prep=prep, extract=extract, key=lambda: dict(key),
                     describe=f"{cfg.name}: {net.fmt} file {os.path.basename(cfg.path)} (sha256 {net.sha256[:12]}, "
                              f"{dim}-d, {net.runtime})")
