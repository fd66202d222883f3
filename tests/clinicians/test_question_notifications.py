"""Notifications of question threads in telerad and by e-mail through a real SMTP server on 127.0.0.1, and the e-mail preferences."""

from __future__ import annotations

import pytest

from telerad.clinicians import mail, questions
from telerad.clinicians.models import EmailJob, EmailPreference, Notification, NotificationKind
from tests.clinicians.question_fixtures import (  # noqa: F401 (fixtures)
    QUESTION_BODY, SUBJECT, ask, ask_through_page, clinician, referred_exam, sign_final, signer, technologist,
)
from tests.clinicians.support import BASE_URL, smtp_server  # noqa: F401 (fixture)
from tests.reading.reports_fixtures import PATIENT_NAME, client_for

pytestmark = pytest.mark.django_db
ANSWER = "No, the nodule measured 6 mm on the prior CT as well."
OWNER = "test-worker"


def notices(user) -> list[tuple[str, str]]:
    return list(Notification.objects.filter(recipient=user).order_by("id").values_list("kind", "link"))


@pytest.fixture
def question(referred_exam, signer, clinician):
    sign_final(referred_exam, signer)
    return ask(clinician, referred_exam)


def test_assigned_radiologist_is_notified_of_new_question(question, signer, clinician):
    assert notices(signer) == [(NotificationKind.QUESTION_ASKED, f"/questions/{question.pk}/")]
    assert notices(clinician) == []
    text = Notification.objects.get(recipient=signer).text
    assert text == "referrer asked a question about accession ACC-Q-1. It is assigned to you."


def test_reply_notifies_the_other_participants(question, signer, clinician, technologist):
    questions.write_message(question.pk, technologist, body="The images were sent again.")
    Notification.objects.all().delete()

    questions.write_message(question.pk, signer, body=ANSWER)

    assert notices(clinician) == [(NotificationKind.QUESTION_REPLIED, f"/questions/{question.pk}/")]
    assert notices(technologist) == [(NotificationKind.QUESTION_REPLIED, f"/questions/{question.pk}/")]
    assert notices(signer) == []


def test_answer_notifies_opener(question, signer, clinician):
    client_for(signer).post(f"/questions/{question.pk}/messages/", {"body": ANSWER, "mark_answered": "1"})

    notice = Notification.objects.get(recipient=clinician)
    assert notice.kind == NotificationKind.QUESTION_ANSWERED
    assert notice.text == "signer answered the question about accession ACC-Q-1."


def test_mark_answered_and_close_notify(question, signer, clinician):
    client_for(signer).post(f"/questions/{question.pk}/answered/")
    client_for(clinician).post(f"/questions/{question.pk}/close/")

    assert [kind for kind, _link in notices(clinician)] == [NotificationKind.QUESTION_ANSWERED]
    assert [kind for kind, _link in notices(signer)] == [NotificationKind.QUESTION_ASKED, NotificationKind.QUESTION_CLOSED]
    assert Notification.objects.filter(kind=NotificationKind.QUESTION_CLOSED).get().text == "referrer closed the question about accession ACC-Q-1."


def test_reopening_message_notifies_radiologist(question, signer, clinician):
    questions.write_message(question.pk, signer, body=ANSWER, mark_answered=True)

    questions.write_message(question.pk, clinician, body="And the left lung?")

    latest = Notification.objects.filter(recipient=signer).latest("id")
    assert latest.kind == NotificationKind.QUESTION_REPLIED
    assert latest.text == "referrer reopened the question about accession ACC-Q-1 with a new message."


def test_clinician_who_lost_the_exam_is_not_notified(question, signer, clinician, make_user):
    question.exam.referring_clinician = make_user("new-referrer", "clinician")
    question.exam.save(update_fields=["referring_clinician"])

    questions.write_message(question.pk, signer, body=ANSWER)

    assert notices(clinician) == []


def test_reading_the_thread_marks_its_notifications_read(question, signer):
    client_for(signer).get(f"/questions/{question.pk}/")

    assert Notification.objects.get(recipient=signer).read_at is not None


def test_notification_texts_carry_no_patient_data(question, signer, clinician):
    questions.write_message(question.pk, signer, body=ANSWER, mark_answered=True)
    questions.close(question.pk, clinician)

    for text in Notification.objects.values_list("text", flat=True):
        for private_text in (QUESTION_BODY, ANSWER, SUBJECT, PATIENT_NAME, "Doe", question.exam.patient.patient_id):
            assert private_text not in text


def test_email_carries_accession_and_link_only(smtp_server, referred_exam, signer, clinician):
    sign_final(referred_exam, signer)
    ask_through_page(clinician, referred_exam)
    question = questions.visible_questions(signer).get()

    assert mail.send_due_email(OWNER) == 1

    recipients, message = smtp_server.messages[0]
    body = message.get_content()
    assert recipients == ["signer@example.org"]
    assert message["Subject"] == "Question for you: accession ACC-Q-1"
    assert "ACC-Q-1" in body
    assert f"{BASE_URL}/questions/{question.pk}/" in body
    for private_text in (QUESTION_BODY, SUBJECT, PATIENT_NAME, "Doe", "Jane", referred_exam.patient.patient_id):
        assert private_text not in body
        assert private_text not in message["Subject"]


def test_email_of_answer_reaches_clinician(smtp_server, question, signer):
    mail.send_due_email(OWNER)
    client_for(signer).post(f"/questions/{question.pk}/messages/", {"body": ANSWER, "mark_answered": "1"})

    mail.send_due_email(OWNER)

    recipients, message = smtp_server.messages[-1]
    body = message.get_content()
    assert recipients == ["referrer@example.org"]
    assert message["Subject"] == "Question answered: accession ACC-Q-1"
    assert f"{BASE_URL}/questions/{question.pk}/" in body
    assert ANSWER not in body


def test_preference_turns_email_off_per_kind(smtp_server, referred_exam, signer, clinician):
    client_for(signer).post("/notifications/preferences/", {
        kind.value: "on" for kind in NotificationKind if kind not in (NotificationKind.QUESTION_ASKED,)
    })
    sign_final(referred_exam, signer)

    question = ask(clinician, referred_exam)
    questions.write_message(question.pk, clinician, body="Any news?")

    assert EmailPreference.objects.get(user=signer, kind=NotificationKind.QUESTION_ASKED).send_email is False
    assert [kind for kind, _link in notices(signer)] == [NotificationKind.QUESTION_ASKED, NotificationKind.QUESTION_REPLIED]
    assert list(EmailJob.objects.values_list("kind", flat=True)) == [NotificationKind.QUESTION_REPLIED]
    mail.send_due_email(OWNER)
    assert [message["Subject"] for _recipients, message in smtp_server.messages] == ["New message in a question: accession ACC-Q-1"]


def test_preferences_page_offers_question_kinds(signer):
    page = client_for(signer).get("/notifications/preferences/").content.decode()

    for label in ("Question about an exam assigned to you", "New message in a question thread", "Question marked answered", "Question thread closed"):
        assert label in page
