"""Provisioning: broker initialisation and per-device credentials (`mlsysops devices provision`).

Idempotent: provisioning a device again gives it a new password (the old one stops working at
the broker's next reload) and rewrites only its own ACL block. Secret files are created 0600.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faredge.broker import (
    BRIDGE_USER,
    BrokerLayout,
    BrokerSettings,
    bridge_acl,
    device_acl,
    device_config,
    parse_acl,
    render_acl,
    render_conf,
)
from faredge.channels.mosquitto import grant_access, reload_broker, set_password
from faredge.errors import Invalid
from faredge.protocol.messages import check_device_id

BOARDS = ("esp32", "rp2040", "stm32", "virtual")


@dataclass(frozen=True)
class Provisioned:
    device_id: str
    password: str
    config: dict[str, Any]
    config_file: Path
    reloaded: bool


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _set_acl(layout: BrokerLayout, user: str, rules: list[str]) -> None:
    blocks = parse_acl(layout.acl.read_text()) if layout.acl.exists() else {}
    blocks[user] = rules
    _write_secret(layout.acl, render_acl(blocks))


def _bridge_users(layout: BrokerLayout) -> set[str]:
    """Users whose ACL block is the bridge's: their names are never device ids."""
    blocks = parse_acl(layout.acl.read_text()) if layout.acl.exists() else {}
    rules = bridge_acl()
    return {BRIDGE_USER} | {user for user, block in blocks.items() if block == rules}


def add_bridge_user(layout: BrokerLayout, user: str) -> str:
    """Give a bridge (another instance, a test, the benchmark) its own user; return its password.

    The broker names sessions by username (`use_username_as_clientid`), so each bridge that
    keeps a persistent session of its own needs a user of its own.
    """
    check_device_id(user, "user")
    blocks = parse_acl(layout.acl.read_text()) if layout.acl.exists() else {}
    if user in blocks and blocks[user] != bridge_acl():
        raise Invalid("user", f"{user!r} is already a provisioned device")
    password = secrets.token_urlsafe(24)
    set_password(layout.passwd, user, password)
    _set_acl(layout, user, bridge_acl())
    grant_access(layout)
    return password


def init_broker(layout: BrokerLayout, settings: BrokerSettings) -> str:
    """Write mosquitto.conf and the bridge's own user (once); return the bridge's password."""
    layout.root.mkdir(parents=True, exist_ok=True)
    if not layout.conf.exists():
        layout.conf.write_text(render_conf(layout, settings))
    if layout.bridge_password.exists():
        return layout.bridge_password.read_text().strip()
    password = add_bridge_user(layout, BRIDGE_USER)
    _write_secret(layout.bridge_password, password + "\n")
    return password


def provision_device(
    layout: BrokerLayout, device_id: str, *, board: str, host: str, port: int, ca: str | None = None
) -> Provisioned:
    check_device_id(device_id, "device")
    if board not in BOARDS:
        raise Invalid("board", f"{board!r} is not one of {', '.join(BOARDS)}")
    if device_id in _bridge_users(layout):
        raise Invalid("device", f"{device_id!r} is the bridge's user: a device cannot have its name")
    password = secrets.token_urlsafe(18)
    set_password(layout.passwd, device_id, password)
    _set_acl(layout, device_id, device_acl(device_id))
    grant_access(layout)
    config = device_config(device_id, password, board=board, host=host, port=port, ca=ca)
    config_file = layout.devices / f"{device_id}.json"
    _write_secret(config_file, json.dumps(config, indent=2) + "\n")
    return Provisioned(device_id, password, config, config_file, reload_broker(layout))
