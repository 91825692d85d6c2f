"""IAM least privilege, read from the policy documents in the HCL."""

from __future__ import annotations

from typing import Any

from conftest import TERRAFORM_DIR
from tf_helpers import (
    assert_task_policy_least_privilege,
    blocks,
    load_module,
    resolve_locals,
    statements,
    typed_blocks,
)

IAM_DIR = TERRAFORM_DIR / "modules" / "iam"

#: Actions AWS cannot scope to a resource; they alone may use "*".
UNSCOPABLE = {
    "ecr:GetAuthorizationToken",
    "ecs:RegisterTaskDefinition",
    "ecs:DeregisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
}
#: Actions on "*" allowed only with a narrowing condition.
CONDITIONED = {"ecs:ListTasks": "ecs:cluster", "ecs:TagResource": "ecs:CreateAction"}


def _documents() -> dict[str, dict[str, Any]]:
    module = load_module(IAM_DIR)
    local_values = blocks(module, "locals")
    docs = typed_blocks(module, "data", "aws_iam_policy_document")
    return {name: resolve_locals_in(doc, local_values) for name, doc in docs.items()}


def resolve_locals_in(
    doc: dict[str, Any], local_values: dict[str, Any]
) -> dict[str, Any]:
    resolved = []
    for st in doc.get("statement", []):
        st = dict(st)
        st["resources"] = resolve_locals(st.get("resources", []), local_values)
        resolved.append(st)
    return {"statement": resolved}


def test_task_role_allows_only_bucket_prefix_queue_prefix_and_log_group() -> None:
    arn = "arn:${data.aws_partition.current.partition}"
    where = (
        "${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}"
    )
    assert_task_policy_least_privilege(
        _documents()["task"],
        object_arn="${var.bucket_arn}/${var.prefix}*",
        queue_arn=f"{arn}:sqs:{where}:${{var.queue_prefix}}-*",
        log_group_arn="${var.log_group_arn}",
    )


def test_execution_role_pulls_only_its_repository_and_writes_only_its_logs() -> None:
    for st in statements(_documents()["execution"]):
        if st["resources"] == ["*"]:
            assert st["actions"] == ["ecr:GetAuthorizationToken"]
        elif all(a.startswith("ecr:") for a in st["actions"]):
            assert st["resources"] == ["${var.ecr_repository_arn}"]
            assert all(
                a.startswith(("ecr:BatchGet", "ecr:Get", "ecr:BatchCheck"))
                for a in st["actions"]
            )
        else:
            assert set(st["actions"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
            assert st["resources"] == ["${var.log_group_arn}:log-stream:*"]


def test_sdk_user_policy_uses_star_only_where_aws_requires_it() -> None:
    raw = _documents()["sdk_user"]["statement"]
    for st, parsed in zip(raw, statements({"statement": raw}), strict=True):
        assert parsed["effect"] == "Allow"
        assert not any("*" in a for a in parsed["actions"]), parsed
        if "*" not in parsed["resources"]:
            continue
        for action in parsed["actions"]:
            if action in CONDITIONED:
                variables = [c["variable"] for c in st.get("condition", [])]
                assert CONDITIONED[action] in variables, action
            else:
                assert action in UNSCOPABLE, f"{action} on * should be scoped"


def test_no_policy_grants_wildcard_actions() -> None:
    for name, doc in _documents().items():
        for st in statements(doc):
            for action in st["actions"]:
                assert not action.endswith("*"), f"{name}: {action}"


def test_roles_trust_only_ecs_tasks_of_this_account() -> None:
    (st,) = _documents()["assume_ecs_tasks"]["statement"]
    assert st["principals"] == [
        {"type": "Service", "identifiers": ["ecs-tasks.amazonaws.com"]}
    ]
    assert st["condition"][0]["variable"] == "aws:SourceAccount"
