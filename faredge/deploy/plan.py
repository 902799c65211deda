"""What a deploy does to a board, decided from hashes alone (no I/O, tested as such).

Write what differs, skip what matches, delete what the previous release installed and this one
does not (the board's own files, its state and certificates, are never touched), and a module's
other form (`app.py` next to a new `app.mpy` would win the import). The device config goes last:
a board whose files are half written keeps its old identity and does not boot as the new one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from faredge.deploy.release import CONFIG, MARKER, FileEntry, Release


@dataclass(frozen=True)
class Plan:
    write: tuple[FileEntry, ...]  # in order; the config, then the release marker, last
    skip: tuple[str, ...]
    delete: tuple[str, ...]

    @property
    def bytes_to_write(self) -> int:
        return sum(f.size for f in self.write)

    @property
    def changes(self) -> bool:
        return bool(self.write or self.delete)


def shadows(name: str) -> str | None:
    """The other form of a module: x.py for x.mpy and the other way round."""
    p = PurePosixPath(name)
    other = {".py": ".mpy", ".mpy": ".py"}.get(p.suffix)
    return p.with_suffix(other).as_posix() if other else None


def candidates(release: Release, previous: frozenset[str]) -> list[str]:
    """Every name whose hash (or presence) the plan needs from the board."""
    names = set(release.names) | previous | {CONFIG, MARKER}
    names |= {s for n in release.names if (s := shadows(n))}
    return sorted(names)


def make_plan(
    release: Release,
    on_board: Mapping[str, str | None],
    previous: frozenset[str],
    config: FileEntry | None = None,
    marker: FileEntry | None = None,
) -> Plan:
    """`on_board`: name → SHA-256 hex (None: absent) for `candidates(...)`; `previous`: names
    the last deploy installed (its manifest on the board)."""
    write = [f for f in release.files if on_board.get(f.name) != f.sha256]
    skip = [f.name for f in release.files if on_board.get(f.name) == f.sha256]
    gone = (previous - release.names) | {s for n in release.names if (s := shadows(n))}
    gone -= release.names | {CONFIG, MARKER}
    delete = sorted(n for n in gone if on_board.get(n) is not None)
    if config is not None:
        if on_board.get(CONFIG) == config.sha256:
            skip.append(CONFIG)
        else:
            write.append(config)
    if marker is not None and (write or delete or on_board.get(MARKER) != marker.sha256):
        write.append(marker)
    return Plan(tuple(write), tuple(skip), tuple(delete))
