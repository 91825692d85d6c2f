"""Fixtures for the Terraform tests.

``terraform_env`` makes the binary work offline: a CLI config that installs the AWS
provider from the filesystem mirror on the machine. ``local_cloud_env`` is the seam
to the shared local cloud: for now it starts LocalStack and a moto server itself on
free loopback ports (stopping both by pid); once the shared local-cloud fixture
exists, this fixture should simply return that fixture's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = ROOT / "terraform"
MODULE_DIRS = [
    TERRAFORM_DIR,
    *sorted(p for p in (TERRAFORM_DIR / "modules").iterdir() if p.is_dir()),
    *sorted(p for p in (TERRAFORM_DIR / "examples").iterdir() if p.is_dir()),
]


def terraform_binary() -> str | None:
    return shutil.which("terraform") or shutil.which("tofu")


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    binary = terraform_binary()
    if binary is None:
        pytest.fail("neither terraform nor tofu is on PATH; install Terraform >= 1.6")
    return binary


@pytest.fixture(scope="session")
def terraform_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """os.environ plus an offline CLI config (when a provider mirror exists)."""
    from starburst_local.provision import cli_config

    env = {k: v for k, v in os.environ.items() if k != "TF_CLI_CONFIG_FILE"}
    saved = os.environ.pop("TF_CLI_CONFIG_FILE", None)
    try:
        config = cli_config(tmp_path_factory.mktemp("tfcli"))
    finally:
        if saved is not None:
            os.environ["TF_CLI_CONFIG_FILE"] = saved
    if config is not None:
        env["TF_CLI_CONFIG_FILE"] = str(config)
    env["CHECKPOINT_DISABLE"] = "1"
    env["TF_INPUT"] = "0"
    return env


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_moto(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MOTO_ACCOUNT_ID": "000000000000"}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto exited at start-up; see {log_path}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/moto-api/", timeout=2
            ):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"moto did not answer on port {port}; see {log_path}")


@pytest.fixture(scope="session")
def local_cloud_env(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """The local cloud's AWS_* environment (LocalStack + moto), started here for now."""
    from starburst_local.localstack import start_localstack, stop_localstack

    state = tmp_path_factory.mktemp("local-cloud")
    ls_port, moto_port = _free_port(), _free_port()
    localstack = start_localstack(ls_port, state)
    try:
        moto = _start_moto(moto_port, state / "moto.log")
    except Exception:
        stop_localstack(localstack)
        raise
    ls, mt = f"http://127.0.0.1:{ls_port}", f"http://127.0.0.1:{moto_port}"
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        **{
            f"AWS_ENDPOINT_URL_{s}": ls
            for s in ("S3", "SQS", "IAM", "CLOUDWATCH_LOGS", "SSM", "STS")
        },
        **{f"AWS_ENDPOINT_URL_{s}": mt for s in ("ECS", "ECR", "EC2")},
    }
    try:
        yield env
    finally:
        moto.terminate()
        try:
            moto.wait(15)
        except subprocess.TimeoutExpired:
            moto.kill()
            moto.wait()
        stop_localstack(localstack)
