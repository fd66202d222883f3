"""Exams matched to clinicians by Referring Physician's Name, and the department read from the header."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from telerad.archive.ingest import default_storage
from telerad.audit.models import AuditEvent
from telerad.clinicians import grants
from telerad.clinicians.matching import ClinicianMatcher, name_key
from telerad.reading import exams
from telerad.reading.models import Exam
from tests.clinicians.portal_support import store_copy

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("first", "second"), [
    ("WELBY^MARCUS", "Welby^Marcus"),
    ("Welby^Marcus^^^", "WELBY^MARCUS"),
    (" Welby ^ Marcus ", "welby^marcus"),
    ("Welby^Marcus=ウェルビー^マーカス", "WELBY^MARCUS"),
    # Unicode case folding: "ß" folds to "ss", as in the upper case "WEISS".
    ("Weiß^Anna", "WEISS^ANNA"),
])
def test_name_key_equal(first, second):
    assert name_key(first) == name_key(second)


@pytest.mark.parametrize(("first", "second"), [
    ("WELBY^MARCUS", "WELBY"),
    ("WELBY^MARCUS", "WELBY^MARCUS^J"),
    ("WELBY^MARCUS", "MARCUS^WELBY"),
    ("Müller^Anna", "Muller^Anna"),
])
def test_name_key_different(first, second):
    assert name_key(first) != name_key(second)


def test_name_key_of_empty_name():
    assert name_key("^^^") == ()


def sync_ct(sample_file, **changes) -> Exam:
    dataset = store_copy(sample_file("CT_small.dcm"), **changes)
    exams.sync_exams(storage=default_storage())
    return Exam.objects.get(exam_studies__study__study_instance_uid=dataset.StudyInstanceUID)


@pytest.fixture
def welby(make_user):
    user = make_user("welby", "clinician")
    grants.set_dicom_names(user, ["WELBY^MARCUS", "Welby^Marcus^J"], actor="tests")
    return user


def test_sync_sets_matching_clinician(sample_file, welby):
    exam = sync_ct(sample_file, ReferringPhysicianName="welby^marcus^^^")

    assert exam.referring_clinician == welby
    event = AuditEvent.objects.get(action="exam-details-changed")
    assert f"exam={exam.pk}" in event.detail
    assert "clinician welby matched" in event.detail
    assert event.patient_id == "1CT1"


def test_sync_matches_second_listed_name(sample_file, welby):
    exam = sync_ct(sample_file, ReferringPhysicianName="WELBY^MARCUS^J")

    assert exam.referring_clinician == welby


def test_sync_leaves_unknown_name(sample_file, welby):
    exam = sync_ct(sample_file, ReferringPhysicianName="KILDARE^JAMES")

    assert exam.referring_clinician is None
    assert not AuditEvent.objects.filter(action="exam-details-changed").exists()


def test_sync_leaves_name_of_two_clinicians(sample_file, welby, make_user):
    namesake = make_user("welby2", "clinician")
    grants.set_dicom_names(namesake, ["Welby^Marcus"], actor="tests")

    exam = sync_ct(sample_file, ReferringPhysicianName="WELBY^MARCUS")

    assert exam.referring_clinician is None


def test_sync_ignores_disabled_clinician(sample_file, welby):
    welby.is_active = False
    welby.save(update_fields=["is_active"])

    exam = sync_ct(sample_file, ReferringPhysicianName="WELBY^MARCUS")

    assert exam.referring_clinician is None


def test_sync_ignores_profile_of_former_clinician(sample_file, welby):
    from telerad.accounts.roles import Role, set_roles

    set_roles(welby, [Role.RADIOLOGIST])

    exam = sync_ct(sample_file, ReferringPhysicianName="WELBY^MARCUS")

    assert exam.referring_clinician is None


def test_later_study_keeps_clinician_set_by_hand(sample_file, welby, make_user):
    chosen = make_user("chosen", "clinician")
    first = sync_ct(sample_file, AccessionNumber="ACC-HAND")
    Exam.objects.filter(pk=first.pk).update(referring_clinician=chosen)

    second = sync_ct(sample_file, AccessionNumber="ACC-HAND", ReferringPhysicianName="WELBY^MARCUS")

    assert second.pk == first.pk
    assert second.referring_clinician == chosen


def test_later_study_fills_name_and_clinician(sample_file, welby):
    first = sync_ct(sample_file, AccessionNumber="ACC-LATER")

    second = sync_ct(sample_file, AccessionNumber="ACC-LATER", ReferringPhysicianName="WELBY^MARCUS")

    assert first.referring_clinician is None
    assert second.pk == first.pk
    assert second.referring_clinician == welby


def test_match_command_fills_existing_exams(sample_file, make_user):
    exam = sync_ct(sample_file, ReferringPhysicianName="KILDARE^JAMES")
    kildare = make_user("kildare", "clinician")
    grants.set_dicom_names(kildare, ["Kildare^James"], actor="tests")
    output = io.StringIO()

    call_command("clinician", "match", stdout=output)

    exam.refresh_from_db()
    assert exam.referring_clinician == kildare
    assert output.getvalue().strip() == "1 exams got a referring clinician."
    assert AuditEvent.objects.get(action="exam-details-changed").user == "cli"


def test_matcher_without_profiles_is_empty(make_user):
    make_user("nobody", "clinician")

    matcher = ClinicianMatcher.load()

    assert not matcher
    assert matcher.match("WELBY^MARCUS") is None


@pytest.mark.parametrize(("changes", "department"), [
    ({"RequestingService": "Cardiology"}, "Cardiology"),
    ({"CurrentPatientLocation": "Ward 7"}, "Ward 7"),
    ({"RequestingService": "Cardiology", "CurrentPatientLocation": "Ward 7"}, "Cardiology"),
    ({}, ""),
])
def test_sync_reads_department(sample_file, changes, department):
    exam = sync_ct(sample_file, **changes)

    assert exam.department == department


def test_technologist_edits_department(sample_file, make_user):
    from django.test import Client
    from django.urls import reverse

    exam = sync_ct(sample_file, RequestingService="Cardiology")
    client = Client()
    client.force_login(make_user("tom", "technologist"))

    response = client.post(reverse("reading:exam-details", args=[exam.pk]), {
        "priority": exam.priority, "department": "  Oncology ", "reason_for_study": "", "clinical_history": "",
    })

    exam.refresh_from_db()
    assert response.status_code == 303
    assert exam.department == "Oncology"
    assert "fields=department" in AuditEvent.objects.get(action="exam-details-changed").detail
