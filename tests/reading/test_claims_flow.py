"""Claiming, releasing, lapsing and reassigning exams, through the functions and the pages."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.reading import claims
from telerad.reading.models import Exam, ExamStatus
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_lapsed(exam: Exam, minutes: int = 31) -> None:
    Exam.objects.filter(pk=exam.pk).update(claim_active_at=timezone.now() - datetime.timedelta(minutes=minutes))


def test_claim_marks_exam(make_user):
    reader = make_user("ada", "radiologist")
    exam = make_exam(accession="C1")

    claims.claim(exam.pk, reader)

    exam.refresh_from_db()
    assert exam.claimed_by == reader
    assert exam.status == ExamStatus.IN_PROGRESS
    assert exam.claimed_at is not None
    assert exam.first_claimed_at == exam.claimed_at
    event = AuditEvent.objects.get(action=Action.EXAM_CLAIMED)
    assert event.user == "ada"
    assert event.patient_id == exam.patient.patient_id
    assert "accession=C1" in event.detail


def test_claim_refused_while_held(make_user):
    first = make_user("ada", "radiologist")
    second = make_user("ben", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, first)

    with pytest.raises(claims.ClaimRefused, match="ada is reading this exam"):
        claims.claim(exam.pk, second)

    exam.refresh_from_db()
    assert exam.claimed_by == first


def test_claim_again_by_holder_keeps_claim(make_user):
    reader = make_user("ada", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)

    claims.claim(exam.pk, reader)

    assert actions().count(Action.EXAM_CLAIMED) == 1


def test_lapsed_claim_taken_over(make_user):
    first = make_user("ada", "radiologist")
    second = make_user("ben", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, first)
    first_claimed_at = Exam.objects.get(pk=exam.pk).first_claimed_at
    make_lapsed(exam)

    claims.claim(exam.pk, second)

    exam.refresh_from_db()
    assert exam.claimed_by == second
    assert exam.first_claimed_at == first_claimed_at
    assert actions()[-2:] == [Action.CLAIM_LAPSED, Action.EXAM_CLAIMED]
    assert AuditEvent.objects.get(action=Action.CLAIM_LAPSED).user == "ada"


def test_lapse_follows_timeout_setting(make_user, settings):
    import dataclasses

    settings.TELERAD = dataclasses.replace(settings.TELERAD, claim_timeout_minutes=5)
    first = make_user("ada", "radiologist")
    second = make_user("ben", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, first)
    make_lapsed(exam, minutes=6)

    claims.claim(exam.pk, second)

    assert Exam.objects.get(pk=exam.pk).claimed_by == second


def test_activity_keeps_claim_alive(make_user):
    reader = make_user("ada", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)
    make_lapsed(exam, minutes=20)

    response = client_for(reader).get(reverse("reading:exam", args=[exam.pk]))

    exam.refresh_from_db()
    assert response.status_code == 200
    assert timezone.now() - exam.claim_active_at < datetime.timedelta(minutes=1)


def test_activity_does_not_revive_lapsed_claim(make_user):
    reader = make_user("ada", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)
    make_lapsed(exam)

    assert claims.record_activity(exam.pk, reader) is False


def test_other_users_request_is_no_activity(make_user):
    reader = make_user("ada", "radiologist")
    other = make_user("ben", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)
    make_lapsed(exam, minutes=20)
    before = Exam.objects.get(pk=exam.pk).claim_active_at

    client_for(other).get(reverse("reading:exam", args=[exam.pk]))

    assert Exam.objects.get(pk=exam.pk).claim_active_at == before


def test_expire_lapsed_claims(make_user):
    reader = make_user("ada", "radiologist")
    reading = make_exam()
    drafted = make_exam()
    active = make_exam()
    for exam in (reading, drafted, active):
        claims.claim(exam.pk, reader)
    Exam.objects.filter(pk=drafted.pk).update(status=ExamStatus.DRAFT)
    make_lapsed(reading)
    make_lapsed(drafted)

    cleared = claims.expire_lapsed_claims()

    assert cleared == 2
    reading.refresh_from_db()
    drafted.refresh_from_db()
    assert reading.claimed_by is None
    assert reading.status == ExamStatus.UNREAD
    assert drafted.claimed_by is None
    assert drafted.status == ExamStatus.DRAFT
    assert Exam.objects.get(pk=active.pk).claimed_by == reader
    assert actions().count(Action.CLAIM_LAPSED) == 2


def test_holder_releases(make_user):
    reader = make_user("ada", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)

    response = client_for(reader).post(reverse("reading:release", args=[exam.pk]))

    exam.refresh_from_db()
    assert response.status_code == 303
    assert response["Location"] == reverse("reading:worklist")
    assert exam.claimed_by is None
    assert exam.status == ExamStatus.UNREAD
    assert exam.first_claimed_at is not None
    event = AuditEvent.objects.get(action=Action.CLAIM_RELEASED)
    assert event.user == "ada"
    assert "holder=ada" in event.detail


def test_other_reader_cannot_release(make_user):
    reader = make_user("ada", "radiologist")
    other = make_user("ben", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)

    response = client_for(other).post(reverse("reading:release", args=[exam.pk]), follow=True)

    assert Exam.objects.get(pk=exam.pk).claimed_by == reader
    assert "Only ada or a lead radiologist can release this claim." in response.content.decode()
    assert Action.CLAIM_RELEASED not in actions()


def test_lead_releases_anyones_claim(make_user):
    reader = make_user("ada", "radiologist")
    lead = make_user("lea", "lead-radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)

    client_for(lead).post(reverse("reading:release", args=[exam.pk]))

    assert Exam.objects.get(pk=exam.pk).claimed_by is None
    event = AuditEvent.objects.get(action=Action.CLAIM_RELEASED)
    assert event.user == "lea"
    assert "holder=ada" in event.detail


def test_lead_reassigns(make_user):
    reader = make_user("ada", "radiologist")
    other = make_user("ben", "resident")
    lead = make_user("lea", "lead-radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)

    response = client_for(lead).post(reverse("reading:reassign", args=[exam.pk]), {"reader": other.pk})

    exam.refresh_from_db()
    assert response.status_code == 303
    assert exam.claimed_by == other
    assert exam.status == ExamStatus.IN_PROGRESS
    event = AuditEvent.objects.get(action=Action.CLAIM_REASSIGNED)
    assert event.user == "lea"
    assert "from=ada; to=ben" in event.detail


def test_reassign_to_non_reader_refused(make_user):
    lead = make_user("lea", "lead-radiologist")
    technologist = make_user("tom", "technologist")
    exam = make_exam()

    with pytest.raises(claims.ClaimRefused, match="tom cannot read exams"):
        claims.reassign(exam.pk, technologist, lead)

    assert Exam.objects.get(pk=exam.pk).claimed_by is None


def test_radiologist_cannot_reassign(make_user):
    reader = make_user("ada", "radiologist")
    other = make_user("ben", "radiologist")
    exam = make_exam()

    response = client_for(reader).post(reverse("reading:reassign", args=[exam.pk]), {"reader": other.pk})

    assert response.status_code == 403
    assert Exam.objects.get(pk=exam.pk).claimed_by is None


def test_final_exam_cannot_be_claimed(make_user):
    reader = make_user("ada", "radiologist")
    exam = make_exam(status=ExamStatus.FINAL)

    with pytest.raises(claims.ClaimRefused, match="reported already"):
        claims.claim(exam.pk, reader)


def test_claim_page_opens_exam(make_user):
    reader = make_user("ada", "radiologist")
    exam = make_exam()

    response = client_for(reader).post(reverse("reading:claim", args=[exam.pk]))

    assert response.status_code == 303
    assert response["Location"] == reverse("reading:exam", args=[exam.pk])
    assert Exam.objects.get(pk=exam.pk).claimed_by == reader


def test_refused_claim_page_names_holder(make_user):
    reader = make_user("ada", "radiologist")
    other = make_user("ben", "radiologist")
    exam = make_exam()
    claims.claim(exam.pk, reader)

    response = client_for(other).post(reverse("reading:claim", args=[exam.pk]), follow=True)

    page = response.content.decode()
    assert response.status_code == 200
    assert "ada is reading this exam." in page
    assert "Being read by ada." in page


def test_claim_unknown_exam_not_found(make_user):
    reader = make_user("ada", "radiologist")

    response = client_for(reader).post(reverse("reading:claim", args=[999999]))

    assert response.status_code == 404
