"""The daemon: listener rules (TLS off loopback, mTLS), the config file, the token CLI, the
embedded store behind it, and the in-process controller restarted on a policy change."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from api_harness import reference_app
from click.testing import CliRunner

from controller.api.cli import api as api_cli
from controller.api.daemon import main as daemon_main
from controller.api.server import ListenerRefused, ServeConfig, check_listener, wire
from controller.kube import resources as R
from mlsysops.testing import wait_for

PYTHON = sys.executable
SLOW = 120  # seconds: a loaded 2-core CI machine reconciles slowly (a wait, not a timing check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::", "api.example"])
def test_a_non_loopback_listener_without_tls_is_refused(host):
    with pytest.raises(ListenerRefused, match="needs TLS"):
        check_listener(ServeConfig(host=host))


def test_loopback_without_tls_is_fine_and_half_tls_is_refused(tmp_path):
    check_listener(ServeConfig(host="127.0.0.1"))
    check_listener(ServeConfig(host="::1"))
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(ListenerRefused, match="both tls_cert and tls_key"):
        check_listener(ServeConfig(tls_cert=tmp_path / "cert.pem"))
    with pytest.raises(ListenerRefused, match="needs TLS"):
        check_listener(ServeConfig(tls_client_ca=tmp_path / "cert.pem"))
    with pytest.raises(ListenerRefused, match="no such file"):
        check_listener(ServeConfig(tls_cert=tmp_path / "nope", tls_key=tmp_path / "nope"))


def test_the_daemon_exits_2_naming_the_problem(tmp_path, capsys):
    assert daemon_main(["--listen", "0.0.0.0:8000", "--store", str(tmp_path / "db")]) == 2
    assert "needs TLS" in capsys.readouterr().err
    (tmp_path / "api.yaml").write_text("listen: 127.0.0.1:1\nlisten_backlog: 5\n")
    assert daemon_main(["--config", str(tmp_path / "api.yaml")]) == 2
    assert "unknown option(s) listen_backlog" in capsys.readouterr().err
    assert not (tmp_path / "db").exists()  # refused before anything was opened


def run_daemon(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            PYTHON,
            "-m",
            "controller.api",
            "--store",
            str(tmp_path / "controller.db"),
            "--tokens-file",
            str(tmp_path / "tokens.json"),
            "--log-level",
            "warning",
            *args,
        ],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(up, what="the API to listen", timeout=120)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_the_daemon_serves_the_embedded_store_with_cli_tokens(tmp_path):
    tokens = str(tmp_path / "tokens.json")
    created = CliRunner().invoke(
        api_cli,
        ["token", "--tokens-file", tokens, "create", "--role", "operator", "--name", "ci", "--ttl", "1h"],
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.splitlines()[0]
    port = free_port()
    proc = run_daemon(tmp_path, "--listen", f"127.0.0.1:{port}")
    try:
        wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(url + "/apps/list_all/").status_code == 401
        r = httpx.post(url + "/apps/deploy", json=reference_app(), headers=headers)
        assert r.status_code == 200 and r.json()["status"] == "Submitted"
        assert httpx.get(url + "/apps/list_all/", headers=headers).json() == {
            "System_status": {"test-application": "Submitted"}
        }
        listed = CliRunner().invoke(api_cli, ["token", "--tokens-file", tokens, "list", "-o", "json"])
        assert '"state": "valid"' in listed.output and secret not in listed.output
        revoked = CliRunner().invoke(api_cli, ["token", "--tokens-file", tokens, "revoke", "ci"])
        assert revoked.exit_code == 0
        assert httpx.get(url + "/apps/list_all/", headers=headers).status_code == 401  # no restart needed
    finally:
        stop(proc)
    from controller import store as embedded

    db = embedded.open(tmp_path / "controller.db")
    try:
        assert [o["metadata"]["name"] for o in db.list(R.APP, "default")[0]] == ["test-application"]
    finally:
        db.close()


def test_token_cli_refuses_bad_input(tmp_path):
    tokens = str(tmp_path / "tokens.json")
    r = CliRunner().invoke(api_cli, ["token", "--tokens-file", tokens, "create", "--role", "root"])
    assert r.exit_code == 2 and "root" in r.output
    r = CliRunner().invoke(
        api_cli, ["token", "--tokens-file", tokens, "create", "--role", "viewer", "--ttl", "-5"]
    )
    assert r.exit_code == 2 and "--ttl" in r.output
    r = CliRunner().invoke(api_cli, ["token", "--tokens-file", tokens, "revoke", "nobody"])
    assert r.exit_code == 1 and "no token with id or name 'nobody'" in r.output
    assert not Path(tokens).exists()


def make_pki(tmp_path: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(name, key, issuer_name, issuer_key, ca=False, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    import ipaddress

    out: dict[str, Path] = {}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = cert("test-ca", ca_key, ca_name, ca_key, ca=True)
    for name, san in (("server", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        c = cert(name, key, ca_name, ca_key, san=san)
        out[f"{name}.pem"] = tmp_path / f"{name}.pem"
        out[f"{name}.pem"].write_bytes(c.public_bytes(serialization.Encoding.PEM))
        out[f"{name}.key"] = tmp_path / f"{name}.key"
        out[f"{name}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    out["ca.pem"] = tmp_path / "ca.pem"
    out["ca.pem"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return out


def test_mtls_refuses_clients_without_a_certificate_from_the_ca(tmp_path):
    pki = make_pki(tmp_path)
    port = free_port()
    proc = run_daemon(
        tmp_path,
        "--listen",
        f"127.0.0.1:{port}",
        "--tls-cert",
        str(pki["server.pem"]),
        "--tls-key",
        str(pki["server.key"]),
        "--tls-client-ca",
        str(pki["ca.pem"]),
        "--allow-anonymous-loopback",
        "viewer",
    )
    try:
        wait_listening(port, proc)
        url = f"https://127.0.0.1:{port}/apps/list_all/"
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(url, verify=str(pki["ca.pem"])).raise_for_status()
        context = ssl.create_default_context(cafile=str(pki["ca.pem"]))
        context.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
        r = httpx.get(url, verify=context)
        assert r.status_code == 200 and r.json() == {"System_status": {}}
        with pytest.raises((httpx.ConnectError, httpx.RemoteProtocolError)):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{port}/apps/list_all/", timeout=2).raise_for_status()
    finally:
        stop(proc)


def in_process_controller_config(store, tmp_path: Path, inventory) -> ServeConfig:
    """The inventory written to the stand-in, and a daemon config that runs the kubernetes
    mechanism's controller in-process with short waits (what both restart tests need)."""
    for doc in inventory:
        store.apply(doc, field_manager="test-admin")
    return ServeConfig(
        tokens_file=tmp_path / "tokens.json",
        run_controller=True,
        mechanisms=("kubernetes",),
        policy_state=tmp_path / "policies.json",
        controller_options={"watch_timeout": 1, "availability_timeout": 2.0, "workers": 1},
    )


