"""Authentication and roles: every route needs a token of a high enough role; expired and
revoked tokens are refused; the anonymous-loopback switch is off by default and, when on,
only applies to 127.0.0.1 / ::1."""

from __future__ import annotations

import json
import os
import stat

import httpx
import pytest
from api_harness import LiveApi, reference_app

from controller.api.app import create_app
from controller.api.context import ApiContext, ApiSettings
from controller.api.tokens import TokenStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_no_token_is_401_with_a_bearer_challenge(client):
    r = client.get("/api/v1/apps")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]


def test_an_unknown_token_is_401(client):
    r = client.get("/api/v1/apps", headers={"Authorization": "Bearer mls_not-a-token"})
    assert r.status_code == 401 and "refused" in r.json()["detail"]


def test_a_viewer_reads_but_cannot_write(client, bearer, store):
    assert client.get("/api/v1/apps", headers=bearer["viewer"]).status_code == 200
    r = client.post("/api/v1/apps", json=reference_app(), headers=bearer["viewer"])
    assert r.status_code == 403 and "needs operator" in r.json()["detail"]
    assert client.get("/api/v1/apps", headers=bearer["viewer"]).json() == []  # nothing written


def test_an_operator_writes_apps_but_not_policies_or_mode(make_client, bearer):
    from controller.api.policies import RegistryPolicyControl
    from controller.policies import DEFAULT_CHAIN, PolicyRegistry

    client = make_client(policies=RegistryPolicyControl(PolicyRegistry.from_entry_points(), DEFAULT_CHAIN))
    assert client.post("/api/v1/apps", json=reference_app(), headers=bearer["operator"]).status_code == 201
    r = client.put(
        "/api/v1/policies/constraintAwarePlacer", json={"enabled": False}, headers=bearer["operator"]
    )
    assert r.status_code == 403
    assert client.put("/manage/mode/0", headers=bearer["operator"]).status_code == 403
    r = client.put("/api/v1/policies/constraintAwarePlacer", json={"enabled": False}, headers=bearer["admin"])
    assert r.status_code == 200 and r.json()["enabled"] is False


def test_expired_and_revoked_tokens_are_refused(store, tmp_path):
    clock = Clock()
    tokens = TokenStore(tmp_path / "tokens.json", clock=clock)
    short, _ = tokens.create("viewer", "short", ttl_seconds=60)
    revoked, _ = tokens.create("viewer", "gone")
    client = create_client(store, tokens)
    assert client.get("/api/v1/apps", headers=auth(short)).status_code == 200
    clock.now += 61
    assert client.get("/api/v1/apps", headers=auth(short)).status_code == 401
    assert client.get("/api/v1/apps", headers=auth(revoked)).status_code == 200
    TokenStore(tmp_path / "tokens.json").revoke("gone")  # another process (the CLI) revokes it
    assert client.get("/api/v1/apps", headers=auth(revoked)).status_code == 401


def test_the_token_file_holds_only_hashes_and_is_private(tmp_path):
    tokens = TokenStore(tmp_path / "tokens.json")
    secret, record = tokens.create("admin", "root")
    raw = (tmp_path / "tokens.json").read_text()
    assert secret not in raw and record.sha256 in raw
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.json").st_mode) == 0o600
    assert len(secret) > 40 and json.loads(raw)["tokens"][0]["role"] == "admin"
    with pytest.raises(ValueError, match="role 'root'"):
        tokens.create("root")


def test_anonymous_access_is_off_by_default_even_on_loopback(store, tokens):
    with LiveApi(create_app(ApiContext(store, tokens))) as live:
        assert httpx.get(live.url + "/apps/list_all/").status_code == 401


def test_anonymous_loopback_grants_its_role_on_127_0_0_1(store, tokens):
    settings = ApiSettings(anonymous_loopback_role="viewer")
    with LiveApi(create_app(ApiContext(store, tokens, settings))) as live:
        assert httpx.get(live.url + "/apps/list_all/").json() == {"System_status": {}}
        r = httpx.post(live.url + "/apps/deploy", json=reference_app())
        assert r.status_code == 403  # viewer only: the reference CLI cannot deploy without a token


def test_anonymous_loopback_grants_its_role_on_ipv6_loopback(store, tokens):
    settings = ApiSettings(anonymous_loopback_role="operator")
    with LiveApi(create_app(ApiContext(store, tokens, settings)), host="::1") as live:
        assert httpx.post(live.url + "/apps/deploy", json=reference_app()).status_code == 200


def test_anonymous_loopback_does_not_apply_to_other_clients(store, tokens):
    """The TestClient's peer is not a loopback address: the switch must not let it in."""
    client = create_client(store, tokens, ApiSettings(anonymous_loopback_role="admin"))
    assert client.get("/api/v1/apps").status_code == 401


def create_client(store, tokens, settings=None):
    from fastapi.testclient import TestClient

    return TestClient(create_app(ApiContext(store, tokens, settings or ApiSettings())))


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
