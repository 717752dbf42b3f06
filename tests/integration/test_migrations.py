"""The migrations build exactly the schema the models describe, on both backends, and can be undone."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from controlplane.db import Base, make_engine
from controlplane.migrations import alembic_config, upgrade


def test_models_and_migrations_agree(engine):
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models differ from the migrations; add a revision: {diff}"


def test_downgrade_to_base_and_upgrade_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'round-trip.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    assert {"agencies", "users", "audit_log", "meetings", "meeting_sessions"} <= set(inspect(engine).get_table_names())
    engine.dispose()
