"""A name -> factory table, so that adding a part is one file and one decorator line."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self.fallback: Callable[[str], T | None] | None = None  # resolves names outside the table

    def register(self, name: str) -> Callable[[T], T]:
        def add(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = factory
            return factory

        return add

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        resolved = self.fallback(name) if self.fallback else None
        if resolved is None:
            extra = " (or a name the fallback resolves)" if self.fallback else ""
            raise KeyError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}{extra}")
        return resolved

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
