import pytest


@pytest.fixture
def puppet_cloud(aws_env):
    """The in-process fake cloud with no worker threads: tests play Fargate
    with ``faultkit.Puppet``."""
    from fakecloud import fake_cloud

    with fake_cloud(run_workers=False) as (doc, fargate):
        yield doc, fargate
