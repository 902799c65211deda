"""Registries of named plugin factories, loaded from entry-point groups (no module-level state).

Policies (controller.policies.registry) and mechanisms (controller.mechanisms.registry) are
both plugins: a registry instance maps names to factories, built from an entry-point group by
`from_entry_points()` or by hand (`Registry({...})`, `.register(...)`) in tests and embedders,
and passed to whoever needs it. Entry points are loaded lazily, on the first `factory(name)`
call, so one broken plugin only fails where it is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import ClassVar, Generic, Self, TypeVar

F = TypeVar("F")


class UnknownPlugin(KeyError):
    """No plugin of that name: the message lists the known ones."""

    kind = "plugin"

    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name)
        self.name, self.known = name, tuple(known)

    def __str__(self) -> str:
        known = ", ".join(self.known) or "(none registered)"
        return f"unknown {self.kind} {self.name!r}: expected one of {known}"


class Registry(Generic[F]):
    """Named factories of one kind of plugin. Subclasses say which entry-point group they read,
    how an entry point becomes a factory (`from_entry_point`) and which error names a miss."""

    group: ClassVar[str]
    unknown: ClassVar[type[UnknownPlugin]] = UnknownPlugin

    def __init__(self, factories: Mapping[str, F] | None = None) -> None:
        self._factories: dict[str, F] = dict(factories or {})

    @classmethod
    def from_entry_points(cls, group: str | None = None) -> Self:
        return cls({ep.name: cls.from_entry_point(ep) for ep in entry_points(group=group or cls.group)})

    @classmethod
    def from_entry_point(cls, ep: EntryPoint) -> F:
        raise NotImplementedError

    def register(self, name: str, factory: F) -> None:
        if name in self._factories:
            raise ValueError(f"{self.unknown.kind} {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def factory(self, name: str) -> F:
        found = self._factories.get(name)
        if found is None:
            raise self.unknown(name, self.names())
        return found
