"""The worker loop, in process, against moto's S3 and SQS."""

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time

import boto3
import msgpack
import pytest
from moto import mock_aws

from starburst_worker import envelope
from starburst_worker import worker as worker_mod

REGION = "us-east-1"
BUCKET = "worker-bucket"
PREFIX = "p/"
SESSION = "sess-1"


def double(x):
    return 2 * x


def stop_now(x):
    raise worker_mod.Stopped()


class Env:
    def __init__(self, **overrides):
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        self.url = self.sqs.create_queue(QueueName="q")["QueueUrl"]
        env = {
            "STARBURST_BUCKET": BUCKET,
            "STARBURST_PREFIX": PREFIX,
            "STARBURST_SESSION": SESSION,
            "STARBURST_QUEUE_URL": self.url,
            "STARBURST_IDLE_TIMEOUT": "0.5",
            "AWS_REGION": REGION,
        }
        env.update(overrides)
        self.settings = worker_mod.Settings.from_env(env)
        self.worker = worker_mod.Worker(
            self.settings, self.s3, self.sqs, "arn:aws:ecs:task/c/w1", "w1"
        )

    def put_task(self, task_id, fn, args_list, python=None, raw=None):
        data = raw or envelope.pack_task(
            task_id=task_id,
            session_id=SESSION,
            fn_name=envelope.qualified_name(fn),
            fn_blob=envelope.dumps(fn),
            item_blobs=[envelope.dumps((a, {})) for a in args_list],
            sdk="0.1.0",
            created=0.0,
        )
        if python is not None:
            env = msgpack.unpackb(data, raw=False)
            env["python"] = python
            data = msgpack.packb(env, use_bin_type=True)
        self.s3.put_object(
            Bucket=BUCKET, Body=data, Key=worker_mod.task_key(PREFIX, SESSION, task_id)
        )
        self.sqs.send_message(QueueUrl=self.url, MessageBody=task_id)

    def receive(self):
        resp = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=1,
            VisibilityTimeout=30,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        (message,) = resp["Messages"]
        return message

    def outcomes(self, task_id):
        obj = self.s3.get_object(
            Bucket=BUCKET, Key=worker_mod.result_key(PREFIX, SESSION, task_id)
        )
        env = envelope.unpack(obj["Body"].read(), "result")
        return env, envelope.result_outcomes(env)

    def has_result(self, task_id):
        resp = self.s3.list_objects_v2(
            Bucket=BUCKET, Prefix=worker_mod.result_key(PREFIX, SESSION, task_id)
        )
        return resp.get("KeyCount", 0) > 0

    def queue_depth(self):
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
        a = attrs["Attributes"]
        return (
            int(a["ApproximateNumberOfMessages"]),
            int(a["ApproximateNumberOfMessagesNotVisible"]),
        )


@pytest.fixture
def wenv(aws_env):
    with mock_aws():
        yield Env()


def test_worker_handle_writes_result_deletes_message_and_claims(wenv):
    wenv.put_task("00000001", double, [(1,), (2,), (3,)])
    message = wenv.receive()
    wenv.worker.handle(message)

    env, outcomes = wenv.outcomes("00000001")
    assert [o.value() for o in outcomes] == [2, 4, 6]
    assert env["ok"] is True and env["attempt"] == 1
    assert env["worker"] == "arn:aws:ecs:task/c/w1" and env["task_id"] == "00000001"
    assert wenv.queue_depth() == (0, 0)
    claim = json.loads(
        wenv.s3.get_object(
            Bucket=BUCKET, Key=worker_mod.claim_key(PREFIX, SESSION, "w1")
        )["Body"].read()
    )
    assert claim["held"] == [
        {
            "task_id": "00000001",
            "attempt": 1,
            "receipt": message["ReceiptHandle"],
            "running": True,
        }
    ]
    assert wenv.worker.tasks_done == 1


def test_worker_handle_other_python_minor_fails_every_item(wenv):
    wenv.put_task("00000002", double, [(1,), (2,)], python="2.7.18")
    wenv.worker.handle(wenv.receive())
    env, outcomes = wenv.outcomes("00000002")
    assert len(outcomes) == 2 and not any(o.ok for o in outcomes)
    mine = envelope.python_minor(envelope.PYTHON)
    for o in outcomes:
        assert "2.7" in o.error_text and mine in o.error_text
    assert env["ok"] is False and "2.7" in env["error_text"]
    assert wenv.queue_depth() == (0, 0)


