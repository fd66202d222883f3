"""Helpers of the notification and critical result tests: an SMTP server on 127.0.0.1, users with e-mail addresses, and signing."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import socket
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

from telerad.reading.models import Exam
from tests.reading.reports_fixtures import PASSWORD, claim, htmx_client_for

FINDINGS = "A 4 cm mass in the left lower lobe."
IMPRESSION = "Tension pneumothorax on the right."
BASE_URL = "https://telerad.example.org"
# The recipient address the test SMTP server rejects with 550.
REJECTED_ADDRESS = "nobody@rejected.example.org"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RecordingHandler:
    """An aiosmtpd handler that keeps every message it accepts and rejects REJECTED_ADDRESS."""

    def __init__(self):
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == REJECTED_ADDRESS:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    """Start an SMTP server on 127.0.0.1 and point telerad's e-mail settings at it; yield its handler."""
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.TELERAD = dataclasses.replace(
        settings.TELERAD, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, smtp_tls=False,
        mail_from="telerad@example.org", base_url=BASE_URL, delivery_timeout_seconds=5,
    )
    try:
        yield handler
    finally:
        controller.stop()


def with_email(user, address: str | None = None):
    user.email = address or f"{user.username}@example.org"
    user.save(update_fields=["email"])
    return user


def sign_critical(exam: Exam, signer, *, critical: bool = True):
    """Claim `exam` for `signer` and sign its report through the editor, marked critical or not."""
    claim(exam, signer)
    data = {"revision": "0", "section-findings": FINDINGS, "section-impression": IMPRESSION, "password": PASSWORD}
    if critical:
        data["critical"] = "on"
    response = htmx_client_for(signer).post(f"/reports/exams/{exam.pk}/sign/", data)
    assert response.status_code == 200, response.content.decode()
    return response


def sign_addendum(exam: Exam, signer, text: str, *, critical: bool = True):
    data = {"text": text, "password": PASSWORD}
    if critical:
        data["critical"] = "on"
    response = htmx_client_for(signer).post(f"/reports/exams/{exam.pk}/addendum/", data)
    assert response.status_code in (200, 303), response.content.decode()
    return response
