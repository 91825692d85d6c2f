"""The worker loop: receive a task id, run the task, upload its result.

    prefetch thread   SQS ──task id──▶ claim ──▶ GET task ──┐   (one task ahead)
                                                           ▼
    main thread                                    run the items
                                                           │
    upload thread                    PUT result ◀──────────┘ ──▶ announce ──▶ delete message
    heartbeat thread  keeps every held message invisible while it is held

The main thread runs the user's code (so that a per-item timeout can use
SIGALRM); the next task is received and downloaded while the current one runs,
and its result is uploaded while the next one runs. At most two tasks are held
at a time: the one running and the one fetched ahead.

One Fargate task runs this loop until its queue stays empty for
``STARBURST_IDLE_TIMEOUT`` seconds with nothing running, the queue is deleted
(the session ended), or it has received ``STARBURST_MAX_TASKS`` tasks; then it
finishes what it holds and exits 0.

While a task is held, the heartbeat keeps its message invisible in windows of
``STARBURST_VISIBILITY`` seconds. If this process dies, the heartbeat stops, the
message becomes visible again and another worker retries the task; after
``max_attempts`` receives SQS moves it to the dead-letter queue. On each receive
the worker writes a small *claim* object listing the tasks it holds, their
attempts and receipt handles, so a client that sees this worker stop can tell
which tasks it held and release them at once instead of waiting out the window.

SIGTERM (StopTask, Spot interruption) interrupts the running item, lets results
already computed finish uploading, makes every other held message visible again
so another worker picks it up, and exits 143.
"""

from __future__ import annotations

import json
import logging
import os
import queue
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
    done_queue_url: str
    region: str | None
    idle_timeout: float
    max_tasks: int
    visibility: int
    item_timeout: float

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        missing = [
            k
            for k in ("STARBURST_BUCKET", "STARBURST_SESSION", "STARBURST_QUEUE_URL")
            if not env.get(k)
        ]
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
            done_queue_url=env.get("STARBURST_DONE_QUEUE_URL", ""),
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


@dataclass
class Held:
    task_id: str
    attempt: int
    receipt: str


# What the prefetch thread hands to the main thread instead of a task.
IDLE, LIMIT, GONE, FAILED = "idle", "limit", "queue gone", "failed"


