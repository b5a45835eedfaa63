"""The bone stress injury fields of the session contract (domain.md §1.3): optional, validated with errors that
name the field, stored on the session, and fed to rule R14 through ``escalation.inputs_for``."""

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from typer.testing import CliRunner

from models import Clinic, TreatmentSession
from needlecare.cli.main import app as cli
from needlecare.core.settings import Settings, get_settings
from needlecare.core.signing import sign
from needlecare.followup.protocols import get_protocol
from needlecare.followup.questions import validate_answers
from needlecare.intake import ingest
from needlecare.intake.bsi_sites import BsiSitesError, get_bsi_sites, load_bsi_sites
from needlecare.intake.sample import BONE_STRESS_FIELDS, sample_event
from needlecare.safety import escalation
from needlecare.safety.rules.evaluation import evaluate
from needlecare.safety.rules.ruleset import get_rules
from needlecare.web.app import create_app
from tests.conftest import CLINIC_SECRET
from tests.factories import event_body
from tests.records import make_contact, make_session

BSI = "bone_stress_injury"
BSI_BODY: dict[str, Any] = {
    "injury": BSI,
    "regions_needled": ["calf"],
    "baseline": {"pain_nprs": 4},
    "bsi_site": "Front of the shin",
    "bsi_site_code": "anterior_tibia",
    "bsi_risk_class": "high",
    "mri_grade": 3,
    "cleared_to_hop": False,
}


def _problems(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ingest.InvalidSession) as refused:
        ingest.validate(body)
    return {".".join(map(str, p.loc)): p.msg for p in refused.value.problems}


def test_the_fields_are_optional_and_stored(db: Session, clinic: Clinic) -> None:
    plain = ingest.record(db, ingest.validate(event_body(1, injury=BSI, baseline={"pain_nprs": 4})), actor="test")
    full = ingest.record(db, ingest.validate(event_body(2, **BSI_BODY)), actor="test")
    db.expire_all()
    without = db.get(TreatmentSession, plain.session_id)
    stored = db.get(TreatmentSession, full.session_id)
    assert without is not None and stored is not None
    assert (without.bsi_site, without.bsi_site_code, without.bsi_risk_class, without.mri_grade) == (None,) * 4
    assert without.cleared_to_hop is None
    assert (stored.bsi_site, stored.bsi_site_code, stored.bsi_risk_class) == (
        "Front of the shin",
        "anterior_tibia",
        "high",
    )
    assert (stored.mri_grade, stored.cleared_to_hop) == (3, False)


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"bsi_risk_class": "medium"}, "bsi_risk_class", "'high' or 'low'"),
        ({"mri_grade": 5}, "mri_grade", "less than or equal to 4"),
        ({"mri_grade": 0}, "mri_grade", "greater than or equal to 1"),
        ({"bsi_site": "x" * 201}, "bsi_site", "at most 200 characters"),
        ({"bsi_site_code": "Navicular bone"}, "bsi_site_code", "should match pattern"),
        ({"bsi_site_code": "kneecap"}, "bsi_site_code", "unknown site code 'kneecap'; allowed: femoral_neck_tension"),
        ({"bsi_site_code": "navicular", "bsi_risk_class": "low"}, "bsi_risk_class", "contradicts bsi_site_code"),
        ({"cleared_to_hop": "perhaps"}, "cleared_to_hop", "valid boolean"),
    ],
)
def test_bad_values_get_an_error_naming_the_field(changes: dict[str, Any], field: str, fragment: str) -> None:
    problems = _problems(event_body(**{**BSI_BODY, **changes}))
    assert field in problems and fragment in problems[field], problems


def test_the_fields_are_refused_for_another_injury() -> None:
    problems = _problems(event_body(bsi_risk_class="high", mri_grade=2))
    assert problems == {
        "bsi_risk_class": "only for injury 'bone_stress_injury'; leave it out for achilles_tendinopathy",
        "mri_grade": "only for injury 'bone_stress_injury'; leave it out for achilles_tendinopathy",
    }


def test_a_class_without_a_code_and_a_code_without_a_class_are_accepted() -> None:
    assert ingest.validate(event_body(injury=BSI, baseline={}, bsi_risk_class="low")).bsi_risk_class == "low"
    assert ingest.validate(event_body(injury=BSI, baseline={}, bsi_site_code="fibula")).bsi_risk_class is None


