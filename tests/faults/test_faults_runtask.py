"""Catalogue items 1-2: RunTask throttled, or answering 200 with failures."""

import time

import pytest

from starburst_sdk import BrokenPlan, Plan, QuotaError, _ecs, _plan

from .faultkit import CAPACITY, LIMIT, RunTaskScript


def square(x):
    return x * x


@pytest.fixture
def quick_backoff(monkeypatch):
    """RunTask retries and wave-queue backoffs in milliseconds, not seconds."""
    monkeypatch.setattr(_ecs.random, "uniform", lambda a, b: 0.01)
    monkeypatch.setattr(_plan, "LAUNCH_BACKOFF", 0.05)


def test_runtask_throttled_is_retried_without_duplicate_workers(fake, quick_backoff):
    _, fargate = fake
    with Plan(workers=3, idle_timeout=1) as plan:
        script = RunTaskScript(
            plan._clients.ecs,
            [
                ("error", "ThrottlingException", "Rate exceeded"),
                ("error", "InvalidParameterException", "Rate exceeded"),
            ],
        )
        assert list(plan.map(square, range(6), chunksize=2)) == [0, 1, 4, 9, 16, 25]
    assert script.answers()[:3] == ["error", "error", "moto"]
    assert script.calls[2]["count"] == 3
    # The throttled calls started nothing, and the retry started each worker once.
    assert len(fargate.tasks()) == len(plan.registry.all()) == 3


def test_runtask_invalid_parameter_that_is_not_a_rate_is_not_retried(
    fake, quick_backoff
):
    with Plan(workers=1, idle_timeout=1) as plan:
        script = RunTaskScript(
            plan._clients.ecs,
            [
                (
                    "error",
                    "InvalidParameterException",
                    "subnets and security groups must be in separate VPCs",
                ),
            ],
        )
        with pytest.raises(BrokenPlan, match="separate VPCs"):
            plan.submit(square, 2).result(timeout=60)
    assert script.answers() == ["error"]


def test_runtask_throttled_past_its_retries_waits_instead_of_breaking(
    fake, quick_backoff
):
    with Plan(workers=2, idle_timeout=1) as plan:
        script = RunTaskScript(
            plan._clients.ecs, [("error", "ThrottlingException", "Rate exceeded")] * 7
        )
        assert plan.submit(square, 7).result(timeout=60) == 49
    assert script.answers()[:8] == ["error"] * 7 + ["moto"]


def test_runtask_capacity_failure_is_retried_later(fake, quick_backoff):
    _, fargate = fake
    with Plan(workers=2, idle_timeout=1) as plan:
        script = RunTaskScript(plan._clients.ecs, [("failures", CAPACITY)] * 2)
        futures = [plan.submit(square, i) for i in range(4)]
        assert [f.result(timeout=60) for f in futures] == [0, 1, 4, 9]
    assert script.answers()[:3] == ["failures", "failures", "moto"]
    assert len(fargate.tasks()) == len(plan.registry.all()) <= 2


def test_runtask_spot_capacity_falls_back_to_on_demand_when_allowed(
    fake, quick_backoff
):
    with Plan(workers=2, spot=True, spot_fallback=True, idle_timeout=1) as plan:
        script = RunTaskScript(plan._clients.ecs, [("failures", CAPACITY)])
        assert list(plan.map(square, range(4), chunksize=1)) == [0, 1, 4, 9]
    first, second = script.calls[:2]
    assert (first["provider"], second["provider"]) == ("FARGATE_SPOT", "FARGATE")
    assert second["count"] == first["count"] == 2
    workers = plan.registry.all()
    assert len(workers) == 2
    assert {w.capacity_provider for w in workers} == {"FARGATE"}  # billed On-Demand


def test_runtask_spot_capacity_stays_on_spot_without_fallback(fake, quick_backoff):
    with Plan(workers=1, spot=True, idle_timeout=1) as plan:
        script = RunTaskScript(plan._clients.ecs, [("failures", CAPACITY)])
        assert plan.submit(square, 3).result(timeout=60) == 9
    assert [c["provider"] for c in script.calls] == ["FARGATE_SPOT"] * len(script.calls)
    assert len(script.calls) >= 2


def test_runtask_task_limit_holds_the_wave_queue_at_what_runs(fake, quick_backoff):
    _, fargate = fake
    peak = []
    with Plan(workers=4, max_tasks_per_worker=1, idle_timeout=1) as plan:
        script = RunTaskScript(plan._clients.ecs, [("partial", 2, LIMIT)])

        def before(params, **kwargs):
            alive = sum(1 for t in fargate.tasks() if t.last_status != "STOPPED")
            peak.append(alive + params["count"])

        plan._clients.ecs.meta.events.register(
            "before-parameter-build.ecs.RunTask", before
        )
        assert list(plan.map(square, range(10), chunksize=1)) == [
            x * x for x in range(10)
        ]
    assert script.calls[0]["count"] == 4 and script.answers()[0] == "partial"
    # After AWS said "limit" at two workers, no call asked for more than that.
    assert len(peak) >= 3 and max(peak[1:]) <= 2, peak


@pytest.mark.parametrize(
    ("reason", "hint"), [(CAPACITY, "availability zones"), (LIMIT, "Service Quotas")]
)
def test_runtask_never_starting_raises_quota_error_quoting_aws(
    fake, quick_backoff, reason, hint
):
    t0 = time.monotonic()
    with Plan(workers=2, idle_timeout=1) as plan:
        script = RunTaskScript(plan._clients.ecs, [("failures", reason)] * 100)
        futures = [plan.submit(square, i) for i in range(3)]
        for f in futures:
            with pytest.raises(BrokenPlan) as info:
                f.result(timeout=60)
    assert isinstance(info.value.__cause__, QuotaError)
    text = str(info.value.__cause__)
    assert reason in text and hint in text
    assert len(script.calls) == _plan.LAUNCH_ATTEMPTS
    assert time.monotonic() - t0 < 30
