"""Events that concern several patients: a search's results, a page of the study list, a C-FIND."""

from __future__ import annotations

import pytest
from django.test import Client

from telerad.accounts.roles import Role
from telerad.archive.ingest import Source, store_file
from telerad.audit import atna, events
from telerad.audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_record_keeps_other_patients_once_and_without_the_main_one():
    event = events.record_event(action=events.Action.QUERY, patient_id="P1", patient_ids=["P1", "P2", "", "P2", "P3"])

    assert event.other_patient_ids == "P2\nP3"
    assert sorted(event.patient_index.values_list("patient_id", flat=True)) == ["P2", "P3"]


def test_record_caps_other_patients():
    event = events.record_event(action=events.Action.QUERY, patient_ids=[f"P{number}" for number in range(events.MAX_OTHER_PATIENTS + 5)])

    assert len(event.other_patient_ids.split("\n")) == events.MAX_OTHER_PATIENTS


def test_hash_of_event_without_other_patients_is_unchanged():
    event = events.record_event(action=events.Action.LOGIN, user="alice")
    event.other_patient_ids = ""

    assert events.event_hash(event) == event.hash


def test_auditor_finds_event_by_other_patient(make_user):
    events.record_event(action=events.Action.QUERY, user="pacs", patient_ids=["1CT1", "4MR1"])
    events.record_event(action=events.Action.QUERY, user="pacs", patient_ids=["1CT10"])
    client = Client()
    client.force_login(make_user("auditor", Role.AUDITOR))

    response = client.post("/audit/", {"patient_id": "1CT1"}, follow=True)

    assert [row[0].sequence for row in response.context["rows"]] == [1]


def test_atna_message_names_every_patient():
    event = events.record_event(action=events.Action.QUERY, user="pacs", patient_id="P1", patient_ids=["P2"])
    source = atna.AuditSource(source_id="telerad@test", enterprise_site_id="", ae_title="TELERAD", machine_name="test", audit_log_uri="https://127.0.0.1/audit/")

    message = atna.build_message(event, source).decode()

    assert message.count('ParticipantObjectTypeCodeRole="1"') == 2
    assert 'ParticipantObjectID="P2"' in message


def test_study_list_names_patients_on_page(make_user, sample_file, storage):
    for name in ("CT_small.dcm", "MR_small.dcm"):
        store_file(sample_file(name).read_bytes(), source=Source(kind="import"), storage=storage)
    client = Client()
    client.force_login(make_user("reader", Role.RADIOLOGIST))

    client.get("/studies/")

    event = AuditEvent.objects.get(action=events.Action.STUDY_LIST_VIEWED)
    assert sorted([event.patient_id, *event.other_patient_ids.split("\n")]) == ["", "1CT1", "4MR1"]
