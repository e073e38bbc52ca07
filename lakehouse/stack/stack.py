"""`lakehouse stack up | down | status`: the local services as one unit."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from lakehouse.common.config import Settings
from lakehouse.common.connections import PG_REPLICA_NODE, pg_replicated, secrets_dir
from lakehouse.stack.process import ServiceError, port_in_use
from lakehouse.stack.services import Service, all_services


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _env_var(key: str) -> str:
    return "LAKEHOUSE__" + "__".join(part.upper() for part in key.split("."))


def check_ports(settings: Settings, services: list[Service]) -> None:
    """Fails before anything starts when a port of a stopped service is taken by another process."""
    taken = [(svc, key, port) for svc in services if not svc.running()
             for key, port in svc.ports().items() if port_in_use(settings.services.host, port)]
    if taken:
        lines = [f"port {port} ({key}) for {svc.name} is already in use by another process; free it or choose "
                 f"another port with {_env_var(key)}=<port>" for svc, key, port in taken]
        raise ServiceError("\n".join(lines))


def up(settings: Settings, only: list[str] | None = None, with_replica: bool = False) -> list[dict[str, Any]]:
    """Starts every stopped service and waits until all are healthy. Idempotent: a healthy running
    service is left untouched. Returns what was done per service.

    `with_replica` (or `services.replica.enabled`) adds the PostgreSQL hot standby, started after its
    primary; once created it stays part of the stack until `down --purge`. With a replica, `only`
    naming `postgres` means both nodes."""
    if with_replica:
        from lakehouse.stack.replica import with_replica as enable_replica

        settings = enable_replica(settings)
    if only and "postgres" in only and pg_replicated(settings):
        only = [*only, PG_REPLICA_NODE]
    services = [s for s in all_services(settings) if not only or s.name in only]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    check_ports(settings, services)
    timeout = settings.services.start_timeout_s
    report: list[dict[str, Any]] = []
    for svc in services:
        if svc.running():
            health = svc.health()
            if not health.ok:
                svc.wait_healthy(timeout)
            _say(f"{svc.name:<9} already running on port {svc.port} (pid {svc.pid()})")
            report.append({"service": svc.name, "action": "none", "pid": svc.pid()})
            continue
        started = time.monotonic()
        _say(f"{svc.name:<9} starting on port {svc.port} … (log: {svc.log})")
        try:
            svc.start()
            detail = svc.wait_healthy(timeout)
        except ServiceError:
            raise
        except Exception as e:
            raise ServiceError(f"{svc.name}: failed to start: {e}\n  log: {svc.log}") from e
        took = time.monotonic() - started
        _say(f"{svc.name:<9} healthy in {took:.1f}s: {detail}")
        report.append({"service": svc.name, "action": "started", "pid": svc.pid(), "seconds": round(took, 2)})
    return report


def down(settings: Settings, purge: bool = False) -> None:
    """Stops the services in reverse start order, keeping their data unless `purge`, which also
    deletes the local lakehouse (Delta tables and checkpoints) and the generated secrets."""
    for svc in reversed(all_services(settings)):
        if svc.running():
            _say(f"{svc.name:<9} stopping (pid {svc.pid()})")
            svc.stop()
        if purge:
            svc.purge()
            _say(f"{svc.name:<9} data removed ({svc.dir})")
    if purge:
        for path in (Path(settings.lakehouse_dir), secrets_dir(settings)):
            if "://" not in str(path) and path.exists():
                shutil.rmtree(path)
                _say(f"removed {path}")


def status(settings: Settings) -> list[dict[str, Any]]:
    """Per service: host, port, pid, health and the connection settings a client needs."""
    return [svc.status() for svc in all_services(settings)]
