"""Training windows from a Prometheus: the telemetry the framework itself collects.

Two pieces, so each is testable alone:
- `PrometheusRange` is the adapter to Prometheus' HTTP range-query API (`/api/v1/query_range`;
  nothing is opened in the constructor). It answers `mlconnector.features.RangeQuerier`. Every
  failure is one `SourceUnavailable` (refused, timed out, not a Prometheus) or `SourceError` (a
  PromQL error, an answer that is not a matrix, a malformed sample), with the URL and the reason;
  no transport exception leaves this module.
- `PrometheusWindows` is a `WindowSource`: which PromQL query fills which dataset column (the
  features and the target of a model's signature), the length of one row's window, the query step
  and the settings telemetry does not carry (`constants`, e.g. runtime_gvisor=0). `window(start,
  end)` returns the rows of that span (`features.windows_from_series`), named for the Lineage as
  `prometheus:URL`; a query that matches no series in the span is an `EmptyWindow` naming the
  column and the query, never a silently shorter table.

The controller has its own Prometheus adapter (controller.telemetry.prometheus: instant queries
for the API's performance routes, on httpx). The ML connector may not import the controller, and
the import contract keeps httpx in that one adapter (the controller imports this module), so this
one GET per query uses the standard library's urllib: one request, a JSON body, no session state.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mlconnector.features import Dataset, DatasetError, Labels, Samples, SeriesColumn, windows_from_series

# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS = 11_000


class SourceError(Exception):
    """A telemetry source answered, but not with usable windows (bad query, malformed answer)."""


class SourceUnavailable(SourceError):
    """The telemetry source cannot be reached (refused, timed out, not a Prometheus)."""


class EmptyWindow(SourceError):
    """A query matched no series (or no whole window) in the span asked for."""


class WindowSource(Protocol):
    """Rows of measured windows for a span of time (unix seconds), from wherever telemetry lives."""

    @property
    def name(self) -> str:
        """Where the rows come from, as a Lineage names it (e.g. "prometheus:http://...:9090")."""
        ...

    def window(self, start: float, end: float) -> Dataset: ...


class PrometheusRange:
    """Range queries against one Prometheus (`url`: its base, e.g. http://127.0.0.1:9090)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"prometheus url {url!r}: expected http://HOST:PORT or https://...")
        self.url = url.rstrip("/")
        self._timeout = timeout

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> Sequence[tuple[Labels, Samples]]:
        """Every series `promql` matches, with its (unix_s, value) samples every `step` s."""
        if step <= 0 or end < start:
            raise SourceError(f"range [{start}, {end}] step {step}: the end must follow the start, step > 0")
        if (end - start) / step > MAX_POINTS:
            raise SourceError(
                f"range of {end - start:.0f} s at step {step} s is more than Prometheus' "
                f"{MAX_POINTS} points per series: use a larger step"
            )
        params = {"query": promql, "start": _ts(start), "end": _ts(end), "step": _ts(step)}
        data = self._json("/api/v1/query_range", params).get("data")
        if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(
            data.get("result"), list
        ):
            raise SourceError(f"query {promql!r} at {self.url}: not a range vector ({str(data)[:200]})")
        out: list[tuple[Labels, Samples]] = []
        for item in data["result"]:
            if not isinstance(item, dict) or not isinstance(item.get("values"), list):
                raise SourceError(f"query {promql!r} at {self.url}: malformed series {str(item)[:200]}")
            labels = {str(k): str(v) for k, v in dict(item.get("metric") or {}).items()}
            out.append((labels, [_sample(promql, pair) for pair in item["values"]]))
        return out

    def close(self) -> None:
        """Nothing is held between queries (one request each); kept for callers that close."""

    def _json(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        address = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        status, text = self._get(address)
        try:
            body = json.loads(text)
        except ValueError:
            raise SourceUnavailable(
                f"prometheus at {self.url}: HTTP {status}, not a Prometheus answer ({text.strip()[:200]!r})"
            ) from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else body
            raise SourceError(f"prometheus at {self.url} (HTTP {status}): {error}")
        return body

    def _get(self, address: str) -> tuple[int, str]:
        """(HTTP status, body): Prometheus answers a bad query with 400 and a JSON error, kept."""
        request = urllib.request.Request(address, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:
                return int(reply.status), reply.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8", errors="replace")
        except OSError as exc:  # URLError, refused, reset, timed out
            reason = getattr(exc, "reason", exc)
            raise SourceUnavailable(f"prometheus at {self.url}: cannot connect: {reason}") from None


def _ts(value: float) -> str:
    return f"{value:.3f}"


def _sample(promql: str, pair: Any) -> tuple[float, float]:
    """A sample as Prometheus sends it: [unix_s, "value"] ("NaN" and "+Inf" included)."""
    try:
        t, v = pair
        return float(t), float(v)
    except (TypeError, ValueError):
        raise SourceError(f"query {promql!r}: malformed sample {pair!r}") from None


class _Checked:
    """A RangeQuerier that turns "no series" into EmptyWindow naming the column and the query."""

    def __init__(self, inner: Any, columns: Mapping[str, str]) -> None:
        self._inner = inner
        self._columns = columns

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> Sequence[tuple[Labels, Samples]]:
        found: Sequence[tuple[Labels, Samples]] = self._inner.query_range(promql, start, end, step)
        if not any(samples for _, samples in found):
            raise EmptyWindow(
                f"column {self._columns.get(promql, '?')}: query {promql!r} matched no samples between "
                f"{start:.0f} and {end:.0f}"
            )
        return found


@dataclass(frozen=True)
class PrometheusWindows:
    """A WindowSource over a Prometheus (see the module docstring). `queries`: column -> PromQL
    (or a SeriesColumn to choose how the series of one query combine: sum, max, mean)."""

    querier: PrometheusRange
    queries: Mapping[str, str | SeriesColumn]
    row_window: float = 30.0  # seconds of telemetry one row averages
    step: float = 5.0  # seconds between the samples a range query returns
    constants: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.queries:
            raise SourceError("no queries: give at least one COLUMN=PROMQL")
        if not (self.row_window > 0 and self.step > 0 and self.step <= self.row_window):
            raise SourceError(
                f"row window {self.row_window} s and step {self.step} s: need 0 < step <= window"
            )
        clash = sorted(set(self.queries) & set(self.constants))
        if clash:
            raise SourceError(f"column(s) {clash} given both as a query and as a constant")

    @property
    def name(self) -> str:
        return f"prometheus:{self.querier.url}"

    def columns(self) -> list[SeriesColumn]:
        return [q if isinstance(q, SeriesColumn) else SeriesColumn(c, q) for c, q in self.queries.items()]

    def window(self, start: float, end: float) -> Dataset:
        """The rows of [start, end): SourceUnavailable, SourceError or EmptyWindow otherwise."""
        if not (math.isfinite(start) and math.isfinite(end)) or end - start < self.row_window:
            raise EmptyWindow(
                f"span [{start}, {end}] is shorter than one row window of {self.row_window:g} s"
            )
        columns = self.columns()
        checked = _Checked(self.querier, {c.promql: c.column for c in columns})
        try:
            return windows_from_series(
                checked, columns, start, end, self.row_window, step=self.step,
                constants=self.constants, source=self.name,
            )  # fmt: skip
        except DatasetError as exc:
            raise EmptyWindow(f"{self.name}: {exc}") from None


def parse_assignments(pairs: Sequence[str], what: str) -> dict[str, str]:
    """["col=expr", ...] -> {col: expr} (the CLI's --query and --set); the first "=" splits."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key or not value.strip():
            raise SourceError(f"{what} {pair!r}: expected COLUMN=VALUE")
        if key in out:
            raise SourceError(f"{what}: column {key!r} given twice")
        out[key] = value.strip()
    return out
