"""The controller's part of the README demo: plan mode on the shipped examples.

Reads deploy/examples (a camera pipeline and a four-node continuum), optionally adds the live
node agent the demo started (its GetInventory becomes one more node), runs the default policy
chain and prints the decisions, their explanations and how many objects each mechanism would
write. The full plan (with the objects) is saved as JSON in the work directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from controller.plan import PlanReport, explanation, plan_files, result_dict

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"


def tour(workdir: Path, nodeagent_target: str | None) -> None:
    agents = (nodeagent_target,) if nodeagent_target else ()
    # The demo's agent joins the example cluster as an edge node (agents cannot know either).
    report = plan_files(
        [EXAMPLES / "app.yaml"],
        EXAMPLES / "inventory",
        agents=agents,
        agent_layer="edge",
        agent_cluster="uth-edge",
    )
    click.echo(
        f"controller (plan mode): {len(report.inventory.nodes)} nodes, "
        f"{len(report.results)} app(s), policies {' -> '.join(report.policies)}"
    )
    for n in report.inventory.nodes:
        live = f", live agent {n.agent_target}" if n.agent_target in agents else ""
        click.echo(f"  node {n.name}: {n.continuum_layer}, {n.arch or 'mcu'}, cluster {n.cluster}{live}")
    workdir.mkdir(parents=True, exist_ok=True)
    for result in report.results:
        data = result_dict(result)
        _print_result(data)
        _print_explanation(report, result.app.name)
        saved = workdir / f"plan-{result.app.name}.json"
        saved.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        click.echo(f"  full plan with every object: {saved}")


def _print_result(data: dict[str, Any]) -> None:
    click.echo(
        f"  app {data['app']}: {len(data['decisions'])} components in order {', '.join(data['order'])}"
    )
    for d in data["decisions"]:
        where = d["node"] or (f"cluster {d['cluster']}" if d["cluster"] else "not placed")
        settings = f" + node settings {', '.join(sorted(d['nodeSettings']))}" if d["nodeSettings"] else ""
        click.echo(f"    {d['component']:<14} -> {where}{settings}")
    counts = ", ".join(f"{name}: {len(objs)}" for name, objs in data["objects"].items())
    click.echo(f"  objects it would write: {counts}")
    for name, why in data["unavailableMechanisms"].items():
        click.echo(f"  mechanism {name} unavailable: {why}")
    click.echo(f"  conflicts: {len(data['conflicts']) or 'none'}")


def _print_explanation(report: PlanReport, app: str) -> None:
    first = explanation(report.result(app).outcome.plan)[0]
    click.echo(f"  why {first['component']} went to {first['chosen']}:")
    for c in first["candidates"]:
        verdict = f"score {c['score']:.2f}" if c["accepted"] else "rejected"
        click.echo(f"    {c['node']:<10} {verdict:<11} {'; '.join(c['reasons'])}")
