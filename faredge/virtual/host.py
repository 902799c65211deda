"""Running the WebAssembly MicroPython through `board_host.mjs` (Node.js).

One place knows how to start the interpreter: the node binary, the host script shipped next to
this module, and the repository's `node_modules` (the working directory Node resolves the npm
package from). `run_script` is the one-shot form used by the firmware's unit tests and the heap
measurement; `VirtualBoard` / `MqttDevice` keep a board running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HOST_SCRIPT = Path(__file__).with_name("board_host.mjs")
PACKAGE = "@micropython/micropython-webassembly-pyscript"
# Exit codes of board_host.mjs (see raw_repl.mjs): what the next interpreter should run.
EXIT_RESET = 3  # firmware reset: boot main.py
EXIT_RAW_REPL = 4  # mpremote interrupted the firmware: raw REPL
EXIT_RAW_RESET = 5  # soft reset inside the raw REPL: raw REPL again
COMPILE_AHEAD = ("--no-wasm-lazy-compilation", "--no-liftoff")  # see NodeHost.command


class HostUnavailable(RuntimeError):
    """Node.js or the MicroPython npm package is missing on this machine."""


@dataclass(frozen=True)
class NodeHost:
    node: str
    modules_root: Path  # directory holding node_modules/<PACKAGE>

    def command(self, flash: Path, *extra: str, compiled_ahead: bool = False) -> list[str]:
        """`compiled_ahead`: V8 compiles the whole interpreter with its optimising compiler
        before it runs (COMPILE_AHEAD), for a standby interpreter, which loads while nobody
        waits. Its baseline code (the default, quicker to start) runs the REPL and a boot
        several times slower: an interrupt took ~150 ms to reach the raw-REPL prompt (~45 ms
        compiled ahead), where a board answers in milliseconds."""
        flags = COMPILE_AHEAD if compiled_ahead else ()
        return [self.node, *flags, str(HOST_SCRIPT), "--root", str(flash), *extra]


def find_host(start: Path | None = None) -> NodeHost:
    """Locate node and the interpreter package (searching upwards from the repository)."""
    node = shutil.which(os.environ.get("MLSYSOPS_NODE", "node"))
    if node is None:
        raise HostUnavailable("node (Node.js >= 18) not found on PATH")
    here = (start or Path(__file__)).resolve()
    for d in [Path.cwd(), *here.parents]:
        if (d / "node_modules" / PACKAGE / "micropython.mjs").is_file():
            return NodeHost(node, d)
    raise HostUnavailable(f"npm package {PACKAGE} not installed (run `npm ci` in the repository)")


@dataclass(frozen=True)
class ScriptResult:
    returncode: int
    output: str


def run_script(
    flash: Path, script: str, *, timeout: float = 60.0, host: NodeHost | None = None, heap: int | None = None
) -> ScriptResult:
    """Run `script` in a fresh interpreter whose filesystem is `flash` and whose heap is fixed
    at `heap` bytes (None: the interpreter's own heap, grown on demand, for tests that churn more
    garbage in one call than a board's heap holds); it ends with _vboard.exit() (or when it
    returns without pending tasks)."""
    h = host or find_host()
    extra = [] if heap is None else ["--heap", str(heap)]
    with tempfile.NamedTemporaryFile("w", suffix=".py", prefix="mpy-script-") as f:
        f.write(script)
        f.flush()
        proc = subprocess.run(
            h.command(flash, "--exec", f.name, *extra),
            cwd=h.modules_root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    return ScriptResult(proc.returncode, proc.stdout + proc.stderr)
