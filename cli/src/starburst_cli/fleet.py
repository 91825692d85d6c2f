"""``starburst-cli status | sessions | cost | logs | cancel``: see and stop sessions.

Each command reads the deployment's config document, then the session
registries in S3 (``sessions/<id>/session.json``) and the tasks in the
deployment's ECS cluster. Exit codes: 0 ok, 1 an error, 3 nothing found.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer

from starburst_sdk._aws import error_code
from starburst_sdk._session import Registry, WorkerRecord

from . import _output as out
from ._fleet import ENDED, Fleet, Session

Limit = Annotated[int, typer.Option(min=1, help="how many of the newest sessions")]
SessionArg = Annotated[str, typer.Argument(help="the session id, as Plan.session_id")]


def _fleet(deployment: str) -> Fleet:
    return Fleet(deployment)


def _session(fleet: Fleet, session_id: str) -> Registry:
    registry = fleet.registry(session_id)
    if registry is None:
        raise out.not_found(
            f"no session {session_id!r} in deployment {fleet.deployment!r} "
            f"(s3://{fleet.config.bucket}/{fleet.config.prefix}sessions/); "
            "`starburst-cli sessions` lists the known ones"
        )
    return registry


# ---------------------------------------------------------------------------
# status


def _worker_rows(session: Session) -> list[dict[str, Any]]:
    """The session's workers: the registry's records, refreshed from ECS, plus
    live tasks the registry has not recorded yet."""
    rows: list[dict[str, Any]] = []
    known: set[str] = set()
    if session.registry is not None:
        for w in session.registry.all():
            known.add(w.arn)
            rows.append(_worker_doc(w))
    for task in session.tasks:
        if task.arn not in known:
            rows.append(
                {
                    "task_id": task.task_id,
                    "arn": task.arn,
                    "status": task.status,
                    "wave": None,
                    "capacity_provider": task.capacity_provider,
                    "launched": out.iso(task.created),
                    "started": out.iso(task.started),
                    "stopped": None,
                    "reason": None,
                }
            )
    return rows


def _worker_doc(w: WorkerRecord) -> dict[str, Any]:
    return {
        "task_id": w.task_id,
        "arn": w.arn,
        "status": w.status,
        "wave": w.wave,
        "capacity_provider": w.capacity_provider,
        "launched": out.iso(w.launched),
        "started": out.iso(w.started),
        "stopped": out.iso(w.stopped),
        "reason": w.reason,
    }


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    running = sum(1 for r in rows if r["status"] == "RUNNING")
    stopped = sum(1 for r in rows if r["status"] == "STOPPED")
    return {
        "running": running,
        "pending": len(rows) - running - stopped,
        "stopped": stopped,
    }


@out.errors()
def status(
    deployment: out.Deployment = "default",
    limit: Limit = 20,
    as_json: out.AsJson = False,
) -> None:
    """Show active sessions and their workers (running, pending, stopped), by session."""
    fleet = _fleet(deployment)
    tasks = fleet.tasks()
    recent = fleet.session_ids()[-limit:]
    sessions = fleet.sessions(recent, [t for t in tasks if t.session])
    docs = []
    for session in sessions:
        if session.registry is not None and session.state not in ENDED:
            fleet.refresh(session.registry)
        if not session.active:
            continue
        rows = _worker_rows(session)
        waves = [r["wave"] for r in rows if r["wave"] is not None]
        docs.append(
            {
                "session_id": session.session_id,
                "state": session.state,
                "created": out.iso(session.created),
                "wave": max(waves, default=0),
                "workers": _counts(rows),
                "worker_list": rows,
            }
        )
    others = [t for t in tasks if not t.session]
    report = {
        "deployment": deployment,
        "cluster": fleet.config.cluster,
        "sessions": docs,
        "workers": {
            k: sum(d["workers"][k] for d in docs)
            for k in ("running", "pending", "stopped")
        },
        "other_tasks": [
            {"task_id": t.task_id, "arn": t.arn, "status": t.status} for t in others
        ],
    }
    if as_json:
        out.print_json(report)
        return
    w = report["workers"]
    typer.echo(
        f"deployment {deployment!r}, cluster {fleet.config.cluster}: "
        f"{len(docs)} active session(s), {w['running']} worker(s) running, "
        f"{w['pending']} pending"
    )
    for doc in docs:
        c = doc["workers"]
        rows = [
            (
                r["task_id"],
                r["status"],
                r["wave"] or "-",
                r["capacity_provider"],
                out.clock(_epoch(r["started"])),
                out.clock(_epoch(r["stopped"])),
                r["reason"] or "",
            )
            for r in doc["worker_list"]
        ]
        out.table(
            ("worker", "status", "wave", "capacity", "started", "stopped", "reason"),
            rows,
            title=f"\nsession {doc['session_id']} ({doc['state']}, wave "
            f"{doc['wave']}): {c['running']} running, {c['pending']} "
            f"pending, {c['stopped']} stopped",
        )
    if others:
        typer.echo(
            f"\n{len(others)} task(s) in the cluster belong to no starburst "
            "session: " + ", ".join(t.task_id for t in others)
        )


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


# ---------------------------------------------------------------------------
# sessions and cost


def _session_doc(fleet: Fleet, session: Session) -> dict[str, Any]:
    reg = session.registry
    doc: dict[str, Any] = {
        "session_id": session.session_id,
        "state": session.state,
        "created": out.iso(session.created),
        "live_workers": len(session.live_tasks),
    }
    if reg is None:
        doc.update(
            tasks=None,
            items=None,
            results=None,
            workers=None,
            cost=None,
            estimated=None,
        )
        return doc
    if any(w.alive for w in reg.all()):
        fleet.refresh(reg)
    report, why = _try_cost(fleet, reg)
    doc.update(
        tasks=len(reg.task_ids),
        items=sum(reg.task_sizes),
        results=fleet.count_results(session.session_id),
        workers=len(reg.workers),
        cost=report.total if report else None,
        estimated=report.estimated if report else None,
    )
    if why:
        doc["cost_unknown"] = why
    return doc


def _try_cost(fleet: Fleet, registry: Registry) -> tuple[Any, str | None]:
    """The session's cost report, or None and why it cannot be priced (a
    region the price table lacks), so one such session does not stop a list."""
    try:
        return fleet.cost(registry), None
    except (ValueError, KeyError) as exc:
        return None, str(exc)


@out.errors()
def sessions(
    deployment: out.Deployment = "default",
    limit: Limit = 20,
    as_json: out.AsJson = False,
) -> None:
    """List recent sessions with their task, item and worker counts, state and cost."""
    fleet = _fleet(deployment)
    ids = fleet.session_ids()[-limit:]
    tasks = [t for t in fleet.tasks() if t.session in set(ids)]
    docs = [_session_doc(fleet, s) for s in reversed(fleet.sessions(ids, tasks))]
    if as_json:
        out.print_json({"deployment": deployment, "sessions": docs})
    elif docs:
        out.table(
            (
                "session",
                "created",
                "state",
                "tasks",
                "items",
                "results",
                "workers",
                "live",
                "cost",
            ),
            [
                (
                    d["session_id"],
                    out.clock(_epoch(d["created"])),
                    d["state"],
                    _n(d["tasks"]),
                    _n(d["items"]),
                    _n(d["results"]),
                    _n(d["workers"]),
                    d["live_workers"],
                    ("unknown" if d.get("cost_unknown") else "-")
                    if d["cost"] is None
                    else out.dollars(d["cost"]) + ("*" if d["estimated"] else ""),
                )
                for d in docs
            ],
        )
        if any(d["estimated"] for d in docs):
            typer.echo("* estimated: ECS could not tell every worker's times")
    if not docs:
        raise out.not_found(f"no sessions in deployment {deployment!r}")


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _cost_doc(session_id: str, report: Any) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "total": report.total,
        "estimated": report.estimated,
        "note": report.note,
        "workers": [asdict(w) for w in report.workers],
    }


@out.errors()
def cost(
    session: Annotated[
        str | None,
        typer.Argument(
            help="one session's breakdown per worker; default: every recent session"
        ),
    ] = None,
    deployment: out.Deployment = "default",
    limit: Limit = 20,
    as_json: out.AsJson = False,
) -> None:
    """Show what Fargate bills for one session (per worker) or for recent sessions."""
    fleet = _fleet(deployment)
    if session is not None:
        registry = _session(fleet, session)
        fleet.refresh(registry)
        doc = _cost_doc(session, fleet.cost(registry))
        if as_json:
            out.print_json(doc)
            return
        out.table(
            ("worker", "capacity", "seconds", "billed", "cost"),
            [
                (
                    w["arn"].rsplit("/", 1)[-1],
                    w["capacity_provider"],
                    f"{w['seconds']:.1f}",
                    f"{w['billed_seconds']:.1f}",
                    out.dollars(w["dollars"]),
                )
                for w in doc["workers"]
            ],
            title=f"session {session} ({registry.state})",
        )
        typer.echo(
            f"total {out.dollars(doc['total'])}"
            + (" (estimated)" if doc["estimated"] else "")
        )
        if doc["note"]:
            typer.echo(doc["note"])
        return
    ids = fleet.session_ids()[-limit:]
    docs = []
    for sid in reversed(ids):
        registry = fleet.registry(sid)
        if registry is None:
            continue
        if any(w.alive for w in registry.all()):
            fleet.refresh(registry)
        report, why = _try_cost(fleet, registry)
        doc = {
            "session_id": sid,
            "state": registry.state,
            "workers": len(registry.workers),
            "total": report.total if report else None,
            "estimated": report.estimated if report else None,
        }
        if why:
            doc["cost_unknown"] = why
        docs.append(doc)
    total = sum(d["total"] or 0.0 for d in docs)
    if as_json:
        out.print_json({"deployment": deployment, "sessions": docs, "total": total})
    if not docs:
        raise out.not_found(f"no sessions in deployment {deployment!r}")
    if as_json:
        return
    out.table(
        ("session", "state", "workers", "cost"),
        [
            (
                d["session_id"],
                d["state"],
                d["workers"],
                "unknown (no price for its region)"
                if d["total"] is None
                else out.dollars(d["total"])
                + (" (estimated)" if d["estimated"] else ""),
            )
            for d in docs
        ],
    )
    typer.echo(f"total {out.dollars(total)} over {len(docs)} session(s)")


# ---------------------------------------------------------------------------
# logs


class _Stream:
    """One worker's CloudWatch Logs stream, read forward from its head."""

    def __init__(self, worker: str, name: str) -> None:
        self.worker, self.name = worker, name
        self.token: str | None = None

    def read(self, logs: Any, group: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            args: dict[str, Any] = {
                "logGroupName": group,
                "logStreamName": self.name,
                "startFromHead": True,
            }
            if self.token:
                args["nextToken"] = self.token
            try:
                resp = logs.get_log_events(**args)
            except Exception as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return events  # not shipped yet (or never started)
                raise
            batch = resp.get("events", [])
            events.extend(
                {
                    "timestamp": e["timestamp"],
                    "worker": self.worker,
                    "message": e["message"].rstrip("\n"),
                }
                for e in batch
            )
            token = resp.get("nextForwardToken")
            if not batch or token == self.token:
                self.token = token or self.token
                return events
            self.token = token


def _streams(registry: Registry, worker: str | None) -> dict[str, _Stream]:
    workers = registry.all()
    if worker:
        workers = [
            w for w in workers if w.task_id.startswith(worker) or w.arn == worker
        ]
    return {
        w.task_id: _Stream(w.task_id, f"starburst/worker/{w.task_id}") for w in workers
    }


#: The line a worker ends each task with (see starburst_worker.worker).
_TASK_LINE = re.compile(r"task (\d{8}) attempt \d+: ")


def _task_id(value: str) -> str:
    if not value.isdigit():
        raise typer.BadParameter(
            f"{value!r} is not a starburst task id: give its number, e.g. 7 or "
            "00000007 (the ids are in `starburst-cli logs SESSION`); "
            "use --worker for an ECS task id",
            param_hint="--task",
        )
    return f"{int(value):08d}"


def _task_lines(events: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """The lines of each worker that ran ``task_id`` (one per attempt): what
    it printed after its previous task's line, up to this task's own."""
    chosen: list[dict[str, Any]] = []
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: e["timestamp"]):
        by_worker.setdefault(e["worker"], []).append(e)
    for lines in by_worker.values():
        block: list[dict[str, Any]] = []
        for e in lines:
            block.append(e)
            m = _TASK_LINE.match(e["message"])
            if m:
                if m.group(1) == task_id:
                    chosen.extend(block)
                block = []
    return chosen


def _show(events: list[dict[str, Any]], as_json: bool, needle: str | None) -> int:
    shown = 0
    for e in sorted(events, key=lambda e: e["timestamp"]):
        if needle and needle not in e["message"]:
            continue
        shown += 1
        if as_json:
            typer.echo(json.dumps(e))
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(e["timestamp"] / 1000))
            typer.echo(f"{stamp} {e['worker'][:12]} {e['message']}")
    return shown


