"""Datasets a study brings itself: a folder of PNG/JPEG images, or an ``.npz`` of uint8 arrays (the
:data:`FOLDER` and :data:`NPZ` specs, chosen by the ``kind`` of a study's ``dataset:`` mapping).

A study names one with a mapping instead of a dataset name::

    dataset: {kind: folder, path: data/digits, image_size: 28, channels: 1}
    dataset: {kind: npz, path: data/sketches.npz}

``folder``: every ``.png``, ``.jpg``, ``.jpeg`` file (any case) under ``path``, listed by the one folder listing
(:func:`genbench.data.images.list_image_folder`) and decoded by the one image reader
(:func:`~genbench.data.images.load_image`). Sub-folders holding images are the
classes (sorted by name; label i = the i-th sub-folder, nested folders inside a class belong to it); a folder
with images and no sub-folders is ONE class named after the folder, so the pipeline's class-based metrics are
degenerate there (IS = 1, one mode, the in-domain classifier learns nothing): read the Inception metrics, or sort
the images into class sub-folders. Images at the top level next to class sub-folders are refused (which class?).
Every image is converted to ``channels`` (1: Pillow mode ``L``; 3: ``RGB``; default: 3 if the first image has
colour, else 1) and resized to ``image_size`` x ``image_size`` with Pillow's bicubic filter (default: the images'
own size). All images must share one size, and it must be square: a folder of mixed sizes or shapes is refused
rather than silently cropped or stretched.

``npz``: array ``x`` uint8 (N, H, W), (N, H, W, C) or (N, C, H, W) with C in {1, 3} and H = W, optional ``y`` int
labels 0..K-1 (N,) (absent: one class), optional ``x_test`` / ``y_test`` for a test split of its own.
``image_size`` / ``channels``, when given, must match the arrays.

Splits: without its own test split, a seeded class-stratified ``test_fraction`` (default 0.2, seed
``split_seed``, default 0) of the images is the test split; the rest, in a seeded random order, is the training
split, whose last ``holdout`` images are held out as for the built-in datasets (the real-data floor). The
splits depend on the files and the spec only, never on the study seed.

The loaded images are keyed by content: :attr:`Dataset.name` is ``<name>-<sha256 of the pixels and labels,
12 hex>``, so the in-domain classifier and the Inception reference statistics cached under that name are never
those of another folder with the same name.
"""

from __future__ import annotations

import functools
import re
import zipfile
from pathlib import Path

import numpy as np

from genbench.data.base import (
    MAX_SEED, REQUIRED, Dataset, DatasetInfo, DatasetSpec, Option, content_name, fraction_option, int_option,
    split_arrays)
from genbench.data.images import GREY_MODES, image_header, list_image_folder, load_image
from genbench.errors import GenbenchError
from genbench.io import name_problem, regular_file

RESAMPLE = "bicubic"  # Pillow filter used to bring images to image_size


def _default_name(path: Path) -> str:
    stem = path.stem if path.suffix.lower() == ".npz" else path.name
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)[:60] or "custom"


@functools.lru_cache(maxsize=32)
def _scan_folder(path: str, mtime: float) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """(class names, ((file, label), ...)) of an image folder; ``mtime`` keys the cache."""
    root = Path(path)
    top, subs = list_image_folder(root, what="dataset folder ", empty_fix="put the images there (one sub-folder per "
                                  "class, or all in the folder for one class)")
    if not subs:
        return (_default_name(root),), tuple((str(p), 0) for p in top)
    return tuple(n for n, _ in subs), tuple((str(p), i) for i, (_, fs) in enumerate(subs) for p in fs)


