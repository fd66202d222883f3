"""Choose the radiologist who gets a new question about an exam.

The first that exists, in this order, gets it:

1. the signer of the exam's final report,
2. the reader who claimed the exam, then the author of its draft,
3. a reader on duty in the exam's subspecialty,
4. any reader on duty,
5. a lead radiologist.

Among several readers on duty or several leads, the one with the fewest
open questions gets it, then the one on duty longest. The asker is never
chosen. Only active users whose roles grant ANSWER_QUESTIONS are chosen.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet

from telerad.accounts.roles import Permission, Role, has_permission
from telerad.clinicians.question_models import Assignment, QuestionState
from telerad.reading import duty
from telerad.reading.models import Exam, Report, SignedKind, SignedReport


def choose_radiologist(exam: Exam, *, asker: AbstractBaseUser) -> tuple[AbstractBaseUser | None, Assignment]:
    """Return the radiologist who gets a new question about `exam`, and the reason. Return (None, NOBODY) when no one can."""
    for candidate, assignment in _readers_of(exam):
        if candidate is not None and candidate.pk != asker.pk and has_permission(candidate, Permission.ANSWER_QUESTIONS):
            return candidate, assignment

    pools: list[tuple[QuerySet, Assignment]] = []
    if exam.subspecialty_id is not None:
        pools.append((duty.on_duty_readers(subspecialty_id=exam.subspecialty_id), Assignment.ON_DUTY_SUBSPECIALTY))
    pools.append((duty.on_duty_readers(), Assignment.ON_DUTY))
    pools.append((_lead_radiologists(), Assignment.LEAD))
    for users, assignment in pools:
        chosen = _least_busy(users.exclude(pk=asker.pk))
        if chosen is not None:
            return chosen, assignment
    return None, Assignment.NOBODY


def _readers_of(exam: Exam):
    """Yield the users who read `exam`, in the order they are asked: final signer, claim holder, draft author."""
    final = SignedReport.objects.filter(exam=exam, kind=SignedKind.FINAL).select_related("signer").first()
    yield (final.signer if final is not None else None), Assignment.SIGNER
    yield exam.claimed_by, Assignment.READER
    report = Report.objects.filter(exam=exam).select_related("author").first()
    yield (report.author if report is not None else None), Assignment.READER


def _lead_radiologists() -> QuerySet:
    in_role = get_user_model().groups.through.objects.filter(group__name=Role.LEAD_RADIOLOGIST.value).values("user_id")
    return get_user_model().objects.filter(is_active=True, pk__in=in_role).order_by("pk")


def _least_busy(users: QuerySet) -> AbstractBaseUser | None:
    """Return the user of `users` with the fewest open questions assigned, keeping the order of `users` among equals."""
    open_questions = Count("questions_assigned", filter=Q(questions_assigned__state=QuestionState.OPEN))
    return users.annotate(open_questions=open_questions).order_by("open_questions", *users.query.order_by).first()
