"""Question threads through their pages: asking, reading, replying, marking answered, closing, reopening, access and audit."""

from __future__ import annotations

import pytest
from django.utils import timezone

from telerad.audit.models import AuditEvent
from telerad.clinicians import questions
from telerad.clinicians.question_models import Question, QuestionMessage, QuestionMessageChangeError, QuestionState
from tests.clinicians.question_fixtures import (  # noqa: F401 (fixtures)
    QUESTION_BODY, SUBJECT, ask, ask_through_page, clinician, lead, other_clinician, referred_exam, sign_final, signer, technologist,
)
from tests.reading.reports_fixtures import PATIENT_NAME, client_for, create_exam, htmx_client_for

pytestmark = pytest.mark.django_db
ANSWER = "The nodule is unchanged; it measured 6 mm on the prior CT as well."


@pytest.fixture
def question(referred_exam, signer, clinician) -> Question:
    sign_final(referred_exam, signer)
    return ask(clinician, referred_exam)


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))


def test_clinician_asks_through_form(referred_exam, signer, clinician):
    signed = sign_final(referred_exam, signer)

    response = ask_through_page(clinician, referred_exam, signed_report=signed)

    question = Question.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"/questions/{question.pk}/"
    assert question.subject == SUBJECT
    assert question.signed_report == signed
    assert question.opened_by == clinician
    assert question.assigned_to == signer
    assert question.state == QuestionState.OPEN
    assert [message.body for message in question.messages.all()] == [QUESTION_BODY]


def test_form_shows_exam_and_reports(referred_exam, signer, clinician):
    sign_final(referred_exam, signer)

    page = client_for(clinician).get(f"/questions/new/?exam={referred_exam.pk}").content.decode()

    assert "ACC-Q-1" in page
    assert "The exam in general" in page
    assert "Final report signed by signer" in page


def test_form_without_exam_is_bad_request(clinician):
    response = client_for(clinician).get("/questions/new/")

    assert response.status_code == 400
    assert "/questions/new/?exam=" in response.content.decode()


def test_empty_question_is_rejected(referred_exam, clinician):
    response = ask_through_page(clinician, referred_exam, body="")

    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not Question.objects.exists()


def test_report_of_another_exam_is_rejected(referred_exam, signer, clinician):
    other_report = sign_final(create_exam(accession="ACC-OTHER"), signer)

    response = ask_through_page(clinician, referred_exam, signed_report=other_report)

    assert response.status_code == 400
    assert not Question.objects.exists()


def test_thread_page_shows_messages_with_author_and_time(question, clinician):
    page = client_for(clinician).get(f"/questions/{question.pk}/").content.decode()

    assert SUBJECT in page
    assert QUESTION_BODY in page
    assert "<strong>referrer</strong>" in page
    assert timezone.localtime(question.opened_at).strftime("%Y-%m-%d %H:%M") in page
    assert "assigned to signer" in page
    assert 'hx-trigger="every 10s"' in page


def test_radiologist_replies_with_htmx(question, signer):
    response = htmx_client_for(signer).post(f"/questions/{question.pk}/messages/", {"body": ANSWER})

    fragment = response.content.decode()
    assert response.status_code == 200
    assert fragment.lstrip().startswith('<section id="question-thread"')
    assert ANSWER in fragment
    assert 'hx-swap-oob="true"' in fragment
    assert "<html" not in fragment
    assert [message.body for message in Question.objects.get().messages.all()] == [QUESTION_BODY, ANSWER]


def test_reply_without_htmx_redirects(question, clinician):
    response = client_for(clinician).post(f"/questions/{question.pk}/messages/", {"body": "Thank you."})

    assert response.status_code == 303
    assert response["Location"] == f"/questions/{question.pk}/"


def test_blank_reply_is_rejected(question, clinician):
    response = client_for(clinician).post(f"/questions/{question.pk}/messages/", {"body": "   "})

    assert response.status_code == 400
    assert question.messages.count() == 1


def test_send_and_mark_answered(question, signer):
    client_for(signer).post(f"/questions/{question.pk}/messages/", {"body": ANSWER, "mark_answered": "1"})

    question.refresh_from_db()
    assert question.state == QuestionState.ANSWERED
    assert question.answered_by == signer
    assert question.answered_at is not None
    assert question.messages.last().new_state == QuestionState.ANSWERED


def test_clinician_cannot_mark_answered_with_reply(question, clinician):
    response = client_for(clinician).post(f"/questions/{question.pk}/messages/", {"body": "Done?", "mark_answered": "1"})

    question.refresh_from_db()
    assert response.status_code == 303
    assert question.state == QuestionState.OPEN
    assert question.messages.count() == 1


def test_mark_answered_button(question, signer):
    response = client_for(signer).post(f"/questions/{question.pk}/answered/")

    question.refresh_from_db()
    assert response.status_code == 303
    assert question.state == QuestionState.ANSWERED
    marker = question.messages.last()
    assert marker.body == ""
    assert marker.new_state == QuestionState.ANSWERED
    assert marker.author == signer


