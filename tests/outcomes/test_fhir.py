"""The FHIR R4 export, on SQLite and PostgreSQL, with sessions, contacts and answers made by the real code.

Every line written must parse and validate with fhir.resources (R4B); counts match the database; pain has
LOINC 72514-3; each response's Questionnaire is in the export; no patient name, contact detail or free
text appears anywhere in the files.
"""

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from models import Clinic, ClinicCreate, Contact, Episode, SurveyResponse, TreatmentSession
from models.base import utcnow
from needlecare.cli.main import app
from needlecare.core.catalogue import get_catalogue
from needlecare.core.settings import get_settings
from needlecare.core.tokens import TokenClaims
from needlecare.followup import planning
from needlecare.followup.protocol_schema import QUESTION_IDS
from needlecare.followup.protocols import get_protocol, get_protocols
from needlecare.followup.questions import validate_answers
from needlecare.intake import ingest
from needlecare.intake.clinics import add_clinic
from needlecare.outcomes import fhir_codes, fhir_export, fhir_patients, fhir_questionnaire, fhir_responses
from needlecare.surveys.responses import load_contact, record_answer
from tests.factories import PATIENT_EMAIL, PATIENT_LAST, PATIENT_NAME, PATIENT_PHONE, event_body

runner = CliRunner()
CLINIC = "riverside-physio"
OTHER_CLINIC = "hillside-physio"
FREE_TEXT = "Please call Sam Okafor at home, 12 Elm Street"
PSFS_ACTIVITY = "Walking the dog to Larkfield school"
ACHILLES = "achilles_tendinopathy"

# (session number, step, answers) for riverside-physio; each session is a new patient and episode.
ANSWERS: list[tuple[int, str, dict[str, Any]]] = [
    (
        1,
        "check_24h",
        {
            "soreness": 2,
            "nprs_worst": 3,
            "bruise": "small",
            "redflags": ["none"],
            "fainted": False,
            "free_text": FREE_TEXT,
        },
    ),
    (
        2,
        "check_72h",
        {
            "soreness": 1,
            "nprs_usual": 4,
            "nprs_worst": 7,
            "bruise": "none",
            "redflags": ["spreading_redness"],
            "ran": True,
            "run_pain": 3,
            "groc15": 2,
        },
    ),
    (
        3,
        "check_7d",
        {
            "soreness": 0,
            "nprs_usual": 3,
            "groc15": 3,
            "psfs": [{"activity": PSFS_ACTIVITY, "score": 6}, {"activity": "Easy 5 km run", "score": 3}],
            "ran": False,
            "rom": {"measure": "wblt_cm", "value": 9.5},
        },
    ),
    (
        4,
        "outcome_4wk",
        {"nprs_usual": 2, "groc15": 4, "psfs": [{"activity": "Stairs", "score": 8}], "free_text": FREE_TEXT},
    ),
]
# Observations per answer above, counted by hand: 2 (soreness, worst) + 5 (soreness, usual, worst, run pain, GROC)
# + 5 (soreness, usual, GROC, PSFS mean, WBLT) + 3 (usual, GROC, PSFS mean).
EXPECTED_OBSERVATIONS = 15
FORBIDDEN = [PATIENT_NAME, PATIENT_LAST, PATIENT_EMAIL, PATIENT_PHONE, FREE_TEXT, PSFS_ACTIVITY, "Dana Reyes", "PT-1"]


def answer(db: Session, contact: Contact, data: dict[str, Any], now: datetime) -> SurveyResponse:
    """Validate and store answers through the real code (the one place to change record_answer's call)."""
    protocol = get_protocol(contact.injury)
    step = protocol.step(contact.step_id)
    answers = validate_answers(data, protocol=protocol, step=step, regions_needled=["calf"])
    return record_answer(db, contact, answers, channel="api", now=now).response