class Worker:
    def __init__(
        self, settings: Settings, s3: Any, sqs: Any, worker_arn: str, worker_id: str
    ) -> None:
        self.s = settings
        self.s3, self.sqs = s3, sqs
        self.worker_arn, self.worker_id = worker_arn, worker_id
        self.tasks_done = 0
        self._held: dict[str, Held] = {}  # receipt -> Held
        self._held_lock = threading.Lock()
        self._ready: queue.Queue[Any] = queue.Queue()
        self._permits = threading.Semaphore(2)  # the running task + one ahead
        self._uploads: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._busy = False
        self._last_activity = time.monotonic()

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Process tasks until idle, the queue is gone or the task limit."""
        threads = [
            threading.Thread(target=f, daemon=True, name=f"starburst-{n}")
            for n, f in (
                ("prefetch", self._prefetch_loop),
                ("upload", self._upload_loop),
                ("heartbeat", self._heartbeat_loop),
            )
        ]
        self._last_activity = time.monotonic()
        for t in threads:
            t.start()
        self._uploader = threads[1]
        code = 0
        try:
            while True:
                item = self._ready.get()
                if isinstance(item, str):
                    log.info(
                        "%s; exiting after %d tasks",
                        {
                            IDLE: f"idle for {self.s.idle_timeout:g} s",
                            LIMIT: f"received {self.s.max_tasks} tasks (the per-worker limit)",
                            GONE: "the session's queue is gone",
                            FAILED: "the queue could not be read",
                        }[item],
                        self.tasks_done,
                    )
                    code = 1 if item == FAILED else 0
                    break
                held, data = item
                self._busy = True
                try:
                    job = self._execute(held, data)
                finally:
                    self._busy = False
                    self._last_activity = time.monotonic()
                    self._permits.release()
                if job is not None:
                    self._uploads.put(job)
        except Stopped:
            self._stop.set()
            self._finish_uploads()
            self._release_all()
            raise
        self._stop.set()
        self._finish_uploads()
        self._release_all()
        return code

    def handle(self, message: dict[str, Any]) -> None:
        """Process one received message start to end, in this thread."""
        held = self._hold(message)
        data = self._fetch(held)
        if data is None:
            return
        try:
            job = self._execute(held, data)
        except Stopped:
            self._release(held)
            raise
        if job is not None:
            self._upload(*job)

    # -- stages -------------------------------------------------------------

    def _prefetch_loop(self) -> None:
        received = errors = 0
        while not self._stop.is_set():
            if self.s.max_tasks and received >= self.s.max_tasks:
                self._ready.put(LIMIT)
                return
            self._permits.acquire()
            if self._stop.is_set():
                return
            idle_for = 0.0 if self._busy else time.monotonic() - self._last_activity
            wait = (
                20
                if self._busy
                else max(1, min(20, int(self.s.idle_timeout - idle_for + 0.999)))
            )
            try:
                resp = self.sqs.receive_message(
                    QueueUrl=self.s.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=wait,
                    VisibilityTimeout=self.s.visibility,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
                errors = 0
            except ClientError as exc:
                self._permits.release()
                if _queue_gone(exc):
                    self._ready.put(GONE)
                    return
                errors += 1
                log.warning("receiving from the queue failed: %s", exc)
            except Exception as exc:
                self._permits.release()
                errors += 1
                log.warning("receiving from the queue failed: %s", exc)
            else:
                messages = resp.get("Messages", [])
                if not messages:
                    self._permits.release()
                    idle = (
                        not self._busy
                        and self._ready.empty()
                        and (
                            time.monotonic() - self._last_activity
                            >= self.s.idle_timeout
                        )
                    )
                    if idle:
                        self._ready.put(IDLE)
                        return
                    continue
                held = self._hold(messages[0])
                if self._stop.is_set():
                    self._release(held)
                    return
                received += 1
                self._last_activity = time.monotonic()
                data = self._fetch(held)
                if data is None:
                    self._permits.release()
                else:
                    self._ready.put((held, data))
                continue
            if errors * 2 > max(10.0, self.s.idle_timeout):
                self._ready.put(FAILED)
                return
            time.sleep(2)

    def _hold(self, message: dict[str, Any]) -> Held:
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        held = Held(message["Body"], attempt, message["ReceiptHandle"])
        with self._held_lock:
            self._held[held.receipt] = held
            claims = [vars(h) for h in self._held.values()]
        doc = {"worker": self.worker_arn, "at": time.time(), "held": claims}
        try:
            self.s3.put_object(
                Bucket=self.s.bucket,
                Key=claim_key(self.s.prefix, self.s.session, self.worker_id),
                Body=json.dumps(doc).encode(),
            )
        except Exception as exc:  # the claim speeds up recovery; it is not needed
            log.warning("could not write the claim for task %s: %s", held.task_id, exc)
        return held

    def _fetch(self, held: Held) -> bytes | None:
        """GET the task object; None (and the message released) if it can't be."""
        try:
            obj = self.s3.get_object(
                Bucket=self.s.bucket,
                Key=task_key(self.s.prefix, self.s.session, held.task_id),
            )
            return obj["Body"].read()
        except Exception as exc:  # storage trouble: let another attempt try
            log.error(
                "task %s could not be read (%s); released for retry", held.task_id, exc
            )
            self._release(held)
            return None

    def _execute(self, held: Held, data: bytes) -> tuple[Held, bytes] | None:
        started = time.time()
        outcomes = self._run_task(data)
        finished = time.time()
        body = envelope.pack_result(
            task_id=held.task_id,
            session_id=self.s.session,
            outcomes=outcomes,
            sdk=__version__,
            started=started,
            finished=finished,
            attempt=held.attempt,
            worker=self.worker_arn,
        )
        n_failed = sum(1 for o in outcomes if not o.ok)
        # Printed here, by the thread that ran the items, so that the lines a
        # task printed come after the previous task's line and before its own
        # (`starburst-cli logs --task` relies on it); a failed upload is logged
        # after it.
        print(
            f"task {held.task_id} attempt {held.attempt}: {len(outcomes)} "
            f"item(s), {n_failed} failed, {finished - started:.3f} s",
            flush=True,
        )
        return held, body

    def _upload_loop(self) -> None:
        while True:
            job = self._uploads.get()
            if job is None:
                return
            self._upload(*job)

    def _upload(self, held: Held, body: bytes) -> None:
        try:
            self.s3.put_object(
                Bucket=self.s.bucket,
                Key=result_key(self.s.prefix, self.s.session, held.task_id),
                Body=body,
            )
            self._announce(held.task_id)
            self.sqs.delete_message(
                QueueUrl=self.s.queue_url, ReceiptHandle=held.receipt
            )
        except Exception as exc:
            log.error(
                "task %s: the result could not be stored (%s); released for retry",
                held.task_id,
                exc,
            )
            self._release(held)
            return
        with self._held_lock:
            self._held.pop(held.receipt, None)
        self.tasks_done += 1

    def _announce(self, task_id: str) -> None:
        """Tell the client a result is there; it also lists now and then, so a
        lost announcement only delays the result."""
        if not self.s.done_queue_url:
            return
        try:
            self.sqs.send_message(QueueUrl=self.s.done_queue_url, MessageBody=task_id)
        except Exception as exc:
            log.warning("could not announce the result of task %s: %s", task_id, exc)

    def _finish_uploads(self) -> None:
        """Let the results already computed reach S3 (Fargate allows 30 s)."""
        self._uploads.put(None)
        self._uploader.join(timeout=25)

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.s.visibility / 3):
            with self._held_lock:
                receipts = list(self._held)
            for i in range(0, len(receipts), 10):
                entries = [
                    {
                        "Id": str(n),
                        "ReceiptHandle": r,
                        "VisibilityTimeout": self.s.visibility,
                    }
                    for n, r in enumerate(receipts[i : i + 10])
                ]
                try:
                    self.sqs.change_message_visibility_batch(
                        QueueUrl=self.s.queue_url, Entries=entries
                    )
                except Exception as exc:
                    log.warning("heartbeat failed: %s", exc)

    def _release(self, held: Held) -> None:
        with self._held_lock:
            self._held.pop(held.receipt, None)
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.s.queue_url,
                ReceiptHandle=held.receipt,
                VisibilityTimeout=0,
            )
        except Exception as exc:
            log.warning("could not release task %s: %s", held.task_id, exc)

    def _release_all(self) -> None:
        """Give back what this worker holds but will not finish."""
        with self._held_lock:
            left = list(self._held.values())
        for held in left:
            self._release(held)

    def _run_task(self, data: bytes) -> list[envelope.Outcome]:
        try:
            env = envelope.unpack(data, "task")
        except envelope.EnvelopeError as exc:
            return [envelope.failure(exc, 0.0, tb_text="")]
        client = envelope.python_minor(env.get("python", "?"))
        if client != envelope.python_minor(envelope.PYTHON):
            exc = RuntimeError(
                f"the client runs Python {client} but this worker runs Python "
                f"{envelope.python_minor(envelope.PYTHON)}; pickled functions are "
                "not portable across minor versions. Use a worker image built for "
                f"Python {client}."
            )
            return [envelope.failure(exc, 0.0, tb_text="")] * env["n"]
        return [self._run_item(load) for load in envelope.task_items(env)]

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
        raise TimeoutError(
            f"the task ran longer than its timeout of {self.seconds:g} s"
        )


def _queue_gone(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return "NonExistentQueue" in code or "QueueDoesNotExist" in code


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Stopped()


def main() -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = Settings.from_env(dict(os.environ))
    config = Config(
        retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=4
    )
    s3 = boto3.client("s3", region_name=settings.region, config=config)
    sqs = boto3.client("sqs", region_name=settings.region, config=config)
    arn, worker_id = own_identity()
    signal.signal(signal.SIGTERM, _on_sigterm)
    print(
        f"starburst worker {__version__} (Python {envelope.PYTHON}) "
        f"for session {settings.session} as {worker_id}",
        flush=True,
    )
    try:
        return Worker(settings, s3, sqs, arn, worker_id).run()
    except Stopped:
        print("stopped by SIGTERM; the running task was released for retry", flush=True)
        return 143
