"""The ``telerad`` command: Django's management commands plus telerad's own (serve, dicom, web, import, ae, demo)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telerad.settings")
    from django.core.management import execute_from_command_line

    arguments = list(sys.argv if argv is None else argv)
    execute_from_command_line(["telerad", *arguments[1:]])


if __name__ == "__main__":
    main()