def answer_step(db: Session, n: int, step_id: str, data: dict[str, Any], *, clinic_id: str = CLINIC) -> int:
    """A session ended as long ago as the step's offset (its window is open now), planned, then answered."""
    now = utcnow()
    step = get_protocol(ACHILLES).step(step_id)
    completed = now - timedelta(hours=step.offset_hours, minutes=5)
    body = event_body(n, clinic_id=clinic_id, completed_at=completed.isoformat())
    session_id = ingest.record(db, ingest.validate(body), actor="test").session_id
    planning.plan_pending_sessions(db, now=now)
    session = db.get(TreatmentSession, session_id)
    assert session is not None
    contact = db.exec(select(Contact).where(Contact.patient_id == session.patient_id, Contact.step_id == step_id)).one()
    assert contact.id is not None
    opened = load_contact(db, TokenClaims(contact.id, contact.patient_id, step_id, contact.window_closes_at), now=now)
    response = answer(db, opened, data, now)
    assert response.id is not None
    return response.id


@pytest.fixture
def answered(db: Session, clinic: Clinic) -> dict[str, int]:
    """Riverside's four answers (step id → response id) and one answer at another clinic."""
    ids = {step_id: answer_step(db, n, step_id, data) for n, step_id, data in ANSWERS}
    add_clinic(
        db,
        ClinicCreate(id=OTHER_CLINIC, name="Hillside", email="desk@hillside.example", timezone="UTC"),
        actor="test",
    )
    answer_step(db, 1, "check_72h", ANSWERS[1][2], clinic_id=OTHER_CLINIC)
    return ids


def read_export(out: Path) -> dict[str, list[dict[str, Any]]]:
    """Every line of every file, parsed and validated with fhir.resources; keyed by resource type."""
    assert sorted(p.name for p in out.iterdir()) == sorted(fhir_export.FILES.values()), "no temporary files left"
    resources: dict[str, list[dict[str, Any]]] = {}
    for resource_type, name in fhir_export.FILES.items():
        lines = (out / name).read_text(encoding="utf-8").splitlines()
        parsed = [json.loads(line) for line in lines]
        for obj in parsed:
            assert obj["resourceType"] == resource_type
            get_fhir_model_class(resource_type).model_validate(obj)
        resources[resource_type] = parsed
    return resources


