"""`mlsysops install node|bridge|controller`: what a role's systemd service needs, written once.

Each role is one service: its unit (the one shipped in `mlsysops.units`, ExecStart pointed at
the venv named by `--prefix`), a default config file the daemon accepts, the directories
systemd does not make itself, and for the node agent and the bridge the group `mlsysops`
(a sysusers.d entry, created with systemd-sysusers): the agent's socket belongs to it and the
bridge, a dynamic user, reaches the agent through it.

Units and configs are treated differently on purpose: the unit is ours (an upgrade brings a
new one; local changes belong in drop-ins, `systemctl edit`), so a unit that differs is
replaced; the config is the operator's, so an existing one is never touched, even if it
differs from the default. State and runtime directories are left to the
units' StateDirectory=/RuntimeDirectory=: systemd creates them with the right owner (a
DynamicUser= service's state lives under /var/lib/private), which a pre-created root-owned
directory would break.

Everything is checked before the first write (the role's daemon installed under the prefix,
the prefix a path systemd can run, nothing in the way of a file or directory), so bad input
changes nothing, and a second run reports that nothing changed. `--root` puts the whole tree
below another directory (a rootfs being prepared, a test's temporary tree).

The daemons' packages are not imported here (the shared kernel knows no daemon): the default
configs are literal text, and tests load each with its daemon's own loader.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click

from mlsysops.roles import install_hint

DEFAULT_PREFIX = "/opt/mlsysops"  # the venv the shipped units' ExecStart names
UNIT_DIR = PurePosixPath("/etc/systemd/system")
CONFIG_DIR = PurePosixPath("/etc/mlsysops")
_SAFE_PATH = re.compile(r"^(/[A-Za-z0-9._+-]+)+$")  # no spaces or specifiers: ExecStart takes it verbatim

NODE_CONFIG = """\
# The node agent's settings, written by `mlsysops install node` (every option:
# docs/nodeagent-config.md). Yours to edit: `mlsysops install` never overwrites this file.
node_name: ""                       # "" reports the host name
listen:
  socket: /run/mlsysops/nodeagent.sock
  socket_mode: "0660"               # root and group mlsysops may connect: the bridge is in it
  socket_group: mlsysops
authz:
  policy: {"uid:0": admin, "*": apply}   # who may connect may apply and report devices; reset: root
host:
  simulate: "off"                   # "cpufreq" on VMs without cpufreq: a simulated tree instead
telemetry:
  metrics_listen: "127.0.0.1:9465"
runtimes:
  enabled: false                    # true: run workloads on containerd (docs/runtimes.md)
"""

BRIDGE_CONFIG = """\
# The far-edge bridge's settings, written by `mlsysops install bridge` (every option:
# docs/faredge-bridge.md). Yours to edit: `mlsysops install` never overwrites this file.
state_dir: /var/lib/mlsysops/faredge
control_socket: /run/mlsysops-faredge/faredge.sock
metrics:
  listen: "127.0.0.1:9466"          # 9465 is the node agent's
mqtt:
  host: 127.0.0.1
  port: 1883
  username: faredge
  # The unit loads /etc/mlsysops/faredge/broker/bridge.password (`mlsysops devices provision`
  # writes it) as this credential; until then it is empty and the broker refuses the login.
  password_file: /run/credentials/mlsysops-faredge.service/bridge.password
nodeagent:
  target: unix:/run/mlsysops/nodeagent.sock
