"""Template filters that show DICOM values the way people read them.

The index keeps values in their DICOM encoding (PN with ``^`` and ``=``,
DA as ``YYYYMMDD``, TM as ``HHMMSS.FFFFFF``, UIDs as digits). These filters
format them for display only. A value that does not fit its VR is shown as
it is stored, because a page should never hide what the archive holds.
"""

from __future__ import annotations

from django import template
from django.utils.translation import gettext as _
from pydicom.uid import UID

register = template.Library()

# PS3.5 6.2.1: a person name has up to three component groups (alphabetic,
# ideographic, phonetic) separated by "=", each with up to five components
# separated by "^".
GROUP_SEPARATOR = "="
COMPONENT_SEPARATOR = "^"


def _components(group: str) -> dict[str, str]:
    values = [value.strip() for value in group.split(COMPONENT_SEPARATOR)]
    values += [""] * (5 - len(values))
    family, given, middle, prefix, suffix = values[:5]
    return {"family": family, "given": given, "middle": middle, "prefix": prefix, "suffix": suffix}


def _join(*parts: str, separator: str = " ") -> str:
    return separator.join(part for part in parts if part)


def _western_form(group: str) -> str:
    """Format an alphabetic group as "Family, Prefix Given Middle, Suffix"."""
    name = _components(group)
    first_names = _join(name["prefix"], name["given"], name["middle"])
    return _join(name["family"], first_names, name["suffix"], separator=", ")


def _ideographic_form(group: str) -> str:
    """Format an ideographic or phonetic group family name first, as CJK names are written."""
    name = _components(group)
    return _join(name["prefix"], name["family"], name["given"], name["middle"], name["suffix"])


@register.filter
def person_name(value: str | None) -> str:
    """Format a DICOM PN value, adding the ideographic form in brackets when there is one.

    ``Yamada^Tarou=山田^太郎=やまだ^たろう`` becomes ``Yamada, Tarou (山田 太郎)``.
    The phonetic form is shown only when it is the sole group with content.
    """
    if not value:
        return ""

    groups = value.split(GROUP_SEPARATOR)
    groups += [""] * (3 - len(groups))
    alphabetic = _western_form(groups[0])
    ideographic = _ideographic_form(groups[1])
    phonetic = _ideographic_form(groups[2])
    if alphabetic and ideographic:
        return f"{alphabetic} ({ideographic})"
    return alphabetic or ideographic or phonetic


@register.filter
def dicom_date(value: str | None) -> str:
    """Format a DA value (``YYYYMMDD``) as an ISO 8601 date."""
    if not value or len(value) != 8 or not value.isdigit():
        return value or ""
    return f"{value[:4]}-{value[4:6]}-{value[6:]}"


@register.filter
def dicom_time(value: str | None) -> str:
    """Format a TM value (``HHMMSS.FFFFFF``, minutes and seconds optional) as ``HH:MM:SS``, without the fraction."""
    if not value:
        return ""

    whole = value.split(".", 1)[0]
    if not whole.isdigit() or len(whole) not in (2, 4, 6):
        return value
    return ":".join(whole[index:index + 2] for index in range(0, len(whole), 2))


@register.filter
def uid_name(value: str | None) -> str:
    """Return the name of a well-known UID from pydicom's UID dictionary, or the UID itself."""
    if not value:
        return ""
    return str(UID(value).name)


@register.filter
def patient_sex(value: str | None) -> str:
    """Spell out a Patient's Sex code (PS3.3 C.7.1.1: M, F or O)."""
    labels = {"M": _("Male"), "F": _("Female"), "O": _("Other")}
    return labels.get(value or "", value or "")
