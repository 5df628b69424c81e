"""genbench: train, sample, evaluate and compare image generative models, honestly.

The Python API (:mod:`genbench.api`, loaded on first use so that ``import genbench`` stays light)::

    genbench.score(samples, reference="mnist")   # uint8 (N, C, H, W) array/tensor, folder or .npz -> Scores
    genbench.run("mnist_four", profile="smoke", overrides=["evaluation.n_samples=500"])   # -> RunResult
    genbench.load_run("runs/mnist-four")         # a finished study folder's metrics.json -> RunResult
    genbench.compare([run_a, run_b])             # rows of several runs with a `run` column -> Table

Results have attribute and dict access and ``to_frame()`` (pandas: ``pip install 'genbench[notebook]'``).
"""

import importlib

__version__ = "0.1.0"
__all__ = ["score", "run", "load_run", "compare", "Scores", "RunResult", "Table", "Row", "GenbenchError",
           "__version__"]
_API = {"score", "run", "load_run", "compare", "Scores", "RunResult", "Table", "Row"}


def __getattr__(name: str):
    """The API's names, imported on first use (PEP 562). ``importlib`` rather than an import statement: the
    root package sits below every layer (``runtime.provenance`` reads ``__version__``), and a static import of the
    top layer here would be an upward import to the layer contract (pyproject.toml)."""
    if name in _API:
        return getattr(importlib.import_module("genbench.api"), name)
    if name == "GenbenchError":
        return importlib.import_module("genbench.errors").GenbenchError
    raise AttributeError(f"module 'genbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
