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
