"""The pure rules of running a migration: controls per state, retries from a step, the inputs a plan needs and
the playbook jobs of each step (hosts, groups, variables; the cutover and its undo)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.inventory import domain as inventory_domain
from controlplane.inventory import planning
from controlplane.waves.domain import (
    ALLOWED,
    Control,
    State,
    inputs_of,
    missing_inputs,
    owner_tag,
    refusal,
    retry_from,
    step_jobs,
    upstreams,
)


def _plan(*tiers: tuple[str, tuple[str, ...]], data: bool = False) -> dict[str, Any]:
    servers = [{"name": f"s-{tier}-1", "tier": tier, "roles": ["base", *roles], "image": "debian-12",
                "flavor": {"name": "small", "vcpus": 1, "ram_mb": 1024}} for tier, roles in tiers]
    moves = [{"database": "s", "server": "s-db-1", "format": "sql"}] if data else []
    steps = [s.value for s in planning.STEPS if s is not planning.Step.MOVE_DATA or data]
    return {"system": "s", "servers": servers, "data_moves": moves, "steps": steps}


WEB_APP_DB = _plan(("db", ("postgresql", "data_migration")), ("app", ("tomcat", "app_deploy")), ("web", ("nginx",)),
                   data=True)
RESOURCES = {"s-db-1": {"id": "1", "address": "10.1.0.4"}, "s-app-1": {"id": "2", "address": "10.1.0.5"},
             "s-web-1": {"id": "3", "address": "10.1.0.6"}}
INPUTS = inputs_of({"front": {"name": "front", "address": "10.1.0.2", "vars": {"nginx_site_name": "minwon"}},
                    "legacy_upstreams": ["10.9.0.1:8080"],
                    "artifact": {"kind": "war", "name": "minwon", "src": "/srv/minwon.war",
                                 "checksum": "sha256:" + "a" * 64, "health_content": "ok"},
                    "data": {"format": "sql", "dump_src": "/srv/d.sql", "manifest_src": "/srv/m.json"},
                    "network_cidr": "10.1.0.0/24"})


def test_every_state_says_what_it_accepts():
    assert refusal(State.RUNNING, Control.PAUSE) is None
    assert refusal("awaiting_approval", "approve") is None
    assert refusal(State.SUCCEEDED, Control.ROLLBACK) == \
        "cannot rollback a migration that is succeeded: it accepts no control"
    assert refusal(State.FAILED, Control.APPROVE) == \
        "cannot approve a migration that is failed: it accepts cancel, retry, rollback"
    assert set(ALLOWED) == set(State)
    assert all(not State(s).active or Control.RETRY not in ALLOWED[State(s)] for s in State)


def test_retry_from_a_step():
    steps = WEB_APP_DB["steps"]
    done = ["precheck", "provision", "configure"]
    assert retry_from(steps, done, None) == done
    assert retry_from(steps, done, "configure") == ["precheck", "provision"]
    assert retry_from(steps, done, "move_data") == done
    with pytest.raises(inventory_domain.StepError, match="verify cannot run before move_data is done"):
        retry_from(steps, done, "verify")
    with pytest.raises(inventory_domain.StepError, match="nope is not a step"):
        retry_from(steps, done, "nope")
    with pytest.raises(inventory_domain.StepError, match="retire is done"):
        retry_from(steps, steps, "cutover")


def test_the_inputs_a_plan_needs():
    assert missing_inputs(WEB_APP_DB, INPUTS) == []
    assert [name for name, _ in missing_inputs(WEB_APP_DB, inputs_of({}))] == ["artifact", "data", "front"]
    only_front = inputs_of({"front": {"name": "f", "address": "10.1.0.2"}, "artifact": {}})
    assert ("legacy_upstreams" in {n for n, _ in missing_inputs(_plan(("web", ("nginx",))), only_front)})
    assert missing_inputs(_plan(("db", ("postgresql",))), inputs_of({})) == []  # nothing to switch, nothing to load


def test_configure_move_data_and_verify_jobs():
    (configure,) = step_jobs("configure", WEB_APP_DB, RESOURCES, INPUTS)
    assert configure.playbook == "migrate_system.yml" and not configure.verify
    assert configure.extravars["migration_steps"] == ["base", "postgresql", "tomcat", "nginx", "app_deploy"]
    hosts = {h["name"]: h for h in configure.hosts}
    assert hosts["s-db-1"]["groups"] == ["postgresql"]  # the data waits for move_data
    assert hosts["s-web-1"]["vars"]["nginx_upstreams"] == ["10.1.0.5:8080"]  # the web tier proxies to Tomcat
    assert hosts["s-app-1"]["vars"]["app_deploy_artifact_src"] == "/srv/minwon.war"
    assert hosts["s-app-1"]["vars"]["app_deploy_health_url"] == "http://127.0.0.1:8080/minwon/"
    assert configure.extravars["postgresql_hba_entries"][0]["address"] == "10.1.0.0/24"
    assert configure.secrets == ("postgresql_db_owner_password",)
    (move,) = step_jobs("move_data", WEB_APP_DB, RESOURCES, INPUTS)
    assert [h["name"] for h in move.hosts] == ["s-db-1"] and move.extravars["migration_steps"] == ["data_migration"]
    assert move.extravars["data_migration_dump_src"] == "/srv/d.sql"
    assert move.extravars["data_migration_db_owner"] == "s_app"
    (verify,) = step_jobs("verify", WEB_APP_DB, RESOURCES, INPUTS)
    assert verify.playbook == "verify.yml" and verify.verify and "migration_steps" not in verify.extravars
    assert verify.extravars["data_migration_manifest_src"] == "/srv/m.json"
    assert {h["name"]: h["groups"] for h in verify.hosts}["s-db-1"] == ["postgresql", "data_migration"]
    assert step_jobs("precheck", WEB_APP_DB, RESOURCES, INPUTS) == ()


def test_cutover_switches_the_front_and_its_undo_switches_it_back():
    (cutover,) = step_jobs("cutover", WEB_APP_DB, RESOURCES, INPUTS)
    (front,) = cutover.hosts
    assert front["name"] == "front" and front["groups"] == ["nginx"]
    assert front["vars"] == {"nginx_site_name": "minwon", "nginx_upstreams": ["10.1.0.6:80"]}  # the web tier
    assert cutover.secrets == () and cutover.extravars["migration_steps"] == ["nginx"]
    (undo,) = step_jobs("cutover", WEB_APP_DB, RESOURCES, INPUTS, rollback=True)
    assert undo.hosts[0]["vars"]["nginx_upstreams"] == ["10.9.0.1:8080"]
    app_only = _plan(("app", ("tomcat", "app_deploy")))
    assert upstreams(app_only, {"s-app-1": {"address": "10.1.0.5"}}) == ["10.1.0.5:8080"]
    assert step_jobs("cutover", _plan(("db", ("postgresql",))), RESOURCES, inputs_of({})) == ()


def test_owner_tags_are_per_migration_and_server():
    assert owner_tag("m-1", "s-db-1") == "migration/m-1/s-db-1"
    assert owner_tag("m-1", "").startswith("migration/m-1/")
