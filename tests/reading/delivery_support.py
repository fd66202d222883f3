"""Exams with signed reports and real peers on 127.0.0.1 for the report delivery tests."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import json
import socket
import threading
from dataclasses import dataclass, field

import pytest
from django.utils import timezone

from tests.conftest import find_sample

SECTIONS = {
    "clinical_history": "Headache for 3 days.",
    "technique": "Axial CT of the head without contrast.",
    "findings": "No intracranial haemorrhage.\nVentricles of normal size & shape.",
    "impression": "No acute intracranial abnormality.",
}
ORDER = ["clinical_history", "technique", "findings", "impression"]


def store_sample_study(name: str = "CT_small.dcm") -> str:
    """Store a pydicom sample image through the archive; return its Study Instance UID."""
    from telerad.archive.ingest import Source, store_file

    result = store_file(find_sample(name).read_bytes(), source=Source(kind="import"))
    assert result.outcome.succeeded, result.reason
    return result.study_instance_uid


def make_exam(study_instance_uid: str | None, *, accession: str = "ACC1001", description: str = "CT head without contrast"):
    from telerad.archive.models import Patient, Study
    from telerad.reading.models import Exam, ExamStudy

    if study_instance_uid is None:
        patient, _ = Patient.objects.get_or_create(patient_id="NOSTUDY1", defaults={"patient_name": "Nostudy^Nora", "patient_birth_date": "19800101"})
        study = None
    else:
        study = Study.objects.select_related("patient").get(study_instance_uid=study_instance_uid)
        patient = study.patient
    exam = Exam.objects.create(
        patient=patient, accession_number=accession, description=description, referring_physician_name="Referrer^Rita",
        modalities="CT", study_received_at=timezone.now(),
    )
    if study is not None:
        ExamStudy.objects.create(exam=exam, study=study)
    return exam


def sign(
    exam, signer, *, kind: str = "final", sections: dict[str, str] | None = None, order: list[str] | None = None,
    at: datetime.datetime | None = None, critical: bool = False,
):
    from telerad.reading.models import SignedReport

    if sections is None:
        sections, order = dict(SECTIONS), list(ORDER)
    else:
        order = list(order or sections)
    signed_at = at or timezone.now()
    text = "\n\n".join(sections[key] for key in order)
    content_hash = hashlib.sha256(f"{exam.pk}:{kind}:{text}:{signer.pk}:{signed_at.isoformat()}".encode()).hexdigest()
    return SignedReport.objects.create(
        exam=exam, kind=kind, sections=sections, section_order=order, text=text, signer=signer, signed_at=signed_at, content_hash=content_hash,
        critical=critical,
    )


@pytest.fixture
def radiologist(make_user):
    user = make_user("drsmith", "radiologist")
    user.first_name, user.last_name = "Jane", "Smith"
    user.save(update_fields=["first_name", "last_name"])
    return user


@pytest.fixture
def final_report(radiologist):
    """A final report of an exam of the CT_small.dcm study."""
    exam = make_exam(store_sample_study())
    return sign(exam, radiologist, at=timezone.now() - datetime.timedelta(hours=1))


@dataclass
class MllpListener:
    """An HL7 MLLP receiver on 127.0.0.1 that keeps the messages and acknowledges each with `reply_code`."""

    reply_code: str = "AA"
    reply_text: str = ""
    messages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                data = b""
                while b"\x1c\x0d" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if not data.startswith(b"\x0b") or not data.endswith(b"\x1c\x0d"):
                    continue
                message = data[1:-2].decode("utf-8")
                with self._lock:
                    self.messages.append(message)
                control_id = message.split("\r")[0].split("|")[9]
                ack = f"MSH|^~\\&|RIS|HOSP|TELERAD||20260101120000||ACK^R01^ACK|A{control_id}|P|2.5.1\rMSA|{self.reply_code}|{control_id}|{self.reply_text}\r"
                connection.sendall(b"\x0b" + ack.encode("utf-8") + b"\x1c\x0d")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


@dataclass
class FhirServer:
    """An HTTP server on 127.0.0.1 that keeps each request and responds with `status`."""

    status: int = 201
    requests: list[tuple[str, str, dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _receive(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                owner.requests.append((self.command, self.path, {"content-type": self.headers.get("Content-Type", ""), "body": body}))
                payload = b'{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad report"}]}'
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = _receive
            do_POST = _receive

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/fhir"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def mllp_listener():
    listener = MllpListener()
    yield listener
    listener.stop()


@pytest.fixture
def fhir_server():
    server = FhirServer()
    yield server
    server.stop()


def free_port() -> int:
    """Return a port on 127.0.0.1 with nothing listening on it (at the time of the call)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
