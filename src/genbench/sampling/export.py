"""Export generated images for other tools: a flat folder of PNG files, or an ``.npz`` of uint8 arrays.

PNG folder (``genbench sample RUN --png DIR``), the layout torch-fidelity (``fidelity --input1 DIR``) and clean-fid
(``fid.compute_fid(DIR, ...)``) read directly, and ``genbench score DIR`` too::

    DIR/000000.png, 000001.png, ...   one image per file, in bank order (the order of the (N, C, H, W) array), names
                                      zero-padded to 6 digits (more when N > 1,000,000); 8-bit grey (C = 1) or RGB
                                      (C = 3), lossless, never resized
    DIR/labels.csv                    conditional images only: ``filename,label`` per image, in the same order
    DIR/export.json                   where the images came from (run, bank or sampler, seed, N); written first with
                                      ``complete: false`` and again with ``complete: true`` after the last image

Only the images are ``.png`` files, so a reader that globs for images sees exactly N of them. A folder is
written only when it is new, empty, or an earlier export (it holds ``export.json``); exporting again into it
first deletes that export's PNG files and ``labels.csv``, so no image of a larger earlier export is left behind.

``.npz`` (``--npz FILE``): ``x`` uint8 (N, C, H, W) and, for conditional images, ``y`` int64 (N,), the layout
``genbench score FILE`` reads. Every file is written atomically (:mod:`genbench.io`).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.io import (atomic_savez, atomic_write_bytes, atomic_write_json, atomic_write_text, check_writable_dir,
                         own_folder, regular_file, remove_inside)

MARKER = "export.json"
LABELS = "labels.csv"
_OWN_PNG = re.compile(r"[0-9]{6,}\.png")


def png_names(n: int) -> list[str]:
    """The file names of ``n`` exported images: ``000000.png`` ... (at least 6 digits, all of one width)."""
    width = max(6, len(str(max(n - 1, 0))))
    return [f"{i:0{width}d}.png" for i in range(n)]


def _arrays(images, labels) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 (N, C, H, W) with C in {1, 3} and int64 (N,) labels >= 0 (or None), as numpy.

    Raises:
        GenbenchError: another dtype, shape or channel count, or labels of another length or negative.
    """
    x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) == 0:
        raise GenbenchError(f"export: images must be uint8 (N, C, H, W) with C = 1 or 3 and N >= 1, got {x.dtype} "
                            f"{tuple(x.shape)}")
    if labels is None:
        return x, None
    y = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise GenbenchError(f"export: labels must be N = {len(x)} integers >= 0, got {y.dtype} {tuple(y.shape)}")
    return x, y.astype(np.int64)


def write_png_folder(folder: str | Path, images, labels=None, *, manifest: dict | None = None) -> Path:
    """Write ``images`` as one PNG per image into ``folder`` (module docstring for the layout).

    Args:
        folder: the folder (created): new, empty, or an earlier export.
        images: uint8 (N, C, H, W), C = 1 (grey) or 3 (RGB), values 0..255.
        labels: int64 (N,) class labels >= 0 (written to ``labels.csv``), or None (unconditional).
        manifest: what ``export.json`` records beside the layout (source run, sampler, seed...).

    Returns:
        ``folder``.

    Raises:
        GenbenchError: a folder genbench did not write (not empty, no ``export.json``), a path that is a file or
            cannot be written, images or labels of the wrong dtype or shape.
    """
    x, y = _arrays(images, labels)
    folder = check_writable_dir(Path(folder), "--png")
    own_folder(folder, (MARKER,), "--png")  # absent, empty, or an earlier export: never someone else's files
    names = png_names(len(x))
    record = {"format": "png folder", "n": int(len(x)), "shape": list(x.shape[1:]), "files": f"{names[0]} .. "
              f"{names[-1]} (bank order)", "labels": LABELS if y is not None else None, **(manifest or {})}
    if folder.exists():
        regular_file(folder / MARKER, "--png marker", f"move {folder / MARKER} away")
        for p in folder.iterdir():  # the earlier export's images and labels (only genbench's own names)
            if _OWN_PNG.fullmatch(p.name) or p.name == LABELS:
                remove_inside(folder, p)
    atomic_write_json(folder / MARKER, {**record, "complete": False})
    from PIL import Image

    for name, a in zip(names, x):
        im = Image.fromarray(np.ascontiguousarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)))  # L / RGB
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        atomic_write_bytes(folder / name, buf.getvalue())
    if y is not None:
        atomic_write_text(folder / LABELS, "filename,label\n" + "".join(f"{f},{int(k)}\n" for f, k in zip(names, y)))
    atomic_write_json(folder / MARKER, {**record, "complete": True})
    return folder


def write_npz(path: str | Path, images, labels=None) -> Path:
    """Write ``x`` uint8 (N, C, H, W) and, when ``labels`` is given, ``y`` int64 (N,) to the ``.npz`` ``path``.

    Raises:
        GenbenchError: a path without the ``.npz`` suffix, a folder or another non-regular file there, a parent
            that cannot be written, images or labels of the wrong dtype or shape.
    """
    x, y = _arrays(images, labels)
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise GenbenchError(f"--npz {path}: give a file name ending in .npz")
    regular_file(path, "--npz", "give the path of a new .npz file")
    check_writable_dir(path.parent, "--npz")
    return atomic_savez(path, x=x, **({"y": y} if y is not None else {}))
