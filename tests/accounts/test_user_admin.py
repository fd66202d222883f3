"""User pages of the Django admin: audited password changes, disabling, two-factor reset, no deletion, the role filter and header link."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from telerad.accounts import tokens
from telerad.accounts.models import ApiToken
from telerad.accounts.roles import Role, user_roles
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent

from .conftest import PASSWORD, enrol, make_user, post_password

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("enforced_permissions")]

NEW_PASSWORD = "a different long passphrase 7"
CHANGELIST_URL = "/admin/auth/user/"


@pytest.fixture
def admin_client() -> Client:
    client = Client(REMOTE_ADDR="192.0.2.10")
    client.force_login(make_user("boss", roles=[Role.ADMINISTRATOR]))
    return client


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def change_form_data(user: User, **changes) -> dict:
    """Return the admin change form's fields for `user` as they stand, with `changes` applied."""
    data = {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "roles": [role.value for role in user_roles(user)],
    }
    if user.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def run_action(client: Client, action: str, *users: User):
    return client.post(CHANGELIST_URL, {"action": action, "_selected_action": [str(user.pk) for user in users]})


def test_admin_own_password_change_is_audited(admin_client):
    response = admin_client.post("/admin/password_change/", {
        "old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD,
    })

    assert response.status_code == 302
    event = AuditEvent.objects.get(action=Action.PASSWORD_CHANGED)
    assert event.user == "boss"
    assert event.address == "192.0.2.10"
    assert event.detail == "boss changed the password of user boss; ended 0 other sessions"


