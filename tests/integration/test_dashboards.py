"""The Grafana dashboards in monitoring/dashboards: valid dashboard JSON, and every metric their PromQL reads is one
the product exports or a recording rule of monitoring/rules.

What the product exports is read from a real app (create_app on a fresh SQLite database) through its registry's
collect(), after filling the collectors that export nothing until their first refresh, and checked against the
app's /metrics. The alerts and recording rules are held to the same list.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from components import missing
from fastapi.testclient import TestClient

from controlplane.app import create_app
from controlplane.automation.metrics import JobMetrics
from controlplane.clock import FixedClock
from controlplane.cloud.domain import HypervisorCapacity, ResourceUsage
from controlplane.cloud.metrics import CloudCollector
from controlplane.compliance.metrics import ComplianceCollector, ComplianceSnapshot
from controlplane.config import Settings
from controlplane.migrations import upgrade
from controlplane.rooms.metrics import BridgeFigures, RoomMetrics, RoomsSnapshot
from controlplane.waves.metrics import MigrationMetrics

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "monitoring"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))
NOW = datetime(2014, 7, 1, 3, 0, tzinfo=UTC)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Series Prometheus makes itself, not the product: only the rules may read them.
PROMETHEUS_SERIES = frozenset({"up"})
# Grafana's own variables (https://grafana.com/docs/grafana/latest/dashboards/variables/add-template-variables/).
GRAFANA_VARIABLES = frozenset({"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s",
                               "__range_ms", "__from", "__to", "__dashboard", "__org", "__user"})

# --------------------------------------------------------------------------- PromQL metric names

# PromQL's keywords and operators spelt as words; functions and aggregations are told by the `(` after them.
PROMQL_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
                             "unless", "offset", "atan2", "inf", "nan"})
_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r"__name__\s*(=~|!=|!~|=)\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')")
_LABEL_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: not its functions, keywords, label names or values, durations,
    numbers or Grafana variables."""
    names: set[str] = set()
    for op, quoted in _NAME_MATCHER.findall(expr):
        if op != "=":
            raise ValueError(f"cannot tell which metrics {{__name__{op}{quoted}}} reads: {expr}")
        names.add(quoted[1:-1])
    text = _STRING.sub(" ", expr)  # label values, before anything else: they may hold any character
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _LABEL_MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)  # range and subquery durations
    text = _LABEL_LISTS.sub(" ", text)  # by (...), on (...), group_left (...): label names
    for match in _IDENTIFIER.finditer(text):
        word = match.group(1)
        if word.lower() in PROMQL_KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def variable_query_exprs(query: str) -> list[str]:
    """The PromQL inside a Grafana Prometheus variable query (label_values(expr, label), query_result(expr), ...)."""
    query = query.strip()
    match = re.fullmatch(r"(\w+)\s*\((.*)\)", query, re.DOTALL)
    if match is None:
        raise ValueError(f"not a Grafana Prometheus variable query: {query}")
    function, args = match.groups()
    if function in ("label_values", "label_names"):
        depth, split = 0, None  # the label is the argument after the last top-level comma
        for i, char in enumerate(args):
            depth += {"(": 1, "{": 1, "[": 1, ")": -1, "}": -1, "]": -1}.get(char, 0)
            if char == "," and depth == 0:
                split = i
        if function == "label_names":
            return [args] if args.strip() else []
        return [args[:split]] if split is not None else []
    if function == "query_result":
        return [args]
    if function == "metrics":
        return []
    raise ValueError(f"unknown Grafana Prometheus variable query {function}(): {query}")


# --------------------------------------------------------------------------- dashboards


