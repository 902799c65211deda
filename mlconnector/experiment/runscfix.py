"""A stand-in for the runsc binary the agent's wrapper execs (agent config `runtimes.runsc`),
working around a wrapper bug: the wrapper decides `--network=none` from the bundle's config.json,
but the runc shim passes `--bundle` only to `create`; gVisor sets up the network at `start`,
which therefore always gets `--network=none`, so a workload joining a named netns has loopback
only under runsc. This stand-in records at `create` whether the container has a netns path, and
drops `--network=none` from that container's `start`. Everything else goes to runsc unchanged
(still --platform=ptrace from the wrapper). The proper fix belongs in
nodeagent/mechanisms/runtime_handlers.runsc_wrapper."""

from __future__ import annotations

from pathlib import Path

SCRIPT = """#!/bin/sh
# mlconnector.experiment: runsc with the network decision of `create` carried to `start`.
marks={marks}
bundle=""; prev=""; cmd=""; last=""
for arg in "$@"; do
  case "$prev" in --bundle|-b) bundle="$arg" ;; esac
  case "$arg" in --bundle=*) bundle="${{arg#--bundle=}}" ;; create|start) [ -z "$cmd" ] && cmd="$arg" ;; esac
  prev="$arg"; last="$arg"
done
mkdir -p "$marks"
if [ "$cmd" = create ] && [ -n "$bundle" ] && \\
   tr -d ' \\n\\t' < "$bundle/config.json" | grep -q '"type":"network","path":"[^"]'; then
  : > "$marks/$last"
fi
if [ -e "$marks/$last" ]; then
  for arg in "$@"; do
    shift
    [ "$arg" = --network=none ] || set -- "$@" "$arg"
  done
  exec {runsc} --network=host "$@"
fi
exec {runsc} "$@"
"""


def write(path: Path, runsc: str = "/usr/bin/runsc") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT.format(marks=str(path.parent / "runsc-netns"), runsc=runsc), encoding="ascii")
    path.chmod(0o755)
    return path
