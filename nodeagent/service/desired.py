"""The desired state: the profile last applied, the knob values it stands for, its generation.

Persisted next to the journal so that drift checking, GetState and the generation counter
survive a restart: an agent restarted by systemd keeps enforcing (or reporting) what the
controller asked for instead of silently forgetting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeagent.mechanisms.base import Value
from nodeagent.service.store import CorruptState, SlottedDocument

FORMAT = "mlsysops-nodeagent-desired/1"


@dataclass(frozen=True)
class DesiredState:
    profile: Mapping[str, Any] = field(default_factory=dict)  # the profile as a JSON object
    knobs: Mapping[str, Mapping[str, Value]] = field(default_factory=dict)  # mechanism -> key -> value
    generation: int = 0
    last_apply: float | None = None  # UNIX time of the last apply that wrote or changed the profile


class DesiredStore:
    def __init__(self, path: Path) -> None:
        self._doc = SlottedDocument(path, FORMAT)

    def load(self) -> DesiredState:
        data = self._doc.load()
        if data is None:
            return DesiredState()
        profile, knobs, generation = data.get("profile"), data.get("knobs"), data.get("generation")
        last_apply = data.get("last_apply")
        if not isinstance(profile, dict):
            raise CorruptState(self._doc.path, "'profile' is not an object")
        if not (isinstance(generation, int) and generation >= 0):
            raise CorruptState(self._doc.path, "'generation' is not a non-negative integer")
        if not (last_apply is None or isinstance(last_apply, int | float)):
            raise CorruptState(self._doc.path, "'last_apply' is not a number")
        if not (
            isinstance(knobs, dict)
            and all(
                isinstance(values, dict) and all(v is None or isinstance(v, str) for v in values.values())
                for values in knobs.values()
            )
        ):
            raise CorruptState(self._doc.path, "'knobs' is not a mechanism -> key -> value map")
        return DesiredState(profile, knobs, generation, last_apply)

    def save(self, state: DesiredState) -> None:
        self._doc.save(
            {
                "profile": state.profile,
                "knobs": {m: dict(v) for m, v in state.knobs.items()},
                "generation": state.generation,
                "last_apply": state.last_apply,
            }
        )
