"""The fleet commands (status, sessions, cost, logs, cancel, cleanup, doctor,
quota) against the local cloud, after a small real session."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import boto3
import pytest
from typer.testing import CliRunner

from starburst_cli.main import app
from starburst_sdk import Plan

pytestmark = pytest.mark.cloud

SMALL = {"cpu": 0.25, "memory": "512MB"}
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def square(x):
    return x * x


@pytest.fixture(scope="module")
def finished(local_cloud):
    """One ended session: 6 tasks on 2 workers. -> (session id, plan.cost())."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("AWS_"):
                mp.delenv(key)
        for key, value in local_cloud.env.items():
            mp.setenv(key, value)
        with Plan(workers=2, idle_timeout=3, **SMALL) as plan:
            assert [
                f.result(timeout=120)
                for f in [plan.submit(square, i) for i in range(6)]
            ] == [i * i for i in range(6)]
        return plan.session_id, plan.cost()


def test_status_shows_no_workers_of_an_ended_session(cloud, finished):
    sid, _ = finished
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sid not in [s["session_id"] for s in report["sessions"]]
    table = cli("status")
    assert table.exit_code == 0
    assert "active session(s)" in table.stdout


def test_sessions_json_parses_back_with_counts_and_cost(cloud, finished):
    sid, cost = finished
    result = cli("sessions", "--json", "--limit", 50)
    assert result.exit_code == 0, result.output
    doc = next(
        s for s in json.loads(result.stdout)["sessions"] if s["session_id"] == sid
    )
    assert doc["state"] == "ended"
    assert doc["items"] == 6 and doc["results"] == doc["tasks"] >= 1
    assert doc["workers"] >= 1 and doc["live_workers"] == 0
    assert doc["cost"] == pytest.approx(cost, abs=1e-9)
    assert sid in cli("sessions").stdout