def _load_dashboard(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = dashboard["templating"]["list"]
    return variables


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every target and every query variable."""
    exprs = []
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            exprs.append((f"panel {panel.get('title')!r} target {target.get('refId')}", target.get("expr", "")))
    for variable in _variables(dashboard):
        if variable.get("type") == "query":
            for expr in variable_query_exprs(_variable_query(variable)):
                exprs.append((f"variable {variable['name']}", expr))
    return exprs


def unknown_metrics(dashboard: dict[str, Any], known: frozenset[str]) -> dict[str, set[str]]:
    """Where the dashboard reads a metric that is not in `known`, with the names."""
    unknown = {}
    for where, expr in dashboard_exprs(dashboard):
        names = metric_names(expr) - known
        if names:
            unknown[where] = names
    return unknown


@pytest.fixture(params=DASHBOARDS, ids=lambda path: path.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load_dashboard(request.param)


def test_there_are_dashboards() -> None:
    assert [path.name for path in DASHBOARDS] == ["cloud.json", "compliance.json", "vc_network.json"]


def test_dashboard_is_valid_dashboard_json(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["uid"], str) and re.fullmatch(r"[\w-]{1,40}", dashboard["uid"])
    assert isinstance(dashboard["title"], str) and dashboard["title"].strip()
    assert isinstance(dashboard["schemaVersion"], int) and 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard.get("id") is None, "an exported dashboard keeps no database id"
    assert dashboard["panels"], "no panels"
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in _panels(dashboard):
        title = panel.get("title")
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, title
        if panel["type"] == "row":
            continue
        assert isinstance(title, str) and title.strip(), f"panel {panel['id']} has no title"
        assert panel.get("datasource") == DATASOURCE, f"{title}: datasource is not the ${{datasource}} variable"
        targets = panel.get("targets")
        assert targets, f"{title}: no targets"
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), f"{title}: refIds repeat"
        for target in targets:
            assert target.get("expr", "").strip(), f"{title} {target['refId']}: no expr"
            assert target.get("datasource", DATASOURCE) == DATASOURCE, f"{title} {target['refId']}: datasource"


def test_dashboard_variables(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in _variables(dashboard)}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
            assert variable_query_exprs(_variable_query(variable)), f"{variable['name']} reads no metric"
    # Every variable an expression uses is defined (or Grafana's own).
    for where, expr in dashboard_exprs(dashboard):
        for groups in _GRAFANA_VARIABLE.findall(expr):
            name = next(group for group in groups if group)
            assert name in variables or name in GRAFANA_VARIABLES, f"{where}: ${name} is not defined"


def test_cloud_dashboard_filters_by_agency() -> None:
    cloud = _load_dashboard(MONITORING / "dashboards" / "cloud.json")
    agency = next(variable for variable in _variables(cloud) if variable["name"] == "agency")
    assert agency["type"] == "query"
    assert _variable_query(agency).startswith("label_values(")
    assert any("$agency" in expr for _, expr in dashboard_exprs(cloud))


def test_uids_and_titles_are_unique() -> None:
    dashboards = [_load_dashboard(path) for path in DASHBOARDS]
    assert len({d["uid"] for d in dashboards}) == len(dashboards)
    assert len({d["title"] for d in dashboards}) == len(dashboards)


# --------------------------------------------------------------------------- what the product exports


def _family_names(name: str, kind: str) -> set[str]:
    """The series names a metric family of this name and type is scraped as (prometheus_client's family names
    carry no _total)."""
    return {
        "counter": {f"{name}_total"},
        "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count"},
        "gaugehistogram": {f"{name}_bucket", f"{name}_gsum", f"{name}_gcount"},
        "summary": {name, f"{name}_sum", f"{name}_count"},
        "info": {f"{name}_info"},
    }.get(kind, {name})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> frozenset[str]:
    """The metric names a real app exports, every collector filled."""
    data_dir = tmp_path_factory.mktemp("dashboards")
    url = f"sqlite:///{data_dir / 'controlplane.db'}"
    upgrade(url)
    settings = Settings(env="test", database_url=url, data_dir=data_dir, metrics_refresh_seconds=3600)
    app = create_app(settings, clock=FixedClock(NOW))
    client = TestClient(app)  # no lifespan: no refresher races the figures set below
    metrics = app.state.ctx.metrics
    try:
        assert client.get("/healthz").status_code == 200  # fills the HTTP metrics
        # The collectors that export nothing until their first refresh, filled as the refreshes fill them.
        metrics.of(ComplianceCollector).update(ComplianceSnapshot(
            government_share=0.4, target=0.5, video_needed=3, ministry_shares={"MOIS": 0.3}, refreshed=True))
        cloud = metrics.of(CloudCollector)
        cloud.refreshed(at=NOW, quotas={"MOIS": [ResourceUsage("cores", 20, 4), ResourceUsage("volumes", -1, 2)]},
                        hypervisors=[HypervisorCapacity("hv-1", vcpus=16, vcpus_used=8, memory_mb=65536,
                                                      memory_mb_used=4096, running_vms=2)])
        cloud.operation_finished("apply", "succeeded")
        # A sample of each labelled metric, as jobs and migration steps leave them.
        jobs = metrics.of(JobMetrics)
        jobs.job_finished("site.yml", "failed", 12.0)
        jobs.running.inc()
        migrations = metrics.of(MigrationMetrics)
        migrations.step_finished("provision", "succeeded", 30.0)
        migrations.in_flight.labels("agency", "MOIS").set(1)
        rooms = metrics.of(RoomMetrics)
        rooms.update(RoomsSnapshot(rooms={("sejong-complex", "MOIS", "down"): 1}, unplaced=0, refreshed=True,
                                   bridges=(BridgeFigures("bridge-sejong-1", True, 1, 10, 2, 100),)))
        rooms.probe_rtt.labels("sejong-complex").observe(0.002)

        names: set[str] = set()
        families = list(metrics.registry.collect())
        for family in families:
            names |= _family_names(family.name, family.type)
            names |= {sample.name for sample in family.samples}
        served = client.get("/metrics").text
    finally:
        app.state.ctx.engine.dispose()
    # The registry is the one /metrics serves.
    for family in families:
        assert f"# TYPE {family.name}" in served, family.name
    return frozenset(names)


def _recording_rules() -> frozenset[str]:
    names = set()
    for path in sorted(MONITORING.glob("rules/*.rules.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return frozenset(names)


def test_export_list_is_real(exported: frozenset[str]) -> None:
    # Controls for the tests below: the names come from the app, with the series names Prometheus scrapes.
    assert {"controlplane_cloud_up", "controlplane_cloud_quota_used", "controlplane_cloud_operations_total",
            "controlplane_remote_meeting_share_ratio", "controlplane_automation_jobs_total",
            "controlplane_migration_step_duration_seconds_bucket", "controlplane_http_requests_total"} <= exported
    assert "controlplane_automation_jobs" not in exported  # a counter is scraped as _total
    assert "controlplane_migration_step_duration_seconds" not in exported  # a histogram as _bucket, _sum, _count
    assert not exported & _recording_rules()


def test_dashboards_read_only_exported_metrics_or_recording_rules(
    dashboard: dict[str, Any], exported: frozenset[str]
) -> None:
    known = exported | _recording_rules()
    read = set().union(*(metric_names(expr) for _, expr in dashboard_exprs(dashboard)))
    assert read, "the dashboard reads no metric"
    assert unknown_metrics(dashboard, known) == {}


def test_a_dashboard_reading_an_unknown_metric_fails(exported: frozenset[str]) -> None:
    known = exported | _recording_rules()
    assert metric_names('sum by (status) (rate(controlplane_jobs_totl{agency=~"$agency"}[$__rate_interval]))') \
        == {"controlplane_jobs_totl"}
    broken = _load_dashboard(MONITORING / "dashboards" / "cloud.json")
    panel = next(panel for panel in _panels(broken) if panel.get("targets"))
    panel["targets"][0]["expr"] = "max(controlplane_cloud_upp) or max(controlplane_cloud_up)"
    where = f"panel {panel['title']!r} target {panel['targets'][0]['refId']}"
    assert unknown_metrics(broken, known) == {where: {"controlplane_cloud_upp"}}
    # A misspelt recording rule, and a variable over a metric that does not exist.
    assert metric_names("job:controlplane_cloud_hypervisor_vcpus_used:ratoi") - known
    broken["templating"]["list"].append({"name": "x", "type": "query", "datasource": DATASOURCE,
                                         "query": "label_values(controlplane_no_such_metric, agency)"})
    assert unknown_metrics(broken, known)["variable x"] == {"controlplane_no_such_metric"}


def test_rules_and_alerts_read_only_exported_metrics(exported: frozenset[str]) -> None:
    known = exported | _recording_rules() | PROMETHEUS_SERIES
    for path in sorted(MONITORING.glob("rules/*.rules.yml")) + sorted(MONITORING.glob("alerts/*.alerts.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                assert not metric_names(rule["expr"]) - known, f"{path.name} {name}"


# --------------------------------------------------------------------------- the extractor


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("controlplane_cloud_up", {"controlplane_cloud_up"}),
        ("min(controlplane_cloud_up) == 0", {"controlplane_cloud_up"}),
        ('sum by (status) (rate(controlplane_automation_jobs_total{playbook="site.yml"}[$__rate_interval])) * 3600',
         {"controlplane_automation_jobs_total"}),
        ("sum(rate(foo_total[5m])) by (job, le) / ignoring(le) group_left(instance) bar offset 1h",
         {"foo_total", "bar"}),
        ("histogram_quantile(0.95, sum by (step, le) (rate(x_bucket{outcome=\"ok\", le!=\"+Inf\"}[1h])))",
         {"x_bucket"}),
        ('a{agency=~"${agency:regex}|rate(b)"} - on() group_left() max(c) > bool 1e3',
         {"a", "c"}),
        ("count(a < on() group_left() max(b)) or vector(0)", {"a", "b"}),
        ("time() - max(level:metric:ratio) and inf > nan", {"level:metric:ratio"}),
        ("max_over_time(a[1h:5m]) unless b @ end()", {"a", "b"}),
        ('{__name__="exact_name", job="x"}', {"exact_name"}),
        ("sum without (instance) (on_call_total) and by_hour", {"on_call_total", "by_hour"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_metric_names_refuses_a_name_regex() -> None:
    with pytest.raises(ValueError, match="__name__"):
        metric_names('{__name__=~"controlplane_.*"}')


@pytest.mark.parametrize(
    ("query", "exprs"),
    [
        ("label_values(controlplane_cloud_quota_used, agency)", ["controlplane_cloud_quota_used"]),
        ('label_values(a{job=~"x,y"}, agency)', ['a{job=~"x,y"}']),
        ("label_values(agency)", []),
        ("query_result(max by (agency) (a))", ["max by (agency) (a)"]),
        ("metrics(controlplane_.*)", []),
    ],
)
def test_variable_query_exprs(query: str, exprs: list[str]) -> None:
    assert variable_query_exprs(query) == exprs


# --------------------------------------------------------------------------- PromQL syntax


def _promql_for_promtool(expr: str) -> str:
    """The expression as Prometheus would get it from Grafana: variables replaced."""
    durations = {"__rate_interval": "2m", "__interval": "1m", "__range": "1h"}

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return durations.get(name, "MOIS")

    return _GRAFANA_VARIABLE.sub(value, expr)


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool") or missing("promtool", "promtool is not on PATH")
    rules = [
        {"record": f"dashboard_check_{i}", "expr": _promql_for_promtool(expr)}
        for i, (_, expr) in enumerate(
            (where, expr) for path in DASHBOARDS for where, expr in dashboard_exprs(_load_dashboard(path)))
    ]
    rule_file = tmp_path / "dashboards.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout, result.stdout
