"""The OLTP verbs of the `lakehouse` command line: `oltp …` and `simulate`.

`lakehouse.cli` calls `add_parsers`; each handler takes the parsed args and returns an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from lakehouse.common.config import Settings


def add_parsers(sub: argparse._SubParsersAction, settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    """Adds `oltp` (with its own sub-verbs) to the top-level parser. `settings_of(args)` loads settings."""
    oltp = sub.add_parser("oltp", help="the OLTP database: migrations, failover, import")
    osub = oltp.add_subparsers(dest="oltp_action", required=True)

    p = osub.add_parser("migrate", help="apply the versioned schema migrations (idempotent)")
    p.set_defaults(func=lambda args: cmd_migrate(settings_of(args)))


def cmd_migrate(settings: Settings) -> int:
    from lakehouse.oltp.migrate import migrate

    applied = migrate(settings)
    print(f"{len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else " (up to date)"))
    return 0
