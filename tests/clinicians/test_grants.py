"""Grants and DICOM names of clinicians, managed with ``telerad clinician`` and in the Django admin, each change audited."""

from __future__ import annotations

import datetime
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from telerad.archive.models import Patient
from telerad.audit.models import AuditEvent
from telerad.clinicians import grants
from telerad.clinicians.access import can_view_exam
from telerad.clinicians.models import ClinicianGrant, ClinicianProfile
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db

PATIENT_NAME = "Doe^Jane"


def run(*arguments: str) -> str:
    output = io.StringIO()
    call_command("clinician", *arguments, stdout=output)
    return output.getvalue()


@pytest.fixture
def casey(make_user):
    return make_user("casey", "clinician")


@pytest.fixture
def exam():
    return make_exam(patient_id="P-GRANT", accession="ACC-GRANT", patient_name=PATIENT_NAME, department="Cardiology")


def access_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="clinician-access-changed").order_by("sequence"))


def test_command_grants_patient(casey, exam):
    output = run("grant", "casey", "--patient", "P-GRANT", "--note", "covering for a colleague")

    grant = ClinicianGrant.objects.get()
    assert output.strip() == "Granted patient P-GRANT to casey."
    assert grant.patient == exam.patient
    assert grant.granted_by == "cli"
    assert grant.note == "covering for a colleague"
    assert can_view_exam(casey, exam)
    (event,) = access_events()
    assert event.user == "cli"
    assert event.patient_id == "P-GRANT"
    assert "added grant of patient P-GRANT to clinician casey" in event.detail
    assert PATIENT_NAME not in event.detail


def test_command_grants_department_until_day(casey, exam):
    day = timezone.localdate() + datetime.timedelta(days=3)

    output = run("grant", "casey", "--department", " cardiology ", "--expires", day.isoformat())

    grant = ClinicianGrant.objects.get()
    assert grant.department == "cardiology"
    assert timezone.localtime(grant.expires_at).date() == day + datetime.timedelta(days=1)
    assert f"until {day + datetime.timedelta(days=1):%Y-%m-%d} 00:00" in output
    assert can_view_exam(casey, exam)


def test_command_grant_again_renews(casey, exam):
    run("grant", "casey", "--department", "Cardiology", "--expires", timezone.localdate().isoformat())

    output = run("grant", "casey", "--department", "CARDIOLOGY")

    grant = ClinicianGrant.objects.get()
    assert output.startswith("Renewed the grant of department Cardiology")
    assert grant.expires_at is None
    assert "renewed grant" in access_events()[-1].detail


def test_command_renewal_keeps_note(casey, exam):
    run("grant", "casey", "--department", "Cardiology", "--note", "consultant on call")

    run("grant", "casey", "--department", "Cardiology")

    assert ClinicianGrant.objects.get().note == "consultant on call"


def test_command_revokes_grant(casey, exam):
    run("grant", "casey", "--patient", "P-GRANT")

    output = run("revoke", "casey", "--patient", "P-GRANT")

    assert output.strip() == "Revoked the grant of patient P-GRANT to casey."
    assert not ClinicianGrant.objects.exists()
    assert not can_view_exam(casey, exam)
    assert "revoked grant of patient P-GRANT" in access_events()[-1].detail


def test_command_lists_grants_and_names(casey, exam):
    run("grant", "casey", "--patient", "P-GRANT")
    run("names", "casey", "CASEY^BEN", "Casey^B")

    output = run("list", "casey")

    assert "casey" in output
    assert "patient P-GRANT" in output
    assert "active" in output
    assert "names in DICOM headers: CASEY^BEN, Casey^B" in output
    assert PATIENT_NAME not in output


def test_command_sets_and_clears_names(casey):
    run("names", "casey", "CASEY^BEN")
    cleared = run("names", "casey")

    assert ClinicianProfile.objects.get(user=casey).dicom_names == ""
    assert cleared.strip() == "casey now has no name in DICOM headers."
    assert [event.detail for event in access_events()] == [
        "names in DICOM headers of clinician casey set to: CASEY^BEN",
        "names in DICOM headers of clinician casey set to: (none)",
    ]


@pytest.mark.parametrize(("arguments", "message"), [
    (("grant", "nobody", "--patient", "P-GRANT"), "no user named 'nobody'"),
    (("grant", "casey", "--patient", "UNKNOWN"), "patient with Patient ID 'UNKNOWN' not found"),
    (("grant", "casey", "--department", "Cardiology", "--expires", "2020-01-01"), "is in the past"),
    (("grant", "casey", "--department", "Cardiology", "--expires", "tomorrow"), "is not a date; write it as YYYY-MM-DD"),
    (("grant", "casey", "--department", "   "), "give either a patient or a department"),
    (("revoke", "casey", "--department", "Oncology"), "casey has no such grant"),
    (("grant", "reader", "--department", "Cardiology"), "does not have the clinician role"),
    (("names", "reader", "READER^ANN"), "does not have the clinician role"),
])
def test_command_rejects_invalid_request(casey, exam, make_user, arguments, message):
    make_user("reader", "radiologist")

    with pytest.raises(CommandError, match=message):
        run(*arguments)

    assert not ClinicianGrant.objects.exists()


