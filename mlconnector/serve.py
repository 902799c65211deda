"""The generic model server: a registered model deployed as an inference service.

    python -m mlconnector.serve --registry URI --model latency_p95_ms [--alias champion] \
        [--host 127.0.0.1] [--port 8080] [--refresh-s 30]

Routes (JSON in and out):
- GET  /healthz     200 {"status": "ok", "model": ref} once a version is loaded, 503 while none is;
- GET  /v1/model    the served version: its signature (features with units and windows), metrics,
                    tags, aliases, lineage;
- POST /v1/predict  {"rows": [{feature: value, ...}, ...]} -> {"model": ref, "predictions": [...]};
- POST /v1/explain  {"row": {feature: value, ...}} -> the Explanation's JSON (attributions, base
                    value, prediction, method).
Bad input answers 400 (not JSON, not an object) or 422 (a missing, unknown or non-numeric
feature, named in `field`), always as {"detail": ..., "field": ...}, like the REST API.

`--registry` is a directory (an embedded registry: SQLite + local artifacts in it) or an MLflow
tracking URI (sqlite:///..., postgresql://..., http://...). The server follows `--alias` (or a
version): when the champion alias moves (a promote, a rollback), the next request after the
refresh interval serves the new version; no restart.

Why the standard library's ThreadingHTTPServer and not FastAPI: the server is four JSON routes,
and it runs wherever the model is placed with only the `ml` extra installed; the ASGI stack is the
controller extra's, and a model server should not pay for it (nor for its import time).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from mlconnector.contracts import CHAMPION, ModelRegistry, ModelVersion, Predictor, RegistryError

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: thousands of rows of four features
MAX_ROWS = 10_000


# ---------------------------------------------------------------------------- registries and views


def registry_from_uri(uri: str) -> ModelRegistry:
    """A directory (or file:// URL) is an embedded registry in it; anything else with a scheme is
    an MLflow tracking URI. Nothing is opened here (the registry opens on first use)."""
    from mlconnector.registry import MlflowRegistry

    if uri.startswith("file://"):
        return MlflowRegistry.embedded(Path(uri.removeprefix("file://")))
    if "://" not in uri:
        return MlflowRegistry.embedded(Path(uri))
    return MlflowRegistry(uri)


def version_json(v: ModelVersion) -> dict[str, Any]:
    """One version as the server, the REST API and the CLI show it."""
    lineage = v.lineage
    return {
        "name": v.name,
        "version": v.version,
        "ref": v.ref,
        "aliases": list(v.aliases),
        "metrics": dict(v.metrics),
        "tags": dict(v.tags),
        "created_at": v.created_at,
        "signature": {
            "features": [{"name": f.name, "unit": f.unit, "window": f.window} for f in v.signature.features],
            "target": {
                "name": v.signature.target.name,
                "unit": v.signature.target.unit,
                "window": v.signature.target.window,
            },
        },
        "lineage": None
        if lineage is None
        else {
            "source": lineage.source,
            "window_start": lineage.window_start,
            "window_end": lineage.window_end,
            "rows": lineage.rows,
            "digest": lineage.digest,
            "parent_version": lineage.parent_version,
        },
    }


# ---------------------------------------------------------------------------- input validation


class BadInput(ValueError):
    """A request the model cannot answer: the status (400/422), the reason and the field."""

    def __init__(self, status: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def feature_row(value: Any, features: Sequence[str], where: str) -> dict[str, float]:
    """`value` as a row of exactly the signature's features, each a finite number."""
    if not isinstance(value, Mapping):
        raise BadInput(422, f"{where}: expected an object of features {', '.join(features)}", where)
    missing = [f for f in features if f not in value]
    if missing:
        raise BadInput(422, f"{where}: missing feature(s) {', '.join(missing)}", f"{where}.{missing[0]}")
    unknown = sorted(set(value) - set(features))
    if unknown:
        raise BadInput(
            422,
            f"{where}: unknown feature(s) {', '.join(unknown)} (the model reads {', '.join(features)})",
            f"{where}.{unknown[0]}",
        )
    row: dict[str, float] = {}
    for name in features:
        raw = value[name]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise BadInput(422, f"{where}.{name}: expected a finite number, got {raw!r}", f"{where}.{name}")
        row[name] = float(raw)
    return row


def feature_rows(body: Any, features: Sequence[str]) -> list[dict[str, float]]:
    rows = body.get("rows") if isinstance(body, Mapping) else None
    if not isinstance(rows, list) or not rows:
        raise BadInput(422, 'expected {"rows": [{feature: value, ...}, ...]} with at least one row', "rows")
    if len(rows) > MAX_ROWS:
        raise BadInput(422, f"{len(rows)} rows: at most {MAX_ROWS} per request", "rows")
    return [feature_row(r, features, f"rows[{i}]") for i, r in enumerate(rows)]


# ---------------------------------------------------------------------------- what is served


class PredictorSource(Protocol):
    """The version currently served, reloaded as the alias it follows moves (None: none yet)."""

    def current(self) -> Predictor | None: ...


class FollowChampion:
    """The champion through mlconnector.registry.ChampionPredictors (its cache and reload)."""

    def __init__(self, registry: ModelRegistry, name: str, refresh_s: float) -> None:
        from mlconnector.registry import ChampionPredictors

        self.name = name
        self._predictors = ChampionPredictors(registry, refresh_s=refresh_s)

    def current(self) -> Predictor | None:
        return self._predictors.champion(self.name)


class FollowRef:
    """Another alias (challenger, ...) or a fixed version: resolved at most every `refresh_s`,
    reloaded only when it names another version."""

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        ref: str,
        refresh_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry, self.name, self.ref, self.refresh_s, self.clock = registry, name, ref, refresh_s, clock
        self._lock = threading.Lock()
        self._loaded: Predictor | None = None
        self._checked = -math.inf

    def current(self) -> Predictor | None:
        with self._lock:
            now = self.clock()
            if now - self._checked < self.refresh_s and self._loaded is not None:
                return self._loaded
            self._checked = now
            try:
                version = self.registry.get(self.name, self.ref).version
                if self._loaded is None or self._loaded.version.version != version:
                    self._loaded = self.registry.load(self.name, version)
            except RegistryError as exc:
                log.warning("model %s@%s: %s", self.name, self.ref, exc)
                self._loaded = None
            return self._loaded


def follow(
    registry: ModelRegistry, name: str, ref: str = CHAMPION, refresh_s: float = 30.0
) -> PredictorSource:
    if ref == CHAMPION:
        return FollowChampion(registry, name, refresh_s)
    return FollowRef(registry, name, ref, refresh_s)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


class ModelService:
    """The routes' logic, without HTTP: requests in (parsed JSON), answers out."""

    def __init__(self, source: PredictorSource, name: str, ref: str) -> None:
        self.source, self.name, self.ref = source, name, ref

    def _predictor(self) -> Predictor:
        predictor = self.source.current()
        if predictor is None:
            raise BadInput(503, f"no version of model {self.name} is {self.ref} (nothing to serve yet)")
        return predictor

    def healthz(self) -> Answer:
        try:
            return Answer(200, {"status": "ok", "model": self._predictor().version.ref})
        except BadInput as exc:
            return Answer(exc.status, {"status": "unavailable", "detail": exc.message})

    def describe(self) -> Answer:
        return Answer(200, {**version_json(self._predictor().version), "serving": self.ref})

    def predict(self, body: Any) -> Answer:
        predictor = self._predictor()
        rows = feature_rows(body, predictor.version.signature.feature_names)
        predictions = [float(p) for p in predictor.predict(rows)]
        return Answer(200, {"model": predictor.version.ref, "predictions": predictions})

    def explain(self, body: Any) -> Answer:
        predictor = self._predictor()
        if not isinstance(body, Mapping) or "row" not in body:
            raise BadInput(422, 'expected {"row": {feature: value, ...}}', "row")
        row = feature_row(body["row"], predictor.version.signature.feature_names, "row")
        return Answer(200, predictor.explain(row).to_json())


# ---------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    service: ModelService  # set on the subclass the server builds
    server_version = "mlsysops-modelserver/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        routes = {"/healthz": self.service.healthz, "/v1/model": self.service.describe}
        route = routes.get(self.path.split("?", 1)[0])
        self._run(None if route is None else lambda: route())

    def do_POST(self) -> None:
        routes = {"/v1/predict": self.service.predict, "/v1/explain": self.service.explain}
        route = routes.get(self.path.split("?", 1)[0])
        self._run(None if route is None else lambda: route(self._body()))

    def _body(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise BadInput(411, "a JSON body with Content-Length is required")
        if int(length) > MAX_BODY:
            raise BadInput(413, f"body of {length} bytes: at most {MAX_BODY}")
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise BadInput(400, f"the body is not JSON: {exc}") from None

    def _run(self, route: Callable[[], Answer] | None) -> None:
        try:
            if route is None:
                answer = Answer(404, {"detail": f"no route {self.command} {self.path}"})
            else:
                answer = route()
        except BadInput as exc:
            field = {"field": exc.field} if exc.field else {}
            answer = Answer(exc.status, {"detail": exc.message, **field})
        except RegistryError as exc:
            answer = Answer(503, {"detail": f"model registry: {exc}"})
        except Exception as exc:  # a model that fails: say so, keep serving
            log.exception("request %s %s failed", self.command, self.path)
            answer = Answer(500, {"detail": f"{type(exc).__name__}: {exc}"})
        data = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class ModelServer:
    """The HTTP listener: constructed, then start()ed (binds), stop()ped."""

    def __init__(self, service: ModelService, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.service, self.host, self.requested_port = service, host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"service": self.service})
        self._httpd = ThreadingHTTPServer((self.host, self.requested_port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="modelserver", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the listener stops (it runs in its own thread), then close it."""
        assert self._thread is not None, "not started"
        try:
            while self._thread.is_alive():
                self._thread.join(1.0)
        finally:
            self.stop()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


# ---------------------------------------------------------------------------- the command


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mlconnector.serve", description=(__doc__ or "").split("\n")[0]
    )
    p.add_argument("--registry", required=True, metavar="URI", help="a directory (embedded) or an MLflow URI")
    p.add_argument("--model", required=True, metavar="NAME")
    p.add_argument("--alias", default=CHAMPION, help="the alias (or version) to serve (default champion)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--refresh-s", type=float, default=30.0, help="how often the alias is re-read")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        from mlconnector import registry  # noqa: F401  (the ml extra: say so plainly when it is missing)
    except ImportError as exc:
        print(
            f"mlconnector.serve: the ml extra is not installed ({exc}): pip install 'mlsysops[ml]'",
            file=sys.stderr,
        )
        return 69
    source = follow(registry_from_uri(args.registry), args.model, args.alias, args.refresh_s)
    server = ModelServer(ModelService(source, args.model, args.alias), args.host, args.port)
    try:
        server.start()
    except OSError as exc:
        print(f"mlconnector.serve: {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    log.info("serving %s@%s on %s:%d", args.model, args.alias, args.host, server.port)
    # SIGTERM is how a container runtime or Kubernetes stops it; as a container's PID 1 a signal
    # without a handler would be ignored, and it would be killed after the grace period.
    signal.signal(signal.SIGTERM, _stop_serving)
    with contextlib.suppress(KeyboardInterrupt):
        server.wait()
    return 0


def _stop_serving(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # in the main thread, inside wait(): it stops the listener


if __name__ == "__main__":
    sys.exit(main())
