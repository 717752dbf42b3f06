"""The pure rules of running a migration: controls per state, retries from a step, the inputs a plan needs and
the playbook jobs of each step (hosts, groups, variables; the cutover and its undo)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from controlplane.inventory import domain as inventory_domain
from controlplane.inventory import planning
from controlplane.inventory.windows import parse_window
from controlplane.waves.domain import (
    ALLOWED,
    Control,
    Dependency,
    Hold,
    State,
    cutover_hold,
    inputs_of,
    missing_inputs,
    owner_tag,
    refusal,
    retry_from,
    soak_hold,
    step_jobs,
    upstreams,
)
from controlplane.waves.schemas import ArtifactIn


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
    at_root = inputs_of({**INPUTS.__dict__, "artifact": {**INPUTS.artifact, "name": "ROOT"}})
    (configure,) = step_jobs("configure", WEB_APP_DB, RESOURCES, at_root)
    app = next(h for h in configure.hosts if h["name"] == "s-app-1")["vars"]
    assert (app["app_deploy_name"], app["app_deploy_health_url"]) == ("ROOT", "http://127.0.0.1:8080/")  # at /
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


# --------------------------------------------------------------------------- holds outside the queue

SEOUL = ZoneInfo("Asia/Seoul")
TUESDAY_NOON = datetime(2014, 7, 1, 12, 0, tzinfo=SEOUL)


def _dep(code: str, state: State, cut_over: bool = False) -> Dependency:
    return Dependency(code, state, cut_over)


def test_an_approved_cutover_waits_for_its_dependencies_then_its_window():
    window = parse_window("Tue 14:00-16:00")
    waiting = cutover_hold([_dep("db", State.RUNNING), _dep("mq", State.SUCCEEDED, cut_over=True)], window=window,
                           local_now=TUESDAY_NOON)
    assert waiting == Hold(State.WAITING, "cutover waits for db to be cut over first")
    blocked = cutover_hold([_dep("db", State.FAILED), _dep("mq", State.ROLLED_BACK)], window=None,
                           local_now=TUESDAY_NOON)
    assert blocked == Hold(State.BLOCKED, "cutover blocked: db failed, mq was rolled back; it goes on once they "
                                          "are cut over")
    # a dependency cut over, then rolled back during its soak, is not cut over any more
    assert cutover_hold([_dep("db", State.ROLLING_BACK)], window=None, local_now=TUESDAY_NOON).state is State.BLOCKED
    assert cutover_hold([_dep("db", State.CUT_OVER, cut_over=True)], window=None, local_now=TUESDAY_NOON) is None
    window_hold = cutover_hold([], window=window, local_now=TUESDAY_NOON)
    assert window_hold is not None and window_hold.until == TUESDAY_NOON.replace(hour=14)
    assert window_hold.reason == ("cutover waits for its maintenance window Tue 14:00-16:00: it opens "
                                  "2014-07-01 14:00 (KST)")
    assert cutover_hold([], window=window, local_now=TUESDAY_NOON, window_forced=True) is None
    assert cutover_hold([], window=window, local_now=TUESDAY_NOON.replace(hour=15)) is None


@pytest.mark.parametrize(("window", "now", "opens"), [
    ("Tue 14:00-16:00", TUESDAY_NOON, TUESDAY_NOON.replace(hour=14)),
    ("Tue 14:00-16:00", TUESDAY_NOON.replace(hour=16), datetime(2014, 7, 8, 14, 0, tzinfo=SEOUL)),
    ("Mon-Fri 23:00-05:00", TUESDAY_NOON.replace(hour=2), TUESDAY_NOON.replace(hour=2)),  # Monday's, past midnight
    ("Sat,Sun 22:00-04:00", TUESDAY_NOON, datetime(2014, 7, 5, 22, 0, tzinfo=SEOUL)),
    ("daily 01:00-04:00", TUESDAY_NOON, datetime(2014, 7, 2, 1, 0, tzinfo=SEOUL)),
])
def test_when_a_window_next_opens(window, now, opens):
    assert parse_window(window).next_opening(now) == opens


def test_a_soak_holds_until_it_ends():
    until = datetime(2014, 7, 2, 3, 0, tzinfo=UTC)
    hold = soak_hold(until, now=until - timedelta(seconds=1), local_until=until.astimezone(SEOUL))
    assert hold == Hold(State.CUT_OVER, "cut over: the legacy side is kept (soak) until 2014-07-02 12:00 (KST), "
                                        "then retired; approve to retire it earlier", until=until)
    assert soak_hold(until, now=until, local_until=until.astimezone(SEOUL)) is None


def test_held_states_accept_what_an_operator_may_do():
    assert ALLOWED[State.WAITING] == {Control.APPROVE, Control.CANCEL, Control.ROLLBACK}
    assert ALLOWED[State.BLOCKED] == {Control.CANCEL, Control.ROLLBACK}
    assert ALLOWED[State.CUT_OVER] == {Control.APPROVE, Control.ROLLBACK}
    assert refusal(State.CUT_OVER, Control.CANCEL) == ("cannot cancel a migration that is cut over: it accepts "
                                                       "approve, rollback")


@pytest.mark.parametrize(("name", "accepted"), [("ROOT", True), ("minwon", True), ("Root", False),
                                                ("ROOT2", False), ("../ROOT", False), ("", False)])
def test_an_artifact_may_be_named_root_to_be_served_at_the_root(name, accepted):
    data = {"kind": "war", "name": name, "src": "/srv/a.war", "checksum": "sha256:" + "a" * 64}
    if accepted:
        assert ArtifactIn(**data).name == name
    else:
        with pytest.raises(ValidationError, match="name"):
            ArtifactIn(**data)
