"""File operations on a board, each a tiny program run through the raw REPL.

The helpers below are sent once per session (`Device.start`); every later operation is a call to
them, so what crosses the line is mostly file content. Content travels as text the board decodes
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
PROGRAM = 6144  # characters of encoded chunks per exec (a few chunks per round trip)
TMP_SUFFIX = ".tmp~"
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
def _mq(ns):
    for n in ns:
        try:
            print(n, _mh(n))
        except OSError:
            print(n, '-')
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


class Device:
    """A board in the raw REPL, seen as a small filesystem with hashes."""

    def __init__(self, repl: RawRepl, *, deflate: bool = True) -> None:
        self.repl = repl
        self._deflate = deflate
        self.info: BoardInfo | None = None

    def start(self) -> BoardInfo:
        self.repl.exec(HELPERS)
        raw = json.loads(self.repl.exec(PROBE).decode().strip().splitlines()[-1])
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

    def hashes(self, names: Iterable[str]) -> dict[str, str | None]:
        """SHA-256 hex of each file on the board (None: absent)."""
        names = list(names)
        if not names:
            return {}
        out = self.repl.exec(f"_mq({json.dumps(names)})", timeout=120).decode()
        got: dict[str, str | None] = {}
        for line in out.splitlines():
            name, _, digest = line.strip().rpartition(" ")
            if name:
                got[name] = None if digest == "-" else digest
        missing = set(names) - set(got)
        if missing:
            raise FarEdgeError(f"board did not report {sorted(missing)[:3]}")
        return got

    def makedirs(self, names: Iterable[str]) -> None:
        dirs = sorted({"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)})
        if dirs:
            self.repl.exec("\n".join(f"_mk({_quote(d)})" for d in dirs))

    def write(self, entry: FileEntry, progress: Progress | None = None) -> None:
        """Write, verify on the board, rename into place; DeviceError leaves the old file."""
        tmp = entry.name + TMP_SUFFIX
        lines = [f"_mo({_quote(tmp)})"]
        sizes = [0]
        for start in range(0, entry.size, CHUNK):
            part = entry.data[start : start + CHUNK]
            lines.append(self._chunk_call(part))
            sizes.append(len(part))
        lines.append(f"_mc({_quote(tmp)},{_quote(entry.name)},{_quote(entry.sha256)})")
        sizes.append(0)
        done = 0
        for program, covered in self._batches(lines, sizes):
            try:
                self.repl.exec(program, timeout=60)
            except DeviceError:
                self.repl.exec(f"_mr([{_quote(tmp)}])")
                raise
            done += covered
            if progress is not None:
                progress(entry, done)

    def remove(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            self.repl.exec(f"_mr({json.dumps(names)})")

    def _chunk_call(self, part: bytes) -> str:
        z = 0
        if self.info is not None and self.info.deflate:
            c = zlib.compressobj(9, zlib.DEFLATED, WBITS)
            packed = c.compress(part) + c.flush()
            if len(packed) < len(part):
                part, z = packed, 1
        text = base64.b64encode(part).decode() if self.info and self.info.base64 else part.hex()
        return f"_mw('{text}',{z})"

    @staticmethod
    def _batches(lines: list[str], sizes: list[int]) -> Iterator[tuple[str, int]]:
        batch: list[str] = []
        covered = length = 0
        for line, size in zip(lines, sizes, strict=True):
            if batch and length + len(line) > PROGRAM:
                yield "\n".join(batch), covered
                batch, covered, length = [], 0, 0
            batch.append(line)
            covered += size
            length += len(line) + 1
        if batch:
            yield "\n".join(batch), covered
