"""The study list and the study page, as logged-in users and anonymous visitors see them."""

from __future__ import annotations

import dataclasses
import io
import re
from html.parser import HTMLParser

import pydicom
import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pydicom.uid import generate_uid

from telerad.archive.ingest import Outcome, Source, store_file
from telerad.archive.models import Study
from telerad.archive.templatetags.dicom_format import dicom_date, dicom_time, person_name, uid_name
from telerad.audit.events import Action
from telerad.audit.models import AuditEvent
from telerad.core.searches import SEARCHES_KEPT
from telerad.reading.models import Exam, ExamStudy

PASSWORD = "correct horse battery staple"
LIST_URL = reverse("archive:study-list")

# Real sample files and what they contain (pydicom's test and charset files).
CT = "CT_small.dcm"  # CompressedSamples^CT1, ID 1CT1, study date 20040119
MR = "MR_small.dcm"  # CompressedSamples^MR1, ID 4MR1, study date 20040826
OVERLAY = "examples_overlay.dcm"  # ID 021234567, accession 8000000000330109, study date 20051130
FRENCH = "chrFren.dcm"  # Buc^Jérôme in ISO_IR 100, no study date
JAPANESE = "chrH31.dcm"  # Yamada^Tarou=山田^太郎=やまだ^たろう in ISO 2022 IR 87


@pytest.fixture
def store(sample_file, storage):
    """Store a named sample file through ingest and return its study row."""

    def store_sample(name: str) -> Study:
        result = store_file(sample_file(name).read_bytes(), source=Source(kind="import"), storage=storage)
        assert result.outcome is Outcome.STORED, result.reason
        return Study.objects.get(study_instance_uid=result.study_instance_uid)

    return store_sample


@pytest.fixture
def store_copy(sample_file, storage):
    """Store a sample file as a new study with new UIDs and the given attributes."""

    def store_modified(name: str, **attributes: str) -> Study:
        dataset = pydicom.dcmread(sample_file(name))
        dataset.StudyInstanceUID = generate_uid()
        dataset.SeriesInstanceUID = generate_uid()
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        for keyword, value in attributes.items():
            setattr(dataset, keyword, value)
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        result = store_file(buffer.getvalue(), source=Source(kind="import"), storage=storage)
        assert result.outcome is Outcome.STORED, result.reason
        return Study.objects.get(study_instance_uid=result.study_instance_uid)

    return store_modified


@pytest.fixture
def plain_user(make_user) -> User:
    return make_user("reader", "radiologist", password=PASSWORD)


@pytest.fixture
def user_client(plain_user) -> Client:
    client = Client()
    client.force_login(plain_user)
    return client


def listed_uids(response) -> list[str]:
    return [study.study_instance_uid for study in response.context["page"].object_list]


def post_search(client: Client, fields: dict[str, str]):
    """Post the search form and follow its redirect, as a browser does."""
    return client.post(LIST_URL, fields, follow=True)


def search(client: Client, **fields: str) -> list[str]:
    response = post_search(client, fields)
    assert response.status_code == 200
    return listed_uids(response)


class _IdCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.described_by: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"])
        if values.get("aria-describedby") and values.get("name"):
            self.described_by[values["name"]] = values["aria-describedby"].split()


def parse_ids(response) -> _IdCollector:
    """Collect the page's element ids and, per form input, the ids its aria-describedby refers to."""
    collector = _IdCollector()
    collector.feed(response.content.decode())
    return collector


def element_text(response, element_id: str) -> str:
    """Return the text inside the element with `element_id`, tags removed and whitespace collapsed."""
    match = re.search(rf'<(\w+)[^>]* id="{element_id}"[^>]*>(.*?)</\1>', response.content.decode(), re.DOTALL)
    assert match, f"no element with id {element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(2)).split())


# Access


@pytest.mark.django_db
def test_list_redirects_anonymous_to_login(client):
    response = client.get(LIST_URL)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={LIST_URL}"


