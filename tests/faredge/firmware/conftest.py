"""Fixtures for the firmware tests: the WebAssembly MicroPython host, staged flash trees,
the device-side unit tests run once per session, and a private Mosquitto broker."""

from __future__ import annotations

import ast
import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from faredge.virtual.firmware import load_module, stage
from faredge.virtual.host import HostUnavailable, NodeHost, find_host, run_script
from mlsysops.testing import wait_for

DEVICE_TESTS = Path(__file__).with_name("device")
RESULT = "@@RESULT "

RUNNER = """
import io, json, sys
import asyncio
import _vboard

def _report(mod, name, ok, detail):
    print(%(marker)r + json.dumps([mod, name, ok, detail]))

async def _main(plan):
    for mod, names in plan:
        try:
            m = __import__(mod)
        except Exception as e:
            s = io.StringIO()
            sys.print_exception(e, s)
            _report(mod, "<import>", False, s.getvalue())
            continue
        for name in names:
            try:
                r = getattr(m, name)()
                if hasattr(r, "send"):
                    await r
                _report(mod, name, True, "")
            except BaseException as e:
                s = io.StringIO()
                sys.print_exception(e, s)
                _report(mod, name, False, s.getvalue())
    _vboard.exit(0)

asyncio.create_task(_main(%(plan)s))
"""


def device_test_plan() -> list[tuple[str, list[str]]]:
    """(module, [test functions in source order]) for every device-side test module."""
    plan = []
    for path in sorted(DEVICE_TESTS.glob("mpy_*.py")):
        tree = ast.parse(path.read_text())
        names = [
            n.name
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
        ]
        plan.append((path.stem, names))
    return plan


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`device_case` = one (module, test) of the device-side tests, one pytest item each."""
    if "device_case" in metafunc.fixturenames:
        cases = [(mod, name) for mod, names in device_test_plan() for name in names]
        metafunc.parametrize("device_case", cases, ids=[f"{m}::{n}" for m, n in cases])


@pytest.fixture(scope="session")
def node_host() -> NodeHost:
    try:
        return find_host()
    except HostUnavailable as e:
        pytest.skip(str(e))


def stage_with_device_tests(flash: Path) -> None:
    stage(flash)
    for p in DEVICE_TESTS.glob("*.py"):
        shutil.copyfile(p, flash / p.name)


@pytest.fixture(scope="session")
def device_results(
    node_host: NodeHost, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], tuple[bool, str]]:
    """Run every device-side test once inside the real MicroPython; results by (module, test)."""
    flash = tmp_path_factory.mktemp("fw-unit")
    stage_with_device_tests(flash)
    script = RUNNER % {"marker": RESULT, "plan": repr(device_test_plan())}
    res = run_script(flash, script, host=node_host, timeout=120)
    out: dict[tuple[str, str], tuple[bool, str]] = {}
    for line in res.output.splitlines():
        if line.startswith(RESULT):
            mod, name, ok, detail = json.loads(line[len(RESULT) :])
            out[(mod, name)] = (ok, detail)
    if not out:
        pytest.fail(f"device test runner produced no results (rc={res.returncode}):\n{res.output}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(listening, timeout=timeout, what=f"a listener on port {port}", interval=0.02)


class Broker:
    """A private Mosquitto on a free loopback port (anonymous, no persistence, full log)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def listener_conf(self) -> str:
        return "allow_anonymous true\n"

    def start(self) -> None:
        # `user root`: started as root, Mosquitto would drop to the `mosquitto` user, which
        # cannot write the log into our private temp dir (the option is ignored otherwise).
        conf = self.dir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n{self.listener_conf()}persistence false\n"
            f"user root\nlog_dest file {self.dir / 'mosquitto.log'}\nlog_type all\n"
        )
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)

    @property
    def log(self) -> str:
        try:
            return (self.dir / "mosquitto.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# The protocol's ACL (docs/faredge-protocol.md): a device writes only its own outgoing topics
# and reads only its desired state; the bridge sees every device.
ACL = """user bridge
topic readwrite mlsysops/v1/dev/#
pattern write mlsysops/v1/dev/%u/birth
pattern write mlsysops/v1/dev/%u/telemetry
pattern write mlsysops/v1/dev/%u/twin/get
pattern write mlsysops/v1/dev/%u/twin/reported
pattern write mlsysops/v1/dev/%u/status
pattern read mlsysops/v1/dev/%u/twin/desired
"""


class SecureBroker(Broker):
    """TLS only (a throw-away CA, server certificate for 127.0.0.1), passwords and the ACL."""

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir)
        self.ca = workdir / "ca.crt"
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        d = str(workdir)
        _run(
            [
                "openssl",
                "req",
                "-x509",
                *key,
                "-keyout",
                f"{d}/ca.key",
                "-out",
                str(self.ca),
                "-days",
                "2",
                "-subj",
                "/CN=mlsysops-test-ca",
            ]
        )
        _run(
            [
                "openssl",
                "req",
                *key,
                "-keyout",
                f"{d}/server.key",
                "-out",
                f"{d}/server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ]
        )
        (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        _run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                f"{d}/server.csr",
                "-CA",
                str(self.ca),
                "-CAkey",
                f"{d}/ca.key",
                "-CAcreateserial",
                "-out",
                f"{d}/server.crt",
                "-days",
                "2",
                "-extfile",
                f"{d}/san.ext",
            ]
        )
        pw = workdir / "passwords"
        pw.touch()
        for user, password in users.items():
            _run(["mosquitto_passwd", "-b", str(pw), user, password])
        (workdir / "acl").write_text(ACL)

    def listener_conf(self) -> str:
        d = self.dir
        return (
            f"cafile {self.ca}\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
            f"allow_anonymous false\npassword_file {d}/passwords\nacl_file {d}/acl\n"
        )


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.strip()}")


