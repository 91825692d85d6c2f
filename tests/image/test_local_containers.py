"""``starburst-cli local up --containers``, as a user runs it: a script importing
its own helper module and a pinned package runs in the worker image Plan builds,
and ``local down`` stops the engine and the registry it started."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from .conftest import require_container_tools
from .test_image_containers import run_user_script, user_script_project

pytestmark = [
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.cloud,
    pytest.mark.timeout(900),
]
CLI = str(Path(sys.executable).with_name("starburst-cli"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "local", *args], capture_output=True, text=True, timeout=600
    )


def test_local_up_containers_runs_a_user_script_in_its_image(tmp_path):
    require_container_tools()
    state_dir = tmp_path / "cloud"
    where = ("--state-dir", str(state_dir))
    up = _cli(
        "up", *where, "--localstack-port", "0", "--runner-port", "0", "--containers"
    )
    state = (
        json.loads((state_dir / "state.json").read_text())
        if (state_dir / "state.json").exists()
        else {}
    )
    try:
        assert up.returncode == 0, up.stderr
        assert "Container mode" in up.stdout
        ctr = state["containers"]
        status = _cli("status", *where, "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["containers"]["engine_alive"]

        env = dict(os.environ)
        for line in _cli("env", *where).stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
        assert env["DOCKER_HOST"] == ctr["docker_host"]

        proj = user_script_project(tmp_path / "proj")
        value, _ = run_user_script(proj, env)
        assert {
            k: value[k] for k in ("square", "unit", "packaging", "in_container")
        } == {"square": 49, "unit": "metre", "packaging": "24.2", "in_container": True}
    finally:
        down = _cli("down", *where)
    assert down.returncode == 0, down.stderr
    assert "stopped" in down.stdout
    for part in ("engine", "registry"):
        pid = ctr[part]["pid"]
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert not Path(ctr["root"]).exists()
    assert not (state_dir / "state.json").exists()