def test_study_page_redirects_anonymous_to_login(client, db, store):
    study = store(CT)
    url = reverse("archive:study-detail", args=[study.pk])

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_login_page_extends_base_layout(client, db):
    response = client.get(reverse("login"))

    assert response.status_code == 200
    assert [template.name for template in response.templates][:2] == ["registration/login.html", "base.html"]
    assert b'<label for="id_username">' in response.content
    assert b'<label for="id_password">' in response.content


def test_login_leads_to_study_list(client, make_user, settings):
    # With two-factor login off, the password completes the login.
    # tests/accounts covers the second step. Readers land on the worklist
    # instead, so this test signs in a technologist, who sees studies only.
    settings.TELERAD = dataclasses.replace(settings.TELERAD, two_factor_required=False)
    make_user("tech", "technologist", password=PASSWORD)
    response = client.post(reverse("login"), {"username": "tech", "password": PASSWORD}, follow=True)

    assert response.redirect_chain == [(reverse("home"), 302), (LIST_URL, 302)]


def test_login_with_wrong_password_shows_error(client, plain_user):
    response = client.post(reverse("login"), {"username": "reader", "password": "wrong password"})

    assert response.status_code == 200
    assert b'role="alert"' in response.content


def test_logout_is_a_post_form_in_header(user_client):
    response = user_client.get(LIST_URL)

    assert f'<form method="post" action="{reverse("logout")}"'.encode() in response.content
    assert user_client.post(reverse("logout")).status_code == 302
    assert user_client.get(LIST_URL).status_code == 302


# The study list


def test_list_shows_studies_newest_first(user_client, store):
    ct, mr, overlay, french = store(CT), store(MR), store(OVERLAY), store(FRENCH)

    response = user_client.get(LIST_URL)

    assert response.status_code == 200
    # A study without a date sorts after every dated one.
    assert listed_uids(response) == [uid.study_instance_uid for uid in (overlay, mr, ct, french)]


def test_list_orders_same_date_by_time_then_id(user_client, store_copy):
    morning = store_copy(CT, StudyDate="20200101", StudyTime="080000")
    evening_first = store_copy(CT, StudyDate="20200101", StudyTime="200000")
    evening_second = store_copy(CT, StudyDate="20200101", StudyTime="200000")

    assert search(user_client) == [
        evening_second.study_instance_uid,
        evening_first.study_instance_uid,
        morning.study_instance_uid,
    ]


def test_list_row_shows_study_columns(user_client, store):
    study = store(CT)

    response = user_client.get(LIST_URL)
    content = response.content.decode()

    assert f'href="{reverse("archive:study-detail", args=[study.pk])}"' in content
    assert "CompressedSamples, CT1" in content
    assert "<td>1CT1</td>" in content
    assert "2004-01-19 07:27:30</td>" in content
    assert "<td>CT</td>" in content
    assert '<td class="numeric">1</td>' in content


def test_list_shows_readable_ideographic_name(user_client, store):
    store(JAPANESE)

    response = user_client.get(LIST_URL)

    assert "Yamada, Tarou (山田 太郎)" in response.content.decode()


def test_list_query_count_independent_of_rows(user_client, store):
    store(CT)
    user_client.get(LIST_URL)  # creates the audit chain head, which costs one more query
    with CaptureQueriesContext(connection) as one_row:
        user_client.get(LIST_URL)
    for name in (MR, OVERLAY, FRENCH, JAPANESE):
        store(name)

    with CaptureQueriesContext(connection) as five_rows:
        response = user_client.get(LIST_URL)

    assert len(response.context["page"].object_list) == 5
    assert len(five_rows.captured_queries) == len(one_row.captured_queries)


# Searching


def test_name_search_ignores_accents_and_case(user_client, store):
    french, ct = store(FRENCH), store(CT)

    assert search(user_client, patient_name="jerome") == [french.study_instance_uid]
    assert search(user_client, patient_name="JÉRÔME") == [french.study_instance_uid]
    assert search(user_client, patient_name="BUC") == [french.study_instance_uid]
    assert ct.study_instance_uid not in search(user_client, patient_name="jerome")


def test_name_search_matches_word_prefixes(user_client, store):
    ct, mr = store(CT), store(MR)

    assert search(user_client, patient_name="compressed") == [mr.study_instance_uid, ct.study_instance_uid]
    assert search(user_client, patient_name="ct") == [ct.study_instance_uid]
    # "samples" is inside a word, not at its start.
    assert search(user_client, patient_name="samples") == []


