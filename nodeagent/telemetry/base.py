"""The one small interface every telemetry collector implements.

As in prometheus client_python, a collector is an object whose `collect()` returns metric
families. Unlike client_python's, ours are never registered directly: the scheduler calls
`collect()` at the collector's own interval and serves the cached result, so a scrape costs
nothing and an interval means what it says.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client.metrics_core import Metric

PREFIX = "mlsysops_nodeagent_"


class Collector(Protocol):
    #: The settings name that switches this collector ("cpu", "cgroups", ...).
    name: str

    def collect(self) -> list[Metric]:
        """Read the host once and return complete metric families. May raise; the scheduler
        then reports the collector as failed and serves no stale series for it."""
        ...
