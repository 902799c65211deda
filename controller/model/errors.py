"""The one error type of bad descriptions.

Every problem names the path of the bad field in the user's own terms
(`MLSysOpsApp.components[0].restart_policy`) and what was expected, so a user fixing a
file never has to read a JSON-schema dump. One DescriptionError carries all problems of a
document: fixing them one run at a time is tedious.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. "MLSysOpsApp.components[0].restart_policy"
    expected: str  # e.g. "one of Always, OnFailure, Never"
    got: str | None = None  # a short rendering of the offending value, when there is one

    def __str__(self) -> str:
        got = f" (got {self.got})" if self.got is not None else ""
        return f"{self.path}: expected {self.expected}{got}"


class DescriptionError(ValueError):
    """A description that cannot be accepted. `.path` and `.expected` describe the first problem;
    `.problems` lists them all; `.source` names the file/document when known."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None) -> None:
        if not problems:
            raise ValueError("DescriptionError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        super().__init__(self._render())

    @classmethod
    def single(cls, path: str, expected: str, got: str | None = None) -> DescriptionError:
        return cls([Problem(path, expected, got)])

    @property
    def path(self) -> str:
        return self.problems[0].path

    @property
    def expected(self) -> str:
        return self.problems[0].expected

    def with_source(self, source: str) -> DescriptionError:
        return DescriptionError(self.problems, source)

    def _render(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return prefix + str(self.problems[0])
        return prefix + f"{len(self.problems)} problems:\n" + "\n".join(f"  {p}" for p in self.problems)


def describe_value(value: object) -> str:
    """A short, YAML-flavoured rendering of a bad value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
