"""Paired changes from value counts (``aggregates.histogram_stmt`` / ``read_histograms``) against a straightforward
Python computation over every value: a random cohort on SQLite and PostgreSQL, and the counting itself."""

import random
import statistics
from collections import defaultdict
from typing import Any

from sqlmodel import Session

from models import Clinic
from needlecare.outcomes import stats
from needlecare.outcomes.aggregates import summary_of_counts
from needlecare.outcomes.compute import compute_outcomes
from needlecare.outcomes.definitions import PAIN
from needlecare.safety.clinic_config import ReportPolicy
from tests.outcome_rows import OutcomeRows

POLICY = ReportPolicy()
INJURIES = {"achilles_tendinopathy": "wblt_cm", "pfps": None, "itbs": "ober_deg"}
EPISODE_STEPS = ("outcome_6wk", "outcome_12wk")
ROM_THRESHOLDS = {"wblt_cm": 1.6}  # definitions.MEASURE_RULES: MDC 1.6 cm, higher is better; ober_deg has none


def plain(values: list[float]) -> dict[str, Any]:
    """n, mean, SD and quartiles (numpy's linear method) with the standard library, every value in a list."""
    out: dict[str, Any] = {"n": len(values), "mean": statistics.fmean(values)}
    if len(values) >= 2:
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
        out.update(sd=statistics.stdev(values), q1=q1, median=median, q3=q3)
    else:
        out.update(sd=None, q1=values[0], median=values[0], q3=values[0])
    return out


def close(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9)


def test_value_counts_give_the_statistics_of_every_value() -> None:
    rng = random.Random(15)
    samples: list[list[float]] = [[3.0], [2.0, -4.0], [0.0] * 7]
    samples += [[float(rng.randint(-10, 10)) for _ in range(rng.randint(3, 400))] for _ in range(40)]
    samples += [[rng.randint(-40, 40) * 0.5 for _ in range(rng.randint(3, 200))] for _ in range(20)]
    for values in samples:
        counts: dict[float, int] = defaultdict(int)
        for x in values:
            counts[x] += 1
        got = summary_of_counts(list(counts.items()))
        want = plain(values)
        assert got.n == want["n"]
        for name in ("mean", "sd", "q1", "median", "q3"):
            assert close(getattr(got, name), want[name]), (name, values)
        if len(values) >= 2:
            interval = stats.t_interval(len(values), want["mean"], want["sd"] ** 2 * (len(values) - 1))
            assert interval is not None
            assert close(got.ci_low, interval[0]) and close(got.ci_high, interval[1])
    assert summary_of_counts([]).n == 0 and summary_of_counts([(5.0, 0)]).mean is None


def test_paired_changes_of_a_random_cohort_match_python(db: Session, clinic: Clinic) -> None:
    """Several injuries, steps and ROM measures; patients with repeat episodes and session checks; ties."""
    rng = random.Random(2026)
    rows = OutcomeRows(db, clinic.id)
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    responders: dict[tuple[str, str, str], int] = defaultdict(int)
    patients: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    patient_ids = [rows.patient() for _ in range(70)]
    for _ in range(150):
        injury = rng.choice(list(INJURIES))
        measure = INJURIES[injury]
        baseline = rng.choice([None, *range(11)])
        rom_base = None if measure is None else rng.randint(-60, 60) * 0.5
        ep = rows.episode(
            injury, pain=baseline, rom_measure=measure, rom_value=rom_base, patient_id=rng.choice(patient_ids)
        )
        steps = [(step, None) for step in EPISODE_STEPS if rng.random() < 0.8]
        session = rows.session(ep)
        steps += [("check_72h", session)] * rng.randint(0, 2)
        for step, session_id in steps:
            pain = rng.choice([None, *range(11)])
            recall = rng.choice(["average_24h", "average_24h", "now"]) if pain is not None else None
            rom = None if measure is None or rng.random() < 0.2 else rng.randint(-60, 60) * 0.5
            rows.answer(
                ep,
                step,
                session_id=session_id,
                nprs_usual=pain,
                nprs_usual_recall=recall,
                rom_measure=measure if rom is not None else None,
                rom_value=rom,
            )
            if pain is not None and baseline is not None and recall == "average_24h":
                key = (injury, step, PAIN)
                values[key].append(float(pain - baseline))
                drop = baseline - pain
                responders[key] += drop >= 2 and drop * 10 >= baseline * 3
                patients[key].add(ep.patient_id)
            if rom is not None and rom_base is not None and measure is not None:
                key = (injury, step, measure)
                values[key].append(rom - rom_base)
                threshold = ROM_THRESHOLDS.get(measure)
                responders[key] += threshold is not None and rom - rom_base >= threshold - 1e-9
                patients[key].add(ep.patient_id)
    rows.commit()

    report = compute_outcomes(db, clinic.id, policy=POLICY)

    got: dict[tuple[str, str, str], Any] = {}
    for step in report.rows:
        for change in (step.pain, *step.rom):
            if change is not None:
                got[(step.injury, step.step_id, change.measure)] = change
    assert set(got) == set(values) and len(values) >= 12
    for key, xs in values.items():
        raw, want = got[key].raw, plain(xs)
        assert (raw.n, raw.patients) == (len(xs), len(patients[key])), key
        if ROM_THRESHOLDS.get(key[2]) is not None or key[2] == PAIN:
            assert raw.responders == responders[key], key
        for name in ("mean", "sd", "q1", "median", "q3"):
            assert close(getattr(raw.summary, name), want[name]), (key, name)
