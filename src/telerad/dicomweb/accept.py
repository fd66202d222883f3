"""Accept header negotiation for DICOMweb (PS3.18 8.7).

A client lists media ranges with optional parameters (``type``,
``transfer-syntax``) and quality values. A resource offers the media types it
can produce; :func:`choose` picks the offer the client prefers most, or None,
for which the caller returns 406 Not Acceptable.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Mapping

from django.utils.translation import gettext as _

from telerad.dicomweb.http import DicomwebError

# An RFC 9110 (5.6.2) token. A parameter value that is not a token has to be sent as a quoted string.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclasses.dataclass(frozen=True)
class MediaRange:
    """One element of an Accept header: ``type/subtype;name=value;q=0.5``."""

    type: str
    subtype: str
    parameters: Mapping[str, str]
    quality: float

    @property
    def media_type(self) -> str:
        return f"{self.type}/{self.subtype}"

    @property
    def specificity(self) -> int:
        """Higher for narrower ranges: */* < type/* < type/subtype < type/subtype;params."""
        if self.type == "*":
            return 0
        if self.subtype == "*":
            return 1
        return 2 + len(self.parameters)

    def covers(self, media_type: str, parameters: Mapping[str, str] | None = None) -> bool:
        """Whether this range accepts `media_type` with `parameters`; a parameter the range names must match."""
        offered_type, _slash, offered_subtype = media_type.lower().partition("/")
        if self.type != "*" and self.type != offered_type:
            return False
        if self.subtype != "*" and self.subtype != offered_subtype:
            return False
        offered = {name.lower(): value for name, value in (parameters or {}).items()}
        for name, value in self.parameters.items():
            if name not in offered:
                # A transfer-syntax of "*" accepts whatever the server offers.
                if name == "transfer-syntax" and value == "*":
                    continue
                return False
            if name == "type":
                if not _type_matches(value, offered[name]):
                    return False
            elif value != "*" and offered[name].lower() != value.lower():
                return False
        return True


def _type_matches(pattern: str, offered: str) -> bool:
    """Return whether the ``type`` parameter `pattern`, which may be a range such as ``*/*`` or ``image/*``, covers `offered`.

    dicomweb-client requests frames with ``type="*/*"`` unless its caller
    names media types.
    """
    pattern_type, _slash, pattern_subtype = pattern.lower().partition("/")
    offered_type, _slash, offered_subtype = offered.lower().partition("/")
    if pattern == "*" or pattern_type == "*":
        return True
    return pattern_type == offered_type and pattern_subtype in ("*", offered_subtype)


@dataclasses.dataclass(frozen=True)
class Offer:
    """A media type a resource can produce, with the parameters it would carry."""

    media_type: str
    parameters: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted = [], [], False
    for character in text:
        if character == '"':
            quoted = not quoted
        if character == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(character)
    parts.append("".join(current))
    return parts


def parse_accept(header: str) -> list[MediaRange]:
    """Parse an Accept header; raise DicomwebError 400 naming the element that is malformed.

    An empty header means ``*/*`` (RFC 9110 12.5.1).
    """
    if not header.strip():
        return [MediaRange("*", "*", {}, 1.0)]
    ranges = []
    for element in _split_outside_quotes(header, ","):
        element = element.strip()
        if not element:
            continue
        media_type, *parameter_texts = _split_outside_quotes(element, ";")
        main_type, slash, subtype = media_type.strip().lower().partition("/")
        if not slash or not main_type or not subtype or (main_type == "*" and subtype != "*"):
            raise DicomwebError(400, f"Accept: {element!r} is not a media range such as application/dicom or */*")
        parameters: dict[str, str] = {}
        quality = 1.0
        for parameter in parameter_texts:
            name, equals, value = parameter.strip().partition("=")
            name = name.strip().lower()
            value = value.strip()
            if not equals or not name:
                raise DicomwebError(400, f"Accept: parameter {parameter.strip()!r} of {media_type.strip()!r} is not name=value")
            # RFC 9110 allows an empty quoted string ("") as a value, but a value cannot be left out.
            if not value:
                message = _("Accept: parameter %(parameter)r of %(media_type)r has no value. Give it a value or leave it out.")
                raise DicomwebError(400, message % {"parameter": parameter.strip(), "media_type": media_type.strip()})
            value = value.strip('"')
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = -1.0
                if not 0.0 <= quality <= 1.0:
                    raise DicomwebError(400, f"Accept: quality {value!r} of {media_type.strip()!r} is not a number from 0 to 1")
            else:
                parameters[name] = value
        ranges.append(MediaRange(main_type, subtype, parameters, quality))
    return ranges


def choose(header: str, offers: Iterable[Offer]) -> tuple[Offer, MediaRange] | None:
    """Return the offer the client prefers, with the range that accepted it, or None when no offer is acceptable.

    Each offer takes the quality of the most specific range covering it. Among
    offers of equal quality the first in the server's order wins, so callers
    list their default first.
    """
    ranges = sorted(parse_accept(header), key=lambda media_range: -media_range.specificity)
    best: tuple[float, int, Offer, MediaRange] | None = None
    for position, offer in enumerate(offers):
        matching = next((media_range for media_range in ranges if media_range.covers(offer.media_type, offer.parameters)), None)
        if matching is None or matching.quality <= 0.0:
            continue
        candidate = (matching.quality, -position, offer, matching)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return None if best is None else (best[2], best[3])


def format_media_type(media_type: str, parameters: Mapping[str, str]) -> str:
    """Return a media type with its parameters, written as an Accept or Content-Type header carries them.

    A value that is not a token is quoted, with a backslash before each quote
    and backslash in it (RFC 9110 5.6.4).

    NOTE: parse_accept does not read backslash escapes. No offer of telerad
    has a value with a quote or backslash in it.
    """
    return media_type + "".join(f"; {name}={_parameter_value(value)}" for name, value in parameters.items())


def _parameter_value(value: str) -> str:
    if TOKEN.fullmatch(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def not_acceptable(header: str, offers: Iterable[Offer]) -> DicomwebError:
    """Return the 406 error, which lists the offers as values that a client can send in Accept."""
    # An instance stored in the syntax it can be transcoded to gives two equal offers, so repeated values are dropped, in order.
    available = ", ".join(dict.fromkeys(format_media_type(offer.media_type, offer.parameters) for offer in offers))
    message = _("None of the media types in Accept (%(accept)s) can be produced here. Available: %(available)s")
    return DicomwebError(406, message % {"accept": header.strip() or "*/*", "available": available})
