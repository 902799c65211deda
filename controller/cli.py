"""`mlsysops apps|nodes|clusters`: the controller's command groups.

Two modes, chosen per invocation:
- plan mode (the embedded default, no API server): descriptions from `-f FILE` and the system
  from `--inventory DIR` (MLSysOpsNode/Cluster documents) and/or live node agents (`--agent
  HOST:PORT`); commands show what the controller would decide and write;
- cluster mode (`--kubeconfig` or KUBECONFIG, and no `-f/--inventory`): the MLSysOps objects
  on the API server, through controller.kube.store.AppStore;
- remote mode (`--api URL` or MLSYSOPS_API_URL): the same commands through the northbound REST
  API (controller.api.client.RemoteStore), with the token from MLSYSOPS_API_TOKEN or
  ~/.config/mlsysops/api.yaml.

Errors are translated to CLI messages in one place (`_friendly`): a bad description names the
field path and what was expected, and nothing is written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from controller.cli_output import (
    app_row,
    apps_table,
    cluster_rows,
    clusters_table,
    node_row,
    nodes_table,
    render_explanation,
    render_plans,
    render_status,
)
from controller.inventory import AgentError, Inventory, from_agents
from controller.mechanisms import MechanismRegistry
from controller.model import App, DescriptionError, load_documents, parse_document, unknown_fields
from controller.plan import PlanReport, explanation, plan_files, result_dict
from controller.policies import DEFAULT_CHAIN, PolicyRegistry, UnknownPolicy
from mlsysops.output import emit, output_option, table
from mlsysops.restapi import RestError

F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------------------- where the system comes from


@dataclass(frozen=True)
class Source:
    """What a command reads: files (plan mode) or an API server (cluster mode)."""

    files: tuple[str, ...] = ()
    inventory_dir: str | None = None
    agents: tuple[str, ...] = ()
    agent_layer: str = "edge"
    agent_cluster: str | None = None
    policies: tuple[str, ...] = ()
    namespace: str = "default"
    kubeconfig: str | None = None
    api: str | None = None

    @property
    def remote(self) -> bool:
        """Whether objects are written and read somewhere (an API server or the REST API)."""
        return bool(self.kubeconfig or self.api)

    @property
    def plan_mode(self) -> bool:
        if self.api and (self.inventory_dir or self.agents):
            raise click.UsageError("--api reads the system from the REST API: drop --inventory/--agent")
        if self.api:
            return False
        if self.files or self.inventory_dir or self.agents:
            return True
        if self.kubeconfig:
            return False
        raise click.UsageError(
            "no system given: use -f FILE and/or --inventory DIR (plan mode), "
            "--kubeconfig / KUBECONFIG (cluster mode) or --api URL (remote mode)"
        )

    def report(self) -> PlanReport:
        return plan_files(
            self.files,
            self.inventory_dir,
            self.agents,
            PolicyRegistry.from_entry_points(),
            self.policies or DEFAULT_CHAIN,
            self.namespace,
            self.agent_layer,
            self.agent_cluster,
            MechanismRegistry.from_entry_points(),
        )

    def store(self) -> Any:
        if self.api:
            from controller.api.client import RemoteApi, RemoteStore

            return RemoteStore(RemoteApi(self.api))
        return _store(self.kubeconfig, self.namespace)

    def inventory(self) -> Inventory:
        if not self.plan_mode:
            store = self.store()
            docs = [*store.list_nodes(), *store.list_clusters()]
            return Inventory.from_descriptions(parse_document(d, self.namespace) for d in docs)
        base = (
            Inventory.from_directory(self.inventory_dir, self.namespace)
            if self.inventory_dir
            else Inventory(())
        )
        if not self.agents:
            return base
        return from_agents(
            self.agents,
            base,
            continuum_layer=self.agent_layer,
            namespace=self.namespace,
            cluster_id=self.agent_cluster,
        )


_OPTIONS: dict[str, Callable[[F], F]] = {
    "files": click.option(
        "-f",
        "--filename",
        "files",
        multiple=True,
        type=click.Path(exists=True),
        help="Description file or directory (YAML/JSON, either form; repeatable).",
    ),
    "inventory_dir": click.option(
        "--inventory",
        "inventory_dir",
        default=None,
        type=click.Path(exists=True, file_okay=False),
        help="Plan mode: directory of MLSysOpsNode/Cluster descriptions.",
    ),
    "agents": click.option(
        "--agent",
        "agents",
        multiple=True,
        metavar="HOST:PORT",
        help="Plan mode: also read this live node agent's inventory (repeatable).",
    ),
    "agent_layer": click.option(
        "--agent-layer",
        default="edge",
        show_default=True,
        type=click.Choice(["cloud", "edge_infrastructure", "edge", "far_edge"]),
        help="continuum_layer of agent-reported nodes that no description covers.",
    ),
    "agent_cluster": click.option(
        "--agent-cluster",
        default=None,
        metavar="CLUSTER_ID",
        help="cluster_id of agent-reported nodes that no description covers.",
    ),
    "policies": click.option(
        "--policy",
        "policies",
        multiple=True,
        metavar="NAME",
        help=f"Policy chain in priority order (default: {', '.join(DEFAULT_CHAIN)}).",
    ),
    "namespace": click.option(
        "-n", "--namespace", default="default", show_default=True, help="Namespace of the descriptions."
    ),
    "kubeconfig": click.option(
        "--kubeconfig",
        envvar="KUBECONFIG",
        default=None,
        help="Cluster mode: kubeconfig file (default: $KUBECONFIG).",
    ),
    "api": click.option(
        "--api",
        envvar="MLSYSOPS_API_URL",
        default=None,
        metavar="URL",
        help="Remote mode: the REST API (default: $MLSYSOPS_API_URL; token from $MLSYSOPS_API_TOKEN).",
    ),
}


def source_options(*names: str) -> Callable[[F], F]:
    """Add the named options and hand the command one `source: Source` instead of each of them."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {name: kwargs.pop(name) for name in names}
            return fn(*args, source=Source(**given), **kwargs)

        for name in reversed(names):
            wrapper = _OPTIONS[name](wrapper)
        return wrapper  # type: ignore[return-value]

    return decorate


