"""A seeded, synthetic clinic cohort: patients, sessions and the answers they would give. Pure: no database.

Everything is fake and looks fake: patients are "Demo Patient 0042" with ``demo-0042@example.invalid`` (the
``.invalid`` top-level domain can never deliver, RFC 2606), practitioners "Demo Practitioner 1". The same
``seed`` and ``start`` always give the same cohort; each patient has its own generator (seeded from the cohort
seed and the patient number), so the first 12 patients of a 200-patient cohort are the 12-patient cohort.

The shape follows shared/domain.md (the figures are the guide, not a model fitted to data):

- injuries (§1.1): all ten of the catalogue, runners' clinic proportions; the first ten patients take one each,
  so even a small cohort shows every injury. Muscles and regions needled as the seeds name them; a few patients
  also had the upper back or shoulder needled (trunk regions: the only ones who can report breathlessness, §3.3).
- baseline (§1.2): NPRS 2-9 and the injury's ROM measure in a plausible injured range inside the catalogue's.
- sessions (§4.1): 1-6 per episode (a typical course is 3-6), 3-14 days apart, in clinic hours, Monday-Saturday.
- pain (§2): responders (50-70 % by injury) improve by 40-90 % over weeks, some stay the same, a few get worse
  (about 10 %). Post-needling soreness is high at 24 h for most and mostly gone by 72 h. GROC follows the pain
  change against its anchor; PSFS activities are the patient's own and re-rated each time; self-tests (ROM) are
  answered where the protocol asks them, skipped by about one patient in five.
- response (§4.3): about 78 % at the 1-day check falling to about 54 % at 12 weeks, varying by patient, with
  non-improvers a little less likely to answer outcome surveys (attrition bias, §5.1). About half answer within
  hours, the rest after the reminder; some of those answers arrive after the window closes.
- text messages (issue 16): about 85 % have a (fictional, valid E.164) mobile number on file and 70 % of them
  agree to SMS, drawn from a generator of their own so the rest of the cohort is the same as without them; about
  60 % of the answers that follow an SMS reminder to the 24 h check come back as a reply of numbers (none that
  reports a red flag: those use the link).
- red flags (§3.3): about 1-2 % of safety checks (spreading redness, a hot swollen site, fainting after leaving,
  tingling, a large or spreading bruise …); breathlessness only where trunk regions were needled; bone-stress
  patients sometimes report pain on walking or at night. A few answers carry free text.

Answers are planned as API bodies (``POST /api/v1/surveys/<token>/answers``) for the questions the protocol
step asks (``needlecare.demo.trajectories``; the figures are in ``needlecare.demo.figures``);
``needlecare.demo.simulation`` sends them through the real validation and storage.
"""

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from needlecare.core.catalogue import Catalogue, get_catalogue
from needlecare.demo.defaults import DEFAULT_SEED as DEFAULT_SEED
from needlecare.demo.figures import (
    BASELINE_MEASURE,
    CLINIC_TZ,
    FICTIONAL_AREA_CODES,
    INJURY_WEIGHTS,
    LOWER_BACK_SHARE,
    MUSCLES,
    PATIENT_ZONES,
    PHONE_SHARE,
    PRACTITIONERS,
    PSFS_ACTIVITIES,
    REGION_OF,
    RESPONDER_SHARE,
    SMS_CONSENT_SHARE,
    TRUNK_EXTRA,
    TRUNK_SHARE,
    WORSEN_SHARE,
)
from needlecare.demo.trajectories import (
    AnswerState,
    Course,
    PlannedAnswer,
    draw_rom_baseline,
    draw_rom_gain,
    draw_rom_value,
    draw_soreness_peak,
    noisy_int,
    weighted,
)
from needlecare.followup.protocol_schema import Protocol
from needlecare.followup.protocols import get_protocols

