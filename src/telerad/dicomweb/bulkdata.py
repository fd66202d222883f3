"""Bulk data values named by the tag paths that metadata BulkDataURIs carry.

A tag path is a top-level tag as 8 hex digits, followed for a nested
element by ``/item/tag`` steps, with items numbered from 0:
``00282000`` or ``00540016/0/00181072``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.tag import BaseTag

from telerad.dicomweb.transcode import WORD_SIZES

TAG_PATH = re.compile(r"^[0-9A-Fa-f]{8}(?:/[0-9]+/[0-9A-Fa-f]{8})*$")
FIRST_PIXEL_DATA_TAG = 0x7FE00008


class InvalidTagPath(ValueError):
    """The tag path does not follow the syntax above."""


class NoSuchElement(LookupError):
    """The tag path names no element with a binary value in the instance."""


def parse_tag_path(text: str) -> list[int]:
    """Return the steps of a tag path: tags at even positions, item numbers at odd ones."""
    if not TAG_PATH.match(text):
        raise InvalidTagPath(f"the bulk data path {text!r} is not a tag (8 hex digits) followed by /item/tag steps, such as 00540016/0/00181072")
    return [int(step, 16) if position % 2 == 0 else int(step) for position, step in enumerate(text.split("/"))]


def element_value(path: Path, steps: list[int]) -> bytes:
    """Return the value of the binary element at `steps` in the file at `path`, in little endian byte order."""
    top_tag = steps[0]
    dataset = dcmread(path, stop_before_pixels=top_tag < FIRST_PIXEL_DATA_TAG)
    little_endian = dataset.file_meta.TransferSyntaxUID.is_little_endian
    current: Dataset = dataset
    for position in range(0, len(steps) - 1, 2):
        tag, item = steps[position], steps[position + 1]
        if tag not in current or current[tag].VR != "SQ" or item >= len(current[tag].value):
            raise NoSuchElement(f"item {item} of sequence {BaseTag(tag)} not found")
        current = current[tag].value[item]

    tag = steps[-1]
    if tag not in current:
        raise NoSuchElement(f"element {BaseTag(tag)} not found")
    element = current[tag]
    if not isinstance(element.value, bytes):
        raise NoSuchElement(f"element {BaseTag(tag)} has VR {element.VR}, not a binary value (OB, OW, OF, OD, OL, OV or UN)")
    size = WORD_SIZES.get(str(element.VR))
    if little_endian or size is None:
        return element.value
    return np.frombuffer(element.value, dtype=f">u{size}").astype(f"<u{size}").tobytes()
