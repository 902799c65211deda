"""Rollout state, pure: what each device's update is doing, and the order a fleet is updated in.

A device's update moves pending -> downloading -> verifying -> rebooting -> confirmed, or ends in
rolled_back (its trial boot was not confirmed, the board went back to the previous slot) or
failed with a reason (the board refused the manifest or a file, the rollout was stopped, or it
timed out). `Fleet` is the rate limit across devices: one canary first; only when it confirmed
do the others start, at most `parallel` at a time; once `max_failures` devices ended badly
nothing new starts and the devices still waiting are failed with reason "stopped".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

PENDING = "pending"
DOWNLOADING = "downloading"
VERIFYING = "verifying"
REBOOTING = "rebooting"
CONFIRMED = "confirmed"
ROLLED_BACK = "rolled_back"
FAILED = "failed"
STATES = (PENDING, DOWNLOADING, VERIFYING, REBOOTING, CONFIRMED, ROLLED_BACK, FAILED)
DONE = frozenset({CONFIRMED, ROLLED_BACK, FAILED})
# What a board's ota/status `st` means for the rollout.
_REPORTED = {
    "downloading": DOWNLOADING,
    "verifying": VERIFYING,
    "installed": REBOOTING,
    "confirmed": CONFIRMED,
    "rolled_back": ROLLED_BACK,
    "failed": FAILED,
}


@dataclass(frozen=True)
class OtaState:
    """One device's latest update, as the registry keeps it and `devices list` shows it."""

    release: int
    version: str
    state: str = PENDING
    reason: str = ""
    done_bytes: int = 0
    total_bytes: int = 0
    since: float = 0.0  # wall clock of the last change

    @property
    def finished(self) -> bool:
        return self.state in DONE

    def label(self) -> str:
        return f"{self.state}({self.reason})" if self.reason else self.state

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "version": self.version,
            "state": self.state,
            "reason": self.reason,
            "done_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "since": self.since,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OtaState:
        state = str(data.get("state", PENDING))
        return cls(
            release=int(data.get("release", 0)),
            version=str(data.get("version", "")),
            state=state if state in STATES else FAILED,
            reason=str(data.get("reason", "")),
            done_bytes=int(data.get("done_bytes", 0)),
            total_bytes=int(data.get("total_bytes", 0)),
            since=float(data.get("since", 0.0)),
        )


def reported(current: OtaState, st: str, release: int, why: str, now: float) -> OtaState | None:
    """The state after a board's status message, or None when it says nothing about `current`
    (another release's news, an unknown word, or news after the end)."""
    state = _REPORTED.get(st)
    if state is None or release != current.release or current.finished:
        return None
    done = current.total_bytes if state in (VERIFYING, REBOOTING, CONFIRMED) else current.done_bytes
    return replace(
        current, state=state, reason=why[:80] if state == FAILED else "", done_bytes=done, since=now
    )


def progressed(current: OtaState, done_bytes: int, now: float) -> OtaState:
    """A chunk request for `done_bytes` (offset + length over all files) seen from the board."""
    if current.state not in (PENDING, DOWNLOADING):
        return current
    return replace(current, state=DOWNLOADING, done_bytes=max(current.done_bytes, done_bytes), since=now)


def failed(current: OtaState, reason: str, now: float) -> OtaState:
    return replace(current, state=FAILED, reason=reason, since=now)


class Fleet:
    """Which devices of one rollout may start now (canary first, then `parallel` at a time)."""

    def __init__(self, devices: Iterable[str], *, parallel: int = 4, max_failures: int = 1) -> None:
        self.order = list(dict.fromkeys(devices))
        self.parallel = max(1, parallel)
        self.max_failures = max(1, max_failures)
        self.started: list[str] = []
        self.outcome: dict[str, str] = {}

    @property
    def stopped(self) -> bool:
        return sum(1 for s in self.outcome.values() if s != CONFIRMED) >= self.max_failures

    @property
    def waiting(self) -> list[str]:
        return [d for d in self.order if d not in self.started]

    def finish(self, device: str, state: str) -> None:
        if device in self.started and state in DONE:
            self.outcome[device] = state

    def next(self) -> list[str]:
        """Devices to start now (each returned once); nothing once stopped."""
        if self.stopped:
            return []
        running = [d for d in self.started if d not in self.outcome]
        canary_ok = not self.started or self.outcome.get(self.started[0]) == CONFIRMED
        if self.started and not canary_ok:
            return []
        room = 1 if not self.started else self.parallel - len(running)
        out = self.waiting[: max(0, room)]
        self.started += out
        return out
