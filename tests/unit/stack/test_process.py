from __future__ import annotations

import socket
import subprocess
import sys

from lakehouse.stack.process import as_user, pid_alive, port_in_use, stop_pid


def test_port_in_use_sees_a_listening_socket() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


def test_stop_pid_terminates_a_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert pid_alive(proc.pid)
    assert stop_pid(proc.pid, timeout_s=10)
    assert not pid_alive(proc.pid)


def test_as_user_drops_privileges_with_runuser() -> None:
    assert as_user(["initdb", "-D", "/x"], None) == ["initdb", "-D", "/x"]
    cmd = as_user(["initdb", "-D", "/x"], "postgres")
    assert cmd[-5:] == ["postgres", "--", "initdb", "-D", "/x"] and cmd[0].endswith("runuser")
