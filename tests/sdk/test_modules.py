"""The user's own modules reach the worker by value, neighbours included."""

import subprocess
import sys
import textwrap

PICKLE = textwrap.dedent("""
    import sys

    import cloudpickle

    from helper import describe
    from starburst_sdk._modules import ship_local_modules

    ship_local_modules(describe)
    sys.stdout.buffer.write(cloudpickle.dumps(describe))
""")

HELPER = textwrap.dedent("""
    import helper2
    import mylib.units as units
    from mylib import scale


    def describe(x):
        return [helper2.twice(x), scale(x, 3), units.NAME]
""")


def test_local_modules_and_their_local_imports_travel_by_value(tmp_path):
    user = tmp_path / "user"
    (user / "mylib").mkdir(parents=True)
    (user / "helper.py").write_text(HELPER)
    (user / "helper2.py").write_text("def twice(x):\n    return 2 * x\n")
    (user / "mylib" / "__init__.py").write_text("from .core import scale\n")
    (user / "mylib" / "core.py").write_text("def scale(x, k):\n    return x * k\n")
    (user / "mylib" / "units.py").write_text('NAME = "metre"\n')
    (user / "pickle_it.py").write_text(PICKLE)
    blob = subprocess.run(
        [sys.executable, "pickle_it.py"], cwd=user, capture_output=True, check=True
    ).stdout
    # Elsewhere, with none of the user's files importable: the worker's situation.
    elsewhere = tmp_path / "worker"
    elsewhere.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())(7))",
        ],
        cwd=elsewhere,
        input=blob,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "[14, 21, 'metre']"


def test_remote_traceback_gets_the_local_source_lines(tmp_path):
    from starburst_sdk._plan import _with_local_source

    src = tmp_path / "mine.py"
    src.write_text("def f(x):\n    return 1 / x\n")
    remote = (
        "Traceback (most recent call last):\n"
        '  File "/opt/starburst/site-packages/starburst_worker/worker.py", line 9, '
        "in _call\n"
        "    return fn(*args, **kwargs)\n"
        f'  File "{src}", line 2, in f\n'
        "ZeroDivisionError: division by zero\n"
    )
    lines = _with_local_source(remote).splitlines()
    assert lines[3] == f'  File "{src}", line 2, in f'
    assert lines[4] == "    return 1 / x"
    assert lines[2] == "    return fn(*args, **kwargs)"  # not doubled
    assert lines[5] == "ZeroDivisionError: division by zero"


def test_a_child_process_that_cannot_import_a_shipped_module_gets_a_hint(
    tmp_path, monkeypatch
):
    import importlib

    from starburst_sdk._modules import ship_local_modules
    from starburst_sdk._plan import _rebuild_exception
    from starburst_worker import envelope

    (tmp_path / "childmod_hint.py").write_text("def sq(x):\n    return x * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    childmod = importlib.import_module("childmod_hint")
    ship_local_modules(childmod.sq)

    def rebuilt(missing):
        # As a worker reports it: the call's child process could not import it.
        err = ModuleNotFoundError(f"No module named '{missing}'", name=missing)
        outcome = envelope.failure(err, 0.1)
        return _rebuild_exception(outcome, "00000001", "w1", 1)

    exc = rebuilt("childmod_hint")
    assert isinstance(exc, ModuleNotFoundError)
    hint = exc.__notes__[-1]
    assert "'childmod_hint' is one of your own modules" in hint
    assert "prefer='threads'" in hint and "package the worker image" in hint
    assert len(rebuilt("not_a_module_of_yours").__notes__) == 1  # no hint
    # One of the user's files the client never imported: it was never sent.
    (tmp_path / "never_imported_hint.py").write_text("X = 1\n")
    hint = rebuilt("never_imported_hint").__notes__[-1]
    assert "had not imported it" in hint
    assert "`import never_imported_hint` at the top of your script" in hint
    # A submodule of a local package the client imported, but not that one.
    (tmp_path / "pkg_hint").mkdir()
    (tmp_path / "pkg_hint" / "__init__.py").write_text("")
    (tmp_path / "pkg_hint" / "sub.py").write_text("Y = 2\n")
    importlib.import_module("pkg_hint")
    ship_local_modules()
    hint = rebuilt("pkg_hint.sub").__notes__[-1]
    assert "`import pkg_hint.sub` at the top of your script" in hint
