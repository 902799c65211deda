"""Placement policies: the plugin interface (base), the two shipped policies (static, placer),
running a chain of them with conflict detection (chain), and the registry.

    registry = PolicyRegistry.from_entry_points()
    outcome = run_policies(registry.chain(), app, inventory, Telemetry())
    outcome.plan.decisions, outcome.conflicts
"""

from controller.policies.base import (
    KEEP,
    PLACE,
    RELOCATE,
    CandidateVerdict,
    Decision,
    Plan,
    Policy,
    QosViolation,
    Telemetry,
)
from controller.policies.chain import Conflict, Outcome, combine, run_policies
from controller.policies.registry import DEFAULT_CHAIN, ENTRY_POINT_GROUP, PolicyRegistry, UnknownPolicy

__all__ = [
    "DEFAULT_CHAIN",
    "ENTRY_POINT_GROUP",
    "KEEP",
    "PLACE",
    "RELOCATE",
    "CandidateVerdict",
    "Conflict",
    "Decision",
    "Outcome",
    "Plan",
    "Policy",
    "PolicyRegistry",
    "QosViolation",
    "Telemetry",
    "UnknownPolicy",
    "combine",
    "run_policies",
]
