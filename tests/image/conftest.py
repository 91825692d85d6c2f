"""Fixtures for the container tests: a private Docker engine and registry, the
stand-in base image, and the shared local cloud in container mode.

``container_tools`` (session): dockerd and Debian's docker-registry, each started in
a temp dir of its own (unix socket, 127.0.0.1 only) and stopped by pid at the end;
the stand-in for ``python:3.11-slim`` built from Debian's packages and pushed to the
registry. ``container_cloud`` (session): the suite's local cloud with its runner's
container mode on and a deployment ``containers`` whose ECR repository is the local
registry. ``containers`` (per test): that deployment's variables in the environment.

Without the tools the container tests skip, except under ``make test``
(``STARBURST_REQUIRE_CONTAINERS=1``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

DEPLOYMENT = "containers"


@dataclass
class Tools:
    engine: Any
    registry: Any
    base: str


def require_container_tools() -> None:
    """Skip (fail, under ``make test``) unless the container tools are here and
    this is the stand-in base image's Python."""
    from starburst_local.containers import BASE_PYTHON, missing_tools

    # `make test` sets STARBURST_REQUIRE_CONTAINERS=1: there, a missing tool fails
    # the run instead of skipping the container tests.
    unmet = (
        pytest.fail if os.environ.get("STARBURST_REQUIRE_CONTAINERS") else pytest.skip
    )
    missing = missing_tools()
    if missing:
        unmet(f"missing {', '.join(missing)}: run scripts/install-container-tools.sh")
    if f"{sys.version_info.major}.{sys.version_info.minor}" != BASE_PYTHON:
        unmet(f"the stand-in base image has Python {BASE_PYTHON}; run the tests on it")


@pytest.fixture(scope="session")
def container_tools() -> Iterator[Tools]:
    from starburst_local.containers import DockerEngine, LocalRegistry, push_base_image

    require_container_tools()
    root = Path(tempfile.mkdtemp(prefix="sb-ctr-"))  # short: a unix socket lives here
    engine = DockerEngine(root / "engine")
    registry = LocalRegistry(root / "registry")
    try:
        engine.start()
        registry.start()
        yield Tools(engine, registry, push_base_image(engine, registry))
    finally:
        registry.stop()
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def container_cloud(
    container_tools: Tools, local_cloud: Any
) -> Iterator[dict[str, Any]]:
    # container_tools first: without the tools, skip (or fail) before the local
    # cloud spends a minute starting.
    from starburst_local.cloud import runner_call

    config = local_cloud.use_containers(
        container_tools.engine.host, container_tools.registry.address, DEPLOYMENT
    )
    try:
        yield config
    finally:
        runner_call(local_cloud.runner_url, "PUT", "containers", {"docker_host": ""})


@pytest.fixture
def containers(
    container_tools: Tools,
    container_cloud: dict[str, Any],
    local_cloud: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Tools]:
    """The ``containers`` deployment's environment; builds use the stand-in base."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "DOCKER_", "STARBURST_")):
            monkeypatch.delenv(key)
    for key, value in local_cloud.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("STARBURST_DEPLOYMENT", DEPLOYMENT)
    monkeypatch.setenv("STARBURST_BASE_IMAGE", container_tools.base)
    monkeypatch.setenv("DOCKER_HOST", container_tools.engine.host)
    local_cloud.clear_faults()
    yield container_tools
