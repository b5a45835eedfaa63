"""FHIR R4 export of one clinic's follow-up data: Questionnaires, QuestionnaireResponses and Observations.

The resources are built and validated with the R4B models of ``fhir.resources`` (FHIR 4.3.0): the package
ships R5 (default), R4B and STU3 but no R4, and R4B's changes from R4 lie elsewhere (medication definition,
evidence, subscriptions; hl7.org/fhir/R4B/history.html), so these three resources read as R4. They are
written as NDJSON, one file per resource type, for a bulk import elsewhere.

- **Questionnaire**: one per step of every injury's protocol pack, with the canonical
  ``<FHIR_BASE>/Questionnaire/<injury>/<step>`` and the pack version.
- **QuestionnaireResponse**: one per stored survey answer, pointing at ``<canonical>|<version the patient
  answered>``.
- **Observation**: one per scored answer, derived from its QuestionnaireResponse. Pain ratings carry LOINC
  72514-3 (verified, shared/domain.md §2) plus a local code saying which pain (now, worst in 24 h, during a
  run); everything else has local codes in ``MEASURES_SYSTEM`` only: GROC has no LOINC code, the PSFS and
  LEFS codes found are unverified (domain.md §1.4, §2), post-needling soreness is ``post_needling_soreness_nrs``
  and self-tests use their catalogue measure slugs, with UCUM units where one fits.

What leaves the app: the patient is ``Patient/<internal id>`` and nothing else — no name, email, phone,
time zone or the clinic's own patient number. Free text is never exported: neither the "anything else"
box (``free_text``, not even read from the database) nor the names patients give their PSFS activities
(only the scores). Both may name people or places. The Questionnaires therefore leave those questions out.

Responses are read in keyset-paginated batches; every file is written to a temporary file in the output
directory and renamed into place only when all of them are complete, so a failed export leaves the
directory as it was.
"""

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from sqlalchemy import func
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from models import Clinic, Contact, Episode, SurveyResponse
from needlecare.core.catalogue import Catalogue, get_catalogue
from needlecare.followup.protocols import Protocol, Step, get_protocols
from needlecare.followup.questions import BRUISE_OPTIONS, GROC_LABELS, NONE_OF_THESE, OPTIONAL, redflag_options

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
_EXT = "http://hl7.org/fhir/StructureDefinition"
_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey",
            "display": "Survey",
        }
    ]
}
# Catalogue units → UCUM. A unit missing here is exported as text only.
UCUM_UNITS: dict[str, str] = {"cm": "cm", "deg": "deg", "s": "s", "reps": "{reps}", "0-10": "{score}"}

FILES: dict[str, str] = {
    "Questionnaire": "Questionnaire.ndjson",
    "QuestionnaireResponse": "QuestionnaireResponse.ndjson",
    "Observation": "Observation.ndjson",
}
# Questions whose answers are free text: never exported (see the module docstring).
NOT_EXPORTED = frozenset({"free_text"})

# The wording of the survey form (templates/web/survey.html.j2), with the scale anchors.
_SCALE = "0 = no pain, 10 = worst pain imaginable"
QUESTION_TEXT: dict[str, str] = {
    "nprs_usual": f"How much does your injury hurt right now? ({_SCALE})",
    "nprs_worst": f"What was the worst pain from your injury in the last 24 hours? ({_SCALE})",
    "soreness": "How sore are the spots where the needles went in? (0 = no soreness, 10 = worst soreness imaginable)",
    "bruise": "Do you have a bruise where the needles went in?",
    "groc15": "Compared with {anchor}, how is your injury now?",
    "rom": "Self-test: {name} ({unit})",
    "psfs": "Activities that are hard because of your injury",
    "psfs.score": "How well can you do this activity now? (0 = unable, 10 = as well as before the injury)",
    "redflags": "Since your session, have you had any of these?",
    "fainted": "Did you faint, or feel faint, during or after the session?",
    "ran": "Have you been for a run since your last session or check-in?",
    "run_pain": f"If you ran: how much did your injury hurt during the run? ({_SCALE})",
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
    "nprs_usual": Measure("nprs_usual", "Injury pain now, 0-10 numeric rating", pain_nrs=True),
    "nprs_worst": Measure("nprs_worst", "Worst injury pain in the last 24 hours, 0-10 numeric rating", pain_nrs=True),
    "run_pain": Measure("run_pain", "Injury pain during a run, 0-10 numeric rating", pain_nrs=True),
    "soreness": Measure(SORENESS_CODE, "Post-needling soreness at the needle sites, 0-10 numeric rating"),
    "groc15": Measure("groc15", "Global rating of change, 15-point scale (-7 to +7)"),
    "psfs": Measure("psfs_mean", "Patient-Specific Functional Scale, mean of the activity scores (0-10)"),
}


