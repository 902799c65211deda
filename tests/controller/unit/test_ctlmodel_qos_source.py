"""The QoS source the reconcile loop reads: violations reported on the app by monitoring."""

from __future__ import annotations

import json
import logging

from controller.policies import Decision, Plan, QosViolation
from controller.reconcile.qos import ANNOTATION_QOS, AnnotationQos, current, parse_violations


def app_obj(annotation: str | None) -> dict:
    meta: dict = {"name": "shop", "namespace": "default"}
    if annotation is not None:
        meta["annotations"] = {ANNOTATION_QOS: annotation, "other": "x"}
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp", "metadata": meta}


def test_violations_are_read_from_the_annotation_as_typed_values():
    text = json.dumps([{"component": "web", "metric": "latency_ms", "node": "edge-1", "observed": 85,
                        "target": 40}, {"component": "db", "metric": "iops", "node": "edge-2"}])
    assert AnnotationQos().violations(app_obj(text)) == (
        QosViolation("web", "latency_ms", 85.0, 40.0, "edge-1"),
        QosViolation("db", "iops", None, None, "edge-2"))


def test_no_annotation_means_no_violation():
    assert AnnotationQos().violations(app_obj(None)) == ()
    assert AnnotationQos().violations(app_obj("")) == ()
    assert AnnotationQos().violations({"metadata": {"name": "x"}}) == ()


def test_malformed_entries_are_skipped_with_a_message_naming_them(caplog):
    text = json.dumps([{"component": "web", "metric": "latency_ms"},  # no node
                       {"component": "web", "metric": "latency_ms", "node": "edge-1", "observed": "high"},
                       "web", {"component": "db", "metric": "iops", "node": "edge-2"}])
    found, problems = parse_violations(text)
    assert found == (QosViolation("db", "iops", node="edge-2"),)
    assert problems == ["[0]: node: expected a non-empty string (got None)",
                        "[1]: observed: expected a number (got 'high')",
                        "[2]: expected an object (got str)"]
    assert parse_violations("{not json")[0] == () and "not JSON" in parse_violations("{not json")[1][0]
    assert parse_violations('{"component": "web"}')[1] == ["expected a JSON list of violations (got dict)"]
    with caplog.at_level(logging.WARNING):
        AnnotationQos().violations(app_obj("[1]"))
    assert f"default/shop: annotation {ANNOTATION_QOS}: [0]: expected an object (got int)" in caplog.text


def test_only_violations_where_the_component_runs_now_count():
    spread = Decision("api", "edge-2", None, "r", nodes=("edge-2", "edge-3"))
    previous = Plan("shop", "default", "p", (Decision("web", "edge-1", None, "r"), spread), ("web", "api"))
    here = QosViolation("web", "latency_ms", node="edge-1")
    moved_away = QosViolation("web", "latency_ms", node="edge-9")
    on_a_replica = QosViolation("api", "latency_ms", node="edge-3")
    unknown = QosViolation("gone", "latency_ms", node="edge-1")
    assert current((here, moved_away, on_a_replica, unknown), previous) == (here, on_a_replica)
    assert current((here,), None) == ()  # nothing placed yet: nothing to move
