"""Definitions of the outcome figures, and the constants and measure rules the statements and figures share.

Definitions (domain.md §5.1; where domain.md marks a rule [E] it is a design proposal awaiting sign-off):

- **Cohort and filters.** One clinic (``episode.clinic_id``). ``injury`` filters ``episode.injury``. The
  period ``since <= episode.started_at < until`` selects a cohort of *episodes*, and every statistic uses
  that cohort's contacts, answers, sessions and escalation cases, so numerators and denominators always
  describe the same patients and each episode is followed from its own baseline. ``practitioner_id``: a
  session-scoped contact or escalation case belongs to its session's practitioner
  (``treatment_session.practitioner_id``); an episode-scoped one (outcome surveys, Kaplan-Meier, baselines)
  to the practitioner of the episode's first session (earliest ``completed_at``, then lowest id), so
  per-practitioner cuts add up to the clinic.
- **Due / answered** (per injury × step). Due = contacts of the step with status sent, answered or expired
  (the window has opened and the contact was not skipped on purpose; planned and skipped are left out).
  Answered = status answered. Response rate = answered / due; loss to follow-up = 100 - response rate.
  Counted as contacts (one per session for the session-scoped checks ``check_24h/72h/7d``, one per episode
  for ``outcome_*``) and as distinct patients (a patient counts as answered when any of their contacts of
  that step was answered). ``StepRow.response_rate`` is the contact rate; it stands beside every figure of
  the row.
- **Like recall only.** The baseline is usual pain over the last 24 h (``PAIN_RECALL``, domain.md §2), and
  every pain figure below (paired change, responders, headline, time to recovery, the trajectory's pain
  series) uses only follow-up scores asked with that same recall (``survey_response.nprs_usual_recall =
  'average_24h'``). Scores asked with another recall (pain "right now", marked ``now`` by migration 0009) are
  left out of them, never mixed in.
- **Paired pain change** = ``survey_response.nprs_usual - episode.baseline_pain_nprs`` (both present, same
  recall, contact answered): negative = better. Mean with 95 % t-interval, SD, median and quartiles (linear
  interpolation, numpy's default and PostgreSQL's ``percentile_cont``; done with ``row_number``/``count``
  windows so SQLite gives the same number). n = paired answers; for the session-scoped checks a patient with
  several sessions contributes one pair per session (answers treated as independent: the interval is then too
  narrow; the number of distinct patients is reported beside n).
- **Pain responder** = drop >= 2 points **and** >= 30 % of baseline (domain.md §2 proposed rule [E], Farrar
  2001), integer arithmetic in SQL (``10 * drop >= 3 * baseline``). Share with a Wilson 95 % CI.
- **Headline** (across injuries): each patient once, at their latest answered outcome survey with a paired pain
  answer; the share past the pain responder rule, n and the patients' outcome-survey response rate
  (``needlecare.outcomes.headline`` defines it in full).
- **ROM change** = ``survey_response.rom_value - episode.baseline_rom_value`` where ``rom_measure`` equals
  ``episode.baseline_rom_measure``, per measure, in the measure's unit (raw follow-up minus baseline; the
  direction says which sign is better). Responder past the MDC/MCID only where domain.md §1.2 gives one
  (:data:`MEASURE_RULES`), else "no MCID". A threshold is compared with 1e-9 slack so 9.1 - 7.5 counts as 1.6.
- **Adverse events per 100 sessions.** Denominator = cohort sessions with an answered ``check_24h`` or
  ``check_72h``; numerators count those sessions with, in any answered contact of the session: soreness
  past 72 h (soreness >= 4 at ``check_72h`` or >= 1 at ``check_7d``, rule R11 [E]); bruising (small, large or
  spreading; large and spreading also on their own); a red flag (``redflags`` holds a ticked item: a JSON
  array that is neither empty, i.e. not asked, nor ``["none"]``; read with ``json_array_length`` and the
  first element, ``json_extract(x, '$[0]')`` on SQLite and ``x ->> 0`` on PostgreSQL). Shares with Wilson
  95 % CI. The safety-check response rate (sessions checked / sessions with a due 24 h or 72 h check) stands
  beside them.
- **Escalations per 100 sessions by rule**: ``case_rule`` rows per ``rule_id`` of the cohort's escalation
  cases, plus ``rule_id = "all"`` for cases; the same denominator as adverse events. Time to
  acknowledgement = ``acknowledged_at - opened_at`` in whole seconds (each timestamp truncated to the
  second), shown as a median in hours when at least ``min_paired`` cases were acknowledged.
- **Time to recovery** (Kaplan-Meier, per injury): days (whole days, truncated) from ``episode.started_at`` to
  the first answer (``submitted_at``) that shows improvement: the pain responder rule above at any step, or
  GROC >= +4 at an episode-scoped step (their GROC asks about the whole episode; the session checks' GROC
  compares with the last session, so it does not count) [E]. Episodes without that are censored at their last
  answer. Episodes with no answer at all are left out of the curve (they count in the response rate beside
  it). SQL returns (day, events, censored); the median needs ``km_min_patients`` and ``km_min_events``.
"""

