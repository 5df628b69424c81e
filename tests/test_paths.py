"""Bad input on the new surfaces (issue 29): names that become paths, hostile or odd images, things that are not
regular files. Every case ends in exit code 2 with one ``genbench: error:`` line (at most two lines on stderr),
no traceback, no hang, and sentinel files planted outside genbench's folders survive.

No case trains a model: where a command would train, the check under test comes before the data is loaded, or
the stage after it is stubbed (``Reached``). ``test_case_counts`` (run last) prints the number of generated cases
(``pytest -s``).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cli_in_process, refused
from genbench.errors import GenbenchError
from genbench.io import inside, name_problem, own_folder, remove_inside, remove_temps, safe_name

ROOT = Path(__file__).resolve().parent.parent
_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
CASES: Counter = Counter()


class Reached(Exception):
    """Raised by a stubbed stage: the input passed every check before it."""


def _reached(*a, **k):
    raise Reached


def _cli(*args: str, env: dict | None = None, timeout: int = 60) -> tuple[int | str, list[str]]:
    """``genbench ARGS`` in this process with a SIGALRM deadline: (exit code or 'reached', stderr lines)."""
    code, err, _ = cli_in_process(*args, reached=Reached, env=env, timeout=timeout)
    return code, err


_refused = refused


def _plant(*paths: Path) -> dict[Path, bytes]:
    """Sentinel files outside genbench's folders; :func:`_intact` checks they are still there, unchanged."""
    got = {}
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"sentinel " + str(p).encode())
        got[p] = p.read_bytes()
    return got


def _intact(planted: dict[Path, bytes]) -> None:
    for p, data in planted.items():
        assert p.is_file() and p.read_bytes() == data, f"{p} was changed or deleted"


# --------------------------------------------------------------------------------------------------------------
# 1. Names that become paths

BAD_NAMES = ["", ".", "..", "../x", "../../etc/passwd", "/etc/passwd", "/", "a/b", "a\\b", "x\x00y", "\x00", "a\nb",
             "..\\..\\x", "x" * 300]
_name_chars = st.sampled_from(list("ab.-_ /\\\x00\n:é~*") + ["..", "../", "/tmp", "%2e"])
NAMES = st.one_of(st.sampled_from(BAD_NAMES), st.lists(_name_chars, max_size=8).map("".join), st.text(max_size=12))


@pytest.mark.parametrize("name", BAD_NAMES)
def test_safe_name_refuses_paths(name):
    with pytest.raises(GenbenchError) as e:
        safe_name(name, "--name")
    assert "\n" not in str(e.value) and str(e.value).startswith("--name ")
    assert safe_name("rabbit", "x") == "rabbit" and safe_name("The Eiffel Tower", "x") == "The Eiffel Tower"


@settings(max_examples=600, **_SETTINGS)
@given(name=NAMES)
def test_safe_name_property(name):
    """A name safe_name accepts is exactly one new entry of the folder it is joined to; any other is one line."""
    CASES["safe_name"] += 1
    root = Path(tempfile.gettempdir()) / "genbench-root"
    try:
        got = safe_name(name, "name")
    except GenbenchError as e:
        assert "\n" not in str(e) and name_problem(name) is not None
        return
    p = root / got
    assert p.parent == root and p.name == got and os.path.normpath(p) == str(p)
    assert inside(root, p, "name") == p


@settings(max_examples=400, **_SETTINGS)
@given(parts=st.lists(st.sampled_from(["a", "b", "..", ".", "/", "link", "c.txt"]), min_size=1, max_size=6))
def test_inside_property(parts, tmp_path_factory):
    """``inside`` passes a path only if it resolves inside the root, through '..', absolute parts and a symlink
    that leads out."""
    CASES["inside"] += 1
    base = tmp_path_factory.getbasetemp() / "inside"
    root = base / "root"
    if not root.exists():
        (root / "a").mkdir(parents=True)
        (base / "out").mkdir()
        (root / "link").symlink_to(base / "out")
    p = root.joinpath(*parts)
    resolved = p.resolve()
    ok = resolved == root.resolve() or resolved.is_relative_to(root.resolve())
    if ok:
        assert inside(root, p, "x") == p
    else:
        with pytest.raises(GenbenchError):
            inside(root, p, "x")


