"""genbench installs like any package: build the wheel from a copy of the sources, install it (no editable
link) into a fresh virtual environment in a temporary folder, and run `genbench run --profile smoke --only vae`
(the bundled MNIST study, its VAE only, to stay near a minute) from a
folder outside the repository; the study file comes from inside the installed package, `runs/` is written
under the current folder.

The new environment reuses this test environment's installed dependencies (torch etc.) through a ``.pth``
file naming its site-packages folders (a plain path line: the ``.pth`` files there, among them an editable
genbench of a checkout, are not run), and the wheel is installed with ``--no-deps``; the test checks that
``genbench`` imports from the new environment, not from a source tree. MNIST and the Inception weights come
from the genbench cache ($GENBENCH_HOME, as for the other tests).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    dist = tmp_path / "dist"
    try:
        import setuptools  # noqa: F401

        isolation = ["--no-build-isolation"]  # build with the setuptools installed here (no download)
    except ImportError:
        isolation = []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(dist), str(src)])
    (wheel,) = dist.glob("genbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"genbench/studies/files/{s}.yaml" for s in ("mnist_four", "fashion_beta_vae", "quickdraw_vae",
                                                         "cifar10_vae_dcgan")} <= set(names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    vpy = venv / "bin" / "python"
    vsite = Path(_run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    parents = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (vsite / "_genbench_test_parent_env.pth").write_text("".join(f"{p}\n" for p in parents))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", "--no-index",
          "--disable-pip-version-check", str(wheel)], env=env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(vpy), "-c", "import genbench; print(genbench.__file__)"], env=env, cwd=work).stdout.strip()
    assert where.startswith(str(vsite)), where  # the installed package, not a source tree
    studies = _run([str(venv / "bin" / "genbench"), "studies"], env=env, cwd=work).stdout
    assert "mnist_four " in studies and "quickdraw_vae " in studies
    # one model (the VAE) keeps the test near a minute; the whole smoke study runs in conftest's smoke_study
    p = _run([str(venv / "bin" / "genbench"), "run", "--profile", "smoke", "--only", "vae"], env=env, cwd=work)
    print(p.stdout, p.stderr[-1500:], sep="\n")
    assert (work / "runs" / "mnist-four" / "report" / "index.html").exists()
    assert (work / "runs" / "mnist-four" / "study.yaml").exists()
    assert p.stdout.strip().splitlines()[-1].startswith(f"report: runs/mnist-four/report/index.html")


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
