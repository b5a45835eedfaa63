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
- red flags (§3.3): about 1-2 % of safety checks (spreading redness, a hot swollen site, fainting after leaving,
  tingling, a large or spreading bruise …); breathlessness only where trunk regions were needled; bone-stress
  patients sometimes report pain on walking or at night. A few answers carry free text.

Answers are planned as API bodies (``POST /api/v1/surveys/<token>/answers``) for the questions the protocol
step asks; ``needlecare.demo.simulation`` sends them through the real validation and storage.
"""

import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from needlecare.core.catalogue import Catalogue, get_catalogue
from needlecare.followup.protocols import Protocol, Step, get_protocols
from needlecare.followup.questions import BSI

DEFAULT_SEED = 7
DEFAULT_SPAN_DAYS = 84
CLINIC_TZ = "America/New_York"
PATIENT_ZONES: tuple[tuple[str, float], ...] = (
    (CLINIC_TZ, 0.82),
    ("America/Chicago", 0.06),
    ("America/Los_Angeles", 0.05),
    ("Europe/London", 0.04),
    ("America/Toronto", 0.03),
)
PRACTITIONERS = 4

# Runners' clinic mix (relative weights) and the share of responders per injury (domain.md §1.1; [E]).
INJURY_WEIGHTS: dict[str, float] = {
    "pfps": 16,
    "achilles_tendinopathy": 14,
    "plantar_fasciitis": 13,
    "itbs": 12,
    "mtss": 11,
    "hamstring_strain": 9,
    "calf_strain": 8,
    "gluteal_tendinopathy": 7,
    "piriformis_syndrome": 5,
    "bone_stress_injury": 5,
}
RESPONDER_SHARE: dict[str, float] = {
    "pfps": 0.60,
    "achilles_tendinopathy": 0.60,
    "plantar_fasciitis": 0.62,
    "itbs": 0.65,
    "mtss": 0.58,
    "hamstring_strain": 0.70,
    "calf_strain": 0.70,
    "gluteal_tendinopathy": 0.52,
    "piriformis_syndrome": 0.55,
    "bone_stress_injury": 0.50,  # needling does not treat the fracture (domain.md §1.2)
}
WORSEN_SHARE = 0.10

# Muscles the seeds name per injury (domain.md §1.1) and the catalogue region each lies in.
MUSCLES: dict[str, tuple[str, ...]] = {
    "achilles_tendinopathy": ("gastrocnemius", "soleus"),
    "plantar_fasciitis": ("flexor digitorum brevis", "gastrocnemius", "soleus"),
    "mtss": ("tibialis anterior", "tibialis posterior", "soleus"),
    "pfps": ("vastus medialis", "vastus lateralis", "rectus femoris"),
    "itbs": ("tensor fasciae latae", "gluteus maximus", "vastus lateralis"),
    "hamstring_strain": ("biceps femoris", "semimembranosus", "semitendinosus"),
    "calf_strain": ("gastrocnemius", "soleus", "tibialis posterior"),
    "piriformis_syndrome": ("piriformis", "gluteus maximus", "gluteus medius"),
    "gluteal_tendinopathy": ("gluteus medius", "gluteus minimus", "piriformis"),
    "bone_stress_injury": ("soleus", "gastrocnemius"),  # surrounding muscle tightness only
}
REGION_OF: dict[str, str] = {
    "gastrocnemius": "calf",
    "soleus": "calf",
    "tibialis posterior": "calf",
    "flexor digitorum brevis": "foot",
    "tibialis anterior": "shin",
    "vastus medialis": "thigh_front",
    "vastus lateralis": "thigh_front",
    "rectus femoris": "thigh_front",
    "tensor fasciae latae": "hip",
    "gluteus maximus": "gluteal",
    "gluteus medius": "gluteal",
    "gluteus minimus": "gluteal",
    "piriformis": "gluteal",
    "biceps femoris": "thigh_back",
    "semimembranosus": "thigh_back",
    "semitendinosus": "thigh_back",
    "quadratus lumborum": "lower_back",
    "upper trapezius": "shoulder_girdle",
    "thoracic erector spinae": "thoracic_back",
}
TRUNK_EXTRA: tuple[str, ...] = ("upper trapezius", "thoracic erector spinae")
TRUNK_SHARE = 0.04
LOWER_BACK_SHARE = 0.15  # piriformis / gluteal / hamstring patients only

# The ROM measure sent at ingest, per injury: the protocol's self-test measure where there is one, so the
# episode baseline and the self-test answers are comparable; else the catalogue's first measure.
BASELINE_MEASURE: dict[str, str] = {
    "achilles_tendinopathy": "wblt_cm",
    "plantar_fasciitis": "wblt_cm",
    "mtss": "wblt_cm",
    "calf_strain": "wblt_cm",
    "pfps": "task_pain_nprs",
    "itbs": "ober_deg",
    "hamstring_strain": "slr_deg",
    "piriformis_syndrome": "hip_ir_deg",
    "gluteal_tendinopathy": "stance_pain_onset_s",
    "bone_stress_injury": "walk_pain_nprs",
}

PSFS_ACTIVITIES: dict[str, tuple[str, ...]] = {
    "achilles_tendinopathy": ("Running 5 km", "Hill running", "Walking up stairs", "Jumping"),
    "plantar_fasciitis": ("First steps in the morning", "Running 5 km", "Standing at work", "Walking barefoot"),
    "mtss": ("Running 5 km", "Running on pavement", "Hopping", "Walking fast"),
    "pfps": ("Running 5 km", "Going down stairs", "Squatting", "Sitting through a film"),
    "itbs": ("Running 8 km", "Running downhill", "Cycling", "Going down stairs"),
    "hamstring_strain": ("Sprinting", "Running 5 km", "Bending to tie shoes", "Long strides"),
    "calf_strain": ("Running 5 km", "Hill running", "Rising onto toes", "Jogging"),
    "piriformis_syndrome": ("Sitting for an hour", "Running 5 km", "Driving", "Climbing stairs"),
    "gluteal_tendinopathy": ("Lying on my side", "Walking up stairs", "Running 5 km", "Standing on one leg"),
    "bone_stress_injury": ("Walking 30 minutes", "Walking up stairs", "Jogging", "Standing all day"),
}

# Planned response rates per step (domain.md §4.3: ~60-80 % early, ~50-55 % at 12 weeks with automation).
RESPONSE_RATE: dict[str, float] = {
    "check_24h": 0.82,
    "check_72h": 0.77,
    "check_7d": 0.70,
    "outcome_4wk": 0.65,
    "outcome_6wk": 0.61,
    "outcome_12wk": 0.57,
}
DEFAULT_RESPONSE_RATE = 0.6

# Red flags at a safety check (domain.md §3.3); weights within the list. Trunk and BSI flags are separate.
REDFLAG_RATE = 0.018
REDFLAG_WEIGHTS: dict[str, float] = {
    "spreading_redness": 3,
    "site_hot_swollen": 2,
    "fainted_after_leaving": 2,
    "new_tingling": 2,
    "new_numbness": 1,
    "fever": 1,
    "calf_swollen_warm_one_leg": 1,
    "palpitations": 0.5,
    "uncontrolled_bleeding": 0.5,
}
TRUNK_BREATHING_RATE = 0.03  # per safety check of a patient whose trunk was needled
BSI_FLAG_RATE = 0.05  # per safety check of a bone-stress patient
BSI_FLAGS = ("pain_walking", "night_pain", "new_focal_bone_pain")
LARGE_BRUISE_RATE, SPREADING_BRUISE_RATE, SMALL_BRUISE_RATE = 0.008, 0.002, 0.12
FREE_TEXT_RATE = 0.08

BENIGN_TEXT: tuple[str, ...] = (
    "A bit stiff the next morning, fine after walking around.",
    "Felt looser on my easy run today.",
    "Still tight after long runs but getting better.",
    "Sore where the needles went in, settled by the evening.",
    "Back to my usual parkrun this weekend.",
    "No change really.",
    "Stairs are easier than last week.",
    "Had a small bruise, gone now.",
)
REDFLAG_TEXT: dict[str, str] = {
    "spreading_redness": "The red patch around one of the needle spots is getting bigger.",
    "site_hot_swollen": "One spot is hot and puffy.",
    "fainted_after_leaving": "Felt faint on the bus home and had to sit down.",
    "new_tingling": "Pins and needles in my foot since yesterday.",
    "new_numbness": "Part of my foot feels numb.",
    "fever": "Running a temperature since last night.",
    "breathless": "Short of breath since the session, worse when I lie down.",
    "pain_on_breathing": "Sharp pain in my upper back when I breathe in.",
    "large": "The bruise is bigger than my hand.",
    "pain_walking": "It hurts to walk now, in one spot on the bone.",
}


@dataclass(frozen=True, slots=True)
class PlannedAnswer:
    """What the patient does with one check: answer ``delay_hours`` after it goes out, or not at all."""

    step_id: str
    delay_hours: float | None
    answers: Mapping[str, Any]
    red_flag: bool = False

    @property
    def answered(self) -> bool:
        return self.delay_hours is not None


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
    protocols: Mapping[str, Protocol] | None = None,
    catalogue: Catalogue | None = None,
) -> Cohort:
    """``patients`` synthetic patients whose episodes start between ``start`` and ``start + span_days``.

    Episode starts lean towards ``start`` (a triangular spread: a programme that began with a wave of
    patients), so with the demo's default of 14 weeks back about a third of the episodes reach their
    12-week outcome survey. Sessions and checks may lie after ``start + span_days``; the caller decides how
    far to run the clock.
    """
    return Cohort(
        seed=seed,
        start=start,
        span_days=span_days,
        patients=tuple(
            iter_patients(patients, seed, start=start, span_days=span_days, protocols=protocols, catalogue=catalogue)
        ),
    )


def iter_patients(
    patients: int,
    seed: int = DEFAULT_SEED,
    *,
    start: datetime,
    span_days: float = DEFAULT_SPAN_DAYS,
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
        injury = first_ten[number - 1] if number <= len(first_ten) else _weighted(rng, _weights(injuries))
        yield _patient(rng, number, injury, start, span_days, protocols[injury], catalogue)


def _weights(injuries: list[str]) -> dict[str, float]:
    return {slug: INJURY_WEIGHTS.get(slug, 5.0) for slug in injuries}


def _weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


@dataclass(frozen=True)
class _Course:
    """A patient's pain trajectory: pain(t) = baseline * (1 - change * (1 - exp(-t / tau)))."""

    baseline: float
    change: float  # final fraction of improvement; negative = worse
    tau_days: float

    def pain(self, days: float) -> float:
        return max(0.0, min(10.0, self.baseline * (1 - self.change * (1 - math.exp(-max(days, 0) / self.tau_days)))))

    def progress(self, days: float) -> float:
        """How much of the final change has happened by ``days`` (0..1)."""
        return 1 - math.exp(-max(days, 0) / self.tau_days)


