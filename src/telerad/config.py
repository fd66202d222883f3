"""telerad's configuration, read once from the environment and an optional TOML file.

Every setting has an environment variable (``TELERAD_<NAME>``) and a key of the
same name in lower case in the TOML file named by ``TELERAD_CONFIG_FILE``
(default: ``telerad.toml`` in the data folder, when it exists). The environment
wins over the file. Secrets also accept ``TELERAD_<NAME>_FILE``, the path of a
file that contains the value.

:func:`load` collects problems as :class:`ConfigProblem` instead of raising,
so that ``telerad check`` can list them all in plain words. The servers and the
commands that change data refuse to start while any remain.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import secrets
import ssl
import tomllib
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "TELERAD_"

# PS3.5 6.2: an AE title is 1 to 16 characters of the default repertoire,
# without backslash or control characters. Leading and trailing spaces are
# not significant.
AE_TITLE_PATTERN = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
# A plain address such as telerad@example.org, without a display name.
EMAIL_ADDRESS_PATTERN = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
# The demo's lead radiologist account (telerad.core.demo.DEMO_ACCOUNTS). With
# TELERAD_DEMO it is the default department and escalation contact, so that
# critical results of exams without a referring clinician reach someone.
DEMO_CRITICAL_CONTACT = "lead"


class DuplicatePolicy(enum.StrEnum):
    """The rule for a SOP Instance UID that arrives again with different content."""

    KEEP_FIRST = "keep-first"
    OVERWRITE = "overwrite"


@dataclasses.dataclass(frozen=True)
class ConfigProblem:
    setting: str
    message: str

    def __str__(self) -> str:
        return f"{ENV_PREFIX}{self.setting.upper()}: {self.message}"


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: Path
    database_url: str
    host: str = "127.0.0.1"
    http_port: int = 8443
    dicom_port: int = 11112
    # DICOM TLS listener port; None runs no TLS listener.
    dicom_tls_port: int | None = None
    # True turns the plain DICOM listener off, so that peers connect only over TLS.
    dicom_tls_only: bool = False
    # The DICOM TLS certificate and key; None uses the web server's.
    dicom_tls_certificate: Path | None = None
    dicom_tls_private_key: Path | None = None
    # CA bundle (PEM). When set, TLS callers must present a certificate it
    # signed, and C-MOVE destinations are verified against it instead of the
    # system's trusted CAs.
    dicom_tls_ca_file: Path | None = None
    ae_title: str = "TELERAD"
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    # Plain HTTP is for tests and for running behind a TLS-terminating proxy.
    http_tls: bool = True
    secret_key: str = ""
    accept_any_ae: bool = False
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    # Largest P-DATA PDU telerad accepts (PS3.8 9.3.1); larger PDUs mean fewer
    # round trips through the protocol stack for large images.
    dicom_max_pdu: int = 4 * 1024 * 1024
    dicom_max_associations: int = 20
    # Largest STOW-RS request body, in MiB. A CT or MR study is often a few
    # hundred MiB; clients with more split their upload into several requests.
    dicomweb_max_upload_mb: int = 2048
    # Most results one QIDO-RS search returns when the client sets no limit
    # (or a higher one). A Warning header asks the client to page on.
    qido_max_results: int = 1000
    demo: bool = False
    # After this many failed logins within login_lockout_minutes, the account
    # name or source address they came from is locked for as many minutes.
    login_max_failures: int = 5
    login_lockout_minutes: int = 15
    # A browser session ends after this many minutes without a request.
    session_timeout_minutes: int = 30
    # Every user signs in with an authenticator code after the password.
    two_factor_required: bool = True
    log_level: str = "INFO"
    # The IHE audit record repository that receives every audit event as a
    # syslog message over TLS (RFC 5425); forwarding is off without a host.
    audit_syslog_host: str = ""
    audit_syslog_port: int = 6514
    audit_syslog_ca_file: Path | None = None
    audit_syslog_certificate: Path | None = None
    audit_syslog_private_key: Path | None = None
    # AuditSourceID of the audit messages; the AE title when unset.
    audit_source_id: str = ""
    audit_enterprise_site_id: str = ""
    # Reading. A claim on an exam lapses after this many minutes without a
    # request by its holder on that exam.
    claim_timeout_minutes: int = 30
    # Minutes an exam may wait for its report, per priority (STAT, urgent,
    # routine), before the worklist shows its clock amber and then red.
    tat_warning_minutes: tuple[int, int, int] = (30, 120, 24 * 60)
    tat_overdue_minutes: tuple[int, int, int] = (60, 240, 48 * 60)
    # Seconds between two runs of the background work that makes exams of new studies.
    exam_sync_seconds: int = 5
    # Report delivery: the department named on report PDFs, its logo (a PNG
    # or JPEG file), and the retries of outbound deliveries, which wait twice
    # as long after each failure, up to delivery_max_retry_seconds.
    department_name: str = "Radiology"
    department_logo: Path | None = None
    delivery_max_attempts: int = 10
    delivery_max_retry_seconds: int = 3600
    delivery_timeout_seconds: int = 30
    # FHIR Identifier.system of accession numbers; set a URI of the department's own.
    fhir_accession_system: str = "urn:telerad:accession-number"
    # E-mail of notifications through an SMTP server; off while smtp_host is
    # empty. smtp_starttls upgrades a plain connection, smtp_tls connects with
    # TLS from the start (usually port 465). The port defaults to 465 with
    # smtp_tls and to 587 otherwise.
    smtp_host: str = ""
    smtp_port: int | None = None
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    smtp_tls: bool = False
    mail_from: str = ""
    # The address at which users reach telerad, such as https://telerad.example.org;
    # links in e-mails start with it.
    base_url: str = ""
    # Critical results: minutes the referring clinician has to acknowledge
    # before the notice escalates, the contact it escalates to, and the
    # contact of exams without a referring clinician. A contact is a user
    # name or an e-mail address.
    critical_ack_minutes: int = 30
    critical_escalation_contact: str = ""
    critical_department_contact: str = ""
    problems: tuple[ConfigProblem, ...] = ()

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def temporary_dir(self) -> Path:
        """Scratch space on the storage file system, so that finished files move into place atomically."""
        return self.data_dir / "tmp"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def certificate_path(self) -> Path:
        return self.tls_certificate or self.tls_dir / "telerad.crt"

    @property
    def private_key_path(self) -> Path:
        return self.tls_private_key or self.tls_dir / "telerad.key"

    @property
    def dicom_certificate_path(self) -> Path:
        return self.dicom_tls_certificate or self.certificate_path

    @property
    def dicom_private_key_path(self) -> Path:
        return self.dicom_tls_private_key or self.private_key_path

    @property
    def dicom_plain_listener(self) -> bool:
        return not self.dicom_tls_only

    @property
    def dicomweb_max_upload_bytes(self) -> int:
        return self.dicomweb_max_upload_mb * 1024 * 1024

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite:")

    @property
    def audit_forwarding(self) -> bool:
        return bool(self.audit_syslog_host)

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def smtp_port_or_default(self) -> int:
        if self.smtp_port is not None:
            return self.smtp_port
        return 465 if self.smtp_tls else 587


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "telerad"


class _Reader:
    """Looks up raw values in the environment, then the TOML file, collecting problems."""

    def __init__(self, environ: Mapping[str, str], file_values: Mapping[str, Any]):
        self.environ = environ
        self.file_values = file_values
        self.problems: list[ConfigProblem] = []

    def raw(self, name: str) -> Any:
        env_name = ENV_PREFIX + name.upper()
        if env_name in self.environ:
            return self.environ[env_name]
        return self.file_values.get(name)

    def secret(self, name: str) -> str | None:
        path = self.environ.get(ENV_PREFIX + name.upper() + "_FILE")
        if path:
            try:
                return Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problem(name, f"cannot read the file {path}: {exc.strerror}")
                return None
        value = self.raw(name)
        return None if value is None else str(value)

    def string(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None or value == "" else str(value)

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self.raw(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.problem(name, f"{value!r} is not a whole number; use a number from {minimum} to {maximum}")
            return default
        if not minimum <= number <= maximum:
            self.problem(name, f"{number} is out of range; use a number from {minimum} to {maximum}")
            return default
        return number

    def optional_integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        """Return the whole number set for `name`, or None when it is unset or invalid."""
        if self.raw(name) in (None, ""):
            return None
        problems_before = len(self.problems)
        number = self.integer(name, 0, minimum=minimum, maximum=maximum)
        return None if len(self.problems) > problems_before else number

    def minutes_per_priority(self, name: str, default: tuple[int, int, int]) -> tuple[int, int, int]:
        """Read three whole numbers of minutes (STAT, urgent, routine): "30,120,1440" or a TOML list."""
        value = self.raw(name)
        if value is None or value == "":
            return default
        parts = value if isinstance(value, list) else str(value).split(",")
        try:
            numbers = tuple(int(str(part).strip()) for part in parts)
        except ValueError:
            numbers = ()
        if len(numbers) != 3 or any(not 1 <= number <= 365 * 24 * 60 for number in numbers):
            self.problem(name, f"{value!r} is invalid; give three whole numbers of minutes for STAT, urgent and routine exams, like 30,120,1440")
            return default
        return numbers  # type: ignore[return-value]

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        self.problem(name, f"{value!r} is not a yes/no value; use true or false")
        return default

    def path(self, name: str) -> Path | None:
        value = self.raw(name)
        return Path(str(value)).expanduser() if value else None

    def problem(self, name: str, message: str) -> None:
        self.problems.append(ConfigProblem(name, message))


def _read_file_values(environ: Mapping[str, str], data_dir: Path) -> tuple[dict[str, Any], list[ConfigProblem]]:
    explicit = environ.get(ENV_PREFIX + "CONFIG_FILE")
    path = Path(explicit) if explicit else data_dir / "telerad.toml"
    if not path.exists():
        if explicit:
            return {}, [ConfigProblem("config_file", f"the file {path} does not exist")]
        return {}, []
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle), []
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return {}, [ConfigProblem("config_file", f"cannot read {path}: {exc}")]


def _read_audit_settings(reader: _Reader) -> dict[str, Any]:
    """Read the audit repository settings; a host without a CA file is a problem, because the server must be verified."""
    host = reader.string("audit_syslog_host", "").strip()
    ca_file = reader.path("audit_syslog_ca_file")
    certificate = reader.path("audit_syslog_certificate")
    private_key = reader.path("audit_syslog_private_key")
    if host and ca_file is None:
        reader.problem("audit_syslog_ca_file", "missing; set it to the PEM file of the CA that signed the audit repository's certificate")
    if (certificate is None) != (private_key is None):
        reader.problem("audit_syslog_certificate", "set both TELERAD_AUDIT_SYSLOG_CERTIFICATE and TELERAD_AUDIT_SYSLOG_PRIVATE_KEY, or neither when the audit repository requires no client certificate")
    for name, value in (("audit_syslog_ca_file", ca_file), ("audit_syslog_certificate", certificate), ("audit_syslog_private_key", private_key)):
        if value is not None and not value.is_file():
            reader.problem(name, f"the file {value} does not exist")
    if ca_file is not None and ca_file.is_file():
        try:
            ssl.create_default_context(cafile=str(ca_file))
        except ssl.SSLError as exc:
            reader.problem("audit_syslog_ca_file", f"{ca_file} contains no valid PEM certificate ({exc.reason or exc}); give the CA certificate in PEM form")
    source_id = reader.string("audit_source_id", "").strip()
    site_id = reader.string("audit_enterprise_site_id", "").strip()
    return {
        "audit_syslog_host": host,
        "audit_syslog_port": reader.integer("audit_syslog_port", 6514, minimum=1, maximum=65535),
        "audit_syslog_ca_file": ca_file,
        "audit_syslog_certificate": certificate,
        "audit_syslog_private_key": private_key,
        "audit_source_id": source_id,
        "audit_enterprise_site_id": site_id,
    }


def _read_reading_settings(reader: _Reader) -> dict[str, Any]:
    """Read the worklist settings; each priority's warning time must come before its overdue time."""
    warning = reader.minutes_per_priority("tat_warning_minutes", Config.tat_warning_minutes)
    overdue = reader.minutes_per_priority("tat_overdue_minutes", Config.tat_overdue_minutes)
    if any(warn >= late for warn, late in zip(warning, overdue)):
        reader.problem("tat_overdue_minutes", f"each overdue time must be longer than the warning time of the same priority (warning {warning}, overdue {overdue})")
        warning, overdue = Config.tat_warning_minutes, Config.tat_overdue_minutes
    return {
        "claim_timeout_minutes": reader.integer("claim_timeout_minutes", 30, minimum=1, maximum=24 * 60),
        "tat_warning_minutes": warning,
        "tat_overdue_minutes": overdue,
        "exam_sync_seconds": reader.integer("exam_sync_seconds", 5, minimum=1, maximum=3600),
    }


