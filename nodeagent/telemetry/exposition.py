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
        return generate_latest(self)


class MetricsServer:
    """client_python's threaded HTTP server, kept so it can be stopped (tests, shutdown).

    Constructed idle; start() binds (port 0 picks a free port) and serves, raising OSError when
    the address cannot be had.
    """

    def __init__(self, view: ExposedView, host: str, port: int) -> None:
        self._view = view
        self._host = host
        self._port = port
        self._running: tuple[WSGIServer, Thread] | None = None
        self.url = ""  # set by start()

    def start(self) -> None:
        server, thread = start_http_server(self._port, addr=self._host, registry=self._view)
        self._running = (server, thread)
        shown = f"[{self._host}]" if ":" in self._host else self._host
        self.url = f"http://{shown}:{server.server_address[1]}/metrics"

    def stop(self) -> None:
        if self._running is None:
            return
        server, thread = self._running
        self._running = None
        server.shutdown()
        server.server_close()
        thread.join(5.0)
