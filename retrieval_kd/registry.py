"""Registries of lazy ``"module:Class"`` strings.

A registry maps a short name (``"margin_mse"``) to an import path, so listing the names, or
failing on a bad one, never imports torch or faiss. The error message is built from the
registry itself, so it cannot drift from the code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Generic, TypeVar

from retrieval_kd.errors import RkdError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → lazily imported objects.

    Example:
        >>> r: Registry[object] = Registry("loss", {"kl": "math:floor"})
        >>> r.names()
        ['kl']
        >>> r.get("mse2")
        Traceback (most recent call last):
        ...
        retrieval_kd.errors.RkdError: unknown loss 'mse2'; choose from ['kl']
    """

    def __init__(self, kind: str, entries: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, str] = dict(entries or {})

    def register(self, name: str, target: str) -> None:
        """Adds ``name`` → ``"module:attr"``; a plugin calls this to extend rkd."""
        if ":" not in target:
            raise ValueError(f"{self.kind} target must look like 'module:Attr', got {target!r}")
        self._entries[name] = target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str) -> str:
        """Returns ``name`` if registered, else raises the error users see."""
        if name not in self._entries:
            raise RkdError(f"unknown {self.kind} {name!r}; choose from {self.names()}")
        return name

    def get(self, name: str) -> T:
        target = self._entries[self.check(name)]
        module_name, _, attr = target.partition(":")
        obj: T = getattr(importlib.import_module(module_name), attr)
        return obj
