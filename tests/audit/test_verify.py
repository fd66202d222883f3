"""`telerad audit verify` finds altered, inserted and deleted events."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from telerad.audit import events
from telerad.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def record_three() -> None:
    for number in range(3):
        events.record_event(action=events.Action.STUDY_VIEWED, user="radiologist", patient_id=f"P{number}")


def run_verify() -> tuple[int, str]:
    output = io.StringIO()
    try:
        call_command("audit", "verify", stdout=output)
    except SystemExit as exit_:
        return int(exit_.code), output.getvalue()
    return 0, output.getvalue()


def test_intact_chain_passes():
    record_three()

    status, output = run_verify()

    assert status == 0
    assert "intact: 3 events" in output


def test_altered_row_is_reported():
    record_three()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET patient_id = 'SOMEONE' WHERE sequence = 2")

    status, output = run_verify()

    assert status == 1
    assert "event 2: the content does not match its hash" in output


def test_deleted_row_is_reported():
    record_three()
    AuditEvent.objects.filter(sequence=2).delete()

    status, output = run_verify()

    assert status == 1
    assert "events 2 to 2 are missing" in output


def test_deleted_last_row_is_reported():
    record_three()
    AuditEvent.objects.filter(sequence=3).delete()

    status, output = run_verify()

    assert status == 1
    assert "should end at event 3" in output
