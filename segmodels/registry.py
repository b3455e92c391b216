"""A name -> factory table, so that adding a part is one file and one decorator line."""
from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    """Factories by name, each with optional metadata readable without calling the factory (as timm's
    pretrained configs are); ``fallback`` / ``fallback_info`` resolve names outside the table."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._info: dict[str, Any] = {}
        self.fallback: Callable[[str], T | None] | None = None
        self.fallback_info: Callable[[str], Any] | None = None
        self.fallback_names: Callable[[], list[str]] | None = None  # every name the fallback resolves (for suggestions)

    def register(self, name: str, info: Any = None) -> Callable[[T], T]:
        def add(factory: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = factory
            self._info[name] = info
            return factory

        return add

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        resolved = self.fallback(name) if self.fallback else None
        if resolved is None:
            raise KeyError(self._unknown(name))
        return resolved

    def info(self, name: str) -> Any:
        """The metadata ``name`` was registered with (or the fallback's), without building anything."""
        if name in self._entries:
            return self._info[name]
        if self.fallback_info is not None and self.fallback is not None and self.fallback(name) is not None:
            return self.fallback_info(name)
        raise KeyError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        """The table's close names first, then the fallback's (timm's ~1,300 models for backbones)."""
        candidates = list(dict.fromkeys(self.names() + (self.fallback_names() if self.fallback_names else [])))
        close = difflib.get_close_matches(name.removeprefix("timm/"), candidates, n=5, cutoff=0.6)
        if close:
            return f"unknown {self.kind} '{name}'; did you mean {', '.join(close)}? (registered: {', '.join(self.names())})"
        extra = " (or a name the fallback resolves)" if self.fallback else ""
        return f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}{extra}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
