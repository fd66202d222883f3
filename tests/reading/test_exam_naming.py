"""How reading pages and messages name exams and patients: by accession number, without stray separators."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from telerad.archive.models import Patient
from telerad.reading import claims
from telerad.reading.worklist import exam_reference
from tests.reading.exam_factory import make_exam

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def render_join(template_arguments: str, **context) -> str:
    return Template("{% load reading_format %}{% join_nonempty " + template_arguments + " %}").render(Context(context))


def page_messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def test_join_nonempty_skips_empty_parts():
    assert render_join("a b c", a="Doe, Peter", b="", c="Male") == "Doe, Peter · Male"
    assert render_join("a b c", a="", b=None, c="  ") == ""
    assert render_join("a b", a="98890234", b="1970-01-01") == "98890234 · 1970-01-01"


def test_join_nonempty_separator_argument():
    assert render_join('a b separator=", "', a="CT", b="MR") == "CT, MR"


def test_join_nonempty_escapes_unsafe_parts():
    assert render_join("a b", a="<b>", b=mark_safe("<i>x</i>")) == "&lt;b&gt; · <i>x</i>"


def test_join_nonempty_formats_filtered_parts():
    rendered = Template(
        "{% load reading_format dicom_format %}{% join_nonempty id birth|dicom_date sex|patient_sex %}"
    ).render(Context({"id": "CQ500-CT-310", "birth": "", "sex": ""}))

    assert rendered == "CQ500-CT-310"


def test_exam_reference_names_accession_number():
    exam = make_exam(accession="1")

    assert exam_reference(exam) == "accession number 1"


def test_exam_reference_without_accession_number():
    exam = make_exam(accession="", description="CT head")
    received = timezone.localtime(exam.study_received_at).strftime("%Y-%m-%d %H:%M")

    assert exam_reference(exam) == f"no accession number, received {received}"


def test_release_message_names_accession_number(make_user):
    reader = make_user("ada", "radiologist")
    make_exam(accession="OTHER")
    exam = make_exam(accession="1")
    claims.claim(exam.pk, reader)

    response = client_for(reader).post(reverse("reading:release", args=[exam.pk]))

    assert page_messages(response) == ["The exam (accession number 1) is back on the worklist for anyone to claim."]


def test_release_message_without_accession_number(make_user):
    reader = make_user("ada", "radiologist")
    exam = make_exam(accession="", description="MR knee")
    claims.claim(exam.pk, reader)

    response = client_for(reader).post(reverse("reading:release", args=[exam.pk]))

    [message] = page_messages(response)
    assert message.startswith("The exam (no accession number, received ")
    assert message.endswith(") is back on the worklist for anyone to claim.")


def test_reassign_message_names_accession_number(make_user):
    lead = make_user("lead", "lead-radiologist")
    resident = make_user("resident", "resident")
    exam = make_exam(accession="134")

    response = client_for(lead).post(reverse("reading:reassign", args=[exam.pk]), {"reader": resident.pk})

    assert page_messages(response) == ["The exam (accession number 134) is now claimed by resident."]


def test_exam_page_title_names_accession_number(make_user):
    exam = make_exam(accession="1")

    page = client_for(make_user("ada", "radiologist")).get(reverse("reading:exam", args=[exam.pk])).content.decode()

    assert "<title>Exam (accession number 1) · telerad</title>" in page


def test_exam_page_header_leaves_out_empty_fields(make_user):
    exam = make_exam(patient_id="98890234", patient_name="Doe^Peter")
    Patient.objects.filter(pk=exam.patient_id).update(patient_sex="M", patient_birth_date="")

    page = client_for(make_user("ada", "radiologist")).get(reverse("reading:exam", args=[exam.pk])).content.decode()

    assert "<small>98890234 · Male</small>" in page
    assert "· ·" not in page


def test_details_page_header_names_accession_number(make_user):
    exam = make_exam(patient_id="CQ500-CT-310", patient_name="CQ500-CT-310", accession="A-7")

    page = client_for(make_user("ada", "radiologist")).get(reverse("reading:exam-details", args=[exam.pk])).content.decode()

    assert "<small>CQ500-CT-310 · CQ500-CT-310 · accession number A-7</small>" in page
    assert "<title>Details of the exam (accession number A-7) · telerad</title>" in page
