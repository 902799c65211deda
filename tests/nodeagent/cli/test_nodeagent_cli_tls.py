"""--tls-cert/--tls-key/--tls-ca reach a TCP agent that demands mutual TLS (as the daemon's
`listen.tls` does); without a client certificate the handshake is refused."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc
from nodeagent.cli import node


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def issue(name: str, cwd: Path, extensions: str) -> None:
    """A key and a certificate for `name`, signed by the CA in cwd."""
    (cwd / f"{name}.ext").write_text(extensions)
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-subj",
        f"/CN={name}",
        "-out",
        f"{name}.csr",
        cwd=cwd,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        f"{name}.crt",
        "-extfile",
        f"{name}.ext",
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed: cannot make test certificates")
    cwd = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=mlsysops-test-ca",
        cwd=cwd,
    )
    issue("server", cwd, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    issue("client", cwd, "extendedKeyUsage=clientAuth\n")
    return cwd


@pytest.fixture
def tls_agent(pki: Path, agent: Any) -> Iterator[str]:
    """The canned agent again, on a TCP port that requires a client certificate."""
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.crt").read_bytes())],
        root_certificates=(pki / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    nodeconfig_pb2_grpc.add_NodeConfigServicer_to_server(agent, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(5)


def test_mutual_tls_with_all_three_files(pki: Path, tls_agent: str, agent: Any) -> None:
    args = [
        "--tls-cert",
        str(pki / "client.crt"),
        "--tls-key",
        str(pki / "client.key"),
        "--tls-ca",
        str(pki / "ca.crt"),
    ]
    result = CliRunner().invoke(node, ["--target", tls_agent, *args, "state"])
    assert result.exit_code == 0, result.output
    assert agent.sent("GetState")


def test_without_a_client_certificate_the_agent_is_not_reached(pki: Path, tls_agent: str, agent: Any) -> None:
    result = CliRunner().invoke(
        node, ["--target", tls_agent, "--timeout", "5", "--tls-ca", str(pki / "ca.crt"), "state"]
    )
    assert result.exit_code in (3, 5), result.output
    assert tls_agent in result.output
    assert agent.sent("GetState") == []


def test_a_plain_channel_to_a_tls_port_fails_cleanly(tls_agent: str, agent: Any) -> None:
    result = CliRunner().invoke(node, ["--target", tls_agent, "--timeout", "5", "state"])
    assert result.exit_code == 3, result.output
    assert f"the node agent is not reachable at {tls_agent}" in result.output
    assert agent.sent("GetState") == []
