"""The /metrics endpoint: the agent's registry, minus what a disabled collector owns.

The agent's event metrics (AgentMetrics) live in the registry like any client_python metric;
switching the "agent" collector off hides their families here rather than unregistering them,
so counters keep counting and reappear intact when switched back on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics_core import Metric


class ExposedView:
    """A read-only view of a registry that leaves out families hidden at collect time.

    Implements the two methods client_python's exposition uses (`collect`, and
    `restricted_registry` for `?name[]=` queries).
    """

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
        return generate_latest(self)  # type: ignore[arg-type]


class MetricsServer:
    """client_python's threaded HTTP server, kept so it can be stopped (tests, shutdown)."""

    def __init__(self, view: ExposedView, host: str, port: int) -> None:
        server, thread = start_http_server(port, addr=host, registry=view)  # type: ignore[arg-type]
        self._server: WSGIServer = server
        self._thread: Thread = thread
        bound_port = server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound_port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)