def link_ids(items: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for item in items:
        found.add(item["linkId"])
        found |= link_ids(item.get("item", []))
    return found


def clinic_response_count(db: Session, clinic_id: str) -> int:
    query = (
        select(func.count())
        .select_from(SurveyResponse)
        .join(Episode, col(Episode.id) == col(SurveyResponse.episode_id))
        .where(Episode.clinic_id == clinic_id)
    )
    return int(db.exec(query).one())


# ---- Pure parts ----------------------------------------------------------------------------------------------


def test_every_question_is_either_exported_or_named_as_free_text() -> None:
    assert set(fhir_codes.ANSWER_ORDER) | fhir_codes.NOT_EXPORTED == QUESTION_IDS
    assert not set(fhir_codes.ANSWER_ORDER) & fhir_codes.NOT_EXPORTED


def test_local_codes_do_not_collide_with_catalogue_measures_and_self_test_units_are_ucum() -> None:
    catalogue = get_catalogue()
    local = {measure.code for measure in fhir_codes.MEASURES.values()}
    assert fhir_codes.SORENESS_CODE in local
    assert not local & set(catalogue.measures)
    for protocol in get_protocols().values():
        if protocol.rom_test is not None:
            assert catalogue.measures[protocol.rom_test.measure].unit in fhir_codes.UCUM_UNITS, protocol.injury


@pytest.mark.parametrize(
    ("parts", "expected"),
    [(("q", "achilles_tendinopathy", "check_24h", "2026-11-22"), "q-achilles-tendinopathy-check-24h-2026-11-22")],
)
def test_ids_are_valid_fhir_ids(parts: tuple[str, ...], expected: str) -> None:
    assert fhir_codes.fhir_id(*parts) == expected
    long = fhir_codes.fhir_id("obs", 123456789, "x" * 100)
    assert len(long) == 64 and long != fhir_codes.fhir_id("obs", 123456789, "x" * 99)


def test_every_protocol_step_builds_a_valid_questionnaire_without_free_text() -> None:
    protocols = get_protocols()
    questionnaires = fhir_questionnaire.build_questionnaires(protocols)
    assert len(questionnaires) == sum(len(p.steps) for p in protocols.values())
    assert len({q.id for q in questionnaires}) == len(questionnaires)
    for q in questionnaires:
        data = json.loads(q.json())
        get_fhir_model_class("Questionnaire").model_validate(data)
        assert "free_text" not in link_ids(data["item"])


# ---- The export against the database ---------------------------------------------------------------------------


def test_export_writes_valid_resources_that_match_the_database(
    db: Session, answered: dict[str, int], tmp_path: Path
) -> None:
    out = tmp_path / "export"
    counts = fhir_export.export_clinic(db, CLINIC, out)
    resources = read_export(out)

    protocols = get_protocols()
    assert counts.by_type() == {rtype: len(items) for rtype, items in resources.items()}
    assert counts.questionnaires == sum(len(p.steps) for p in protocols.values())
    assert counts.responses == clinic_response_count(db, CLINIC) == len(ANSWERS)
    assert clinic_response_count(db, OTHER_CLINIC) == 1, "the other clinic's answer exists but is not exported"
    assert counts.observations == EXPECTED_OBSERVATIONS
    assert counts.older_versions == 0

    questionnaires = {f"{q['url']}|{q['version']}": q for q in resources["Questionnaire"]}
    responses = {r["id"]: r for r in resources["QuestionnaireResponse"]}
    assert set(responses) == {f"qr-{rid}" for rid in answered.values()}
    for qr in responses.values():
        assert qr["status"] == "completed"
        assert list(qr["subject"]) == ["reference"] and re.fullmatch(r"Patient/\d+", qr["subject"]["reference"])
        questionnaire = questionnaires[qr["questionnaire"]]
        assert link_ids(qr["item"]) <= link_ids(questionnaire["item"]), qr["id"]

    stored = db.get(SurveyResponse, answered["check_72h"])
    assert stored is not None
    qr = responses[f"qr-{stored.id}"]
    assert qr["subject"] == {"reference": f"Patient/{stored.patient_id}"}
    assert datetime.fromisoformat(qr["authored"]) == stored.submitted_at
    assert (
        qr["questionnaire"]
        == f"{fhir_codes.FHIR_BASE}/Questionnaire/{ACHILLES}/check_72h|{protocols[ACHILLES].version}"
    )
    flags = next(item for item in qr["item"] if item["linkId"] == "redflags")
    assert [a["valueCoding"]["code"] for a in flags["answer"]] == ["spreading_redness"]

    observations = {o["id"]: o for o in resources["Observation"]}
    for obs in observations.values():
        assert obs["status"] == "final"
        assert obs["derivedFrom"][0]["reference"].removeprefix("QuestionnaireResponse/") in responses
    usual = observations[f"obs-{stored.id}-nprs-usual"]
    worst = observations[f"obs-{stored.id}-nprs-worst"]
    for obs, value, local in ((usual, 4, "nprs_usual"), (worst, 7, "nprs_worst")):
        codes = {(c["system"], c["code"]) for c in obs["code"]["coding"]}
        assert codes == {("http://loinc.org", "72514-3"), (fhir_codes.MEASURES_SYSTEM, local)}
        assert obs["valueInteger"] == value
        assert obs["subject"] == {"reference": f"Patient/{stored.patient_id}"}
        assert datetime.fromisoformat(obs["effectiveDateTime"]) == stored.submitted_at
    soreness = observations[f"obs-{stored.id}-post-needling-soreness-nrs"]
    assert soreness["code"]["coding"] == [
        {
            "system": fhir_codes.MEASURES_SYSTEM,
            "code": "post_needling_soreness_nrs",
            "display": soreness["code"]["text"],
        }
    ]
    groc = observations[f"obs-{stored.id}-groc15"]
    assert groc["valueInteger"] == 2 and "http://loinc.org" not in json.dumps(groc["code"])

    week = answered["check_7d"]
    assert observations[f"obs-{week}-wblt-cm"]["valueQuantity"] == {
        "value": 9.5,
        "unit": "cm",
        "system": "http://unitsofmeasure.org",
        "code": "cm",
    }
    assert observations[f"obs-{week}-psfs-mean"]["valueQuantity"]["value"] == 4.5
    psfs = [item for item in responses[f"qr-{week}"]["item"] if item["linkId"] == "psfs"]
    assert [group["item"][0]["answer"][0]["valueInteger"] for group in psfs] == [6, 3]


def references(resource: Any) -> list[str]:
    """Every ``reference`` string anywhere in a resource."""
    if isinstance(resource, dict):
        found = [resource["reference"]] if isinstance(resource.get("reference"), str) else []
        return found + [ref for value in resource.values() for ref in references(value)]
    if isinstance(resource, list):
        return [ref for value in resource for ref in references(value)]
    return []


def test_every_reference_resolves_to_a_resource_in_the_export(
    db: Session, answered: dict[str, int], tmp_path: Path
) -> None:
    counts = fhir_export.export_clinic(db, CLINIC, tmp_path / "out")
    resources = read_export(tmp_path / "out")
    present = {f"{rtype}/{r['id']}" for rtype, items in resources.items() for r in items}
    refs = [ref for items in resources.values() for r in items for ref in references(r)]
    assert len([ref for ref in refs if ref.startswith("Patient/")]) == len(ANSWERS) + EXPECTED_OBSERVATIONS
    assert [ref for ref in refs if ref not in present] == []
    patient_ids = {
        s.patient_id
        for s in db.exec(select(SurveyResponse).where(col(SurveyResponse.id).in_(list(answered.values())))).all()
    }
    assert {p["id"] for p in resources["Patient"]} == {str(i) for i in patient_ids}
    assert counts.patients == len(patient_ids) == len(ANSWERS), "one Patient per exported patient, no other clinic's"


def test_a_patient_holds_only_its_identifier_unless_more_is_asked_for(
    db: Session, answered: dict[str, int], tmp_path: Path
) -> None:
    fhir_export.export_clinic(db, CLINIC, tmp_path / "minimal")
    for patient in read_export(tmp_path / "minimal")["Patient"]:
        assert set(patient) == {"resourceType", "id", "identifier"}
        assert patient["identifier"] == [
            {"use": "secondary", "system": fhir_patients.PATIENT_ID_SYSTEM, "value": patient["id"]}
        ]
    fields = fhir_patients.PatientFields(clinic_number=True, name=True, telecom=True)
    fhir_export.export_clinic(db, CLINIC, tmp_path / "full", patient_fields=fields)
    full = read_export(tmp_path / "full")["Patient"]
    text = json.dumps(full)
    assert PATIENT_LAST in text and PATIENT_EMAIL in text
    assert all(p["identifier"][1]["system"] == fhir_patients.clinic_number_system(CLINIC) for p in full)
    with pytest.raises(ValueError):
        fhir_patients.PatientFields.model_validate({"address": True})


def test_no_patient_details_or_free_text_leave_the_app(db: Session, answered: dict[str, int], tmp_path: Path) -> None:
    stored = db.exec(select(SurveyResponse.free_text).where(col(SurveyResponse.free_text).is_not(None))).all()
    assert stored == [FREE_TEXT, FREE_TEXT], "the free text is in the database, so its absence below means something"
    fhir_export.export_clinic(db, CLINIC, tmp_path / "out")
    text = "".join(path.read_text(encoding="utf-8") for path in sorted((tmp_path / "out").glob("*.ndjson")))
    assert text.count("\n") > 60
    for secret in FORBIDDEN:
        assert secret not in text, secret
    for line in text.splitlines():
        resource = json.loads(line)
        if "subject" in resource:
            assert list(resource["subject"]) == ["reference"]


def test_batches_give_the_same_files_and_report_progress(db: Session, answered: dict[str, int], tmp_path: Path) -> None:
    fhir_export.export_clinic(db, CLINIC, tmp_path / "one")
    calls: list[int] = []
    counts = fhir_export.export_clinic(db, CLINIC, tmp_path / "batched", progress=calls.append, batch_size=3)
    assert calls == [3, 1]
    assert counts.responses == 4
    for name in fhir_export.FILES.values():
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "batched" / name).read_bytes(), name


