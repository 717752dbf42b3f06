"""The rehearsal estate's pure parts (controlplane.devcloud.samples): its systems plan into a db and an app tier,
its wave file is a valid wave body giving every input the steps need, with a comment on each input, its job is a
valid job, its onboarding a valid spec on a free network, and its files are the same bytes on every run; and its
SSH key, made once, readable by its owner only."""

from __future__ import annotations

import json
import re
import stat
import zipfile
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from controlplane.automation.domain import JobHost, validate_job
from controlplane.automation.schemas import NAME_PATTERN, JobIn
from controlplane.cloud import domain as cloud_domain
from controlplane.cloud.schemas import OnboardingSpecIn
from controlplane.config import Settings
from controlplane.devcloud import samples
from controlplane.devcloud.estate import Estate
from controlplane.devcloud.samples import AGENCY, Files, Names
from controlplane.inventory import planning
from controlplane.inventory.domain import parse_inventory
from controlplane.inventory.files import load_catalogue
from controlplane.waves.domain import inputs_of, missing_inputs
from controlplane.waves.schemas import WaveIn

ADDRESSES = {"db": "10.81.1.10", "app": "10.81.1.11", "front": "10.81.1.12"}


def _plans(names: Names) -> dict[str, planning.SystemPlan]:
    systems = parse_inventory(samples.systems(names))
    return {s.code: planning.plan_system(s, load_catalogue(), planning.DEVCLOUD_FLAVORS) for s in systems}


def _wave(names: Names, tmp_path: Path) -> str:
    return samples.wave_file(names, wave=names.wave(1), addresses=ADDRESSES, files=Files(tmp_path / "estate"),
                             checksum=samples.sha256_of_bytes(samples.war_bytes(samples.NEW_APP)),
                             path=tmp_path / "wave.yaml")


def test_the_systems_plan_into_a_database_with_its_data_and_an_application_on_tomcat() -> None:
    plans = _plans(Names(AGENCY))
    db, app = plans["rehearsal-minwon-db"], plans["rehearsal-minwon"]
    assert [(s.tier, s.flavor.name) for s in db.servers] == [("db", "small")]
    assert {r for s in db.servers for r in s.roles} == {"base", "postgresql", "data_migration"}
    assert [m.database for m in db.data_moves] == ["rehearsal_minwon_db"]
    assert [(s.tier, s.roles) for s in app.servers] == [("app", ("base", "tomcat", "app_deploy"))]
    assert not app.data_moves
    assert parse_inventory(samples.systems(Names(AGENCY)))[1].depends_on == ("rehearsal-minwon-db",)


def test_the_wave_file_is_a_wave_body_with_every_input_the_steps_need(tmp_path: Path) -> None:
    names = Names(AGENCY)
    wave = WaveIn.model_validate(yaml.safe_load(_wave(names, tmp_path)))
    assert wave.name == "rehearsal-1" and wave.credential == "estate-rehearsal" and wave.soak_hours == 2
    assert wave.systems == ["rehearsal-minwon-db", "rehearsal-minwon"]
    app = wave.inputs["rehearsal-minwon"]
    assert app.front is not None and (app.front.name, str(app.front.address)) == ("rehearsal-front", "10.81.1.12")
    assert app.legacy_upstreams == ["10.81.1.11:8080"]
    assert app.artifact is not None and app.artifact.name == "ROOT" and app.artifact.src == str(
        tmp_path / "estate" / "minwon.war")
    assert app.artifact.checksum == samples.sha256_of_bytes(samples.war_bytes(samples.NEW_APP))
    data = wave.inputs["rehearsal-minwon-db"].data
    assert data is not None and (data.format, data.dump_src, data.manifest_src) == (
        "sql", str(tmp_path / "estate" / "minwon-db.sql"), str(tmp_path / "estate" / "minwon-db.manifest.json"))
    for code, plan in _plans(names).items():
        given = wave.inputs[code].model_dump(mode="json")
        assert missing_inputs(plan.to_dict(), inputs_of(given)) == [], code


def test_every_input_of_the_wave_file_has_a_comment_above_it(tmp_path: Path) -> None:
    lines = _wave(Names(AGENCY), tmp_path).splitlines()
    keys = [i for i, line in enumerate(lines)
            if re.match(r"^((name|systems|credential|soak_hours|inputs)|    (data|front|legacy_upstreams|artifact)):",
                        line)]
    assert len(keys) == 9
    for index in keys:
        assert lines[index - 1].lstrip().startswith("#"), lines[index]


def test_names_make_valid_codes_for_any_agency_code() -> None:
    names = Names("E2_TEST")
    system_code = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
    assert system_code.match(names.db_system) and system_code.match(names.app_system)
    assert re.match(NAME_PATTERN, names.credential)
    assert names.server("front") == "e2-test-front" and names.wave(3) == "e2-test-3"
    assert samples.role_of(names.owner("db"), "E2_TEST") == "db"
    assert samples.role_of("migration/42/x-db-1", "E2_TEST") is None and samples.role_of(None, "E2_TEST") is None
    assert samples.role_of(Names("OTHER").owner("db"), "E2_TEST") is None


