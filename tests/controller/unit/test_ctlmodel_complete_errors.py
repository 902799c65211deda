"""Clear, complete errors (issue 12, defect 9), in plan mode through the CLI root: every
problem of a document at once, a bad inventory file reported and skipped, a node described
twice named with both files, the objects it would write counted by what receives them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from controller.model import DescriptionError, load_documents


@pytest.fixture
def inventory(examples_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the example inventory, to add files to."""
    copy = tmp_path / "inventory"
    shutil.copytree(examples_dir / "inventory", copy)
    return copy


def test_schema_and_semantic_problems_of_a_document_come_together_with_file_and_document(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "apps.yaml"
    bad.write_text(
        "MLSysOpsApp: {name: ok, components: [{metadata: {name: w}, containers: [{image: x}]}]}\n"
        "---\n"
        "MLSysOpsApp:\n"
        "  name: two\n"
        "  components:\n"
        "    - metadata: {name: a}\n"
        "      restart_policy: on_failure\n"  # schema
        "      depends_on: [ghost]\n"  # semantic
        "      containers: [{image: x, platform_requirements: {cpu: {requests: lots}}}]\n"  # semantic
    )
    with pytest.raises(DescriptionError) as info:
        load_documents(bad)
    text = str(info.value)
    assert text.startswith(f"{bad}, document 2: 3 problems:")
    assert "MLSysOpsApp.components[0].restart_policy: expected one of Always, OnFailure, Never" in text
    assert "MLSysOpsApp.components[0].depends_on" in text and "ghost" in text
    assert "MLSysOpsApp.components[0].containers[0].platform_requirements.cpu.requests" in text


def test_plan_mode_reports_and_skips_one_bad_inventory_file(
    run: Any, examples_dir: Path, inventory: Path
) -> None:
    broken = inventory / "zz-broken.yaml"
    broken.write_text("MLSysOpsNode: {name: lost, continuum_layer: moon}\n")
    result = run("apps", "plan", "-f", examples_dir / "app.yaml", "--inventory", inventory)
    assert result.exit_code == 0, result.output
    assert f"skipped inventory file: {broken}: " in result.output
    assert "MLSysOpsNode.continuum_layer: expected one of" in result.output
    assert "camera-reader  edge-1   uth-edge  place" in result.output  # the rest planned as before


def test_a_node_described_twice_is_an_error_naming_both_files(
    run: Any, examples_dir: Path, inventory: Path
) -> None:
    twin = inventory / "again.yaml"
    twin.write_text(
        "MLSysOpsNode: {name: edge-1, continuum_layer: edge, environment: {container_runtime: [containerd]},"
        " hardware: {cpu: {architecture: arm64, cores: 4}, memory: 8}}\n"
    )
    result = run("apps", "plan", "-f", examples_dir / "app.yaml", "--inventory", inventory)
    assert result.exit_code == 1
    assert f"'edge-1' is described in {twin} and in {inventory / 'nodes.yaml'}" in result.output


def test_plan_counts_kubernetes_objects_apart_from_what_goes_to_agents(run: Any, examples_dir: Path) -> None:
    result = run("apps", "plan", "-f", examples_dir / "app.yaml", "--inventory", examples_dir / "inventory")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("objects it would write"))
    assert "nodeagent: 1 NodeProfile (not a Kubernetes object)" in line
    kinds = [x for x in result.output.splitlines() if x.startswith("kind: ")]
    to_agents = ("kind: NodeProfile", "kind: NodeWorkload")  # nodeagent settings, local workloads
    kube = len([k for k in kinds if k not in to_agents])
    assert line.startswith(f"objects it would write ({kube} Kubernetes object(s); ")


def test_deploy_of_a_document_in_another_namespace_is_an_error(run: Any, tmp_path: Path) -> None:
    doc = tmp_path / "app.yaml"
    doc.write_text(
        "apiVersion: mlsysops.eu/v1\nkind: MLSysOpsApp\nmetadata: {name: w, namespace: mlsysops}\n"
        "components: [{metadata: {name: w}, containers: [{image: x}]}]\n"
    )
    result = run("apps", "deploy", "-f", doc, "-n", "default", "--inventory", tmp_path)
    assert result.exit_code == 1
    assert (
        f"{doc}: MLSysOpsApp.metadata.namespace: expected the namespace the command targets (default, "
        "from -n/--namespace)" in result.output
    )
    assert "(got 'mlsysops')" in result.output


def test_explain_shows_the_telemetry_a_placement_needs(run: Any, examples_dir: Path) -> None:
    result = run("apps", "explain", "camera-pipeline", "-f", examples_dir / "app.yaml",
                 "--inventory", examples_dir / "inventory", "--component", "camera-reader")
    assert result.exit_code == 0, result.output
    assert "telemetry: cpu every 5s, memory every 5s, cpufreq every 2s, cgroups every 10s" in result.output
