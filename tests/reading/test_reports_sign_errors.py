"""Rejected signatures: the message beside the sign form and the password field, where the focus goes, and the text that stays."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser

import pytest

from telerad.reading.models import SignedReport
from tests.reading.reports_fixtures import PASSWORD, client_for, create_exam
from tests.reading.reports_fixtures import exam, radiologist  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

FINDINGS = "A 6 mm nodule in the left upper lobe."
IMPRESSION = "Indeterminate pulmonary nodule."
VOID_ELEMENTS = {"input", "br", "img", "link", "meta", "hr", "source", "col", "area", "base", "wbr", "embed", "track", "param"}


@dataclasses.dataclass
class Element:
    tag: str
    attributes: dict[str, str]
    # Indexes of the enclosing elements in Markup.elements, outermost first.
    ancestors: tuple[int, ...]
    text: str = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attributes.get("class", "").split())


class Markup(HTMLParser):
    """Every element of a page in document order, with its attributes, enclosing elements and own text."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.elements.append(Element(tag, {name: value or "" for name, value in attrs}, tuple(self._open)))
        if tag not in VOID_ELEMENTS:
            self._open.append(len(self.elements) - 1)

    def handle_endtag(self, tag):
        for depth in range(len(self._open) - 1, -1, -1):
            if self.elements[self._open[depth]].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data):
        for index in self._open:
            self.elements[index].text += data

    def by_id(self, element_id: str) -> tuple[int, Element]:
        matches = [(index, element) for index, element in enumerate(self.elements) if element.attributes.get("id") == element_id]
        assert len(matches) == 1, f"{len(matches)} elements have the id {element_id!r}"
        return matches[0]

    def alerts(self) -> list[tuple[int, Element]]:
        return [(index, element) for index, element in enumerate(self.elements) if element.attributes.get("role") == "alert"]

    def enclosing(self, index: int, css_class: str) -> int | None:
        """Return the index of the innermost element around `index` with `css_class`, or None."""
        for ancestor in reversed(self.elements[index].ancestors):
            if css_class in self.elements[ancestor].classes:
                return ancestor
        return None


def sign_from_exam_page(exam, user, **fields):
    """Post the embedded editor's sign form as htmx does on the exam page."""
    data = {"revision": "0", "section-findings": FINDINGS, "section-impression": IMPRESSION, "password": PASSWORD, **fields}
    headers = {"HX-Request": "true", "HX-Current-URL": f"https://127.0.0.1/worklist/{exam.pk}/"}
    return client_for(user).post(f"/reports/exams/{exam.pk}/sign/", data, headers=headers)


def test_wrong_password_message_beside_password(exam, radiologist):
    response = sign_from_exam_page(exam, radiologist, password="not the password")

    assert response.status_code == 403
    markup = Markup(response.content.decode())
    alerts = markup.alerts()
    assert len(alerts) == 1
    alert_index, alert = alerts[0]
    assert "The password is not correct, so the report was not signed." in alert.text
    password_index, password = markup.by_id(f"sign-password-{exam.pk}")
    assert markup.enclosing(alert_index, "report-sign") is not None
    assert markup.enclosing(alert_index, "report-sign") == markup.enclosing(password_index, "report-sign")
    assert alert_index < password_index
    assert "textarea" not in {element.tag for element in markup.elements[alert_index:password_index]}


def test_wrong_password_focuses_password_field(exam, radiologist):
    response = sign_from_exam_page(exam, radiologist, password="not the password")

    markup = Markup(response.content.decode())
    _index, password = markup.by_id(f"sign-password-{exam.pk}")
    assert "autofocus" in password.attributes
    assert password.attributes["aria-invalid"] == "true"
    assert password.attributes["aria-describedby"] == f"sign-error-{exam.pk}"
    _index, error = markup.by_id(f"sign-error-{exam.pk}")
    assert error.attributes["role"] == "alert"
    autofocused = [element for element in markup.elements if "autofocus" in element.attributes]
    assert len(autofocused) == 1


