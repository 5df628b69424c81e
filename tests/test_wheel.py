"""genbench installs like any package: build the wheel from a copy of the sources, install it (no editable
link) with its dependencies into a fresh virtual environment in a temporary folder, and run `genbench run --profile
smoke --only vae` (the bundled MNIST study, its VAE only, to stay near a minute) from a folder outside the
repository; the study file comes from inside the installed package, `runs/` is written under the current folder.

Honest packaging (issue 30): the new environment sees nothing of the checkout's. It has no system site-packages,
no ``.pth`` into another environment, no user site-packages (PYTHONNOUSERSITE) and no PYTHONPATH, and pip installs
the wheel with ``--no-index --find-links .cache/wheels`` with pip's configuration files and PIP_* variables off:
only the packages the wheel's own ``Requires-Dist`` pulls in, from a local wheel cache. So a dependency missing
from pyproject.toml fails this test.

The cache (``.cache/wheels`` in the checkout, gitignored; `make test` downloads torch-fidelity's wheel there too)
is filled once by ``pip download`` of the wheel's dependency tree, pinned (``-c``) to the versions installed in
this test environment (torch: the local 2.13.0 CPU build the Makefile installs, which this machine's pip
configuration finds), and reused: the install is tried from the cache first and the cache filled only when it
lacks a pinned version. Where ``pip download`` fails (no registry), the test is skipped with its reason, unless
GENBENCH_REQUIRE_WHEEL_DEPS=1 (CI, `.ci/run`) makes that a failure. MNIST and the Inception weights come from the
genbench cache ($GENBENCH_HOME, as for the other tests).
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / ".cache" / "wheels"


def _run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


def _pins(path: Path) -> Path:
    """A pip constraints file: every distribution of this test environment as ``name==version`` (genbench
    excepted). Constraints only pin; they add no package to an install."""
    pins = {}
    for d in importlib.metadata.distributions():
        name = d.metadata["Name"]
        key = re.sub(r"[-_.]+", "-", name).lower() if name else ""
        if key and key != "genbench":
            pins.setdefault(key, d.version)
    path.write_text("".join(f"{k}=={v}\n" for k, v in sorted(pins.items())))
    return path


def _isolated_env(**extra) -> dict:
    """This process's environment without what would let the new environment see the checkout's packages."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("PIP_")}
    return {**env, "PYTHONNOUSERSITE": "1", **extra}


def _install_from_cache(vpy: Path, wheel: Path, pins: Path) -> subprocess.CompletedProcess:
    """pip install the wheel and its dependencies from the local cache only (no index, no pip configuration)."""
    return subprocess.run(
        [str(vpy), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELS), "-c", str(pins),
         "--no-compile", "--disable-pip-version-check", str(wheel)],  # --no-compile: ~3x faster (torch's .py files)
        capture_output=True, text=True, env=_isolated_env(PIP_CONFIG_FILE=os.devnull))


