"""API tokens: made by `telerad token`, accepted as `Authorization: Bearer`, refused once expired or revoked."""

from __future__ import annotations

import datetime
import io

import pytest
from django.contrib.auth.models import User
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