def test_wrong_password_keeps_text_and_choice(exam, radiologist, make_user):
    exam.referring_clinician = make_user("referrer", "clinician")
    exam.save(update_fields=["referring_clinician"])

    response = sign_from_exam_page(exam, radiologist, password="not the password", critical="on")

    markup = Markup(response.content.decode())
    textareas = {element.attributes["name"]: element.text for element in markup.elements if element.tag == "textarea"}
    assert textareas["section-findings"] == FINDINGS
    assert textareas["section-impression"] == IMPRESSION
    _index, box = markup.by_id(f"sign-critical-{exam.pk}")
    assert "checked" in box.attributes
    _index, password = markup.by_id(f"sign-password-{exam.pk}")
    assert "value" not in password.attributes
    _index, form = markup.by_id(f"report-form-{exam.pk}")
    assert form.attributes["data-unsaved"] == "true"
    assert not SignedReport.objects.exists()


def test_missing_confirmation_beside_password(exam, radiologist):
    response = sign_from_exam_page(exam, radiologist, password="", code="")

    markup = Markup(response.content.decode())
    assert response.status_code == 403
    _index, password = markup.by_id(f"sign-password-{exam.pk}")
    assert password.attributes["aria-describedby"] == f"sign-error-{exam.pk}"
    _index, error = markup.by_id(f"sign-error-{exam.pk}")
    assert "Enter your password or a code from your authenticator app to sign." in error.text


def test_rejected_critical_message_beside_sign_form(radiologist):
    exam = create_exam(accession="ACC-NOBODY", claimed_by=radiologist)

    response = sign_from_exam_page(exam, radiologist, critical="on")

    assert response.status_code == 409
    markup = Markup(response.content.decode())
    _index, error = markup.by_id(f"sign-error-{exam.pk}")
    assert "Nobody would receive this critical result" in error.text
    _index, password = markup.by_id(f"sign-password-{exam.pk}")
    assert "autofocus" in password.attributes
    # The password was right, so the field is not marked invalid.
    assert "aria-invalid" not in password.attributes


def test_error_without_sign_form_shows_at_top(exam, radiologist, make_user):
    other = make_user("other", "radiologist")
    exam.claimed_by = other
    exam.save(update_fields=["claimed_by"])

    response = sign_from_exam_page(exam, radiologist)

    assert response.status_code == 403
    markup = Markup(response.content.decode())
    alerts = markup.alerts()
    assert len(alerts) == 1
    assert "other is reading this exam" in alerts[0][1].text
    assert [element for element in markup.elements if element.attributes.get("id") == f"sign-password-{exam.pk}"] == []


def test_addendum_error_beside_addendum_password(exam, radiologist):
    sign_from_exam_page(exam, radiologist)

    response = client_for(radiologist).post(
        f"/reports/exams/{exam.pk}/addendum/", {"text": "Unsigned addendum text.", "password": "wrong password here"},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 403
    markup = Markup(response.content.decode())
    error_index, error = markup.by_id(f"addendum-error-{exam.pk}")
    assert "The password is not correct" in error.text
    password_index, password = markup.by_id(f"addendum-password-{exam.pk}")
    assert password.attributes["aria-describedby"] == f"addendum-error-{exam.pk}"
    assert markup.enclosing(error_index, "report-addendum") == markup.enclosing(password_index, "report-addendum")
    assert len(markup.alerts()) == 1


def test_editor_without_error_has_nothing_unsaved(exam, radiologist):
    response = client_for(radiologist).get(f"/reports/exams/{exam.pk}/", headers={"HX-Request": "true"})

    markup = Markup(response.content.decode())
    _index, form = markup.by_id(f"report-form-{exam.pk}")
    assert "data-unsaved" not in form.attributes
    assert markup.alerts() == []
    assert [element for element in markup.elements if "autofocus" in element.attributes] == []
