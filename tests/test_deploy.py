"""Checks of the operations material in deploy/: alert rules, their unit tests, the example
Prometheus configuration and the Grafana dashboard.

promtool comes from the Debian package `prometheus`; these tests fail (never skip) without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROM_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROM_DIR / "alerts.yml"
ALERTS_TEST = PROM_DIR / "alerts_test.yml"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "subsidy-dashboard.json"

# The metrics the service exports (prometheus-client names as scraped).
COUNTERS_AND_GAUGES = {
    "subsidy_grpc_requests_total",
    "subsidy_decisions_total",
    "subsidy_decided_amount_fen_total",
    "subsidy_cache_lookups_total",
    "subsidy_cache_errors_total",
    "subsidy_cache_up",
    "subsidy_policy_info",
    "subsidy_policy_reloads_total",
    "subsidy_engine_disagreements_total",
}
HISTOGRAMS = {
    "subsidy_grpc_request_duration_seconds",
    "subsidy_engine_evaluation_seconds",
}
# A histogram is queried through its series; its bare name has no samples.
SERVICE_METRICS = COUNTERS_AND_GAUGES | {f"{h}{suffix}" for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
# `up` is Prometheus's own per-target series (SubsidyDown, the "Targets up" panel).
KNOWN_METRICS = SERVICE_METRICS | {"up"}

EXPECTED_ALERTS = {
    "SubsidyHighErrorRatio",
    "SubsidyHighLatency",
    "SubsidyCacheDown",
    "SubsidyPolicyReloadFailed",
    "SubsidyEngineDisagreement",
    "SubsidyDown",
    "SubsidyRequestsRefused",
}
SEVERITIES = {"critical", "warning"}

# Grafana's built-in variables, replaced by sample values before promtool parses an expression.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
}


# ----------------------------------------------------------------------------- helpers


def find_tool(name: str) -> str:
    """Path of a Prometheus tool, from PATH or /usr/bin; fail the test when it is missing."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/bin") / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    pytest.fail(
        f"{name} not found on PATH or at /usr/bin/{name}: "
        "install the Debian package `prometheus` (apt-get install -y --no-install-recommends prometheus)"
    )


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [find_tool("promtool"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"promtool {' '.join(args)} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )
    return proc


_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "start",
    "end",
    "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (identifiers that are not functions,
    aggregations, keywords, label names, strings, durations or numbers)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery selectors
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])", s):
        name = m.group(1)
        if re.match(r"\s*\(", s[m.end() :]):  # a function or aggregation call
            continue
        if name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana variables by sample values so promtool can parse the expression."""

    def builtin(m: re.Match) -> str:
        return GRAFANA_BUILTINS[m.group(1) or m.group(2)]

    names = "|".join(sorted(GRAFANA_BUILTINS, key=len, reverse=True))
    expr = re.sub(rf"\$\{{({names})\}}|\$({names})(?!\w)", builtin, expr)
    # Dashboard variables (job, instance) are only used inside regex matchers.
    return re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+", ".*", expr)


def load_dashboard() -> dict:
    with DASHBOARD.open(encoding="utf-8") as f:
        return json.load(f)


def all_panels(dashboard: dict) -> list[dict]:
    """Every panel, including those nested in collapsed rows."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def query_panels(dashboard: dict) -> list[dict]:
    return [p for p in all_panels(dashboard) if p.get("type") != "row"]


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expr) for every panel target."""
    return [
        (f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}", t["expr"])
        for p in query_panels(dashboard)
        for t in p.get("targets", [])
        if "expr" in t
    ]


def load_alert_rules() -> list[dict]:
    with ALERTS.open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


# ----------------------------------------------------------------------------- promtool


def test_promtool_check_rules():
    out = run_promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in out.stdout, out.stdout


def test_promtool_test_rules():
    out = run_promtool("test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert "SUCCESS" in out.stdout, out.stdout


def test_promtool_check_example_config():
    # Also checks the rule files it names (alerts.yml).
    run_promtool("check", "config", str(PROM_CONFIG.relative_to(ROOT)))


def test_example_config_scrapes_the_service():
    config = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["subsidy"]["static_configs"] for t in sc["targets"]]
    assert targets == ["localhost:9464"]


# ----------------------------------------------------------------------------- alert rules


def test_alert_rules_are_the_expected_ones_with_severity_and_annotations():
    rules = load_alert_rules()
    names = [r["alert"] for r in rules]
    assert sorted(names) == sorted(EXPECTED_ALERTS)
    for rule in rules:
        assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), rule["alert"]
        assert annotations.get("description", "").strip(), rule["alert"]


def test_alert_rules_use_only_known_metrics():
    for rule in load_alert_rules():
        used = metric_names(rule["expr"])
        assert used, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert used <= KNOWN_METRICS, f"{rule['alert']}: unknown metrics {used - KNOWN_METRICS}"
        assert "__name__" not in rule["expr"], rule["alert"]


def test_every_alert_has_a_firing_and_a_silent_unit_test():
    doc = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    assert doc["rule_files"] == ["alerts.yml"]
    fires, silent = set(), set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            expected = check.get("exp_alerts") or []
            if expected:
                fires.add(check["alertname"])
                for alert in expected:
                    assert alert.get("exp_labels", {}).get("severity") in SEVERITIES, check
                    assert {"summary", "description"} <= set(alert.get("exp_annotations", {})), check
            else:
                silent.add(check["alertname"])
    assert fires >= EXPECTED_ALERTS, f"no firing test for {EXPECTED_ALERTS - fires}"
    assert silent >= EXPECTED_ALERTS, f"no silent test for {EXPECTED_ALERTS - silent}"


# ----------------------------------------------------------------------------- dashboard


def test_metric_name_parser():
    assert metric_names(
        'sum by (method, le) (rate(subsidy_grpc_request_duration_seconds_bucket{job=~"$job", '
        'code!~"OK|NOT_FOUND"}[$__rate_interval])) / ignoring(le) group_left sum(up offset 15m) > 1e-3'
    ) == {"subsidy_grpc_request_duration_seconds_bucket", "up"}
    assert metric_names("histogram_quantile(0.99, sum(rate(x_bucket[5m])) by (le)) > bool 0.25") == {"x_bucket"}
    assert metric_names("count by (version) (subsidy_policy_info == 1) or vector(0)") == {"subsidy_policy_info"}
    assert metric_names('label_replace(foo, "dst", "$1", "src", "(.*)")') == {"foo"}


def test_dashboard_is_grafana_schema_39_with_datasource_variable():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"] and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"


def _datasource_refs(node, path="$"):
    """Every value of a "datasource" key anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield path, value
            yield from _datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _datasource_refs(value, f"{path}[{i}]")


