"""Flashing a board over its REPL line: probe → build → plan → write → delete → config → boot.

The order is what keeps a board usable whatever happens: files go to temporary names and are
renamed only once their hash matched on the board; the manifest first lists the old and the new
files (so an interrupted deploy's files are still known to the next one and cleaned up), then
only the new; the device config (identity, credentials) is written last; then the board is
soft-rebooted and we wait for its birth (a BIRTH frame on the line, or the firmware's console
line) carrying the new version. A digest of the release (`.mlsysops-release`) goes last; our
firmware reports it in its birth, so a redeploy of the same release is recognised by asking the
running firmware (a SYNC frame) without interrupting it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from faredge.deploy.buildcache import BuildCache, default_root
from faredge.deploy.channel import ByteChannel, Reader
from faredge.deploy.device import TMP_SUFFIX, BoardInfo, Device, MakeDirs, Op, Remove, Write
from faredge.deploy.plan import Plan, candidates, make_plan
from faredge.deploy.rawrepl import SOFT_REBOOT, RawRepl, Timeouts
from faredge.deploy.release import (
    CONFIG,
    MANIFEST,
    MARKER,
    FileEntry,
    Release,
    Target,
    build,
    check_app,
    mpy_version,
    release_digest,
)
from faredge.errors import FarEdgeError, Invalid
from faredge.protocol.frames import Frame, FrameType, StreamDecoder
from faredge.protocol.link import Received, SerialLink

# A board with less free heap than this after the interrupt (the firmware's objects still
# referenced) is soft-reset first: a program of two chunks, decoding and inflating them need ~20 KB.
SOFT_RESET_BELOW = 48 * 1024


class Progress(Protocol):
    """What a deploy reports as it goes (the CLI draws bars; tests record)."""

    def planned(self, plan: Plan) -> None: ...
    def file(self, entry: FileEntry, written: int) -> None: ...


class NoProgress:
    def planned(self, plan: Plan) -> None:
        pass

    def file(self, entry: FileEntry, written: int) -> None:
        pass


@dataclass(frozen=True)
class FlashOptions:
    app_dir: Path
    config: Mapping[str, Any] | None = None  # the device config to write last (validated)
    version: str | None = None  # default: the app's FW_VERSION
    compiled: bool = True  # mpy-cross the modules for the board's .mpy version
    deflate: bool = True
    paste: bool = True  # raw-paste when the board supports it
    boot: bool = True  # soft-reboot into the firmware and wait for its birth
    birth_timeout: float = 20.0
    ask_running: bool = True  # first ask the running firmware which release it runs
    ask_timeout: float = 1.0
    cache_dir: Path | None = field(default_factory=default_root)  # build results (None: keep none)


@dataclass
class FlashReport:
    release: Release
    plan: Plan
    board: BoardInfo | None  # None: the running firmware said it runs this release
    birth: dict[str, Any] | None = None
    raw_paste: bool | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.release.version,
            "written": [f.name for f in self.plan.write],
            "skipped": list(self.plan.skip),
            "deleted": list(self.plan.delete),
            "bytes": self.plan.bytes_to_write,
            "raw_paste": self.raw_paste,
            "birth": self.birth,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def config_entry(config: Mapping[str, Any] | None) -> FileEntry | None:
    if config is None:
        return None
    return FileEntry(CONFIG, json.dumps(dict(config), separators=(",", ":")).encode())


def manifest_entry(version: str, files: Mapping[str, str]) -> FileEntry:
    body = {"version": version, "files": dict(sorted(files.items()))}
    return FileEntry(MANIFEST, json.dumps(body, separators=(",", ":")).encode())


def flash(
    channel: ByteChannel,
    options: FlashOptions,
    progress: Progress | None = None,
    *,
    timeouts: Timeouts | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FlashReport:
    """Deploy `options.app_dir` to the board on `channel` (already open)."""
    progress = progress or NoProgress()
    cache = BuildCache(options.cache_dir)
    t0 = clock()
    reader = Reader(channel, clock)
    cfg = config_entry(options.config)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The running firmware is asked (a SYNC frame, which changes nothing on the board) while
        # the app is checked; the board is interrupted only once the app passed.
        checked = pool.submit(check_app, options.app_dir, cache)
        ask = options.boot and options.ask_running
        running = running_birth(reader, options.ask_timeout, clock) if ask else None
        checked.result()
        guess = _running_target(running, options)
        # Built for the target the running firmware reported, while the board is interrupted
        # and probed; the probe's target is the one that counts (rebuilt if it differs).
        early = pool.submit(_build, options, guess, cache) if guess is not None else None
        if early is not None and running is not None and running.get("rel"):
            unchanged = _unchanged(running, early.result(), cfg)
            if unchanged is not None:
                unchanged.seconds = {"total": clock() - t0}
                return unchanged
        repl = RawRepl(reader, timeouts, paste=options.paste)
        repl.enter()
        device = Device(repl, deflate=options.deflate)
        info = device.start()
        if info.mem_free < SOFT_RESET_BELOW:
            repl.soft_reset()  # the interrupted firmware's objects leave the heap
            info = device.start()
        t_probe = clock()
        target = Target(mpy_version(info.mpy), (options.config or {}).get("board") or info.board)
        try:
            release = (
                early.result() if early is not None and guess == target else _build(options, target, cache)
            )
        except Invalid:
            repl.boot()  # the board runs what it ran before
            raise
    previous = info.previous
    names = candidates(release, previous)
    hashed = release.names | {CONFIG, MARKER}  # the rest only has to be deleted if present
    on_board = device.hashes([n for n in names if n in hashed], [n for n in names if n not in hashed])
    marker = FileEntry(MARKER, release_digest(release, cfg).encode())
    plan = make_plan(release, on_board, previous, cfg, marker)
    progress.planned(plan)
    t_plan = clock()
    if plan.changes:  # also when only the marker is missing: a deploy was cut off
        _apply(device, plan, release, info, progress)
    t_write = clock()
    report = FlashReport(release, plan, info, raw_paste=repl.paste)
    if options.boot:
        repl.boot()
        report.birth = wait_birth(reader, release.version, options.birth_timeout, clock)
    else:
        repl.leave()
    t_end = clock()
    report.seconds = {
        "probe": t_probe - t0,
        "plan": t_plan - t_probe,
        "write": t_write - t_plan,
        "boot": t_end - t_write,
        "total": t_end - t0,
    }
    return report


def _build(options: FlashOptions, target: Target, cache: BuildCache) -> Release:
    return build(options.app_dir, target, version=options.version, compiled=options.compiled, cache=cache)


def _apply(device: Device, plan: Plan, release: Release, info: BoardInfo, progress: Progress) -> None:
    """The order that keeps the board bootable (see the module docstring), as few programs as
    fit: the board runs them in this order and stops at the first failure."""
    old = dict((info.release or {}).get("files") or {})  # type: ignore[call-overload]
    pending = {**old, **{f.name: f.sha256 for f in release.files}}
    last = (CONFIG, MARKER)
    ops: list[Op] = [
        Remove((MARKER,)),  # no marker while the release is incomplete
        # what a deploy cut off mid-file left (its names are in the manifest it wrote first)
        Remove(tuple(sorted(n + TMP_SUFFIX for n in info.previous | release.names))),
        Write(manifest_entry(release.version, pending)),
        MakeDirs(tuple(f.name for f in plan.write)),
        *(Write(entry) for entry in plan.write if entry.name not in last),
        Remove(plan.delete),
        Write(manifest_entry(release.version, {f.name: f.sha256 for f in release.files})),
        *(Write(entry) for name in last for entry in plan.write if entry.name == name),
    ]
    device.apply(ops, progress.file)


def _running_target(birth: Mapping[str, Any] | None, options: FlashOptions) -> Target | None:
    """The target the running firmware's birth names (its .mpy version and board), if any."""
    if not birth or not isinstance(birth.get("mpy"), int):
        return None
    board = (options.config or {}).get("board") or birth.get("board")
    return Target(mpy_version(birth["mpy"] or None), board if isinstance(board, str) else None)


