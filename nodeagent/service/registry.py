"""The mechanisms this agent has, in apply order, with what probing found about each.

An instance, built by the bootstrap from the entry-point group and passed to the engine: no
module-level registry, so tests compose any set of (fake) mechanisms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nodeagent.errors import InvalidSpec, Unsupported
from nodeagent.mechanisms.base import Capabilities, Mechanism


@dataclass(frozen=True)
class MechanismEntry:
    name: str
    mechanism: Mechanism | None  # None: disabled by configuration or failed to load
    capabilities: Capabilities

    @property
    def usable(self) -> bool:
        return self.mechanism is not None and self.capabilities.available


class MechanismSet:
    """Entries in apply order: writes of an earlier mechanism happen before a later one's."""

    def __init__(self, entries: Sequence[MechanismEntry]) -> None:
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate mechanism names in {names}")
        self._entries = {e.name: e for e in entries}

    def entries(self) -> list[MechanismEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> MechanismEntry | None:
        return self._entries.get(name)

    def require(self, name: str, field: str) -> Mechanism:
        """The usable mechanism for a profile section; InvalidSpec if unknown, Unsupported if not usable."""
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self._entries) or "none"
            raise InvalidSpec(field, f"no mechanism plugin named {name!r} is installed (installed: {known})")
        if entry.mechanism is None or not entry.capabilities.available:
            reason = entry.capabilities.reason or "unavailable"
            raise Unsupported(f"{field}: mechanism {name!r} cannot be used on this node: {reason}")
        return entry.mechanism

    def loaded(self, name: str) -> Mechanism | None:
        """The mechanism if it is loaded, even when probing found it unavailable (for restores)."""
        entry = self._entries.get(name)
        return entry.mechanism if entry else None

    def in_order(self, names: Iterable[str]) -> list[str]:
        """The given names in apply order; names of mechanisms no longer present come last."""
        wanted = set(names)
        ordered = [n for n in self._entries if n in wanted]
        return ordered + sorted(wanted - set(ordered))

    def reprobe(self) -> list[MechanismEntry]:
        """Probe every loaded mechanism again (GetInventory) and keep the fresh capabilities."""
        for entry in list(self._entries.values()):
            if (mechanism := entry.mechanism) is not None:
                self._entries[entry.name] = MechanismEntry(entry.name, mechanism, probe(mechanism))
        return self.entries()


def probe(mechanism: Mechanism) -> Capabilities:
    """probe() must not raise for a missing feature; a plugin bug still must not take the agent down."""
    try:
        return mechanism.probe()
    except Exception as exc:
        return Capabilities(False, f"probe failed: {type(exc).__name__}: {exc}")
