"""Question threads on exams: who may see and write in them, and the changes, each with its audit event and notifications.

Readers and technologists may open and read threads on any exam. A clinician
may open threads on the exams they may see, and reads only the threads they
opened. A new thread goes to one radiologist (see question_routing); each
later message notifies the other participants. A message reopens an
answered or closed thread unless its author marks it answered with it.

Audit events and notifications name the exam, the accession number and the
thread, never the subject or the message text, which may quote clinical
details.
"""

from __future__ import annotations

import datetime
import logging
from typing import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, Min, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from telerad.accounts.roles import Permission, has_permission
from telerad.audit import events as audit
from telerad.clinicians import access, notifications
from telerad.clinicians.models import NotificationKind
from telerad.clinicians.question_models import Assignment, Question, QuestionMessage, QuestionState
from telerad.clinicians.question_routing import choose_radiologist
from telerad.reading.models import Exam, SignedReport
from telerad.reading.reports import audit_fields, exam_label

logger = logging.getLogger(__name__)

MAX_SUBJECT_CHARACTERS = 200
MAX_MESSAGE_CHARACTERS = 4000
# Permissions that open every exam's threads: READ_EXAMS for readers, and EDIT_EXAM_DETAILS or VIEW_STUDIES for technologists.
STAFF_PERMISSIONS = (Permission.READ_EXAMS, Permission.EDIT_EXAM_DETAILS, Permission.VIEW_STUDIES)


class QuestionActionRejected(Exception):
    """Raised when a user may not make a change to a thread. The message gives the reason, for the user."""


# Access


def sees_every_thread(user: AbstractBaseUser) -> bool:
    return has_permission(user, Permission.ASK_QUESTIONS) and any(has_permission(user, permission) for permission in STAFF_PERMISSIONS)


def _may_access(user: AbstractBaseUser, exam: Exam, question: Question | None) -> bool:
    if not has_permission(user, Permission.ASK_QUESTIONS):
        return False
    if sees_every_thread(user):
        return True
    if question is not None and question.opened_by_id != user.pk:
        return False
    return access.can_view_exam(user, exam)


def may_ask(user: AbstractBaseUser, exam: Exam) -> bool:
    """Return whether `user` may open a thread on `exam`."""
    return _may_access(user, exam, None)


def may_see(user: AbstractBaseUser, question: Question) -> bool:
    """Return whether `user` may read `question` and write in it."""
    return _may_access(user, question.exam, question)


def may_answer(user: AbstractBaseUser) -> bool:
    return has_permission(user, Permission.ANSWER_QUESTIONS)


def may_close(user: AbstractBaseUser, question: Question) -> bool:
    return question.opened_by_id == user.pk or may_answer(user)


def visible_questions(user: AbstractBaseUser) -> QuerySet[Question]:
    """Return the threads `user` may read."""
    if not has_permission(user, Permission.ASK_QUESTIONS):
        return Question.objects.none()
    if sees_every_thread(user):
        return Question.objects.all()
    return Question.objects.filter(opened_by=user, exam__in=access.visible_exams(user))


# Changes


def thread_link(question: Question) -> str:
    return reverse("questions:thread", args=[question.pk])


def _accession(exam: Exam) -> str:
    return exam.accession_number or _("(none)")


def _audit(action: audit.Action, question: Question, *, user: str, address: str, detail: str) -> None:
    audit.record_event(
        action=action, user=user, address=address,
        detail=f"question {question.pk}, {exam_label(question.exam)}: {detail}", **audit_fields(question.exam),
    )


def ask(
    exam: Exam, user: AbstractBaseUser, *, subject: str, body: str, signed_report: SignedReport | None = None, address: str = "",
) -> Question:
    """Open a thread on `exam` with its first message, assign it to a radiologist and notify them.

    Raise QuestionActionRejected when the subject or question is empty or
    too long, `user` may not ask about `exam`, or the signed report belongs
    to another exam.
    """
    _check_text(subject, MAX_SUBJECT_CHARACTERS, empty_message=_("The subject is empty. Give the question a subject."))
    _check_text(body, MAX_MESSAGE_CHARACTERS, empty_message=_("The question is empty. Write it before sending."))
    if not may_ask(user, exam):
        raise QuestionActionRejected(_("You may not ask questions about this exam."))
    if signed_report is not None and signed_report.exam_id != exam.pk:
        raise QuestionActionRejected(_("The signed report belongs to another exam."))

    with transaction.atomic():
        radiologist, assignment = choose_radiologist(exam, asker=user)
        now = timezone.now()
        question = Question.objects.create(
            exam=exam, signed_report=signed_report, subject=subject.strip(), opened_by=user, opened_at=now, assigned_to=radiologist,
            assignment=assignment, open_since=now, last_message_at=now,
        )
        message = QuestionMessage.objects.create(question=question, author=user, body=body.strip(), created_at=now)
        assignee = radiologist.get_username() if radiologist is not None else "nobody"
        _audit(
            audit.Action.QUESTION_ASKED, question, user=user.get_username(), address=address,
            detail=f"message {message.pk}; signed report {signed_report.pk if signed_report else '(none)'}; assigned to {assignee} ({assignment})",
        )
        if radiologist is not None:
            text = _("%(user)s asked a question about accession %(accession)s. It is assigned to you.") % {
                "user": user.get_username(), "accession": _accession(exam),
            }
            notifications.notify(radiologist, NotificationKind.QUESTION_ASKED, exam=exam, text=text, link=thread_link(question))
    if radiologist is None:
        logger.warning("question %s on %s has nobody assigned: no reader, nobody on duty and no lead radiologist", question.pk, exam_label(exam))
    logger.info("question %s opened by %s on %s, assigned to %s (%s)", question.pk, user.get_username(), exam_label(exam), assignee, assignment)
    return question


