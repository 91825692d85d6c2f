"""The worker loop: receive a task id, run the task, upload its result.

    SQS  ──task id──▶  claim  ──▶  GET task  ──▶  run items  ──▶  PUT result
                         │                           │                │
                         └─ S3 workers/<id>.json     └─ heartbeat     └─ delete message

One Fargate task runs this loop until its queue stays empty for
``STARBURST_IDLE_TIMEOUT`` seconds, the queue is deleted (the session ended),
or it has run ``STARBURST_MAX_TASKS`` tasks; then it exits 0.

While a task runs, a heartbeat thread keeps its message invisible in windows of
``STARBURST_VISIBILITY`` seconds. If this process dies, the heartbeat stops, the
message becomes visible again and another worker retries the task; after
``max_attempts`` receives SQS moves it to the dead-letter queue. Before running
a task the worker writes a small *claim* object naming the task, its attempt and
the message's receipt handle, so a client that sees this worker stop can tell
which task it held and release it at once instead of waiting out the window.

SIGTERM (StopTask, Spot interruption) interrupts the running item, makes the
held message visible again so another worker picks it up, and exits 143.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from . import __version__, envelope

log = logging.getLogger("starburst.worker")


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM; not an Exception so user code
    catching ``Exception`` does not swallow it."""


@dataclass(frozen=True)
class Settings:
    bucket: str
    prefix: str
    session: str
    queue_url: str
    region: str | None
    idle_timeout: float
    max_tasks: int
    visibility: int
    item_timeout: float

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        missing = [k for k in ("STARBURST_BUCKET", "STARBURST_SESSION",
                               "STARBURST_QUEUE_URL") if not env.get(k)]
        if missing:
            raise SystemExit(
                "starburst worker: missing environment variable(s) "
                + ", ".join(missing)
                + "; the worker is started by starburst's RunTask overrides, not by hand"
            )
        return cls(
            bucket=env["STARBURST_BUCKET"],
            prefix=env.get("STARBURST_PREFIX", ""),
            session=env["STARBURST_SESSION"],
            queue_url=env["STARBURST_QUEUE_URL"],
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            idle_timeout=float(env.get("STARBURST_IDLE_TIMEOUT", "60")),
            max_tasks=int(env.get("STARBURST_MAX_TASKS", "0")),
            visibility=max(5, int(env.get("STARBURST_VISIBILITY", "60"))),
            item_timeout=float(env.get("STARBURST_ITEM_TIMEOUT", "0")),
        )

    def key(self, kind: str, name: str) -> str:
        return f"{self.prefix}sessions/{self.session}/{kind}/{name}"


def task_key(prefix: str, session: str, task_id: str) -> str:
    return f"{prefix}sessions/{session}/tasks/{task_id}.msgpack"


def result_key(prefix: str, session: str, task_id: str) -> str:
    return f"{prefix}sessions/{session}/results/{task_id}.msgpack"


def claim_key(prefix: str, session: str, worker_id: str) -> str:
    return f"{prefix}sessions/{session}/workers/{worker_id}.json"


def own_identity() -> tuple[str, str]:
    """This worker's ECS task ARN and short id, from the task metadata endpoint."""
    uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if uri:
        try:
            with urllib.request.urlopen(f"{uri}/task", timeout=2) as resp:
                arn = json.load(resp)["TaskARN"]
            return arn, arn.rsplit("/", 1)[-1]
        except Exception as exc:  # the metadata endpoint is best effort
            log.warning("could not read the ECS task metadata: %s", exc)
    name = f"{socket.gethostname()}-{os.getpid()}"
    return name, name


class Heartbeat:
    """Keeps one SQS message invisible while its task runs."""

    def __init__(self, sqs: Any, queue_url: str, receipt: str, window: int) -> None:
        self._sqs, self._queue_url, self._receipt = sqs, queue_url, receipt
        self._window = window
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="starburst-heartbeat")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self._window / 3):
            try:
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue_url, ReceiptHandle=self._receipt,
                    VisibilityTimeout=self._window)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)


