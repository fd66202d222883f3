"""Open questions on the radiologists' worklist, and the duty switch on the worklist and in the administration."""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from telerad.clinicians import questions
from telerad.clinicians.question_models import Question
from telerad.reading.models import Reader
from tests.clinicians.question_fixtures import ask, clinician, put_on_duty  # noqa: F401 (fixtures)
from tests.reading.exam_factory import make_exam
from tests.reading.reports_fixtures import client_for

pytestmark = pytest.mark.django_db
WORKLIST = "/worklist/"


@pytest.fixture
def reader(make_user):
    return make_user("ada", "radiologist")


def age_question(question: Question, minutes: int) -> None:
    Question.objects.filter(pk=question.pk).update(open_since=timezone.now() - datetime.timedelta(minutes=minutes))


def row_of(response, accession: str):
    return next(row for row in response.context["rows"] if row.exam.accession_number == accession)


def test_row_shows_open_question_count_and_oldest_age(reader, clinician):
    exam = make_exam(accession="ACC-W-1", referring_clinician=clinician)
    oldest = ask(clinician, exam)
    ask(clinician, exam)
    age_question(oldest, 95)
    make_exam(accession="ACC-W-QUIET")

    response = client_for(reader).get(WORKLIST)

    row = row_of(response, "ACC-W-1")
    assert row.open_questions == 2
    assert datetime.timedelta(minutes=95) <= row.oldest_question_age < datetime.timedelta(minutes=96)
    assert row_of(response, "ACC-W-QUIET").open_questions == 0
    page = response.content.decode()
    assert "2 open, oldest 1 h 35 min" in page
    assert f"/questions/?exam={exam.pk}&amp;state=open" in page


def test_answered_and_closed_questions_are_not_counted(reader, clinician):
    exam = make_exam(accession="ACC-W-2", referring_clinician=clinician)
    answered = ask(clinician, exam)
    closed = ask(clinician, exam)
    questions.write_message(answered.pk, reader, body="Answered.", mark_answered=True)
    questions.close(closed.pk, clinician)

    row = row_of(client_for(reader).get(WORKLIST), "ACC-W-2")

    assert row.open_questions == 0
    assert row.oldest_question_age is None


def test_reopened_question_counts_from_reopening(reader, clinician):
    exam = make_exam(accession="ACC-W-3", referring_clinician=clinician)
    question = ask(clinician, exam)
    age_question(question, 600)
    questions.close(question.pk, clinician)

    questions.write_message(question.pk, clinician, body="Reopening.")

    row = row_of(client_for(reader).get(WORKLIST), "ACC-W-3")
    assert row.open_questions == 1
    assert row.oldest_question_age < datetime.timedelta(minutes=1)


def test_box_lists_questions_assigned_to_reader(reader, clinician, make_user):
    put_on_duty(reader)
    exam = make_exam(accession="ACC-W-BOX", referring_clinician=clinician)
    question = ask(clinician, exam)
    age_question(question, 30)

    page = client_for(reader).get(WORKLIST).content.decode()
    other_page = client_for(make_user("bob", "radiologist")).get(WORKLIST).content.decode()

    assert "1 open question for you" in page
    assert f'href="/questions/{question.pk}/"' in page
    assert "Accession ACC-W-BOX" in page
    assert "asked by referrer, waiting for 30 min" in page
    assert "open question for you" not in other_page


def test_box_follows_live_refresh(reader, clinician):
    put_on_duty(reader)
    client = client_for(reader)
    before = client.get(WORKLIST, headers={"HX-Request": "true", "HX-Target": "worklist-table"}).content.decode()

    ask(clinician, make_exam(accession="ACC-W-LIVE", referring_clinician=clinician))
    after = client.get(WORKLIST, headers={"HX-Request": "true", "HX-Target": "worklist-table"}).content.decode()

    assert "open question for you" not in before
    assert "1 open question for you" in after
    assert "1 open, 0 min" in after


def test_worklist_queries_do_not_grow_with_questions(reader, clinician):
    for number in range(3):
        ask(clinician, make_exam(accession=f"ACC-W-F{number}", referring_clinician=clinician))
    client = client_for(reader)
    with CaptureQueriesContext(connection) as few:
        client.get(WORKLIST)

    for number in range(20):
        exam = make_exam(accession=f"ACC-W-M{number}", referring_clinician=clinician)
        ask(clinician, exam)
        ask(clinician, exam)
    with CaptureQueriesContext(connection) as many:
        client.get(WORKLIST)

    assert len(many.captured_queries) == len(few.captured_queries)


def test_page_counts_questions_in_one_query(reader, clinician):
    for number in range(5):
        ask(clinician, make_exam(accession=f"ACC-W-ONE{number}", referring_clinician=clinician))

    with CaptureQueriesContext(connection) as captured:
        client_for(reader).get(WORKLIST)

    exam_queries = [query["sql"] for query in captured.captured_queries if 'FROM "reading_exam"' in query["sql"]]
    grouped = [query["sql"] for query in captured.captured_queries if 'FROM "clinicians_question"' in query["sql"] and "GROUP BY" in query["sql"]]
    assert exam_queries
    for sql in exam_queries:
        assert "clinicians_question" not in sql
    assert len(grouped) == 1


# Duty


def test_reader_goes_on_and_off_duty(reader):
    client = client_for(reader)

    on = client.post("/worklist/duty/", {"on_duty": "1"})
    on_page = client.get(WORKLIST).content.decode()
    since = Reader.objects.get(user=reader).on_duty_since
    client.post("/worklist/duty/", {"on_duty": "0"})
    off = Reader.objects.get(user=reader)

    assert on.status_code == 303
    assert "You are on duty" in on_page
    assert "Go off duty" in on_page
    assert since is not None
    assert off.on_duty is False
    assert off.on_duty_since is None


def test_going_on_duty_twice_keeps_start(reader):
    client = client_for(reader)
    client.post("/worklist/duty/", {"on_duty": "1"})
    since = Reader.objects.get(user=reader).on_duty_since

    client.post("/worklist/duty/", {"on_duty": "1"})

    assert Reader.objects.get(user=reader).on_duty_since == since


def test_administrator_puts_reader_on_duty(reader, make_user):
    administrator = make_user("boss", "administrator")
    entry = Reader.objects.create(user=reader)
    client = client_for(administrator)

    response = client.post(f"/admin/reading/reader/{entry.pk}/change/", {"user": reader.pk, "on_duty": "on"})

    entry.refresh_from_db()
    assert response.status_code == 302, response.content.decode()[:2000]
    assert entry.on_duty is True
    assert entry.on_duty_since is not None
    changelist = client.get("/admin/reading/reader/").content.decode()
    assert "on duty" in changelist.lower()
