"""What the control plane keeps of the inventory: the agency systems, what they are made of and what they call."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.auth.models import Agency
from controlplane.db import Base, UTCDateTime


class AgencySystem(Base):
    """An agency system of the inventory (domain.System, stored): what it is made of and what it calls."""

    __tablename__ = "migration_systems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    name_ko: Mapped[str] = mapped_column(String(200), default="")
    name_en: Mapped[str] = mapped_column(String(200), default="")
    criticality: Mapped[str] = mapped_column(String(16))
    maintenance_window: Mapped[str | None] = mapped_column(String(64), default=None)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    data_gb: Mapped[int] = mapped_column(Integer, default=0)
    # [{"kind", "vendor", "product", "version"}], in the inventory's order
    components: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    depends_on: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), index=True)
    notes: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    agency: Mapped[Agency] = relationship(lazy="joined")

