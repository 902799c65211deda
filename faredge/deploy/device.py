"""File operations on a board, each a tiny program run through the raw REPL.

The helpers below are sent once per session, with the probe (`Device.start`); every later
operation is a call to them, so what crosses the line is mostly file content, and `apply` packs
consecutive operations (small files whole, several per program) into programs of up to PROGRAM
characters: a round trip per program, not per file. Content travels as text the board decodes
in C: base64 when its `binascii` is native, hex otherwise (the WebAssembly port's binascii is a
Python module, hex goes through `bytes.fromhex`), each chunk deflated first when the board has
the `deflate` module and that makes it smaller (a 512-byte window, so inflating needs ~1 KB of
heap). A file is written to `<name>.tmp~`, its SHA-256 computed on the board and compared, then
renamed over the old one: a board that loses power mid-write keeps its old file.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from faredge.deploy.rawrepl import DeviceError, RawRepl
from faredge.deploy.release import MANIFEST, FileEntry
from faredge.errors import FarEdgeError

CHUNK = 2048  # file bytes per chunk (before deflate and encoding): bounded heap on the board
PROGRAM = 8192  # characters per program: two encoded chunks and the calls around them
TMP_SUFFIX = ".tmp~"
PRESENT = "present"  # hashes(): the file exists, its hash was not asked for
WBITS = 9  # deflate window 512 bytes: what the board allocates to inflate

HELPERS = """
import os, sys, binascii, hashlib
def _mh(p):
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(m[:n])
    return binascii.hexlify(h.digest()).decode()
def _mq(ns, es):
    for n in ns:
        try:
            print(n, _mh(n))
        except OSError:
            print(n, '-')
    for n in es:
        try:
            os.stat(n)
            print(n, '+')
        except OSError:
            print(n, '-')
_mf = None
def _mo(p):
    global _mf
    _mf = open(p, 'wb')
def _mw(s, z):
    b = _md(s)
    if z:
        import deflate, io
        b = deflate.DeflateIO(io.BytesIO(b), deflate.ZLIB).read()
    _mf.write(b)
def _mc(t, p, h):
    global _mf
    _mf.close()
    _mf = None
    if _mh(t) != h:
        os.remove(t)
        raise ValueError('sha256 mismatch: ' + p)
    try:
        os.rename(t, p)
    except OSError:
        os.remove(p)
        os.rename(t, p)
def _mr(ns):
    for n in ns:
        try:
            os.remove(n)
        except OSError:
            pass
def _mx(ns):
    global _mf
    if _mf is not None:
        _mf.close()
        _mf = None
    _mr(ns)
def _mk(d):
    try:
        os.mkdir(d)
    except OSError:
        pass
"""

PROBE = """
import json
try:
    import deflate
    _z = 1
except ImportError:
    _z = 0
_b64 = 0 if hasattr(binascii, '__file__') else 1
_md = binascii.a2b_base64 if _b64 else bytes.fromhex
def _mj(p):
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
_c = _mj('config.json')
print(json.dumps({'mpy': getattr(sys.implementation, '_mpy', None), 'b64': _b64, 'deflate': _z,
    'board': _c.get('board') if isinstance(_c, dict) else None,
    'id': _c.get('id') if isinstance(_c, dict) else None,
    'release': _mj('MANIFEST'), 'version': list(sys.implementation.version[:3]),
    'mem_free': __import__('gc').mem_free()}))