def test_opener_closes_thread(question, clinician):
    client_for(clinician).post(f"/questions/{question.pk}/close/")

    question.refresh_from_db()
    assert question.state == QuestionState.CLOSED
    assert question.closed_by == clinician
    assert question.closed_at is not None


def test_technologist_who_did_not_ask_cannot_close(question, technologist):
    client_for(technologist).post(f"/questions/{question.pk}/close/")

    question.refresh_from_db()
    assert question.state == QuestionState.OPEN


def test_new_message_reopens_closed_thread(question, clinician, signer):
    client_for(signer).post(f"/questions/{question.pk}/messages/", {"body": ANSWER, "mark_answered": "1"})
    client_for(clinician).post(f"/questions/{question.pk}/close/")
    closed_at = Question.objects.get().closed_at

    client_for(clinician).post(f"/questions/{question.pk}/messages/", {"body": "One more question: and the left lung?"})

    question.refresh_from_db()
    assert question.state == QuestionState.OPEN
    assert question.closed_at is None
    assert question.open_since >= closed_at
    assert [message.new_state for message in question.messages.all()] == ["", "answered", "closed", "open"]


def test_reader_takes_unassigned_thread_by_writing(referred_exam, clinician, make_user):
    question = ask(clinician, referred_exam)
    assert question.assigned_to is None
    reader = make_user("volunteer", "radiologist")

    client_for(reader).post(f"/questions/{question.pk}/messages/", {"body": ANSWER})

    question.refresh_from_db()
    assert question.assigned_to == reader
    assert question.assignment == "taken"


def test_poll_returns_nothing_until_thread_changes(question, clinician, signer):
    client = htmx_client_for(clinician)
    version = questions.thread_version(question)
    url = f"/questions/{question.pk}/?version={version}"

    unchanged = client.get(url)
    questions.write_message(question.pk, signer, body=ANSWER)
    changed = client.get(url)

    assert unchanged.status_code == 204
    assert changed.status_code == 200
    assert ANSWER in changed.content.decode()
    assert f"?version={questions.thread_version(question)}" in changed.content.decode()
    assert audit_actions().count("question-viewed") == 1


def test_messages_cannot_be_changed_or_deleted(question):
    message = question.messages.get()

    message.body = "rewritten"
    with pytest.raises(QuestionMessageChangeError):
        message.save()
    with pytest.raises(QuestionMessageChangeError):
        message.delete()
    with pytest.raises(QuestionMessageChangeError):
        QuestionMessage.objects.filter(pk=message.pk).update(body="rewritten")
    with pytest.raises(QuestionMessageChangeError):
        QuestionMessage.objects.all().delete()
    assert QuestionMessage.objects.get().body == QUESTION_BODY


# Access


def test_clinician_cannot_ask_about_exam_of_another(referred_exam, other_clinician):
    assert client_for(other_clinician).get(f"/questions/new/?exam={referred_exam.pk}").status_code == 404
    assert ask_through_page(other_clinician, referred_exam).status_code == 404
    assert not Question.objects.exists()


def test_clinician_cannot_read_threads_on_exam_of_another(question, other_clinician):
    client = client_for(other_clinician)

    assert client.get(f"/questions/{question.pk}/").status_code == 404
    assert client.post(f"/questions/{question.pk}/messages/", {"body": "Hello"}).status_code == 404
    assert client.post(f"/questions/{question.pk}/close/").status_code == 404
    assert client.get(f"/questions/?exam={question.exam_id}").status_code == 404
    assert question.messages.count() == 1


def test_clinician_cannot_read_thread_of_technologist_on_own_exam(referred_exam, technologist, clinician):
    thread = ask(technologist, referred_exam)

    response = client_for(clinician).get(f"/questions/{thread.pk}/")
    listing = client_for(clinician).get("/questions/", {"scope": "all", "state": "all"}).content.decode()

    assert response.status_code == 404
    assert f"/questions/{thread.pk}/" not in listing


def test_clinician_loses_thread_when_exam_is_referred_elsewhere(question, clinician, other_clinician):
    question.exam.referring_clinician = other_clinician
    question.exam.save(update_fields=["referring_clinician"])

    assert client_for(clinician).get(f"/questions/{question.pk}/").status_code == 404
    assert f"/questions/{question.pk}/" not in client_for(clinician).get("/questions/").content.decode()


def test_technologist_asks_about_any_exam(technologist, lead):
    exam = create_exam(accession="ACC-TECH")

    response = ask_through_page(technologist, exam)

    assert response.status_code == 303
    assert Question.objects.get().assigned_to == lead


def test_reader_reads_thread_of_someone_else(question, make_user):
    response = client_for(make_user("colleague", "radiologist")).get(f"/questions/{question.pk}/")

    assert response.status_code == 200


def test_role_without_questions_is_refused(question, make_user):
    response = client_for(make_user("booker", "scheduler")).get(f"/questions/{question.pk}/")

    assert response.status_code == 403


# Lists and the exam page