def _check_text(text: str, max_characters: int, *, empty_message: str) -> None:
    length = len(text.strip())
    if length == 0:
        raise QuestionActionRejected(empty_message)
    if length > max_characters:
        raise QuestionActionRejected(
            _("The text has %(length)d characters, more than the maximum of %(max)d. Shorten it.") % {"length": length, "max": max_characters}
        )


def _locked(question_id: int) -> Question:
    return Question.objects.select_for_update(of=("self",)).select_related("exam__patient", "opened_by", "assigned_to").get(pk=question_id)


def write_message(question_id: int, user: AbstractBaseUser, *, body: str, mark_answered: bool = False, address: str = "") -> Question:
    """Add a message to a thread, optionally marking it answered, and notify the other participants.

    The message reopens an answered or closed thread unless it marks the
    thread answered. A reader who writes in a thread without an assigned
    radiologist takes it. Raise QuestionActionRejected when the message is
    empty or too long, or `user` may not write or may not mark it answered.
    """
    _check_text(body, MAX_MESSAGE_CHARACTERS, empty_message=_("The message is empty. Write it before sending."))
    with transaction.atomic():
        question = _locked(question_id)
        if not may_see(user, question):
            raise QuestionActionRejected(_("You may not write in this question thread."))
        if mark_answered and not may_answer(user):
            raise QuestionActionRejected(_("Only a radiologist may mark a question answered."))
        previous_state = question.state
        now = timezone.now()
        if mark_answered:
            new_state = QuestionState.ANSWERED
            _set_answered(question, user, now)
        else:
            new_state = QuestionState.OPEN
            _set_open(question, now)
        if question.assigned_to_id is None and may_answer(user):
            question.assigned_to = user
            question.assignment = Assignment.TAKEN
        question.last_message_at = now
        question.save()
        changed = new_state != previous_state
        message = QuestionMessage.objects.create(
            question=question, author=user, body=body.strip(), new_state=new_state if changed else "", created_at=now,
        )
        _audit(audit.Action.QUESTION_MESSAGE_WRITTEN, question, user=user.get_username(), address=address, detail=f"message {message.pk}")
        if changed:
            _audit_state(question, previous_state, user=user, address=address)
        _notify_participants(question, user, _message_notice(question, user, changed=changed))
    logger.info("question %s: message %s by %s, state %s (%s)", question.pk, message.pk, user.get_username(), question.state, exam_label(question.exam))
    return question


def mark_answered(question_id: int, user: AbstractBaseUser, *, address: str = "") -> Question:
    """Mark an open thread answered without a message.

    Raise QuestionActionRejected when `user` is not a radiologist or the thread is not open.
    """
    with transaction.atomic():
        question = _locked(question_id)
        if not may_see(user, question) or not may_answer(user):
            raise QuestionActionRejected(_("Only a radiologist may mark a question answered."))
        if question.state != QuestionState.OPEN:
            raise QuestionActionRejected(_("Only an open question can be marked answered. Write a message to reopen it first."))
        _change_state(question, user, QuestionState.ANSWERED, address=address)
    return question


def close(question_id: int, user: AbstractBaseUser, *, address: str = "") -> Question:
    """Close a thread, which a later message reopens.

    Raise QuestionActionRejected when `user` is neither its opener nor a radiologist, or the thread is closed already.
    """
    with transaction.atomic():
        question = _locked(question_id)
        if not may_see(user, question) or not may_close(user, question):
            raise QuestionActionRejected(_("Only the person who asked or a radiologist may close this question."))
        if question.state == QuestionState.CLOSED:
            raise QuestionActionRejected(_("This question is closed already."))
        _change_state(question, user, QuestionState.CLOSED, address=address)
    return question


def _set_open(question: Question, now) -> None:
    if question.state != QuestionState.OPEN:
        question.open_since = now
    question.state = QuestionState.OPEN
    question.answered_at = question.answered_by = question.closed_at = question.closed_by = None


def _set_answered(question: Question, user: AbstractBaseUser, now) -> None:
    question.state = QuestionState.ANSWERED
    question.answered_at, question.answered_by = now, user
    question.closed_at = question.closed_by = None


