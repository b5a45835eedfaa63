"""FHIR R4 export of one clinic's follow-up data: Questionnaires, QuestionnaireResponses, Observations and Patients.

The resources are built and validated with the R4B models of ``fhir.resources`` (FHIR 4.3.0): the package
ships R5 (default), R4B and STU3 but no R4, and R4B's changes from R4 lie elsewhere (medication definition,
evidence, subscriptions; hl7.org/fhir/R4B/history.html), so these three resources read as R4. They are
written as NDJSON, one file per resource type, for a bulk import elsewhere.

The Questionnaires of every protocol step come from ``needlecare.outcomes.fhir_questionnaire``; a
QuestionnaireResponse per stored survey answer and an Observation per scored answer from
``needlecare.outcomes.fhir_responses``; a Patient per patient those reference from
``needlecare.outcomes.fhir_patients``, so every reference resolves inside the export.

What leaves the app: the patient is ``Patient/<internal id>``, and its Patient resource holds that id as its only
identifier — no name, email, phone, time zone or the clinic's own patient number, unless the caller asks for
them (:class:`~needlecare.outcomes.fhir_patients.PatientFields`). Free text is never exported: neither the
"anything else" box (``free_text``, not even read from the database) nor the names patients give their PSFS
activities (only the scores). Both may name people or places. The Questionnaires therefore leave those questions out.

Responses are read in keyset-paginated batches; every file is written to a temporary file in the output
directory and renamed into place only when all of them are complete, so a failed export leaves the
directory as it was.
"""

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from sqlalchemy import func
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from models import Clinic, Contact, ContactStatus, Episode, SurveyResponse
from needlecare.core.catalogue import get_catalogue
from needlecare.followup.protocols import get_protocols
from needlecare.outcomes.fhir_patients import PatientFields, iter_patients
from needlecare.outcomes.fhir_questionnaire import build_questionnaires
from needlecare.outcomes.fhir_responses import ResponseRow, build_observations, build_response

FILES: dict[str, str] = {
    "Questionnaire": "Questionnaire.ndjson",
    "QuestionnaireResponse": "QuestionnaireResponse.ndjson",
    "Observation": "Observation.ndjson",
    "Patient": "Patient.ndjson",
}


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
    patients: int = 0
    older_versions: int = 0

    def by_type(self) -> dict[str, int]:
        return {
            "Questionnaire": self.questionnaires,
            "QuestionnaireResponse": self.responses,
            "Observation": self.observations,
            "Patient": self.patients,
        }


def check_clinic(db: Session, clinic_id: str) -> None:
    """Raise ``UnknownClinic`` (listing the known ids) unless the clinic is registered."""
    if db.get(Clinic, clinic_id) is None:
        known = list(db.exec(select(Clinic.id).order_by(col(Clinic.id))).all())
        raise UnknownClinic(clinic_id, known)


def count_responses(db: Session, clinic_id: str) -> int:
    """How many answered survey responses the clinic has (for a progress bar)."""
    query = (
        select(func.count())
        .select_from(SurveyResponse)
        .join(Contact, col(Contact.id) == col(SurveyResponse.contact_id))
        .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
        .where(Episode.clinic_id == clinic_id, Contact.status == ContactStatus.ANSWERED.value)
    )
    return int(db.exec(query).one())


def iter_responses(db: Session, clinic_id: str, *, batch_size: int = 500) -> Iterator[list[ResponseRow]]:
    """The clinic's answered responses by id, in batches (keyset pagination: no long-open cursor, bounded memory).
    A partial answer (the red flags of a form sent back with errors, its check-in still open) is not exported:
    it is not a completed QuestionnaireResponse.

    ``free_text`` is deferred with raiseload, so reading it here would fail instead of leaking.
    """
    after = 0
    while True:
        query = (
            select(SurveyResponse, Contact.protocol_version)
            .join(Contact, col(Contact.id) == col(SurveyResponse.contact_id))
            .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
            .where(
                Episode.clinic_id == clinic_id,
                Contact.status == ContactStatus.ANSWERED.value,
                col(SurveyResponse.id) > after,
            )
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
    patient_fields: PatientFields | None = None,
) -> ExportCounts:
    """Write the clinic's Questionnaire, QuestionnaireResponse, Observation and Patient NDJSON files into ``out_dir``.

    One Patient per patient the responses and observations reference; ``patient_fields`` says what it holds
    beyond its id and identifier (nothing, by default).

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
    referenced: set[int] = set()
    _prepare(out_dir)
    try:
        with _atomic_files(out_dir, list(FILES.values())) as files:
            for questionnaire in questionnaires:
                _write(files[FILES["Questionnaire"]], questionnaire.json())
                counts.questionnaires += 1
            for batch in iter_responses(db, clinic_id, batch_size=batch_size):
                for row in batch:
                    response = build_response(row, protocols)
                    referenced.add(row.patient_id)
                    _write(files[FILES["QuestionnaireResponse"]], response.json())
                    counts.responses += 1
                    url, _, version = str(response.questionnaire).partition("|")
                    counts.older_versions += (url, version) not in exported_versions
                    for observation in build_observations(row, catalogue):
                        _write(files[FILES["Observation"]], observation.json())
                        counts.observations += 1
                if progress is not None:
                    progress(len(batch))
            for patient in iter_patients(db, referenced, patient_fields or PatientFields(), batch_size=batch_size):
                _write(files[FILES["Patient"]], patient.json())
                counts.patients += 1
    except PermissionError as exc:
        raise OutDirNotWritable(f"cannot write to the output directory {out_dir}: {exc.strerror or exc}") from None
    except OSError as exc:
        raise ExportError(f"export to {out_dir} failed, nothing was written: {exc.strerror or exc}") from None
    return counts


def _write(handle: TextIO, line: str) -> None:
    if "\n" in line:  # pragma: no cover - the library writes compact JSON
        raise ExportError("a resource serialised over more than one line")
    handle.write(line + "\n")
