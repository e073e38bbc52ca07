"""Shared by the benchmarks: print a figure table and write it as JSON under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def write_result(name: str, figures: dict[str, Any], params: dict[str, Any],
                 details: dict[str, Any] | None = None) -> Path:
    """Prints `figures` and writes them, with `params` and the (unprinted) `details`, to results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
           "params": params, "figures": figures}
    if details is not None:
        doc["details"] = details
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    width = max(len(k) for k in figures)
    print(f"== {name} ({', '.join(f'{k}={v}' for k, v in params.items())})")
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")
    print(f"  -> {path}")
    return path


def private_env(state_dir: Path | None = None) -> dict[str, str]:
    """A private state dir (`state_dir`, created when missing, e.g. one a benchmark keeps between runs; by
    default a new temporary one) and free ports, so a benchmark never touches the user's stack."""
    state = state_dir.resolve() if state_dir else Path(tempfile.mkdtemp(prefix="lakehouse-bench-", dir="/tmp"))
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o755)          # the PostgreSQL server may run as another OS user (services.postgres.os_user)
    keys = ("POSTGRES__PORT", "REPLICA__PORT", "KAFKA__PORT", "KAFKA__CONTROLLER_PORT", "CONNECT__PORT",
            "REDIS__PORT")
    socks = [socket.socket() for _ in keys]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    env = {f"LAKEHOUSE__SERVICES__{k}": str(p) for k, p in zip(keys, ports, strict=True)}
    env["LAKEHOUSE__PATHS__STATE_DIR"] = str(state)
    return env
