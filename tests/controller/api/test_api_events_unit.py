"""What one store change becomes on the event stream (pure), and the overflow count."""

from __future__ import annotations

from controller.api.events import _Follower, changes
from controller.kube.objectapi import WatchEvent


def app(generation=1, status=None, image="a:1"):
    obj = {"metadata": {"name": "shop", "generation": generation}, "components": [{"image": image}]}
    if status is not None:
        obj["status"] = status
    return obj


PLACED = {
    "phase": "Deploying",
    "observedGeneration": 1,
    "placement": [{"component": "web", "node": "edge-1"}],
    "explanation": [{"component": "web", "reason": "best score"}],
    "conditions": [{"type": "Ready", "status": "False", "reason": "Progressing"}],
}


def kinds(events):
    return [k for k, _ in events]


def test_a_new_app_is_submitted():
    assert changes(None, "ADDED", app()) == [("submitted", {"app": "shop", "phase": "Submitted"})]


def test_the_controllers_first_status_is_a_decision_and_a_status():
    events = changes(app(), "MODIFIED", app(status=PLACED))
    assert kinds(events) == ["decision", "status"]
    assert events[0][1]["placement"] == [{"component": "web", "node": "edge-1", "reason": "best score"}]


def test_a_spec_change_then_only_what_changed():
    assert kinds(changes(app(status=PLACED), "MODIFIED", app(2, PLACED, "a:2"))) == ["spec"]
    ready = {
        **PLACED,
        "phase": "Deployed",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
    }
    assert kinds(changes(app(status=PLACED), "MODIFIED", app(status=ready))) == ["status"]
    assert changes(app(status=PLACED), "MODIFIED", app(status=PLACED)) == []  # e.g. a label: nothing to say


def test_deleted():
    assert changes(app(), "DELETED", app()) == [("deleted", {"app": "shop"})]


def test_a_resumed_client_is_told_what_the_object_holds():
    assert kinds(changes(None, "MODIFIED", app(2, PLACED))) == ["spec", "decision", "status"]


def test_a_full_buffer_counts_what_was_missed():
    follower = _Follower(ctx=None, version="1", buffer=1)  # type: ignore[arg-type]
    for i in range(3):
        follower._put(WatchEvent("MODIFIED", app(i)))
    assert follower.missed == 2 and follower.get() is not None and follower.get() is None