def test_cost_of_a_session_equals_plan_cost(cloud, finished):
    sid, cost = finished
    result = cli("cost", sid, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert abs(doc["total"] - cost) < 1e-9
    assert abs(sum(w["dollars"] for w in doc["workers"]) - cost) < 1e-9
    assert all(w["billed_seconds"] >= 60 for w in doc["workers"] if w["dollars"])
    every = json.loads(cli("cost", "--json", "--limit", 50).stdout)
    assert any(s["session_id"] == sid for s in every["sessions"])
    assert f"{cost:.4f}" in cli("cost", sid).stdout


def test_logs_show_the_workers_task_lines(cloud, finished):
    sid, _ = finished
    deadline = time.monotonic() + 20
    while True:
        result = cli("logs", sid)
        if result.exit_code == 0 and "item(s)" in result.stdout:
            break
        assert time.monotonic() < deadline, result.output
        time.sleep(1)
    # submit coalesces calls made close together, so a task may hold several items
    assert re.search(r"task \d{8} attempt 1: [1-6] item\(s\), 0 failed", result.stdout)
    one = cli("logs", sid, "--task", "3", "--json")
    events = [json.loads(line) for line in one.stdout.splitlines()]
    summaries = [e for e in events if re.match(r"task \d{8} attempt", e["message"])]
    assert [e["message"][:14] for e in summaries] == ["task 00000003 "]
    assert cli("logs", sid, "--task", "three").exit_code == 2


def shout(x):
    print(f"shouting {x}", flush=True)
    return x


def test_logs_of_one_task_show_what_it_printed(cloud):
    with Plan(workers=1, idle_timeout=3, **SMALL) as plan:
        assert list(plan.map(shout, range(4), chunksize=1)) == [0, 1, 2, 3]
    sid, task_ids = plan.session_id, plan.registry.task_ids
    deadline = time.monotonic() + 20
    while True:  # the worker ships its lines about once a second
        result = cli("logs", sid, "--task", task_ids[2])
        if result.exit_code == 0:
            break
        assert time.monotonic() < deadline, result.output
        time.sleep(1)
    lines = result.stdout.splitlines()
    assert any(line.endswith("shouting 2") for line in lines), lines
    assert not any("shouting 1" in line or "shouting 3" in line for line in lines)
    assert f"task {task_ids[2]} attempt 1: 1 item(s), 0 failed" in result.stdout


def test_unknown_session_exits_3(cloud, finished):
    for command in ("cost", "logs", "cancel"):
        result = cli(command, "20000101-000000-000000")
        assert result.exit_code == 3, (command, result.output)
        assert "no session '20000101-000000-000000'" in result.stderr


def test_missing_config_document_exits_1_naming_the_fix(cloud):
    for command in (["status"], ["sessions"], ["cost"], ["cleanup", "--dry-run"]):
        result = cli(*command, "--deployment", "nosuch")
        assert result.exit_code == 1, (command, result.output)
        assert "/starburst/nosuch/config" in result.stderr
        assert "starburst-cli infra apply" in result.stderr
    doctor = cli("doctor", "--deployment", "nosuch")
    assert doctor.exit_code == 1
    assert "FAIL config" in doctor.stdout


ORPHAN = textwrap.dedent("""
    import sys, time
    from starburst_sdk import Plan
    plan = Plan(workers=2, idle_timeout=120, cpu=0.25, memory="512MB")
    futures = [plan.submit(time.sleep, 60) for _ in range(4)]
    print(plan.session_id, flush=True)
    time.sleep(600)
""")


def test_cancel_stops_workers_of_an_orphaned_session_and_deletes_its_queue(cloud):
    client = subprocess.Popen(
        [sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True
    )
    try:
        sid = client.stdout.readline().strip()
        deadline = time.monotonic() + 60
        while True:  # wait for both workers, then lose the client
            doc = json.loads(cli("status", "--json").stdout)
            mine = [s for s in doc["sessions"] if s["session_id"] == sid]
            if mine and mine[0]["workers"]["running"] == 2:
                break
            assert time.monotonic() < deadline, doc
            time.sleep(0.5)
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    result = cli("cancel", sid)
    assert result.exit_code == 0, result.output
    assert "stopped 2 running worker(s)" in result.stdout
    doc = json.loads(cli("status", "--json").stdout)
    assert sid not in [s["session_id"] for s in doc["sessions"]]
    cfg = cloud.config
    ecs = boto3.client("ecs")
    live = ecs.list_tasks(cluster=cfg["cluster"], desiredStatus="RUNNING")["taskArns"]
    tasks = (
        ecs.describe_tasks(cluster=cfg["cluster"], tasks=live)["tasks"] if live else []
    )
    assert not [t for t in tasks if t.get("startedBy") == f"starburst-{sid}"]
    queues = (
        boto3.client("sqs")
        .list_queues(QueueNamePrefix=f"{cfg['queue_prefix']}-{sid}")
        .get("QueueUrls", [])
    )
    assert queues == []
    sessions = json.loads(cli("sessions", "--json").stdout)["sessions"]
    assert next(s for s in sessions if s["session_id"] == sid)["state"] == "cancelled"


def test_cleanup_dry_run_changes_nothing_then_cleanup_removes(cloud, finished):
    cfg = cloud.config
    s3, sqs, ecs = boto3.client("s3"), boto3.client("sqs"), boto3.client("ecs")
    old = "20200101-000000-c1ea11"
    s3.put_object(
        Bucket=cfg["bucket"],
        Key=f"{cfg['prefix']}sessions/{old}/session.json",
        Body=json.dumps(
            {
                "session_id": old,
                "deployment": "default",
                "created": 1577836800.0,
                "state": "ended",
                "settings": {},
                "workers": [],
                "tasks": [],
            }
        ),
    )
    s3.put_object(
        Bucket=cfg["bucket"],
        Key=f"{cfg['prefix']}sessions/{old}/tasks/00000001.msgpack",
        Body=b"x",
    )
    queue = sqs.create_queue(QueueName=f"{cfg['queue_prefix']}-{old}")["QueueUrl"]
    family = "starburst-default-cleanuptest"
    revisions = [
        ecs.register_task_definition(
            family=family,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[{"name": "worker", "image": "x", "memory": 512}],
        )["taskDefinition"]["taskDefinitionArn"]
        for _ in range(2)
    ]

    dry = cli("cleanup", "--older-than", "1d", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    actions = json.loads(dry.stdout)["actions"]
    targets = {(a["kind"], a["target"]) for a in actions}
    assert ("session", old) in targets
    assert ("queue", queue) in targets
    assert ("task-definition", revisions[0]) in targets
    assert ("task-definition", revisions[1]) not in targets  # newest, young
    assert ("session", finished[0]) not in targets  # younger than a day
    assert not any(a["done"] for a in actions)
    assert queue in sqs.list_queues(QueueNamePrefix=cfg["queue_prefix"])["QueueUrls"]
    assert "would remove" in cli("cleanup", "--older-than", "1d", "--dry-run").stdout

    result = cli("cleanup", "--older-than", "1d")
    assert result.exit_code == 0, result.output
    left = s3.list_objects_v2(
        Bucket=cfg["bucket"], Prefix=f"{cfg['prefix']}sessions/{old}/"
    )
    assert left.get("KeyCount", 0) == 0
    assert queue not in sqs.list_queues(QueueNamePrefix=cfg["queue_prefix"]).get(
        "QueueUrls", []
    )
    status = ecs.describe_task_definition(taskDefinition=revisions[0])
    assert status["taskDefinition"]["status"] == "INACTIVE"
    again = json.loads(
        cli("cleanup", "--older-than", "1d", "--dry-run", "--json").stdout
    )["actions"]
    assert not [a for a in again if a["kind"] in ("session", "queue")]


def test_doctor_passes_every_check_on_the_local_cloud(cloud):
    result = cli("doctor", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 0, doc
    assert doc["ok"]
    assert [c["check"] for c in doc["checks"]] == [
        "credentials",
        "config",
        "bucket",
        "cluster",
        "log group",
        "network",
        "image",
        "quota",
    ]
    lines = cli("doctor").stdout.splitlines()
    assert lines[0].startswith("ok   credentials")


def test_quota_shows_limits_and_files_a_request(cloud):
    result = cli("quota", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["on_demand"]["quota_code"] == "L-3032A538"
    assert doc["spot"]["quota_code"] == "L-36FBB829"
    assert doc["on_demand"]["limit"] == 64
    assert doc["on_demand"]["in_use"] >= 0
    filed = cli("quota", "--request", 128, "--spot", "--json")
    assert filed.exit_code == 0, filed.output
    request = json.loads(filed.stdout)["request"]
    assert request["quota_code"] == "L-36FBB829"
    assert request["desired"] == 128 and request["status"] == "CASE_OPENED"
    twice = cli("quota", "--request", 256, "--spot")
    assert twice.exit_code == 1
    assert "already open" in twice.stderr


def slow_square(x):
    time.sleep(0.5)
    return x * x


def _fake_registry(cfg, sid, state, created, updated):
    boto3.client("s3").put_object(
        Bucket=cfg["bucket"],
        Key=f"{cfg['prefix']}sessions/{sid}/session.json",
        Body=json.dumps(
            {
                "session_id": sid,
                "deployment": "default",
                "created": created,
                "updated": updated,
                "state": state,
                "settings": {},
                "workers": [],
                "tasks": [],
            }
        ),
    )


def test_cleanup_with_no_age_cutoff_spares_a_running_session(cloud):
    cfg = cloud.config
    # A client that crashed an hour ago: its session.json says "running", its
    # heartbeat is stale and no worker runs: it is abandoned.
    gone = "20261201-000000-abad0e"
    an_hour_ago = time.time() - 3600
    _fake_registry(cfg, gone, "running", an_hour_ago, an_hour_ago)
    with Plan(workers=2, idle_timeout=10, **SMALL) as plan:
        futures = [plan.submit(slow_square, i) for i in range(12)]
        assert futures[0].result(timeout=120) == 0
        listed = {
            s["session_id"]: s
            for s in json.loads(cli("sessions", "--json").stdout)["sessions"]
        }
        assert listed[gone]["state"] == "abandoned"
        assert listed[plan.session_id]["state"] == "running"
        result = cli("cleanup", "--older-than", "0", "--json")
        assert result.exit_code == 0, result.output
        touched = [a["target"] for a in json.loads(result.stdout)["actions"]]
        assert gone in touched
        assert not [t for t in touched if plan.session_id in t]
        assert [f.result(timeout=120) for f in futures] == [i * i for i in range(12)]
    left = boto3.client("s3").list_objects_v2(
        Bucket=cfg["bucket"], Prefix=f"{cfg['prefix']}sessions/{gone}/"
    )
    assert left.get("KeyCount", 0) == 0


def test_cancel_under_a_running_client_fails_its_futures_as_cancelled(cloud, caplog):
    from starburst_sdk import SessionCancelledError

    caplog.set_level("WARNING", logger="starburst")
    with Plan(workers=2, idle_timeout=10, chunksize=1, **SMALL) as plan:
        futures = [plan.submit(slow_square, i) for i in range(40)]
        assert futures[0].result(timeout=120) == 0
        result = cli("cancel", plan.session_id)
        assert result.exit_code == 0, result.output
        outcomes = [f.exception(timeout=120) for f in futures]
    failed = [e for e in outcomes if e is not None]
    assert failed and all(isinstance(e, SessionCancelledError) for e in failed)
    assert "starburst-cli cancel" in str(failed[0])
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    sessions = json.loads(cli("sessions", "--json").stdout)["sessions"]
    mine = next(s for s in sessions if s["session_id"] == plan.session_id)
    assert mine["state"] == "cancelled"
    with Plan.attach(plan.session_id) as attached:
        done = [f for f in attached.futures if f.exception(timeout=60) is None]
        # Results written before the cancel, and any the workers stored after
        # the client had given up on them.
        assert len(done) >= outcomes.count(None) > 0
    assert attached.registry.state == "cancelled"
    assert not attached.registry.alive()


def test_shutdown_cancelling_futures_logs_no_error(cloud, caplog):
    caplog.set_level("WARNING", logger="starburst")
    with Plan(workers=2, idle_timeout=10, chunksize=1, **SMALL) as plan:
        futures = [plan.submit(slow_square, i) for i in range(20)]
        assert futures[0].result(timeout=120) == 0
        plan.shutdown(wait=True, cancel_futures=True)
    assert any(f.cancelled() for f in futures)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], [
        r.getMessage() for r in caplog.records
    ]
