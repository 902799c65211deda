"""REST API benchmark: submit-to-running in embedded mode, and status reads against a bare ASGI app.

Everything real and private: a containerd 1.6 of its own (root, state, socket; removed
afterwards) with the busybox test image, a node agent with runtimes on it, and the API daemon
(`python -m controller.api --run-controller`) on the embedded SQLite store with the `local` and
`nodeagent` mechanisms. Then:

- submit_to_running_p50_ms / _p99_ms: an app of two components (one on runc, one under gVisor)
  POSTed to /api/v1/apps until its status says Ready (which the controller sets only once the
  agent verified every workload runs), checked against the agent's own workload list; then
  deleted and waited for until the agent runs none of it, before the next cycle;
- status_rps: authenticated GET /api/v1/apps/{name}/status from 4 client processes (one
  keep-alive connection each) for 10 s, with the controller running in the daemon;
- baseline_rps: the same route, clients and server (FastAPI on uvicorn, access log off) on a
  bare hello-world app answering a constant, measured in the same run (both servers up, read
  in alternating 2.5 s slices, so a change of load on the machine weighs on both alike);
- status_vs_baseline_ratio: status_rps / baseline_rps (goal: at least 0.5).

The last line printed is one JSON object. Run as root: `python bench/api.py [--cycles 8]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "nodeagent" / "runtimes"))  # the test agent process
sys.path.insert(0, str(REPO))  # the demo's private containerd (demo/containerd.py)

import httpx  # noqa: E402
from agentproc import IMAGE, NAMESPACE, Agent  # noqa: E402

from controller.api.tokens import TokenStore  # noqa: E402
from demo.containerd import private_containerd  # noqa: E402
from mlsysops.nodeapi import NodeAgentClient  # noqa: E402

CLIENTS = 4
READ_SECONDS = 10.0
SLICES = 4  # each side reads READ_SECONDS / SLICES at a time, alternately
WORKLOAD = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]
BASELINE = """
import sys
import uvicorn
from fastapi import FastAPI
app = FastAPI()
@app.get("/api/v1/apps/{name}/status")
def status(name: str) -> dict:
    return {"name": name, "phase": "Deployed"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def description(name: str) -> dict[str, Any]:
    container = {"image": IMAGE, "command": WORKLOAD}
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": name, "namespace": "default"},
        "components": [
            {"metadata": {"name": "web"}, "containers": [container]},
            {"metadata": {"name": "sandbox"}, "runtime_class_name": "runsc", "containers": [container]},
        ],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait(check: Callable[[], bool], timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what}")


def ready(status: dict[str, Any]) -> bool:
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return bool(status.get("current")) and conditions.get("Ready") == "True"


def running_workloads(agent: Agent, prefix: str) -> set[str]:
    with NodeAgentClient(f"unix:{agent.socket}") as client:
        return {
            w.spec.name
            for w in client.workloads()
            if w.spec.name.startswith(prefix) and w.status == "running"
        }


def agent_workloads(agent: Agent, prefix: str) -> set[str]:
    with NodeAgentClient(f"unix:{agent.socket}") as client:
        return {w.spec.name for w in client.workloads() if w.spec.name.startswith(prefix)}


def reader(url: str, token: str, seconds: float, counts: Any, index: int) -> None:
    """One client: a keep-alive connection reading `url` as fast as it answers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ok = errors = 0
    with httpx.Client(headers=headers, timeout=10) as client:
        client.get(url)  # connect (not counted)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if client.get(url).status_code == 200:
                ok += 1
            else:
                errors += 1
    counts[index * 2], counts[index * 2 + 1] = ok, errors


def read_count(url: str, token: str, seconds: float) -> tuple[int, int]:
    """Answers and failures of CLIENTS processes reading `url` for `seconds`."""
    counts = multiprocessing.Array("l", CLIENTS * 2)
    procs = [
        multiprocessing.Process(target=reader, args=(url, token, seconds, counts, i)) for i in range(CLIENTS)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(seconds + 30)
    return sum(counts[i * 2] for i in range(CLIENTS)), sum(counts[i * 2 + 1] for i in range(CLIENTS))


def read_rates(api: tuple[str, str], bare: tuple[str, str]) -> dict[str, float]:
    """READ_SECONDS on each server, in alternating slices: a load change on this shared machine
    then weighs on both sides alike instead of on whichever ran second."""
    totals = {"status": [0, 0], "baseline": [0, 0]}
    for _ in range(SLICES):
        for key, (url, token) in (("status", api), ("baseline", bare)):
            ok, errors = read_count(url, token, READ_SECONDS / SLICES)
            totals[key][0] += ok
            totals[key][1] += errors
    return {
        "status_rps": totals["status"][0] / READ_SECONDS,
        "status_errors": totals["status"][1],
        "baseline_rps": totals["baseline"][0] / READ_SECONDS,
        "baseline_errors": totals["baseline"][1],
    }


class Server:
    """A server process on a loopback port; stopped with SIGTERM."""

    def __init__(self, argv: list[str], log: Path, ping: str) -> None:
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, cwd=REPO)
        self.log = log

        def up() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit(f"{argv[:4]} exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                return httpx.get(ping, timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        wait(up, 60, f"{argv[:4]} to listen", 0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def api_config(workdir: Path, agent: Agent, port: int) -> Path:
    config = workdir / "api.yaml"
    config.write_text(
        json.dumps(
            {
                "listen": f"127.0.0.1:{port}",
                "store_path": str(workdir / "controller.db"),
                "tokens_file": str(workdir / "tokens.json"),
                "policy_state": str(workdir / "policies.json"),
                "run_controller": True,
                "mechanisms": ["local", "nodeagent"],
                "agents": [f"unix:{agent.socket}"],
                "log_level": "warning",
            }
        )
    )
    return config


def submit_cycles(api: httpx.Client, agent: Agent, cycles: int) -> list[float]:
    times: list[float] = []
    for i in range(cycles):
        name = f"bench-{i}"
        start = time.perf_counter()
        answer = api.post("/api/v1/apps", json=description(name))
        if answer.status_code != 201:
            raise SystemExit(f"submit {name}: {answer.status_code} {answer.text}")
        wait(lambda n=name: ready(api.get(f"/api/v1/apps/{n}/status").json()), 120, f"{name} Ready")
        times.append((time.perf_counter() - start) * 1000)
        expected = {f"{name}.web.0", f"{name}.sandbox.0"}
        if running_workloads(agent, f"{name}.") != expected:
            raise SystemExit(f"{name} Ready but the agent runs {running_workloads(agent, name + '.')}")
        api.delete(f"/api/v1/apps/{name}").raise_for_status()
        wait(lambda n=name: not agent_workloads(agent, f"{n}."), 120, f"{name}'s workloads removed", 0.05)
    return times


def measure_api(
    base: Path, agent: Agent, servers: list[Server], cycles: int
) -> tuple[list[float], dict[str, float]]:
    """Start the API daemon and the bare app (appended to `servers`), time submit-to-running,
    then read the status from both."""
    token, _ = TokenStore(base / "tokens.json").create("operator", name="bench")
    port, bare_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{port}"
    servers.append(
        Server(
            [sys.executable, "-m", "controller.api", "--config", str(api_config(base, agent, port))],
            base / "api.log",
            api_url + "/manage/ping",
        )
    )
    bare_url = f"http://127.0.0.1:{bare_port}/api/v1/apps/bench-status/status"
    servers.append(Server([sys.executable, "-c", BASELINE, str(bare_port)], base / "bare.log", bare_url))
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        submits = submit_cycles(api, agent, cycles)
        api.post("/api/v1/apps", json=description("bench-status")).raise_for_status()
        wait(lambda: ready(api.get("/api/v1/apps/bench-status/status").json()), 120, "bench-status Ready")
        rates = read_rates((api_url + "/api/v1/apps/bench-status/status", token), (bare_url, ""))
        api.delete("/api/v1/apps/bench-status").raise_for_status()
        wait(lambda: not agent_workloads(agent, "bench-status."), 120, "bench-status removed", 0.05)
    return submits, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cycles", type=int, default=8, help="submit -> running -> delete cycles")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mlsysops-bench-api-"))
    servers: list[Server] = []
    agent: Agent | None = None
    try:
        with private_containerd(base / "containerd", NAMESPACE, IMAGE) as runtime:
            try:
                agent = Agent(runtime.daemon, base / "agent")
                agent.start()
                submits, rates = measure_api(base, agent, servers, args.cycles)
            finally:
                for server in reversed(servers):
                    server.stop()
                if agent is not None:
                    agent.stop()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)
    figures = {
        "bench": "api",
        "submit_to_running_p50_ms": round(statistics.median(submits), 1),
        "submit_to_running_p99_ms": round(percentile(submits, 0.99), 1),
        "submits": len(submits),
        "components_per_app": 2,
        "status_rps": round(rates["status_rps"], 1),
        "status_errors": rates["status_errors"],
        "baseline_rps": round(rates["baseline_rps"], 1),
        "baseline_errors": rates["baseline_errors"],
        "status_vs_baseline_ratio": (
            round(rates["status_rps"] / rates["baseline_rps"], 2) if rates["baseline_rps"] else None
        ),
        "clients": CLIENTS,
        "read_seconds": READ_SECONDS,
        "targets": {"status_vs_baseline_ratio_min": 0.5},
        "mode": "embedded (SQLite store, local + nodeagent mechanisms, private containerd, runc + gVisor)",
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
