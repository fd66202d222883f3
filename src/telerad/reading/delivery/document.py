"""The content of a delivered report, gathered once for the PDF, DICOM, HL7 and FHIR forms.

A final report is delivered alone. An addendum is delivered as the whole
report after it: every addendum signed up to it, newest first, then the
final report, so that a receiver that replaces its copy loses nothing.
"""

from __future__ import annotations

import dataclasses
import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from telerad.archive.models import Patient, Study
from telerad.reading.models import Exam, SignedKind, SignedReport

# Titles of the usual section keys; other keys are shown with their
# underscores and hyphens as spaces, unless the exam's template names them.
SECTION_TITLES = {
    "indication": _("Indication"),
    "clinical_history": _("Clinical history"),
    "history": _("Clinical history"),
    "technique": _("Technique"),
    "comparison": _("Comparison"),
    "findings": _("Findings"),
    "impression": _("Impression"),
    "conclusion": _("Conclusion"),
    "recommendation": _("Recommendation"),
    "recommendations": _("Recommendations"),
    "addendum": _("Addendum"),
}

# The sections whose text is the report's conclusion (FHIR conclusion), first found wins.
CONCLUSION_KEYS = ("impression", "conclusion")


@dataclasses.dataclass(frozen=True)
class Section:
    key: str
    title: str
    text: str


@dataclasses.dataclass(frozen=True)
class SignedPart:
    """One signed version shown in a delivered report: the final report or one addendum."""

    signed: SignedReport
    sections: tuple[Section, ...]
    signer_name: str
    signer_username: str

    @property
    def kind(self) -> str:
        return self.signed.kind

    @property
    def signed_at(self) -> datetime.datetime:
        return self.signed.signed_at


@dataclasses.dataclass(frozen=True)
class ReportDocument:
    signed: SignedReport
    exam: Exam
    patient: Patient
    # The study the report's DICOM objects go into; None when the exam has no study.
    study: Study | None
    # Addenda newest first, then the final (or preliminary) report.
    parts: tuple[SignedPart, ...]

    @property
    def is_amended(self) -> bool:
        return self.signed.kind == SignedKind.ADDENDUM

    @property
    def main_part(self) -> SignedPart:
        return self.parts[-1]

    @property
    def main_conclusion(self) -> Section | None:
        """The impression (or conclusion) section of the final report, the first of CONCLUSION_KEYS with text."""
        for key in CONCLUSION_KEYS:
            for section in self.main_part.sections:
                if section.key == key and section.text.strip():
                    return section
        return None

    @property
    def conclusion(self) -> str:
        """The conclusion of the report as it now reads (FHIR DiagnosticReport.conclusion).

        A final report alone gives its impression. After addenda it gives
        each addendum, newest first, then the final report's impression,
        each under a heading that names it and, for addenda, the time of
        signing, so that a receiver that shows only the conclusion still
        sees the correction.
        """
        main = self.main_conclusion
        addenda = [part for part in self.parts if part.kind == SignedKind.ADDENDUM]
        if not addenda:
            return main.text.strip() if main is not None else ""
        blocks = []
        for part in addenda:
            heading = gettext("Addendum signed %(time)s") % {"time": timezone.localtime(part.signed_at).strftime("%Y-%m-%d %H:%M")}
            text = "\n\n".join(section.text.strip() for section in part.sections)
            blocks.append(f"{heading}:\n{text}")
        if main is not None:
            blocks.append(f"{main.title}:\n{main.text.strip()}")
        return "\n\n".join(blocks)

    @property
    def has_critical_result(self) -> bool:
        return any(part.signed.critical for part in self.parts)

    @property
    def exam_date(self) -> datetime.date | None:
        if self.study is not None and len(self.study.study_date) == 8:
            try:
                return datetime.datetime.strptime(self.study.study_date, "%Y%m%d").date()
            except ValueError:
                return None
        return None

    @property
    def exam_description(self) -> str:
        exam = self.exam
        description = exam.description or exam.requested_procedure
        if not description and self.study is not None:
            description = self.study.study_description
        return description

    @property
    def referring_physician(self) -> str:
        """The Referring Physician's Name of the exam or its study, a DICOM PN (family^given)."""
        if self.exam.referring_physician_name:
            return self.exam.referring_physician_name
        return self.study.referring_physician_name if self.study is not None else ""

    @property
    def referring_physician_display(self) -> str:
        """The referring physician for people to read: the referring clinician's full name, else the DICOM name, else the clinician's user name."""
        clinician = self.exam.referring_clinician
        full_name = clinician.get_full_name().strip() if clinician is not None else ""
        if full_name:
            return full_name
        dicom_name = self.referring_physician.split("=")[0].replace("^", " ").strip()
        if dicom_name:
            return " ".join(dicom_name.split())
        return clinician.get_username() if clinician is not None else ""