# ---- Rows ---------------------------------------------------------------------------------------------


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


def fhir_id(*parts: object) -> str:
    """A valid FHIR id ([A-Za-z0-9-.]{1,64}) from parts joined by '-'; '_' and others become '-'."""
    text = re.sub(r"[^A-Za-z0-9.-]+", "-", "-".join(str(p) for p in parts)).strip("-") or "x"
    if len(text) <= 64:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{text[:51]}-{digest}"


# ---- Questionnaire --------------------------------------------------------------------------------------


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


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    return {"system": system, "code": code, "display": display} if display else {"system": system, "code": code}


def _measure_codings(question: str) -> list[dict[str, str]]:
    measure = MEASURES[question]
    local = _coding(MEASURES_SYSTEM, measure.code, measure.display)
    return [_coding(LOINC, PAIN_NRS_LOINC, PAIN_NRS_DISPLAY), local] if measure.pain_nrs else [local]


def _range(low: float, high: float, kind: str) -> list[dict[str, Any]]:
    return [
        {"url": f"{_EXT}/minValue", f"value{kind}": low},
        {"url": f"{_EXT}/maxValue", f"value{kind}": high},
    ]


def _groc_coding(value: int) -> dict[str, str]:
    return _coding(GROC_SYSTEM, str(value), GROC_LABELS.get(value))


