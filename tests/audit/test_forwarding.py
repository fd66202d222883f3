"""Forwarding audit events to a TLS syslog receiver on 127.0.0.1, as an audit repository receives them."""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import time
import xml.etree.ElementTree as ET

import pytest
from django.core.management import CommandError, call_command

from telerad import config as telerad_config
from telerad.audit import events, forwarder
from telerad.audit.events import Action, Outcome
from telerad.audit.models import AuditEvent, AuditForwardCursor

from .conftest import SyslogReceiver

HEADER = re.compile(
    rb"^<(?P<priority>\d{1,3})>1 (?P<timestamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<hostname>[\x21-\x7e]+) "
    rb"telerad (?P<procid>\d+) IHE\+RFC-3881 - \xef\xbb\xbf(?P<xml><\?xml .*)$",
    re.DOTALL,
)


@pytest.fixture
def forwarding_to(settings):
    """Point telerad's configuration at an audit repository on 127.0.0.1."""

    def configure(port: int, ca_file) -> None:
        settings.TELERAD = dataclasses.replace(
            settings.TELERAD, audit_syslog_host="127.0.0.1", audit_syslog_port=port, audit_syslog_ca_file=ca_file
        )

    return configure


def run_forward() -> tuple[int, str, str]:
    output, errors = io.StringIO(), io.StringIO()
    try:
        call_command("audit", "forward", stdout=output, stderr=errors)
    except SystemExit as exit_:
        return int(exit_.code), output.getvalue(), errors.getvalue()
    return 0, output.getvalue(), errors.getvalue()


def cursor_sequence() -> int:
    cursor = AuditForwardCursor.objects.filter(pk=1).first()
    return cursor.last_sequence if cursor is not None else 0


def record_samples() -> list[AuditEvent]:
    return [
        events.record_event(action=Action.LOGIN, user="dr.house", address="192.0.2.7"),
        events.record_event(action=Action.STUDY_VIEWED, user="dr.house", address="192.0.2.7", patient_id="PAT-1", study_instance_uid="1.2.3.4"),
        events.record_event(action=Action.LOGIN_FAILED, outcome=Outcome.MINOR_FAILURE, user="mallory", address="198.51.100.9"),
    ]