def person_name(user: AbstractBaseUser) -> str:
    full_name = user.get_full_name().strip() if hasattr(user, "get_full_name") else ""
    return full_name or user.get_username()


def section_title(key: str, template_titles: dict[str, str]) -> str:
    if key in template_titles:
        return template_titles[key]
    if key in SECTION_TITLES:
        return str(SECTION_TITLES[key])
    return key.replace("_", " ").replace("-", " ").strip().capitalize() or key


def _template_titles(exam: Exam) -> dict[str, str]:
    # A missing report raises RelatedObjectDoesNotExist, an AttributeError.
    report = getattr(exam, "report", None)
    template = report.template if report is not None else None
    if template is None:
        return {}
    titles = {}
    for entry in template.sections:
        if isinstance(entry, dict) and entry.get("key") and entry.get("title"):
            titles[str(entry["key"])] = str(entry["title"])
    return titles


def _sections(signed: SignedReport, template_titles: dict[str, str]) -> tuple[Section, ...]:
    keys = [key for key in signed.section_order if key in signed.sections]
    # Sections missing from section_order still appear, after the ordered ones.
    keys += [key for key in signed.sections if key not in keys]
    sections = tuple(
        Section(key, section_title(key, template_titles), str(signed.sections[key] or ""))
        for key in keys
        if str(signed.sections[key] or "").strip()
    )
    if not sections and signed.text.strip():
        title = SECTION_TITLES["addendum"] if signed.kind == SignedKind.ADDENDUM else _("Report")
        sections = (Section(signed.kind, str(title), signed.text),)
    return sections


def _part(signed: SignedReport, template_titles: dict[str, str]) -> SignedPart:
    return SignedPart(signed, _sections(signed, template_titles), person_name(signed.signer), signed.signer.get_username())


def build_document(signed: SignedReport) -> ReportDocument:
    """Gather what every form of the delivered report shows for `signed`."""
    exam = Exam.objects.select_related("patient", "referring_clinician").get(pk=signed.exam_id)
    titles = _template_titles(exam)
    parts: list[SignedPart] = []
    if signed.kind == SignedKind.ADDENDUM:
        addenda = (
            SignedReport.objects.filter(exam=exam, kind=SignedKind.ADDENDUM)
            .filter(signed_at__lte=signed.signed_at)
            .select_related("signer")
            .order_by("-signed_at", "-id")
        )
        parts += [_part(addendum, titles) for addendum in addenda if addendum.signed_at < signed.signed_at or addendum.pk <= signed.pk]
        final = SignedReport.objects.filter(exam=exam, kind=SignedKind.FINAL).select_related("signer").first()
        if final is not None:
            parts.append(_part(final, titles))
    else:
        parts.append(_part(signed, titles))
    study = exam.studies.order_by("study_date", "study_time", "pk").first()
    return ReportDocument(signed=signed, exam=exam, patient=exam.patient, study=study, parts=tuple(parts))
