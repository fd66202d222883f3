"""The worklist settings: claim timeout and the turnaround thresholds per priority."""

from __future__ import annotations

from telerad import config


def load(tmp_path, **variables):
    return config.load({"TELERAD_DATA_DIR": str(tmp_path), **{f"TELERAD_{name.upper()}": value for name, value in variables.items()}})


def test_defaults(tmp_path):
    loaded = load(tmp_path)

    assert loaded.claim_timeout_minutes == 30
    assert loaded.tat_warning_minutes == (30, 120, 1440)
    assert loaded.tat_overdue_minutes == (60, 240, 2880)
    assert loaded.problems == ()


def test_thresholds_from_environment(tmp_path):
    loaded = load(tmp_path, tat_warning_minutes="15, 60, 600", tat_overdue_minutes="30,90,900", claim_timeout_minutes="10")

    assert loaded.tat_warning_minutes == (15, 60, 600)
    assert loaded.tat_overdue_minutes == (30, 90, 900)
    assert loaded.claim_timeout_minutes == 10
    assert loaded.problems == ()


def test_thresholds_from_toml_list(tmp_path):
    (tmp_path / "telerad.toml").write_text("tat_warning_minutes = [10, 20, 30]\ntat_overdue_minutes = [11, 21, 31]\n")

    loaded = load(tmp_path)

    assert loaded.tat_warning_minutes == (10, 20, 30)
    assert loaded.tat_overdue_minutes == (11, 21, 31)


def test_two_values_rejected(tmp_path):
    loaded = load(tmp_path, tat_warning_minutes="30,120")

    assert loaded.tat_warning_minutes == (30, 120, 1440)
    assert [problem.setting for problem in loaded.problems] == ["tat_warning_minutes"]
    assert "three whole numbers" in loaded.problems[0].message


def test_overdue_before_warning_rejected(tmp_path):
    loaded = load(tmp_path, tat_warning_minutes="30,120,1440", tat_overdue_minutes="20,240,2880")

    assert [problem.setting for problem in loaded.problems] == ["tat_overdue_minutes"]
    assert loaded.tat_overdue_minutes == (60, 240, 2880)
