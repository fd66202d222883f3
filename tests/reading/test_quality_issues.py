"""Image-quality issues: raised from the exam page, answered, fixed and closed from the technologists' queue, and audited."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from telerad.archive.models import Series
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.reading.quality_models import QualityIssue, QualityReason, QualityReply, QualityState
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(make_user):
    return make_user("ada", "radiologist")


@pytest.fixture
def technologist(make_user):
    return make_user("tess", "technologist")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def exam():
    exam = make_exam(accession="QA-1", patient_id="PID-QA", patient_name="Doe^Jane")
    study = exam.studies.get()
    Series.objects.create(study=study, series_instance_uid="1.2.3.77.1", modality="CT", series_number=3, series_description="Axial 5 mm")
    return exam


def raise_issue(client: Client, exam, **fields):
    data = {"target": "series:1.2.3.77.1", "reason": QualityReason.MOTION, "comment": "Breathing motion on slices 20-40."}
    data.update(fields)
    return client.post(reverse("quality:raise", args=[exam.pk]), data)


def test_reader_raises_issue_on_series(reader, exam):
    response = raise_issue(client_for(reader), exam)

    assert response.status_code == 303
    issue = QualityIssue.objects.get()
    assert issue.exam == exam
    assert issue.series_instance_uid == "1.2.3.77.1"
    assert issue.series_label == "#3 CT Axial 5 mm"
    assert issue.study_instance_uid == exam.studies.get().study_instance_uid
    assert issue.state == QualityState.OPEN
    assert issue.raised_by == reader
    event = AuditEvent.objects.get(action=Action.QUALITY_ISSUE_RAISED)
    assert event.user == "ada"
    assert event.patient_id == "PID-QA"
    assert f"issue={issue.pk}" in event.detail
    assert "Breathing" not in event.detail


def test_reader_raises_issue_on_whole_study(reader, exam):
    study_uid = exam.studies.get().study_instance_uid

    raise_issue(client_for(reader), exam, target=f"study:{study_uid}", reason=QualityReason.MISSING_IMAGES)

    issue = QualityIssue.objects.get()
    assert issue.series_instance_uid == ""
    assert issue.reason == QualityReason.MISSING_IMAGES


def test_raise_rejects_series_of_other_exam(reader, exam):
    other = make_exam(accession="QA-2")
    Series.objects.create(study=other.studies.get(), series_instance_uid="1.2.3.88.1", modality="MR")

    response = raise_issue(client_for(reader), exam, target="series:1.2.3.88.1")

    assert response.status_code == 303
    assert QualityIssue.objects.count() == 0


def test_raise_requires_comment(reader, exam):
    raise_issue(client_for(reader), exam, comment="  ")

    assert QualityIssue.objects.count() == 0


def test_technologist_cannot_raise(technologist, exam):
    response = raise_issue(client_for(technologist), exam)

    assert response.status_code == 403
    assert QualityIssue.objects.count() == 0


def test_queue_lists_open_issues_newest_first(reader, technologist, exam):
    client = client_for(reader)
    raise_issue(client, exam, reason=QualityReason.MOTION)
    raise_issue(client, exam, reason=QualityReason.ARTEFACT)
    closed = QualityIssue.objects.create(
        exam=exam, study_instance_uid="1.2", reason=QualityReason.OTHER, comment="old", raised_by=reader, state=QualityState.CLOSED,
    )

    response = client_for(technologist).get(reverse("quality:queue"))

    assert response.status_code == 200
    shown = [issue.reason for issue in response.context["page"].object_list]
    assert shown == [QualityReason.ARTEFACT, QualityReason.MOTION]
    assert closed.pk not in [issue.pk for issue in response.context["page"].object_list]
    event = AuditEvent.objects.filter(action=Action.QUALITY_QUEUE_VIEWED).get()
    assert event.user == "tess"
    assert "PID-QA" in event.other_patient_ids


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"state": "closed"}, [QualityReason.OTHER]),
        ({"state": "all"}, [QualityReason.OTHER, QualityReason.ARTEFACT, QualityReason.MOTION]),
        ({"reason": "artefact"}, [QualityReason.ARTEFACT]),
        ({"state": "all", "reason": "motion"}, [QualityReason.MOTION]),
        ({"state": "open"}, [QualityReason.ARTEFACT, QualityReason.MOTION]),
    ],
)
def test_queue_filters(reader, technologist, exam, parameters, expected):
    client = client_for(reader)
    raise_issue(client, exam, reason=QualityReason.MOTION)
    raise_issue(client, exam, reason=QualityReason.ARTEFACT)
    QualityIssue.objects.create(exam=exam, study_instance_uid="1.2", reason=QualityReason.OTHER, comment="c", raised_by=reader, state=QualityState.CLOSED)

    response = client_for(technologist).get(reverse("quality:queue"), parameters)

    assert [issue.reason for issue in response.context["page"].object_list] == expected


def test_queue_refused_to_clinician(make_user):
    response = client_for(make_user("cleo", "clinician")).get(reverse("quality:queue"))

    assert response.status_code == 403


def test_technologist_answers_fixes_and_closes(reader, technologist, exam):
    raise_issue(client_for(reader), exam)
    issue = QualityIssue.objects.get()
    tech = client_for(technologist)
    url = reverse("quality:issue", args=[issue.pk])

    assert tech.get(url).status_code == 200
    answered = tech.post(url, {"action": "answer", "text": "Patient could not hold breath; repeating series."})
    issue.refresh_from_db()
    assert answered.status_code == 303
    assert issue.state == QualityState.ANSWERED

    tech.post(url, {"action": "fix", "text": "Repeat series sent."})
    issue.refresh_from_db()
    assert issue.state == QualityState.FIXED

    tech.post(url, {"action": "close", "text": ""})
    issue.refresh_from_db()
    assert issue.state == QualityState.CLOSED
    assert issue.closed_at is not None

    replies = list(QualityReply.objects.filter(issue=issue).values_list("author__username", "new_state"))
    assert replies == [("tess", QualityState.ANSWERED), ("tess", QualityState.FIXED), ("tess", QualityState.CLOSED)]
    actions = list(AuditEvent.objects.filter(action__startswith="quality-issue").order_by("sequence").values_list("action", flat=True))
    assert actions == [
        Action.QUALITY_ISSUE_RAISED, Action.QUALITY_ISSUE_VIEWED,
        Action.QUALITY_ISSUE_ANSWERED, Action.QUALITY_ISSUE_STATE_CHANGED,
        Action.QUALITY_ISSUE_ANSWERED, Action.QUALITY_ISSUE_STATE_CHANGED,
        Action.QUALITY_ISSUE_STATE_CHANGED,
    ]
    assert AuditEvent.objects.filter(action=Action.QUALITY_ISSUE_STATE_CHANGED).last().detail.endswith("state=closed")


def test_empty_answer_is_rejected(reader, technologist, exam):
    raise_issue(client_for(reader), exam)
    issue = QualityIssue.objects.get()

    response = client_for(technologist).post(reverse("quality:issue", args=[issue.pk]), {"action": "answer", "text": " "})

    assert response.status_code == 400
    assert QualityReply.objects.count() == 0


def test_closed_issue_cannot_be_answered(reader, technologist, exam):
    raise_issue(client_for(reader), exam)
    issue = QualityIssue.objects.get()
    tech = client_for(technologist)
    url = reverse("quality:issue", args=[issue.pk])
    tech.post(url, {"action": "close", "text": ""})

    tech.post(url, {"action": "answer", "text": "Too late."})

    assert QualityReply.objects.filter(issue=issue).count() == 1
    issue.refresh_from_db()
    assert issue.state == QualityState.CLOSED


def test_answer_after_fix_keeps_fixed(reader, technologist, exam):
    raise_issue(client_for(reader), exam)
    issue = QualityIssue.objects.get()
    tech = client_for(technologist)
    url = reverse("quality:issue", args=[issue.pk])
    tech.post(url, {"action": "fix", "text": ""})

    tech.post(url, {"action": "answer", "text": "Also checked the protocol."})

    issue.refresh_from_db()
    assert issue.state == QualityState.FIXED


def test_reader_cannot_open_issue_page_without_permission(make_user, reader, exam):
    raise_issue(client_for(reader), exam)
    issue = QualityIssue.objects.get()

    response = client_for(make_user("audrey", "auditor")).post(reverse("quality:issue", args=[issue.pk]), {"action": "close"})

    assert response.status_code == 403
    issue.refresh_from_db()
    assert issue.state == QualityState.OPEN


def test_exam_page_shows_issues_and_answers(reader, technologist, exam):
    reader_client = client_for(reader)
    raise_issue(reader_client, exam)
    issue = QualityIssue.objects.get()
    client_for(technologist).post(reverse("quality:issue", args=[issue.pk]), {"action": "fix", "text": "Repeat series sent to the archive."})

    page = reader_client.get(reverse("reading:exam", args=[exam.pk])).content.decode()

    assert "Breathing motion on slices 20-40." in page
    assert "Repeat series sent to the archive." in page
    assert "#3 CT Axial 5 mm" in page
    assert 'action="/quality/exam/%d/raise"' % exam.pk in page
