"""FHIR QuestionnaireResponses and Observations of stored survey answers, built and validated with the R4B
models of ``fhir.resources``.

- **QuestionnaireResponse**: one per stored survey answer, pointing at ``<canonical>|<version the patient
  answered>``; the subject is ``Patient/<internal id>`` and nothing else.
- **Observation**: one per scored answer (pain ratings, soreness, GROC, PSFS mean, the self-test value),
  derived from its QuestionnaireResponse; the codes are those of ``needlecare.outcomes.fhir_codes``.

:class:`ResponseRow` is what the export reads of a SurveyResponse: no free text, and of the PSFS only the scores.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from models import SurveyResponse
from models.survey import PainRecall
from needlecare.core.catalogue import Catalogue
from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.questions import BRUISE_OPTIONS, NONE_OF_THESE, redflag_options
from needlecare.outcomes.fhir_codes import (
    ANSWER_ORDER,
    BRUISE_SYSTEM,
    INTEGER_RANGES,
    MEASURES,
    MEASURES_SYSTEM,
    NPRS_NOW,
    QUESTION_TEXT,
    REDFLAG_SYSTEM,
    UCUM,
    UCUM_UNITS,
    coding,
    fhir_id,
    groc_coding,
    measure_codings,
    question_text,
    questionnaire_canonical,
)

_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey",
            "display": "Survey",
        }
    ]
}


@dataclass(frozen=True)
class ResponseRow:
    """What the export reads of one SurveyResponse. There is no free text here, by construction."""

    id: int
    patient_id: int
    injury: str
    step_id: str
    protocol_version: str
    submitted_at: datetime
    nprs_usual: int | None = None
    nprs_usual_recall: str | None = None
    nprs_worst: int | None = None
    soreness: int | None = None
    bruise: str | None = None
    groc15: int | None = None
    rom_measure: str | None = None
    rom_value: float | None = None
    psfs_scores: tuple[int, ...] | None = None
    redflags: tuple[str, ...] = ()
    fainted: bool | None = None
    ran: bool | None = None
    run_pain: int | None = None

    @classmethod
    def from_model(cls, response: SurveyResponse, protocol_version: str) -> "ResponseRow":
        """Copy the exported columns; PSFS keeps its scores only (activity names are free text)."""
        if response.id is None:
            raise ValueError("a survey response without an id cannot be exported")
        psfs = None
        if response.psfs is not None:
            psfs = tuple(int(item["score"]) for item in response.psfs if isinstance(item, dict) and "score" in item)
        return cls(
            id=response.id,
            patient_id=response.patient_id,
            injury=response.injury,
            step_id=response.step_id,
            protocol_version=protocol_version,
            submitted_at=response.submitted_at,
            nprs_usual=response.nprs_usual,
            nprs_usual_recall=response.nprs_usual_recall,
            nprs_worst=response.nprs_worst,
            soreness=response.soreness,
            bruise=response.bruise,
            groc15=response.groc15,
            rom_measure=response.rom_measure,
            rom_value=response.rom_value,
            psfs_scores=psfs,
            redflags=tuple(response.redflags or ()),
            fainted=response.fainted,
            ran=response.ran,
            run_pain=response.run_pain,
        )


def response_id(row: ResponseRow) -> str:
    return fhir_id("qr", row.id)


def _answers(row: ResponseRow, question: str) -> list[dict[str, Any]]:
    """The FHIR answers to one question; empty when nothing is stored for it."""
    if question == "rom":
        return [] if row.rom_value is None else [{"valueDecimal": round(row.rom_value, 4)}]
    if question == "redflags":
        labels = {**redflag_options(row.injury), NONE_OF_THESE: "None of these"}
        return [{"valueCoding": coding(REDFLAG_SYSTEM, flag, labels.get(flag))} for flag in row.redflags]
    value = getattr(row, question)
    if value is None:
        return []
    if question in INTEGER_RANGES:
        return [{"valueInteger": value}]
    if question in ("fainted", "ran"):
        return [{"valueBoolean": value}]
    if question == "bruise":
        return [{"valueCoding": coding(BRUISE_SYSTEM, value, BRUISE_OPTIONS.get(value))}]
    if question == "groc15":
        return [{"valueCoding": groc_coding(value)}]
    raise ValueError(f"no FHIR answer type for question '{question}'")


def _response_items(row: ResponseRow, protocol: Protocol | None, step: Step | None) -> list[dict[str, Any]]:
    """Items in the step's question order, then any answer the current step no longer asks."""
    asked = [q for q in step.questions if q in ANSWER_ORDER] if step is not None else []
    items: list[dict[str, Any]] = []
    for question in [*asked, *(q for q in ANSWER_ORDER if q not in asked)]:
        if question == "psfs":
            for score in row.psfs_scores or ():
                answer = {
                    "linkId": "psfs.score",
                    "text": QUESTION_TEXT["psfs.score"],
                    "answer": [{"valueInteger": score}],
                }
                items.append({"linkId": "psfs", "text": QUESTION_TEXT["psfs"], "item": [answer]})
            continue
        answers = _answers(row, question)
        if answers:
            items.append({"linkId": question, "text": question_text(question, protocol, step), "answer": answers})
    return items


