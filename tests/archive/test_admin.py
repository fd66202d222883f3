"""The administration pages: index rows read-only, remote AEs editable and audited, the audit trail read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from telerad.archive.ingest import Outcome, Source, store_file
from telerad.archive.models import Instance
from telerad.audit.events import Action, record_event
from telerad.audit.models import AuditEvent
from telerad.dimse.models import RemoteAE

INDEX_MODELS = ("patient", "study", "series", "instance")


@pytest.fixture
def staff_user(make_user) -> User:
    # The administrator manages remote AEs; the radiologist role lets them see the index rows.
    return make_user("admin", "administrator", "radiologist")


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def user_client(make_user) -> Client:
    client = Client()
    client.force_login(make_user("reader", "radiologist"))
    return client


@pytest.fixture
def stored_ct(db, sample_file, storage) -> Instance:
    result = store_file(sample_file("CT_small.dcm").read_bytes(), source=Source(kind="import"), storage=storage)
    assert result.outcome is Outcome.STORED, result.reason
    return Instance.objects.select_related("series__study__patient").get(sop_instance_uid=result.sop_instance_uid)


def index_rows(instance: Instance) -> dict[str, object]:
    series = instance.series
    return {"patient": series.study.patient, "study": series.study, "series": series, "instance": instance}


def remote_ae_form(**values: object) -> dict[str, object]:
    form = {"ae_title": "MODALITY1", "host": "127.0.0.1", "port": "104", "description": "CT scanner"}
    form.update({"allow_store": "on", "allow_find": "on", "enabled": "on"})
    form.update(values)
    return form


# Access


def test_admin_loads_for_staff(staff_client):
    response = staff_client.get(reverse("admin:index"))

    assert response.status_code == 200


def test_admin_redirects_plain_user_to_admin_login(user_client):
    response = user_client.get(reverse("admin:index"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_admin_redirects_anonymous_to_login(client, db):
    response = client.get(reverse("admin:archive_study_changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('login')}?next=")


# Index rows


@pytest.mark.parametrize("model", INDEX_MODELS)
def test_index_list_shows_stored_row(staff_client, stored_ct, model):
    response = staff_client.get(reverse(f"admin:archive_{model}_changelist"))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1


@pytest.mark.parametrize("model", INDEX_MODELS)
def test_index_row_page_is_read_only(staff_client, stored_ct, model):
    row = index_rows(stored_ct)[model]

    response = staff_client.get(reverse(f"admin:archive_{model}_change", args=[row.pk]))

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert b'name="_save"' not in response.content


@pytest.mark.parametrize("model", INDEX_MODELS)
def test_index_add_is_forbidden(staff_client, db, model):
    assert staff_client.get(reverse(f"admin:archive_{model}_add")).status_code == 403


def test_index_change_post_is_forbidden(staff_client, stored_ct):
    patient = stored_ct.series.study.patient
    url = reverse("admin:archive_patient_change", args=[patient.pk])

    response = staff_client.post(url, {"patient_id": "CHANGED", "patient_name": "Changed^Name"})

    assert response.status_code == 403
    patient.refresh_from_db()
    assert patient.patient_id == "1CT1"


@pytest.mark.parametrize("model", INDEX_MODELS)
def test_index_delete_is_forbidden(staff_client, stored_ct, model):
    row = index_rows(stored_ct)[model]

    response = staff_client.post(reverse(f"admin:archive_{model}_delete", args=[row.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert type(row).objects.filter(pk=row.pk).exists()


def test_index_list_offers_no_delete_action(staff_client, stored_ct):
    response = staff_client.get(reverse("admin:archive_study_changelist"))

    assert b"delete_selected" not in response.content


def test_study_search_matches_accession_and_patient_id(staff_client, stored_ct, sample_file, storage):
    overlay = store_file(sample_file("examples_overlay.dcm").read_bytes(), source=Source(kind="import"), storage=storage)
    url = reverse("admin:archive_study_changelist")

    by_accession = staff_client.get(url, {"q": "8000000000330109"}).context["cl"].result_list
    by_patient_id = staff_client.get(url, {"q": "1CT1"}).context["cl"].result_list

    assert [study.study_instance_uid for study in by_accession] == [overlay.study_instance_uid]
    assert [study.study_instance_uid for study in by_patient_id] == [stored_ct.series.study.study_instance_uid]


def test_patient_search_folds_name(staff_client, sample_file, storage, db):
    store_file(sample_file("chrFren.dcm").read_bytes(), source=Source(kind="import"), storage=storage)

    response = staff_client.get(reverse("admin:archive_patient_changelist"), {"q": "BUC^JER"})

    assert [patient.patient_id for patient in response.context["cl"].result_list] == ["SCSFREN"]


def test_index_pages_write_audit_events(staff_client, stored_ct):
    study = stored_ct.series.study

    staff_client.get(reverse("admin:archive_patient_changelist"), {"q": "Compressed"}, REMOTE_ADDR="192.0.2.9")
    staff_client.get(reverse("admin:archive_study_change", args=[study.pk]), REMOTE_ADDR="192.0.2.9")

    listed = AuditEvent.objects.get(action=Action.STUDY_LIST_VIEWED)
    assert listed.user == "admin"
    assert listed.address == "192.0.2.9"
    assert listed.detail == "admin patient list; search=(not recorded)"
    viewed = AuditEvent.objects.get(action=Action.STUDY_VIEWED)
    assert viewed.patient_id == "1CT1"
    assert viewed.study_instance_uid == study.study_instance_uid


# Remote AEs


def test_remote_ae_add_writes_audit_event(staff_client, db):
    response = staff_client.post(reverse("admin:dimse_remoteae_add"), remote_ae_form(), REMOTE_ADDR="192.0.2.10")

    assert response.status_code == 302
    remote_ae = RemoteAE.objects.get(ae_title="MODALITY1")
    assert remote_ae.allow_store is True
    assert remote_ae.allow_move is False
    event = AuditEvent.objects.get(action=Action.REMOTE_AE_CHANGED)
    assert event.detail == "added AE MODALITY1"
    assert event.user == "admin"
    assert event.address == "192.0.2.10"


def test_remote_ae_change_records_changed_fields(staff_client, db):
    remote_ae = RemoteAE.objects.create(ae_title="MODALITY1", host="127.0.0.1", port=104, description="CT scanner", allow_move=False, allow_get=False)

    response = staff_client.post(
        reverse("admin:dimse_remoteae_change", args=[remote_ae.pk]),
        remote_ae_form(ae_title="CT1", port="11112"),
    )

    assert response.status_code == 302
    event = AuditEvent.objects.get(action=Action.REMOTE_AE_CHANGED)
    assert event.detail == "updated AE CT1: ae_title (was MODALITY1), port"


def test_remote_ae_invalid_title_rejected(staff_client, db):
    response = staff_client.post(reverse("admin:dimse_remoteae_add"), remote_ae_form(ae_title="BAD\\TITLE"))

    assert response.status_code == 200
    assert not RemoteAE.objects.exists()
    assert not AuditEvent.objects.exists()


def test_remote_ae_delete_writes_audit_event(staff_client, db):
    remote_ae = RemoteAE.objects.create(ae_title="MODALITY1")

    response = staff_client.post(reverse("admin:dimse_remoteae_delete", args=[remote_ae.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not RemoteAE.objects.exists()
    assert AuditEvent.objects.get(action=Action.REMOTE_AE_CHANGED).detail == "removed AE MODALITY1"


def test_remote_ae_bulk_delete_writes_event_per_ae(staff_client, db):
    first = RemoteAE.objects.create(ae_title="MODALITY1")
    second = RemoteAE.objects.create(ae_title="MODALITY2")

    response = staff_client.post(
        reverse("admin:dimse_remoteae_changelist"),
        {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"},
    )

    assert response.status_code == 302
    details = sorted(AuditEvent.objects.filter(action=Action.REMOTE_AE_CHANGED).values_list("detail", flat=True))
    assert details == ["removed AE MODALITY1", "removed AE MODALITY2"]


# Audit trail


@pytest.fixture
def auditor_staff_client(make_user) -> Client:
    client = Client()
    client.force_login(make_user("auditing-admin", "administrator", "auditor"))
    return client


def test_audit_list_hidden_from_administrator(staff_client, db):
    response = staff_client.get(reverse("admin:audit_auditevent_changelist"))

    assert response.status_code == 403


def test_audit_list_loads_for_auditor(auditor_staff_client, db):
    record_event(action=Action.IMPORT, user="cli", detail="1 file")

    response = auditor_staff_client.get(reverse("admin:audit_auditevent_changelist"))

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 1


def test_audit_event_is_read_only(auditor_staff_client, db):
    event = record_event(action=Action.IMPORT, user="cli", detail="1 file")

    add = auditor_staff_client.get(reverse("admin:audit_auditevent_add"))
    change = auditor_staff_client.post(reverse("admin:audit_auditevent_change", args=[event.pk]), {"detail": "altered"})
    delete = auditor_staff_client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"})

    assert add.status_code == 403
    assert change.status_code == 403
    assert delete.status_code == 403
    event.refresh_from_db()
    assert event.detail == "1 file"


def test_audit_search_matches_exact_patient_id(auditor_staff_client, db):
    record_event(action=Action.STUDY_VIEWED, user="reader", patient_id="1CT1")
    record_event(action=Action.STUDY_VIEWED, user="reader", patient_id="1CT10")

    response = auditor_staff_client.get(reverse("admin:audit_auditevent_changelist"), {"q": "1CT1"})

    assert [event.patient_id for event in response.context["cl"].result_list] == ["1CT1"]