@out.errors()
def logs(
    session: SessionArg,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="only one starburst task (a number, e.g. 7): the worker's "
            "lines while it ran, up to its summary line",
        ),
    ] = None,
    worker: Annotated[
        str | None,
        typer.Option("--worker", help="only one worker: its ECS task id or ARN"),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="keep polling until the workers stop or Ctrl-C"
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.1, help="seconds between polls")
    ] = 2.0,
    deployment: out.Deployment = "default",
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object per line")
    ] = False,
) -> None:
    """Print the workers' logs of a session from CloudWatch Logs, oldest first.

    With ``--follow``, ``--task`` keeps only the task's summary lines.
    """
    task_id = _task_id(task) if task else None
    fleet = _fleet(deployment)
    registry = _session(fleet, session)
    group = fleet.config.log_group
    cw = fleet.clients.logs
    if worker and not _streams(registry, worker):
        raise out.not_found(
            f"session {session} has no worker {worker!r}; its workers are: "
            + (", ".join(w.task_id for w in registry.all()) or "none yet")
        )
    needle = f"task {task_id} attempt " if task_id else None
    streams = _streams(registry, worker)
    events = [e for s in streams.values() for e in s.read(cw, group)]
    if not follow:
        if task_id:
            events, needle = _task_lines(events, task_id), None
        if not _show(events, as_json, needle):
            raise out.not_found(
                f"no log lines for session {session} in {group}"
                + (f" of task {task_id}" if task_id else "")
                + (f" of worker {worker}" if worker else "")
                + "; workers ship their output about once a second after they start"
            )
        return
    _show(events, as_json, needle)
    try:
        while True:
            time.sleep(interval)
            fresh = fleet.registry(session) or registry
            fleet.refresh(fresh)
            for sid, stream in _streams(fresh, worker).items():
                streams.setdefault(sid, stream)
            _show(
                [e for s in streams.values() for e in s.read(cw, group)],
                as_json,
                needle,
            )
            workers = fresh.all()
            if (workers and not any(w.alive for w in workers)) or (
                not workers and fresh.state in ENDED
            ):
                time.sleep(interval)  # the last lines ship after the stop
                _show(
                    [e for s in streams.values() for e in s.read(cw, group)],
                    as_json,
                    needle,
                )
                return
    except KeyboardInterrupt:
        return