"""

# The group whose members may use the node agent's socket: the agent owns its socket through it
# and the bridge reports its devices through it (both units: SupplementaryGroups=mlsysops).
GROUP = "mlsysops"
SYSUSERS = PurePosixPath("/etc/sysusers.d/mlsysops.conf")
SYSUSERS_CONFIG = f"""\
# Written by `mlsysops install`: members of {GROUP} may use the node agent's socket.
g {GROUP} -
"""

CONTROLLER_CONFIG = """\
# The REST API and the controller it runs in-process, written by `mlsysops install controller`
# (every option: docs/api.md). Yours to edit: `mlsysops install` never overwrites this file.
listen: "127.0.0.1:8000"            # anything but loopback needs tls_cert and tls_key
run_controller: true                # the controller reconciles the embedded store in this process
store_path: /var/lib/mlsysops/controller.db
tokens_file: /var/lib/mlsysops/api/tokens.json   # `mlsysops api token create` adds tokens
policy_state: /var/lib/mlsysops/api/policies.json
"""


@dataclass(frozen=True)
class Service:
    """One role's service: its unit, the program the unit runs, and its config file."""

    role: str
    extra: str
    unit: str
    program: str
    config: PurePosixPath
    default_config: str
    directories: tuple[PurePosixPath, ...] = ()
    in_group: bool = False  # the unit names SupplementaryGroups=mlsysops: the group must exist


SERVICES: dict[str, Service] = {
    s.role: s
    for s in (
        Service(
            "node", "node", "mlsysops-nodeagent.service", "mlsysops-nodeagent", CONFIG_DIR / "nodeagent.yaml",
            NODE_CONFIG, in_group=True,
        ),
        Service(
            "bridge", "bridge", "mlsysops-faredge.service", "mlsysops-faredge", CONFIG_DIR / "faredge.yaml",
            BRIDGE_CONFIG,
            # where `mlsysops devices provision` keeps the broker (and the bridge's password)
            (CONFIG_DIR / "faredge",), in_group=True,
        ),
        Service(
            "controller", "controller", "mlsysops-api.service", "mlsysops-api", CONFIG_DIR / "api.yaml",
            CONTROLLER_CONFIG,
        ),
    )
}


class InstallError(Exception):
    """Input the install refuses before writing anything; the message says what to do."""


@dataclass(frozen=True)
class Step:
    """One path of the install: a directory (content None) or a file, and whether it is replaced."""

    path: PurePosixPath
    mode: int
    content: str | None = None
    replace: bool = False  # files only: True for units (ours), False for configs (the operator's)


def unit_text(service: Service, prefix: str, units: Path) -> str:
    """The shipped unit with ExecStart in `prefix`'s bin/ (the only line that names the venv)."""
    text = (units / service.unit).read_text()
    shipped = f"ExecStart={DEFAULT_PREFIX}/bin/{service.program} "
    if shipped not in text:
        raise InstallError(f"{units / service.unit}: no ExecStart={DEFAULT_PREFIX}/bin/{service.program}")
    return text.replace(shipped, f"ExecStart={prefix}/bin/{service.program} ")


def plan(service: Service, prefix: str, units: Path) -> list[Step]:
    """What the install of `service` consists of, parents first (pure apart from reading the unit)."""
    if not _SAFE_PATH.match(prefix) or ".." in PurePosixPath(prefix).parts:
        raise InstallError(f"--prefix {prefix!r}: expected an absolute path of letters, digits and ._+-")
    return [
        Step(CONFIG_DIR, 0o755),
        *(Step(d, 0o755) for d in service.directories),
        Step(service.config, 0o644, service.default_config),
        *([Step(SYSUSERS.parent, 0o755), Step(SYSUSERS, 0o644, SYSUSERS_CONFIG, replace=True)]
          if service.in_group else []),
        Step(UNIT_DIR, 0o755),
        Step(UNIT_DIR / service.unit, 0o644, unit_text(service, prefix, units), replace=True),
    ]  # fmt: skip


def shipped_units() -> Path:
    """The source tree's systemd/ next to this package, else the wheel's `mlsysops.units`."""
    source = Path(__file__).resolve().parents[1] / "systemd"
    if source.is_dir():
        return source
    spec = importlib.util.find_spec("mlsysops.units")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise InstallError("the unit files are missing: neither systemd/ nor mlsysops.units is installed")
    return Path(locations[0])


