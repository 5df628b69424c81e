"""The example notebook (docs/notebook.ipynb, issue 30): it must stay valid, committed without outputs, and run.

The slow test executes it with nbclient in a kernel of this test's Python (a kernelspec written into a temporary
JUPYTER_PATH, so nothing is installed into the user's Jupyter folders), on the smoke profile: it scores 100
in-memory MNIST images with ``genbench.score`` and reads the committed finished run
tests/fixtures/run_schema2/byo-mnist (through GENBENCH_EXAMPLE_RUN) into a DataFrame with ``load_run().to_frame()``.
"""

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

import genbench

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
FIXTURE = ROOT / "tests" / "fixtures" / "run_schema2" / "byo-mnist"
KERNEL = "genbench-test"


def _cells() -> tuple[dict, dict]:
    nb = json.loads(NOTEBOOK.read_text())
    return nb, {c["id"]: c for c in nb["cells"]}


def test_notebook_is_committed_clean_and_reads_the_example_run_from_the_environment():
    nb, cells = _cells()
    assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5  # cell ids (the slow test finds its cells by id)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code), \
        "commit docs/notebook.ipynb without outputs (Kernel > Restart & Clear Output, or nbstripout)"
    assert {"score", "fid", "run"} <= set(cells)
    src = "".join(cells["run"]["source"])
    assert 'os.environ.get("GENBENCH_EXAMPLE_RUN", "runs/mnist-four")' in src and "to_frame()" in src
    assert 'profile="smoke"' in "".join(cells["score"]["source"])


def _kernelspec(home: Path) -> None:
    """A kernelspec named KERNEL running this test's Python, under ``home/kernels`` (home goes on JUPYTER_PATH)."""
    d = home / "kernels" / KERNEL
    d.mkdir(parents=True)
    (d / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "genbench test", "language": "python"}))


def _text(output: dict, mime: str = "text/plain") -> str:
    if output["output_type"] == "stream":
        return "".join(output["text"]) if mime == "text/plain" else ""
    data = output.get("data", {})
    v = data.get(mime, "")
    return "".join(v) if isinstance(v, list) else v


@pytest.mark.slow
def test_notebook_runs_scores_a_tensor_and_reads_a_run_into_a_dataframe(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[test]' (nbformat, nbclient, ipykernel)")
    from nbclient import NotebookClient

    pytest.importorskip("ipykernel", reason="pip install -e '.[test]'")
    pytest.importorskip("pandas", reason="pip install -e '.[test]'")

    jupyter = tmp_path / "jupyter"
    _kernelspec(jupyter)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))  # the kernel's environment is this process's
    for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"),
                     ("JUPYTER_DATA_DIR", "data"), ("IPYTHONDIR", "ipython")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("GENBENCH_EXAMPLE_RUN", str(FIXTURE))
    # the kernel imports the genbench this test imported (an editable install or PYTHONPATH=src alike)
    src = str(Path(genbench.__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])))
    work = tmp_path / "work"  # the kernel's folder: nothing is written into the checkout
    work.mkdir()

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(work)}}).execute()
    cells = {c["id"]: c for c in nb.cells}

    # the FID of the in-memory samples: the dict shown, then the printed line
    shown = "".join(_text(o) for o in cells["score"]["outputs"])
    assert "'value'" in shown and "'n_generated': 20" in shown and "'std'" in shown, shown
    printed = "".join(_text(o) for o in cells["fid"]["outputs"])
    m = re.search(r"FID \(Inception\) (\d+\.\d+) on 20 images; real-data floor (\d+\.\d+)", printed)
    assert m, printed
    fid, floor = float(m.group(1)), float(m.group(2))
    assert math.isfinite(fid) and fid > 0 and math.isfinite(floor) and floor > 0
    assert "<table" in "".join(_text(o, "text/html") for o in cells["score-frame"]["outputs"])

    # the finished run as a DataFrame: every model of the fixture, with its FID as pandas prints it
    html = "".join(_text(o, "text/html") for o in cells["run"]["outputs"])
    assert "<table" in html and "fid_inception" in html, html[:500]
    df = genbench.load_run(FIXTURE).to_frame()
    for model, value in zip(df["model"], df["fid_inception"]):
        assert f"<td>{model}</td>" in html and f"{value:.6f}" in html, (model, value)
    assert not (work / "runs").exists()  # the example read the fixture, not the default runs/mnist-four