DEFAULT_SPAN_DAYS = 84
Spread = Literal["front", "even"]
"""How episode starts spread over the span: leaning towards its start (a programme that began with a wave of
patients) or evenly (a clinic's ordinary year)."""


@dataclass(frozen=True, slots=True)
class SyntheticSession:
    number: int  # 1-based within the episode
    external_id: str
    completed_at: datetime
    regions: tuple[str, ...]
    muscles: tuple[str, ...]
    pain_nprs: int  # usual pain over 24 h that day (the session's baseline)
    rom_value: float
    checks: Mapping[str, PlannedAnswer]  # session-scope step id → plan


@dataclass(frozen=True, slots=True)
class SyntheticPatient:
    number: int
    external_id: str
    first_name: str
    last_name: str
    email: str
    timezone: str
    consent_email: bool
    practitioner: int
    injury: str
    side: str
    course: str  # responder | non_responder | worse
    baseline_nprs: int
    rom_measure: str
    psfs_activities: tuple[str, ...]
    sessions: tuple[SyntheticSession, ...]
    outcomes: Mapping[str, PlannedAnswer]  # episode-scope step id → plan
    phone: str | None = None  # E.164, fictional (figures.FICTIONAL_AREA_CODES)
    consent_sms: bool = False
    sms_reply_draw: float = 1.0  # below figures.SMS_REPLY_SHARE: answers a text-answerable check by replying

    @property
    def episode_start(self) -> datetime:
        return self.sessions[0].completed_at

    def planned(self) -> Iterator[tuple[SyntheticSession | None, PlannedAnswer]]:
        """Every planned check, with its session (None for the episode's outcome surveys)."""
        for session in self.sessions:
            for plan in session.checks.values():
                yield session, plan
        for plan in self.outcomes.values():
            yield None, plan


@dataclass(frozen=True)
class Cohort:
    seed: int
    start: datetime
    span_days: float
    patients: tuple[SyntheticPatient, ...] = field(repr=False)

    def __iter__(self) -> Iterator[SyntheticPatient]:
        return iter(self.patients)

    def __len__(self) -> int:
        return len(self.patients)

    @property
    def session_count(self) -> int:
        return sum(len(p.sessions) for p in self.patients)


def practitioner_external_id(number: int) -> str:
    return f"DEMO-P-{number}"


def practitioner_name(number: int) -> str:
    return f"Demo Practitioner {number}"


def practitioner_email(number: int) -> str:
    return f"practitioner-{number}@example.invalid"


def generate_cohort(
    patients: int,
    seed: int = DEFAULT_SEED,
    *,
    start: datetime,
    span_days: float = DEFAULT_SPAN_DAYS,
    spread: Spread = "front",
    protocols: Mapping[str, Protocol] | None = None,
    catalogue: Catalogue | None = None,
) -> Cohort:
    """``patients`` synthetic patients whose episodes start between ``start`` and ``start + span_days``.

    With ``spread="front"`` episode starts lean towards ``start`` (a triangular spread: a programme that began
    with a wave of patients), so with 14 weeks back about a third of the episodes reach their 12-week outcome
    survey; ``"even"`` spreads them uniformly (a clinic's year, as ``needlecare demo`` writes by default).
    Sessions and checks may lie after ``start + span_days``; the caller decides how far to run the clock.
    """
    return Cohort(
        seed=seed,
        start=start,
        span_days=span_days,
        patients=tuple(
            iter_patients(
                patients,
                seed,
                start=start,
                span_days=span_days,
                spread=spread,
                protocols=protocols,
                catalogue=catalogue,
            )
        ),
    )


