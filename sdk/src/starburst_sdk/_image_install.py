"""Install a worker image's packages into a directory: the one step both builders share.

Copied into every build context as ``install.py`` and run, with no network, as

    python3 install.py TARGET

by ``worker/Dockerfile`` inside the base image (the Docker engine builder), or on
the client (the builder without an engine), where TARGET is the staging copy of
the image's ``/opt/starburst/site-packages``. Either way the same pip (run from
its wheel: the base image needs no pip of its own) installs the same downloaded
wheels for the same target platform, then the worker package is copied in and
everything is compiled with hash-checked bytecode, so the two builders produce
the same files. Standard library only: it runs on any Python of the target
version.
"""

import compileall
import json
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

SITE_CUSTOMIZE = '''\
"""starburst: process the .pth files of the worker's package directory."""
import os
import site

site.addsitedir(os.path.dirname(os.path.abspath(__file__)))
'''


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python3 install.py TARGET", file=sys.stderr)
        return 2
    here = Path(__file__).resolve().parent
    target = Path(argv[1])
    spec = json.loads((here / "install.json").read_text())
    target.mkdir(parents=True, exist_ok=True)
    pip = next((here / "tools").glob("pip-*.whl"))
    requirements = here / "requirements.txt"
    if requirements.read_text().strip():
        cmd = [
            sys.executable,
            str(pip / "pip"),
            "install",
            "--no-index",
            "--find-links",
            str(here / "wheels"),
            "--only-binary=:all:",
            "--target",
            str(target),
            "--no-compile",
            "--no-warn-script-location",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--quiet",
            "--python-version",
            spec["python"],
            "--implementation",
            "cp",
            "--abi",
            spec["abi"],
        ]
        for platform in spec["platforms"]:
            cmd += ["--platform", platform]
        cmd += ["-r", str(requirements)]
        done = subprocess.run(cmd)
        if done.returncode != 0:
            return done.returncode
    shutil.copytree(
        here / "worker" / "starburst_worker",
        target / "starburst_worker",
        dirs_exist_ok=True,
    )
    (target / "sitecustomize.py").write_text(SITE_CUSTOMIZE)
    # Console scripts are not used; pip wrote the installing interpreter's path
    # into them, so drop them and their RECORD lines: both builders then leave
    # the same files whichever interpreter ran this.
    shutil.rmtree(target / "bin", ignore_errors=True)
    for record in target.glob("*.dist-info/RECORD"):
        lines = record.read_text().splitlines(keepends=True)
        record.write_text("".join(x for x in lines if not x.startswith("../../bin/")))
    # Tracebacks name the files where they are in the image, wherever this runs.
    compileall.compile_dir(
        str(target),
        ddir=spec["site"],
        quiet=1,
        workers=1,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
