"""Mechanism plugins: how a Plan becomes objects on an engine (see base.py for the contract).

Shipped: kubernetes, karmada, nodeagent (controller/mechanisms/<name>.py); a fourth, local
(a single machine without Kubernetes, through the node agent's workload API), fits the same
interface. Discovery is through the entry-point group `mlsysops.controller.mechanisms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

from controller.mechanisms.base import Mechanism, RealizeResult

ENTRY_POINT_GROUP = "mlsysops.controller.mechanisms"


@dataclass(frozen=True)
class Unavailable:
    """A mechanism that could not be loaded, and why (shown instead of its objects)."""

    name: str
    reason: str


def load_renderers(names: tuple[str, ...] | None = None) -> tuple[list[Mechanism], list[Unavailable]]:
    """Construct the registered mechanisms (all, or the named ones) for render-only use,
    keeping going past missing or broken ones (each reported with its reason)."""
    found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    loaded: list[Mechanism] = []
    missing: list[Unavailable] = []
    for name in names if names is not None else tuple(sorted(found)):
        ep = found.get(name)
        if ep is None:
            missing.append(Unavailable(name, f"no mechanism {name!r} registered in {ENTRY_POINT_GROUP}"))
            continue
        try:
            loaded.append(ep.load()())
        except Exception as exc:  # a half-written or broken plugin must not break plan mode
            missing.append(Unavailable(name, f"{type(exc).__name__}: {exc}"))
    return loaded, missing


__all__ = ["ENTRY_POINT_GROUP", "Mechanism", "RealizeResult", "Unavailable", "load_renderers"]
