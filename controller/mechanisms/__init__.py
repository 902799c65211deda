"""Mechanism plugins: how a Plan becomes objects on an engine (see base.py for the contract).

Shipped: kubernetes (kubernetes_render renders, kubernetes applies), karmada, nodeagent
(controller/mechanisms/<name>.py); a fourth, local (a single machine without Kubernetes,
through the node agent's workload API), fits the same interface. Discovery is through the
entry-point group `mlsysops.controller.mechanisms`, into a `MechanismRegistry` instance.
"""

from __future__ import annotations

from controller.mechanisms.base import Mechanism, MechanismContext, RealizeResult
from controller.mechanisms.registry import ENTRY_POINT_GROUP, MechanismRegistry, Unavailable, UnknownMechanism

__all__ = [
    "ENTRY_POINT_GROUP",
    "Mechanism",
    "MechanismContext",
    "MechanismRegistry",
    "RealizeResult",
    "Unavailable",
    "UnknownMechanism",
]
