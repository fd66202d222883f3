"""Notifications in telerad: the header's counter, the list, marking read, and the e-mail preferences."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from telerad.clinicians import notifications
from telerad.clinicians.models import EmailJob, EmailPreference, Notification, NotificationKind
from tests.clinicians.support import smtp_server, with_email  # noqa: F401 (fixture)
from tests.reading.reports_fixtures import client_for, create_exam, htmx_client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def clinician(make_user):
    return with_email(make_user("referrer", "clinician"))


def notify(user, accession: str = "ACC-N1", kind: NotificationKind = NotificationKind.CRITICAL_ACKNOWLEDGED) -> Notification:
    exam = create_exam(accession=accession)
    return notifications.notify(user, kind, exam=exam, text=f"Notice about accession {accession}.", link=f"/worklist/{exam.pk}/")


def test_header_shows_unread_count(clinician):
    notify(clinician, "ACC-N1")
    notify(clinician, "ACC-N2")

    page = client_for(clinician).get("/account/").content.decode()

    assert 'id="notification-badge"' in page
    assert 'hx-get="/notifications/badge/"' in page
    assert 'hx-trigger="every 15s"' in page
    assert "<mark>2<span" in page


def test_badge_fragment_follows_new_notifications(clinician):
    client = htmx_client_for(clinician)
    before = client.get("/notifications/badge/").content.decode()

    notify(clinician)
    after = client.get("/notifications/badge/").content.decode()

    assert "<mark>" not in before
    assert "<mark>1<span" in after
    assert "<html" not in after


def test_badge_counts_only_own_notifications(clinician, make_user):
    notify(make_user("someone-else", "clinician"))

    fragment = client_for(clinician).get("/notifications/badge/").content.decode()

    assert "<mark>" not in fragment


def test_list_shows_newest_first(clinician):
    notify(clinician, "ACC-OLD")
    notify(clinician, "ACC-NEW")

    page = client_for(clinician).get("/notifications/").content.decode()

    assert page.index("ACC-NEW") < page.index("ACC-OLD")
    assert "Mark all as read" in page


def test_list_fragment_for_htmx_polling(clinician):
    notify(clinician, "ACC-LIVE")

    fragment = htmx_client_for(clinician).get("/notifications/").content.decode()

    assert fragment.lstrip().startswith('<section id="notification-list"')
    assert "ACC-LIVE" in fragment
    assert "<html" not in fragment


def test_mark_one_read(clinician):
    first = notify(clinician, "ACC-A")
    second = notify(clinician, "ACC-B")

    response = client_for(clinician).post(f"/notifications/{first.pk}/read/")

    assert response.status_code == 303
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.read_at is not None
    assert second.read_at is None
    assert notifications.unread_count(clinician) == 1


def test_mark_read_with_htmx_returns_list(clinician):
    notice = notify(clinician, "ACC-H")

    response = htmx_client_for(clinician).post(f"/notifications/{notice.pk}/read/")

    assert response.status_code == 200
    assert 'id="notification-list"' in response.content.decode()
    notice.refresh_from_db()
    assert notice.read_at is not None


def test_mark_read_of_another_user_is_404(clinician, make_user):
    foreign = notify(make_user("someone-else", "clinician"))

    response = client_for(clinician).post(f"/notifications/{foreign.pk}/read/")

    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.read_at is None


def test_mark_all_read(clinician, make_user):
    notify(clinician, "ACC-1")
    notify(clinician, "ACC-2")
    foreign = notify(make_user("someone-else", "clinician"))

    client_for(clinician).post("/notifications/read-all/")

    assert notifications.unread_count(clinician) == 0
    foreign.refresh_from_db()
    assert foreign.read_at is None


def test_preferences_page_lists_choices(clinician):
    page = client_for(clinician).get("/notifications/preferences/").content.decode()

    assert 'name="critical-acknowledged"' in page
    assert 'name="critical-result"' not in page
    assert "Critical result to acknowledge" in page
    assert "referrer@example.org" in page


def test_preferences_turn_email_off_and_on(clinician, smtp_server):
    client = client_for(clinician)

    response = client.post("/notifications/preferences/", {})
    notify(clinician, "ACC-OFF")

    assert response.status_code == 303
    assert EmailPreference.objects.get(user=clinician, kind="critical-acknowledged").send_email is False
    assert not EmailJob.objects.exists()

    client.post("/notifications/preferences/", {"critical-acknowledged": "on"})
    notify(clinician, "ACC-ON")

    assert EmailJob.objects.get().exam.accession_number == "ACC-ON"


def test_critical_notices_are_always_emailed(clinician, smtp_server):
    client_for(clinician).post("/notifications/preferences/", {"critical-result": ""})
    EmailPreference.objects.create(user=clinician, kind="critical-result", send_email=False)

    notify(clinician, "ACC-CRIT", kind=NotificationKind.CRITICAL_RESULT)

    assert EmailJob.objects.get().kind == "critical-result"


def test_no_email_without_smtp_server(clinician):
    notify(clinician, "ACC-NOSMTP", kind=NotificationKind.CRITICAL_RESULT)

    assert Notification.objects.filter(recipient=clinician).count() == 1
    assert not EmailJob.objects.exists()


def test_no_email_without_address(make_user, smtp_server):
    user = make_user("no-address", "clinician")

    notify(user, kind=NotificationKind.CRITICAL_RESULT)

    assert Notification.objects.filter(recipient=user).count() == 1
    assert not EmailJob.objects.exists()


@pytest.mark.parametrize("path", ["/notifications/badge/", "/notifications/"])
def test_polling_does_not_renew_session(clinician, path):
    client = htmx_client_for(clinician)
    session_key = client.cookies["sessionid"].value
    Session.objects.filter(session_key=session_key).update(expire_date=timezone.now() + datetime.timedelta(minutes=3))

    response = client.get(path)

    assert response.status_code == 200
    assert "sessionid" not in response.cookies
    expiry = Session.objects.get(session_key=session_key).expire_date
    assert expiry < timezone.now() + datetime.timedelta(minutes=4)


def test_page_request_renews_session(clinician):
    client = client_for(clinician)
    session_key = client.cookies["sessionid"].value
    Session.objects.filter(session_key=session_key).update(expire_date=timezone.now() + datetime.timedelta(minutes=3))

    client.get("/notifications/")

    assert Session.objects.get(session_key=session_key).expire_date > timezone.now() + datetime.timedelta(minutes=20)