class Worker:
    def __init__(self, settings: Settings, s3: Any, sqs: Any, worker_arn: str,
                 worker_id: str) -> None:
        self.s = settings
        self.s3, self.sqs = s3, sqs
        self.worker_arn, self.worker_id = worker_arn, worker_id
        self.tasks_done = 0

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        idle_since = time.monotonic()
        while True:
            if self.s.max_tasks and self.tasks_done >= self.s.max_tasks:
                log.info("ran %d tasks (the per-worker limit); exiting", self.tasks_done)
                return 0
            remaining = self.s.idle_timeout - (time.monotonic() - idle_since)
            if remaining <= 0:
                log.info("idle for %.0f s; exiting after %d tasks",
                         self.s.idle_timeout, self.tasks_done)
                return 0
            try:
                resp = self.sqs.receive_message(
                    QueueUrl=self.s.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=max(1, min(20, int(remaining + 0.999))),
                    VisibilityTimeout=self.s.visibility,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except ClientError as exc:
                if _queue_gone(exc):
                    log.info("the session's queue is gone; exiting after %d tasks",
                             self.tasks_done)
                    return 0
                raise
            for message in resp.get("Messages", []):
                self.handle(message)
                idle_since = time.monotonic()

    def handle(self, message: dict[str, Any]) -> None:
        task_id = message["Body"]
        receipt = message["ReceiptHandle"]
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        self._claim(task_id, attempt, receipt)
        try:
            with Heartbeat(self.sqs, self.s.queue_url, receipt, self.s.visibility):
                started = time.time()
                body = self._run_task(task_id)
                finished = time.time()
        except Stopped:
            self._release(receipt)
            raise
        except Exception as exc:  # storage trouble: let another attempt try
            log.error("task %s: could not be read (%s); released for retry",
                      task_id, exc)
            self._release(receipt)
            return
        outcomes, n_failed = body
        result = envelope.pack_result(
            task_id=task_id, session_id=self.s.session, outcomes=outcomes,
            sdk=__version__, started=started, finished=finished, attempt=attempt,
            worker=self.worker_arn)
        self.s3.put_object(Bucket=self.s.bucket,
                           Key=result_key(self.s.prefix, self.s.session, task_id),
                           Body=result)
        self.sqs.delete_message(QueueUrl=self.s.queue_url, ReceiptHandle=receipt)
        self.tasks_done += 1
        print(f"task {task_id} attempt {attempt}: {len(outcomes)} item(s), "
              f"{n_failed} failed, {finished - started:.3f} s", flush=True)

    # -- pieces -------------------------------------------------------------

    def _claim(self, task_id: str, attempt: int, receipt: str) -> None:
        doc = {"worker": self.worker_arn, "task_id": task_id, "attempt": attempt,
               "receipt": receipt, "at": time.time()}
        try:
            self.s3.put_object(
                Bucket=self.s.bucket,
                Key=claim_key(self.s.prefix, self.s.session, self.worker_id),
                Body=json.dumps(doc).encode())
        except Exception as exc:  # the claim speeds up recovery; it is not needed
            log.warning("could not write the claim for task %s: %s", task_id, exc)

    def _release(self, receipt: str) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.s.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0)
        except Exception as exc:
            log.warning("could not release the message: %s", exc)

    def _run_task(self, task_id: str) -> tuple[list[envelope.Outcome], int]:
        obj = self.s3.get_object(
            Bucket=self.s.bucket, Key=task_key(self.s.prefix, self.s.session, task_id))
        try:
            env = envelope.unpack(obj["Body"].read(), "task")
        except envelope.EnvelopeError as exc:
            return [envelope.failure(exc, 0.0, tb_text="")], 1
        client = envelope.python_minor(env.get("python", "?"))
        if client != envelope.python_minor(envelope.PYTHON):
            exc = RuntimeError(
                f"the client runs Python {client} but this worker runs Python "
                f"{envelope.python_minor(envelope.PYTHON)}; pickled functions are "
                "not portable across minor versions. Use a worker image built for "
                f"Python {client}.")
            return [envelope.failure(exc, 0.0, tb_text="")] * env["n"], env["n"]
        outcomes = [self._run_item(load) for load in envelope.task_items(env)]
        return outcomes, sum(1 for o in outcomes if not o.ok)

    def _run_item(self, load: Any) -> envelope.Outcome:
        t0 = time.perf_counter()
        try:
            fn, args, kwargs = load()
            with _alarm(self.s.item_timeout):
                value = fn(*args, **kwargs)
        except Stopped:
            raise
        except BaseException as exc:  # the user's exception becomes the outcome
            return envelope.failure(exc, time.perf_counter() - t0)
        return envelope.success(value, time.perf_counter() - t0)


class _alarm:
    """Raise TimeoutError in the main thread after ``seconds`` (0: never)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        if self.seconds > 0:
            signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        if self.seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _fire(self, signum: int, frame: Any) -> None:
        raise TimeoutError(f"the task ran longer than its timeout of {self.seconds:g} s")


def _queue_gone(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return "NonExistentQueue" in code or "QueueDoesNotExist" in code


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Stopped()


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env(dict(os.environ))
    config = Config(retries={"mode": "standard", "max_attempts": 8},
                    max_pool_connections=4)
    s3 = boto3.client("s3", region_name=settings.region, config=config)
    sqs = boto3.client("sqs", region_name=settings.region, config=config)
    arn, worker_id = own_identity()
    signal.signal(signal.SIGTERM, _on_sigterm)
    print(f"starburst worker {__version__} (Python {envelope.PYTHON}) "
          f"for session {settings.session} as {worker_id}", flush=True)
    try:
        return Worker(settings, s3, sqs, arn, worker_id).run()
    except Stopped:
        print("stopped by SIGTERM; the running task was released for retry", flush=True)
        return 143
