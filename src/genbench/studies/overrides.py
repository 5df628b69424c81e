"""Command-line overrides of a study file: ``--set key.path=value`` in OmegaConf's dotlist syntax.

::

    genbench run mnist_four --set models.gan.optimizer.lr=1e-4 --set evaluation.n_samples=500
    genbench run mnist_four --set evaluation.n_samples.quick=500     # one profile's entry, named explicitly

Rules (applied to the study's raw mapping before :func:`genbench.studies.config.parse_study` validates it, so every
override goes through the same schema as the file):

- the key is a dotted path of mapping keys (``models.gan.optimizer.lr``); missing sections and keys are created
  (a key the file leaves at its default), except models: ``models.<name>`` must name a model of the study;
- the value is parsed as YAML (``yaml.safe_load``: ``true`` -> bool, ``[1, 2]`` -> list, ``null`` -> None, ``''``
  -> None), except that a number written like ``1e-4`` (which YAML 1.1 reads as a string) is a float;
- an override replaces the value resolved for the active profile: where the file gives a per-profile mapping
  (``{smoke: 1, quick: 10, full: 40}``) it replaces the active profile's entry, and a per-profile mapping on the
  way down (``optimizer: {quick: {lr: ...}, ...}``) is entered at the active profile;
- ``key.path.<profile>=value`` addresses that profile's entry. It must be the active profile: the run folder keeps
  the study resolved for its profile, so another profile's entry would change nothing (refused, never dropped);
- lists are replaced whole (``--set models.ddpm.params.widths=[16,32,32]``), not indexed.

The overrides are recorded in the resolved study (its ``overrides`` list, written to the run folder's
``study.yaml``) and in the provenance of ``metrics.json``. A mistake is one line naming the override; an unknown key
names the nearest valid key (:func:`genbench.studies.schema.unknown_key`).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable

from genbench.errors import GenbenchError

PROFILES = ("smoke", "quick", "full")  # as genbench.studies.schema.PROFILES (not imported: this module stays light)
MAX_OVERRIDE_CHARS = 10_000  # one `--set` (the whole study file is bounded to 1 MiB, studies/schema.py)
MAX_OVERRIDES = 1000
_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_FLOAT = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def parse_value(text: str, override: str | None = None) -> Any:
    """The value of an override: YAML (``yaml.safe_load``), with numbers such as ``1e-4``, ``5E3`` or ``+2.`` as
    floats (YAML 1.1 reads an exponent without a dot, or a leading ``+``, as a string).

    Raises:
        GenbenchError: not valid YAML.
    """
    import yaml

    s = text.strip()
    if _FLOAT.fullmatch(s) and not re.fullmatch(r"[-+]?\d+", s):
        return float(s)
    try:
        v = yaml.safe_load(s) if s else None
    except Exception as e:  # noqa: BLE001 - YAMLError, or a ValueError from a value such as 2024-13-01
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise GenbenchError(f"--set {_shown(override or text)}: the value is not valid YAML ({first[:80]}); quote it or write "
                            f"it as YAML (1e-4, true, [1, 2])") from None
    return v


def parse_override(text: str) -> tuple[list[str], Any]:
    """``key.path=value`` as (the key's parts, the parsed value).

    Raises:
        GenbenchError: no ``=``, an empty or malformed key, too long.
    """
    if not isinstance(text, str):
        raise GenbenchError(f"--set {_shown(text)}: give a string key.path=value")
    if len(text) > MAX_OVERRIDE_CHARS:
        raise GenbenchError(f"--set {_shown(text)}: longer than {MAX_OVERRIDE_CHARS:,} characters; put large values "
                            f"in a copy of the study file")
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not _KEY.fullmatch(key):
        raise GenbenchError(f"--set {_shown(text)}: give key.path=value, a dotted key of letters, digits, '_' and "
                            f"'-' (e.g. models.gan.optimizer.lr=1e-4)")
    return key.split("."), parse_value(value, text)


def _per_profile(v: Any) -> bool:
    """``{smoke: .., quick: .., full: ..}`` (a non-empty mapping whose keys are all profile names), as
    :func:`genbench.studies.schema.resolve_profile` reads it."""
    return isinstance(v, dict) and bool(v) and all(isinstance(k, str) for k in v) and set(v) <= set(PROFILES)


def _enter(node: Any, profile: str, where: str) -> Any:
    """``node``, or its entry for ``profile`` when it is a per-profile mapping."""
    if _per_profile(node):
        if profile not in node:
            raise GenbenchError(f"--set {where}: the study gives {where} per profile without an entry for "
                                f"{profile}; add one to the study file")
        return node[profile]
    return node


def apply_override(raw: dict, text: str, profile: str) -> None:
    """Apply one override to ``raw`` in place (module docstring for the rules).

    Raises:
        GenbenchError: one line naming the override: bad syntax, another profile's entry, a path through a value
            that is not a mapping, an unknown model.
    """
    keys, value = parse_override(text)
    if keys[-1] in PROFILES and len(keys) > 1:
        if keys[-1] != profile:
            raise GenbenchError(f"--set {_shown(text)}: addresses profile {keys[-1]}, and this run uses profile "
                                f"{profile}, so it would change nothing; drop it, or run with --profile {keys[-1]}")
        keys = keys[:-1]
    node: Any = raw
    for i, k in enumerate(keys):
        where = ".".join(keys[:i + 1])
        node = _enter(node, profile, ".".join(keys[:i]) or "the study")
        if isinstance(node, list):  # (also a per-profile entry that resolves to a list)
            raise GenbenchError(f"--set {_shown(text)}: {'.'.join(keys[:i])} is a list; set the whole list "
                                f"({'.'.join(keys[:i])}=[...])")
        if not isinstance(node, dict):
            raise GenbenchError(f"--set {_shown(text)}: {'.'.join(keys[:i])} holds a {type(node).__name__} value, "
                                f"not a mapping; set {'.'.join(keys[:i])} itself")
        if i == len(keys) - 1:
            if _per_profile(node.get(k)):
                node[k][profile] = value  # the active profile's entry; the others stay as the file gives them
            else:
                node[k] = value
            return
        if i == 1 and keys[0] == "models" and k not in node:
            from genbench.studies.schema import unknown_key

            raise GenbenchError(f"--set {_shown(text)}: {unknown_key('models', k, list(node))}") from None
        if node.get(k) is None:
            node[k] = {}  # a section the file leaves out (or leaves empty)
        node = node[k]
        if isinstance(node, list):
            raise GenbenchError(f"--set {_shown(text)}: {where} is a list; set the whole list ({where}=[...])")


def apply_overrides(raw: Any, overrides: Iterable[str], profile: str) -> Any:
    """A copy of the study mapping ``raw`` with every override applied in order (a later one wins) and recorded in
    its ``overrides`` list (after any the mapping already records). ``raw`` that is not a mapping is returned as
    is (the schema refuses it).

    Raises:
        GenbenchError: one line naming the bad override (:func:`apply_override`).
    """
    overrides = list(overrides)
    if not overrides or not isinstance(raw, dict):
        return raw
    if len(overrides) > MAX_OVERRIDES:
        raise GenbenchError(f"{len(overrides)} --set overrides; give at most {MAX_OVERRIDES} (or edit a copy of the "
                            f"study file)")
    out = copy.deepcopy(raw)
    for text in overrides:
        apply_override(out, text, profile)
    before = out.get("overrides")
    out["overrides"] = (list(before) if isinstance(before, list) else []) + [str(t).strip() for t in overrides]
    return out


def blame(error: GenbenchError, overrides: Iterable[str]) -> GenbenchError:
    """The schema's error for a study with overrides, naming the override it is about: the one whose key (or the
    longest leading part of it) the message names as a dotted field; else the message says the study was read with
    overrides."""
    msg = str(error)
    best, best_len = None, 0
    for text in overrides:
        key = str(text).partition("=")[0].strip().split(".")
        if key and key[-1] in PROFILES:
            key = key[:-1]
        for n in range(len(key), 0, -1):
            part = ".".join(key[:n])
            if n > best_len and re.search(rf"\.{re.escape(part)}(?![A-Za-z0-9_-])", msg):
                best, best_len = text, n
                break
    if best is not None:
        return GenbenchError(f"--set {_shown(best)}: {msg}")
    return GenbenchError(f"{msg} (the study with its --set overrides)")


def _shown(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 80 else s[:77] + "..."
