"""Helpers shared by the Terraform tests: reading HCL, judging IAM policy documents."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: What the task role may do, per service: the worker reads tasks, writes results,
#: works its session queue and writes logs. Nothing else.
TASK_ACTIONS = {
    "s3": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
    "sqs": {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    },
    "logs": {"logs:CreateLogStream", "logs:PutLogEvents"},
}


def load_hcl(path: Path) -> dict[str, Any]:
    """Parse one .tf file into plain values (python-hcl2 8.x options, see emulators.md)."""
    import hcl2
    from hcl2 import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    with open(path) as handle:
        return hcl2.load(handle, serialization_options=options)


def load_module(directory: Path) -> dict[str, Any]:
    """All .tf files of a module merged: {"variable": {...}, "output": {...}, ...}."""
    merged: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, items in load_hcl(path).items():
            merged.setdefault(kind, [])
            merged[kind].extend(items if isinstance(items, list) else [items])
    return merged


def blocks(module: dict[str, Any], kind: str) -> dict[str, Any]:
    """Name -> body of every ``variable``/``output``/``locals`` entry of a kind."""
    found: dict[str, Any] = {}
    for item in module.get(kind, []):
        found.update(item)
    return found


def typed_blocks(module: dict[str, Any], kind: str, type_name: str) -> dict[str, Any]:
    """Name -> body of the ``resource``/``data`` blocks of one type."""
    found: dict[str, Any] = {}
    for item in module.get(kind, []):
        found.update(item.get(type_name, {}))
    return found


def resolve_locals(value: Any, local_values: dict[str, Any], depth: int = 5) -> Any:
    """Substitute ``${local.x}`` where x is a plain string local."""
    if isinstance(value, list):
        return [resolve_locals(v, local_values, depth) for v in value]
    if not isinstance(value, str):
        return value
    for _ in range(depth):
        new = re.sub(
            r"\$\{local\.(\w+)\}",
            lambda m: str(local_values.get(m.group(1), m.group(0))),
            value,
        )
        if new == value:
            break
        value = new
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Statements of an IAM JSON document or of an aws_iam_policy_document body."""
    raw = document.get("Statement", document.get("statement", []))
    out = []
    for st in _as_list(raw):
        out.append(
            {
                "effect": st.get("Effect", st.get("effect", "Allow")),
                "actions": _as_list(st.get("Action", st.get("actions", []))),
                "resources": _as_list(st.get("Resource", st.get("resources", []))),
                "not": [
                    k
                    for k in (
                        "NotAction",
                        "NotResource",
                        "not_actions",
                        "not_resources",
                    )
                    if k in st
                ],
            }
        )
    return out


def assert_task_policy_least_privilege(
    document: dict[str, Any], *, object_arn: str, queue_arn: str, log_group_arn: str
) -> None:
    """The task role allows only its bucket prefix, its queue prefix, its log group."""
    allowed_resources = {
        "s3": {object_arn},
        "sqs": {queue_arn},
        "logs": {f"{log_group_arn}:log-stream:*", log_group_arn},
    }
    seen = set()
    for st in statements(document):
        assert st["effect"] == "Allow", st
        assert not st["not"], f"NotAction/NotResource widen a policy: {st}"
        services = {a.split(":", 1)[0] for a in st["actions"]}
        assert len(services) == 1, f"one service per statement: {st}"
        service = services.pop()
        assert service in TASK_ACTIONS, f"task role may not use {service}: {st}"
        extra = set(st["actions"]) - TASK_ACTIONS[service]
        assert not extra, f"task role may not {sorted(extra)}"
        wrong = set(st["resources"]) - allowed_resources[service]
        assert not wrong, (
            f"{service} statement reaches beyond its scope: {sorted(wrong)}"
        )
        seen.add(service)
    assert seen == set(TASK_ACTIONS), f"task role lacks {set(TASK_ACTIONS) - seen}"
