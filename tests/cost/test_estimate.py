"""The arithmetic of an estimate (us-east-1, 1 vCPU with 2 GB: $0.04937 an hour)."""

import time

import pytest

from starburst_sdk import Plan, _cost

PER_SECOND = 0.04937 / 3600
ONE_VCPU = {"vcpu": 1, "memory_gb": 2, "region": "us-east-1"}


def test_estimate_counts_cold_start_chunks_and_billing():
    e = _cost.estimate(
        1000, 30, workers=100, chunksize=1, cold_start=40, task_overhead=0.1, **ONE_VCPU
    )
    # 1000 task objects over 100 workers: 10 each of 30.1 s after a 40 s start
    assert (e.workers, e.waves, e.chunks) == (100, 1, 1000)
    assert e.wall_seconds == pytest.approx(40 + 10 * 30.1)
    assert e.dollars == pytest.approx(100 * 341 * PER_SECOND)


def test_estimate_applies_the_one_minute_minimum():
    e = _cost.estimate(
        3, 1, workers=10, chunksize=1, cold_start=0, task_overhead=0, **ONE_VCPU
    )
    assert e.workers == 3 and e.wall_seconds == 1
    assert e.dollars == pytest.approx(3 * 60 * PER_SECOND)


def test_estimate_chunking_shares_the_overhead():
    e = _cost.estimate(
        100, 1, workers=2, chunksize=10, cold_start=0, task_overhead=0.5, **ONE_VCPU
    )
    # 10 task objects of 10 items: 5 per worker of 10.5 s each
    assert e.chunks == 10 and e.wall_seconds == pytest.approx(52.5)


def test_estimate_workers_that_exit_early_make_waves():
    e = _cost.estimate(
        8,
        10,
        workers=2,
        chunksize=1,
        cold_start=40,
        task_overhead=0,
        max_tasks_per_worker=2,
        **ONE_VCPU,
    )
    # 4 task objects per slot, 2 per worker life: 2 waves of 2 workers
    assert e.waves == 2 and e.wall_seconds == pytest.approx(2 * 40 + 4 * 10)
    assert e.dollars == pytest.approx(4 * 60 * PER_SECOND)


def test_estimate_quota_limits_the_pool():
    e = _cost.estimate(
        1000, 1, workers=100, vcpu=4, memory_gb=8, region="us-east-1", vcpu_quota=32
    )
    assert e.workers == 8


def test_estimate_detached_workers_bill_their_idle_tail():
    e = _cost.estimate(
        2,
        100,
        workers=2,
        chunksize=1,
        cold_start=0,
        task_overhead=0,
        idle_tail=60,
        **ONE_VCPU,
    )
    assert e.dollars == pytest.approx(2 * 160 * PER_SECOND)


def test_estimate_spot_and_arm_are_cheaper():
    base = _cost.estimate(100, 10, workers=10, **ONE_VCPU)
    assert (
        _cost.estimate(100, 10, workers=10, spot=True, **ONE_VCPU).dollars
        < base.dollars
    )
    assert (
        _cost.estimate(100, 10, workers=10, arch="arm64", **ONE_VCPU).dollars
        < base.dollars
    )


def test_estimate_no_tasks_costs_nothing():
    e = _cost.estimate(0, 10, workers=10, **ONE_VCPU)
    assert (e.workers, e.wall_seconds, e.dollars) == (0, 0, 0)


def nap(seconds):
    time.sleep(seconds)


def test_plan_estimate_prints_and_launches_nothing(fake):
    plan = Plan(workers=100, cpu=1, memory="2GB")
    e = plan.estimate(n_tasks=10_000, seconds_per_task=30)
    text = str(e)
    assert "10,000 task(s)" in text and "$" in text and "cold start 40 s" in text
    assert e.workers == 100 and e.dollars > 0
    assert plan.registry.all() == [] and plan._engine is None
    plan.shutdown()


def test_plan_estimate_times_local_calls(fake):
    plan = Plan(workers=4, cpu=1, memory="2GB", spot=True, arch="arm64")
    e = plan.estimate(40, fn=nap, sample=[0.02, 0.02, 0.02, 5.0])
    assert 0.015 < e.seconds_per_task < 1  # the fourth input is never run
    assert "local call" in e.assumptions and "Spot" in e.assumptions
    with pytest.raises(TypeError, match="seconds_per_task"):
        plan.estimate(40)
    plan.shutdown()
