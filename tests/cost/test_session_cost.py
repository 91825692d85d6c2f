"""What a session cost, from its registry, against hand-computed values.

Prices (us-east-1, the shipped table): On-Demand x86_64 $0.04048 per vCPU-hour
and $0.004445 per GB-hour, so 1 vCPU with 2 GB costs $0.04937 an hour.
"""

import pytest

from starburst_sdk import _cost
from starburst_sdk._session import Registry, WorkerRecord

SETTINGS = {
    "cpu": 1,
    "memory_mib": 2048,
    "region": "us-east-1",
    "capacity_provider": "FARGATE",
    "arch": "x86_64",
}


def registry(*workers, **settings):
    reg = Registry("s1", "default", 0.0, {**SETTINGS, **settings})
    for w in workers:
        reg.add_worker(w)
    return reg


def stopped(arn, started, stopped_at, **kw):
    return WorkerRecord(
        arn,
        launched=started - 30,
        wave=1,
        status="STOPPED",
        started=started,
        stopped=stopped_at,
        **kw,
    )


def test_cost_one_minute_minimum():
    report = _cost.session_cost(registry(stopped("a", 1000.0, 1030.0)))
    # 30 s ran, 60 s billed: 60 * 0.04937 / 3600
    assert report.workers[0].seconds == 30
    assert report.workers[0].billed_seconds == 60
    assert report.total == pytest.approx(0.00082283, abs=1e-8)
    assert not report.estimated


def test_cost_per_second_rounded_up():
    report = _cost.session_cost(registry(stopped("a", 1000.0, 1125.4)))
    # 125.4 s -> 126 s billed: 126 * 0.04937 / 3600
    assert report.workers[0].billed_seconds == 126
    assert report.total == pytest.approx(0.00172795, abs=1e-8)


def test_cost_running_worker_counts_up_to_now():
    running = WorkerRecord(
        "r", launched=990.0, wave=1, status="RUNNING", started=1000.0
    )
    report = _cost.session_cost(registry(running), now=1200.0)
    # 200 s: 200 * 0.04937 / 3600
    assert report.total == pytest.approx(0.00274278, abs=1e-8)
    assert not report.estimated and "running" in report.note


def test_cost_spot_worker_uses_the_spot_price():
    w = stopped("s", 1000.0, 1100.0, capacity_provider="FARGATE_SPOT")
    report = _cost.session_cost(registry(w))
    # 100 s at (0.01334053 + 2 * 0.00146489) per hour
    assert report.total == pytest.approx(100 * 0.01627031 / 3600, rel=1e-9)
    assert report.workers[0].capacity_provider == "FARGATE_SPOT"
    assert "Spot" in report.note


def test_cost_arm_worker_uses_the_graviton_price():
    reg = registry(stopped("a", 0.0, 3600.0), cpu=0.25, memory_mib=512, arch="arm64")
    # an hour of 0.25 vCPU and 0.5 GB: 0.25 * 0.03238 + 0.5 * 0.00356
    assert _cost.session_cost(reg).total == pytest.approx(0.009875, abs=1e-9)


def test_cost_depends_on_the_region():
    east = _cost.session_cost(registry(stopped("a", 0.0, 3600.0)))
    frankfurt = _cost.session_cost(
        registry(stopped("a", 0.0, 3600.0), region="eu-central-1")
    )
    assert east.total == pytest.approx(0.04937, abs=1e-9)
    assert frankfurt.total == pytest.approx(0.04656 + 2 * 0.00511, abs=1e-9)


def test_cost_unknown_region_is_an_error():
    with pytest.raises(ValueError, match="no Fargate price for region 'xx-nowhere-9'"):
        _cost.session_cost(registry(stopped("a", 0.0, 60.0), region="xx-nowhere-9"))


def test_cost_worker_that_never_started_is_free():
    never = WorkerRecord(
        "n",
        launched=0.0,
        wave=1,
        status="STOPPED",
        stopped=5.0,
        stop_code="TaskFailedToStart",
    )
    report = _cost.session_cost(registry(never, stopped("a", 0.0, 60.0)))
    assert report.workers[0].dollars == 0 or report.workers[1].dollars == 0
    assert report.total == pytest.approx(60 * 0.04937 / 3600)


def test_cost_billing_starts_at_the_image_pull():
    w = stopped("a", 1010.0, 1100.0, pull_started=1000.0)
    assert _cost.session_cost(registry(w)).workers[0].seconds == 100


def test_cost_unknown_start_is_a_labelled_estimate():
    pending = WorkerRecord("p", launched=1000.0, wave=1, status="RUNNING")
    report = _cost.session_cost(registry(pending), now=1090.0)
    assert report.estimated and "estimate" in report.note
    assert report.total == pytest.approx(90 * 0.04937 / 3600)


def test_cost_survives_the_registry_json_round_trip():
    reg = registry(
        stopped("a", 1000.0, 1125.4, capacity_provider="FARGATE_SPOT"),
        stopped("b", 1000.0, 1010.0),
    )
    again = Registry.from_json(reg.to_json())
    assert _cost.session_cost(again) == _cost.session_cost(reg)


class FakeEcs:
    def __init__(self, fail=False):
        self.fail, self.calls = fail, []

    def describe_tasks(self, cluster, tasks):
        if self.fail:
            raise RuntimeError("ECS is down")
        self.calls.append(len(tasks))
        return {
            "tasks": [
                {
                    "taskArn": arn,
                    "lastStatus": "STOPPED",
                    "startedAt": 1000.0,
                    "stoppedAt": 1100.0,
                }
                for arn in tasks
            ]
        }


def test_refresh_registry_asks_only_about_live_workers_a_hundred_at_a_time():
    live = [
        WorkerRecord(f"w{i}", launched=990.0, wave=1, status="RUNNING")
        for i in range(150)
    ]
    reg = registry(stopped("done", 0.0, 60.0), *live)
    ecs = FakeEcs()
    assert _cost.refresh_registry(reg, ecs, "cluster") is True
    assert ecs.calls == [100, 50]
    assert not reg.alive()
    assert _cost.session_cost(reg).total == pytest.approx(
        (60 + 150 * 100) * 0.04937 / 3600
    )


def test_refresh_registry_reports_an_api_failure():
    reg = registry(WorkerRecord("w", launched=0.0, wave=1, status="RUNNING"))
    assert _cost.refresh_registry(reg, FakeEcs(fail=True), "cluster") is False
    assert reg.alive()
