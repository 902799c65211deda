"""The journal of original values: what every knob held before the agent first wrote it.

TuneD's lesson: undo must survive the process. An original is recorded (durably) before the
first write to its knob and kept until a reset has put it back, so after `kill -9`, a crash
between journaling and writing, or a crash mid-write, the next agent can still restore the
host. Later writes to the same knob never overwrite its original.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from nodeagent.mechanisms.base import Value, Write
from nodeagent.service.store import CorruptState, JsonDocument

FORMAT = "mlsysops-nodeagent-journal/1"

Knob = tuple[str, str]  # (mechanism, key)


class Journal:
    """Originals per (mechanism, key), in the order they were first recorded."""

    def __init__(self, path: Path) -> None:
        self._doc = JsonDocument(path, FORMAT)
        self._originals: dict[Knob, Value] = {}
        data = self._doc.load()
        if data is not None:
            self._originals = _parse(data, path)

    @property
    def path(self) -> Path:
        return self._doc.path

    def originals(self) -> dict[Knob, Value]:
        return dict(self._originals)

    def original(self, mechanism: str, key: str) -> tuple[bool, Value]:
        """(recorded?, original value)."""
        knob = (mechanism, key)
        return (knob in self._originals, self._originals.get(knob))

    def record(self, writes: Iterable[Write]) -> int:
        """Durably record `before` of each write whose knob has no original yet; returns how many.

        Called before the first of these writes is performed; when nothing is new the file
        is not touched, so a steady-state apply costs no fsync here.
        """
        new = {(w.mechanism, w.key): w.before for w in writes if (w.mechanism, w.key) not in self._originals}
        if new:
            merged = {**self._originals, **new}
            self._save(merged)
            self._originals = merged
        return len(new)

    def forget(self, knobs: Iterable[Knob]) -> None:
        """Drop originals that have been restored (the journal file goes when it is empty)."""
        done = set(knobs)
        remaining = {k: v for k, v in self._originals.items() if k not in done}
        if remaining == self._originals:
            return
        if remaining:
            self._save(remaining)
        else:
            self._doc.remove()
        self._originals = remaining

    def _save(self, originals: dict[Knob, Value]) -> None:
        entries = [{"mechanism": m, "key": k, "original": v} for (m, k), v in originals.items()]
        self._doc.save({"originals": entries})


def _parse(data: dict[str, object], path: Path) -> dict[Knob, Value]:
    entries = data.get("originals")
    if not isinstance(entries, list):
        raise CorruptState(path, "'originals' is not a list")
    originals: dict[Knob, Value] = {}
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("mechanism"), str)
            and isinstance(entry.get("key"), str)
            and (entry.get("original") is None or isinstance(entry.get("original"), str))
        ):
            raise CorruptState(path, f"originals[{i}] is not a {{mechanism, key, original}} entry")
        originals[(entry["mechanism"], entry["key"])] = entry["original"]
    return originals