def test_command_needs_issuer_for_shared_patient_id(casey, exam):
    Patient.objects.create(patient_id="P-GRANT", issuer_of_patient_id="OTHER-HOSPITAL")

    with pytest.raises(CommandError, match="several patients have Patient ID 'P-GRANT'"):
        run("grant", "casey", "--patient", "P-GRANT")
    run("grant", "casey", "--patient", "P-GRANT", "--issuer", "OTHER-HOSPITAL")

    assert ClinicianGrant.objects.get().patient.issuer_of_patient_id == "OTHER-HOSPITAL"


def test_grant_needs_patient_or_department(casey, exam):
    with pytest.raises(IntegrityError), transaction.atomic():
        ClinicianGrant.objects.create(clinician=casey, patient=exam.patient, department="Cardiology", granted_by="tests")
    with pytest.raises(IntegrityError), transaction.atomic():
        ClinicianGrant.objects.create(clinician=casey, granted_by="tests")

    assert not ClinicianGrant.objects.exists()


def test_department_grant_is_unique_ignoring_case(casey):
    ClinicianGrant.objects.create(clinician=casey, department="Cardiology", granted_by="tests")

    with pytest.raises(IntegrityError), transaction.atomic():
        ClinicianGrant.objects.create(clinician=casey, department="CARDIOLOGY", granted_by="tests")


# The Django admin


@pytest.fixture
def admin_client(make_user) -> Client:
    client = Client(REMOTE_ADDR="192.0.2.10")
    client.force_login(make_user("boss", "administrator"))
    return client


def test_admin_adds_patient_grant_by_patient_id(admin_client, casey, exam):
    response = admin_client.post("/admin/clinicians/cliniciangrant/add/", {
        "clinician": casey.pk, "patient": "P-GRANT", "department": "", "expires_at_0": "", "expires_at_1": "", "note": "",
    })

    grant = ClinicianGrant.objects.get()
    assert response.status_code == 302
    assert grant.patient == exam.patient
    assert grant.granted_by == "boss"
    (event,) = access_events()
    assert event.user == "boss"
    assert event.address == "192.0.2.10"
    assert event.patient_id == "P-GRANT"


def test_admin_change_form_shows_patient_id_not_name(admin_client, casey, exam):
    grant, _created = grants.grant_access(casey, actor="tests", patient=exam.patient)

    page = admin_client.get(f"/admin/clinicians/cliniciangrant/{grant.pk}/change/").content.decode()
    listing = admin_client.get("/admin/clinicians/cliniciangrant/").content.decode()

    assert 'value="P-GRANT"' in page
    assert PATIENT_NAME not in page
    assert "patient P-GRANT" in listing
    assert PATIENT_NAME not in listing


@pytest.mark.parametrize(("data", "message"), [
    ({"patient": "UNKNOWN"}, "not found"),
    ({"patient": "", "department": ""}, "Give a Patient ID or a ward or department."),
    ({"patient": "P-GRANT", "department": "Cardiology"}, "not both"),
])
def test_admin_rejects_invalid_grant(admin_client, casey, exam, data, message):
    form = {"clinician": casey.pk, "patient": "", "department": "", "expires_at_0": "", "expires_at_1": "", "note": "", **data}

    response = admin_client.post("/admin/clinicians/cliniciangrant/add/", form)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ClinicianGrant.objects.exists()


def test_admin_offers_only_clinicians(admin_client, casey, make_user):
    make_user("reader", "radiologist")

    page = admin_client.get("/admin/clinicians/cliniciangrant/add/").content.decode()

    assert ">casey<" in page
    assert ">reader<" not in page


def test_admin_deletion_is_audited_as_revoked(admin_client, casey, exam):
    grant, _created = grants.grant_access(casey, actor="tests", patient=exam.patient)

    response = admin_client.post(f"/admin/clinicians/cliniciangrant/{grant.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not ClinicianGrant.objects.exists()
    assert "revoked grant of patient P-GRANT to clinician casey" in access_events()[-1].detail


def test_admin_profile_and_match_action(admin_client, casey, exam):
    from telerad.reading.models import Exam

    Exam.objects.filter(pk=exam.pk).update(referring_physician_name="CASEY^BEN")

    added = admin_client.post("/admin/clinicians/clinicianprofile/add/", {"user": casey.pk, "dicom_names": "Casey^Ben\n"})
    profile = ClinicianProfile.objects.get()
    matched = admin_client.post("/admin/clinicians/clinicianprofile/", {"action": "match_exams", "_selected_action": [str(profile.pk)]})

    exam.refresh_from_db()
    assert added.status_code == 302
    assert matched.status_code == 302
    assert exam.referring_clinician == casey
    assert access_events()[-1].user == "boss"


# IT opens the admin site but not these pages (403); the others do not open the admin site (302 to the login).
@pytest.mark.parametrize(("role", "status"), [("radiologist", 302), ("clinician", 302), ("it", 403)])
def test_admin_pages_closed_to_other_roles(make_user, role, status):
    client = Client()
    client.force_login(make_user("walker", role))

    for address in ("/admin/clinicians/cliniciangrant/", "/admin/clinicians/clinicianprofile/"):
        assert client.get(address).status_code == status, address
