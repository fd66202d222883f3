"""Security headers on telerad's pages: content security policy, framing, referrer, caching."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from telerad.core.security import PAGE_POLICY


@pytest.fixture
def reader_client(make_user) -> Client:
    client = Client()
    client.force_login(make_user("reader", "radiologist"))
    return client


def test_page_carries_strict_policy(reader_client):
    response = reader_client.get(reverse("archive:study-list"))

    policy = response["Content-Security-Policy"]
    assert policy == PAGE_POLICY
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
    assert "frame-ancestors 'none'" in policy


def test_page_forbids_framing_and_sniffing(reader_client):
    response = reader_client.get(reverse("archive:study-list"))

    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]


def test_signed_in_page_is_not_cached(reader_client):
    response = reader_client.get(reverse("archive:study-list"))

    assert response["Cache-Control"] == "no-store"


def test_login_page_has_policy(client, db):
    response = client.get(reverse("login"))

    assert response["Content-Security-Policy"] == PAGE_POLICY


def test_login_page_has_no_inline_code(client, db):
    content = client.get(reverse("login")).content.decode()

    assert "<script>" not in content
    assert " style=" not in content
    assert " onclick=" not in content


def test_viewer_keeps_its_own_policy(reader_client):
    response = reader_client.get(reverse("viewer:serve", kwargs={"relative": ""}))

    assert response.status_code == 200
    assert response["Content-Security-Policy"] != PAGE_POLICY
    assert "'wasm-unsafe-eval'" in response["Content-Security-Policy"]