def test_worker_handle_corrupt_task_writes_failed_result(wenv):
    wenv.put_task("00000003", double, [], raw=b"garbage that is not msgpack\xc1")
    wenv.worker.handle(wenv.receive())
    env, outcomes = wenv.outcomes("00000003")
    assert len(outcomes) == 1 and not outcomes[0].ok
    assert "EnvelopeError" in outcomes[0].error_type


def test_worker_handle_missing_task_object_releases_message(wenv):
    wenv.sqs.send_message(QueueUrl=wenv.url, MessageBody="00000004")
    wenv.worker.handle(wenv.receive())
    assert not wenv.has_result("00000004")
    assert wenv.queue_depth() == (1, 0)  # visible again for another attempt
    assert wenv.worker.tasks_done == 0


def test_worker_handle_stopped_releases_message_and_reraises(wenv):
    wenv.put_task("00000005", stop_now, [(1,)])
    with pytest.raises(worker_mod.Stopped):
        wenv.worker.handle(wenv.receive())
    assert not wenv.has_result("00000005")
    assert wenv.queue_depth() == (1, 0)


def test_worker_handle_attempt_comes_from_receive_count(wenv):
    wenv.put_task("00000006", double, [(5,)])
    first = wenv.receive()
    wenv.sqs.change_message_visibility(
        QueueUrl=wenv.url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    wenv.worker.handle(wenv.receive())
    env, (outcome,) = wenv.outcomes("00000006")
    assert env["attempt"] == 2 and outcome.value() == 10


def test_worker_run_idle_timeout_returns_zero(wenv):
    assert wenv.worker.run() == 0
    assert wenv.worker.tasks_done == 0


def test_worker_run_processes_queue_then_idles_out(wenv):
    for i in range(3):
        wenv.put_task(f"0000001{i}", double, [(i,)])
    assert wenv.worker.run() == 0
    assert wenv.worker.tasks_done == 3
    assert [wenv.outcomes(f"0000001{i}")[1][0].value() for i in range(3)] == [0, 2, 4]


def test_worker_run_queue_deleted_returns_zero(wenv):
    wenv.sqs.delete_queue(QueueUrl=wenv.url)
    s = wenv.settings
    worker = worker_mod.Worker(
        worker_mod.Settings(**{**s.__dict__, "idle_timeout": 3600.0}),
        wenv.s3,
        wenv.sqs,
        "w",
        "w",
    )
    assert worker.run() == 0


def test_worker_run_max_tasks_exits_after_n(aws_env):
    with mock_aws():
        env = Env(STARBURST_MAX_TASKS="2", STARBURST_IDLE_TIMEOUT="3600")
        for i in range(4):
            env.put_task(f"0000002{i}", double, [(i,)])
        assert env.worker.run() == 0
        assert env.worker.tasks_done == 2
        assert env.queue_depth() == (2, 0)


def test_worker_item_timeout_raises_timeout_error(aws_env):
    def slow(x):
        time.sleep(30)
        return x

    with mock_aws():
        env = Env(STARBURST_ITEM_TIMEOUT="0.2")
        env.put_task("00000030", slow, [(1,)])
        env.worker.handle(env.receive())
        _, (outcome,) = env.outcomes("00000030")
        assert not outcome.ok and outcome.error_type == "builtins.TimeoutError"
        assert "0.2" in outcome.error_text


def test_worker_settings_missing_variables_exit_with_names():
    with pytest.raises(SystemExit) as info:
        worker_mod.Settings.from_env({"STARBURST_BUCKET": "b"})
    assert "STARBURST_SESSION" in str(info.value)
    assert "STARBURST_QUEUE_URL" in str(info.value)


def test_worker_settings_visibility_has_a_floor():
    s = worker_mod.Settings.from_env(
        {
            "STARBURST_BUCKET": "b",
            "STARBURST_SESSION": "s",
            "STARBURST_QUEUE_URL": "u",
            "STARBURST_VISIBILITY": "1",
        }
    )
    assert s.visibility == 5 and s.idle_timeout == 60 and s.max_tasks == 0


# -- per-call timeout ---------------------------------------------------------


def swallows_exceptions(x):
    try:  # noqa: SIM105 (the user code under test)
        time.sleep(5)
    except Exception:
        pass
    time.sleep(5)
    return x


def swallows_everything(x):
    for _ in range(3):
        try:  # noqa: SIM105 (the user code under test)
            time.sleep(2)
        except BaseException:
            pass
    return x


def test_worker_item_timeout_is_not_swallowed_by_except_exception(aws_env):
    with mock_aws():
        env = Env(STARBURST_ITEM_TIMEOUT="0.5")
        env.put_task("00000031", swallows_exceptions, [(1,)])
        t0 = time.monotonic()
        env.worker.handle(env.receive())
        assert time.monotonic() - t0 < 1.0  # 2x the limit
        _, (outcome,) = env.outcomes("00000031")
        assert not outcome.ok and outcome.error_type == "builtins.TimeoutError"
        assert outcome.error_text == "the call ran past Plan(timeout=0.5 s)"
        assert isinstance(outcome.value(), TimeoutError)
        assert "time.sleep(5)" in outcome.traceback  # where it was interrupted


def test_worker_item_timeout_fires_again_until_the_call_returns(aws_env):
    with mock_aws():
        env = Env(STARBURST_ITEM_TIMEOUT="0.3")
        env.put_task("00000032", swallows_everything, [(1,)])
        t0 = time.monotonic()
        env.worker.handle(env.receive())
        assert time.monotonic() - t0 < 0.3 + 3 * worker_mod.REFIRE + 0.5
        _, (outcome,) = env.outcomes("00000032")
        # It returned, having caught all three interruptions: still a timeout.
        assert not outcome.ok and outcome.error_type == "builtins.TimeoutError"


def test_worker_timer_raises_only_inside_the_call():
    timer = worker_mod._Timer(1.0)
    timer._armed = True
    # Handled in the worker's own code (the call has returned): no exception.
    timer._fire(signal.SIGALRM, sys._getframe())
    assert timer.fired
    with pytest.raises(worker_mod._Timeout):
        worker_mod._call(lambda: timer._fire(signal.SIGALRM, sys._getframe()), (), {})
    timer.disarm()
    timer._fire(signal.SIGALRM, sys._getframe())  # disarmed: a pending one is a no-op


def test_worker_run_goes_on_after_a_timed_out_task(aws_env):
    with mock_aws():
        env = Env(STARBURST_ITEM_TIMEOUT="0.3")
        env.put_task("00000033", swallows_everything, [(1,)])
        env.put_task("00000034", double, [(4,)])
        assert env.worker.run() == 0
        assert env.worker.tasks_done == 2
        assert env.outcomes("00000033")[1][0].error_type == "builtins.TimeoutError"
        assert env.outcomes("00000034")[1][0].value() == 8
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


# -- the claim ----------------------------------------------------------------


def read_claim_once_two_are_held(x):
    """Run by the worker: the claim once it lists two held tasks, one running.

    The receive of the second task may write a claim from before the first was
    marked running; the claim thread's write follows within milliseconds.
    """
    s3 = boto3.client("s3", region_name=REGION)
    key = worker_mod.claim_key(PREFIX, SESSION, "w1")
    deadline = time.monotonic() + 2
    while True:
        held = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        settled = len(held["held"]) == 2 and any(h.get("running") for h in held["held"])
        if settled or time.monotonic() > deadline:
            return held["held"]
        time.sleep(0.02)


def test_worker_claim_marks_only_the_running_task(wenv):
    wenv.put_task("00000041", read_claim_once_two_are_held, [(0,)])
    wenv.put_task("00000042", double, [(1,)])
    assert wenv.worker.run() == 0
    held = wenv.outcomes("00000041")[1][0].value()
    assert sorted(h["task_id"] for h in held) == ["00000041", "00000042"]
    assert [h["task_id"] for h in held if h.get("running")] == ["00000041"]
    assert all(set(h) == {"task_id", "attempt", "receipt", "running"} for h in held)


def test_worker_message_gets_its_full_window_only_once_claimed(wenv):
    calls = []

    def record(what):
        return lambda params, **kw: calls.append((what, dict(params)))

    wenv.sqs.meta.events.register(
        "provide-client-params.sqs.ReceiveMessage", record("receive")
    )
    wenv.sqs.meta.events.register(
        "provide-client-params.sqs.ChangeMessageVisibility", record("visibility")
    )
    wenv.s3.meta.events.register("provide-client-params.s3.PutObject", record("put"))
    wenv.put_task("00000043", double, [(1,)])
    assert wenv.worker.run() == 0

    (receive,) = [p for what, p in calls if what == "receive"][:1]
    # A dead worker's pending receive would hide the message this long only.
    assert receive["VisibilityTimeout"] == worker_mod.RECEIVE_VISIBILITY < 60
    claim = worker_mod.claim_key(PREFIX, SESSION, "w1")
    claimed = next(
        i
        for i, (what, p) in enumerate(calls)
        if what == "put" and p["Key"] == claim and b"00000043" in p["Body"]
    )
    extended = next(
        i
        for i, (what, p) in enumerate(calls)
        if what == "visibility" and p["VisibilityTimeout"] == 60
    )
    assert claimed < extended


# -- budget deadline ----------------------------------------------------------


def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_worker_stop_at_finishes_running_task_and_releases_prefetched(aws_env, caplog):
    with mock_aws():
        env = Env(STARBURST_STOP_AT=str(time.time() + 0.4), STARBURST_IDLE_TIMEOUT="1")
        env.put_task("00000051", nap, [(0.8,)])
        env.put_task("00000052", double, [(1,)])
        env.put_task("00000053", double, [(2,)])
        with caplog.at_level(logging.INFO, logger="starburst.worker"):
            assert env.worker.run() == 0
        assert env.outcomes("00000051")[1][0].value() == 0.8
        assert not env.has_result("00000052") and not env.has_result("00000053")
        assert env.queue_depth() == (2, 0)  # the prefetched one is visible again
        assert env.worker.tasks_done == 1
        (line,) = [r.getMessage() for r in caplog.records if "deadline" in r.message]
        assert "stopped at its budget deadline" in line
        assert "released 1 task(s)" in line and "after 1 tasks" in line


def test_worker_stop_at_in_the_past_takes_no_task(aws_env):
    with mock_aws():
        env = Env(STARBURST_STOP_AT=str(time.time() - 1), STARBURST_IDLE_TIMEOUT="1")
        env.put_task("00000054", double, [(1,)])
        assert env.worker.run() == 0
        assert env.worker.tasks_done == 0 and not env.has_result("00000054")
        assert env.queue_depth() == (1, 0)


# -- main: SIGTERM and logging ------------------------------------------------


@pytest.fixture
def main_env(aws_env, monkeypatch):
    """Run ``worker.main()`` in this process; put back what it changes."""
    sigterm = signal.getsignal(signal.SIGTERM)
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    levels = {n: logging.getLogger(n).level for n in ("botocore", "boto3", "urllib3")}
    monkeypatch.delenv("ECS_CONTAINER_METADATA_URI_V4", raising=False)
    with mock_aws():
        env = Env()
        for key, value in {
            "STARBURST_BUCKET": BUCKET,
            "STARBURST_PREFIX": PREFIX,
            "STARBURST_SESSION": SESSION,
            "STARBURST_QUEUE_URL": env.url,
            "STARBURST_IDLE_TIMEOUT": "2",
        }.items():
            monkeypatch.setenv(key, value)
        yield env
        for t in threading.enumerate():  # no receive outlives the mock
            if t.name.startswith("starburst-"):
                t.join(timeout=3)
    signal.signal(signal.SIGTERM, sigterm)
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def sigterm_once_handled():
    """SIGTERM this process once the worker's handler is in place."""
    deadline = time.monotonic() + 2
    while signal.getsignal(signal.SIGTERM) is not worker_mod._on_sigterm:
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)
    time.sleep(0.3)
    os.kill(os.getpid(), signal.SIGTERM)


