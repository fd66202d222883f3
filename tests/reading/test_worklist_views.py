"""The worklist page, its filters, search, order, paging, saved views and live refresh, and the exam page."""

from __future__ import annotations

import dataclasses
import datetime

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.reading import claims
from telerad.reading.models import Exam, ExamStatus, Priority, Reader, Report, SignedKind, SignedReport, Subspecialty, WorklistView
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db
WORKLIST = "/worklist/"


@pytest.fixture
def reader(make_user):
    return make_user("ada", "radiologist")


@pytest.fixture
def client(reader):
    client = Client()
    client.force_login(reader)
    return client


def accessions(response) -> list[str]:
    return [row.exam.accession_number for row in response.context["rows"]]


def test_lists_open_exams_in_default_order(client):
    make_exam(accession="ROUTINE-OLD", priority=Priority.ROUTINE, waiting_minutes=300)
    make_exam(accession="STAT-NEW", priority=Priority.STAT, waiting_minutes=5)
    make_exam(accession="STAT-OLD", priority=Priority.STAT, waiting_minutes=50)
    make_exam(accession="URGENT", priority=Priority.URGENT, waiting_minutes=500)
    make_exam(accession="DRAFT", status=ExamStatus.DRAFT, waiting_minutes=1)
    make_exam(accession="PRELIM", status=ExamStatus.PRELIMINARY, waiting_minutes=2)
    make_exam(accession="SIGNED", status=ExamStatus.FINAL)
    make_exam(accession="ADDENDED", status=ExamStatus.ADDENDED)

    response = client.get(WORKLIST)

    assert response.status_code == 200
    assert accessions(response) == ["STAT-OLD", "STAT-NEW", "URGENT", "ROUTINE-OLD", "PRELIM", "DRAFT"]


def test_sort_by_waiting(client):
    make_exam(accession="A", priority=Priority.STAT, waiting_minutes=5)
    make_exam(accession="B", priority=Priority.ROUTINE, waiting_minutes=50)

    response = client.get(WORKLIST, {"sort": "waiting"})

    assert accessions(response) == ["B", "A"]


def test_row_shows_exam_columns(client):
    chest = Subspecialty.objects.get(code="chest")
    make_exam(
        accession="COL-1", patient_id="PID-9", patient_name="Doe^Jane", modalities="CT\\PT", body_part="CHEST",
        description="PET-CT chest", subspecialty=chest, sending_site="North Clinic",
    )

    page = client.get(WORKLIST).content.decode()

    for text in ("COL-1", "PID-9", "Doe, Jane", "CT, PT", "CHEST", "PET-CT chest", "Chest", "North Clinic", "Unread", "10 min"):
        assert text in page, text


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"priority": [Priority.STAT]}, ["S"]),
        ({"priority": [Priority.STAT, Priority.URGENT]}, ["S", "U"]),
        ({"modality": "mr"}, ["U"]),
        ({"modality": "PT"}, ["R"]),
        ({"subspecialty": ["neuro"]}, ["U"]),
        ({"status": [ExamStatus.DRAFT]}, ["R"]),
    ],
)
def test_filters(client, parameters, expected):
    make_exam(accession="S", priority=Priority.STAT, modalities="CT")
    make_exam(accession="U", priority=Priority.URGENT, modalities="MR", subspecialty=Subspecialty.objects.get(code="neuro"))
    make_exam(accession="R", modalities="CT\\PT", status=ExamStatus.DRAFT)

    response = client.get(WORKLIST, parameters)

    assert accessions(response) == expected


def test_mine_filter_includes_drafts(client, reader, make_user):
    other = make_user("ben", "radiologist")
    claimed = make_exam(accession="CLAIMED")
    drafted = make_exam(accession="DRAFTED", status=ExamStatus.DRAFT)
    others = make_exam(accession="OTHERS")
    make_exam(accession="FREE")
    claims.claim(claimed.pk, reader)
    claims.claim(others.pk, other)
    Report.objects.create(exam=drafted, author=reader)

    response = client.get(WORKLIST, {"mine": "1"})
    drafts = client.get(WORKLIST, {"mine": "1", "status": [ExamStatus.DRAFT, ExamStatus.PRELIMINARY]})

    assert sorted(accessions(response)) == ["CLAIMED", "DRAFTED"]
    assert accessions(drafts) == ["DRAFTED"]


def test_my_subspecialties(client, reader):
    neuro = Subspecialty.objects.get(code="neuro")
    make_exam(accession="NEURO", subspecialty=neuro)
    make_exam(accession="CHEST", subspecialty=Subspecialty.objects.get(code="chest"))

    saved = client.post(reverse("reading:my-subspecialties"), {"subspecialties": [neuro.pk]})
    response = client.get(WORKLIST, {"my_subspecialties": "1"})

    assert saved.status_code == 303
    assert list(Reader.objects.get(user=reader).subspecialties.all()) == [neuro]
    assert accessions(response) == ["NEURO"]


