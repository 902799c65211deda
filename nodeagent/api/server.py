"""The gRPC server: listeners (unix socket; TCP with mutual TLS, or plain only when asked),
the health service and server reflection (so grpcurl can list and call the API).

A small, fixed thread pool serves every call: no per-request threads, and WatchEvents streams
are capped below the pool size (config) so they cannot starve Apply.

The unix socket is the agent's own (peercred.PeerCredSocket): it reads each caller's uid/gid
with SO_PEERCRED and relays the connection to a loopback port of the gRPC server, so the guard
can authorise by who the kernel says is calling. The TLS listener's certificate and key are
read again on `reload_certificates()` (SIGHUP), for handshakes from then on.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc as pb_grpc
from nodeagent.api.guard import RequestGuard
from nodeagent.api.peercred import PeerCredSocket, PeerTable, group_id
from nodeagent.config import ConfigError, ListenConfig
from nodeagent.service.authz import Policy
from nodeagent.service.limits import RequestLimits

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["NodeConfig"].full_name


class ApiServer:
    """The agent's gRPC server: built idle, bound and started by start(), ended by stop()."""

    def __init__(
        self,
        servicer: pb_grpc.NodeConfigServicer,
        listen: ListenConfig,
        limits: RequestLimits | None = None,
        policy: Policy | None = None,
    ) -> None:
        self._listen = listen
        limits = limits or RequestLimits()
        self._peers = PeerTable()
        self._front: PeerCredSocket | None = None
        self._reload_tls = False
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=listen.workers, thread_name_prefix="grpc"),
            interceptors=[RequestGuard(f"/{SERVICE_NAME}/", policy, self._peers, limits)],
            options=[
                ("grpc.so_reuseport", 0),  # a second agent on the same port must fail, not share it
                ("grpc.max_receive_message_length", limits.max_message_bytes),  # limits.max_message_bytes
            ],
        )
        pb_grpc.add_NodeConfigServicer_to_server(servicer, self._server)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self.addresses: list[str] = []  # gRPC targets a client can dial, once bound
        self._socket_bound = False

    def start(self) -> None:
        """Bind the configured listeners, then serve. ConfigError when one cannot be bound (the
        others are released again)."""
        try:
            if self._listen.socket:
                self.addresses.append(self._bind_unix(Path(self._listen.socket)))
                self._socket_bound = True
            if self._listen.tcp:
                self.addresses.append(self._bind_tcp(self._listen.tcp))
        except ConfigError:
            self.stop(0)
            raise
        self._server.start()
        if self._front is not None:
            self._front.start()
        for service in ("", SERVICE_NAME):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_s: float) -> None:
        """Refuse new calls, let running ones finish for up to `grace_s`, then remove the socket
        (only one this server bound: never another agent's)."""
        self._health.enter_graceful_shutdown()
        if self._front is not None:
            self._front.close()  # no new local callers; relayed calls end with the server's grace
        self._server.stop(grace_s).wait()
        if self._socket_bound and self._listen.socket:
            Path(self._listen.socket).unlink(missing_ok=True)
            self._socket_bound = False

    def _bind_unix(self, path: Path) -> str:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
            os.chmod(path.parent, int(self._listen.socket_dir_mode, 8))
        _remove_stale_socket(path)
        gid = None
        if self._listen.socket_group:
            try:
                gid = group_id(self._listen.socket_group)
            except KeyError:
                raise ConfigError("listen.socket_group", f"no group {self._listen.socket_group!r}") from None
        backend = self._add_port("127.0.0.1:0", None, "listen.socket")  # reached only through the front
        front = PeerCredSocket(path, ("127.0.0.1", backend), self._peers)
        try:
            front.bind(int(self._listen.socket_mode, 8), gid)
        except OSError as exc:
            front.close()
            raise ConfigError("listen.socket", f"cannot listen on {path}: {exc.strerror}") from exc
        self._front = front
        return f"unix:{path}"

    def reload_certificates(self) -> None:
        """Read the TLS certificate, key and client CA again at the next handshake (SIGHUP)."""
        self._reload_tls = True

    def _tls_files(self) -> grpc.ServerCertificateConfiguration:
        tls = self._listen.tls
        try:
            return grpc.ssl_server_certificate_configuration(
                [(Path(tls.key).read_bytes(), Path(tls.cert).read_bytes())],
                root_certificates=Path(tls.client_ca).read_bytes(),
            )
        except OSError as exc:
            raise ConfigError("listen.tls", f"cannot read {exc.filename}: {exc.strerror}") from exc

    def _fetch_tls(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC asks before each handshake: None keeps the current files."""
        if not self._reload_tls:
            return None
        self._reload_tls = False
        try:
            config = self._tls_files()
        except ConfigError as exc:
            log.error("tls reload failed, keeping the current certificate: %s", exc)
            return None
        log.info("tls certificates reloaded")
        return config

    def _bind_tcp(self, address: str) -> str:
        tls = self._listen.tls
        credentials = None
        if tls.enabled:
            credentials = grpc.dynamic_ssl_server_credentials(
                self._tls_files(), self._fetch_tls,  # type: ignore[arg-type]  # None keeps the files (grpc docs)
                require_client_authentication=True,
            )
        port = self._add_port(address, credentials, "listen.tcp")
        host = address.rpartition(":")[0]
        return f"{host}:{port}"

    def _add_port(self, address: str, credentials: grpc.ServerCredentials | None, key: str) -> int:
        try:
            if credentials is None:
                port = self._server.add_insecure_port(address)
            else:
                port = self._server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise ConfigError(key, f"cannot listen on {address}: {exc}") from exc
        if port == 0 and not address.startswith("unix:"):
            raise ConfigError(key, f"cannot listen on {address}")
        return port


def _remove_stale_socket(path: Path) -> None:
    """A socket left by a killed agent is removed; a live one or any other file is refused."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError("listen.socket", f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConfigError("listen.socket", f"cannot check {path}: {exc.strerror}") from exc
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ConfigError("listen.socket", f"{path} is in use: is another agent running?")
