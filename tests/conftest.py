import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials and no endpoints: nothing can reach a real account."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    # An in-process local runner earlier in the run sets moto's account; the
    # fake cloud's backends are keyed by moto's default one.
    monkeypatch.delenv("MOTO_ACCOUNT_ID", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def fake(aws_env):
    from fakecloud import fake_cloud

    with fake_cloud() as (doc, fargate):
        yield doc, fargate


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory):
    """One local cloud (LocalStack + local Fargate runner) for the whole run, on
    free loopback ports in a temp dir; stopped (by pid) at the end."""
    from starburst_local.cloud import LocalCloud

    cloud = LocalCloud(
        tmp_path_factory.mktemp("local-cloud"),
        ls_port=0,
        runner_port=0,
        quota=64,
        stop_grace=5,
    )
    cloud.start()
    try:
        yield cloud
    finally:
        cloud.stop()


@pytest.fixture
def cloud(local_cloud, monkeypatch):
    """The local cloud's AWS variables in this test's environment."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in local_cloud.env.items():
        monkeypatch.setenv(key, value)
    local_cloud.clear_faults()
    yield local_cloud


def pytest_configure(config):
    """A run stopped with SIGTERM (CI's timeout, ``kill``) unwinds like Ctrl-C,
    so the session fixtures still stop the servers they started."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, interrupt)
