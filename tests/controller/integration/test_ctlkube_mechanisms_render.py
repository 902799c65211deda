"""The mechanisms' pure parts: what they would write for a plan (plan mode shows exactly this),
checked against the Kubernetes and Karmada schemas, and the node-agent profile union."""

from __future__ import annotations

from typing import Any

import pytest
from ctlkube_harness import FIXTURES, FakeAgents, documents
from kube_validators import validate

from controller.mechanisms.karmada import KarmadaMechanism
from controller.mechanisms.kubernetes import KubernetesMechanism, deployment_name, dns_name
from controller.mechanisms.nodeagent import NodeAgentMechanism, merge_profiles
from controller.model import App, DescriptionError, parse_document
from controller.policies import Decision, Plan


def app(**changes: Any) -> App:
    doc = documents(FIXTURES / "app.yaml")[0]
    doc["metadata"]["uid"] = "0f9b1c2e-1111-4222-8333-944455556666"
    doc.update(changes)
    parsed = parse_document(doc)
    assert isinstance(parsed, App)
    return parsed


def plan(a: App, *decisions: Decision) -> Plan:
    return Plan(a.name, a.namespace, "test", decisions, tuple(d.component for d in decisions))


def test_every_rendered_kubernetes_object_is_valid_and_owned_by_the_app():
    a = app()
    decisions = (Decision(c.name, "edge-1", "c1", "r") for c in a.components)
    objects = KubernetesMechanism().render(a, plan(a, *decisions))
    assert {o["kind"] for o in objects} == {"RuntimeClass", "Deployment", "Service"}
    for obj in objects:
        assert validate(obj) == [], obj["metadata"]["name"]
        if obj["kind"] != "RuntimeClass":
            assert obj["metadata"]["ownerReferences"][0]["uid"] == a.raw["metadata"]["uid"]


def test_replicas_spread_over_nodes_become_one_deployment_per_node():
    a = app()
    spread = Decision("detector", "edge-1", "c1", "r", nodes=("edge-1", "edge-2", "edge-1"))
    deployments = [o for o in KubernetesMechanism().render(a, plan(a, spread)) if o["kind"] == "Deployment"]
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in deployments} == {
        deployment_name(a.name, "detector", "edge-1", "c1"): 2,
        deployment_name(a.name, "detector", "edge-2", "c1"): 1}


def test_an_unplaced_component_renders_nothing_and_a_cluster_only_one_is_unpinned():
    a = app()
    objects = KubernetesMechanism().render(a, plan(a, Decision("trainer", None, None, "nothing fits"),
                                                   Decision("detector", None, "c2", "cluster only")))
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert [d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments] == ["detector"]
    pod = deployments[0]["spec"]["template"]["spec"]
    assert "affinity" not in pod and "nodeName" not in pod


def test_a_restart_policy_deployments_cannot_honour_names_the_field():
    components = documents(FIXTURES / "app.yaml")[0]["components"]
    components[1]["restart_policy"] = "Never"
    a = app(components=components)
    with pytest.raises(DescriptionError) as info:
        KubernetesMechanism().render(a, plan(a, Decision("detector", "edge-1", None, "r")))
    assert info.value.path == "MLSysOpsApp.components[1].restart_policy"


def test_names_are_dns_labels_even_for_long_names():
    long = dns_name("A" * 40, "component_with_underscores" * 3)
    assert len(long) <= 63 and long == long.lower() and "_" not in long
    assert dns_name("x" * 70, "a") != dns_name("x" * 70, "b")  # the hash keeps truncated names apart
    assert dns_name("9lives")[0].isalpha()


def test_karmada_propagates_to_the_chosen_clusters_and_overrides_per_cluster():
    a = app()
    decisions = (Decision("camera-reader", "edge-1", "edge-cluster", "r"),
                 Decision("detector", "edge-1", "edge-cluster", "r"),
                 Decision("trainer", "cloud-1", "cloud-cluster", "r"),
                 Decision("dashboard", "cloud-1", "cloud-cluster", "r"))
    objects = KarmadaMechanism().render(a, plan(a, *decisions))
    for obj in objects:
        assert validate(obj) == [], obj["metadata"]["name"]
    pp = next(o for o in objects if o["kind"] == "PropagationPolicy")
    assert pp["spec"]["placement"]["clusterAffinity"]["clusterNames"] == ["cloud-cluster", "edge-cluster"]
    selected = {(s["kind"], s["name"]) for s in pp["spec"]["resourceSelectors"]}
    assert ("Deployment", deployment_name(a.name, "trainer", "cloud-1", "cloud-cluster")) in selected
    overrides = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "OverridePolicy"}
    trainer = overrides[dns_name(a.name, "trainer")]["overrideRules"][0]
    assert trainer["targetCluster"]["clusterNames"] == ["edge-cluster"]
    zero = {"path": "/spec/replicas", "operator": "replace", "value": 0}
    assert trainer["overriders"]["plaintext"] == [zero]


def test_karmada_writes_nothing_for_a_single_cluster_free_plan():
    a = app()
    assert KarmadaMechanism().render(a, plan(a, Decision("detector", "edge-1", None, "r"))) == []


def test_profiles_of_several_apps_on_a_node_are_unioned_without_repeats():
    governor = {"cpufreq": {"settings": [{"cpus": "", "governor": "performance"}]}}
    merged = merge_profiles([governor, {"cgroups": {"groups": [{"path": "a/x", "cpu_weight": 50}]}}, governor,
                             {"runtimes": {"default": "crun"}}])
    assert merged == {"cpufreq": {"settings": [{"cpus": "", "governor": "performance"}]},
                      "cgroups": {"groups": [{"path": "a/x", "cpu_weight": 50}]},
                      "extensions": {"runtimes": {"default": "crun"}}}


def test_node_settings_follow_apps_on_and_off_a_node():
    agents = FakeAgents()
    mechanism = NodeAgentMechanism(agents, targets=lambda node: f"unix:/run/{node}.sock")
    first, second = app(), app(metadata={"name": "other", "namespace": "default"})
    cg = {"cgroups": {"groups": [{"path": "default/camera-pipeline/detector", "cpu_weight": 100}]}}
    freq = {"cpufreq": {"settings": [{"governor": "performance"}]}}
    mechanism.realize(first, plan(first, Decision("detector", "edge-1", None, "r", node_settings=cg)))
    with_freq = plan(second, Decision("detector", "edge-1", None, "r", node_settings=freq))
    result = mechanism.realize(second, with_freq)
    assert result.written == ("NodeProfile/edge-1",)
    applied = agents.applied["unix:/run/edge-1.sock"]
    assert applied.cpufreq.settings[0].governor == "performance"
    assert applied.cgroups.groups[0].cpu_weight == 100

    again = mechanism.realize(second, with_freq)
    assert again.unchanged == ("NodeProfile/edge-1",) and again.written == ()
    mechanism.remove("camera-pipeline", "default")
    assert list(agents.applied["unix:/run/edge-1.sock"].cgroups.groups) == []
    mechanism.remove("other", "default")
    assert agents.resets == ["unix:/run/edge-1.sock"]


def test_an_invalid_node_setting_is_rejected_naming_the_plan_before_any_call():
    agents = FakeAgents()
    mechanism = NodeAgentMechanism(agents, targets=lambda node: "unix:/x.sock")
    a = app()
    settings = {"cpufreq": {"settings": [{"min_khz": "fast"}]}}
    bad = Decision("detector", "edge-1", None, "r", node_settings=settings)
    with pytest.raises(ValueError, match=r"node_settings"):
        mechanism.realize(a, plan(a, bad))
    assert agents.calls == []
