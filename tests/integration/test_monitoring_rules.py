"""Validate the Prometheus config, recording rules, alerts, their runbooks and their promtool unit tests.

Laid out like the monitoring mixins: monitoring/rules/*.rules.yml hold recording rules only,
monitoring/alerts/*.alerts.yml alerts only, monitoring/tests/*_test.yml the promtool unit tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from components import missing

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "monitoring"
RULES_GLOB = "rules/*.rules.yml"
ALERTS_GLOB = "alerts/*.alerts.yml"
TESTS_GLOB = "tests/*_test.yml"
README = MONITORING / "README.md"
# The placeholder for where README.md's Runbooks section is published (the README says to replace it).
RUNBOOK_BASE = "https://controlplane.example.gov/runbooks"
SEVERITIES = {"critical", "warning", "info"}
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z0-9_]+$")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing("promtool", "promtool is not on PATH")
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


def _monitoring_files(pattern: str) -> list[Path]:
    files = sorted(MONITORING.glob(pattern))
    assert files, f"no files match {pattern} under {MONITORING}"
    return files


def _relative(files: list[Path]) -> list[str]:
    return [str(path.relative_to(REPO_ROOT)) for path in files]


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def _rules(pattern: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in _monitoring_files(pattern):
        for group in _load(path)["groups"]:
            for rule in group["rules"]:
                yield path, rule


def _alerts() -> list[dict[str, Any]]:
    return [rule for _, rule in _rules(ALERTS_GLOB)]


def _alert_names() -> list[str]:
    return [str(rule["alert"]) for rule in _alerts()]


def _record_names() -> list[str]:
    return [str(rule["record"]) for _, rule in _rules(RULES_GLOB)]


# --- promtool ----------------------------------------------------------------


def test_prometheus_config_is_valid() -> None:
    result = _run_promtool("check", "config", "monitoring/prometheus.yml")
    assert result.returncode == 0, _describe(result)


def test_rule_files_are_valid() -> None:
    files = _relative(_monitoring_files(RULES_GLOB) + _monitoring_files(ALERTS_GLOB))
    result = _run_promtool("check", "rules", *files)
    assert result.returncode == 0, _describe(result)
    for file in files:
        assert f"Checking {file}" in result.stdout, _describe(result)


def test_rule_unit_tests_pass() -> None:
    files = _relative(_monitoring_files(TESTS_GLOB))
    result = _run_promtool("test", "rules", *files)
    assert result.returncode == 0, _describe(result)
    for file in files:
        assert f"Unit Testing:  {file}" in result.stdout, _describe(result)


# --- layout: what Prometheus loads and what the tests cover --------------------


def test_prometheus_loads_every_rules_and_alerts_file() -> None:
    config = _load(MONITORING / "prometheus.yml")
    assert config["rule_files"] == [RULES_GLOB, ALERTS_GLOB]
    # Nothing in rules/ or alerts/ that those globs would leave out.
    assert sorted(MONITORING.glob("rules/*")) == _monitoring_files(RULES_GLOB)
    assert sorted(MONITORING.glob("alerts/*")) == _monitoring_files(ALERTS_GLOB)
    assert sorted(MONITORING.glob("tests/*")) == _monitoring_files(TESTS_GLOB)


def test_rules_files_hold_recording_rules_and_alerts_files_alerts() -> None:
    for path, rule in _rules(RULES_GLOB):
        assert "record" in rule and "alert" not in rule, f"{path.name}: {rule}"
        assert RECORD_NAME.match(rule["record"]), f"{path.name}: {rule['record']} is not level:metric:operations"
    for path, rule in _rules(ALERTS_GLOB):
        assert "alert" in rule and "record" not in rule, f"{path.name}: {rule}"
    names = _alert_names() + _record_names()
    assert len(names) == len(set(names)), "a rule name is defined twice"


def _runbook_anchors() -> set[str]:
    """GitHub's anchors of the headings in README.md's "## Runbooks" section."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Runbooks\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, "monitoring/README.md has no '## Runbooks' section"
    anchors = set()
    for heading in re.findall(r"^#{3,6} +(.+?) *#*$", match.group(1), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    anchors = _runbook_anchors()
    alerts = _alerts()
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity one of {SEVERITIES}"
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook_url"):
            assert str(annotations.get(key, "")).strip(), f"{name} has no annotation {key}"
        url = annotations["runbook_url"]
        assert url == f"{RUNBOOK_BASE}#{name.lower()}", f"{name}: runbook_url {url}"
        anchor = url.partition("#")[2]
        assert anchor in anchors, f"{name}: no heading for #{anchor} under Runbooks in monitoring/README.md"


def test_runbook_anchor_check_sees_missing_sections() -> None:
    # Control for the test above: the anchors are the section headings, not any text of the README.
    anchors = _runbook_anchors()
    assert "controlplanedown" in anchors
    assert "runbooks" not in anchors and "dashboards" not in anchors
    assert "nosuchalert" not in anchors


def _test_files() -> list[Path]:
    return _monitoring_files(TESTS_GLOB)


def _cases(kind: str) -> Iterator[tuple[Path, int, int, dict[str, Any]]]:
    """(test file, index of the test, index of the case, case) of every alert_rule_test or promql_expr_test."""
    for path in _test_files():
        for t, test in enumerate(_load(path)["tests"]):
            for c, case in enumerate(test.get(kind, [])):
                yield path, t, c, case


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing = {case["alertname"] for _, _, _, case in _cases("alert_rule_test") if case.get("exp_alerts")}
    silent = {case["alertname"] for _, _, _, case in _cases("alert_rule_test") if not case.get("exp_alerts")}
    for name in _alert_names():
        assert name in firing, f"no promtool test expects {name} to fire"
        assert name in silent, f"no promtool test expects {name} not to fire"


def test_every_recording_rule_is_tested() -> None:
    tested = {case["expr"] for _, _, _, case in _cases("promql_expr_test")}
    for name in _record_names():
        assert name in tested, f"no promql_expr_test evaluates {name}"


def test_test_files_load_the_rules_and_alerts() -> None:
    loaded: set[Path] = set()
    for path in _test_files():
        for rule_file in _load(path)["rule_files"]:
            loaded.add((path.parent / rule_file).resolve())
    for path in _monitoring_files(RULES_GLOB) + _monitoring_files(ALERTS_GLOB):
        assert path.resolve() in loaded, f"no test file loads {path.relative_to(MONITORING)}"


# --- The unit tests must be able to fail -------------------------------------


def _load_tests(path: Path) -> dict[str, Any]:
    doc = _load(path)
    # The copy lives in tmp_path, so point rule_files at the real rules.
    doc["rule_files"] = [str((path.parent / rule_file).resolve()) for rule_file in doc["rule_files"]]
    return doc


def _write_and_test(path: Path, doc: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    copy_path = tmp_path / path.name
    copy_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return _run_promtool("test", "rules", str(copy_path))


def _firing_case(doc: dict[str, Any], alertname: str) -> dict[str, Any]:
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            if case["alertname"] == alertname and case.get("exp_alerts"):
                found: dict[str, Any] = case
                return found
    raise AssertionError(f"no alert_rule_test expects {alertname} to fire")


REMOTE_MEETINGS_TESTS = MONITORING / "tests" / "remote_meetings_test.yml"


def _change_expected_annotation(doc: dict[str, Any]) -> str:
    alert = _firing_case(doc, "RemoteMeetingShareBelowTarget")["exp_alerts"][0]
    alert["exp_annotations"]["summary"] += " (changed)"
    return "RemoteMeetingShareBelowTarget"


def _change_expected_runbook(doc: dict[str, Any]) -> str:
    alert = _firing_case(doc, "RemoteMeetingTargetUnreachable")["exp_alerts"][0]
    alert["exp_annotations"]["runbook_url"] += "-changed"
    return "RemoteMeetingTargetUnreachable"


def _change_expected_agency(doc: dict[str, Any]) -> str:
    alert = _firing_case(doc, "RemoteMeetingMinistryShareBelowTarget")["exp_alerts"][0]
    alert["exp_labels"]["agency"] = "MOFA"
    return "RemoteMeetingMinistryShareBelowTarget"


@pytest.mark.parametrize("path", _test_files(), ids=lambda path: path.name)
def test_unchanged_copy_of_alert_tests_passes(tmp_path: Path, path: Path) -> None:
    # Control for the tests below: the copy itself (absolute rule_files) is fine.
    result = _write_and_test(path, _load_tests(path), tmp_path)
    assert result.returncode == 0, _describe(result)


@pytest.mark.parametrize(
    "mutate",
    [_change_expected_annotation, _change_expected_runbook, _change_expected_agency],
    ids=lambda mutate: mutate.__name__.lstrip("_"),
)
def test_alert_tests_fail_when_expectations_are_wrong(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], str]
) -> None:
    doc = _load_tests(REMOTE_MEETINGS_TESTS)
    failing_name = mutate(doc)
    result = _write_and_test(REMOTE_MEETINGS_TESTS, doc, tmp_path)
    assert result.returncode != 0, _describe(result)
    assert failing_name in result.stdout + result.stderr, _describe(result)


