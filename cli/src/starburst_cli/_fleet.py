"""The fleet as the CLI sees it: a deployment's sessions (S3) and workers (ECS).

A session is found in two places that may disagree: its registry,
``<prefix>sessions/<id>/session.json``, which the SDK writes, and the ECS tasks
tagged ``starburst:session=<id>`` (and started by ``starburst-<id>``). A client
that crashed leaves a registry that says "running" and workers that still run
until their idle timeout; the commands here read both and trust ECS for what
runs now.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starburst_sdk import _cost, _ecs
from starburst_sdk._aws import Clients, error_code
from starburst_sdk._config import DeploymentConfig, load_config
from starburst_sdk._plan import HEARTBEAT_INTERVAL
from starburst_sdk._session import (
    Registry,
    cancel_key,
    registry_key,
    session_prefix,
)

#: Registry states after which a session's workers should all have stopped.
ENDED = frozenset({"ended", "broken", "cancelled", "over budget", "aborted"})
SESSION_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]+$")
LIVE = ("PROVISIONING", "PENDING", "ACTIVATING", "RUNNING")
#: A running session whose client has not written session.json for this long
#: (five of the SDK's heartbeats) has lost its client.
CLIENT_STALE = 5 * HEARTBEAT_INTERVAL


@dataclass
class Task:
    """One ECS task of the deployment's cluster, as DescribeTasks tells it."""

    arn: str
    session: str | None
    status: str
    desired: str
    task_definition: str
    cpu: float
    capacity_provider: str
    started: float | None
    created: float | None

    @property
    def task_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @property
    def alive(self) -> bool:
        return self.status != "STOPPED" and self.desired != "STOPPED"

    @classmethod
    def from_description(cls, desc: dict[str, Any]) -> Task:
        tags = {t.get("key"): t.get("value") for t in desc.get("tags", [])}
        session = tags.get("starburst:session")
        started_by = desc.get("startedBy", "")
        if not session and started_by.startswith("starburst-"):
            session = started_by.removeprefix("starburst-")
        return cls(
            arn=desc["taskArn"],
            session=session or None,
            status=desc.get("lastStatus", "?"),
            desired=desc.get("desiredStatus", "?"),
            task_definition=desc.get("taskDefinitionArn", ""),
            cpu=int(desc.get("cpu", 0) or 0) / 1024,
            capacity_provider=desc.get("capacityProviderName")
            or desc.get("launchType", "FARGATE"),
            started=_ts(desc.get("startedAt")),
            created=_ts(desc.get("createdAt")),
        )


@dataclass
class Session:
    """One session: its registry (``None`` when session.json is gone) and the
    tasks ECS runs for it now."""

    session_id: str
    registry: Registry | None
    tasks: list[Task] = field(default_factory=list)

    @property
    def state(self) -> str:
        """The registry's state; ``abandoned`` for a ``running`` session whose
        client has gone (no heartbeat) and whose workers have all stopped:
        ``Plan.attach`` collects its results, ``cleanup`` removes it."""
        if self.registry is None:
            return "unknown"
        state = self.registry.state
        if state == "running" and not self.client_alive and not self.live_tasks:
            return "abandoned"
        return state

    @property
    def client_alive(self) -> bool:
        """A client is attached and wrote its heartbeat recently."""
        reg = self.registry
        if reg is None or reg.state != "running":
            return False
        last = reg.updated if reg.updated is not None else reg.created
        return last > time.time() - CLIENT_STALE

    @property
    def in_use(self) -> bool:
        """A live client, or live workers of a session that has not ended:
        ``cleanup`` leaves it alone whatever its age."""
        if self.client_alive:
            return True
        return (
            self.registry is not None
            and bool(self.live_tasks)
            and self.state not in ENDED
        )

    @property
    def created(self) -> float | None:
        if self.registry is not None:
            return self.registry.created
        return session_time(self.session_id)

    @property
    def live_tasks(self) -> list[Task]:
        return [t for t in self.tasks if t.alive]

    @property
    def active(self) -> bool:
        """Workers run, or the registry says the session is still going."""
        if self.live_tasks:
            return True
        if self.registry is None:
            return False
        return self.state not in ENDED and any(w.alive for w in self.registry.all())