def test_list_scopes(referred_exam, signer, clinician, make_user):
    sign_final(referred_exam, signer)
    asked = ask(clinician, referred_exam, subject="Asked by the clinician")
    other = ask(make_user("colleague", "radiologist"), create_exam(accession="ACC-ELSE"), subject="Asked by a colleague")

    mine = client_for(signer).get("/questions/").content.decode()
    every = client_for(signer).get("/questions/", {"scope": "all"}).content.decode()
    own = client_for(clinician).get("/questions/").content.decode()

    assert asked.subject in mine
    assert other.subject not in mine
    assert other.subject in every
    assert asked.subject in own
    assert other.subject not in own


def test_list_filters_by_state(question, clinician):
    questions.close(question.pk, clinician)
    client = client_for(clinician)

    assert SUBJECT not in client.get("/questions/").content.decode()
    assert SUBJECT in client.get("/questions/", {"state": "closed"}).content.decode()
    assert client.get("/questions/", {"state": "nonsense"}).status_code == 400


def test_subspecialty_scope_lists_unassigned_threads(referred_exam, clinician, make_user):
    ask(clinician, referred_exam, subject="Nobody to ask")

    page = client_for(make_user("reader", "radiologist")).get("/questions/", {"scope": "subspecialties"}).content.decode()

    assert "Nobody to ask" in page


def test_exam_page_lists_threads_and_ask_link(question, signer):
    page = client_for(signer).get(f"/worklist/{question.exam_id}/").content.decode()

    assert 'id="questions-heading"' in page
    assert f'href="/questions/{question.pk}/"' in page
    assert SUBJECT in page
    assert f"/questions/new/?exam={question.exam_id}" in page


def test_exam_details_page_lists_threads_for_technologists(question, technologist):
    page = client_for(technologist).get(f"/worklist/{question.exam_id}/details").content.decode()

    assert f'href="/questions/{question.pk}/"' in page
    assert f"/questions/new/?exam={question.exam_id}" in page


def test_header_links_to_questions(clinician):
    page = client_for(clinician).get("/account/").content.decode()

    assert 'href="/questions/"' in page


# Audit


def test_asking_and_reading_are_audited(referred_exam, signer, clinician):
    sign_final(referred_exam, signer)
    ask_through_page(clinician, referred_exam)
    question = Question.objects.get()

    client_for(signer).get(f"/questions/{question.pk}/")
    client_for(signer).post(f"/questions/{question.pk}/messages/", {"body": ANSWER, "mark_answered": "1"})
    client_for(clinician).post(f"/questions/{question.pk}/close/")

    events = list(AuditEvent.objects.filter(action__startswith="question-").order_by("sequence"))
    assert [(event.action, event.user) for event in events] == [
        ("question-asked", "referrer"),
        ("question-viewed", "signer"),
        ("question-message-written", "signer"),
        ("question-state-changed", "signer"),
        ("question-state-changed", "referrer"),
    ]
    for event in events:
        assert event.patient_id == referred_exam.patient.patient_id
        assert event.study_instance_uid
        assert f"question {question.pk}" in event.detail
        assert "accession ACC-Q-1" in event.detail
        for private_text in (QUESTION_BODY, ANSWER, SUBJECT, PATIENT_NAME):
            assert private_text not in event.detail
    assert "assigned to signer (signer)" in events[0].detail
    assert "state open -> answered" in events[3].detail
    assert "state answered -> closed" in events[4].detail


def test_list_view_is_audited_with_patients(question, clinician):
    client_for(clinician).get("/questions/")

    event = AuditEvent.objects.filter(action="question-list-viewed").get()
    assert event.user == "referrer"
    assert question.exam.patient.patient_id in event.other_patient_ids


def test_message_text_stays_out_of_logs(referred_exam, signer, clinician, caplog):
    sign_final(referred_exam, signer)

    with caplog.at_level("DEBUG"):
        question = ask(clinician, referred_exam)
        questions.write_message(question.pk, signer, body=ANSWER, mark_answered=True)

    assert "ACC-Q-1" in caplog.text
    for private_text in (QUESTION_BODY, ANSWER, SUBJECT, PATIENT_NAME):
        assert private_text not in caplog.text


# Checks of the text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"subject": "  "}, "The subject is empty. Give the question a subject."),
        ({"body": ""}, "The question is empty. Write it before sending."),
        ({"body": "x" * 4001}, "The text has 4001 characters, more than the maximum of 4000. Shorten it."),
        ({"subject": "s" * 201}, "The text has 201 characters, more than the maximum of 200. Shorten it."),
    ],
)
def test_ask_rejects_invalid_text(referred_exam, clinician, fields, message):
    with pytest.raises(questions.QuestionActionRejected) as raised:
        ask(clinician, referred_exam, **fields)

    assert str(raised.value) == message
    assert not Question.objects.exists()


def test_empty_message_is_rejected(question, signer):
    with pytest.raises(questions.QuestionActionRejected, match="The message is empty"):
        questions.write_message(question.pk, signer, body=" \n ")

    assert question.messages.count() == 1