""".replace("MANIFEST", MANIFEST)


@dataclass(frozen=True)
class BoardInfo:
    mpy: int | None  # sys.implementation._mpy
    base64: bool  # native binascii: chunks go as base64, else hex
    deflate: bool
    board: str | None  # from the config.json on the board
    device_id: str | None
    release: Mapping[str, object] | None  # the manifest the last deploy left
    micropython: tuple[int, ...]
    mem_free: int

    @property
    def previous(self) -> frozenset[str]:
        files = (self.release or {}).get("files")
        return frozenset(files) if isinstance(files, dict) else frozenset()


Progress = Callable[[FileEntry, int], None]  # (file, bytes of it written so far)


def _quote(name: str) -> str:
    return json.dumps(name)  # a Python string literal too, for the names we allow


@dataclass(frozen=True)
class Write:
    """A file to temporary name, verify its SHA-256 on the board, rename over the old one."""

    entry: FileEntry


@dataclass(frozen=True)
class Remove:
    names: tuple[str, ...]  # absent ones are fine


@dataclass(frozen=True)
class MakeDirs:
    files: tuple[str, ...]  # the parents of these (absent ones made, outer first)


Op = Write | Remove | MakeDirs


@dataclass(frozen=True)
class _Line:
    """One line of a program, and the file bytes it puts on the board (for progress)."""

    code: str
    entry: FileEntry | None = None
    size: int = 0
    opens: str | None = None  # the temporary file this line opens
    closes: str | None = None  # ... and the one this line renames into place


class Device:
    """A board in the raw REPL, seen as a small filesystem with hashes."""

    def __init__(self, repl: RawRepl, *, deflate: bool = True) -> None:
        self.repl = repl
        self._deflate = deflate
        self.info: BoardInfo | None = None

    def start(self) -> BoardInfo:
        """Send the helpers and probe the board, in one program."""
        raw = json.loads(self.repl.exec(HELPERS + PROBE).decode().strip().splitlines()[-1])
        self.info = BoardInfo(
            mpy=raw["mpy"],
            base64=bool(raw["b64"]),
            deflate=bool(raw["deflate"]) and self._deflate,
            board=raw["board"],
            device_id=raw["id"],
            release=raw["release"] if isinstance(raw["release"], dict) else None,
            micropython=tuple(raw["version"]),
            mem_free=int(raw["mem_free"]),
        )
        return self.info

    def hashes(self, names: Iterable[str], present: Iterable[str] = ()) -> dict[str, str | None]:
        """SHA-256 hex of each of `names` on the board, PRESENT for each of `present` that
        exists (only whether it is there matters, so it is not read); None: absent."""
        names, present = list(names), list(present)
        if not names and not present:
            return {}
        out = self.repl.exec(f"_mq({json.dumps(names)},{json.dumps(present)})", timeout=120).decode()
        got: dict[str, str | None] = {}
        for line in out.splitlines():
            name, _, digest = line.strip().rpartition(" ")
            if name:
                got[name] = None if digest == "-" else PRESENT if digest == "+" else digest
        missing = set(names) - set(got)
        if missing:
            raise FarEdgeError(f"board did not report {sorted(missing)[:3]}")
        return got

    def apply(self, ops: Iterable[Op], progress: Progress | None = None) -> None:
        """Run `ops` in order, as few programs as fit in PROGRAM characters each. A program that
        fails (DeviceError) leaves no temporary file; the files it had not renamed yet keep
        their old content, and nothing after it runs."""
        lines = [line for op in ops for line in self._lines(op)]
        done: dict[str, int] = {}
        unfinished: list[str] = []  # temporary files opened and not yet renamed
        for batch in _batches(lines):
            unfinished += [line.opens for line in batch if line.opens is not None]
            try:
                self.repl.exec("\n".join(line.code for line in batch), timeout=60)
            except DeviceError:
                self.repl.exec(f"_mx({json.dumps(unfinished)})")
                raise
            closed = {line.closes for line in batch}
            unfinished = [t for t in unfinished if t not in closed]
            if progress is None:
                continue
            for line in batch:
                if line.entry is not None:
                    done[line.entry.name] = done.get(line.entry.name, 0) + line.size
            for entry in {line.entry.name: line.entry for line in batch if line.entry is not None}.values():
                progress(entry, done[entry.name])

    def _lines(self, op: Op) -> list[_Line]:
        if isinstance(op, Remove):
            return [_Line(f"_mr({json.dumps(list(op.names))})")] if op.names else []
        if isinstance(op, MakeDirs):
            dirs = {"/".join(n.split("/")[:i]) for n in op.files for i in range(1, n.count("/") + 1)}
            return [_Line(f"_mk({_quote(d)})") for d in sorted(dirs)]
        entry = op.entry
        tmp = entry.name + TMP_SUFFIX
        lines = [_Line(f"_mo({_quote(tmp)})", entry, opens=tmp)]
        for start in range(0, entry.size, CHUNK):
            part = entry.data[start : start + CHUNK]
            lines.append(_Line(self._chunk_call(part), entry, len(part)))
        lines.append(
            _Line(f"_mc({_quote(tmp)},{_quote(entry.name)},{_quote(entry.sha256)})", entry, closes=tmp)
        )
        return lines

    def _chunk_call(self, part: bytes) -> str:
        z = 0
        if self.info is not None and self.info.deflate:
            c = zlib.compressobj(9, zlib.DEFLATED, WBITS)
            packed = c.compress(part) + c.flush()
            if len(packed) < len(part):
                part, z = packed, 1
        text = base64.b64encode(part).decode() if self.info and self.info.base64 else part.hex()
        return f"_mw('{text}',{z})"


def _batches(lines: list[_Line]) -> Iterator[list[_Line]]:
    """Consecutive lines, cut before the one that would make a program longer than PROGRAM."""
    batch: list[_Line] = []
    length = 0
    for line in lines:
        if batch and length + len(line.code) > PROGRAM:
            yield batch
            batch, length = [], 0
        batch.append(line)
        length += len(line.code) + 1
    if batch:
        yield batch
