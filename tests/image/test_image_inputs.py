"""The worker image's inputs, tag, environment detection and build context: no
engine, no registry."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import types
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


def _run_as_script(monkeypatch, script: Path | None) -> None:
    """Make ``script`` the running ``__main__`` (None: no file, as in a REPL)."""
    main = types.ModuleType("__main__")
    if script is not None:
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("print('hi')\n")
        main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)


def test_project_is_found_from_the_running_script_not_the_working_dir(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(Path, "home", lambda: tmp_path)  # stop the upward search
    proj = tmp_path / "proj"
    (proj / ".git").mkdir(parents=True)
    (proj / "requirements.txt").write_text("packaging==24.2\n")
    _run_as_script(monkeypatch, proj / "jobs" / "run.py")  # a script in a subdir
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "requirements.txt").write_text("six==1.17.0\n")
    monkeypatch.chdir(elsewhere)  # cd /tmp && python /path/proj/jobs/run.py
    with caplog.at_level(logging.INFO, logger="starburst"):
        env = detect_environment()
    assert (env.kind, env.root, env.requirements) == (
        "requirements",
        proj.resolve(),
        ("packaging==24.2",),
    )
    assert f"the running script {(proj / 'jobs' / 'run.py').resolve()}" in caplog.text
    assert str((proj / "requirements.txt").resolve()) in caplog.text
    # An explicit project wins over the script's.
    assert detect_environment(elsewhere).requirements == ("six==1.17.0",)


def test_script_without_a_project_falls_back_to_the_working_dir(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    (tmp_path / "scripts" / ".git").mkdir(parents=True)  # a VCS root: stop there
    _run_as_script(monkeypatch, tmp_path / "scripts" / "run.py")
    work = tmp_path / "work"
    work.mkdir()
    (work / "pyproject.toml").write_text(
        '[project]\nname = "w"\nversion = "1"\ndependencies = ["six"]\n'
    )
    monkeypatch.chdir(work)
    with caplog.at_level(logging.INFO, logger="starburst"):
        env = detect_environment()
    assert (env.kind, env.requirements) == ("pyproject", ("six",))
    assert "the working directory" in caplog.text


def test_no_project_anywhere_uses_the_installed_distributions(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    _run_as_script(monkeypatch, None)  # python -c, a REPL, a notebook
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="starburst"):
        env = detect_environment()
    assert env.kind == "installed"
    assert "installed distributions" in caplog.text and str(tmp_path) in caplog.text


def test_an_installed_tool_as_main_is_not_the_project(tmp_path, monkeypatch):
    # pytest, ipykernel or starburst-cli run as __main__ from site-packages or the
    # interpreter's bin dir: the working dir is the project, as before.
    tool = Path(sysconfig.get_path("purelib")) / "pytest" / "__main__.py"
    main = types.ModuleType("__main__")
    main.__file__ = str(tool)
    monkeypatch.setitem(sys.modules, "__main__", main)
    if tool.is_file():
        assert _image._main_script() is None
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    monkeypatch.chdir(tmp_path)
    assert detect_environment().requirements == ("six==1.17.0",)


def test_a_missing_project_dir_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "nonexistent"
    with pytest.raises(ImageError, match=f"project directory {missing} does not"):
        detect_environment(missing)
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(ImageError, match="not a directory"):
        detect_environment(tmp_path / "file.txt")


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


def _fake_pip(monkeypatch, index):
    """pip download failing for every name in ``index`` (name -> the versions
    ``pip index versions`` lists, [] for none), as pip words it."""

    def download(args, dest, python, arch):
        bad = [a for a in args if a.split("==")[0] in index]
        if "--no-deps" in args and not bad:
            return subprocess.CompletedProcess(args, 0, "", "")
        first = bad[0] if bad else next(iter(index))
        stderr = (
            f"ERROR: Could not find a version that satisfies the requirement {first} "
            f"(from versions: none)\nERROR: No matching distribution found for "
            f"{first}\n"
        )
        return subprocess.CompletedProcess(args, 1, "", stderr)

    def versions(name, python, arch):
        found = index[name]
        return found(python) if callable(found) else found

    monkeypatch.setattr(_image, "_pip_download", download)
    monkeypatch.setattr(_image, "_index_versions", versions)


def test_missing_wheels_are_all_reported_by_name(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, {"nowheel": ["2", "1"], "alsobad": ["3"]})
    with pytest.raises(ImageError) as info:
        _image.download_wheels(
            ["ok==1", "nowheel==2", "alsobad==3"], tmp_path / "w", "3.11", "x86_64"
        )
    text = str(info.value)
    assert "for: alsobad, nowheel." in text and "ok" not in text.split(":")[1]
    assert "manylinux wheel" in text and "no package" not in text


def test_unknown_package_and_version_say_so_not_no_wheel(tmp_path, monkeypatch):
    _fake_pip(
        monkeypatch,
        {
            "this-package-does-not-exist-xq7z": [],
            "packaging": ["26.0", "25.0", "24.2", "24.1", "24.0", "23.2"],
            "newonly": lambda python: [] if python else ["2.0"],
        },
    )
    with pytest.raises(ImageError) as info:
        _image.download_wheels(
            [
                "this-package-does-not-exist-xq7z==1.0",
                "packaging==99.0",
                "newonly==2.0",
            ],
            tmp_path / "w",
            "3.11",
            "x86_64",
        )
    text = str(info.value)
    assert (
        "no package of this name on the index: this-package-does-not-exist-xq7z==1.0"
        in text
    )
    assert "packaging==99.0 (the index has 26.0, 25.0, 24.2, 24.1, 24.0, ...)" in text
    assert "newonly==2.0 (no release supports Python 3.11)" in text
    assert "Check the version pin" in text and "manylinux" not in text


def test_invalid_requirement_lines_are_quoted(tmp_path, monkeypatch):
    (tmp_path / "requirements.txt").write_text(
        "packaging===not a version!!\nsix==1.17.0 \\\n    --hash=sha256:00\n"
    )
    env = detect_environment(tmp_path)
    assert env.requirements == ("six==1.17.0",)  # the --hash option dropped
    [bad] = env.problems
    assert bad.fatal and bad.package == "'packaging===not a version!!'"
    assert "is not a valid requirement (Expected" in str(bad)
    with pytest.raises(ImageError, match="'packaging===not a version!!': is not a"):
        _image.ensure_image(config=object(), clients=object(), project_dir=tmp_path)

    # pip's own refusal (a line that reached it) is quoted as pip quoted it.
    def download(args, dest, python, arch):
        stderr = (
            "ERROR: Invalid requirement: 'x===a b': Expected end (from line 1 of "
            f"{args[-1]})\n"
        )
        return subprocess.CompletedProcess(args, 1, "", stderr)

    monkeypatch.setattr(_image, "_pip_download", download)
    with pytest.raises(ImageError, match="invalid: 'x===a b'. Fix them"):
        _image.download_wheels(["x===a b"], tmp_path / "w", "3.11", "x86_64")


def test_index_versions_reads_pip_index_json(monkeypatch):
    calls = []

    def run(cmd, **kwargs):
        calls.append(cmd)
        if cmd[-1] == "nosuch":
            return subprocess.CompletedProcess(
                cmd, 1, "", "ERROR: No matching distribution found for nosuch\n"
            )
        if cmd[-1] == "offline":
            return subprocess.CompletedProcess(cmd, 1, "", "ERROR: network down\n")
        doc = {"name": cmd[-1], "versions": ["2.0", "1.0"], "latest": "2.0"}
        return subprocess.CompletedProcess(cmd, 0, json.dumps(doc), "")

    monkeypatch.setattr(_image.subprocess, "run", run)
    assert _image._index_versions("pkg", "3.11", "x86_64") == ["2.0", "1.0"]
    assert _image._index_versions("nosuch", "3.11", "x86_64") == []
    assert _image._index_versions("offline", None, "x86_64") is None
    assert calls[0][3:5] == ["index", "versions"] and "--only-binary" not in calls[0]
    assert "--python-version" in calls[0] and "--python-version" not in calls[2]


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


def _connection_error(text):
    import requests

    def call():
        raise requests.ConnectionError(text)

    return call


ECR_HOST = "000000000000.dkr.ecr.us-east-1.amazonaws.com"
DNS = (
    f"HTTPSConnectionPool(host='{ECR_HOST}', port=443): Max retries exceeded "
    "(Caused by NameResolutionError(\"Failed to resolve '...' ([Errno -2] Name or "
    'service not known)"))'
)


def test_registry_that_does_not_resolve_on_the_local_cloud_names_containers(
    monkeypatch,
):
    for key in list(_image.os.environ):
        if key.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://127.0.0.1:4566")
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)

    def no_dns(address, timeout=None):
        assert address == (ECR_HOST, 443)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(_image.socket, "create_connection", no_dns)
    registry = _image.RegistryClient(ECR_HOST, "starburst-default", ("AWS", "pw"))
    started = time.monotonic()
    with pytest.raises(ImageError) as info:  # at once, not after oras's retries
        registry._call("listing tags", lambda: pytest.fail("oras was called"))
    assert time.monotonic() - started < 1
    text = str(info.value)
    assert (
        f"the container registry host {ECR_HOST} does not resolve in DNS "
        "(listing tags)" in text
    )
    assert "(AWS_ENDPOINT_URL_ECR=http://127.0.0.1:4566)" in text
    assert "process mode has no container registry" in text
    assert "`starburst-cli local up --containers`" in text
    # Once probed, a failure of oras's own request is read the same way.
    with pytest.raises(ImageError, match="does not resolve in DNS"):
        registry._call("listing tags", _connection_error(DNS))


def test_registry_unreachable_in_real_aws_names_the_network(monkeypatch):
    for key in list(_image.os.environ):
        if key.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.delenv(key)
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)

    def refused(address, timeout=None):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(_image.socket, "create_connection", refused)
    registry = _image.RegistryClient(ECR_HOST, "starburst-default", ("AWS", "pw"))
    with pytest.raises(ImageError) as info:
        registry._call("listing tags", lambda: pytest.fail("oras was called"))
    text = str(info.value)
    assert f"the container registry {ECR_HOST} does not answer" in text
    assert "check the network" in text and "local cloud" not in text
    local = _image.RegistryClient("127.0.0.1:5001", "repo", None)
    with pytest.raises(ImageError, match="local cloud's registry running"):
        local._call("listing tags", _connection_error("Connection refused"))
    # Through a proxy only the proxy can tell: no probe.
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    proxied = _image.RegistryClient(ECR_HOST, "starburst-default", ("AWS", "pw"))
    assert proxied._call("listing tags", lambda: "tags") == "tags"
