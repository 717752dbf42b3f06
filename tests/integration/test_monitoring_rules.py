"""Validate the Prometheus config, alerting/recording rules and their promtool unit tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "monitoring"
ALERT_TEST_FILE = MONITORING / "tests" / "remote_meetings_test.yml"


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool not found on PATH; it is required when CI=true")
        pytest.skip("promtool not installed: run the README test command")
    return path


def _run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _describe(result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"$ {' '.join(result.args)}\nexit status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def _repo_files(pattern: str) -> list[str]:
    files = sorted(str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.glob(pattern))
    assert files, f"no files match {pattern} under {REPO_ROOT}"
    return files


def test_prometheus_config_is_valid() -> None:
    result = _run_promtool("check", "config", "monitoring/prometheus.yml")
    assert result.returncode == 0, _describe(result)


def test_rule_files_are_valid() -> None:
    result = _run_promtool("check", "rules", *_repo_files("monitoring/rules/*.yml"))
    assert result.returncode == 0, _describe(result)


def test_rule_unit_tests_pass() -> None:
    result = _run_promtool("test", "rules", *_repo_files("monitoring/tests/*.yml"))
    assert result.returncode == 0, _describe(result)


# --- The unit tests must be able to fail -------------------------------------


def _load_alert_tests() -> dict[str, Any]:
    import yaml  # PyYAML; imported here so the promtool checks above need nothing but promtool

    doc: dict[str, Any] = yaml.safe_load(ALERT_TEST_FILE.read_text(encoding="utf-8"))
    # The copy lives in tmp_path, so point rule_files at the real rules.
    doc["rule_files"] = [
        str((ALERT_TEST_FILE.parent / rule_file).resolve()) for rule_file in doc["rule_files"]
    ]
    return doc


def _write_and_test(doc: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    import yaml

    copy_path = tmp_path / ALERT_TEST_FILE.name
    copy_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return _run_promtool("test", "rules", str(copy_path))


def _firing_case(doc: dict[str, Any], alertname: str) -> dict[str, Any]:
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            if case["alertname"] == alertname and case.get("exp_alerts"):
                found: dict[str, Any] = case
                return found
    raise AssertionError(f"no alert_rule_test expects {alertname} to fire")


def _drop_expected_alert(doc: dict[str, Any]) -> str:
    _firing_case(doc, "RemoteMeetingShareBelowTarget")["exp_alerts"] = []
    return "RemoteMeetingShareBelowTarget"


def _change_expected_annotation(doc: dict[str, Any]) -> str:
    alert = _firing_case(doc, "RemoteMeetingShareBelowTarget")["exp_alerts"][0]
    alert["exp_annotations"]["summary"] += " (changed)"
    return "RemoteMeetingShareBelowTarget"


def _change_expected_agency(doc: dict[str, Any]) -> str:
    alert = _firing_case(doc, "RemoteMeetingMinistryShareBelowTarget")["exp_alerts"][0]
    alert["exp_labels"]["agency"] = "MOFA"
    return "RemoteMeetingMinistryShareBelowTarget"


def _change_expected_recorded_value(doc: dict[str, Any]) -> str:
    for test in doc["tests"]:
        for case in test.get("promql_expr_test", []):
            case["exp_samples"][0]["value"] += 1
            expr: str = case["expr"]
            return expr
    raise AssertionError("no promql_expr_test found")


def test_unchanged_copy_of_alert_tests_passes(tmp_path: Path) -> None:
    # Control for the test below: the copy itself (absolute rule_files) is fine.
    result = _write_and_test(_load_alert_tests(), tmp_path)
    assert result.returncode == 0, _describe(result)


@pytest.mark.parametrize(
    "mutate",
    [
        _drop_expected_alert,
        _change_expected_annotation,
        _change_expected_agency,
        _change_expected_recorded_value,
    ],
    ids=lambda mutate: mutate.__name__.lstrip("_"),
)
def test_alert_tests_fail_when_expectations_are_wrong(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], str]
) -> None:
    doc = _load_alert_tests()
    failing_name = mutate(doc)
    result = _write_and_test(doc, tmp_path)
    assert result.returncode != 0, _describe(result)
    assert failing_name in result.stdout + result.stderr, _describe(result)
