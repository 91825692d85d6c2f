"""Static checks of the Terraform: fmt, validate, documented and typed interfaces."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import MODULE_DIRS, TERRAFORM_DIR
from tf_helpers import blocks, load_module

ROOT_AND_EXAMPLES = [
    TERRAFORM_DIR,
    *sorted(p for p in (TERRAFORM_DIR / "examples").iterdir() if p.is_dir()),
]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(TERRAFORM_DIR)) or "root" for p in paths]


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def test_terraform_fmt_is_clean(
    terraform_bin: str, terraform_env: dict[str, str]
) -> None:
    out = _run(
        [terraform_bin, "fmt", "-check", "-recursive", "-diff", "-no-color"],
        TERRAFORM_DIR,
        terraform_env,
    )
    assert out.returncode == 0, (
        f"run `terraform fmt -recursive terraform/`:\n{out.stdout}"
    )


@pytest.mark.parametrize("directory", ROOT_AND_EXAMPLES, ids=_ids(ROOT_AND_EXAMPLES))
def test_terraform_init_and_validate(
    directory: Path, terraform_bin: str, terraform_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**terraform_env, "TF_DATA_DIR": str(tmp_path / ".terraform")}
    init = _run(
        [terraform_bin, "init", "-backend=false", "-input=false", "-no-color"],
        directory,
        env,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    validate = _run([terraform_bin, "validate", "-no-color"], directory, env)
    assert validate.returncode == 0, validate.stdout + validate.stderr


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=_ids(MODULE_DIRS))
def test_module_has_four_file_split(directory: Path) -> None:
    names = {p.name for p in directory.glob("*.tf")}
    assert names == {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=_ids(MODULE_DIRS))
def test_every_variable_has_description_and_type(directory: Path) -> None:
    variables = blocks(load_module(directory), "variable")
    for name, body in variables.items():
        description = body.get("description", "")
        assert description, f"variable {name} has no description"
        assert not description.endswith("."), f"variable {name}: no final period"
        assert "type" in body, f"variable {name} has no type"


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=_ids(MODULE_DIRS))
def test_every_output_has_description(directory: Path) -> None:
    outputs = blocks(load_module(directory), "output")
    assert outputs, f"{directory} has no outputs"
    for name, body in outputs.items():
        description = body.get("description", "")
        assert description, f"output {name} has no description"
        assert not description.endswith("."), f"output {name}: no final period"


@pytest.mark.parametrize("directory", MODULE_DIRS, ids=_ids(MODULE_DIRS))
def test_versions_pin_terraform_and_provider_major(directory: Path) -> None:
    terraform = load_module(directory)["terraform"][0]
    assert terraform["required_version"] == ">= 1.6"
    aws = terraform["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert "< 6.0" in aws["version"]


def test_root_module_declares_no_provider() -> None:
    # Endpoints for the local cloud are injected beside a copy of the module
    # (starburst_local.provision); a provider block here would leak into both.
    assert "provider" not in load_module(TERRAFORM_DIR)
