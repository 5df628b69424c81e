"""Read a set of images made elsewhere: a folder of PNG/JPEG files or an ``.npz`` of uint8 arrays, as uint8
(N, C, H, W) with optional int64 (N,) labels. ``genbench score`` reads the samples it scores through here.

Folder layout (one level, sorted by name so the order is reproducible)::

    SAMPLES/*.png|*.jpg|*.jpeg                 unlabelled images
    SAMPLES/<k>/*.png|*.jpg|*.jpeg             images of class k (k = 0, 1, ..., a label index)

Every image is converted to the requested channel count with Pillow (``"L"``: ITU-R 601-2 luma, for 1 channel;
``"RGB"`` for 3), never resized: all images must have one size, and that size must be the reference dataset's.

``.npz`` layout: key ``x`` uint8 of shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}; optional
key ``y`` integer (N,) labels. Loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_images(path: str | Path, *, channels: int) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """The images (and labels) at ``path``.

    Args:
        path: a folder (layout in the module docstring) or an ``.npz`` file.
        channels: 1 or 3, the channel count the images are converted to (folders) or must have (npz; a
            1-channel array is tiled to 3 channels when 3 are asked for).

    Returns:
        (uint8 (N, C, H, W) values 0..255, int64 (N,) labels or None, a description: ``format``, ``path``,
        ``n``, ``labelled``).

    Raises:
        GenbenchError: one line naming the problem and the fix: a missing path, a folder without images,
            images of mixed sizes, sub-folders that are not label indices, an npz without ``x`` or with a
            wrong dtype or shape, labels of the wrong shape or negative.
    """
    p = Path(path)
    if not p.exists():
        raise GenbenchError(f"{p} not found; give a folder of PNG/JPEG images or an .npz file with a uint8 array `x`")
    if p.is_dir():
        x, y = _read_folder(p, channels)
        fmt = "folder"
    elif p.suffix.lower() == ".npz":
        x, y = _read_npz(p, channels)
        fmt = "npz"
    else:
        raise GenbenchError(f"{p} is neither a folder nor an .npz file; give a folder of PNG/JPEG images or an .npz "
                            f"with a uint8 array `x`")
    return torch.from_numpy(x), (None if y is None else torch.from_numpy(y)), {
        "format": fmt, "path": str(p.resolve()), "n": int(len(x)), "labelled": y is not None}


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _read_folder(folder: Path, channels: int) -> tuple[np.ndarray, np.ndarray | None]:
    from PIL import Image, UnidentifiedImageError

    top = _image_files(folder)
    subs = sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)
    labelled = [(d, _image_files(d)) for d in subs]
    labelled = [(d, fs) for d, fs in labelled if fs]
    if top and labelled:
        raise GenbenchError(f"{folder} holds images both at its top level and in sub-folders "
                            f"({labelled[0][0].name}/); put every image in a class sub-folder or none")
    bad = [d.name for d, _ in labelled if not (d.name.isdigit() and d.name.isascii())]
    if bad:
        raise GenbenchError(f"{folder}: sub-folder {bad[0]!r} is not a label index; name class sub-folders 0, 1, "
                            f"2, ... (the label of their images), or put the images in {folder} itself")
    if labelled:
        files = [(f, int(d.name)) for d, fs in sorted(labelled, key=lambda t: int(t[0].name)) for f in fs]
    else:
        files = [(f, -1) for f in top]
    if not files:
        raise GenbenchError(f"{folder} holds no .png/.jpg/.jpeg images (looked at the folder and its sub-folders); "
                            f"give the folder the images were written to")
    mode = {1: "L", 3: "RGB"}[channels]
    out, first = None, None
    for i, (f, _) in enumerate(files):
        try:
            with Image.open(f) as im:
                a = np.asarray(im.convert(mode), dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise GenbenchError(f"{f} is not a readable image ({type(e).__name__}); remove or replace it") from None
        if out is None:
            first = (f, a.shape[:2])
            out = np.empty((len(files), channels, *a.shape[:2]), np.uint8)
        elif a.shape[:2] != first[1]:
            raise GenbenchError(f"{folder} holds images of mixed sizes: {first[0].name} is {_hw(first[1])}, "
                                f"{f.relative_to(folder)} is {_hw(a.shape[:2])}; resize them all to one size")
        out[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (H, W) or (H, W, C) -> (C, H, W)
    y = np.array([k for _, k in files], np.int64) if labelled else None
    return out, y


def _hw(shape) -> str:
    return f"{shape[1]}x{shape[0]} (width x height)"


def _read_npz(p: Path, channels: int) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.files)
            if "x" not in keys:
                raise GenbenchError(f"{p} has no array `x` (it holds {', '.join(keys) or 'nothing'}); save the "
                                    f"images as np.savez(path, x=images_uint8, y=labels)")
            x = z["x"]
            y = z["y"] if "y" in keys else None
    except GenbenchError:
        raise
    except Exception as e:  # noqa: BLE001 - BadZipFile, ValueError (pickled objects), EOFError...
        raise GenbenchError(f"{p} is not a readable .npz ({type(e).__name__}); save it with np.savez(path, x=...)") \
            from None
    if x.dtype != np.uint8:
        raise GenbenchError(f"{p}: x is {x.dtype}, not uint8; save images as uint8 0..255 (for floats in [0, 1]: "
                            f"(x * 255).round().astype(np.uint8))")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        pass
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    else:
        raise GenbenchError(f"{p}: x has shape {tuple(x.shape)}; give (N, H, W), (N, C, H, W) or (N, H, W, C) "
                            f"with C = 1 or 3")
    if len(x) == 0:
        raise GenbenchError(f"{p}: x holds no images")
    if x.shape[1] != channels:
        if x.shape[1] == 1 and channels == 3:
            x = np.repeat(x, 3, axis=1)
        else:
            raise GenbenchError(f"{p}: x has {x.shape[1]} channels, the reference has {channels}; convert the "
                                f"images (e.g. to grayscale) first")
    x = np.ascontiguousarray(x)
    if y is not None:
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise GenbenchError(f"{p}: y must be non-negative integer labels of shape ({len(x)},), got "
                                f"{y.dtype} {tuple(y.shape)}; fix it or drop `y` (unconditional samples)")
        y = y.astype(np.int64)
    return x, y
