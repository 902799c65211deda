"""Profile files: the YAML form of the API's `Profile`, read with errors that name the field.

protobuf's own parse errors lack list indices (`cgroups.groups.cpu_quota_us`); `load_profile`
walks the document first so the message says `cgroups.groups[1].cpu_quota_us: not an integer`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import yaml
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb


class ProfileError(ValueError):
    """The profile file cannot be used; the message names the file and the field."""


def load_profile(path: Path) -> pb.Profile:
    """Read a YAML profile (the proto JSON mapping of Profile); errors name the file and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path} is not a text file ({exc.reason})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ProfileError(f"{path} is not valid YAML{line}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ProfileError(f"{path}: a profile is a YAML mapping (cpufreq, cgroups, network), not {found}")
    try:
        return json_format.ParseDict(data, pb.Profile())
    except json_format.ParseError as exc:
        descriptor = cast(Descriptor, pb.Profile.DESCRIPTOR)  # the stubs also allow upb's twin class
        field, reason = locate_parse_error(data, descriptor, "") or ("", _clean(str(exc)))
        raise ProfileError(f"{path}: {field or 'profile'}: {reason}") from exc


def locate_parse_error(data: Any, descriptor: Descriptor, path: str) -> tuple[str, str] | None:
    """The path (e.g. `cgroups.groups[1].cpu_quota_us`) and reason of the first field of data
    that the proto JSON mapping rejects; protobuf's own message lacks the list indices."""
    if not isinstance(data, dict):
        return path, f"must be a mapping, not {type(data).__name__}"
    known = {f.name: f for f in descriptor.fields} | {f.json_name: f for f in descriptor.fields}
    for key, value in data.items():
        here = f"{path}.{key}" if path else str(key)
        field = known.get(key)
        if field is None:
            names = ", ".join(f.name for f in descriptor.fields)
            return here, f"unknown field (known: {names})"
        problem = _check_field(field, value, here)
        if problem is not None:
            return problem
    return _parse_alone(data, descriptor, path)  # e.g. two members of a oneof


def _check_field(field: FieldDescriptor, value: Any, here: str) -> tuple[str, str] | None:
    nested: Descriptor | None = field.message_type
    if (
        nested is None
        or nested.GetOptions().map_entry
        or nested.file.package == "google.protobuf"
        or value is None
    ):  # scalars, enums, maps, Struct: protobuf judges
        return _parse_alone({field.name: value}, cast(Descriptor, field.containing_type), here)
    if field.is_repeated:
        if not isinstance(value, list):
            return here, f"must be a list, not {type(value).__name__}"
        for i, item in enumerate(value):
            problem = locate_parse_error(item, nested, f"{here}[{i}]")
            if problem is not None:
                return problem
        return None
    return locate_parse_error(value, nested, here)


def _parse_alone(data: dict[str, Any], descriptor: Descriptor, here: str) -> tuple[str, str] | None:
    try:
        json_format.ParseDict(data, message_factory.GetMessageClass(descriptor)())
    except json_format.ParseError as exc:
        return here, _clean(str(exc))
    return None


def _clean(message: str) -> str:
    """protobuf's reason without its nesting prefixes and the index-less location."""
    message = re.sub(r"Failed to parse \w+ field: ", "", message)
    message = re.sub(r' at "?[A-Z][\w.\[\]]*"?(?=\.*$|\n)', "", message)
    message = re.sub(r"invalid literal for int\(\) with base 10: ", "not an integer: ", message)
    return message.split("\n")[0].rstrip(". ") or "invalid value"
