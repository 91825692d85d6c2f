"""Fixtures for the Terraform tests.

``terraform_env`` makes the binary work offline: a CLI config that installs the AWS
provider from the filesystem mirror on the machine. ``local_cloud_env`` is the
shared local cloud's environment (tests/conftest.py starts one per run).
"""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="session")
def local_cloud_env(local_cloud) -> dict[str, str]:
    """The shared local cloud's AWS_* environment (LocalStack + the local runner)."""
    return dict(local_cloud.env)
