"""The worker image's inputs, tag, environment detection and build context: no
engine, no registry."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from starburst_sdk import _image
from starburst_sdk._image import (
    Environment,
    ImageError,
    ImageInputs,
    decode_authorization_token,
    detect_environment,
    image_inputs,
    split_reference,
    write_build_context,
)

INPUTS = ImageInputs(
    environment={"kind": "requirements", "files": {"requirements.txt": "ab" * 32}},
    python="3.11",
    worker={
        "version": "0.1.0",
        "sha256": "cd" * 32,
        "requirements": ["cloudpickle==3.1.3", "msgpack==1.2.4"],
        "recipe": "01" * 32,
    },
    base="python:3.11-slim",
    arch="x86_64",
)


def test_tag_is_stable_for_the_same_inputs():
    again = ImageInputs(
        **{f.name: getattr(INPUTS, f.name) for f in dataclasses.fields(INPUTS)}
    )
    assert again.tag == INPUTS.tag
    # Pinned: the same inputs give this tag on any machine, in any process.
    assert INPUTS.tag == "py3.11-x86_64-" + INPUTS.digest[:24]
    assert INPUTS.digest == _image._sha256(
        json.dumps(INPUTS.document(), sort_keys=True, separators=(",", ":")).encode()
    )
    assert INPUTS.tag == "py3.11-x86_64-8d3856b8e105aa43863e3e80"


@pytest.mark.parametrize(
    "change",
    [
        {
            "environment": {
                "kind": "requirements",
                "files": {"requirements.txt": "ef" * 32},
            }
        },
        {"environment": {"kind": "uv.lock", "files": {"requirements.txt": "ab" * 32}}},
        {"python": "3.12"},
        {"worker": {**INPUTS.worker, "version": "0.2.0"}},
        {"worker": {**INPUTS.worker, "sha256": "00" * 32}},
        {"worker": {**INPUTS.worker, "requirements": ["cloudpickle==3.1.2"]}},
        {"worker": {**INPUTS.worker, "recipe": "ef" * 32}},
        {"base": "python:3.11-slim-bookworm"},
        {"arch": "arm64"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_tag_changes_when_any_one_input_changes(change):
    assert dataclasses.replace(INPUTS, **change).tag != INPUTS.tag


def test_tag_follows_the_requirement_file_contents(tmp_path):
    (tmp_path / "requirements.txt").write_text("packaging==24.2\n")
    first = image_inputs(detect_environment(tmp_path), base_image="b:1", arch="x86_64")
    same = image_inputs(detect_environment(tmp_path), base_image="b:1", arch="x86_64")
    (tmp_path / "requirements.txt").write_text("packaging==24.1\n")
    changed = image_inputs(
        detect_environment(tmp_path), base_image="b:1", arch="x86_64"
    )
    assert first.tag == same.tag != changed.tag
    assert (
        image_inputs(detect_environment(tmp_path), base_image="b:1", arch="amd64").tag
        == changed.tag
    )  # an alias of x86_64


def test_decode_authorization_token():
    token = base64.b64encode(b"AWS:secret:with:colons").decode()
    assert decode_authorization_token(token) == ("AWS", "secret:with:colons")


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        base64.b64encode(b"nocolon").decode(),
        base64.b64encode(b":pw").decode(),
    ],
)
def test_decode_authorization_token_refuses_malformed(token):
    with pytest.raises(ImageError, match="authorization token"):
        decode_authorization_token(token)


def test_ecr_credentials_from_get_authorization_token():
    class Ecr:
        def get_authorization_token(self):
            token = base64.b64encode(b"AWS:pw").decode()
            return {
                "authorizationData": [
                    {"authorizationToken": token, "proxyEndpoint": "https://x"}
                ]
            }

    assert _image.ecr_credentials(Ecr()) == ("AWS", "pw")


@pytest.mark.parametrize(
    "ref, want",
    [
        ("python:3.11-slim", ("registry-1.docker.io", "library/python", "3.11-slim")),
        ("docker.io/org/img", ("registry-1.docker.io", "org/img", "latest")),
        ("127.0.0.1:5001/repo:tag", ("127.0.0.1:5001", "repo", "tag")),
        (
            "1.dkr.ecr.us-east-1.amazonaws.com/a/b@sha256:00",
            ("1.dkr.ecr.us-east-1.amazonaws.com", "a/b", "sha256:00"),
        ),
    ],
)
def test_split_reference(ref, want):
    assert split_reference(ref) == want


def test_only_loopback_registries_are_plain_http():
    assert _image.is_loopback("127.0.0.1:5001") and _image.is_loopback("localhost:1")
    assert not _image.is_loopback("1.dkr.ecr.us-east-1.amazonaws.com")


def _context(tmp_path: Path, env: Environment) -> Path:
    inputs = image_inputs(env, base_image="base:1", arch="x86_64")
    return write_build_context(tmp_path / "ctx", env, inputs, download=False)


def test_build_context_for_a_requirements_project(tmp_path):
    proj = tmp_path / "proj"
    (proj / "mylib").mkdir(parents=True)
    (proj / "requirements.txt").write_text(
        "# pinned\npackaging==24.2\n-r more.txt\n-e ./mylib\n--index-url https://x\n"
    )
    (proj / "more.txt").write_text("six==1.17.0\n")
    env = detect_environment(proj)
    assert env.kind == "requirements"
    assert env.requirements == ("packaging==24.2", "six==1.17.0")
    assert [p.package for p in env.problems] == ["mylib"]
    assert not env.problems[0].fatal and "by value" in str(env.problems[0])
    assert set(env.fingerprint()["files"]) == {"requirements.txt", "more.txt"}
    ctx = _context(tmp_path, env)
    reqs = (ctx / "requirements.txt").read_text().splitlines()
    assert reqs[:2] == ["packaging==24.2", "six==1.17.0"]
    assert any(r.startswith("cloudpickle==") for r in reqs)  # the worker's own
    assert (ctx / "Dockerfile").read_text() == _image.dockerfile_path().read_text()
    assert (ctx / "worker" / "starburst_worker" / "worker.py").is_file()
    spec = json.loads((ctx / "install.json").read_text())
    assert spec["python"] == _image.python_version() and spec["site"] == _image.SITE
    assert "manylinux2014_x86_64" in spec["platforms"]
    assert json.loads((ctx / "inputs.json").read_text())["base"] == "base:1"


def test_version_control_requirements_are_fatal_problems(tmp_path):
    (tmp_path / "requirements.txt").write_text("pkg @ git+https://example/pkg.git\n")
    env = detect_environment(tmp_path)
    assert [p.package for p in env.problems if p.fatal] == ["pkg"]


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not installed")
def test_build_context_for_a_uv_project(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["packaging==24.2"]\n\n[dependency-groups]\n'
        'dev = ["six==1.17.0"]\n'
    )
    done = subprocess.run(
        ["uv", "lock", "--quiet"], cwd=proj, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    env = detect_environment(proj)
    assert env.kind == "uv.lock"
    assert env.requirements == ("packaging==24.2",)  # no dev group, no project
    assert list(env.fingerprint()["files"]) == ["uv.lock"]
    reqs = (_context(tmp_path, env) / "requirements.txt").read_text()
    assert "packaging==24.2" in reqs and "six" not in reqs and "demo" not in reqs


def test_poetry_lock_main_group_only(tmp_path):
    (tmp_path / "poetry.lock").write_text(
        '[[package]]\nname = "packaging"\nversion = "24.2"\ngroups = ["main"]\n\n'
        '[[package]]\nname = "pytest"\nversion = "8.0.0"\ngroups = ["dev"]\n\n'
        '[[package]]\nname = "colorama"\nversion = "0.4.6"\ngroups = ["main"]\n'
        'markers = "sys_platform == \\"win32\\""\n\n'
        '[[package]]\nname = "mylib"\nversion = "0.1"\ngroups = ["main"]\n'
        'develop = true\n[package.source]\ntype = "directory"\nurl = "../mylib"\n'
    )
    env = detect_environment(tmp_path)
    assert env.kind == "poetry.lock"
    assert env.requirements == (
        'colorama==0.4.6 ; sys_platform == "win32"',
        "packaging==24.2",
    )
    assert [p.package for p in env.problems] == ["mylib"]


def test_pyproject_without_lock(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "1"\ndependencies = ["packaging>=24"]\n'
    )
    env = detect_environment(tmp_path)
    assert (env.kind, env.requirements) == ("pyproject", ("packaging>=24",))


def test_build_context_for_a_bare_interpreter(tmp_path, monkeypatch):
    monkeypatch.setattr(Path, "home", lambda: tmp_path)  # stop the upward search
    env = detect_environment(tmp_path)
    assert env.kind == "installed" and env.root is None
    names = {r.split("==")[0] for r in env.requirements}
    assert "boto3" in names and "cloudpickle" in names
    assert not names & {"starburst-sdk", "starburst-worker", "pip"}
    assert env.fingerprint()["distributions"] == sorted(env.requirements)
    reqs = (_context(tmp_path, env) / "requirements.txt").read_text().splitlines()
    import boto3

    assert f"boto3=={boto3.__version__}" in reqs
    # The worker's dependencies are named by the environment, so not added twice.
    assert sum(r.startswith("cloudpickle==") for r in reqs) == 1


def test_missing_wheels_are_all_reported_by_name(tmp_path, monkeypatch):
    def fake(args, dest, python, arch):
        bad = [a for a in args if a.startswith(("nowheel", "alsobad"))] or ["nowheel"]
        if "--no-deps" in args and not bad[0].startswith(("nowheel", "alsobad")):
            return subprocess.CompletedProcess(args, 0, "", "")
        stderr = f"ERROR: No matching distribution found for {bad[0]}\n"
        if "--no-deps" in args and args[0].startswith("ok"):
            return subprocess.CompletedProcess(args, 0, "", "")
        return subprocess.CompletedProcess(args, 1, "", stderr)

    monkeypatch.setattr(_image, "_pip_download", fake)
    with pytest.raises(ImageError) as info:
        _image.download_wheels(
            ["ok==1", "nowheel==2", "alsobad==3"], tmp_path / "w", "3.11", "x86_64"
        )
    text = str(info.value)
    assert "nowheel" in text and "alsobad" in text and "ok" not in text.split(":")[1]
    assert "manylinux wheel" in text


def test_unsupported_arch_is_refused():
    with pytest.raises(ValueError, match="x86_64 or arm64"):
        _image.normalize_arch("sparc")


def test_client_python_is_an_input():
    env = Environment("installed", None, (), ("a==1",))
    assert image_inputs(env, base_image="b", arch="arm64").python == (
        f"{sys.version_info.major}.{sys.version_info.minor}"
    )


class _Dist:
    """A stand-in for an installed distribution, with its direct_url.json."""

    def __init__(self, name, version, direct_url=None):
        self.metadata = {"Name": name}
        self.version = version
        self._direct = direct_url

    def read_text(self, filename):
        return (
            json.dumps(self._direct)
            if filename == "direct_url.json" and self._direct
            else None
        )


def test_installed_editable_local_and_vcs_packages_are_reported_by_name(monkeypatch):
    dists = [
        _Dist("numpy", "2.1.0"),
        _Dist(
            "My_Tool",
            "0.1",
            {"url": "file:///home/u/my-tool", "dir_info": {"editable": True}},
        ),
        _Dist(
            "localwheel",
            "1.0",
            {"url": "file:///tmp/localwheel-1.0-py3-none-any.whl", "archive_info": {}},
        ),
        _Dist(
            "fromgit",
            "0.3",
            {
                "url": "https://example.org/fromgit.git",
                "vcs_info": {"vcs": "git", "commit_id": "abc"},
            },
        ),
        _Dist("pip", "24.0"),
    ]
    monkeypatch.setattr(_image.metadata, "distributions", lambda: dists)
    env = _image._from_installed()
    assert env.requirements == ("numpy==2.1.0",)
    problems = {p.package: p for p in env.problems}
    assert set(problems) == {"my-tool", "localwheel", "fromgit"}
    assert "editable" in problems["my-tool"].reason and not problems["my-tool"].fatal
    assert "local path" in problems["localwheel"].reason
    assert problems["fromgit"].fatal and "pin" in problems["fromgit"].fix


def test_fatal_problems_stop_the_build_naming_each_package(monkeypatch, tmp_path):
    (tmp_path / "requirements.txt").write_text(
        "packaging==24.2\na @ git+https://example.org/a.git\n"
        "b @ git+https://example.org/b.git\n"
    )
    with pytest.raises(ImageError) as info:
        _image.ensure_image(config=object(), clients=object(), project_dir=tmp_path)
    text = str(info.value)
    assert "a: comes from version control" in text and "\n  b: " in text
    assert "packaging" not in text