def test_worker_main_sigterm_with_nothing_running_says_so(main_env, capsys):
    threading.Thread(target=sigterm_once_handled, daemon=True).start()
    assert worker_mod.main() == 143
    out = capsys.readouterr().out
    assert "stopped by SIGTERM with no task running or held" in out
    assert "running task" not in out


def test_worker_main_sigterm_names_the_running_task(main_env, capsys):
    main_env.put_task("00000061", stop_now, [(1,)])
    assert worker_mod.main() == 143
    out = capsys.readouterr().out
    assert "stopped by SIGTERM; the running task 00000061 was released for retry" in out
    assert main_env.queue_depth() == (1, 0)


def test_worker_main_keeps_aws_libraries_at_warning(main_env):
    logging.getLogger().setLevel(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    assert worker_mod.main() == 0  # idles out
    for name in ("botocore", "boto3", "urllib3"):
        assert logging.getLogger(name).level == logging.WARNING
    assert logging.getLogger("starburst.worker").isEnabledFor(logging.INFO)


def test_worker_sigterm_line_counts_released_tasks():
    held = worker_mod.Held("00000070", 1, "r")
    assert worker_mod._sigterm_line(held, 2) == (
        "stopped by SIGTERM; the running task 00000070 was released for retry, "
        "with 1 other held task(s)"
    )
    assert worker_mod._sigterm_line(None, 1) == (
        "stopped by SIGTERM with no task running; released 1 held task(s) for retry"
    )


def close_stdout(x):
    sys.stdout.close()
    return "done"


def close_stderr(x):
    sys.stderr.close()
    return "done"


def close_both(x):
    sys.stdout.close()
    sys.stderr.close()
    return "done"


def replace_stdout(x):
    import io

    sys.stdout = io.StringIO()
    return "done"


def detach_stdout(x):
    sys.stdout.detach()
    return "done"


def close_descriptors(x):
    os.close(sys.stdout.fileno())
    os.close(sys.stderr.fileno())
    return "done"


@pytest.mark.parametrize(
    "fn",
    [
        close_stdout,
        close_stderr,
        close_both,
        replace_stdout,
        detach_stdout,
        close_descriptors,
    ],
)
def test_worker_call_that_breaks_stdout_or_stderr_keeps_the_log(
    aws_env, monkeypatch, fn
):
    pipes = {name: os.pipe() for name in ("stdout", "stderr")}
    for name, (_, write_end) in pipes.items():
        # Like Python's own streams: closing one leaves the descriptor open.
        stream = open(write_end, "w", buffering=1, closefd=False)  # noqa: SIM115
        monkeypatch.setattr(sys, name, stream)
    handler = logging.StreamHandler(sys.stderr)  # the worker's log handler
    logging.getLogger().addHandler(handler)
    try:
        with mock_aws():
            env = Env()
            env.put_task("00000041", fn, [(1,)])
            env.put_task("00000042", double, [(2,)])
            env.worker.handle(env.receive())
            env.worker.handle(env.receive())
            assert env.outcomes("00000041")[1][0].value() == "done"
            assert env.outcomes("00000042")[1][0].value() == 4
        for name, (_, write_end) in pipes.items():
            stream = getattr(sys, name)
            assert not stream.closed and stream.fileno() == write_end
            os.fstat(write_end)  # open again, if the call closed it
        assert handler.stream is sys.stderr
        logging.getLogger("starburst.worker").warning("still logging")
        sys.stdout.flush()
        read_end = pipes["stdout"][0]
        os.set_blocking(read_end, False)
        logged = os.read(read_end, 65536).decode()
        assert "task 00000041 attempt 1: 1 item(s), 0 failed" in logged
        assert "task 00000042 attempt 1: 1 item(s), 0 failed" in logged
        os.set_blocking(pipes["stderr"][0], False)
        assert "still logging" in os.read(pipes["stderr"][0], 65536).decode()
    finally:
        logging.getLogger().removeHandler(handler)
        for read_end, write_end in pipes.values():
            os.close(read_end)
            with contextlib.suppress(OSError):
                os.close(write_end)


@pytest.mark.parametrize("code", [0, 3])
def test_worker_process_exits_despite_a_non_daemon_thread_left_running(code):
    import subprocess

    script = (
        "import runpy, threading, time\n"
        "import starburst_worker.worker as w\n"
        "def main():\n"
        "    threading.Thread(target=time.sleep, args=(600,)).start()\n"
        "    print('done', flush=True)\n"
        f"    return {code}\n"
        "w.main = main\n"
        "runpy.run_module('starburst_worker', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == code and proc.stdout == "done\n"


def read_claim_now(x):
    """Run by the worker: the held tasks its claim lists at this moment."""
    s3 = boto3.client("s3", region_name=REGION)
    key = worker_mod.claim_key(PREFIX, SESSION, "w1")
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["held"]


@pytest.mark.parametrize("attempt", [1, 2])
def test_worker_retry_is_claimed_as_running_before_its_call_starts(wenv, attempt):
    worker = wenv.worker

    class ClaimThreadAsleep(threading.Event):
        """The claim thread's write never comes in time (until the stop)."""

        def set(self):
            if worker._stop.is_set():
                super().set()

    worker._claim_due = ClaimThreadAsleep()
    wenv.put_task("00000051", read_claim_now, [(0,)])
    for _ in range(attempt - 1):  # an earlier worker received it and was lost
        lost = wenv.receive()
        wenv.sqs.change_message_visibility(
            QueueUrl=wenv.url, ReceiptHandle=lost["ReceiptHandle"], VisibilityTimeout=0
        )
    assert worker.run() == 0
    env, outcomes = wenv.outcomes("00000051")
    assert env["attempt"] == attempt
    (held,) = outcomes[0].value()
    # A first attempt saves the PUT (its claim follows off-thread); a retry may
    # be of a call that kills the process at once, so it is claimed first.
    assert held["running"] is (attempt > 1)
