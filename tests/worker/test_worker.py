"""The worker loop, in process, against moto's S3 and SQS."""

import json

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
        {"task_id": "00000001", "attempt": 1, "receipt": message["ReceiptHandle"]}
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
    import time

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
