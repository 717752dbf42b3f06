"""`controlplane devcloud estate up|down` on the real dev cloud, through the command line (in-process): the legacy
side of the sample systems is there as an operator finds it (the users' front serves the legacy application, the
legacy database holds the data), the wave file it writes is a wave the product makes, a second `up` changes
nothing, and `down` deletes every server it made. Running the wave is the migration test's work, not this one's."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack.config
import openstack.connection
import pytest
import yaml
from test_cloud_api_devcloud import _delete_everything_of
from typer.testing import CliRunner

from controlplane.cli import app as cli_app
from controlplane.composition import opened_context
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.devcloud import samples
from controlplane.devcloud.samples import Names
from controlplane.migrations import upgrade
from controlplane.waves import flows as wave_flows
from controlplane.waves import service as wave_service
from controlplane.waves.schemas import WaveIn

pytestmark = pytest.mark.devcloud


@dataclass
class Rehearsal:
    names: Names
    env: dict[str, str]
    settings: Settings
    conn: Any  # the dev cloud admin's openstacksdk connection
    project_id: str = ""

    def cli(self, *args: str) -> Any:
        result = CliRunner().invoke(cli_app, ["devcloud", "estate", *args, "--agency", self.names.agency],
                                    env=self.env)
        assert result.exit_code == 0, result.output
        return result

    def servers(self) -> dict[str, Any]:
        return {s.name: s for s in self.conn.compute.servers(all_projects=True, project_id=self.project_id)}

    @property
    def key(self) -> Path:
        return self.settings.data_dir / "estate" / self.names.slug / "id_ed25519"


@pytest.fixture(scope="module")
def rehearsal(devcloud: Any, tmp_path_factory: pytest.TempPathFactory, timings: list[str]) -> Iterator[Rehearsal]:
    work = tmp_path_factory.mktemp("estate")
    url = f"sqlite:///{work / 'controlplane.db'}"
    upgrade(url)
    names = Names(f"E{uuid.uuid4().hex[:7].upper()}")
    env = {"CP_ENV": "test", "CP_DATABASE_URL": url, "CP_DATA_DIR": str(work), "CP_CLOUD": devcloud.cloud_name,
           "CP_CLOUDS_YAML": str(devcloud.clouds_yaml), "CP_WORKFLOWS": "false", "CP_METRICS_REFRESH_SECONDS": "3600"}
    settings = Settings(env="test", database_url=url, data_dir=work, cloud=devcloud.cloud_name,
                        clouds_yaml=devcloud.clouds_yaml)
    config = openstack.config.OpenStackConfig(config_files=[str(devcloud.clouds_yaml)])
    conn = openstack.connection.Connection(config=config.get_one(cloud=devcloud.cloud_name))
    started = time.monotonic()
    try:
        yield Rehearsal(names, env, settings, conn)
    finally:
        try:
            _delete_everything_of(conn, {"project": f"agency-{names.agency.lower()}",
                                         "user": f"agency-{names.agency.lower()}-svc",
                                         "keypair": f"agency-{names.agency.lower()}-key"})
        finally:
            conn.close()
        timings.append(f"rehearsal estate: up, up again, a wave made, down in {time.monotonic() - started:.0f} s")


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_estate_up_makes_the_legacy_side_and_a_wave_file(rehearsal: Rehearsal, timings: list[str]) -> None:
    names = rehearsal.names
    started = time.monotonic()
    output = rehearsal.cli("up").output
    timings.append(f"rehearsal estate: first up in {time.monotonic() - started:.0f} s")
    assert f"estate of {names.agency} ready" in output and "nothing changed" not in output, output
    project = rehearsal.conn.identity.find_project(f"agency-{names.agency.lower()}", ignore_missing=False)
    rehearsal.project_id = project.id
    servers = rehearsal.servers()
    assert sorted(servers) == sorted(names.server(role) for role in samples.ROLES)
    for role in samples.ROLES:
        assert servers[names.server(role)].metadata["cp_owner"] == names.owner(role)
    address = {role: servers[names.server(role)].addresses[f"agency-{names.agency.lower()}-net"][0]["addr"]
               for role in samples.ROLES}
    # the users' front proxies to the legacy application server, which serves the legacy application
    assert samples.LEGACY_APP in _page(f"http://{address['front']}/")
    assert samples.LEGACY_APP in _page(f"http://{address['app']}:8080/")
    # the legacy database holds the data, and the dump the wave moves was taken from it
    count = subprocess.run(
        ["ssh", "-i", str(rehearsal.key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", f"root@{address['db']}",
         "runuser -u postgres -- psql -XtAc 'SELECT count(*) FROM public.requests' minwon"],
        capture_output=True, text=True, timeout=30, check=False)
    assert count.stdout.strip() == str(samples.DATASET_ROWS), count.stderr
    files = samples.Files(rehearsal.settings.effective_artifacts_dir / f"estate-{names.slug}")
    assert "Dumped by pg_dump" in files.dump.read_text() and "COPY public.requests" in files.dump.read_text()
    assert os.stat(rehearsal.key).st_mode & 0o777 == 0o600
    wave = yaml.safe_load((rehearsal.settings.data_dir / "estate" / names.slug / "wave.yaml").read_text())
    assert wave["inputs"][names.app_system]["front"]["address"] == address["front"]
    assert wave["inputs"][names.app_system]["legacy_upstreams"] == [f"{address['app']}:8080"]


def test_a_second_up_changes_nothing(rehearsal: Rehearsal, timings: list[str]) -> None:
    before = {name: server.id for name, server in rehearsal.servers().items()}
    wave_file = rehearsal.settings.data_dir / "estate" / rehearsal.names.slug / "wave.yaml"
    written = wave_file.stat().st_mtime_ns
    started = time.monotonic()
    output = rehearsal.cli("up").output
    timings.append(f"rehearsal estate: second up in {time.monotonic() - started:.0f} s")
    assert "nothing changed" in output, output
    assert {name: server.id for name, server in rehearsal.servers().items()} == before
    assert wave_file.stat().st_mtime_ns == written


def test_the_wave_file_makes_a_wave(rehearsal: Rehearsal) -> None:
    path = rehearsal.settings.data_dir / "estate" / rehearsal.names.slug / "wave.yaml"
    data = WaveIn.model_validate(yaml.safe_load(path.read_text()))
    with opened_context(rehearsal.settings) as ctx, transaction(ctx.sessions) as session:
        wave = wave_service.wave_read(session, wave_flows.create_wave(session, ctx=ctx, actor="test", data=data),
                                      viewer="test")
    assert wave.name == rehearsal.names.wave(1)
    assert {m.system: m.state.value for m in wave.migrations} == {rehearsal.names.db_system: "pending",
                                                                  rehearsal.names.app_system: "pending"}


def test_estate_down_deletes_every_server_it_made(rehearsal: Rehearsal, timings: list[str]) -> None:
    started = time.monotonic()
    output = rehearsal.cli("down").output
    timings.append(f"rehearsal estate: down in {time.monotonic() - started:.0f} s")
    assert output.count("deleted    server") == 3, output
    assert rehearsal.servers() == {}
    assert not (rehearsal.settings.data_dir / "estate" / rehearsal.names.slug / "wave.yaml").exists()
    assert f"kept       agency {rehearsal.names.agency}" in output