def _read_delivery_settings(reader: _Reader) -> dict[str, Any]:
    logo = reader.path("department_logo")
    if logo is not None and not logo.is_file():
        reader.problem("department_logo", f"the file {logo} does not exist; give the path of a PNG or JPEG file, or unset it")
    return {
        "department_name": reader.string("department_name", "Radiology").strip(),
        "department_logo": logo,
        "delivery_max_attempts": reader.integer("delivery_max_attempts", 10, minimum=1, maximum=1000),
        "delivery_max_retry_seconds": reader.integer("delivery_max_retry_seconds", 3600, minimum=1, maximum=7 * 24 * 3600),
        "delivery_timeout_seconds": reader.integer("delivery_timeout_seconds", 30, minimum=1, maximum=600),
        "fhir_accession_system": reader.string("fhir_accession_system", "urn:telerad:accession-number").strip(),
    }


def _read_mail_settings(reader: _Reader, *, demo: bool) -> dict[str, Any]:
    """Read the SMTP, link and critical result settings; an SMTP host needs a sender and a base URL."""
    host = reader.string("smtp_host", "").strip()
    user = reader.string("smtp_user", "").strip()
    password = reader.secret("smtp_password") or ""
    starttls = reader.boolean("smtp_starttls", True)
    implicit_tls = reader.boolean("smtp_tls", False)
    mail_from = reader.string("mail_from", "").strip()
    base_url = reader.string("base_url", "").strip().rstrip("/")

    if starttls and implicit_tls:
        reader.problem("smtp_tls", "TELERAD_SMTP_TLS and TELERAD_SMTP_STARTTLS are both on; set TELERAD_SMTP_STARTTLS to false for a server that expects TLS from the start (port 465)")
    if bool(user) != bool(password):
        reader.problem("smtp_user", "set both TELERAD_SMTP_USER and TELERAD_SMTP_PASSWORD, or neither for a server that needs no login")
    if password and not (starttls or implicit_tls):
        reader.problem("smtp_password", "the SMTP password would be sent without encryption; turn on TELERAD_SMTP_STARTTLS or TELERAD_SMTP_TLS")

    if host and not mail_from:
        reader.problem("mail_from", "missing; set the sender of notification e-mails, like telerad@example.org")
    elif mail_from and not EMAIL_ADDRESS_PATTERN.fullmatch(mail_from):
        reader.problem("mail_from", f"{mail_from!r} is not an e-mail address; set the sender of notification e-mails, like telerad@example.org")
    if base_url and not re.match(r"^https?://[^/]+", base_url):
        reader.problem("base_url", f"{base_url!r} is not an http or https address; give the address users open telerad at, like https://telerad.example.org")
    elif host and not base_url:
        reader.problem("base_url", "missing; e-mails link to telerad, so give the address users open it at, like https://telerad.example.org")

    return {
        "smtp_host": host,
        "smtp_port": reader.optional_integer("smtp_port", minimum=1, maximum=65535),
        "smtp_user": user,
        "smtp_password": password,
        "smtp_starttls": starttls,
        "smtp_tls": implicit_tls,
        "mail_from": mail_from,
        "base_url": base_url,
        "critical_ack_minutes": reader.integer("critical_ack_minutes", 30, minimum=1, maximum=7 * 24 * 60),
        "critical_escalation_contact": reader.string("critical_escalation_contact", DEMO_CRITICAL_CONTACT if demo else "").strip(),
        "critical_department_contact": reader.string("critical_department_contact", DEMO_CRITICAL_CONTACT if demo else "").strip(),
    }


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from `environ` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    data_dir = Path(environ.get(ENV_PREFIX + "DATA_DIR") or default_data_dir()).expanduser().absolute()
    file_values, file_problems = _read_file_values(environ, data_dir)
    reader = _Reader(environ, file_values)
    reader.problems.extend(file_problems)

    database_url = reader.string("database_url", f"sqlite:///{data_dir / 'telerad.sqlite3'}")
    if not re.match(r"^(sqlite|postgres|postgresql|pgsql)://", database_url):
        reader.problem("database_url", f"unsupported database {database_url.split(':', 1)[0]!r}; use sqlite:////ABSOLUTE/PATH or postgresql://USER@HOST:PORT/NAME")
    elif database_url.startswith("sqlite:") and not database_url.startswith("sqlite:////"):
        # sqlite:///name is relative to the working folder, so each command
        # started elsewhere would open another database.
        reader.problem("database_url", f"{database_url!r} is a relative path; give an absolute one with four slashes, like sqlite:////var/lib/telerad/telerad.sqlite3")

    ae_title = reader.string("ae_title", "TELERAD").strip()
    if not AE_TITLE_PATTERN.match(ae_title):
        reader.problem("ae_title", f"{ae_title!r} is not a valid AE title; use 1 to 16 printable ASCII characters without backslash")
        ae_title = "TELERAD"

    policy_text = reader.string("duplicate_policy", DuplicatePolicy.KEEP_FIRST.value)
    try:
        duplicate_policy = DuplicatePolicy(policy_text)
    except ValueError:
        reader.problem("duplicate_policy", f"{policy_text!r} is not a policy; use keep-first or overwrite")
        duplicate_policy = DuplicatePolicy.KEEP_FIRST

    log_level = reader.string("log_level", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        reader.problem("log_level", f"{log_level!r} is not a level; use DEBUG, INFO, WARNING or ERROR")
        log_level = "INFO"

    certificate = reader.path("tls_certificate")
    private_key = reader.path("tls_private_key")
    if (certificate is None) != (private_key is None):
        reader.problem("tls_certificate", "set both TELERAD_TLS_CERTIFICATE and TELERAD_TLS_PRIVATE_KEY, or neither to use a self-signed certificate")
    for name, value in (("tls_certificate", certificate), ("tls_private_key", private_key)):
        if value is not None and not value.is_file():
            reader.problem(name, f"the file {value} does not exist")

    demo = reader.boolean("demo", False)
    dicom_tls = _read_dicom_tls(reader)

    config = Config(
        data_dir=data_dir,
        database_url=database_url,
        host=reader.string("host", "127.0.0.1"),
        http_port=reader.integer("http_port", 8443, minimum=1, maximum=65535),
        dicom_port=reader.integer("dicom_port", 11112, minimum=1, maximum=65535),
        ae_title=ae_title,
        **dicom_tls,
        tls_certificate=certificate,
        tls_private_key=private_key,
        http_tls=reader.boolean("http_tls", True),
        secret_key=reader.secret("secret_key") or "",
        accept_any_ae=reader.boolean("accept_any_ae", False),
        duplicate_policy=duplicate_policy,
        dicom_max_pdu=reader.integer("dicom_max_pdu", 4 * 1024 * 1024, minimum=4096, maximum=64 * 1024 * 1024),
        dicom_max_associations=reader.integer("dicom_max_associations", 20, minimum=1, maximum=500),
        dicomweb_max_upload_mb=reader.integer("dicomweb_max_upload_mb", 2048, minimum=1, maximum=1024 * 1024),
        qido_max_results=reader.integer("qido_max_results", 1000, minimum=1, maximum=100_000),
        demo=demo,
        login_max_failures=reader.integer("login_max_failures", 5, minimum=1, maximum=1000),
        login_lockout_minutes=reader.integer("login_lockout_minutes", 15, minimum=1, maximum=24 * 60),
        session_timeout_minutes=reader.integer("session_timeout_minutes", 30, minimum=1, maximum=7 * 24 * 60),
        # The demo's accounts have public passwords and no authenticators.
        two_factor_required=reader.boolean("two_factor_required", not demo),
        log_level=log_level,
        **_read_audit_settings(reader),
        **_read_reading_settings(reader),
        **_read_delivery_settings(reader),
        **_read_mail_settings(reader, demo=demo),
    )
    if config.dicom_plain_listener and config.http_port == config.dicom_port:
        reader.problem("dicom_port", f"the DICOM port {config.dicom_port} is also the HTTP port; choose two different ports")
    _check_dicom_ports(config, reader)
    if config.secret_key and len(config.secret_key) < 32:
        reader.problem("secret_key", "the secret key is shorter than 32 characters; generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'")
    return dataclasses.replace(config, problems=tuple(reader.problems))


def _read_dicom_tls(reader: _Reader) -> dict[str, Any]:
    """Read the DICOM TLS settings, collecting their problems in `reader`."""
    tls_port = reader.optional_integer("dicom_tls_port", minimum=1, maximum=65535)
    tls_only = reader.boolean("dicom_tls_only", False)
    # An invalid port is reported as such, not as a missing one.
    if tls_only and reader.raw("dicom_tls_port") in (None, ""):
        reader.problem("dicom_tls_only", "the plain DICOM listener is off but TELERAD_DICOM_TLS_PORT is not set, so nothing would listen; set a TLS port or set TELERAD_DICOM_TLS_ONLY to false")

    certificate = reader.path("dicom_tls_certificate")
    private_key = reader.path("dicom_tls_private_key")
    if (certificate is None) != (private_key is None):
        reader.problem("dicom_tls_certificate", "set both TELERAD_DICOM_TLS_CERTIFICATE and TELERAD_DICOM_TLS_PRIVATE_KEY, or neither to use the web server's certificate")
    ca_file = reader.path("dicom_tls_ca_file")
    for name, value in (("dicom_tls_certificate", certificate), ("dicom_tls_private_key", private_key), ("dicom_tls_ca_file", ca_file)):
        if value is not None and not value.is_file():
            reader.problem(name, f"the file {value} does not exist")

    return {
        "dicom_tls_port": tls_port,
        "dicom_tls_only": tls_only,
        "dicom_tls_certificate": certificate,
        "dicom_tls_private_key": private_key,
        "dicom_tls_ca_file": ca_file,
    }


def _check_dicom_ports(config: Config, reader: _Reader) -> None:
    if config.dicom_tls_port is None:
        return
    if config.dicom_tls_port == config.http_port:
        reader.problem("dicom_tls_port", f"the DICOM TLS port {config.dicom_tls_port} is also the HTTP port; choose two different ports")
    if config.dicom_plain_listener and config.dicom_tls_port == config.dicom_port:
        reader.problem("dicom_tls_port", f"the DICOM TLS port {config.dicom_tls_port} is also the plain DICOM port; choose two different ports, or set TELERAD_DICOM_TLS_ONLY to true")


def ensure_secret_key(config: Config) -> str:
    """Return the configured secret key, or one generated once and kept in the data folder."""
    if config.secret_key:
        return config.secret_key
    path = config.data_dir / "secret_key"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    # O_EXCL: when two processes start at once, the second one reads the first one's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key)
    return key
