"""Preparing the web application before a server takes its first request."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
import django
django.setup()
from django.db import connection
from telerad.core import runtime
view_module = "telerad.dicomweb.qido"
before = view_module in sys.modules
runtime.load_web_application()
state = {"before": before, "after": view_module in sys.modules, "connection_open": connection.connection is not None}
import gc
tracked = len(gc.get_objects())
runtime.freeze_startup_objects()
state.update(tracked_before_freeze=tracked, frozen=gc.get_freeze_count(), tracked_after_freeze=len(gc.get_objects()))
print(json.dumps(state))
"""


def test_startup_loads_views_and_freezes_objects(tmp_path):
    # A fresh SQLite data folder, whatever database the suite runs on.
    env = {key: value for key, value in os.environ.items() if not key.startswith("TELERAD_")}
    env.update({"TELERAD_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "telerad.settings"})
    subprocess.run([sys.executable, "-m", "telerad.cli", "migrate", "--verbosity", "0"], env=env, check=True, timeout=120)

    completed = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr
    state = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (state["before"], state["after"], state["connection_open"]) == (False, True, False)
    # The collector's later scans skip what start-up made.
    assert state["frozen"] >= state["tracked_before_freeze"] * 0.9
    assert state["tracked_after_freeze"] < state["tracked_before_freeze"] * 0.01
