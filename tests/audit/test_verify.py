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


def insert_row(sequence: int, previous_hash: str, hash_: str) -> None:
    values = {
        "sequence": sequence,
        "occurred_at": "2026-01-01 00:00:00+00:00",
        "user": "intruder",
        "address": "",
        "action": "study-viewed",
        "outcome": 0,
        "patient_id": "P9",
        "study_instance_uid": "",
        "detail": "",
        "previous_hash": previous_hash,
        "hash": hash_,
    }
    # "user" is a reserved word in PostgreSQL.
    columns = ", ".join(connection.ops.quote_name(name) for name in values)
    placeholders = ", ".join(["%s"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO audit_auditevent ({columns}) VALUES ({placeholders})", list(values.values()))


def test_row_inserted_with_sql_is_reported():
    record_three()
    insert_row(4, AuditEvent.objects.get(sequence=3).hash, "f" * 64)

    status, output = run_verify()

    assert status == 1
    assert "event 4: the content does not match its hash" in output
    assert "event 4: the chain should end at event 3 but ends at 4 (events were added outside telerad)" in output


def test_row_inserted_with_a_valid_hash_is_reported():
    record_three()
    forged = AuditEvent(
        sequence=4,
        occurred_at=AuditEvent.objects.get(sequence=3).occurred_at,
        user="intruder",
        action=events.Action.STUDY_VIEWED,
        outcome=0,
        patient_id="P9",
        previous_hash=AuditEvent.objects.get(sequence=3).hash,
    )
    forged.hash = events.event_hash(forged)
    forged.save()

    status, output = run_verify()

    assert status == 1
    assert "the chain should end at event 3 but ends at 4" in output
    assert "does not match its hash" not in output


def test_row_deleted_with_sql_is_reported():
    record_three()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE sequence = 2")

    status, output = run_verify()

    assert status == 1
    assert "event 3: events 2 to 2 are missing" in output
    assert "event 3: the link to the previous event is broken" in output


def test_event_with_other_patients_passes():
    events.record_event(action=events.Action.QUERY, user="pacs", patient_ids=["P1", "P2", "P3"])

    status, output = run_verify()

    assert status == 0
    assert "intact: 1 events" in output


def test_altered_other_patients_are_reported():
    event = events.record_event(action=events.Action.QUERY, user="pacs", patient_ids=["P1", "P2"])
    AuditEvent.objects.filter(pk=event.pk).update(other_patient_ids="P1")

    status, output = run_verify()

    assert status == 1
    assert f"event {event.sequence}: the content does not match its hash" in output


def test_altered_patient_index_is_reported():
    event = events.record_event(action=events.Action.QUERY, user="pacs", patient_ids=["P1", "P2"])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditeventpatient SET patient_id = %s WHERE patient_id = %s", ["P9", "P2"])

    status, output = run_verify()

    assert status == 1
    assert f"event {event.sequence}: the patient index of the event does not match its content" in output
