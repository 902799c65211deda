"""Policy routes over the installed registry, and the daemon's config file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller.api.daemon import load_config, parser
from controller.api.policies import RegistryPolicyControl
from controller.api.server import API_POLICIES, ListenerRefused
from controller.policies import DEFAULT_CHAIN, PolicyRegistry


@pytest.fixture
def admin_client(make_client, tmp_path):
    changes: list[tuple[str, ...]] = []
    control = RegistryPolicyControl(
        PolicyRegistry.from_entry_points(), DEFAULT_CHAIN, tmp_path / "p.json", on_change=changes.append
    )
    return make_client(policies=control), changes, control


def test_policies_are_listed_in_chain_order_with_their_mode(admin_client, bearer):
    client, _, _ = admin_client
    body = client.get("/api/v1/policies", headers=bearer["viewer"]).json()
    assert body == {
        "mode": "heuristic",
        "policies": [
            {"name": "staticPlacedComponents", "enabled": True, "mode": "heuristic", "position": 0},
            {"name": "constraintAwarePlacer", "enabled": True, "mode": "heuristic", "position": 1},
        ],
    }


def test_disable_and_enable_reach_the_controller_once_each(admin_client, bearer):
    client, changes, control = admin_client
    client.put("/api/v1/policies/staticPlacedComponents", json={"enabled": False}, headers=bearer["admin"])
    client.put("/api/v1/policies/staticPlacedComponents", json={"enabled": False}, headers=bearer["admin"])
    client.put("/api/v1/policies/staticPlacedComponents", json={"enabled": True}, headers=bearer["admin"])
    assert changes == [("constraintAwarePlacer",), ("staticPlacedComponents", "constraintAwarePlacer")]
    assert control.chain() == DEFAULT_CHAIN


def test_bad_policy_input_is_refused_by_field_and_changes_nothing(admin_client, bearer, tmp_path):
    client, changes, control = admin_client
    r = client.put("/api/v1/policies/mode", json={"mode": "fast"}, headers=bearer["admin"])
    assert r.status_code == 422 and r.json()["field"] == "mode"
    r = client.put("/api/v1/policies/mode", json={"mode": "ml"}, headers=bearer["admin"])
    assert r.status_code == 409  # the chain has no ML policy: the answer says which to add
    assert "add qosLearnedPlacer to the daemon's `policies`" in r.json()["detail"]
    r = client.put(
        "/api/v1/policies/constraintAwarePlacer", json={"enabled": "maybe"}, headers=bearer["admin"]
    )
    assert r.status_code == 422 and "enabled" in r.text
    assert (
        client.put("/api/v1/policies/mode", json={"mode": "ml"}, headers=bearer["operator"]).status_code
        == 403
    )
    assert changes == [] and control.mode() == "heuristic" and not (tmp_path / "p.json").exists()


def test_ml_mode_puts_the_learning_policy_ahead_of_the_heuristics_it_falls_back_to(make_client, bearer):
    changes: list[tuple[str, ...]] = []
    control = RegistryPolicyControl(
        PolicyRegistry.from_entry_points(), API_POLICIES, on_change=changes.append
    )
    client = make_client(policies=control)
    assert control.chain() == DEFAULT_CHAIN  # heuristic mode, the default, leaves it out
    listed = client.get("/api/v1/policies", headers=bearer["viewer"]).json()["policies"]
    assert listed[1] == {"name": "qosLearnedPlacer", "enabled": False, "mode": "ml", "position": -1}
    r = client.put("/api/v1/policies/mode", json={"mode": "ml"}, headers=bearer["admin"])
    assert r.status_code == 200 and r.json() == {"mode": "ml"}
    assert changes == [API_POLICIES] and control.chain() == API_POLICIES
    r = client.put("/api/v1/policies/qosLearnedPlacer", json={"enabled": False}, headers=bearer["admin"])
    assert r.status_code == 409  # ML mode with its only ML policy disabled would run no ML policy
    assert "enable qosLearnedPlacer" in r.json()["detail"] and control.chain() == API_POLICIES
    assert (
        client.put("/api/v1/policies/mode", json={"mode": "heuristic"}, headers=bearer["admin"]).status_code
        == 200
    )
    assert changes == [API_POLICIES, DEFAULT_CHAIN]


def test_policy_state_survives_a_new_control(tmp_path):
    registry = PolicyRegistry.from_entry_points()
    RegistryPolicyControl(registry, DEFAULT_CHAIN, tmp_path / "p.json").set_enabled(
        "constraintAwarePlacer", False
    )
    again = RegistryPolicyControl(registry, DEFAULT_CHAIN, tmp_path / "p.json")
    assert again.chain() == ("staticPlacedComponents",)


def no_flags() -> argparse.Namespace:
    return parser().parse_args([])


def test_the_config_file_sets_every_option_and_flags_override_it(tmp_path):
    config = tmp_path / "api.yaml"
    config.write_text(
        "listen: '[::1]:9443'\nallow_anonymous_loopback: false\nagents: ['unix:/run/a.sock=edge']\n"
        "policies: [staticPlacedComponents]\nrun_controller: true\ntokens_file: /srv/tokens.json\n"
        "controller_options: {workers: 3}\n"
    )
    cfg = load_config(config, no_flags())
    assert (cfg.host, cfg.port) == ("::1", 9443) and cfg.allow_anonymous_loopback is None
    assert cfg.agents[0].target == "unix:/run/a.sock" and cfg.agents[0].continuum_layer == "edge"
    assert cfg.policies == ("staticPlacedComponents",) and cfg.run_controller is True
    assert cfg.tokens_file == Path("/srv/tokens.json") and cfg.controller_options == {"workers": 3}
    flagged = load_config(
        config, parser().parse_args(["--listen", "127.0.0.1:8001", "--allow-anonymous-loopback", "viewer"])
    )
    assert (flagged.host, flagged.port, flagged.allow_anonymous_loopback) == ("127.0.0.1", 8001, "viewer")


@pytest.mark.parametrize(
    ("text", "message"),
    [("listen: nowhere\n", "HOST:PORT"), ("- a\n", "mapping"), ("tls: on\n", r"unknown option\(s\) tls ")],
)
def test_a_bad_config_file_is_refused_naming_the_problem(tmp_path, text, message):
    config = tmp_path / "api.yaml"
    config.write_text(text)
    with pytest.raises(ListenerRefused, match=message):
        load_config(config, no_flags())
