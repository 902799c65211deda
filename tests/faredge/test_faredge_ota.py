"""Over-the-air updates end to end: our firmware in the real MicroPython (faredge.virtual) on a
private Mosquitto with passwords and ACLs, and the real bridge (faredge.ota through the
daemon (`python -m faredge`, through its control socket and metrics); bad input sent by a
second, faulty "bridge" on the same broker."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner

from faredge.channels.mosquitto import reload_broker
from faredge.deploy.release import Release, Target, build, mpy_version
from faredge.ota.bench import OtaRig, ota_rig, rig_unavailable
from faredge.ota.bench import firmware_app as make_app
from faredge.ota.manifest import Manifest, device_key, ota_files, sign
from faredge.ota.service import make_job
from faredge.protocol.topics import topic
from faredge.provision import add_bridge_user
from faredge.testing import can_login
from faredge.virtual.firmware import firmware_dir
from mlsysops.cli import main
from mlsysops.testing import wait_for

virtual = pytest.importorskip("faredge.virtual", reason="faredge/virtual (engineer firmware) not in the tree")
EXTRA_BYTES = 40_000  # on top of the firmware: a download long enough to interrupt
POWER_CUTS = int(os.environ.get("OTA_POWER_CUTS", "8"))  # raise it for a longer soak


@pytest.fixture(scope="module")
def node_host() -> None:
    """Skips the module's rig tests where the rig cannot run (faredge.ota.bench.rig_unavailable)."""
    why = rig_unavailable()
    if why is not None:
        pytest.skip(why)


@pytest.fixture
def rig(node_host: None, tmp_path: Path) -> Iterator[OtaRig]:
    with ota_rig(tmp_path / "rig", devices=[f"o{uuid.uuid4().hex[:8]}"]) as r:
        yield r


def released(rig: OtaRig, app: Path) -> Release:
    """What the bridge ships the rig's board: compiled for the .mpy version its birth reported."""
    return build(app, Target(mpy_version(rig.show()["mpy"] or None), "virtual"))


def assert_runs_a_verified_release(rig: OtaRig, releases: dict[int, Release]) -> int:
    """The board's pointer names a slot whose every file matches its release (or the serial
    install, untouched); returns the release number it runs (0: the serial install)."""
    ptr_file = rig.board.flash / "ota.json"
    ptr = json.loads(ptr_file.read_text()) if ptr_file.exists() else {}
    if not ptr.get("s"):
        for name in ("app.py", "ota.py", "link_mqtt.py"):
            assert (rig.board.flash / name).read_bytes() == (firmware_dir() / name).read_bytes()
        return 0
    slot = rig.board.flash / ".ota" / ptr["s"]
    for f in ota_files(releases[ptr["r"]]):
        data = (slot / f.name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f.size, f.sha256), f.name
    assert ptr.get("t") in (0, None, 1, 2)
    return int(ptr["r"])


class FaultyBridge:
    """A second bridge user on the broker: publishes manifests of its own making and answers the
    board's chunk requests with what a test wants; records the board's OTA status reports."""

    def __init__(self, rig: OtaRig) -> None:
        layout = rig.broker.layout
        user = f"faulty-{uuid.uuid4().hex[:6]}"
        password = add_bridge_user(layout, user)
        reload_broker(layout)
        wait_for(lambda: can_login(rig.broker.port, user, password), what=f"login of {user}")
        self.rig = rig
        self.statuses: queue.Queue[dict[str, Any]] = queue.Queue()
        self.serve: Any = None  # (request, file bytes) -> chunk bytes
        self.files: tuple[bytes, ...] = ()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=user)
        self.c.username_pw_set(user, password)
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", rig.broker.port)
        self.c.subscribe([(topic(rig.device, "ota/status"), 1), (topic(rig.device, "ota/get"), 1)])
        self.c.loop_start()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def _on_message(self, c: Any, u: Any, m: paho.MQTTMessage) -> None:
        msg = json.loads(m.payload)
        if m.topic.endswith("ota/status"):
            self.statuses.put(msg)
        elif self.serve is not None:
            data = self.files[msg["f"]][msg["o"] : msg["o"] + msg["n"]]
            head = f"{msg['r']} {msg['f']} {msg['o']}\n".encode()
            self.c.publish(topic(self.rig.device, "ota/chunk"), head + self.serve(msg, data), qos=0)

    def send(self, payload: bytes) -> None:
        self.c.publish(topic(self.rig.device, "ota/manifest"), payload, qos=1)

    def status(self, timeout: float = 30.0) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            try:
                s = self.statuses.get(timeout=0.05)
            except queue.Empty:
                return None
            return s if s["st"] in ("failed", "installed") else None

        got: dict[str, Any] = wait_for(final, timeout=timeout, what="the board's verdict", interval=0)
        return got


