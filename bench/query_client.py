"""The client side of bench/query.py: sends timed queries and retrievals to one server and prints the timings.

``bench/query.py`` runs this script once per server and round, in the
server's network namespace (Orthanc's private one, or the machine's for
telerad), so that both servers are measured by the same code. It reads a plan
as JSON on standard input and writes the results as JSON on standard output:
for each task, the seconds of every timed request, the bytes received, and
every response whose count differed from the manifest. Each failure stops
nothing: the orchestrator reports a task with failures as FAILED.

HTTP requests share one keep-alive connection (``http.client``), over HTTPS
when the plan names a CA file. C-FIND runs DCMTK ``findscu`` (a new process
and association per query, TCP_NODELAY=1) and pynetdicom over one
association, with TCP_NODELAY set on its socket as well.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from typing import Any, Callable

DICOM_JSON = "application/dicom+json"
# The stored transfer syntax of each instance (PS3.18 8.7.3.5.2: "*" requests no transcoding).
MULTIPART_DICOM_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FINDSCU_PENDING = re.compile(rb"Find Response: \d+ \(Pending\)")
PENDING_STATUSES = (0xFF00, 0xFF01)
HTTP_TIMEOUT = 600.0
FINDSCU_TIMEOUT = 60.0


class TaskResult:
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.bytes = 0
        self.failures: list[str] = []

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "bytes": self.bytes, "failures": self.failures}


# --- HTTP ----------------------------------------------------------------------


class HttpClient:
    """One keep-alive connection to the server's DICOMweb root, reopened only if the server closes it."""

    def __init__(self, plan: dict[str, Any]):
        self.host = plan["host"]
        self.port = plan["port"]
        self.root = plan["root"].rstrip("/")
        self.headers = {"Authorization": f"Bearer {plan['token']}"} if plan.get("token") else {}
        self.context = ssl.create_default_context(cafile=plan["ca_file"]) if plan.get("ca_file") else None
        self.connection = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        if self.context is not None:
            connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=HTTP_TIMEOUT)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def get(self, path: str, *, accept: str, query: dict[str, Any] | None = None) -> tuple[int, str, bytes]:
        """Send GET and return the status, the Content-Type and the whole body."""
        # Orthanc's DICOMweb plugin 1.7 takes "%2A" for a literal asterisk, not a wildcard.
        target = self.root + path + ("?" + urllib.parse.urlencode(query, safe="*") if query else "")
        headers = {**self.headers, "Accept": accept}
        try:
            self.connection.request("GET", target, headers=headers)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.connection.close()
            self.connection = self._connect()
            self.connection.request("GET", target, headers=headers)
            response = self.connection.getresponse()
        body = response.read()
        return response.status, response.getheader("Content-Type", ""), body


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def run_qido(client: HttpClient, task: dict[str, Any]) -> TaskResult:
    """Search studies with each query of the task in turn, `requests` times in all; count the matches of each."""
    result = TaskResult()
    queries = task["queries"]
    # One untimed request first, so that the timings start on a warm connection.
    client.get("/studies", accept=DICOM_JSON, query=_parameters(queries[0]))
    for number in range(task["requests"]):
        query = queries[number % len(queries)]
        seconds, (status, _type, body) = timed(lambda: client.get("/studies", accept=DICOM_JSON, query=_parameters(query)))
        result.seconds.append(seconds)
        result.bytes += len(body)
        _check_json_count(result, status, body, query["expected"], f"query {number % len(queries) + 1}")
    return result


def _parameters(query: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in query.items() if key != "expected"}


def _check_json_count(result: TaskResult, status: int, body: bytes, expected: int, label: str) -> None:
    # 204 No Content is the empty result (PS3.18 8.3.4.4).
    if status == 204:
        found = 0
    elif status != 200:
        result.failures.append(f"{label}: HTTP status {status}: {body[:200].decode(errors='replace').strip()}")
        return
    else:
        try:
            found = len(json.loads(body))
        except ValueError:
            result.failures.append(f"{label}: the response is not JSON")
            return
    if found != expected:
        result.failures.append(f"{label}: {found} results, expected {expected}")


def run_metadata(client: HttpClient, task: dict[str, Any]) -> TaskResult:
    """Fetch the series metadata `requests` times and check the number of instances."""
    result = TaskResult()
    path = f"/studies/{task['study']}/series/{task['series']}/metadata"
    for _ in range(task["requests"]):
        seconds, (status, _type, body) = timed(lambda: client.get(path, accept=DICOM_JSON))
        result.seconds.append(seconds)
        result.bytes += len(body)
        _check_json_count(result, status, body, task["expected"], "series metadata")
    return result


