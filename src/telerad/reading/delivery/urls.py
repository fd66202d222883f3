"""URLs of report delivery: the report PDF under /reports/pdf/ and the FHIR API under /fhir/."""

from __future__ import annotations

from django.urls import path

from telerad.dicomweb.http import by_method
from telerad.reading.delivery import views

pdf_urls = ([path("<int:signed_id>/", views.report_pdf, name="pdf")], "report-pdf")

fhir_urls = (
    [
        path("DiagnosticReport", by_method(GET=views.search_diagnostic_reports), name="diagnosticreport-search"),
        path("DiagnosticReport/<int:report_id>", by_method(GET=views.read_diagnostic_report), name="diagnosticreport"),
    ],
    "fhir",
)