def _serve(b: Broker) -> Iterator[Broker]:
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None:
        pytest.skip("mosquitto not installed")
    yield from _serve(Broker(tmp_path))


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    for tool in ("mosquitto", "mosquitto_passwd", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    b = SecureBroker(tmp_path / "tls-broker", {"bridge": "bridge-pw", "md-1": "md-1-pw"})
    yield from _serve(b)


def firmware_module(name: str) -> ModuleType:
    """A firmware module loaded into CPython (frames.py, twin.py and config.py are plain Python)."""
    return load_module(name)


class SerialPeer:
    """The bridge's side of a serial link, minimal: pyserial + the frame codec + ACKs."""

    def __init__(self, port: str, *, auto_ack: bool = True) -> None:
        import serial

        self.frames = firmware_module("frames")
        self.ser = serial.Serial(port, 921600, timeout=0.05)
        self.dec = self.frames.Decoder()
        self.auto_ack = auto_ack
        self.seq = 100
        self.log: list[tuple[int, int, bytes]] = []

    def close(self) -> None:
        self.ser.close()

    def write_raw(self, data: bytes) -> None:
        self.ser.write(data)
        self.ser.flush()

    def send(self, ftype: int, payload: bytes = b"", seq: int | None = None) -> int:
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        self.write_raw(bytes(self.frames.encode(ftype, seq, payload)))
        return seq

    def desired(self, dev_id: str, version: int, settings: dict[str, Any], seq: int | None = None) -> int:
        body = json.dumps({"id": dev_id, "version": version, "settings": settings}).encode()
        return self.send(self.frames.TWIN_DESIRED, body, seq)

    def pump(self) -> list[tuple[int, int, bytes]]:
        got = self.dec.feed(self.ser.read(4096))
        for ftype, seq, _ in got:
            if self.auto_ack and ftype in self.frames.RELIABLE:
                self.send(self.frames.ACK, seq=seq)
        self.log += got
        return got

    def wait_for(
        self, pred: Callable[[tuple[int, int, bytes]], bool], timeout: float = 10.0
    ) -> tuple[int, int, bytes]:
        """First frame (already received or arriving before the deadline) matching `pred`."""
        seen = 0

        def matching() -> tuple[int, int, bytes] | None:
            nonlocal seen
            for f in self.log[seen:]:
                if pred(f):
                    self.log.remove(f)
                    return f
            seen = len(self.log)
            self.pump()  # reads for up to the port's 50 ms timeout: no sleep needed
            return None

        try:
            frame: tuple[int, int, bytes] = wait_for(
                matching, timeout=timeout, what="a matching frame", interval=0
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc} within {timeout}s; got {self.log[-5:]}") from None
        return frame

    def wait_type(self, ftype: int, timeout: float = 10.0) -> dict[str, Any]:
        f = self.wait_for(lambda f: f[0] == ftype, timeout)
        return json.loads(f[2]) if f[2] else {}


@pytest.fixture
def make_peer() -> Iterator[Callable[..., SerialPeer]]:
    """Factory of SerialPeer objects (closed at teardown)."""
    made: list[SerialPeer] = []

    def make(port: str, **kw: Any) -> SerialPeer:
        made.append(SerialPeer(port, **kw))
        return made[-1]

    try:
        yield make
    finally:
        for p in made:
            p.close()


@pytest.fixture(scope="session")
def fw() -> Callable[[str], ModuleType]:
    """Firmware modules that are plain Python (frames, twin, config), loaded into CPython once,
    for property tests with hypothesis (the same source the device runs)."""
    cache: dict[str, ModuleType] = {}

    def get(name: str) -> ModuleType:
        if name not in cache:
            cache[name] = firmware_module(name)
        return cache[name]

    return get
