"""Reading the configuration and reporting its problems."""

from __future__ import annotations

from pathlib import Path

from telerad import config


def load(tmp_path: Path, **values: str) -> config.Config:
    environ = {"TELERAD_DATA_DIR": str(tmp_path)}
    environ.update({f"TELERAD_{name.upper()}": value for name, value in values.items()})
    return config.load(environ)


def test_defaults(tmp_path):
    loaded = load(tmp_path)

    assert (loaded.host, loaded.http_port, loaded.dicom_port, loaded.ae_title) == ("127.0.0.1", 8443, 11112, "TELERAD")
    assert loaded.database_url == f"sqlite:///{tmp_path / 'telerad.sqlite3'}"
    assert loaded.duplicate_policy is config.DuplicatePolicy.KEEP_FIRST
    assert loaded.problems == ()


def test_environment_overrides_file(tmp_path):
    (tmp_path / "telerad.toml").write_text('dicom_port = 104\nae_title = "FROMFILE"\n')

    loaded = load(tmp_path, dicom_port="4242")

    assert loaded.dicom_port == 4242
    assert loaded.ae_title == "FROMFILE"


def test_invalid_port_is_reported(tmp_path):
    loaded = load(tmp_path, http_port="eighty")

    assert [str(problem) for problem in loaded.problems] == [
        "TELERAD_HTTP_PORT: 'eighty' is not a whole number; use a number from 1 to 65535"
    ]


def test_out_of_range_port_is_reported(tmp_path):
    loaded = load(tmp_path, dicom_port="70000")

    assert "out of range" in str(loaded.problems[0])


def test_invalid_ae_title_is_reported(tmp_path):
    loaded = load(tmp_path, ae_title="WAY_TOO_LONG_AE_TITLE")

    assert loaded.problems[0].setting == "ae_title"


def test_unknown_duplicate_policy_is_reported(tmp_path):
    loaded = load(tmp_path, duplicate_policy="newest")

    assert "use keep-first or overwrite" in str(loaded.problems[0])


def test_unsupported_database_is_reported(tmp_path):
    loaded = load(tmp_path, database_url="mysql://root@localhost/telerad")

    assert loaded.problems[0].setting == "database_url"


def test_same_port_twice_is_reported(tmp_path):
    loaded = load(tmp_path, http_port="11112")

    assert loaded.problems[0].setting == "dicom_port"


def test_certificate_without_key_is_reported(tmp_path):
    certificate = tmp_path / "site.crt"
    certificate.write_text("placeholder")

    loaded = load(tmp_path, tls_certificate=str(certificate))

    assert loaded.problems[0].setting == "tls_certificate"


def test_secret_key_from_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s" * 40 + "\n")

    loaded = config.load({"TELERAD_DATA_DIR": str(tmp_path), "TELERAD_SECRET_KEY_FILE": str(secret)})

    assert loaded.secret_key == "s" * 40


def test_generated_secret_key_is_kept(tmp_path):
    loaded = load(tmp_path)

    first = config.ensure_secret_key(loaded)

    assert config.ensure_secret_key(loaded) == first
    assert len(first) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_boolean_values(tmp_path):
    assert load(tmp_path, accept_any_ae="yes").accept_any_ae is True
    assert load(tmp_path, accept_any_ae="off").accept_any_ae is False
    assert load(tmp_path, accept_any_ae="maybe").problems[0].setting == "accept_any_ae"


def test_relative_sqlite_path_is_reported(tmp_path):
    loaded = load(tmp_path, database_url="sqlite:///relative/telerad.sqlite3")

    assert "four slashes" in str(loaded.problems[0])


def test_absolute_sqlite_path_is_accepted(tmp_path):
    assert load(tmp_path, database_url=f"sqlite:///{tmp_path}/other.sqlite3").problems == ()


def test_dicomweb_upload_limit_in_mib(tmp_path):
    assert load(tmp_path).dicomweb_max_upload_mb == 2048
    assert load(tmp_path, dicomweb_max_upload_mb="5").dicomweb_max_upload_bytes == 5 * 1024 * 1024


def test_invalid_dicomweb_upload_limit_is_reported(tmp_path):
    loaded = load(tmp_path, dicomweb_max_upload_mb="0")

    assert [str(problem) for problem in loaded.problems] == [
        "TELERAD_DICOMWEB_MAX_UPLOAD_MB: 0 is out of range; use a number from 1 to 1048576"
    ]
    assert loaded.dicomweb_max_upload_mb == 2048


def test_qido_max_results_defaults_to_1000(tmp_path):
    assert load(tmp_path).qido_max_results == 1000
    assert load(tmp_path, qido_max_results="250").qido_max_results == 250