def test_a_response_to_an_older_protocol_version_cites_that_version(
    db: Session, answered: dict[str, int], tmp_path: Path
) -> None:
    stored = db.get(SurveyResponse, answered["check_24h"])
    assert stored is not None
    contact = db.get(Contact, stored.contact_id)
    assert contact is not None
    contact.protocol_version = "2025-01-01"
    db.add(contact)
    db.commit()
    counts = fhir_export.export_clinic(db, CLINIC, tmp_path / "out")
    assert counts.older_versions == 1
    responses = read_export(tmp_path / "out")["QuestionnaireResponse"]
    [qr] = [r for r in responses if r["id"] == f"qr-{stored.id}"]
    assert qr["questionnaire"].endswith("/check_24h|2025-01-01")


def test_a_failed_export_leaves_the_directory_as_it_was(
    db: Session, answered: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "Questionnaire.ndjson").write_text("previous export\n")
    real = fhir_responses.build_observations
    built: list[int] = []

    def fail_on_the_third(row: fhir_responses.ResponseRow, catalogue: Any) -> list[Any]:
        built.append(row.id)
        if len(built) == 3:
            raise OSError(28, "No space left on device")
        return real(row, catalogue)

    monkeypatch.setattr(fhir_export, "build_observations", fail_on_the_third)
    with pytest.raises(fhir_export.ExportError, match="No space left on device"):
        fhir_export.export_clinic(db, CLINIC, out, batch_size=1)
    assert [p.name for p in out.iterdir()] == ["Questionnaire.ndjson"]
    assert (out / "Questionnaire.ndjson").read_text() == "previous export\n"


