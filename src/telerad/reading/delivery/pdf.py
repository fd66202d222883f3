"""The printable form of a signed report, as a PDF made with ReportLab."""

from __future__ import annotations

import datetime
import io
import logging
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

from django.conf import settings
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from telerad.reading.delivery.document import ReportDocument, SignedPart
from telerad.reading.models import SignedKind

logger = logging.getLogger(__name__)

# Embedded TrueType fonts show any Unicode name; ReportLab's built-in
# Helvetica covers Latin-1 only. DejaVu is in Debian's fonts-dejavu-core.
# NOTE: without DejaVu, names outside Latin-1 print as empty boxes.
UNICODE_FONT_FILES = (
    ("DejaVuSans", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    ("DejaVuSans-Bold", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
)
# Dark red: white text on it has a contrast ratio above 7:1.
CRITICAL_COLOR = colors.HexColor("#9b1c1c")
PAGE_MARGIN = 20 * mm
LOGO_MAX_HEIGHT = 18 * mm
LOGO_MAX_WIDTH = 60 * mm


@lru_cache(maxsize=1)
def _fonts() -> tuple[str, str]:
    """Register the Unicode fonts when present; return the names of the regular and bold fonts."""
    paths = [Path(path) for _, path in UNICODE_FONT_FILES]
    if all(path.is_file() for path in paths):
        for (name, _path), path in zip(UNICODE_FONT_FILES, paths):
            pdfmetrics.registerFont(TTFont(name, str(path)))
        return UNICODE_FONT_FILES[0][0], UNICODE_FONT_FILES[1][0]
    return "Helvetica", "Helvetica-Bold"


def _styles() -> dict[str, ParagraphStyle]:
    regular, bold = _fonts()
    base = getSampleStyleSheet()
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontName=bold, fontSize=15, alignment=0, spaceAfter=2 * mm),
        "department": ParagraphStyle("department", parent=base["Normal"], fontName=bold, fontSize=12),
        "heading": ParagraphStyle("heading", parent=base["Heading2"], fontName=bold, fontSize=11, spaceBefore=4 * mm, spaceAfter=1 * mm),
        "part": ParagraphStyle("part", parent=base["Heading1"], fontName=bold, fontSize=13, spaceBefore=6 * mm, spaceAfter=1 * mm),
        "body": ParagraphStyle("body", parent=base["Normal"], fontName=regular, fontSize=10, leading=13.5),
        "label": ParagraphStyle("label", parent=base["Normal"], fontName=bold, fontSize=9, leading=12),
        "value": ParagraphStyle("value", parent=base["Normal"], fontName=regular, fontSize=9, leading=12),
        "signature": ParagraphStyle("signature", parent=base["Normal"], fontName=regular, fontSize=9, leading=12, textColor=colors.HexColor("#333333")),
        "critical": ParagraphStyle("critical", parent=base["Normal"], fontName=bold, fontSize=12, leading=15, textColor=colors.white),
        "critical_part": ParagraphStyle("critical_part", parent=base["Normal"], fontName=bold, fontSize=10, leading=13, textColor=CRITICAL_COLOR),
    }


def _markup(text: str) -> str:
    """Escape `text` for ReportLab's paragraph markup, keeping its line breaks."""
    return "<br/>".join(escape(line) for line in text.strip().splitlines())


def format_birth_date(value: str) -> str:
    """Format a DICOM DA birth date (YYYYMMDD) for the locale; other values are shown as they are."""
    try:
        return formats.date_format(datetime.datetime.strptime(value, "%Y%m%d").date(), "DATE_FORMAT")
    except ValueError:
        return value


def format_moment(moment: datetime.datetime) -> str:
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def _header(document: ReportDocument, styles: dict[str, ParagraphStyle]) -> list:
    config = settings.TELERAD
    department = Paragraph(_markup(config.department_name), styles["department"])
    if config.department_logo is None:
        return [department, Spacer(1, 3 * mm)]
    logo = Image(str(config.department_logo))
    scale = min(LOGO_MAX_HEIGHT / logo.imageHeight, LOGO_MAX_WIDTH / logo.imageWidth, 1.0)
    logo.drawHeight = logo.imageHeight * scale
    logo.drawWidth = logo.imageWidth * scale
    table = Table([[logo, department]], colWidths=[LOGO_MAX_WIDTH + 4 * mm, None])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return [table, Spacer(1, 3 * mm)]


