"""`python -m controller.api.openapi [PATH]`: write the OpenAPI document of the routes.

docs/openapi.json is this output, committed; a test regenerates it and fails when the routes
changed without it (run this module to refresh it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from controller.api.app import create_app
from controller.api.context import ApiContext
from controller.api.tokens import TokenStore


def document() -> dict[str, Any]:
    """The document; the context's contents do not change it (nothing is opened)."""
    ctx = ApiContext(store=None, tokens=TokenStore(Path("/nonexistent")))  # type: ignore[arg-type]
    return create_app(ctx).openapi()


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path("docs/openapi.json")
    target.write_text(render())
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