def test_remove_inside_never_leaves_its_root(tmp_path):
    root, out = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    planted = _plant(out / "last.pt", out / ".x.tmp", out / "victim")
    (root / "checkpoints").symlink_to(out)  # a planted link out of genbench's folder
    (root / "link.pt").symlink_to(out / "victim")
    (root / "sub" / ".a.tmp").write_text("t")
    with pytest.raises(GenbenchError, match="leads outside"):
        remove_inside(root, root / "checkpoints" / "last.pt")
    assert remove_inside(root, root / "link.pt")  # the link goes, its target stays
    assert not (root / "link.pt").exists()
    with pytest.raises(GenbenchError, match="is a folder"):
        remove_inside(root, root / "sub")
    assert remove_temps(root) == 1 and not (root / "sub" / ".a.tmp").exists()  # the link to out is not entered
    _intact(planted)


def test_lock_file_symlink_is_not_followed(tmp_path):
    from genbench.io import exclusive_lock

    planted = _plant(tmp_path / "victim")
    d = tmp_path / "study"
    d.mkdir()
    (d / ".study.lock").symlink_to(tmp_path / "victim")  # open(path, "w") used to truncate the target
    with pytest.raises(GenbenchError, match="lock file"):
        with exclusive_lock(d / ".study.lock", "busy"):
            pass
    _intact(planted)


def test_own_folder(tmp_path):
    user = tmp_path / "user"
    planted = _plant(user / "thesis.tex", user / ".draft.tmp", user / "history.jsonl")
    with pytest.raises(GenbenchError, match="genbench did not write"):
        own_folder(user, ("config.yaml",), "--out")
    assert own_folder(tmp_path / "new", ("config.yaml",), "--out") == tmp_path / "new"
    _intact(planted)


def _study(tmp_path: Path, **edit) -> Path:
    raw = yaml.safe_load((ROOT / "studies" / "mnist_four.yaml").read_text())
    raw.update(edit)
    p = tmp_path / "study.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_bad_study_and_model_names(tmp_path):
    """A study or model name that is a path is refused by the schema before any folder is made."""
    out = tmp_path / "runs"
    planted = _plant(tmp_path / "escape" / "finished.json", tmp_path / "sentinel")
    raw = yaml.safe_load((ROOT / "studies" / "mnist_four.yaml").read_text())
    for name in ("../escape", "/tmp/x", "a/b", "..", "", "x\x00"):
        code, err = _cli("--threads", "1", "run", str(_study(tmp_path, name=name)), "--profile", "smoke", "--out",
                         str(out), "--overwrite")
        _refused(code, err, ".name")
        models = {("../../sentinel" if i == 0 else k): v for i, (k, v) in enumerate(raw["models"].items())}
        code, err = _cli("--threads", "1", "run", str(_study(tmp_path, models=models)), "--profile", "smoke",
                         "--out", str(out), "--overwrite")
        _refused(code, err, "bad model name")
    assert not out.exists()
    _intact(planted)


def test_run_refuses_user_folders_and_symlinked_run_folders(tmp_path):
    """`genbench run --overwrite` deletes only in folders genbench wrote: a user folder where the study folder
    goes, or a model folder that is a symlink out, is refused before anything is touched."""
    from genbench.studies import runner

    out, outside = tmp_path / "runs", tmp_path / "outside"
    planted = _plant(out / "mnist-four" / "notes.txt", out / "mnist-four" / ".x.tmp", outside / "history.jsonl",
                     outside / "checkpoints" / "last.pt", outside / ".y.tmp")
    with mock.patch.object(runner, "prepare_data", _reached):
        code, err = _cli("--threads", "1", "run", "--profile", "smoke", "--out", str(out), "--overwrite")
        _refused(code, err, "genbench did not write")
        _intact(planted)
        for f in (out / "mnist-four" / "notes.txt", out / "mnist-four" / ".x.tmp"):
            f.unlink()  # the user moves their files away
            del planted[f]
        (out / "mnist-four" / "study.yaml").write_text("{}")  # now a genbench study folder...
        (out / "mnist-four" / "vae").symlink_to(outside)  # ...whose vae run folder leads out
        code, err = _cli("--threads", "1", "run", "--profile", "smoke", "--out", str(out), "--overwrite")
        _refused(code, err, "leads outside")
        (out / "mnist-four" / "vae").unlink()
        code, _ = _cli("--threads", "1", "run", "--profile", "smoke", "--out", str(out), "--overwrite")
        assert code == "reached"
    _intact(planted)


