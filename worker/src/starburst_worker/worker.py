"""The worker loop: receive a task id, run the task, upload its result.

    prefetch thread   SQS ──task id──▶ claim ──▶ GET task ──┐   (one task ahead)
                                                           ▼
    main thread                                    run the items
                                                           │
    upload thread                    PUT result ◀──────────┘ ──▶ announce ──▶ delete message
    heartbeat thread  keeps every held message invisible while it is held
    claim thread      rewrites the claim when a task starts running

The main thread runs the user's code (so that a per-item timeout can use
SIGALRM); the next task is received and downloaded while the current one runs,
and its result is uploaded while the next one runs. At most two tasks are taken
at a time, the one running and the one fetched ahead, besides those whose
results are still uploading.

One Fargate task runs this loop until its queue stays empty for
``STARBURST_IDLE_TIMEOUT`` seconds with nothing running, the queue is deleted
(the session ended), it has received ``STARBURST_MAX_TASKS`` tasks, or the wall
clock passes ``STARBURST_STOP_AT`` (epoch seconds, the budget deadline of a plan
with ``max_cost``); then it finishes what it holds and exits 0. At the deadline
it takes no new task: the one running finishes and uploads, the one fetched
ahead is released (made visible again) for another worker or a later session.

While a task is held, the heartbeat keeps its message invisible in windows of
``STARBURST_VISIBILITY`` seconds. If this process dies, the heartbeat stops, the
message becomes visible again and another worker retries the task; after
``max_attempts`` receives SQS moves it to the dead-letter queue.

The *claim* object ``sessions/<sid>/workers/<worker id>.json`` lets a client that
sees this worker stop release the tasks it held at once instead of waiting out
the window::

    {"worker": "<task ARN>", "at": <epoch s>,
     "held": [{"task_id": "...", "attempt": 1, "receipt": "...", "running": false}]}

``held`` lists every message this worker holds, whether fetched ahead, running,
or finished and still uploading; ``running`` is true only for the task whose
items the main thread is executing (so a worker killed for memory is charged
one attempt of that task, not of the one fetched ahead). It is rewritten (one
small PUT) on each receive, and when a task starts running: by the claim
thread for a first attempt, so that a task waits for no PUT, but before the
call starts for a retry, which may be of a call that kills the process at once
(in the middle of the claim thread's PUT, LocalStack keeps a torn object). Every
write snapshots ``held`` under one lock held through its PUT, so
the last claim written lists every message held then. A message is received
with a short visibility, ``RECEIVE_VISIBILITY``, and given the full window only
once the claim listing it is written: a message that a dead worker's pending
long poll still takes (the queue completes the receive with nobody left to read
the reply) is thus lost for seconds, not for the whole window.

``STARBURST_ITEM_TIMEOUT`` limits each call: SIGALRM interrupts the user's code
with an exception that ``except Exception`` does not catch, again every
``REFIRE`` seconds until the call returns, and the item's outcome is a
``TimeoutError``.

SIGTERM (StopTask, Spot interruption) interrupts the running item, lets results
already computed finish uploading, makes every other held message visible again
so another worker picks it up, and exits 143.
"""

from __future__ import annotations

import contextlib
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

