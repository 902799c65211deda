"""The console's nodes page shows where each setting stands on the node, as a real node agent
holds it: a cgroup limit applied through the agent, then changed behind its back, shows as
drifted (desired, actual) once the agent's drift check saw it. The API wired as `mlsysops-api`
wires it (server.wire: the embedded store, the in-process controller whose node sync publishes
the agent's MLSysOpsNode with its target); the agent is the demo's (private cgroup subtree,
its own network namespace, simulated cpufreq)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from google.protobuf import json_format

from controller.api.server import ServeConfig, open_store, wire
from controller.api.tokens import TokenStore
from controller.reconcile.nodesync import AgentTarget
from mlsysops.nodeapi import NodeAgentClient
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.testing import wait_for

LIMIT = 268435456


def memory_knob(target: str) -> pb.KnobState:
    with NodeAgentClient(target) as client:
        knobs = client.state().knobs
    return next(k for k in knobs if k.key.endswith(("memory.limit_in_bytes", "memory.max")))


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo node agent needs root (cgroups, netns)")
def test_the_nodes_page_shows_a_setting_changed_behind_the_agents_back_as_drifted(tmp_path: Path) -> None:
    from nodeagent import demo as nodeagent_demo

    with nodeagent_demo.agent(tmp_path / "agent") as target:
        groups = {"groups": [{"path": "app", "memory_max_bytes": LIMIT}]}
        profile = json_format.ParseDict({"cgroups": groups}, pb.Profile())
        with NodeAgentClient(target) as client:
            client.apply(profile, requester="test")
        knob = memory_knob(target)
        assert knob.desired == str(LIMIT) and not knob.drifted
        path = nodeagent_demo.CGROUP_MOUNT / knob.key  # cgroup knobs are named under the mount
        path.write_text(str(LIMIT // 2))  # behind the agent's back
        wait_for(lambda: memory_knob(target).drifted, timeout=30, what="the agent's drift check")

        cfg = ServeConfig(
            store_path=tmp_path / "controller.db", tokens_file=tmp_path / "tokens.json", run_controller=True,
            mechanisms=("nodeagent",), agents=(AgentTarget(target),), policy_state=tmp_path / "policies.json",
            controller_options={"watch_timeout": 1, "workers": 1, "inventory_period": 1.0},
        )
        store = open_store(cfg)
        token = TokenStore(cfg.tokens_file).create("viewer", name="drift")[0]
        app, runner, policies = wire(cfg, store)
        assert runner is not None
        runner.start(policies.chain())
        try:
            client = TestClient(app)
            signed_in = client.post("/console/login", data={"token": token}, follow_redirects=False)
            assert signed_in.status_code == 303, signed_in.text

            def drift_shown() -> str | None:
                page = client.get("/console/nodes").text
                return page if "setting(s) drifted from what was applied" in page else None

            page = wait_for(drift_shown, timeout=60, what="the node and its drift on the page")
            cells = rf"<code>{re.escape(knob.key)}</code></td><td>(\d+)</td><td>(\d+)</td><td>(\w+)</td>"
            row = re.search(cells, page)
            assert row is not None, page
            assert row.groups() == (str(LIMIT), str(LIMIT // 2), "yes")
        finally:
            runner.stop()
            store.close()  # type: ignore[attr-defined]


def test_a_node_agent_the_api_cannot_reach_is_said_so(tmp_path: Path) -> None:
    """A described node whose agent is gone: the page renders and names the failure."""
    cfg = ServeConfig(store_path=tmp_path / "controller.db", tokens_file=tmp_path / "tokens.json",
                      policy_state=tmp_path / "policies.json")
    store = open_store(cfg)
    node = yaml.safe_load(f"""
apiVersion: mlsysops.eu/v1
kind: MLSysOpsNode
metadata: {{name: gone-1, namespace: default}}
continuum_layer: edge
environment: {{container_runtime: [containerd]}}
hardware: {{cpu: {{cores: 2}}, memory: 4}}
agent: {{target: "unix:{tmp_path}/none.sock"}}
""")
    store.apply(node, field_manager="test-admin")
    token = TokenStore(cfg.tokens_file).create("viewer", name="gone")[0]
    app, _runner, _policies = wire(cfg, store)
    client = TestClient(app)
    assert client.post("/console/login", data={"token": token}, follow_redirects=False).status_code == 303
    page = client.get("/console/nodes").text
    assert f"Not read: node agent at unix:{tmp_path}/none.sock: UNAVAILABLE" in page
    store.close()  # type: ignore[attr-defined]
