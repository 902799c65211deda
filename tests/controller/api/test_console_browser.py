"""The web console in a real browser (headless chromium), against the API daemon with its
in-process controller and a real far-edge bridge with a virtual MQTT board.

What the brief of the console promises, checked from the outside: no session is the login
page; a viewer reads every page but is shown no write control, and the server refuses a
viewer's forged write (403) and a write without the session's CSRF token; an operator's twin
setting reaches the bridge's device as desired (read back through the bridge's control socket,
not the page); an operator's delete removes the app from the store; nothing is rendered
unescaped. Each page is saved as a screenshot (console_harness says where).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_harness import Daemon, Screenshots, api_daemon, browser_unavailable, chromium

from controller.kube import resources as R
from controller.kube.errors import NotFound
from faredge.ota.bench import OtaRig, firmware_app, ota_rig, rig_unavailable
from mlsysops.testing import wait_for

SLOW = 120  # seconds: an OTA on a loaded 2-core CI machine (a wait, not a timing check)
APP = "field"


def device_node(device: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsNode",
        "metadata": {"name": device, "namespace": "default"},
        "continuum_layer": "far_edge",
        "environment": {"node_type": "bare_metal", "container_runtime": ["emb_serve"]},
        "hardware": {"mcu": {"architecture": "arm-M4", "flash": "2MB", "cores": 1}, "memory": 0},
    }


def field_app(code: Path) -> dict[str, Any]:
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": APP, "namespace": "default"},
        "components": [
            {
                "metadata": {"name": "sensor"},
                "node_placement": {"continuum_layer": ["far_edge"]},
                "containers": [
                    {"image": str(code), "platform_requirements": {"mcu": {"architecture": ["arm-m4"]}}}
                ],
            }
        ],
    }


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OtaRig]:
    for why in (browser_unavailable(), rig_unavailable()):
        if why is not None:
            pytest.skip(why)
    with ota_rig(tmp_path_factory.mktemp("rig"), devices=[f"c{uuid.uuid4().hex[:8]}"]) as board:
        yield board


@pytest.fixture(scope="module")
def daemon(rig: OtaRig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    work = tmp_path_factory.mktemp("api")
    app = field_app(firmware_app(work, "2.0.0"))
    with api_daemon(work, rig.socket, [device_node(rig.device), app]) as running:
        wait_for(
            lambda: (running.store.get(R.APP, "default", APP).get("status") or {}).get("phase") == "Deployed",
            timeout=SLOW,
            what="the far-edge app Deployed (OTA confirmed)",
        )
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Screenshots:
    return Screenshots(tmp_path_factory.mktemp("screenshots"))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


def sign_in(driver: Any, daemon: Daemon, role: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(daemon.url + "/console/login")
    driver.find_element(By.ID, "token").send_keys(daemon.tokens[role])
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: driver.title.startswith("Overview"), timeout=30, what="the overview after sign-in")


def session_client(driver: Any, daemon: Daemon) -> httpx.Client:
    """An HTTP client holding the browser's session cookie (a forger who stole it)."""
    cookie = driver.get_cookie("mlsysops_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    return httpx.Client(base_url=daemon.url, cookies={"mlsysops_console": cookie["value"]})


def appears(driver: Any, css: str) -> Any:
    """The element once the page navigated to shows it (a click's navigation is not awaited)."""
    from selenium.webdriver.common.by import By

    found = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, css), timeout=30, what=css)
    return found[0]