def test_name_search_supports_wildcards(user_client, store):
    ct, mr = store(CT), store(MR)

    assert search(user_client, patient_name="*samples*") == [mr.study_instance_uid, ct.study_instance_uid]
    assert search(user_client, patient_name="*^?t1") == [ct.study_instance_uid]


def test_name_search_accepts_readable_form(user_client, store):
    french = store(FRENCH)
    store(CT)

    assert search(user_client, patient_name="Buc, Jérôme") == [french.study_instance_uid]
    assert search(user_client, patient_name="buc, jer") == [french.study_instance_uid]


def test_name_search_matches_ideographic_group(user_client, store):
    japanese = store(JAPANESE)
    store(FRENCH)

    assert search(user_client, patient_name="山田") == [japanese.study_instance_uid]
    assert search(user_client, patient_name="太郎") == [japanese.study_instance_uid]
    assert search(user_client, patient_name="tarou") == [japanese.study_instance_uid]


def test_name_search_escapes_like_characters(user_client, store_copy):
    percent = store_copy(CT, PatientID="P1", PatientName="100%^Sure")
    store_copy(CT, PatientID="P2", PatientName="1000^Sure")
    underscore = store_copy(CT, PatientID="P3", PatientName="A_B^C")
    store_copy(CT, PatientID="P4", PatientName="AXB^C")

    assert search(user_client, patient_name="100%") == [percent.study_instance_uid]
    assert search(user_client, patient_name="a_b") == [underscore.study_instance_uid]


def test_patient_id_search_is_exact(user_client, store):
    ct, mr = store(CT), store(MR)

    assert search(user_client, patient_id="1CT1") == [ct.study_instance_uid]
    assert search(user_client, patient_id="1ct1") == []
    assert search(user_client, patient_id="1CT") == []
    assert search(user_client, patient_id="4MR*") == [mr.study_instance_uid]
    assert search(user_client, patient_id="4mr*") == []
    assert search(user_client, patient_id="?CT?") == [ct.study_instance_uid]


def test_accession_search_narrows_list(user_client, store):
    overlay = store(OVERLAY)
    store(CT)

    assert search(user_client, accession_number="8000000000330109") == [overlay.study_instance_uid]
    assert search(user_client, accession_number="8000*") == [overlay.study_instance_uid]
    assert search(user_client, accession_number="800000000033010") == []


def test_date_range_search_narrows_list(user_client, store):
    ct, mr, overlay = store(CT), store(MR), store(OVERLAY)
    store(FRENCH)

    in_2004 = search(user_client, study_date_from="2004-01-01", study_date_to="2004-12-31")
    assert in_2004 == [mr.study_instance_uid, ct.study_instance_uid]
    assert search(user_client, study_date_from="2004-08-26") == [overlay.study_instance_uid, mr.study_instance_uid]
    assert search(user_client, study_date_to="2004-01-19") == [ct.study_instance_uid]
    assert search(user_client, study_date_from="2004-01-19", study_date_to="2004-01-19") == [ct.study_instance_uid]


def test_date_inputs_are_date_fields(user_client, db):
    response = post_search(user_client, {"study_date_from": "2004-01-01"})
    content = response.content.decode()

    assert 'type="date" name="study_date_from" value="2004-01-01"' in content
    assert 'type="date" name="study_date_to"' in content


def test_reversed_date_range_shows_error(user_client, store):
    store(CT)

    response = post_search(user_client, {"study_date_from": "2005-01-01", "study_date_to": "2004-01-01"})

    assert response.status_code == 200
    assert response.context["page"] is None
    assert response.context["form"].errors["study_date_from"] == ["The start date is after the end date. Swap the two dates."]
    assert element_text(response, "id_study_date_from_error") == "The start date is after the end date. Swap the two dates."
    assert 'aria-invalid="true"' in response.content.decode()
    assert parse_ids(response).described_by["study_date_from"] == ["id_study_date_from_error"]


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"study_date_from": "2005-01-01", "study_date_to": "2004-01-01"}, "study_date_from"),
        ({"study_date_from": "2004-13-45"}, "study_date_from"),
        ({"study_date_to": "yesterday"}, "study_date_to"),
        ({"accession_number": "1" * 17}, "accession_number"),
    ],
)
def test_field_error_ids_exist(user_client, db, fields, field_name):
    response = post_search(user_client, fields)
    page = parse_ids(response)

    described_by = page.described_by[field_name]
    assert f"id_{field_name}_error" in described_by
    for element_id in described_by:
        assert element_id in page.ids, f"aria-describedby of {field_name} names missing id {element_id}"


