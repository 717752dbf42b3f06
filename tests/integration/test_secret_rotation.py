"""`controlplane secrets rotate`: every sealed value in the database re-sealed under the new CP_SECRET_KEY, all or
nothing, so values sealed under the old key open with the new key alone afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from controlplane.auth.models import Agency, AuditEntry
from controlplane.automation.models import Credential, Job
from controlplane.cloud.models import CloudTenancy
from controlplane.db import Base, transaction
from controlplane.inventory.models import AgencySystem
from controlplane.rooms.models import Bridge, BridgeRoom, Room, Site
from controlplane.secrets import SecretBox, SecretError
from controlplane.waves.models import Migration, Wave

OLD = "old-secret-key-" + "o" * 30
NEW = "new-secret-key-" + "n" * 30
STRANGER = "a-key-nobody-configured-" + "s" * 20
COLUMNS = {"cloud_tenancies.service_password_sealed": "svc-password-9",
           "automation_credentials.private_key_sealed": "-----BEGIN OPENSSH PRIVATE KEY-----\nxyz\n",
           "automation_jobs.secrets_sealed": '{"db_password": "hunter2-hunter2"}',
           "migrations.secrets_sealed": "generated-db-owner-password",
           "vc_bridges.admin_secret_sealed": "janus-admin-secret-123",
           "vc_bridge_rooms.secret_sealed": "room-secret-456",
           "vc_bridge_rooms.pin_sealed": "123456"}


def _stored(sessions: sessionmaker[Session]) -> dict[str, str]:
    """The sealed tokens as stored, per table.column."""
    columns = {"cloud_tenancies.service_password_sealed": CloudTenancy.service_password_sealed,
               "automation_credentials.private_key_sealed": Credential.private_key_sealed,
               "automation_jobs.secrets_sealed": Job.secrets_sealed,
               "migrations.secrets_sealed": Migration.secrets_sealed,
               "vc_bridges.admin_secret_sealed": Bridge.admin_secret_sealed,
               "vc_bridge_rooms.secret_sealed": BridgeRoom.secret_sealed,
               "vc_bridge_rooms.pin_sealed": BridgeRoom.pin_sealed}
    with transaction(sessions) as s:
        return {name: s.scalars(select(column)).one() for name, column in columns.items()}


@pytest.fixture
def sealed(sessions: sessionmaker[Session], clock: Any) -> Callable[..., None]:
    """One row of each kind holding a sealed value, sealed under OLD (or the key given per column)."""

    def seed(keys: dict[str, str] | None = None) -> None:
        def seal(column: str) -> str:
            return SecretBox((keys or {}).get(column, OLD)).seal(COLUMNS[column])

        now = clock.now()
        with transaction(sessions) as s:
            agency = Agency(code="MOIS", name_ko="행정안전부", name_en="MOIS", kind="ministry", created_at=now)
            s.add(agency)
            s.flush()
            s.add(CloudTenancy(agency_id=agency.id, cloud="devcloud", quota_instances=1, quota_cores=1,
                               quota_ram_mb=512, quota_volumes=0, cidr="10.81.1.0/24", service_user="agency-mois-svc",
                               service_password_sealed=seal("cloud_tenancies.service_password_sealed"),
                               created_at=now, updated_at=now))
            credential = Credential(name="ops", username="root", public_key="ssh-ed25519 AAAA",
                                    private_key_sealed=seal("automation_credentials.private_key_sealed"),
                                    created_by="test", created_at=now, updated_at=now)
            s.add(credential)
            s.flush()
            s.add(Job(id="job-1", playbook="site.yml", credential_id=credential.id, status="pending", hosts=[],
                      secrets_sealed=seal("automation_jobs.secrets_sealed"), requested_by="test", created_at=now))
            system = AgencySystem(code="mois-gpki", agency_id=agency.id, criticality="high", vcpus=1, ram_mb=512,
                                  disk_gb=10, status="inventoried", created_at=now, updated_at=now)
            wave = Wave(name="wave-1", state="draft", catalogue_version="1", cloud="devcloud", created_by="test",
                        created_at=now)
            s.add_all([system, wave])
            s.flush()
            s.add(Migration(id="mig-1", wave_id=wave.id, system_id=system.id, agency_id=agency.id, position=0,
                            state="pending", plan={}, secrets_sealed=seal("migrations.secrets_sealed"),
                            created_at=now))
            site = Site(code="sejong", name="세종", kind="complex", region="sejong", address="x", created_at=now,
                        updated_at=now)
            s.add(site)
            s.flush()
            bridge = Bridge(code="bridge-1", site_id=site.id, server="vc-bridge-1", rooms_capacity=10,
                            participants_capacity=40, admin_secret_sealed=seal("vc_bridges.admin_secret_sealed"),
                            created_at=now, updated_at=now)
            room = Room(code="room-1", name="r", site_id=site.id, agency_id=agency.id, building="1", floor=1,
                        capacity=4, equipment=[], sip_uri="sip:room-1@vc", address="10.0.0.5", port=5060,
                        protocol="sip", created_at=now, updated_at=now)
            s.add_all([bridge, room])
            s.flush()
            s.add(BridgeRoom(room_id=room.id, bridge_id=bridge.id, number=100001,
                             secret_sealed=seal("vc_bridge_rooms.secret_sealed"),
                             pin_sealed=seal("vc_bridge_rooms.pin_sealed"), created_at=now, updated_at=now))

    return seed


@pytest.fixture
def rotate(settings: Any, monkeypatch: pytest.MonkeyPatch, clock: Any) -> Callable[..., Any]:
    """`controlplane secrets rotate` on the test database with CP_SECRET_KEY=NEW and the previous keys given."""
    monkeypatch.setenv("CP_ENV", "test")
    monkeypatch.setenv("CP_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("CP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CP_SECRET_KEY", NEW)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr("controlplane.clikit.Clock", lambda: clock)
    from controlplane.cli import app

    def run(previous: str = OLD) -> Any:
        monkeypatch.setenv("CP_SECRET_KEY_PREVIOUS", previous)
        return CliRunner().invoke(app, ["secrets", "rotate"])

    return run


def _rotations(sessions: sessionmaker[Session]) -> list[AuditEntry]:
    with transaction(sessions) as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == "rotate")))


def test_values_sealed_under_the_old_key_open_with_the_new_key_alone_after_rotation(sealed, rotate, sessions):
    sealed()
    before = _stored(sessions)
    with pytest.raises(SecretError):
        SecretBox(NEW).open(before["migrations.secrets_sealed"])

    result = rotate()
    assert result.exit_code == 0, result.output
    for column in COLUMNS:
        assert f"{column}: 1 re-sealed, 0 already under the current key" in result.output
    assert f"re-sealed {len(COLUMNS)} value(s)" in result.output

    after = _stored(sessions)
    only_new, only_old = SecretBox(NEW), SecretBox(OLD)
    for column, plaintext in COLUMNS.items():
        assert after[column] != before[column]
        assert only_new.open(after[column]) == plaintext
        with pytest.raises(SecretError):
            only_old.open(after[column])
        assert plaintext not in result.output

    (row,) = _rotations(sessions)
    assert row.entity_type == "secret_key" and row.actor.startswith("cli:")
    assert row.after == {"resealed": dict.fromkeys(COLUMNS, 1), "previous_keys": 1}
    assert OLD not in str(row.after) and NEW not in str(row.after)


def test_a_second_rotation_changes_nothing(sealed, rotate, sessions):
    sealed()
    assert rotate().exit_code == 0
    first = _stored(sessions)
    again = rotate(previous="")
    assert again.exit_code == 0, again.output
    assert "cloud_tenancies.service_password_sealed: 0 re-sealed, 1 already under the current key" in again.output
    assert _stored(sessions) == first


def test_a_value_no_key_opens_stops_the_whole_rotation(sealed, rotate, sessions):
    sealed({"automation_jobs.secrets_sealed": STRANGER})
    before = _stored(sessions)
    result = rotate()
    assert result.exit_code == 1
    assert "automation_jobs.secrets_sealed id=job-1" in result.output
    assert "Nothing was changed" in result.output and "CP_SECRET_KEY_PREVIOUS" in result.output
    assert STRANGER not in result.output and OLD not in result.output
    # All or nothing: the values the keys did open were not re-sealed either.
    assert _stored(sessions) == before
    assert _rotations(sessions) == []


def test_every_sealed_column_of_the_schema_is_rotated():
    from controlplane.auth.cli import _sealed_columns

    in_schema = {f"{t.name}.{c.name}" for t in Base.metadata.sorted_tables for c in t.columns
                 if c.name.endswith("_sealed")}
    assert {f"{c.table.name}.{c.name}" for c in _sealed_columns()} == in_schema
    assert set(COLUMNS) <= in_schema
