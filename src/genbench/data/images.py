"""Read a set of images made elsewhere: a folder of PNG/JPEG files or an ``.npz`` of uint8 arrays, as uint8
(N, C, H, W) with optional int64 (N,) labels. ``genbench score`` reads the samples it scores through here.

Folder layout (sorted by name so the order is reproducible; listed by :func:`list_image_folder`, the one folder
listing, which a study's own image folders use too)::

    SAMPLES/*.png|*.jpg|*.jpeg                 unlabelled images
    SAMPLES/*.png + SAMPLES/labels.csv         labelled images: ``filename,label`` per image, a header line first
                                               (the layout ``genbench sample --png`` writes, :mod:`genbench.sampling.export`)
    SAMPLES/<k>/**/*.png|*.jpg|*.jpeg          images of class k (k = 0, 1, ..., a label index)

Every image is converted to the requested channel count with Pillow (``"L"``: ITU-R 601-2 luma, for 1 channel;
``"RGB"`` for 3), never resized: all images must have one size, and that size must be the reference dataset's.
A colour image (R, G and B not all equal) is refused where 1 channel is asked for (an RGB file of grey pixels,
as ``torchvision.utils.save_image`` writes, is fine).

Hostile or odd files (issue 29), for this reader and the study's own folders (:mod:`genbench.data.custom`), which
decode every image through :func:`load_image`: Pillow's decompression-bomb limit is set deliberately to
:data:`MAX_IMAGE_PIXELS` (16.8 Mpx, 4096 x 4096; genbench's images are at most 1024 x 1024) and both Pillow's
``DecompressionBombWarning`` (above it) and ``DecompressionBombError`` (above twice it) are one line, raised
from the header before any pixel is decoded; a truncated or otherwise undecodable file, and a mode genbench does
not convert faithfully (16-bit, 32-bit integer or float pixels), are one line each; Pillow's other warnings are
silenced while decoding, so they add no lines to an error. Only regular files are read (a FIFO or device is
refused before it is opened).

``.npz`` layout: key ``x`` uint8 of shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}; optional
key ``y`` integer (N,) labels. Loaded with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.io import regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABELS_CSV = "labels.csv"
"""The labels of a flat folder of images: ``filename,label`` lines after a header (what ``sample --png`` writes)."""
MAX_LABELS_BYTES = 64 * 2**20
"""The largest ``labels.csv`` read (64 MiB: over a million lines); a larger one is refused, not read."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Pillow's ``Image.MAX_IMAGE_PIXELS`` while genbench decodes an image: a file whose header claims more pixels
is refused (a decompression bomb: a few bytes on disk that would decode to gigabytes)."""
MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
"""Pillow modes converted to 8-bit ``L`` / ``RGB`` faithfully; others (``I;16``, ``I``, ``F``: 16-bit, 32-bit
and float pixels) are refused rather than clipped."""
GREY_MODES = ("1", "L", "LA")


@contextlib.contextmanager
def _pillow(path):
    """Decode under genbench's limits: every failure, warning included, is one GenbenchError naming ``path``."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library warnings must not add lines to an error (or to a clean run)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        try:
            yield
        except GenbenchError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise GenbenchError(f"{path} claims more than {MAX_IMAGE_PIXELS:,} pixels (genbench's limit, "
                                f"{' '.join(str(e).split())[:80]}); it is not an image genbench reads (a "
                                f"decompression bomb?): remove or replace it") from None
        except MemoryError:
            raise GenbenchError(f"{path} is too large to decode; remove or replace it") from None
        except Exception as e:  # noqa: BLE001 - Pillow raises OSError (truncated), SyntaxError, ValueError, ...
            why = "truncated" if "truncated" in str(e) else type(e).__name__
            raise GenbenchError(f"cannot read image {path} ({why}); remove or replace it") from None
        finally:
            Image.MAX_IMAGE_PIXELS = old


def image_header(path: str | Path) -> tuple[tuple[int, int], str]:
    """(width, height) and Pillow mode of an image file, from its header (no pixels decoded).

    Raises:
        GenbenchError: not a regular file, not an image, a decompression bomb, an unsupported mode.
    """
    from PIL import Image

    regular_file(path, "image", "remove it or replace it with a PNG/JPEG file")
    with _pillow(path), Image.open(path) as im:
        size, mode = im.size, im.mode
    _check_mode(path, mode)
    return size, mode


def _check_mode(path, mode: str) -> None:
    if mode not in MODES:
        raise GenbenchError(f"{path} is a Pillow mode {mode!r} image (16-bit, 32-bit or float pixels); save it as "
                            f"8-bit grey or RGB")