def wait_for(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.django_db
def test_forward_sends_framed_syslog_messages(syslog_receiver, test_ca, forwarding_to):
    forwarding_to(syslog_receiver.port, test_ca.ca_file)
    recorded = record_samples()

    status, output, errors = run_forward()

    assert status == 0, errors
    assert "Sent 3 audit events to 127.0.0.1:" in output
    assert wait_for(lambda: len(syslog_receiver.frames()) == 3)
    frames = syslog_receiver.frames()
    for event, frame in zip(recorded, frames):
        header = HEADER.match(frame)
        assert header is not None, frame[:200]
        # Facility 10 (security); severity 5 (notice) for success, 4 (warning) for failure.
        expected_priority = 84 if event.outcome else 85
        assert int(header["priority"]) == expected_priority
        assert header["timestamp"].decode() == event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        root = ET.fromstring(header["xml"])
        assert root.tag == "AuditMessage"
        assert root.find("EventIdentification").get("EventOutcomeIndicator") == str(event.outcome)
        assert root.find("ActiveParticipant").get("UserID") == event.user
    study_message = ET.fromstring(HEADER.match(frames[1])["xml"])
    assert study_message.find("EventIdentification/EventID").get("csd-code") == "110103"
    assert {element.get("ParticipantObjectID") for element in study_message.findall("ParticipantObjectIdentification")} == {"PAT-1", "1.2.3.4"}
    assert cursor_sequence() == recorded[-1].sequence
    assert syslog_receiver.errors == []


@pytest.mark.django_db
def test_forward_sends_only_new_events(syslog_receiver, test_ca, forwarding_to):
    forwarding_to(syslog_receiver.port, test_ca.ca_file)
    record_samples()
    run_forward()
    later = events.record_event(action=Action.LOGOUT, user="dr.house", address="192.0.2.7")

    status, output, _ = run_forward()

    assert status == 0
    assert "Sent 1 audit events" in output
    assert wait_for(lambda: len(syslog_receiver.frames()) == 4)
    assert b"110123" in syslog_receiver.frames()[-1]
    assert cursor_sequence() == later.sequence


@pytest.mark.django_db
def test_forward_keeps_events_while_repository_is_down(test_ca, forwarding_to, free_port):
    forwarding_to(free_port, test_ca.ca_file)
    recorded = record_samples()

    status, _, errors = run_forward()

    assert status == 1
    assert f"Sending to the audit repository 127.0.0.1:{free_port} failed" in errors
    assert "3 events are still pending" in errors
    assert cursor_sequence() == 0

    receiver = SyslogReceiver(test_ca, port=free_port).start()
    try:
        status, _, errors = run_forward()
        assert status == 0, errors
        assert wait_for(lambda: len(receiver.frames()) == 3)
        sent_times = [HEADER.match(frame)["timestamp"].decode() for frame in receiver.frames()]
    finally:
        receiver.stop()
    assert sent_times == [event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for event in recorded]
    assert cursor_sequence() == recorded[-1].sequence


@pytest.mark.django_db
def test_forward_rejects_an_unknown_certificate_authority(syslog_receiver, forwarding_to, tmp_path):
    from .conftest import CertificateAuthority

    other_folder = tmp_path / "other"
    other_folder.mkdir()
    forwarding_to(syslog_receiver.port, CertificateAuthority(other_folder).ca_file)
    record_samples()

    status, _, errors = run_forward()

    assert status == 1
    assert "CERTIFICATE_VERIFY_FAILED" in errors
    assert cursor_sequence() == 0
    assert syslog_receiver.frames() == []


@pytest.mark.django_db
def test_forward_without_repository_is_an_error():
    with pytest.raises(CommandError, match="no audit repository is configured"):
        call_command("audit", "forward")


@pytest.mark.django_db
def test_forward_waits_for_another_forwarder(syslog_receiver, test_ca, forwarding_to):
    forwarding_to(syslog_receiver.port, test_ca.ca_file)
    record_samples()
    assert forwarder._take_lease("other-node:1234:abcd")

    with pytest.raises(CommandError, match="the forwarder other-node:1234:abcd is sending"):
        call_command("audit", "forward")

    assert syslog_receiver.frames() == []


@pytest.mark.django_db(transaction=True)
def test_background_forwarder_retries_until_repository_is_up(test_ca, forwarding_to, free_port, settings):
    forwarding_to(free_port, test_ca.ca_file)
    recorded = record_samples()
    background = forwarder.Forwarder(settings.TELERAD, poll_seconds=0.05, max_retry_seconds=0.2)
    background.start()
    receiver = None
    try:
        assert wait_for(lambda: background.failures >= 2)
        assert cursor_sequence() == 0

        receiver = SyslogReceiver(test_ca, port=free_port).start()
        assert wait_for(lambda: cursor_sequence() == recorded[-1].sequence)
        # RFC 5425 has no acknowledgement: the cursor moves once the frames are sent, maybe before they are read.
        assert wait_for(lambda: len(receiver.frames()) == 3)

        newer = events.record_event(action=Action.LOGOUT, user="dr.house", address="192.0.2.7")
        assert wait_for(lambda: cursor_sequence() == newer.sequence)
        assert wait_for(lambda: len(receiver.frames()) == 4)
        # One connection carries every batch after the repository came up.
        assert len(receiver.connections) == 1
        assert background.failures == 0
    finally:
        background.stop()
        if receiver is not None:
            receiver.stop()
    assert AuditForwardCursor.objects.get(pk=1).lease_owner == ""


def test_retry_delay_doubles_up_to_the_cap(settings, test_ca):
    settings.TELERAD = dataclasses.replace(settings.TELERAD, audit_syslog_host="127.0.0.1", audit_syslog_ca_file=test_ca.ca_file)
    background = forwarder.Forwarder(settings.TELERAD, max_retry_seconds=30)

    delays = []
    for failures in range(1, 9):
        background.failures = failures
        delays.append(background.retry_delay())

    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


@pytest.mark.django_db
def test_repeated_failures_are_logged_once(test_ca, forwarding_to, free_port, settings, caplog):
    forwarding_to(free_port, test_ca.ca_file)
    record_samples()
    background = forwarder.Forwarder(settings.TELERAD)

    with caplog.at_level(logging.WARNING, logger="telerad.audit.forwarder"):
        for _ in range(5):
            background._run_once()

    assert background.failures == 5
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"audit forwarding to 127.0.0.1:{free_port} failed" in warnings[0].getMessage()


def test_configuration_requires_a_ca_file(tmp_path):
    loaded = telerad_config.load({"TELERAD_DATA_DIR": str(tmp_path), "TELERAD_AUDIT_SYSLOG_HOST": "audit.example.org"})

    messages = [str(problem) for problem in loaded.problems]
    assert messages == ["TELERAD_AUDIT_SYSLOG_CA_FILE: missing; set it to the PEM file of the CA that signed the audit repository's certificate"]


def test_configuration_reports_bad_files(tmp_path):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate", encoding="utf-8")
    loaded = telerad_config.load({
        "TELERAD_DATA_DIR": str(tmp_path),
        "TELERAD_AUDIT_SYSLOG_HOST": "audit.example.org",
        "TELERAD_AUDIT_SYSLOG_PORT": "70000",
        "TELERAD_AUDIT_SYSLOG_CA_FILE": str(not_pem),
        "TELERAD_AUDIT_SYSLOG_CERTIFICATE": str(tmp_path / "missing.pem"),
    })

    messages = [str(problem) for problem in loaded.problems]
    assert any(message.startswith(f"TELERAD_AUDIT_SYSLOG_CA_FILE: {not_pem} contains no valid PEM certificate") for message in messages)
    assert any(message.startswith("TELERAD_AUDIT_SYSLOG_CERTIFICATE: set both") for message in messages)
    assert f"TELERAD_AUDIT_SYSLOG_CERTIFICATE: the file {tmp_path / 'missing.pem'} does not exist" in messages
    assert "TELERAD_AUDIT_SYSLOG_PORT: 70000 is out of range; use a number from 1 to 65535" in messages


def test_configuration_accepts_a_repository(tmp_path, test_ca):
    loaded = telerad_config.load({
        "TELERAD_DATA_DIR": str(tmp_path),
        "TELERAD_AUDIT_SYSLOG_HOST": "audit.example.org",
        "TELERAD_AUDIT_SYSLOG_CA_FILE": str(test_ca.ca_file),
    })

    assert loaded.problems == ()
    assert loaded.audit_forwarding
    assert loaded.audit_syslog_port == 6514