class RootedTree:
    """The file layer of the install: every path is below `root` (/ on a real machine)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def at(self, path: PurePosixPath) -> Path:
        return self.root / path.relative_to("/")

    def check(self, steps: Sequence[Step], program: PurePosixPath, hint: str) -> None:
        """Refuse before any write: the daemon missing, or a file where a directory goes (or back)."""
        if not self.root.is_dir():
            raise InstallError(f"--root {self.root}: not a directory")
        daemon = self.at(program)
        if not (daemon.is_file() and os.access(daemon, os.X_OK)):
            raise InstallError(f"{daemon} is not installed, and the unit runs it: {hint}")
        for step in steps:
            target = self.at(step.path)
            ancestors = [target.parents[i] for i in range(len(step.path.parts) - 1)]  # up to the root
            in_the_way = [p for p in ([target] if step.content is None else []) + ancestors if p.is_file()]
            if in_the_way:
                raise InstallError(f"{in_the_way[-1]}: exists and is not a directory")
            if step.content is not None and (target.is_dir() or target.is_symlink()):
                raise InstallError(f"{target}: exists and is not a regular file")

    def has_group(self, name: str) -> bool:
        group = self.at(PurePosixPath("/etc/group"))
        return group.is_file() and any(line.split(":")[0] == name for line in group.read_text().splitlines())

    def add_group(self) -> str:
        """Create the group of the sysusers.d file the steps wrote (systemd-sysusers: idempotent)."""
        if self.has_group(GROUP):
            return "unchanged"
        done = subprocess.run(
            ["systemd-sysusers", f"--root={self.root}", str(self.at(SYSUSERS))],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if done.returncode != 0:
            raise InstallError(f"systemd-sysusers could not create group {GROUP}: {done.stderr.strip()}")
        return "created"

    def apply(self, step: Step) -> str:
        """Make one path as `step` says; returns what happened ("created", "unchanged", ...)."""
        target = self.at(step.path)
        if step.content is None:
            if target.is_dir():
                return "unchanged"
            target.mkdir(mode=step.mode, parents=True)
            target.chmod(step.mode)  # mkdir's mode passes through the umask
            return "created"
        if target.exists():
            if target.read_text() == step.content:
                return "unchanged"
            if not step.replace:
                return "kept (edited: never overwritten)"
        existed = target.exists()
        partial = target.with_name(f".{target.name}.new")
        partial.write_text(step.content)
        partial.chmod(step.mode)
        partial.replace(target)  # atomic: a reader sees the old file or the new one
        return "updated" if existed else "created"


def install_service(service: Service, tree: RootedTree, prefix: str, units: Path) -> list[tuple[str, str]]:
    """Check everything, then write what differs; (outcome, path) per step."""
    steps = plan(service, prefix, units)
    venv = PurePosixPath(prefix)
    hint = f"python3 -m venv {venv} && {venv}/bin/{install_hint(service.extra)}"
    tree.check(steps, venv / "bin" / service.program, hint)
    if service.in_group and not tree.has_group(GROUP) and shutil.which("systemd-sysusers") is None:
        raise InstallError(f"no group {GROUP} and no systemd-sysusers to create it (is this a systemd host?)")
    done = [(tree.apply(step), str(step.path)) for step in steps]
    if service.in_group:
        done.append((tree.add_group(), f"group {GROUP}"))
    return done


@click.command("install")
@click.argument("role", type=click.Choice(sorted(SERVICES)))
@click.option(
    "--root", type=click.Path(path_type=Path), default=Path("/"), show_default=True,
    help="Install below this directory (a rootfs being prepared).",
)
@click.option(
    "--prefix", default=DEFAULT_PREFIX, show_default=True,
    help="The venv with the role's extra installed: ExecStart runs PREFIX/bin/<daemon>.",
)
def install(role: str, root: Path, prefix: str) -> None:
    """Write ROLE's systemd unit, default config and directories (again: only what changed)."""
    service = SERVICES[role]
    try:
        done = install_service(service, RootedTree(root), prefix, shipped_units())
    except (InstallError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for outcome, path in done:
        click.echo(f"{outcome:<10} {path}")
    if all(outcome == "unchanged" for outcome, _ in done):
        click.echo("nothing to change")
    elif any(outcome in ("created", "updated") for outcome, path in done if path.endswith(".service")):
        click.echo(f"next: systemctl daemon-reload && systemctl enable --now {service.unit}")
