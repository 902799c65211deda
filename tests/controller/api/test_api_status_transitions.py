"""Status read back through the API while the real controller (its composition root, the
kubernetes mechanism) reconciles against the stand-in Kubernetes API: Submitted on submission,
not Deployed while a component's Deployment is unavailable, Deployed with every component
Ready once it is; the SSE stream shows the submission, the controller's decision and the
status changes, from the store's watch."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from api_harness import LiveApi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from ctlkube_harness import FIXTURES, Running, documents

from controller.api.app import create_app
from controller.api.context import ApiContext, ApiSettings
from controller.kube import resources as R
from controller.mechanisms.kubernetes_render import deployment_name
from mlsysops.testing import wait_for

APP = "camera-pipeline"
SLOW = 120  # seconds: a loaded 2-core CI machine reconciles slowly (a wait, not a timing check)
# The detector's Deployment on whichever node it lands: held unavailable until released.
HELD = [deployment_name(APP, "detector", n, "uth-edge") for n in ("cloud-1", "edge-1", "edge-2")]


@pytest.fixture
def world(store):
    for doc in documents(FIXTURES / "inventory"):
        store.apply(doc, field_manager="test-admin")


@pytest.fixture
def controllers(standin):
    running = Running(standin)
    yield running
    running.stop_all()


def status(client, bearer):
    return client.get(f"/api/v1/apps/{APP}/status", headers=bearer["viewer"]).json()


def ready_of(view):
    return {
        c["name"]: next(x["status"] for x in c["conditions"] if x["type"] == "Ready")
        for c in view["components"]
    }


def test_submitted_then_progressing_then_deployed(client, bearer, world, standin, controllers):
    for name in HELD:
        standin.hold(name)
    r = client.post("/api/v1/apps", json=documents(FIXTURES / "app.yaml")[0], headers=bearer["operator"])
    assert r.status_code == 201 and r.json()["phase"] == "Submitted"
    assert status(client, bearer)["phase"] == "Submitted"
    controllers.start()
    held = wait_for(
        lambda: (s := status(client, bearer))["current"] and s["phase"] != "Submitted" and s,
        what="the controller's first status",
        timeout=SLOW,
    )
    assert held["phase"] != "Deployed"
    assert {c["type"]: c["status"] for c in held["conditions"]}["Ready"] == "False"
    assert ready_of(held)["detector"] == "False"
    assert all(
        next(x for x in c["conditions"] if x["type"] == "Placed")["status"] == "True"
        for c in held["components"]
    )
    ref = client.get(f"/apps/status/{APP}", headers=bearer["viewer"]).json()
    assert ref["status"] == held["phase"]
    for name in HELD:
        standin.release(name)
    done = wait_for(
        lambda: (s := status(client, bearer))["phase"] == "Deployed" and s, what="app Deployed", timeout=SLOW
    )
    assert set(ready_of(done).values()) == {"True"}
    assert {c["name"]: c["node"] for c in done["components"]}["dashboard"] == "cloud-1"
    assert client.get(f"/apps/status/{APP}", headers=bearer["viewer"]).json()["status"] == "Deployed"
    explained = client.get(f"/api/v1/apps/{APP}/explain?component=dashboard", headers=bearer["viewer"]).json()
    assert explained[0]["chosen"] == "cloud-1" and explained[0]["reason"]


def test_the_event_stream_shows_submission_decision_and_status(
    store, tokens, bearer, world, controllers, standin
):
    ctx = ApiContext(store, tokens, ApiSettings(watch_timeout=2))
    events: list[tuple[str, dict]] = []
    with LiveApi(create_app(ctx)) as live:
        connected = threading.Event()

        def listen() -> None:
            with httpx.stream(
                "GET",
                live.url + "/api/v1/events",
                params={"limit": 200},
                headers=bearer["viewer"],
                timeout=120,
            ) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                kind = None
                for line in response.iter_lines():
                    if line.startswith(": connected"):
                        connected.set()
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        events.append((kind, json.loads(line[6:])))
                        if kind == "status" and events[-1][1]["phase"] == "Deployed":
                            return

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        assert connected.wait(10)
        r = httpx.post(
            live.url + "/api/v1/apps", json=documents(FIXTURES / "app.yaml")[0], headers=bearer["operator"]
        )
        assert r.status_code == 201
        controllers.start()
        listener.join(120)  # a loaded machine: the controller's reconciles take their time
        assert not listener.is_alive(), f"no Deployed status event; got {events}"
    time.sleep(ctx.settings.watch_timeout + 1)  # the API's last store watch ends at its timeout, not cut
    kinds = [k for k, _ in events]
    assert kinds[0] == "submitted" and events[0][1] == {"app": APP, "phase": "Submitted"}
    decision = next(d for k, d in events if k == "decision")
    assert {p["component"]: p["node"] for p in decision["placement"]}["dashboard"] == "cloud-1"
    assert all(p["reason"] for p in decision["placement"])
    assert kinds[-1] == "status" and events[-1][1]["phase"] == "Deployed"


def test_the_event_stream_needs_a_token(client):
    assert client.get("/api/v1/events").status_code == 401


def read_events(url, headers, limit, last_event_id=None):
    got = []
    extra = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with httpx.stream(
        "GET", url + "/api/v1/events", params={"limit": limit}, headers={**headers, **extra}, timeout=30
    ) as response:
        event_id = kind = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                got.append((event_id, kind, json.loads(line[6:])))
    return got


def test_a_client_resumes_after_the_last_event_id_it_saw(store, tokens, bearer, standin):
    ctx = ApiContext(store, tokens, ApiSettings(watch_timeout=1))
    doc = documents(FIXTURES / "app.yaml")[0]
    with LiveApi(create_app(ctx)) as live:
        first = store.apply(doc, field_manager="test")["metadata"]["resourceVersion"]
        doc["components"][0]["containers"][0]["image"] = "registry.example/changed:2"
        store.apply(doc, field_manager="test")
        store.delete(R.APP, "default", APP)
        events = read_events(live.url, bearer["viewer"], 2, last_event_id=first)
        time.sleep(ctx.settings.watch_timeout + 1)  # the API's store watch ends at its timeout, not cut
    assert [(k, d["app"]) for _, k, d in events] == [("spec", APP), ("deleted", APP)]
    assert int(events[0][0]) > int(first)
