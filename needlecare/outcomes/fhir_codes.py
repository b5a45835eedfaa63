"""The vocabulary of the FHIR export: code systems and codes, UCUM units, the wording of the survey questions,
FHIR ids and the canonical URLs of the Questionnaires.

Pain ratings carry LOINC 72514-3 (verified, shared/domain.md §2) plus a local code saying which pain (usual over
24 h, worst in 24 h, during a run); everything else has local codes in ``MEASURES_SYSTEM`` only: GROC has no
LOINC code, the PSFS and LEFS codes found are unverified (domain.md §1.4, §2), post-needling soreness is
``post_needling_soreness_nrs`` and self-tests use their catalogue measure slugs, with UCUM units where one fits.
"""

import hashlib
import re
from dataclasses import dataclass

from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.questions import GROC_LABELS, PAIN_QUESTIONS

FHIR_BASE = "https://needlecare.example/fhir"
MEASURES_SYSTEM = f"{FHIR_BASE}/CodeSystem/measures"
BRUISE_SYSTEM = f"{FHIR_BASE}/CodeSystem/bruise"
REDFLAG_SYSTEM = f"{FHIR_BASE}/CodeSystem/redflags"
GROC_SYSTEM = f"{FHIR_BASE}/CodeSystem/groc15"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PAIN_NRS_LOINC = "72514-3"
PAIN_NRS_DISPLAY = "Pain severity - 0-10 verbal numeric rating [Score] - Reported"
SORENESS_CODE = "post_needling_soreness_nrs"
NPRS_NOW = "nprs_now"
# Catalogue units → UCUM. A unit missing here is exported as text only.
UCUM_UNITS: dict[str, str] = {"cm": "cm", "deg": "deg", "s": "s", "reps": "{reps}", "0-10": "{score}"}

# Questions whose answers are free text: never exported (see needlecare.outcomes.fhir_export).
NOT_EXPORTED = frozenset({"free_text"})

# The wording of the survey form (templates/web/survey.html.j2), with the scale anchors.
_SCALE = "0 = no pain, 10 = worst pain imaginable"
QUESTION_TEXT: dict[str, str] = {
    "nprs_usual": f"{PAIN_QUESTIONS['nprs_usual']} ({_SCALE})",
    "nprs_worst": f"{PAIN_QUESTIONS['nprs_worst']} ({_SCALE})",
    "soreness": "How sore are the spots where the needles went in? (0 = no soreness, 10 = worst soreness imaginable)",
    "bruise": "Do you have a bruise where the needles went in?",
    "groc15": "Compared with {anchor}, how is your injury now?",
    "rom": "Self-test: {name} ({unit})",
    "psfs": "Activities that are hard because of your injury",
    "psfs.score": "How well can you do this activity now? (0 = unable, 10 = as well as before the injury)",
    "redflags": "Since your session, have you had any of these?",
    "fainted": "Did you faint, or feel faint, during or after the session?",
    "ran": "Have you been for a run since your last session or check-in?",
    "run_pain": f"{PAIN_QUESTIONS['run_pain']} ({_SCALE})",
}
# Integer answers and their inclusive ranges (needlecare.followup.questions checks the same).
INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "nprs_usual": (0, 10),
    "nprs_worst": (0, 10),
    "soreness": (0, 10),
    "run_pain": (0, 10),
}
# The order answers are listed in when a response's step is no longer in its protocol pack.
ANSWER_ORDER: tuple[str, ...] = (
    "soreness",
    "bruise",
    "nprs_usual",
    "nprs_worst",
    "redflags",
    "fainted",
    "ran",
    "run_pain",
    "groc15",
    "psfs",
    "rom",
)


@dataclass(frozen=True)
class Measure:
    """How one answer becomes an Observation: its local code, display, and LOINC 72514-3 or not."""

    code: str
    display: str
    pain_nrs: bool = False


MEASURES: dict[str, Measure] = {
    "nprs_usual": Measure("nprs_usual", "Usual injury pain over the last 24 hours, 0-10 numeric rating", pain_nrs=True),
    # nprs_usual answers stored before migration 0009 were asked "right now": a code of their own, never mixed in.
    NPRS_NOW: Measure(NPRS_NOW, "Injury pain right now, 0-10 numeric rating", pain_nrs=True),
    "nprs_worst": Measure("nprs_worst", "Worst injury pain in the last 24 hours, 0-10 numeric rating", pain_nrs=True),
    "run_pain": Measure("run_pain", "Injury pain during a run, 0-10 numeric rating", pain_nrs=True),
    "soreness": Measure(SORENESS_CODE, "Post-needling soreness at the needle sites, 0-10 numeric rating"),
    "groc15": Measure("groc15", "Global rating of change, 15-point scale (-7 to +7)"),
    "psfs": Measure("psfs_mean", "Patient-Specific Functional Scale, mean of the activity scores (0-10)"),
}


def fhir_id(*parts: object) -> str:
    """A valid FHIR id ([A-Za-z0-9-.]{1,64}) from parts joined by '-'; '_' and others become '-'."""
    text = re.sub(r"[^A-Za-z0-9.-]+", "-", "-".join(str(p) for p in parts)).strip("-") or "x"
    if len(text) <= 64:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{text[:51]}-{digest}"


def questionnaire_url(injury: str, step_id: str) -> str:
    """The canonical URL of a protocol step's Questionnaire (stable across pack versions)."""
    return f"{FHIR_BASE}/Questionnaire/{injury}/{step_id}"


def questionnaire_canonical(injury: str, step_id: str, version: str) -> str:
    """``url|version``, as a QuestionnaireResponse cites it."""
    return f"{questionnaire_url(injury, step_id)}|{version}"


def question_text(question: str, protocol: Protocol | None, step: Step | None) -> str:
    """The form's wording of one question (GROC with the step's anchor, the self-test with its name)."""
    if question == "groc15":
        anchor = step.groc_anchor if step is not None and step.groc_anchor else "before"
        return QUESTION_TEXT["groc15"].format(anchor=anchor)
    if question == "rom":
        test = protocol.rom_test if protocol is not None else None
        if test is None:
            return "Self-test"
        return QUESTION_TEXT["rom"].format(name=test.name, unit=test.unit)
    return QUESTION_TEXT[question]


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    return {"system": system, "code": code, "display": display} if display else {"system": system, "code": code}


def measure_codings(question: str) -> list[dict[str, str]]:
    measure = MEASURES[question]
    local = coding(MEASURES_SYSTEM, measure.code, measure.display)
    return [coding(LOINC, PAIN_NRS_LOINC, PAIN_NRS_DISPLAY), local] if measure.pain_nrs else [local]


def groc_coding(value: int) -> dict[str, str]:
    return coding(GROC_SYSTEM, str(value), GROC_LABELS.get(value))
