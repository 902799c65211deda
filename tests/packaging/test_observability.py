"""Alerting and recording rules, and the Grafana dashboards (deploy/observability).

The rules pass `promtool check rules` and their unit tests (`promtool test rules`), which
cover every alert firing and not firing. The dashboards' JSON is what the generator writes and
is well formed (ids, datasource, queries, titles, units). Then the real daemons run, a private
Prometheus scrapes them and loads the rules (observability_stack.py), and every panel query,
variable query and rule expression is executed there: no error, every metric name it reads
exists in what was scraped or recorded, every rule healthy, the no-`for` alerts firing. The
app dashboard runs against a second stack: an app placed on a real agent with a private
containerd (its workload series exist only for containerd tasks).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from mlsysops.testing import wait_for

sys.path.insert(0, str(Path(__file__).parent))

from observability_stack import NO_NODE_FITS, QOS_APP, Stack, load_module, observed_stack, workload_stack

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "rules" / "mlsysops.rules.yml"
RULE_TESTS = OBSERVABILITY / "rules" / "mlsysops.rules.test.yml"
GENERATOR = OBSERVABILITY / "dashboards.py"
UNITS = {"short", "bytes", "s", "Bps", "hertz", "percentunit", "reqps", "wps"}
PANEL_KINDS = {"timeseries", "stat", "table"}
# The app dashboard's series: only a containerd task is accounted, so the simulated node of the
# main stack has none; the workload stack (a private containerd) checks that dashboard.
WORKLOAD_SERIES = {
    "mlsysops_nodeagent_workload_cpu_usage_seconds_total",
    "mlsysops_nodeagent_workload_memory_usage_bytes",
}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus")

# ------------------------------------------------------------------ PromQL metric names

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
_KEYWORDS |= {"offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in matchers or grouping clauses), durations or strings."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = _CLAUSE.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # 5m, 1e3
            continue
        if text[match.end() :].lstrip().startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_names_reads_selectors_only() -> None:
    expr = (
        'sum by (node, le) (rate(foo_seconds_bucket{node=~"$node",x="a b"}[$__rate_interval])) > 0.5'
        " and on (job, instance) bar:recorded:sum == 1 unless ignoring (x) baz offset 5m or vector(1e3)"
    )
    assert metric_names(expr) == {"foo_seconds_bucket", "bar:recorded:sum", "baz"}
    assert metric_names("count(up == 0) or vector(0)") == {"up"}


# ------------------------------------------------------------------ rules


def rule_groups() -> list[dict[str, Any]]:
    return list(yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"])


def alerts() -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in rule_groups() for r in g["rules"] if "alert" in r}


def expressions() -> list[str]:
    return [r["expr"] for g in rule_groups() for r in g["rules"]]


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(expressions())} rules found" in done.stdout


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    done = subprocess.run(
        ["promtool", "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    seen: dict[str, set[bool]] = {}
    for case in tests:
        for check in case.get("alert_rule_test", []):
            seen.setdefault(check["alertname"], set()).add(bool(check["exp_alerts"]))
    assert {name: {True, False} for name in alerts()} == seen


# ------------------------------------------------------------------ dashboards


def generator() -> ModuleType:
    return load_module("observability_dashboards", GENERATOR)


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in (OBSERVABILITY / "dashboards").glob("*.json")
    }


def test_committed_dashboards_are_the_generators_output() -> None:
    expected = generator().rendered()
    committed = {p.name: p.read_text(encoding="utf-8") for p in (OBSERVABILITY / "dashboards").glob("*.json")}
    assert set(committed) == set(expected) == {"fleet.json", "node.json", "devices.json", "app.json"}
    stale = [name for name, text in expected.items() if committed[name] != text]
    assert not stale, f"{stale} differ from the generator: run python deploy/observability/dashboards.py"


def test_generator_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    module = generator()
    assert module.main([], tmp_path) == 0 and module.main(["--check"], tmp_path) == 0
    (tmp_path / "node.json").write_text("{}\n")
    assert module.main(["--check"], tmp_path) == 1


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target


def test_dashboards_are_well_formed() -> None:
    uids = set()
    for name, d in dashboards().items():
        uids.add(d["uid"])
        variables = d["templating"]["list"]
        chooser = variables[0]  # the Prometheus every panel and variable reads
        assert (chooser["name"], chooser["type"], chooser["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )
        names = [v["name"] for v in variables]
        assert len(names) == len(set(names)), name
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids not unique"
        titles = [p["title"] for p in d["panels"]]
        assert all(titles) and len(titles) == len(set(titles)), f"{name}: titles empty or repeated"
        cells: set[tuple[int, int]] = set()
        for p in d["panels"]:
            where = f"{name} / {p['title']}"
            assert p["type"] in PANEL_KINDS and p["description"], where
            assert p["fieldConfig"]["defaults"]["unit"] in UNITS, where
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), f"{where}: no query"
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), where
            assert all(t["datasource"] == p["datasource"] for t in p["targets"]), where
            g = p["gridPos"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert g["x"] + g["w"] <= 24 and not mine & cells, f"{where}: outside the grid or overlapping"
            cells |= mine
            for t in p["targets"]:
                used = set(re.findall(r"\$(\w+)", t["expr"] + t["legendFormat"])) - {"__rate_interval"}
                assert used <= set(names), f"{where}: {used - set(names)} not a variable"
        for v in variables[1:]:
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name
            assert re.fullmatch(r"label_values\(.+, \w+\)", v["query"]["query"]), name
    assert len(uids) == len(dashboards())


# ------------------------------------------------------------------ against the real daemons

ALL = ".*"  # what Grafana substitutes for a variable set to All
RATE_INTERVAL = "5s"  # four scrapes at the stack's 1 s interval


def substituted(expr: str) -> str:
    return re.sub(r"\$(\w+)", lambda m: RATE_INTERVAL if m.group(1) == "__rate_interval" else ALL, expr)


def label_values(prometheus: Stack, label: str, match: str) -> list[str]:
    reply = httpx.get(
        f"{prometheus.prometheus.url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=10
    )
    body = reply.json()
    assert body["status"] == "success", body
    return list(body["data"])


def panel_queries() -> list[tuple[str, str]]:
    return [(f"{n} / {title}", t["expr"]) for n, d in dashboards().items() for title, t in targets(d)]


def rules_api(stack: Stack) -> list[dict[str, Any]]:
    body = httpx.get(f"{stack.prometheus.url}/api/v1/rules", timeout=10).json()
    return [r for g in body["data"]["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if shutil.which("prometheus") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs Debian's prometheus and mosquitto")
    with tempfile.TemporaryDirectory(prefix="mlsysops-observe-") as tmp, observed_stack(Path(tmp)) as running:
        every = set().union(*(metric_names(e) for _, e in panel_queries()), *map(metric_names, expressions()))
        wanted = every - WORKLOAD_SERIES

        def scraped_all() -> set[str] | None:
            present = set(label_values(running, "__name__", '{__name__=~".+"}'))
            return present if wanted <= present else None

        try:
            wait_for(scraped_all, 90, "every metric the dashboards and rules read, scraped or recorded")
        except AssertionError:
            present = set(label_values(running, "__name__", '{__name__=~".+"}'))
            raise AssertionError(f"never seen: {sorted(wanted - present)}") from None
        yield running


def test_every_panel_query_runs_on_the_real_metrics(stack: Stack) -> None:
    present = set(label_values(stack, "__name__", '{__name__=~".+"}'))
    unreached = ["node.json / Collectors failing"]  # selects a state the stack does not reach

    def empty_panels() -> list[str]:
        empty = []
        for where, expr in panel_queries():
            result = stack.prometheus.query(substituted(expr))  # MetricsUnavailable on a PromQL error
            names = metric_names(expr)
            assert names, f"{where}: selects no metric"
            assert names - WORKLOAD_SERIES <= present, f"{where}: {names - present} not exported"
            if not result and not names & WORKLOAD_SERIES:
                empty.append(where)
        return empty

    # rate() and increase() need two samples in their window: on a loaded machine the scrapes
    # that give a panel its second sample may come a few seconds after the stack is up.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: empty_panels() == unreached, 60, "every panel but the unreached ones showing data")
    assert empty_panels() == unreached


def test_every_variable_offers_values(stack: Stack) -> None:
    for name, d in dashboards().items():
        for v in d["templating"]["list"][1:]:
            metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", v["query"]["query"]).groups()  # type: ignore[union-attr]
            if metric in WORKLOAD_SERIES:
                continue
            assert label_values(stack, label, metric), f"{name}: ${v['name']} has no values"


def test_every_rule_evaluates_on_the_real_metrics(stack: Stack) -> None:
    present = set(label_values(stack, "__name__", '{__name__=~".+"}'))
    for expr in expressions():
        stack.prometheus.query(expr)
        assert metric_names(expr) <= present, f"{expr}: {metric_names(expr) - present} not exported"

    def evaluated() -> list[dict[str, Any]] | None:
        rules = rules_api(stack)
        return rules if rules and all(r.get("lastEvaluation", "").startswith("2") for r in rules) else None

    rules = wait_for(evaluated, 30, "every rule evaluated once")
    assert len(rules) == len(expressions())
    assert all(r["health"] == "ok" and not r.get("lastError") for r in rules), rules


def test_alerts_fire_on_the_real_metrics(stack: Stack) -> None:
    """The stack failed an apply and rolled an update back: the two alerts without `for` fire;
    the offline device, the out-of-sync twin, the app no node fits and the app missing its QoS
    target are pending (their `for` is minutes)."""

    def states() -> dict[str, str] | None:
        got = {r["name"]: r["state"] for r in rules_api(stack) if r["type"] == "alerting"}
        firing = got.get("MlsysopsApplyFailures") == got.get("MlsysopsOtaRolloutFailures") == "firing"
        return got if firing else None

    with contextlib.suppress(AssertionError):
        wait_for(states, 30, "MlsysopsApplyFailures and MlsysopsOtaRolloutFailures firing")
    got = {r["name"]: r["state"] for r in rules_api(stack) if r["type"] == "alerting"}
    assert got["MlsysopsApplyFailures"] == "firing"
    assert got["MlsysopsOtaRolloutFailures"] == "firing"
    assert got["MlsysopsDeviceOffline"] == "pending"
    assert got["MlsysopsTwinOutOfSync"] == got["MlsysopsDriftPersisting"] == "pending"
    assert got["MlsysopsNodeAgentDown"] == got["MlsysopsFarEdgeBridgeDown"] == "inactive"
    assert got["MlsysopsBridgeBrokerDisconnected"] == "inactive"
    assert got["MlsysopsPlacementImpossible"] == got["MlsysopsAppQosTargetMissed"] == "pending"


def test_the_controllers_app_series_are_what_the_alerts_read(stack: Stack) -> None:
    """The real controller exports the app no node fits with one unplaced component, the app
    monitoring reports on with its violation, each app's phase once."""
    query = stack.prometheus.query

    def unplaced() -> dict[str, float]:
        return {s.labels["app"]: s.value for s in query("mlsysops_controller_app_components_unplaced")}

    with contextlib.suppress(AssertionError):  # reconciled within a few scrapes of the stack's start
        wait_for(lambda: unplaced() == {NO_NODE_FITS: 1, QOS_APP: 0}, 60, "both apps reconciled")
    assert unplaced() == {NO_NODE_FITS: 1, QOS_APP: 0}
    [violation] = query("mlsysops_controller_app_qos_violations")
    assert (violation.labels["app"], violation.labels["component"], violation.value) == (QOS_APP, "reader", 1)
    assert violation.labels["metric"] == "latency_ms" and violation.labels["job"] == "controller"
    phases = {s.labels["app"]: s.value for s in query("sum by (app) (mlsysops_controller_app_phase)")}
    assert phases == {NO_NODE_FITS: 1, QOS_APP: 1}


