"""Event bus, device registry and the atomic document store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodeagent.errors import InvalidSpec
from nodeagent.mechanisms.base import Write
from nodeagent.service.devices import DeviceRegistry
from nodeagent.service.events import Event, EventBus, EventKind
from nodeagent.service.journal import Journal
from nodeagent.service.store import JsonDocument, SlottedDocument


def event(kind: EventKind, n: int) -> Event:
    return Event(kind, f"#{n}")


def test_a_full_subscriber_drops_its_oldest_events_and_counts_them() -> None:
    bus = EventBus(queue_size=3)
    slow = bus.subscribe()
    for n in range(5):
        bus.publish(event(EventKind.APPLIED, n))  # never blocks, however slow the subscriber
    assert slow.dropped == 2
    assert [e.message for e in iter(lambda: slow.get(timeout=0), None)] == ["#2", "#3", "#4"]


def test_subscribers_receive_only_the_kinds_they_asked_for() -> None:
    bus = EventBus()
    drift_only, everything = bus.subscribe([EventKind.DRIFT]), bus.subscribe()
    bus.publish(event(EventKind.APPLIED, 1))
    bus.publish(event(EventKind.DRIFT, 2))
    assert [e.message for e in iter(lambda: drift_only.get(timeout=0), None)] == ["#2"]
    assert [e.message for e in iter(lambda: everything.get(timeout=0), None)] == ["#1", "#2"]


def test_closing_the_bus_ends_every_subscription() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.close()
    assert sub.closed and sub.get(timeout=5) is None  # returns at once, does not wait 5 s
    bus.publish(event(EventKind.APPLIED, 1))
    assert sub.get(timeout=0) is None


@dataclass(frozen=True)
class Dev:
    id: str


def test_a_device_report_replaces_its_sources_previous_report() -> None:
    bus = EventBus()
    events = bus.subscribe([EventKind.DEVICES])
    registry: DeviceRegistry[Dev] = DeviceRegistry(bus)
    registry.report("faredge", [Dev("a"), Dev("b")])
    registry.report("other", [Dev("z")])
    assert registry.report("faredge", [Dev("c")]) == 1
    assert [d.id for d in registry.devices()] == ["c", "z"]
    registry.report("faredge", [])
    assert [d.id for d in registry.devices()] == ["z"]
    assert events.get(timeout=0) is not None


@pytest.mark.parametrize(
    ("source", "devices", "field"),
    [(" ", [], "source"), ("f", [Dev("")], "devices[0].id"), ("f", [Dev("a"), Dev("a")], "devices[1].id")],
)
def test_bad_device_reports_are_rejected_and_change_nothing(
    source: str, devices: list[Dev], field: str
) -> None:
    registry: DeviceRegistry[Dev] = DeviceRegistry(EventBus())
    registry.report("f", [Dev("kept")])
    with pytest.raises(InvalidSpec) as err:
        registry.report(source, devices)
    assert err.value.field == field
    assert [d.id for d in registry.devices()] == ["kept"]


def test_a_write_interrupted_before_rename_leaves_the_previous_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = JsonDocument(tmp_path / "doc.json", "test/1")
    doc.save({"n": 1})

    def crash(*_: object) -> None:
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        doc.save({"n": 2})
    monkeypatch.undo()
    assert (tmp_path / ".doc.json.tmp").exists()  # the torn temp file stays behind ...
    assert doc.load() == {"format": "test/1", "n": 1}  # ... but never counts
    assert not (tmp_path / ".doc.json.tmp").exists()


def test_journal_files_are_private_to_the_agent(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.json")
    assert journal.record([Write("m", "k", "orig", "new")]) == 1
    assert journal.record([Write("m", "k", "new", "newer")]) == 0  # the first original stays
    assert (tmp_path / "journal.json").stat().st_mode & 0o777 == 0o600
    assert Journal(tmp_path / "journal.json").original("m", "k") == (True, "orig")


def test_slotted_document_survives_a_torn_write_of_its_newest_slot(tmp_path: Path) -> None:
    doc = SlottedDocument(tmp_path / "state.json", "test/1")
    doc.save({"n": 1})  # slot 0
    doc.save({"n": 2})  # slot 1
    newest = tmp_path / "state.json.1"
    newest.write_bytes(newest.read_bytes()[:-3])  # killed half-way through its write
    assert SlottedDocument(tmp_path / "state.json", "test/1").load() == {"format": "test/1", "n": 1}


def test_slotted_document_ignores_an_old_tail_left_by_a_missed_truncate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = SlottedDocument(tmp_path / "state.json", "test/1")
    doc.save({"n": 1, "padding": "x" * 200})  # slot 0, long
    doc.save({"n": 2})  # slot 1
    monkeypatch.setattr(os, "ftruncate", lambda fd, length: None)  # died between pwrite and ftruncate
    doc.save({"n": 3})  # slot 0 again, shorter than what it overwrites
    monkeypatch.undo()
    reloaded = SlottedDocument(tmp_path / "state.json", "test/1")
    assert reloaded.load() == {"format": "test/1", "n": 3}
    reloaded.save({"n": 4})  # continues with the older slot (1), keeping 3 as the fallback
    assert SlottedDocument(tmp_path / "state.json", "test/1").load() == {"format": "test/1", "n": 4}
    assert b'"n":3' in (tmp_path / "state.json.0").read_bytes()


def test_slotted_document_truncates_only_when_a_slot_shrinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truncated: list[int] = []
    real_ftruncate = os.ftruncate

    def counting_ftruncate(fd: int, length: int) -> None:
        truncated.append(length)
        real_ftruncate(fd, length)

    (tmp_path / "state.json.0").write_bytes(b"x" * 500)  # a longer slot left by an earlier run
    monkeypatch.setattr(os, "ftruncate", counting_ftruncate)
    doc = SlottedDocument(tmp_path / "state.json", "test/1")
    documents = [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4, "more": "y" * 50}, {"n": 5}, {"n": 6}, {"n": 6}]
    for i, data in enumerate(documents):
        slot = tmp_path / f"state.json.{i % 2}"
        before = slot.stat().st_size if slot.exists() else 0
        calls = len(truncated)
        doc.save(data)
        header, _, payload = slot.read_bytes().partition(b"\n")
        assert len(payload) == int(header.split()[2])  # exactly the record: no stale tail
        shrank = slot.stat().st_size < before
        assert len(truncated) == calls + shrank  # an ftruncate only where it changes the size
    assert truncated  # the 500-byte leftover was cut
    assert SlottedDocument(tmp_path / "state.json", "test/1").load() == {"format": "test/1", "n": 6}
