"""An OTA rig for tests and benchmarks: a private Mosquitto (passwords and ACLs as provisioned),
the bridge daemon (`python -m faredge`, reached through its control socket and metrics
endpoint only, like an operator would) and one virtual MQTT board whose config carries its OTA
key. `measure_ota(app_dir)` times one update end to end: from `update` to the bridge's
`confirmed` (download, verification, reset, trial boot, reconnect, confirmation).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from faredge.broker import BRIDGE_USER, BrokerLayout
from faredge.channels.mosquitto import (
    MosquittoProcess,
    free_port,
    mosquitto_binary,
    private_settings,
    stop_process,
)
from faredge.control import ControlClient
from faredge.errors import FarEdgeError, Unavailable
from faredge.ota.rollout import OtaState
from faredge.provision import init_broker, provision_device
from faredge.virtual import MqttDevice
from faredge.virtual.firmware import firmware_dir
from faredge.virtual.host import HostUnavailable, find_host
from mlsysops.testing import wait_for


@dataclass
class OtaRig:
    control: ControlClient
    socket: Path
    metrics_url: str
    boards: dict[str, MqttDevice]  # by device id, in the order given
    broker: MosquittoProcess
    log: Path

    @property
    def device(self) -> str:
        """The first board's id (most tests have one board)."""
        return next(iter(self.boards))

    @property
    def board(self) -> MqttDevice:
        return self.boards[self.device]

    def show(self, device: str | None = None) -> dict[str, Any]:
        shown: dict[str, Any] = self.control.call({"op": "show", "id": device or self.device})["device"]
        return shown

    def state(self, device: str | None = None) -> OtaState | None:
        ota = self.show(device).get("ota")
        return None if ota is None else OtaState.from_json(ota)

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text: str = resp.read().decode()
        return text

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the bridge's /metrics (0 when absent)."""
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def key(self) -> bytes:
        return bytes.fromhex(self.control.call({"op": "ota_key", "id": self.device})["ota_key"])

    def update(self, app_dir: Path) -> int:
        """Start the update of the first board; its release number."""
        release: int = self.rollout(app_dir, [self.device])["devices"][0]["release"]
        return release

    def rollout(self, app_dir: Path, ids: list[str] | None, **limits: int) -> dict[str, Any]:
        """Start a rollout (ids None: every device); the bridge's plan."""
        plan: dict[str, Any] = self.control.call({"op": "update", "ids": ids, "app": str(app_dir), **limits})
        return plan

    def wait_finished(self, release: int, timeout: float = 120.0, device: str | None = None) -> OtaState:
        """The update's end state (confirmed, rolled_back, failed) once the bridge recorded it."""

        def ended() -> OtaState | None:
            s = self.state(device)
            return s if s is not None and s.release == release and s.finished else None

        state: OtaState = wait_for(
            ended, timeout=timeout, what=f"OTA release {release} to end", interval=0.05
        )
        return state

    def wait_online(self, timeout: float = 60.0) -> None:
        """Until every board is online."""

        def online() -> bool:
            try:
                return all(self.show(d)["online"] for d in self.boards)
            except FarEdgeError:  # not known yet
                return False

        wait_for(online, timeout=timeout, what="the boards online", interval=0.05)


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
def ota_rig(
    workdir: Path, devices: Sequence[str] = ("ota-1",), bad_keys: Sequence[str] = (), **board: Any
) -> Iterator[OtaRig]:
    """Everything started and the boards online; stopped (broker last) on exit. `board` goes
    into every virtual board's config (e.g. interval_ms); the boards in `bad_keys` get a key that
    is not theirs (they refuse every manifest)."""
    workdir.mkdir(parents=True, exist_ok=True)
    layout = BrokerLayout(workdir / "broker")
    port = free_port()
    password = init_broker(layout, private_settings(port))
    provisioned = {
        d: provision_device(layout, d, board="virtual", host="127.0.0.1", port=port) for d in devices
    }
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

        def answers() -> bool:  # the socket file exists once bound, before the bridge listens
            if proc.poll() is not None:
                return True
            with contextlib.suppress(Unavailable):
                control.call({"op": "list"})
                return True
            return False

        wait_for(answers, timeout=30, what="bridge control socket answering")
        if proc.poll() is not None:
            raise FarEdgeError(f"the bridge exited: {log_path.read_text()[-2000:]}")
        boards = {}
        for d in devices:
            key: str = control.call({"op": "ota_key", "id": d})["ota_key"]  # no birth needed for it
            if d in bad_keys:
                key = "00" * 32
            cfg = {
                "id": d,
                "interval_ms": 1000,
                **board,
                "mqtt": provisioned[d].config["mqtt"],
                "ota_key": key,
            }
            boards[d] = stack.enter_context(MqttDevice(cfg, workdir / f"board-{d}"))
        rig = OtaRig(control, socket, f"http://127.0.0.1:{metrics_port}/metrics", boards, broker, log_path)
        rig.wait_online()
        yield rig


def rig_unavailable() -> str | None:
    """Why an OTA rig cannot run on this machine (tests skip with it), or None: it needs Debian's
    mosquitto (with mosquitto_passwd) and the MicroPython WebAssembly host under Node.js."""
    if mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        return "needs the Debian mosquitto package (mosquitto, mosquitto_passwd)"
    try:
        find_host()
    except HostUnavailable as exc:
        return f"no MicroPython WebAssembly host: {exc}"
    return None


def firmware_app(root: Path, version: str, extra: int = 0, salt: int = 0) -> Path:
    """A release of our firmware as an app directory under `root`: FW_VERSION set to `version`,
    plus `extra` bytes of data (`salt` varies them) for a longer download: a data file, shipped
    as it is (a module would shrink when compiled for the board)."""
    app = root / f"app-{version}"
    shutil.copytree(firmware_dir(), app, ignore=shutil.ignore_patterns("__pycache__"))
    src = (app / "app.py").read_text()
    (app / "app.py").write_text(src.replace('FW_VERSION = "1.0.0"', f'FW_VERSION = "{version}"'))
    if extra:
        (app / "extra.dat").write_bytes(random.Random(salt).randbytes(extra))
    return app


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
