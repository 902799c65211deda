"""The API daemon's in-process controller under leader election (`leader_elect`): two API
processes' runners (the daemon's own composition root, server.wire) against the stand-in API
with the real client. One leads and reconciles, the other is a standby whose /api/v1/ping says
so (still healthy: a rollout waits for it to be ready); a policy change on the standby restarts
nothing; when the leader stops, it releases the Lease and the standby leads and reconciles."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from controller.api.server import ListenerRefused, ServeConfig, check_listener, wire
from controller.api.tokens import TokenStore
from controller.kube import resources as R
from mlsysops.testing import wait_for

SLOW = 120  # a loaded 2-core machine reconciles slowly (a wait, not a timing check)


def config(tmp_path: Path, name: str) -> ServeConfig:
    return ServeConfig(
        tokens_file=tmp_path / "tokens.json", run_controller=True, kubeconfig="(the stand-in)",
        mechanisms=("kubernetes",), policy_state=tmp_path / f"{name}-policies.json",
        leader_elect=True, leader_elect_lease_duration=2.0, leader_elect_renew_deadline=1.5,
        leader_elect_retry_period=0.2,
        controller_options={"watch_timeout": 1, "availability_timeout": 2.0, "workers": 1},
    )


def phase(store: Any, name: str) -> str | None:
    found: str | None = (store.get(R.APP, "default", name).get("status") or {}).get("phase")
    return found


def test_one_api_process_leads_the_other_waits_and_takes_over(standin, store, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    from ctlkube_harness import FIXTURES, documents

    for doc in documents(FIXTURES / "inventory"):
        store.apply(doc, field_manager="test-admin")
    viewer = {"Authorization": f"Bearer {TokenStore(tmp_path / 'tokens.json').create('viewer')[0]}"}
    operator = {"Authorization": f"Bearer {TokenStore(tmp_path / 'tokens.json').create('operator')[0]}"}
    daemons = {n: wire(config(tmp_path, n), store) for n in ("a", "b")}
    runners = {n: d[1] for n, d in daemons.items()}
    try:
        for _app, runner, policies in daemons.values():
            assert runner is not None
            runner.start(policies.chain())
        wait_for(lambda: sorted(r.state() for r in runners.values()) == ["running", "standby"],
                 timeout=SLOW, what="one leader, one standby")
        leader = next(n for n, r in runners.items() if r.state() == "running")
        standby = next(n for n in runners if n != leader)
        ping = TestClient(daemons[standby][0]).get("/api/v1/ping", headers=viewer)
        assert ping.status_code == 200 and ping.json() == {"store": "ok", "controller": "standby"}

        client = TestClient(daemons[standby][0])  # any replica's API takes the app
        app_doc = documents(FIXTURES / "app.yaml")[0]
        assert client.post("/api/v1/apps", json=app_doc, headers=operator).status_code in (200, 201)
        wait_for(lambda: phase(store, app_doc["metadata"]["name"]) == "Deployed", timeout=SLOW,
                 what="deployed by the leader")
        daemons[standby][2].set_mode("heuristic")  # a policy change where no controller runs
        assert runners[standby].state() == "standby"

        runners[leader].stop()  # releases the Lease
        wait_for(lambda: runners[standby].state() == "running", timeout=10, what="the standby leads")
        second = {**app_doc, "metadata": {**app_doc["metadata"], "name": "second"}}
        assert client.post("/api/v1/apps", json=second, headers=operator).status_code in (200, 201)
        wait_for(lambda: phase(store, "second") == "Deployed", timeout=SLOW, what="deployed by the standby")
    finally:
        for runner in runners.values():
            if runner is not None:
                runner.stop()


def test_leader_election_is_refused_where_it_cannot_work(tmp_path):
    for cfg in (ServeConfig(leader_elect=True, run_controller=True),  # the embedded store
                ServeConfig(leader_elect=True, kubeconfig="k"),  # no controller to elect
                ServeConfig(leader_elect=True, run_controller=True, kubeconfig="k",
                            leader_elect_renew_deadline=20.0)):
        try:
            check_listener(cfg)
        except ListenerRefused as exc:
            assert str(exc).startswith("leader_elect: ")
        else:
            raise AssertionError(f"accepted {cfg}")
