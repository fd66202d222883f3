"""Report templates: choosing one for an exam, and moving templates between systems as JSON files.

A template file is a JSON object::

    {"format": "telerad-report-templates", "version": 1,
     "templates": [{"name": "CT head", "modality": "CT", "exam_type": "head",
                    "active": true,
                    "sections": [{"key": "findings", "title": "Findings", "text": ""}],
                    "phrases": [{"section_key": "findings", "label": "Normal", "text": "..."}]}],
     "phrases": [{"section_key": "impression", "label": "No acute finding", "text": "..."}]}

Phrases inside a template belong to it; the top-level phrases are global.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from telerad.reading.models import Exam, Phrase, ReportTemplate

FILE_FORMAT = "telerad-report-templates"
FILE_VERSION = 1
# Large enough for hundreds of templates with their phrases.
MAX_IMPORT_BYTES = 2 * 1024 * 1024
SECTION_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# The sections of a radiology report in their usual order, used when a
# template does not name a section's title.
STANDARD_SECTIONS = {
    "clinical_information": gettext_lazy("Clinical information"),
    "technique": gettext_lazy("Technique"),
    "comparison": gettext_lazy("Comparison"),
    "findings": gettext_lazy("Findings"),
    "impression": gettext_lazy("Impression"),
}
# The section name that pages show for a phrase without a section key, which the editor offers in every section.
EVERY_SECTION = gettext_lazy("Every section")


def modality_set(text: str) -> set[str]:
    return {part.strip().upper() for part in text.split("\\") if part.strip()}


def template_score(template: ReportTemplate, exam: Exam) -> int | None:
    """Return how well `template` fits `exam` (higher is better), or None when it does not fit.

    A template that names a modality fits only exams with one of them, and one
    that names an exam type fits only exams whose description or requested
    procedure contains it. A named exam type counts more than a modality
    because it is the more specific of the two.
    """
    score = 0
    template_modalities = modality_set(template.modality)
    if template_modalities:
        if not template_modalities & modality_set(exam.modalities):
            return None
        score += 1
    exam_type = template.exam_type.strip().casefold()
    if exam_type:
        described = " ".join([exam.description, exam.requested_procedure, exam.body_part]).casefold()
        if exam_type not in described:
            return None
        score += 2
    return score


def best_template(exam: Exam) -> ReportTemplate | None:
    """Return the active template that fits `exam` best; ties go to the first by name."""
    best: tuple[int, ReportTemplate] | None = None
    for template in ReportTemplate.objects.filter(active=True).order_by("name"):
        score = template_score(template, exam)
        if score is not None and (best is None or score > best[0]):
            best = (score, template)
    return best[1] if best else None


def section_title(template: ReportTemplate | None, key: str) -> str:
    if template is not None:
        for section in template.sections:
            if section.get("key") == key and section.get("title"):
                return section["title"]
    if key in STANDARD_SECTIONS:
        return str(STANDARD_SECTIONS[key])
    return key.replace("_", " ").capitalize()


def global_phrases(template: ReportTemplate | None = None) -> list[Phrase]:
    """Return the phrases offered with every template, by section key and label, those for every section first.

    Each phrase gets a `section_title`: the title of its section in `template`
    or of the standard section, or "Every section".
    """
    phrases = list(Phrase.objects.filter(template__isnull=True).order_by("section_key", "label", "pk"))
    for phrase in phrases:
        phrase.section_title = section_title(template, phrase.section_key) if phrase.section_key else str(EVERY_SECTION)
    return phrases


def phrases_by_section(template: ReportTemplate | None) -> dict[str, list[Phrase]]:
    """Return the phrases offered in each section: the template's and the global ones. The key "" lists those for any section."""
    phrases = Phrase.objects.filter(template__isnull=True)
    if template is not None:
        phrases = phrases | Phrase.objects.filter(template=template)
    grouped: dict[str, list[Phrase]] = {}
    for phrase in phrases.order_by("label", "pk"):
        grouped.setdefault(phrase.section_key, []).append(phrase)
    return grouped