def _details(document: ReportDocument, styles: dict[str, ParagraphStyle]) -> Table:
    patient = document.patient
    exam_date = document.exam_date
    rows = [
        (_("Patient"), patient.patient_name.replace("^", " ").strip()),
        (_("Patient ID"), patient.patient_id),
        (_("Birth date"), format_birth_date(patient.patient_birth_date)),
        (_("Accession number"), document.exam.accession_number),
        (_("Exam"), document.exam_description),
        (_("Exam date"), formats.date_format(exam_date, "DATE_FORMAT") if exam_date else ""),
        (_("Referring physician"), document.referring_physician_display),
    ]
    data = [[Paragraph(_markup(label), styles["label"]), Paragraph(_markup(value), styles["value"])] for label, value in rows]
    table = Table(data, colWidths=[40 * mm, None], hAlign="LEFT")
    table.setStyle(TableStyle([
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 0),
        ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.grey),
        ("BOTTOMPADDING", (0, -1), (-1, -1), 3 * mm),
    ]))
    return table


def _part_title(part: SignedPart) -> str:
    if part.kind == SignedKind.ADDENDUM:
        return _("Addendum")
    if part.kind == SignedKind.PRELIMINARY:
        return _("Preliminary report")
    return _("Report")


def _critical_banner(styles: dict[str, ParagraphStyle]) -> Table:
    """Return the marker of a report that contains a critical result: white bold text on red, across the page."""
    banner = Table([[Paragraph(_markup(_("Critical result")), styles["critical"])]], colWidths=["100%"], hAlign="LEFT")
    banner.setStyle(TableStyle([
        ("BACKGROUND", (0, 0), (-1, -1), CRITICAL_COLOR),
        ("TOPPADDING", (0, 0), (-1, -1), 2 * mm),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2 * mm),
    ]))
    return banner


def _part(part: SignedPart, styles: dict[str, ParagraphStyle], *, with_title: bool) -> list:
    flowables: list = []
    title = _part_title(part)
    if with_title:
        flowables.append(Paragraph(_markup(title), styles["part"]))
        if part.signed.critical:
            flowables.append(Paragraph(_markup(_("Critical result")), styles["critical_part"]))
    for section in part.sections:
        # An addendum's one section is titled "Addendum" like the part itself.
        if not (with_title and section.title.strip().casefold() == title.casefold()):
            flowables.append(Paragraph(_markup(section.title), styles["heading"]))
        flowables.append(Paragraph(_markup(section.text), styles["body"]))
    signature = _("Signed by %(signer)s on %(time)s") % {"signer": part.signer_name, "time": format_moment(part.signed_at)}
    flowables.append(Spacer(1, 3 * mm))
    flowables.append(Paragraph(_markup(signature), styles["signature"]))
    return flowables


def render_pdf(document: ReportDocument) -> bytes:
    """Render the report as a PDF; the same document and settings give the same bytes."""
    styles = _styles()
    regular, _bold = _fonts()
    buffer = io.BytesIO()
    title = _("Radiology report %(accession)s") % {"accession": document.exam.accession_number} if document.exam.accession_number else _("Radiology report")
    footer = _("Content hash (SHA-256): %(hash)s") % {"hash": document.signed.content_hash}

    def draw_footer(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont(regular, 7)
        canvas.setFillColor(colors.HexColor("#444444"))
        canvas.drawString(doc.leftMargin, 10 * mm, footer)
        canvas.drawRightString(A4[0] - doc.rightMargin, 10 * mm, _("Page %(number)d") % {"number": doc.page})
        canvas.restoreState()

    # invariant=True leaves out the creation time and random document ID,
    # so that the archived copy of a report can be made again identically.
    pdf = SimpleDocTemplate(
        buffer, pagesize=A4, title=title, author=document.main_part.signer_name, creator="telerad",
        leftMargin=PAGE_MARGIN, rightMargin=PAGE_MARGIN, topMargin=18 * mm, bottomMargin=20 * mm, invariant=True,
    )
    story: list = _header(document, styles)
    story.append(Paragraph(_markup(title), styles["title"]))
    if document.has_critical_result:
        story += [_critical_banner(styles), Spacer(1, 3 * mm)]
    story.append(_details(document, styles))
    several = len(document.parts) > 1
    for part in document.parts:
        story += _part(part, styles, with_title=several or part.kind != SignedKind.FINAL)
    pdf.build(story, onFirstPage=draw_footer, onLaterPages=draw_footer)
    return buffer.getvalue()
