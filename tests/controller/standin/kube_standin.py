"""An in-process HTTP stand-in of the Kubernetes REST API, for the controller's tests and bench.

No kube-apiserver can run on the test machines, so this serves what the controller uses, the
way the real one answers it: discovery (/api, /apis, resource lists), CRUD, lists with a
resourceVersion, label/field selectors, watch streams (410 Gone for a compacted
resourceVersion, optional bookmarks), 409 conflicts, merge / strategic-merge / apply patches,
the status subresource and owner-reference garbage collection (semantics in
kube_standin_store). Tests drive it only through the real `kubernetes` client.

Test hooks, all explicit: `fail(status, count, method)` answers the next requests with an
error (API outage), `validator` rejects invalid objects with 422 and `store.received` keeps
every body sent; the deployment and job "controllers" mark Deployments available and Jobs
running (their pods ready) unless `hold()`; `complete(job)` ends a Job successfully.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kube_standin_store import DEFAULT_TYPES, ApiError, Obj, ResourceType, Store, Validator, get_path

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


@dataclass
class _Fault:
    status: int
    remaining: int
    method: str | None
    client: str | None  # a substring of the User-Agent: only that client's requests fail
    path: str | None = None  # a substring of the request path: only those requests fail


class StandIn:
    """A stand-in API server on a free loopback port; use as a context manager."""

    def __init__(self, types: tuple[ResourceType, ...] = DEFAULT_TYPES, history: int = 1000,
                 validator: Validator | None = None, simulate_rollouts: bool = True) -> None:
        self.store = Store(types, history, validator)
        self._faults: list[_Fault] = []
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served
        self.connections: set[Any] = set()  # open client sockets, closed on stop() like a crash
        self.errors: list[Exception] = []  # unexpected exceptions while serving (answered with 500)
        if simulate_rollouts:
            self.store.on_write.append(self._roll_out)
        self.server: _Server | None = None  # bound by start()
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        if self.server is None:
            raise RuntimeError("the stand-in is not started: call start() (or use it as a context manager)")
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> StandIn:
        """Bind a free loopback port and serve from a thread."""
        handler = type("Handler", (_Handler,), {"standin": self})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="kube-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self.store.cond:
            self.store.stopping = True
            self.store.cond.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for sock in list(self.connections):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test hooks

    def fail(self, status: int = 503, count: int = 1, method: str | None = None,
             client: str | None = None, path: str | None = None) -> None:
        """Answer the next `count` requests (of `method`, from a User-Agent containing `client`,
        to a path containing `path`, if given) with `status`."""
        with self._lock:
            self._faults.append(_Fault(status, count, method, client, path))

    def recover(self) -> None:
        """End every injected failure (the outage is over)."""
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, user_agent: str = "", path: str = "") -> int | None:
        with self._lock:
            for fault in self._faults:
                if (fault.remaining > 0 and fault.method in (None, method)
                        and (fault.client is None or fault.client in user_agent)
                        and (fault.path is None or fault.path in path)):
                    fault.remaining -= 1
                    return fault.status
            return None

    def hold(self, workload: str) -> None:
        """Keep this Deployment unavailable, or this Job's pods unready, until release()."""
        self._held.add(workload)

    def release(self, workload: str) -> None:
        self._held.discard(workload)
        store = self.store
        with store.cond:
            for key, obj in list(store.objects.items()):
                if key[0] == "deployments.apps" and key[2] == workload:
                    self._mark_available(store.type_for("apps", "v1", "deployments"), obj)
                elif key[0] == "jobs.batch" and key[2] == workload:
                    self._mark_running(store.type_for("batch", "v1", "jobs"), obj)

    def complete(self, job: str, namespace: str = "default") -> None:
        """The Job's pods all succeed: Complete, as the job controller reports it."""
        store = self.store
        rtype = store.type_for("batch", "v1", "jobs")
        with store.cond:
            obj = store.objects[store.key(rtype, namespace, job)]
            completions = obj.get("spec", {}).get("completions", 1)
            new = json.loads(json.dumps(obj))
            new["status"] = {
                "startTime": new.get("status", {}).get("startTime", _now()), "completionTime": _now(),
                "succeeded": completions, "ready": 0, "active": 0,
                "conditions": [_condition("SuccessCriteriaMet"), _condition("Complete")],
            }
            store._commit(rtype, store.key(rtype, namespace, job), new, "MODIFIED")

    def _roll_out(self, rtype: ResourceType, event_type: str, obj: Obj) -> None:
        """The deployment/job controllers and kubelet in one line: desired replicas become
        available; a new Job's pods start and become ready."""
        if event_type == "DELETED" or obj["metadata"]["name"] in self._held:
            return
        status = obj.get("status", {})
        if rtype.kind == "Deployment" and status.get("observedGeneration") != obj["metadata"]["generation"]:
            self._mark_available(rtype, obj)
        elif rtype.kind == "Job" and not status:
            self._mark_running(rtype, obj)

    def _mark_running(self, rtype: ResourceType, obj: Obj) -> None:
        parallelism = obj.get("spec", {}).get("parallelism", 1)
        new = json.loads(json.dumps(obj))
        new["status"] = {"startTime": _now(), "active": parallelism, "ready": parallelism}
        self.store._commit(rtype, self.store.key(rtype, obj["metadata"].get("namespace", ""),
                                                 obj["metadata"]["name"]), new, "MODIFIED")

    def _mark_available(self, rtype: ResourceType, obj: Obj) -> None:
        replicas = obj.get("spec", {}).get("replicas", 1)
        new = json.loads(json.dumps(obj))
        new["status"] = {
            "observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
        }
        self.store._commit(rtype, self.store.key(rtype, obj["metadata"].get("namespace", ""),
                                                 obj["metadata"]["name"]), new, "MODIFIED")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _condition(kind: str) -> Obj:
    return {"type": kind, "status": "True", "lastProbeTime": _now(), "lastTransitionTime": _now(),
            "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}


# ---------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up (a watch stopped, a controller shut down) is normal, not an error."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class _Route:
    rtype: ResourceType | None
    namespace: str
    name: str
    subresource: str
    discovery: Obj | None = None


class _Handler(BaseHTTPRequestHandler):
    standin: StandIn
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # like Go's net/http: no Nagle, or header and body segments wait for delayed ACKs (40 ms)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.standin.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.standin.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read the store instead
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # ------------------------------------------------------------------ dispatch

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._body()
        self.standin.requests.append((method, url.path))
        try:
            fault = self.standin.take_fault(method, self.headers.get("User-Agent", ""), url.path)
            if fault is not None:
                reason = "ServiceUnavailable" if fault >= 500 else "Injected"
                raise ApiError(fault, reason, "injected failure")
            route = self._route(url.path)
            if route.discovery is not None:
                return self._send(200, route.discovery)
            if method == "GET" and query.get("watch") in ("1", "true", "True"):
                return self._watch(route, query)
            self._send(*self._handle(method, route, query, body))
        except ApiError as err:
            self._send(err.code, err.status())
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away mid-request (a killed controller): normal, not a bug
        except Exception as exc:  # a stand-in bug: answer like a real server would, and keep it
            self.standin.errors.append(exc)
            self._send(500, ApiError(500, "InternalError", f"{type(exc).__name__}: {exc}").status())

    def _handle(self, method: str, route: _Route, query: dict[str, str], body: bytes) -> tuple[int, Obj]:
        store, rtype = self.standin.store, route.rtype
        assert rtype is not None
        manager = query.get("fieldManager", "")
        if method == "GET" and route.name:
            return 200, store.get(rtype, route.namespace, route.name)
        if method == "GET":
            items, rv = store.list(rtype, route.namespace, _selector(query))
            return 200, {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version,
                         "metadata": {"resourceVersion": str(rv)}, "items": items}
        if method == "POST" and not route.name:
            return 201, store.create(rtype, route.namespace, _json(body), manager)
        if method == "PUT" and route.name:
            return 200, store.update(rtype, route.namespace, route.name, _json(body), manager,
                                     route.subresource)
        if method == "PATCH" and route.name:
            return self._patch(rtype, route, query, body, manager)
        if method == "DELETE" and route.name:
            options = _json(body) if body else {}
            policy = query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
            return 200, store.delete(rtype, route.namespace, route.name, policy)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {self.path}")

    def _patch(self, rtype: ResourceType, route: _Route, query: dict[str, str], body: bytes,
               manager: str) -> tuple[int, Obj]:
        store = self.standin.store
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
        kind = PATCH_TYPES.get(content_type)
        if kind is None or (kind == "strategic" and not rtype.builtin):
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                           f"accepted media types include: {', '.join(PATCH_TYPES)}")
        if kind == "apply":
            if route.subresource:
                raise ApiError(400, "BadRequest", "apply to subresources is not supported by the stand-in")
            force = query.get("force") in ("true", "1", "True")
            existed = _exists(store, rtype, route)
            obj = store.apply(rtype, route.namespace, route.name, _json(body), manager, force)
            return (200 if existed else 201), obj
        return 200, store.patch(rtype, route.namespace, route.name, _json(body), kind == "strategic",
                                manager, route.subresource)

    def _watch(self, route: _Route, query: dict[str, str]) -> None:
        store, rtype = self.standin.store, route.rtype
        assert rtype is not None
        timeout = float(query.get("timeoutSeconds", "1800"))
        deadline = time.monotonic() + timeout
        match = _selector(query)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        requested = query.get("resourceVersion", "")
        try:
            if requested in ("", "0"):  # start with the current state, like a real server
                items, rv = store.list(rtype, route.namespace, match)
                for item in items:
                    self._chunk({"type": "ADDED", "object": item})
            else:
                rv = int(requested)
            for event in self._events(rtype, route.namespace, rv, deadline):
                if match(event.obj):
                    self._chunk({"type": event.type, "object": event.obj})
            if query.get("allowWatchBookmarks") in ("true", "1"):
                self._chunk({"type": "BOOKMARK", "object": {
                    "kind": rtype.kind, "apiVersion": rtype.api_version,
                    "metadata": {"resourceVersion": str(store.rv)}}})
        except ApiError as err:
            self._chunk({"type": "ERROR", "object": err.status()})
        except (BrokenPipeError, ConnectionResetError):
            return
        self.wfile.write(b"0\r\n\r\n")

    def _events(self, rtype: ResourceType, namespace: str, rv: int, deadline: float) -> Iterator[Any]:
        return self.standin.store.iter_watch(rtype, namespace, rv, deadline, time.monotonic)

    # ------------------------------------------------------------------ routing

    def _route(self, path: str) -> _Route:
        parts = [p for p in path.split("/") if p]
        store = self.standin.store
        if parts == ["version"]:
            return _Route(None, "", "", "", {"major": "1", "minor": "31", "gitVersion": "v1.31.0-standin"})
        if parts == ["api"]:
            return _Route(None, "", "", "", {"kind": "APIVersions", "versions": ["v1"],
                                             "serverAddressByClientCIDRs": []})
        if parts == ["apis"]:
            return _Route(None, "", "", "", _group_list(store.types))
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource {path}")
        if not rest:
            return _Route(None, "", "", "", _resource_list(store.types, group, version))
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        rtype = store.type_for(group, version, rest[0])
        if rtype.namespaced != bool(namespace) and len(rest) > 1:
            scope = "" if rtype.namespaced else "not "
            raise ApiError(404, "NotFound", f"{rtype.plural} is {scope}namespaced")
        return _Route(rtype, namespace, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else "")

    # ------------------------------------------------------------------ I/O

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, obj: Obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, obj: Obj) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _exists(store: Store, rtype: ResourceType, route: _Route) -> bool:
    with store.cond:
        return store.key(rtype, route.namespace, route.name) in store.objects


