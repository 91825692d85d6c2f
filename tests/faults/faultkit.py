"""Making the in-process fake cloud misbehave on cue, for the fault tests.

``RunTaskScript`` answers a plan's RunTask calls from a script (AWS errors,
200-with-failures, partial starts) before moto sees them. ``Puppet`` plays
Fargate by hand: the fake cloud starts no worker thread, and the test decides
what each task does (hold a message and die, exit cleanly, run for real).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from starburst_worker import worker as worker_mod
from starburst_worker.worker import claim_key

REGION = "us-east-1"
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
CAPACITY = (
    "Capacity is unavailable at this time. Please try again later or in a "
    "different availability zone"
)
LIMIT = "You've reached the limit on the number of tasks you can run concurrently"


class RunTaskScript:
    """Answers RunTask from ``script``, one entry per call, then lets moto answer:

    ``("error", code, message)``   an AWS error response (HTTP 400)
    ``("failures", reason)``       HTTP 200, no task, one failure per task asked
    ``("partial", n, reason)``     moto starts ``n`` tasks, the rest are failures
    """

    def __init__(self, client: Any, script: list[tuple[Any, ...]]) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []  # count, provider, answer
        self._lock = threading.Lock()
        self._partial: list[dict[str, str]] = []
        client.meta.events.register("before-call.ecs.RunTask", self._before)
        client.meta.events.register("after-call.ecs.RunTask", self._after)

    def _before(self, params: dict[str, Any], **kwargs: Any) -> Any:
        body = json.loads(params["body"])
        with self._lock:
            entry = self.script.pop(0) if self.script else ("moto",)
            provider = (
                body.get("launchType")
                or body["capacityProviderStrategy"][0]["capacityProvider"]
            )
            self.calls.append(
                {"count": body["count"], "provider": provider, "answer": entry[0]}
            )
        if entry[0] == "error":
            return AWSResponse("", 400, {}, None), {
                "Error": {"Code": entry[1], "Message": entry[2]},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        if entry[0] == "failures":
            return AWSResponse("", 200, {}, None), {
                "tasks": [],
                "failures": [{"reason": entry[1]}] * body["count"],
                "ResponseMetadata": {"HTTPStatusCode": 200},
            }
        if entry[0] == "partial":
            missing = body["count"] - entry[1]
            body["count"] = entry[1]
            params["body"] = json.dumps(body).encode()
            with self._lock:
                self._partial = [{"reason": entry[2]}] * missing
        return None

    def _after(self, parsed: dict[str, Any], **kwargs: Any) -> None:
        with self._lock:
            extra, self._partial = self._partial, []
        if extra:
            parsed.setdefault("failures", []).extend(extra)

    def answers(self) -> list[str]:
        return [c["answer"] for c in self.calls]


def settings_of(task: Any) -> worker_mod.Settings:
    env = {
        e["name"]: e["value"]
        for o in task.overrides.get("containerOverrides", [])
        for e in o.get("environment", [])
    }
    return worker_mod.Settings.from_env(env)


class Puppet:
    """Calls ``act(puppet, task)`` in a thread for every task RunTask starts."""

    def __init__(self, fargate: Any, act: Any) -> None:
        self.fargate, self.act = fargate, act
        self.seen: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            for task in self.fargate.tasks():
                if task.task_arn in self.seen or task.last_status == "STOPPED":
                    continue
                self.seen.append(task.task_arn)
                threading.Thread(target=self._act, args=(task,), daemon=True).start()

    def _act(self, task: Any) -> None:
        try:
            self.act(self, task)
        except BaseException as exc:  # surfaced by the test through .errors
            self.errors.append(exc)

    # -- what a task may do -------------------------------------------------

    @staticmethod
    def hold(task: Any, timeout: float = 30) -> dict[str, Any]:
        """Receive one task id as a worker would, and write the worker's claim."""
        return Puppet.hold_many(task, 1, timeout)[0]

    @staticmethod
    def hold_many(task: Any, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Receive ``n`` task ids as a worker would: the first one running, the
        others fetched ahead; the claim lists them all."""
        s = settings_of(task)
        sqs = boto3.client("sqs", region_name=REGION)
        deadline = time.monotonic() + timeout
        held: list[dict[str, Any]] = []
        while len(held) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(held)} of {n} messages to hold")
            messages = sqs.receive_message(
                QueueUrl=s.queue_url,
                MaxNumberOfMessages=1,
                VisibilityTimeout=60,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if not messages:
                time.sleep(0.05)
                continue
            m = messages[0]
            held.append(
                {
                    "task_id": m["Body"],
                    "receipt": m["ReceiptHandle"],
                    "attempt": int(m["Attributes"]["ApproximateReceiveCount"]),
                    "running": not held,
                }
            )
            worker_id = task.task_arn.rsplit("/", 1)[-1]
            boto3.client("s3", region_name=REGION).put_object(
                Bucket=s.bucket,
                Key=claim_key(s.prefix, s.session, worker_id),
                Body=json.dumps(
                    {"worker": task.task_arn, "at": time.time(), "held": held}
                ).encode(),
            )
        return held

    @staticmethod
    def run_worker(task: Any) -> int:
        """Run the real worker loop for this task, then mark it STOPPED."""
        s = settings_of(task)
        w = worker_mod.Worker(
            s,
            boto3.client("s3", region_name=REGION),
            boto3.client("sqs", region_name=REGION),
            task.task_arn,
            task.task_arn.rsplit("/", 1)[-1],
        )
        code = w.run()
        Puppet.stop(task, exit_code=code)
        return code

    @staticmethod
    def stop(
        task: Any,
        *,
        exit_code: int | None = 0,
        stop_code: str = "EssentialContainerExited",
        reason: str = "Essential container in task exited",
        container_reason: str = "",
        started: bool = True,
    ) -> None:
        now = datetime.now(UTC)
        if not started:
            task.started_at = None
        task.stop_code = stop_code
        task.stopped_reason = reason
        task.stopping_at = task.stopped_at = now
        container = task.containers[0]
        container.exitCode = exit_code  # the attribute moto serializes
        container.last_status = "STOPPED"
        if container_reason:
            container.reason = container_reason
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
