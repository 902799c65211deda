"""The generated Prometheus scrape configuration: one job per kind of endpoint, a labelled target
per endpoint, bad targets refused by name before anything is written; promtool accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from controller.telemetry.scrape import ScrapeError, ScrapeSettings, ScrapeTarget, render, scrape_config

AGENTS = [
    ScrapeTarget("nodeagent", "http://127.0.0.1:9465/metrics", {"node": "edge-1"}),
    ScrapeTarget("nodeagent", "http://127.0.0.1:9466/metrics", {"node": "edge-2"}),
    ScrapeTarget("faredge", "http://[::1]:9470/metrics", {"bridge": "gw-1"}),
]


def test_one_job_per_kind_with_a_labelled_target_per_endpoint() -> None:
    config = scrape_config(AGENTS, ScrapeSettings(interval_s=2, timeout_s=1.5))
    assert config["global"]["scrape_interval"] == "2000ms"
    assert config["global"]["scrape_timeout"] == "1500ms"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["nodeagent"]["static_configs"] == [
        {"targets": ["127.0.0.1:9465"], "labels": {"node": "edge-1"}},
        {"targets": ["127.0.0.1:9466"], "labels": {"node": "edge-2"}},
    ]
    assert (jobs["faredge"]["scheme"], jobs["faredge"]["metrics_path"]) == ("http", "/metrics")
    assert jobs["faredge"]["static_configs"] == [{"targets": ["[::1]:9470"], "labels": {"bridge": "gw-1"}}]


def test_an_endpoint_on_another_path_gets_a_job_of_its_own() -> None:
    config = scrape_config([*AGENTS, ScrapeTarget("nodeagent", "https://10.0.0.9:9465/stats")])
    assert [j["job_name"] for j in config["scrape_configs"]] == ["nodeagent", "faredge", "nodeagent-2"]
    assert config["scrape_configs"][2]["scheme"] == "https"


@pytest.mark.parametrize(
    ("target", "field", "reason"),
    [
        (ScrapeTarget("nodeagent", "ftp://127.0.0.1:1/metrics"), "targets[3].url", "http(s) URL"),
        (ScrapeTarget("nodeagent", "http://127.0.0.1/metrics"), "targets[3].url", "host:port"),
        (ScrapeTarget("nodeagent", "http://127.0.0.1:x/metrics"), "targets[3].url", "host:port"),
        (ScrapeTarget("nodeagent", "http://127.0.0.1:9465/metrics"), "targets[3].url", "listed twice"),
        (ScrapeTarget("node agent", "http://127.0.0.1:1/m"), "targets[3].job", "not a job name"),
        (ScrapeTarget("nodeagent", "http://127.0.0.1:1/m", {"job": "x"}), "targets[3].labels", "label name"),
        (ScrapeTarget("nodeagent", "http://127.0.0.1:1/m", {"a": "x\ny"}), "targets[3].labels.a", "one-line"),
    ],
)
def test_a_bad_target_is_refused_naming_it(target: ScrapeTarget, field: str, reason: str) -> None:
    with pytest.raises(ScrapeError) as caught:
        scrape_config([*AGENTS, target])
    assert caught.value.field == field and reason in caught.value.reason


def test_a_timeout_longer_than_the_interval_is_refused() -> None:
    with pytest.raises(ScrapeError, match="interval_s"):
        scrape_config(AGENTS, ScrapeSettings(interval_s=1, timeout_s=2))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) is not installed")
def test_promtool_accepts_the_rendered_file(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(render(scrape_config(AGENTS)))
    assert yaml.safe_load(path.read_text()) == scrape_config(AGENTS)
    done = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
