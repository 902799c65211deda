"""The real daemons behind the dashboards and rules, with a private Prometheus scraping them.

A node agent (`python -m nodeagent` on a simulated node tree, as tests/nodeagent/e2e starts it)
and a far-edge bridge (on a private Mosquitto, as tests/faredge starts them) are driven into
every state a panel or an alert shows: applies that succeed and fail, drifted knobs, devices
online and offline over MQTT and serial, a twin out of sync, an over-the-air update rolled
back. The controller (`python -m controller --metrics-listen`, embedded, inventorying that
agent) holds an app no node fits and an app monitoring reports a QoS violation on. Debian's
Prometheus (controller.telemetry.prometheus) scrapes all three every second and loads
deploy/observability/rules, so recorded series and ALERTS are real too.

The agent and broker helpers are those suites' own (their conftest modules, loaded by path:
their fixtures are not needed, their classes are).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import json_format

from controller import store
from controller.mechanisms.local import GrpcWorkloadAgents, LocalMechanism
from controller.model import App, parse_document
from controller.policies.base import Decision, Plan
from controller.reconcile.qos import ANNOTATION_QOS
from controller.telemetry.prometheus import PrometheusHttp, PrometheusProcess, PrometheusSettings
from controller.telemetry.scrape import ScrapeSettings, ScrapeTarget, render, scrape_config
from controller.telemetry.targets import agent_scrape_targets
from faredge.bootstrap import Bridge, build
from faredge.broker import BrokerLayout
from faredge.channels.memory import memory_pair
from faredge.channels.mosquitto import MosquittoProcess, free_port, private_settings
from faredge.config import Config, PortSpec, SerialSettings
from faredge.protocol.frames import Frame, FrameType, encode_frame
from faredge.provision import init_broker
from faredge.testing import DeviceClient
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.testing import wait_for

TESTS = Path(__file__).resolve().parents[1]
RULES = TESTS.parent / "deploy" / "observability" / "rules" / "mlsysops.rules.yml"
GOVERNOR = "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
APP_MEMORY = "sys/fs/cgroup/mlsysops/app/memory.current"  # the simulated cgroup2 tree accounts no memory
GOOD = {
    "cpufreq": {"settings": [{"cpus": "0", "governor": "powersave"}]},
    "cgroups": {"groups": [{"path": "app", "cpu_weight": 200}]},
}
BRIDGE = "bridge-1"
# What the controller holds: a component no node fits (no node has the label), and a component
# monitoring reports missing its latency target.
NO_NODE_FITS = "riscv"
QOS_APP = "cam"


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass
class Stack:
    prometheus: PrometheusHttp
    agent_log: Path


def _app(name: str, component: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    meta = {"name": name, "namespace": "default", "annotations": annotations}
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": meta,
        "components": [component],
    }


def _start_controller(workdir: Path, agent: str, listen: str) -> subprocess.Popen[bytes]:
    """The embedded controller over its own store, inventorying the stack's agent and serving
    its metrics; with the faredge mechanism alone (and no bridge socket) it realises nothing,
    so the agent's applies and drift stay the test's own. The two apps go into its store."""
    db = workdir / "controller.db"
    with (workdir / "controller.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller",
                "--store",
                str(db),
                "--agent",
                agent,
                "--mechanism",
                "faredge",
                "--metrics-listen",
                listen,
                "--inventory-interval",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = store.open(db)
    try:
        container = {"image": "registry.example.com/solver:1"}
        api.apply(
            _app(
                NO_NODE_FITS,
                {
                    "metadata": {"name": "solver"},
                    "node_placement": {"labels": ["lidar"]},
                    "containers": [container],
                },
                {},
            ),
            field_manager="observability-test",
        )
        violation = {"component": "reader", "metric": "latency_ms", "node": "any", "observed": 85}
        api.apply(
            _app(
                QOS_APP,
                {"metadata": {"name": "reader"}, "containers": [container]},
                {ANNOTATION_QOS: json.dumps([violation])},
            ),
            field_manager="observability-test",
        )
    finally:
        api.close()
    return proc


def _profile(data: dict[str, Any]) -> pb.Profile:
    return json_format.ParseDict(data, pb.Profile())


def _drive_agent(agent: Any, env: Any) -> None:
    """Fast collectors; an apply that succeeds, one the host refuses (a knob that is a
    directory), and a knob changed behind the agent's back (drift). The app cgroup is charged
    1 MiB as the kernel would account it (the simulated tree has no memory accounting)."""
    stub = agent.stub()
    config = stub.GetTelemetryConfig(pb.GetTelemetryConfigRequest())
    fast = [pb.Collector(name=c.name, enabled=True, interval_ms=500) for c in config.collectors]
    stub.SetTelemetryConfig(pb.SetTelemetryConfigRequest(collectors=fast))
    stub.Apply(pb.ApplyRequest(profile=_profile(GOOD)))
    (env.fs_root / APP_MEMORY).write_text("1048576\n")
    with contextlib.suppress(grpc.RpcError):
        stub.Apply(
            pb.ApplyRequest(profile=_profile({"extensions": {"e2efiles": {"values": {"broken": "x"}}}}))
        )
    (env.fs_root / GOVERNOR).write_text("performance")


def _drive_bridge(bridge: Bridge, serial_end: Any, broker: Any, app: Path) -> list[DeviceClient]:
    """Devices in every state the devices dashboard shows (see the module docstring);
    `serial_end` is the device's end of the bridge's in-memory serial port."""
    birth = {"id": "ser1", "fw": "1", "board": "virtual", "boot": 2, "sensors": ["t"]}
    serial_end.write(encode_frame(Frame(FrameType.BIRTH, 0, json.dumps(birth).encode())))
    reported = {"id": "ser1", "version": 0, "settings": {}, "errors": {}}
    serial_end.write(encode_frame(Frame(FrameType.TWIN_REPORTED, 1, json.dumps(reported).encode())))
    clients = []
    for _ in range(2):
        dev_id, password = broker.device()
        clients.append(DeviceClient(broker.port, dev_id, password).start())
    online, gone = clients
    for dev in clients:
        dev.birth()
        dev.publish("telemetry", {"seq": 1, "up": 60, "mem_free": 20_000, "freq": 160, "r": {"temp": 21.5}})
    online.publish("telemetry", {"id": "forged", "seq": 1, "r": {}})  # an identity denial
    wait_for(lambda: all(d.id in bridge.registry for d in clients), what="births")
    gone.crash()  # its last will: offline
    bridge.router.set_desired(online.id, {"interval_ms": 500})  # never reported: out of sync
    assert bridge.ota is not None
    plan = bridge.ota.update([online.id], app)
    release = plan["devices"][0]["release"]
    online.publish("ota/status", {"r": release, "st": "rolled_back"})

    def rolled_back() -> bool:  # counted (faredge_ota_updates_total exists at 0 before it is)
        device = bridge.registry.find(online.id)
        return device is not None and device.ota is not None and device.ota.state == "rolled_back"

    wait_for(rolled_back, what="the update rolled back")
    return clients


def _scraping(
    prometheus: PrometheusProcess, agent: str, bridge_listen: str, controller_listen: str
) -> PrometheusHttp:
    """Start Prometheus on the agent's, the bridge's and the controller's /metrics, with the
    rules; wait until all three were scraped."""
    discovered = agent_scrape_targets([agent])
    assert not discovered.skipped, discovered.skipped
    bridge = ScrapeTarget("faredge", f"http://{bridge_listen}/metrics", {"bridge": BRIDGE})
    controller = ScrapeTarget("controller", f"http://{controller_listen}/metrics", {})
    targets = [*discovered.targets, bridge, controller]
    prometheus.start(targets)
    http = prometheus.http
    assert http is not None
    # The scrape config the controller generates, plus our rules (it has no rule_files of its own).
    text = render({**scrape_config(targets, prometheus.settings.scrape), "rule_files": [str(RULES)]})
    prometheus.config_path.write_text(text, encoding="utf-8")
    http.reload()

    def all_up() -> bool:
        health = [t["health"] for t in http.active_targets()]
        return health == ["up", "up", "up"]

    wait_for(all_up, 30, "the agent, the bridge and the controller scraped")
    return http


@contextlib.contextmanager
def observed_stack(workdir: Path) -> Iterator[Stack]:
    """Everything above running; yields once Prometheus has loaded the rules."""
    e2e = load_module("observability_nodeagent_e2e", TESTS / "nodeagent" / "e2e" / "conftest.py")
    faredge_fixtures = load_module("observability_faredge", TESTS / "faredge" / "conftest.py")
    env = e2e.AgentEnv(workdir / "agent")
    e2e.build_simulated_host(env.fs_root, cpus=2)
    (env.fs_root / "files" / "broken").mkdir(parents=True)
    env.write_config("drift: {interval_s: 0.2}\n")
    layout = BrokerLayout(workdir / "broker")
    port = free_port()
    mosquitto = MosquittoProcess(layout, port)
    password = init_broker(layout, private_settings(port))
    app = workdir / "app"
    app.mkdir()
    (app / "main.py").write_text("print('v2')\n")
    listen = f"127.0.0.1:{free_port()}"
    prometheus = PrometheusProcess(
        PrometheusSettings(workdir / "prometheus", scrape=ScrapeSettings(interval_s=1, timeout_s=0.9))
    )
    bridge: Bridge | None = None
    controller: subprocess.Popen[bytes] | None = None
    clients: list[DeviceClient] = []
    mosquitto.start()
    try:
        broker = faredge_fixtures.Broker(layout, port, mosquitto, password)
        agent = env.start()
        bridge_end, device_end = memory_pair("mem0")
        config = Config(
            state_dir=workdir / "bridge",
            control_socket=Path("/tmp") / f"fe-{uuid.uuid4().hex[:10]}.sock",
            metrics_listen=listen,
            nodeagent_target="",
            mqtt=broker.bridge_settings(),
            serial=SerialSettings(ports=(PortSpec(path="mem0"), PortSpec(path="mem1")), scan_interval_s=0.02),
        )
        bridge = build(
            config,
            resolve_port=lambda spec: spec.path if spec.path == "mem0" else None,
            open_port=lambda path, spec: bridge_end,
        )
        bridge.start()
        assert bridge.mqtt is not None
        wait_for(bridge.mqtt.connected.is_set, what="bridge connected")
        controller_listen = f"127.0.0.1:{free_port()}"
        controller = _start_controller(workdir, agent.target, controller_listen)
        http = _scraping(prometheus, agent.target, listen, controller_listen)
        # Everything happens once both are scraped, as on a fleet watched from the start
        # (a counter's first increment is then a visible increase).
        _drive_agent(agent, env)
        clients = _drive_bridge(bridge, device_end, broker, app)
        yield Stack(http, agent.log)
    finally:
        prometheus.stop()
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        if bridge is not None:
            bridge.stop()
        if controller is not None:
            controller.terminate()
            controller.wait(10)
        env.stop_all()
        mosquitto.stop()


WORKLOAD_APP: dict[str, Any] = {
    "MLSysOpsApp": {
        "name": "observe",
        "components": [
            {
                "metadata": {"name": "web"},
                "containers": [{"command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do :; done"]}],
            }
        ],
    }
}


@contextlib.contextmanager
def workload_stack(workdir: Path) -> Iterator[Stack]:
    """An app's component running on a real agent with a private containerd (as
    tests/nodeagent/runtimes runs them), placed by the controller's local mechanism, and a
    private Prometheus scraping the agent: the app dashboard's workload series."""
    runtimes = load_module("observability_runtimes", TESTS / "nodeagent" / "runtimes" / "conftest.py")
    runtimes._skip_unless_ready()  # root, containerd, runsc, busybox
    description = json.loads(json.dumps(WORKLOAD_APP))
    description["MLSysOpsApp"]["components"][0]["containers"][0]["image"] = runtimes.IMAGE
    app = parse_document(description)
    assert isinstance(app, App)
    plan = Plan("observe", "default", "test", (Decision("web", "node-1", None, "t"),), ("web",))
    daemon = runtimes.PrivateContainerd(workdir / "containerd")
    daemon.write_config()
    runtimes.make_catalog(daemon).ensure_dropin(restart=None)  # before containerd reads its config
    service = runtimes.make_service(daemon)
    agent = runtimes.Agent(daemon, workdir / "agent")
    agent.config.write_text(
        agent.config.read_text().replace(
            'metrics_listen: ""',
            f"metrics_listen: 127.0.0.1:{free_port()}\n  collectors:\n    workloads: {{interval_ms: 500}}",
        )
    )
    prometheus = PrometheusProcess(
        PrometheusSettings(workdir / "prometheus", scrape=ScrapeSettings(interval_s=1, timeout_s=0.9))
    )
    agents = GrpcWorkloadAgents()
    mechanism = LocalMechanism(agents, lambda node: f"unix:{agent.socket}")
    try:
        daemon.start()
        service.client.ensure_namespace()
        tarball = runtimes.write_oci_tarball(daemon.base / "busybox-oci.tar", runtimes.IMAGE)
        service.client.import_image(runtimes.read_tarball(tarball), runtimes.IMAGE)
        agent.start()
        result = mechanism.realize(app, plan)
        assert not result.pending, result.pending
        discovered = agent_scrape_targets([f"unix:{agent.socket}"])
        assert not discovered.skipped, discovered.skipped
        prometheus.start(discovered.targets)
        assert prometheus.http is not None
        yield Stack(prometheus.http, agent.workdir / "agent.log")
    finally:
        prometheus.stop()
        with contextlib.suppress(Exception):
            mechanism.remove("observe", "default")
        agents.close()
        agent.stop()
        service.client.close()
        daemon.destroy([runtimes.NAMESPACE, "default"])
        runtimes.remove_cgroups(runtimes.NAMESPACE)
