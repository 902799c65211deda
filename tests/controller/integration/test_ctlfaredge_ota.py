"""The faredge mechanism hands far-edge components to the real bridge: the controller (its real
composition root, against the stand-in API) starts an over-the-air rollout through the bridge
daemon's control socket (`python -m faredge`, private Mosquitto with passwords and ACLs), our
firmware in the real MicroPython (a virtual board) installs, reboots and confirms it, and the
app's status follows the rollout. Issue 12: far-edge components used to stay "awaiting far-edge
deployment" forever."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ctlkube_harness import NAMESPACE, Running

from controller.kube import resources as R
from controller.kube.api import KubeApi
from faredge.ota.bench import OtaRig, firmware_app, ota_rig, rig_unavailable
from mlsysops.testing import wait_for

FAREDGE_ONLY = ("faredge",)


def needs_rig() -> None:
    if (why := rig_unavailable()) is not None:
        pytest.skip(why)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[OtaRig]:
    needs_rig()
    with ota_rig(tmp_path / "rig", devices=[f"d{uuid.uuid4().hex[:8]}"]) as board:
        yield board


def device_node(kube: KubeApi, device: str) -> None:
    kube.apply(
        {
            "apiVersion": "mlsysops.eu/v1",
            "kind": "MLSysOpsNode",
            "metadata": {"name": device, "namespace": NAMESPACE},
            "continuum_layer": "far_edge",
            "environment": {"node_type": "bare_metal", "container_runtime": ["emb_serve"]},
            "hardware": {"mcu": {"architecture": "arm-M4", "flash": "2MB", "cores": 1}, "memory": 0},
        },
        field_manager="test-admin",
    )


def field_app(code: str, generation_note: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": "field", "namespace": NAMESPACE,
                     "annotations": {"note": generation_note} if generation_note else {}},
        "components": [{
            "metadata": {"name": "sensor"},
            "node_placement": {"continuum_layer": ["far_edge"]},
            "containers": [{"image": code, "platform_requirements": {"mcu": {"architecture": ["arm-m4"]}}}],
        }],
    }


def app_status(kube: KubeApi) -> dict[str, Any]:
    return kube.get(R.APP, NAMESPACE, "field").get("status") or {}


def phase_of(kube: KubeApi, phase: str, generation: int) -> dict[str, Any] | None:
    s = app_status(kube)
    return s if s.get("phase") == phase and s.get("observedGeneration") == generation else None


def conditions(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in s.get("conditions", [])}


def code_record(kube: KubeApi, device: str) -> dict[str, Any] | None:
    record: dict[str, Any] | None = (kube.get(R.NODE, NAMESPACE, device).get("status") or {}).get("code")
    return record


def test_a_far_edge_component_is_rolled_out_over_the_air_once_and_survives_a_restart(
        rig: OtaRig, kube: KubeApi, controllers: Running, tmp_path: Path) -> None:
    device_node(kube, rig.device)
    missing = tmp_path / "nowhere"
    kube.apply(field_app(f"file://{missing}"), field_manager="test-user")
    controller = controllers.start(bridge_socket=rig.socket, mechanisms=FAREDGE_ONLY)

    # Bad input: the bridge refuses a directory that is not there; the app fails saying so.
    failed = wait_for(lambda: phase_of(kube, "Failed", 1), timeout=30, what="field Failed")
    ready = conditions(failed)["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "Failed"
    refused = (f"sensor on {rig.device}: the bridge refused the update: invalid app: {missing}"
               " is not a directory")
    assert refused in ready["message"]
    assert conditions(failed)["Progressing"]["reason"] == "Failed"
    assert rig.show()["ota"] is None and code_record(kube, rig.device) is None  # nothing was started

    app_dir = firmware_app(tmp_path, "2.0.0")
    kube.apply(field_app(f"file://{app_dir}"), field_manager="test-user")
    rolling = wait_for(lambda: (s := phase_of(kube, "Deploying", 2)) and conditions(s)["Progressing"],
                       timeout=60, what="generation 2 Progressing while the board updates")
    assert rolling["status"] == "True" and "far-edge update in progress: sensor on" in rolling["message"]
    ready = wait_for(lambda: phase_of(kube, "Deployed", 2), timeout=120, what="Deployed (OTA confirmed)")
    assert conditions(ready)["Ready"]["status"] == "True"
    shown = rig.show()
    assert shown["fw"] == "2.0.0" and shown["ota"]["state"] == "confirmed"
    record = code_record(kube, rig.device)
    assert record == {"app": f"{NAMESPACE}/field", "component": "sensor", "code": str(app_dir),
                      "release": shown["ota"]["release"], "version": "2.0.0"}
    assert {p["component"]: p["node"] for p in ready["placement"]} == {"sensor": rig.device}

    # A restarted controller finds the rollout done: no new release, the app stays Ready.
    controllers.stop(controller)
    controller = controllers.start(bridge_socket=rig.socket, mechanisms=FAREDGE_ONLY)
    wait_for(lambda: controller.outcomes.get("field") is not None, timeout=30, what="a reconcile")
    assert controller.outcomes["field"].phase == "Deployed"
    assert rig.show()["ota"]["release"] == record["release"]

    # New code: a new rollout, Progressing until the board confirmed it.
    app2 = firmware_app(tmp_path, "2.1.0")
    kube.apply(field_app(str(app2)), field_manager="test-user")
    wait_for(lambda: phase_of(kube, "Deployed", 3), timeout=120, what="generation 3 Deployed")
    shown = rig.show()
    assert shown["fw"] == "2.1.0" and shown["ota"]["release"] > record["release"]
    assert code_record(kube, rig.device)["version"] == "2.1.0"  # type: ignore[index]

    # Removed while the controller is down: the next one releases the device at start (its
    # firmware keeps running the last confirmed release).
    controllers.stop(controller)
    kube.delete(R.APP, NAMESPACE, "field")
    controllers.start(bridge_socket=rig.socket, mechanisms=FAREDGE_ONLY)
    wait_for(lambda: code_record(kube, rig.device) is None, timeout=30, what="the device's record dropped")
    assert rig.show()["fw"] == "2.1.0"


def test_a_release_the_device_refuses_fails_the_app_with_its_reason_and_is_not_pushed_again(
        kube: KubeApi, controllers: Running, tmp_path: Path) -> None:
    needs_rig()
    device = f"o{uuid.uuid4().hex[:8]}"
    with ota_rig(tmp_path / "rig", devices=[device], bad_keys=[device]) as rig:  # a key not its own
        device_node(kube, rig.device)
        app_dir = firmware_app(tmp_path, "3.0.0")
        kube.apply(field_app(str(app_dir)), field_manager="test-user")
        controller = controllers.start(bridge_socket=rig.socket, mechanisms=FAREDGE_ONLY)
        failed = wait_for(lambda: phase_of(kube, "Failed", 1), timeout=60, what="field Failed")
        ota = rig.show()["ota"]
        assert ota["state"] == "failed" and ota["reason"]
        reason = f"sensor on {rig.device}: release {ota['release']} failed: {ota['reason']}"
        assert reason in conditions(failed)["Ready"]["message"]
        assert rig.show()["fw"] == "1.0.0"  # still the verified serial install
        controller.requeue_all()
        time.sleep(1.0)  # what a retry would take to start: none starts
        assert rig.show()["ota"]["release"] == ota["release"]
        assert app_status(kube)["phase"] == "Failed"
        assert code_record(kube, rig.device)["release"] == ota["release"]  # type: ignore[index]
        kube.delete(R.APP, NAMESPACE, "field")  # removed while the controller runs
        wait_for(lambda: code_record(kube, rig.device) is None, timeout=30, what="the record dropped")
