"""The e-mail and critical result settings, and what `telerad check` reports about them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from telerad import config


def load(tmp_path: Path, **values: str) -> config.Config:
    environ = {"TELERAD_DATA_DIR": str(tmp_path)}
    environ.update({f"TELERAD_{name.upper()}": value for name, value in values.items()})
    return config.load(environ)


def problem_settings(loaded: config.Config) -> list[str]:
    return [problem.setting for problem in loaded.problems]


def test_mail_defaults(tmp_path):
    loaded = load(tmp_path)

    assert loaded.email_enabled is False
    assert loaded.smtp_starttls is True
    assert loaded.smtp_tls is False
    assert loaded.smtp_port_or_default == 587
    assert loaded.critical_ack_minutes == 30
    assert loaded.critical_escalation_contact == ""
    assert loaded.problems == ()


def test_complete_smtp_settings(tmp_path):
    secret = tmp_path / "smtp-password"
    secret.write_text("s3cret-from-file\n")

    loaded = load(
        tmp_path, smtp_host="mail.example.org", smtp_user="telerad", smtp_password_file=str(secret), smtp_starttls="false", smtp_tls="true",
        mail_from="telerad@example.org", base_url="https://telerad.example.org/", critical_ack_minutes="15",
        critical_escalation_contact="lead",
    )

    assert loaded.problems == ()
    assert loaded.email_enabled is True
    assert loaded.smtp_password == "s3cret-from-file"
    assert loaded.smtp_port_or_default == 465
    assert loaded.base_url == "https://telerad.example.org"
    assert loaded.critical_ack_minutes == 15
    assert loaded.critical_escalation_contact == "lead"


def test_smtp_host_needs_sender_and_base_url(tmp_path):
    loaded = load(tmp_path, smtp_host="mail.example.org")

    assert problem_settings(loaded) == ["mail_from", "base_url"]


def test_invalid_sender_and_base_url(tmp_path):
    loaded = load(tmp_path, smtp_host="mail.example.org", mail_from="telerad", base_url="telerad.example.org")

    assert problem_settings(loaded) == ["mail_from", "base_url"]
    assert "'telerad' is not an e-mail address" in str(loaded.problems[0])


def test_starttls_and_tls_together(tmp_path):
    loaded = load(tmp_path, smtp_tls="true")

    assert problem_settings(loaded) == ["smtp_tls"]


def test_user_without_password(tmp_path):
    loaded = load(tmp_path, smtp_user="telerad")

    assert problem_settings(loaded) == ["smtp_user"]


def test_password_without_encryption(tmp_path):
    loaded = load(tmp_path, smtp_user="telerad", smtp_password="secret", smtp_starttls="false")

    assert problem_settings(loaded) == ["smtp_password"]
    assert "secret" not in str(loaded.problems[0])


def test_ack_minutes_out_of_range(tmp_path):
    loaded = load(tmp_path, critical_ack_minutes="0")

    assert problem_settings(loaded) == ["critical_ack_minutes"]


def run_check(tmp_path, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TELERAD_")}
    env.update({"TELERAD_DATA_DIR": str(tmp_path), **environment})
    return subprocess.run([sys.executable, "-m", "telerad.cli", "check"], env=env, capture_output=True, text=True, timeout=60)


def test_check_reports_missing_sender(tmp_path):
    completed = run_check(tmp_path, TELERAD_SMTP_HOST="mail.example.org", TELERAD_BASE_URL="https://telerad.example.org")

    assert completed.returncode == 1
    assert "TELERAD_MAIL_FROM: missing" in completed.stderr


def test_check_warns_of_unknown_contact(tmp_path):
    migrated = subprocess.run(
        [sys.executable, "-m", "telerad.cli", "migrate", "--verbosity", "0"],
        env={**{key: value for key, value in os.environ.items() if not key.startswith("TELERAD_")}, "TELERAD_DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, timeout=300,
    )
    assert migrated.returncode == 0, migrated.stderr

    completed = run_check(tmp_path, TELERAD_CRITICAL_ESCALATION_CONTACT="nobody-here")

    assert completed.returncode == 0
    assert "TELERAD_CRITICAL_ESCALATION_CONTACT: 'nobody-here' is not an active user" in completed.stderr
