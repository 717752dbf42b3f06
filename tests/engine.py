"""The durable engine for one test: a system database of its own, and settings that start the engine with it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from controlplane.config import Settings


@contextmanager
def workflows_database(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """DBOS's system database for one test: a SQLite file beside a SQLite app database; on PostgreSQL, a database
    of its own on the same server (DBOS creates it), dropped afterwards."""
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() != "postgresql":
        yield f"sqlite:///{tmp_path / 'workflows.db'}"
        return
    name = f"cp_wf_{uuid.uuid4().hex[:12]}"
    yield url.set(database=name).render_as_string(hide_password=False)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def engine_settings(settings: Settings, tmp_path: Path, *, on: bool = True) -> Iterator[Settings]:
    """`settings` with the durable engine on, on a system database of the test's own (`on` False: off)."""
    if not on:
        yield settings.model_copy(update={"workflows": False})
        return
    with workflows_database(settings, tmp_path) as url:
        yield settings.model_copy(update={"workflows": True, "workflows_database_url": url,
                                          "migration_wake_seconds": 0.2})
