"""A private network namespace joined to the host by a veth pair, made with iproute2's `ip`: the
service listens inside it, the generator on the host reaches it over the veth."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


@dataclass
class VethNetns:
    """`ip netns` name, host-side and namespace-side addresses of a /30 (10.213.<n>.0/30)."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    created: bool = False

    @property
    def name(self) -> str:
        return f"mlx-{self.tag}"

    @property
    def subnet(self) -> int:
        return int(self.tag, 16) % 250 + 2

    @property
    def host_ip(self) -> str:
        return f"10.213.{self.subnet}.1"

    @property
    def service_ip(self) -> str:
        return f"10.213.{self.subnet}.2"

    def create(self) -> None:
        host, inner = f"mlxh{self.tag}", f"mlxc{self.tag}"
        _ip("netns", "add", self.name)
        self.created = True
        _ip("link", "add", host, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", host)
        _ip("link", "set", host, "up")
        _ip("-n", self.name, "addr", "add", f"{self.service_ip}/30", "dev", inner)
        _ip("-n", self.name, "link", "set", inner, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def delete(self) -> None:
        """Deleting the namespace removes its veth end, and with it the host's."""
        if self.created:
            _ip("netns", "delete", self.name, check=False)
            _ip("link", "delete", f"mlxh{self.tag}", check=False)
            self.created = False