def test_train_refuses_a_user_folder_as_out(tmp_path):
    """`genbench train --out ~/thesis --overwrite` used to delete history.jsonl, status.json and .*.tmp there."""
    from genbench.studies import runner
    from genbench.training import loop

    user = tmp_path / "thesis"
    planted = _plant(user / "chapter1.tex", user / "history.jsonl", user / "status.json", user / ".draft.tmp")
    with mock.patch.object(loop, "train", _reached), mock.patch.object(runner, "prepare_data", _reached):
        code, err = _cli("--threads", "1", "train", "vae", "--profile", "smoke", "--out", str(user), "--overwrite")
        _refused(code, err, "genbench did not write")
        run = tmp_path / "run"
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text("{}")
        (run / "checkpoints").rmdir()
        (run / "checkpoints").symlink_to(user)  # a genbench run folder whose checkpoints lead out
        code, err = _cli("--threads", "1", "train", "vae", "--profile", "smoke", "--out", str(run), "--overwrite")
        _refused(code, err, "leads outside")
    _intact(planted)


def _fetch_quickdraw(home: Path, classes: str) -> tuple:
    from genbench.data import quickdraw

    def _no_network(*a, **k):
        raise quickdraw.AssetError("stubbed download")

    with mock.patch.object(quickdraw, "download", _no_network):
        return _cli("data", "fetch", "quickdraw", "--classes", classes, "--force", env={"GENBENCH_HOME": str(home)})


def test_quickdraw_class_names_cannot_delete_outside(tmp_path):
    """`data fetch quickdraw --classes ../../../x --force` used to unlink <cache>/../../../x.npy."""
    home = tmp_path / "home"
    (home / "assets" / "quickdraw").mkdir(parents=True)  # the cache exists, so '..' from it reaches real folders
    planted = _plant(tmp_path / "sentinel.npy", home / "sentinel.npy", home / "assets" / "sentinel.npy")
    for c in ("../../../sentinel", "../../sentinel", "../sentinel", str(tmp_path / "sentinel"), "a/b"):
        code, err = _fetch_quickdraw(home, c)
        _refused(code, err, "quickdraw class")
    code, err = _fetch_quickdraw(home, "rabbit")  # a plain name gets as far as the (stubbed) download
    _refused(code, err, "stubbed download")
    code, err = _cli("--threads", "1", "run", str(_study(tmp_path, dataset="quickdraw",
                                                         data={"classes": ["rabbit", "../../sentinel"]})),
                     "--profile", "smoke", "--out", str(tmp_path / "runs"))
    _refused(code, err, "data.classes")
    _intact(planted)


@settings(max_examples=150, **_SETTINGS)
@given(name=NAMES)
def test_quickdraw_classes_cli_property(name, tmp_path_factory):
    """Generated class names through `genbench data fetch quickdraw --classes NAME --force`: one line every time
    (refused, or the stubbed download), and no sentinel around the cache is deleted."""
    CASES["data fetch --classes"] += 1
    base = tmp_path_factory.getbasetemp() / "qd"
    home = base / "home"
    (home / "assets" / "quickdraw").mkdir(parents=True, exist_ok=True)
    planted = _plant(base / "sentinel.npy", home / "sentinel.npy", home / "assets" / "x.npy", base / ".npy")
    code, err = _fetch_quickdraw(home, name)
    if not [c for c in name.split(",") if c.strip()]:  # no class at all: the shipped study's classes are fetched
        assert code == 2
    else:
        _refused(code, err)
    _intact(planted)


