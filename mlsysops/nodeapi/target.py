"""Where a node agent is and how to trust it: pure values, checked before any channel exists.

Targets use gRPC's own syntax: `unix:/run/mlsysops/nodeagent.sock` (the default, the agent's
socket on this node) or `host:port` (a remote agent: mutual TLS when `TlsFiles` are given, else a
plain channel, which the agent accepts only when started with --insecure).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlsysops.nodeapi.errors import NodeApiError

DEFAULT_TARGET = "unix:/run/mlsysops/nodeagent.sock"
TARGET_ENV = "MLSYSOPS_NODEAGENT"


class TargetError(NodeApiError, ValueError):
    """The target or its TLS files are unusable; nothing was attempted."""

    def __init__(self, message: str, target: str = "") -> None:
        super().__init__(message, target=target, method="", code="INVALID_TARGET", details=message)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for mutual TLS: our certificate and key, and the CA that signed the agent's."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(CA, key, certificate) as bytes; TargetError names the file that cannot be used."""
        if (self.cert is None) != (self.key is None):
            raise TargetError("--tls-cert and --tls-key go together (client certificate and its key)")
        return _read(self.ca, "CA"), _read(self.key, "key"), _read(self.cert, "certificate")


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TargetError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from exc


def check_target(target: str, tls: TlsFiles | None = None) -> str:
    """The target, stripped; TargetError for targets gRPC would only fail on later, obscurely."""
    target = target.strip()
    if not target:
        raise TargetError("target is empty (use unix:/path/to.sock or host:port)")
    if target.startswith("unix:"):
        if target in ("unix:", "unix://"):
            raise TargetError(f"target {target!r} names no socket path", target)
        if tls is not None:
            raise TargetError("TLS is for TCP targets; a unix socket is protected by its file mode", target)
        return target
    if target.startswith("/"):
        raise TargetError(f"target {target!r} is a path: write unix:{target}", target)
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"target {target!r} is neither unix:PATH nor host:port", target)
    return target
