"""API tokens: made by `telerad token`, accepted as `Authorization: Bearer`, refused once expired or revoked."""

from __future__ import annotations

import datetime
import io

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from telerad.accounts import tokens
from telerad.accounts.models import ApiToken
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent

pytestmark = pytest.mark.django_db

STUDIES_URL = "/dicom-web/studies"


@pytest.fixture
def reader(make_user):
    return make_user("reader", "radiologist")


@pytest.fixture(autouse=True)
def fresh_rejection_limit():
    """Forget rejected tokens audited by earlier tests, which the cache would otherwise keep for a minute."""
    cache.clear()
    yield
    cache.clear()


def revoke_with_command(text: str) -> str:
    output = io.StringIO()
    call_command("token", "revoke", text, stdout=output)
    return output.getvalue()


def rejection_events():
    return list(AuditEvent.objects.filter(action=Action.LOGIN_FAILED).order_by("sequence"))


def create_with_command(*arguments: str) -> str:
    output = io.StringIO()
    call_command("token", "create", *arguments, stdout=output)
    return output.getvalue().strip()


def test_create_prints_a_working_token(reader):
    text = create_with_command("reader", "--name", "AI node")

    assert text.startswith(tokens.TOKEN_PREFIX)
    assert tokens.user_for_token(text) == reader
    token = ApiToken.objects.get()
    assert token.name == "AI node"
    assert text not in token.digest
    assert AuditEvent.objects.filter(action=Action.TOKEN_CREATED, detail__contains=token.prefix).exists()


def test_command_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        create_with_command("nobody")


def test_bearer_token_reaches_dicomweb_without_a_session(reader):
    text = create_with_command("reader")

    assert Client().get(STUDIES_URL).status_code == 401
    response = Client().get(STUDIES_URL, headers={"Authorization": f"Bearer {text}"})
    assert response.status_code == 200
    assert ApiToken.objects.get().last_used_at is not None


@pytest.mark.parametrize("header", ["Bearer trt_not-a-real-token", "Bearer ", "bearer trt_"])
def test_bearer_unknown_token_gets_401_with_a_challenge(reader, header):
    response = Client().get(STUDIES_URL, headers={"Authorization": header})

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"unknown, expired or revoked" in response.content


def test_expired_and_revoked_tokens_stop_working(reader):
    expired = create_with_command("reader", "--days", "1")
    ApiToken.objects.filter(prefix=expired[: tokens.SHOWN_PREFIX_LENGTH]).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert tokens.user_for_token(expired) is None

    revoked = create_with_command("reader")
    call_command("token", "revoke", revoked[: tokens.SHOWN_PREFIX_LENGTH], stdout=io.StringIO())
    assert tokens.user_for_token(revoked) is None
    assert Client().get(STUDIES_URL, headers={"Authorization": f"Bearer {revoked}"}).status_code == 401


def test_user_for_token_refuses_an_inactive_user(reader):
    text = create_with_command("reader")
    reader.is_active = False
    reader.save()

    assert tokens.user_for_token(text) is None


def test_list_hides_the_token_text(reader):
    text = create_with_command("reader", "--name", "router")
    output = io.StringIO()
    call_command("token", "list", stdout=output)

    listing = output.getvalue()
    assert text[: tokens.SHOWN_PREFIX_LENGTH] in listing
    assert "active" in listing
    assert "router" in listing
    assert text not in listing


def test_token_from_account_page_works_until_revoked(reader):
    browser = Client()
    browser.force_login(reader)
    browser.post("/account/tokens/", {"name": "viewer script", "days": "7"})
    page = browser.get("/account/").content.decode()
    text = page.split('<code class="new-token">', 1)[1].split("</code>", 1)[0]
    api = Client(headers={"Authorization": f"Bearer {text}"})
    assert api.get(STUDIES_URL).status_code == 200

    token = ApiToken.objects.get(user=reader)
    browser.post(f"/account/tokens/{token.pk}/revoke/")

    response = api.get(STUDIES_URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_gets_401(reader):
    text = create_with_command("reader", "--days", "1")
    ApiToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))

    response = Client().get(STUDIES_URL, headers={"Authorization": f"Bearer {text}"})

    assert response.status_code == 401
    assert b"unknown, expired or revoked" in response.content


def test_create_defaults_to_90_days(reader):
    create_with_command("reader")

    lifetime = ApiToken.objects.get().expires_at - timezone.now()
    assert datetime.timedelta(days=89, hours=23) < lifetime <= datetime.timedelta(days=90)


def test_no_expiry_makes_a_lasting_token(reader):
    create_with_command("reader", "--no-expiry")

    assert ApiToken.objects.get().expires_at is None


