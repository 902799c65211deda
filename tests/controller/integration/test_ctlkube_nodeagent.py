"""Delegation to node agents: node settings applied through the agents' API, and agents'
GetInventory reports turned into MLSysOpsNode objects (with a fake gateway recording calls;
the real agent process is exercised in test_ctlkube_nodeagent_process.py)."""

from __future__ import annotations

from typing import Any

from ctlkube_harness import APP, NAMESPACE, FakeAgents
from google.protobuf import json_format

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.kube.errors import NotFound
from controller.reconcile.nodesync import AgentTarget
from mlsysops.nodeconfig.v1 import nodeconfig_pb2
from mlsysops.testing import wait_for

EDGE1 = "unix:/run/mlsysops/edge-1.sock"


def test_cpufreq_hints_and_cgroup_limits_reach_the_node_agent(kube, world, app_doc, controllers):
    kube.delete(R.NODE, NAMESPACE, "edge-2")  # the camera reader must land on edge-1, which has an agent
    agents = FakeAgents()
    controller = controllers.start(gateway=agents, mechanisms=("kubernetes", "nodeagent"))
    kube.apply(app_doc, field_manager="test-user")
    wait_for(lambda: (controller.outcomes.get(APP) or None) and controller.outcomes[APP].phase == "Deployed",
             what="Deployed")

    profile = json_format.MessageToDict(agents.applied[EDGE1], preserving_proto_field_name=True)
    assert profile["cpufreq"]["settings"] == [{"governor": "performance"}]  # every CPU (cpus "")
    groups = {g["path"]: g for g in profile["cgroups"]["groups"]}
    reader = groups[f"{NAMESPACE}/{APP}/camera-reader"]
    assert reader["cpu_quota_us"] == "100000" and reader["memory_max_bytes"] == str(512 * 2**20)

    kube.delete(R.APP, NAMESPACE, APP)
    wait_for(lambda: EDGE1 in agents.resets, what="edge-1 reset after the app is deleted")


def test_agents_reports_become_mlsysops_nodes_and_their_readiness(kube, world, controllers):
    inventory = nodeconfig_pb2.Inventory(
        node_name="edge-9", api_version="mlsysops.nodeconfig.v1", agent_version="0.1.0",
        architecture="aarch64", memory_bytes=4 * 2**30,
        cpus=[nodeconfig_pb2.Cpu(id=i, cpufreq_available=True, available_governors=["performance"],
                                 cpuinfo_min_khz=600_000, cpuinfo_max_khz=1_800_000) for i in range(4)],
        runtimes=[nodeconfig_pb2.Runtime(handler="crun", available=True, version="1.8")])
    agents = FakeAgents({"unix:/tmp/edge-9.sock": inventory})
    controllers.start(gateway=agents, inventory_period=0.1,
                      agents=(AgentTarget("unix:/tmp/edge-9.sock", "far_edge"),))
    node = wait_for(lambda: _ready(kube, "edge-9"), what="MLSysOpsNode edge-9 Ready")
    assert node["continuum_layer"] == "far_edge"
    assert node["hardware"]["cpu"]["architecture"] == "arm64"
    assert node["agent"]["target"] == "unix:/tmp/edge-9.sock"
    assert node["runtimes"] == [{"handler": "crun", "available": True, "version": "1.8"}]

    del agents.inventories["unix:/tmp/edge-9.sock"]  # the agent stops answering
    wait_for(lambda: _condition(kube, "edge-9") == ("False", "AgentUnreachable"), what="edge-9 not Ready")


def _ready(kube: KubeApi, name: str) -> dict[str, Any] | None:
    try:
        obj = kube.get(R.NODE, NAMESPACE, name)
    except NotFound:
        return None
    return obj if _condition(kube, name) == ("True", "AgentReporting") else None


def _condition(kube: KubeApi, name: str) -> tuple[str, str] | None:
    obj = kube.get(R.NODE, NAMESPACE, name)
    for cond in (obj.get("status") or {}).get("conditions", []):
        if cond["type"] == "Ready":
            return cond["status"], cond["reason"]
    return None


def _agent_inventory(name: str) -> nodeconfig_pb2.Inventory:
    return nodeconfig_pb2.Inventory(
        node_name=name, api_version="mlsysops.nodeconfig.v1", agent_version="0.1.0",
        architecture="x86_64", memory_bytes=8 * 2**30, cpus=[nodeconfig_pb2.Cpu(id=i) for i in range(2)])


