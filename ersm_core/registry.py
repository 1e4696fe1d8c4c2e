"""A name → object registry filled by a decorator (as torchvision's ``register_model``)."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from ersm_core.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Holds named entries of one kind; duplicates and unknown names raise.

    Args:
        kind: what the entries are, used in messages ("ranking", "dataset", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding an entry under ``name``; a second entry of the same name raises."""

        def wrap(obj: T) -> T:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return wrap

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name raises ConfigError listing the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}") from None

    def unregister(self, name: str) -> T:
        """Remove and return the entry ``name`` (for entries registered for one run only)."""
        return self._entries.pop(name)

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
