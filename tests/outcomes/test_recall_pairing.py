"""Pain is compared like with like: every figure that sets a follow-up pain score against the baseline (usual
pain over the last 24 h) uses only scores asked with that recall period, on SQLite and PostgreSQL, and
migration 0009 marks the answers stored before it with the recall they were asked with ("right now")."""

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, text
from sqlmodel import Session, select

from models import Clinic, SurveyResponse
from models.survey import BASELINE_PAIN_RECALL, RECALL_COLUMNS, PainRecall
from needlecare.core import db as database
from needlecare.core.catalogue import get_catalogue
from needlecare.outcomes.compute import compute_outcomes
from needlecare.outcomes.definitions import PAIN, PAIN_RECALL
from needlecare.outcomes.fhir_codes import NPRS_NOW
from needlecare.outcomes.fhir_responses import ResponseRow, build_observations
from needlecare.outcomes.results import OutcomeReport, StepRow
from needlecare.outcomes.trajectory import trajectory
from needlecare.safety.clinic_config import ReportPolicy
from tests.outcome_rows import OutcomeRows

POLICY = ReportPolicy()
ACHILLES = "achilles_tendinopathy"
STEP = "outcome_6wk"
NOW = PainRecall.NOW.value


def row(report: OutcomeReport, step_id: str = STEP) -> StepRow:
    [found] = [r for r in report.rows if r.injury == ACHILLES and r.step_id == step_id]
    return found


def test_the_outcomes_pair_with_the_baselines_recall() -> None:
    assert PAIN_RECALL == BASELINE_PAIN_RECALL == PainRecall.AVERAGE_24H


def test_paired_change_and_responders_leave_out_scores_of_another_recall(db: Session, clinic: Clinic) -> None:
    """25 answers over 24 h pair with the baseline; 15 older "right now" answers (all would be responders and
    would pull the mean far down) are in none of the paired figures."""
    rng = np.random.default_rng(12)
    rows = OutcomeRows(db, clinic.id)
    changes: list[float] = []
    responders = 0
    for i in range(40):
        ep = rows.episode(pain=6)
        if i < 25:
            follow_up = int(rng.integers(3, 9))
            rows.answer(ep, STEP, nprs_usual=follow_up)
            changes.append(follow_up - 6)
            responders += 6 - follow_up >= 2
        else:
            rows.answer(ep, STEP, nprs_usual=0, nprs_usual_recall=NOW)
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=POLICY)

    pain = row(report).pain
    assert pain is not None
    assert pain.raw.summary.n == 25 and pain.raw.patients == 25
    assert pain.raw.summary.mean == pytest.approx(float(np.mean(changes)), abs=1e-9)
    assert pain.raw.responders == responders < 25
    assert row(report).raw.contacts_answered == 40, "the answers still count as answered"


def test_no_pair_at_all_when_every_score_has_another_recall(db: Session, clinic: Clinic) -> None:
    rows = OutcomeRows(db, clinic.id)
    for _ in range(22):
        ep = rows.episode(pain=7)
        rows.answer(ep, STEP, nprs_usual=1, nprs_usual_recall=NOW)
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=POLICY)

    assert row(report).pain is None
    assert report.headline.raw.paired == 0 and report.headline.raw.responders == 0
    (recovery,) = report.recovery
    assert recovery.raw.km.total_events == 0, "a 'right now' score never marks recovery"


def test_the_headline_takes_the_latest_answer_of_the_baselines_recall(db: Session, clinic: Clinic) -> None:
    rows = OutcomeRows(db, clinic.id)
    ep = rows.episode(pain=8)
    rows.answer(ep, "outcome_4wk", nprs_usual=7)  # over 24 h: not improved
    rows.answer(ep, "outcome_12wk", nprs_usual=1, nprs_usual_recall=NOW)  # later, but "right now"
    rows.commit()

    headline = compute_outcomes(db, clinic.id, policy=POLICY).headline

    assert (headline.raw.paired, headline.raw.responders) == (1, 0)


def test_the_trajectorys_pain_series_has_one_recall(db: Session, clinic: Clinic) -> None:
    rows = OutcomeRows(db, clinic.id)
    for i in range(12):
        ep = rows.episode(pain=6)
        if i < 8:
            rows.answer(ep, STEP, nprs_usual=4)
        else:
            rows.answer(ep, STEP, nprs_usual=10, nprs_usual_recall=NOW)
    rows.commit()

    points = trajectory(db, clinic.id, policy=ReportPolicy(min_count_shown=1, min_paired=2))

    [pain] = [p for p in points if p.step_id == STEP and p.measure == PAIN]
    assert pain.raw.n == 8 and pain.raw.mean == pytest.approx(4.0)
    assert {p.measure for p in points if p.step_id == STEP} == {PAIN}


