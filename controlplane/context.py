"""What one app instance owns: settings, database, clock, metrics. Built by create_app, never at import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from controlplane.clock import Clock
from controlplane.config import Settings

if TYPE_CHECKING:
    from controlplane.monitoring.metrics import Metrics


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    metrics: Metrics = field(repr=False)
