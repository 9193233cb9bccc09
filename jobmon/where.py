"""Config errors: ``ConfigError``, and ``Where``, which names the file and key path to blame.

Its own module so that ``config`` (which merges the layers) and ``jobtype`` (which builds a type
from the merged mapping) both raise the same one-line ``file: key.path: problem`` error without
importing each other.
"""
from __future__ import annotations

from typing import Mapping


class ConfigError(Exception):
    """One line: ``file: key.path: problem``."""


class Where:
    """Turns a key path into the ``file: key.path`` prefix of an error: a job type's key under the
    type's name, a cluster's override (``moved``: merged key -> the cluster's key) under its
    ``clusters.NAME.`` path."""

    def __init__(
        self,
        origins: Mapping[tuple[str, ...], str],
        prefix: tuple[str, ...],
        moved: Mapping[tuple[str, ...], tuple[str, ...]] | None = None,
    ):
        self.origins, self.prefix, self.moved = origins, prefix, moved or {}

    def _origin(self, full: tuple[str, ...]) -> tuple[str, ...] | None:
        for n in range(len(full), 0, -1):
            if full[:n] in self.origins:
                return full[:n]
        return None

    def newer(self, a: tuple[str, ...], b: tuple[str, ...]) -> bool:
        """Whether ``a`` was set by a later file (or later in the same file) than ``b``."""
        ka, kb = self._origin(self.prefix + a), self._origin(self.prefix + b)
        if ka is None or kb is None:
            return False
        keys = list(self.origins)
        return keys.index(ka) > keys.index(kb)

    def error(self, rel: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.name(rel)}: {message}")

    def name(self, rel: tuple[str, ...]) -> str:
        """``file: key.path``: what an error, or a message about a configured thing, names it by."""
        full = self.prefix + rel
        key = self._origin(full)
        if key is None:
            return f"config: {'.'.join(full)}"
        shown = self.moved.get(key, key) + full[len(key):]
        if shown[0] == "types":
            shown = shown[1:]
        return f"{self.origins[key]}: {'.'.join(shown)}"
