"""`mlsysops apps|nodes|clusters ... --api URL` and `mlsysops api devices ... --api URL`: the CLI's
commands through a live REST API (uvicorn on loopback) over the stand-in Kubernetes API."""

from __future__ import annotations

import json

import pytest
import yaml
from api_harness import DATA, LiveApi, yaml_docs
from click.testing import CliRunner

from controller.api.app import create_app
from controller.api.bridge import BridgeDevices
from controller.api.context import ApiContext
from controller.cli import apps, clusters, nodes
from controller.kube import resources as R
from controller.model import to_kubernetes_form
from faredge.cli import devices


@pytest.fixture
def live(store, tokens, monkeypatch, tmp_path):
    for doc in yaml_docs(DATA / "inventory" / "nodes.yaml") + yaml_docs(DATA / "inventory" / "cluster.yaml"):
        store.apply({**doc, "metadata": {**doc["metadata"], "namespace": "default"}}, field_manager="test")
    monkeypatch.setenv("MLSYSOPS_API_CONFIG", str(tmp_path / "none.yaml"))
    with LiveApi(create_app(ApiContext(store, tokens))) as server:
        yield server


def run(command, args, token=None, env=None):
    environment = {"MLSYSOPS_API_TOKEN": token} if token else {}
    return CliRunner().invoke(command, args, env={**environment, **(env or {})})


def test_deploy_list_status_delete_through_the_api(live, tokens, store, tmp_path):
    operator, _ = tokens.create("operator")
    app = tmp_path / "app.yaml"
    app.write_text(yaml.safe_dump(to_kubernetes_form(yaml_docs(DATA / "app.yaml")[0])[1]))
    r = run(apps, ["deploy", "-f", str(app), "--api", live.url], operator)
    assert r.exit_code == 0, r.output
    assert "mlsysopsapp/camera-pipeline applied" in r.output
    assert (
        store.get(R.APP, "default", "camera-pipeline")["metadata"]["managedFields"][0]["manager"]
        == "mlsysops-api"
    )
    r = run(apps, ["list", "--api", live.url, "-o", "json"], operator)
    assert r.exit_code == 0 and json.loads(r.output)[0]["name"] == "camera-pipeline"
    r = run(apps, ["status", "camera-pipeline", "-o", "json"], operator, {"MLSYSOPS_API_URL": live.url})
    assert r.exit_code == 0 and json.loads(r.output) == {}  # the controller has not written one yet
    r = run(apps, ["delete", "camera-pipeline", "--api", live.url], operator)
    assert r.exit_code == 0 and store.list(R.APP, "default")[0] == []


def test_nodes_and_clusters_through_the_api(live, tokens):
    viewer, _ = tokens.create("viewer")
    r = run(nodes, ["list", "--api", live.url, "-o", "json"], viewer)
    assert r.exit_code == 0, r.output
    rows = {n["name"]: n for n in json.loads(r.output)}
    assert sorted(rows) == ["cloud-1", "edge-1", "edge-2"] and "nvidia" in rows["cloud-1"]["runtimes"]
    r = run(clusters, ["list", "--api", live.url, "-o", "json"], viewer)
    assert r.exit_code == 0 and "uth-edge" in r.output


def test_errors_are_one_line_naming_the_status_and_field(live, tokens, tmp_path):
    viewer, _ = tokens.create("viewer")
    app = tmp_path / "app.yaml"
    app.write_text(yaml.safe_dump(to_kubernetes_form(yaml_docs(DATA / "app.yaml")[0])[1]))
    r = run(apps, ["deploy", "-f", str(app), "--api", live.url], viewer)
    assert r.exit_code == 1 and "403" in r.output and "needs operator" in r.output
    r = run(apps, ["list", "--api", live.url])
    assert r.exit_code == 1 and "401" in r.output
    r = run(apps, ["status", "nope", "--api", live.url], viewer)
    assert r.exit_code == 1 and "404" in r.output and "nope" in r.output


def test_the_token_can_come_from_the_client_config_file(live, tokens, tmp_path, monkeypatch):
    viewer, _ = tokens.create("viewer")
    (tmp_path / "client.yaml").write_text(yaml.safe_dump({"token": viewer}))
    monkeypatch.setenv("MLSYSOPS_API_CONFIG", str(tmp_path / "client.yaml"))
    assert run(apps, ["list", "--api", live.url]).exit_code == 0


def test_devices_without_a_bridge_say_so(live, tokens):
    viewer, _ = tokens.create("viewer")
    r = run(devices, ["--api", live.url, "list"], viewer)
    assert r.exit_code == 1 and "503" in r.output and "no far-edge bridge configured" in r.output


def test_the_bridge_devices_group_through_the_api(store, tokens, bridge, monkeypatch, tmp_path):
    """`mlsysops devices --api URL list|show|set|unset`: the bridge's own command group, its
    validation first (a bad value never leaves the CLI), then the API, then the bridge."""
    path, downlink = bridge
    monkeypatch.setenv("MLSYSOPS_API_CONFIG", str(tmp_path / "none.yaml"))
    operator, _ = tokens.create("operator")
    with LiveApi(create_app(ApiContext(store, tokens, devices=BridgeDevices(path)))) as server:
        r = run(devices, ["--api", server.url, "list", "-o", "json"], operator)
        assert r.exit_code == 0, r.output
        assert [d["id"] for d in json.loads(r.output)] == ["sensor-7"]
        r = run(devices, ["--api", server.url, "set", "sensor-7", "interval_ms=500"], operator)
        assert r.exit_code == 0, r.output
        assert downlink.sent[-1][1]["settings"] == {"interval_ms": 500}
        r = run(devices, ["--api", server.url, "set", "sensor-7", "interval_ms=5"], operator)
        assert r.exit_code != 0 and "interval_ms" in r.output and len(downlink.sent) == 1
        r = run(devices, ["--api", server.url, "unset", "sensor-7", "interval_ms"], operator)
        assert r.exit_code == 0 and downlink.sent[-1][1]["settings"] == {}
        r = run(devices, ["--api", server.url, "show", "ghost"], operator)
        assert r.exit_code == 1 and "404" in r.output
