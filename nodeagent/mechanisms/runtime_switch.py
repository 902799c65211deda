"""Switching a running workload to another runtime handler, as a state machine with rollback.

    stop old -> start new -> verify new -> done
                   |             |
                   +-- failed ---+--> discard new -> start old -> verify old -> rolled back
                                                        |              |
                                                        +-- failed ----+--> down (both reasons kept)

The machine is pure: the task operations are a port (TaskOps), so every path, including a
failed rollback, is tested without containerd. Each step is recorded, so the caller can say
exactly what happened and why. A failure to stop the old task changes nothing: the workload is
still where it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from nodeagent.mechanisms.workload_spec import WorkloadSpec


class TaskOps(Protocol):
    """What a switch needs of the runtime (nodeagent.service.workloads implements it on containerd)."""

    def stop(self, spec: WorkloadSpec) -> None:
        """Stop and delete the task and its container record; keep the workload's snapshot."""

    def start(self, spec: WorkloadSpec, previous_handler: str) -> None:
        """Create the container record for spec.handler and start its task."""

    def verify(self, spec: WorkloadSpec) -> None:
        """Raise unless the task runs (and passes its readiness check)."""

    def discard(self, spec: WorkloadSpec) -> None:
        """Remove what a failed start left (task, shim, container record); keep the snapshot."""


class Outcome(Enum):
    SWITCHED = "switched"
    UNCHANGED = "unchanged"  # already on that handler, or the old task could not be stopped
    ROLLED_BACK = "rolled_back"
    DOWN = "down"  # the new handler failed and so did the way back


@dataclass(frozen=True)
class SwitchResult:
    outcome: Outcome
    handler: str  # where the workload runs now ("" when down)
    steps: tuple[str, ...]
    error: str = ""  # why the new handler was not kept

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.SWITCHED, Outcome.UNCHANGED) and not self.error


def switch(ops: TaskOps, current: WorkloadSpec, handler: str) -> SwitchResult:
    """Move the workload described by `current` to `handler`; see the module docstring."""
    steps: list[str] = []
    if handler == current.handler:
        return SwitchResult(Outcome.UNCHANGED, handler, (f"already on {handler}",))
    target = current.with_handler(handler)
    error = _step(steps, f"stop on {current.handler}", lambda: ops.stop(current))
    if error:
        return SwitchResult(Outcome.UNCHANGED, current.handler, tuple(steps), f"could not stop: {error}")
    error = _step(steps, f"start on {handler}", lambda: ops.start(target, current.handler))
    if not error:
        error = _step(steps, f"verify on {handler}", lambda: ops.verify(target))
        if not error:
            return SwitchResult(Outcome.SWITCHED, handler, tuple(steps))
    _step(steps, f"discard {handler}", lambda: ops.discard(target))
    back = _step(steps, f"start on {current.handler}", lambda: ops.start(current, ""))
    if not back:
        back = _step(steps, f"verify on {current.handler}", lambda: ops.verify(current))
    if back:
        _step(steps, f"discard {current.handler}", lambda: ops.discard(current))
        return SwitchResult(
            Outcome.DOWN, "", tuple(steps), f"{handler}: {error}; back on {current.handler}: {back}"
        )
    return SwitchResult(Outcome.ROLLED_BACK, current.handler, tuple(steps), f"{handler}: {error}")


def _step(steps: list[str], name: str, action: Callable[[], None]) -> str:
    """Run one step; "" when it worked, else the reason (recorded either way)."""
    try:
        action()
    except Exception as exc:  # every failure of a step is an outcome of the machine, with its reason
        reason = str(exc) or type(exc).__name__
        steps.append(f"{name}: failed: {reason}")
        return reason
    steps.append(f"{name}: ok")
    return ""
