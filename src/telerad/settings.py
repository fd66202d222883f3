"""Django settings, derived from :mod:`telerad.config`; nothing here is meant to be edited per site."""

from __future__ import annotations

from pathlib import Path

import dj_database_url

from telerad import config as telerad_config

TELERAD = telerad_config.load()
BASE_DIR = Path(__file__).resolve().parent

DEBUG = False
SECRET_KEY = telerad_config.ensure_secret_key(TELERAD) if not TELERAD.problems else "invalid-configuration"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    # Before django.contrib.admin, so that its admin/base_site.html (which adds
    # a link to the user's account page) shadows the admin's own.
    "telerad.accounts",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "telerad.core",
    "telerad.audit",
    "telerad.archive",
    "telerad.dimse",
    "telerad.dicomweb",
    "telerad.viewer",
    "telerad.reading",
    "telerad.clinicians",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "telerad.core.security.SecurityHeadersMiddleware",
    "telerad.core.caching.SameForEveryoneMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "telerad.accounts.tokens.BearerTokenMiddleware",
    "telerad.accounts.audit_context.AuditActorMiddleware",
    "telerad.accounts.user_sessions.SessionActivityMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "telerad.accounts.middleware.PermissionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "telerad.urls"
ASGI_APPLICATION = "telerad.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "telerad.accounts.context_processors.permissions",
            ],
        },
    },
]


# Connections beside the DICOM associations' own: the web threads, the
# background work and the metadata builder, with room to spare.
DATABASE_CONNECTIONS_BESIDE_DICOM = 24


def _database(url: str) -> dict:
    if any(problem.setting == "database_url" for problem in TELERAD.problems):
        # `telerad check` reports the problem; a placeholder keeps Django
        # importable until then, and the servers refuse to start.
        url = f"sqlite:///{TELERAD.data_dir / 'invalid-database-url.sqlite3'}"
    # Web requests keep their connection for a minute, checked before reuse,
    # instead of opening one per request: on PostgreSQL that costs a few
    # milliseconds, as much as a whole indexed search.
    database = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    if database["ENGINE"] == "django.db.backends.postgresql":
        # Every DICOM association runs in a new thread, and Django keeps one
        # connection per thread, so each association opened its own, about
        # 5 ms of a C-ECHO on a 2-core machine. A pool shared by all threads
        # lends them open connections, and Django returns them when it closes one.
        # Health checks stay on: the pool then checks each connection before
        # lending it, so a restarted database server costs no failed request.
        database["CONN_MAX_AGE"] = 0
        database.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 2,
            "max_size": TELERAD.dicom_max_associations + DATABASE_CONNECTIONS_BESIDE_DICOM,
            # A thread that finds every connection lent waits this long before its request fails.
            "timeout": 30,
        }
    if database["ENGINE"] == "django.db.backends.sqlite3":
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        database["OPTIONS"] = {
            # WAL lets readers run beside the one writer; synchronous=FULL
            # makes each commit durable before C-STORE success is sent.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
            # IMMEDIATE takes the write lock at BEGIN, so two writers queue on
            # the busy timeout instead of failing with "database is locked".
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
        database["TEST"] = {"NAME": str(Path(database["NAME"]).with_suffix(".test.sqlite3"))}
    return database


DATABASES = {"default": _database(TELERAD.database_url)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Model permissions in the Django admin come from roles, not per-user rows.
AUTHENTICATION_BACKENDS = ["telerad.accounts.backends.RoleBackend"]

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# The name authenticator apps show beside the account.
OTP_TOTP_ISSUER = "telerad"

# SessionActivityMiddleware moves a session's expiry forward as it is used,
# so the cookie age is a limit on inactivity rather than on the session's length.
SESSION_COOKIE_AGE = TELERAD.session_timeout_minutes * 60
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = TELERAD.http_tls
CSRF_COOKIE_SECURE = TELERAD.http_tls
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if TELERAD.http_tls:
    SECURE_HSTS_SECONDS = 365 * 24 * 3600

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English")]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "static/"
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "telerad": {"level": TELERAD.log_level},
        # pynetdicom logs identifiers of C-FIND requests and whole datasets at
        # INFO and DEBUG; telerad logs its own association summaries instead.
        "pynetdicom": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
        # Requests for missing pages are not operator errors.
        "django.request": {"level": "ERROR"},
    },
}