def test_qido_max_results_of_zero_is_reported(tmp_path):
    loaded = load(tmp_path, qido_max_results="0")

    assert [str(problem) for problem in loaded.problems] == ["TELERAD_QIDO_MAX_RESULTS: 0 is out of range; use a number from 1 to 100000"]


def test_dicom_tls_defaults(tmp_path):
    loaded = load(tmp_path)

    assert loaded.dicom_tls_port is None
    assert loaded.dicom_plain_listener
    assert loaded.dicom_tls_ca_file is None
    assert loaded.dicom_certificate_path == tmp_path / "tls" / "telerad.crt"
    assert loaded.dicom_private_key_path == tmp_path / "tls" / "telerad.key"


def test_dicom_tls_uses_web_certificate_by_default(tmp_path):
    (tmp_path / "web.crt").write_text("certificate")
    (tmp_path / "web.key").write_text("key")

    loaded = load(tmp_path, tls_certificate=str(tmp_path / "web.crt"), tls_private_key=str(tmp_path / "web.key"))

    assert loaded.dicom_certificate_path == tmp_path / "web.crt"
    assert loaded.dicom_private_key_path == tmp_path / "web.key"


def test_dicom_tls_settings_are_read(tmp_path):
    for name in ("dicom.crt", "dicom.key", "ca.pem"):
        (tmp_path / name).write_text(name)

    loaded = load(
        tmp_path, dicom_tls_port="2762", dicom_tls_only="true", dicom_tls_certificate=str(tmp_path / "dicom.crt"),
        dicom_tls_private_key=str(tmp_path / "dicom.key"), dicom_tls_ca_file=str(tmp_path / "ca.pem"),
    )

    assert loaded.problems == ()
    assert loaded.dicom_tls_port == 2762
    assert not loaded.dicom_plain_listener
    assert loaded.dicom_certificate_path == tmp_path / "dicom.crt"
    assert loaded.dicom_private_key_path == tmp_path / "dicom.key"
    assert loaded.dicom_tls_ca_file == tmp_path / "ca.pem"


def test_tls_only_without_tls_port_is_reported(tmp_path):
    loaded = load(tmp_path, dicom_tls_only="true")

    assert [str(problem) for problem in loaded.problems] == [
        "TELERAD_DICOM_TLS_ONLY: the plain DICOM listener is off but TELERAD_DICOM_TLS_PORT is not set, so nothing would listen; "
        "set a TLS port or set TELERAD_DICOM_TLS_ONLY to false"
    ]


def test_invalid_dicom_tls_port_is_reported_once(tmp_path):
    loaded = load(tmp_path, dicom_tls_port="tls", dicom_tls_only="true")

    assert [str(problem) for problem in loaded.problems] == [
        "TELERAD_DICOM_TLS_PORT: 'tls' is not a whole number; use a number from 1 to 65535"
    ]
    assert loaded.dicom_tls_port is None


def test_dicom_tls_certificate_without_key_is_reported(tmp_path):
    (tmp_path / "dicom.crt").write_text("certificate")

    loaded = load(tmp_path, dicom_tls_certificate=str(tmp_path / "dicom.crt"))

    assert [problem.setting for problem in loaded.problems] == ["dicom_tls_certificate"]
    assert "set both TELERAD_DICOM_TLS_CERTIFICATE and TELERAD_DICOM_TLS_PRIVATE_KEY" in str(loaded.problems[0])


def test_missing_dicom_tls_files_are_reported(tmp_path):
    loaded = load(
        tmp_path, dicom_tls_certificate=str(tmp_path / "no.crt"), dicom_tls_private_key=str(tmp_path / "no.key"),
        dicom_tls_ca_file=str(tmp_path / "no-ca.pem"),
    )

    assert [str(problem) for problem in loaded.problems] == [
        f"TELERAD_DICOM_TLS_CERTIFICATE: the file {tmp_path / 'no.crt'} does not exist",
        f"TELERAD_DICOM_TLS_PRIVATE_KEY: the file {tmp_path / 'no.key'} does not exist",
        f"TELERAD_DICOM_TLS_CA_FILE: the file {tmp_path / 'no-ca.pem'} does not exist",
    ]


def test_dicom_tls_port_clashes_are_reported(tmp_path):
    with_http = load(tmp_path, dicom_tls_port="8443")
    with_plain = load(tmp_path, dicom_tls_port="11112")

    assert [problem.setting for problem in with_http.problems] == ["dicom_tls_port"]
    assert "also the HTTP port" in str(with_http.problems[0])
    assert [problem.setting for problem in with_plain.problems] == ["dicom_tls_port"]
    assert "also the plain DICOM port" in str(with_plain.problems[0])


def test_tls_only_may_reuse_plain_port_number(tmp_path):
    loaded = load(tmp_path, dicom_tls_port="11112", dicom_tls_only="true")

    assert loaded.problems == ()
    assert loaded.dicom_tls_port == loaded.dicom_port == 11112
