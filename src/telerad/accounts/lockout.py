"""Lock an account name and a source address after repeated failed logins.

Counts live in the database, so every web process sees the same locks. Each
name and address has a counting period that starts at its first failure and
lasts ``login_lockout_minutes``. Reaching ``login_max_failures`` within it
locks that name or address for ``login_lockout_minutes``, and counting starts
afresh when the lock ends.
"""

from __future__ import annotations

import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from telerad.accounts.models import LoginThrottle


def account_key(username: str) -> str:
    # ModelBackend matches user names exactly, but a lock on "Alice" must
    # also stop "alice".
    return username.strip().lower()[:150]


def _keys(username: str, address: str) -> list[tuple[str, str]]:
    keys = [(LoginThrottle.Kind.ACCOUNT, account_key(username))]
    if address:
        keys.append((LoginThrottle.Kind.ADDRESS, address[:150]))
    return keys


def _lockout_period() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.TELERAD.login_lockout_minutes)


def locked_until(username: str, address: str) -> datetime.datetime | None:
    """Return when the lock on `username` or `address` ends (the later of the two), or None when neither is locked."""
    now = timezone.now()
    ends = [
        throttle.locked_until
        for kind, key in _keys(username, address)
        for throttle in LoginThrottle.objects.filter(kind=kind, key=key, locked_until__gt=now)
    ]
    return max(ends, default=None)


def record_failure(username: str, address: str) -> datetime.datetime | None:
    """Count a failed login against `username` and `address`, and return the end of the lock it caused or None."""
    now = timezone.now()
    period = _lockout_period()
    maximum = settings.TELERAD.login_max_failures
    locked: datetime.datetime | None = None
    with transaction.atomic():
        for kind, key in _keys(username, address):
            LoginThrottle.objects.get_or_create(kind=kind, key=key)
            # Locking the row makes concurrent failures from several
            # processes count one after another instead of overwriting.
            throttle = LoginThrottle.objects.select_for_update().get(kind=kind, key=key)
            if throttle.first_failure_at is None or now - throttle.first_failure_at >= period:
                throttle.failures = 0
                throttle.first_failure_at = now
            throttle.failures += 1
            if throttle.failures >= maximum:
                throttle.locked_until = now + period
                throttle.failures = 0
                throttle.first_failure_at = None
                locked = throttle.locked_until
            throttle.save()
    return locked


def clear_account(username: str) -> None:
    """Forget the failures of `username` after a successful login. The source address keeps its count."""
    LoginThrottle.objects.filter(kind=LoginThrottle.Kind.ACCOUNT, key=account_key(username)).update(failures=0, first_failure_at=None)
