"""The demo's live loop: an app submitted over REST runs in containers and is read back, then removed.

What runs, all real and private (loopback, the demo's containerd, cgroup root and work dir):
- a private Prometheus (Debian's), scraping the demo node agent's and the far-edge bridge's
  /metrics with a generated config (controller.telemetry: the agent says where it serves them);
- the REST API daemon (`mlsysops-api`, FastAPI on uvicorn, 127.0.0.1) over the embedded SQLite
  store, with the controller in-process (mechanisms `local` and `nodeagent`) and the performance
  routes answered from that Prometheus (`prometheus_url`); authentication on (a bearer token
  made by `mlsysops api token create`);
- two apps: `shop` through /api/v1/apps (web on runc, with a cpu_frequency hint and CPU/memory
  limits, i.e. node settings; sandbox under gVisor), `hello` through the reference's
  `POST /apps/deploy` body.

Each step prints what an operator would see: the status turning Deployed only once the agent
runs every workload, the workloads and node settings on the agent, live CPU and memory per
component, then the deletes and the proof that nothing of the apps is left on the node. Last,
the ML connector through the same daemon (demo/ml.py): a model trained on the recorded dataset
into an embedded MLflow registry, one prediction explained, and an app placed by the learning
policy with its decision's model explanation or fallback reason.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import yaml

from controller.telemetry.prometheus import PrometheusProcess, PrometheusSettings
from controller.telemetry.scrape import ScrapeSettings, ScrapeTarget
from controller.telemetry.targets import start_for_agents
from mlsysops.nodeapi import NodeAgentClient
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

T = TypeVar("T")
TIMEOUT_S = 120.0
RATE_SETTLE_S = 8.0  # seconds of samples behind the CPU rate shown
#: Some CPU to see (a counting loop with pauses; the image has no `[`), a clean exit on SIGTERM.
COUNT = "i=20000; while :; do i=$((i-1)); case $i in 0) break;; esac; done"
WORK = ["/bin/sh", "-c", f"trap 'exit 0' TERM; while :; do {COUNT}; sleep 0.2; done"]
IDLE = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]


def shop(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": "shop", "namespace": "default"},
        "components": [
            {
                "metadata": {"name": "web"},
                "qos_metrics": [
                    {
                        "application_metric_id": "latency_ms",
                        "target": 40,
                        "relation": "lower_or_equal",
                        "system_metrics_hints": ["cpu_frequency"],
                    }
                ],
                "containers": [
                    {
                        "image": image,
                        "command": WORK,
                        "platform_requirements": {"cpu": {"limits": "500m"}, "memory": {"limits": "128Mi"}},
                    }
                ],
            },
            {
                "metadata": {"name": "sandbox"},
                "runtime_class_name": "runsc",
                "containers": [{"image": image, "command": IDLE}],
            },
        ],
    }


def hello(image: str) -> dict[str, Any]:
    """The reference's wrapper form, as its CLI posts it to /apps/deploy."""
    return {
        "MLSysOpsApp": {
            "name": "hello",
            "components": [
                {"metadata": {"name": "greeter"}, "containers": [{"image": image, "command": IDLE}]}
            ],
        }
    }


def field(code: Path, device_node: str) -> dict[str, Any]:
    """A far-edge app: its one component is MicroPython code (an app directory), pinned to the
    demo's MQTT board, which the controller's faredge mechanism updates over the air."""
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": "field", "namespace": "default"},
        "components": [
            {
                "metadata": {"name": "sensor"},
                "node_placement": {"continuum_layer": ["far_edge"], "node": device_node},
                "containers": [{"image": f"file://{code}"}],
            }
        ],
    }


