"""The HL7 v2.5.1 ORU^R01 result message of a signed report, and the reading of the receiver's ACK.

The encoder escapes every value itself (HL7 v2.5.1 chapter 2.7): hl7apy 1.3.5
leaves component (^) and subcomponent (&) separators in assigned values
unescaped, so they would split a value that contains them. The tests parse
the messages back with hl7apy.
"""

from __future__ import annotations

import dataclasses
import uuid

from django.conf import settings
from django.utils import timezone

from telerad.reading.delivery.document import ReportDocument
from telerad.reading.delivery.models import DeliveryEndpoint
from telerad.reading.models import SignedKind

FIELD_SEPARATOR = "|"
ENCODING_CHARACTERS = "^~\\&"
SEGMENT_TERMINATOR = "\r"
VERSION = "2.5.1"
# LOINC 18748-4 Diagnostic imaging study, the report as a whole.
REPORT_CODE = ("18748-4", "Diagnostic imaging study", "LN")

_ESCAPES = (
    # The escape character first, so that the sequences added after it stay as they are.
    ("\\", "\\E\\"),
    ("|", "\\F\\"),
    ("^", "\\S\\"),
    ("&", "\\T\\"),
    ("~", "\\R\\"),
)


def escape(text: str) -> str:
    """Escape the HL7 delimiters in `text`; line breaks become spaces (callers split multi-line text first)."""
    for character, sequence in _ESCAPES:
        text = text.replace(character, sequence)
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def _components(*values: str) -> str:
    return "^".join(escape(value) for value in values).rstrip("^")


def _segment(name: str, fields: list[str]) -> str:
    # Trailing empty fields are left out, as HL7 allows.
    while fields and fields[-1] == "":
        fields.pop()
    return FIELD_SEPARATOR.join([name, *fields])


def _hl7_time(moment) -> str:
    return timezone.localtime(moment).strftime("%Y%m%d%H%M%S%z")