def build_response(row: ResponseRow, protocols: dict[str, Protocol]) -> QuestionnaireResponse:
    """The QuestionnaireResponse of one stored answer; the subject is the patient's id and nothing else."""
    protocol = protocols.get(row.injury)
    step = next((s for s in protocol.steps if s.id == row.step_id), None) if protocol is not None else None
    version = row.protocol_version or (protocol.version if protocol is not None else "unknown")
    return QuestionnaireResponse.model_validate(
        {
            "resourceType": "QuestionnaireResponse",
            "id": response_id(row),
            "questionnaire": questionnaire_canonical(row.injury, row.step_id, version),
            "status": "completed",
            "subject": {"reference": f"Patient/{row.patient_id}"},
            "authored": row.submitted_at,
            "item": _response_items(row, protocol, step) or None,
        }
    )


def _observation(row: ResponseRow, code_slug: str, code: dict[str, Any], value: dict[str, Any]) -> Observation:
    return Observation.model_validate(
        {
            "resourceType": "Observation",
            "id": fhir_id("obs", row.id, code_slug),
            "status": "final",
            "category": [_CATEGORY],
            "code": code,
            "subject": {"reference": f"Patient/{row.patient_id}"},
            "effectiveDateTime": row.submitted_at,
            "derivedFrom": [{"reference": f"QuestionnaireResponse/{response_id(row)}"}],
            **value,
        }
    )


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    """A valueQuantity; UCUM-coded when the catalogue unit maps, the unit as text otherwise."""
    quantity: dict[str, Any] = {"value": value}
    if unit is not None:
        quantity["unit"] = unit
    if unit in UCUM_UNITS:
        quantity |= {"system": UCUM, "code": UCUM_UNITS[unit]}
    return {"valueQuantity": quantity}


def build_observations(row: ResponseRow, catalogue: Catalogue) -> list[Observation]:
    """One Observation per scored answer: pain ratings, soreness, GROC, PSFS mean, the self-test value."""
    observations: list[Observation] = []
    for question in ("nprs_usual", "nprs_worst", "run_pain", "soreness", "groc15"):
        value = getattr(row, question)
        if value is not None:
            if question == "nprs_usual" and row.nprs_usual_recall == PainRecall.NOW:
                question = NPRS_NOW  # asked "right now" (before migration 0009), not over 24 h
            measure = MEASURES[question]
            code = {"coding": measure_codings(question), "text": measure.display}
            observations.append(_observation(row, measure.code, code, {"valueInteger": value}))
    if row.psfs_scores:
        measure = MEASURES["psfs"]
        mean = round(sum(row.psfs_scores) / len(row.psfs_scores), 2)
        code = {"coding": measure_codings("psfs"), "text": measure.display}
        observations.append(_observation(row, measure.code, code, _quantity(mean, "0-10")))
    if row.rom_measure is not None and row.rom_value is not None:
        known = catalogue.measures.get(row.rom_measure)
        display = known.name if known is not None else row.rom_measure
        code = {"coding": [coding(MEASURES_SYSTEM, row.rom_measure, display)], "text": display}
        unit = known.unit if known is not None else None  # a measure since removed from the catalogue
        observations.append(_observation(row, row.rom_measure, code, _quantity(round(row.rom_value, 4), unit)))
    return observations
