"""Whether two encodings of one SOP instance carry the same content.

Senders re-encode what they send: another transfer syntax, group lengths
added or dropped, sequences with explicit instead of undefined lengths,
trailing padding removed. A copy that differs from the stored file only in
such encoding details is the same instance, not a conflicting one. This runs
only when a stored SOP Instance UID arrives again with other bytes.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

# (FFFC,FFFC) Data Set Trailing Padding carries no content (PS3.10 7.2).
TRAILING_PADDING = 0xFFFCFFFC


def same_content(stored_path: Path, candidate: bytes) -> bool:
    """Return True when the stored Part 10 file and the `candidate` Part 10 bytes have equal element values."""
    try:
        stored = dcmread(stored_path, force=True)
        received = dcmread(io.BytesIO(candidate), force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return False
    return _datasets_equal(stored, received)


def _datasets_equal(first: Dataset, second: Dataset) -> bool:
    first_tags = _content_tags(first)
    if first_tags != _content_tags(second):
        return False
    return all(_values_equal(first[tag], second[tag]) for tag in first_tags)


def _content_tags(dataset: Dataset) -> set[int]:
    # Group lengths (gggg,0000) depend on the encoding (PS3.5 7.2).
    return {int(tag) for tag in dataset.keys() if tag.element != 0x0000 and tag != TRAILING_PADDING}


def _values_equal(first: Any, second: Any) -> bool:
    if first.VR == "SQ" or second.VR == "SQ":
        if len(first.value) != len(second.value):
            return False
        return all(_datasets_equal(a, b) for a, b in zip(first.value, second.value))
    return bool(first.value == second.value)