def test_invalid_filter_shows_error(client):
    make_exam(accession="X")

    response = client.get(WORKLIST, {"priority": "9"})

    assert response.status_code == 200
    assert response.context["page"] is None
    assert response.context["filters"].errors["priority"]


def test_search_is_posted_not_in_address(client):
    make_exam(accession="FIND-ME", patient_id="PID-1")
    make_exam(accession="OTHER", patient_id="PID-2")

    response = client.post(WORKLIST + "?priority=3", {"accession_number": "FIND-ME", "patient_id": ""})
    listed = client.get(response["Location"])
    by_patient = client.get(client.post(WORKLIST, {"accession_number": "", "patient_id": "PID-2"})["Location"])

    assert response.status_code == 303
    assert "FIND-ME" not in response["Location"]
    assert "priority=3" in response["Location"]
    assert accessions(listed) == ["FIND-ME"]
    assert accessions(by_patient) == ["OTHER"]


def test_lost_search_redirects(client):
    response = client.get(WORKLIST, {"search": "unknown-key", "priority": "1"})

    assert response.status_code == 302
    assert response["Location"] == WORKLIST + "?priority=1"


def test_paging(client):
    for number in range(60):
        make_exam(accession=f"N{number:02d}", waiting_minutes=100 - number)

    first = client.get(WORKLIST)
    second = client.get(WORKLIST, {"page": "2"})

    assert len(first.context["rows"]) == 50
    assert accessions(second) == [f"N{number:02d}" for number in range(50, 60)]
    assert second.context["page"].paginator.count == 60


def test_worklist_queries_do_not_grow_with_rows(client, reader, django_assert_max_num_queries):
    for number in range(30):
        exam = make_exam(accession=f"Q{number}", subspecialty=Subspecialty.objects.get(code="chest"))
        if number % 3 == 0:
            claims.claim(exam.pk, reader)

    # Session, user, roles, filters' subspecialties, count, page, saved views, audit,
    # the reader's duty, the open questions assigned to them and those of the page's exams.
    with django_assert_max_num_queries(19):
        client.get(WORKLIST)


def test_read_button_is_first_column(client):
    make_exam(accession="FIRST-COL", description="A long description that widens the table")

    page = client.get(WORKLIST).content.decode()

    row = page[page.index('<tr class="priority-'):]
    row = row[:row.index("</tr>")]
    assert ">Read</button>" in row
    assert row.index(">Read</button>") < row.index("priority-badge")
    header = page[page.index("<thead>"):page.index("</thead>")]
    assert header.index("Actions") < header.index("Priority")


def test_being_read_by_other(client, make_user):
    other = make_user("ben", "radiologist")
    exam = make_exam(accession="HELD")
    claims.claim(exam.pk, other)

    page = client.get(WORKLIST).content.decode()

    assert "Being read by ben" in page
    assert reverse("reading:claim", args=[exam.pk]) not in page


def test_lapsed_claim_shows_free(client, make_user):
    other = make_user("ben", "radiologist")
    exam = make_exam(accession="LAPSED")
    claims.claim(exam.pk, other)
    Exam.objects.filter(pk=exam.pk).update(claim_active_at=timezone.now() - datetime.timedelta(hours=2))

    page = client.get(WORKLIST).content.decode()

    assert "Being read by ben" not in page
    assert reverse("reading:claim", args=[exam.pk]) in page


def test_turnaround_colours(client, settings):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, tat_warning_minutes=(30, 120, 1440), tat_overdue_minutes=(60, 240, 2880))
    make_exam(accession="STAT-LATE", priority=Priority.STAT, waiting_minutes=90)
    make_exam(accession="STAT-SOON", priority=Priority.STAT, waiting_minutes=40)
    make_exam(accession="ROUTINE-OK", priority=Priority.ROUTINE, waiting_minutes=90)

    response = client.get(WORKLIST)

    levels = {row.exam.accession_number: row.turnaround for row in response.context["rows"]}
    assert levels == {"STAT-LATE": "overdue", "STAT-SOON": "warning", "ROUTINE-OK": "normal"}
    assert "turnaround-overdue" in response.content.decode()


def test_refresh_returns_table_only(client):
    make_exam(accession="LIVE")

    response = client.get(WORKLIST, headers={"HX-Request": "true", "HX-Target": "worklist-table"})

    page = response.content.decode()
    assert 'id="worklist-table"' in page
    assert "LIVE" in page
    assert "<html" not in page


def test_refresh_audits_only_changes(client):
    make_exam(accession="FIRST")
    refresh = {"HX-Request": "true", "HX-Target": "worklist-table"}

    client.get(WORKLIST)
    client.get(WORKLIST, headers=refresh)
    make_exam(accession="SECOND")
    client.get(WORKLIST, headers=refresh)
    client.get(WORKLIST)

    assert AuditEvent.objects.filter(action=Action.WORKLIST_VIEWED).count() == 3


