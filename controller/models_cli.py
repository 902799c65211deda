"""`mlsysops models list|show|train|promote|rollback|explain`: the model registry from the shell.

Two modes, as `mlsysops apps` has:
- remote mode (`--api URL` or MLSYSOPS_API_URL): through the REST API's /api/v1/models, with the
  token from MLSYSOPS_API_TOKEN or ~/.config/mlsysops/api.yaml (what the API's roles allow);
- local mode (`--registry URI` or MLSYSOPS_MODEL_REGISTRY): directly on a registry, a directory
  (embedded MLflow) or an MLflow tracking URI; needs the ml extra.
Both run the same operations (controller.api.models) and show the same fields.

    mlsysops models --registry /var/lib/mlsysops/api/models list
    mlsysops models --api http://127.0.0.1:8000 train latency_p95_ms
    mlsysops models promote latency_p95_ms 3
    mlsysops models explain latency_p95_ms cpu_quota_cores=1 cpus=2 runtime_gvisor=0 offered_rps=120
    mlsysops models train latency_p95_ms --from-prometheus http://127.0.0.1:9090 --window 1h \
        --query offered_rps='sum(rate(requests_total[30s]))' --query latency_p95_ms='...' --set cpus=2
    mlsysops models --registry DIR retrain-loop latency_p95_ms --from-prometheus URL --query ... --once
    mlsysops models --api URL retrain-log        # what the API daemon's retraining loop did
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from controller.cli_output import render_model
from mlsysops.output import emit, output_option, table
from mlsysops.restapi import RestClient, RestError

F = TypeVar("F", bound=Callable[..., Any])
Obj = dict[str, Any]


class Models(Protocol):
    def list(self) -> list[Obj]: ...
    def show(self, name: str) -> Obj: ...
    def train(self, name: str, dataset: str | None, reason: str, holdout_fraction: float,
              prometheus: Obj | None = None) -> Obj: ...
    def promote(self, name: str, version: str) -> Obj: ...
    def rollback(self, name: str) -> Obj: ...
    def explain(self, name: str, row: dict[str, float], version: str) -> Obj: ...


class RemoteModels:
    """Through the REST API (a dataset path is one the API's host may read, under its
    --model-datasets directory)."""

    def __init__(self, api: RestClient) -> None:
        self.api = api

    def list(self) -> list[Obj]:
        found: list[Obj] = self.api.get("/api/v1/models")
        return found

    def show(self, name: str) -> Obj:
        shown: Obj = self.api.get(f"/api/v1/models/{name}")
        return shown

    def train(self, name: str, dataset: str | None, reason: str, holdout_fraction: float,
              prometheus: Obj | None = None) -> Obj:
        body: Obj = {"reason": reason, "holdout_fraction": holdout_fraction}
        if dataset is not None:
            body["dataset"] = dataset
        if prometheus is not None:
            body["prometheus"] = prometheus
        out: Obj = self.api.post(f"/api/v1/models/{name}/train", body)
        return out

    def promote(self, name: str, version: str) -> Obj:
        out: Obj = self.api.post(f"/api/v1/models/{name}/promote", {"version": version})
        return out

    def rollback(self, name: str) -> Obj:
        out: Obj = self.api.call("POST", f"/api/v1/models/{name}/rollback")
        return out

    def explain(self, name: str, row: dict[str, float], version: str) -> Obj:
        out: Obj = self.api.post(f"/api/v1/models/{name}/explain", {"row": row, "version": version})
        return out


class LocalModels:
    """Directly on a registry (a dataset path is a local file)."""

    def __init__(self, uri: str) -> None:
        from mlconnector.serve import registry_from_uri

        self.registry = registry_from_uri(uri)

    def list(self) -> list[Obj]:
        from controller.api import models

        return models.listed(self.registry)

    def show(self, name: str) -> Obj:
        from controller.api import models

        return models.show(self.registry, name)

    def train(self, name: str, dataset: str | None, reason: str, holdout_fraction: float,
              prometheus: Obj | None = None) -> Obj:
        from controller.api import models

        path = None if dataset is None else Path(dataset)
        if path is not None and not path.is_file():
            raise click.ClickException(f"{dataset}: no such dataset file")
        spec = None if prometheus is None else models.prometheus_spec(prometheus)
        return models.train(
            self.registry, name, dataset=path, reason=reason, holdout_fraction=holdout_fraction,
            prometheus=spec,
        )

    def promote(self, name: str, version: str) -> Obj:
        from controller.api import models

        return models.promote(self.registry, name, version)

    def rollback(self, name: str) -> Obj:
        from controller.api import models

        return models.rollback(self.registry, name)

    def explain(self, name: str, row: dict[str, float], version: str) -> Obj:
        from controller.api import models

        return models.explain(self.registry, name, row, version)


def _friendly(fn: F) -> F:
    """Every failure is one line: the API's status and detail, or the registry's reason."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from controller.api.errors import ApiError

        try:
            return fn(*args, **kwargs)
        except RestError as exc:
            raise click.ClickException(str(exc)) from None
        except ApiError as exc:
            raise click.ClickException(exc.message) from None

    return wrapper  # type: ignore[return-value]


