"""Worker images: named by a hash of what goes in them, built only when missing.

    detect_environment ─▶ ImageInputs ─▶ tag ─▶ the registry has it? ──yes──▶ done
      uv.lock, poetry.lock,                         │ no
      requirements*.txt, pyproject.toml,            ▼
      else the installed distributions      download wheels here (pip download
                                            --only-binary, target platform/Python)
                                                    │
                                     ┌──────────────┴──────────────┐
                            Docker engine                  no engine (or another arch)
                 worker/Dockerfile, no network        base layers from the registry +
                 for the install stage; push          one layer installed here; push
                                     └──────────────┬──────────────┘
                                                    ▼
                                      <repository>@sha256:... (by digest)

The tag is a content hash of exactly these inputs: the environment's lock or
requirement files (or the installed distributions), the client's Python
major.minor, the worker (version, source, and the recipe: ``worker/Dockerfile``
and the install step), the base image reference and the CPU architecture. The same inputs give the same tag on any machine; any change
gives a new tag. If the registry already holds the tag, nothing is built and no
Docker engine is needed.

Both builders run one install script (:mod:`._image_install`) with one pip on
the same wheels for the same target, so their images hold the same files under
``/opt/starburst/site-packages`` and run the same. Registry access (the tag
check, the engine-less pull of the base and push of the image, ``list_images``)
goes through ``oras`` (oras-py, the ORAS project's OCI client: its
``get_manifest``, ``get_blob``/``download_blob``, ``upload_blob``,
``upload_manifest`` and ``get_tags``) with ECR's credentials
(GetAuthorizationToken, ``user:password`` in base64). oras has no call for a
manifest's digest, so the tag check is one HEAD sent through oras's own
authenticated request, on the URL its ``Container`` builds; no HTTP is written
here by hand. A registry on a loopback address is spoken to over plain HTTP, as
Docker does.

The user's own modules that are imported but not installed do not go in the
image: :mod:`._modules` ships them by value with each task. Editable installs
and packages installed from local paths are left out too and reported by name.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import gzip
import hashlib
import importlib.metadata as metadata
import io
import ipaddress
import json
import logging
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import starburst_worker

from ._errors import StarburstError

log = logging.getLogger("starburst")

#: ``Plan(image=AUTO)``: build (or find) the image for this environment.
AUTO = "auto"
#: Version of the inputs document; bump it when the image layout changes.
FORMAT = 1
LABEL_INPUTS = "dev.starburst.inputs"
LABEL_TAG = "dev.starburst.tag"
LABEL_BUILDER = "dev.starburst.builder"
PREFIX = "/opt/starburst"
SITE = f"{PREFIX}/site-packages"
#: glibc of the default base (Debian 12, as in python:3.x-slim); wheels must fit it.
GLIBC = (2, 36)
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
_OCI_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
_WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}
_OURS = (
    "starburst-sdk",
    "starburst-worker",
    "starburst-cli",
    "starburst-local",
    "starburst-workspace",
)
_TOOLS = ("pip",)  # build tools; not part of the image's environment
_ENV_BASE = "STARBURST_BASE_IMAGE"
_ENV_BUILDER = "STARBURST_IMAGE_BUILDER"
_WORKER_ENV = {
    "PYTHONPATH": SITE,
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "HOME": "/tmp",
}
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_CONFIG = "application/vnd.oci.image.config.v1+json"
_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
_INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_ACCEPT = ", ".join([_MANIFEST, _DOCKER_MANIFEST, *_INDEXES])


class ImageError(StarburstError):
    """The worker image could not be found, built or pushed."""


# -- the environment -------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A package that cannot go in the image as it is, and what to do about it."""

    package: str
    reason: str
    fix: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.package}: {self.reason}; {self.fix}"


@dataclass(frozen=True)
class Environment:
    """The user's dependencies as found on this machine.

    ``kind`` is ``uv.lock``, ``poetry.lock``, ``requirements``, ``pyproject`` or
    ``installed``; ``files`` the files that define it (hashed into the tag);
    ``requirements`` the pip requirement lines to install.
    """

    kind: str
    root: Path | None
    files: tuple[Path, ...]
    requirements: tuple[str, ...]
    problems: tuple[Problem, ...] = ()

    def fingerprint(self) -> dict[str, Any]:
        """The environment's part of the inputs document."""
        if self.kind == "installed":
            return {"kind": self.kind, "distributions": sorted(self.requirements)}
        assert self.root is not None
        return {
            "kind": self.kind,
            "files": {
                p.relative_to(self.root).as_posix(): _sha256(p.read_bytes())
                for p in sorted(self.files)
            },
        }


#: Directories that mark the root of a version-controlled tree: the upward search
#: for a project stops there.
_VCS = (".git", ".hg", ".svn")


def detect_environment(
    project_dir: str | os.PathLike[str] | None = None,
) -> Environment:
    """Find the user's dependencies: the project's lock or requirement files, else
    the installed distributions.

    A project is the first directory, from a start directory up through its
    parents (stopping at a VCS root, the home directory or ``/``), that holds
    ``uv.lock``, ``poetry.lock``, ``requirements*.txt`` or ``pyproject.toml``,
    preferred in that order. The start is ``project_dir`` when given; else the
    directory of the running script (``__main__``'s file, unless it is an
    installed tool under ``sys.prefix``, such as pytest or ``starburst-cli``),
    then the working directory. With no project, the running interpreter's
    installed distributions are used. Which one was used is logged (INFO).

    Raises:
        ImageError: ``project_dir`` is not a directory, or the lock cannot be
            read or exported.
    """
    if project_dir is not None:
        start = Path(project_dir).expanduser()
        if not start.is_dir():
            raise ImageError(
                f"the project directory {start} does not exist or is not a "
                "directory; pass the directory that holds the project's uv.lock, "
                "poetry.lock, requirements*.txt or pyproject.toml"
            )
        starts = [(f"the project directory {start}", start.resolve())]
    else:
        starts = []
        script = _main_script()
        if script is not None:
            starts.append((f"the running script {script}", script.parent))
        cwd = Path.cwd().resolve()
        starts.append((f"the working directory {cwd}", cwd))
    for why, first in starts:
        found = _find_project(first)
        if found is not None:
            env = found()
            log.info(
                "worker image: environment from %s (%s, found from %s)",
                ", ".join(str(f) for f in env.files) or env.root,
                env.kind,
                why,
            )
            return env
    env = _from_installed()
    log.info(
        "worker image: no project files (uv.lock, poetry.lock, requirements*.txt, "
        "pyproject.toml) in %s or its parents; using the %d installed distributions "
        "of %s",
        " or ".join(str(first) for _, first in starts),
        len(env.requirements),
        sys.executable,
    )
    return env


