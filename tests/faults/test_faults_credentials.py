"""Catalogue items 10 and 12: AWS refusing expired credentials mid-run, and
the endpoint going away. The plan's own threads are refused; the fake
cloud's workers keep working, as they would with their own task role."""

import threading

import botocore.client
import fakecloud
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from starburst_sdk import BrokenPlan, CredentialsError, Plan, _aws, _plan

PLAN_THREADS = ("starburst-engine-", "starburst-collector-", "starburst-io")


def square(x):
    return x * x


def gated(x):
    import fakecloud

    fakecloud.GATE.wait(60)
    return x


class Refuser:
    """Makes AWS calls from the plan's threads fail while ``on`` is set."""

    def __init__(self, monkeypatch, make_error):
        self.on = threading.Event()
        self.refused = 0
        real = botocore.client.BaseClient._make_api_call

        def call(client, operation, params):
            if self.on.is_set() and threading.current_thread().name.startswith(
                PLAN_THREADS
            ):
                self.refused += 1
                raise make_error(operation)
            return real(client, operation, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)


def expired(operation):
    return ClientError(
        {
            "Error": {
                "Code": "ExpiredToken",
                "Message": "The security token included in the request is expired",
            }
        },
        operation,
    )


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    monkeypatch.setattr(_plan, "CREDENTIAL_BACKOFF", 0.05)
    fakecloud.GATE.clear()
    yield
    fakecloud.GATE.set()


def test_expired_credentials_are_reloaded_and_the_run_goes_on(fake, monkeypatch):
    refuser = Refuser(monkeypatch, expired)
    refreshes = []
    real_refresh = _aws.Clients.refresh

    def refresh(self):
        refreshes.append(1)
        refuser.on.clear()  # the reloaded credentials are good
        real_refresh(self)

    monkeypatch.setattr(_aws.Clients, "refresh", refresh)
    with Plan(workers=2, idle_timeout=1) as plan:
        first = [plan.submit(square, i) for i in range(4)]
        assert [f.result(timeout=60) for f in first] == [0, 1, 4, 9]
        refuser.on.set()
        later = [plan.submit(square, i) for i in range(4, 8)]
        assert [f.result(timeout=60) for f in later] == [16, 25, 36, 49]
    assert refuser.refused >= 1 and refreshes


def test_credentials_refused_for_good_fail_naming_running_workers(fake, monkeypatch):
    refuser = Refuser(monkeypatch, expired)
    plan = Plan(workers=1, idle_timeout=2)
    try:
        future = plan.submit(gated, 1)
        for _ in range(600):
            st = plan.status()
            if st.running and st.workers_running:
                break
            threading.Event().wait(0.05)
        worker = plan.registry.alive()[0]
        refuser.on.set()
        with pytest.raises(BrokenPlan) as info:
            future.result(timeout=60)
    finally:
        fakecloud.GATE.set()
        plan.shutdown(wait=True)
        refuser.on.clear()
    cause = info.value.__cause__
    assert isinstance(cause, CredentialsError)
    text = str(cause)
    assert "ExpiredToken" in text and worker.task_id in text
    assert "1 worker(s) still running" in text
    assert f"starburst-cli cancel {plan.session_id}" in text


def test_endpoint_gone_fails_clearly_and_keeps_collected_results(fake, monkeypatch):
    refuser = Refuser(
        monkeypatch,
        lambda op: EndpointConnectionError(
            endpoint_url="http://localhost.localstack.cloud:4566/"
        ),
    )
    with Plan(workers=1, idle_timeout=1) as plan:
        done = [plan.submit(square, i) for i in range(3)]
        assert [f.result(timeout=60) for f in done] == [0, 1, 4]
        refuser.on.set()
        later = plan.submit(gated, 5)
        with pytest.raises(BrokenPlan, match="Could not connect to the endpoint URL"):
            later.result(timeout=60)
        refuser.on.clear()
    assert [f.result(timeout=0) for f in done] == [0, 1, 4]
