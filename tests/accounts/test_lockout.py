"""Failed logins: audited, and locking the account name and the source address after the configured number."""

from __future__ import annotations

import datetime
import re

import pytest
from django.test import Client
from django.utils import timezone

from telerad.accounts.models import LoginThrottle
from telerad.audit.events import Action, Outcome
from telerad.audit.models import AuditEvent

from .conftest import PASSWORD, make_user, post_password

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("enforced_permissions", "two_factor_off")]

LOCK_TEXT = b"Too many failed logins"


def alert_text(response) -> str:
    match = re.search(r'<p role="alert">(.*?)</p>', response.content.decode(), re.DOTALL)
    assert match, "the page shows no alert"
    return match.group(1).strip()


def fail(client: Client, username: str, times: int, **extra) -> None:
    for _ in range(times):
        response = post_password(client, username, "wrong password", **extra)
        assert response.status_code == 200


def test_failed_login_is_audited():
    make_user()

    response = post_password(Client(), "reader", "wrong password")

    assert b"The user name or password is not correct" in response.content
    event = AuditEvent.objects.get(action=Action.LOGIN_FAILED)
    assert event.user == "reader"
    assert event.address == "127.0.0.1"
    assert event.outcome == Outcome.MINOR_FAILURE


def test_unknown_and_known_names_get_same_message():
    make_user()

    known = post_password(Client(), "reader", "wrong password")
    unknown = post_password(Client(), "nobody", "wrong password")

    assert known.status_code == unknown.status_code == 200
    assert alert_text(known) == alert_text(unknown)
    assert "not correct" in alert_text(known)


def test_account_locks_after_max_failures(login_settings):
    login_settings(login_max_failures=3, login_lockout_minutes=15)
    make_user()
    client = Client()

    fail(client, "reader", 2)
    third = post_password(client, "reader", "wrong password")
    response = post_password(client, "reader", PASSWORD)

    assert LOCK_TEXT in third.content
    assert LOCK_TEXT in response.content
    assert b"15 minutes" in response.content
    assert "_auth_user_id" not in client.session
    locked = AuditEvent.objects.get(action=Action.LOGIN_LOCKED)
    assert locked.user == "reader"
    assert locked.address == "127.0.0.1"
    assert AuditEvent.objects.filter(action=Action.LOGIN_FAILED, detail="rejected while locked").count() == 1


def test_lock_message_is_the_same_for_unknown_names(login_settings):
    login_settings(login_max_failures=2)
    make_user()

    fail(Client(REMOTE_ADDR="192.0.2.1"), "reader", 2)
    fail(Client(REMOTE_ADDR="192.0.2.2"), "nobody", 2)
    known = post_password(Client(REMOTE_ADDR="192.0.2.3"), "reader", PASSWORD)
    unknown = post_password(Client(REMOTE_ADDR="192.0.2.4"), "nobody", PASSWORD)

    assert LOCK_TEXT in known.content
    assert LOCK_TEXT in unknown.content


def test_account_lock_applies_from_every_address(login_settings):
    login_settings(login_max_failures=2)
    make_user()

    fail(Client(REMOTE_ADDR="192.0.2.1"), "reader", 2)
    response = post_password(Client(REMOTE_ADDR="192.0.2.9"), "Reader", PASSWORD)

    assert LOCK_TEXT in response.content


def test_address_lock_covers_other_accounts(login_settings):
    login_settings(login_max_failures=3)
    make_user("reader")
    make_user("second")
    attacker = Client(REMOTE_ADDR="192.0.2.1")

    for name in ("guess1", "guess2", "guess3"):
        fail(attacker, name, 1)
    from_locked_address = post_password(Client(REMOTE_ADDR="192.0.2.1"), "second", PASSWORD)
    from_other_address = post_password(Client(REMOTE_ADDR="192.0.2.2"), "second", PASSWORD)

    assert LOCK_TEXT in from_locked_address.content
    assert from_other_address.status_code == 302
    assert from_other_address["Location"] == "/studies/"
    assert LoginThrottle.objects.get(kind=LoginThrottle.Kind.ADDRESS, key="192.0.2.1").locked_until is not None


def test_lock_ends_after_lockout_period(login_settings):
    login_settings(login_max_failures=2)
    make_user()
    client = Client()
    fail(client, "reader", 2)
    assert LOCK_TEXT in post_password(client, "reader", PASSWORD).content

    LoginThrottle.objects.update(locked_until=timezone.now() - datetime.timedelta(seconds=1))
    response = post_password(client, "reader", PASSWORD)

    assert response.status_code == 302
    assert client.session["_auth_user_id"]


def test_failures_outside_the_period_are_forgotten(login_settings):
    login_settings(login_max_failures=2)
    make_user()
    client = Client()
    fail(client, "reader", 1)

    LoginThrottle.objects.update(first_failure_at=timezone.now() - datetime.timedelta(minutes=16))
    fail(client, "reader", 1)

    assert post_password(client, "reader", PASSWORD).status_code == 302


def test_success_clears_account_failures(login_settings):
    login_settings(login_max_failures=2)
    make_user()
    client = Client(REMOTE_ADDR="192.0.2.1")
    fail(client, "reader", 1)
    assert post_password(client, "reader", PASSWORD).status_code == 302

    fail(Client(REMOTE_ADDR="192.0.2.2"), "reader", 1)

    assert post_password(Client(REMOTE_ADDR="192.0.2.3"), "reader", PASSWORD).status_code == 302
