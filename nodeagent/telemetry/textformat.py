"""The Prometheus text format (0.0.4) of metric families, as client_python writes it.

client_python's own writer lives in `prometheus_client.exposition`, a module that imports its
HTTP server, push-gateway client, urllib and email at its top: 3 MiB of the agent's RSS to
turn a few families into text. This is the same writer (same munging of counters, info and
stateset families, same escaping, `_created` samples last as gauges), for the names the agent
uses: they are all legacy Prometheus names, so none needs quoting. tests/nodeagent/telemetry
compares the two outputs byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: OpenMetrics family type -> the text format's.
_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_SUFFIXES = {"counter": "_total", "info": "_info"}
#: Samples only OpenMetrics has: written after the family, each as a gauge of its own.
_OPENMETRICS_ONLY = ("_created", "_gsum", "_gcount")


def render(families: Iterable[Metric]) -> bytes:
    """The text exposition of `families` (what prometheus_client.generate_latest returns)."""
    output: list[str] = []
    for family in families:
        name = family.name + _SUFFIXES.get(family.type, "")
        help_text = _escape_help(family.documentation)
        output.append(f"# HELP {name} {help_text}\n# TYPE {name} {_TYPES.get(family.type, family.type)}\n")
        trailing: dict[str, list[str]] = {}
        for sample in family.samples:
            suffix = next((s for s in _OPENMETRICS_ONLY if sample.name == family.name + s), None)
            if suffix is None:
                output.append(_line(sample))
            else:
                trailing.setdefault(suffix, []).append(_line(sample))
        for suffix, lines in sorted(trailing.items()):
            output.append(f"# HELP {family.name}{suffix} {help_text}\n# TYPE {family.name}{suffix} gauge\n")
            output.extend(lines)
    return "".join(output).encode("utf-8")


def _line(sample: Sample) -> str:
    labels = ""
    if sample.labels:
        pairs = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(sample.labels.items()))
        labels = "{" + pairs + "}"
    timestamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
    return f"{sample.name}{labels} {floatToGoString(sample.value)}{timestamp}\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
