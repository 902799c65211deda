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
    def train(self, name: str, dataset: str | None, reason: str, holdout_fraction: float) -> Obj: ...
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

    def train(self, name: str, dataset: str | None, reason: str, holdout_fraction: float) -> Obj:
        body: Obj = {"reason": reason, "holdout_fraction": holdout_fraction}
        if dataset is not None:
            body["dataset"] = dataset
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

    def train(self, name: str, dataset: str | None, reason: str, holdout_fraction: float) -> Obj:
        from controller.api import models

        path = None if dataset is None else Path(dataset)
        if path is not None and not path.is_file():
            raise click.ClickException(f"{dataset}: no such dataset file")
        return models.train(
            self.registry, name, dataset=path, reason=reason, holdout_fraction=holdout_fraction
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


@models.command("train")
@click.argument("name")
@click.option("--dataset", default=None, metavar="PATH",
              help="A recorded dataset (CSV); default the packaged one. With --api: a path under the "
              "API's --model-datasets.")
@click.option("--reason", default="operator (CLI)", show_default=True, help="Recorded with the version.")
@click.option("--holdout-fraction", default=0.25, show_default=True, type=float,
              help="The most recent share of the windows the challenger and champion are judged on.")
@output_option
@click.pass_obj
@_friendly
def models_train(backend: Callable[[], Models], name: str, dataset: str | None, reason: str,
                 holdout_fraction: float, output_format: str) -> None:
    """Train a new version; it becomes champion only if it beats the champion on recent windows."""
    out = backend().train(name, dataset, reason, holdout_fraction)
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
