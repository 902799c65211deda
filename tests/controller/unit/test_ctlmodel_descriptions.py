"""Descriptions: both forms, multi-document input, exact error paths, typed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.model import (
    App,
    ClusterDesc,
    ContinuumDesc,
    DescriptionError,
    NodeDesc,
    depends_on_order,
    load_documents,
    parse_document,
    to_kubernetes_form,
    unknown_fields,
)

APP_BODY = {
    "name": "shop",
    "components": [
        {"metadata": {"name": "web"}, "containers": [{"image": "nginx"}]},
        {"metadata": {"name": "db"}, "depends_on": ["web"], "containers": [{"image": "pg"}]},
    ],
}


def app_with(**component_fields: object) -> dict[str, object]:
    return {
        "MLSysOpsApp": {
            "name": "a",
            "components": [
                {"metadata": {"name": "web"}, "containers": [{"image": "nginx"}], **component_fields}
            ],
        }
    }


def error_of(doc: object) -> DescriptionError:
    with pytest.raises(DescriptionError) as info:
        parse_document(doc)
    return info.value


# ---------------------------------------------------------------------------- forms


def test_wrapper_form_and_kubernetes_form_give_the_same_description() -> None:
    wrapped = parse_document({"MLSysOpsApp": APP_BODY})
    k8s = parse_document(
        {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp", "metadata": {"name": "shop"}, **APP_BODY}
    )
    assert wrapped == k8s
    assert wrapped.raw == k8s.raw
    assert wrapped.raw["metadata"] == {"name": "shop", "namespace": "default"}
    assert "spec" not in wrapped.raw and wrapped.raw["components"][0]["metadata"]["name"] == "web"


def test_wrapper_names_come_from_the_reference_id_fields() -> None:
    cluster = parse_document({"MLSysOpsCluster": {"cluster_id": "uth-prod", "nodes": ["n1"]}})
    continuum = parse_document({"MLSysOpsContinuum": {"continuum_id": "eu", "clusters": ["uth-prod"]}})
    assert isinstance(cluster, ClusterDesc) and cluster.name == "uth-prod" and cluster.nodes == ("n1",)
    assert isinstance(continuum, ContinuumDesc) and continuum.clusters == ("uth-prod",)


def test_multi_document_yaml_json_and_lists(tmp_path: Path) -> None:
    text = """
