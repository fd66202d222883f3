"""Browser sessions: expiry after inactivity, logout, the end of other sessions on a password change and on "log out all"."""

from __future__ import annotations

import datetime
import io
import time

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from telerad import config
from telerad.accounts.models import UserSession
from telerad.accounts import user_sessions
from telerad.accounts.user_sessions import LAST_ACTIVITY_COOKIE
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent

from .conftest import PASSWORD, make_user, post_password

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("enforced_permissions", "two_factor_off")]

ACCOUNT_URL = "/account/"


def logged_in_client(address: str = "127.0.0.1") -> Client:
    client = Client(REMOTE_ADDR=address)
    assert post_password(client)["Location"] == "/studies/"
    return client


def reaches_account_page(client: Client) -> bool:
    response = client.get(ACCOUNT_URL)
    if response.status_code == 302:
        assert response["Location"].startswith("/login/")
        return False
    assert response.status_code == 200
    return True


def test_timeout_setting_sets_cookie_age(tmp_path):
    assert settings.SESSION_COOKIE_AGE == settings.TELERAD.session_timeout_minutes * 60
    assert config.load({"TELERAD_DATA_DIR": str(tmp_path), "TELERAD_SESSION_TIMEOUT_MINUTES": "5"}).session_timeout_minutes == 5


def test_request_after_a_pause_extends_the_session():
    make_user()
    client = logged_in_client()
    stored = client.session
    stored[user_sessions.EXPIRY_EXTENSION_KEY] = int(time.time()) - user_sessions.EXPIRY_EXTENSION_SECONDS
    stored.save()
    Session.objects.filter(session_key=stored.session_key).update(expire_date=timezone.now() + datetime.timedelta(minutes=1))

    assert reaches_account_page(client)

    expiry = Session.objects.get(session_key=stored.session_key).expire_date
    assert expiry > timezone.now() + datetime.timedelta(seconds=settings.SESSION_COOKIE_AGE - 60)


def test_requests_close_together_write_the_session_once():
    make_user()
    client = logged_in_client()
    assert reaches_account_page(client)
    key = client.session.session_key
    expiry = timezone.now() + datetime.timedelta(minutes=10)
    Session.objects.filter(session_key=key).update(expire_date=expiry)

    assert reaches_account_page(client)
    assert reaches_account_page(client)

    assert Session.objects.get(session_key=key).expire_date == expiry


def test_session_ends_after_inactivity():
    make_user()
    client = logged_in_client()

    Session.objects.filter(session_key=client.session.session_key).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))

    assert not reaches_account_page(client)


def test_logout_is_audited_and_forgets_the_session():
    make_user()
    client = logged_in_client()

    response = client.post("/logout/")

    assert response["Location"] == "/login/"
    assert not reaches_account_page(client)
    event = AuditEvent.objects.get(action=Action.LOGOUT)
    assert event.user == "reader"
    assert event.address == "127.0.0.1"
    assert not UserSession.objects.exists()


def test_password_change_ends_other_sessions():
    user = make_user()
    changing = logged_in_client("192.0.2.1")
    other = logged_in_client("192.0.2.2")
    assert UserSession.objects.filter(user=user).count() == 2

    response = changing.post("/account/password/", {
        "old_password": PASSWORD,
        "new_password1": "another long passphrase 7",
        "new_password2": "another long passphrase 7",
    })

    assert response["Location"] == ACCOUNT_URL
    assert reaches_account_page(changing)
    assert not reaches_account_page(other)
    assert not Session.objects.filter(session_key=other.session.session_key).exists()
    [event] = AuditEvent.objects.filter(action=Action.PASSWORD_CHANGED)
    assert event.user == "reader"
    assert event.address == "192.0.2.1"
    assert event.detail == "reader changed the password of user reader; ended 1 other sessions"


def test_disable_after_password_change_ends_the_changing_session():
    user = make_user()
    changing = logged_in_client()
    changing.post("/account/password/", {
        "old_password": PASSWORD,
        "new_password1": "another long passphrase 7",
        "new_password2": "another long passphrase 7",
    })
    assert reaches_account_page(changing)

    call_command("user", "disable", "reader", stdout=io.StringIO())
    call_command("user", "enable", "reader", stdout=io.StringIO())

    assert not reaches_account_page(changing)
    assert not UserSession.objects.filter(user=user).exists()


def expire_session(client: Client) -> None:
    """Make the session and the last-activity cookie look as if the last request was longer ago than the timeout."""
    Session.objects.filter(session_key=client.session.session_key).update(expire_date=timezone.now() - datetime.timedelta(seconds=1))
    long_ago = int(time.time()) - settings.SESSION_COOKIE_AGE - 1
    client.cookies[LAST_ACTIVITY_COOKIE] = str(long_ago)


def test_login_page_explains_idle_timeout():
    make_user()
    client = logged_in_client()
    assert reaches_account_page(client)
    expire_session(client)

    redirect = client.get(ACCOUNT_URL)
    page = client.get(redirect["Location"])

    minutes = settings.SESSION_COOKIE_AGE // 60
    assert f"Your session ended after {minutes} minutes without activity. Sign in again." in page.content.decode()
    assert b"without activity" not in client.get("/login/").content


def test_login_page_is_silent_on_a_first_visit():
    page = Client().get("/login/", {"next": ACCOUNT_URL})

    assert b"without activity" not in page.content


def test_login_page_is_silent_after_logout():
    make_user()
    client = logged_in_client()
    assert reaches_account_page(client)
    client.post("/logout/")

    page = client.get("/login/")

    assert LAST_ACTIVITY_COOKIE not in client.cookies or client.cookies[LAST_ACTIVITY_COOKIE].value == ""
    assert b"without activity" not in page.content


def test_login_page_is_silent_when_session_ended_early():
    make_user()
    client = logged_in_client()
    assert reaches_account_page(client)
    # Ended from elsewhere, long before the idle timeout.
    Session.objects.filter(session_key=client.session.session_key).delete()

    page = client.get("/login/")

    assert b"without activity" not in page.content


def test_password_change_keeps_django_validators():
    make_user()
    client = logged_in_client()

    response = client.post("/account/password/", {"old_password": PASSWORD, "new_password1": "short", "new_password2": "short"})

    assert response.status_code == 200
    assert b"This password is too short" in response.content
    assert not AuditEvent.objects.filter(action=Action.PASSWORD_CHANGED).exists()


def test_log_out_all_sessions():
    make_user()
    make_user("second")
    this = logged_in_client("192.0.2.1")
    other = logged_in_client("192.0.2.2")
    unrelated = Client()
    assert post_password(unrelated, "second")["Location"] == "/studies/"

    response = this.post("/account/sessions/end/")

    assert response["Location"] == "/login/"
    assert not reaches_account_page(this)
    assert not reaches_account_page(other)
    assert reaches_account_page(unrelated)
    assert AuditEvent.objects.get(action=Action.SESSIONS_ENDED).detail == "ended 1 other sessions and this one"
    assert AuditEvent.objects.filter(action=Action.LOGOUT, user="reader").count() == 1