def session_time(session_id: str) -> float | None:
    """The creation time a session id carries (``YYYYmmdd-HHMMSS-xxxxxx``)."""
    try:
        stamp = datetime.strptime(session_id[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC).timestamp()


class Fleet:
    """One deployment: its config document and the clients to read it."""

    def __init__(self, deployment: str, clients: Clients | None = None) -> None:
        self.deployment = deployment
        self.clients = clients or Clients()
        self.config: DeploymentConfig = load_config(self.clients.ssm, deployment)

    # -- sessions in S3 -----------------------------------------------------

    def session_ids(self) -> list[str]:
        """Every session with objects in the bucket, oldest first."""
        cfg = self.config
        root = f"{cfg.prefix}sessions/"
        found: list[str] = []
        for page in self.clients.s3.get_paginator("list_objects_v2").paginate(
            Bucket=cfg.bucket, Prefix=root, Delimiter="/"
        ):
            for common in page.get("CommonPrefixes", []):
                found.append(common["Prefix"][len(root) :].rstrip("/"))
        return sorted(found)

    def registry(self, session_id: str) -> Registry | None:
        cfg = self.config
        try:
            obj = self.clients.s3.get_object(
                Bucket=cfg.bucket, Key=registry_key(cfg.prefix, session_id)
            )
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return Registry.from_json(obj["Body"].read())

    def write_registry(self, registry: Registry) -> None:
        cfg = self.config
        self.clients.s3.put_object(
            Bucket=cfg.bucket,
            Key=registry_key(cfg.prefix, registry.session_id),
            Body=registry.to_json(),
            ContentType="application/json",
        )

    def mark_cancelled(self, session_id: str) -> None:
        cfg = self.config
        self.clients.s3.put_object(
            Bucket=cfg.bucket,
            Key=cancel_key(cfg.prefix, session_id),
            Body=json.dumps({"at": time.time(), "by": "starburst-cli cancel"}).encode(),
            ContentType="application/json",
        )

    def session_keys(self, session_id: str) -> Iterator[str]:
        cfg = self.config
        for page in self.clients.s3.get_paginator("list_objects_v2").paginate(
            Bucket=cfg.bucket, Prefix=session_prefix(cfg.prefix, session_id)
        ):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def count_results(self, session_id: str) -> int:
        prefix = f"{session_prefix(self.config.prefix, session_id)}results/"
        return sum(1 for key in self.session_keys(session_id) if key.startswith(prefix))

    def delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):  # DeleteObjects' limit
            self.clients.s3.delete_objects(
                Bucket=self.config.bucket,
                Delete={
                    "Objects": [{"Key": k} for k in keys[i : i + 1000]],
                    "Quiet": True,
                },
            )

    # -- workers in ECS -----------------------------------------------------

    def tasks(self, *, stopped: bool = False) -> list[Task]:
        """This deployment's tasks in its cluster: live ones, and with
        ``stopped`` the recently stopped ones ECS still remembers."""
        ecs, cluster = self.clients.ecs, self.config.cluster
        arns: list[str] = []
        for status in ("RUNNING", "STOPPED") if stopped else ("RUNNING",):
            for page in ecs.get_paginator("list_tasks").paginate(
                cluster=cluster, desiredStatus=status
            ):
                arns.extend(page.get("taskArns", []))
        descs = self.describe(arns)
        return [
            Task.from_description(d)
            for d in descs
            if _deployment_of(d) in (None, self.deployment)
        ]

    def describe(self, arns: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for batch in _ecs.chunks(list(dict.fromkeys(arns)), _ecs.DESCRIBE_BATCH):
            resp = self.clients.ecs.describe_tasks(
                cluster=self.config.cluster, tasks=list(batch), include=["TAGS"]
            )
            found.extend(resp.get("tasks", []))
        return found

    def sessions(self, ids: list[str], tasks: list[Task]) -> list[Session]:
        """Sessions ``ids`` plus any session ``tasks`` belong to, oldest first."""
        by_id: dict[str, Session] = {}
        for sid in dict.fromkeys(ids + [t.session for t in tasks if t.session]):
            by_id[sid] = Session(sid, self.registry(sid))
        for task in tasks:
            if task.session in by_id:
                by_id[task.session].tasks.append(task)
        return sorted(by_id.values(), key=lambda s: s.session_id)

    def refresh(self, registry: Registry) -> bool:
        """Bring a registry's live workers up to date from DescribeTasks."""
        return _cost.refresh_registry(registry, self.clients.ecs, self.config.cluster)

    def cost(self, registry: Registry) -> _cost.CostReport:
        return _cost.session_cost(registry, now=time.time())

    def stop(self, arns: list[str], reason: str) -> None:
        _ecs.stop_tasks(self.clients.ecs, self.config.cluster, arns, reason)

    # -- queues -------------------------------------------------------------

    def queue_name(self, session_id: str) -> str:
        return f"{self.config.queue_prefix}-{session_id}"

    def queue_urls(self) -> dict[str, str]:
        """name -> URL of every queue whose name starts with ``queue_prefix``."""
        sqs = self.clients.sqs
        urls: list[str] = []
        for page in sqs.get_paginator("list_queues").paginate(
            QueueNamePrefix=self.config.queue_prefix
        ):
            urls.extend(page.get("QueueUrls", []))
        return {u.rsplit("/", 1)[-1]: u for u in urls}

    def queue_session(self, name: str) -> str | None:
        """The session a queue belongs to, from its name, or None."""
        rest = name.removeprefix(f"{self.config.queue_prefix}-")
        for suffix in ("-dlq", "-done"):
            rest = rest.removesuffix(suffix)
        return rest if rest != name and SESSION_ID.match(rest) else None


def _deployment_of(desc: dict[str, Any]) -> str | None:
    for tag in desc.get("tags", []):
        if tag.get("key") == "starburst:deployment":
            return tag.get("value")
    return None


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)