def tour(workdir: Path, agent_target: str, image: str, bridge_metrics: str = "",
         bridge_socket: str = "", ota_device: str = "") -> None:
    """The loop against the demo's agent; `bridge_metrics`: the far-edge bridge's /metrics URL,
    scraped too; with `bridge_socket` and `ota_device` (an MQTT board of that bridge), a far-edge
    app is rolled out to the board over the air as well."""
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        prometheus = PrometheusProcess(
            PrometheusSettings(workdir / "prometheus", scrape=ScrapeSettings(interval_s=1, timeout_s=0.9))
        )
        stack.callback(prometheus.stop)
        bridges = [ScrapeTarget("faredge", bridge_metrics, {"bridge": "demo"})] if bridge_metrics else []
        found = start_for_agents(prometheus, [agent_target], bridges)
        if found.skipped:
            raise click.ClickException(f"prometheus cannot scrape the agent: {'; '.join(found.skipped)}")
        click.echo(f"prometheus {prometheus.url} (pid {prometheus.pid}), config {prometheus.config_path}")
        with NodeAgentClient(agent_target) as client:  # per-workload usage every second, for the demo
            client.set_telemetry_config([pb.Collector(name="workloads", interval_ms=1000)])
        url = stack.enter_context(_api(workdir, agent_target, prometheus.url, bridge_socket))
        token = _token(workdir)
        api = stack.enter_context(
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        )
        _show("GET /api/v1/apps without a token", httpx.get(url + "/api/v1/apps", timeout=10))
        _show(
            "POST /api/v1/apps (shop: web on runc, sandbox under gVisor)",
            api.post("/api/v1/apps", json=shop(image)),
        )
        _show("POST /apps/deploy (the reference's body)", api.post("/apps/deploy", json=hello(image)))
        for name in ("shop", "hello"):
            _follow_status(api, name)
        _show("GET /apps/status/hello (reference shape)", api.get("/apps/status/hello"))
        if bridge_socket and ota_device:
            _far_edge(api, workdir, ota_device)
        _agent_view(agent_target)
        _performance(api)
        _scraped(prometheus)
        _show("DELETE /api/v1/apps/shop", api.delete("/api/v1/apps/shop"))
        _show("DELETE /apps/remove/hello (reference)", api.delete("/apps/remove/hello"))
        _wait(
            lambda: not _workloads(agent_target) and not _app_groups(agent_target),
            "the apps' workloads and node settings gone",
        )
        click.echo("the node runs no workload of either app and holds none of their settings")
        from demo import ml  # the ML connector through the same API (it imports this module)

        ml.tour(api, agent_target, image, admin_token=_token(workdir, "admin"))  # the mode is an admin's
        _show("GET /apps/list_all/ (reference shape)", api.get("/apps/list_all/"))