def _main_script() -> Path | None:
    """The file of the running ``__main__`` (``python path/run.py``), or None for
    an interactive session, ``python -c``, a notebook, or an installed tool."""
    main = sys.modules.get("__main__")
    name = getattr(main, "__file__", None)
    if not name:
        return None
    path = Path(name).resolve()
    if not path.is_file():
        return None
    if any(path.is_relative_to(d) for d in _installed_dirs()):
        return None  # pytest, ipykernel, starburst-cli: not the user's project
    return path


def _installed_dirs() -> list[Path]:
    """Where installed code and console scripts live (site-packages, the
    interpreter's and the user's script dirs, the standard library)."""
    found = []
    for scheme in {sysconfig.get_default_scheme(), f"{os.name}_user"}:
        for key in ("purelib", "platlib", "scripts", "stdlib", "platstdlib"):
            with contextlib.suppress(KeyError):
                found.append(Path(sysconfig.get_path(key, scheme)).resolve())
    return found


def _find_project(start: Path) -> Callable[[], Environment] | None:
    """A function that reads the first project at or above ``start``, or None."""
    home = Path.home()
    for folder in (start, *start.parents):
        if (folder / "uv.lock").is_file():
            return functools.partial(_from_uv_lock, folder)
        if (folder / "poetry.lock").is_file():
            return functools.partial(_from_poetry_lock, folder)
        reqs = _requirement_files(folder)
        if reqs:
            return functools.partial(_from_requirement_files, folder, reqs)
        if (folder / "pyproject.toml").is_file():
            return functools.partial(_from_pyproject, folder)
        if folder == home or any((folder / v).exists() for v in _VCS):
            break
    return None


def _requirement_files(folder: Path) -> list[Path]:
    main = folder / "requirements.txt"
    if main.is_file():
        return [main]
    return sorted(folder.glob("requirements*.txt"))


def _local_problem(name: str, where: str, editable: bool = False) -> Problem:
    how = "an editable install" if editable else "installed from a local path"
    return Problem(
        name,
        f"{how} ({where}), so it is not put in the image",
        "its pure-Python modules your functions use travel with each task by value; "
        "if it needs compiled code or data files, build a wheel (`pip wheel "
        f"{where}`), publish it to an index, and depend on that version",
        fatal=False,
    )


def _split_local(lines: Iterable[str], root: Path) -> tuple[list[str], list[Problem]]:
    keep: list[str] = []
    problems: list[Problem] = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e ", "--editable")):
            where = line.split(None, 1)[1] if " " in line else line
            problems.append(_local_problem(_guess_name(where), where, editable=True))
        elif line.startswith("-"):
            continue  # index and hash options: the image is installed offline
        elif line.startswith((".", "/", "file:")) or " @ file:" in line:
            problems.append(_local_problem(_guess_name(line), line))
        elif re.match(
            r"^[\w.\-\[\], ]+@\s*(git\+|hg\+|svn\+|bzr\+)", line
        ) or line.startswith(("git+", "hg+", "svn+", "bzr+")):
            problems.append(
                Problem(
                    _guess_name(line),
                    f"comes from version control ({line})",
                    "wheels are needed: build one (`pip wheel <url>`), publish it to an "
                    "index and pin that version",
                )
            )
        else:
            # Per-requirement options (--hash=...) go: the wheels are downloaded
            # here and installed offline.
            spec = re.split(r"\s+--?[A-Za-z]", line, maxsplit=1)[0].strip()
            invalid = _invalid_requirement(spec, line)
            if invalid:
                problems.append(invalid)
            else:
                keep.append(spec)
    return keep, problems


def _invalid_requirement(spec: str, line: str) -> Problem | None:
    """A fatal problem if ``spec`` is not a PEP 508 requirement, else None."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(spec)
    except InvalidRequirement as exc:
        why = str(exc).splitlines()[0] if str(exc) else "not PEP 508"
        return Problem(
            repr(line),
            f"is not a valid requirement ({why})",
            "fix that line in the project's requirements: a name, optional "
            "[extras], version specifiers such as ==1.2 or >=1,<2, and an optional "
            "; marker",
        )
    return None


def _guess_name(spec: str) -> str:
    spec = spec.strip().rstrip("/")
    if "#egg=" in spec:
        return spec.split("#egg=", 1)[1]
    if " @ " in spec:
        return spec.split(" @ ", 1)[0].strip()
    return Path(spec.split(":", 1)[-1]).name or spec


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    with contextlib.suppress(ImportError):
        import uv  # type: ignore[import-not-found]

        return [uv.find_uv_bin()]
    raise ImageError(
        "this project is locked with uv.lock, but `uv` is not installed; "
        "install it (`pip install uv`) so its lock can be exported"
    )


def _from_uv_lock(root: Path) -> Environment:
    cmd = [
        *_uv(),
        "export",
        "--frozen",
        "--no-dev",
        "--no-hashes",
        "--no-header",
        "--no-annotate",
        "--no-emit-project",
        "--no-emit-workspace",
        "--format",
        "requirements.txt",
    ]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageError(f"`uv export` failed in {root}: {done.stderr.strip()}")
    lines, problems = _split_local(done.stdout.splitlines(), root)
    return Environment(
        "uv.lock", root, (root / "uv.lock",), tuple(lines), tuple(problems)
    )


def _from_poetry_lock(root: Path) -> Environment:
    path = root / "poetry.lock"
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImageError(f"{path} cannot be read: {exc}") from None
    lines: list[str] = []
    problems: list[Problem] = []
    for pkg in doc.get("package", []):
        groups = pkg.get("groups") or [pkg.get("category", "main")]
        if "main" not in groups:
            continue
        name, version = pkg["name"], pkg["version"]
        source = pkg.get("source") or {}
        kind = source.get("type")
        if kind in ("directory", "file"):
            problems.append(
                _local_problem(name, source.get("url", "?"), bool(pkg.get("develop")))
            )
            continue
        if kind in ("git", "url"):
            problems.append(
                Problem(
                    name,
                    f"comes from {kind} {source.get('url', '?')}",
                    "wheels are needed: build one, publish it to an index and pin it",
                )
            )
            continue
        markers = pkg.get("markers")
        if isinstance(markers, dict):
            markers = markers.get("main")
        lines.append(f"{name}=={version}" + (f" ; {markers}" if markers else ""))
    return Environment(
        "poetry.lock", root, (path,), tuple(sorted(lines)), tuple(problems)
    )


def _read_requirements(path: Path, seen: set[Path]) -> tuple[list[str], list[Path]]:
    """A requirements file's lines with ``-r`` includes expanded."""
    path = path.resolve()
    if path in seen:
        return [], []
    seen.add(path)
    lines: list[str] = []
    files = [path]
    for raw in re.sub(r"\\\r?\n", " ", path.read_text()).splitlines():
        line = raw.strip()
        if line.startswith(("-r ", "--requirement")):
            inner = path.parent / line.split(None, 1)[1].strip()
            more, more_files = _read_requirements(inner, seen)
            lines += more
            files += more_files
        else:
            lines.append(line)
    return lines, files