def test_the_legacy_job_is_a_valid_job_for_the_hosts_asked_for(tmp_path: Path) -> None:
    names, files = Names(AGENCY), Files(tmp_path)
    body = samples.legacy_job(names, ADDRESSES, files, cidr="10.81.1.0/24", credential=names.credential,
                              roles=["front", "db", "app"])
    job = JobIn.model_validate({**body, "secrets": {"postgresql_db_owner_password": "s3cret-enough"}})
    validate_job(job.playbook, [JobHost(h.name, h.address, tuple(h.groups), h.vars) for h in job.hosts],
                 job.extravars, job.secrets)
    assert [h.name for h in job.hosts] == ["rehearsal-legacy-db", "rehearsal-legacy-was", "rehearsal-front"]
    assert job.extravars["migration_steps"] == ["postgresql", "data_migration", "tomcat", "nginx", "app_deploy"]
    assert job.hosts[2].vars == {"nginx_upstreams": ["10.81.1.11:8080"]}
    assert job.hosts[0].vars["data_migration_replace"] is True  # the legacy data is put back when it drifted
    only_front = samples.legacy_job(names, ADDRESSES, files, cidr="10.81.1.0/24", credential=names.credential,
                                    roles=["front"])
    assert [h["name"] for h in only_front["hosts"]] == ["rehearsal-front"]
    assert only_front["extravars"]["migration_steps"] == ["nginx"]


def test_the_onboarding_is_a_valid_spec_opening_the_tiers_ports() -> None:
    body = samples.onboarding("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x",
                              "10.81.3.0/24")
    spec = OnboardingSpecIn.model_validate(body)
    cloud_domain.validate_spec(cloud_domain.OnboardingSpec(
        agency_code=AGENCY, quotas=cloud_domain.Quotas(**spec.quotas.model_dump()), cidr="10.81.3.0/24",
        ingress=tuple(cloud_domain.IngressRule(r.protocol, r.port_min, r.port_max, r.remote_cidr)
                      for r in spec.ingress), public_key=spec.public_key))
    assert sorted(r.port_min for r in spec.ingress if r.protocol == "tcp") == [22, 80, 5432, 8080]


def test_the_network_is_the_first_default_one_no_other_network_or_route_overlaps() -> None:
    assert samples.free_cidr([]) == "10.81.1.0/24"
    assert samples.free_cidr(["10.81.1.0/24", "10.81.2.1", "10.81.3.0/25", "10.78.0.0/24", "fe80::/64",
                              "not a network"]) == "10.81.4.0/24"
    assert samples.free_cidr(["10.81.1.0/24", "10.81.2.0/23"]) == "10.81.4.0/24"
    with pytest.raises(ValueError, match="no free"):
        samples.free_cidr(["10.81.0.0/16"])


def test_the_networks_taken_on_this_machine_leave_out_the_dev_clouds_abandoned_bridges() -> None:
    routes = [{"dst": "default", "gateway": "192.168.1.1", "dev": "eth0"},
              {"dst": "192.168.1.0/24", "dev": "eth0", "flags": []},
              {"dst": "10.81.1.0/24", "dev": "cpn-27d4a8f8b2e", "flags": ["linkdown"]},  # no host up: free again
              {"dst": "10.81.2.0/24", "dev": "cpn-7ec8510f8f2", "flags": []},
              {"dst": "10.81.3.0/24", "dev": "eth1", "flags": ["linkdown"]}]
    taken = samples.routed(routes, bridge_prefix="cpn-")
    assert taken == ["192.168.1.0/24", "10.81.2.0/24", "10.81.3.0/24"]
    assert samples.free_cidr(taken) == "10.81.1.0/24"


def test_the_files_are_the_same_bytes_on_every_run(tmp_path: Path) -> None:
    first, second = Files(tmp_path).made(), Files(tmp_path).made()
    assert first == second
    files = Files(tmp_path)
    manifest = json.loads(first[files.manifest])
    assert manifest == samples.make_dataset(rows=samples.DATASET_ROWS).manifest()
    assert manifest["tables"]["public.requests"]["rows"] == samples.DATASET_ROWS
    with zipfile.ZipFile(BytesIO(first[files.legacy_war])) as war:
        assert samples.LEGACY_APP in war.read("index.html").decode()
    assert first[files.seed_dump].decode().count("COPY public.") == 3


def test_the_estate_key_is_made_once_private_to_its_owner(tmp_path: Path) -> None:
    ctx: Any = SimpleNamespace(settings=Settings(env="test", data_dir=tmp_path))
    estate = Estate(ctx, agency="E2_TEST", actor="test")
    public = estate.ensure_key()
    assert estate.key_file == tmp_path / "estate" / "e2-test" / "id_ed25519"
    assert stat.S_IMODE(estate.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(estate.home.stat().st_mode) == 0o700
    assert public.startswith("ssh-ed25519 ") and public.endswith(" estate-e2-test")
    private = estate.key_file.read_bytes()
    estate.key_file.with_suffix(".pub").unlink()  # the public half is made again from the private key
    assert estate.ensure_key() == public and estate.key_file.read_bytes() == private
    assert estate.key_file.with_suffix(".pub").read_text() == public + "\n"
