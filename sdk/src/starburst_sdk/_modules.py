"""Ship the user's own modules by value.

A function defined in a script's helper module (``mylib.py`` beside the
script, a notebook's ``mylib/``) is pickled by reference: the worker would need
to import ``mylib`` and cannot. Modules that are not installed — neither in the
standard library nor in site-packages — are registered with cloudpickle to be
pickled by value, so their functions and classes travel with the task.
"""

from __future__ import annotations

import sys
import sysconfig
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import cloudpickle

_OURS = ("starburst_sdk", "starburst_worker", "starburst_cli", "starburst_local")


@cache
def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {
        paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths
    }
    roots.update(p for p in sys.path if "site-packages" in p or "dist-packages" in p)
    return tuple(Path(r).resolve() for r in roots)


def is_local(module: ModuleType) -> bool:
    """True for a module imported from the user's files rather than installed."""
    name = module.__name__
    if name == "__main__" or name.split(".")[0] in _OURS:
        return False
    if name in sys.builtin_module_names:
        return False
    file = getattr(module, "__file__", None)
    if not file:
        return False
    path = Path(file).resolve()
    return not any(path.is_relative_to(root) for root in _installed_roots())


_registered: set[str] = set()
#: Top-level module names already looked at, and how many modules were loaded then.
_checked: set[str] = set()
_loaded = 0


def ship_local_modules(*objs: Any) -> None:
    """Register the local modules that define ``objs`` (or their types), and every
    other local module imported so far.

    The others matter because a shipped function reaches its neighbours by name: a
    helper that does ``import helper2`` (or ``from helper2 import f``) pickles
    ``helper2`` by reference unless it is registered too, and the worker cannot
    import it. Scanning ``sys.modules`` again only when it has grown keeps this
    cheap enough for every submit.
    """
    global _loaded
    for obj in objs:
        name = getattr(obj, "__module__", None) or type(obj).__module__
        if not name or name in _registered:
            continue
        top = name.split(".")[0]
        module = sys.modules.get(top) or sys.modules.get(name)
        if module is not None and is_local(module):
            cloudpickle.register_pickle_by_value(module)
            _registered.add(name)
    if len(sys.modules) == _loaded:
        return
    _loaded = len(sys.modules)
    for name in [n for n in list(sys.modules) if "." not in n and n not in _checked]:
        _checked.add(name)
        module = sys.modules.get(name)
        if module is not None and is_local(module):
            cloudpickle.register_pickle_by_value(module)
            _registered.add(name)


def shipped_by_value(name: str) -> bool:
    """Whether the module ``name`` (or its package) is one this process ships
    by value with each call."""
    top = name.split(".")[0]
    return name in _registered or top in _registered


def local_but_not_shipped(name: str) -> bool:
    """Whether ``name``'s top-level module is one of the user's files that this
    process could import but has not (so it was never shipped)."""
    import importlib.util

    top = name.split(".")[0]
    if name in sys.modules:
        return False
    if top in sys.modules:  # a submodule of a local package, never imported
        return "." in name and is_local(sys.modules[top])
    if top in _registered:
        return False
    try:
        spec = importlib.util.find_spec(top)  # a top-level name: runs no code
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None)
    if not origin or not Path(origin).is_file():
        return False
    path = Path(origin).resolve()
    return not any(path.is_relative_to(root) for root in _installed_roots())