def _folder(path: Path) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    if not path.is_dir():
        raise GenbenchError(f"dataset folder {path} does not exist or is not a folder; give the path of a folder "
                            f"of images (relative paths are read from the study file's folder)")
    return _scan_folder(str(path), path.stat().st_mtime)


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    regular_file(path, "dataset file", "give the path of an .npz file with an array x")  # a FIFO would block
    if not path.is_file():
        raise GenbenchError(f"dataset file {path} does not exist; give the path of an .npz file with an array x "
                            f"(relative paths are read from the study file's folder)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise GenbenchError(f"cannot read {path} as .npz ({type(e).__name__}); write it with numpy.savez") from e
    if "x" not in arrays:
        raise GenbenchError(f"{path} has no array 'x' (it has: {', '.join(sorted(arrays)) or 'none'}); save the "
                            f"images as x = uint8 (N, H, W[, C]) with numpy.savez(path, x=images[, y=labels])")
    return arrays


def _nchw(x: np.ndarray, where: str) -> np.ndarray:
    """uint8 (N, H, W) / (N, H, W, C) / (N, C, H, W) -> (N, C, H, W)."""
    if x.dtype != np.uint8:
        raise GenbenchError(f"{where}: images are {x.dtype}, not uint8; convert them (e.g. "
                            f"(x * 255).round().astype(np.uint8) for floats in [0, 1])")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[1] in (1, 3)):
        raise GenbenchError(f"{where}: shape {x.shape} is not (N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3")
    if x.shape[2] != x.shape[3] or len(x) == 0:
        raise GenbenchError(f"{where}: shape {x.shape}: give at least one square image (H = W)")
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray | None, n: int, where: str) -> np.ndarray:
    if y is None:
        return np.zeros(n, np.int64)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or (n and y.min() < 0):
        raise GenbenchError(f"{where}: labels must be integers >= 0 of shape ({n},), got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _spec_path(spec: dict) -> Path:
    return Path(spec["path"]).expanduser()


def custom_info(spec: dict) -> DatasetInfo:
    """The facts of a folder / npz dataset from its spec (the study's ``dataset:`` mapping, validated by the
    study schema: kind, path, name, image_size, channels, test_fraction, split_seed). Cheap: a folder is listed
    and its first image's header read; an npz is loaded.

    Raises:
        GenbenchError: missing or empty folder / file, no ``x``, an unreadable image, bad shapes.
    """
    path = _spec_path(spec)
    name = spec.get("name") or _default_name(path)
    if spec["kind"] == "folder":
        classes, files = _folder(path)
        size, channels = spec.get("image_size"), spec.get("channels")
        if size is None or channels is None:
            (w, _h), mode = image_header(files[0][0])  # the one folder reader's checks (bombs, modes, FIFOs)
            size = size or w
            channels = channels or (3 if mode not in GREY_MODES else 1)
        content = f"images from the folder {path}"
    else:
        a = _npz_arrays(path)
        x = _nchw(a["x"], f"{path}: x")
        channels, size = x.shape[1], x.shape[2]
        for key, want in (("channels", channels), ("image_size", size)):
            if spec.get(key) not in (None, want):
                raise GenbenchError(f"{path}: the images have {key} {want}, the study's dataset says {spec[key]}; "
                                    f"drop `{key}` or convert the arrays")
        y = _labels(a.get("y"), len(x), f"{path}: y")
        k = int(y.max()) + 1 if len(y) else 1
        if "y_test" in a:
            k = max(k, int(_labels(a["y_test"], len(a["y_test"]), f"{path}: y_test").max(initial=-1)) + 1)
        classes = tuple(str(i) for i in range(k)) if "y" in a else (name,)
        content = f"images from {path}"
    return DatasetInfo(name, name, (int(channels), int(size), int(size)), len(classes), tuple(classes), content,
                       str(path))


def _load_folder(spec: dict, info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    path = _spec_path(spec)
    _, files = _folder(path)
    sizes: dict[tuple[int, int], list[str]] = {}
    for f, _ in files:
        sizes.setdefault(image_header(f)[0], []).append(f)
    if len(sizes) > 1:
        (s1, f1), (s2, f2) = sorted(sizes.items(), key=lambda kv: -len(kv[1]))[:2]
        raise GenbenchError(f"dataset folder {path} mixes image sizes: {len(f1)} of {s1[0]}x{s1[1]} (e.g. "
                            f"{Path(f1[0]).name}) and {len(f2)} of {s2[0]}x{s2[1]} (e.g. {Path(f2[0]).name}); "
                            f"crop or resize them to one size first (genbench only rescales a folder of one size)")
    (w, h), = sizes
    if w != h:
        raise GenbenchError(f"dataset folder {path}: the images are {w}x{h}, not square; crop them to squares first")
    c, s = info.image_shape[0], info.image_shape[1]
    mode = "L" if c == 1 else "RGB"
    x = np.empty((len(files), s, s, c), np.uint8)
    colour_ok = c == 3 or spec.get("channels") == 1  # grey by default (first image) refuses colour ones after it
    for i, (f, _) in enumerate(files):
        im = load_image(f, mode, colour_ok=colour_ok)
        if im.size != (s, s):  # resized only to the study's explicit image_size
            im = im.resize((s, s), Image.Resampling.BICUBIC)
        x[i] = np.asarray(im, np.uint8).reshape(s, s, c)
    return x.transpose(0, 3, 1, 2), np.array([lab for _, lab in files], np.int64)


def _stratified_test(y: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean (N,) mask of a class-stratified random ``fraction`` (at least one image per class that has two)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        test[idx[:k]] = True
    return test


def custom_arrays(spec: dict) -> dict[str, np.ndarray]:
    """The arrays of a folder / npz dataset: ``x_train`` / ``y_train`` (in a seeded random order, so the holdout
    spans the classes) and ``x_test`` / ``y_test`` (the npz's own, or a seeded class-stratified fraction).

    Raises:
        GenbenchError: the errors of :func:`custom_info`, a folder of mixed or non-square image sizes, labels out
            of range, or too few images for a test split.
    """
    info = custom_info(spec)
    path = _spec_path(spec)
    x_test = y_test = None
    if spec["kind"] == "folder":
        x, y = _load_folder(spec, info)
    else:
        a = _npz_arrays(path)
        x, y = _nchw(a["x"], f"{path}: x"), _labels(a.get("y"), len(a["x"]), f"{path}: y")
        if "x_test" in a:
            x_test = _nchw(a["x_test"], f"{path}: x_test")
            y_test = _labels(a.get("y_test"), len(x_test), f"{path}: y_test")
            if x_test.shape[1:] != x.shape[1:]:
                raise GenbenchError(f"{path}: x_test images are {x_test.shape[1:]}, x images {x.shape[1:]}; "
                                    f"give both the same shape")
    if x_test is None:
        if len(x) < 2:
            raise GenbenchError(f"{path}: {len(x)} image(s); a dataset needs at least two (a training and a test "
                                f"split), and realistically hundreds")
        mask = _stratified_test(y, spec.get("test_fraction", 0.2), spec.get("split_seed", 0))
        x_test, y_test, x, y = x[mask], y[mask], x[~mask], y[~mask]
    perm = np.random.default_rng(spec.get("split_seed", 0) + 1).permutation(len(x))  # holdout spans the classes
    return {"x_train": x[perm], "y_train": y[perm], "x_test": x_test, "y_test": y_test}


def load_custom(spec: dict, holdout: int) -> dict[str, Dataset]:
    """Load a folder / npz dataset as splits ``train``, ``holdout`` (the last ``holdout`` training images, never
    trained on) and ``test``, each a :class:`~genbench.data.base.Dataset` of uint8 (N, C, H, W) named
    ``<name>-<sha256 of the arrays, 12 hex>`` (what :func:`genbench.data.load_dataset` does for such a mapping).

    Raises:
        GenbenchError: the errors of :func:`custom_arrays`.
    """
    info = custom_info(spec)
    arrays = custom_arrays(spec)
    return split_arrays(content_name(info.name, arrays), arrays, info.num_classes, holdout)


# ---------------------------------------------------------------- the two specs: a study's `dataset:` mapping


def _folder_name(v: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9._-]{1,100}", v)) and name_problem(v) is None


OPTIONS = {
    "path": Option(str, REQUIRED, lambda v: bool(v.strip()), "the path of an image folder or .npz file"),
    "name": Option(str, None, _folder_name, "1-100 letters, digits, '.', '_' or '-' (not '.' or '..': it names a "
                   "folder)"),
    "image_size": int_option(4, 1024, None, null=True),
    "channels": Option((int, type(None)), None, lambda v: v in (None, 1, 3), "1 or 3 (Inception takes 1 or 3)"),
    "test_fraction": fraction_option(0.2),
    "split_seed": int_option(0, MAX_SEED, 0),
}


def _spec(kind: str, title: str) -> DatasetSpec:
    return DatasetSpec(
        name=kind, title=title, image_shape=(0, 0, 0), num_classes=0, class_names=(), content=title,
        citation="the study's own images", by_mapping=True, content_key=True, options=OPTIONS,
        load=lambda **o: custom_arrays({"kind": kind, **o}), facts=lambda o: custom_info({"kind": kind, **o}),
        real_floor="the last `holdout` training images after a shuffle seeded by `split_seed` + 1, never trained on",
    )


FOLDER = _spec("folder", "a folder of PNG/JPEG images")
NPZ = _spec("npz", "an .npz of uint8 arrays")
