"""Insert exact rows for the outcome tests: patients, practitioners, episodes, sessions, contacts and answers.

The rows go straight into the tables (no ingest, no planning) so each test chooses every value it then
recomputes with numpy/scipy. Times are aware UTC datetimes; ids come back from a flush.
"""

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session

from models import (
    CaseRule,
    Contact,
    Episode,
    EscalationCase,
    Patient,
    Practitioner,
    RuleEvaluation,
    SurveyResponse,
    TreatmentSession,
)
from models.survey import RECALL_COLUMNS
from needlecare.followup.questions import PAIN_RECALL

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EPISODE_STEPS = {"outcome_4wk": 672, "outcome_6wk": 1008, "outcome_12wk": 2016}
SESSION_STEPS = {"check_24h": 24, "check_72h": 72, "check_7d": 168}


@dataclass(frozen=True)
class Ep:
    id: int
    patient_id: int
    injury: str
    started_at: datetime


class OutcomeRows:
    """A small builder bound to one session and one clinic."""

    def __init__(self, db: Session, clinic_id: str) -> None:
        self.db = db
        self.clinic_id = clinic_id
        self._seq = itertools.count(1)
        self._default_practitioner: int | None = None

    def _add(self, row: Any) -> int:
        self.db.add(row)
        self.db.flush()
        assert row.id is not None
        return int(row.id)

    def commit(self) -> None:
        self.db.commit()

    def practitioner(self, name: str = "Dana Reyes") -> int:
        n = next(self._seq)
        return self._add(Practitioner(clinic_id=self.clinic_id, external_id=f"P-{n}", name=name))

    @property
    def default_practitioner(self) -> int:
        if self._default_practitioner is None:
            self._default_practitioner = self.practitioner()
        return self._default_practitioner

    def patient(self) -> int:
        n = next(self._seq)
        return self._add(Patient(clinic_id=self.clinic_id, external_id=f"PT-{n}", first_name="Sam", last_name=f"P{n}"))

    def episode(
        self,
        injury: str = "achilles_tendinopathy",
        *,
        pain: int | None = 6,
        rom_measure: str | None = None,
        rom_value: float | None = None,
        started_at: datetime = T0,
        patient_id: int | None = None,
    ) -> Ep:
        patient = patient_id if patient_id is not None else self.patient()
        episode_id = self._add(
            Episode(
                clinic_id=self.clinic_id,
                patient_id=patient,
                injury=injury,
                started_at=started_at,
                baseline_pain_nprs=pain,
                baseline_rom_measure=rom_measure,
                baseline_rom_value=rom_value,
            )
        )
        return Ep(id=episode_id, patient_id=patient, injury=injury, started_at=started_at)

    def session(self, ep: Ep, *, practitioner_id: int | None = None, completed_at: datetime | None = None) -> int:
        n = next(self._seq)
        return self._add(
            TreatmentSession(
                clinic_id=self.clinic_id,
                external_session_id=f"S-{n}",
                patient_id=ep.patient_id,
                episode_id=ep.id,
                practitioner_id=practitioner_id if practitioner_id is not None else self.default_practitioner,
                completed_at=completed_at or ep.started_at,
                injury=ep.injury,
                side="left",
                regions_needled=["calf"],
                muscles_needled=[],
                baseline_pain_nprs=None,
            )
        )

    def contact(
        self,
        ep: Ep,
        step_id: str,
        *,
        status: str = "answered",
        session_id: int | None = None,
        due_at: datetime | None = None,
    ) -> int:
        n = next(self._seq)
        scope = "session" if step_id in SESSION_STEPS else "episode"
        if scope == "session" and session_id is None:
            raise ValueError(f"{step_id} is session-scoped: pass session_id")
        hours = SESSION_STEPS.get(step_id, EPISODE_STEPS.get(step_id, 0))
        due = due_at or ep.started_at + timedelta(hours=hours)
        return self._add(
            Contact(
                idempotency_key=f"{scope}:{session_id or ep.id}:{step_id}:{n}",
                patient_id=ep.patient_id,
                session_id=session_id if scope == "session" else None,
                episode_id=ep.id,
                injury=ep.injury,
                step_id=step_id,
                scope=scope,
                safety=step_id in ("check_24h", "check_72h"),
                status=status,
                due_at=due,
                window_opens_at=due - timedelta(hours=6),
                window_closes_at=due + timedelta(hours=48),
                answered_at=due if status == "answered" else None,
            )
        )

    def answer(
        self,
        ep: Ep,
        step_id: str,
        *,
        session_id: int | None = None,
        submitted_at: datetime | None = None,
        redflags: list[str] | None = None,
        **values: Any,
    ) -> tuple[int, int]:
        """An answered contact and its response; returns (contact id, response id).

        Each 0-10 score gets the recall the survey asks it with now (``PAIN_RECALL``) unless its ``*_recall``
        is given (``nprs_usual_recall="now"``: an answer stored before the question said "over 24 hours")."""
        for score, column in RECALL_COLUMNS.items():
            if values.get(score) is not None:
                values.setdefault(column, PAIN_RECALL[score].value)
        contact_id = self.contact(ep, step_id, status="answered", session_id=session_id, due_at=submitted_at)
        contact = self.db.get(Contact, contact_id)
        assert contact is not None
        response_id = self._add(
            SurveyResponse(
                contact_id=contact_id,
                patient_id=ep.patient_id,
                session_id=contact.session_id,
                episode_id=ep.id,
                injury=ep.injury,
                step_id=step_id,
                channel="web",
                submitted_at=submitted_at or contact.due_at,
                redflags=redflags if redflags is not None else [],
                **values,
            )
        )
        return contact_id, response_id

    def escalation(
        self,
        ep: Ep,
        *,
        contact_id: int,
        rules: list[str],
        opened_at: datetime,
        acknowledged_at: datetime | None = None,
        session_id: int | None = None,
    ) -> int:
        """An escalation case (with its rule evaluation) carrying one case_rule row per rule id."""
        evaluation_id = self._add(
            RuleEvaluation(
                clinic_id=self.clinic_id,
                patient_id=ep.patient_id,
                episode_id=ep.id,
                session_id=session_id,
                contact_id=contact_id,
                kind="answer",
                evaluated_at=opened_at,
                rules_version="test",
                inputs={},
                fired=[{"id": r, "version": 1, "tier": "SAME_DAY"} for r in rules],
                highest_tier="SAME_DAY",
            )
        )
        case_id = self._add(
            EscalationCase(
                idempotency_key=f"evaluation:{evaluation_id}",
                clinic_id=self.clinic_id,
                patient_id=ep.patient_id,
                episode_id=ep.id,
                session_id=session_id,
                contact_id=contact_id,
                evaluation_id=evaluation_id,
                tier="SAME_DAY",
                status="acknowledged" if acknowledged_at else "open",
                opened_at=opened_at,
                due_at=opened_at + timedelta(hours=4),
                acknowledged_at=acknowledged_at,
            )
        )
        for rule in rules:
            self._add(CaseRule(case_id=case_id, rule_id=rule, rule_version=1, tier="SAME_DAY"))
        return case_id
