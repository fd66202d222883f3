"""`telerad user`: accounts and roles from the command line, each change audited."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from telerad.accounts import tokens
from telerad.accounts.models import ApiToken, UserSession
from telerad.accounts.roles import Role, user_roles
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent

from .conftest import enrol

PASSWORD = "a long enough password"


def run(*arguments: str) -> str:
    out = io.StringIO()
    call_command("user", *arguments, stdout=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
def feed(monkeypatch):
    """Replace standard input, which is no terminal, with the text a test gives."""
    def set_input(text: str) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO(text))

    set_input("")
    return set_input


def test_add_creates_user_with_roles(db, feed):
    feed(PASSWORD + "\n")

    output = run("add", "jdoe", "--role", "radiologist", "--role", "resident", "--email", "jdoe@example.org", "--password-stdin")

    user = User.objects.get(username="jdoe")
    assert "Created user jdoe" in output
    assert user_roles(user) == {Role.RADIOLOGIST, Role.RESIDENT}
    assert user.check_password(PASSWORD)
    assert user.email == "jdoe@example.org"
    assert not user.is_superuser
    assert not user.is_staff


def test_add_administrator_opens_admin_site(db, feed):
    feed(PASSWORD + "\n")

    run("add", "boss", "--role", "administrator", "--password-stdin")

    assert User.objects.get(username="boss").is_staff


def test_add_is_audited(db, feed):
    feed(PASSWORD + "\n")

    run("add", "jdoe", "--role", "technologist", "--password-stdin")

    event = AuditEvent.objects.get(action=Action.USER_CREATED)
    assert event.user == "cli"
    assert "jdoe" in event.detail
    assert "technologist" in event.detail


def test_add_rejects_unknown_role(db, feed):
    feed(PASSWORD + "\n")

    with pytest.raises(CommandError, match="'surgeon' is not a role; use one of radiologist"):
        run("add", "jdoe", "--role", "surgeon", "--password-stdin")

    assert not User.objects.filter(username="jdoe").exists()


def test_add_rejects_weak_password(db, feed):
    feed("short\n")

    with pytest.raises(CommandError, match="the password is too weak"):
        run("add", "jdoe", "--role", "radiologist", "--password-stdin")

    assert not User.objects.filter(username="jdoe").exists()


def test_add_rejects_password_like_user_name(db, feed):
    feed("jdoe-radiology-account\n")

    with pytest.raises(CommandError, match="too similar"):
        run("add", "jdoe-radiology-account", "--role", "radiologist", "--password-stdin")


def test_add_rejects_existing_user(make_user, feed):
    make_user("jdoe", "radiologist")
    feed(PASSWORD + "\n")

    with pytest.raises(CommandError, match="exists already"):
        run("add", "jdoe", "--role", "auditor", "--password-stdin")

    assert user_roles(User.objects.get(username="jdoe")) == {Role.RADIOLOGIST}


def test_add_without_terminal_needs_password_stdin(db):
    with pytest.raises(CommandError, match="--password-stdin"):
        run("add", "jdoe", "--role", "radiologist")


def test_list_shows_roles_and_state(make_user):
    make_user("anna", "radiologist", "resident")
    make_user("bert", "auditor").__class__.objects.filter(username="bert").update(is_active=False)
    make_user("carl")

    lines = run("list").splitlines()

    assert lines[0].split() == ["user", "state", "last", "login", "roles"]
    assert lines[1].split() == ["anna", "active", "never", "radiologist,", "resident"]
    assert lines[2].split() == ["bert", "disabled", "never", "auditor"]
    assert lines[3].split() == ["carl", "active", "never", "(none)"]


def test_disable_blocks_login_and_tokens(make_user):
    user = make_user("jdoe", "radiologist")
    _token, text = tokens.create_token(user)
    browser = Client()
    browser.force_login(user)

    output = run("disable", "jdoe")

    assert "Disabled user jdoe" in output
    assert not User.objects.get(username="jdoe").is_active
    assert browser.get(reverse("archive:study-list")).status_code == 302
    assert Client().post(reverse("login"), {"username": "jdoe", "password": PASSWORD}).status_code == 200
    assert Client().get("/dicom-web/studies", HTTP_AUTHORIZATION=f"Bearer {text}").status_code == 401
    assert AuditEvent.objects.filter(action=Action.USER_DISABLED, detail="disabled user jdoe; ended 1 sessions and revoked 1 API tokens").count() == 1


def test_enable_does_not_bring_back_sessions_or_tokens(make_user):
    user = make_user("jdoe", "radiologist")
    _token, text = tokens.create_token(user)
    browser = Client()
    browser.force_login(user)
    run("disable", "jdoe")

    run("enable", "jdoe")

    assert browser.get(reverse("archive:study-list")).status_code == 302
    assert not UserSession.objects.filter(user=user).exists()
    assert tokens.user_for_token(text) is None
    assert ApiToken.objects.get(user=user).revoked_at is not None
    assert AuditEvent.objects.get(action=Action.TOKEN_REVOKED).user == "cli"


def test_enable_restores_login(make_user):
    make_user("jdoe", "radiologist")
    run("disable", "jdoe")

    run("enable", "jdoe")

    response = Client().post(reverse("login"), {"username": "jdoe", "password": PASSWORD})
    assert response.status_code == 302
    assert AuditEvent.objects.get(action=Action.USER_ENABLED).detail == "enabled user jdoe"


def test_roles_replaces_roles_and_staff_flag(make_user):
    make_user("jdoe", "administrator")

    output = run("roles", "jdoe", "auditor")

    user = User.objects.get(username="jdoe")
    assert "now has roles auditor" in output
    assert user_roles(user) == {Role.AUDITOR}
    assert not user.is_staff
    event = AuditEvent.objects.get(action=Action.ROLES_CHANGED)
    assert event.detail == "user jdoe: administrator -> auditor"


def test_unknown_user_is_reported(db):
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        run("disable", "ghost")


def test_roles_none_removes_every_role(make_user):
    make_user("jdoe", "radiologist", "auditor")

    output = run("roles", "jdoe", "--none")

    assert "now has no role" in output
    assert user_roles(User.objects.get(username="jdoe")) == frozenset()
    assert AuditEvent.objects.get(action=Action.ROLES_CHANGED).detail == "user jdoe: auditor, radiologist -> (none)"


def test_roles_needs_roles_or_none(make_user):
    make_user("jdoe", "radiologist")

    with pytest.raises(CommandError, match="give at least one role"):
        run("roles", "jdoe")
    with pytest.raises(CommandError, match="either roles or --none"):
        run("roles", "jdoe", "auditor", "--none")

    assert user_roles(User.objects.get(username="jdoe")) == {Role.RADIOLOGIST}


def test_add_still_requires_a_role(db, feed):
    feed(PASSWORD + "\n")

    with pytest.raises(CommandError, match="--role"):
        run("add", "jdoe", "--password-stdin")


def test_reset_two_factor(make_user, login_settings):
    login_settings(two_factor_required=True)
    user = make_user("jdoe", "radiologist")
    enrol(user)
    browser = Client()
    browser.force_login(user)

    output = run("reset-two-factor", "jdoe")

    assert "Reset two-factor login of user jdoe" in output
    assert not TOTPDevice.objects.filter(user=user).exists()
    assert not StaticDevice.objects.filter(user=user).exists()
    assert browser.get(reverse("archive:study-list")).status_code == 302
    event = AuditEvent.objects.get(action=Action.TWO_FACTOR_RESET)
    assert event.user == "cli"
    assert event.detail == "reset two-factor login of user jdoe; ended 1 sessions"
    login = Client().post(reverse("login"), {"username": "jdoe", "password": PASSWORD})
    assert login["Location"] == "/login/two-factor-setup/"


def test_changepassword_command_is_audited(make_user, monkeypatch):
    user = make_user("jdoe", "radiologist")
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "another long passphrase 7")

    call_command("changepassword", "jdoe", stdout=io.StringIO())

    user.refresh_from_db()
    assert user.check_password("another long passphrase 7")
    event = AuditEvent.objects.get(action=Action.PASSWORD_CHANGED)
    assert event.user == "cli"
    assert event.detail == "cli changed the password of user jdoe; ended 0 sessions"
