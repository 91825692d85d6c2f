"""Recorded server processes: found again by pid and start time, never a stranger."""

from __future__ import annotations

import subprocess
import sys

import psutil

from starburst_local import procs


def test_alive_survives_a_shifted_create_time(tmp_path):
    rec = procs.spawn(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        {},
        tmp_path / "sleep.log",
    )
    try:
        assert rec["start_ticks"] is not None
        assert procs.alive(rec)
        # psutil's create_time moves by a whole second when /proc/stat's boot
        # time (whole seconds) flips under a clock adjustment.
        assert procs.alive({**rec, "create_time": rec["create_time"] + 1.0})
        assert not procs.alive({**rec, "start_ticks": rec["start_ticks"] - 1})
        assert procs.stop(rec, "sleeper", grace=5)
        assert not procs.alive(rec)
    finally:
        if psutil.pid_exists(rec["pid"]):
            psutil.Process(rec["pid"]).kill()


def test_alive_refuses_a_reused_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        me = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}
        assert procs.alive(me)  # a record from before start ticks were kept
        assert not procs.alive({**me, "create_time": me["create_time"] - 60})
        assert not procs.alive(None)
    finally:
        proc.kill()
        proc.wait()
