"""`telerad check` as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys


def run_check(tmp_path, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TELERAD_")}
    env.update({"TELERAD_DATA_DIR": str(tmp_path), **environment})
    return subprocess.run([sys.executable, "-m", "telerad.cli", "check"], env=env, capture_output=True, text=True, timeout=60)


def test_check_passes_on_defaults(tmp_path):
    completed = run_check(tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert "no issues" in completed.stdout


def test_check_lists_every_problem(tmp_path):
    completed = run_check(tmp_path, TELERAD_HTTP_PORT="x", TELERAD_AE_TITLE="A\\B")

    assert completed.returncode == 1
    assert "TELERAD_HTTP_PORT: 'x' is not a whole number" in completed.stderr
    assert "TELERAD_AE_TITLE" in completed.stderr


def test_check_reports_unreachable_database(tmp_path):
    completed = run_check(tmp_path, TELERAD_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")

    assert completed.returncode == 1
    assert "cannot connect to the database" in completed.stderr


def test_check_reports_unsupported_database_without_traceback(tmp_path):
    completed = run_check(tmp_path, TELERAD_DATABASE_URL="mysql://someone@127.0.0.1/telerad")

    assert completed.returncode == 1
    assert "unsupported database 'mysql'" in completed.stderr
    assert "Traceback" not in completed.stderr