#: Seconds a received message stays invisible until its claim is written.
RECEIVE_VISIBILITY = 10
#: Seconds between the repeated SIGALRMs once a call has run past its limit.
REFIRE = 0.25


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM; not an Exception so user code
    catching ``Exception`` does not swallow it."""


class _Timeout(BaseException):
    """Raised in the user's call by SIGALRM once it runs past its limit; not an
    Exception, so ``except Exception`` in user code does not swallow it. Never
    leaves ``Worker._run_item``: the outcome is a ``TimeoutError``."""


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
    stop_at: float = 0.0  # epoch seconds; 0: no budget deadline

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
            stop_at=float(env.get("STARBURST_STOP_AT") or 0),
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
    running: bool = False  # the main thread is executing its items


# What the prefetch thread hands to the main thread instead of a task.
IDLE, LIMIT, GONE, FAILED = "idle", "limit", "queue gone", "failed"
DEADLINE = "deadline"


class Worker:
    def __init__(
        self, settings: Settings, s3: Any, sqs: Any, worker_arn: str, worker_id: str
    ) -> None:
        self.s = settings
        self.s3, self.sqs = s3, sqs
        self.worker_arn, self.worker_id = worker_arn, worker_id
        self.tasks_done = 0
        self.stop_note = ""  # what SIGTERM interrupted, for the exit line
        self._held: dict[str, Held] = {}  # receipt -> Held
        self._held_lock = threading.Lock()
        # Held across snapshot + PUT, so the last claim PUT to land is the
        # newest snapshot: it lists every message added before it.
        self._claim_lock = threading.Lock()
        self._running: Held | None = None
        self._ready: queue.Queue[Any] = queue.Queue()
        self._permits = threading.Semaphore(2)  # the running task + one ahead
        self._uploads: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._claim_due = threading.Event()
        self._stop = threading.Event()
        self._busy = False
        self._last_activity = time.monotonic()
        # The streams the worker prints to; a call that closes or replaces
        # sys.stdout or sys.stderr gets them back after it returns.
        self._stdio = {"stdout": sys.stdout, "stderr": sys.stderr}
        self._stdio_fd = {
            name: _fileno(s, n) for n, (name, s) in enumerate(self._stdio.items(), 1)
        }
        # Copies of their descriptors, for a call that closes the descriptor.
        self._stdio_copy = {name: _dup(fd) for name, fd in self._stdio_fd.items()}

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Process tasks until idle, the queue is gone, the task limit or the
        budget deadline."""
        threads = [
            threading.Thread(target=f, daemon=True, name=f"starburst-{n}")
            for n, f in (
                ("prefetch", self._prefetch_loop),
                ("upload", self._upload_loop),
                ("heartbeat", self._heartbeat_loop),
                ("claim", self._claim_loop),
            )
        ]
        self._uploader = threads[1]
        job: tuple[Held, bytes] | None = None  # computed, not yet with the uploader
        released = 0
        try:
            self._last_activity = time.monotonic()
            for t in threads:
                t.start()
            while True:
                item = self._ready.get()
                if not isinstance(item, str) and self._past_deadline():
                    self._release(item[0])
                    released, item = 1, DEADLINE
                if isinstance(item, str):
                    break
                held, data = item
                self._busy = True
                try:
                    self._start(held)
                    if held.attempt > 1:
                        # A retry may be of a call that kills the process at
                        # once; its claim must say it ran before it runs, or
                        # the PUT is cut off (LocalStack then keeps a torn
                        # object) and the loss is not charged to it.
                        self._write_claim()
                    else:
                        self._claim_due.set()  # off this thread: no delay per task
                    job = self._execute(held, data)
                    self._end(held)
                finally:
                    self._busy = False
                    self._last_activity = time.monotonic()
                    self._permits.release()
                if job is not None:
                    self._uploads.put(job)
                    job = None
        except Stopped:
            self._stop.set()
            if job is not None:
                self._uploads.put(job)
            self._finish_uploads()
            self.stop_note = _sigterm_line(self._running, self._release_all())
            raise
        self._stop.set()
        self._finish_uploads()
        released += self._release_all()
        why = {
            IDLE: f"idle for {self.s.idle_timeout:g} s",
            LIMIT: f"received {self.s.max_tasks} tasks (the per-worker limit)",
            GONE: "the session's queue is gone",
            FAILED: "the queue could not be read",
            DEADLINE: "stopped at its budget deadline "
            f"(STARBURST_STOP_AT={self.s.stop_at:.0f}, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.s.stop_at))} UTC)"
            " and took no new task",
        }[item]
        if released:
            why += f"; released {released} task(s) it had not started for retry"
        log.info("%s; exiting after %d tasks", why, self.tasks_done)
        return 1 if item == FAILED else 0

    def handle(self, message: dict[str, Any]) -> None:
        """Process one received message start to end, in this thread."""
        held = self._hold(message)
        if held is None:
            return
        data = self._fetch(held)
        if data is None:
            return
        try:
            self._start(held)
            self._write_claim()
            job = self._execute(held, data)
            self._end(held)
        except Stopped:
            self._release(held)
            raise
        if job is not None:
            self._upload(*job)

    # -- stages -------------------------------------------------------------

    def _past_deadline(self) -> bool:
        return bool(self.s.stop_at) and time.time() >= self.s.stop_at

    def _prefetch_loop(self) -> None:
        received = errors = 0
        while not self._stop.is_set():
            if self.s.max_tasks and received >= self.s.max_tasks:
                self._ready.put(LIMIT)
                return
            self._permits.acquire()
            if self._stop.is_set():
                return
            if self._past_deadline():
                self._ready.put(DEADLINE)
                return
            # A poll started while busy ends within the idle timeout of the
            # task's end, so an idle worker exits on time.
            idle_for = 0.0 if self._busy else time.monotonic() - self._last_activity
            wait = max(1, min(20, int(self.s.idle_timeout - idle_for + 0.999)))
            if self.s.stop_at:  # a poll ends by the deadline (rounded up to 1 s)
                wait = min(wait, max(1, int(self.s.stop_at - time.time() + 0.999)))
            try:
                resp = self.sqs.receive_message(
                    QueueUrl=self.s.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=wait,
                    VisibilityTimeout=min(RECEIVE_VISIBILITY, self.s.visibility),
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
                if held is None:
                    self._permits.release()
                    continue
                # Checked after the hold: either the main thread's final
                # release sees this message or this check sees the stop.
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

    def _hold(self, message: dict[str, Any]) -> Held | None:
        """Claim a received message, then make it invisible for the full window;
        None (and left to another worker) if its visibility cannot be changed."""
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
        held = Held(message["Body"], attempt, message["ReceiptHandle"])
        with self._held_lock:
            self._held[held.receipt] = held
        self._write_claim()
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.s.queue_url,
                ReceiptHandle=held.receipt,
                VisibilityTimeout=self.s.visibility,
            )
        except Exception as exc:  # it reappears within RECEIVE_VISIBILITY s
            with self._held_lock:
                self._held.pop(held.receipt, None)
            log.warning(
                "task %s: could not extend the message's visibility timeout (%s); "
                "left for another worker",
                held.task_id,
                exc,
            )
            return None
        return held

    def _write_claim(self) -> None:
        key = claim_key(self.s.prefix, self.s.session, self.worker_id)
        with self._claim_lock:
            with self._held_lock:
                claims = [dict(vars(h)) for h in self._held.values()]
            doc = {"worker": self.worker_arn, "at": time.time(), "held": claims}
            try:
                self.s3.put_object(
                    Bucket=self.s.bucket, Key=key, Body=json.dumps(doc).encode()
                )
            except Exception as exc:  # the claim speeds up recovery; not needed
                log.warning(
                    "could not write the claim s3://%s/%s: %s", self.s.bucket, key, exc
                )

    def _start(self, held: Held) -> None:
        """Mark ``held`` as the running task; the next claim written shows it."""
        with self._held_lock:
            held.running = True
            self._running = held

    def _claim_loop(self) -> None:
        """Rewrite the claim when a task starts running. The event is cleared
        before the snapshot, so a start is never left out of the last claim."""
        while True:
            self._claim_due.wait()
            self._claim_due.clear()
            if self._stop.is_set():
                return
            self._write_claim()

    def _end(self, held: Held) -> None:
        """Its items have run; the next claim written shows it not running."""
        with self._held_lock:
            held.running = False
            self._running = None

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
        self._claim_due.set()  # the claim thread sees the stop and returns
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

    def _release_all(self) -> int:
        """Give back what this worker holds but will not finish; how many."""
        with self._held_lock:
            left = list(self._held.values())
        for held in left:
            self._release(held)
        return len(left)

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
        timer = _Timer(self.s.item_timeout)
        try:
            fn, args, kwargs = load()
            timer.arm()
            try:
                value = _call(fn, args, kwargs)
            finally:
                timer.disarm()
        except Stopped:
            raise
        except BaseException as exc:  # the user's exception becomes the outcome
            self._restore_stdio()
            if timer.fired:
                return self._timed_out(exc, time.perf_counter() - t0)
            return envelope.failure(exc, time.perf_counter() - t0)
        self._restore_stdio()
        if timer.fired:  # the call caught every interruption and returned
            return self._timed_out(None, time.perf_counter() - t0)
        return envelope.success(value, time.perf_counter() - t0)

    def _restore_stdio(self) -> None:
        """Give sys.stdout and sys.stderr back to the worker after a call that
        closed, detached or replaced them (or closed their descriptors), so
        that its own lines and the next call's prints still reach the log.
        Python's standard streams do not close their descriptors: a closed
        stream is reopened on the same one, restored first if it was closed."""
        for name in self._stdio:
            try:
                self._restore_stream(name)
            except Exception as exc:  # never lose the call's outcome over it
                with contextlib.suppress(Exception):
                    log.warning("could not restore sys.%s: %s", name, exc)

    def _restore_stream(self, name: str) -> None:
        stream = self._stdio[name]
        fd, copy = self._stdio_fd[name], self._stdio_copy[name]
        if copy is not None:
            try:
                os.fstat(fd)
            except OSError:  # the call closed the descriptor itself
                with contextlib.suppress(OSError):
                    os.dup2(copy, fd)
        if not _usable(stream):
            old = stream
            try:
                stream = open(  # noqa: SIM115 - kept for the life of the process
                    fd,
                    "w",
                    buffering=1,
                    encoding="utf-8",
                    errors="backslashreplace",
                    closefd=False,
                )
            except OSError:
                return  # nothing left to write to; the next call may fix it
            self._stdio[name] = stream
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and (
                    handler.stream is old
                ):
                    # Not setStream: it flushes the old, closed stream.
                    handler.acquire()
                    try:
                        handler.stream = stream
                    finally:
                        handler.release()
        if getattr(sys, name) is not stream:
            setattr(sys, name, stream)

    def _timed_out(self, exc: BaseException | None, seconds: float) -> envelope.Outcome:
        """A TimeoutError outcome, with the traceback of where the call was when
        it was interrupted (if it did not swallow the interruption)."""
        err = TimeoutError(f"the call ran past Plan(timeout={self.s.item_timeout:g} s)")
        if exc is None:
            return envelope.failure(err, seconds, tb_text="")
        return envelope.failure(err.with_traceback(exc.__traceback__), seconds)