def run_retrieve(client: HttpClient, task: dict[str, Any]) -> TaskResult:
    """Retrieve the whole study as multipart `requests` times; check the parts are the expected Part 10 files."""
    result = TaskResult()
    path = f"/studies/{task['study']}"
    for _ in range(task["requests"]):
        seconds, (status, content_type, body) = timed(lambda: client.get(path, accept=MULTIPART_DICOM_STORED))
        result.seconds.append(seconds)
        result.bytes += len(body)
        if status != 200:
            result.failures.append(f"study retrieve: HTTP status {status}: {body[:200].decode(errors='replace').strip()}")
            continue
        problem = _check_multipart(content_type, body, task["expected"])
        if problem:
            result.failures.append(f"study retrieve: {problem}")
    return result


def _check_multipart(content_type: str, body: bytes, expected: int) -> str:
    """Return what is wrong with a multipart/related body of DICOM files, or "" when it has `expected` Part 10 files."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        return f"Content-Type {content_type!r} is not multipart/related with a boundary"
    delimiter = b"--" + match.group(1).encode("ascii")
    parts = body.split(delimiter)[1:-1]
    if len(parts) != expected:
        return f"{len(parts)} parts, expected {expected}"
    for index, part in enumerate(parts):
        header_end = part.find(b"\r\n\r\n")
        content = part[header_end + 4:] if header_end >= 0 else b""
        if content[128:132] != b"DICM":
            return f"part {index + 1} is not a DICOM Part 10 file"
    return ""


# --- C-FIND --------------------------------------------------------------------

FIND_RETURN_KEYS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber")


def run_findscu(task: dict[str, Any], dicom: dict[str, Any]) -> TaskResult:
    """Run one ``findscu`` process per query at study level and count its pending responses."""
    result = TaskResult()
    environment = {**os.environ, "TCP_NODELAY": "1"}
    queries = task["queries"]
    for number in range(task["requests"]):
        query = queries[number % len(queries)]
        keys = {key: "" for key in FIND_RETURN_KEYS} | _parameters(query)
        command = ["findscu", "-v", "-S", "-aet", dicom["calling_ae"], "-aec", dicom["called_ae"], "-k", "QueryRetrieveLevel=STUDY"]
        for key, value in keys.items():
            command += ["-k", f"{key}={value}"]
        command += ["127.0.0.1", str(dicom["port"])]
        seconds, completed = timed(lambda: subprocess.run(command, capture_output=True, env=environment, timeout=FINDSCU_TIMEOUT, check=False))
        result.seconds.append(seconds)
        output = completed.stdout + completed.stderr
        found = len(FINDSCU_PENDING.findall(output))
        label = f"query {number % len(queries) + 1}"
        if completed.returncode != 0:
            result.failures.append(f"{label}: findscu exit status {completed.returncode}: {output[-300:].decode(errors='replace')}")
        elif found != query["expected"]:
            result.failures.append(f"{label}: {found} responses, expected {query['expected']}")
    return result


def run_pynetdicom_find(task: dict[str, Any], dicom: dict[str, Any]) -> TaskResult:
    """Send the queries over one association with pynetdicom and count the pending responses."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    result = TaskResult()
    ae = AE(ae_title=dicom["calling_ae"])
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", dicom["port"], ae_title=dicom["called_ae"])
    if not assoc.is_established:
        result.failures.append("pynetdicom: association rejected or aborted")
        return result
    # pynetdicom leaves Nagle's algorithm on, which would add delayed
    # acknowledgements to the round trips that are being timed.
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    queries = task["queries"]
    try:
        for number in range(task["requests"]):
            query = queries[number % len(queries)]
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            for key in FIND_RETURN_KEYS:
                setattr(identifier, key, "")
            for key, value in _parameters(query).items():
                setattr(identifier, key, value)
            seconds, statuses = timed(lambda: [status.Status for status, _ in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind) if status])
            result.seconds.append(seconds)
            found = sum(status in PENDING_STATUSES for status in statuses)
            label = f"query {number % len(queries) + 1}"
            if not statuses or statuses[-1] != 0x0000:
                result.failures.append(f"{label}: final status {statuses[-1] if statuses else 'missing'}")
            elif found != query["expected"]:
                result.failures.append(f"{label}: {found} responses, expected {query['expected']}")
    finally:
        assoc.release()
    return result


def main() -> int:
    plan = json.load(sys.stdin)
    results: dict[str, Any] = {}
    client = None
    for task in plan["tasks"]:
        kind = task["kind"]
        try:
            if kind in ("qido", "metadata", "retrieve") and client is None:
                client = HttpClient(plan["http"])
            if kind == "qido":
                outcome = run_qido(client, task)
            elif kind == "metadata":
                outcome = run_metadata(client, task)
            elif kind == "retrieve":
                outcome = run_retrieve(client, task)
            elif kind == "findscu":
                outcome = run_findscu(task, plan["dicom"])
            elif kind == "pynetdicom":
                outcome = run_pynetdicom_find(task, plan["dicom"])
            else:
                raise ValueError(f"unknown task kind {kind!r}")
        except (OSError, http.client.HTTPException, subprocess.SubprocessError, ValueError) as exc:
            outcome = TaskResult()
            outcome.failures.append(f"{type(exc).__name__}: {exc}")
        results[task["name"]] = outcome.to_json()
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