# Export


def template_document(template: ReportTemplate) -> dict[str, Any]:
    return {
        "name": template.name,
        "modality": template.modality,
        "exam_type": template.exam_type,
        "active": template.active,
        "sections": [{"key": s["key"], "title": s.get("title", ""), "text": s.get("text", "")} for s in template.sections],
        "phrases": [
            {"section_key": phrase.section_key, "label": phrase.label, "text": phrase.text}
            for phrase in template.phrases.order_by("label", "pk")
        ],
    }


def export_templates(templates: list[ReportTemplate], include_global_phrases: bool) -> bytes:
    """Return `templates` as a template file, with the global phrases when `include_global_phrases` is set."""
    document: dict[str, Any] = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "templates": [template_document(template) for template in templates],
    }
    if include_global_phrases:
        document["phrases"] = [
            {"section_key": phrase.section_key, "label": phrase.label, "text": phrase.text}
            for phrase in Phrase.objects.filter(template__isnull=True).order_by("label", "pk")
        ]
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


# Import


class TemplateFileError(ValueError):
    """A template file that cannot be imported, with every problem found."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclasses.dataclass
class ImportResult:
    created: list[str]
    updated: list[str]
    global_phrases: int


def _text(value: Any, where: str, field: str, problems: list[str], *, max_length: int | None = None, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        problems.append(_("%(where)s: “%(field)s” must be text.") % {"where": where, "field": field})
        return ""
    if required and not value.strip():
        problems.append(_("%(where)s: “%(field)s” is missing or empty.") % {"where": where, "field": field})
    if max_length is not None and len(value) > max_length:
        problems.append(
            _("%(where)s: “%(field)s” is longer than %(max)d characters.") % {"where": where, "field": field, "max": max_length}
        )
    return value


def _phrases(value: Any, where: str, section_keys: set[str] | None, problems: list[str]) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(_("%(where)s: “phrases” must be a list.") % {"where": where})
        return []
    phrases = []
    for index, item in enumerate(value, start=1):
        place = _("%(where)s, phrase %(number)d") % {"where": where, "number": index}
        if not isinstance(item, dict):
            problems.append(_("%(where)s must be an object with section_key, label and text.") % {"where": place})
            continue
        section_key = _text(item.get("section_key"), place, "section_key", problems, max_length=64)
        if section_key and section_keys is not None and section_key not in section_keys:
            problems.append(
                _("%(where)s: section “%(key)s” is not a section of this template.") % {"where": place, "key": section_key}
            )
        phrases.append({
            "section_key": section_key,
            "label": _text(item.get("label"), place, "label", problems, max_length=100, required=True),
            "text": _text(item.get("text"), place, "text", problems, required=True),
        })
    return phrases


def _template(item: Any, index: int, problems: list[str]) -> dict[str, Any] | None:
    where = _("Template %(number)d") % {"number": index}
    if not isinstance(item, dict):
        problems.append(_("%(where)s must be an object.") % {"where": where})
        return None

    name = _text(item.get("name"), where, "name", problems, max_length=200, required=True)
    if name.strip():
        where = _("Template %(number)d (“%(name)s”)") % {"number": index, "name": name.strip()}
    active = item.get("active", True)
    if not isinstance(active, bool):
        problems.append(_("%(where)s: “active” must be true or false.") % {"where": where})

    sections_value = item.get("sections")
    sections = []
    if not isinstance(sections_value, list) or not sections_value:
        problems.append(_("%(where)s: “sections” must be a list with at least one section.") % {"where": where})
        sections_value = []
    keys: set[str] = set()
    for number, section in enumerate(sections_value, start=1):
        place = _("%(where)s, section %(number)d") % {"where": where, "number": number}
        if not isinstance(section, dict):
            problems.append(_("%(where)s must be an object with key, title and text.") % {"where": place})
            continue
        key = _text(section.get("key"), place, "key", problems, required=True)
        if key and not SECTION_KEY_PATTERN.match(key):
            problems.append(
                _("%(where)s: the key “%(key)s” must start with a lower-case letter and contain only lower-case letters, digits and underscores (at most 64).")
                % {"where": place, "key": key}
            )
        if key in keys:
            problems.append(_("%(where)s: the key “%(key)s” is used twice.") % {"where": place, "key": key})
        keys.add(key)
        sections.append({
            "key": key,
            "title": _text(section.get("title"), place, "title", problems, max_length=200, required=True),
            "text": _text(section.get("text"), place, "text", problems),
        })

    return {
        "name": name.strip(),
        "modality": _text(item.get("modality"), where, "modality", problems, max_length=16).strip().upper(),
        "exam_type": _text(item.get("exam_type"), where, "exam_type", problems, max_length=200).strip(),
        "active": active is True,
        "sections": sections,
        "phrases": _phrases(item.get("phrases"), where, keys, problems),
    }


def parse_template_file(data: bytes) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Validate a template file; return its templates and global phrases, or raise TemplateFileError listing every problem."""
    if len(data) > MAX_IMPORT_BYTES:
        raise TemplateFileError([_("The file is larger than %(size)d MiB.") % {"size": MAX_IMPORT_BYTES // (1024 * 1024)}])
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise TemplateFileError([_("The file is not UTF-8 text. Export the templates again from telerad, or save the file as UTF-8.")]) from None
    except json.JSONDecodeError as exc:
        raise TemplateFileError([
            _("The file is not valid JSON: %(error)s at line %(line)d, column %(column)d.")
            % {"error": exc.msg, "line": exc.lineno, "column": exc.colno}
        ]) from None
    if not isinstance(document, dict):
        raise TemplateFileError([_("The file must contain a JSON object with “format”, “version” and “templates”.")])
    if document.get("format") != FILE_FORMAT:
        raise TemplateFileError([_("The “format” field must be “%(format)s”; this is not a telerad template file.") % {"format": FILE_FORMAT}])
    version = document.get("version")
    if version != FILE_VERSION or isinstance(version, bool):
        raise TemplateFileError([
            _("Version %(version)s of the template file is not supported; this telerad reads version %(supported)d.")
            % {"version": json.dumps(version), "supported": FILE_VERSION}
        ])

    problems: list[str] = []
    items = document.get("templates")
    if not isinstance(items, list):
        problems.append(_("“templates” must be a list."))
        items = []
    templates = []
    names: set[str] = set()
    for index, item in enumerate(items, start=1):
        template = _template(item, index, problems)
        if template is None:
            continue
        if template["name"].casefold() in names:
            problems.append(_("Template %(number)d: the name “%(name)s” is used twice in the file.") % {"number": index, "name": template["name"]})
        names.add(template["name"].casefold())
        templates.append(template)
    global_phrases = _phrases(document.get("phrases"), _("Global phrases"), None, problems)
    if not templates and not global_phrases and not problems:
        problems.append(_("The file contains no templates and no phrases."))
    if problems:
        raise TemplateFileError(problems)
    return templates, global_phrases


def import_templates(data: bytes) -> ImportResult:
    """Create or replace the templates of a template file, matched by name, in one transaction.

    A template that exists is updated and its phrases are replaced by the
    file's. Global phrases are matched by section and label, and added or updated.
    """
    templates, global_phrases = parse_template_file(data)
    result = ImportResult(created=[], updated=[], global_phrases=len(global_phrases))
    with transaction.atomic():
        for item in templates:
            template, created = ReportTemplate.objects.update_or_create(
                name=item["name"],
                defaults={key: item[key] for key in ("modality", "exam_type", "active", "sections")},
            )
            (result.created if created else result.updated).append(template.name)
            template.phrases.all().delete()
            Phrase.objects.bulk_create(Phrase(template=template, **phrase) for phrase in item["phrases"])
        for phrase in global_phrases:
            existing = Phrase.objects.filter(template=None, section_key=phrase["section_key"], label=phrase["label"])
            if not existing.update(text=phrase["text"]):
                Phrase.objects.create(template=None, **phrase)
    return result