def _question_item(question: str, protocol: Protocol, step: Step) -> dict[str, Any]:
    item: dict[str, Any] = {
        "linkId": question,
        "text": question_text(question, protocol, step),
        "required": question not in OPTIONAL,
    }
    if question in INTEGER_RANGES:
        item |= {
            "type": "integer",
            "code": _measure_codings(question),
            "extension": _range(*INTEGER_RANGES[question], "Integer"),
        }
        if question == "run_pain" and "ran" in step.questions:
            item |= {"enableWhen": [{"question": "ran", "operator": "=", "answerBoolean": True}]}
    elif question in ("fainted", "ran"):
        item["type"] = "boolean"
    elif question == "bruise":
        item |= {
            "type": "choice",
            "answerOption": [{"valueCoding": _coding(BRUISE_SYSTEM, k, v)} for k, v in BRUISE_OPTIONS.items()],
        }
    elif question == "groc15":
        groc = [
            {"valueCoding": _groc_coding(n), "extension": [{"url": f"{_EXT}/ordinalValue", "valueDecimal": n}]}
            for n in GROC_LABELS
        ]
        item |= {"type": "choice", "code": _measure_codings(question), "answerOption": groc}
    elif question == "redflags":
        flags = {**redflag_options(protocol.injury), NONE_OF_THESE: "None of these"}
        item |= {
            "type": "choice",
            "repeats": True,
            "answerOption": [{"valueCoding": _coding(REDFLAG_SYSTEM, k, v)} for k, v in flags.items()],
        }
    elif question == "rom" and protocol.rom_test is not None:
        test = protocol.rom_test
        unit: dict[str, Any] = {"display": test.unit}
        if test.unit in UCUM_UNITS:
            unit = _coding(UCUM, UCUM_UNITS[test.unit], test.unit)
        item |= {
            "type": "decimal",
            "code": [_coding(MEASURES_SYSTEM, test.measure, test.name)],
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
        item |= {"type": "group", "repeats": True, "code": _measure_codings(question), "item": [score]}
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


# ---- QuestionnaireResponse --------------------------------------------------------------------------------


def response_id(row: ResponseRow) -> str:
    return fhir_id("qr", row.id)


def _answers(row: ResponseRow, question: str) -> list[dict[str, Any]]:
    """The FHIR answers to one question; empty when nothing is stored for it."""
    if question == "rom":
        return [] if row.rom_value is None else [{"valueDecimal": round(row.rom_value, 4)}]
    if question == "redflags":
        labels = {**redflag_options(row.injury), NONE_OF_THESE: "None of these"}
        return [{"valueCoding": _coding(REDFLAG_SYSTEM, flag, labels.get(flag))} for flag in row.redflags]
    value = getattr(row, question)
    if value is None:
        return []
    if question in INTEGER_RANGES:
        return [{"valueInteger": value}]
    if question in ("fainted", "ran"):
        return [{"valueBoolean": value}]
    if question == "bruise":
        return [{"valueCoding": _coding(BRUISE_SYSTEM, value, BRUISE_OPTIONS.get(value))}]
    if question == "groc15":
        return [{"valueCoding": _groc_coding(value)}]
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


# ---- Observation ------------------------------------------------------------------------------------------


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
            measure = MEASURES[question]
            code = {"coding": _measure_codings(question), "text": measure.display}
            observations.append(_observation(row, measure.code, code, {"valueInteger": value}))
    if row.psfs_scores:
        measure = MEASURES["psfs"]
        mean = round(sum(row.psfs_scores) / len(row.psfs_scores), 2)
        code = {"coding": _measure_codings("psfs"), "text": measure.display}
        observations.append(_observation(row, measure.code, code, _quantity(mean, "0-10")))
    if row.rom_measure is not None and row.rom_value is not None:
        known = catalogue.measures.get(row.rom_measure)
        display = known.name if known is not None else row.rom_measure
        code = {"coding": [_coding(MEASURES_SYSTEM, row.rom_measure, display)], "text": display}
        unit = known.unit if known is not None else None  # a measure since removed from the catalogue
        observations.append(_observation(row, row.rom_measure, code, _quantity(round(row.rom_value, 4), unit)))
    return observations


# ---- Export -------------------------------------------------------------------------------------------------


class ExportError(Exception):
    """The export could not be written; nothing was left behind in the output directory."""


class OutDirNotWritable(ExportError):
    """The output directory cannot be created or written to."""


class UnknownClinic(ExportError):
    def __init__(self, clinic_id: str, known: list[str]) -> None:
        self.clinic_id = clinic_id
        self.known = known
        hint = (
            f"known clinics: {', '.join(known)}"
            if known
            else "no clinics are registered yet; add one with `needlecare clinic add`"
        )
        super().__init__(f"unknown clinic '{clinic_id}'; {hint}")


@dataclass
class ExportCounts:
    """Resources written per type, and responses whose protocol version is not among the Questionnaires."""

    questionnaires: int = 0
    responses: int = 0
    observations: int = 0
    older_versions: int = 0

    def by_type(self) -> dict[str, int]:
        return {
            "Questionnaire": self.questionnaires,
            "QuestionnaireResponse": self.responses,
            "Observation": self.observations,
        }


def check_clinic(db: Session, clinic_id: str) -> None:
    """Raise ``UnknownClinic`` (listing the known ids) unless the clinic is registered."""
    if db.get(Clinic, clinic_id) is None:
        known = list(db.exec(select(Clinic.id).order_by(col(Clinic.id))).all())
        raise UnknownClinic(clinic_id, known)


def count_responses(db: Session, clinic_id: str) -> int:
    """How many survey responses the clinic has (for a progress bar)."""
    query = (
        select(func.count())
        .select_from(SurveyResponse)
        .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
        .where(Episode.clinic_id == clinic_id)
    )
    return int(db.exec(query).one())


def iter_responses(db: Session, clinic_id: str, *, batch_size: int = 500) -> Iterator[list[ResponseRow]]:
    """The clinic's responses by id, in batches (keyset pagination: no long-open cursor, bounded memory).

    ``free_text`` is deferred with raiseload, so reading it here would fail instead of leaking.
    """
    after = 0
    while True:
        query = (
            select(SurveyResponse, Contact.protocol_version)
            .join(Contact, col(Contact.id) == col(SurveyResponse.contact_id))
            .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
            .where(Episode.clinic_id == clinic_id, col(SurveyResponse.id) > after)
            .order_by(col(SurveyResponse.id))
            .limit(batch_size)
            .options(defer(SurveyResponse.free_text, raiseload=True))  # type: ignore[arg-type]
        )
        batch = [ResponseRow.from_model(response, version) for response, version in db.exec(query).all()]
        if not batch:
            return
        yield batch
        after = batch[-1].id


@contextmanager
def _atomic_files(out_dir: Path, names: list[str]) -> Iterator[dict[str, TextIO]]:
    """Temporary files in ``out_dir``, renamed to ``names`` only if the block completes; removed otherwise."""
    temps: dict[str, tuple[Path, TextIO]] = {}
    try:
        for name in names:
            fd, temp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
            temps[name] = (Path(temp_name), os.fdopen(fd, "w", encoding="utf-8", newline="\n"))
        yield {name: handle for name, (_, handle) in temps.items()}
        for _, handle in temps.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        for name, (path, _) in temps.items():
            os.replace(path, out_dir / name)
    finally:
        for path, handle in temps.values():
            handle.close()
            path.unlink(missing_ok=True)


def _prepare(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutDirNotWritable(f"cannot create the output directory {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutDirNotWritable(f"cannot write to the output directory {out_dir}: permission denied")


def export_clinic(
    db: Session,
    clinic_id: str,
    out_dir: Path,
    progress: Callable[[int], None] | None = None,
    *,
    batch_size: int = 500,
) -> ExportCounts:
    """Write the clinic's Questionnaire, QuestionnaireResponse and Observation NDJSON files into ``out_dir``.

    ``progress`` is called with the number of responses written since its last call. Raises
    ``UnknownClinic``, ``OutDirNotWritable`` or ``ExportError`` (nothing is left in ``out_dir`` then), or
    ``ProtocolError`` when the protocol packs do not load.
    """
    check_clinic(db, clinic_id)
    protocols = get_protocols()
    catalogue = get_catalogue()
    questionnaires = build_questionnaires(protocols)
    exported_versions = {(str(q.url), str(q.version)) for q in questionnaires}
    counts = ExportCounts()
    _prepare(out_dir)
    try:
        with _atomic_files(out_dir, list(FILES.values())) as files:
            for questionnaire in questionnaires:
                _write(files[FILES["Questionnaire"]], questionnaire.json())
                counts.questionnaires += 1
            for batch in iter_responses(db, clinic_id, batch_size=batch_size):
                for row in batch:
                    response = build_response(row, protocols)
                    _write(files[FILES["QuestionnaireResponse"]], response.json())
                    counts.responses += 1
                    url, _, version = str(response.questionnaire).partition("|")
                    counts.older_versions += (url, version) not in exported_versions
                    for observation in build_observations(row, catalogue):
                        _write(files[FILES["Observation"]], observation.json())
                        counts.observations += 1
                if progress is not None:
                    progress(len(batch))
    except PermissionError as exc:
        raise OutDirNotWritable(f"cannot write to the output directory {out_dir}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ExportError(f"export to {out_dir} failed, nothing was written: {exc.strerror or exc}") from None
    return counts


def _write(handle: TextIO, line: str) -> None:
    if "\n" in line:  # pragma: no cover - the library writes compact JSON
        raise ExportError("a resource serialised over more than one line")
    handle.write(line + "\n")
