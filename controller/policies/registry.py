"""An explicit registry of policy factories (no module-level state).

`PolicyRegistry.from_entry_points()` reads the `mlsysops.controller.policies` group; tests and
embedders build their own with `PolicyRegistry({...})` or `.register(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points

from controller.policies.base import Policy

ENTRY_POINT_GROUP = "mlsysops.controller.policies"
DEFAULT_CHAIN = ("staticPlacedComponents", "constraintAwarePlacer")


class UnknownPolicy(KeyError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(name)
        self.name, self.known = name, tuple(known)

    def __str__(self) -> str:
        return f"unknown policy {self.name!r}: expected one of {', '.join(self.known) or '(none registered)'}"


class PolicyRegistry:
    def __init__(self, factories: Mapping[str, Callable[[], Policy]] | None = None) -> None:
        self._factories: dict[str, Callable[[], Policy]] = dict(factories or {})

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> PolicyRegistry:
        return cls({ep.name: _lazy(ep) for ep in entry_points(group=group)})

    def register(self, name: str, factory: Callable[[], Policy]) -> None:
        if name in self._factories:
            raise ValueError(f"policy {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._factories))

    def create(self, name: str) -> Policy:
        factory = self._factories.get(name)
        if factory is None:
            raise UnknownPolicy(name, self.names())
        return factory()

    def chain(self, names: Sequence[str] = DEFAULT_CHAIN) -> list[Policy]:
        return [self.create(n) for n in names]


def _lazy(ep: object) -> Callable[[], Policy]:
    def build() -> Policy:
        return ep.load()()  # type: ignore[attr-defined, no-any-return]

    return build
