"""The /metrics endpoint: the agent's registry, minus what a disabled collector owns.

The agent's event metrics (AgentMetrics) live in the registry like any client_python metric;
switching the "agent" collector off hides their families here rather than unregistering them,
so counters keep counting and reappear intact when switched back on.

The HTTP side is a small server of its own rather than client_python's start_http_server:
that one is built on wsgiref and http.server (email, urllib, mimetypes: 3 MiB of RSS for a
GET), and its serve_forever() wakes twice a second to look for a shutdown request while
nobody scrapes. Here a thread blocks in accept() until a scrape comes or stop() shuts the
socket; each scrape is served on a thread of its own, as client_python does, answers any
path but /favicon.ico with the metrics (`?name[]=` selects families), in OpenMetrics when the
client asks for it (Prometheus does), else in the text format.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import CollectorRegistry

from nodeagent.telemetry import textformat

log = logging.getLogger(__name__)

#: A request's line and headers together; a scraper sends a few hundred bytes.
MAX_REQUEST_BYTES = 16 * 1024
#: How long a connection may take to send its request or read the answer.
CONNECTION_TIMEOUT_S = 10.0


class ExposedView:
    """A read-only view of a registry that leaves out families hidden at collect time."""

    def __init__(
        self,
        registry: CollectorRegistry,
        hidden: Callable[[], frozenset[str]],
        only: Iterable[str] | None = None,
    ) -> None:
        self._registry = registry
        self._hidden = hidden
        self._only = None if only is None else frozenset(only)

    def collect(self) -> Iterable[Metric]:
        hidden = self._hidden()
        for family in self._registry.collect():
            if family.name in hidden:
                continue
            if self._only is None or any(s.name in self._only for s in family.samples):
                yield family

    def restricted_registry(self, names: Iterable[str]) -> ExposedView:
        return ExposedView(self._registry, self._hidden, names)

    def exposition(self) -> bytes:
        """The Prometheus text format of this view, as a scrape would return it."""
        return textformat.render(self.collect())


def answer(view: ExposedView, target: str, accept: str) -> tuple[str, str, bytes]:
    """(status, content type, body) for a GET of `target` (path and query)."""
    parts = urlsplit(target)
    if parts.path == "/favicon.ico":
        return "200 OK", "text/plain", b""
    names = parse_qs(parts.query).get("name[]")
    if names:
        view = view.restricted_registry(names)
    if any(a.split(";")[0].strip() == "application/openmetrics-text" for a in accept.split(",")):
        return "200 OK", openmetrics.CONTENT_TYPE_LATEST, openmetrics.generate_latest(view)
    return "200 OK", textformat.CONTENT_TYPE, view.exposition()


class MetricsServer:
    """/metrics over HTTP/1.1 (one request per connection). Constructed idle; start() binds
    (port 0 picks a free port) and serves, raising OSError when the address cannot be had."""

    def __init__(self, view: ExposedView, host: str, port: int) -> None:
        self._view = view
        self._host = host
        self._port = port
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.url = ""  # set by start()

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.create_server((self._host, self._port), family=family, backlog=16)
        self._listener = listener
        self._thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name="metrics", daemon=True
        )
        self._thread.start()
        shown = f"[{self._host}]" if ":" in self._host else self._host
        self.url = f"http://{shown}:{listener.getsockname()[1]}/metrics"

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        listener.close()
        if self._thread is not None:
            self._thread.join(5.0)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # stop() shut the socket
            threading.Thread(target=self._serve, args=(conn,), name="metrics-scrape", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(CONNECTION_TIMEOUT_S)
                head = _read_head(conn)
                if head is None:
                    status, ctype, body = "431 Request Header Fields Too Large", "text/plain", b""
                else:
                    status, ctype, body = self._respond(head)
                conn.sendall(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode("ascii") + body
                )
            except OSError as exc:
                log.debug("metrics: connection ended: %s", exc)

    def _respond(self, head: bytes) -> tuple[str, str, bytes]:
        lines = head.decode("latin-1").split("\r\n")
        request = lines[0].split()
        if len(request) != 3 or not request[2].startswith("HTTP/"):
            return "400 Bad Request", "text/plain", b"bad request line\n"
        if request[0] != "GET":
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return answer(self._view, request[1], headers.get("accept", ""))


def _read_head(conn: socket.socket) -> bytes | None:
    """The request line and headers (up to the blank line); None when they exceed
    MAX_REQUEST_BYTES. OSError when the client closes first."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_REQUEST_BYTES:
            return None
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed before the end of the request")
        data += chunk
    return data.partition(b"\r\n\r\n")[0]
