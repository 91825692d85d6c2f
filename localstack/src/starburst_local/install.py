"""Install LocalStack on the host, into a cached venv keyed by the lock's hash.

Flow: hash the lock -> ``<cache>/localstack-<hash>/``; if its marker file exists the
install is done (fast path). Otherwise, under a file lock: find a Python 3.13
(``uv python find 3.13``, then pyenv's ``versions/3.13*``, then ``python3.13`` on
PATH; each candidate is run to prove it works), ``uv venv`` with it, then
``uv pip sync --require-hashes --compile-bytecode`` the lock, then write the marker.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from ._paths import cache_dir, lock_file

log = logging.getLogger("starburst.local")

MARKER = ".starburst-installed"


class InstallError(RuntimeError):
    """LocalStack could not be installed."""


def lock_hash(lock: Path | None = None) -> str:
    """First 16 hex digits of the lock file's sha256."""
    data = (lock or lock_file()).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def venv_dir(lock: Path | None = None) -> Path:
    return cache_dir() / f"localstack-{lock_hash(lock)}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _works(python: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == "3.13"


def _uv_candidate() -> list[str]:
    uv = shutil.which("uv")
    if not uv:
        return []
    out = subprocess.run([uv, "python", "find", "3.13"], capture_output=True, text=True)
    return [out.stdout.strip()] if out.returncode == 0 and out.stdout.strip() else []


def _pyenv_candidates() -> list[str]:
    pyenv = shutil.which("pyenv")
    root = os.environ.get("PYENV_ROOT")
    if pyenv and not root:
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True)
        root = out.stdout.strip() if out.returncode == 0 else None
    if not root:
        return []
    return sorted(
        glob.glob(os.path.join(root, "versions", "3.13*", "bin", "python3.13")),
        reverse=True,
    )


def find_python313() -> str:
    """Path of a working Python 3.13 interpreter, found by probing (never hard-coded)."""
    tried: list[str] = []
    for finder in (
        _uv_candidate,
        _pyenv_candidates,
        lambda: [p] if (p := shutil.which("python3.13")) else [],
    ):
        for candidate in finder():
            tried.append(candidate)
            if _works(candidate):
                return candidate
    raise InstallError(
        "LocalStack 4.14 needs Python 3.13 and none was found "
        f"(tried: {', '.join(tried) or 'uv python find, pyenv, python3.13 on PATH'}); "
        "install one with `uv python install 3.13` or `pyenv install 3.13`"
    )


def _run(cmd: list[str], what: str) -> None:
    log.debug("running %s", " ".join(cmd))
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise InstallError(
            f"{what} failed (exit {out.returncode}):\n{out.stderr[-4000:]}"
        )


def is_installed(venv: Path | None = None) -> bool:
    venv = venv or venv_dir()
    return (venv / MARKER).is_file() and venv_python(venv).exists()


def ensure_localstack() -> Path:
    """Install LocalStack if needed; return the venv's python. Idempotent, safe to race."""
    lock = lock_file()
    venv = venv_dir(lock)
    if is_installed(venv):
        return venv_python(venv)
    uv = shutil.which("uv")
    if not uv:
        raise InstallError(
            "`uv` is not on PATH; install it (https://docs.astral.sh/uv/)"
        )
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if is_installed(venv):
            return venv_python(venv)
        started = time.monotonic()
        python = find_python313()
        log.info("installing LocalStack into %s with %s", venv, python)
        if venv.exists():
            shutil.rmtree(venv)
        _run(
            [uv, "venv", "--quiet", "--python", python, str(venv)], "creating the venv"
        )
        _run(
            [
                uv,
                "pip",
                "sync",
                "--quiet",
                "--python",
                str(venv_python(venv)),
                "--require-hashes",
                "--compile-bytecode",
                str(lock),
            ],
            f"installing {lock.name}",
        )
        (venv / MARKER).write_text(lock_hash(lock) + "\n")
        log.info("LocalStack installed in %.1f s", time.monotonic() - started)
    return venv_python(venv)
