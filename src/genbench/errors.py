"""User-facing errors.

A :class:`GenbenchError` is a mistake the user can fix (a missing asset, a bad config value). The CLI prints
its message as one line and exits with code 2; every other exception is a bug and keeps its traceback.
"""


class GenbenchError(Exception):
    """A user-fixable problem. The message names the problem and the fix."""


class AssetError(GenbenchError):
    """A data or weight file is missing or fails its checksum."""
