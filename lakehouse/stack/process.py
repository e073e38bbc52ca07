"""Process plumbing for the local stack: ports, pid files, detached launches, waiting with progress."""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not be started, stopped or reached; the message names it and its log."""


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (host, port) or the port cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def launch(cmd: Sequence[str], log: Path, pid_file: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Starts `cmd` detached from this process (its own session), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, env={**os.environ, **(env or {})}, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int, timeout_s: float = 30.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout_s`; True when the process is gone."""
    if not pid_alive(pid):
        return True
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    _reap(pid)
    return not pid_alive(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: nothing to reap
        os.waitpid(pid, os.WNOHANG)


def wait_for(check: Callable[[], tuple[bool, str]], timeout_s: float, label: str,
             died: Callable[[], str | None] | None = None, interval_s: float = 0.5) -> str:
    """Polls `check` until it reports healthy; prints progress every few seconds.

    `died` returns a reason when the process has exited, which ends the wait at once.
    """
    started = time.monotonic()
    last_print = started
    detail = ""
    while True:
        ok, detail = check()
        if ok:
            return detail
        elapsed = time.monotonic() - started
        reason = died() if died else None
        if reason:
            raise ServiceError(f"{label}: {reason}")
        if elapsed > timeout_s:
            raise ServiceError(f"{label}: not healthy after {timeout_s:.0f}s ({detail})")
        if time.monotonic() - last_print >= 5:
            print(f"  … waiting for {label} ({elapsed:.0f}s: {detail})", file=sys.stderr, flush=True)
            last_print = time.monotonic()
        time.sleep(interval_s)


def tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + ln for ln in text[-lines:])


def as_user(cmd: Sequence[str], os_user: str | None) -> list[str]:
    """Prefixes `cmd` with runuser when it must run as another OS user (PostgreSQL under root)."""
    if not os_user:
        return list(cmd)
    runuser = shutil.which("runuser") or shutil.which("su")
    if runuser is None:
        raise ServiceError("running as root, but neither runuser nor su is available to drop privileges")
    if runuser.endswith("runuser"):
        return [runuser, "-u", os_user, "--", *cmd]
    return [runuser, os_user, "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]


def chown_tree(path: Path, os_user: str) -> None:
    pw = pwd.getpwnam(os_user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
