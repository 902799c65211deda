"""The one registry of mechanisms, shared by plan mode and the daemon.

`MechanismRegistry.from_entry_points()` reads the `mlsysops.controller.mechanisms` group; a
mechanism is built from its entry point the way base.py describes (`Cls.from_context(context)`
or `Cls()`), so a plugin that renders in plan mode (empty context) runs in the daemon too (the
composition root's context, with the adapters). Tests register their own factories.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

from controller.mechanisms.base import Mechanism, MechanismContext, MechanismFactory
from controller.plugins import Registry, UnknownPlugin

ENTRY_POINT_GROUP = "mlsysops.controller.mechanisms"
PLAN_MODE = MechanismContext()  # no adapters: the mechanisms only render


@dataclass(frozen=True)
class Unavailable:
    """A mechanism that could not be built, and why (plan mode shows it instead of its objects)."""

    name: str
    reason: str


class UnknownMechanism(UnknownPlugin):
    kind = "mechanism"


def factory_of(plugin: Any) -> MechanismFactory:
    """How a plugin class (or any callable) is built: `from_context` when it has one."""
    from_context = getattr(plugin, "from_context", None)
    if callable(from_context):
        return from_context
    return lambda _context: plugin()


class MechanismRegistry(Registry[MechanismFactory]):
    group = ENTRY_POINT_GROUP
    unknown = UnknownMechanism

    @classmethod
    def from_entry_point(cls, ep: EntryPoint) -> MechanismFactory:
        def build(context: MechanismContext) -> Mechanism:
            return factory_of(ep.load())(context)

        return build

    def create(self, name: str, context: MechanismContext = PLAN_MODE) -> Mechanism:
        return self.factory(name)(context)

    def build(self, names: Sequence[str], context: MechanismContext) -> list[Mechanism]:
        """The daemon's mechanisms: every name must be registered and build (else it raises)."""
        unknown = [n for n in names if n not in self]
        if unknown:
            raise self.unknown(unknown[0], self.names())
        return [self.create(n, context) for n in names]

    def renderers(self, names: Sequence[str] | None = None) -> tuple[list[Mechanism], list[Unavailable]]:
        """Plan mode's mechanisms (all, or the named ones), built without adapters, keeping going
        past missing or broken ones (each reported with its reason)."""
        loaded: list[Mechanism] = []
        missing: list[Unavailable] = []
        for name in names if names is not None else self.names():
            if name not in self:
                missing.append(Unavailable(name, f"no mechanism {name!r} registered in {self.group}"))
                continue
            try:
                loaded.append(self.create(name))
            except Exception as exc:  # a half-written or broken plugin must not break plan mode
                missing.append(Unavailable(name, f"{type(exc).__name__}: {exc}"))
        return loaded, missing
