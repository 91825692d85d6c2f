"""Small process helpers: free ports, spawning servers, waiting for health, stopping by pid.

A recorded process is ``{"pid": int, "create_time": float, "start_ticks": int}``; its
start time guards against pid reuse, so a stale state file never makes us signal a
stranger. On Linux the start is compared in clock ticks since boot (``/proc/<pid>/stat``),
which no change of the wall clock moves: psutil's ``create_time`` adds the boot time,
which ``/proc/stat`` gives in whole seconds and which shifts by a second when the
clock is adjusted, so the same process can read a second later than it was recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("starburst.local")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> dict[str, Any]:
    """Start a server in its own session, output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return {
        "pid": proc.pid,
        "create_time": psutil.Process(proc.pid).create_time(),
        "start_ticks": _start_ticks(proc.pid),
    }


def _start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot; None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command (which may hold spaces and parentheses): the
    # state is field 3, the start time field 22.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def alive(rec: dict[str, Any] | None) -> bool:
    """Is the recorded process still the one we started (and not a zombie)?"""
    if not rec:
        return False
    try:
        proc = psutil.Process(rec["pid"])
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        ticks = rec.get("start_ticks")
        if ticks is not None and (now := _start_ticks(rec["pid"])) is not None:
            return now == ticks
        return abs(proc.create_time() - rec["create_time"]) < 1.5
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(rec: dict[str, Any] | None, name: str, grace: float = 15.0) -> bool:
    """SIGTERM the recorded process, SIGKILL it after ``grace`` s. True if it had run."""
    if not alive(rec):
        return False
    assert rec is not None
    pid = rec["pid"]
    log.info("stopping %s (pid %d)", name, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(rec):
            return True
        time.sleep(0.1)
    log.warning("%s (pid %d) ignored SIGTERM for %.0f s: killing it", name, pid, grace)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        _reap(pid)
        if not alive(rec):
            break
        time.sleep(0.1)
    return True


def wait_http(
    url: str,
    rec: dict[str, Any],
    name: str,
    log_path: Path,
    timeout: float = 120.0,
    ready: Callable[[bytes], bool] = lambda _body: True,
) -> None:
    """Poll ``url`` until it answers 200 and ``ready(body)``; fail fast if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(rec):
            raise RuntimeError(
                f"{name} exited during start-up; its log {log_path} ends:\n"
                f"{tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200 and ready(resp.read()):
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"{name} did not become healthy at {url} within {timeout:.0f} s; "
        f"see {log_path}:\n{tail(log_path)}"
    )


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """(address, port) pairs the process tree of ``pid`` listens on."""
    found: list[tuple[str, int]] = []
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return found
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append((conn.laddr.ip, conn.laddr.port))
    return found
