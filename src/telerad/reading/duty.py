"""Which readers are on duty, and the switch that readers and administrators use.

A question on an exam that no reader has claimed, drafted or signed goes to
a reader on duty (see telerad.clinicians.question_routing). Today each
reader's own switch decides. Rosters will replace it, and then only
:func:`on_duty_readers` changes.
"""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from telerad.accounts.roles import Permission, roles_granting
from telerad.reading.models import Reader

logger = logging.getLogger(__name__)


def on_duty_readers(*, subspecialty_id: int | None = None) -> QuerySet:
    """Return the active users on duty who may answer questions, longest on duty first.

    With `subspecialty_id`, only those whose subspecialties include it.
    """
    User = get_user_model()
    role_names = [role.value for role in roles_granting(Permission.ANSWER_QUESTIONS)]
    # Subqueries rather than joins, so that a user with several roles or subspecialties comes once.
    in_role = User.groups.through.objects.filter(group__name__in=role_names).values("user_id")
    readers = Reader.objects.filter(on_duty=True)
    if subspecialty_id is not None:
        readers = readers.filter(subspecialties__id=subspecialty_id)
    users = User.objects.filter(is_active=True, pk__in=readers.values("user_id")).filter(pk__in=in_role)
    return users.order_by("reader__on_duty_since", "pk")


def is_on_duty(user: AbstractBaseUser) -> bool:
    return Reader.objects.filter(user=user, on_duty=True).exists()


def set_on_duty(reader: Reader, on_duty: bool, *, changed_by: str) -> bool:
    """Put `reader` on duty or off duty; return whether this changed anything."""
    if reader.on_duty == on_duty:
        return False
    reader.on_duty = on_duty
    reader.on_duty_since = timezone.now() if on_duty else None
    reader.save(update_fields=["on_duty", "on_duty_since"])
    logger.info("reader %s is %s, changed by %s", reader.user.get_username(), "on duty" if on_duty else "off duty", changed_by)
    return True