def test_search_without_match_says_so(user_client, store):
    store(CT)

    response = post_search(user_client, {"patient_id": "NO-SUCH-ID"})
    content = response.content.decode()

    assert response.status_code == 200
    assert listed_uids(response) == []
    assert "0 studies" in content
    assert "No studies match this search." in content
    assert "No studies are stored yet." not in content
    assert "<table" not in content


def test_empty_archive_says_nothing_stored(user_client, db):
    response = user_client.get(LIST_URL)
    content = response.content.decode()

    assert response.status_code == 200
    assert "0 studies" in content
    assert "No studies are stored yet." in content
    assert "No studies match this search." not in content


def test_empty_archive_with_blank_form(user_client, db):
    blank_form = {"patient_name": "", "patient_id": "", "accession_number": "", "study_date_from": "", "study_date_to": ""}

    content = post_search(user_client, blank_form).content.decode()

    assert "No studies are stored yet." in content
    assert "No studies match this search." not in content


def test_empty_archive_with_search(user_client, db):
    content = post_search(user_client, {"patient_name": "Buc"}).content.decode()

    assert "0 studies" in content
    assert "No studies match this search." in content
    assert "No studies are stored yet." not in content


def test_combined_fields_all_apply(user_client, store):
    ct = store(CT)
    store(MR)

    assert search(user_client, patient_name="compressed", study_date_to="2004-06-30") == [ct.study_instance_uid]
    assert search(user_client, patient_name="compressed", patient_id="4MR1", study_date_to="2004-06-30") == []


# Pagination


def test_list_pages_hold_fifty_studies(user_client, store_copy):
    uids = [store_copy(CT, StudyDate=f"2020{month:02d}{day:02d}").study_instance_uid for month in (1, 2, 3) for day in range(1, 18)]
    newest_first = list(reversed(uids))

    first = user_client.get(LIST_URL)
    second = user_client.get(LIST_URL, {"page": 2})

    assert listed_uids(first) == newest_first[:50]
    assert listed_uids(second) == newest_first[50:]
    assert b'href="?page=2"' in first.content
    assert b'aria-current="page">2</a>' in second.content


def test_page_links_keep_search(user_client, store_copy):
    for day in range(1, 52):
        store_copy(CT, StudyDate=f"202001{day % 28 + 1:02d}")

    response = post_search(user_client, {"patient_id": "1CT1"})

    key = response.request["QUERY_STRING"].removeprefix("search=")
    assert f'href="?search={key}&amp;page=2"'.encode() in response.content
    assert b"1CT1" not in response.request["QUERY_STRING"].encode()


def test_page_number_out_of_range_shows_last_page(user_client, store):
    ct = store(CT)

    assert listed_uids(user_client.get(LIST_URL, {"page": "7"})) == [ct.study_instance_uid]
    assert listed_uids(user_client.get(LIST_URL, {"page": "last"})) == [ct.study_instance_uid]


def test_search_address_names_no_patient(user_client, store):
    store(CT)

    response = user_client.post(LIST_URL, {"patient_name": "CompressedSamples", "patient_id": "1CT1"})

    assert response.status_code == 303
    location = response["Location"]
    assert location.startswith(LIST_URL + "?search=")
    assert "1CT1" not in location
    assert "Compressed" not in location


def test_unknown_search_key_returns_to_list(user_client, db):
    response = user_client.get(LIST_URL, {"search": "not-a-key"}, follow=True)

    assert response.redirect_chain == [(LIST_URL, 302)]
    assert "no longer available" in response.content.decode()


