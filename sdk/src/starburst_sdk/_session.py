"""A session's cloud state: its S3 keys, its SQS queues and its worker registry.

S3, under the deployment's prefix::

    sessions/<session>/session.json             the registry (this module)
    sessions/<session>/tasks/<task>.msgpack     task envelopes (the client writes)
    sessions/<session>/results/<task>.msgpack   result envelopes (workers write)
    sessions/<session>/workers/<worker>.json    what each worker holds now

SQS: ``<queue_prefix>-<session>`` carries task ids; its dead-letter queue
``<queue_prefix>-<session>-dlq`` receives a task id after ``max_attempts``
receives without a result.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from starburst_worker.worker import claim_key, result_key, task_key

from ._aws import error_code

__all__ = ["claim_key", "result_key", "task_key"]

SEND_BATCH = 10  # SendMessageBatch's limit


def new_session_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def session_prefix(prefix: str, session: str) -> str:
    return f"{prefix}sessions/{session}/"


def registry_key(prefix: str, session: str) -> str:
    return f"{session_prefix(prefix, session)}session.json"


def cancel_key(prefix: str, session: str) -> str:
    """Written by ``starburst-cli cancel`` before it stops anything; unlike
    session.json, which the client rewrites, nothing overwrites it."""
    return f"{session_prefix(prefix, session)}cancelled.json"


def results_prefix(prefix: str, session: str) -> str:
    return f"{session_prefix(prefix, session)}results/"


# ---------------------------------------------------------------------------
# Queues


@dataclass(frozen=True)
class SessionQueues:
    """The task queue, its dead-letter queue, and the queue on which workers
    announce each result they wrote (so the client need not poll S3)."""

    url: str
    dlq_url: str
    done_url: str = ""

    @classmethod
    def create(
        cls,
        sqs: Any,
        name: str,
        *,
        max_receives: int,
        visibility: int,
        tags: dict[str, str],
    ) -> SessionQueues:
        """Create the three queues (idempotent); a task message received
        ``max_receives`` times moves to the dead-letter queue."""
        retention = {"MessageRetentionPeriod": str(4 * 24 * 3600)}
        dlq_url = sqs.create_queue(
            QueueName=f"{name}-dlq", Attributes=retention, tags=tags
        )["QueueUrl"]
        done_url = sqs.create_queue(
            QueueName=f"{name}-done", Attributes=retention, tags=tags
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(
            QueueUrl=dlq_url, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": str(visibility),
                **retention,
                "RedrivePolicy": json.dumps(
                    {
                        "deadLetterTargetArn": dlq_arn,
                        "maxReceiveCount": str(max_receives),
                    }
                ),
            },
            tags=tags,
        )["QueueUrl"]
        return cls(url, dlq_url, done_url)

    @classmethod
    def find(cls, sqs: Any, name: str) -> SessionQueues:
        """An existing session's queues; raises when the task queue is gone."""
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        dlq_url = sqs.get_queue_url(QueueName=f"{name}-dlq")["QueueUrl"]
        try:
            done_url = sqs.get_queue_url(QueueName=f"{name}-done")["QueueUrl"]
        except Exception:
            done_url = ""
        return cls(url, dlq_url, done_url)

    def urls(self) -> list[str]:
        return [u for u in (self.url, self.dlq_url, self.done_url) if u]

    def send(self, sqs: Any, task_ids: list[str]) -> list[str]:
        """Send task ids in batches of ten. -> ids that failed to send."""
        failed: list[str] = []
        for i in range(0, len(task_ids), SEND_BATCH):
            batch = task_ids[i : i + SEND_BATCH]
            resp = sqs.send_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(n), "MessageBody": tid} for n, tid in enumerate(batch)
                ],
            )
            failed.extend(batch[int(f["Id"])] for f in resp.get("Failed", []))
        return failed

    def delete(self, sqs: Any) -> None:
        for url in self.urls():
            try:
                sqs.delete_queue(QueueUrl=url)
            except Exception as exc:
                if "NonExistentQueue" not in error_code(exc):
                    raise


# ---------------------------------------------------------------------------
# Registry


@dataclass
class WorkerRecord:
    """One Fargate task that ran (or tried to run) the worker loop."""

    arn: str
    launched: float
    wave: int
    status: str = "PROVISIONING"
    capacity_provider: str = "FARGATE"
    started: float | None = None
    stopped: float | None = None
    pull_started: float | None = None  # Fargate bills from here
    stop_code: str | None = None
    reason: str | None = None
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.status != "STOPPED"

    @property
    def task_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    def update(self, desc: dict[str, Any]) -> None:
        self.status = desc.get("lastStatus", self.status)
        self.capacity_provider = desc.get(
            "capacityProviderName", self.capacity_provider
        )
        self.started = _ts(desc.get("startedAt")) or self.started
        self.pull_started = _ts(desc.get("pullStartedAt")) or self.pull_started
        self.stopped = _ts(desc.get("stoppedAt")) or self.stopped
        self.stop_code = desc.get("stopCode", self.stop_code)
        self.reason = desc.get("stoppedReason", self.reason)
        for container in desc.get("containers", []):
            if container.get("exitCode") is not None:
                self.exit_code = container["exitCode"]
            if container.get("reason"):
                self.reason = (
                    f"{self.reason}: {container['reason']}"
                    if (self.reason and container["reason"] not in self.reason)
                    else (self.reason or container["reason"])
                )
        if self.status == "STOPPED" and self.stopped is None:
            self.stopped = time.time()

    @property
    def failed(self) -> bool:
        """Stopped in a way that may have lost the task it held."""
        if self.status != "STOPPED":
            return False
        if self.stop_code in ("TaskFailedToStart", "SpotInterruption"):
            return True
        return self.exit_code not in (0, None)


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


@dataclass
class Registry:
    """Every worker of a session, kept in memory and mirrored to session.json."""

    session_id: str
    deployment: str
    created: float
    settings: dict[str, Any]
    workers: dict[str, WorkerRecord] = field(default_factory=dict)
    task_ids: list[str] = field(default_factory=list)
    task_sizes: list[int] = field(default_factory=list)
    state: str = "running"
    #: When a client last wrote session.json (its heartbeat); None if unknown.
    updated: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_worker(self, record: WorkerRecord) -> None:
        with self._lock:
            self.workers[record.arn] = record

    def alive(self) -> list[WorkerRecord]:
        with self._lock:
            return [w for w in self.workers.values() if w.alive]

    def all(self) -> list[WorkerRecord]:
        with self._lock:
            return list(self.workers.values())

    def to_json(self) -> bytes:
        with self._lock:
            doc = {
                "session_id": self.session_id,
                "deployment": self.deployment,
                "created": self.created,
                "state": self.state,
                "settings": self.settings,
                "tasks": [
                    [t, n] for t, n in zip(self.task_ids, self.task_sizes, strict=True)
                ],
                "workers": [asdict(w) for w in self.workers.values()],
                "updated": time.time(),
            }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Registry:
        doc = json.loads(data)
        reg = cls(doc["session_id"], doc["deployment"], doc["created"], doc["settings"])
        reg.state = doc.get("state", "unknown")
        reg.updated = doc.get("updated")
        for t, n in doc.get("tasks", []):
            reg.task_ids.append(t)
            reg.task_sizes.append(n)
        for w in doc.get("workers", []):
            reg.workers[w["arn"]] = WorkerRecord(**w)
        return reg