# ---------------------------------------------------------------------------
# cancel


@out.errors()
def cancel(
    session: SessionArg,
    deployment: out.Deployment = "default",
) -> None:
    """Cancel a session: stop its workers, purge and delete its queues, mark it cancelled.

    A client still attached to the session finds its queues gone and the
    session marked cancelled, and fails its outstanding futures with
    ``SessionCancelledError``; ``Plan.attach`` later collects the results that
    were written and starts nothing.
    """
    fleet = _fleet(deployment)
    registry = _session(fleet, session)
    fleet.mark_cancelled(session)  # first: what a client reads when its queue goes
    registry.state = "cancelled"
    fleet.write_registry(registry)
    live = [t.arn for t in fleet.tasks() if t.session == session and t.alive]
    arns = list(dict.fromkeys(live + [w.arn for w in registry.alive()]))
    fleet.stop(arns, f"starburst session {session} cancelled by starburst-cli")
    deleted = _delete_queues(fleet, session)
    _settle_stops(fleet, registry, arns)
    registry.state = "cancelled"
    fleet.write_registry(registry)
    typer.echo(
        f"session {session} cancelled: stopped {len(live)} running worker(s), "
        f"deleted {len(deleted)} queue(s)"
        + (f" ({', '.join(deleted)})" if deleted else "")
    )