def _case_params(kind: str, firing: bool | None) -> list[Any]:
    params, seen = [], set()
    for path, t, c, case in _cases(kind):
        name = case.get("alertname") or case.get("expr")
        if firing is not None and bool(case.get("exp_alerts")) != firing:
            continue
        if (path, name) in seen:  # one case per file and rule is enough
            continue
        seen.add((path, name))
        params.append(pytest.param(path, t, c, name, id=f"{path.name}:{name}"))
    return params


def _mutated_case(path: Path, kind: str, t: int, c: int) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = _load_tests(path)
    case: dict[str, Any] = doc["tests"][t][kind][c]
    return doc, case


@pytest.mark.parametrize(("path", "t", "c", "alertname"), _case_params("alert_rule_test", firing=True))
def test_firing_case_fails_without_its_expected_alert(
    tmp_path: Path, path: Path, t: int, c: int, alertname: str
) -> None:
    doc, case = _mutated_case(path, "alert_rule_test", t, c)
    case["exp_alerts"] = []
    result = _write_and_test(path, doc, tmp_path)
    assert result.returncode != 0, _describe(result)
    assert alertname in result.stdout + result.stderr, _describe(result)


@pytest.mark.parametrize(("path", "t", "c", "alertname"), _case_params("alert_rule_test", firing=False))
def test_silent_case_fails_when_an_alert_is_expected(
    tmp_path: Path, path: Path, t: int, c: int, alertname: str
) -> None:
    doc, case = _mutated_case(path, "alert_rule_test", t, c)
    case["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    result = _write_and_test(path, doc, tmp_path)
    assert result.returncode != 0, _describe(result)
    assert alertname in result.stdout + result.stderr, _describe(result)


@pytest.mark.parametrize(("path", "t", "c", "expr"), _case_params("promql_expr_test", firing=None))
def test_recording_case_fails_when_the_value_is_wrong(tmp_path: Path, path: Path, t: int, c: int, expr: str) -> None:
    doc, case = _mutated_case(path, "promql_expr_test", t, c)
    case["exp_samples"][0]["value"] += 1
    result = _write_and_test(path, doc, tmp_path)
    assert result.returncode != 0, _describe(result)
    assert expr in result.stdout + result.stderr, _describe(result)