@click.group()
@click.option("--api", envvar="MLSYSOPS_API_URL", default=None, metavar="URL",
              help="Remote mode: the REST API (default: $MLSYSOPS_API_URL; token from $MLSYSOPS_API_TOKEN).")
@click.option("--registry", envvar="MLSYSOPS_MODEL_REGISTRY", default=None, metavar="URI",
              help="Local mode: a registry directory or MLflow tracking URI "
              "(default: $MLSYSOPS_MODEL_REGISTRY).")
@click.pass_context
def models(ctx: click.Context, api: str | None, registry: str | None) -> None:
    """Models of the ML connector: versions, training, promote/rollback, explanations."""

    def backend() -> Models:
        if api and registry:
            raise click.UsageError("give --api URL or --registry URI, not both")
        if api:
            return RemoteModels(RestClient(api))
        if registry:
            return LocalModels(registry)
        raise click.UsageError("no registry given: --api URL (the REST API) or --registry URI (local)")

    ctx.obj = backend


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _mape(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _list_table(rows: list[Obj]) -> str:
    if not rows:
        return "no models (train one: mlsysops models train latency_p95_ms)"
    return table(
        [
            (r["name"], r["target"], r["versions"], r["champion"] or "-", r["latest"],
             ",".join(f"{a}={v}" for a, v in sorted(r["aliases"].items())), _mape(r["holdout_mape"]))
            for r in rows
        ],
        ["name", "target", "versions", "champion", "latest", "aliases", "holdout mape"],
    )


def _signature(v: Obj) -> str:
    sig = v["signature"]
    feats = ", ".join(f"{f['name']} [{f['unit']}]" for f in sig["features"])
    return f"{feats} -> {sig['target']['name']} [{sig['target']['unit']}]"


def _show_table(m: Obj) -> str:
    lines = [f"model {m['name']}: champion {m['champion'] or '-'}, {m['versions']} version(s)"]
    if m["history"]:
        lines.append(f"signature: {_signature(m['history'][-1])}")
    rows = []
    for v in m["history"]:
        lineage = v.get("lineage") or {}
        metrics = v["metrics"]
        rows.append((
            v["version"], ",".join(v["aliases"]) or "-", _mape(metrics.get("holdout_mape")),
            _mape(metrics.get("baseline_mape")), lineage.get("rows", "-"), lineage.get("source", "-"),
            lineage.get("parent_version") or "-", _when(v["created_at"]), v["tags"].get("retrain_reason", ""),
        ))
    lines.append(table(rows, ["version", "aliases", "holdout mape", "baseline mape", "rows", "trained on",
                              "parent", "created", "reason"]))
    return "\n".join(lines)


def _version_line(v: Obj) -> str:
    return f"model {v['name']}: version {v['version']} ({', '.join(v['aliases']) or 'no alias'})"


@models.command("list")
@output_option
@click.pass_obj
@_friendly
def models_list(backend: Callable[[], Models], output_format: str) -> None:
    """Models with their champion, versions and hold-out error."""
    emit(backend().list(), output_format, _list_table)


@models.command("show")
@click.argument("name")
@output_option
@click.pass_obj
@_friendly
def models_show(backend: Callable[[], Models], name: str, output_format: str) -> None:
    """Every version: aliases, metrics, lineage (the telemetry window it was trained on)."""
    emit(backend().show(name), output_format, _show_table)


def _prometheus_options(fn: F) -> F:
    """The options naming a Prometheus window (train and retrain-loop)."""
    for option in reversed([
        click.option("--from-prometheus", "prometheus_url", default=None, metavar="URL",
                     help="Train on Prometheus telemetry (its base URL) instead of a dataset; with --api "
                     "the API's own Prometheus (give the same URL)."),
        click.option("--window", default="1h", show_default=True,
                     help="How far back from now the training rows reach."),
        click.option("--row-window", default="30s", show_default=True,
                     help="Telemetry one row averages (a model's feature window)."),
        click.option("--step", default="5s", show_default=True, help="Range-query resolution."),
        click.option("--query", "queries", multiple=True, metavar="COLUMN=PROMQL",
                     help="The PromQL filling one column (each feature and the target); repeat."),
        click.option("--set", "constants", multiple=True, metavar="COLUMN=NUMBER",
                     help="A setting telemetry does not carry, the same in every row "
                     "(e.g. runtime_gvisor=0)."),
    ]):
        fn = option(fn)
    return fn


def _prometheus_body(url: str | None, window: str, row_window: str, step: str,
                     queries: tuple[str, ...], constants: tuple[str, ...]) -> Obj | None:
    from mlconnector.prometheus import SourceError, parse_assignments

    if url is None:
        if queries or constants:
            raise click.UsageError("--query and --set need --from-prometheus URL")
        return None
    if not queries:
        raise click.UsageError("--from-prometheus needs at least one --query COLUMN=PROMQL")
    try:
        numbers = {k: float(v) for k, v in parse_assignments(constants, "--set").items()}
        return {"url": url, "window": window, "row_window": row_window, "step": step,
                "queries": parse_assignments(queries, "--query"), "constants": numbers}
    except SourceError as exc:
        raise click.BadParameter(str(exc)) from None
    except ValueError:
        raise click.BadParameter(f"--set {constants}: expected COLUMN=NUMBER") from None


@models.command("train")
@click.argument("name")
@click.option("--dataset", default=None, metavar="PATH",
              help="A recorded dataset (CSV); default the packaged one. With --api: a path under the "
              "API's --model-datasets.")
@click.option("--reason", default="operator (CLI)", show_default=True, help="Recorded with the version.")
@click.option("--holdout-fraction", default=0.25, show_default=True, type=float,
              help="The most recent share of the windows the challenger and champion are judged on.")
@_prometheus_options
@output_option
@click.pass_obj
@_friendly
def models_train(backend: Callable[[], Models], name: str, dataset: str | None, reason: str,
                 holdout_fraction: float, prometheus_url: str | None, window: str, row_window: str,
                 step: str, queries: tuple[str, ...], constants: tuple[str, ...], output_format: str) -> None:
    """Train a new version; it becomes champion only if it beats the champion on recent windows."""
    prometheus = _prometheus_body(prometheus_url, window, row_window, step, queries, constants)
    if prometheus is not None and dataset is not None:
        raise click.UsageError("give --dataset or --from-prometheus, not both")
    out = backend().train(name, dataset, reason, holdout_fraction, prometheus)
    emit(out, output_format,
         lambda o: f"{_version_line(o['version'])}: {'promoted' if o['promoted'] else 'not promoted'}\n"
                   f"{o['reason']}")


@models.command("promote")
@click.argument("name")
@click.argument("version")
@output_option
@click.pass_obj
@_friendly
def models_promote(backend: Callable[[], Models], name: str, version: str, output_format: str) -> None:
    """Make VERSION the champion (the one it replaces can come back with rollback)."""
    emit(backend().promote(name, version), output_format, _version_line)


@models.command("rollback")
@click.argument("name")
@output_option
@click.pass_obj
@_friendly
def models_rollback(backend: Callable[[], Models], name: str, output_format: str) -> None:
    """Make the previous champion the champion again."""
    emit(backend().rollback(name), output_format, _version_line)


def _row(pairs: tuple[str, ...]) -> dict[str, float]:
    row: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            row[key] = float(value)
        except ValueError:
            raise click.BadParameter(f"{pair!r}: expected FEATURE=NUMBER", param_hint="ROW") from None
    return row


@models.command("explain")
@click.argument("name")
@click.argument("row", nargs=-1, required=True, metavar="FEATURE=VALUE...")
@click.option("--version", default="champion", show_default=True, help="A version or an alias.")
@output_option
@click.pass_obj
@_friendly
def models_explain(backend: Callable[[], Models], name: str, row: tuple[str, ...], version: str,
                   output_format: str) -> None:
    """A prediction for one row and each feature's attribution (SHAP, largest first)."""
    emit(backend().explain(name, _row(row), version), output_format, render_model)


def _records_table(records: list[Obj]) -> str:
    if not records:
        return "no retrain checks yet"
    return table(
        [(_when(r["at"]), r["model"], r["outcome"], r["version"] or "-", r["reason"]) for r in records],
        ["at", "model", "outcome", "version", "why"],
    )


@models.command("retrain-loop")
@click.argument("names", nargs=-1, required=True, metavar="MODEL...")
@_prometheus_options
@click.option("--lookback", default="1h", show_default=True,
              help="The recent window each check reads, drift is measured on and retraining uses.")
@click.option("--interval", default="5m", show_default=True, help="Time between checks.")
@click.option("--schedule", default="24h", show_default=True,
              help="Retrain at least this often (\"off\": only on drift).")
@click.option("--min-gap", default="10m", show_default=True,
              help="No drift-triggered retraining sooner than this after the last training.")
@click.option("--no-drift", is_flag=True, help="Retrain on the schedule only.")
@click.option("--once", is_flag=True, help="One check of every model, then exit.")
@output_option
@click.pass_obj
@_friendly
def models_retrain_loop(backend: Callable[[], Models], names: tuple[str, ...], prometheus_url: str | None,
                        window: str, row_window: str, step: str, queries: tuple[str, ...],
                        constants: tuple[str, ...], lookback: str, interval: str, schedule: str,
                        min_gap: str, no_drift: bool, once: bool, output_format: str) -> None:
    """Check MODEL... against the recent Prometheus window and retrain on a schedule or on drift
    (promoted only if better, else kept as challenger); each check is printed with why."""
    import time

    from controller.telemetry.windows import prometheus_windows
    from mlconnector.features import DatasetError, window_seconds
    from mlconnector.prometheus import SourceError
    from mlconnector.retrainer import Retrainer, RetrainTarget
    from mlconnector.training import RetrainPolicy

    local = backend()
    if not isinstance(local, LocalModels):
        raise click.UsageError("retrain-loop runs on a registry (--registry URI); the API daemon "
                               "runs its own (see retrain-log)")
    spec = _prometheus_body(prometheus_url, window, row_window, step, queries, constants)
    if spec is None:
        raise click.UsageError("retrain-loop needs --from-prometheus URL and --query COLUMN=PROMQL")
    try:
        seconds = {k: window_seconds(v) for k, v in
                   (("lookback", lookback), ("interval", interval), ("min_gap", min_gap),
                    ("row_window", row_window), ("step", step))}
        every = None if schedule == "off" else window_seconds(schedule)
    except DatasetError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        source = prometheus_windows(spec["url"], spec["queries"], row_window=seconds["row_window"],
                                    step=seconds["step"], constants=spec["constants"])
    except SourceError as exc:
        raise click.BadParameter(str(exc)) from None
    policy = RetrainPolicy(interval_s=every, on_drift=not no_drift, min_gap_s=seconds["min_gap"])
    targets = [RetrainTarget(n, source, seconds["lookback"], policy) for n in names]
    retrainer = Retrainer(local.registry, targets)
    while True:
        records = [r.to_json() for r in retrainer.run_once(time.time())]
        emit(records, output_format, _records_table)
        if once:
            return
        time.sleep(seconds["interval"])


@models.command("retrain-log")
@click.option("--model", default=None, help="Only this model's checks.")
@output_option
@click.pass_obj
@_friendly
def models_retrain_log(backend: Callable[[], Models], model: str | None, output_format: str) -> None:
    """What the API daemon's retraining loop checked and did (promoted, challenger, skipped, failed)."""
    remote = backend()
    if not isinstance(remote, RemoteModels):
        raise click.UsageError("retrain-log reads the API daemon's loop: give --api URL")
    path = "/api/v1/models/-/retrain" + (f"?model={model}" if model else "")
    found: Obj = remote.api.get(path)
    emit(found["records"], output_format, _records_table)
