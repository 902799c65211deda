"""The ML connector's training windows from the framework's own Prometheus.

`mlconnector.prometheus.PrometheusWindows` turns range queries into dataset rows but speaks no
HTTP (the connector imports no daemon, and `PrometheusHttp` is the one client of Prometheus' API).
`PrometheusRangeSource` joins the two: range queries through `PrometheusHttp`, with its failures
told apart the way the connector's callers need them: `SourceUnavailable` when no Prometheus
answered (the API answers 503, the retrainer records a failed check and tries again later),
`SourceError` when one answered but not usefully (a PromQL error, a malformed answer: 422).
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.telemetry.prometheus import MetricsUnavailable, PrometheusHttp, PrometheusUnreachable
from mlconnector.features import SeriesColumn
from mlconnector.prometheus import PrometheusWindows, SourceError, SourceUnavailable


class PrometheusRangeSource:
    """Range queries against one Prometheus (`url`: its base, e.g. http://127.0.0.1:9090) for
    `PrometheusWindows`; nothing is opened before the first query."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"prometheus url {url!r}: expected http://HOST:PORT or https://...")
        self._http = PrometheusHttp(url, timeout=timeout)

    @property
    def url(self) -> str:
        return self._http.url

    def query_range(
        self, promql: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        try:
            return self._http.query_range(promql, start, end, step)
        except PrometheusUnreachable as exc:
            raise SourceUnavailable(str(exc)) from None
        except MetricsUnavailable as exc:
            raise SourceError(str(exc)) from None

    def close(self) -> None:
        self._http.close()


def prometheus_windows(
    url: str,
    queries: Mapping[str, str | SeriesColumn],
    *,
    row_window: float = 30.0,
    step: float = 5.0,
    constants: Mapping[str, object] | None = None,
) -> PrometheusWindows:
    """The WindowSource of `queries` (column -> PromQL) on the Prometheus at `url`; SourceError
    for a bad URL or bad settings, before anything is queried."""
    return PrometheusWindows(
        PrometheusRangeSource(url), queries, row_window=row_window, step=step, constants=dict(constants or {})
    )