def _change_state(question: Question, user: AbstractBaseUser, new_state: QuestionState, *, address: str) -> None:
    """Record a change of state as a message without text, audit it and notify the other participants."""
    previous_state = question.state
    now = timezone.now()
    if new_state == QuestionState.ANSWERED:
        _set_answered(question, user, now)
    else:
        question.state = QuestionState.CLOSED
        question.closed_at, question.closed_by = now, user
    question.last_message_at = now
    question.save()
    QuestionMessage.objects.create(question=question, author=user, new_state=new_state, created_at=now)
    _audit_state(question, previous_state, user=user, address=address)
    kind = NotificationKind.QUESTION_ANSWERED if new_state == QuestionState.ANSWERED else NotificationKind.QUESTION_CLOSED
    _notify_participants(question, user, (kind, _state_notice_text(question, user)))
    logger.info("question %s is %s, by %s (%s)", question.pk, new_state, user.get_username(), exam_label(question.exam))


def _audit_state(question: Question, previous_state: str, *, user: AbstractBaseUser, address: str) -> None:
    _audit(
        audit.Action.QUESTION_STATE_CHANGED, question, user=user.get_username(), address=address,
        detail=f"state {previous_state} -> {question.state}",
    )


# Notifications


def _message_notice(question: Question, author: AbstractBaseUser, *, changed: bool) -> tuple[NotificationKind, str]:
    values = {"user": author.get_username(), "accession": _accession(question.exam)}
    if question.state == QuestionState.ANSWERED and changed:
        return NotificationKind.QUESTION_ANSWERED, _("%(user)s answered the question about accession %(accession)s.") % values
    if changed:
        return NotificationKind.QUESTION_REPLIED, _("%(user)s reopened the question about accession %(accession)s with a new message.") % values
    return NotificationKind.QUESTION_REPLIED, _("%(user)s wrote a new message in the question about accession %(accession)s.") % values


def _state_notice_text(question: Question, actor: AbstractBaseUser) -> str:
    values = {"user": actor.get_username(), "accession": _accession(question.exam)}
    if question.state == QuestionState.ANSWERED:
        return _("%(user)s marked the question about accession %(accession)s answered.") % values
    return _("%(user)s closed the question about accession %(accession)s.") % values


def participants(question: Question) -> list[AbstractBaseUser]:
    """Return the opener, the assigned radiologist and every author of the thread, each once, in that order."""
    users = {question.opened_by.pk: question.opened_by}
    if question.assigned_to is not None:
        users.setdefault(question.assigned_to.pk, question.assigned_to)
    for message in question.messages.select_related("author"):
        users.setdefault(message.author.pk, message.author)
    return list(users.values())


def _notify_participants(question: Question, actor: AbstractBaseUser, notice: tuple[NotificationKind, str]) -> None:
    """Notify every participant but `actor` who may still read the thread."""
    kind, text = notice
    for user in participants(question):
        if user.pk == actor.pk or not user.is_active or not may_see(user, question):
            continue
        notifications.notify(user, kind, exam=question.exam, text=text, link=thread_link(question))


# Queries


def thread_messages(question: Question) -> list[QuestionMessage]:
    return list(question.messages.select_related("author").order_by("created_at", "id"))


def thread_version(question: Question) -> str:
    """Return a token that changes whenever the thread changes, because every change writes a message."""
    latest = question.messages.order_by("-id").values_list("id", flat=True).first()
    return str(latest or 0)


def threads_of_exam(exam: Exam, user: AbstractBaseUser) -> list[Question]:
    """Return the threads on `exam` that `user` may read, newest activity first."""
    return list(
        visible_questions(user).filter(exam=exam).select_related("opened_by", "assigned_to", "signed_report")
        .annotate(message_count=Count("messages")).order_by("-last_message_at", "-id")
    )


def open_question_summary(exam_ids: Iterable[int]) -> dict[int, tuple[int, datetime.datetime]]:
    """Return, for each of these exams that has open questions, how many are open and since when the oldest is open.

    It is one grouped query over the given exams, which the partial index
    question_open_by_exam answers. Correlated subqueries in the worklist's
    own query would cost more on deep pages: SQLite 3.40 computes result
    columns for every row that its sorter keeps, which for page 100 is more
    than 5,000 exams.
    """
    groups = (
        Question.objects.filter(exam_id__in=list(exam_ids), state=QuestionState.OPEN).order_by().values("exam_id")
        .annotate(open_count=Count("pk"), oldest=Min("open_since"))
    )
    return {group["exam_id"]: (group["open_count"], group["oldest"]) for group in groups}


def open_assigned_to(user: AbstractBaseUser) -> QuerySet[Question]:
    """Return the open threads assigned to `user`, oldest waiting first."""
    return Question.objects.filter(assigned_to=user, state=QuestionState.OPEN).select_related("exam", "opened_by").order_by("open_since", "id")


def in_subspecialties(user_subspecialty_ids: list[int]) -> Q:
    """Match the threads on exams of these subspecialties, and the threads without an assigned radiologist."""
    return Q(exam__subspecialty_id__in=user_subspecialty_ids) | Q(assigned_to__isnull=True)
