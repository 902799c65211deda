"""What the reconcile loop writes into an MLSysOpsApp's status (pure; schema in deploy/crds).

The status is the user's window on the controller: `placement` (where each component runs),
`explanation` (the candidates and why each was rejected or scored, read by
`mlsysops apps explain`), `conditions` (metav1.Condition: Planned, Realized, Ready, with a
reason a script can match and a message a human can read), `phase` and the printer columns.
A condition keeps its lastTransitionTime while its status does not change, as Kubernetes
conventions require.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.plan import status_for
from controller.policies.chain import Outcome as PolicyOutcome

PLANNING_FIELDS = ("policy", "placed", "placement", "order", "explanation", "conflicts")

Obj = dict[str, Any]


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(new: Iterable[Condition], previous: Sequence[Mapping[str, Any]], generation: int,
               timestamp: str) -> list[Obj]:
    before = {c.get("type"): c for c in previous}
    out = []
    for cond in new:
        status = "True" if cond.status else "False"
        old = before.get(cond.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        out.append({"type": cond.type, "status": status, "reason": cond.reason, "message": cond.message,
                    "lastTransitionTime": since or timestamp, "observedGeneration": generation})
    return out


def app_status(generation: int, previous: Mapping[str, Any], planned: PolicyOutcome | None,
               conds: Sequence[Condition], phase: str, timestamp: str | None = None) -> Obj:
    """The whole status for one reconcile outcome; previous is the status read from the server.

    The planning part (placement, explanation, conflicts, printer columns) is plan mode's own
    shape (controller.plan.status_for), so `apps explain` reads the same thing either way."""
    timestamp = timestamp or now()
    if planned is not None:
        status: Obj = status_for(planned, phase)
    else:  # keep the last known placement visible when this round could not plan
        status = {k: v for k, v in previous.items() if k in PLANNING_FIELDS}
        status["phase"] = phase
    status["observedGeneration"] = generation
    status["conditions"] = conditions(conds, previous.get("conditions") or [], generation, timestamp)
    return status
