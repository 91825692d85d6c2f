"""The SSM document Terraform writes has exactly the keys and JSON types the SDK reads."""

from __future__ import annotations

import re
from typing import Any

from conftest import TERRAFORM_DIR
from tf_helpers import blocks, load_module, typed_blocks

from starburst_sdk._config import CONFIG_VERSION, OPTIONAL, REQUIRED, parameter_name

#: Terraform type constraint -> the JSON type a value of it encodes to.
TF_TYPES = {"string": str, "bool": bool, "number": int, "list(string)": list}


def _root() -> dict[str, Any]:
    return load_module(TERRAFORM_DIR)


def _config_local() -> dict[str, Any]:
    return blocks(_root(), "locals")["config"]


def _resolved_type(expr: Any, root: dict[str, Any]) -> type | None:
    """JSON type of a literal, or of ``${var.x}`` via the variable's type."""
    if isinstance(expr, bool | int | list):
        return type(expr)
    match = re.fullmatch(r"\$\{var\.(\w+)\}", str(expr))
    if match:
        declared = blocks(root, "variable")[match.group(1)]["type"]
        return TF_TYPES[str(declared).removeprefix("${").removesuffix("}")]
    return None


def test_config_document_has_exactly_the_sdk_keys() -> None:
    assert set(_config_local()) == set(REQUIRED) | set(OPTIONAL)


def test_config_document_version_matches_sdk() -> None:
    assert _config_local()["version"] == CONFIG_VERSION


def test_config_document_literal_and_variable_types_match_sdk() -> None:
    root, checked = _root(), 0
    for key, expr in _config_local().items():
        kind = _resolved_type(expr, root)
        if kind is not None:
            assert kind is {**REQUIRED, **OPTIONAL}[key], f"{key}: {expr!r}"
            checked += 1
    assert checked >= 4  # version, deployment, prefix, worker_image, security_groups


def test_ssm_parameter_writes_the_config_local_as_json() -> None:
    root = _root()
    param = typed_blocks(root, "resource", "aws_ssm_parameter")["config"]
    assert param["value"] == "${jsonencode(local.config)}"
    name = blocks(root, "locals")["config_parameter_name"]
    assert param["name"] == "${local.config_parameter_name}"
    assert name.replace("${var.deployment}", "demo") == parameter_name("demo")


def test_config_output_exposes_the_same_document() -> None:
    outputs = blocks(_root(), "output")
    assert outputs["config"]["value"] == "${local.config}"
    assert outputs["ssm_parameter_name"]["value"] == "${aws_ssm_parameter.config.name}"
