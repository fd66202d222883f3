"""Shared test set-up: an isolated data folder and the real sample images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest



def pytest_configure(config):
    # pytest-django starts Django before this module is imported, so the
    # isolated data folder has to come from the environment (scripts/test
    # sets it). Without it the tests would write into the real data folder.
    if not os.environ.get("TELERAD_DATA_DIR"):
        pytest.exit("set TELERAD_DATA_DIR to an empty temporary folder, or run the tests with scripts/test", returncode=2)


def pydicom_test_files() -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_charset_files() -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "charset_files"


def pydicom_data_files() -> Path:
    import data_store

    return Path(data_store.DataStore().data_path)


def find_sample(name: str) -> Path:
    """Return the path of a named sample image from pydicom or pydicom-data."""
    for folder in (pydicom_test_files(), pydicom_charset_files(), pydicom_data_files()):
        path = folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"no sample file named {name}")


@pytest.fixture
def sample_file():
    """Return the path of a named sample image from pydicom or pydicom-data."""
    return find_sample


@pytest.fixture(scope="session")
def sample_finder():
    """The finder of ``sample_file``, for fixtures wider than one test."""
    return find_sample


@pytest.fixture(autouse=True)
def _no_remembered_viewings():
    # Viewings remembered by an earlier test name audit events that no longer exist.
    from telerad.dicomweb.http import forget_viewings

    forget_viewings()
    yield
    forget_viewings()


@pytest.fixture(autouse=True)
def _no_cached_metadata_responses():
    # A later test may change the stored documents behind an unchanged entity tag.
    from telerad.dicomweb import wado

    wado._compressed_metadata.clear()
    yield
    wado._compressed_metadata.clear()


@pytest.fixture(autouse=True)
def _fresh_series_cache():
    # Each test starts from an empty database, so cached series from an
    # earlier test would point at rows that no longer exist.
    from telerad.archive import index

    index.clear_series_cache()
    yield
    index.clear_series_cache()


@pytest.fixture
def storage(tmp_path):
    from telerad.archive.storage import FileStorage

    return FileStorage(tmp_path / "storage", tmp_path / "tmp")


@pytest.fixture
def make_user(db):
    """Create an active user with the given role names, e.g. make_user("reader", "radiologist")."""
    from django.contrib.auth.models import User

    from telerad.accounts.roles import Role, set_roles

    def make(username: str, *role_names: str, password: str = "a long enough password") -> User:
        user = User.objects.create_user(username, password=password)
        set_roles(user, [Role(name) for name in role_names])
        return user

    return make
