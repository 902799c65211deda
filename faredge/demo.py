"""The far-edge part of `make demo`: a private Mosquitto, the bridge daemon, and two virtual
boards running our MicroPython firmware, one over a pseudo-terminal (serial frames through
pyserial) and one over MQTT with its own credentials.

`bridge()` sets everything up and tears it down; `tour()` shows live telemetry and a twin change
taking effect on the device. Run alone with `python -m faredge.demo`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from faredge.broker import BRIDGE_USER, BrokerLayout
from faredge.channels.mosquitto import MosquittoProcess, free_port, private_settings, stop_process
from faredge.control import ControlClient
from faredge.errors import FarEdgeError, Unavailable
from faredge.provision import init_broker, provision_device
from mlsysops.testing import wait_for

SERIAL_ID = "demo-serial-1"
MQTT_ID = "demo-mqtt-1"


def _bridge_config(
    workdir: Path,
    broker_port: int,
    password: str,
    serial_port: str,
    metrics_port: int,
    nodeagent_target: str | None,
) -> Path:
    config = {
        "state_dir": str(workdir / "state"),
        "control_socket": str(workdir / "faredge.sock"),
        "log_interval_s": 10,
        "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker_port,
            "client_id": "demo-bridge",
            "username": BRIDGE_USER,
            "password": password,
        },
        "serial": {"scan_interval_s": 0.2, "ports": [{"path": serial_port, "id": SERIAL_ID}]},
        "nodeagent": {"target": nodeagent_target or "", "debounce_s": 0.3},
    }
    path = workdir / "faredge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def bridge(workdir: Path, nodeagent_target: str | None) -> Iterator[dict[str, Any]]:
    from faredge.virtual import MqttDevice, VirtualBoard  # engineer firmware's package

    workdir.mkdir(parents=True, exist_ok=True)
    layout = BrokerLayout(workdir / "broker")
    port = free_port()
    password = init_broker(layout, private_settings(port))
    device = provision_device(layout, MQTT_ID, board="virtual", host="127.0.0.1", port=port)
    with contextlib.ExitStack() as stack:
        broker = MosquittoProcess(layout, port)
        broker.start()
        stack.callback(broker.stop)
        board = stack.enter_context(
            VirtualBoard({"id": SERIAL_ID, "interval_ms": 1000}, workdir / "board-serial")
        )
        metrics_port = free_port()
        config = _bridge_config(workdir, port, password, board.port, metrics_port, nodeagent_target)
        log = open(workdir / "bridge.log", "w")  # noqa: SIM115 (closed by the exit stack)
        stack.callback(log.close)
        proc = subprocess.Popen(
            [sys.executable, "-m", "faredge", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        stack.callback(stop_process, proc)
        socket_path = workdir / "faredge.sock"
        wait_for(
            lambda: socket_path.exists() or proc.poll() is not None, timeout=20, what="bridge control socket"
        )
        if proc.poll() is not None:
            raise FarEdgeError(f"the bridge exited: {(workdir / 'bridge.log').read_text()[-2000:]}")
        # The device's OTA key, as provisioning gives it to a board (the controller's demo app
        # reaches this board over the air).
        ota_key = _ota_key(socket_path, MQTT_ID)
        mqtt_config = {"id": MQTT_ID, "interval_ms": 1000, "mqtt": device.config["mqtt"], "ota_key": ota_key}
        stack.enter_context(MqttDevice(mqtt_config, workdir / "board-mqtt"))
        yield {
            "socket": str(socket_path),
            "broker_port": port,
            "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
            "devices": [SERIAL_ID, MQTT_ID],
            "workdir": str(workdir),
            "config": str(config),
        }


def _ota_key(socket_path: Path, device_id: str) -> str:
    """The board's OTA key from the bridge (the socket answers once the bridge listens)."""
    client = ControlClient(socket_path)

    def key() -> str | None:
        try:
            return str(client.call({"op": "ota_key", "id": device_id})["ota_key"])
        except Unavailable:
            return None

    found: str = wait_for(key, timeout=20, what="the bridge's control socket answering")
    return found


def _cli(info: dict[str, Any], *args: str) -> None:
    from mlsysops.cli import main

    click.secho(f"$ mlsysops devices {' '.join(args)}", fg="cyan")
    main.main(["devices", "--socket", info["socket"], *args], standalone_mode=False)


def tour(info: dict[str, Any]) -> None:
    client = ControlClient(Path(info["socket"]))

    def device(device_id: str) -> dict[str, Any]:
        return client.call({"op": "show", "id": device_id})["device"]

    def ready() -> bool:
        try:
            return all(device(d)["online"] and device(d)["live"]["readings"] for d in info["devices"])
        except FarEdgeError:
            return False

    click.echo("waiting for both virtual boards to boot and send telemetry ...")
    wait_for(ready, timeout=60, what="both devices online with telemetry")
    _cli(info, "list")
    _cli(info, "show", SERIAL_ID)
    before = device(SERIAL_ID)["twin"]
    _cli(info, "set", SERIAL_ID, "interval_ms=500", "sensors=temp,light")
    start = time.monotonic()
    wait_for(
        lambda: (
            device(SERIAL_ID)["twin"]["reported_version"] > before["reported_version"]
            and device(SERIAL_ID)["in_sync"]
        ),
        timeout=30,
        what="reported version catches up",
    )
    click.echo(f"the device applied the change in {time.monotonic() - start:.2f}s:")
    _cli(info, "show", SERIAL_ID)
    with urllib.request.urlopen(info["metrics"], timeout=5) as response:
        lines = [
            line
            for line in response.read().decode().splitlines()
            if line.startswith(("faredge_device_reading", "faredge_device_online"))
        ]
    click.secho(f"$ curl {info['metrics']} | grep faredge_device_", fg="cyan")
    click.echo("\n".join(lines[:12]))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="faredge-demo-") as tmp, bridge(Path(tmp), None) as info:
        tour(info)


if __name__ == "__main__":
    main()
