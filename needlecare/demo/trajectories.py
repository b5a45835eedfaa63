"""How a synthetic patient's check-ins go: the pain course over the episode, post-needling soreness, the
self-test (ROM) values, and the answers planned for each check (values, red flags, whether and when the
patient answers). Every draw comes from the patient's own generator, so a cohort is reproducible."""

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from needlecare.demo.figures import (
    BENIGN_TEXT,
    BSI_FLAG_RATE,
    BSI_FLAGS,
    DEFAULT_RESPONSE_RATE,
    FREE_TEXT_RATE,
    LARGE_BRUISE_RATE,
    REDFLAG_RATE,
    REDFLAG_TEXT,
    REDFLAG_WEIGHTS,
    RESPONSE_RATE,
    SMALL_BRUISE_RATE,
    SPREADING_BRUISE_RATE,
    TRUNK_BREATHING_RATE,
)
from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.questions import BSI


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


def weighted(rng: random.Random, weights: Mapping[str, float]) -> str:
    """One key, drawn in proportion to its weight."""
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


@dataclass(frozen=True)
class Course:
    """A patient's pain trajectory: pain(t) = baseline * (1 - change * (1 - exp(-t / tau)))."""

    baseline: float
    change: float  # final fraction of improvement; negative = worse
    tau_days: float

    def pain(self, days: float) -> float:
        return max(0.0, min(10.0, self.baseline * (1 - self.change * (1 - math.exp(-max(days, 0) / self.tau_days)))))

    def progress(self, days: float) -> float:
        """How much of the final change has happened by ``days`` (0..1)."""
        return 1 - math.exp(-max(days, 0) / self.tau_days)


def draw_soreness_peak(rng: random.Random) -> int:
    """Soreness where the needles went in, at 24 h: 55-91 % of patients have some (domain.md §2)."""
    if rng.random() < 0.02:
        return rng.randint(8, 9)  # unusually strong (domain.md §6 R10)
    return round(rng.triangular(1.6, 7.4, 3)) if rng.random() < 0.75 else rng.choice((0, 1))


def noisy_int(rng: random.Random, value: float, sd: float, low: int = 0, high: int = 10) -> int:
    return max(low, min(high, round(value + rng.gauss(0, sd))))


def draw_rom_baseline(rng: random.Random, measure: str, pain: float) -> float:
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


def draw_rom_gain(rng: random.Random, measure: str, base: float, course: Course) -> float:
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


def draw_rom_value(
    rng: random.Random,
    measure: str,
    base: float,
    gain: float,
    course: Course,
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
class AnswerState:
    """Carries a patient's answering habits from one check to the next."""

    rng: random.Random
    engagement: float
    course: Course
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
        pain = noisy_int(rng, self.course.pain(at_days), 0.7)
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
                flags.append(weighted(rng, REDFLAG_WEIGHTS))
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