def iter_patients(
    patients: int,
    seed: int = DEFAULT_SEED,
    *,
    start: datetime,
    span_days: float = DEFAULT_SPAN_DAYS,
    spread: Spread = "front",
    protocols: Mapping[str, Protocol] | None = None,
    catalogue: Catalogue | None = None,
) -> Iterator[SyntheticPatient]:
    """The cohort one patient at a time (memory stays flat for benchmark-sized cohorts)."""
    if patients < 0:
        raise ValueError("patients must be 0 or more")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    protocols = protocols if protocols is not None else get_protocols()
    catalogue = catalogue or get_catalogue()
    injuries = sorted(catalogue.injuries)
    first_ten = list(injuries)
    random.Random(f"needlecare-cohort:{seed}:order").shuffle(first_ten)
    for number in range(1, patients + 1):
        rng = random.Random(f"needlecare-cohort:{seed}:{number}")
        injury = first_ten[number - 1] if number <= len(first_ten) else weighted(rng, _weights(injuries))
        patient = _patient(rng, number, injury, start, span_days, spread, protocols[injury], catalogue)
        yield replace(patient, **_texting(seed, number))


def _texting(seed: int, number: int) -> dict[str, Any]:
    """Phone, SMS consent and reply habit, from a generator of their own (the rest of the cohort is unchanged)."""
    rng = random.Random(f"needlecare-cohort:{seed}:{number}:sms")
    if rng.random() >= PHONE_SHARE:
        return {"phone": None, "consent_sms": False, "sms_reply_draw": 1.0}
    area = FICTIONAL_AREA_CODES[(number // 100) % len(FICTIONAL_AREA_CODES)]
    return {
        "phone": f"+1{area}55501{number % 100:02d}",
        "consent_sms": rng.random() < SMS_CONSENT_SHARE,
        "sms_reply_draw": rng.random(),
    }


def _weights(injuries: list[str]) -> dict[str, float]:
    return {slug: INJURY_WEIGHTS.get(slug, 5.0) for slug in injuries}


def _patient(
    rng: random.Random,
    number: int,
    injury: str,
    start: datetime,
    span_days: float,
    spread: Spread,
    protocol: Protocol,
    catalogue: Catalogue,
) -> SyntheticPatient:
    label = f"{number:04d}"
    roll = rng.random()
    if roll < RESPONDER_SHARE.get(injury, 0.6):
        course_name, change = "responder", rng.uniform(0.4, 0.9)
    elif roll < RESPONDER_SHARE.get(injury, 0.6) + WORSEN_SHARE:
        course_name, change = "worse", -rng.uniform(0.15, 0.5)
    else:
        course_name, change = "non_responder", rng.uniform(-0.1, 0.25)
    baseline = round(min(9.0, max(2.0, rng.triangular(2, 8.6, 5))))
    course = Course(baseline=baseline, change=change, tau_days=rng.uniform(8, 30))
    timezone = weighted(rng, dict(PATIENT_ZONES))
    engagement = rng.uniform(0.78, 1.2)
    trunk = rng.random() < TRUNK_SHARE
    lower_back = injury in ("piriformis_syndrome", "gluteal_tendinopathy", "hamstring_strain") and (
        rng.random() < LOWER_BACK_SHARE
    )
    activities = tuple(rng.sample(PSFS_ACTIVITIES[injury], k=rng.choice((2, 3, 3))))
    psfs_offsets = {a: rng.uniform(-1.5, 1.5) for a in activities}
    measure = BASELINE_MEASURE[injury]
    rom_base = draw_rom_baseline(rng, measure, baseline)
    rom_gain = draw_rom_gain(rng, measure, rom_base, course)

    offset = rng.triangular(0, span_days, 0) if spread == "front" else rng.uniform(0, span_days)  # one draw each
    episode_start = _clinic_time(rng, start + timedelta(days=offset))
    session_count = rng.choices((1, 2, 3, 4, 5, 6), weights=(14, 18, 24, 20, 14, 10))[0]
    times = [episode_start]
    for _ in range(session_count - 1):
        gap = rng.choice((3, 4, 5, 7, 7, 7, 7, 10, 14))
        times.append(_clinic_time(rng, times[-1] + timedelta(days=gap)))

    state = AnswerState(rng=rng, engagement=engagement, course=course, course_name=course_name)
    sessions: list[SyntheticSession] = []
    for index, when in enumerate(times, start=1):
        days = (when - episode_start).total_seconds() / 86400
        pain_today = noisy_int(rng, course.pain(days), 0.6) if index > 1 else baseline
        muscles = _muscles(rng, injury, trunk=trunk, lower_back=lower_back)
        regions = tuple(dict.fromkeys(REGION_OF[m] for m in muscles))
        rom_today = (
            draw_rom_value(rng, measure, rom_base, rom_gain, course, days, pain_today) if index > 1 else rom_base
        )
        checks: dict[str, PlannedAnswer] = {}
        soreness_peak = draw_soreness_peak(rng)
        for step in protocol.steps:
            if step.scope != "session":
                continue
            at_days = days + step.offset_hours / 24
            checks[step.id] = state.plan(
                step,
                injury=injury,
                protocol=protocol,
                at_days=at_days,
                anchor_pain=pain_today,
                session_number=index,
                soreness_peak=soreness_peak,
                trunk=catalogue.is_trunk(list(regions)),
                activities=activities,
                psfs_offsets=psfs_offsets,
                rom=lambda d: draw_rom_value(rng, measure, rom_base, rom_gain, course, d, None),
            )
        sessions.append(
            SyntheticSession(
                number=index,
                external_id=f"DEMO-{label}-S{index}",
                completed_at=when,
                regions=regions,
                muscles=muscles,
                pain_nprs=pain_today,
                rom_value=rom_today,
                checks=checks,
            )
        )
    outcomes: dict[str, PlannedAnswer] = {}
    for step in protocol.steps:
        if step.scope != "episode":
            continue
        at_days = step.offset_hours / 24
        last = [s for s in sessions if (s.completed_at - episode_start).total_seconds() / 86400 <= at_days][-1]
        outcomes[step.id] = state.plan(
            step,
            injury=injury,
            protocol=protocol,
            at_days=at_days,
            anchor_pain=baseline,
            session_number=0,
            soreness_peak=0,
            trunk=catalogue.is_trunk(list(last.regions)),
            activities=activities,
            psfs_offsets=psfs_offsets,
            rom=lambda d: draw_rom_value(rng, measure, rom_base, rom_gain, course, d, None),
        )
    return SyntheticPatient(
        number=number,
        external_id=f"DEMO-{label}",
        first_name="Demo",
        last_name=f"Patient {label}",
        email=f"demo-{label}@example.invalid",
        timezone=timezone,
        consent_email=rng.random() > 0.02,
        practitioner=rng.randint(1, PRACTITIONERS),
        injury=injury,
        side=rng.choices(("left", "right", "both"), weights=(46, 46, 8))[0],
        course=course_name,
        baseline_nprs=baseline,
        rom_measure=measure,
        psfs_activities=activities,
        sessions=tuple(sessions),
        outcomes=outcomes,
    )


def _clinic_time(rng: random.Random, moment: datetime) -> datetime:
    """A session end in clinic hours (08:00-19:00 local, Monday to Saturday) on or after ``moment``'s day."""
    tz = ZoneInfo(CLINIC_TZ)
    day = moment.astimezone(tz).date()
    while day.weekday() == 6:
        day += timedelta(days=1)
    minutes = rng.randrange(8 * 60, 19 * 60, 5)
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=tz)
    return local.astimezone(moment.tzinfo)


def _muscles(rng: random.Random, injury: str, *, trunk: bool, lower_back: bool) -> tuple[str, ...]:
    pool = MUSCLES[injury]
    chosen = rng.sample(pool, k=rng.randint(1, len(pool)))
    ordered = [m for m in pool if m in chosen]
    if lower_back and rng.random() < 0.7:
        ordered.append("quadratus lumborum")
    if trunk:
        ordered.append(rng.choice(TRUNK_EXTRA))
    return tuple(ordered)
