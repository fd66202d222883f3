"""Throughput and peak memory of the STOW-RS multipart parser on a large body.

Writes a multipart/related body of PART_COUNT parts of PART_SIZE random bytes
to a temporary file, parses it from that file as the view parses the request
stream, and prints MB/s and the peak of Python memory allocations. The parts
are larger than the in-memory part limit, so each one goes through a
temporary file and an mmap, as a large image does.

Run as ``.venv/bin/python bench/stow_parser.py [PART_COUNT] [PART_SIZE_MB]``.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from telerad.dicomweb import multipart  # noqa: E402

BOUNDARY = b"bench-boundary-0123456789"


def write_body(path: Path, part_count: int, part_size: int) -> int:
    content = os.urandom(part_size)
    with path.open("wb") as handle:
        for _ in range(part_count):
            handle.write(b"--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n" + content + b"\r\n")
        handle.write(b"--" + BOUNDARY + b"--\r\n")
    return path.stat().st_size


def parse(path: Path, temporary_dir: Path) -> tuple[int, int]:
    parts = total = 0
    with path.open("rb") as stream:
        for part in multipart.iter_parts(stream, BOUNDARY, max_bytes=1 << 40, temporary_dir=temporary_dir):
            with part.content.buffer() as buffer:
                total += len(buffer)
            part.content.close()
            parts += 1
    return parts, total


def main() -> None:
    part_count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    part_size = int(float(sys.argv[2]) * 1024 * 1024) if len(sys.argv) > 2 else 5 * 1024 * 1024
    with tempfile.TemporaryDirectory() as folder:
        body_path = Path(folder) / "body"
        body_size = write_body(body_path, part_count, part_size)

        tracemalloc.start()
        started = time.perf_counter()
        parts, total = parse(body_path, Path(folder))
        elapsed = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

    assert parts == part_count
    assert total == part_count * part_size
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"body: {body_size / 1e6:.1f} MB in {parts} parts of {part_size / 1e6:.1f} MB")
    print(f"parse: {elapsed:.2f} s, {body_size / 1e6 / elapsed:.0f} MB/s")
    print(f"peak Python allocations: {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
