"""The account page: roles, two-factor set-up and removal, recovery codes, API tokens, and the permission its views declare."""

from __future__ import annotations

import dataclasses

import pytest
from django.test import Client
from django.urls import resolve
from django_otp.plugins.otp_totp.models import TOTPDevice

from telerad import config
from telerad.accounts import tokens, two_factor
from telerad.accounts.models import ApiToken
from telerad.accounts.roles import Permission, Role, declared_permission
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent

from .conftest import PASSWORD, enrol, make_user, post_password, totp_code

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("enforced_permissions")]

ACCOUNT_URLS = [
    "/account/",
    "/account/password/",
    "/account/two-factor/",
    "/account/two-factor/remove/",
    "/account/recovery-codes/",
    "/account/tokens/",
    "/account/tokens/1/revoke/",
    "/account/sessions/end/",
]


@pytest.fixture
def client_of():
    def sign_in(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return sign_in


@pytest.mark.parametrize("url", ACCOUNT_URLS)
def test_account_views_declare_own_account_permission(url):
    assert declared_permission(resolve(url).func) == Permission.MANAGE_OWN_ACCOUNT


def test_account_page_needs_login():
    assert Client().get("/account/")["Location"] == "/login/?next=/account/"


def test_account_page_lists_roles(client_of):
    user = make_user(roles=[Role.RADIOLOGIST, Role.AUDITOR])

    page = client_of(user).get("/account/").content.decode()

    assert "Auditor, Radiologist" in page
    assert 'href="/account/password/"' in page
    assert "Set up two-factor login" in page


def test_setup_from_account_page(client_of):
    user = make_user()
    client = client_of(user)
    client.get("/account/two-factor/")
    device = TOTPDevice.objects.get(user=user)

    response = client.post("/account/two-factor/", {"code": totp_code(device)})

    assert response["Location"] == "/account/recovery-codes/"
    assert client.get("/account/recovery-codes/").content.count(b"<li><code>") == two_factor.RECOVERY_CODE_COUNT
    assert two_factor.is_enrolled(user)
    assert AuditEvent.objects.filter(action=Action.TWO_FACTOR_ENROLLED, user="reader").exists()
    assert b"10 unused recovery codes" in client.get("/account/").content


def test_replacing_the_authenticator_keeps_one_device(client_of):
    user = make_user()
    old, _codes = enrol(user)
    client = client_of(user)
    client.get("/account/two-factor/")
    new = TOTPDevice.objects.get(user=user, confirmed=False)

    client.post("/account/two-factor/", {"code": totp_code(new)})

    assert list(TOTPDevice.objects.filter(user=user).values_list("pk", flat=True)) == [new.pk]
    assert old.pk != new.pk


def test_recovery_codes_can_be_regenerated(client_of):
    user = make_user()
    _device, old_codes = enrol(user)
    client = client_of(user)

    response = client.post("/account/recovery-codes/")

    assert response["Location"] == "/account/recovery-codes/"
    page = client.get("/account/recovery-codes/").content.decode()
    assert not any(code in page for code in old_codes)
    assert two_factor.remaining_recovery_codes(user) == two_factor.RECOVERY_CODE_COUNT
    assert two_factor.verify_code(user, old_codes[0]) is None
    assert AuditEvent.objects.filter(action=Action.RECOVERY_CODES_CREATED).exists()


def test_removal_refused_while_required(client_of):
    user = make_user()
    enrol(user)

    client_of(user).post("/account/two-factor/remove/", {"password": PASSWORD})

    assert two_factor.is_enrolled(user)


def test_removal_needs_password_when_not_required(client_of, two_factor_off):
    user = make_user()
    enrol(user)
    client = client_of(user)

    client.post("/account/two-factor/remove/", {"password": "wrong password"})
    assert two_factor.is_enrolled(user)
    client.post("/account/two-factor/remove/", {"password": PASSWORD})

    assert not two_factor.is_enrolled(user)
    assert two_factor.remaining_recovery_codes(user) == 0
    assert AuditEvent.objects.filter(action=Action.TWO_FACTOR_REMOVED, user="reader").exists()
    assert post_password(Client())["Location"] == "/studies/"


def test_token_is_shown_once_and_listed(client_of):
    user = make_user()
    client = client_of(user)

    response = client.post("/account/tokens/", {"name": "AI node", "days": "30"})

    assert response["Location"] == "/account/"
    token = ApiToken.objects.get(user=user)
    first = client.get("/account/").content.decode()
    text = first.split('<code class="new-token">', 1)[1].split("</code>", 1)[0]
    assert tokens.user_for_token(text) == user
    assert token.prefix in first
    assert "AI node" in first
    assert ">active<" in first
    assert text not in client.get("/account/").content.decode()
    assert 29 <= (token.expires_at - token.created_at).days <= 30


def test_token_form_rejects_bad_days(client_of):
    client = client_of(make_user())

    response = client.post("/account/tokens/", {"name": "x", "days": "0"})

    assert response.status_code == 200
    assert b"greater than or equal to 1" in response.content
    assert not ApiToken.objects.exists()


def test_revoke_from_account_page(client_of):
    user = make_user()
    token, _text = tokens.create_token(user, name="router")
    client = client_of(user)

    response = client.post(f"/account/tokens/{token.pk}/revoke/")

    assert response["Location"] == "/account/"
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert ">revoked<" in client.get("/account/").content.decode()
    assert AuditEvent.objects.filter(action=Action.TOKEN_REVOKED, user="reader").exists()


def test_cannot_revoke_another_users_token(client_of):
    owner = make_user("owner")
    token, _text = tokens.create_token(owner)

    response = client_of(make_user()).post(f"/account/tokens/{token.pk}/revoke/")

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_api_token_cannot_manage_the_account():
    user = make_user()
    _token, text = tokens.create_token(user)
    client = Client(headers={"Authorization": f"Bearer {text}"})

    assert client.get("/account/").status_code == 403
    assert client.post("/account/tokens/", {"name": "more", "days": "5"}).status_code == 403
    assert ApiToken.objects.filter(user=user).count() == 1


def test_two_factor_settings_read_from_environment(tmp_path):
    base = {"TELERAD_DATA_DIR": str(tmp_path)}

    default = config.load(base)
    demo = config.load({**base, "TELERAD_DEMO": "true"})
    demo_on = config.load({**base, "TELERAD_DEMO": "true", "TELERAD_TWO_FACTOR_REQUIRED": "true"})
    off = config.load({**base, "TELERAD_TWO_FACTOR_REQUIRED": "false"})
    locks = config.load({**base, "TELERAD_LOGIN_MAX_FAILURES": "8", "TELERAD_LOGIN_LOCKOUT_MINUTES": "30"})
    invalid = config.load({**base, "TELERAD_LOGIN_MAX_FAILURES": "0"})

    assert default.two_factor_required
    assert (default.login_max_failures, default.login_lockout_minutes, default.session_timeout_minutes) == (5, 15, 30)
    assert not demo.two_factor_required
    assert demo_on.two_factor_required
    assert not off.two_factor_required
    assert (locks.login_max_failures, locks.login_lockout_minutes) == (8, 30)
    assert [problem.setting for problem in invalid.problems] == ["login_max_failures"]
    assert dataclasses.replace(invalid, problems=()).login_max_failures == 5


@pytest.mark.parametrize("url", ["/account/", "/account/password/", "/account/two-factor/", "/account/recovery-codes/"])
def test_head_is_allowed_where_get_is(client_of, url):
    client = client_of(make_user())

    get = client.get(url)
    head = client.head(url)

    assert head.status_code == get.status_code
    assert head.status_code != 405


@pytest.mark.parametrize("url", ["/login/", "/login/verify/", "/login/two-factor-setup/", "/login/recovery-codes/"])
def test_head_is_allowed_on_login_pages(url):
    client = Client()

    head = client.head(url)
    get = client.get(url)

    assert head.status_code == get.status_code
    assert head.status_code != 405


def test_head_does_not_use_up_a_new_token(client_of):
    client = client_of(make_user())
    client.post("/account/tokens/", {"name": "script", "days": "7"})

    client.head("/account/")
    page = client.get("/account/").content.decode()

    assert '<code class="new-token">' in page
