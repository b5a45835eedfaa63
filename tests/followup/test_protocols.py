"""Protocol packs as data: the shipped packs, the loader's validation messages, overrides and the CLI."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from needlecare.cli.protocols import protocols_app
from needlecare.core.catalogue import get_catalogue
from needlecare.core.settings import get_settings
from needlecare.followup import protocols as protocols_module
from needlecare.followup.protocol_schema import QUESTION_IDS, Protocol
from needlecare.followup.protocols import PROTOCOLS_DIR, ProtocolError, get_protocol, get_protocols, load_protocols

runner = CliRunner()
ANKLE_CALF = {"achilles_tendinopathy", "plantar_fasciitis", "mtss", "calf_strain"}
OUTCOMES = ("outcome_4wk", "outcome_6wk", "outcome_12wk")


@pytest.fixture
def packs(tmp_path: Path) -> Path:
    """A writable copy of the shipped packs."""
    target = tmp_path / "packs"
    shutil.copytree(PROTOCOLS_DIR, target)
    return target


@pytest.fixture
def clean_caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("NEEDLECARE_PROTOCOLS_DIR", raising=False)
    get_settings.cache_clear()
    get_protocols.cache_clear()
    yield
    get_settings.cache_clear()
    get_protocols.cache_clear()


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text, f"test setup: {old!r} not in {file}"
    file.write_text(text.replace(old, new, 1))


def refused(shipped: Path, override: Path | None = None) -> str:
    with pytest.raises(ProtocolError) as info:
        load_protocols(shipped, override)
    return str(info.value)


# ---- the shipped packs ----


def test_every_shipped_pack_loads_and_every_catalogue_injury_has_a_protocol() -> None:
    protocols = load_protocols()
    assert set(protocols) == set(get_catalogue().injuries)
    assert {p.stem for p in PROTOCOLS_DIR.glob("*.toml")} == {*get_catalogue().injuries, "default"}
    for slug, protocol in protocols.items():
        assert protocol.injury == slug and protocol.version and protocol.name
        assert [s.id for s in protocol.steps] == [
            "check_24h",
            "check_72h",
            "check_7d",
            *OUTCOMES,
        ]
        assert 1 <= len(protocol.aftercare_points) <= 3, slug
        for step in protocol.steps:
            assert set(step.questions) <= QUESTION_IDS
            assert "[E]" in step.source
            assert step.window_start_hours <= step.offset_hours < step.window_end_hours
            assert all(r < step.window_end_hours - step.offset_hours for r in step.reminder_hours)


def test_default_timings_follow_the_domain_schedule() -> None:
    protocol = load_protocols()["itbs"]
    day1, day3, week1 = protocol.step("check_24h"), protocol.step("check_72h"), protocol.step("check_7d")
    assert (day1.offset_hours, day1.window_start_hours, day1.window_end_hours, day1.reminder_hours) == (24, 18, 48, [7])
    # worst pain at 1 day (R8, R10's upgrade), bruising at 3 days (R7 at 48 h or later), soreness at 1 week (R11)
    assert day1.safety and day1.questions == ["soreness", "nprs_worst", "bruise", "redflags", "fainted", "free_text"]
    assert (day3.offset_hours, day3.window_start_hours, day3.window_end_hours) == (72, 60, 120)
    assert day3.safety and day3.groc_anchor == "before your last session"
    assert day3.questions == ["soreness", "nprs_usual", "nprs_worst", "bruise", "redflags", "ran", "run_pain", "groc15"]
    assert (week1.window_start_hours, week1.window_end_hours) == (144, 240)
    assert not week1.safety and week1.skip_if_next_session_before_due and "rom" not in week1.questions
    assert week1.questions == ["soreness", "nprs_usual", "groc15", "psfs", "ran", "run_pain"]
    for step_id, offset, half_window in zip(OUTCOMES, (672, 1008, 2016), (120, 168, 240), strict=True):
        step = protocol.step(step_id)
        assert step.scope == "episode" and step.offset_hours == offset
        assert (step.window_start_hours, step.window_end_hours) == (offset - half_window, offset + half_window)
        assert step.groc_anchor == "before this episode started"
    assert protocol.step("outcome_12wk").reminder_hours == [72, 168]


def test_rom_questions_and_self_tests_per_injury() -> None:
    protocols = load_protocols()
    catalogue = get_catalogue()
    for slug, protocol in protocols.items():
        rom = protocol.rom_test
        asks_rom = {s.id for s in protocol.steps if "rom" in s.questions}
        if rom is None:
            assert asks_rom == set(), slug
            continue
        assert rom.measure in catalogue.injuries[slug].measures
        assert asks_rom == ({"check_7d", *OUTCOMES} if slug in ANKLE_CALF else set(OUTCOMES)), slug
        assert protocol.step("outcome_4wk").questions[-2:] == ["rom", "free_text"]
    for slug in ANKLE_CALF:
        rom = protocols[slug].rom_test
        assert rom is not None and (rom.measure, rom.unit, rom.min, rom.max, rom.step) == ("wblt_cm", "cm", 0, 25, 0.5)
    assert all(protocols[s].rom_test is None for s in ("itbs", "hamstring_strain", "piriformis_syndrome"))
    pfps, gluteal, bsi = (protocols[s].rom_test for s in ("pfps", "gluteal_tendinopathy", "bone_stress_injury"))
    assert pfps is not None and pfps.measure == "task_pain_nprs"
    assert gluteal is not None and gluteal.measure == "stance_pain_onset_s" and "60" in gluteal.how_to
    assert bsi is not None and bsi.measure == "walk_pain_nprs"  # never the hop test
    assert "bone itself" in " ".join(protocols["bone_stress_injury"].aftercare_points)


def test_aftercare_points_give_no_medication_ice_or_heat_advice() -> None:
    banned = ("paracetamol", "ibuprofen", "nsaid", "ice", "heat", "toxin", "reset", "painkiller")
    for protocol in load_protocols().values():
        text = " ".join(protocol.aftercare_points).lower()
        assert not [word for word in banned if f" {word}" in f" {text}"], protocol.injury


def test_step_lookup_and_missing_step() -> None:
    protocol = load_protocols()["mtss"]
    assert protocol.step("check_7d").offset_hours == 168
    with pytest.raises(KeyError, match=r"no step 'check_99d'.*check_24h"):
        protocol.step("check_99d")


# ---- validation: each broken pack names the file and the field ----


def test_unknown_question_id(packs: Path) -> None:
    edit(packs / "default.toml", '"fainted", "free_text"', '"fainted", "mood", "free_text"')
    message = refused(packs)
    assert "default.toml: steps[0].questions[5]: 'mood' is not a question id; allowed:" in message
    assert "nprs_usual" in message


def test_window_must_contain_the_offset(packs: Path) -> None:
    edit(packs / "default.toml", "window_end_hours = 120", "window_end_hours = 70")
    message = refused(packs)
    assert "default.toml: steps[1].window_end_hours: must be after offset_hours (72)" in message
    edit(packs / "default.toml", "window_start_hours = 18", "window_start_hours = 30")
    assert "default.toml: steps[0].window_start_hours: must be at or before offset_hours (24)" in refused(packs)


def test_reminder_past_the_window(packs: Path) -> None:
    edit(packs / "default.toml", "reminder_hours = [48]", "reminder_hours = [72]")
    message = refused(packs)
    assert "default.toml: steps[2].reminder_hours[0]: 72 falls after the answer window closes" in message
    assert "window_end_hours - offset_hours = 72" in message


def test_rom_question_without_rom_test(packs: Path) -> None:
    edit(packs / "itbs.toml", 'extends = "default"', 'extends = "default"\nrom_in_steps = ["check_7d"]')
    assert "itbs.toml: rom_in_steps: needs a [rom_test] table" in refused(packs)
    # the default has no rom_test, so listing "rom" in its own steps is refused too
    shutil.copy(PROTOCOLS_DIR / "itbs.toml", packs / "itbs.toml")
    edit(packs / "default.toml", '"psfs", "ran", "run_pain"]', '"psfs", "ran", "run_pain", "rom"]')
    assert "default.toml: steps[2].questions: asks 'rom' but this pack has no rom_test" in refused(packs)


def test_rom_test_measure_not_allowed_for_the_injury(packs: Path) -> None:
    edit(packs / "pfps.toml", 'measure = "task_pain_nprs"', 'measure = "wblt_cm"')
    message = refused(packs)
    assert (
        "pfps.toml: rom_test.measure: 'wblt_cm' is not a measure of pfps in the catalogue; allowed: task_pain_nprs"
        in (message)
    )
    edit(packs / "pfps.toml", 'measure = "wblt_cm"', 'measure = "knee_bend"')
    assert "pfps.toml: rom_test.measure: 'knee_bend' is not a catalogue measure" in refused(packs)


def test_rom_test_range_and_unit_follow_the_catalogue(packs: Path) -> None:
    edit(packs / "calf_strain.toml", "max = 25", "max = 40")
    edit(packs / "calf_strain.toml", 'unit = "cm"', 'unit = "mm"')
    message = refused(packs)
    assert "calf_strain.toml: rom_test.max: 40 is above the catalogue maximum 25" in message
    assert "calf_strain.toml: rom_test.unit: must be the catalogue unit 'cm'" in message


def test_duplicate_step_ids(packs: Path) -> None:
    edit(packs / "default.toml", 'id = "check_72h"', 'id = "check_24h"')
    assert "default.toml: steps[1].id: step id 'check_24h' is already used by steps[0]" in refused(packs)


def test_toml_syntax_error(packs: Path) -> None:
    (packs / "mtss.toml").write_text('injury = "mtss"\nversion = \n')
    message = refused(packs)
    assert "mtss.toml: not valid TOML" in message and "line 2" in message


def test_unknown_extra_key(packs: Path) -> None:
    edit(packs / "default.toml", "safety = true", "safety = true\nurgent = true")
    message = refused(packs)
    assert "default.toml: steps[0].urgent: unknown key; allowed keys: id, title, scope" in message
    shutil.copy(PROTOCOLS_DIR / "default.toml", packs / "default.toml")
    edit(packs / "pfps.toml", 'extends = "default"', 'extends = "default"\ncolour = "red"')
    assert "pfps.toml: colour: unknown key; allowed keys: injury, version, name, extends" in refused(packs)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('groc_anchor = "before your last session"\nsource', "source", "steps[1].groc_anchor: required when"),
        ('scope = "session"', 'scope = "daily"', "steps[0].scope: Input should be 'session' or 'episode'"),
        ('id = "check_24h"', 'id = "Check 24h"', "steps[0].id: String should match pattern"),
        ("safety = true", "safety = maybe", "not valid TOML"),
        ("reminder_hours = [72, 168]", "reminder_hours = [168, 72]", "steps[5].reminder_hours[1]: 72: reminders are"),
        (
            '"soreness", "nprs_worst", "bruise", "redflags"',
            '"soreness", "nprs_worst", "bruise"',
            "steps[0].safety: a safety step must ask",
        ),
        ('title = "1-day check-in"\n', "", "steps[0].title: required key is missing"),
    ],
)
def test_other_broken_steps_name_the_field(packs: Path, old: str, new: str, expected: str) -> None:
    edit(packs / "default.toml", old, new)
    message = refused(packs)
    assert "default.toml" in message and expected in message


def test_episode_steps_cannot_skip_on_next_session(packs: Path) -> None:
    edit(packs / "default.toml", 'scope = "episode"', 'scope = "episode"\nskip_if_next_session_before_due = true')
    assert "default.toml: steps[3].skip_if_next_session_before_due: only allowed for scope = 'session'" in refused(
        packs
    )


def test_how_to_must_be_short_sentences(packs: Path) -> None:
    file = packs / "bone_stress_injury.toml"
    lines = [
        'how_to = "Walk and rate the pain."' if line.startswith("how_to =") else line
        for line in file.read_text().splitlines()
    ]
    file.write_text("\n".join(lines))
    assert "bone_stress_injury.toml: rom_test.how_to: must be 2 to 5 short sentences" in refused(packs)


def test_unknown_file_missing_injury_and_wrong_injury_field(packs: Path) -> None:
    shutil.copy(packs / "pfps.toml", packs / "knee.toml")
    assert "knee.toml: unknown injury 'knee' (from the file name); allowed: default, achilles_tendinopathy" in refused(
        packs
    )
    (packs / "knee.toml").unlink()
    (packs / "hamstring_strain.toml").unlink()
    assert "hamstring_strain.toml: missing: every catalogue injury needs a pack" in refused(packs)
    shutil.copy(PROTOCOLS_DIR / "hamstring_strain.toml", packs / "hamstring_strain.toml")
    edit(packs / "hamstring_strain.toml", 'injury = "hamstring_strain"', 'injury = "calf_strain"')
    assert "hamstring_strain.toml: injury: is 'calf_strain' but the file is named hamstring_strain.toml" in refused(
        packs
    )


def test_pack_without_steps_must_extend_and_default_must_exist(packs: Path) -> None:
    edit(packs / "itbs.toml", 'extends = "default"\n', "")
    assert "itbs.toml: steps: required key is missing" in refused(packs)
    shutil.copy(PROTOCOLS_DIR / "itbs.toml", packs / "itbs.toml")
    (packs / "default.toml").unlink()
    assert "itbs.toml: extends: 'default' but there is no default.toml" in refused(packs)


def test_all_problems_are_reported_together(packs: Path) -> None:
    edit(packs / "default.toml", 'id = "check_72h"', 'id = "check_24h"')
    edit(packs / "pfps.toml", 'measure = "task_pain_nprs"', 'measure = "wblt_cm"')
    with pytest.raises(ProtocolError) as info:
        load_protocols(packs)
    assert len(info.value.problems) == 2 and str(info.value).startswith("2 problems in protocol packs")


def test_injury_pack_may_give_its_own_steps(packs: Path) -> None:
    own = """
