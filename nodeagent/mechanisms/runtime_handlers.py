"""Runtime handlers as data: what containerd is configured to offer, what we add, and why one cannot work.

A handler is a name (the CRI handler and Kubernetes RuntimeClass `handler`), a containerd shim
(`runtime_type`, e.g. `io.containerd.runc.v2`) and, for the runc shim, the runc-compatible
binary it runs (`options.BinaryName`). containerd keeps them in
`plugins."io.containerd.grpc.v1.cri".containerd.runtimes.<name>` of its config and of the files
its `imports` name. We never rewrite the user's config.toml: our handlers go into one drop-in
file that config imports, rendered here; the agent writes it only when its text changes, since
containerd reads it only when restarted.

gVisor's `runsc` runs through containerd's own runc v2 shim: `BinaryName` points at a small wrapper
(rendered here) adding `--platform=ptrace` (no KVM in VMs) and, for a container without a network
namespace path of its own, `--network=none` (runsc otherwise refuses to run with the network
enabled in the root network namespace). The decision is made at `create` (the only command given
the bundle) and carried to `start`, where gVisor sets the network up; a container joining a
named netns runs with `--network=host`, i.e. on that namespace's own stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CRI_PLUGIN = "io.containerd.grpc.v1.cri"
RUNC_SHIM = "io.containerd.runc.v2"
DROPIN_HEADER = (
    "# Written by the mlsysops node agent: the runtime handlers it offers. Edits are overwritten.\n"
)


@dataclass(frozen=True)
class HandlerConfig:
    """One runtime handler as containerd's configuration declares it."""

    name: str
    runtime_type: str
    binary_name: str = ""  # runc shim only: the OCI runtime binary ("" for the shim's default, runc)
    source: str = ""  # the config file that declared it (the last one wins)

    @property
    def shim(self) -> str:
        return shim_binary(self.runtime_type)

    @property
    def runtime_class_name(self) -> str:
        return runtime_class_name(self.name)


def shim_binary(runtime_type: str) -> str:
    """containerd's rule: io.containerd.<name>.<version> runs containerd-shim-<name>-<version>."""
    parts = runtime_type.split(".")
    if len(parts) < 4 or parts[0] != "io" or parts[1] != "containerd":
        return runtime_type  # an absolute path or a binary name taken as given
    return "containerd-shim-" + "-".join(parts[2:])


def runtime_class_name(handler: str) -> str:
    """A Kubernetes RuntimeClass name (DNS-1123 label) for the handler: Kata_Qemu -> kata-qemu."""
    name = re.sub(r"[^a-z0-9-]+", "-", handler.lower()).strip("-")
    return name[:63].rstrip("-") or "default"


def handlers_in(document: Mapping[str, Any], source: str) -> list[HandlerConfig]:
    """The handlers one parsed containerd config (version 2) declares; malformed entries are skipped."""
    cri = document.get("plugins", {}).get(CRI_PLUGIN, {})
    runtimes = cri.get("containerd", {}).get("runtimes", {}) if isinstance(cri, Mapping) else {}
    found: list[HandlerConfig] = []
    if not isinstance(runtimes, Mapping):
        return found
    for name, entry in runtimes.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("runtime_type", ""), str):
            continue
        options = entry.get("options", {})
        binary = options.get("BinaryName", "") if isinstance(options, Mapping) else ""
        found.append(
            HandlerConfig(str(name), str(entry.get("runtime_type") or RUNC_SHIM), str(binary), source)
        )
    return found


def merge_handlers(documents: Iterable[tuple[str, Mapping[str, Any]]]) -> list[HandlerConfig]:
    """Handlers of the main config and its imports, in containerd's order: a later file overrides."""
    merged: dict[str, HandlerConfig] = {}
    for source, document in documents:
        for handler in handlers_in(document, source):
            merged[handler.name] = handler
    return sorted(merged.values(), key=lambda h: h.name)


def imports_of(document: Mapping[str, Any]) -> list[str]:
    """The `imports` globs of a containerd config."""
    value = document.get("imports", [])
    return [str(v) for v in value] if isinstance(value, list) else []