def test_the_site_list_is_validated_when_loaded(tmp_path: Path) -> None:
    assert get_bsi_sites().sites["navicular"].risk_class == "high"
    bad = tmp_path / "sites.toml"
    bad.write_text('version = "1"\n[sites]\nnavicular = { name = "Navicular", risk_class = "medium" }\n')
    with pytest.raises(BsiSitesError, match=r"sites\.navicular\.risk_class"):
        load_bsi_sites(bad)


def test_the_sample_payload_has_a_valid_bone_stress_variant() -> None:
    body = ingest.validate(sample_event(bone_stress=True))
    assert (body.injury, body.bsi_risk_class, body.bsi_site_code) == (BSI, "high", "anterior_tibia")
    assert set(BONE_STRESS_FIELDS) >= set(ingest.BSI_FIELDS)
    assert ingest.validate(sample_event()).bsi_risk_class is None


# ---- the webhook and the CLI -----------------------------------------------------------------------------


@pytest.fixture
def client(settings: Settings, clinic: Clinic) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def _post(client: TestClient, body: dict[str, Any]) -> Any:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Needlecare-Signature": sign(raw, CLINIC_SECRET)}
    return client.post("/api/v1/events/session-completed", content=raw, headers=headers)


def test_the_webhook_stores_the_fields_and_refuses_bad_ones_with_422(client: TestClient, db: Session) -> None:
    accepted = _post(client, event_body(1, **BSI_BODY))
    assert accepted.status_code == 202, accepted.text
    db.expire_all()
    stored = db.get(TreatmentSession, accepted.json()["session_id"])
    assert stored is not None and stored.bsi_risk_class == "high"
    refused = _post(client, event_body(2, **{**BSI_BODY, "bsi_site_code": "navicular", "bsi_risk_class": "low"}))
    assert refused.status_code == 422, refused.text
    [problem] = refused.json()["detail"]
    assert problem["loc"] == ["body", "bsi_risk_class"] and "contradicts" in problem["msg"]
    assert "Front of the shin" not in refused.text, "the free-text site is not echoed"


def test_the_cli_takes_the_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEEDLECARE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NEEDLECARE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        runner.invoke(cli, ["clinic", "add", "riverside-physio", "--name", "R", "--email", "desk@riverside.example"])
        good, bad = tmp_path / "good.json", tmp_path / "bad.json"
        good.write_text(json.dumps(event_body(1, **BSI_BODY)))
        bad.write_text(json.dumps(event_body(2, **{**BSI_BODY, "mri_grade": 9})))
        accepted = runner.invoke(cli, ["session", "complete", "--file", str(good)])
        assert accepted.exit_code == 0 and "accepted" in accepted.output, accepted.output
        refused = runner.invoke(cli, ["session", "complete", "--file", str(bad)])
        assert refused.exit_code != 0 and "mri_grade" in refused.output, refused.output
    finally:
        get_settings.cache_clear()


# ---- rule R14 ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("risk_class", "fires"), [("high", True), ("low", False), (None, False)])
def test_r14_high_risk_fires_on_a_one_point_rise_from_the_stored_class(
    db: Session, clinic: Clinic, risk_class: str | None, fires: bool
) -> None:
    fields: dict[str, Any] = {"injury": BSI, "baseline": {"pain_nprs": 4}}
    if risk_class is not None:
        fields["bsi_risk_class"] = risk_class
    session = make_session(db, 1, **fields)
    contact = make_contact(db, session, "check_72h")
    protocol = get_protocol(BSI)
    answers = validate_answers(
        {
            "soreness": 1,
            "nprs_usual": 5,
            "nprs_worst": 5,
            "bruise": "none",
            "redflags": ["none"],
            "ran": False,
            "groc15": 0,
        },
        protocol=protocol,
        step=protocol.step("check_72h"),
        regions_needled=["calf"],
    )
    inp = escalation.inputs_for(db, contact, session.completed_at + timedelta(hours=72), answers)
    assert inp.bsi_risk_class == risk_class and inp.nprs_usual_change == 1
    assert (evaluate(get_rules(), inp).tier_of("R14") == "SAME_DAY") is fires
    db.expire_all()
    assert db.exec(select(TreatmentSession.bsi_risk_class)).one() == risk_class