def _person_name(dicom_name: str) -> str:
    """Turn a DICOM PN (family^given^middle^prefix^suffix) into an XPN/XCN name: family^given^middle^suffix^prefix."""
    parts = (dicom_name.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = parts
    return _components(family, given, middle, suffix, prefix)


def _doctor(dicom_name: str) -> str:
    """Return an XCN with no ID number (component 1) for a name known only as a DICOM PN."""
    return "^" + _person_name(dicom_name) if dicom_name.strip("^ ") else ""


def _user_xcn(user) -> str:
    """Return the XCN of a telerad user: user name as ID number, then family and given name."""
    return _components(user.get_username(), user.last_name, user.first_name)


def _user_ndl(user) -> str:
    """Return the NDL of OBR-32, whose first component is a CNN with subcomponents ID&family&given."""
    return "&".join(escape(value) for value in (user.get_username(), user.last_name, user.first_name)).rstrip("&")


@dataclasses.dataclass(frozen=True)
class OruMessage:
    control_id: str
    text: str


def build_oru(document: ReportDocument, endpoint: DeliveryEndpoint | None = None, *, control_id: str | None = None) -> OruMessage:
    """Build the ORU^R01 message of `document`: result status F for a final report, C for an addendum."""
    config = settings.TELERAD
    exam = document.exam
    patient = document.patient
    control_id = control_id or uuid.uuid4().hex[:20]
    status = "C" if document.is_amended else "F"
    signed_at = _hl7_time(document.signed.signed_at)
    main = document.main_part

    segments = [
        _segment("MSH", [
            ENCODING_CHARACTERS, escape(config.ae_title), escape(config.department_name),
            escape(endpoint.receiving_application if endpoint else ""), escape(endpoint.receiving_facility if endpoint else ""),
            _hl7_time(timezone.now()), "", "ORU^R01^ORU_R01", escape(control_id), "P", VERSION,
            # MSH-15 and MSH-16 stay empty, which asks for the original acknowledgement mode (AA, AE or AR).
            "", "", "", "", "", "UNICODE UTF-8",
        ]),
        _segment("PID", [
            "1", "", _components(patient.patient_id, "", "", patient.issuer_of_patient_id, "MR"), "",
            _person_name(patient.patient_name), "", escape(patient.patient_birth_date), escape(_hl7_sex(patient.patient_sex)),
        ]),
        # PV1-2 is required; an outpatient imaging exam without a visit is sent as class U (unknown).
        _segment("PV1", ["1", "U", "", "", "", "", "", _doctor(document.referring_physician)]),
        _segment("ORC", ["RE", "", escape(exam.accession_number), "", "CM", "", "", "", signed_at]),
        _segment("OBR", [
            "1", "", escape(exam.accession_number),
            _components(exam.requested_procedure or exam.description or "", document.exam_description),
            "", "", escape(document.study.study_date if document.study else ""), "", "", "", "", "", "", "", "",
            _doctor(document.referring_physician), "", "", "", "", "", signed_at, "", escape(exam.modalities.split("\\")[0]), status,
            "", "", "", "", "", "", _user_ndl(main.signed.signer),
        ]),
    ]
    segments += _observations(document, status)
    return OruMessage(control_id, SEGMENT_TERMINATOR.join(segments) + SEGMENT_TERMINATOR)


def _observations(document: ReportDocument, status: str) -> list[str]:
    """Return one OBX per line of text: sub-ID 1, 2, ... names the section, in document order."""
    segments = []
    set_id = 0
    sub_id = 0
    for part in document.parts:
        prefix = "Addendum: " if part.kind == SignedKind.ADDENDUM else ""
        for section in part.sections:
            sub_id += 1
            lines = [f"{prefix}{section.title}"] + section.text.strip().splitlines()
            for line in lines:
                set_id += 1
                segments.append(_segment("OBX", [
                    str(set_id), "TX", _components(*REPORT_CODE, section.key, section.title, "L"),
                    str(sub_id), escape(line), "", "", "", "", "", status, "", "", _hl7_time(part.signed_at), "",
                    _user_xcn(part.signed.signer),
                ]))
    return segments


def _hl7_sex(dicom_sex: str) -> str:
    # DICOM M, F and O are the same codes in HL7 table 0001. Any other value is U (unknown).
    if not dicom_sex:
        return ""
    return dicom_sex if dicom_sex in {"M", "F", "O"} else "U"


@dataclasses.dataclass(frozen=True)
class Acknowledgement:
    code: str
    control_id: str
    text: str

    @property
    def accepted(self) -> bool:
        return self.code in {"AA", "CA"}

    @property
    def rejected(self) -> bool:
        """Whether the receiver refused the message itself, so that sending it again cannot succeed."""
        return self.code in {"AR", "CR"}


class InvalidAcknowledgement(Exception):
    """The reply is not an HL7 ACK with an MSA segment."""


def unescape(text: str, escape_character: str = "\\") -> str:
    replacements = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\", ".br": " "}
    result = []
    index = 0
    while index < len(text):
        if text[index] == escape_character:
            end = text.find(escape_character, index + 1)
            if end > index and text[index + 1:end] in replacements:
                result.append(replacements[text[index + 1:end]])
                index = end + 1
                continue
        result.append(text[index])
        index += 1
    return "".join(result)


def parse_acknowledgement(message: str) -> Acknowledgement:
    """Read MSA-1 (code), MSA-2 (control ID) and the error text (MSA-3, else ERR-8 or ERR-7) of an ACK."""
    segments = [segment for segment in message.replace("\n", "\r").split("\r") if segment]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise InvalidAcknowledgement(f"the reply does not start with an MSH segment: {message[:40]!r}")
    separator = segments[0][3]
    escape_character = segments[0][6] if len(segments[0]) > 6 else "\\"
    fields_by_segment = {}
    for segment in segments:
        fields_by_segment.setdefault(segment[:3], segment.split(separator))
    msa = fields_by_segment.get("MSA")
    if msa is None or len(msa) < 2:
        raise InvalidAcknowledgement("the reply has no MSA segment")
    text = msa[3] if len(msa) > 3 else ""
    err = fields_by_segment.get("ERR")
    if not text and err is not None:
        # ERR-8 is the user message, ERR-7 the diagnostic information.
        text = next((err[index] for index in (8, 7) if len(err) > index and err[index]), "")
    component = segments[0][4]
    return Acknowledgement(
        code=msa[1].strip(),
        control_id=msa[2] if len(msa) > 2 else "",
        text=unescape(text.replace(component, " ").strip(), escape_character),
    )