def test_admin_set_password_is_audited(admin_client):
    target = make_user("jdoe")
    browser = signed_in(target)

    response = admin_client.post(f"/admin/auth/user/{target.pk}/password/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.status_code == 302
    target.refresh_from_db()
    assert target.check_password(NEW_PASSWORD)
    event = AuditEvent.objects.get(action=Action.PASSWORD_CHANGED)
    assert event.user == "boss"
    assert event.detail == "boss changed the password of user jdoe; ended 1 sessions"
    assert not Session.objects.filter(session_key=browser.session.session_key).exists()


def test_set_password_form_offers_no_password_free_account(admin_client):
    target = make_user("jdoe")

    page = admin_client.get(f"/admin/auth/user/{target.pk}/password/").content.decode()
    response = admin_client.post(f"/admin/auth/user/{target.pk}/password/", {"usable_password": "false"})

    assert 'name="usable_password"' not in page
    assert response.status_code == 200
    target.refresh_from_db()
    assert target.has_usable_password()
    assert not AuditEvent.objects.filter(action=Action.PASSWORD_CHANGED).exists()


def test_add_form_requires_a_password(admin_client):
    page = admin_client.get("/admin/auth/user/add/").content.decode()
    response = admin_client.post("/admin/auth/user/add/", {"username": "nopass", "usable_password": "false", "roles": ["radiologist"]})

    assert 'name="usable_password"' not in page
    assert response.status_code == 200
    assert not User.objects.filter(username="nopass").exists()


def test_unticking_active_disables_for_good(admin_client):
    target = make_user("jdoe")
    browser = signed_in(target)
    _token, text = tokens.create_token(target)

    response = admin_client.post(f"/admin/auth/user/{target.pk}/change/", change_form_data(target, is_active=None))

    assert response.status_code == 302
    target.refresh_from_db()
    assert not target.is_active
    assert not AuditEvent.objects.filter(action=Action.USER_CHANGED).exists()
    event = AuditEvent.objects.get(action=Action.USER_DISABLED)
    assert event.user == "boss"
    assert event.detail == "disabled user jdoe; ended 1 sessions and revoked 1 API tokens"

    admin_client.post(f"/admin/auth/user/{target.pk}/change/", change_form_data(target, is_active="on"))

    target.refresh_from_db()
    assert target.is_active
    assert AuditEvent.objects.get(action=Action.USER_ENABLED).detail == "enabled user jdoe"
    assert browser.get("/studies/").status_code == 302
    assert tokens.user_for_token(text) is None


def test_other_changes_stay_user_changed(admin_client):
    target = make_user("jdoe")

    admin_client.post(f"/admin/auth/user/{target.pk}/change/", change_form_data(target, email="jdoe@example.org"))

    assert AuditEvent.objects.get(action=Action.USER_CHANGED).detail == "user jdoe: email"
    assert not AuditEvent.objects.filter(action__in=[Action.USER_DISABLED, Action.USER_ENABLED]).exists()


def test_disable_action_ends_sessions_and_tokens(admin_client):
    target = make_user("jdoe")
    browser = signed_in(target)
    _token, text = tokens.create_token(target)

    run_action(admin_client, "disable_users", target)
    run_action(admin_client, "enable_users", target)

    target.refresh_from_db()
    assert target.is_active
    assert browser.get("/studies/").status_code == 302
    assert tokens.user_for_token(text) is None
    assert ApiToken.objects.get(user=target).revoked_at is not None
    assert AuditEvent.objects.get(action=Action.USER_DISABLED).detail == "disabled user jdoe; ended 1 sessions and revoked 1 API tokens"
    assert AuditEvent.objects.get(action=Action.USER_ENABLED).detail == "enabled user jdoe"
    assert AuditEvent.objects.get(action=Action.TOKEN_REVOKED).user == "boss"


def test_reset_two_factor_action(admin_client, login_settings):
    login_settings(two_factor_required=True)
    target = make_user("jdoe")
    enrol(target)

    run_action(admin_client, "reset_two_factor", target)

    assert not TOTPDevice.objects.filter(user=target).exists()
    assert not StaticDevice.objects.filter(user=target).exists()
    event = AuditEvent.objects.get(action=Action.TWO_FACTOR_RESET)
    assert event.user == "boss"
    assert event.address == "192.0.2.10"
    assert event.detail == "reset two-factor login of user jdoe; ended 0 sessions"
    assert post_password(Client(), "jdoe")["Location"] == "/login/two-factor-setup/"


def test_no_role_may_delete_users(admin_client):
    target = make_user("jdoe")

    change_page = admin_client.get(f"/admin/auth/user/{target.pk}/change/").content.decode()
    list_page = admin_client.get(CHANGELIST_URL).content.decode()
    response = admin_client.post(f"/admin/auth/user/{target.pk}/delete/", {"post": "yes"})

    assert f"/admin/auth/user/{target.pk}/delete/" not in change_page
    assert 'value="delete_selected"' not in list_page
    assert response.status_code == 403
    assert User.objects.filter(pk=target.pk).exists()


def test_superuser_may_not_delete_users_either():
    superuser = User.objects.create_superuser("root", password=PASSWORD)
    make_user("root-admin", roles=[Role.ADMINISTRATOR])
    superuser.groups.set(User.objects.get(username="root-admin").groups.all())
    superuser.is_staff = True
    superuser.save()
    target = make_user("jdoe")

    response = signed_in(superuser).post(f"/admin/auth/user/{target.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert User.objects.filter(pk=target.pk).exists()


def test_role_filter_replaces_groups(admin_client):
    make_user("anna", roles=[Role.RADIOLOGIST])
    make_user("bert", roles=[Role.AUDITOR])
    make_user("carl", roles=[])

    page = admin_client.get(CHANGELIST_URL).content.decode()
    auditors = admin_client.get(CHANGELIST_URL, {"role": "auditor"}).context["cl"].result_list
    without_role = admin_client.get(CHANGELIST_URL, {"role": "none"}).context["cl"].result_list

    assert "By role" in page
    assert "By groups" not in page
    assert [user.username for user in auditors] == ["bert"]
    assert [user.username for user in without_role] == ["carl"]


def test_admin_header_links_to_account_page(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()

    assert f'<a href="{reverse("account:home")}">Your account</a>' in page