def _signed(
    rig: OtaRig, release: Release, number: int, *, device: str | None = None, key: bytes | None = None
) -> bytes:
    m = Manifest(device or rig.device, number, release.version, ota_files(release))
    return sign(m, key or rig.key())


def _refusals(rig: OtaRig, reason: str) -> float:
    return rig.metric("faredge_ota_refusals_total", reason=reason)


def test_cli_update_confirms_on_the_board_and_devices_list_shows_it(rig: OtaRig, tmp_path: Path) -> None:
    app = make_app(tmp_path, "1.1.0")
    sock = ["devices", "--socket", str(rig.socket)]
    result = CliRunner().invoke(main, [*sock, "update", rig.device, "--app", str(app), "--timeout", "120"])
    assert result.exit_code == 0, result.output + rig.board.console[-3000:]
    assert "confirmed 1.1.0#" in result.output
    ota = rig.state()
    assert rig.show()["fw"] == "1.1.0" and ota is not None and ota.state == "confirmed"
    rel1 = released(rig, app)  # compiled for the board: its birth reported the .mpy version it loads
    assert ota.done_bytes == ota.total_bytes == sum(f.size for f in ota_files(rel1))
    source = sum(p.stat().st_size for p in app.rglob("*.py") if p.name != "main.py")
    assert ota.total_bytes < 0.6 * source  # .mpy: smaller to send, nothing to compile on the board
    listing = CliRunner().invoke(main, [*sock, "list"])
    assert f"confirmed 1.1.0#{ota.release}" in listing.output, listing.output
    assert assert_runs_a_verified_release(rig, {ota.release: rel1}) == ota.release
    slot = rig.board.flash / ".ota" / "a"
    assert (slot / "app.mpy").is_file() and not (slot / "app.py").exists()
    ptr = json.loads((rig.board.flash / "ota.json").read_text())
    assert (ptr["s"], ptr["t"]) == ("a", 0)
    assert rig.metric("faredge_ota_updates_total", outcome="confirmed") == 1
    assert rig.metric("faredge_device_ota_state", device=rig.device, state="confirmed") == 1
    assert rig.metric("faredge_device_ota_state", device=rig.device, state="failed") == 0
    assert rig.metric("faredge_ota_bytes_total") == ota.total_bytes
    if shutil.which("promtool"):
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=rig.metrics_text(), capture_output=True, text=True
        )
        assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check

    first = ota.release
    app2 = make_app(tmp_path, "1.2.0")
    r2 = rig.update(app2)
    assert rig.wait_finished(r2).state == "confirmed"
    assert json.loads((rig.board.flash / "ota.json").read_text())["s"] == "b"
    # The first release's manifest, replayed byte for byte (signing is deterministic): refused.
    faulty = FaultyBridge(rig)
    try:
        faulty.send(make_job(rel1, rig.device, first, rig.key()).payload)
        verdict = faulty.status()
        assert (verdict["st"], verdict.get("why"), verdict["r"]) == ("failed", "replay", first)
    finally:
        faulty.close()
    wait_for(lambda: _refusals(rig, "replay") == 1, what="the bridge counts the refusal")
    assert rig.show()["fw"] == "1.2.0"
    assert assert_runs_a_verified_release(rig, {r2: released(rig, app2)}) == r2


