"""Alembic environment: run by `controlplane db upgrade` with the settings' database URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import controlplane.auth.models
import controlplane.automation.models
import controlplane.cloud.models
import controlplane.compliance.models
import controlplane.inventory.models
import controlplane.rooms.models
import controlplane.waves.models  # noqa: F401  (register the tables on Base.metadata)
from controlplane.config import Settings
from controlplane.db import Base, make_engine

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or Settings().effective_database_url
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


run_migrations_online()
