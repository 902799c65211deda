"""`mlsysops apps|nodes|clusters` in plan mode, end to end through the CLI root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from controller.inventory import Inventory
from controller.mechanisms import Unavailable
from controller.model import App, load_documents
from controller.plan import plan_apps, result_dict
from controller.policies import PolicyRegistry
from mlsysops.cli import main


@pytest.fixture
def example(examples_dir: Path) -> tuple[Path, Path]:
    return examples_dir / "app.yaml", examples_dir / "inventory"


def test_plan_prints_decisions_explanations_and_objects(run: Any, example: tuple[Path, Path]) -> None:
    app, inventory = example
    result = run("apps", "plan", "-f", app, "--inventory", inventory)
    assert result.exit_code == 0, result.output
    out = result.output
    assert (
        "app camera-pipeline (namespace default, policies staticPlacedComponents+constraintAwarePlacer)"
        in out
    )
    assert "camera-reader  edge-1   uth-edge  place" in out
    assert "conflicts: none" in out
    assert "edge-2     rejected         architecture: architecture amd64, needs arm64" in out
    assert "objects it would write" in out and "kind: MLSysOpsApp" in out


def test_plan_json_is_complete_and_machine_readable(run: Any, example: tuple[Path, Path]) -> None:
    app, inventory = example
    result = run("apps", "plan", "-f", app, "--inventory", inventory, "-o", "json")
    (data,) = json.loads(result.output)
    assert {d["component"]: d["node"] for d in data["decisions"]} == {
        "camera-reader": "edge-1",
        "trainer": "cloud-1",
        "detector": "cloud-1",
        "dashboard": "cloud-1",
    }
    assert data["order"] == ["camera-reader", "detector", "trainer", "dashboard"]
    reader = data["decisions"][0]
    assert reader["nodeSettings"]["cpufreq"] == {"settings": [{"cpus": "", "governor": "performance"}]}
    (app_obj,) = data["objects"]["mlsysops"]
    assert app_obj["kind"] == "MLSysOpsApp" and app_obj["status"]["placed"] == "4/4"


def test_plan_yaml_without_objects(run: Any, example: tuple[Path, Path]) -> None:
    app, inventory = example
    result = run(
        "apps",
        "plan",
        "-f",
        app,
        "--inventory",
        inventory,
        "-o",
        "yaml",
        "--no-objects",
        "--policy",
        "staticPlacedComponents",
    )
    (data,) = yaml.safe_load(result.output)
    assert "objects" not in data and data["policy"] == "staticPlacedComponents"
    assert {d["component"]: d["cluster"] for d in data["decisions"]}["trainer"] == "uth-edge"


def test_explain_shows_candidates_reasons_and_the_choice(run: Any, example: tuple[Path, Path]) -> None:
    app, inventory = example
    result = run("apps", "explain", "camera-pipeline", "-f", app, "--inventory", inventory)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "camera-reader -> edge-1"
    assert "  edge-1     accepted  1.00   free capacity score 1.00" in lines
    assert "  rejected: continuum_layer 2, architecture 1" in lines
    rows = json.loads(
        run("apps", "explain", "camera-pipeline", "-f", app, "--inventory", inventory, "-o", "json").output
    )
    detector = next(r for r in rows if r["component"] == "detector")
    only = run(
        "apps", "explain", "camera-pipeline", "-f", app, "--inventory", inventory, "--component", "trainer"
    )
    assert only.output.splitlines()[0] == "trainer -> cloud-1" and "detector" not in only.output
    wrong = run(
        "apps", "explain", "camera-pipeline", "-f", app, "--inventory", inventory, "--component", "ui"
    )
    assert wrong.exit_code == 1 and "no component ui in app camera-pipeline" in wrong.output
    assert detector["rejectedCounts"] == {"continuum_layer": 1, "runtime_class_name": 1}


def test_explain_of_an_unknown_app_lists_the_known_ones(run: Any, example: tuple[Path, Path]) -> None:
    app, inventory = example
    result = run("apps", "explain", "nope", "-f", app, "--inventory", inventory)
    assert result.exit_code == 1
    assert "no app 'nope' in the given descriptions (apps: camera-pipeline)" in result.output


def test_invalid_descriptions_fail_with_the_field_path_and_write_nothing(
    run: Any, fixtures_dir: Path, tmp_path: Path
) -> None:
    bad = fixtures_dir / "invalid" / "bad_restart_policy.yaml"
    for args in (
        ("apps", "plan", "-f", bad, "--inventory", tmp_path),
        ("apps", "validate", "-f", bad),
        ("apps", "deploy", "-f", bad),
    ):
        result = run(*args)
        assert result.exit_code == 1
        assert (
            "Error: invalid description: "
            + str(bad)
            + ": MLSysOpsApp.components[0].restart_policy: expected "
            "one of Always, OnFailure, Never (got string 'on_failure')"
        ) in result.output
    assert list(tmp_path.iterdir()) == []


def test_validate_reports_valid_documents_and_unknown_fields(
    run: Any, fixtures_dir: Path, tmp_path: Path
) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        "MLSysOpsApp: {name: t, components: [{metadata: {name: w}, containers: [{image: x}], "
        "restart_polcy: Always}]}\n"
    )
    result = run("apps", "validate", "-f", fixtures_dir / "reference_app.yaml", "-f", typo)
    assert result.exit_code == 0
    assert "MLSysOpsApp  test-application" in result.output and "valid" in result.output
    assert "MLSysOpsApp.components[0].restart_polcy: unknown field" in result.output


def test_deploy_without_a_cluster_is_a_dry_run(run: Any, example: tuple[Path, Path]) -> None:
    app, inventory = example
    result = run("apps", "deploy", "-f", app, "--inventory", inventory, "-o", "json")
    assert result.exit_code == 0
    assert "plan mode (no cluster): nothing written" in result.output
    assert '"app": "camera-pipeline"' in result.output


def test_list_and_status_in_plan_mode(run: Any, example: tuple[Path, Path]) -> None:
    app, inventory = example
    listed = run("apps", "list", "-f", app, "--inventory", inventory)
    assert listed.output.splitlines()[1].split() == [
        "camera-pipeline",
        "default",
        "4",
        "Planned",
        "4/4",
        "staticPlacedComponents+constraintAwarePlacer",
    ]
    status = run("apps", "status", "camera-pipeline", "-f", app, "--inventory", inventory)
    assert status.output.startswith("app camera-pipeline: phase Planned, placed 4/4")
    assert "trainer        cloud-1  uth-edge  place" in status.output


def test_commands_that_need_a_system_say_how_to_give_one(run: Any) -> None:
    result = run("apps", "list")
    assert result.exit_code == 2 and "use -f FILE and/or --inventory DIR (plan mode)" in result.output
    deleted = run("apps", "delete", "camera-pipeline")
    assert deleted.exit_code == 1 and "delete needs a cluster (--kubeconfig or KUBECONFIG)" in deleted.output


def test_unknown_policy_is_a_clear_error(run: Any, example: tuple[Path, Path]) -> None:
    app, inventory = example
    result = run("apps", "plan", "-f", app, "--inventory", inventory, "--policy", "greedy")
    assert result.exit_code == 1
    assert (
        "unknown policy 'greedy': expected one of" in result.output
        and "constraintAwarePlacer" in result.output
    )


def test_nodes_and_clusters_list_from_an_inventory_directory(run: Any, example: tuple[Path, Path]) -> None:
    _, inventory = example
    nodes = run("nodes", "list", "--inventory", inventory)
    assert nodes.exit_code == 0
    assert nodes.output.splitlines()[3].split() == [
        "edge-2",
        "uth-edge",
        "edge",
        "amd64",
        "7/8",
        "14Gi/16Gi",
        "0",
        "runc",
    ]
    data = json.loads(run("nodes", "list", "--inventory", inventory, "-o", "json").output)
    assert [n["name"] for n in data] == ["cloud-1", "edge-1", "edge-2", "faredge-1"]
    clusters = json.loads(run("clusters", "list", "--inventory", inventory, "-o", "json").output)
    assert clusters == [
        {
            "cluster_id": "uth-edge",
            "described": True,
            "datacenter": None,
            "nodes": ["cloud-1", "edge-1", "edge-2", "faredge-1"],
        }
    ]


class Broken:
    name = "broken"

    def render(self, app: App, plan: Any) -> list[dict[str, Any]]:
        raise RuntimeError("boom")


def test_missing_or_failing_mechanisms_are_reported_not_fatal(example: tuple[Path, Path]) -> None:
    app_file, inventory = example
    apps = [d for d in load_documents(app_file) if isinstance(d, App)]
    (result,) = plan_apps(
        apps,
        Inventory.from_directory(inventory),
        PolicyRegistry.from_entry_points(),
        mechanisms=([Broken()], [Unavailable("local", "not installed")]),
    )  # type: ignore[list-item]
    data = result_dict(result)
    assert data["unavailableMechanisms"] == {
        "local": "not installed",
        "broken": "render failed: RuntimeError: boom",
    }
    assert list(data["objects"]) == ["mlsysops"]


def test_demo_tour_plans_the_examples_and_saves_the_full_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], agent_server: str
) -> None:
    from controller.demo import tour

    tour(tmp_path, None)
    out = capsys.readouterr().out
    assert "controller (plan mode): 4 nodes, 1 app(s)" in out
    assert "camera-reader  -> edge-1 + node settings cgroups, cpufreq" in out
    saved = json.loads((tmp_path / "plan-camera-pipeline.json").read_text())
    assert saved["app"] == "camera-pipeline" and "mlsysops" in saved["objects"]
    # every registered mechanism either rendered its objects or said why it could not
    assert {"kubernetes", "karmada", "nodeagent"} <= set(saved["objects"]) | set(
        saved["unavailableMechanisms"]
    )
    tour(tmp_path, agent_server)  # the live agent's node joins the inventory
    out = capsys.readouterr().out
    assert "controller (plan mode): 5 nodes" in out
    assert f"node grpc-node: edge, amd64, cluster uth-edge, live agent {agent_server}" in out


def test_plan_mode_reads_live_agents_too(run: Any, example: tuple[Path, Path], agent_server: str) -> None:
    _, inventory = example
    data = json.loads(
        run(
            "nodes",
            "list",
            "--inventory",
            inventory,
            "--agent",
            agent_server,
            "--agent-layer",
            "cloud",
            "--agent-cluster",
            "lab",
            "-o",
            "json",
        ).output
    )
    live = next(n for n in data if n["name"] == "grpc-node")
    assert live["cluster"] == "lab"
    assert (live["layer"], live["agent"], live["runtimes"], live["cpu"]) == (
        "cloud",
        agent_server,
        ["crun"],
        "1/1",
    )


class FakeStore:
    """Stands in for controller.kube.store.AppStore (the API-server side is ctl-kube's, tested there)."""

    def __init__(self, apps: dict[str, dict[str, Any]], nodes: list[dict[str, Any]]) -> None:
        self.apps, self.nodes = apps, nodes
        self.applied: list[dict[str, Any]] = []

    def apply_app(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(doc)
        return doc

    def list_apps(self) -> list[dict[str, Any]]:
        return list(self.apps.values())

    def get_app(self, name: str) -> dict[str, Any]:
        if name not in self.apps:
            raise LookupError(f'mlsysopsapps.mlsysops.eu "{name}" not found')
        return self.apps[name]

    def delete_app(self, name: str) -> None:
        self.get_app(name)
        del self.apps[name]

    def list_nodes(self) -> list[dict[str, Any]]:
        return self.nodes

    def list_clusters(self) -> list[dict[str, Any]]:
        return []


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch, examples_dir: Path, node_doc: Any) -> FakeStore:
    import controller.cli as cli

    report = json.loads(
        CliRunner()
        .invoke(
            main,
            [
                "apps",
                "plan",
                "-f",
                str(examples_dir / "app.yaml"),
                "--inventory",
                str(examples_dir / "inventory"),
                "-o",
                "json",
            ],
        )
        .output
    )
    stored = report[0]["objects"]["mlsysops"][0]
    store = FakeStore({"camera-pipeline": stored}, [node_doc("k8s-node", cluster_id="prod")])
    seen: list[tuple[str | None, str]] = []

    def fake_store(kubeconfig: str | None, namespace: str) -> FakeStore:
        seen.append((kubeconfig, namespace))
        return store

    monkeypatch.setattr(cli, "_store", fake_store)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    return store


def test_cluster_mode_reads_apps_status_and_explanations_from_the_server(cluster: FakeStore) -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["apps", "list"])
    assert listed.output.splitlines()[1].split()[:5] == ["camera-pipeline", "default", "4", "Planned", "4/4"]
    explained = runner.invoke(main, ["apps", "explain", "camera-pipeline"])
    assert explained.output.splitlines()[0] == "camera-reader -> edge-1"
    status = runner.invoke(main, ["apps", "status", "camera-pipeline", "-o", "json"])
    assert json.loads(status.output)["placed"] == "4/4"
    missing = runner.invoke(main, ["apps", "status", "nope"])
    assert missing.exit_code == 1 and 'mlsysopsapps.mlsysops.eu "nope" not found' in missing.output
    nodes = json.loads(runner.invoke(main, ["nodes", "list", "-o", "json"]).output)
    assert [(n["name"], n["cluster"]) for n in nodes] == [("k8s-node", "prod")]


def test_cluster_mode_deploys_validated_apps_and_deletes(
    cluster: FakeStore, examples_dir: Path, fixtures_dir: Path
) -> None:
    runner = CliRunner()
    bad = runner.invoke(
        main,
        [
            "apps",
            "deploy",
            "-f",
            str(examples_dir / "app.yaml"),
            "-f",
            str(fixtures_dir / "invalid" / "no_containers.yaml"),
        ],
    )
    assert bad.exit_code == 1 and cluster.applied == []  # all files validated before any write
    ok = runner.invoke(main, ["apps", "deploy", "-f", str(examples_dir / "app.yaml")])
    assert ok.output.strip() == "mlsysopsapp/camera-pipeline applied"
    (doc,) = cluster.applied
    assert doc["kind"] == "MLSysOpsApp" and doc["metadata"]["name"] == "camera-pipeline" and "spec" not in doc
    deleted = runner.invoke(main, ["apps", "delete", "camera-pipeline"])
    assert deleted.output.strip() == "mlsysopsapp/camera-pipeline deleted" and cluster.apps == {}
