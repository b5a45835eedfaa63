"""Shared fixtures: a fresh application database per test, on SQLite and on PostgreSQL."""

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from models import Clinic, ClinicCreate
from needlecare.core import db as database
from needlecare.core import events
from needlecare.core.settings import Settings
from needlecare.intake.clinics import add_clinic
from tests.pg import PgCluster, start_cluster

DB_KINDS = ["sqlite", "postgresql"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = start_cluster(free_port())
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the test's own: stopping it must not disturb the suite's shared one."""
    cluster = start_cluster(free_port())
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated application database (the real Alembic migration runs)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
        database.upgrade(url)
        yield url
        database.get_engine(url).dispose()
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = cluster.create_database()
    url = cluster.url(name)
    database.upgrade(url)
    yield url
    database.get_engine(url).dispose()
    cluster.drop_database(name)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        data_dir=tmp_path,
        database_url=db_url,
        smtp_capture_port=free_port(),
        public_base_url="http://needlecare.test",
    )


@pytest.fixture
def db(db_url: str) -> Iterator[Session]:
    with Session(database.get_engine(db_url), expire_on_commit=False) as session:
        yield session


CLINIC_SECRET = "whsec_test_secret_for_riverside"


def add_test_clinic(db: Session) -> Clinic:
    """The Riverside Physio clinic with the tests' webhook secret."""
    created, _ = add_clinic(
        db,
        ClinicCreate(
            id="riverside-physio",
            name="Riverside Physio",
            email="front-desk@riverside.example",
            phone="+15550100200",
            timezone="America/New_York",
        ),
        actor="test",
        secret=CLINIC_SECRET,
    )
    return created


@pytest.fixture
def clinic(db: Session) -> Clinic:
    return add_test_clinic(db)


@pytest.fixture(autouse=True)
def emitted() -> Iterator[list[events.AppEvent]]:
    """Collects events instead of sending them to Prefect."""
    collected: list[events.AppEvent] = []
    previous = events.set_emitter(collected.append)
    yield collected
    events.set_emitter(previous)