def page_csrf(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    value: str = driver.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value")
    return value


def test_without_a_session_every_page_is_the_login_page_and_a_bad_token_is_refused(
    daemon: Daemon, browser: Any, shots: Screenshots
) -> None:
    from selenium.webdriver.common.by import By

    for path in ("/console/", "/console/apps", f"/console/apps/{APP}", "/console/devices", "/console/events"):
        browser.get(daemon.url + path)
        assert browser.current_url == daemon.url + "/console/login", path
    assert browser.title == "Sign in · MLSysOps console"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    label = browser.find_element(By.CSS_SELECTOR, "label[for=token]")
    assert label.text == "API token"
    from selenium.webdriver.common.keys import Keys

    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # the first stop: the skip link
    focused = browser.switch_to.active_element
    assert focused.text == "Skip to content"
    assert browser.execute_script("return getComputedStyle(arguments[0]).outlineStyle", focused) == "solid"
    shots.take(browser, "login")
    browser.find_element(By.ID, "token").send_keys("mls_not-a-token")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "token refused" in appears(browser, "[role=alert]").text
    assert browser.get_cookie("mlsysops_console") is None
    shots.take(browser, "login-refused")


def test_a_viewer_reads_every_page_sees_no_write_control_and_a_forged_write_is_403(
    daemon: Daemon, rig: OtaRig, browser: Any, shots: Screenshots
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, daemon, "viewer")
    body = browser.find_element(By.TAG_NAME, "main").text
    assert rig.device in body and "far_edge" in body
    shots.take(browser, "viewer-overview")
    browser.get(daemon.url + "/console/apps")
    assert "Deployed" in browser.find_element(By.TAG_NAME, "main").text
    shots.take(browser, "viewer-apps")
    browser.get(daemon.url + f"/console/apps/{APP}")
    main = browser.find_element(By.TAG_NAME, "main").text
    assert rig.device in main and "Ready=True" in main  # where it is placed, and that it runs
    assert browser.find_elements(By.ID, "delete-app") == []
    shots.take(browser, "viewer-app")
    browser.get(daemon.url + "/console/nodes")
    assert rig.device in browser.find_element(By.TAG_NAME, "main").text
    shots.take(browser, "viewer-nodes")
    browser.get(daemon.url + "/console/devices")
    row = browser.find_element(By.XPATH, f"//tr[th[normalize-space()='{rig.device}']]").text
    assert "yes" in row and "confirmed" in row  # online, and the OTA rollout state
    shots.take(browser, "viewer-devices")
    browser.get(daemon.url + f"/console/devices/{rig.device}")
    assert "confirmed" in browser.find_element(By.ID, "ota").find_element(By.XPATH, "..").text
    assert browser.find_elements(By.CSS_SELECTOR, "form[action$='/twin'], form[action$='/unset']") == []
    shots.take(browser, "viewer-device")

    forger = session_client(browser, daemon)
    csrf = page_csrf(browser)  # the viewer's own, valid CSRF token: the role still decides
    before = rig.show()["twin"]["desired"]
    r = forger.post(f"/console/devices/{rig.device}/twin", data={"csrf": csrf, "key": "batch", "value": "4"})
    assert r.status_code == 403 and "needs operator" in r.text
    r = forger.post(f"/console/apps/{APP}/delete", data={"csrf": csrf})
    assert r.status_code == 403
    assert rig.show()["twin"]["desired"] == before
    assert daemon.store.get(R.APP, "default", APP)  # still there
    assert httpx.post(daemon.url + f"/console/apps/{APP}/delete").status_code == 401  # no session at all


def test_live_events_show_on_the_events_page(daemon: Daemon, browser: Any, shots: Screenshots) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, daemon, "viewer")
    browser.get(daemon.url + "/console/events")
    wait_for(
        lambda: "Connected" in browser.find_element(By.ID, "events-state").text,
        timeout=30,
        what="the event stream connected",
    )
    doc = daemon.store.get(R.APP, "default", APP)
    doc.pop("status", None)
    for key in ("resourceVersion", "managedFields", "uid", "creationTimestamp", "generation"):
        doc["metadata"].pop(key, None)
    doc["components"][0]["metadata"]["labels"] = {"console": "touched"}  # a spec change: a `spec` event
    daemon.store.apply(doc, field_manager="test-user")
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "#events li[data-kind=spec]"),
        timeout=30,
        what="a spec event on the page",
    )
    shots.take(browser, "events")


def test_an_operator_sets_and_unsets_a_twin_setting_and_deletes_the_app(
    daemon: Daemon, rig: OtaRig, browser: Any, shots: Screenshots
) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, daemon, "operator")
    browser.get(daemon.url + f"/console/devices/{rig.device}")
    browser.find_element(By.ID, "set-key").send_keys("interval_ms")
    browser.find_element(By.ID, "set-value").send_keys("750")
    browser.find_element(By.ID, "set-submit").click()
    wait_for(  # the bridge's own record, through its control socket
        lambda: rig.show()["twin"]["desired"].get("interval_ms") == 750,
        timeout=30,
        what="interval_ms desired",
    )
    wait_for(lambda: "<td>750</td>" in browser.page_source, timeout=30, what="the page showing it desired")
    shots.take(browser, "operator-device-set")

    browser.find_element(By.ID, "set-key").send_keys("<b>bold</b>")  # the bridge refuses it, named
    browser.find_element(By.ID, "set-value").send_keys("1")
    browser.find_element(By.ID, "set-submit").click()
    assert (
        "settings.<b>bold</b>" in appears(browser, "[role=alert]").text
    )  # shown as text: escaped, not markup
    assert browser.find_elements(By.CSS_SELECTOR, "main b") == []
    shots.take(browser, "operator-device-refused")

    browser.get(daemon.url + f"/console/devices/{rig.device}")
    browser.find_element(By.ID, "unset-key").send_keys("interval_ms")
    browser.find_element(By.ID, "unset-submit").click()
    wait_for(lambda: "interval_ms" not in rig.show()["twin"]["desired"], timeout=30, what="interval_ms unset")

    operator = session_client(browser, daemon)
    r = operator.post(f"/console/apps/{APP}/delete", data={"csrf": "forged"})  # no valid CSRF token
    assert r.status_code == 403 and "CSRF" in r.text
    assert daemon.store.get(R.APP, "default", APP)

    browser.get(daemon.url + f"/console/apps/{APP}")
    button = browser.find_element(By.ID, "delete-app")
    button.send_keys("")  # keyboard-reachable: focus it, then Enter submits
    from selenium.webdriver.common.keys import Keys

    button.send_keys(Keys.ENTER)
    wait_for(lambda: browser.current_url.endswith("/console/apps"), timeout=30, what="back on the apps list")
    with pytest.raises(NotFound):
        daemon.store.get(R.APP, "default", APP)
    shots.take(browser, "operator-apps-after-delete")

    browser.find_element(By.CSS_SELECTOR, ".whoami button").click()
    appears(browser, "input#token")
    browser.get(daemon.url + "/console/")
    assert browser.current_url == daemon.url + "/console/login"  # the session is gone