def test_no_expiry_and_days_exclude_each_other(reader):
    with pytest.raises(CommandError, match="not allowed with argument"):
        create_with_command("reader", "--days", "90", "--no-expiry")


def test_revoke_by_start_of_prefix(reader):
    text = create_with_command("reader", "--name", "router")
    prefix = text[: tokens.SHOWN_PREFIX_LENGTH]

    with pytest.raises(CommandError) as shorter:
        revoke_with_command(prefix[:-2])
    assert tokens.user_for_token(text) == reader
    output = revoke_with_command(prefix)

    assert "shorter than a token prefix" in str(shorter.value)
    assert f"telerad token revoke {prefix}" in str(shorter.value)
    assert f"Revoked {prefix} of user reader" in output
    assert tokens.user_for_token(text) is None


def test_revoke_lists_several_matches(reader):
    first = create_with_command("reader", "--name", "first")
    second = create_with_command("reader", "--name", "second")

    with pytest.raises(CommandError) as several:
        revoke_with_command(tokens.TOKEN_PREFIX)

    message = str(several.value)
    assert "2 active tokens have a prefix starting with 'trt_'; give more characters" in message
    assert first[: tokens.SHOWN_PREFIX_LENGTH] in message
    assert second[: tokens.SHOWN_PREFIX_LENGTH] in message
    assert first not in message
    assert tokens.user_for_token(first) == reader
    assert tokens.user_for_token(second) == reader


def test_revoke_by_whole_token(reader):
    text = create_with_command("reader")

    revoke_with_command(text)

    assert tokens.user_for_token(text) is None


def test_revoke_reports_no_match(reader):
    with pytest.raises(CommandError, match="no active token has a prefix starting with 'trt_zz'"):
        revoke_with_command("trt_zz")


@pytest.mark.parametrize(("state", "reason"), [("unknown", "unknown"), ("revoked", "revoked"), ("expired", "expired"), ("disabled", "user disabled")])
def test_rejected_token_is_audited_without_its_text(reader, state, reason):
    text = create_with_command("reader")
    if state == "unknown":
        text = tokens.TOKEN_PREFIX + "x" * 40
    elif state == "revoked":
        revoke_with_command(text[: tokens.SHOWN_PREFIX_LENGTH])
    elif state == "expired":
        ApiToken.objects.update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    else:
        User.objects.filter(pk=reader.pk).update(is_active=False)

    response = Client(REMOTE_ADDR="192.0.2.7").get(STUDIES_URL, headers={"Authorization": f"Bearer {text}"})

    assert response.status_code == 401
    [event] = rejection_events()
    assert event.address == "192.0.2.7"
    assert event.detail == f"API token {text[: tokens.SHOWN_PREFIX_LENGTH]} rejected: {reason}"
    assert event.user == ("" if state == "unknown" else "reader")
    assert text not in event.detail


def test_rejection_audit_is_rate_limited(reader):
    unknown = tokens.TOKEN_PREFIX + "y" * 40
    other = tokens.TOKEN_PREFIX + "z" * 40

    for _ in range(5):
        Client(REMOTE_ADDR="192.0.2.7").get(STUDIES_URL, headers={"Authorization": f"Bearer {unknown}"})
    Client(REMOTE_ADDR="192.0.2.8").get(STUDIES_URL, headers={"Authorization": f"Bearer {unknown}"})
    Client(REMOTE_ADDR="192.0.2.7").get(STUDIES_URL, headers={"Authorization": f"Bearer {other}"})

    events = rejection_events()
    assert [(event.address, event.detail[:20]) for event in events] == [
        ("192.0.2.7", "API token trt_yyyyyy"),
        ("192.0.2.8", "API token trt_yyyyyy"),
        ("192.0.2.7", "API token trt_zzzzzz"),
    ]


def test_foreign_token_is_not_written_to_the_trail(reader):
    Client().get(STUDIES_URL, headers={"Authorization": "Bearer ghp_0123456789abcdef"})

    [event] = rejection_events()
    assert event.detail == "API token (not a telerad token) rejected: unknown"


def test_account_page_token_events_name_the_address(reader):
    browser = Client(REMOTE_ADDR="192.0.2.9")
    browser.force_login(reader)

    browser.post("/account/tokens/", {"name": "script", "days": "7"})
    browser.post(f"/account/tokens/{ApiToken.objects.get().pk}/revoke/")

    assert AuditEvent.objects.get(action=Action.TOKEN_CREATED).address == "192.0.2.9"
    assert AuditEvent.objects.get(action=Action.TOKEN_REVOKED).address == "192.0.2.9"