@contextmanager
def _api(workdir: Path, agent_target: str, prometheus_url: str, bridge_socket: str = "") -> Iterator[str]:
    """The API daemon (`mlsysops-api`) with the embedded controller in-process, on a loopback
    port; stopped with SIGTERM (uvicorn's clean shutdown, then the controller's)."""
    port = _free_port()
    config = workdir / "api.yaml"
    mechanisms = ["local", "nodeagent", *(["faredge"] if bridge_socket else [])]
    options = {
        "listen": f"127.0.0.1:{port}",
        "store_path": str(workdir / "controller.db"),
        "tokens_file": str(workdir / "tokens.json"),
        "policy_state": str(workdir / "policies.json"),
        "run_controller": True,
        "mechanisms": mechanisms,
        "agents": [agent_target],
        "prometheus_url": prometheus_url,
        # the ML part (demo/ml.py): an embedded MLflow registry; the daemon's default chain has
        # the learning policy, which its ML mode runs ahead of the heuristic placer
        "model_registry": str(workdir / "models"),
        "log_level": "warning",
        **({"bridge_socket": bridge_socket} if bridge_socket else {}),
    }
    config.write_text(yaml.safe_dump(options, sort_keys=False))
    click.secho(f"\n$ mlsysops-api --config {config}", fg="cyan")
    click.echo("  " + "\n  ".join(config.read_text().splitlines()))
    log = workdir / "api.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([_script("mlsysops-api"), "--config", str(config)], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                raise click.ClickException(
                    f"mlsysops-api exited {proc.returncode}: {log.read_text()[-2000:]}"
                )
            try:
                return httpx.get(url + "/manage/ping", timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        _wait(listening, "the API to listen")
        click.echo(
            f"REST API {url} (pid {proc.pid}; embedded store, controller in-process: "
            f"{', '.join(mechanisms)})"
        )
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _script(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    if not found.exists():
        raise click.ClickException(f"`{name}` is not installed (pip install -e '.[all]')")
    return str(found)


def _token(workdir: Path, role: str = "operator") -> str:
    command = [
        "mlsysops",
        "api",
        "token",
        "--tokens-file",
        str(workdir / "tokens.json"),
        "create",
        "--role",
        role,
    ]
    click.secho(f"\n$ {' '.join(command)}", fg="cyan")
    done = subprocess.run(
        [_script("mlsysops"), *command[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise click.ClickException(f"token create failed: {done.stderr.strip()}")
    click.echo(f"{done.stdout.strip()[:6]}… (hidden)\n{done.stderr.strip()}")
    return done.stdout.strip()


def _follow_status(api: httpx.Client, name: str) -> None:
    """Print each phase the status goes through until every workload runs (Ready)."""
    click.secho(f"\nGET /api/v1/apps/{name}/status, until Ready", fg="cyan")
    seen: list[str] = []

    def ready() -> dict[str, Any] | None:
        status = api.get(f"/api/v1/apps/{name}/status").json()
        if not seen or seen[-1] != status["phase"]:
            seen.append(status["phase"])
            click.echo(f"  phase {status['phase']}")
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        if status["phase"] == "Failed" and status.get("current"):
            raise click.ClickException(f"{name} failed: {conditions.get('Ready', {}).get('message')}")
        done = status.get("current") and conditions.get("Ready", {}).get("status") == "True"
        return status if done else None

    status = _wait(ready, f"{name} to be Ready")
    for comp in status.get("components") or []:
        conds = ", ".join(f"{c['type']}={c['status']} ({c['reason']})" for c in comp.get("conditions") or [])
        click.echo(f"  component {comp.get('name')} on node {comp.get('node')}: {conds}")


def _far_edge(api: httpx.Client, workdir: Path, device: str) -> None:
    """A far-edge app through the same API: the controller places its component on the board's
    MLSysOpsNode (published from the agent's device inventory) and hands its code to the bridge,
    which rolls it out over the air (signed manifest, A/B slot, confirmed after the reboot)."""
    from faredge.ota.bench import firmware_app  # the firmware, as a new release

    code = firmware_app(workdir, "1.1.0")
    _show(
        f"POST /api/v1/apps (field: MicroPython code {code.name}, over the air to {device})",
        api.post("/api/v1/apps", json=field(code, device)),
    )
    _follow_status(api, "field")
    board = api.get(f"/api/v1/devices/{device}").json()
    ota = board.get("ota") or {}
    click.echo(f"  device {device}: firmware {board.get('fw')}, "
               f"release {ota.get('release')} {ota.get('state')}")
    _show("DELETE /api/v1/apps/field", api.delete("/api/v1/apps/field"))


def _agent_view(target: str) -> None:
    """What the node agent itself says: the workloads (and their runtime), the node settings."""
    click.secho(f"\non the node agent ({target})", fg="cyan")
    for name, handler, status in _workloads(target):
        click.echo(f"  workload {name:<18} {status:<8} on {handler}")
    with NodeAgentClient(target) as client:
        state = client.state()
    for knob in state.knobs:  # the values (not the directories) the app's placement set
        if ("/shop/" in knob.key and not knob.key.endswith("/")) or knob.key.endswith("scaling_governor"):
            click.echo(f"  node setting {knob.key} = {knob.actual} (desired {knob.desired})")


def _performance(api: httpx.Client) -> None:
    click.secho("\nGET /api/v1/apps/shop/performance (live, from Prometheus)", fg="cyan")

    first: list[float] = []

    def measured() -> dict[str, Any] | None:
        """Both components measured, and the rate taken over a few seconds of samples (the
        first two can be one sample apart: the agent samples every second, as does Prometheus)."""
        perf = api.get("/api/v1/apps/shop/performance").json()
        comps = perf.get("components") or {}
        if any((comps.get(c) or {}).get("cpu_cores") is None for c in ("web", "sandbox")):
            return None
        first.append(first[0] if first else time.monotonic())
        return perf if time.monotonic() - first[0] >= RATE_SETTLE_S else None

    perf = _wait(measured, "Prometheus samples of each workload")
    for comp, values in sorted(perf["components"].items()):
        shown = ", ".join(f"{k} {_number(v)}" for k, v in sorted(values.items()))
        click.echo(f"  {comp:<8} {shown}")
    click.echo(f"  app      {', '.join(f'{k} {_number(v)}' for k, v in sorted(perf['app'].items()))}")
    click.echo(f"  qos      {json.dumps(perf.get('qos'), sort_keys=True)}")
    _show("GET /apps/performance/shop (reference shape)", api.get("/apps/performance/shop"))


def _scraped(prometheus: PrometheusProcess) -> None:
    """What Prometheus scrapes (the agent and the bridge) and a bridge series it holds."""
    assert prometheus.http is not None
    click.secho(f"\nprometheus targets ({prometheus.url}/api/v1/targets)", fg="cyan")
    for target in prometheus.http.active_targets():
        labels = target.get("labels") or {}
        where = labels.get("node") or labels.get("bridge")
        click.echo(f"  {labels.get('job'):<10} {where:<6} {target.get('scrapeUrl')}  {target.get('health')}")
    online = prometheus.http.query("faredge_device_online")
    shown = ", ".join(f"{s.labels.get('device')}={s.value:g}" for s in online) or "no sample yet"
    click.echo(f"  faredge_device_online: {shown}")


def _workloads(target: str) -> list[tuple[str, str, str]]:
    with NodeAgentClient(target) as client:
        found = client.workloads()
    return sorted(
        (w.spec.name, w.spec.handler or "runc", w.status)
        for w in found
        if w.spec.name.startswith(("shop.", "hello."))
    )


def _app_groups(target: str) -> list[str]:
    with NodeAgentClient(target) as client:
        profile = client.state().desired
    return [g.path for g in profile.cgroups.groups if "shop" in g.path or "hello" in g.path]


def _show(title: str, reply: httpx.Response) -> None:
    click.secho(f"\n{title}", fg="cyan")
    body = reply.text if len(reply.text) < 600 else reply.text[:600] + "…"
    click.echo(f"  {reply.status_code} {body}")
    if reply.status_code >= 500:
        raise click.ClickException(f"{title}: {reply.status_code}")


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def _wait(check: Callable[[], T | None], what: str, timeout: float = TIMEOUT_S) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise click.ClickException(f"timed out after {timeout:.0f} s waiting for {what}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