def _usable(stream: Any) -> bool:
    """Whether ``stream`` can still be written (not closed nor detached)."""
    try:
        return stream is not None and not stream.closed
    except Exception:  # e.g. "underlying buffer has been detached"
        return False


def _dup(fd: int) -> int | None:
    try:
        return os.dup(fd)
    except OSError:
        return None


def _fileno(stream: Any, default: int) -> int:
    try:
        return int(stream.fileno())
    except (AttributeError, OSError, ValueError):  # not a file (e.g. captured)
        return default


def _call(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The user's call; ``_Timer`` raises only while this frame is on the stack."""
    return fn(*args, **kwargs)


class _Timer:
    """The per-call limit: SIGALRM after ``seconds`` (0: never), then every
    ``REFIRE`` seconds until disarmed, so a call that catches the interruption
    is interrupted again.

    The handler raises ``_Timeout`` only while ``_call`` is on the main thread's
    stack; a signal handled in the worker's own code (after the call returned,
    before ``disarm``) only sets ``fired``. So ``_Timeout`` cannot escape
    ``Worker._run_item``, whose ``try`` encloses every ``_call``.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._armed = False

    def arm(self) -> None:
        if self.seconds > 0:
            self._armed = True
            signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds, REFIRE)

    def disarm(self) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._armed = False  # a signal still pending is now a no-op

    def _fire(self, signum: int, frame: Any) -> None:
        if not self._armed:
            return
        self.fired = True
        while frame is not None:
            if frame.f_code is _call.__code__:
                raise _Timeout()
            frame = frame.f_back


def _sigterm_line(running: Held | None, released: int) -> str:
    """The exit line after SIGTERM; ``released`` counts the running task too."""
    if running is not None:
        line = (
            f"stopped by SIGTERM; the running task {running.task_id} was released "
            "for retry"
        )
        if released > 1:
            line += f", with {released - 1} other held task(s)"
        return line
    if released:
        return (
            "stopped by SIGTERM with no task running; released "
            f"{released} held task(s) for retry"
        )
    return "stopped by SIGTERM with no task running or held"


def _queue_gone(exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    return "NonExistentQueue" in code or "QueueDoesNotExist" in code


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Stopped()


def _setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Their INFO lines ("Found credentials in environment variables") are noise
    # in every worker's log.
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main() -> int:
    _setup_logging()
    settings = Settings.from_env(dict(os.environ))
    config = Config(
        retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=4
    )
    s3 = boto3.client("s3", region_name=settings.region, config=config)
    sqs = boto3.client("sqs", region_name=settings.region, config=config)
    arn, worker_id = own_identity()
    worker = Worker(settings, s3, sqs, arn, worker_id)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        print(
            f"starburst worker {__version__} (Python {envelope.PYTHON}) "
            f"for session {settings.session} as {worker_id}",
            flush=True,
        )
        return worker.run()
    except Stopped:
        print(worker.stop_note or _sigterm_line(None, 0), flush=True)
        return 143