def _unchanged(birth: Mapping[str, Any], release: Release, cfg: FileEntry | None) -> FlashReport | None:
    """A report with nothing to do when the running firmware runs this release (its birth
    carries the release digest), else None (then the REPL path decides per file)."""
    if birth.get("rel") != release_digest(release, cfg) or birth.get("fw") != release.version:
        return None
    skipped = tuple(sorted(release.names | ({CONFIG} if cfg else set())))
    return FlashReport(release, Plan((), skipped, ()), None, birth={**birth, "source": "running"})


def running_birth(reader: Reader, timeout: float, clock: Callable[[], float]) -> dict[str, Any] | None:
    """The birth our firmware sends when a SYNC frame opens a session on its serial line (the
    frames are acknowledged, so it does not retransmit); None when nothing answers in time (a
    board whose line is only its REPL, or that runs something else)."""
    link = SerialLink(clock)
    link.sync()
    reader.write(link.take_output())
    deadline = clock() + timeout
    while clock() < deadline:
        data = reader.available().data
        items = link.feed(data) if data else []
        out = link.take_output()
        if out:
            reader.write(out)
        for item in items:
            if isinstance(item, Received) and item.kind == "birth":
                try:
                    birth = json.loads(item.payload)
                except ValueError:
                    return None
                return birth if isinstance(birth, dict) else None
    return None


def wait_birth(
    reader: Reader, version: str, timeout: float, clock: Callable[[], float] = time.monotonic
) -> dict[str, Any]:
    """The board's birth with `version`: a BIRTH frame on the line (serial transport) or the
    firmware's console line `mlsysops fw <version> <id> boot <n>` (boards whose REPL is a
    separate port). A birth with another version is an error: the new code did not start."""
    decoder = StreamDecoder()
    text = b""
    console = f"mlsysops fw {version} ".encode()
    deadline = clock() + timeout
    while clock() < deadline:
        data = reader.available().data
        text = (text + data)[-4096:]
        reboot = text.rfind(SOFT_REBOOT, max(0, len(text) - len(data) - len(SOFT_REBOOT) + 1))
        if reboot >= 0:
            # What the REPL printed before the reboot (its banner, this line) has no frame
            # delimiter after it: fed to the decoder it would swallow the first frame, and the
            # birth would only come with the firmware's retransmission. Frames start after it.
            decoder = StreamDecoder()
            data = text[reboot + len(SOFT_REBOOT) :]
        if console in text:
            rest = text[text.index(console) + len(console) :].split(b"\n")[0].decode(errors="replace")
            if "\n" in text[text.index(console) :].decode(errors="replace"):
                words = rest.split()
                return {"fw": version, "id": words[0] if words else None, "source": "console"}
        for item in decoder.feed(data):
            if isinstance(item, Frame) and item.type is FrameType.BIRTH:
                try:
                    birth = json.loads(item.payload)
                except ValueError:
                    continue
                if birth.get("fw") != version:
                    raise FarEdgeError(f"the board booted version {birth.get('fw')!r}, not {version!r}")
                return {**birth, "source": "frame"}
    raise FarEdgeError(f"no birth with version {version!r} within {timeout:g}s after the reboot")