def test_search_key_of_another_session_is_unknown(user_client, plain_user, store):
    store(CT)
    location = user_client.post(LIST_URL, {"patient_id": "1CT1"})["Location"]
    other = Client()
    other.force_login(plain_user)

    response = other.get(location)

    assert response.status_code == 302
    assert response["Location"] == LIST_URL


def test_session_keeps_recent_searches_only(user_client, db):
    locations = [user_client.post(LIST_URL, {"patient_id": f"ID{number}"})["Location"] for number in range(SEARCHES_KEPT + 1)]

    assert user_client.get(locations[0]).status_code == 302
    assert user_client.get(locations[-1]).status_code == 200


# The study page


def test_study_page_links_exam_details(make_user, store):
    study = store(MR)
    exam = Exam.objects.create(patient=study.patient, accession_number="ACC7", modalities="MR", study_received_at=timezone.now())
    ExamStudy.objects.create(exam=exam, study=study)
    technologist = Client()
    technologist.force_login(make_user("technologist", "technologist"))

    content = technologist.get(reverse("archive:study-detail", args=[study.pk])).content.decode()

    assert f'href="{reverse("reading:exam-details", args=[exam.pk])}"' in content
    assert technologist.get(reverse("reading:exam-details", args=[exam.pk])).status_code == 200


def test_study_without_exam_has_no_details_link(user_client, store):
    study = store(MR)

    content = user_client.get(reverse("archive:study-detail", args=[study.pk])).content.decode()

    assert re.search(r'href="/worklist/\d+/details"', content) is None


def test_study_page_shows_series_and_instances(user_client, store):
    study = store(MR)

    response = user_client.get(reverse("archive:study-detail", args=[study.pk]))
    content = response.content.decode()

    assert response.status_code == 200
    assert "CompressedSamples, MR1" in content
    assert "4MR1" in content
    assert "MR Image Storage" in content
    assert "Explicit VR Little Endian" in content
    assert "64 × 64" in content
    assert study.series.get().series_instance_uid in content


def test_study_page_lists_instances_by_number(user_client, store, storage, sample_file):
    study = store(CT)
    series_uid = study.series.get().series_instance_uid
    for number in ("3", "2"):
        dataset = pydicom.dcmread(sample_file(CT))
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.InstanceNumber = number
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        assert store_file(buffer.getvalue(), source=Source(kind="import"), storage=storage).outcome is Outcome.STORED

    response = user_client.get(reverse("archive:study-detail", args=[study.pk]))

    [series] = response.context["series_list"]
    assert series.series_instance_uid == series_uid
    assert [instance.instance_number for instance in series.instances.all()] == [1, 2, 3]


def test_study_page_shows_multiframe_and_file_size(user_client, store, sample_file):
    study = store("SC_rgb_rle_2frame.dcm")

    response = user_client.get(reverse("archive:study-detail", args=[study.pk]))
    content = response.content.decode()

    assert "Secondary Capture Image Storage" in content
    assert "RLE Lossless" in content
    assert '<td class="numeric">2</td>' in content
    size = sample_file("SC_rgb_rle_2frame.dcm").stat().st_size
    assert f"{size / 1024:.1f}\xa0KB" in content


def test_series_heading_with_description(user_client, store_copy):
    study = store_copy(MR, SeriesDescription="Chest PA")
    series = study.series.get()

    response = user_client.get(reverse("archive:study-detail", args=[study.pk]))

    assert element_text(response, f"series-{series.pk}-heading") == "Series 1 (MR): Chest PA"


def test_series_heading_without_description(user_client, store):
    study = store(MR)
    series = study.series.get()

    response = user_client.get(reverse("archive:study-detail", args=[study.pk]))

    assert element_text(response, f"series-{series.pk}-heading") == "Series 1 (MR)"


def test_unknown_study_gives_404(user_client, db):
    response = user_client.get(reverse("archive:study-detail", args=[999999]))

    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action=Action.STUDY_VIEWED).exists()


