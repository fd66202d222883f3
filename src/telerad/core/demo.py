"""The demonstration installation's accounts."""

from __future__ import annotations

# User name, password, staff, superuser. The passwords are public, so they
# exist only where TELERAD_DEMO=true.
DEMO_ACCOUNTS = (
    ("admin", "telerad-demo-admin", True, True),
    ("radiologist", "telerad-demo-radiologist", False, False),
    ("technologist", "telerad-demo-technologist", False, False),
)


def login_lines() -> list[str]:
    lines = ["  demo logins (user / password):"]
    for username, password, _, _ in DEMO_ACCOUNTS:
        lines.append(f"         {username:<13} {password}")
    return lines
