"""Personas and helpers of the question thread tests: an exam referred by a clinician, its readers, and asking through the pages."""

from __future__ import annotations

import pytest
from django.utils import timezone

from telerad.clinicians import questions
from telerad.clinicians.question_models import Question
from telerad.reading import duty
from telerad.reading.models import Exam, Reader, SignedKind, SignedReport, Subspecialty
from tests.clinicians.support import with_email
from tests.reading.reports_fixtures import client_for, create_exam

QUESTION_BODY = "Is the nodule in the right upper lobe new since the prior CT of the 3rd of March?"
SUBJECT = "Nodule right upper lobe"


@pytest.fixture
def clinician(make_user):
    return with_email(make_user("referrer", "clinician"))


@pytest.fixture
def other_clinician(make_user):
    return with_email(make_user("other-referrer", "clinician"))


@pytest.fixture
def signer(make_user):
    return with_email(make_user("signer", "radiologist"))


@pytest.fixture
def technologist(make_user):
    return with_email(make_user("tech", "technologist"))


@pytest.fixture
def lead(make_user):
    return with_email(make_user("lead", "lead-radiologist"))


@pytest.fixture
def referred_exam(db, clinician) -> Exam:
    exam = create_exam(accession="ACC-Q-1")
    exam.referring_clinician = clinician
    exam.save(update_fields=["referring_clinician"])
    return exam


def sign_final(exam: Exam, signer) -> SignedReport:
    """Store a final report of `exam` signed by `signer`, as signing does, without going through the editor."""
    return SignedReport.objects.create(
        exam=exam, kind=SignedKind.FINAL, sections={"impression": "No change."}, section_order=["impression"], text="No change.",
        signer=signer, signed_at=timezone.now(), content_hash="0" * 64,
    )


def put_on_duty(user, *subspecialty_codes: str) -> Reader:
    reader, _created = Reader.objects.get_or_create(user=user)
    reader.subspecialties.set(Subspecialty.objects.filter(code__in=subspecialty_codes))
    duty.set_on_duty(reader, True, changed_by="test")
    return reader


def ask_through_page(user, exam: Exam, *, subject: str = SUBJECT, body: str = QUESTION_BODY, signed_report: SignedReport | None = None):
    """Post the question form as `user` and return the response."""
    data = {"subject": subject, "body": body, "signed_report": signed_report.pk if signed_report else ""}
    return client_for(user).post(f"/questions/new/?exam={exam.pk}", data)


def ask(user, exam: Exam, **fields) -> Question:
    return questions.ask(exam, user, subject=fields.pop("subject", SUBJECT), body=fields.pop("body", QUESTION_BODY), **fields)
