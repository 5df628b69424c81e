"""The study files shipped inside the package (``genbench/studies/files/*.yaml``), read through
:mod:`importlib.resources`, so that ``genbench run mnist_four`` works from any directory and from a wheel.

A study argument is a path when that file exists (``studies/mnist_four.yaml`` in a checkout, where ``studies``
links to the shipped folder; any user file); otherwise a shipped study's name, with or without ``.yaml`` and
with or without a leading ``studies/`` (so the README's commands work outside a checkout too).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from genbench.errors import GenbenchError


def studies_dir() -> Path:
    """The folder of the shipped study files (a real folder: genbench is installed unzipped)."""
    return Path(str(resources.files("genbench.studies").joinpath("files")))


def shipped() -> dict[str, Path]:
    """name -> path of every shipped study file, sorted by name."""
    return {p.stem: p for p in sorted(studies_dir().glob("*.yaml"))}


def describe(path: Path) -> str:
    """The first comment line of a study file, without its ``#``."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def locate_study(study: str | Path) -> Path | None:
    """The file ``study`` names (module docstring), or None."""
    p = Path(study)
    if p.exists():
        return p
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent in (Path("."), Path("studies")) and name in shipped():
        return shipped()[name]
    return None


def resolve_study(study: str | Path) -> Path:
    """Like :func:`locate_study`.

    Raises:
        GenbenchError: no such file or shipped study (the message lists the shipped names).
    """
    p = locate_study(study)
    if p is None:
        raise GenbenchError(f"study file {study} not found; give a path or one of: {', '.join(shipped())} "
                            f"(`genbench studies` lists them)")
    return p
