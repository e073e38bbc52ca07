"""The `lakehouse cdc start | status | stop` verbs (docs/cdc.md).

`lakehouse.cli` calls `add_parsers`; each handler takes the parsed args and returns an exit code.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from lakehouse.common.config import Settings


def add_parsers(sub: argparse._SubParsersAction, settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    """Adds `cdc` (with its own sub-verbs) to the top-level parser. `settings_of(args)` loads settings."""
    cdc = sub.add_parser("cdc", help="change data capture: the Debezium connector (start, status, stop)")
    csub = cdc.add_subparsers(dest="cdc_action", required=True)

    p = csub.add_parser("start", help="create the publication, register the Debezium connector (idempotent)",
                        description="Creates the publication (schemas ref, payments, labels; never the vault), "
                        "checks PostgreSQL, and registers or updates the connector through Kafka Connect's REST API.")
    p.add_argument("--wait", action="store_true",
                   help="wait until the connector and its task run and the slot streams (the snapshot is done)")
    p.add_argument("--timeout", type=float, help="seconds to wait (default services.start_timeout_s)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (the password redacted)")
    p.set_defaults(func=lambda args: cmd_start(settings_of(args), args.wait, args.timeout, args.json))

    p = csub.add_parser("status", help="the connector's and tasks' state, the slot and its retained WAL "
                                       "(exit 1 unless RUNNING)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: cmd_status(settings_of(args), args.json))

    p = csub.add_parser("stop", help="delete the connector (its slot and offsets stay, so start resumes)")
    p.add_argument("--drop-slot", action="store_true",
                   help="also reset the connector's offsets and drop the replication slot and the publication, "
                        "so that no WAL piles up (the next start takes a new snapshot)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: cmd_stop(settings_of(args), args.drop_slot, args.json))


def cmd_start(settings: Settings, wait: bool, timeout: float | None, as_json: bool) -> int:
    from lakehouse.cdc.connector import format_status, start

    result = start(settings, wait=wait, timeout_s=timeout)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    elif "status" in result:
        print(format_status(result["status"]))
    else:
        print(f"connector {result['connector']} {'registered' if result['created'] else 'updated'}; "
              f"`lakehouse cdc status` shows its state")
    return 0


def cmd_status(settings: Settings, as_json: bool) -> int:
    from lakehouse.cdc.connector import format_status, status

    doc = status(settings)
    print(json.dumps(doc, indent=2, default=str) if as_json else format_status(doc))
    return 0 if doc["running"] else 1


def cmd_stop(settings: Settings, drop_slot: bool, as_json: bool) -> int:
    from lakehouse.cdc.connector import stop

    report = stop(settings, drop_slot=drop_slot)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    elif not report["deleted"] and not drop_slot:
        print(f"connector {report['connector']} was not registered")
    return 0
