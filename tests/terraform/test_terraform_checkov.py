"""checkov finds nothing, and every deliberate skip says why.

checkov runs in its own tool environment (``uv tool run``), not the project's:
it depends on bc-python-hcl2, which installs the same ``hcl2`` import package as
the python-hcl2 8.x these tests parse HCL with, so the two cannot share a venv.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import TERRAFORM_DIR

CHECKOV = "checkov==3.3.30"


def test_checkov_reports_no_failed_checks() -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH; it runs checkov in its own environment")
    out = subprocess.run(
        [
            uv,
            "tool",
            "run",
            "--from",
            CHECKOV,
            "checkov",
            "--directory",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.stdout.strip(), out.stderr[-3000:]
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    skipped = [c for r in reports for c in r["results"].get("skipped_checks", [])]
    assert skipped, "expected the documented skips to be seen"
    for check in skipped:
        reason = check.get("check_result", {}).get("suppress_comment", "")
        assert len(reason) > 20, (
            f"{check['check_id']} on {check['resource']}: no reason"
        )
