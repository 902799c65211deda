"""What the web console's browser tests run against: the API daemon wired as `mlsysops-api`
wires it (controller.api.server.wire + uvicorn_config, the embedded store, the in-process
controller with the far-edge mechanism) served by uvicorn in a thread, a real far-edge bridge
with a virtual MQTT board (faredge.ota.bench.ota_rig), and headless Debian chromium driven
through chromedriver by Selenium.

Screenshots go to `<tmp>/screenshots/` and, when MLSYSOPS_ARTIFACTS is set, are copied into
`$MLSYSOPS_ARTIFACTS/console/` (CI keeps that directory as the job's artefacts).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from controller.api.server import ServeConfig, open_store, uvicorn_config, wire
from controller.api.tokens import TokenStore
from controller.kube.objectapi import ObjectApi
from mlsysops.testing import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here (they skip with it), or None. CI installs both
    (.ci/setup), so there they always run."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"needs Debian's chromium and chromium-driver ({path} missing)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    url: str
    store: ObjectApi
    tokens: dict[str, str]  # role → bearer token


@contextmanager
def api_daemon(workdir: Path, bridge_socket: Path, seed: list[dict[str, Any]]) -> Iterator[Daemon]:
    """The daemon up (objects in `seed` written first, as an admin would), stopped on exit."""
    port = free_port()
    cfg = ServeConfig(
        port=port,
        store_path=workdir / "controller.db",
        tokens_file=workdir / "tokens.json",
        run_controller=True,
        mechanisms=("faredge",),
        bridge_socket=bridge_socket,
        policy_state=workdir / "policies.json",
        log_level="warning",
        controller_options={"watch_timeout": 1, "workers": 1},
    )
    store = open_store(cfg)
    for doc in seed:
        store.apply(doc, field_manager="test-admin")
    tokens = TokenStore(cfg.tokens_file)
    roles = {role: tokens.create(role, name=f"console-{role}")[0] for role in ("viewer", "operator")}
    app, runner, policies = wire(cfg, store)
    assert runner is not None
    server = uvicorn.Server(uvicorn_config(cfg, app))
    thread = threading.Thread(target=server.run, name="console-api", daemon=True)
    runner.start(policies.chain())
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=60, what="the API to listen")
        yield Daemon(f"http://127.0.0.1:{port}", store, roles)
    finally:
        server.should_exit = True
        thread.join(30)
        runner.stop()
        close = getattr(store, "close", None)
        if callable(close):
            close()


class Screenshots:
    """Every page the tests visit, saved by name (and copied to MLSYSOPS_ARTIFACTS)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        artefacts = os.environ.get("MLSYSOPS_ARTIFACTS")
        self.copy_to = Path(artefacts) / "console" if artefacts else None

    def take(self, driver: Any, name: str) -> Path:
        path = self.root / f"{name}.png"
        assert driver.save_screenshot(str(path)), f"no screenshot of {name}"
        if self.copy_to is not None:
            self.copy_to.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, self.copy_to / path.name)
        return path


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
