"""Precomputed outcome figures: one stored report per (clinic, view), read by the dashboard.

``data`` is a ``needlecare.outcomes.reports.ReportData`` encoded by ``needlecare.outcomes.store`` (aggregates only: no
patient rows, names or free text). ``view_key`` is the canonical text of the filters, e.g.
``injury=*;practitioner=*;since=2026-08-24T04:00:00+00:00;until=-``.
"""

from datetime import datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.base import UTCDateTime


class ReportSnapshot(SQLModel, table=True):
    __tablename__ = "report_snapshot"
    __table_args__ = (UniqueConstraint("clinic_id", "view_key", name="uq_report_snapshot_view"),)

    id: int | None = Field(default=None, primary_key=True)
    clinic_id: str = Field(foreign_key="clinic.id", index=True, max_length=64)
    view_key: str = Field(max_length=200, description="needlecare.outcomes.store.view_key of the filters")
    computed_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    seconds: float = Field(description="How long computing the report took")
    data: str = Field(sa_column=Column(Text, nullable=False), description="The report as JSON (report_store.encode)")
