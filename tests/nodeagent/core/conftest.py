"""An in-memory mechanism and an engine over a temporary runtime dir: the engine's specification
is written against these, without any host I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from nodeagent.errors import HostError, InvalidSpec
from nodeagent.mechanisms.base import Capabilities, Plan, Snapshot, Value, Write
from nodeagent.service.desired import DesiredStore
from nodeagent.service.engine import Engine
from nodeagent.service.events import EventBus
from nodeagent.service.journal import Journal
from nodeagent.service.registry import MechanismEntry, MechanismSet


class FakeMechanism:
    """Knobs in a dict. Section shape: {"values": {key: "value" | None}}.

    `fail_on` makes writing a key fail (after nothing changed, as the contract asks),
    `unreadable` every read;
    `order()` puts writes with a smaller after-value first (stably), to show it is used.
    """

    def __init__(self, name: str, knobs: dict[str, Value] | None = None, available: bool = True) -> None:
        self.name = name
        self.knobs: dict[str, Value] = dict(knobs or {})
        self.available = available
        self.fail_on: set[str] = set()
        self.unreadable = False
        self.log: list[Write] = []
        self.snapshots: list[Snapshot | None] = []  # what each read() was handed

    def probe(self) -> Capabilities:
        reason = "" if self.available else "no such hardware"
        return Capabilities(self.available, reason, {"knobs": len(self.knobs)})

    def validate(self, section: Mapping[str, Any], field: str) -> Plan:
        values = section.get("values", {})
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                raise InvalidSpec(f"{field}.values.{key}", "must be a string or null")
            if value == "bad":
                raise InvalidSpec(f"{field}.values.{key}", "'bad' is not allowed")
        return Plan(dict(values), snapshot=("planned", self.name, len(self.snapshots)))

    def read(self, keys: Iterable[str], snapshot: Snapshot | None = None) -> dict[str, Value]:
        self.snapshots.append(snapshot)
        if self.unreadable:
            raise HostError("knobs", "cannot read", 5)
        return {k: self.knobs.get(k) for k in keys}

    def order(self, writes: Sequence[Write]) -> list[Write]:
        return sorted(writes, key=lambda w: w.after or "")  # stable: ties keep their order

    def write(self, write: Write) -> None:
        if write.key in self.fail_on:
            raise HostError(write.key, "EINVAL", 22)
        self.log.append(write)
        if write.after is None:
            self.knobs.pop(write.key, None)
        else:
            self.knobs[write.key] = write.after


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def fake() -> type[FakeMechanism]:
    return FakeMechanism


@pytest.fixture
def make_engine(runtime: Path) -> Callable[..., Engine]:
    """make_engine(*mechanisms, bus=None, **engine_kwargs): an engine over `runtime`; call it
    again to get a "restarted" engine over the same journal."""

    def make(*mechanisms: FakeMechanism, bus: EventBus | None = None, **kw: Any) -> Engine:
        entries = [MechanismEntry(m.name, m, m.probe()) for m in mechanisms]
        return Engine(
            MechanismSet(entries),
            Journal(runtime / "journal.json"),
            DesiredStore(runtime / "desired.json"),
            bus or EventBus(),
            **kw,
        )

    return make
