"""Who is there: births register devices, status/telemetry/transport losses flip online.

The rules for what a birth stores and when the node agent must hear about it are pure
functions (`registered`, `inventory_relevant`); `Presence` applies them to the registry and
the live table and emits the events. Called by the router under its lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from faredge.bridge.events import DeviceEvents
from faredge.errors import Dropped
from faredge.live import LiveTable
from faredge.protocol.messages import Birth
from faredge.registry import Device, Registry


def registered(old: Device | None, birth: Birth, transport: str, port: str, now: float) -> Device:
    """The registry entry after a birth: identity from the birth, twin kept, online."""
    return replace(
        old or Device(birth.id),
        transport=transport,
        board=birth.board,
        fw=birth.fw,
        boot=birth.boot,
        sensors=birth.sensors,
        online=True,
        last_seen=now,
        port=port,
        telemetry_lost=birth.lost,
        freqs=birth.freqs,
        mpy=birth.mpy,
    )


def inventory_relevant(old: Device | None, new: Device) -> bool:
    """True when the node agent's view changes: a new device, or online/sensors/fw/board differ."""
    if old is None:
        return True
    return (old.online, old.sensors, old.fw, old.board) != (new.online, new.sensors, new.fw, new.board)


class Presence:
    def __init__(
        self, registry: Registry, live: LiveTable, events: DeviceEvents, clock: Callable[[], float]
    ) -> None:
        self._registry = registry
        self._live = live
        self._events = events
        self._clock = clock

    def birth(self, birth: Birth, transport: str, port: str) -> None:
        old = self._registry.find(birth.id)
        if old is None and self._registry.full:
            raise Dropped("capacity", f"registry full, {birth.id!r} not added")
        now = self._clock()
        new = registered(old, birth, transport, port, now)
        self._registry.put(new)
        self._live.seen(birth.id, now)
        self._live.count(birth.id, transport, "birth")
        self._events.birth(birth, transport)
        if inventory_relevant(old, new):
            self._events.inventory_changed()

    def set_online(self, device: Device, online: bool, reason: str) -> None:
        """Persist an online/offline transition (nothing happens when it is not one)."""
        if device.online == online:
            return
        live = self._live.find(device.id)
        last_seen = live.last_seen if live else self._clock()
        self._registry.put(replace(device, online=online, last_seen=last_seen))
        self._events.online(device.id, online, reason)
