"""The console's sessions and refusals without a browser (the in-process app over the embedded
store): a session ends with its TTL, with logout, and with its token's revocation; logout and
writes need the session's CSRF token; the console stays out of the OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller import store as embedded
from controller.api.app import create_app
from controller.api.console_sessions import ConsoleSessions
from controller.api.context import ApiContext
from controller.api.tokens import TokenStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_ends_after_its_ttl_and_when_closed() -> None:
    clock = Clock()
    sessions = ConsoleSessions(ttl=60, clock=clock)
    one = sessions.open("mls_x")
    assert sessions.find(one.id) == one and one.csrf_ok(one.csrf) and not one.csrf_ok("other")
    clock.now += 61
    assert sessions.find(one.id) is None
    two = sessions.open("mls_y")
    sessions.close(two.id)
    assert sessions.find(two.id) is None and sessions.find(None) is None


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[TestClient, TokenStore]]:
    db = embedded.open(tmp_path / "controller.db")
    tokens = TokenStore(tmp_path / "tokens.json")
    try:
        yield TestClient(create_app(ApiContext(db, tokens)), follow_redirects=False), tokens
    finally:
        db.close()


def test_revoking_the_token_ends_its_console_session(console: tuple[TestClient, TokenStore]) -> None:
    client, tokens = console
    secret, record = tokens.create("operator", name="ops")
    r = client.post("/console/login", data={"token": secret})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert secret not in cookie  # the cookie holds a session id, never the token
    assert client.get("/console/apps").status_code == 200
    tokens.revoke(record.id)
    r = client.get("/console/apps")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"


def test_logout_needs_the_csrf_token_and_ends_the_session(console: tuple[TestClient, TokenStore]) -> None:
    client, tokens = console
    client.post("/console/login", data={"token": tokens.create("viewer")[0]})
    assert client.post("/console/logout", data={"csrf": "nope"}).status_code == 403
    page = client.get("/console/").text
    csrf = page.split('name="csrf" value="')[1].split('"')[0]
    r = client.post("/console/logout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert client.get("/console/").status_code == 303


def test_the_console_is_not_in_the_openapi_document(console: tuple[TestClient, TokenStore]) -> None:
    client, _ = console
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/console")]
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and ":focus-visible" in css.text
