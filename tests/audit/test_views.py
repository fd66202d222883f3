"""The auditor's pages: search, pagination, event page, CSV export, and who may open them."""

from __future__ import annotations

import csv
import datetime
import io
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django.http import StreamingHttpResponse
from django.template.loader import render_to_string
from django.test import Client, RequestFactory

from telerad.accounts.roles import Role
from telerad.audit import events
from telerad.audit.events import Action, Outcome
from telerad.audit.models import AuditEvent

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("enforced_permissions")]

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
OTHER_STUDY_UID = "1.2.826.0.1.3680043.8.498.2"


@pytest.fixture
def auditor(client, make_user):
    user = make_user("auditor", Role.AUDITOR)
    client.force_login(user)
    return user


def record_at(moment: datetime.datetime, **fields) -> AuditEvent:
    with mock.patch.object(events.timezone, "now", return_value=moment):
        return events.record_event(**fields)


def utc(*parts: int) -> datetime.datetime:
    return datetime.datetime(*parts, tzinfo=datetime.timezone.utc)


@pytest.fixture
def sample_events():
    """Five events of different users, patients, studies, actions, outcomes and days."""
    return [
        record_at(utc(2026, 3, 1, 8), action=Action.LOGIN, user="alice", address="10.0.0.5"),
        record_at(utc(2026, 3, 1, 9), action=Action.STUDY_VIEWED, user="alice", patient_id="P1", study_instance_uid=STUDY_UID),
        record_at(utc(2026, 3, 2, 9), action=Action.STUDY_VIEWED, user="bob", patient_id="P2", study_instance_uid=OTHER_STUDY_UID),
        record_at(utc(2026, 3, 3, 9), action=Action.LOGIN_FAILED, outcome=Outcome.MINOR_FAILURE, user="mallory"),
        record_at(utc(2026, 3, 4, 9), action=Action.RETRIEVE, user="MODALITY1", patient_id="P1", study_instance_uid=STUDY_UID),
    ]


def listed_sequences(response) -> list[int]:
    return [event.sequence for event, _action, _outcome in response.context["rows"]]


def read_csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body, newline="")))


def test_anonymous_is_sent_to_login(client):
    for url in ("/audit/", "/audit/1/", "/audit/export.csv"):
        response = client.get(url)

        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next=/audit/"), url


@pytest.mark.parametrize("role", [Role.RADIOLOGIST, Role.TECHNOLOGIST, Role.CLINICIAN, Role.ADMINISTRATOR, Role.IT])
def test_other_roles_are_forbidden(client, make_user, sample_events, role):
    client.force_login(make_user(f"user-{role.value}", role))

    for url in ("/audit/", f"/audit/{sample_events[0].sequence}/", "/audit/export.csv"):
        assert client.get(url).status_code == 403, url
    assert not AuditEvent.objects.filter(action__startswith="audit-").exists()


def test_user_without_role_is_forbidden(client, make_user):
    client.force_login(make_user("nobody"))

    assert client.get("/audit/").status_code == 403


def test_list_shows_newest_first(client, auditor, sample_events):
    response = client.get("/audit/")

    assert response.status_code == 200
    assert listed_sequences(response) == [5, 4, 3, 2, 1]
    assert "mallory" in response.content.decode()


def search(client: Client, fields: dict[str, str]):
    """Post the search form and follow its redirect, as a browser does."""
    return client.post("/audit/", fields, follow=True)


def search_key(client: Client, fields: dict[str, str]) -> str:
    """Post a valid search; return the key of its result pages."""
    location = client.post("/audit/", fields)["Location"]
    return parse_qs(urlsplit(location).query)["search"][0]


def export(client: Client, fields: dict[str, str]):
    return client.get("/audit/export.csv", {"search": search_key(client, fields)})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"user": "alice"}, [2, 1]),
        ({"patient_id": "P1"}, [5, 2]),
        ({"study_instance_uid": OTHER_STUDY_UID}, [3]),
        ({"action": Action.STUDY_VIEWED.value}, [3, 2]),
        ({"outcome": "4"}, [4]),
        ({"occurred_from": "2026-03-02T00:00:00"}, [5, 4, 3]),
        ({"occurred_to": "2026-03-01T09:00:00"}, [2, 1]),
        ({"occurred_from": "2026-03-02T00:00", "occurred_to": "2026-03-03T23:59:59"}, [4, 3]),
        ({"user": "alice", "action": Action.LOGIN.value}, [1]),
        ({"user": "nobody"}, []),
    ],
)
def test_search_filters(client, auditor, sample_events, query, expected):
    response = search(client, query)

    assert response.status_code == 200
    assert listed_sequences(response) == expected


def test_search_rejects_reversed_time_range(client, auditor, sample_events):
    response = search(client, {"occurred_from": "2026-03-05T00:00", "occurred_to": "2026-03-01T00:00"})

    assert response.status_code == 200
    assert "The start is after the end" in response.content.decode()
    assert response.context["page"] is None


def test_search_rejects_unknown_action(client, auditor):
    response = search(client, {"action": "no-such-action"})

    assert response.context["form"].errors["action"]