def _json(body: bytes) -> Obj:
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:  # YAML apply bodies from the client are JSON (valid YAML 1.2)
        raise ApiError(400, "BadRequest", f"request body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "BadRequest", "request body must be an object")
    return value


def _selector(query: dict[str, str]) -> Any:
    """Equality-based label selectors (a=b, a!=b, a, !a) and metadata.name/namespace fields."""
    labels = [t.strip() for t in query.get("labelSelector", "").split(",") if t.strip()]
    fields = [t.strip() for t in query.get("fieldSelector", "").split(",") if t.strip()]

    def match(obj: Obj) -> bool:
        have = obj.get("metadata", {}).get("labels") or {}
        for term in labels:
            if "!=" in term:
                key, value = term.split("!=", 1)
                if have.get(key.strip()) == value.strip():
                    return False
            elif "=" in term:
                key, value = term.replace("==", "=").split("=", 1)
                if have.get(key.strip()) != value.strip():
                    return False
            elif term.startswith("!"):
                if term[1:] in have:
                    return False
            elif term not in have:
                return False
        for term in fields:
            key, value = term.replace("==", "=").split("=", 1)
            if str(get_path(obj, tuple(key.split(".")))) != value:
                return False
        return True

    return match


def _group_list(types: tuple[ResourceType, ...]) -> Obj:
    groups: dict[str, list[str]] = {}
    for rtype in types:
        if rtype.group and rtype.version not in groups.setdefault(rtype.group, []):
            groups[rtype.group].append(rtype.version)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
         "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
        for g, vs in groups.items()]}


