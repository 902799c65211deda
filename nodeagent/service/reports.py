"""What the apply engine answers: plain frozen values, translated to protobuf by nodeagent.api."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.mechanisms.base import Value, Write


@dataclass(frozen=True)
class ApplyResult:
    writes: tuple[Write, ...]  # planned (dry run) or performed, in order
    writes_performed: int
    generation: int
    duration_ms: float


@dataclass(frozen=True)
class ResetResult:
    writes: tuple[Write, ...]
    writes_performed: int


@dataclass(frozen=True)
class KnobView:
    mechanism: str
    key: str
    desired: Value
    has_desired: bool
    actual: Value
    original: Value
    has_original: bool

    @property
    def drifted(self) -> bool:
        return self.has_desired and self.actual != self.desired


@dataclass(frozen=True)
class StateReport:
    profile: Mapping[str, Any]
    generation: int
    knobs: tuple[KnobView, ...]
    last_apply: float | None
    last_drift_check: float | None

    @property
    def drifted(self) -> int:
        return sum(k.drifted for k in self.knobs)


@dataclass(frozen=True)
class DriftReport:
    drifted: tuple[Write, ...]  # actual → desired, per drifted knob
    enforced: bool
