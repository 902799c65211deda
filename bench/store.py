"""Embedded store benchmark: the operations the reconcile loop makes, on the SQLite store and,
as the baseline measured in the same run, on the stand-in Kubernetes API server
(tests/controller/standin: in-memory, loopback HTTP, the real kubernetes client via KubeApi).

Per store, through the same ObjectApi calls: apply (create) and no-op apply, status replace,
list of every app, and watch latency (a write's return → the event at a watcher in the same
process, p50/p99). For the embedded store also the watch latency from another process (the
REST API writing, the controller watching: the change log is polled every `poll_interval`,
0.1 s by default). Writes are durable (synchronous=FULL): each one waits for the disk.

The last line printed is one JSON object. `python bench/store.py [--apps 300]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller import store
from controller.kube import resources
from controller.kube.api import KubeApi
from controller.kube.client import api_client_for_host
from controller.kube.objectapi import ObjectApi

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "default"
STAMP = "bench.mlsysops.eu/sent"


def app(name: str, sent: float | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NAMESPACE}
    if sent is not None:
        meta["annotations"] = {STAMP: repr(sent)}
    return {"apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsApp", "metadata": meta,
            "components": [{"metadata": {"name": "web"}, "containers": [{"image": "registry/web:1"}]}]}


def pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0], 3)


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def operations(api: ObjectApi, apps: int, prefix: str) -> dict[str, float]:
    created = [timed(lambda i=i: api.apply(app(f"{prefix}{i}"), field_manager="bench")) for i in range(apps)]
    noop = [timed(lambda i=i: api.apply(app(f"{prefix}{i}"), field_manager="bench")) for i in range(apps)]
    statuses = []
    for i in range(apps):
        obj = api.get(resources.APP, NAMESPACE, f"{prefix}{i}")
        obj["status"] = {"phase": "Deploying", "observedGeneration": 1}
        statuses.append(timed(lambda obj=obj: api.replace_status(resources.APP, obj)))
    lists = [timed(lambda: api.list(resources.APP, NAMESPACE)) for _ in range(10)]
    return {"apply_p50_ms": pct(created, 50), "apply_p99_ms": pct(created, 99),
            "noop_apply_p50_ms": pct(noop, 50), "status_p50_ms": pct(statuses, 50),
            "status_p99_ms": pct(statuses, 99), f"list_{apps}_ms": round(statistics.median(lists), 3)}


def watch_latency(api: ObjectApi, writer: Callable[[int], None], count: int) -> dict[str, float]:
    """Each write carries its send time; the watcher (this process) records arrival - send."""
    _, rv = api.list(resources.APP, NAMESPACE)
    delays: list[float] = []
    ready = threading.Event()

    def watch() -> None:
        ready.set()
        for event in api.watch(resources.APP, NAMESPACE, rv, timeout_seconds=120):
            sent = (event.object["metadata"].get("annotations") or {}).get(STAMP)
            if event.type == "ADDED" and sent:
                delays.append((time.time() - float(sent)) * 1000)
            if len(delays) == count:
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait()
    writer(count)
    thread.join(120)
    return {"watch_p50_ms": pct(delays, 50), "watch_p99_ms": pct(delays, 99)}


def paced(api: ObjectApi, prefix: str) -> Callable[[int], None]:
    def write(count: int) -> None:
        for i in range(count):
            api.apply(app(f"{prefix}{i}", time.time()), field_manager="bench")
            time.sleep(0.02)
    return write


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {bench!r})
    from controller import store
    from store import app
    db = store.open({path!r})
    db.apply(app("warm-up"), field_manager="bench")  # the CRD schemas compile on the first write
    for i in range({count}):
        db.apply(app(f"x{{i}}", time.time()), field_manager="bench")
        time.sleep(0.02)
    db.close()
""")


def other_process(path: Path) -> Callable[[int], None]:
    def write(count: int) -> None:
        code = CHILD.format(bench=str(ROOT / "bench"), path=str(path), count=count)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    return write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=300)
    parser.add_argument("--watch-events", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests" / "controller" / "standin"))
    from kube_standin import StandIn

    with tempfile.TemporaryDirectory(prefix="mlsysops-bench-store-") as tmp:
        path = Path(tmp) / "controller.db"
        with store.open(path) as db:
            embedded = operations(db, args.apps, "a")
            embedded.update(watch_latency(db, paced(db, "w"), args.watch_events))
            cross = watch_latency(db, other_process(path), args.watch_events)
        embedded["cross_process_watch_p50_ms"] = cross["watch_p50_ms"]
        embedded["cross_process_watch_p99_ms"] = cross["watch_p99_ms"]
        size = path.stat().st_size
    with StandIn() as standin:
        kube = KubeApi(api_client_for_host(standin.host))
        baseline = operations(kube, args.apps, "a")
        baseline.update(watch_latency(kube, paced(kube, "w"), args.watch_events))
    print(json.dumps({
        "bench": "store",
        "apps": args.apps,
        "embedded": embedded,
        "standin_api_baseline": baseline,
        "apply_p50_vs_standin_ratio": round(embedded["apply_p50_ms"] / baseline["apply_p50_ms"], 2),
        "status_p50_vs_standin_ratio": round(embedded["status_p50_ms"] / baseline["status_p50_ms"], 2),
        "store_file_bytes": size,
    }))


if __name__ == "__main__":
    main()
