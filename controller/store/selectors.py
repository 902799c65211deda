"""Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) as the Kubernetes API parses them.

Pure: `parse` turns the text into requirements (ValueError naming the bad term), `matches`
checks an object's labels. The embedded store filters `list` with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_CMP = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # in | notin | exists | !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # notin: a missing label matches too


def _terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t for t in terms if t.strip()]


def parse(text: str) -> tuple[Requirement, ...]:
    out: list[Requirement] = []
    for term in _terms(text):
        cmp = _CMP.match(term)
        if cmp:
            key, op, value = cmp.groups()
            out.append(Requirement(key, "notin" if op == "!=" else "in", frozenset([value])))
            continue
        found = _SET.match(term)
        if not found or (found.group(1) and found.group(3)):
            raise ValueError(f"labelSelector: cannot parse {term.strip()!r} "
                             "(expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key)")
        negated, key, op, values = found.groups()
        if op:
            out.append(Requirement(key, op, frozenset(v.strip() for v in values.split(",") if v.strip())))
        else:
            out.append(Requirement(key, "!exists" if negated else "exists"))
    return tuple(out)


def matches(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)