def _resource_list(types: tuple[ResourceType, ...], group: str, version: str) -> Obj:
    matching = [t for t in types if (t.group, t.version) == (group, version)]
    if not matching:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource {group}/{version}")
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    resources: list[Obj] = []
    for t in matching:
        resources.append({"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
                          "kind": t.kind, "verbs": verbs, "shortNames": list(t.short_names)})
        if t.status:
            resources.append({"name": f"{t.plural}/status", "singularName": "", "namespaced": t.namespaced,
                              "kind": t.kind, "verbs": ["get", "patch", "update"]})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": matching[0].api_version,
            "resources": resources}


def main(argv: list[str] | None = None) -> int:
    """Serve a stand-in in its own process (the placement bench does, so the API server does not
    share the controller's interpreter lock): prints `READY <url>`, runs until stdin closes."""
    import argparse
    import gc

    parser = argparse.ArgumentParser(description="Kubernetes API stand-in")
    parser.add_argument("--load", help="JSON file: a list of objects to store before serving")
    args = parser.parse_args(argv)
    standin = StandIn()
    if args.load:
        with open(args.load) as f:
            for obj in json.load(f):
                kind = (obj["apiVersion"], obj["kind"])
                rtype = next(t for t in standin.store.types if (t.api_version, t.kind) == kind)
                standin.store.create(rtype, obj["metadata"].get("namespace", ""), obj, "loader")
    gc.collect()
    gc.freeze()  # the preloaded objects live as long as the server: no full GC passes over them
    with standin:
        print(f"READY {standin.host}", flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
