"""A file cache of default-size thumbnails under the data folder.

Entries are keyed by SOP Instance UID, the stored dataset's digest, frame,
media type and RENDERING_VERSION, so a replaced instance or a changed pixel
pipeline never serves an old picture. Only thumbnails of the default size are
cached: one file per instance and media type at most, where arbitrary
viewports could fill the disk. Files are written to a temporary name and
renamed, so a reader on another node reads a whole file or none.

NOTE: entries of deleted or replaced instances stay until the folder is
cleared; nothing evicts them yet. They are small (a few kB each).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

from django.conf import settings

logger = logging.getLogger(__name__)

# Raise when the pixel pipeline changes what a thumbnail looks like.
RENDERING_VERSION = 1

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif"}


def cache_dir() -> Path:
    return settings.TELERAD.data_dir / "thumbnails"


def cache_path(sop_instance_uid: str, dataset_sha256: str, frame_number: int, media_type: str) -> Path:
    key = f"{RENDERING_VERSION}/{sop_instance_uid}/{dataset_sha256}/{frame_number}/{media_type}"
    digest = hashlib.sha256(key.encode("ascii")).hexdigest()
    return cache_dir() / digest[:2] / f"{digest}.{EXTENSIONS[media_type]}"


def cached_thumbnail(
    *,
    sop_instance_uid: str,
    dataset_sha256: str,
    frame_number: int,
    media_type: str,
    render: Callable[[], bytes],
) -> bytes:
    """Return the cached thumbnail, or call `render` and cache what it returns."""
    path = cache_path(sop_instance_uid, dataset_sha256, frame_number, media_type)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        content = b""
    # An empty entry is what a crash may leave of an unsynced write.
    if content:
        return content

    content = render()
    try:
        _write_atomically(path, content)
    except OSError as exc:
        # The rendered image is returned whether or not it could be cached, so a full
        # or read-only disk makes thumbnails slower but does not make them fail.
        logger.warning("thumbnail not cached sop_instance_uid=%s error=%s", sop_instance_uid, exc)
    return content


def _write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        # No fsync: after a crash a lost or empty entry is only rendered again.
        os.replace(temporary_name, path)
    except BaseException:
        Path(temporary_name).unlink(missing_ok=True)
        raise