def test_dashboard_has_no_hard_coded_datasource():
    dashboard = load_dashboard()
    refs = list(_datasource_refs(dashboard))
    assert refs
    for path, ref in refs:
        assert ref in ({"type": "prometheus", "uid": "${datasource}"}, "${datasource}"), (path, ref)
    assert "__inputs" not in dashboard  # no export-time ${DS_...} placeholders either


def test_dashboard_panels_are_well_formed():
    dashboard = load_dashboard()
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
    for panel in query_panels(dashboard):
        targets = panel.get("targets") or []
        assert targets, f"panel {panel['title']!r} has no targets"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} target without expr"


def test_dashboard_exprs_use_only_known_metrics():
    exprs = dashboard_exprs(load_dashboard())
    assert exprs
    for where, expr in exprs:
        used = metric_names(expr)
        assert used, f"{where}: no metric found in {expr!r}"
        assert used <= KNOWN_METRICS, f"{where}: unknown metrics {sorted(used - KNOWN_METRICS)} in {expr!r}"
        assert "__name__" not in expr, where


def test_dashboard_shows_every_service_metric():
    used = set().union(*(metric_names(e) for _, e in dashboard_exprs(load_dashboard())))
    expected = COUNTERS_AND_GAUGES | {f"{h}_bucket" for h in HISTOGRAMS}
    assert expected <= used, f"not on the dashboard: {sorted(expected - used)}"


def test_dashboard_has_latency_percentiles_p50_p90_p99():
    exprs = [e for _, e in dashboard_exprs(load_dashboard()) if "subsidy_grpc_request_duration_seconds_bucket" in e]
    quantiles = {m.group(1) for e in exprs for m in re.finditer(r"histogram_quantile\(\s*([\d.]+)", e)}
    assert {"0.5", "0.9", "0.99"} <= quantiles, quantiles


def test_dashboard_exprs_parse_with_promtool(tmp_path):
    exprs = dashboard_exprs(load_dashboard())
    rules = []
    for i, (where, expr) in enumerate(exprs):
        promql = grafana_to_promql(expr)
        assert "$" not in promql, f"{where}: unreplaced variable in {promql!r}"
        rules.append({"record": f"dashboard:expr_{i}", "expr": promql})
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    out = run_promtool("check", "rules", str(rules_file))
    assert f"SUCCESS: {len(rules)} rules found" in out.stdout, out.stdout
