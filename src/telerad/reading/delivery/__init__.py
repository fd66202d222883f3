"""Report delivery: what happens to a final report or addendum once it is signed.

Each signed report is rendered as a PDF and stored in the archive as an
Encapsulated PDF and a Basic Text SR. It is sent as an HL7 v2 ORU^R01
message to the configured MLLP endpoints and as a FHIR DiagnosticReport to
the configured FHIR servers. All of it goes through an outbox in the
database, with retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telerad.reading.models import SignedReport


def deliver_signed_report(signed: SignedReport) -> None:
    """Queue the delivery of a final report or addendum; call it inside the signing transaction.

    See :func:`telerad.reading.delivery.outbox.deliver_signed_report`.
    """
    # Imported here because telerad.reading.models imports this package's
    # models while it loads, before the modules that need it can.
    from telerad.reading.delivery.outbox import deliver_signed_report as queue

    queue(signed)