def test_node_sync_owns_only_its_fields_and_keeps_going_past_a_failing_agent(kube, world, standin):
    """Defect 3: re-syncing an agent-only node used to apply fewer fields under the same manager
    (the API server then refused the node without its layer), and the exception stopped the
    sync of every later agent."""
    from controller.reconcile.nodesync import FIELD_MANAGER, NodeSync

    agents = FakeAgents({"unix:/tmp/edge-8.sock": _agent_inventory("edge-8"),
                         "unix:/tmp/edge-9.sock": _agent_inventory("edge-9"),
                         EDGE1: _agent_inventory("edge-1")})
    targets = [AgentTarget("unix:/tmp/edge-8.sock", "edge"), AgentTarget("unix:/tmp/edge-9.sock", "far_edge"),
               AgentTarget(EDGE1, "cloud")]
    sync = NodeSync(kube, agents, targets, NAMESPACE)
    for _round in range(2):  # created, then re-synced
        assert [(r.node, r.ready, r.message) for r in sync.sync_all()] == [
            ("edge-8", True, ""), ("edge-9", True, ""), ("edge-1", True, "")]
    edge9 = kube.get(R.NODE, NAMESPACE, "edge-9")
    assert edge9["continuum_layer"] == "far_edge" and edge9["environment"]
    managers = {m["manager"] for m in edge9["metadata"]["managedFields"] if not m.get("subresource")}
    assert managers == {FIELD_MANAGER}
    edge1 = kube.get(R.NODE, NAMESPACE, "edge-1")  # described by the admin: layer and labels stay theirs
    assert edge1["continuum_layer"] == "edge" and edge1["labels"] == ["camera"]

    standin.fail(500, count=1, method="PATCH")  # the first agent's node write fails
    results = sync.sync_all()
    assert [(r.node, r.ready) for r in results] == [("edge-8", False), ("edge-9", True), ("edge-1", True)]
    assert results[0].message


class FlakyAgents(FakeAgents):
    """Fails the first `failures` applies as an unreachable agent does (temporary)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def apply(self, target: str, profile: nodeconfig_pb2.Profile) -> nodeconfig_pb2.ApplyResponse:
        if self.failures:
            self.failures -= 1
            self.calls.append(("apply failed", target))
            from controller.mechanisms.nodeagent import AgentError

            raise AgentError(f"node agent {target}: UNAVAILABLE", temporary=True)
        return super().apply(target, profile)


def test_a_transient_agent_failure_is_retried_into_the_settings_never_a_reset(kube, world, app_doc,
                                                                              controllers):
    """Defect 2: the retry after a failed first Apply used to be planned from a status without
    node settings, so it reset the node, and the app showed Ready with nothing applied."""
    kube.delete(R.NODE, NAMESPACE, "edge-2")
    agents = FlakyAgents(failures=1)
    controller = controllers.start(gateway=agents, mechanisms=("kubernetes", "nodeagent"))
    kube.apply(app_doc, field_manager="test-user")
    wait_for(lambda: (controller.outcomes.get(APP) or None) and controller.outcomes[APP].phase == "Deployed",
             what="Deployed")
    assert ("apply failed", EDGE1) in agents.calls and agents.resets == []
    profile = json_format.MessageToDict(agents.applied[EDGE1], preserving_proto_field_name=True)
    assert profile["cpufreq"]["settings"] == [{"governor": "performance"}]
    status = kube.get(R.APP, NAMESPACE, APP)["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    # what the app contributes is recorded on the node, for a restarted controller
    [record] = kube.get(R.NODE, NAMESPACE, "edge-1")["status"]["settings"]
    assert record["app"] == f"{NAMESPACE}/{APP}" and record["profile"]["cpufreq"]["settings"][0]["governor"]


def test_telemetry_is_driven_by_what_placements_need_and_re_timed_live(kube, world, app_doc, controllers):
    """Defect 10: the agents' SetTelemetryConfig used to be never called."""
    kube.delete(R.NODE, NAMESPACE, "edge-2")
    agents = FakeAgents()
    controller = controllers.start(gateway=agents, mechanisms=("kubernetes", "nodeagent"))
    kube.apply(app_doc, field_manager="test-user")
    wait_for(lambda: (controller.outcomes.get(APP) or None) and controller.outcomes[APP].phase == "Deployed",
             what="Deployed")
    # camera-reader on edge-1: a QoS target (node load), a governor and cgroup limits to watch
    assert agents.telemetry[EDGE1] == {"cpu": (True, 5000), "memory": (True, 5000),
                                       "cpufreq": (True, 2000), "cgroups": (True, 10000)}
    explained = {e["component"]: e for e in kube.get(R.APP, NAMESPACE, APP)["status"]["explanation"]}
    assert explained["camera-reader"]["telemetry"] == {"cpu": 5000, "memory": 5000, "cpufreq": 2000,
                                                       "cgroups": 10000}
    [record] = kube.get(R.NODE, NAMESPACE, "edge-1")["status"]["settings"]
    assert record["telemetry"]["cpufreq"] == 2000

    changed = {**app_doc, "components": [dict(app_doc["components"][0]), *app_doc["components"][1:]]}
    del changed["components"][0]["qos_metrics"]  # no QoS target, no cpufreq hint any more
    kube.apply(changed, field_manager="test-user")
    wait_for(lambda: agents.telemetry[EDGE1].get("cpu") == (False, 5000), what="cpu collector switched off")
    assert agents.telemetry[EDGE1] == {"cpu": (False, 5000), "memory": (False, 5000),
                                       "cpufreq": (False, 2000), "cgroups": (True, 10000)}