# ---- migration 0009 ------------------------------------------------------------------------------------


def _load_revision(file_name: str) -> ModuleType:
    path = database.MIGRATIONS_DIR / "versions" / file_name
    spec = importlib.util.spec_from_file_location(f"revision_{file_name[:4]}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REVISION = _load_revision("0009_answer_recall.py")
COVERING_INDEXES = _load_revision("0013_report_covering_indexes.py")  # an index of it holds a recall column


def _columns(connection: Connection) -> set[str]:
    return set(connection.execute(select(text("*")).select_from(text("survey_response"))).keys())


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def _recalls(db: Session) -> dict[int, dict[str, Any]]:
    db.expire_all()
    return {
        int(r.id or 0): {column: getattr(r, column) for column in RECALL_COLUMNS.values()}
        for r in db.exec(select(SurveyResponse)).all()
    }


def test_migration_0009_marks_stored_answers_with_the_recall_they_were_asked_with(
    db: Session, db_url: str, clinic: Clinic
) -> None:
    """Answers stored before 0009 were asked pain "right now": after the migration they say so, and none of
    them is paired with the baseline. A score left unanswered gets no recall."""
    rows = OutcomeRows(db, clinic.id)
    scores: dict[int, dict[str, int | None]] = {}
    for i in range(21):
        ep = rows.episode(pain=6)
        values: dict[str, int | None] = {"nprs_usual": 2, "nprs_worst": 9 if i % 2 else None, "run_pain": None}
        _, response_id = rows.answer(ep, STEP, **values)
        scores[response_id] = values
    session_ep = rows.episode(pain=6)
    session = rows.session(session_ep)
    _, check_id = rows.answer(session_ep, "check_72h", session_id=session, soreness=3, nprs_usual=5, run_pain=4)
    scores[check_id] = {"soreness": 3, "nprs_usual": 5, "run_pain": 4}
    rows.commit()
    assert row(compute_outcomes(db, clinic.id, policy=POLICY)).pain is not None, "paired before the migration"
    db.close()

    # Back to the schema before 0009 and up again, with this revision's own steps. The later revisions belong
    # to other work and are left as they are, except 0013, whose covering index holds a recall column.
    engine = database.get_engine(db_url)
    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        COVERING_INDEXES.downgrade()
        REVISION.downgrade()
        assert not set(RECALL_COLUMNS.values()) & _columns(connection), "before 0009 there is no recall column"
        REVISION.upgrade()
        COVERING_INDEXES.upgrade()

    asked_before = {"nprs_usual": NOW, "nprs_worst": "worst_24h", "soreness": NOW, "run_pain": "during_run"}
    stored = _recalls(db)
    assert set(stored) == set(scores)
    for response_id, given in scores.items():
        expected = {
            column: asked_before[score] if given.get(score) is not None else None
            for score, column in RECALL_COLUMNS.items()
        }
        assert stored[response_id] == expected, response_id

    report = compute_outcomes(db, clinic.id, policy=POLICY)
    assert row(report).pain is None and row(report, "check_72h").pain is None
    assert report.headline.raw.paired == 0


def test_migration_0009_downgrades_and_upgrades_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chain.db'}"
    config = _alembic(url)
    command.upgrade(config, "0009")
    command.downgrade(config, "0008")
    command.upgrade(config, "head")
    with database.get_engine(url).connect() as connection:
        columns = _columns(connection)
    database.get_engine(url).dispose()
    assert set(RECALL_COLUMNS.values()) <= columns


# ---- the FHIR export ----------------------------------------------------------------------------------


def test_the_fhir_export_gives_pain_now_a_code_of_its_own() -> None:
    """Both carry LOINC 72514-3, but the local code says which pain: an importer cannot mix them unknowingly."""
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    codes: dict[str | None, set[str]] = {}
    for recall in ("average_24h", NOW):
        response = ResponseRow(
            id=1,
            patient_id=2,
            injury=ACHILLES,
            step_id=STEP,
            protocol_version="v",
            submitted_at=at,
            nprs_usual=4,
            nprs_usual_recall=recall,
        )
        [observation] = build_observations(response, get_catalogue())
        codes[recall] = {c.code for c in observation.code.coding or [] if c.code is not None}
    assert codes["average_24h"] == {"72514-3", "nprs_usual"}
    assert codes[NOW] == {"72514-3", NPRS_NOW}
