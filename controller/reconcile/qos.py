"""Where the reconcile loop learns about QoS violations: a typed source, and its first adapter.

The policies already act on `Telemetry.qos_violations` (relocating a component when the app
permits `component_relocation`); this module feeds them. A `QosSource` reads the violations
reported for an app from the MLSysOpsApp object the informer delivers, so checking it costs no
API call, and a change of what it reports wakes the loop like a spec change does.

`AnnotationQos` reads them from an annotation that monitoring writes on the app:

    metadata:
      annotations:
        mlsysops.eu/qos-violations: >-
          [{"component": "camera-reader", "metric": "frame_latency_ms",
            "node": "edge-1", "observed": 85, "target": 40}]

An annotation and not a status field: the status is the controller's (it rewrites it whole on
every reconcile, and the CRD does not describe a monitoring part), while an annotation is
metadata that monitoring can merge-patch under its own field manager without bumping the
app's generation or fighting the controller or the CLI over fields.

Each entry needs `component`, `metric` and `node` (where the violation was observed); `observed`
and `target` are optional numbers. The node makes a violation self-limiting: the loop only
passes it on while the component still runs on that node (`current`), so once the component has
moved the stale entry is ignored until monitoring reports again, and a restart of the
controller does not move it a second time. Malformed entries are skipped with a warning naming
them; they never stop the app's reconcile.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from controller.policies.base import Plan, QosViolation

log = logging.getLogger(__name__)

ANNOTATION_QOS = "mlsysops.eu/qos-violations"


class QosSource(Protocol):
    """The QoS violations currently reported for one app (its object as the server has it)."""

    def violations(self, app_obj: Mapping[str, Any]) -> tuple[QosViolation, ...]: ...


class NoQos:
    """Nothing is monitored: no violation ever (plan mode, tests of other parts)."""

    def violations(self, app_obj: Mapping[str, Any]) -> tuple[QosViolation, ...]:
        return ()


class AnnotationQos:
    """Violations from the app's `mlsysops.eu/qos-violations` annotation (see the module doc)."""

    def __init__(self, annotation: str = ANNOTATION_QOS) -> None:
        self.annotation = annotation
        self._warned: dict[tuple[str, str], str] = {}  # app → the malformed text last warned about

    def violations(self, app_obj: Mapping[str, Any]) -> tuple[QosViolation, ...]:
        meta = app_obj.get("metadata") or {}
        text = (meta.get("annotations") or {}).get(self.annotation)
        if not text:
            return ()
        found, problems = parse_violations(text)
        app = (meta.get("namespace", ""), meta.get("name", ""))
        if problems and self._warned.get(app) != text:  # once per text, not on every event
            self._warned[app] = text
            for problem in problems:
                log.warning("%s/%s: annotation %s: %s", *app, self.annotation, problem)
        return found


def parse_violations(text: str) -> tuple[tuple[QosViolation, ...], list[str]]:
    """The well-formed entries of the annotation's JSON list, and a message per bad one."""
    try:
        entries = json.loads(text)
    except ValueError as exc:
        return (), [f"not JSON: {exc}"]
    if not isinstance(entries, list):
        return (), [f"expected a JSON list of violations (got {type(entries).__name__})"]
    found: list[QosViolation] = []
    problems: list[str] = []
    for i, entry in enumerate(entries):
        violation = _violation(entry)
        if isinstance(violation, str):
            problems.append(f"[{i}]: {violation}")
        else:
            found.append(violation)
    return tuple(found), problems


def _violation(entry: Any) -> QosViolation | str:
    if not isinstance(entry, dict):
        return f"expected an object (got {type(entry).__name__})"
    for key in ("component", "metric", "node"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            return f"{key}: expected a non-empty string (got {entry.get(key)!r})"
    numbers = {}
    for key in ("observed", "target"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"{key}: expected a number (got {value!r})"
        numbers[key] = float(value) if value is not None else None
    return QosViolation(entry["component"], entry["metric"], numbers["observed"], numbers["target"],
                        entry["node"])


def current(violations: tuple[QosViolation, ...], previous: Plan | None) -> tuple[QosViolation, ...]:
    """The violations observed where the component runs now (per the previous plan); the rest are
    stale (it has moved since) or about components that are not placed yet."""
    if previous is None:
        return ()
    out = []
    for v in violations:
        decision = previous.decision(v.component)
        if decision is not None and v.node in decision.hosts:
            out.append(v)
    return tuple(out)