def _patient(
    rng: random.Random,
    number: int,
    injury: str,
    start: datetime,
    span_days: float,
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
    course = _Course(baseline=baseline, change=change, tau_days=rng.uniform(8, 30))
    timezone = _weighted(rng, dict(PATIENT_ZONES))
    engagement = rng.uniform(0.78, 1.2)
    trunk = rng.random() < TRUNK_SHARE
    lower_back = injury in ("piriformis_syndrome", "gluteal_tendinopathy", "hamstring_strain") and (
        rng.random() < LOWER_BACK_SHARE
    )
    activities = tuple(rng.sample(PSFS_ACTIVITIES[injury], k=rng.choice((2, 3, 3))))
    psfs_offsets = {a: rng.uniform(-1.5, 1.5) for a in activities}
    measure = BASELINE_MEASURE[injury]
    rom_base = _rom_baseline(rng, measure, baseline)
    rom_gain = _rom_gain(rng, measure, rom_base, course)

    episode_start = _clinic_time(rng, start + timedelta(days=rng.triangular(0, span_days, 0)))
    session_count = rng.choices((1, 2, 3, 4, 5, 6), weights=(14, 18, 24, 20, 14, 10))[0]
    times = [episode_start]
    for _ in range(session_count - 1):
        gap = rng.choice((3, 4, 5, 7, 7, 7, 7, 10, 14))
        times.append(_clinic_time(rng, times[-1] + timedelta(days=gap)))

    state = _AnswerState(rng=rng, engagement=engagement, course=course, course_name=course_name)
    sessions: list[SyntheticSession] = []
    for index, when in enumerate(times, start=1):
        days = (when - episode_start).total_seconds() / 86400
        pain_today = _noisy_int(rng, course.pain(days), 0.6) if index > 1 else baseline
        muscles = _muscles(rng, injury, trunk=trunk, lower_back=lower_back)
        regions = tuple(dict.fromkeys(REGION_OF[m] for m in muscles))
        rom_today = _rom_value(rng, measure, rom_base, rom_gain, course, days, pain_today) if index > 1 else rom_base
        checks: dict[str, PlannedAnswer] = {}
        soreness_peak = _soreness_peak(rng)
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
                rom=lambda d: _rom_value(rng, measure, rom_base, rom_gain, course, d, None),
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
            rom=lambda d: _rom_value(rng, measure, rom_base, rom_gain, course, d, None),
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


def _soreness_peak(rng: random.Random) -> int:
    """Soreness where the needles went in, at 24 h: 55-91 % of patients have some (domain.md §2)."""
    if rng.random() < 0.02:
        return rng.randint(8, 9)  # unusually strong (domain.md §6 R10)
    return round(rng.triangular(1.6, 7.4, 3)) if rng.random() < 0.75 else rng.choice((0, 1))


def _noisy_int(rng: random.Random, value: float, sd: float, low: int = 0, high: int = 10) -> int:
    return max(low, min(high, round(value + rng.gauss(0, sd))))


def _rom_baseline(rng: random.Random, measure: str, pain: float) -> float:
    """An injured starting value, inside the catalogue range (domain.md §1.2)."""
    if measure == "wblt_cm":
        return round(rng.uniform(4, 10) * 2) / 2
    if measure == "task_pain_nprs":
        return float(max(1, min(10, round(pain + rng.choice((0, 1, 1, 2))))))
    if measure == "walk_pain_nprs":
        return float(max(1, min(10, round(pain - rng.choice((1, 1, 2))))))
    if measure == "stance_pain_onset_s":
        return float(rng.randint(8, 30))
    if measure == "ober_deg":
        return float(rng.randint(-22, -10))
    if measure == "slr_deg":
        return float(rng.randint(50, 75))
    if measure == "hip_ir_deg":
        return float(rng.randint(18, 30))
    raise ValueError(f"no synthetic baseline for measure '{measure}'")


def _rom_gain(rng: random.Random, measure: str, base: float, course: _Course) -> float:
    """The change in the measure once the pain change has fully happened (sign: towards better)."""
    scale = course.change / 0.65  # a typical responder gets about the typical gain
    if measure == "wblt_cm":
        return rng.uniform(1.5, 4.0) * scale
    if measure == "stance_pain_onset_s":
        return (60 - base) * rng.uniform(0.4, 0.9) * min(scale, 1.0)
    if measure == "ober_deg":
        return -rng.uniform(4, 10) * scale  # better = more adduction (more negative)
    if measure in ("slr_deg", "hip_ir_deg"):
        return rng.uniform(5, 15) * scale
    return 0.0  # pain-type measures follow the pain itself


def _rom_value(
    rng: random.Random,
    measure: str,
    base: float,
    gain: float,
    course: _Course,
    days: float,
    pain_today: int | None,
) -> float:
    progress = course.progress(days)
    if measure in ("task_pain_nprs", "walk_pain_nprs"):
        pain = pain_today if pain_today is not None else course.pain(days)
        offset = 1 if measure == "task_pain_nprs" else -1.5
        return float(max(0, min(10, round(pain + offset + rng.gauss(0, 0.7)))))
    value = base + gain * progress
    if measure == "wblt_cm":
        return max(0.0, min(25.0, round((value + rng.gauss(0, 0.5)) * 2) / 2))
    if measure == "stance_pain_onset_s":
        return float(max(0, min(60, round(value + rng.gauss(0, 3)))))
    if measure == "ober_deg":
        return float(max(-60, min(30, round(value + rng.gauss(0, 2)))))
    return float(max(0, round(value + rng.gauss(0, 2.5))))


@dataclass
class _AnswerState:
    """Carries a patient's answering habits from one check to the next."""

    rng: random.Random
    engagement: float
    course: _Course
    course_name: str
    misses_in_a_row: int = 0

    def plan(
        self,
        step: Step,
        *,
        injury: str,
        protocol: Protocol,
        at_days: float,
        anchor_pain: float,
        session_number: int,
        soreness_peak: int,
        trunk: bool,
        activities: tuple[str, ...],
        psfs_offsets: Mapping[str, float],
        rom: Callable[[float], float],
    ) -> PlannedAnswer:
        rng = self.rng
        # Draw every value first, then the response, so a patient's answers do not depend on whether an
        # earlier check was answered (the values are stable when response rates are changed).
        pain = _noisy_int(rng, self.course.pain(at_days), 0.7)
        body, red_flag = self._body(
            step, injury, at_days, pain, anchor_pain, soreness_peak, trunk, activities, psfs_offsets
        )
        if "rom" in step.questions and rng.random() < 0.8:
            assert protocol.rom_test is not None
            value = max(protocol.rom_test.min, min(protocol.rom_test.max, float(rom(at_days))))
            body["rom"] = {"measure": protocol.rom_test.measure, "value": value}
        delay = self._delay(step)
        rate = RESPONSE_RATE.get(step.id, DEFAULT_RESPONSE_RATE) * self.engagement
        if session_number > 1:
            rate *= 1 - 0.02 * (session_number - 1)
        if step.scope == "episode":
            rate *= 1.05 if self.course_name == "responder" else 0.9
        if self.misses_in_a_row >= 2:
            rate *= 0.75
        if red_flag:
            rate = max(rate, 0.9)  # someone with a red flag to report tends to answer
        answered = rng.random() < min(rate, 0.97)
        self.misses_in_a_row = 0 if answered else self.misses_in_a_row + 1
        return PlannedAnswer(step.id, delay if answered else None, body, red_flag=red_flag and answered)

    def _delay(self, step: Step) -> float:
        """Hours after the message goes out: soon for about half, after the first reminder for the rest."""
        rng = self.rng
        if rng.random() < 0.55 or not step.reminder_hours:
            return round(rng.lognormvariate(0.0, 1.0) * 1.2, 2)
        return round(step.reminder_hours[0] + rng.uniform(0.1, 10.0), 2)

    def _body(
        self,
        step: Step,
        injury: str,
        at_days: float,
        pain: int,
        anchor_pain: float,
        soreness_peak: int,
        trunk: bool,
        activities: tuple[str, ...],
        psfs_offsets: Mapping[str, float],
    ) -> tuple[dict[str, Any], bool]:
        rng = self.rng
        questions = step.questions
        values: dict[str, Any] = {}
        red_text: str | None = None
        flags: list[str] = []
        hours = step.offset_hours if step.scope == "session" else None
        soreness = self._soreness(hours, soreness_peak)
        bruise = "none"
        if "bruise" in questions:
            roll = rng.random()
            if roll < LARGE_BRUISE_RATE:
                bruise, red_text = "large", REDFLAG_TEXT["large"]
            elif roll < LARGE_BRUISE_RATE + SPREADING_BRUISE_RATE:
                bruise = "spreading"
            elif roll < LARGE_BRUISE_RATE + SPREADING_BRUISE_RATE + SMALL_BRUISE_RATE:
                bruise = "small"
        if "redflags" in questions:
            if trunk and rng.random() < TRUNK_BREATHING_RATE:
                flags.append(rng.choice(("breathless", "pain_on_breathing")))
            elif injury == BSI and rng.random() < BSI_FLAG_RATE:
                flags.append(rng.choice(BSI_FLAGS))
            elif rng.random() < REDFLAG_RATE:
                flags.append(_weighted(rng, REDFLAG_WEIGHTS))
                if flags[0] == "fainted_after_leaving" and rng.random() < 0.2:
                    flags.append("palpitations")
            if flags:
                red_text = REDFLAG_TEXT.get(flags[0], red_text)
        fainted = "fainted_after_leaving" in flags or rng.random() < 0.02
        ran = rng.random() < self._run_chance(at_days, pain)
        change = (anchor_pain - pain) / max(anchor_pain, 1.0)
        groc = max(-7, min(7, round(change * 10 + rng.gauss(0, 1.0))))
        for question in questions:
            if question == "soreness":
                values["soreness"] = soreness
            elif question == "bruise":
                values["bruise"] = bruise
            elif question == "redflags":
                values["redflags"] = flags or ["none"]
            elif question == "fainted":
                values["fainted"] = fainted
            elif question == "nprs_usual":
                values["nprs_usual"] = pain
            elif question == "nprs_worst":
                values["nprs_worst"] = min(10, pain + rng.choice((0, 0, 1, 1, 1, 2)))
            elif question == "groc15":
                values["groc15"] = groc
            elif question == "ran":
                values["ran"] = ran
            elif question == "run_pain" and ran:
                values["run_pain"] = max(0, min(10, pain + rng.choice((-1, 0, 0, 1, 2))))
            elif question == "psfs":
                values["psfs"] = [
                    {"activity": a, "score": max(0, min(10, round(10 - pain * 1.1 + psfs_offsets[a])))}
                    for a in activities
                ]
            elif question == "free_text":
                if red_text is not None and rng.random() < 0.6:
                    values["free_text"] = red_text
                elif rng.random() < FREE_TEXT_RATE:
                    values["free_text"] = rng.choice(BENIGN_TEXT)
        red_flag = bool(flags) or bruise in ("large", "spreading")
        return values, red_flag

    def _soreness(self, hours: float | None, peak: int) -> int:
        """Post-needling soreness (domain.md §2): most have it at 24 h, mostly gone by 72 h, rarely at 7 d."""
        rng = self.rng
        if hours is None or hours <= 36:
            return peak
        if hours <= 96:
            if rng.random() < 0.03:
                return rng.randint(4, 6)  # unusually persistent (domain.md §6 R11)
            return max(0, round(peak * rng.uniform(0.0, 0.4)))
        return 0

    def _run_chance(self, days: float, pain: int) -> float:
        base = 0.25 + 0.5 * min(days / 42, 1.0)
        return max(0.05, min(0.9, base - 0.05 * max(pain - 3, 0)))
