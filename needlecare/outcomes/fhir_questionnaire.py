"""FHIR Questionnaires of the protocol packs: one per step of every injury's pack, with the canonical
``<FHIR_BASE>/Questionnaire/<injury>/<step>`` and the pack version, built and validated with the R4B models of
``fhir.resources``. Free-text questions are left out (they are never exported).
"""

import re
from typing import Any

from fhir.resources.R4B.questionnaire import Questionnaire

from needlecare.followup.protocol_schema import Protocol, Step
from needlecare.followup.questions import BRUISE_OPTIONS, GROC_LABELS, NONE_OF_THESE, OPTIONAL, redflag_options
from needlecare.outcomes.fhir_codes import (
    BRUISE_SYSTEM,
    INTEGER_RANGES,
    MEASURES_SYSTEM,
    NOT_EXPORTED,
    QUESTION_TEXT,
    REDFLAG_SYSTEM,
    UCUM,
    UCUM_UNITS,
    coding,
    fhir_id,
    groc_coding,
    measure_codings,
    question_text,
    questionnaire_url,
)

_EXT = "http://hl7.org/fhir/StructureDefinition"


def _range(low: float, high: float, kind: str) -> list[dict[str, Any]]:
    return [
        {"url": f"{_EXT}/minValue", f"value{kind}": low},
        {"url": f"{_EXT}/maxValue", f"value{kind}": high},
    ]


def _question_item(question: str, protocol: Protocol, step: Step) -> dict[str, Any]:
    item: dict[str, Any] = {
        "linkId": question,
        "text": question_text(question, protocol, step),
        "required": question not in OPTIONAL,
    }
    if question in INTEGER_RANGES:
        item |= {
            "type": "integer",
            "code": measure_codings(question),
            "extension": _range(*INTEGER_RANGES[question], "Integer"),
        }
        if question == "run_pain" and "ran" in step.questions:
            item |= {"enableWhen": [{"question": "ran", "operator": "=", "answerBoolean": True}]}
    elif question in ("fainted", "ran"):
        item["type"] = "boolean"
    elif question == "bruise":
        item |= {
            "type": "choice",
            "answerOption": [{"valueCoding": coding(BRUISE_SYSTEM, k, v)} for k, v in BRUISE_OPTIONS.items()],
        }
    elif question == "groc15":
        groc = [
            {"valueCoding": groc_coding(n), "extension": [{"url": f"{_EXT}/ordinalValue", "valueDecimal": n}]}
            for n in GROC_LABELS
        ]
        item |= {"type": "choice", "code": measure_codings(question), "answerOption": groc}
    elif question == "redflags":
        flags = {**redflag_options(protocol.injury), NONE_OF_THESE: "None of these"}
        item |= {
            "type": "choice",
            "repeats": True,
            "answerOption": [{"valueCoding": coding(REDFLAG_SYSTEM, k, v)} for k, v in flags.items()],
        }
    elif question == "rom" and protocol.rom_test is not None:
        test = protocol.rom_test
        unit: dict[str, Any] = {"display": test.unit}
        if test.unit in UCUM_UNITS:
            unit = coding(UCUM, UCUM_UNITS[test.unit], test.unit)
        item |= {
            "type": "decimal",
            "code": [coding(MEASURES_SYSTEM, test.measure, test.name)],
            "extension": [
                *_range(test.min, test.max, "Decimal"),
                {"url": f"{_EXT}/questionnaire-unit", "valueCoding": unit},
            ],
        }
    elif question == "psfs":
        score = {
            "linkId": "psfs.score",
            "text": QUESTION_TEXT["psfs.score"],
            "type": "integer",
            "required": True,
            "extension": _range(0, 10, "Integer"),
        }
        item |= {"type": "group", "repeats": True, "code": measure_codings(question), "item": [score]}
    else:
        raise ValueError(f"no FHIR item type for question '{question}'")
    return item


def build_questionnaire(protocol: Protocol, step: Step) -> Questionnaire:
    """The Questionnaire of one protocol step: its questions (free text left out) with types and options."""
    name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", f"{protocol.injury}_{step.id}") if part)
    return Questionnaire.model_validate(
        {
            "resourceType": "Questionnaire",
            "id": fhir_id("q", protocol.injury, step.id, protocol.version),
            "url": questionnaire_url(protocol.injury, step.id),
            "version": protocol.version,
            "name": f"Needlecare{name}",
            "title": f"{protocol.name}: {step.title}",
            "status": "active",
            "subjectType": ["Patient"],
            "publisher": "needlecare",
            "description": (
                f"Follow-up '{step.id}' of the needlecare protocol '{protocol.injury}' version {protocol.version}. "
                "Free-text answers (the 'anything else' box, the names of PSFS activities) are collected by the "
                "app but never exported, so they are not part of this questionnaire."
            ),
            "item": [_question_item(q, protocol, step) for q in step.questions if q not in NOT_EXPORTED],
        }
    )


def build_questionnaires(protocols: dict[str, Protocol]) -> list[Questionnaire]:
    """One Questionnaire per step of every protocol, by injury then step order."""
    return [
        build_questionnaire(protocols[injury], step) for injury in sorted(protocols) for step in protocols[injury].steps
    ]
