"""``starburst-cli cleanup``: remove what finished sessions left behind.

A session is *in use* while its client is attached (its session.json heartbeat
is fresh) or ECS runs workers for it and it has not ended: cleanup never
touches it, whatever ``--older-than`` says. A session whose registry says it
is still going is also left alone while it is younger than the cutoff.
Everything else is fair game, in this order:

1. workers (ECS tasks) of sessions that ended, have no registry, or are older
   than the cutoff: StopTask;
2. the queues of inactive sessions (names start with the config's
   ``queue_prefix``): DeleteQueue;
3. the S3 objects of inactive sessions older than the cutoff;
4. revisions of the deployment's task-definition families no live task uses,
   except each family's newest revision while it is younger than the cutoff;
5. images in the deployment's ECR repository older than the cutoff, keeping the
   newest ``--keep-images`` and the deployment's ``worker_image``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer

from starburst_sdk._aws import error_code

from . import _output as out
from ._fleet import ENDED, Fleet, Session, Task

NEW_SESSION_GRACE = 600.0


@dataclass
class Action:
    kind: str  # worker | queue | session | task-definition | image
    target: str
    reason: str
    done: bool = False
    error: str | None = None


def _old(session: Session, cutoff: float) -> bool:
    created = session.created
    return created is not None and created < cutoff


def _plan(fleet: Fleet, cutoff: float, keep_images: int) -> list[Action]:
    tasks = fleet.tasks()
    ids = fleet.session_ids()
    queues = fleet.queue_urls()
    queue_ids = [s for s in map(fleet.queue_session, queues) if s]
    sessions = {s.session_id: s for s in fleet.sessions(ids + queue_ids, tasks)}
    actions: list[Action] = []

    for task in tasks:
        session = sessions.get(task.session or "")
        if session is None:
            continue  # not a starburst worker
        why = _orphan_reason(session, cutoff)
        if why and task.alive:
            actions.append(
                Action("worker", task.arn, f"session {session.session_id} {why}")
            )

    for name in sorted(queues):
        sid = fleet.queue_session(name)
        why = sid and _orphan_reason(sessions[sid], cutoff)
        if why:
            actions.append(Action("queue", queues[name], f"session {sid} {why}"))
    for sid in ids:
        session = sessions[sid]
        if _old(session, cutoff) and _orphan_reason(session, cutoff):
            actions.append(
                Action(
                    "session",
                    sid,
                    f"{session.state}, created {out.clock(session.created)}",
                )
            )

    actions.extend(_task_definitions(fleet, tasks, cutoff))
    actions.extend(_images(fleet, tasks, cutoff, keep_images))
    return actions


def _orphan_reason(session: Session, cutoff: float) -> str | None:
    if session.in_use:
        return None
    if session.registry is None:
        # The SDK writes session.json right after creating the queues: give a
        # session that is being opened now a grace period.
        created = session.created
        if created is not None and created > time.time() - NEW_SESSION_GRACE:
            return None
        return "has no session.json"
    if session.state in ENDED:
        return f"is {session.state}"
    if _old(session, cutoff):
        return "is older than the cutoff"
    return None


def _task_definitions(fleet: Fleet, tasks: list[Task], cutoff: float) -> list[Action]:
    ecs = fleet.clients.ecs
    in_use = {t.task_definition for t in tasks if t.alive}
    prefix = f"starburst-{fleet.deployment}-"
    families: list[str] = []
    for page in ecs.get_paginator("list_task_definition_families").paginate(
        familyPrefix=prefix, status="ACTIVE"
    ):
        families.extend(f for f in page.get("families", []) if f.startswith(prefix))
    actions = []
    for family in families:
        arns: list[str] = []
        for page in ecs.get_paginator("list_task_definitions").paginate(
            familyPrefix=family, status="ACTIVE", sort="DESC"
        ):
            arns.extend(
                a
                for a in page.get("taskDefinitionArns", [])
                if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family
            )
        arns.sort(key=lambda a: int(a.rsplit(":", 1)[-1]), reverse=True)  # newest first
        for i, arn in enumerate(arns):
            if arn in in_use:
                continue
            if i == 0:
                registered = ecs.describe_task_definition(taskDefinition=arn)[
                    "taskDefinition"
                ].get("registeredAt")
                if registered is None or registered.timestamp() >= cutoff:
                    continue  # the revision the next session will reuse
            actions.append(
                Action(
                    "task-definition",
                    arn,
                    "no live worker uses it"
                    + ("" if i == 0 else "; not the newest revision"),
                )
            )
    return actions


def _images(fleet: Fleet, tasks: list[Task], cutoff: float, keep: int) -> list[Action]:
    cfg = fleet.config
    if "/" not in cfg.ecr_repository_url:
        return []
    repo = cfg.ecr_repository_url.split("/", 1)[1]
    ecr = fleet.clients.ecr
    images: list[dict[str, Any]] = []
    try:
        for page in ecr.get_paginator("describe_images").paginate(repositoryName=repo):
            images.extend(page.get("imageDetails", []))
    except Exception as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return []
        raise
    wanted = {cfg.worker_image.rsplit(":", 1)[-1]} if cfg.worker_image else set()
    images.sort(key=lambda d: d.get("imagePushedAt", 0), reverse=True)
    actions = []
    for detail in images[keep:]:
        tags = set(detail.get("imageTags", []))
        pushed = detail.get("imagePushedAt")
        if tags & wanted or pushed is None or pushed.timestamp() >= cutoff:
            continue
        actions.append(
            Action(
                "image",
                f"{repo}@{detail['imageDigest']}",
                f"pushed {out.clock(pushed.timestamp())}, tags "
                f"{', '.join(sorted(tags)) or 'none'}",
            )
        )
    return actions


def _apply(fleet: Fleet, action: Action) -> None:
    c = fleet.clients
    if action.kind == "worker":
        fleet.stop([action.target], f"starburst-cli cleanup: {action.reason}")
    elif action.kind == "queue":
        try:
            c.sqs.delete_queue(QueueUrl=action.target)
        except Exception as exc:
            if "NonExistentQueue" not in error_code(exc):
                raise
    elif action.kind == "session":
        fleet.delete_keys(list(fleet.session_keys(action.target)))
    elif action.kind == "task-definition":
        c.ecs.deregister_task_definition(taskDefinition=action.target)
    elif action.kind == "image":
        repo, digest = action.target.split("@", 1)
        c.ecr.batch_delete_image(
            repositoryName=repo, imageIds=[{"imageDigest": digest}]
        )
    action.done = True


@out.errors()
def cleanup(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="age cutoff for sessions, task definitions and images "
            "(e.g. 7d, 12h, 0)",
        ),
    ] = "7d",
    keep_images: Annotated[
        int, typer.Option(min=0, help="newest images to keep whatever their age")
    ] = 3,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="list what would be removed; change nothing"),
    ] = False,
    deployment: out.Deployment = "default",
    as_json: out.AsJson = False,
) -> None:
    """Stop orphaned workers; delete old sessions, queues, task definitions and images."""
    cutoff = time.time() - out.parse_duration(older_than)
    fleet = Fleet(deployment)
    actions = _plan(fleet, cutoff, keep_images)
    if not dry_run:
        for action in actions:
            try:
                _apply(fleet, action)
            except Exception as exc:  # report it and go on with the rest
                action.error = str(exc)
    failed = [a for a in actions if a.error]
    if as_json:
        out.print_json(
            {
                "deployment": deployment,
                "dry_run": dry_run,
                "older_than": older_than,
                "actions": [asdict(a) for a in actions],
            }
        )
    elif not actions:
        typer.echo(f"nothing to clean up in deployment {deployment!r}")
    else:
        verb = "would remove" if dry_run else "removed"
        out.table(
            ("", "kind", "target", "why"),
            [
                (
                    "FAILED" if a.error else ("-" if dry_run else "done"),
                    a.kind,
                    a.target,
                    a.error or a.reason,
                )
                for a in actions
            ],
            title=f"{verb} {len(actions) - len(failed)} item(s)"
            + (" (dry run)" if dry_run else ""),
        )
    if failed:
        raise out.fail(f"{len(failed)} item(s) could not be removed; see above")


def register(app: typer.Typer) -> None:
    app.command()(cleanup)
