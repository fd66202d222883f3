from __future__ import annotations

import pytest
from hl7apy.parser import parse_message

from telerad.reading.delivery import hl7
from telerad.reading.delivery.document import build_document
from telerad.reading.delivery.models import DeliveryEndpoint, EndpointKind

from .delivery_support import final_report, make_exam, radiologist, sign, store_sample_study  # noqa: F401

DELIMITERS = "a|b^c&d~e\\f"


def parse(message: hl7.OruMessage):
    return parse_message(message.text, find_groups=False)


def segments(message: hl7.OruMessage, name: str) -> list[str]:
    return [segment for segment in message.text.split("\r") if segment.startswith(name + "|")]


def test_oru_segments_and_fields(final_report):
    endpoint = DeliveryEndpoint(name="RIS", kind=EndpointKind.HL7_MLLP, host="127.0.0.1", port=2575, receiving_application="RIS", receiving_facility="HOSP")

    message = hl7.build_oru(build_document(final_report), endpoint, control_id="C123")
    parsed = parse(message)

    assert message.text.endswith("\r")
    assert [segment.name for segment in parsed.children][:5] == ["MSH", "PID", "PV1", "ORC", "OBR"]
    assert parsed.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert parsed.msh.msh_10.to_er7() == "C123"
    assert parsed.msh.msh_12.to_er7() == "2.5.1"
    assert parsed.msh.msh_5.to_er7() == "RIS"
    assert parsed.pid.pid_3.to_er7().split("^")[0] == "1CT1"
    assert parsed.pid.pid_5.to_er7() == "CompressedSamples^CT1"
    assert parsed.pv1.pv1_2.to_er7() == "U"
    assert parsed.orc.orc_3.to_er7() == "ACC1001"
    assert parsed.obr.obr_3.to_er7() == "ACC1001"
    assert parsed.obr.obr_25.to_er7() == "F"
    assert parsed.obr.obr_32.to_er7() == "drsmith&Smith&Jane"


def test_obx_per_line_and_section(final_report):
    message = hl7.build_oru(build_document(final_report))
    observations = [segment.split("|") for segment in segments(message, "OBX")]

    values = [fields[5] for fields in observations]
    assert values == [
        "Clinical history", "Headache for 3 days.",
        "Technique", "Axial CT of the head without contrast.",
        "Findings", "No intracranial haemorrhage.", "Ventricles of normal size \\T\\ shape.",
        "Impression", "No acute intracranial abnormality.",
    ]
    assert [fields[1] for fields in observations] == [str(number) for number in range(1, 10)]
    assert [fields[4] for fields in observations] == ["1", "1", "2", "2", "3", "3", "3", "4", "4"]
    assert {fields[2] for fields in observations} == {"TX"}
    assert {fields[11] for fields in observations} == {"F"}
    assert observations[5][3].split("^")[3] == "findings"


def test_delimiters_are_escaped(radiologist):
    exam = make_exam(store_sample_study(), accession=DELIMITERS)
    signed = sign(exam, radiologist, sections={"findings": f"Text with {DELIMITERS} inside."})

    message = hl7.build_oru(build_document(signed))
    parsed = parse(message)

    assert segments(message, "OBR")[0].split("|")[3] == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    obr_3 = parsed.obr.obr_3.to_er7()
    assert hl7.unescape(obr_3) == DELIMITERS
    obx = segments(message, "OBX")[1].split("|")
    assert len(obx) >= 12, "an escaped delimiter must not add fields"
    assert hl7.unescape(obx[5]) == f"Text with {DELIMITERS} inside."


def test_addendum_is_corrected_result(final_report, radiologist):
    addendum = sign(final_report.exam, radiologist, kind="addendum", sections={"addendum": "Small lesion."})

    message = hl7.build_oru(build_document(addendum))

    assert segments(message, "OBR")[0].split("|")[25] == "C"
    values = [segment.split("|")[5] for segment in segments(message, "OBX")]
    assert values[:2] == ["Addendum: Addendum", "Small lesion."]
    assert "No acute intracranial abnormality." in values
    assert {segment.split("|")[11] for segment in segments(message, "OBX")} == {"C"}


@pytest.mark.parametrize(
    ("reply", "code", "text", "accepted", "rejected"),
    [
        ("MSH|^~\\&|RIS||TELERAD||20260101||ACK|1|P|2.5.1\rMSA|AA|X1\r", "AA", "", True, False),
        ("MSH|^~\\&|RIS||TELERAD||20260101||ACK|1|P|2.5.1\rMSA|CA|X1\r", "CA", "", True, False),
        ("MSH|^~\\&|RIS||TELERAD||20260101||ACK|1|P|2.5.1\rMSA|AE|X1|Unknown patient \\F\\ retry\r", "AE", "Unknown patient | retry", False, False),
        ("MSH|^~\\&|RIS||TELERAD||20260101||ACK|1|P|2.5.1\rMSA|AR|X1\rERR||||E||||Unsupported message type\r", "AR", "Unsupported message type", False, True),
    ],
)
def test_parse_acknowledgement(reply, code, text, accepted, rejected):
    acknowledgement = hl7.parse_acknowledgement(reply)

    assert acknowledgement.code == code
    assert acknowledgement.control_id == "X1"
    assert acknowledgement.text == text
    assert acknowledgement.accepted is accepted
    assert acknowledgement.rejected is rejected


def test_parse_acknowledgement_without_msa():
    with pytest.raises(hl7.InvalidAcknowledgement, match="no MSA"):
        hl7.parse_acknowledgement("MSH|^~\\&|RIS||TELERAD||20260101||ACK|1|P|2.5.1\r")
