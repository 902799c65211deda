"""Device twin: desired settings with a version, and what the device reports it applied.

Pure functions over a frozen `Twin`: the router decides when to call them, the registry persists
the result. The version is the bridge's: it only grows, and a device report is judged against it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any


class ReportOutcome(enum.StrEnum):
    APPLIED = "applied"  # recorded as the reported state
    DUPLICATE = "duplicate"  # same version as the last report: recorded again, harmless
    STALE = "stale"  # older than the last report (reordered or replayed): ignored
    AHEAD = "ahead"  # newer than anything desired (the bridge lost its state): ignored,
    #                          and the desired version jumps past it so the device converges


@dataclass(frozen=True)
class Twin:
    desired: dict[str, Any] = field(default_factory=dict)
    desired_version: int = 0
    reported: dict[str, Any] = field(default_factory=dict)
    reported_version: int = -1
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def in_sync(self) -> bool:
        return self.reported_version == self.desired_version and not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "desired": self.desired,
            "desired_version": self.desired_version,
            "reported": self.reported,
            "reported_version": self.reported_version,
            "errors": self.errors,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Twin:
        return cls(
            desired=dict(data.get("desired", {})),
            desired_version=int(data.get("desired_version", 0)),
            reported=dict(data.get("reported", {})),
            reported_version=int(data.get("reported_version", -1)),
            errors=dict(data.get("errors", {})),
        )


def set_desired(twin: Twin, changes: dict[str, Any]) -> Twin:
    """Merge validated changes into the desired settings under a new version.

    A change that alters nothing keeps the version: re-running `devices set` with the same values
    does not make the device re-apply (and, for `reboot`, reboot) anything.
    """
    merged = {**twin.desired, **changes}
    if merged == twin.desired:
        return twin
    return replace(twin, desired=merged, desired_version=twin.desired_version + 1)


def unset_desired(twin: Twin, keys: list[str]) -> Twin:
    """Drop keys from the desired settings (the device keeps what it has; the bridge stops
    asking). A new version only when something was removed: unsetting twice changes nothing."""
    kept = {k: v for k, v in twin.desired.items() if k not in keys}
    if kept == twin.desired:
        return twin
    return replace(twin, desired=kept, desired_version=twin.desired_version + 1)


def apply_report(
    twin: Twin, version: int, settings: dict[str, Any], errors: dict[str, str]
) -> tuple[Twin, ReportOutcome]:
    """Judge a `twin/reported` against the twin (protocol doc: stale and ahead are ignored)."""
    if version > twin.desired_version:
        return replace(twin, desired_version=version + 1), ReportOutcome.AHEAD
    if version < twin.reported_version:
        return twin, ReportOutcome.STALE
    outcome = ReportOutcome.DUPLICATE if version == twin.reported_version else ReportOutcome.APPLIED
    return replace(twin, reported=dict(settings), reported_version=version, errors=dict(errors)), outcome