@pytest.fixture(scope="module")
def workloads() -> Iterator[Stack]:
    if shutil.which("prometheus") is None:
        pytest.skip("needs Debian's prometheus")
    with tempfile.TemporaryDirectory(prefix="mlsysops-observe-") as tmp, workload_stack(Path(tmp)) as running:

        def accounted() -> bool:
            present = set(label_values(running, "__name__", '{__name__=~".+"}'))
            return present >= WORKLOAD_SERIES and bool(
                running.prometheus.query(f"rate({min(WORKLOAD_SERIES)}[5s])")
            )

        wait_for(accounted, 90, "the workload's CPU and memory scraped twice")
        yield running


def test_app_dashboard_shows_a_real_apps_workloads(workloads: Stack) -> None:
    """The app placed by the controller's local mechanism on a real agent: its variable offers
    the app's name, and every panel, filtered to it, shows its one replica."""
    app = dashboards()["app.json"]
    (variable,) = app["templating"]["list"][1:]
    metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"]).groups()  # type: ignore[union-attr]
    offered = label_values(workloads, label, metric)
    assert offered == ["observe.web.0"]
    extract = re.compile(variable["regex"].strip("/"))
    assert {m.group(1) for v in offered if (m := extract.search(v))} == {"observe"}
    for title, target in targets(app):
        expr = target["expr"].replace("$app", "observe").replace("$__rate_interval", RATE_INTERVAL)
        result = workloads.prometheus.query(expr)
        assert result, f"app.json / {title}: no data for the running app"
        assert metric_names(target["expr"]) <= WORKLOAD_SERIES, title
    (placed,) = workloads.prometheus.query(app["panels"][0]["targets"][0]["expr"].replace("$app", "observe"))
    assert placed.labels["workload"] == "observe.web.0" and placed.labels["node"]
