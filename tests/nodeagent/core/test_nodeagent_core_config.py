"""The configuration file: defaults, validation that names the key, flags, and its documentation."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.config import ConfigError, load_config, parse_config
from nodeagent.config_doc import render_doc

OCTAL = "an octal mode string like '0660'"

REPO = Path(__file__).resolve().parents[3]


def test_the_embedded_defaults_are_a_working_local_agent() -> None:
    config = parse_config({})
    assert config.listen.socket == "/run/mlsysops/nodeagent.sock"
    assert config.listen.socket_mode == "0660" and config.listen.tcp == ""
    assert config.restore_on_shutdown is False and config.drift.enforce is False  # keep across restarts
    assert config.host.fs_root == "/" and config.host.simulate == "off"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"listen": {"socket_mode": "0999"}}, f"listen.socket_mode: expected {OCTAL}"),
        ({"listen": {"socket_mode": 432}}, f"listen.socket_mode: expected {OCTAL} (quote it"),
        ({"listen": {"tcp": "nohost"}}, "listen.tcp: expected HOST:PORT"),
        ({"listen": {"tcp": "0.0.0.0:50051"}}, "listen.tcp: refusing plain-text TCP"),
        ({"listen": {"tcp": "0.0.0.0:1", "tls": {"cert": "/c"}}}, "listen.tls.key: cert, key and client_ca"),
        ({"listen": {"workers": 4, "max_watchers": 4}}, "listen.max_watchers: must be below listen.workers"),
        ({"listen": {"socket": "", "tcp": ""}}, "listen: nothing to listen on"),
        ({"runtime_dir": "run"}, "runtime_dir: must be an absolute path"),
        ({"drift": {"interval_s": "fast"}}, "drift.interval_s: expected a number, got str 'fast'"),
        ({"drift": {"enforce": "yes"}}, "drift.enforce: expected true or false"),
        ({"host": {"simulate": "everything"}}, "host.simulate: expected one of off, cpufreq, all"),
        ({"telemetry": {"collectors": {"cpu": {"interval_ms": 5}}}}, "telemetry.collectors.cpu.interval_ms"),
        ({"mechanisms": {"cgroups": {"enabled": 1}}}, "mechanisms.cgroups.enabled: expected true or false"),
        ({"lissen": {}}, "lissen: unknown option (known: node_name"),
        ({"log_level": "loud"}, "log_level: expected one of debug, info, warning, error"),
    ],
)
def test_bad_options_are_refused_naming_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert str(err.value).startswith(message)


def test_tcp_is_accepted_with_mutual_tls_or_explicitly_insecure() -> None:
    tls = {"cert": "/c.pem", "key": "/k.pem", "client_ca": "/ca.pem"}
    assert parse_config({"listen": {"tcp": "[::1]:50051", "tls": tls}}).listen.tls.enabled
    assert parse_config({"listen": {"tcp": "127.0.0.1:0", "insecure": True}}).listen.insecure


def test_a_file_with_flag_overrides(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("node_name: edge-1\ndrift: {interval_s: 5}\nmechanisms: {network: {enabled: false}}\n")
    config = load_config(path, {"listen.socket": "/tmp/x.sock", "drift.interval_s": 1.5})
    assert config.node_name == "edge-1" and config.listen.socket == "/tmp/x.sock"
    assert config.drift.interval_s == 1.5 and config.mechanisms["network"].enabled is False


def test_an_explicit_file_must_exist_and_parse(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file does not exist"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_the_documentation_is_generated_from_the_options() -> None:
    doc = (REPO / "docs" / "nodeagent-config.md").read_text()
    assert doc == render_doc(), "stale: run python -m nodeagent.config_doc > docs/nodeagent-config.md"
    keys = ["listen.socket_mode", "listen.tls.client_ca", "host.simulate", "drift.enforce"]
    keys += ["restore_on_shutdown", "telemetry.collectors.<name>.interval_ms", "mechanisms.<name>.options"]
    for key in keys:
        assert f"`{key}`" in doc
