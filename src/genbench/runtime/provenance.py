"""Where a number came from: package version, git commit, torch version, thread count."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

import genbench


def to_yaml(obj: Any) -> str:
    """``obj`` as block-style YAML with the keys in their given order (safe dumper: plain data only)."""
    return yaml.safe_dump(obj, sort_keys=False)


def provenance() -> dict:
    """Package version, git commit (if run from a checkout, else None), torch version and thread count."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except Exception:  # noqa: BLE001 - no git, not a checkout: provenance says None
        commit = None
    return {"genbench_version": genbench.__version__, "git_commit": commit, "torch": str(torch.__version__),
            "threads": torch.get_num_threads()}