def test_unknown_study_shows_404_page(user_client, db):
    response = user_client.get(reverse("archive:study-detail", args=[999999]))
    content = response.content.decode()

    assert response.status_code == 404
    assert [template.name for template in response.templates][:2] == ["404.html", "base.html"]
    assert "<h1>Page not found</h1>" in content
    assert f'href="{LIST_URL}"' in content
    # Django's message for get_object_or_404 names the model.
    assert "No Study matches" not in content
    assert "999999" not in content


def test_unknown_address_shows_404_page(client, db):
    response = client.get("/no-such-page/")
    content = response.content.decode()

    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in content
    assert "no-such-page" not in content
    assert "Log out" not in content


# Layout


def test_base_layout_links_svg_favicon(user_client, db):
    content = user_client.get(LIST_URL).content.decode()

    assert '<link rel="icon" href="/static/core/favicon.svg" type="image/svg+xml">' in content
    assert finders.find("core/favicon.svg") is not None


def test_list_abbreviated_heading_keeps_full_name(user_client, store):
    store(CT)

    content = user_client.get(LIST_URL).content.decode()

    assert '<abbr title="Instances" aria-hidden="true">Inst.</abbr><span class="visually-hidden">Instances</span>' in content


# Audit


def test_study_page_writes_audit_event(user_client, store):
    study = store(CT)

    user_client.get(reverse("archive:study-detail", args=[study.pk]), REMOTE_ADDR="192.0.2.7")

    event = AuditEvent.objects.get(action=Action.STUDY_VIEWED)
    assert event.user == "reader"
    assert event.address == "192.0.2.7"
    assert event.patient_id == "1CT1"
    assert event.study_instance_uid == study.study_instance_uid
    assert event.outcome == 0


def test_list_writes_audit_event_with_search(user_client, store):
    store(CT)

    user_client.post(
        LIST_URL,
        {"patient_name": "Compressed", "patient_id": "1CT1", "accession_number": "A7", "study_date_from": "2004-01-01"},
        REMOTE_ADDR="192.0.2.8",
        follow=True,
    )

    event = AuditEvent.objects.get(action=Action.STUDY_LIST_VIEWED)
    assert event.user == "reader"
    assert event.address == "192.0.2.8"
    assert "patient_id=1CT1" in event.detail
    assert "accession_number=A7" in event.detail
    assert "study_date=20040101-" in event.detail
    assert "page=1" in event.detail


def test_list_audit_event_omits_searched_name(user_client, store):
    store(FRENCH)

    post_search(user_client, {"patient_name": "Jérôme"})

    event = AuditEvent.objects.get(action=Action.STUDY_LIST_VIEWED)
    assert "patient_name=(not recorded)" in event.detail
    assert "rôme" not in event.detail.lower()
    assert "rome" not in event.detail.lower()


def test_list_without_search_writes_audit_event(user_client, db):
    user_client.get(LIST_URL)

    assert AuditEvent.objects.get(action=Action.STUDY_LIST_VIEWED).detail == "page=1"


# Display filters


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("Buc^Jérôme", "Buc, Jérôme"),
        ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada, Tarou (山田 太郎)"),
        ("=山田^太郎", "山田 太郎"),
        ("==やまだ^たろう", "やまだ たろう"),
        ("Adams^John Robert Quincy^^Rev.^B.A. M.Div.", "Adams, Rev. John Robert Quincy, B.A. M.Div."),
        ("Anonymized", "Anonymized"),
        ("OB^^^^", "OB"),
        ("^^^^", ""),
        ("", ""),
    ],
)
def test_person_name_filter(value, shown):
    assert person_name(value) == shown


def test_date_and_time_filters():
    assert dicom_date("20040119") == "2004-01-19"
    assert dicom_date("2004") == "2004"
    assert dicom_time("072730") == "07:27:30"
    assert dicom_time("093431.70") == "09:34:31"
    assert dicom_time("1804") == "18:04"
    assert dicom_time("7") == "7"


def test_uid_name_filter():
    assert uid_name("1.2.840.10008.5.1.4.1.1.2") == "CT Image Storage"
    assert uid_name("1.2.840.10008.1.2.4.50") == "JPEG Baseline (Process 1)"
    assert uid_name("1.2.3.4") == "1.2.3.4"