def test_the_settings_record_on_a_node_does_not_requeue_the_fleet():
    """Recording node settings writes the node's status; only what placement reads may wake
    every app (else each apply costs a reconcile of every app)."""
    from controller.reconcile.loop import placement_view

    node = {"kind": "MLSysOpsNode", "metadata": {"name": "edge-1", "resourceVersion": "7"},
            "continuum_layer": "edge", "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    recorded = {**node, "metadata": {**node["metadata"], "resourceVersion": "8"},
                "status": {**node["status"], "settings": [{"app": "default/a", "profile": {}}]}}
    unready = {**node, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert placement_view(recorded) == placement_view(node)
    assert placement_view(unready) != placement_view(node)


def _with_devices(name: str, *devices: nodeconfig_pb2.Device) -> nodeconfig_pb2.Inventory:
    inventory = _agent_inventory(name)
    inventory.devices.extend(devices)
    return inventory


def test_far_edge_devices_an_agent_reports_become_nodes_of_their_own(kube, world, standin):
    """A far-edge component needs a node to be placed on: every device an agent reports (the
    bridge reports them to its host's agent) is an MLSysOpsNode, layer far_edge, in the host's
    cluster, Ready while reported online; an unknown-to-Kubernetes id keeps its spelling in
    `device.id`, which the faredge mechanism hands to the bridge."""
    from controller.reconcile.nodesync import NodeSync

    sensor = nodeconfig_pb2.Device(id="Sensor_7", kind="esp32", transport="mqtt", online=True,
                                   sensors=["temp"], firmware_version="1.0.0")
    lamp = nodeconfig_pb2.Device(id="lamp-2", kind="rp2", transport="serial", online=False)
    agents = FakeAgents({EDGE1: _with_devices("edge-1", sensor, lamp)})
    sync = NodeSync(kube, agents, [AgentTarget(EDGE1, "edge")], NAMESPACE)
    assert [r.ready for r in sync.sync_all()] == [True]
    node = kube.get(R.NODE, NAMESPACE, "sensor-7")
    assert node["continuum_layer"] == "far_edge" and node["cluster_id"] == "uth-edge"  # edge-1's, described
    assert node["device"] == {"id": "Sensor_7", "host": "edge-1", "kind": "esp32", "transport": "mqtt",
                              "firmware_version": "1.0.0"}
    assert _condition(kube, "sensor-7") == ("True", "DeviceOnline")
    assert _condition(kube, "lamp-2") == ("False", "DeviceOffline")

    agents.inventories[EDGE1] = _with_devices("edge-1", sensor)  # the lamp was unplugged
    sync.sync_all()
    assert _condition(kube, "lamp-2") == ("False", "DeviceGone")
    del agents.inventories[EDGE1]  # the host's agent stops answering: its devices are not Ready either
    sync.sync_all()
    assert _condition(kube, "sensor-7") == ("False", "AgentUnreachable")
