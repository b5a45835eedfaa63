"""Hypothesis over the loaders of clinical content: protocol packs, escalation rules and clinic configs.

Each input is a shipped file with one part replaced, removed or added (any TOML value: huge integers, inf and
nan, odd text, dates, nested tables), or bytes that may not be TOML at all. Whatever comes in, the loader either
returns its result or raises its own error type (``ProtocolError``, ``RulesError``, ``ClinicConfigError``), whose
message names the file — never another exception.
"""

import json
import math
import tempfile
import tomllib
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from needlecare.followup.protocols import PROTOCOLS_DIR, ProtocolError, load_protocols
from needlecare.safety.clinic_config import ClinicConfigError, load_config_file, parse_config
from needlecare.safety.rules.ruleset import DEFAULT_PATH, RulesError, load_rules

FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SAMPLE_CONFIG: dict[str, Any] = {
    "emergency_number": "911",
    "alerts": [{"url": "mailto://desk@example.org", "tags": ["emergency", "same_day", "next_bd"]}],
    "sla": {},
    "opening_hours": {"open": "08:00", "close": "18:00"},
    "reporting": {},
}

# ---- TOML values and a writer (inline tables: any document is one "key = value" line per top-level key) --------

leaves = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "tier:emergency", "default", "redflags", "America", "25:00", "{{", "ü"]),
    st.dates(),
    st.datetimes(),
    st.times(),
)
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(min_size=1, max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in data.items())


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with one value somewhere in it replaced, removed, or given a new sibling."""
    root: Any = json.loads(json.dumps(document, default=str))  # a deep copy; dates become text (also a mutation)
    node = root
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            node[key] = draw(values)
        elif action == "remove":
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=12))] = draw(values)
        else:
            node.append(draw(values))
        break
    return root if isinstance(root, dict) else {"value": root}


def _shipped(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


raw_files = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=5).map(lambda d: toml_document(d).encode()),
)

# ---- rules -------------------------------------------------------------------------------------------------------


def _load_rules_text(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "escalation.toml"
        path.write_bytes(content)
        try:
            load_rules(path)
        except RulesError as exc:
            assert str(path) in str(exc)


@FUZZ
@given(document=mutated(_shipped(DEFAULT_PATH)))
def test_a_mutated_rules_file_is_loaded_or_refused_with_rules_error(document: dict[str, Any]) -> None:
    _load_rules_text(toml_document(document).encode())


@FUZZ
@given(content=raw_files)
def test_any_bytes_as_a_rules_file_give_rules_error(content: bytes) -> None:
    _load_rules_text(content)


# ---- protocol packs ------------------------------------------------------------------------------------------------

PACKS = sorted(PROTOCOLS_DIR.glob("*.toml"))


def _load_packs_with(name: str, content: bytes) -> None:
    """The shipped packs with ``name`` written as ``content``, once as a shipped file and once as an override."""
    with tempfile.TemporaryDirectory() as folder:
        shipped, override = Path(folder) / "shipped", Path(folder) / "override"
        shipped.mkdir()
        override.mkdir()
        for pack in PACKS:
            (shipped / pack.name).write_bytes(pack.read_bytes())
        (override / name).write_bytes(content)
        for shipped_dir, override_dir in ((shipped, override), (override, None)):
            try:
                load_protocols(shipped_dir, override_dir)
            except ProtocolError as exc:
                assert str(exc)


@FUZZ
@given(data=st.data(), pack=st.sampled_from(PACKS))
def test_a_mutated_protocol_pack_is_loaded_or_refused_with_protocol_error(data: st.DataObject, pack: Path) -> None:
    document = data.draw(mutated(_shipped(pack)))
    _load_packs_with(pack.name, toml_document(document).encode())


@FUZZ
@given(content=raw_files, name=st.sampled_from([p.name for p in PACKS] + ["unknown_injury.toml"]))
def test_any_bytes_as_a_protocol_pack_give_protocol_error(content: bytes, name: str) -> None:
    _load_packs_with(name, content)


# ---- clinic config -------------------------------------------------------------------------------------------------


@FUZZ
@given(document=mutated(SAMPLE_CONFIG))
def test_a_mutated_clinic_config_is_parsed_or_refused_with_clinic_config_error(document: dict[str, Any]) -> None:
    try:
        parse_config(document)
    except ClinicConfigError as exc:
        assert "clinic config" in str(exc)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clinic.toml"
        path.write_text(toml_document(document), encoding="utf-8")
        try:
            load_config_file(path)
        except ClinicConfigError as exc:
            assert str(path) in str(exc)


@FUZZ
@given(content=raw_files)
def test_any_bytes_as_a_clinic_config_give_clinic_config_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clinic.toml"
        path.write_bytes(content)
        try:
            load_config_file(path)
        except ClinicConfigError as exc:
            assert str(path) in str(exc)


def test_the_sample_config_and_shipped_files_load() -> None:
    """The starting points of the mutations are valid, so a refusal above comes from the mutation."""
    parse_config(SAMPLE_CONFIG)
    load_rules(DEFAULT_PATH)
    assert load_protocols(PROTOCOLS_DIR)
