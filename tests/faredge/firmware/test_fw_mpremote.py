"""mpremote against the virtual board's pseudo-terminal: the board drops from the firmware into
the raw REPL when mpremote interrupts it, takes files (`cp x :`, `cp -r`), keeps deletions
across resets, runs code (also from a host directory with `mount`), maps file errors, and
boots the firmware again on `reset`, as a real board does."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faredge.testing import run_mpremote
from faredge.virtual import VirtualBoard
from faredge.virtual.firmware import compile_module
from faredge.virtual.host import NodeHost

BIRTH = 1


@pytest.fixture
def board(node_host: NodeHost, tmp_path: Path) -> Iterator[VirtualBoard]:
    pytest.importorskip("mpremote", reason="mpremote (PyPI) not installed")
    with VirtualBoard({"id": "mp-1", "interval_ms": 300}, tmp_path / "board", host=node_host) as b:
        assert b.wait_console("boot 1")
        yield b


def test_deploy_mpy_run_it_and_reset_into_the_firmware(
    board: VirtualBoard, tmp_path: Path, make_peer: Callable[..., Any]
) -> None:
    src = tmp_path / "plugin.py"
    src.write_text("def answer():\n    return 6 * 7\n")
    mpy = compile_module(src, tmp_path / "plugin.mpy").path
    cp = run_mpremote(board.port, "fs", "cp", str(mpy), ":plugin.mpy")
    assert cp.returncode == 0, cp.stderr
    run = run_mpremote(board.port, "exec", "import plugin; print(plugin.answer())")
    assert run.returncode == 0 and run.stdout.strip() == "42", run.stderr
    assert (board.flash / "plugin.mpy").read_bytes() == mpy.read_bytes()  # written back to flash
    ls = run_mpremote(board.port, "fs", "ls")
    assert "plugin.mpy" in ls.stdout and "dev/" not in ls.stdout and "proc/" not in ls.stdout
    assert run_mpremote(board.port, "reset").returncode == 0
    birth = make_peer(board.port).wait_type(BIRTH)
    assert birth["boot"] == 2 and birth["id"] == "mp-1"
    assert board.boots == 2  # REPL sessions are not boots


def test_file_errors_map_to_host_errors(board: VirtualBoard) -> None:
    cat = run_mpremote(board.port, "fs", "cat", ":missing.txt")
    assert cat.returncode == 1 and "No such file or directory" in cat.stderr
    mk = run_mpremote(board.port, "fs", "mkdir", ":hal")
    assert mk.returncode == 1 and "File exists" in mk.stderr


def test_soft_reset_in_raw_repl_keeps_the_board_in_the_repl(board: VirtualBoard) -> None:
    res = run_mpremote(board.port, "soft-reset", "exec", "print('still here')")
    assert res.returncode == 0 and res.stdout.strip() == "still here", res.stderr
    assert board.console.count("boot ") == 1  # the firmware did not run again


def test_cp_to_the_root_and_recursive_copy(board: VirtualBoard, tmp_path: Path) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.txt"
    a.write_text("A = 1\n")
    b.write_bytes(bytes(range(256)))
    assert run_mpremote(board.port, "fs", "cp", str(a), str(b), ":").returncode == 0  # stat("") is the cwd
    tree = tmp_path / "pkg"
    (tree / "sub").mkdir(parents=True)
    (tree / "__init__.py").write_text("")
    (tree / "sub" / "leaf.py").write_text("LEAF = 'deep'\n")
    cp = run_mpremote(board.port, "fs", "cp", "-r", str(tree), ":")
    assert cp.returncode == 0, cp.stderr
    run = run_mpremote(board.port, "exec", "from pkg.sub import leaf; import a; print(leaf.LEAF, a.A)")
    assert run.stdout.strip() == "deep 1", run.stderr
    assert (board.flash / "b.txt").read_bytes() == bytes(range(256))
    assert (board.flash / "pkg" / "sub" / "leaf.py").read_text() == "LEAF = 'deep'\n"
    ls = run_mpremote(board.port, "fs", "ls", ":pkg/missing")  # an error inside ilistdir is mapped
    assert ls.returncode == 1 and "No such file" in ls.stderr


def test_deletions_persist_across_reset(board: VirtualBoard, tmp_path: Path) -> None:
    doomed = tmp_path / "doomed.py"
    doomed.write_text("X = 1\n")
    assert run_mpremote(board.port, "fs", "cp", str(doomed), ":doomed.py").returncode == 0
    assert (board.flash / "doomed.py").exists()
    assert run_mpremote(board.port, "fs", "rm", ":doomed.py").returncode == 0
    assert not (board.flash / "doomed.py").exists()  # removed from the flash, not only the RAM copy
    assert run_mpremote(board.port, "reset").returncode == 0
    assert board.wait_console("boot 2")
    ls = run_mpremote(board.port, "fs", "ls")
    assert "doomed.py" not in ls.stdout and "main.py" in ls.stdout


def test_mount_runs_host_code_and_leaves_the_board_usable(board: VirtualBoard, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "hello.py").write_text("print('hello from the host', 6 * 7)\n")
    res = run_mpremote(board.port, "mount", str(local), "exec", "import hello")
    assert res.returncode == 0 and "hello from the host 42" in res.stdout, res.stderr
    after = run_mpremote(board.port, "exec", "print('still responsive')")
    assert after.returncode == 0 and after.stdout.strip() == "still responsive", after.stderr
