"""An OTA rig for tests and benchmarks: a private Mosquitto (passwords and ACLs as provisioned),
the bridge daemon (`python -m faredge`, reached through its control socket and metrics
endpoint only, like an operator would) and one virtual MQTT board whose config carries its OTA
key. `measure_ota(app_dir)` times one update end to end: from `update` to the bridge's
`confirmed` (download, verification, reset, trial boot, reconnect, confirmation).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from faredge.broker import BRIDGE_USER, BrokerLayout
from faredge.channels.mosquitto import MosquittoProcess, free_port, private_settings, stop_process
from faredge.control import ControlClient
from faredge.errors import FarEdgeError
from faredge.ota.rollout import OtaState
from faredge.provision import init_broker, provision_device
from faredge.virtual import MqttDevice
from mlsysops.testing import wait_for


@dataclass
class OtaRig:
    control: ControlClient
    socket: Path
    metrics_url: str
    board: MqttDevice
    broker: MosquittoProcess
    device: str
    log: Path

    def show(self) -> dict[str, Any]:
        device: dict[str, Any] = self.control.call({"op": "show", "id": self.device})["device"]
        return device

    def state(self) -> OtaState | None:
        ota = self.show().get("ota")
        return None if ota is None else OtaState.from_json(ota)

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the bridge's /metrics (0 when absent)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def key(self) -> bytes:
        return bytes.fromhex(self.control.call({"op": "ota_key", "id": self.device})["ota_key"])

    def update(self, app_dir: Path) -> int:
        """Start the update; its release number."""
        plan = self.control.call({"op": "update", "ids": [self.device], "app": str(app_dir)})
        release: int = plan["devices"][0]["release"]
        return release

    def wait_finished(self, release: int, timeout: float = 120.0) -> OtaState:
        """The update's end state (confirmed, rolled_back, failed) once the bridge recorded it."""

        def ended() -> OtaState | None:
            s = self.state()
            return s if s is not None and s.release == release and s.finished else None

        state: OtaState = wait_for(
            ended, timeout=timeout, what=f"OTA release {release} to end", interval=0.05
        )
        return state

    def wait_online(self, timeout: float = 60.0) -> None:
        def online() -> bool:
            try:
                return bool(self.show()["online"])
            except FarEdgeError:  # not known yet
                return False

        wait_for(online, timeout=timeout, what=f"{self.device} online", interval=0.05)


def _bridge_config(workdir: Path, port: int, password: str, metrics_port: int, socket: Path) -> Path:
    config = {
        "state_dir": str(workdir / "state"),
        "control_socket": str(socket),
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "client_id": BRIDGE_USER,
            "username": BRIDGE_USER,
            "password": password,
        },
        "nodeagent": {"target": ""},
    }
    path = workdir / "faredge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def ota_rig(workdir: Path, device: str = "ota-1", **board: Any) -> Iterator[OtaRig]:
    """Everything started and the board online; stopped (broker last) on exit. `board` goes
    into the virtual board's config (e.g. interval_ms)."""
    workdir.mkdir(parents=True, exist_ok=True)
    layout = BrokerLayout(workdir / "broker")
    port = free_port()
    password = init_broker(layout, private_settings(port))
    provisioned = provision_device(layout, device, board="virtual", host="127.0.0.1", port=port)
    broker = MosquittoProcess(layout, port)
    socket = Path("/tmp") / f"fe-ota-{uuid.uuid4().hex[:10]}.sock"  # unix socket paths stay short
    metrics_port = free_port()
    log_path = workdir / "bridge.log"
    with contextlib.ExitStack() as stack:
        broker.start()
        stack.callback(broker.stop)
        config = _bridge_config(workdir, port, password, metrics_port, socket)
        log = stack.enter_context(open(log_path, "w"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "faredge", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        stack.callback(stop_process, proc)
        wait_for(lambda: socket.exists() or proc.poll() is not None, timeout=30, what="bridge control socket")
        if proc.poll() is not None:
            raise FarEdgeError(f"the bridge exited: {log_path.read_text()[-2000:]}")
        control = ControlClient(socket)
        key: str = control.call({"op": "ota_key", "id": device})["ota_key"]  # no birth needed for it
        cfg = {"id": device, "interval_ms": 1000, **board, "mqtt": provisioned.config["mqtt"], "ota_key": key}
        dev = stack.enter_context(MqttDevice(cfg, workdir / "board"))
        rig = OtaRig(
            control, socket, f"http://127.0.0.1:{metrics_port}/metrics", dev, broker, device, log_path
        )
        rig.wait_online()
        yield rig


def measure_ota(app_dir: Path) -> float:
    """Seconds for one OTA of `app_dir` to a virtual board over MQTT, `update` to `confirmed`."""
    with tempfile.TemporaryDirectory(prefix="ota-bench-") as tmp, ota_rig(Path(tmp)) as rig:
        t0 = time.monotonic()
        release = rig.update(app_dir)
        state = rig.wait_finished(release, timeout=300)
        elapsed = time.monotonic() - t0
        if state.state != "confirmed":
            raise FarEdgeError(f"OTA ended {state.label()}: {rig.board.console[-2000:]}")
        return elapsed
