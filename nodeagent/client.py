"""The one place a gRPC channel to a node agent is made (CLI, controller, far-edge bridge).

Targets use gRPC's own syntax: `unix:/run/mlsysops/nodeagent.sock` (the default, the agent's
socket on this node) or `host:port` (a remote agent: mutual TLS when `tls` is given, else a
plain channel, which the agent accepts only when started with --insecure).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc

from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc

DEFAULT_TARGET = "unix:/run/mlsysops/nodeagent.sock"
TARGET_ENV = "MLSYSOPS_NODEAGENT"


class TargetError(ValueError):
    """The target or its TLS files are unusable; nothing was attempted."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for mutual TLS: our certificate and key, and the CA that signed the agent's."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None


def default_target() -> str:
    """$MLSYSOPS_NODEAGENT if set, else the local agent's unix socket."""
    return os.environ.get(TARGET_ENV) or DEFAULT_TARGET


def check_target(target: str) -> str:
    """Reject targets gRPC would only fail on later with an obscure resolver error."""
    target = target.strip()
    if not target:
        raise TargetError("target is empty (use unix:/path/to.sock or host:port)")
    if target.startswith("unix:"):
        if target in ("unix:", "unix://"):
            raise TargetError(f"target {target!r} names no socket path")
        return target
    if target.startswith("/"):
        raise TargetError(f"target {target!r} is a path: write unix:{target}")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"target {target!r} is neither unix:PATH nor host:port")
    return target


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    if (tls.cert is None) != (tls.key is None):
        raise TargetError("--tls-cert and --tls-key go together (client certificate and its key)")

    def read(path: Path | None, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TargetError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from exc

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca, "CA"),
        private_key=read(tls.key, "key"),
        certificate_chain=read(tls.cert, "certificate"),
    )


def open_channel(target: str, tls: TlsFiles | None = None) -> grpc.Channel:
    """A channel to the agent at target; close it when done (or use it as a context manager)."""
    target = check_target(target)
    if tls is None:
        return grpc.insecure_channel(target)
    if target.startswith("unix:"):
        raise TargetError("TLS is for TCP targets; a unix socket is protected by its file mode")
    return grpc.secure_channel(target, channel_credentials(tls))


def connect(target: str, tls: TlsFiles | None = None) -> nodeconfig_pb2_grpc.NodeConfigStub:
    """A NodeConfig stub on a new channel to target (lazy: the first call connects)."""
    return nodeconfig_pb2_grpc.NodeConfigStub(open_channel(target, tls))