@settings(max_examples=150, **_SETTINGS)
@given(name=NAMES)
def test_score_name_cli_property(name, tmp_path_factory):
    """Generated `genbench score --name NAME`: a name that is not a plain file name is one line before anything
    is read or written; the stage after the check is stubbed."""
    from genbench.studies import score

    CASES["score --name"] += 1
    base = tmp_path_factory.getbasetemp() / "score"
    out = base / "out"
    planted = _plant(base / "sentinel" / "metrics.json", base / "metrics.json")
    with mock.patch.object(score, "score_config", _reached):
        code, err = _cli("score", str(base), "--reference", "mnist", "--out", str(out), "--name", name)
    if name_problem(name) is None and name != "real" and __import__("re").fullmatch(r"[A-Za-z0-9._-]{1,100}", name):
        assert code == "reached", err
    else:
        _refused(code, err, "--name")
    _intact(planted)


def test_report_refuses_model_names_that_are_paths(tmp_path):
    """A metrics.json whose model name is a path (hand-edited, or from elsewhere) would write figures outside."""
    d = tmp_path / "study"
    d.mkdir()
    rec = {"model": "../../evil", "kind": "vae", "family": "vae", "metrics": {}}
    (d / "metrics.json").write_text(json.dumps({"schema_version": 2, "models": [rec, {**rec, "model": "real"}]}))
    code, err = _cli("report", str(d))
    _refused(code, err, "cannot name a file")
    assert not (tmp_path / "evil").exists() and not list(tmp_path.parent.glob("grid_*evil*"))


def test_tracker_run_names_stay_in_the_tensorboard_folder(tmp_path):
    from genbench.runtime.tracking import open_tracker

    for run in ("../../x", "/abs", ".."):
        with pytest.raises(GenbenchError):
            open_tracker(["tensorboard"], log_dir=tmp_path / "study", experiment="s", run=run)
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------------------------------------
# 2. Hostile or odd images