def test_an_unknown_clinic_is_refused_before_anything_is_written(db: Session, clinic: Clinic, tmp_path: Path) -> None:
    with pytest.raises(fhir_export.UnknownClinic, match="known clinics: riverside-physio"):
        fhir_export.export_clinic(db, "nowhere-physio", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- Command line ----------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NEEDLECARE_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_exports_and_prints_a_summary(cli_env: None, db: Session, answered: dict[str, int], tmp_path: Path) -> None:
    out = tmp_path / "fhir"
    result = runner.invoke(app, ["export", "fhir", "--clinic", CLINIC, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"exported clinic '{CLINIC}'" in result.stdout
    assert "QuestionnaireResponse" in result.stdout and f"{EXPECTED_OBSERVATIONS}  Observation.ndjson" in result.stdout
    assert "Exporting survey responses" in result.stderr
    assert len(read_export(out)["QuestionnaireResponse"]) == len(ANSWERS)


def test_cli_unknown_clinic_exits_2_and_lists_the_known_ones(cli_env: None, clinic: Clinic, tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "fhir", "--clinic", "nowhere", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "unknown clinic 'nowhere'; known clinics: riverside-physio" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "x").exists()


def test_cli_out_dir_that_cannot_be_created_is_explained(cli_env: None, clinic: Clinic, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = runner.invoke(app, ["export", "fhir", "--clinic", CLINIC, "--out", str(blocker / "sub")])
    assert result.exit_code == 2
    assert "cannot create the output directory" in result.stderr and "choose another --out" in result.stderr
    assert "Traceback" not in result.output