MLSysOpsCluster: {cluster_id: c1, nodes: [n1]}
---
{"MLSysOpsContinuum": {"continuum_id": "k", "clusters": ["c1"]}}
---
- MLSysOpsCluster: {cluster_id: c2, nodes: []}
"""
    assert [d.name for d in load_documents(text)] == ["c1", "k", "c2"]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yaml").write_text(text)
    (tmp_path / "b.json").write_text('{"MLSysOpsCluster": {"cluster_id": "c3", "nodes": []}}')
    (tmp_path / "notes.txt").write_text("not a description")
    assert sorted(d.name for d in load_documents(tmp_path)) == ["c1", "c2", "c3", "k"]


def test_namespace_defaults_and_explicit_namespace_wins() -> None:
    assert (
        load_documents("MLSysOpsCluster: {cluster_id: c1, nodes: []}", namespace="edge")[0].namespace
        == "edge"
    )
    doc = {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsCluster",
        "metadata": {"name": "c", "namespace": "x"},
        "cluster_id": "c",
        "nodes": [],
    }
    assert parse_document(doc, namespace="edge").namespace == "x"


def test_reference_style_fixture_loads_with_its_fields(fixtures_dir: Path) -> None:
    (app,) = load_documents(fixtures_dir / "reference_app.yaml")
    assert isinstance(app, App)
    assert [c.name for c in app.components] == ["server-app", "client-app"]
    server, client = app.components
    assert server.placement.node == "node-1" and server.restart_policy == "OnFailure"
    assert server.ports[0].container_port == 10000 and server.uid == "server-app-v1"
    assert client.depends_on == ("server-app",) and client.system_metrics_hints == {"cpu_frequency"}
    assert app.cluster_placement.cluster_ids == ("uth-prod-cluster",)
    assert app.permits("component_relocation") and not app.permits("acceleration")


def test_quantities_become_integers_and_anywhere_is_no_constraint() -> None:
    app = parse_document(
        app_with(
            node_placement={"continuum_layer": ["*"], "scaling": {"scaling_mode": "manual", "instances": 3}},
            containers=[
                {
                    "image": "a",
                    "platform_requirements": {
                        "cpu": {"requests": "250m", "limits": "1"},
                        "memory": {"requests": "1Gi", "limits": "1.5Gi"},
                    },
                },
                {
                    "image": "b",
                    "platform_requirements": {
                        "cpu": {"requests": "0.5", "architecture": ["arm64"]},
                        "gpu": {"requests": 1, "model": "k80"},
                    },
                },
            ],
        )
    )
    assert isinstance(app, App)
    web = app.components[0]
    r = web.resources
    assert (r.cpu_millis, r.memory_bytes, r.cpu_limit_millis) == (750, 2**30, 1000)
    assert r.memory_limit_bytes == 3 * 2**29 and r.architectures == {"arm64"}
    assert (r.gpus, r.gpu_model) == (1, "k80")
    assert web.placement.continuum_layers == frozenset() and web.replicas == 3


def test_node_capacity_from_hardware_or_agent_fields(node_doc) -> None:  # type: ignore[no-untyped-def]
    plain = parse_document(node_doc("n1", cores=8, memory_gb=16))
    assert isinstance(plain, NodeDesc)
    assert (plain.cpu_millis, plain.memory_bytes) == (8000, 16 * 2**30)
    reported = parse_document(
        node_doc(
            "n2",
            capacity={"cpu": "7500m", "memory": "3Gi", "gpus": 2},
            allocated={"cpu": 1, "memory": "1Gi"},
            runtimes=[{"handler": "crun", "available": True}, {"handler": "kata-fc", "available": False}],
        )
    )
    assert isinstance(reported, NodeDesc)
    assert (reported.cpu_millis, reported.memory_bytes, reported.gpus) == (7500, 3 * 2**30, 2)
    assert (reported.allocated_cpu_millis, reported.allocated_memory_bytes) == (1000, 2**30)
    assert reported.runtimes == {"crun"}


def test_depends_on_order_puts_dependencies_first() -> None:
    app = parse_document(
        {
            "MLSysOpsApp": {
                "name": "a",
                "components": [
                    {"metadata": {"name": "ui"}, "depends_on": ["api"], "containers": [{"image": "x"}]},
                    {
                        "metadata": {"name": "api"},
                        "depends_on": ["db", "cache"],
                        "containers": [{"image": "x"}],
                    },
                    {"metadata": {"name": "db"}, "containers": [{"image": "x"}]},
                    {"metadata": {"name": "cache"}, "containers": [{"image": "x"}]},
                ],
            }
        }
    )
    assert isinstance(app, App)
    assert depends_on_order(app) == ("db", "cache", "api", "ui")


# ---------------------------------------------------------------------------- errors with paths


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        (
            "bad_restart_policy.yaml",
            "MLSysOpsApp.components[0].restart_policy: expected one of Always, OnFailure, "
            "Never (got string 'on_failure')",
        ),
        (
            "instances_as_string.yaml",
            "MLSysOpsApp.components[0].node_placement.scaling.instances: expected an "
            "integer (got string '3')",
        ),
        (
            "no_containers.yaml",
            "MLSysOpsApp.components[0].containers: expected a list (required field is missing)",
        ),
    ],
)
def test_issue_examples_name_the_path_and_the_expectation(
    fixtures_dir: Path, fixture: str, message: str
) -> None:
    path = fixtures_dir / "invalid" / fixture
    with pytest.raises(DescriptionError) as info:
        load_documents(path)
    assert str(info.value) == f"{path}: {message}"
    assert info.value.source == str(path)


def test_every_problem_of_a_document_is_reported_in_document_order() -> None:
    doc = {
        "MLSysOpsApp": {
            "name": "a",
            "components": [
                {"metadata": {"name": f"c{i}"}, "containers": [{"image": "x"}], "restart_policy": "always"}
                for i in range(12)
            ],
        }
    }
    err = error_of(doc)
    assert [p.path for p in err.problems][:3] == [
        f"MLSysOpsApp.components[{i}].restart_policy" for i in range(3)
    ]
    assert err.problems[-1].path == "MLSysOpsApp.components[11].restart_policy"
    assert (err.path, err.expected) == (
        "MLSysOpsApp.components[0].restart_policy",
        "one of Always, OnFailure, Never",
    )


@pytest.mark.parametrize(
    ("doc", "path", "expected"),
    [
        (app_with(containers=[]), "MLSysOpsApp.components[0].containers", "at least one container"),
        (
            app_with(depends_on=["ghost"]),
            "MLSysOpsApp.components[0].depends_on[0]",
            "the name of a component of this app (web)",
        ),
        (
            app_with(containers=[{"image": "x", "platform_requirements": {"cpu": {"requests": "lots"}}}]),
            "MLSysOpsApp.components[0].containers[0].platform_requirements.cpu.requests",
            "a quantity such as 500m, 2, 512Mi or 8Gi",
        ),
        (
            app_with(
                containers=[
                    {"image": "x", "platform_requirements": {"memory": {"requests": "2Gi", "limits": "1Gi"}}}
                ]
            ),
            "MLSysOpsApp.components[0].containers[0].platform_requirements.memory.limits",
            "a limit at least the request",
        ),
        (
            app_with(containers=[{"image": "x", "ports": [{"container_port": 70000}]}]),
            "MLSysOpsApp.components[0].containers[0].ports[0].container_port",
            "a port number 1-65535",
        ),
        (
            app_with(containers=[{"command": ["x"]}]),
            "MLSysOpsApp.components[0].containers[0].image",
            "a container image (required to run the component)",
        ),
        (
            app_with(metadata={"name": "Web_1"}),
            "MLSysOpsApp.components[0].metadata.name",
            "a DNS-1123 label (lowercase letters, digits, '-' and '.', starting and ending alphanumeric)",
        ),
        (
            {
                "MLSysOpsApp": {
                    "name": "a",
                    "components": [
                        {"metadata": {"name": "x"}, "containers": [{"image": "i"}]},
                        {"metadata": {"name": "x"}, "containers": [{"image": "i"}]},
                    ],
                }
            },
            "MLSysOpsApp.components[1].metadata.name",
            "a name unique among the components",
        ),
        ({"MLSysOpsApp": {"name": "a", "components": "web"}}, "MLSysOpsApp.components", "a list"),
        (
            {"MLSysOpsApp": {"name": "Bad Name", "components": []}},
            "MLSysOpsApp.metadata.name",
            "a DNS-1123 name (lowercase letters, digits, '-' and '.', starting and ending alphanumeric)",
        ),
        (
            {"MLSysOpsNode": {"name": "n", "continuum_layer": "fog", "environment": {}, "hardware": {}}},
            "MLSysOpsNode.continuum_layer",
            "one of cloud, edge_infrastructure, edge, far_edge",
        ),
        (
            {"MLSysOpsNode": {"continuum_layer": "edge", "environment": {}, "hardware": {}}},
            "MLSysOpsNode.metadata.name",
            "a name (set metadata.name or name)",
        ),
        (
            {"MLSysOpsCluster": {"nodes": []}},
            "MLSysOpsCluster.cluster_id",
            "a string (required field is missing)",
        ),
        (
            {"MLSysOpsApplication": {"name": "a"}},
            "document",
            "either Kubernetes form (apiVersion: mlsysops.eu/v1, kind: ...) or wrapper form "
            "with exactly one key of MLSysOpsApp, MLSysOpsNode, MLSysOpsCluster, MLSysOpsContinuum, "
            "MLSysOpsDatacenter",
        ),
        (
            {"apiVersion": "v1", "kind": "MLSysOpsApp", "metadata": {"name": "a"}},
            "MLSysOpsApp.apiVersion",
            "mlsysops.eu/v1",
        ),
    ],
)
def test_semantic_and_shape_errors_name_the_field(doc: object, path: str, expected: str) -> None:
    err = error_of(doc)
    assert (err.path, err.expected) == (path, expected)
    assert str(err).startswith(f"{path}: expected {expected}")


def test_dependency_cycles_are_rejected_with_the_cycle() -> None:
    err = error_of(
        {
            "MLSysOpsApp": {
                "name": "a",
                "components": [
                    {"metadata": {"name": "a1"}, "depends_on": ["a2"], "containers": [{"image": "x"}]},
                    {"metadata": {"name": "a2"}, "depends_on": ["a1"], "containers": [{"image": "x"}]},
                ],
            }
        }
    )
    assert err.path == "MLSysOpsApp.components[0].depends_on"
    assert str(err).endswith("expected no dependency cycle (got a1 -> a2 -> a1)")


def test_yaml_booleans_in_string_enums_get_a_quoting_hint() -> None:
    text = """
