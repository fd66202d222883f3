"""`telerad user`: accounts and roles from the command line, each change audited."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from telerad.accounts import tokens
from telerad.accounts.roles import Role, user_roles
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent

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
    assert AuditEvent.objects.filter(action=Action.USER_DISABLED, detail="user jdoe").count() == 1


def test_enable_restores_login(make_user):
    make_user("jdoe", "radiologist")
    run("disable", "jdoe")

    run("enable", "jdoe")

    response = Client().post(reverse("login"), {"username": "jdoe", "password": PASSWORD})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action=Action.USER_ENABLED).count() == 1


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