def _from_requirement_files(root: Path, paths: list[Path]) -> Environment:
    lines: list[str] = []
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        more, more_files = _read_requirements(path, seen)
        lines += more
        files += more_files
    keep, problems = _split_local(lines, root)
    return Environment("requirements", root, tuple(files), tuple(keep), tuple(problems))


def _from_pyproject(root: Path) -> Environment:
    path = root / "pyproject.toml"
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImageError(f"{path} cannot be read: {exc}") from None
    deps = list((doc.get("project") or {}).get("dependencies") or [])
    keep, problems = _split_local(deps, root)
    return Environment("pyproject", root, (path,), tuple(keep), tuple(problems))


def _from_installed() -> Environment:
    lines: dict[str, str] = {}
    problems: list[Problem] = []
    for dist in metadata.distributions():
        name = _normalize(dist.metadata["Name"] or "")
        if not name or name in _OURS or name in _TOOLS or name in lines:
            continue
        direct = _direct_url(dist)
        if direct is not None:
            url = direct.get("url", "")
            if direct.get("dir_info", {}).get("editable"):
                problems.append(_local_problem(name, url, editable=True))
                continue
            if url.startswith("file:"):
                problems.append(_local_problem(name, url))
                continue
            if "vcs_info" in direct:
                problems.append(
                    Problem(
                        name,
                        f"was installed from version control ({url})",
                        "wheels are needed: build one, publish it to an index and pin it",
                    )
                )
                continue
        lines[name] = f"{name}=={dist.version}"
    return Environment(
        "installed", None, (), tuple(sorted(lines.values())), tuple(problems)
    )


def _direct_url(dist: metadata.Distribution) -> dict[str, Any] | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- the inputs and the tag ------------------------------------------------------------


@dataclass(frozen=True)
class ImageInputs:
    """Exactly what a worker image is made of; its tag is a hash of these."""

    environment: dict[str, Any]
    python: str
    worker: dict[str, Any]
    base: str
    arch: str

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "environment": self.environment,
            "python": self.python,
            "worker": self.worker,
            "base": self.base,
            "arch": self.arch,
        }

    @property
    def digest(self) -> str:
        doc = json.dumps(self.document(), sort_keys=True, separators=(",", ":"))
        return _sha256(doc.encode())

    @property
    def tag(self) -> str:
        """``py<major.minor>-<arch>-<24 hex digits of the hash>``."""
        return f"py{self.python}-{self.arch}-{self.digest[:24]}"


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def normalize_arch(arch: str | None = None) -> str:
    """``x86_64`` or ``arm64`` (from aliases such as ``amd64``, ``aarch64``)."""
    value = (arch or platform.machine()).lower()
    if value not in ARCHES:
        raise ValueError(f"arch must be x86_64 or arm64, not {arch!r}")
    return ARCHES[value]


def default_base_image(python: str | None = None) -> str:
    """``$STARBURST_BASE_IMAGE``, else the official ``python:<major.minor>-slim``."""
    return os.environ.get(_ENV_BASE) or f"python:{python or python_version()}-slim"


def worker_files() -> dict[str, bytes]:
    """The worker package's source files (relative path -> bytes)."""
    root = Path(starburst_worker.__file__).resolve().parent
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def worker_requirements(environment: Environment) -> list[str]:
    """The worker's own dependencies the environment does not name, pinned to the
    versions this client runs (cloudpickle and msgpack must match across the wire)."""
    from packaging.requirements import InvalidRequirement, Requirement

    named = set()
    for line in environment.requirements:
        with contextlib.suppress(InvalidRequirement):
            named.add(_normalize(Requirement(line).name))
    out = []
    for spec in metadata.requires("starburst-worker") or []:
        req = Requirement(spec)
        name = _normalize(req.name)
        if name in named or (req.marker and not req.marker.evaluate()):
            continue
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(str(req))
    return sorted(out)


def image_inputs(
    environment: Environment | None = None,
    *,
    python: str | None = None,
    base_image: str | None = None,
    arch: str | None = None,
) -> ImageInputs:
    """The inputs of the worker image for ``environment`` (default: detected)."""
    env = environment or detect_environment()
    python = python or python_version()
    files = worker_files()
    worker = {
        "version": starburst_worker.__version__,
        "sha256": _sha256(b"".join(k.encode() + b"\0" + v for k, v in files.items())),
        "requirements": worker_requirements(env),
        # How the image is made: a change to the Dockerfile or the install step
        # changes every tag, as a change to the worker's code does.
        "recipe": _sha256(
            dockerfile_path().read_bytes()
            + b"\0"
            + Path(__file__).with_name("_image_install.py").read_bytes()
        ),
    }
    return ImageInputs(
        environment=env.fingerprint(),
        python=python,
        worker=worker,
        base=base_image or default_base_image(python),
        arch=normalize_arch(arch),
    )


# -- registry access -------------------------------------------------------------------