def _fill_cache(wheel: Path, pins: Path) -> None:
    """pip download the wheel's dependency tree at this environment's versions into the cache, through this
    machine's pip configuration (its indexes and find-links: torch's local CPU build)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    p = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d",
                        str(WHEELS), "-c", str(pins), str(wheel)], capture_output=True, text=True)
    for w in WHEELS.glob("genbench-*.whl"):  # pip download copies the wheel itself; the test installs its own
        w.unlink()
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or ["no output"])[-1]
        msg = f"could not fill the wheel cache {WHEELS} with pip download of the wheel's dependencies: {why}"
        if os.environ.get("GENBENCH_REQUIRE_WHEEL_DEPS") == "1":
            pytest.fail(msg)
        pytest.skip(msg + " (needs a reachable package index once; GENBENCH_REQUIRE_WHEEL_DEPS=1 fails instead)")


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    dist = tmp_path / "dist"
    # build with the setuptools installed here (no download) where there is one
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(dist), str(src)])
    (wheel,) = dist.glob("genbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"genbench/studies/files/{s}.yaml" for s in ("mnist_four", "fashion_beta_vae", "quickdraw_vae",
                                                         "cifar10_vae_dcgan")} <= set(names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=_isolated_env())  # with pip (ensurepip, offline)
    vpy = venv / "bin" / "python"
    pins = _pins(tmp_path / "pins.txt")
    p = _install_from_cache(vpy, wheel, pins)
    if p.returncode != 0:  # the cache lacks a pinned version (first run, or the environment changed): fill it
        _fill_cache(wheel, pins)
        p = _install_from_cache(vpy, wheel, pins)
    assert p.returncode == 0, f"the wheel's dependencies do not install from {WHEELS} alone:\n{p.stderr[-3000:]}"

    # nothing of the checkout's environment is visible: its path, the import locations, the .pth files
    env = _isolated_env()
    work = tmp_path / "elsewhere"
    work.mkdir()
    probe = ("import importlib.util, json, sys, genbench, torch, openvino; print(json.dumps({'path': sys.path, "
             "'torch': torch.__version__, 'files': [m.__file__ for m in (genbench, torch, openvino)], "
             "'pytest': importlib.util.find_spec('pytest') is not None}))")
    seen = json.loads(_run([str(vpy), "-c", probe], env=env, cwd=work).stdout)
    vsite = Path(_run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                      env=env).stdout.strip())
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    parents = {str(Path(sysconfig.get_paths()[k]).resolve()) for k in ("purelib", "platlib")}
    for entry in seen["path"]:
        r = Path(entry).resolve() if entry else work
        assert str(r) not in parents and not r.is_relative_to(ROOT), (entry, seen["path"])
        assert "site-packages" not in r.parts or r.is_relative_to(venv.resolve()), (entry, seen["path"])
    for f in seen["files"]:  # the installed package, not a source tree; its dependencies from the new environment
        assert Path(f).resolve().is_relative_to(vsite.resolve()), f
    assert not seen["pytest"], "a test-only package of the checkout's environment is importable"
    assert seen["torch"] == importlib.metadata.version("torch")  # the pinned build (here the local CPU one)
    for pth in vsite.glob("*.pth"):
        for line in pth.read_text().splitlines():
            if line.strip() and not line.startswith(("#", "import")):
                assert (vsite / line.strip()).resolve().is_relative_to(venv.resolve()), (pth, line)

    studies = _run([str(venv / "bin" / "genbench"), "studies"], env=env, cwd=work).stdout
    assert "mnist_four " in studies and "quickdraw_vae " in studies
    # one model (the VAE) keeps the test near a minute; the whole smoke study runs in conftest's smoke_study
    p = _run([str(venv / "bin" / "genbench"), "run", "--profile", "smoke", "--only", "vae"], env=env, cwd=work)
    print(p.stdout, p.stderr[-1500:], sep="\n")
    assert (work / "runs" / "mnist-four" / "report" / "index.html").exists()
    assert (work / "runs" / "mnist-four" / "study.yaml").exists()
    assert p.stdout.strip().splitlines()[-1].startswith("report: runs/mnist-four/report/index.html")


def test_study_names_resolve_from_any_folder(tmp_path, monkeypatch):
    from genbench.errors import GenbenchError
    from genbench.studies.catalog import resolve_study, shipped, studies_dir

    monkeypatch.chdir(tmp_path)
    assert set(shipped()) == {"mnist_four", "fashion_beta_vae", "quickdraw_vae", "cifar10_vae_dcgan"}
    for name in ("mnist_four", "mnist_four.yaml", "studies/mnist_four.yaml"):
        assert resolve_study(name) == studies_dir() / "mnist_four.yaml"
    (tmp_path / "mnist_four.yaml").write_text("name: mine\n")  # a file of the user's wins over the shipped name
    assert resolve_study("mnist_four.yaml") == Path("mnist_four.yaml")
    try:
        resolve_study("other/mnist_four.yaml")
        raise AssertionError("a path in another folder is not a shipped name")
    except GenbenchError as e:
        assert "not found" in str(e) and "mnist_four" in str(e)
    assert (ROOT / "studies" / "mnist_four.yaml").resolve() == (studies_dir() / "mnist_four.yaml").resolve()