def test_pagination(client, auditor):
    for number in range(120):
        events.record_event(action=Action.QUERY, user="pacs", detail=f"query {number}")

    # Each request appends its own audit event, so the later ones filter by user.
    first = client.get("/audit/")
    key = search_key(client, {"user": "pacs"})
    second = client.get("/audit/", {"search": key, "page": "2"})
    third = client.get("/audit/", {"search": key, "page": "3"})

    assert listed_sequences(first) == list(range(120, 70, -1))
    assert listed_sequences(second) == list(range(70, 20, -1))
    assert listed_sequences(third) == list(range(20, 0, -1))
    assert third.context["page"].paginator.num_pages == 3
    assert f'href="?search={key}&amp;page=3"' in second.content.decode()


def test_search_is_audited(client, auditor, sample_events):
    client.get("/audit/", {"search": search_key(client, {"patient_id": "P1", "action": Action.RETRIEVE.value}), "page": "1"})

    recorded = AuditEvent.objects.order_by("-sequence").first()
    assert recorded.action == Action.AUDIT_SEARCHED
    assert recorded.user == "auditor"
    assert recorded.address == "127.0.0.1"
    assert recorded.patient_id == "P1"
    assert recorded.detail == "patient_id=P1; action=retrieve; page=1"


def test_search_without_criteria_is_audited(client, auditor):
    client.get("/audit/")

    recorded = AuditEvent.objects.get()
    assert recorded.action == Action.AUDIT_SEARCHED
    assert recorded.detail == "page=1"


def test_event_page(client, auditor, sample_events):
    response = client.get(f"/audit/{sample_events[1].sequence}/")

    content = response.content.decode()
    assert response.status_code == 200
    assert STUDY_UID in content
    assert sample_events[1].hash in content
    assert "The content matches its hash." in content


def test_event_page_is_audited(client, auditor, sample_events):
    client.get(f"/audit/{sample_events[1].sequence}/")

    recorded = AuditEvent.objects.order_by("-sequence").first()
    assert recorded.action == Action.AUDIT_EVENT_VIEWED
    assert recorded.detail == f"event {sample_events[1].sequence}"
    assert recorded.patient_id == "P1"
    assert recorded.study_instance_uid == STUDY_UID


def test_event_page_shows_altered_event(client, auditor, sample_events):
    AuditEvent.objects.filter(sequence=2).update(patient_id="SOMEONE-ELSE")

    response = client.get("/audit/2/")

    assert "this event was altered" in response.content.decode()


def test_event_page_of_missing_event(client, auditor):
    assert client.get("/audit/99/").status_code == 404


def test_export_is_streamed_csv(client, auditor, sample_events):
    response = client.get("/audit/export.csv")

    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="telerad-audit-')
    rows = read_csv(response)
    assert rows[0] == [
        "sequence", "time", "user", "address", "action", "outcome", "patient_id", "study_instance_uid", "detail", "other_patient_ids", "hash",
    ]
    assert [row[0] for row in rows[1:]] == ["1", "2", "3", "4", "5"]
    assert rows[1] == ["1", "2026-03-01T08:00:00.000000Z", "alice", "10.0.0.5", "login", "0", "", "", "", "", sample_events[0].hash]
    assert rows[4][5] == "4"


def test_export_applies_the_search(client, auditor, sample_events):
    response = export(client, {"patient_id": "P1"})

    rows = read_csv(response)
    assert [row[0] for row in rows[1:]] == ["2", "5"]
    assert {row[6] for row in rows[1:]} == {"P1"}


def test_export_leaves_out_its_own_event(client, auditor, sample_events):
    response = export(client, {"patient_id": "P1"})

    rows = read_csv(response)
    export_event = AuditEvent.objects.get(action=Action.AUDIT_EXPORTED)
    assert export_event.patient_id == "P1"
    assert str(export_event.sequence) not in [row[0] for row in rows[1:]]


def test_export_quotes_separators_quotes_and_newlines(client, auditor):
    detail = 'import finished: 3 files, 1 "unreadable"\nsecond line; done'
    events.record_event(action=Action.IMPORT, user="smith, j", detail=detail)

    response = client.get("/audit/export.csv")

    body = b"".join(response.streaming_content).decode("utf-8")
    assert '"smith, j"' in body
    assert '"import finished: 3 files, 1 ""unreadable""\nsecond line; done"' in body
    rows = list(csv.reader(io.StringIO(body, newline="")))
    assert rows[1][2] == "smith, j"
    assert rows[1][8] == detail


def test_export_is_audited(client, auditor, sample_events):
    response = export(client, {"user": "bob"})
    rows = read_csv(response)

    recorded = AuditEvent.objects.get(action=Action.AUDIT_EXPORTED)
    assert recorded.user == "auditor"
    assert recorded.detail == "CSV export; user=bob"
    assert [row[0] for row in rows[1:]] == ["3"]


def test_export_rejects_unknown_search(client, auditor):
    response = client.get("/audit/export.csv", {"search": "not-a-key"})

    assert response.status_code == 400
    assert "no longer available" in response.content.decode()
    assert not AuditEvent.objects.exists()


def test_search_address_names_no_patient(client, auditor):
    response = client.post("/audit/", {"patient_id": "P1", "study_instance_uid": STUDY_UID})

    assert response.status_code == 303
    assert "P1" not in response["Location"]
    assert STUDY_UID not in response["Location"]


def test_navigation_links_audit_for_auditors_only(make_user):
    request = RequestFactory().get("/")

    request.user = make_user("reader", Role.AUDITOR)
    auditor_page = render_to_string("base.html", {}, request)
    request.user = make_user("doctor", Role.RADIOLOGIST)
    radiologist_page = render_to_string("base.html", {}, request)

    assert 'href="/audit/"' in auditor_page
    assert 'href="/audit/"' not in radiologist_page