def test_disabling_a_policy_restarts_the_in_process_controller_with_the_new_chain(standin, store, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    from ctlkube_harness import FIXTURES, documents
    from fastapi.testclient import TestClient

    cfg = in_process_controller_config(store, tmp_path, documents(FIXTURES / "inventory"))
    app, runner, policies = wire(cfg, store)
    from controller.api.tokens import TokenStore

    admin = {"Authorization": f"Bearer {TokenStore(cfg.tokens_file).create('admin')[0]}"}
    assert runner is not None
    runner.start(policies.chain())
    try:
        client = TestClient(app)
        assert client.get("/api/v1/ping", headers=admin).json() == {"store": "ok", "controller": "running"}
        client.post("/api/v1/apps", json=documents(FIXTURES / "app.yaml")[0], headers=admin)
        wait_for(
            lambda: client.get("/apps/status/camera-pipeline", headers=admin).json()["status"] == "Deployed",
            what="Deployed with both policies",
            timeout=SLOW,
        )
        r = client.put("/api/v1/policies/constraintAwarePlacer", json={"enabled": False}, headers=admin)
        assert r.status_code == 200 and r.json() == {
            "name": "constraintAwarePlacer",
            "enabled": False,
            "mode": "heuristic",
            "position": -1,
        }
        assert policies.chain() == ("staticPlacedComponents",)
        r = client.put("/api/v1/policies/staticPlacedComponents", json={"enabled": False}, headers=admin)
        assert r.status_code == 409 and "no enabled heuristic policy" in r.json()["detail"]
        assert client.put("/api/v1/policies/nope", json={"enabled": True}, headers=admin).status_code == 404
        # a description change is planned by the restarted controller, with the static policy alone:
        doc = documents(FIXTURES / "app.yaml")[0]
        doc["components"][0]["containers"][0]["image"] = "registry.example/changed:2"
        client.put("/api/v1/apps/camera-pipeline", json=doc, headers=admin)
        status = wait_for(
            lambda: (
                (s := store.get(R.APP, "default", "camera-pipeline")["status"]).get("observedGeneration") == 2
                and s
            ),
            what="generation 2 reconciled",
            timeout=SLOW,
        )
        assert status["policy"] == "staticPlacedComponents"
        saved = (tmp_path / "policies.json").read_text()
        assert "constraintAwarePlacer" in saved  # survives a restart of the daemon
    finally:
        runner.stop()


def test_restarting_the_api_and_its_controller_mid_deploy_loses_nothing(standin, store, tmp_path):
    """Submitted over the API, stopped while a Deployment is unavailable, started again as a new
    API with a new in-process controller: the app converges to Deployed, nothing duplicated."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    from ctlkube_harness import FIXTURES, documents
    from fastapi.testclient import TestClient

    from controller.api.tokens import TokenStore
    from controller.mechanisms.kubernetes_render import deployment_name

    held = [
        deployment_name("camera-pipeline", "detector", n, "uth-edge") for n in ("cloud-1", "edge-1", "edge-2")
    ]

    cfg = in_process_controller_config(store, tmp_path, documents(FIXTURES / "inventory"))
    operator = {"Authorization": f"Bearer {TokenStore(cfg.tokens_file).create('operator')[0]}"}
    for name in held:
        standin.hold(name)
    app, runner, policies = wire(cfg, store)
    runner.start(policies.chain())
    try:
        client = TestClient(app)
        assert (
            client.post(
                "/api/v1/apps", json=documents(FIXTURES / "app.yaml")[0], headers=operator
            ).status_code
            == 201
        )
        wait_for(
            lambda: (
                client.get("/apps/status/camera-pipeline", headers=operator).json()["status"]
                not in ("Submitted", "Deployed")
            ),
            what="deploying",
            timeout=SLOW,
        )
    finally:
        runner.stop()
    app, runner, policies = wire(cfg, store)  # a new daemon over the same store
    runner.start(policies.chain())
    try:
        client = TestClient(app)
        assert client.get("/apps/status/camera-pipeline", headers=operator).json()["status"] != "Deployed"
        for name in held:
            standin.release(name)
        wait_for(
            lambda: (
                client.get("/apps/status/camera-pipeline", headers=operator).json()["status"] == "Deployed"
            ),
            what="Deployed after the restart",
            timeout=SLOW,
        )
        assert len(store.list(R.DEPLOYMENT, "default")[0]) == 4
        assert [a["name"] for a in client.get("/api/v1/apps", headers=operator).json()] == ["camera-pipeline"]
    finally:
        runner.stop()


def test_the_daemon_runs_the_embedded_controller_and_never_claims_what_did_not_run(tmp_path):
    """`--run-controller` on the embedded store with a node agent that is not there: the
    controller plans and reports, the app is never Deployed (nothing runs), ping says running."""
    tokens = str(tmp_path / "tokens.json")
    created = CliRunner().invoke(api_cli, ["token", "--tokens-file", tokens, "create", "--role", "operator"])
    headers = {"Authorization": f"Bearer {created.stdout.splitlines()[0]}"}
    port = free_port()
    proc = run_daemon(
        tmp_path,
        "--listen",
        f"127.0.0.1:{port}",
        "--run-controller",
        "--agent",
        f"unix:{tmp_path / 'no-agent.sock'}=edge",
        "--policy-state",
        str(tmp_path / "policies.json"),
    )
    try:
        wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/api/v1/ping", headers=headers).json() == {
            "store": "ok",
            "controller": "running",
        }
        assert httpx.post(url + "/apps/deploy", json=reference_app(), headers=headers).status_code == 200
        seen = wait_for(
            lambda: (
                (s := httpx.get(url + "/api/v1/apps/test-application/status", headers=headers).json())[
                    "current"
                ]
                and s
            ),
            what="the embedded controller's status",
            timeout=SLOW,
        )
        assert seen["phase"] != "Deployed"
        assert {c["type"]: c["status"] for c in seen["conditions"]}.get("Ready") == "False"
    finally:
        stop(proc)


def test_a_second_controller_on_the_same_embedded_store_is_refused(tmp_path):
    """The in-process controller takes the store's controller lock, as `python -m controller`
    does: with another controller running on that store the daemon exits 2 naming the holder
    and never serves (two controllers would fight over every workload)."""
    from controller.store import ControllerLock

    port = free_port()
    with ControllerLock(tmp_path / "controller.db"):
        proc = run_daemon(tmp_path, "--listen", f"127.0.0.1:{port}", "--run-controller",
                          "--agent", f"unix:{tmp_path / 'no-agent.sock'}=edge",
                          "--policy-state", str(tmp_path / "policies.json"))
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 2
    assert f"another controller (pid {os.getpid()})" in err.decode()
    with socket.socket() as probe:  # nothing was left listening
        assert probe.connect_ex(("127.0.0.1", port)) != 0
