"""Worker images end to end: built through the real build paths (with and without a
Docker engine), pushed to the local registry, run by the local runner's container
mode from a Plan, found again without building."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from starburst_sdk import Plan, WorkerLostError, ensure_image, list_images

pytestmark = [
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.cloud,
    pytest.mark.timeout(600),
]

HELPER = '''
import os

import packaging

import mylib.units as units
from mylib import scale


def describe(x):
    return {"square": scale(x, x), "unit": units.NAME,
            "packaging": packaging.__version__,
            "in_container": os.path.exists("/.dockerenv"), "uid": os.getuid(),
            "site": site_digests()}


def site_digests(root="/opt/starburst/site-packages"):
    """Digests of the image's installed files: (sources and metadata, bytecode)."""
    import hashlib

    files, pyc = hashlib.sha256(), hashlib.sha256()
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(folder, name)
            with open(path, "rb") as fh:
                data = fh.read()
            h = pyc if name.endswith(".pyc") else files
            h.update(os.path.relpath(path, root).encode() + b"\\0" + data + b"\\0")
    return [files.hexdigest(), pyc.hexdigest()]
'''

# A local package beside the script, imported by the helper: neither is installed.
MYLIB = {
    "__init__.py": "from .core import scale\n",
    "core.py": "def scale(x, k):\n    return x * k\n",
    "units.py": 'NAME = "metre"\n',
}

SCRIPT = """
import json
import logging

import packaging.version
from helper import describe

from starburst_sdk import Plan

logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
with Plan(workers=1, cpu=1, memory="2GB", idle_timeout=5) as plan:
    value = plan.submit(describe, 7).result(timeout=300)
print("RESULT " + json.dumps(value))
"""


def _project(root: Path, pin: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "requirements.txt").write_text(f"packaging=={pin}\n")
    return root


def run_user_script(proj: Path, env: dict[str, str]) -> tuple[dict, str]:
    """Run the project's script.py as the user would; -> (its RESULT, stderr)."""
    done = subprocess.run(
        [sys.executable, "script.py"],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.split("RESULT ", 1)[1]), done.stderr


def user_script_project(root: Path, pin: str = "24.2") -> Path:
    """A user's project: a script, its helper module and the local package
    ``mylib`` the helper imports (none installed), and a pinned ``packaging``."""
    proj = _project(root, pin)
    (proj / "helper.py").write_text(textwrap.dedent(HELPER))
    (proj / "mylib").mkdir()
    for name, text in MYLIB.items():
        (proj / "mylib" / name).write_text(text)
    (proj / "script.py").write_text(textwrap.dedent(SCRIPT))
    return proj


def _delete_tag(registry, repo: str, tag: str) -> None:
    """Remove ``tag`` from the registry (by its manifest digest), if it is there."""
    base = f"http://{registry.address}/v2/{repo}/manifests"
    accept = (
        "application/vnd.oci.image.manifest.v1+json, "
        "application/vnd.docker.distribution.manifest.v2+json"
    )
    req = urllib.request.Request(
        f"{base}/{tag}", method="HEAD", headers={"Accept": accept}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            digest = resp.headers["Docker-Content-Digest"]
    except urllib.error.HTTPError:
        return
    urllib.request.urlopen(
        urllib.request.Request(f"{base}/{digest}", method="DELETE"), timeout=10
    ).close()


#: builder -> digests of the image's site-packages, to compare the two builders.
_SITES: dict[str, list[str]] = {}


@pytest.mark.parametrize("builder", ["docker", "oci"])
def test_user_script_with_helper_and_pinned_package_runs_in_container(
    containers, container_cloud, tmp_path, builder
):
    proj = user_script_project(tmp_path / "proj")
    repo = container_cloud["ecr_repository_url"].split("/", 1)[1]
    # Same inputs, same tag for both builders: drop the other builder's image first.
    from starburst_sdk._image import detect_environment, image_inputs

    tag = image_inputs(detect_environment(proj)).tag
    _delete_tag(containers.registry, repo, tag)
    env = {**os.environ, "STARBURST_IMAGE_BUILDER": builder}
    if builder == "oci":
        env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"  # no engine at all
    started = time.monotonic()
    value, stderr = run_user_script(proj, env)
    elapsed = time.monotonic() - started
    _SITES[builder] = value.pop("site")
    # The helper module and the mylib package it imports travelled by value;
    # packaging is the image's pinned 24.2, not this client's; it ran inside the
    # container as the image's user.
    assert value == {
        "square": 49,
        "unit": "metre",
        "packaging": "24.2",
        "in_container": True,
        "uid": 1000,
    }
    pushed = [line for line in stderr.splitlines() if "pushed worker image" in line]
    assert pushed, stderr[-2000:]
    image = next(i for i in list_images() if i.tag == tag)
    assert image.builder == builder
    if len(_SITES) == 2:  # both builders ran: their images hold the same files
        assert _SITES["docker"] == _SITES["oci"]
    print(
        f"\n{builder}: script (build + push + run) {elapsed:.1f} s; {pushed[0]}; "
        f"image {image.size / 1e6:.1f} MB compressed"
    )


def test_skip_build_when_the_registry_has_the_tag(containers, tmp_path, monkeypatch):
    proj = _project(tmp_path / "proj", "24.1")
    first = ensure_image(project_dir=proj, builder="oci")
    # No engine, and a builder that would need one: nothing is built.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    again = ensure_image(project_dir=proj, builder="docker")
    assert not again.built and again.builder is None
    assert (again.tag, again.digest, again.ref) == (first.tag, first.digest, first.ref)
    assert again.ref.startswith(f"{containers.registry.address}/")
    assert "build_push" not in again.seconds
    listed = {i.tag: i for i in list_images()}
    assert listed[first.tag].inputs == first.inputs.document()


def test_image_cli_build_and_list(containers, tmp_path):
    from typer.testing import CliRunner

    from starburst_cli.main import app

    proj = _project(tmp_path / "proj", "24.1")
    runner = CliRunner()
    built = runner.invoke(
        app, ["image", "build", "--project", str(proj), "--json", "--builder", "oci"]
    )
    assert built.exit_code == 0, built.output
    doc = json.loads(built.stdout)
    listed = runner.invoke(app, ["image", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    found = {i["tag"]: i for i in json.loads(listed.stdout)}
    assert found[doc["tag"]]["inputs"]["environment"]["kind"] == "requirements"
    table = runner.invoke(app, ["image", "list"])
    assert doc["tag"] in table.stdout and "requirements.txt" in table.stdout


def hog(mib):
    block = bytearray(mib * 1024 * 1024)
    return len(block)


def test_container_out_of_memory_is_reported_like_fargate(containers, tmp_path):
    image = ensure_image(
        project_dir=_project(tmp_path / "proj", "24.1"), builder="oci"
    ).ref
    with Plan(
        workers=1, cpu=0.5, memory="1GB", max_attempts=1, idle_timeout=5, image=image
    ) as plan:
        assert plan.submit(hog, 16).result(timeout=240) == 16 * 1024 * 1024
        big = plan.submit(hog, 1500)
        with pytest.raises(WorkerLostError, match="(?i)memory"):
            big.result(timeout=240)
    stopped = [w for w in plan.registry.all() if w.exit_code == 137]
    assert stopped, [w.__dict__ for w in plan.registry.all()]