def _delete_queues(fleet: Fleet, session: str) -> list[str]:
    sqs = fleet.clients.sqs
    deleted = []
    base = fleet.queue_name(session)
    for name in (base, f"{base}-dlq", f"{base}-done"):
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except Exception as exc:
            if "NonExistentQueue" in error_code(exc) or "QueueDoesNotExist" in (
                error_code(exc)
            ):
                continue
            raise
        try:  # purge first: a worker mid-receive gets nothing more
            sqs.purge_queue(QueueUrl=url)
        except Exception as exc:
            if "PurgeQueueInProgress" not in error_code(exc):
                raise
        sqs.delete_queue(QueueUrl=url)
        deleted.append(name)
    return deleted


def _settle_stops(
    fleet: Fleet, registry: Registry, arns: list[str], wait: float = 30.0
) -> None:
    """Wait (briefly) for the stopped workers to reach STOPPED and record their
    stop times, so the session's cost stops growing."""
    deadline = time.monotonic() + wait
    by_arn: dict[str, dict[str, Any]] = {}
    while arns and time.monotonic() < deadline:
        descs = fleet.describe(arns)
        by_arn = {d["taskArn"]: d for d in descs}
        if all(d.get("lastStatus") == "STOPPED" for d in descs):
            break
        time.sleep(1.0)
    now = time.time()
    for arn in arns:
        record = registry.workers.get(arn)
        if record is None:
            continue
        if arn in by_arn:
            record.update(by_arn[arn])
        if record.stopped is None:
            record.stopped = now
            record.status = "STOPPED"
            record.reason = record.reason or "cancelled by starburst-cli"


def register(app: typer.Typer) -> None:
    for command in (status, sessions, cost, logs, cancel):
        app.command()(command)
