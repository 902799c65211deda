"""The mechanisms' pure parts: what they would write for a plan (plan mode shows exactly this),
checked against the Kubernetes and Karmada schemas, and the node-agent profile union."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ctlkube_harness import FIXTURES, FakeAgents, documents
from kube_validators import validate

from controller.mechanisms.karmada import KarmadaMechanism
from controller.mechanisms.kubernetes import KubernetesMechanism
from controller.mechanisms.kubernetes_render import deployment_name, dns_name
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


def with_restart(policy: str, component: int = 1) -> App:
    components = documents(FIXTURES / "app.yaml")[0]["components"]
    components[component]["restart_policy"] = policy
    return app(components=components)


@pytest.mark.parametrize("policy", ["OnFailure", "Never"])
def test_a_component_that_must_not_restart_always_becomes_a_job(policy: str):
    a = with_restart(policy)
    spread = Decision("detector", "edge-1", "c1", "r", nodes=("edge-1", "edge-1"))
    (job,) = [o for o in KubernetesMechanism().render(a, plan(a, spread)) if o["kind"] == "Job"]
    assert validate(job) == []
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["ownerReferences"][0]["uid"] == a.raw["metadata"]["uid"]
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == a.name
    assert labels["app.kubernetes.io/component"] == "detector"
    assert labels["app.kubernetes.io/instance"] == job["metadata"]["name"]
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert "selector" not in job["spec"]  # the API server generates a Job's selector
    assert (job["spec"]["parallelism"], job["spec"]["completions"]) == (2, 2)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == policy and pod["runtimeClassName"] == "crun"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["edge-1"]


def test_a_statically_placed_job_binds_with_node_name_and_others_stay_deployments():
    a = with_restart("Never", component=3)  # dashboard: node_placement.node cloud-1
    objects = KubernetesMechanism().render(a, plan(a, Decision("detector", "edge-1", None, "r"),
                                                   Decision("dashboard", "cloud-1", None, "r")))
    kinds = {o["metadata"]["labels"].get("app.kubernetes.io/component"): o["kind"]
             for o in objects if o["kind"] in ("Deployment", "Job")}
    assert kinds == {"detector": "Deployment", "dashboard": "Job"}
    job = next(o for o in objects if o["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["nodeName"] == "cloud-1"


def test_a_job_gets_a_new_name_when_its_placement_or_its_spec_changes():
    def name(a: App, node: str) -> str:
        (job,) = [o for o in KubernetesMechanism().render(a, plan(a, Decision("detector", node, None, "r")))
                  if o["kind"] == "Job"]
        return job["metadata"]["name"]

    a = with_restart("OnFailure")
    assert name(a, "edge-1") == name(with_restart("OnFailure"), "edge-1")  # deterministic
    assert name(a, "edge-1") != name(a, "edge-2")
    assert name(a, "edge-1") != name(with_restart("Never"), "edge-1")


def test_karmada_suspends_a_job_in_the_clusters_that_do_not_run_it():
    a = with_restart("OnFailure")
    objects = KarmadaMechanism().render(a, plan(a, Decision("camera-reader", "edge-1", "edge-cluster", "r"),
                                                Decision("detector", "cloud-1", "cloud-cluster", "r")))
    for obj in objects:
        assert validate(obj) == [], obj["metadata"]["name"]
    pp = next(o for o in objects if o["kind"] == "PropagationPolicy")
    assert "Job" in {s["kind"] for s in pp["spec"]["resourceSelectors"]}
    detector = next(o for o in objects if o["kind"] == "OverridePolicy"  # one per workload
                    and o["spec"]["resourceSelectors"][0]["name"].startswith(dns_name(a.name, "detector")))
    rule = detector["spec"]["overrideRules"][0]
    assert rule["targetCluster"]["clusterNames"] == ["edge-cluster"]
    assert rule["overriders"]["plaintext"] == [{"path": "/spec/suspend", "operator": "add", "value": True}]


def test_plan_mode_shows_the_job_it_would_write(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from mlsysops.cli import main

    monkeypatch.delenv("KUBECONFIG", raising=False)

    doc = documents(FIXTURES / "app.yaml")[0]
    doc["components"][2]["restart_policy"] = "OnFailure"  # trainer: batch work
    (tmp_path / "app.json").write_text(json.dumps(doc))
    result = CliRunner().invoke(main, ["apps", "plan", "-f", str(tmp_path / "app.json"), "--inventory",
                                       str(FIXTURES / "inventory"), "-o", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.output)  # one entry per app
    objects = report["objects"]["kubernetes"]
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "trainer"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert validate(job) == []


def test_a_wrongly_cased_restart_policy_is_refused_naming_the_field():
    doc = documents(FIXTURES / "app.yaml")[0]
    doc["components"][0]["restart_policy"] = "on_failure"
    with pytest.raises(DescriptionError) as info:
        parse_document(doc)
    assert [p.path for p in info.value.problems] == ["MLSysOpsApp.components[0].restart_policy"]
    assert "one of Always, OnFailure, Never" in str(info.value)


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
    overrides = {o["spec"]["resourceSelectors"][0]["name"]: o["spec"] for o in objects
                 if o["kind"] == "OverridePolicy"}  # one per workload, named after it
    trainer = overrides[deployment_name(a.name, "trainer", "cloud-1", "cloud-cluster")]["overrideRules"][0]
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