MLSysOpsApp:
  name: a
  components:
    - metadata: {name: web}
      containers: [{image: x}]
      storage: {buckets: [{bucket_id: b, server_side_encryption: on}]}
"""
    with pytest.raises(DescriptionError) as info:
        load_documents(text)
    assert info.value.path == "MLSysOpsApp.components[0].storage.buckets[0].server_side_encryption"
    assert "quote the value in YAML" in str(info.value)
    ok = load_documents(text.replace("encryption: on", "encryption: 'on'"))
    assert isinstance(ok[0], App)


def test_yaml_syntax_errors_and_missing_files_are_description_errors(tmp_path: Path) -> None:
    with pytest.raises(DescriptionError, match="expected valid YAML or JSON"):
        load_documents("MLSysOpsApp: [unclosed\n")
    with pytest.raises(DescriptionError, match="expected an existing file or directory"):
        load_documents(tmp_path / "absent.yaml")


def test_a_bad_document_names_its_position_in_a_multi_document_file(tmp_path: Path) -> None:
    f = tmp_path / "two.yaml"
    f.write_text(
        "MLSysOpsCluster: {cluster_id: ok, nodes: []}\n---\nMLSysOpsCluster: {cluster_id: 5, nodes: []}\n"
    )
    with pytest.raises(DescriptionError) as info:
        load_documents(f)
    assert str(info.value).startswith(f"{f}, document 2: MLSysOpsCluster.cluster_id: expected a string")


def test_unknown_fields_are_warnings_not_errors() -> None:
    doc = app_with(restart_polcy="Always")
    assert isinstance(parse_document(doc), App)
    assert unknown_fields(doc) == ["MLSysOpsApp.components[0].restart_polcy"]
    kind, k8s = to_kubernetes_form(doc)
    assert kind == "MLSysOpsApp" and k8s["metadata"]["name"] == "a"


def test_parsing_never_mutates_the_callers_document() -> None:
    doc = {
        "MLSysOpsApp": {
            "name": "a",
            "components": [{"metadata": {"name": "w"}, "containers": [{"image": "x"}]}],
        }
    }
    before = repr(doc)
    app = parse_document(doc)
    assert repr(doc) == before
    assert app.raw is not doc


def test_long_dependency_chains_are_ordered_and_checked_without_recursion_limits() -> None:
    n = 3000
    components = [
        {
            "metadata": {"name": f"c{i}"},
            "containers": [{"image": "x"}],
            **({"depends_on": [f"c{i + 1}"]} if i < n - 1 else {}),
        }
        for i in range(n)
    ]
    app = parse_document({"MLSysOpsApp": {"name": "chain", "components": components}})
    assert isinstance(app, App)
    assert depends_on_order(app) == tuple(f"c{i}" for i in reversed(range(n)))
    components[-1]["depends_on"] = ["c0"]
    err = error_of({"MLSysOpsApp": {"name": "chain", "components": components}})
    assert err.expected == "no dependency cycle" and err.problems[-1].got is not None
    assert err.problems[-1].got.count("->") == n


FAR_EDGE_CODE = (
    "a far-edge component's code: exactly one image naming an app directory on the far-edge "
    "bridge's host (file:///path or /path)"
)


@pytest.mark.parametrize("image", ["registry.example.com/sensor:1", "apps/sensor", "file://apps/sensor"])
def test_a_far_edge_component_must_name_its_code_directory(image: str) -> None:
    """The faredge mechanism hands the directory to the bridge: an OCI reference or a relative
    path is refused with the description, before anything is planned or sent."""
    err = error_of(app_with(node_placement={"continuum_layer": ["far_edge"]}, containers=[{"image": image}]))
    assert (err.path, err.expected) == ("MLSysOpsApp.components[0].containers[].image", FAR_EDGE_CODE)


@pytest.mark.parametrize(
    ("image", "code"), [("file:///srv/sensor/", "/srv/sensor"), ("/srv/a/../sensor", "/srv/sensor")]
)
def test_a_far_edge_components_code_is_its_normalised_directory(image: str, code: str) -> None:
    doc = app_with(node_placement={"continuum_layer": ["far_edge"]}, containers=[{"image": image}])
    app = parse_document(doc)
    assert isinstance(app, App)
    assert app.components[0].far_edge_code == code
