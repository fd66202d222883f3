"""Notify users in telerad and, as each user prefers, by e-mail; count, list and mark notifications read."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from telerad.clinicians import mail
from telerad.clinicians.models import ALWAYS_EMAILED, EmailPreference, Notification, NotificationKind
from telerad.reading.models import Exam

logger = logging.getLogger(__name__)


def notify(recipient: AbstractBaseUser, kind: NotificationKind, *, exam: Exam | None, text: str, link: str) -> Notification:
    """Create a notification for `recipient`, and queue its e-mail when they want that kind by e-mail.

    `text` names the exam by accession number and must not contain patient
    names or report text, because it is also the e-mail's text.
    """
    with transaction.atomic():
        notification = Notification.objects.create(
            recipient=recipient, kind=kind, exam=exam, accession_number=exam.accession_number if exam is not None else "", text=text, link=link,
        )
        if wants_email(recipient, kind):
            mail.queue_notification_email(notification)
    logger.info("notification %s (%s) for user %s accession=%s", notification.pk, kind, recipient.get_username(), notification.accession_number)
    return notification


def wants_email(user: AbstractBaseUser, kind: str) -> bool:
    if kind in ALWAYS_EMAILED:
        return True
    preference = EmailPreference.objects.filter(user=user, kind=kind).values_list("send_email", flat=True).first()
    return True if preference is None else preference


def optional_kinds() -> list[NotificationKind]:
    """Return the kinds a user may choose to get by e-mail or not."""
    return [kind for kind in NotificationKind if kind not in ALWAYS_EMAILED]


def email_choices(user: AbstractBaseUser) -> dict[str, bool]:
    """Return, for each optional kind, whether `user` gets it by e-mail."""
    stored = dict(EmailPreference.objects.filter(user=user).values_list("kind", "send_email"))
    return {kind.value: stored.get(kind.value, True) for kind in optional_kinds()}


def save_email_choices(user: AbstractBaseUser, choices: dict[str, bool]) -> None:
    with transaction.atomic():
        for kind in optional_kinds():
            if kind.value in choices:
                EmailPreference.objects.update_or_create(user=user, kind=kind.value, defaults={"send_email": choices[kind.value]})


def unread_count(user: AbstractBaseUser) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()


def mark_read(user: AbstractBaseUser, notification_id: int) -> bool:
    """Mark one of the user's notifications read; return False when the user has no such notification."""
    exists = Notification.objects.filter(pk=notification_id, recipient=user).exists()
    Notification.objects.filter(pk=notification_id, recipient=user, read_at__isnull=True).update(read_at=timezone.now())
    return exists


def mark_all_read(user: AbstractBaseUser) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).update(read_at=timezone.now())


def mark_link_read(user: AbstractBaseUser, link: str) -> int:
    """Mark the user's notifications that lead to `link` read, as when the user opened that page."""
    return Notification.objects.filter(recipient=user, link=link, read_at__isnull=True).update(read_at=timezone.now())