def test_forged_and_misaddressed_manifests_are_refused(rig: OtaRig, tmp_path: Path) -> None:
    rel = released(rig, make_app(tmp_path, "6.6.6"))
    faulty = FaultyBridge(rig)
    try:
        cases = [
            (_signed(rig, rel, 10**6, key=b"\x00" * 32), "signature"),  # not the device's key
            (
                _signed(rig, rel, 10**6, device="other", key=device_key(b"x", "other")),
                "signature",
            ),  # another's
            (_signed(rig, rel, 10**6, device="other"), "device"),  # right key, addressed to another
        ]
        for payload, why in cases:
            faulty.send(payload)
            verdict = faulty.status()
            assert (verdict["st"], verdict.get("why")) == ("failed", why)
    finally:
        faulty.close()
    assert not (rig.board.flash / "ota.json").exists() and not (rig.board.flash / ".ota").exists()
    wait_for(
        lambda: _refusals(rig, "signature") == 2 and _refusals(rig, "device") == 1, what="refusals counted"
    )
    assert rig.show()["online"]


def test_wrong_content_and_truncated_chunks_install_nothing(rig: OtaRig, tmp_path: Path) -> None:
    app = make_app(tmp_path, "6.6.7")
    rel = released(rig, app)
    faulty = FaultyBridge(rig)
    faulty.files = tuple(next(e.data for e in rel.files if e.name == f.name) for f in ota_files(rel))
    bad_file = ota_files(rel)[1].name
    try:
        faulty.serve = lambda q, d: bytes(len(d)) if q["f"] == 1 else d
        faulty.send(_signed(rig, rel, 10**6))
        verdict = faulty.status()
        assert (verdict["st"], verdict.get("why")) == ("failed", "hash:" + bad_file)
        faulty.serve = lambda q, d: d[: len(d) // 2]
        faulty.send(_signed(rig, rel, 10**6 + 1))
        verdict = faulty.status()
        assert (verdict["st"], verdict.get("why")) == ("failed", "chunk")
    finally:
        faulty.close()
    assert not (rig.board.flash / "ota.json").exists()
    assert _refusals(rig, "hash") == 1
    r = rig.update(app)  # the board is not wedged: the real bridge's update of the same app works
    assert rig.wait_finished(r).state == "confirmed", rig.board.console[-3000:]
    assert assert_runs_a_verified_release(rig, {r: rel}) == r


def test_broker_gone_mid_download_resumes_where_it_stopped(rig: OtaRig, tmp_path: Path) -> None:
    app = make_app(tmp_path, "2.0.0", extra=EXTRA_BYTES)
    r = rig.update(app)

    def downloading() -> bool:
        s = rig.state()
        return s is not None and s.state == "downloading" and s.done_bytes > 0

    wait_for(downloading, what="the download under way", interval=0.01)
    rig.broker.stop()
    time.sleep(1.0)  # gone for a while: the board's session dies and it backs off
    rig.broker.start()
    state = rig.wait_finished(r, timeout=120)
    assert state.state == "confirmed", rig.board.console[-3000:]
    served = rig.metric("faredge_ota_bytes_total")
    assert state.total_bytes <= served < 1.5 * state.total_bytes  # resumed, not started again
    assert "link down" in rig.board.console
    assert assert_runs_a_verified_release(rig, {r: released(rig, app)}) == r


def _cut_when(rig: OtaRig, stage: str, release: int, version: str, rng: random.Random) -> None:
    """Wait for `stage` of the update (or a random moment), then cut the board's power."""
    if stage == "random":
        time.sleep(rng.uniform(0.0, 5.0))
    elif stage == "trial":  # the new release has just started booting, not yet confirmed
        wait_for(
            lambda: f"mlsysops fw {version} " in rig.board.console, what="the trial boot", interval=0.005
        )
    else:

        def reached() -> bool:
            s = rig.state()
            return s is not None and s.release == release and s.state == stage

        wait_for(reached, what=stage, interval=0.005)
        time.sleep(rng.uniform(0.0, 0.2))
    rig.board.power_cut()


STAGES = ("random", "downloading", "rebooting", "trial")


def test_power_cut_at_every_step_always_boots_a_verified_release(rig: OtaRig, tmp_path: Path) -> None:
    """Each round: an update, the board's power cut at one step (mid-download, after the pointer
    switch before the reset, at the start of the trial boot, or at a random moment), power back.
    The board boots a release whose every file matches its manifest, the update ends confirmed
    (resumed after the cut) or rolled back (the trial boot was cut), and the bridge says which."""
    seed = int(os.environ.get("OTA_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    releases: dict[int, Release] = {}
    outcomes: list[tuple[str, str]] = []
    for i in range(POWER_CUTS):
        stage = STAGES[i % len(STAGES)]
        version = f"3.0.{i}"  # and other code in every round: each one downloads ~40 KB
        app = make_app(tmp_path, version, extra=EXTRA_BYTES, salt=i)
        r = rig.update(app)
        releases[r] = released(rig, app)
        _cut_when(rig, stage, r, version, rng)
        time.sleep(rng.uniform(0.0, 0.3))
        rig.board.restart()
        try:
            state = rig.wait_finished(r, timeout=120)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc} (seed {seed}, {stage}, {outcomes}, {rig.state()}): {rig.board.console[-4000:]}"
            ) from None
        outcomes.append((stage, state.state))
        rig.wait_online()
        running = assert_runs_a_verified_release(rig, releases)
        assert (running == r) == (state.state == "confirmed"), (seed, outcomes, rig.board.console[-3000:])
    print(f"\npower cuts (seed {seed}): {outcomes}")
    assert {o for _, o in outcomes} <= {"confirmed", "rolled_back"}, (seed, outcomes)
    app = make_app(tmp_path, "3.1.0", extra=EXTRA_BYTES, salt=POWER_CUTS)
    r = rig.update(app)  # and the next update, uncut, confirms
    assert rig.wait_finished(r).state == "confirmed"
    assert assert_runs_a_verified_release(rig, {**releases, r: released(rig, app)}) == r


def test_rollout_starts_with_a_canary_and_stops_when_it_fails(node_host: None, tmp_path: Path) -> None:
    """`update --all`: the canary (first id) refuses (its config holds another key), so the others
    are never sent anything and end failed(stopped); a rollout to those two then confirms both,
    one at a time."""
    ids = ["a-canary", "b-dev", "c-dev"]
    with ota_rig(tmp_path / "rig", devices=ids, bad_keys=["a-canary"]) as rig:
        app = make_app(tmp_path, "4.0.0")
        sock = ["devices", "--socket", str(rig.socket)]
        result = CliRunner().invoke(main, [*sock, "update", "--all", "--app", str(app), "--timeout", "120"])
        assert result.exit_code == 1, result.output
        labels = {d: s.label() if (s := rig.state(d)) else None for d in ids}
        assert labels == {
            "a-canary": "failed(signature)",
            "b-dev": "failed(stopped)",
            "c-dev": "failed(stopped)",
        }
        for d in ("b-dev", "c-dev"):
            assert not (rig.boards[d].flash / "ota.json").exists()
            assert "4.0.0" not in rig.boards[d].console
        plan = rig.rollout(app, ["b-dev", "c-dev"], parallel=1)
        assert plan["canary"] == "b-dev"
        ends = {p["id"]: rig.wait_finished(p["release"], device=p["id"]) for p in plan["devices"]}
        assert {d: s.state for d, s in ends.items()} == {"b-dev": "confirmed", "c-dev": "confirmed"}
        assert ends["b-dev"].since <= ends["c-dev"].since  # one at a time: the canary first
        assert rig.metric("faredge_ota_updates_total", outcome="failed") == 3
        assert rig.metric("faredge_ota_updates_total", outcome="confirmed") == 2


def test_a_release_that_does_not_start_is_left_at_once(rig: OtaRig, tmp_path: Path) -> None:
    """Its app.py raises at import: the boot loader goes back to the serial install in the same
    boot, which reports the rollback; nothing waits for a watchdog."""
    app = make_app(tmp_path, "5.0.0")
    (app / "app.py").write_text((app / "app.py").read_text() + '\nraise RuntimeError("broken release")\n')
    r = rig.update(app)
    assert rig.wait_finished(r).state == "rolled_back", rig.board.console[-3000:]
    assert f"ota: release {r} does not start: RuntimeError('broken release'" in rig.board.console
    assert rig.show()["fw"] == "1.0.0" and rig.show()["online"]
    assert assert_runs_a_verified_release(rig, {}) == 0
