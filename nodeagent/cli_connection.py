"""How `mlsysops node` reaches its agent and fails: one client per verb, one exit code per error kind.

0 ok · 1 agent-side failure · 2 bad input (file, flag, or INVALID_ARGUMENT from the agent)
3 agent unreachable or too slow · 4 not possible on this node · 5 refused (auth)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
from google.protobuf import json_format
from google.protobuf.message import Message

from mlsysops.nodeapi import (
    Busy,
    NodeAgentClient,
    NodeApiError,
    NotPossible,
    Refused,
    Rejected,
    TargetError,
    TlsFiles,
    Unreachable,
)
from mlsysops.output import emit

# ------------------------------------------------------------------------------- errors


class CliError(click.ClickException):
    """A failure with its exit code (see the module docstring)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a ClassVar; per error here


#: The exit code of each kind of node-API failure; the message is the error's own.
EXIT_CODES: dict[type[NodeApiError], int] = {
    TargetError: 2,
    Rejected: 2,
    Unreachable: 3,
    Busy: 3,
    NotPossible: 4,
    Refused: 5,
}


def cli_error(exc: NodeApiError) -> CliError:
    return CliError(str(exc), EXIT_CODES.get(type(exc), 1))


# ------------------------------------------------------------------------------- connection


@dataclass(frozen=True)
class Connection:
    """Where the agent is; each verb opens one client for its calls and closes it after."""

    target: str
    tls: TlsFiles | None
    timeout: float

    @contextmanager
    def client(self) -> Iterator[NodeAgentClient]:
        """A client closed afterwards; node-API errors become CliError (message, exit code) here."""
        try:
            with NodeAgentClient(self.target, self.tls, self.timeout) as client:
                yield client
        except NodeApiError as exc:
            raise cli_error(exc) from exc


pass_connection = click.make_pass_decorator(Connection)


def show_message(message: Message, output_format: str, render_table: Callable[[Any], str]) -> None:
    """Emit a response: its proto JSON mapping for json/yaml, render_table(message) otherwise."""
    emit(to_dict(message), output_format, lambda _: render_table(message))


def to_dict(message: Message) -> dict[str, Any]:
    """The proto JSON mapping with proto field names: the same shape as a profile file."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
