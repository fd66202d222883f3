"""Two-factor login: forced enrolment, authenticator codes, recovery codes, and the switch that turns the requirement off."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from telerad.accounts import login as login_views
from telerad.core import demo
from telerad.accounts.models import LoginThrottle
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent

from .conftest import enrol, make_user, post_password, totp_code

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("enforced_permissions")]


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_required_sends_new_user_to_enrolment():
    make_user()
    client = Client()

    response = post_password(client)

    assert response.status_code == 302
    assert response["Location"] == "/login/two-factor-setup/"
    assert not is_logged_in(client)
    assert client.get("/studies/")["Location"].startswith("/login/")


def test_enrolment_page_shows_qr_code_and_secret():
    user = make_user()
    client = Client()
    post_password(client)

    page = client.get("/login/two-factor-setup/").content.decode()

    device = TOTPDevice.objects.get(user=user)
    assert not device.confirmed
    assert "<svg" in page
    assert "<script" not in page.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert "style=" not in page.split("<svg", 1)[1].split("</svg>", 1)[0]
    secret = page.split("<code>", 1)[1].split("</code>", 1)[0]
    assert len(secret.replace(" ", "")) == 32
    # Reloading shows the same secret, so a QR code already scanned stays valid.
    assert secret in client.get("/login/two-factor-setup/").content.decode()


def test_enrolment_rejects_wrong_code():
    make_user()
    client = Client()
    post_password(client)
    client.get("/login/two-factor-setup/")

    response = client.post("/login/two-factor-setup/", {"code": "000000"})

    assert b"The code is not correct" in response.content
    assert not is_logged_in(client)
    assert not TOTPDevice.objects.get().confirmed


def test_enrolment_confirmation_logs_in():
    user = make_user()
    client = Client()
    post_password(client)
    client.get("/login/two-factor-setup/")
    device = TOTPDevice.objects.get(user=user)

    response = client.post("/login/two-factor-setup/", {"code": totp_code(device)})

    assert response["Location"] == "/login/recovery-codes/"
    assert is_logged_in(client)
    codes_page = client.get("/login/recovery-codes/")
    assert codes_page.content.count(b"<li><code>") == 10
    assert b'href="/studies/"' in codes_page.content
    # Shown once: the next visit has nothing to show.
    assert client.get("/login/recovery-codes/").status_code == 302
    assert TOTPDevice.objects.get(user=user).confirmed
    assert AuditEvent.objects.filter(action=Action.TWO_FACTOR_ENROLLED, user="reader").exists()
    assert AuditEvent.objects.get(action=Action.LOGIN).detail == "password and a new authenticator"


def test_login_with_authenticator_code():
    user = make_user()
    device, _codes = enrol(user)
    client = Client()

    first = post_password(client)
    assert first["Location"] == "/login/verify/"
    assert not is_logged_in(client)
    response = client.post("/login/verify/", {"code": totp_code(device, steps_ahead=1)})

    assert response.status_code == 302
    assert response["Location"] == "/studies/"
    assert is_logged_in(client)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    event = AuditEvent.objects.get(action=Action.LOGIN)
    assert event.user == "reader"
    assert event.address == "127.0.0.1"
    assert event.detail == "password and authenticator code"


def test_wrong_code_is_refused_and_audited():
    user = make_user()
    enrol(user)
    client = Client()
    post_password(client)

    response = client.post("/login/verify/", {"code": "123456"})

    assert b"The code is not correct" in response.content
    assert not is_logged_in(client)
    assert AuditEvent.objects.get(action=Action.LOGIN_FAILED).detail == "wrong second-factor code"


def test_wrong_codes_lock_the_account(login_settings):
    login_settings(login_max_failures=3)
    user = make_user()
    device, _codes = enrol(user)
    client = Client()
    post_password(client)

    for _ in range(2):
        client.post("/login/verify/", {"code": "123456"})
    response = client.post("/login/verify/", {"code": "123456"})

    assert response["Location"] == "/login/"
    assert LoginThrottle.objects.get(kind=LoginThrottle.Kind.ACCOUNT, key="reader").locked_until is not None
    # The pending login is gone, and the password step stays locked.
    assert client.post("/login/verify/", {"code": totp_code(device, steps_ahead=1)})["Location"] == "/login/"
    assert b"Too many failed logins" in post_password(Client()).content


def test_recovery_code_works_once():
    user = make_user()
    _device, codes = enrol(user)
    first = Client()
    post_password(first)

    response = first.post("/login/verify/", {"code": codes[0].upper()})

    assert response["Location"] == "/studies/"
    assert is_logged_in(first)
    assert AuditEvent.objects.get(action=Action.LOGIN).detail == "password and recovery code"
    second = Client()
    post_password(second)
    assert b"The code is not correct" in second.post("/login/verify/", {"code": codes[0]}).content
    assert not is_logged_in(second)


@pytest.mark.parametrize("typed", ["  {code}  ", "{upper}", " {upper} ", "{upper_first}-{upper_last}", "{first} {last}"])
def test_recovery_code_accepts_capitals_and_spaces(typed):
    user = make_user()
    _device, codes = enrol(user)
    code = codes[0]
    client = Client()
    post_password(client)

    text = typed.format(code=code, upper=code.upper(), first=code[:4], last=code[4:], upper_first=code[:4].upper(), upper_last=code[4:].upper())
    response = client.post("/login/verify/", {"code": text})

    assert response["Location"] == "/studies/"
    assert AuditEvent.objects.get(action=Action.LOGIN).detail == "password and recovery code"


def test_recovery_code_of_digits_alone_is_accepted():
    user = make_user()
    enrol(user)
    # Base32 recovery codes may happen to contain only the digits 2 to 7.
    StaticToken.objects.create(device=StaticDevice.objects.get(user=user), token="23456723")
    client = Client()
    post_password(client)

    response = client.post("/login/verify/", {"code": "2345 6723"})

    assert response["Location"] == "/studies/"
    assert AuditEvent.objects.get(action=Action.LOGIN).detail == "password and recovery code"


def test_pending_login_expires(monkeypatch):
    make_user()
    client = Client()
    post_password(client)
    started = client.session[login_views.PENDING_LOGIN_KEY]["started"]

    monkeypatch.setattr(time, "time", lambda: started + login_views.PENDING_LOGIN_LIFETIME + 1)
    response = client.get("/login/two-factor-setup/")

    assert response["Location"] == "/login/"


def test_second_step_needs_a_password_first():
    response = Client().get("/login/verify/")

    assert response["Location"] == "/login/"


def test_not_required_logs_in_with_password_alone(two_factor_off):
    make_user()
    client = Client()

    response = post_password(client)

    assert response["Location"] == "/studies/"
    assert is_logged_in(client)
    assert AuditEvent.objects.get(action=Action.LOGIN).detail == "password; two-factor login is not required"


def test_not_required_still_asks_enrolled_users(two_factor_off):
    enrol(make_user())

    response = post_password(Client())

    assert response["Location"] == "/login/verify/"


def test_admin_login_goes_to_telerad_login():
    response = Client().get("/admin/login/", {"next": "/admin/"})

    assert response.status_code == 302
    assert response["Location"] == "/login/?next=%2Fadmin%2F"


def test_demo_banner_names_the_switch(login_settings):
    login_settings(demo=True, two_factor_required=False)
    off = demo.login_lines()[-1]
    login_settings(two_factor_required=True)
    on = demo.login_lines()[-1]

    assert "two-factor login is off" in off
    assert "TELERAD_TWO_FACTOR_REQUIRED=false" in off
    assert "two-factor login is on" in on
