"""One registry type for every spec genbench lets plugins add: model families, datasets and metrics.

A :class:`Registry` maps a name to a frozen spec object in registration order (built-ins first). Out-of-tree
packages add specs by calling the layer's ``register_*`` function at import, or through an entry point group
(``genbench.families``, ``genbench.datasets``) that is loaded on the first lookup miss. Every refusal is one
:class:`~genbench.errors.GenbenchError` line naming the problem and the fix.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from typing import Callable, Generic, Iterator, TypeVar

from genbench.errors import GenbenchError

T = TypeVar("T")


def _installed() -> tuple:
    """What the installed packages' entry points depend on: ``sys.path`` and each entry's modification time
    (installing or removing a package adds or removes a file or folder in its directory), the key
    ``importlib.metadata`` caches its directory listings by. A scan of the entry points reads every installed
    package's metadata (~10-30 ms with a few hundred packages); this key costs a ``stat`` per path entry."""
    key = []
    for p in sys.path:
        try:
            key.append((p, os.stat(p or ".").st_mtime_ns))
        except (OSError, TypeError, ValueError):
            key.append((p, None))
    return tuple(key)


class Registry(Generic[T]):
    """Name -> spec, in registration order.

    Args:
        what: the spec's noun in messages (``"family"``, ``"dataset"``, ``"metric"``).
        spec_type: the class every spec must be an instance of.
        type_name: its public dotted name, for messages (``"genbench.families.Family"``).
        register_name: the public function that adds one (``"register_family"``), for messages.
        entry_point_group: the entry point group of plugins, or None.
        identifier: whether names must be Python identifiers.
    """

    def __init__(self, what: str, spec_type: type, type_name: str, register_name: str, *,
                 entry_point_group: str | None = None, identifier: bool = True):
        self.what, self.spec_type, self.type_name, self.register_name = what, spec_type, type_name, register_name
        self.entry_point_group, self.identifier = entry_point_group, identifier
        self._items: dict[str, T] = {}
        self._scanned: tuple | None = None  # _installed() when every entry point of the group was last registered

    def add(self, spec: T, *, replace: bool = False, check: Callable[[T], None] | None = None) -> T:
        """Register ``spec`` under ``spec.name`` and return it; the same object again is a no-op.

        Args:
            check: a further check of the spec (run before it is added; raises GenbenchError).

        Raises:
            GenbenchError: not a ``spec_type``; a name that is not an identifier (when required); a name taken by
                another spec (and ``replace`` is False); whatever ``check`` raises.
        """
        if not isinstance(spec, self.spec_type):
            raise GenbenchError(f"{self.register_name}: expected a {self.type_name}, got {type(spec).__name__}")
        name = spec.name
        if self.identifier and not (isinstance(name, str) and name.isidentifier()):
            raise GenbenchError(f"{self.register_name}: {self.what} name {name!r} must be a Python identifier")
        if self._items.get(name) is spec:
            return spec  # the same object again (a module imported twice): nothing to do
        if name in self._items and not replace:
            raise GenbenchError(f"{self.what} {name!r} is registered already; pick another name or pass "
                                f"replace=True")
        if check is not None:
            check(spec)
        self._items[name] = spec
        return spec

    def remove(self, name: str) -> None:
        """Drop ``name`` if registered (tests that register a spec of their own clean up with this)."""
        self._items.pop(name, None)
        self._scanned = None  # an entry point of that name is registered again on the next scan

    def load_entry_points(self) -> None:
        """Register the group's entry points not registered yet.

        Raises:
            GenbenchError: a plugin whose import fails (or calls ``sys.exit``), or whose object is not a
                ``spec_type`` of the entry point's name: one line naming it.
        """
        if self.entry_point_group is None:
            return
        installed = _installed()
        if installed == self._scanned:
            return  # nothing installed or removed since the last full scan (which reads every package's metadata)
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            if ep.name in self._items:
                continue
            try:
                spec = ep.load()
            except (Exception, SystemExit) as e:  # noqa: BLE001 - the plugin's import failed (or exited): one line
                raise GenbenchError(f"{self.what} plugin {ep.name!r} ({ep.value}) failed to load "
                                    f"({type(e).__name__}: {str(e)[:120]}); fix or uninstall that package") from e
            if not isinstance(spec, self.spec_type) or spec.name != ep.name:
                raise GenbenchError(f"{self.what} plugin {ep.name!r} ({ep.value}) is not a {self.type_name} named "
                                    f"{ep.name!r}; point the entry point at one")
            self.add(spec)
        self._scanned = installed

    def find(self, name) -> T | None:
        """The spec called ``name``, loading entry points on a miss; None when there is none."""
        if not isinstance(name, str):
            return None
        if name not in self._items:
            self.load_entry_points()
        return self._items.get(name)

    def get(self, name, unknown: str | None = None) -> T:
        """The spec called ``name``.

        Raises:
            GenbenchError: no such spec (``unknown``: the message's start; default ``unknown <what> 'name'``).
        """
        spec = self.find(name)
        if spec is None:
            raise GenbenchError(f"{unknown or f'unknown {self.what} {name!r}'}; registered: {', '.join(self._items)}")
        return spec

    def names(self) -> tuple[str, ...]:
        return tuple(self._items)

    def values(self) -> tuple[T, ...]:
        return tuple(self._items.values())

    def items(self):
        return self._items.items()

    def __contains__(self, name) -> bool:
        return name in self._items

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)
