"""`mlsysops api token ...`: bearer tokens of the REST API.

    mlsysops api token create --role operator --ttl 30d --name ci     # printed once
    mlsysops api token list
    mlsysops api token revoke ci

The token commands work on the API's token file directly (run them on the API's host, as the
user that may write it); the daemon notices the change without a restart.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from controller.api.server import DEFAULT_TOKENS
from controller.api.tokens import ROLES, TokenError, TokenStore
from mlsysops.output import emit, output_option, table

F = TypeVar("F", bound=Callable[..., Any])
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str | None) -> float | None:
    """'90s', '15m', '12h', '30d' or plain seconds → seconds."""
    if text is None:
        return None
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not found or float(found.group(1)) <= 0:
        raise click.BadParameter(
            f"{text!r}: expected a positive duration like 3600, 90m, 12h or 30d", param_hint="--ttl"
        )
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def _mapped(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TokenError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        except PermissionError as exc:
            raise click.ClickException(f"{exc.filename}: permission denied (run as the API's user)") from None

    return wrapper  # type: ignore[return-value]


def _when(ts: float | None) -> str:
    return "never" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group()
def api() -> None:
    """The northbound REST API's tokens (the API itself is mlsysops-api)."""


@api.group()
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("MLSYSOPS_API_TOKENS_FILE", str(DEFAULT_TOKENS)),
    show_default="$MLSYSOPS_API_TOKENS_FILE or /var/lib/mlsysops/api/tokens.json",
)
@click.pass_context
def token(ctx: click.Context, tokens_file: Path) -> None:
    """Bearer tokens (stored hashed, file mode 0600)."""
    ctx.obj = TokenStore(tokens_file)


@token.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--ttl", default=None, help="Lifetime (3600, 90m, 12h, 30d); default: no expiry.")
@click.option("--name", default="", help="A name to list and revoke it by.")
@click.pass_obj
@_mapped
def token_create(store: TokenStore, role: str, ttl: str | None, name: str) -> None:
    """Create a token and print it (once: only its hash is kept)."""
    secret, record = store.create(role, name, parse_ttl(ttl))
    click.echo(secret)
    click.echo(
        f"token {record.name} (id {record.id}, role {record.role}, expires {_when(record.expires)}); "
        "it is shown only now",
        err=True,
    )


@token.command("list")
@output_option
@click.pass_obj
@_mapped
def token_list(store: TokenStore, output_format: str) -> None:
    """Tokens with role, expiry and state (never the token itself)."""
    now = datetime.now(UTC).timestamp()
    rows = [
        {**r.public(), "state": "revoked" if r.revoked else "valid" if r.usable(now) else "expired"}
        for r in store.records()
    ]
    emit(
        rows,
        output_format,
        lambda rs: table(
            [
                (r["id"], r["name"], r["role"], _when(r["created"]), _when(r["expires"]), r["state"])
                for r in rs
            ],
            ["id", "name", "role", "created", "expires", "state"],
        ),
    )


@token.command("revoke")
@click.argument("token_id", metavar="ID_OR_NAME")
@click.pass_obj
@_mapped
def token_revoke(store: TokenStore, token_id: str) -> None:
    """Refuse a token from now on (it stays listed as revoked)."""
    record = store.revoke(token_id)
    click.echo(f"token {record.name} (id {record.id}) revoked")