def load_image(path: str | Path, mode: str, *, colour_ok: bool = True):
    """The image at ``path`` decoded in full and converted to ``mode`` (``L`` or ``RGB``): a Pillow image detached
    from the file. With ``colour_ok=False`` a colour image (R, G, B not all equal) is refused for ``L``.

    Raises:
        GenbenchError: one line: not a regular file, not an image, truncated, a decompression bomb, an unsupported
            mode, a colour image where grey is required.
    """
    from PIL import Image

    regular_file(path, "image", "remove it or replace it with a PNG/JPEG file")
    with _pillow(path), Image.open(path) as im:
        _check_mode(path, im.mode)
        im.load()
        if mode == "L" and not colour_ok and im.mode not in GREY_MODES:
            rgb = np.asarray(im.convert("RGB"))
            if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                raise GenbenchError(f"{path} is a colour image, and these images must be grey (1 channel); convert "
                                    f"the images to grey first")
        out = im.convert(mode)
        out.load()
    return out


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
    if not p.is_dir():  # a FIFO or device named x.npz is refused before it is opened (a read would block)
        regular_file(p, "SAMPLES", "give a folder of PNG/JPEG images or an .npz file with a uint8 array `x`")
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


def _images_in(folder: Path, *, recursive: bool) -> list[Path]:
    """The image files in ``folder`` (nested folders too when ``recursive``), sorted; hidden ones skipped."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def list_image_folder(folder: Path, *, what: str = "",
                      empty_fix: str) -> tuple[list[Path], list[tuple[str, list[Path]]]]:
    """THE folder listing (``genbench score``'s samples and a study's own ``dataset: {kind: folder}``): the images at
    the top level of ``folder``, or its class sub-folders with their images (nested folders inside a class belong to
    it), all sorted by name; hidden files and folders are skipped, and so are files that are not ``.png``, ``.jpg``,
    ``.jpeg`` (any case) or not regular files.

    Args:
        folder: the folder.
        what: the folder's role at the start of an error line ("dataset folder ").
        empty_fix: the fix named when there are no images.

    Returns:
        (top-level images, [(sub-folder name, its images)]): one of the two is empty.

    Raises:
        GenbenchError: no images, or images both at the top level and in class sub-folders.
    """
    top = _images_in(folder, recursive=False)
    subs = [(d.name, fs) for d in sorted(folder.iterdir(), key=lambda d: d.name)
            if d.is_dir() and not d.name.startswith(".") and (fs := _images_in(d, recursive=True))]
    if not subs and not top:
        raise GenbenchError(f"{what}{folder} holds no .png/.jpg/.jpeg images; {empty_fix}")
    if subs and top:
        raise GenbenchError(f"{what}{folder} mixes {len(top)} images at its top level (e.g. {top[0].name}) with class "
                            f"sub-folders ({', '.join(n for n, _ in subs[:5])}); move them into a class sub-folder")
    return top, subs


def _read_folder(folder: Path, channels: int) -> tuple[np.ndarray, np.ndarray | None]:
    top, labelled = list_image_folder(folder, empty_fix="give the folder the images were written to (looked at "
                                      "the folder and its class sub-folders)")
    bad = [d for d, _ in labelled if not (d.isdigit() and d.isascii())]
    if bad:
        raise GenbenchError(f"{folder}: sub-folder {bad[0]!r} is not a label index; name class sub-folders 0, 1, "
                            f"2, ... (the label of their images), or put the images in {folder} itself")
    csv = folder / LABELS_CSV
    if labelled:
        if csv.exists():
            raise GenbenchError(f"{folder} has class sub-folders and a {LABELS_CSV}: two sources of labels; keep "
                                f"one (delete {csv}, or move the images to the top level)")
        files = [(f, int(d)) for d, fs in sorted(labelled, key=lambda t: int(t[0])) for f in fs]
    elif csv.exists():
        files = list(zip(top, _csv_labels(csv, top)))
    else:
        files = [(f, -1) for f in top]
    mode = {1: "L", 3: "RGB"}[channels]
    out, first = None, None
    for i, (f, _) in enumerate(files):
        size, _m = image_header(f)  # sizes compared before any pixel is decoded
        if first is not None and size[::-1] != first[1]:
            raise GenbenchError(f"{folder} holds images of mixed sizes: {first[0].name} is {_hw(first[1])}, "
                                f"{f.relative_to(folder)} is {_hw(size[::-1])}; resize them all to one size")
        a = np.asarray(load_image(f, mode, colour_ok=channels == 3), dtype=np.uint8)
        if out is None:
            first = (f, a.shape[:2])
            out = np.empty((len(files), channels, *a.shape[:2]), np.uint8)
        elif a.shape[:2] != first[1]:
            raise GenbenchError(f"{folder} holds images of mixed sizes: {first[0].name} is {_hw(first[1])}, "
                                f"{f.relative_to(folder)} is {_hw(a.shape[:2])}; resize them all to one size")
        out[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (H, W) or (H, W, C) -> (C, H, W)
    y = np.array([k for _, k in files], np.int64) if labelled or csv.exists() else None
    return out, y


def _csv_labels(csv: Path, images: list[Path]) -> list[int]:
    """The label of each of ``images`` (in their order) from ``csv`` (``filename,label`` lines after a header).

    Raises:
        GenbenchError: the file is not a regular file, too large or not UTF-8; a line that is not
            ``name,label`` with a label 0, 1, ...; a name given twice or naming no image of the folder; an image
            without a line.
    """
    fix = f"write one `filename,label` line per image after the header `filename,label` (or delete {csv.name})"
    regular_file(csv, "labels file", fix)
    if csv.stat().st_size > MAX_LABELS_BYTES:
        raise GenbenchError(f"{csv} is larger than {MAX_LABELS_BYTES // 2**20} MiB; {fix}")
    try:
        lines = csv.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise GenbenchError(f"{csv} is not UTF-8 text; {fix}") from None
    rows = [ln for ln in lines[1:] if ln.strip()]
    if not lines or lines[0].strip().lower().replace(" ", "") != "filename,label":
        raise GenbenchError(f"{csv}: the first line is {lines[0][:60]!r}, not the header; {fix}"
                            if lines else f"{csv} is empty; {fix}")
    label: dict[str, int] = {}
    for i, ln in enumerate(rows, start=2):
        name, _, k = ln.rpartition(",")
        k = k.strip()
        if not name or not (k.isascii() and k.isdigit()):
            raise GenbenchError(f"{csv} line {i}: {ln[:60]!r} is not `filename,label` with a label 0, 1, ...; {fix}")
        if name in label:
            raise GenbenchError(f"{csv} line {i}: {name!r} is listed twice; give each image one label")
        label[name] = int(k)
    names = {f.name for f in images}
    extra = sorted(set(label) - names)
    if extra:
        raise GenbenchError(f"{csv} names {len(extra)} file(s) that are not images of {csv.parent} (e.g. "
                            f"{extra[0]!r}); {fix}")
    missing = [f.name for f in images if f.name not in label]
    if missing:
        raise GenbenchError(f"{csv} gives no label for {len(missing)} of the {len(images)} images (e.g. "
                            f"{missing[0]!r}); {fix}")
    return [label[f.name] for f in images]


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
    return check_arrays(x, y, channels, str(p))


def array_images(x, y=None, *, channels: int) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """Images given in memory (a numpy array or torch tensor), checked as an ``.npz``'s ``x`` and ``y`` are.

    Args:
        x: uint8 0..255, shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C in {1, 3}; a tensor may be on any
            device (it is copied to the CPU).
        y: None, or N integer labels >= 0.
        channels: 1 or 3, the channel count the images must have (1 channel is tiled to 3 when 3 are asked for).

    Returns:
        (uint8 (N, C, H, W), int64 (N,) labels or None, a description: ``format`` "array", ``path``, ``n``,
        ``labelled``), as :func:`read_images`.

    Raises:
        GenbenchError: not an array, another dtype (floats in [-1, 1] go through
            :func:`genbench.data.tensors.to_uint8` first), shape or channel count, bad labels.
    """
    def as_numpy(a, what):
        if isinstance(a, torch.Tensor):
            return a.detach().cpu().numpy()
        if isinstance(a, np.ndarray):
            return a
        raise GenbenchError(f"samples: {what} are a {type(a).__name__}; give a uint8 numpy array or torch tensor "
                            f"(N, C, H, W), a folder of images or an .npz file")
    x = as_numpy(x, "the images")
    if x.dtype != np.uint8:
        raise GenbenchError(f"samples: the images are {x.dtype}, not uint8; convert them to 0..255 first (floats "
                            f"in [-1, 1]: genbench.data.tensors.to_uint8(x); in [0, 1]: (x * 255).round() as uint8)")
    x, y = check_arrays(x, None if y is None else as_numpy(y, "the labels"), channels, "samples")
    return torch.from_numpy(x), (None if y is None else torch.from_numpy(y)), {
        "format": "array", "path": "<in-memory array>", "n": int(len(x)), "labelled": y is not None}


def check_arrays(x: np.ndarray, y: np.ndarray | None, channels: int, where: str) -> tuple[np.ndarray,
                                                                                           np.ndarray | None]:
    """``x`` as contiguous uint8 (N, C, H, W) with ``channels`` channels and ``y`` as int64 (N,) (or None): the
    checks of an ``.npz``'s arrays and of in-memory images. ``where`` starts each error line.

    Raises:
        GenbenchError: another dtype, shape or channel count, no images, labels of another shape or negative.
    """
    p = where
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