def test_saved_view_roundtrip(client, reader, make_user):
    make_exam(accession="S", priority=Priority.STAT)
    make_exam(accession="R")

    saved = client.post(reverse("reading:view-save") + "?priority=1&search=abc&page=2", {"name": "Urgent only"})
    view = WorklistView.objects.get(user=reader)
    page = client.get(WORKLIST).content.decode()
    other = Client()
    other.force_login(make_user("ben", "radiologist"))
    refused = other.post(reverse("reading:view-delete", args=[view.pk]))
    deleted = client.post(reverse("reading:view-delete", args=[view.pk]))

    assert saved.status_code == 303
    assert view.name == "Urgent only"
    assert view.filters == {"priority": [1]}
    assert "Urgent only" in page
    assert refused.status_code == 404
    assert deleted.status_code == 303
    assert not WorklistView.objects.exists()


def test_duplicate_view_name_refused(client, reader):
    client.post(reverse("reading:view-save"), {"name": "Mine"})

    response = client.post(reverse("reading:view-save"), {"name": "Mine"}, follow=True)

    assert WorklistView.objects.filter(user=reader).count() == 1
    assert "You already have a view named" in response.content.decode()


def test_presets_listed(client):
    page = client.get(WORKLIST).content.decode()

    for label in ("My subspecialties", "STAT first", "Mine", "Drafts to finish"):
        assert label in page


def test_worklist_audited(client):
    make_exam(accession="AUD")

    client.get(WORKLIST, {"priority": "3"})

    event = AuditEvent.objects.get(action=Action.WORKLIST_VIEWED)
    assert event.user == "ada"
    assert "priority=[3]" in event.detail
    assert "page=1" in event.detail


@pytest.mark.parametrize("role", ["technologist", "clinician", "auditor", "administrator"])
def test_roles_without_reading_refused(make_user, role):
    client = Client()
    client.force_login(make_user("walker", role))

    response = client.get(WORKLIST)

    assert response.status_code == 403


def test_radiologist_lands_on_worklist(client):
    response = client.get("/")

    assert response.status_code == 302
    assert response["Location"] == WORKLIST


def test_exam_page(client, make_user):
    signer = make_user("sam", "radiologist")
    exam = make_exam(
        accession="CUR", patient_id="PRI-1", reason_for_study="Cough for three weeks", clinical_history="Smoker", body_part="CHEST",
    )
    reported = make_exam(accession="OLD-1", patient_id="PRI-1", status=ExamStatus.FINAL, waiting_minutes=60 * 24 * 400)
    make_exam(accession="OLD-2", patient_id="PRI-1", status=ExamStatus.UNREAD, waiting_minutes=60 * 24 * 800)
    SignedReport.objects.create(
        exam=reported, kind=SignedKind.FINAL, text="No focal consolidation.", signer=signer, signed_at=timezone.now(), content_hash="0" * 64,
    )
    uid = exam.studies.get().study_instance_uid

    response = client.get(reverse("reading:exam", args=[exam.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Cough for three weeks" in page
    assert "Smoker" in page
    assert f"/viewer/viewer?StudyInstanceUIDs={uid}" in page
    assert "No focal consolidation." in page
    assert "No report" in page
    assert [prior.accession_number for prior, _studies, _uids in response.context["priors"]] == ["OLD-1", "OLD-2"]
    event = AuditEvent.objects.get(action=Action.EXAM_VIEWED)
    assert event.patient_id == "PRI-1"
    assert event.study_instance_uid == uid


def test_exam_page_unknown(client):
    assert client.get(reverse("reading:exam", args=[424242])).status_code == 404


def test_technologist_edits_details(make_user):
    technologist = make_user("tom", "technologist")
    clinician = make_user("cleo", "clinician")
    client = Client()
    client.force_login(technologist)
    exam = make_exam(accession="EDIT")
    cardiac = Subspecialty.objects.get(code="cardiac")

    form = client.get(reverse("reading:exam-details", args=[exam.pk]))
    response = client.post(reverse("reading:exam-details", args=[exam.pk]), {
        "priority": Priority.STAT, "subspecialty": cardiac.pk, "referring_clinician": clinician.pk,
        "reason_for_study": "Chest pain", "clinical_history": "Prior infarction",
    })

    exam.refresh_from_db()
    assert form.status_code == 200
    assert response.status_code == 303
    assert exam.priority == Priority.STAT
    assert exam.subspecialty == cardiac
    assert exam.referring_clinician == clinician
    assert exam.reason_for_study == "Chest pain"
    assert exam.clinical_history == "Prior infarction"
    event = AuditEvent.objects.get(action=Action.EXAM_DETAILS_CHANGED)
    assert event.user == "tom"
    assert "Chest pain" not in event.detail
    assert "clinical_history" in event.detail


def test_details_form_rejects_non_clinician(client, reader):
    exam = make_exam(accession="EDIT2")

    response = client.post(reverse("reading:exam-details", args=[exam.pk]), {"priority": Priority.ROUTINE, "referring_clinician": reader.pk})

    assert response.status_code == 200
    assert response.context["form"].errors["referring_clinician"]
    assert not AuditEvent.objects.filter(action=Action.EXAM_DETAILS_CHANGED).exists()
