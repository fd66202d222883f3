"""Who gets a new question: the signer, the reader of the claim or draft, a reader on duty, or a lead radiologist."""

from __future__ import annotations

import pytest

from telerad.clinicians.question_models import Assignment, Question
from telerad.clinicians.question_routing import choose_radiologist
from telerad.reading import duty
from telerad.reading.models import Exam, Reader, Report, Subspecialty
from tests.clinicians.question_fixtures import (  # noqa: F401 (fixtures)
    ask, clinician, lead, put_on_duty, referred_exam, sign_final, signer, technologist,
)
from tests.reading.reports_fixtures import claim

pytestmark = pytest.mark.django_db


@pytest.fixture
def chest_exam(referred_exam) -> Exam:
    referred_exam.subspecialty = Subspecialty.objects.get(code="chest")
    referred_exam.save(update_fields=["subspecialty"])
    return referred_exam


def test_signer_of_final_report_gets_it(referred_exam, signer, make_user, clinician):
    claim(referred_exam, make_user("claimer", "radiologist"))
    put_on_duty(make_user("on-duty", "radiologist"))
    sign_final(referred_exam, signer)

    question = ask(clinician, referred_exam)

    assert question.assigned_to == signer
    assert question.assignment == Assignment.SIGNER


def test_claim_holder_gets_unsigned_exam(referred_exam, make_user, clinician):
    claimer = make_user("claimer", "radiologist")
    claim(referred_exam, claimer)
    put_on_duty(make_user("on-duty", "radiologist"))

    question = ask(clinician, referred_exam)

    assert question.assigned_to == claimer
    assert question.assignment == Assignment.READER


def test_draft_author_gets_released_exam(referred_exam, make_user, clinician):
    author = make_user("author", "resident")
    Report.objects.create(exam=referred_exam, author=author)

    question = ask(clinician, referred_exam)

    assert question.assigned_to == author
    assert question.assignment == Assignment.READER


def test_on_duty_reader_of_subspecialty_gets_unread_exam(chest_exam, make_user, clinician):
    put_on_duty(make_user("neuro-on-duty", "radiologist"), "neuro")
    chest_reader = make_user("chest-on-duty", "radiologist")
    put_on_duty(chest_reader, "chest")
    make_user("chest-off-duty", "radiologist")
    Reader.objects.create(user=make_user("chest-not-on-duty", "radiologist")).subspecialties.set(Subspecialty.objects.filter(code="chest"))

    question = ask(clinician, chest_exam)

    assert question.assigned_to == chest_reader
    assert question.assignment == Assignment.ON_DUTY_SUBSPECIALTY


def test_least_busy_reader_on_duty_gets_it(chest_exam, make_user, clinician):
    busy = make_user("busy", "radiologist")
    free = make_user("free", "radiologist")
    put_on_duty(busy, "chest")
    put_on_duty(free, "chest")
    first = ask(clinician, chest_exam)

    second = ask(clinician, chest_exam)

    assert first.assigned_to == busy, "the reader on duty longest gets the first question"
    assert second.assigned_to == free


def test_any_reader_on_duty_without_subspecialty_match(chest_exam, make_user, clinician):
    neuro_reader = make_user("neuro-on-duty", "radiologist")
    put_on_duty(neuro_reader, "neuro")

    question = ask(clinician, chest_exam)

    assert question.assigned_to == neuro_reader
    assert question.assignment == Assignment.ON_DUTY


def test_lead_radiologist_when_nobody_is_on_duty(referred_exam, lead, make_user, clinician):
    make_user("off-duty", "radiologist")

    question = ask(clinician, referred_exam)

    assert question.assigned_to == lead
    assert question.assignment == Assignment.LEAD


def test_nobody_assigned_without_any_radiologist(referred_exam, clinician):
    question = ask(clinician, referred_exam)

    assert question.assigned_to is None
    assert question.assignment == Assignment.NOBODY
    assert Question.objects.get().state == "open"


def test_disabled_signer_is_skipped(referred_exam, signer, lead, clinician):
    sign_final(referred_exam, signer)
    signer.is_active = False
    signer.save(update_fields=["is_active"])

    question = ask(clinician, referred_exam)

    assert question.assigned_to == lead


def test_asker_is_never_chosen(referred_exam, signer, lead):
    sign_final(referred_exam, signer)

    question = ask(signer, referred_exam)

    assert question.assigned_to == lead


def test_technologist_on_duty_is_not_a_reader(chest_exam, technologist, lead, clinician):
    reader, _created = Reader.objects.get_or_create(user=technologist)
    duty.set_on_duty(reader, True, changed_by="test")

    assert choose_radiologist(chest_exam, asker=clinician) == (lead, Assignment.LEAD)


def test_on_duty_lookup_lists_each_reader_once(make_user):
    reader = make_user("two-roles", "radiologist", "lead-radiologist")
    put_on_duty(reader, "chest", "neuro")

    assert list(duty.on_duty_readers()) == [reader]
    assert list(duty.on_duty_readers(subspecialty_id=Subspecialty.objects.get(code="chest").pk)) == [reader]