def decode_authorization_token(token: str) -> tuple[str, str]:
    """ECR's ``authorizationToken`` (base64 of ``user:password``) -> (user, password).

    Raises:
        ImageError: the token is not base64 of ``user:password``.
    """
    try:
        text = base64.b64decode(token.encode(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ImageError("the ECR authorization token is not valid base64") from None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ImageError("the ECR authorization token is not of the form user:password")
    return user, password


def ecr_credentials(ecr: Any) -> tuple[str, str]:
    """(user, password) for ECR's registry, from GetAuthorizationToken."""
    resp = ecr.get_authorization_token()
    data = resp.get("authorizationData") or []
    if not data:
        raise ImageError("ECR GetAuthorizationToken returned no authorization data")
    return decode_authorization_token(data[0]["authorizationToken"])


def split_reference(ref: str) -> tuple[str, str, str]:
    """``host/repo[:tag|@digest]`` -> (host, repository, tag or digest).

    Docker Hub short names (``python:3.11-slim``) become
    ``registry-1.docker.io``, ``library/python``.
    """
    name, reference = ref, "latest"
    if "@" in ref:
        name, reference = ref.split("@", 1)
    else:
        head, _, last = ref.rpartition("/")
        if ":" in last:
            last, reference = last.split(":", 1)
            name = f"{head}/{last}" if head else last
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repo = first, rest
    else:
        host, repo = "registry-1.docker.io", name
    if host in ("docker.io", "index.docker.io"):
        host = "registry-1.docker.io"
    if host == "registry-1.docker.io" and "/" not in repo:
        repo = f"library/{repo}"
    return host, repo, reference


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class RegistryClient:
    """One repository of an OCI registry, spoken to through the ``oras`` client.

    ``oras`` (the ORAS project's Python client) does the registry API: the auth
    handshake (HTTP basic with ECR's credentials, or the anonymous token flow of
    Docker Hub when ``credentials`` is None), manifest and blob reads, blob
    uploads (skipped when the registry has the blob) and manifest pushes. The one
    request it has no call for, HEAD of a manifest (a tag's digest without
    downloading it), goes through its authenticated ``do_request`` on the URL its
    ``Container`` builds.
    """

    def __init__(
        self, host: str, repository: str, credentials: tuple[str, str] | None = None
    ) -> None:
        import oras.provider

        self.host, self.repository = host, repository
        backend = "basic" if credentials else "token"
        self._oras = oras.provider.Registry(
            hostname=host, insecure=is_loopback(host), auth_backend=backend
        )
        if credentials:
            self._oras.auth.set_basic_auth(*credentials)
        self._probed = False

    def _container(self, reference: str) -> Any:
        sep = "@" if reference.startswith("sha256:") else ":"
        return self._oras.get_container(
            f"{self.host}/{self.repository}{sep}{reference}"
        )

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, with the client's failures as :class:`ImageError`."""
        import requests

        self._probe(what)
        try:
            return fn(*args, **kwargs)
        except requests.ConnectionError as exc:
            raise ImageError(_unreachable(self.host, what, exc)) from None
        except (requests.RequestException, ValueError) as exc:
            text = str(exc)
            if "authentication" in text:
                raise ImageError(
                    f"the container registry {self.host} refused the credentials "
                    f"({what}); the ECR authorization token comes from "
                    "GetAuthorizationToken: check that your AWS identity may call "
                    "ecr:GetAuthorizationToken and push to and pull from the "
                    f"repository {self.repository}"
                ) from None
            raise ImageError(
                f"{what} on {self.host}/{self.repository} failed: {text}"
            ) from None

    def _probe(self, what: str) -> None:
        """Fail at once, saying why, when the registry's host does not resolve or
        take a connection: oras retries a failed request for about two minutes.
        Skipped when a proxy carries the requests (only the proxy can tell)."""
        if self._probed:
            return
        self._probed = True
        from urllib.parse import urlsplit

        import requests.utils

        url = f"{self._oras.prefix}://{self.host}/"
        if requests.utils.get_environ_proxies(url):
            return
        parts = urlsplit(url)
        try:
            port = parts.port or (80 if parts.scheme == "http" else 443)
        except ValueError:
            return  # not host[:port]: oras says what is wrong with it
        try:
            with socket.create_connection((parts.hostname or self.host, port), 10):
                pass
        except OSError as exc:
            raise ImageError(_unreachable(self.host, what, exc)) from None

    def manifest_digest(self, reference: str) -> str | None:
        """The digest of ``reference`` (a tag), or None if the repository lacks it."""
        url = f"{self._oras.prefix}://{self._container(reference).manifest_url()}"
        resp = self._call(
            f"looking up {reference}",
            self._oras.do_request,
            url,
            "HEAD",
            headers={"Accept": _ACCEPT},
        )
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise ImageError(
                f"the container registry {self.host} answered HTTP "
                f"{resp.status_code} for {self.repository}:{reference}"
            )
        digest = resp.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        # Not every registry names the digest on HEAD: hash the manifest's bytes.
        resp = self._call(
            f"reading {reference}",
            self._oras.do_request,
            url,
            "GET",
            headers={"Accept": _ACCEPT},
        )
        return "sha256:" + _sha256(resp.content)

    def manifest(self, reference: str) -> tuple[dict[str, Any], str]:
        """(manifest, its media type) of a tag or digest."""
        doc = self._call(
            f"reading the manifest of {reference}",
            self._oras.get_manifest,
            self._container(reference),
            allowed_media_type=_ACCEPT.split(", "),
        )
        media_type = doc.get("mediaType") or (
            _INDEXES[0] if "manifests" in doc else _MANIFEST
        )
        return doc, media_type

    def blob(self, digest: str) -> bytes:
        """A small blob (a config), checked against its digest."""
        resp = self._call(
            f"reading blob {digest}",
            self._oras.get_blob,
            self._container(digest),
            digest,
        )
        if resp.status_code != 200:
            raise ImageError(
                f"blob {digest} of {self.host}/{self.repository} not "
                f"found (HTTP {resp.status_code})"
            )
        if "sha256:" + _sha256(resp.content) != digest:
            raise ImageError(f"blob {digest} from {self.host} failed its digest check")
        return resp.content

    def fetch_blob(self, digest: str, dest: Path) -> Path:
        """The blob streamed to ``dest`` (kept as a cache), checked against its digest."""
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_suffix(".part")
        self._call(
            f"downloading blob {digest}",
            self._oras.download_blob,
            self._container(digest),
            digest,
            str(part),
        )
        if "sha256:" + _sha256_file(part) != digest:
            part.unlink()
            raise ImageError(f"blob {digest} from {self.host} failed its digest check")
        part.replace(dest)
        return dest

    def push_blob(self, path: Path, digest: str, media_type: str) -> None:
        """Upload ``path`` as blob ``digest`` (nothing is sent if the registry has it)."""
        layer = {"mediaType": media_type, "digest": digest, "size": path.stat().st_size}
        resp = self._call(
            f"pushing blob {digest}",
            self._oras.upload_blob,
            str(path),
            self._container("latest"),
            layer,
        )
        if resp.status_code not in (200, 201, 202):
            raise ImageError(
                f"pushing blob {digest} to {self.host} failed: HTTP "
                f"{resp.status_code} {resp.text[:300]}"
            )

    def push_manifest(self, manifest: dict[str, Any], tag: str) -> str:
        """Upload ``manifest`` under ``tag``; returns its digest."""
        resp = self._call(
            f"pushing the manifest of {tag}",
            self._oras.upload_manifest,
            manifest,
            self._container(tag),
        )
        if resp.status_code not in (200, 201):
            raise ImageError(
                f"pushing the manifest of {tag} to {self.host} failed: "
                f"HTTP {resp.status_code} {resp.text[:300]}"
            )
        digest = resp.headers.get("Docker-Content-Digest")
        return digest or self.manifest_digest(tag) or ""

    def tags(self) -> list[str]:
        """The repository's tags; [] when the repository has none yet."""
        try:
            return sorted(
                self._call(
                    "listing tags", self._oras.get_tags, self._container("latest")
                )
            )
        except ImageError as exc:
            if (
                "404" in str(exc)
                or "NAME_UNKNOWN" in str(exc)
                or "Not Found" in str(exc)
            ):
                return []
            raise

    def config_of(self, reference: str, arch: str | None = None) -> dict[str, Any]:
        """The image config (labels, env, layers' diff ids) of a tag or digest."""
        manifest, media_type = self.manifest(reference)
        if media_type in _INDEXES or "manifests" in manifest:
            manifest = self.manifest(_pick_platform(manifest, arch or "x86_64"))[0]
        return json.loads(self.blob(manifest["config"]["digest"]))


def _unreachable(host: str, what: str, exc: BaseException) -> str:
    """Why the registry ``host`` could not be reached, and what to do."""
    text = str(exc)
    name = host.rsplit(":", 1)[0]
    if is_loopback(host):
        return (
            f"the container registry {host} does not answer ({what}); is the local "
            "cloud's registry running? `starburst-cli local status` says"
        )
    unresolved = isinstance(exc, socket.gaierror) or any(
        s in text
        for s in (
            "NameResolutionError",
            "Name or service not known",
            "nodename nor servname",
            "getaddrinfo failed",
            "Temporary failure in name resolution",
            "No address associated",
            "Failed to resolve",
        )
    )
    problem = (
        f"the container registry host {name} does not resolve in DNS ({what})"
        if unresolved
        else f"the container registry {host} does not answer ({what})"
    )
    local = sorted(
        (key not in ("AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL"), key)
        for key, value in os.environ.items()
        if key.startswith("AWS_ENDPOINT_URL") and _loopback_url(value)
    )
    if local:
        key = local[0][1]
        return (
            f"{problem}. This shell's AWS endpoints point at the local cloud "
            f"({key}={os.environ[key]}), whose process mode has no "
            "container registry (its tasks run as local processes, and its ECR "
            "repository URL is a name only); `starburst-cli local up --containers` "
            "starts a local cloud with one"
        )
    return (
        f"{problem}: check the network (and HTTPS_PROXY) and that the "
        "deployment's ECR repository is in the region this shell uses"
    )


def _loopback_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    return is_loopback(host)


def _pick_platform(index: dict[str, Any], arch: str) -> str:
    want = _OCI_ARCH[arch]
    for entry in index.get("manifests", []):
        plat = entry.get("platform") or {}
        if plat.get("os") == "linux" and plat.get("architecture") == want:
            return entry["digest"]
    raise ImageError(
        f"the base image has no linux/{want} variant; pick a base "
        f"image published for {want}, or another arch"
    )


# -- building --------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageResult:
    """A worker image in the registry."""

    ref: str  # <repository url>@sha256:...
    tag: str
    digest: str
    built: bool
    builder: str | None  # "docker", "oci", or None when it was already there
    inputs: ImageInputs
    warnings: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _wheel_platforms(arch: str) -> list[str]:
    """Every manylinux tag the base's glibc accepts, newest first (pip does not
    expand them itself)."""
    machine = _WHEEL_ARCH[arch]
    major, newest = GLIBC
    tags = [f"manylinux_{major}_{minor}_{machine}" for minor in range(newest, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine == "x86_64":
        tags += [f"manylinux_2_{m}_{machine}" for m in (12, 5)]
        tags += [f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    return tags


def _abi(python: str) -> str:
    return "cp" + python.replace(".", "")


def download_wheels(
    requirements: list[str], dest: Path, python: str, arch: str
) -> None:
    """``pip download --only-binary=:all:`` for the target.

    On failure every requirement pip could not satisfy is reported (not only
    pip's first), each as what the index says of it: no such package, no such
    version, or versions without a wheel for the target; an invalid requirement
    line is quoted. Raises :class:`ImageError`.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if not requirements:
        return
    req_file = dest.parent / "download-requirements.txt"
    req_file.write_text("\n".join(requirements) + "\n")
    done = _pip_download(["-r", str(req_file)], dest, python, arch)
    req_file.unlink()
    if done.returncode == 0:
        return
    invalid = _invalid_lines(done.stderr)
    missing = _no_match(done.stderr)
    if len(requirements) <= 60:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(4) as pool:
            checks = list(
                pool.map(
                    lambda r: (r, _pip_download([r, "--no-deps"], dest, python, arch)),
                    requirements,
                )
            )
        for req, result in checks:
            if result.returncode != 0:
                bad = _invalid_lines(result.stderr)
                invalid |= bad
                if not bad:
                    missing |= _no_match(result.stderr) or {req}
    if invalid:
        lines = ", ".join(repr(line) for line in sorted(invalid))
        raise ImageError(
            f"pip rejected these requirement lines as invalid: {lines}. Fix them in "
            "the project's requirements (PEP 508: a name, optional [extras], "
            "version specifiers such as ==1.2, an optional ; marker)"
        )
    if missing:
        by_name: dict[str, str] = {}
        for spec in missing:  # one per package, the fullest of pip's spellings
            name = _normalize(re.split(r"[<>=!~\[ ;@]", spec, maxsplit=1)[0])
            if len(spec) > len(by_name.get(name, "")):
                by_name[name] = spec
        raise ImageError(_missing_message(sorted(by_name.values()), python, arch))
    raise ImageError(f"downloading the wheels failed:\n{done.stderr.strip()[-2000:]}")


def _missing_message(specs: list[str], python: str, arch: str) -> str:
    """Why pip found nothing for each of ``specs``, from what the index lists."""
    from packaging.requirements import InvalidRequirement, Requirement

    unknown: list[str] = []
    no_version: list[str] = []
    no_wheel: list[str] = []
    for spec in specs:
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            no_wheel.append(spec)
            continue
        versions = _index_versions(req.name, python, arch)
        if versions == []:  # none for this Python: for any?
            versions = _index_versions(req.name, None, arch)
            if versions:
                no_version.append(f"{spec} (no release supports Python {python})")
                continue
        if versions is None:
            no_wheel.append(req.name)  # the index could not be asked: pip's words
        elif not versions:
            unknown.append(spec)
        elif req.specifier and not any(
            req.specifier.contains(v, prereleases=True) for v in versions
        ):
            more = ", ..." if len(versions) > 5 else ""
            no_version.append(f"{spec} (the index has {', '.join(versions[:5])}{more})")
        else:
            no_wheel.append(req.name)
    parts = []
    if unknown:
        parts.append(
            "no package of this name on the index: "
            + ", ".join(unknown)
            + ". Check the name's spelling in the project's requirements, and, for a "
            "private package, that pip is configured for its index (PIP_INDEX_URL, "
            "PIP_EXTRA_INDEX_URL or pip.conf)."
        )
    if no_version:
        parts.append(
            f"no version matching the requirement for Python {python} on the "
            "index: " + "; ".join(no_version) + ". Check the version pin."
        )
    if no_wheel:
        platforms = f"manylinux, glibc {GLIBC[0]}.{GLIBC[1]} or older"
        parts.append(
            f"no wheel for Python {python} on linux {arch} ({platforms}) for: "
            f"{', '.join(sorted(set(no_wheel)))}. starburst installs wheels only (no "
            "compilers in the image). Pin a version that publishes a manylinux "
            "wheel, or build one for the target (e.g. with cibuildwheel) and "
            "publish it to an index you install from."
        )
    return "\n".join(parts)


def _index_versions(name: str, python: str | None, arch: str) -> list[str] | None:
    """The versions of ``name`` the index has for Python ``python`` (None: any),
    as any kind of distribution (``pip index versions``), newest first; [] when
    there are none; None when pip could not tell."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "index",
        "versions",
        "--json",
        "--pre",
        "--disable-pip-version-check",
    ]
    if python is not None:
        cmd += ["--python-version", python, "--implementation", "cp"]
        cmd += ["--abi", _abi(python)]
        for plat in _wheel_platforms(arch):
            cmd += ["--platform", plat]
    else:
        cmd.append("--ignore-requires-python")
    done = subprocess.run([*cmd, name], capture_output=True, text=True)
    if done.returncode != 0:
        return [] if "No matching distribution found" in done.stderr else None
    try:
        return [str(v) for v in json.loads(done.stdout).get("versions", [])]
    except (ValueError, AttributeError):
        return None


def _pip_download(
    args: list[str], dest: Path, python: str, arch: str
) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        _abi(python),
    ]
    for plat in _wheel_platforms(arch):
        cmd += ["--platform", plat]
    return subprocess.run(cmd + args, capture_output=True, text=True)


def _no_match(stderr: str) -> set[str]:
    """The requirements pip found no distribution for, as pip printed them."""
    return {
        f.strip()
        for f in re.findall(r"No matching distribution found for ([^;\n]+)", stderr)
    }


def _invalid_lines(stderr: str) -> set[str]:
    """The requirement lines pip rejected as invalid, as pip quoted them."""
    return {
        m.group(2)
        for m in re.finditer(
            r"Invalid requirement: (['\"])(.*?)\1(?=:|\s|$)", stderr, re.MULTILINE
        )
    }


def _pip_wheel(dest: Path) -> Path:
    version = metadata.version("pip")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "--dest",
            str(dest),
            f"pip=={version}",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise ImageError(
            f"downloading pip {version} (the image's installer) failed:\n"
            f"{done.stderr.strip()[-1000:]}"
        )
    return next(dest.glob("pip-*.whl"))


def dockerfile_path() -> Path:
    """``worker/Dockerfile``: shipped inside the worker package, or the source tree's."""
    here = Path(starburst_worker.__file__).resolve().parent
    for candidate in (here / "Dockerfile", here.parents[1] / "Dockerfile"):
        if candidate.is_file():
            return candidate
    raise ImageError(
        "worker/Dockerfile was not found beside starburst_worker; "
        "reinstall starburst-worker"
    )


def write_build_context(
    dest: str | os.PathLike[str],
    environment: Environment,
    inputs: ImageInputs,
    *,
    download: bool = True,
) -> Path:
    """Write the build context both builders use into ``dest``.

    Layout: ``Dockerfile``, ``install.py`` + ``install.json`` (the target),
    ``requirements.txt`` (the environment's lines plus the worker's own),
    ``worker/starburst_worker/``, ``inputs.json``, and with ``download``:
    ``tools/pip-*.whl`` and ``wheels/``.
    """
    ctx = Path(dest)
    ctx.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dockerfile_path(), ctx / "Dockerfile")
    shutil.copyfile(Path(__file__).with_name("_image_install.py"), ctx / "install.py")
    spec = {
        "python": inputs.python,
        "abi": _abi(inputs.python),
        "site": SITE,
        "platforms": _wheel_platforms(inputs.arch),
    }
    (ctx / "install.json").write_text(json.dumps(spec, indent=2) + "\n")
    lines = list(environment.requirements) + list(inputs.worker["requirements"])
    (ctx / "requirements.txt").write_text("".join(f"{line}\n" for line in lines))
    (ctx / "inputs.json").write_text(
        json.dumps(inputs.document(), indent=2, sort_keys=True) + "\n"
    )
    worker_dir = ctx / "worker" / "starburst_worker"
    for rel, data in worker_files().items():
        (worker_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (worker_dir / rel).write_bytes(data)
    (ctx / ".dockerignore").write_text("**/__pycache__\n")
    if download:
        _pip_wheel(ctx / "tools")
        download_wheels(lines, ctx / "wheels", inputs.python, inputs.arch)
    else:
        (ctx / "wheels").mkdir(exist_ok=True)
        (ctx / "tools").mkdir(exist_ok=True)
    return ctx


def _labels(inputs: ImageInputs, builder: str) -> dict[str, str]:
    return {
        LABEL_INPUTS: json.dumps(
            inputs.document(), sort_keys=True, separators=(",", ":")
        ),
        LABEL_TAG: inputs.tag,
        LABEL_BUILDER: builder,
    }


def docker_client() -> Any | None:
    """A Docker SDK client when an engine answers (``DOCKER_HOST`` or the default
    socket), else None."""
    try:
        import docker
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except Exception as exc:
        log.debug("no Docker engine: %s", exc)
        return None


def build_with_docker(
    client: Any,
    ctx: Path,
    inputs: ImageInputs,
    repository_url: str,
    credentials: tuple[str, str] | None,
) -> str:
    """Build ``ctx`` with the engine (install stage without network), push, -> digest."""
    import docker.errors

    target = f"{repository_url}:{inputs.tag}"
    try:
        _image, logs = client.images.build(
            path=str(ctx),
            dockerfile="Dockerfile",
            tag=target,
            rm=True,
            forcerm=True,
            network_mode="none",
            labels=_labels(inputs, "docker"),
            buildargs={"BASE_IMAGE": inputs.base},
            platform=f"linux/{_OCI_ARCH[inputs.arch]}",
        )
    except docker.errors.BuildError as exc:
        text = "".join(
            str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log
        )
        raise ImageError(
            f"docker build of the worker image failed: {exc}. If the engine cannot "
            f"pull the base image {inputs.base}, point STARBURST_BASE_IMAGE at one it "
            "can pull, or build without the engine (STARBURST_IMAGE_BUILDER=oci). "
            f"The build's output ends:\n{text[-3000:]}"
        ) from None
    except docker.errors.APIError as exc:
        raise ImageError(
            f"the Docker engine refused to build the worker image: {exc}"
        ) from None
    del logs
    with contextlib.suppress(Exception):  # the install stage, now dangling
        client.images.prune(filters={"dangling": True})
    auth = (
        {"username": credentials[0], "password": credentials[1]}
        if credentials
        else None
    )
    digest = None
    for line in client.images.push(
        repository_url, tag=inputs.tag, auth_config=auth, stream=True, decode=True
    ):
        if "error" in line:
            raise ImageError(
                f"docker push of {target} failed: {line['error']}. Check that the ECR "
                "repository exists (terraform apply) and that your AWS identity may "
                "push to it (ecr:InitiateLayerUpload, ecr:PutImage)"
            )
        digest = (line.get("aux") or {}).get("Digest") or digest
    if not digest:
        raise ImageError(f"docker push of {target} reported no digest")
    return digest


def _tar_layer(root: Path, out: Path) -> tuple[str, str]:
    """A gzip layer of ``root``'s tree; -> (compressed digest, uncompressed digest).

    Entries are sorted, owned by root, with times zeroed, so equal trees give
    equal layers.
    """
    raw = hashlib.sha256()

    class _Hashing(io.RawIOBase):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            raw.update(b)
            return self.inner.write(b)

    with (
        open(out, "wb") as fh,
        gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=_Hashing(gz), mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in _walk(root):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isfile():
                info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                with open(path, "rb") as src:
                    tar.addfile(info, src)
            else:
                info.mode = 0o755
                tar.addfile(info)
    return "sha256:" + _sha256_file(out), "sha256:" + raw.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        if base != root:
            yield base
        for name in sorted(filenames):
            yield base / name


def assemble_oci(
    ctx: Path,
    inputs: ImageInputs,
    repository_url: str,
    credentials: tuple[str, str] | None,
    cache: Path | None = None,
) -> str:
    """Build without an engine: the base image's layers plus one layer installed here.

    The install script runs on this client (same pip, same wheels, same target
    flags as inside the Dockerfile); the layer and a config derived from the
    base's are pushed with the base's layers through the registry API. -> digest.
    """
    if inputs.python != python_version():
        raise ImageError(
            f"assembling an image for Python {inputs.python} needs a "
            f"Python {inputs.python} client (this is {python_version()})"
        )
    host, repo, _ = split_reference(repository_url + ":x")
    target = RegistryClient(host, repo, credentials)
    bhost, brepo, bref = split_reference(inputs.base)
    base = (
        target
        if (bhost, brepo) == (host, repo)
        else RegistryClient(bhost, brepo, credentials if bhost == host else None)
    )
    try:
        manifest, media_type = base.manifest(bref)
        if media_type in _INDEXES or "manifests" in manifest:
            manifest = base.manifest(_pick_platform(manifest, inputs.arch))[0]
        config = json.loads(base.blob(manifest["config"]["digest"]))
    except ImageError as exc:
        raise ImageError(
            f"the base image {inputs.base} cannot be read from its "
            f"registry: {exc}. Set STARBURST_BASE_IMAGE (or --base-image) "
            "to an image a registry you can reach holds"
        ) from None
    if config.get("architecture") not in (None, _OCI_ARCH[inputs.arch]):
        raise ImageError(
            f"the base image {inputs.base} is {config['architecture']}, "
            f"not {_OCI_ARCH[inputs.arch]}"
        )
    blobs = cache or _cache_dir() / "blobs"
    with tempfile.TemporaryDirectory(prefix="starburst-layer-") as tmp:
        stage = Path(tmp) / "root"
        site = stage / SITE.lstrip("/")
        done = subprocess.run(
            [sys.executable, str(ctx / "install.py"), str(site)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        if done.returncode != 0:
            raise ImageError(f"installing the wheels failed:\n{done.stderr[-3000:]}")
        layer = Path(tmp) / "layer.tar.gz"
        layer_digest, diff_id = _tar_layer(stage, layer)
        layers = [
            {
                "mediaType": _layer_type(d.get("mediaType")),
                "digest": d["digest"],
                "size": d["size"],
            }
            for d in manifest["layers"]
        ]
        for desc in layers:
            path = base.fetch_blob(
                desc["digest"], blobs / desc["digest"].replace(":", "/")
            )
            target.push_blob(path, desc["digest"], desc["mediaType"])
        target.push_blob(layer, layer_digest, _LAYER)
        new_config = _derive_config(config, inputs, diff_id)
        config_bytes = json.dumps(
            new_config, sort_keys=True, separators=(",", ":")
        ).encode()
        config_path = Path(tmp) / "config.json"
        config_path.write_bytes(config_bytes)
        config_digest = "sha256:" + _sha256(config_bytes)
        target.push_blob(config_path, config_digest, _CONFIG)
        layers.append(
            {"mediaType": _LAYER, "digest": layer_digest, "size": layer.stat().st_size}
        )
        new_manifest = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST,
            "config": {
                "mediaType": _CONFIG,
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": layers,
            "annotations": {LABEL_TAG: inputs.tag},
        }
        return target.push_manifest(new_manifest, inputs.tag)


def _layer_type(media_type: str | None) -> str:
    """The OCI media type of a base layer (Docker's gzip layers are OCI's)."""
    if (
        not media_type
        or media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    ):
        return _LAYER
    if media_type.startswith("application/vnd.oci.image.layer."):
        return media_type
    raise ImageError(
        f"the base image has a layer of type {media_type}, which an "
        "engine-less build cannot carry over; build with a Docker engine "
        "or pick another base image"
    )


def _derive_config(
    base: dict[str, Any], inputs: ImageInputs, diff_id: str
) -> dict[str, Any]:
    cfg = dict(base.get("config") or {})
    env = [e for e in cfg.get("Env") or [] if e.split("=", 1)[0] not in _WORKER_ENV]
    if not any(e.startswith("PATH=") for e in env):  # as the engine's builder does
        env.append(f"PATH={_DEFAULT_PATH}")
    cfg["Env"] = env + [f"{k}={v}" for k, v in _WORKER_ENV.items()]
    cfg["Entrypoint"] = ["python3", "-m", "starburst_worker"]
    cfg["Cmd"] = None
    cfg["User"] = "1000:1000"
    cfg["WorkingDir"] = "/tmp"
    cfg["Labels"] = {**(cfg.get("Labels") or {}), **_labels(inputs, "oci")}
    history = list(base.get("history") or [])
    history.append(
        {"created": _now(), "created_by": "starburst: install.py (no engine)"}
    )
    return {
        "architecture": _OCI_ARCH[inputs.arch],
        "os": "linux",
        "created": _now(),
        "config": cfg,
        "rootfs": {
            "type": "layers",
            "diff_ids": [*base["rootfs"]["diff_ids"], diff_id],
        },
        "history": history,
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "starburst"


def _target_arch(arch: str) -> bool:
    return normalize_arch() == arch


def ensure_image(
    *,
    deployment: str | None = None,
    config: Any = None,
    clients: Any = None,
    project_dir: str | os.PathLike[str] | None = None,
    base_image: str | None = None,
    arch: str | None = None,
    builder: str | None = None,
    force: bool = False,
    environment: Environment | None = None,
) -> ImageResult:
    """The worker image for this environment: found in the registry, or built and pushed.

    Args:
        deployment: the deployment whose ECR repository to use (when ``config`` is
            not given).
        config: a loaded :class:`DeploymentConfig`.
        clients: boto3 clients (``Clients``); made for the config's region if absent.
        project_dir: where to look for the project (default: the running
            script's directory, then the working dir; see
            :func:`detect_environment`).
        base_image: the base image reference (default ``$STARBURST_BASE_IMAGE`` or
            ``python:<major.minor>-slim``).
        arch: ``x86_64`` or ``arm64`` (default ``x86_64``, as ``Plan``'s).
        builder: ``docker``, ``oci`` (no engine) or ``auto`` (default
            ``$STARBURST_IMAGE_BUILDER``, else ``auto``: the engine when one answers
            and the target is this machine's architecture).
        force: build and push even if the registry has the tag.
        environment: an already detected environment.

    Returns:
        an :class:`ImageResult` whose ``ref`` is the image by digest.

    Raises:
        ImageError: a package has no wheel for the target, the registry refused,
            or the build failed.
        ValueError: ``arch`` or ``builder`` is not one of the above.
    """
    from ._aws import Clients
    from ._config import default_deployment, load_config

    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    choice = (builder or os.environ.get(_ENV_BUILDER) or "auto").lower()
    if choice not in ("auto", "docker", "oci"):
        raise ValueError(
            f"builder must be auto, docker or oci, not {choice!r} (from "
            f"{'builder=' if builder else _ENV_BUILDER})"
        )
    arch = normalize_arch(arch or "x86_64")
    if config is None:
        clients = clients or Clients()
        config = load_config(clients.ssm, deployment or default_deployment())
    clients = clients or Clients(config.region)
    env = environment or detect_environment(project_dir)
    fatal = [p for p in env.problems if p.fatal]
    if fatal:
        raise ImageError(
            "these requirements cannot be put in the worker image:\n  "
            + "\n  ".join(str(p) for p in fatal)
        )
    warnings = tuple(str(p) for p in env.problems)
    for text in warnings:
        log.warning("worker image: %s", text)
    inputs = image_inputs(env, base_image=base_image, arch=arch)
    repository_url = config.ecr_repository_url
    host, repo, _ = split_reference(repository_url + ":x")
    credentials = ecr_credentials(clients.ecr)
    registry = RegistryClient(host, repo, credentials)
    seconds["inputs"] = time.monotonic() - t0
    if not force:
        digest = registry.manifest_digest(inputs.tag)
        seconds["check"] = time.monotonic() - t0 - seconds["inputs"]
        if digest:
            log.info(
                "worker image %s:%s is in the registry; nothing to build",
                repository_url,
                inputs.tag,
            )
            return ImageResult(
                f"{repository_url}@{digest}",
                inputs.tag,
                digest,
                False,
                None,
                inputs,
                warnings,
                seconds,
            )
    engine = None
    if choice in ("auto", "docker") and (
        choice == "docker" or _target_arch(inputs.arch)
    ):
        engine = docker_client()
        if engine is None and choice == "docker":
            raise ImageError(
                "no Docker engine answers (DOCKER_HOST or "
                "/var/run/docker.sock); start one, or use builder='oci'"
            )
    log.info(
        "building worker image %s:%s (%s)",
        repository_url,
        inputs.tag,
        "docker" if engine else "oci",
    )
    with tempfile.TemporaryDirectory(prefix="starburst-image-") as tmp:
        t1 = time.monotonic()
        ctx = write_build_context(Path(tmp) / "context", env, inputs)
        seconds["download"] = time.monotonic() - t1
        t1 = time.monotonic()
        if engine is not None:
            digest = build_with_docker(engine, ctx, inputs, repository_url, credentials)
        else:
            digest = assemble_oci(ctx, inputs, repository_url, credentials)
        seconds["build_push"] = time.monotonic() - t1
    seconds["total"] = time.monotonic() - t0
    log.info(
        "pushed worker image %s@%s in %.1f s (wheels %.1f s, build and push "
        "%.1f s, %s)",
        repository_url,
        digest,
        seconds["total"],
        seconds["download"],
        seconds["build_push"],
        "docker" if engine is not None else "no engine",
    )
    return ImageResult(
        f"{repository_url}@{digest}",
        inputs.tag,
        digest,
        True,
        "docker" if engine is not None else "oci",
        inputs,
        warnings,
        seconds,
    )


@dataclass(frozen=True)
class ImageInfo:
    """One worker image in the registry, with the inputs it was built from."""

    tag: str
    digest: str
    builder: str
    created: str
    inputs: dict[str, Any]
    size: int = 0  # bytes of its compressed layers and config, as pulled


def list_images(
    *, deployment: str | None = None, config: Any = None, clients: Any = None
) -> list[ImageInfo]:
    """The worker images in the deployment's repository, newest first."""
    from ._aws import Clients
    from ._config import default_deployment, load_config

    if config is None:
        clients = clients or Clients()
        config = load_config(clients.ssm, deployment or default_deployment())
    clients = clients or Clients(config.region)
    host, repo, _ = split_reference(config.ecr_repository_url + ":x")
    registry = RegistryClient(host, repo, ecr_credentials(clients.ecr))
    found = []
    for tag in registry.tags():
        try:
            digest = registry.manifest_digest(tag) or ""
            manifest, media_type = registry.manifest(tag)
            if media_type in _INDEXES or "manifests" in manifest:
                continue  # starburst pushes single-platform images only
            cfg = json.loads(registry.blob(manifest["config"]["digest"]))
        except ImageError as exc:
            log.debug("skipping %s: %s", tag, exc)
            continue
        labels = (cfg.get("config") or {}).get("Labels") or {}
        if LABEL_INPUTS not in labels:
            continue
        size = manifest["config"].get("size", 0) + sum(
            layer.get("size", 0) for layer in manifest.get("layers", [])
        )
        found.append(
            ImageInfo(
                tag,
                digest,
                labels.get(LABEL_BUILDER, "?"),
                cfg.get("created", ""),
                json.loads(labels[LABEL_INPUTS]),
                size,
            )
        )
    return sorted(found, key=lambda i: i.created, reverse=True)