from dataclasses import dataclass
from typing import Literal

from models.contact import ContactStatus
from models.survey import BASELINE_PAIN_RECALL

DUE_STATUSES = (ContactStatus.SENT.value, ContactStatus.ANSWERED.value, ContactStatus.EXPIRED.value)
ANSWERED = ContactStatus.ANSWERED.value
SAFETY_CHECKS = ("check_24h", "check_72h")
STEP_ORDER = ("baseline", "check_24h", "check_72h", "check_7d", "outcome_4wk", "outcome_6wk", "outcome_12wk")
"""Display order of the default protocol's steps (protocols/default.toml); other step ids sort after, by name."""
BASELINE = "baseline"
PAIN = "nprs_usual"
PAIN_RECALL = BASELINE_PAIN_RECALL
"""The recall period of the baseline, and so of every follow-up pain score compared with it."""
ALL_RULES = "all"
THRESHOLD_SLACK = 1e-9
BRUISES = ("small", "large", "spreading")
NONE_TICKED = "none"  # needlecare.followup.questions.NONE_OF_THESE: the "None of these" box of the red-flag checklist
ADVERSE_KINDS = ("soreness_past_72h", "bruise_any", "bruise_large", "bruise_spreading", "red_flag")
SECONDS_PER_DAY = 86400

Direction = Literal["higher_better", "lower_better"]


@dataclass(frozen=True)
class MeasureRule:
    """How to read a change in one measure: which way is better, and the responder threshold if any."""

    direction: Direction | None  # None: not settled how the measure is recorded; no responder rate
    threshold: float | None  # smallest improvement that counts as a responder (MCID/MDC/MDD); None = no MCID
    kind: str  # what the threshold is: MCID, MDC or MDD
    source: str


MEASURE_RULES: dict[str, MeasureRule] = {
    PAIN: MeasureRule(
        "lower_better", 2.0, "MCID", "domain.md §2: drop >= 2 points and >= 30 % of baseline (proposed rule [E])"
    ),
    "wblt_cm": MeasureRule("higher_better", 1.6, "MDC", "domain.md §1.2: MDC across testers 1.6 cm (Powden 2015) [V]"),
    "wblt_deg": MeasureRule("higher_better", 4.6, "MDC", "domain.md §1.2: MDC across testers 4.6° (Powden 2015) [V]"),
    "heel_raise_reps": MeasureRule(
        "higher_better", None, "", "domain.md §1.2 gives only test-retest agreement of about ±6 reps, not an MDC"
    ),
    "ober_deg": MeasureRule(
        "lower_better",
        None,
        "",
        "domain.md §1.2: negative = below horizontal; normal limbs -27.1°, tight -16.3° (Ferber 2010); no MDC",
    ),
    "slr_deg": MeasureRule("higher_better", 7.0, "MDD", "domain.md §1.2: SLR MDD 6-7° (Neto 2015) [V]; upper bound"),
    "ake_deg": MeasureRule(
        None, 8.0, "MDD", "domain.md §1.2: AKE MDD 7-8° (Neto 2015) [V]; direction depends on how AKE is recorded"
    ),
    "slr_deficit_deg": MeasureRule(
        None, None, "", "domain.md §1.2: sign unsettled (injured minus uninjured vs a positive deficit); no MDD"
    ),
    "hip_ir_deg": MeasureRule("higher_better", 5.4, "MDC", "domain.md §1.2: MDC 5.4° (Krause 2015) [V]"),
    "task_pain_nprs": MeasureRule("lower_better", None, "", "domain.md §1.2 PFPS task pain NPRS; no MCID given"),
    "stance_pain_onset_s": MeasureRule("higher_better", None, "", "domain.md §1.2 gluteal tendinopathy; no MDC"),
    "hop_pain_nprs": MeasureRule("lower_better", None, "", "domain.md §1.2 BSI; no MCID given"),
    "walk_pain_nprs": MeasureRule("lower_better", None, "", "domain.md §1.2 BSI; no MCID given"),
}
"""Direction and responder threshold per measure; the NPRS rule is the combined 2-point-and-30 % rule."""

UNKNOWN_MEASURE = MeasureRule(None, None, "", "not in needlecare.outcomes.definitions.MEASURE_RULES")
