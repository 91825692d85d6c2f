"""Container tooling for the local cloud: a private Docker engine, a registry, a base image.

Nothing here touches the host's network or its system services:

- :class:`DockerEngine` starts Debian's ``dockerd`` in a directory of its own (data
  root, exec root, pidfile, unix socket), with ``--bridge none --iptables=false``, so
  containers get either no network or ``--network host``. It is stopped by pid; the
  mount dockerd leaves at ``<exec-root>/netns/default`` is unmounted.
- :class:`LocalRegistry` runs Debian's ``docker-registry`` (distribution 2.8) on
  127.0.0.1, with no authentication: it stands in for ECR's registry. Clients send it
  the (fake) ECR credentials of the local cloud anyway; it ignores them, so the SDK
  runs the same code path as against ECR.
- :func:`base_rootfs` builds, with ``mmdebstrap``, a stand-in for the official
  ``python:<version>-slim`` image (no public registry can be reached here): Debian's
  python3 plus CA certificates and libstdc++ (numpy's wheels need it). The tarball
  is cached under ``~/.cache/starburst`` keyed by its inputs.

The tools come from Debian's packages: ``scripts/install-container-tools.sh``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import procs
from ._paths import cache_dir

log = logging.getLogger("starburst.local")

#: Debian suite and packages of the stand-in base image (Debian 12 ships Python 3.11).
BASE_SUITE = "bookworm"
BASE_PYTHON = "3.11"
BASE_PACKAGES = ("python3", "ca-certificates", "libstdc++6")
_EXCLUDES = (
    "/usr/share/man/*",
    "/usr/share/locale/*",
    "/usr/share/doc/*",
    "/usr/share/info/*",
)


class ContainerToolsError(RuntimeError):
    """A container tool is missing or did not start."""


def missing_tools() -> list[str]:
    """The container tools not on PATH (install: scripts/install-container-tools.sh)."""
    tools = ("dockerd", "containerd", "runc", "docker", "docker-registry", "mmdebstrap")
    return [t for t in tools if shutil.which(t) is None]


class DockerEngine:
    """A private ``dockerd`` in ``root`` (a directory of its own), on a unix socket."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.socket = self.root / "docker.sock"
        self.exec_root = self.root / "exec"
        self.proc: dict[str, Any] | None = None

    @property
    def host(self) -> str:
        """The ``DOCKER_HOST`` value that reaches this engine."""
        return f"unix://{self.socket}"

    def start(self, timeout: float = 60.0) -> DockerEngine:
        if shutil.which("dockerd") is None:
            raise ContainerToolsError(
                "dockerd is not installed; run scripts/install-container-tools.sh"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        log_path = self.root / "dockerd.log"
        cmd = [
            "dockerd",
            "--data-root",
            str(self.root / "data"),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.root / "pid"),
            "-H",
            self.host,
            "--bridge",
            "none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--storage-driver",
            "overlay2",
            "--containerd-namespace",
            f"starburst-{os.getpid()}",
            "--containerd-plugins-namespace",
            f"starburst-{os.getpid()}-plugins",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.proc = procs.spawn(cmd, env, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not procs.alive(self.proc):
                raise ContainerToolsError(
                    f"dockerd exited during start-up; {log_path} ends:\n"
                    f"{procs.tail(log_path)}"
                )
            if self._ping():
                log.info("dockerd up on %s", self.host)
                return self
            time.sleep(0.2)
        self.stop()
        raise ContainerToolsError(
            f"dockerd did not answer on {self.socket} within "
            f"{timeout:.0f} s; see {log_path}"
        )

    def _ping(self) -> bool:
        if not self.socket.exists():
            return False
        result = subprocess.run(
            ["docker", "-H", self.host, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
        )
        return result.returncode == 0

    def docker(
        self, *args: str, check: bool = True, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``docker`` CLI against this engine."""
        return subprocess.run(
            ["docker", "-H", self.host, *args],
            check=check,
            capture_output=True,
            text=True,
            **kwargs,
        )

    def stop(self) -> None:
        """Stop dockerd (and its containerd) by pid, then unmount what it left."""
        if self.proc is not None:
            procs.stop(self.proc, "dockerd", grace=20)
            self.proc = None
        netns = self.exec_root / "netns" / "default"
        if netns.exists():
            subprocess.run(["umount", str(netns)], capture_output=True)
        for mount in _mounts_under(self.root):
            subprocess.run(["umount", "-l", mount], capture_output=True)

    def __enter__(self) -> DockerEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _mounts_under(root: Path) -> list[str]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = str(root.resolve()) + "/"
    points = [line.split()[1] for line in lines if len(line.split()) > 1]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


class LocalRegistry:
    """Debian's ``docker-registry`` on ``127.0.0.1:port`` (0: a free port), no auth."""

    def __init__(self, root: str | os.PathLike[str], port: int = 0) -> None:
        self.root = Path(root)
        self.port = port
        self.proc: dict[str, Any] | None = None

    @property
    def address(self) -> str:
        """``host:port``, as it appears in image references."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalRegistry:
        if shutil.which("docker-registry") is None:
            raise ContainerToolsError(
                "docker-registry is not installed; run "
                "scripts/install-container-tools.sh"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or procs.free_port()
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        log_path = self.root / "registry.log"
        self.proc = procs.spawn(
            ["docker-registry", "serve", str(config)], dict(os.environ), log_path
        )
        procs.wait_http(
            f"http://{self.address}/v2/",
            self.proc,
            "docker-registry",
            log_path,
            timeout=timeout,
        )
        log.info("registry up on %s", self.address)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, "docker-registry", grace=10)
            self.proc = None

    def tags(self, repository: str) -> list[str]:
        url = f"http://{self.address}/v2/{repository}/tags/list"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return sorted(json.loads(resp.read()).get("tags") or [])
        except OSError:
            return []

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def base_rootfs(cache: Path | None = None, arch: str = "amd64") -> Path:
    """A Debian rootfs tarball standing in for ``python:3.11-slim`` (cached).

    Built by ``mmdebstrap`` from Debian's packages (~20 s, ~100 MB); the cache key
    is the suite, the package list, the excludes and the architecture.
    """
    key = hashlib.sha256(
        json.dumps([BASE_SUITE, BASE_PACKAGES, _EXCLUDES, arch]).encode()
    ).hexdigest()[:16]
    cache = cache or cache_dir()
    out = cache / f"base-{BASE_SUITE}-{arch}-{key}.tar"
    if out.is_file():
        return out
    if shutil.which("mmdebstrap") is None:
        raise ContainerToolsError(
            "mmdebstrap is not installed; run scripts/install-container-tools.sh"
        )
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [
        "mmdebstrap",
        "--quiet",
        "--variant=essential",
        f"--architectures={arch}",
        "--include=" + ",".join(BASE_PACKAGES),
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    ]
    cmd += [f"--dpkgopt=path-exclude={p}" for p in _EXCLUDES]
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        part = Path(tmp) / "rootfs.tar"
        started = time.monotonic()
        result = subprocess.run(
            [*cmd, BASE_SUITE, str(part)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise ContainerToolsError(f"mmdebstrap failed:\n{result.stderr[-3000:]}")
        part.replace(out)
    log.info("built the base rootfs %s in %.0f s", out, time.monotonic() - started)
    return out


def push_base_image(
    engine: DockerEngine, registry: LocalRegistry, repository: str = "starburst-base"
) -> str:
    """Import the stand-in base rootfs and push it; returns ``registry/repo@digest``."""
    rootfs = base_rootfs()
    tag = f"{registry.address}/{repository}:{BASE_SUITE}-py{BASE_PYTHON}"
    engine.docker(
        "import",
        "--change",
        "ENV LANG=C.UTF-8",
        "--change",
        'CMD ["python3"]',
        str(rootfs),
        tag,
    )
    engine.docker("push", tag)
    digest = engine.docker(
        "image", "inspect", "--format", "{{index .RepoDigests 0}}", tag
    ).stdout.strip()
    with contextlib.suppress(subprocess.CalledProcessError):
        engine.docker("image", "rm", tag)  # builds must pull it like any base image
    return digest
