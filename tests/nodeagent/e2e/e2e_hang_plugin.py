"""A test-only mechanism plugin, installed into the agent under test through a temporary
dist-info (see conftest.py): knobs are plain files below `files/` of the agent's fs root, and
writing the value "hang" blocks forever, so a test can kill -9 the agent in the middle of an
apply, deterministically (it first writes the key into the `files/.hanging` marker)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nodeagent.errors import InvalidSpec
from nodeagent.mechanisms.base import Capabilities, MechanismContext, Plan, Snapshot, Value, Write

HANG = "hang"


class HangFilesMechanism:
    name = "e2efiles"

    def __init__(self, context: MechanismContext) -> None:
        self._fs = context.fs

    def probe(self) -> Capabilities:
        return Capabilities(True, "", {"files": self._fs.listdir("files")})

    def validate(self, section: Mapping[str, Any], field: str) -> Plan:
        values = section.get("values", {})
        for key, value in values.items():
            if not isinstance(value, str) or not self._fs.exists(f"files/{key}"):
                raise InvalidSpec(f"{field}.values.{key}", "must be a string for an existing file")
        return Plan(dict(values))

    def read(self, keys: Iterable[str], snapshot: Snapshot | None = None) -> dict[str, Value]:
        return {k: self._fs.read(f"files/{k}") for k in keys}

    def order(self, writes: Sequence[Write]) -> list[Write]:
        return list(writes)

    def write(self, write: Write) -> None:
        if write.after == HANG:
            self._fs.write("files/.hanging", write.key)
            threading.Event().wait()  # until the agent is killed
        self._fs.write(f"files/{write.key}", write.after or "")
