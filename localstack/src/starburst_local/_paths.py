"""Where the local cloud keeps things: the state dir, the cache, the LocalStack lock.

The state dir (pids, ports, logs, task output) defaults to ``~/.starburst/local`` and
is overridden by ``STARBURST_LOCAL_DIR`` or an explicit argument. The cache of
installed tools follows ``XDG_CACHE_HOME`` (default ``~/.cache``)/starburst.
"""

from __future__ import annotations

import os
from pathlib import Path

LOCK_NAME = "localstack-4.14.0-py313.lock"
STATE_DIR_ENV = "STARBURST_LOCAL_DIR"
LOCK_ENV = "STARBURST_LOCALSTACK_LOCK"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The state dir: ``explicit``, else ``$STARBURST_LOCAL_DIR``, else ``~/.starburst/local``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".starburst" / "local"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/starburst`` (default ``~/.cache/starburst``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "starburst"


def lock_file() -> Path:
    """The hash-pinned LocalStack lock: shipped in the package, or the project's copy."""
    env = os.environ.get(LOCK_ENV)
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent
    candidates += [here / LOCK_NAME, here.parent.parent / LOCK_NAME]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the LocalStack lock {LOCK_NAME} was not found (looked in "
        f"{', '.join(str(c) for c in candidates)}); set {LOCK_ENV} to its path"
    )