def render_dropin(handlers: Sequence[HandlerConfig]) -> str:
    """The TOML drop-in declaring `handlers` (containerd config version 2)."""
    lines = [DROPIN_HEADER, "version = 2\n"]
    for handler in sorted(handlers, key=lambda h: h.name):
        table = f'plugins."{CRI_PLUGIN}".containerd.runtimes.{_key(handler.name)}'
        lines.append(f"\n[{table}]\n  runtime_type = {_string(handler.runtime_type)}\n")
        if handler.binary_name:
            lines.append(f"[{table}.options]\n  BinaryName = {_string(handler.binary_name)}\n")
    return "".join(lines)


def runsc_wrapper(runsc: str, platform: str = "ptrace") -> str:
    """The sh script the runc shim runs as `BinaryName` for gVisor (see the module docstring).

    The shim passes `--bundle` only to `create`, but gVisor sets up the sandbox's network at
    `start`: so `create` records its decision as a mark file named after the container id under
    runsc's own `--root` (per containerd namespace, on tmpfs), `start` reads it, and `delete`
    (which the shim also runs after a failed create) removes it. A create without a netns path
    removes a stale mark of a reused id, so such containers keep `--network=none`. A container in
    a netns gets `--network=host` (gVisor's hostinet on that namespace's stack): runsc's netstack
    mode refuses any namespace on kernels that namespace /proc/sys/net/core/rmem_default (its
    root-namespace test), which Linux 6.x does.
    """
    return f"""#!/bin/sh
# Written by the mlsysops node agent: gVisor's runsc behind containerd's runc v2 shim.
bundle=""; root=/var/run/runsc; prev=""; cmd=""; id=""
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle="$arg" ;; --root) [ -z "$cmd" ] && root="$arg" ;; esac
  case "$arg" in
    --bundle=*) bundle="${{arg#--bundle=}}" ;;
    --root=*) [ -z "$cmd" ] && root="${{arg#--root=}}" ;;
    create|start|delete) [ -z "$cmd" ] && cmd="$arg" ;;
  esac
  prev="$arg"; id="$arg"
done
marks="$root/.mlsysops-netns"; mark="$marks/$id"
network=--network=none
case "$cmd" in
  create)
    if [ -n "$bundle" ] && tr -d ' \n\t' < "$bundle/config.json" 2>/dev/null \
        | grep -q '"type":"network","path":"[^"]'; then
      network=--network=host; mkdir -p "$marks" && : > "$mark"
    else
      rm -f "$mark"
    fi ;;
  start) [ -e "$mark" ] && network=--network=host ;;
  delete) rm -f "$mark" ;;
esac
exec {_shell_word(runsc)} --platform={_shell_word(platform)} $network "$@"
"""


def standard_handlers(wrapper_path: str) -> list[HandlerConfig]:
    """What the agent offers when its configuration names no handlers: runc, gVisor (through the
    wrapper), crun and Kata. Discovery then says which of them really work here."""
    return [
        HandlerConfig("crun", RUNC_SHIM, "crun"),
        HandlerConfig("kata", "io.containerd.kata.v2"),
        HandlerConfig("runc", RUNC_SHIM),
        HandlerConfig("runsc", RUNC_SHIM, wrapper_path),
    ]


def missing_binaries(handler: HandlerConfig, which: Callable[[str], str | None]) -> str:
    """Why `handler` cannot start (its shim or binary is not there), "" when both are found.

    `which` finds an executable by name or path (shutil.which in production). The message is
    containerd's own words for a missing shim, so the reason reads the same as a failed ctr run.
    """
    if which(handler.shim) is None:
        return f"{handler.shim}: file does not exist"
    if handler.binary_name and which(handler.binary_name) is None:
        return f"{handler.binary_name}: file does not exist (options.BinaryName)"
    return ""


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _string(name)


def _string(value: str) -> str:
    return json.dumps(value)  # a TOML basic string for everything we write (no control characters)


def _shell_word(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
