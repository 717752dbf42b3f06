"""Schemathesis over every operation of the OpenAPI document, authenticated as an admin and as a ministry user: no
request, however odd (boundary values, huge integers, control characters, missing or extra fields), gets a server
error, and every answer is one the document declares for that operation, with its declared media type and shape.

The app runs on a database of its own (seeded catalogue, the sample inventory, a credential), without the cloud
and the migration engine, whose absence is part of the contract (503, declared). Examples are bounded so the
whole document fits the suite's time; generation is derandomized, so a failure repeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import NOW
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from controlplane.app import create_app
from controlplane.auth import service as auth_service
from controlplane.auth.models import User
from controlplane.auth.roles import Role
from controlplane.auth.schemas import UserCreate
from controlplane.clock import FixedClock
from controlplane.compliance import service as compliance_service
from controlplane.config import Settings
from controlplane.db import make_engine, make_sessionmaker, transaction
from controlplane.migrations import upgrade

EXAMPLES = 12  # per operation and role, on top of the schema's examples and its boundary (coverage) cases
DOCUMENT_APP = create_app(Settings(env="test", database_url="sqlite://", workflows=False, cloud=""))
schema = schemathesis.openapi.from_asgi("/openapi.json", DOCUMENT_APP)


@schemathesis.check
def no_unhandled_error(ctx: Any, response: Any, case: Any) -> None:
    """A 500 is a bug whatever the request; another 5xx must be one the operation declares (the cloud down, ...)."""
    declared = {str(code) for code in case.operation.responses.status_codes}
    if response.status_code == 500 or (response.status_code > 500 and str(response.status_code) not in declared):
        raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")


CHECKS = [no_unhandled_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Api:
    app: Any
    sessions: Any
    clock: FixedClock

    def headers(self, username: str) -> dict[str, str]:
        """A fresh token per case: a case may log out, or reset the password of the user it runs as."""
        with transaction(self.sessions) as session:
            user = session.scalars(select(User).where(User.username == username)).one()
            user.active = True
            raw, _ = auth_service.issue_token(session, clock=self.clock, user=user, ttl=timedelta(hours=1))
        return {"Authorization": f"Bearer {raw}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    work: Path = tmp_path_factory.mktemp("schema")
    url = f"sqlite:///{work / 'controlplane.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions, clock = make_sessionmaker(engine), FixedClock(NOW)
    with transaction(sessions) as session:
        auth_service.seed_agencies(session, clock=clock, actor="test")
        compliance_service.seed_policies(session, clock=clock, actor="test")
        compliance_service.seed_meetings(session, clock=clock, actor="test")
        for username, role, agency in (("st-admin", Role.ADMIN, None), ("st-mois", Role.MINISTRY, "MOIS")):
            auth_service.create_user(session, clock=clock, actor="test", data=UserCreate(
                username=username, password="schemathesis-pass-1", role=role, agency_code=agency))
    # The rooms' live stream ends after rooms_stream_seconds (and its client reconnects): a second here.
    app = create_app(Settings(env="test", database_url=url, data_dir=work, workflows=False, cloud="",
                              rooms_stream_seconds=1), clock=clock)
    yield Api(app, sessions, clock)
    engine.dispose()


FAST = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


# Each case starts the app anew (its lifespan included); on a machine loaded by the dev cloud tests that run beside,
# that can take more than schemathesis' 10 s. How fast it answers is not what these tests check (bench/ measures).
TIMEOUT = 120


@schema.parametrize()
@FAST
def test_every_operation_as_an_admin(case: schemathesis.Case, api: Api) -> None:
    case.call_and_validate(app=api.app, headers=api.headers("st-admin"), checks=CHECKS, timeout=TIMEOUT)


@schema.parametrize()
@FAST
def test_every_operation_as_a_ministry_user(case: schemathesis.Case, api: Api) -> None:
    case.call_and_validate(app=api.app, headers=api.headers("st-mois"), checks=CHECKS, timeout=TIMEOUT)
