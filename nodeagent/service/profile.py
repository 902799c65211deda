"""A profile as the engine takes it apart: one section per mechanism, checked for shape only.

What a section means is its mechanism's business (validate()); here only which mechanism owns
which field, and a cheap deep copy of the committed profile.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from nodeagent.errors import InvalidSpec

#: Profile fields owned by the mechanisms of the same name; anything else goes in `extensions`.
BUILTIN_SECTIONS = ("cpufreq", "cgroups", "network")
EXTENSIONS = "extensions"


def split_profile(profile: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(mechanism, field path, section) for every section the profile sets."""
    sections: list[tuple[str, str, Mapping[str, Any]]] = []
    for name, section in profile.items():
        if name == EXTENSIONS:
            if not isinstance(section, Mapping):
                raise InvalidSpec(EXTENSIONS, "must be a map of plugin name to settings")
            for ext, ext_section in section.items():
                field = f"{EXTENSIONS}.{ext}"
                if ext in BUILTIN_SECTIONS:
                    raise InvalidSpec(field, f"{ext!r} is a built-in section: use the top-level field")
                sections.append((ext, field, ext_section))
        elif name in BUILTIN_SECTIONS:
            sections.append((name, name, section))
        else:
            known = ", ".join((*BUILTIN_SECTIONS, EXTENSIONS))
            raise InvalidSpec(name, f"unknown profile section (known: {known})")
    for _, field, section in sections:
        if not isinstance(section, Mapping):
            raise InvalidSpec(field, "must be an object")
    return sections


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (the committed profile, which nobody may mutate afterwards).

    Profiles are dicts, lists and scalars: copying those directly costs a fraction of
    copy.deepcopy's memo bookkeeping, on every apply that changes the profile. Anything else
    falls back to copy.deepcopy.
    """
    if isinstance(value, Mapping):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return copy.deepcopy(value)