def _png(w: int, h: int, mode: str = "L", data: bytes | None = None, depth: int = 8) -> bytes:
    """A PNG built by hand: a header claiming w x h pixels and an IDAT of ``data`` (default: one zero row)."""
    ctype = {"L": 0, "RGB": 2}[mode]

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    raw = data if data is not None else b"\x00" * (1 + w * (depth // 8) * (3 if mode == "RGB" else 1))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _pil_png(path: Path, a: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def _score(folder: Path, tmp_path: Path) -> tuple:
    return _cli("score", str(folder), "--reference", "mnist", "--out", str(tmp_path / "out"), "--n", "20")


@pytest.mark.parametrize("w,h,needle", [(100_000, 100_000, "decompression bomb"),  # Pillow's error (> 2x limit)
                                        (5000, 5000, "decompression bomb")])  # Pillow's warning (> limit)
def test_decompression_bomb_is_one_line(tmp_path, w, h, needle):
    d = tmp_path / "samples"
    d.mkdir()
    for i in range(20):
        _pil_png(d / f"{i:02d}.png", np.zeros((28, 28), np.uint8))
    (d / "99.png").write_bytes(_png(w, h))  # tiny on disk
    assert (d / "99.png").stat().st_size < 200
    code, err = _score(d, tmp_path)
    _refused(code, err, needle)
    assert len(err) == 1  # Pillow's warning adds no line


def test_truncated_unsupported_and_mismatched_images(tmp_path):
    ok = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    for case, needle in [("truncated", "truncated"), ("16bit", "16-bit"), ("small", "1x7x7"),
                         ("colour", "colour image"), ("mixed", "mixed sizes"), ("garbage", "cannot read image")]:
        d = tmp_path / case
        for i in range(20):
            _pil_png(d / f"{i:02d}.png", ok if case != "small" else ok[:7, :7])
        bad = d / "zz.png"
        if case == "truncated":
            blob = (d / "00.png").read_bytes()
            bad.write_bytes(blob[: len(blob) // 2])
        elif case == "16bit":
            bad.write_bytes(_png(28, 28, data=b"".join(b"\x00" + b"\x12\x34" * 28 for _ in range(28)), depth=16))
        elif case == "colour":
            _pil_png(bad, np.stack([ok, ok // 2, ok // 3], -1))
        elif case == "mixed":
            _pil_png(bad, ok[:14, :14])
        elif case == "garbage":
            bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
        code, err = _score(d, tmp_path)
        _refused(code, err, needle)
        assert len(err) == 1, err


def test_grey_rgb_files_are_scored_as_grey(tmp_path):
    """torchvision's save_image writes grey images as RGB files: those pass the colour check."""
    from genbench.data.images import read_images

    ok = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    _pil_png(tmp_path / "a.png", np.stack([ok] * 3, -1))
    x, _, _ = read_images(tmp_path, channels=1)
    assert x.shape == (1, 1, 28, 28) and (x[0, 0].numpy() == ok).all()


def test_custom_dataset_folder_refuses_hostile_images(tmp_path):
    """The study's own image folders decode through the same reader as `genbench score`."""
    from genbench.data.custom import custom_info, load_custom

    ok = np.zeros((16, 16), np.uint8)
    for case in ("bomb", "truncated", "colour"):
        d = tmp_path / case
        for c in ("a", "b"):
            for i in range(3):
                _pil_png(d / c / f"{i}.png", ok)
        if case == "bomb":
            (d / "a" / "9.png").write_bytes(_png(100_000, 100_000))
        elif case == "truncated":
            blob = (d / "a" / "0.png").read_bytes()
            (d / "a" / "9.png").write_bytes(blob[: len(blob) // 2])
        else:
            _pil_png(d / "b" / "9.png", np.stack([ok, ok + 50, ok + 100], -1))
        with pytest.raises(GenbenchError) as e:
            load_custom({"kind": "folder", "path": str(d)}, holdout=0)
        assert "\n" not in str(e.value) and "9.png" in str(e.value), str(e.value)
    d = tmp_path / "first"  # a bomb as the first image fails in custom_info (its header gives the defaults)
    d.mkdir()
    (d / "0.png").write_bytes(_png(100_000, 100_000))
    with pytest.raises(GenbenchError, match="decompression bomb"):
        custom_info({"kind": "folder", "path": str(d)})


# --------------------------------------------------------------------------------------------------------------
# 3. Things that are not regular files


def test_fifo_and_folders_where_files_are_expected(tmp_path):
    """A FIFO given as an .npz, a study file, a checkpoint or a metrics.json is refused at once (a read would
    block forever); a folder as a study file is one line too. Each _cli call has a 20 s deadline."""
    fifo = tmp_path / "x.npz"
    os.mkfifo(fifo)
    code, err = _cli("score", str(fifo), "--reference", "mnist", "--out", str(tmp_path / "o"), timeout=20)
    _refused(code, err, "FIFO")
    y = tmp_path / "study.yaml"
    os.mkfifo(y)
    code, err = _cli("run", str(y), "--profile", "smoke", "--out", str(tmp_path / "runs"), timeout=20)
    _refused(code, err, "FIFO")
    d = tmp_path / "dir.yaml"
    d.mkdir()
    code, err = _cli("run", str(d), "--profile", "smoke", "--out", str(tmp_path / "runs"), timeout=20)
    _refused(code, err, "folder")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    os.mkfifo(run / "checkpoints" / "last.pt")
    code, err = _cli("sample", str(run), "--n", "2", timeout=20)
    _refused(code, err, "FIFO")
    os.mkfifo(run / "metrics.json")
    code, err = _cli("report", str(run), timeout=20)
    _refused(code, err, "FIFO")
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "last.pt").mkdir()
    code, err = _cli("sample", str(run), "--n", "2", timeout=20)
    _refused(code, err, "folder")


def test_fifo_in_datasets_and_helpers(tmp_path):
    from genbench.data.custom import custom_info
    from genbench.data.images import read_images
    from genbench.io import read_jsonl, regular_file, sha256_file

    f = tmp_path / "data.npz"
    os.mkfifo(f)
    with pytest.raises(GenbenchError, match="FIFO"):
        custom_info({"kind": "npz", "path": str(f)})
    for fn in (lambda: sha256_file(f), lambda: read_jsonl(f), lambda: regular_file(f, "x", "fix")):
        with pytest.raises(GenbenchError, match="FIFO"):
            fn()
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    os.mkfifo(imgs / "a.png")  # skipped by the folder listing (not a regular file), never opened
    with pytest.raises(GenbenchError, match="holds no"):
        read_images(imgs, channels=1)
    assert regular_file(tmp_path / "missing", "x", "fix") == tmp_path / "missing"


def test_case_counts():
    print(f"\n[paths] generated cases: {dict(CASES)} (total {sum(CASES.values())})")
