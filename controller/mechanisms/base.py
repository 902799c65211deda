"""The mechanism plugin interface: a Plan → objects on a real engine.

A mechanism is split the TuneD way: `render` is pure (the exact objects it would write, used by
plan mode as a dry run and by tests), `realize` writes them through an adapter received in the
constructor (server-side apply, gRPC), writing only what differs, and `remove` is idempotent.

Plugins are classes in the entry-point group `mlsysops.controller.mechanisms`. Each must be
constructible with no arguments for render-only use: plan mode builds them that way and only
calls `render`; a mechanism whose module is missing or broken is reported, not fatal. The
daemon's composition root constructs them with their adapters (e.g. `api=`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from controller.model import App
from controller.policies.base import Plan


@dataclass(frozen=True)
class RealizeResult:
    mechanism: str
    written: tuple[str, ...]  # "Kind/namespace/name" of objects created or changed
    unchanged: tuple[str, ...]  # already as desired: nothing written


@runtime_checkable
class Mechanism(Protocol):
    name: str

    def render(self, app: App, plan: Plan) -> list[dict[str, Any]]:
        """The exact objects it would write for this plan (pure, deterministic order)."""
        ...

    def realize(self, app: App, plan: Plan) -> RealizeResult:
        """Write the rendered objects (through the adapter), only what differs."""
        ...

    def remove(self, app_name: str, namespace: str) -> None:
        """Delete everything this mechanism wrote for the app; idempotent."""
        ...
