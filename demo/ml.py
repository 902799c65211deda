"""The demo's ML part: a model trained through the same API daemon, explained, and an app placed
by the learning policy, with whatever that policy really decided.

The API daemon the live loop starts keeps an embedded MLflow registry under the demo's work dir
(`model_registry` in the config live.py writes). Its policy chain has `qosLearnedPlacer`, which
runs in the API's ML mode, ahead of the heuristic placer (there is no per-app policy, the chain
decides for every app; the learning policy hands a component without a QoS target on unchanged).
Steps:

- `POST /api/v1/models/latency_p95_ms/train` on the recorded dataset packaged with the ML
  connector (no `dataset` in the body); `GET /api/v1/models` then shows the version and its
  hold-out MAPE, compared with the mean predictor's (`baseline_mape`) on the same window;
- `POST /api/v1/models/latency_p95_ms/explain` for one setting: the SHAP attributions, checked
  additive here (base value + attributions = prediction), as an operator could check them;
- an app whose component targets `latency_p95_ms <= 150`: its placement explanation holds
  `Decision.model`, the model's explanation when the policy trusted the champion, else the visible
  `fallback` reason when it did not (e.g. a hold-out error above the policy's 0.25: the packaged
  dataset's latency model errs about 1.2); the demo prints what the controller decided and does
  not pretend otherwise.

The app is deleted at the end and its workloads are waited away, like the live loop's apps.
"""

from __future__ import annotations

from typing import Any

import click
import httpx

from demo.live import IDLE, _follow_status, _show, _wait
from mlsysops.nodeapi import NodeAgentClient

MODEL = "latency_p95_ms"
APP = "tuned"
LEARNED = "qosLearnedPlacer"
#: one setting the model is asked about (the dataset's grid: runc, 1 CPU, 0.6 cores, 25 req/s)
ROW = {"cpu_quota_cores": 0.6, "cpus": 1, "runtime_gvisor": 0, "offered_rps": 25}
ADDITIVE_TOLERANCE = 1e-6  # relative


def tuned(image: str) -> dict[str, Any]:
    """An app with a p95 latency target, the metric the model is named after."""
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": APP, "namespace": "default"},
        "components": [
            {
                "metadata": {"name": "api"},
                "qos_metrics": [
                    {"application_metric_id": MODEL, "target": 150, "relation": "lower_or_equal"}
                ],
                "containers": [{"image": image, "command": IDLE}],
            }
        ],
    }


def tour(api: httpx.Client, agent_target: str, image: str, admin_token: str) -> None:
    """`api`: the operator's client; `admin_token` switches the policy mode (an admin's change)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    click.secho("\n--- the ML connector: registry, training, explanations, learning policy ---", bold=True)
    _show("GET /api/v1/policies (heuristic mode)", api.get("/api/v1/policies"))
    trained = api.post(f"/api/v1/models/{MODEL}/train", json={"reason": "demo"}, timeout=120)
    _show(f"POST /api/v1/models/{MODEL}/train (the recorded dataset mlconnector/data/qos_grid.csv)", trained)
    if trained.status_code != 200:
        raise click.ClickException(f"training {MODEL} failed: {trained.status_code} {trained.text}")
    _models(api)
    _explain(api)
    switched = api.put("/api/v1/policies/mode", json={"mode": "ml"}, headers=admin)
    _show("PUT /api/v1/policies/mode ml, as an admin (the learning policy joins the chain)", switched)
    if switched.status_code != 200:
        raise click.ClickException(f"ML mode refused: {switched.status_code} {switched.text}")
    _show("GET /api/v1/policies", api.get("/api/v1/policies"))
    _show(f"POST /api/v1/apps ({APP}: {MODEL} <= 150 ms, placed by {LEARNED})",
          api.post("/api/v1/apps", json=tuned(image)))  # fmt: skip
    _follow_status(api, APP)
    _decision(api)
    _show(f"DELETE /api/v1/apps/{APP}", api.delete(f"/api/v1/apps/{APP}"))
    _wait(lambda: not _workloads(agent_target), f"the {APP} app's workloads gone")
    _show("PUT /api/v1/policies/mode heuristic",
          api.put("/api/v1/policies/mode", json={"mode": "heuristic"}, headers=admin))  # fmt: skip


def _models(api: httpx.Client) -> None:
    click.secho("\nGET /api/v1/models", fg="cyan")
    listed = api.get("/api/v1/models")
    listed.raise_for_status()
    for model in listed.json():
        click.echo(f"  {model['name']}: {model['versions']} version(s), champion {model['champion']}, "
                   f"aliases {model['aliases']}")  # fmt: skip
    shown = api.get(f"/api/v1/models/{MODEL}")
    shown.raise_for_status()
    for v in shown.json()["history"]:
        m, lineage = v["metrics"], v.get("lineage") or {}
        holdout, baseline = m.get("holdout_mape", float("nan")), m.get("baseline_mape", float("nan"))
        click.echo(
            f"  version {v['version']} {v['aliases']}: hold-out MAPE {holdout:.3f} "
            f"vs baseline (mean predictor) {baseline:.3f}, "
            f"trained on {lineage.get('rows')} rows of {lineage.get('source')}"
        )


def _explain(api: httpx.Client) -> None:
    reply = api.post(f"/api/v1/models/{MODEL}/explain", json={"row": ROW})
    _show(f"POST /api/v1/models/{MODEL}/explain {ROW}", reply)
    reply.raise_for_status()
    e = reply.json()
    total = e["base_value"] + sum(e["attributions"].values())
    for feature, value in sorted(e["attributions"].items(), key=lambda kv: -abs(kv[1])):
        click.echo(f"  {feature:<16} {value:+10.2f} ms")
    additive = abs(total - e["prediction"]) <= ADDITIVE_TOLERANCE * max(1.0, abs(e["prediction"]))
    verdict = "additive" if additive else "NOT additive"
    click.echo(f"  {e['method']}: base {e['base_value']:.2f} + attributions = {total:.2f} ms, "
               f"prediction {e['prediction']:.2f} ms: {verdict}")  # fmt: skip
    if not additive:
        raise click.ClickException(f"the explanation does not add up: {total} != {e['prediction']}")


def _decision(api: httpx.Client) -> None:
    """What the learning policy decided for the component, as the API explains it."""
    reply = api.get(f"/api/v1/apps/{APP}/explain")
    click.secho(f"\nGET /api/v1/apps/{APP}/explain (Decision.model)", fg="cyan")
    reply.raise_for_status()
    for row in reply.json():
        click.echo(f"  component {row.get('component')} on {row.get('chosen')}: {row.get('reason')}")
        model = row.get("model") or {}
        if "fallback" in model:
            click.echo(f"  model: not trusted, fallback to the heuristic: {model['fallback']}")
        elif model:
            setting = model.get("setting") or {}
            click.echo(f"  model {model.get('model')}: {model.get('metric')} predicted "
                       f"{model.get('prediction', float('nan')):.1f} (target {model.get('target')}, margin "
                       f"{model.get('margin')}) at {model.get('offered_rps')} req/s "
                       f"({model.get('offered_rps_source')}); setting {setting}")  # fmt: skip
            attributions = model.get("attributions") or {}
            click.echo("  attributions " + ", ".join(f"{k} {v:+.1f}" for k, v in attributions.items()))
        else:
            click.echo("  model: none (the learning policy did not decide this component)")


def _workloads(target: str) -> list[str]:
    with NodeAgentClient(target) as client:
        return [w.spec.name for w in client.workloads() if w.spec.name.startswith(f"{APP}.")]
