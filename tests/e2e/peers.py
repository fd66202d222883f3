"""The DICOM peers of the end-to-end tests: DCMTK's echoscu and storescu, and a pynetdicom SCU."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, _config
from pynetdicom.association import Association

from .part10 import transfer_syntax_of

if TYPE_CHECKING:
    from .conftest import TeleradServer

DCMTK_TIMEOUT = 120  # seconds for one DCMTK command
# DCMTK's own network timeouts (seconds), so that a silent server cannot hang a test.
DCMTK_NETWORK_OPTIONS = ("--timeout", "10", "--acse-timeout", "10", "--dimse-timeout", "30")
PYNETDICOM_TIMEOUT = 30  # seconds

# The storescu option that proposes each transfer syntax (with the
# uncompressed ones as fallbacks). With --required, storescu proposes only the
# SOP classes of the files it sends, and sends each file in its own transfer
# syntax when that was accepted.
STORESCU_PROPOSAL = {
    ExplicitVRLittleEndian: "--propose-little",
    ImplicitVRLittleEndian: "--propose-implicit",
    ExplicitVRBigEndian: "--propose-big",
    DeflatedExplicitVRLittleEndian: "--propose-deflated",
    JPEGBaseline8Bit: "--propose-jpeg8",
    JPEGExtended12Bit: "--propose-jpeg12",
    JPEGLosslessSV1: "--propose-lossless",
    JPEGLSLossless: "--propose-jls-lossless",
    JPEGLSNearLossless: "--propose-jls-lossy",
    JPEG2000Lossless: "--propose-j2k-lossless",
    JPEG2000: "--propose-j2k-lossy",
    RLELossless: "--propose-rle",
}
SENDING_FILE = re.compile(r"^I: Sending file: (.+)$")
STORE_SUCCESS = re.compile(r"^I: Received Store Response \(Success\)")


def dcmtk_environment() -> dict[str, str]:
    # Without TCP_NODELAY, DCMTK waits for the peer's delayed ACK, about 40 ms per DIMSE round trip.
    return {**os.environ, "TCP_NODELAY": "1"}


def dcmtk_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found; install DCMTK (Debian package dcmtk)")
    return path


def echoscu(server: TeleradServer, calling_ae_title: str) -> subprocess.CompletedProcess[str]:
    command = [
        dcmtk_tool("echoscu"), *DCMTK_NETWORK_OPTIONS,
        "--aetitle", calling_ae_title, "--call", server.ae_title, "127.0.0.1", str(server.dicom_port),
    ]
    return subprocess.run(command, env=dcmtk_environment(), capture_output=True, text=True, timeout=DCMTK_TIMEOUT)


def run_scu(
    tool: str, server: TeleradServer, calling_ae_title: str, *arguments: str, files: Iterable[Path] = (),
) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK SCU verbosely against the server's plain DICOM port, with `files` after the address as storescu expects them."""
    command = [
        dcmtk_tool(tool), "--verbose", *DCMTK_NETWORK_OPTIONS, "--aetitle", calling_ae_title, "--call", server.ae_title,
        *arguments, "127.0.0.1", str(server.dicom_port), *(str(path) for path in files),
    ]
    return subprocess.run(command, env=dcmtk_environment(), capture_output=True, text=True, timeout=DCMTK_TIMEOUT)


def storescu_command(server: TeleradServer, calling_ae_title: str, transfer_syntax: UID, files: Iterable[Path]) -> list[str]:
    proposal = STORESCU_PROPOSAL.get(transfer_syntax)
    if proposal is None:
        pytest.fail(f"no storescu option proposes {transfer_syntax.name}; add one to STORESCU_PROPOSAL")
    return [
        dcmtk_tool("storescu"), "--verbose", "--required", proposal, *DCMTK_NETWORK_OPTIONS,
        "--aetitle", calling_ae_title, "--call", server.ae_title,
        "127.0.0.1", str(server.dicom_port), *(str(path) for path in files),
    ]


def storescu(server: TeleradServer, calling_ae_title: str, files: Iterable[Path]) -> list[subprocess.CompletedProcess[str]]:
    """Send `files` with one storescu association per transfer syntax, so that each file travels in its own."""
    groups: dict[UID, list[Path]] = defaultdict(list)
    for path in files:
        groups[transfer_syntax_of(path)].append(path)
    return [
        subprocess.run(
            storescu_command(server, calling_ae_title, transfer_syntax, paths),
            env=dcmtk_environment(), capture_output=True, text=True, timeout=DCMTK_TIMEOUT,
        )
        for transfer_syntax, paths in groups.items()
    ]


class StorescuProgress:
    """A storescu run in the background, with the files that got a success response so far, read from its verbose log."""

    def __init__(self, command: list[str]):
        self.process = subprocess.Popen(
            command, env=dcmtk_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.acknowledged: list[Path] = []
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        current: Path | None = None
        for line in self.process.stderr:
            line = line.rstrip("\n")
            sending = SENDING_FILE.match(line)
            with self._lock:
                self.log.append(line)
                if sending:
                    current = Path(sending.group(1))
                elif STORE_SUCCESS.match(line) and current is not None:
                    self.acknowledged.append(current)
                    current = None

    def acknowledged_count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def wait_for_acknowledged(self, count: int, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.acknowledged_count() < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"storescu acknowledged {self.acknowledged_count()} files, expected {count}:\n" + self.log_tail())
            time.sleep(0.005)

    def wait(self, *, timeout: float) -> int:
        returncode = self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DCMTK_TIMEOUT)

    def log_tail(self, lines: int = 40) -> str:
        with self._lock:
            return "\n".join(self.log[-lines:])


@contextlib.contextmanager
def association(
    server: TeleradServer,
    calling_ae_title: str,
    sop_classes: Iterable[str],
    transfer_syntaxes: Iterable[str] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian),
) -> Iterator[Association]:
    """Open a pynetdicom association to `server` that proposes each SOP class in each transfer syntax."""
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = PYNETDICOM_TIMEOUT
    syntaxes = list(transfer_syntaxes)
    # One presentation context per pair, because an SCP accepts a single
    # transfer syntax from each context it accepts.
    for sop_class in sop_classes:
        for transfer_syntax in syntaxes:
            ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    try:
        if not assoc.is_established:
            pytest.fail(f"association from {calling_ae_title} to telerad was not established")
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def send_file(assoc: Association, path: Path) -> Dataset:
    """Send the dataset of a Part 10 file byte for byte, with the SOP Class and Instance UIDs its file meta names.

    pynetdicom decodes and re-encodes a file unless it sends it in chunks, and
    only the chunked way can send a dataset that does not decode.
    """
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return assoc.send_c_store(path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