[[steps]]
id = "check_24h"
title = "1-day check-in"
scope = "session"
offset_hours = 24
window_start_hours = 18
window_end_hours = 48
reminder_hours = [7]
questions = ["soreness", "redflags", "rom"]
safety = true
source = "clinic test [E]"
"""
    (packs / "achilles_tendinopathy.toml").write_text((packs / "achilles_tendinopathy.toml").read_text() + own)
    edit(packs / "achilles_tendinopathy.toml", 'rom_in_steps = ["check_7d", ', "rom_in_steps = [")
    message = refused(packs)
    assert "achilles_tendinopathy.toml: rom_in_steps[0]: no step 'outcome_4wk'; steps: check_24h" in message
    edit(packs / "achilles_tendinopathy.toml", 'rom_in_steps = ["outcome_4wk", "outcome_6wk", "outcome_12wk"]\n', "")
    protocol = load_protocols(packs)["achilles_tendinopathy"]
    assert [s.id for s in protocol.steps] == ["check_24h"] and "rom" in protocol.step("check_24h").questions


# ---- overrides ----


def test_override_dir_replaces_one_injury_pack(packs: Path, tmp_path: Path) -> None:
    override = tmp_path / "clinic"
    override.mkdir()
    text = (PROTOCOLS_DIR / "pfps.toml").read_text().replace('version = "2026-11-22"', 'version = "clinic-7"')
    (override / "pfps.toml").write_text(text)
    protocols = load_protocols(PROTOCOLS_DIR, override)
    assert protocols["pfps"].version == "clinic-7"
    assert protocols["itbs"].version == "2026-11-22"  # the others stay shipped
    # a broken override is reported against the override file, not the shipped one
    (override / "pfps.toml").write_text(text.replace('"outcome_4wk", ', '"outcome_4wk", "check_99d", '))
    message = refused(PROTOCOLS_DIR, override)
    assert f"{override / 'pfps.toml'}: rom_in_steps[1]: no step 'check_99d'" in message
    assert str(PROTOCOLS_DIR / "pfps.toml") not in message


def test_override_default_changes_inherited_steps_and_unknown_override_files_fail(packs: Path, tmp_path: Path) -> None:
    override = tmp_path / "clinic"
    override.mkdir()
    (override / "default.toml").write_text(
        (PROTOCOLS_DIR / "default.toml").read_text().replace("reminder_hours = [7]", "reminder_hours = [6]")
    )
    protocols = load_protocols(PROTOCOLS_DIR, override)
    assert all(p.step("check_24h").reminder_hours == [6] for p in protocols.values())
    (override / "shin.toml").write_text('injury = "shin"\n')
    assert f"{override / 'shin.toml'}: unknown injury 'shin'" in refused(PROTOCOLS_DIR, override)
    assert f"{tmp_path / 'nowhere'}: override protocol directory not found" in refused(
        PROTOCOLS_DIR, tmp_path / "nowhere"
    )


def test_get_protocols_reads_the_settings_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_caches: None
) -> None:
    assert get_protocol("mtss").injury == "mtss"
    with pytest.raises(KeyError, match="no protocol for injury 'knee'"):
        get_protocol("knee")
    (tmp_path / "mtss.toml").write_text(
        (PROTOCOLS_DIR / "mtss.toml").read_text().replace('version = "2026-11-22"', 'version = "riverside-1"')
    )
    monkeypatch.setenv("NEEDLECARE_PROTOCOLS_DIR", str(tmp_path))
    get_settings.cache_clear()
    get_protocols.cache_clear()
    assert get_protocol("mtss").version == "riverside-1"
    assert get_protocols() is get_protocols()  # cached
    assert protocols_module.get_protocols.cache_info().hits >= 1


def test_protocol_model_validates_when_built_in_code() -> None:
    data = load_protocols()["itbs"].model_dump()
    data["steps"].reverse()
    assert [s.offset_hours for s in Protocol.model_validate(data).steps] == sorted(
        s["offset_hours"] for s in data["steps"]
    )
    data["steps"][0]["questions"].append("rom")
    with pytest.raises(ValueError, match=r"steps\[0\]\.questions: asks 'rom' but this pack has no rom_test"):
        Protocol.model_validate(data)


# ---- CLI ----


def test_cli_check_ok(clean_caches: None) -> None:
    result = runner.invoke(protocols_app, ["check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "ok  achilles_tendinopathy  v2026-11-22  6 steps" in lines
    assert len(lines) == len(get_catalogue().injuries)


def test_cli_check_with_override_dir(tmp_path: Path, clean_caches: None) -> None:
    (tmp_path / "pfps.toml").write_text(
        (PROTOCOLS_DIR / "pfps.toml").read_text().replace('version = "2026-11-22"', 'version = "clinic-7"')
    )
    result = runner.invoke(protocols_app, ["check", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"ok  pfps  vclinic-7  6 steps  (override: {tmp_path / 'pfps.toml'})" in result.output
    (tmp_path / "pfps.toml").write_text('injury = "pfps"\nversion = "1"\nname = "x"\nextends = "default"\nfoo = 1\n')
    broken = runner.invoke(protocols_app, ["check", "--dir", str(tmp_path)])
    assert broken.exit_code == 1
    assert f"{tmp_path / 'pfps.toml'}: foo: unknown key" in broken.output and "ok  " not in broken.output


def test_cli_check_reads_settings_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_caches: None) -> None:
    (tmp_path / "itbs.toml").write_text("not toml [")
    monkeypatch.setenv("NEEDLECARE_PROTOCOLS_DIR", str(tmp_path))
    get_settings.cache_clear()
    result = runner.invoke(protocols_app, ["check"])
    assert result.exit_code == 1 and "itbs.toml: not valid TOML" in result.output


def test_cli_show_prints_the_calendar_in_the_time_zone(clean_caches: None) -> None:
    # 28 March 2026 18:30 in London is GMT; the clocks go forward that night, so +24 h is 19:30 BST
    args = ["show", "achilles_tendinopathy", "--start", "2026-03-28T18:30", "--timezone", "Europe/London"]
    result = runner.invoke(protocols_app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Achilles tendinopathy (achilles_tendinopathy)  v2026-11-22" in out
    assert "send       Sun 2026-03-29 19:30 BST  (+24 h)" in out
    assert "window     Sun 2026-03-29 13:30 BST  to  Mon 2026-03-30 19:30 BST" in out
    assert "reminders  Mon 2026-03-30 02:30 BST (+7 h after sending)" in out
    assert "ROM self-test: Knee-to-wall lunge (wblt_cm, 0-25 cm, step 0.5)" in out
    assert "questions  nprs_usual, groc15, psfs, ran, run_pain, rom" in out
    assert "outcome_12wk  12-week progress survey  [episode, response]" in out


def test_cli_show_defaults_to_utc_now_and_accepts_an_offset(clean_caches: None) -> None:
    now = runner.invoke(protocols_app, ["show", "itbs"])
    assert now.exit_code == 0 and "UTC" in now.output and "ROM self-test: none" in now.output
    aware = runner.invoke(protocols_app, ["show", "pfps", "--start", "2026-06-01T10:00+02:00"])
    assert aware.exit_code == 0 and "send       Tue 2026-06-02 08:00 UTC  (+24 h)" in aware.output


def test_cli_show_refuses_unknown_injury_time_zone_and_date(clean_caches: None) -> None:
    unknown = runner.invoke(protocols_app, ["show", "knee"])
    assert unknown.exit_code == 2 and "unknown injury 'knee'; allowed: achilles_tendinopathy" in unknown.output
    assert runner.invoke(protocols_app, ["show", "itbs", "--timezone", "Mars/Base"]).exit_code == 2
    bad_date = runner.invoke(protocols_app, ["show", "itbs", "--start", "yesterday"])
    assert bad_date.exit_code == 2 and "not an ISO date-time" in bad_date.output