AGENT_INPUTS = ("agents", "agent_layer", "agent_cluster")
PLAN_INPUTS = ("files", "inventory_dir", *AGENT_INPUTS, "policies", "namespace")


def _friendly(fn: F) -> F:
    """The one place where domain errors become CLI messages (exit status 1)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DescriptionError as exc:
            raise click.ClickException(f"invalid description: {exc}") from exc
        except (AgentError, UnknownPolicy) as exc:
            raise click.ClickException(str(exc)) from exc
        except LookupError as exc:
            raise click.ClickException(str(exc.args[0]) if exc.args else str(exc)) from exc
        except Exception as exc:
            if type(exc).__module__ == "controller.kube.errors":
                raise click.ClickException(f"API server: {exc}") from exc
            if isinstance(exc, RestError):  # remote mode (--api URL)
                raise click.ClickException(str(exc)) from exc
            raise

    return wrapper  # type: ignore[return-value]


def _store(kubeconfig: str | None, namespace: str) -> Any:
    from controller.kube.client import load_api_client
    from controller.kube.store import AppStore

    return AppStore(load_api_client(kubeconfig), namespace)


def _require_files(source: Source) -> None:
    if not source.files:
        raise click.UsageError("give the application with -f APP.yaml")


# ---------------------------------------------------------------------------- apps


@click.group()
def apps() -> None:
    """MLSysOps applications: plan, deploy, inspect and explain placements."""


@apps.command("validate")
@source_options("files", "namespace")
@output_option
@_friendly
def apps_validate(source: Source, output_format: str) -> None:
    """Check descriptions against the CRD schema and the semantic rules; write nothing."""
    _require_files(source)
    rows = [
        {
            "kind": d.kind,
            "name": d.name,
            "namespace": d.namespace,
            "file": f,
            "warnings": [f"{p}: unknown field" for p in unknown_fields(d.raw)],
        }
        for f in source.files
        for d in load_documents(Path(f), source.namespace)
    ]
    emit(
        rows,
        output_format,
        lambda rs: table(
            [(r["kind"], r["name"], r["file"], "; ".join(r["warnings"]) or "valid") for r in rs],
            ["kind", "name", "file", "result"],
        ),
    )


@apps.command("plan")
@source_options(*PLAN_INPUTS)
@click.option(
    "--objects/--no-objects",
    default=True,
    show_default=True,
    help="Show the exact objects each mechanism would write.",
)
@output_option
@_friendly
def apps_plan(source: Source, objects: bool, output_format: str) -> None:
    """Decide placements from files, without an API server: decisions, explanations, objects."""
    _require_files(source)
    report = source.report()
    data = [result_dict(r) for r in report.results]
    if not objects:
        for d in data:
            d.pop("objects")
    emit(data, output_format, lambda ds: render_plans(ds, report))


@apps.command("explain")
@click.argument("app")
@click.option("--component", "components", multiple=True, metavar="NAME", help="Only these components.")
@source_options(*PLAN_INPUTS, "kubeconfig", "api")
@output_option
@_friendly
def apps_explain(app: str, components: tuple[str, ...], source: Source, output_format: str) -> None:
    """Per component: the candidate nodes, why each was rejected or scored, what was chosen."""
    if source.plan_mode:
        rows = explanation(source.report().result(app).outcome.plan)
    else:
        rows = source.store().get_app(app).get("status", {}).get("explanation", [])
        if not rows:
            click.echo(f"app {app} has no explanation yet (the controller has not planned it)", err=True)
    if components:
        unknown = sorted(set(components) - {r["component"] for r in rows})
        if unknown and rows:
            raise LookupError(f"no component {', '.join(unknown)} in app {app}")
        rows = [r for r in rows if r["component"] in components]
    emit(rows, output_format, render_explanation)


@apps.command("deploy")
@source_options("files", "inventory_dir", *AGENT_INPUTS, "namespace", "kubeconfig", "api")
@output_option
@_friendly
def apps_deploy(source: Source, output_format: str) -> None:
    """Create or update apps on the cluster; without one, a dry run in plan mode."""
    _require_files(source)
    per_file = [(f, load_documents(Path(f), source.namespace)) for f in source.files]
    apps_ = [d for _, docs in per_file for d in docs if isinstance(d, App)]  # all valid before any write
    if not apps_:
        raise click.UsageError("no MLSysOpsApp in the given files")
    _check_namespaces(per_file, source.namespace)
    if source.remote and not source.inventory_dir and not source.agents:
        store = source.store()
        stored = [store.apply_app(dict(a.raw)) for a in apps_]
        emit(
            [{"app": s["metadata"]["name"], "result": "applied"} for s in stored],
            output_format,
            lambda rows: "\n".join(f"mlsysopsapp/{r['app']} applied" for r in rows),
        )
        return
    report = source.report()
    click.echo("plan mode (no cluster): nothing written; this is what a deployment would do", err=True)
    emit([result_dict(r) for r in report.results], output_format, lambda ds: render_plans(ds, report))


def _check_namespaces(per_file: list[tuple[str, list[Any]]], namespace: str) -> None:
    """An app whose metadata.namespace is not the one the command targets would be written
    where the controller (started for `namespace`) never looks: refuse it, before any write."""
    for f, docs in per_file:
        for i, d in enumerate(docs):
            if isinstance(d, App) and d.namespace != namespace:
                where = f"{f}, document {i + 1}" if len(docs) > 1 else f
                raise DescriptionError.single(
                    "MLSysOpsApp.metadata.namespace",
                    f"the namespace the command targets ({namespace}, from -n/--namespace); "
                    "make them agree or drop metadata.namespace",
                    repr(d.namespace),
                ).with_source(where)


@apps.command("list")
@source_options("files", "inventory_dir", "namespace", "kubeconfig", "api")
@output_option
@_friendly
def apps_list(source: Source, output_format: str) -> None:
    """Apps with their phase and placement summary."""
    if source.plan_mode:
        objs = [result_dict(r)["objects"]["mlsysops"][0] for r in source.report().results]
    else:
        objs = source.store().list_apps()
    emit([app_row(o) for o in objs], output_format, apps_table)


@apps.command("status")
@click.argument("app")
@source_options("files", "inventory_dir", "namespace", "kubeconfig", "api")
@output_option
@_friendly
def apps_status(app: str, source: Source, output_format: str) -> None:
    """Placement, phase, conditions and conflicts of one app."""
    if source.plan_mode:
        status = result_dict(source.report().result(app))["objects"]["mlsysops"][0]["status"]
    else:
        status = source.store().get_app(app).get("status", {})
    emit(status, output_format, lambda s: render_status(app, s))


@apps.command("delete")
@click.argument("app")
@source_options("namespace", "kubeconfig", "api")
@_friendly
def apps_delete(app: str, source: Source) -> None:
    """Delete an app from the cluster (everything created for it goes with it)."""
    if not source.remote:
        raise click.ClickException(
            "delete needs a cluster (--kubeconfig or KUBECONFIG) or the REST API (--api URL); "
            "plan mode writes nothing, so there is nothing to delete"
        )
    source.store().delete_app(app)
    click.echo(f"mlsysopsapp/{app} deleted")


# ---------------------------------------------------------------------------- nodes and clusters


@click.group()
def nodes() -> None:
    """Nodes of the continuum as the controller sees them."""


@nodes.command("list")
@source_options("inventory_dir", *AGENT_INPUTS, "namespace", "kubeconfig", "api")
@output_option
@_friendly
def nodes_list(source: Source, output_format: str) -> None:
    """Nodes with layer, cluster, free capacity, runtimes and agent."""
    emit([node_row(n) for n in source.inventory().nodes], output_format, nodes_table)


@click.group()
def clusters() -> None:
    """Clusters of the continuum."""


@clusters.command("list")
@source_options("inventory_dir", "namespace", "kubeconfig", "api")
@output_option
@_friendly
def clusters_list(source: Source, output_format: str) -> None:
    """Clusters with their nodes (as described, and as found in node descriptions)."""
    emit(cluster_rows(source.inventory()), output_format, clusters_table)
