"""One strict Jinja environment for emails (<name>.subject.j2, <name>.txt.j2, <name>.html.j2), and what patients
read in emails and on survey pages beside the words: phone numbers grouped as people write them, place names
instead of time-zone ids, and the emergency number of a clinic (its own setting, else its country's from
``needlecare/data/emergency_numbers.toml``)."""

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models import Clinic
from needlecare.core.datafile import load_toml

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
EMERGENCY_NUMBERS_PATH = Path(__file__).resolve().parents[1] / "data" / "emergency_numbers.toml"
SYSTEM_ZONE_TAB = Path("/usr/share/zoneinfo/zone.tab")

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PUNCTUATION = re.compile(r"[\s().-]")
EMERGENCY_NUMBER = re.compile(r"^[0-9]{2,6}$")
_UTC_NAMES = frozenset(
    {"UTC", "UCT", "Universal", "Zulu", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich"}
    | {f"Etc/{name}" for name in ("UTC", "UCT", "Universal", "Zulu", "GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich")}
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def add_filters(env: Environment) -> Environment:
    """``phone`` (display form), ``tel`` (a tel: URI) and ``place_time`` ("New York time") for templates."""
    env.filters["phone"] = format_phone
    env.filters["tel"] = tel_uri
    env.filters["place_time"] = place_time
    return env


@lru_cache(maxsize=4)
def environment(root: Path = TEMPLATES_DIR) -> Environment:
    return add_filters(
        Environment(
            loader=FileSystemLoader(str(root)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
    )


def render_email(name: str, context: dict[str, Any], root: Path = TEMPLATES_DIR) -> RenderedEmail:
    env = environment(root)
    subject = env.get_template(f"emails/{name}.subject.j2").render(context)
    return RenderedEmail(
        subject=" ".join(subject.split()),
        text=env.get_template(f"emails/{name}.txt.j2").render(context),
        html=env.get_template(f"emails/{name}.html.j2").render(context),
    )


# ---- phone numbers ------------------------------------------------------------------------------------


def e164(value: str | None) -> str | None:
    """``value`` as E.164 (``+15550100200``) when it is one once spaces, dots, dashes and brackets go; else None."""
    if not value:
        return None
    compact = _PUNCTUATION.sub("", value.replace("(0)", ""))  # "+44 (0)20 ...": the trunk 0 is not dialled
    return compact if _E164.match(compact) else None


def format_phone(value: str | None) -> str:
    """A stored number as people write it: ``+1 555-010-0200`` (NANP), ``+44 20 7946 0958`` (UK), otherwise the
    country code apart (``+49 301234567``) when it is a known one. Anything that is not E.164 is left as typed."""
    if not value:
        return ""
    number = e164(value)
    if number is None:
        return value.strip()
    digits = number[1:]
    if digits.startswith("1") and len(digits) == 11:
        return f"+1 {digits[1:4]}-{digits[4:7]}-{digits[7:]}"
    if digits.startswith("44") and len(digits) == 12:
        return "+44 " + _uk_national(digits[2:])
    code = _calling_code(digits)
    return f"+{code} {digits[len(code) :]}" if code else number


def _uk_national(n: str) -> str:
    """Ten UK digits after +44, grouped as Ofcom's numbering plan writes them."""
    if n.startswith("2"):  # 2x xxxx xxxx: London, Southampton, Portsmouth, Coventry, Cardiff, Northern Ireland
        return f"{n[:2]} {n[2:6]} {n[6:]}"
    if n.startswith("7"):  # mobiles and personal numbers: 7xxx xxxxxx
        return f"{n[:4]} {n[4:]}"
    if n.startswith(("3", "8", "9")) or (n.startswith("1") and "1" in n[1:3]):  # 3xx, 8xx, 9xx, 11x, 1x1
        return f"{n[:3]} {n[3:6]} {n[6:]}"
    return f"{n[:4]} {n[4:]}"  # other geographic numbers: 1xxx xxxxxx


def _calling_code(digits: str) -> str | None:
    codes = {country.calling_code for country in get_emergency_numbers().countries.values()}
    for length in (3, 2, 1):
        if digits[:length] in codes:
            return digits[:length]
    return None


def tel_uri(value: str | None) -> str:
    """``tel:`` and the digits to dial (with the leading ``+`` when there is one); empty for no number."""
    if not value:
        return ""
    dial = e164(value) or re.sub(r"[^0-9+]", "", value)
    return f"tel:{dial[0]}{dial[1:].replace('+', '')}" if dial else ""


# ---- time zones ---------------------------------------------------------------------------------------


def place_time(zone: str) -> str:
    """A time zone as a place: ``America/New_York`` -> "New York time", ``Europe/London`` -> "London time".

    The last part of the IANA name, underscores as spaces (the tz database names a zone after its largest city);
    ``UTC`` and the fixed ``Etc/GMT+5`` kind as offsets from UTC (``Etc/GMT+5`` is five hours behind: "UTC-5").
    """
    if zone in _UTC_NAMES:
        return "UTC"
    fixed = re.fullmatch(r"(?:Etc/)?GMT([+-])(\d{1,2})", zone)
    if fixed:
        return f"UTC{'-' if fixed.group(1) == '+' else '+'}{int(fixed.group(2))}"
    place = zone.rsplit("/", 1)[-1].replace("_", " ")
    return f"{place} time"


@lru_cache(maxsize=1)
def zone_countries() -> dict[str, str]:
    """IANA zone -> ISO 3166 country code, from the tz database's zone.tab (the ``tzdata`` package's copy, else the
    system's). Empty when neither is there: then no country comes from a time zone."""
    try:
        text = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        try:
            text = SYSTEM_ZONE_TAB.read_text(encoding="utf-8")
        except OSError:
            return {}
    countries: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) >= 3:
            countries[fields[2]] = fields[0]
    return countries


# ---- emergency numbers --------------------------------------------------------------------------------


class EmergencyNumbersError(ValueError):
    """An emergency number file that cannot be used; the message names the file and the field."""


class Country(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    calling_code: str = Field(pattern=r"^[1-9][0-9]{0,2}$", description="E.164 country code, without '+'")
    number: str = Field(pattern=EMERGENCY_NUMBER.pattern, description="what to dial in an emergency")
    sources: list[str] = Field(min_length=1, description="keys of [sources]")


class EmergencyNumbers(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(min_length=1)
    sources: dict[str, str] = Field(min_length=1)
    countries: dict[str, Country] = Field(min_length=1)

    @model_validator(mode="after")
    def _checked(self) -> "EmergencyNumbers":
        for code, country in self.countries.items():
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError(f"countries.{code}: use the ISO 3166 two-letter code, e.g. GB")
            unknown = [key for key in country.sources if key not in self.sources]
            if unknown:
                raise ValueError(f"countries.{code}.sources: {', '.join(unknown)} not under [sources]")
        return self

    def by_phone(self, phone: str | None) -> list[str]:
        """The countries whose calling code starts ``phone`` (E.164), longest code first; [] when none."""
        number = e164(phone)
        if number is None:
            return []
        for length in (3, 2, 1):
            found = [code for code, c in self.countries.items() if c.calling_code == number[1 : 1 + length]]
            if found:
                return found
        return []


def load_emergency_numbers(path: Path) -> EmergencyNumbers:
    return load_toml(path, EmergencyNumbers, EmergencyNumbersError)


@lru_cache(maxsize=4)
def get_emergency_numbers(path: Path = EMERGENCY_NUMBERS_PATH) -> EmergencyNumbers:
    return load_emergency_numbers(path)


def country_emergency_number(phone: str | None, timezone: str, table: EmergencyNumbers | None = None) -> str | None:
    """The emergency number of the clinic's country, or None when the country or its number is not known.

    The country of the time zone wins when the phone number agrees with it (``+1`` is the United States, Canada
    and others) or there is no phone number; otherwise the phone number's country, if all its countries share
    one number.
    """
    table = table or get_emergency_numbers()
    by_phone = table.by_phone(phone)
    by_zone = zone_countries().get(timezone)
    if by_zone in table.countries and (not by_phone or by_zone in by_phone):
        return table.countries[by_zone].number
    numbers = {table.countries[code].number for code in by_phone}
    return numbers.pop() if len(numbers) == 1 else None


def emergency_number(clinic: Clinic) -> str | None:
    """The number a clinic's patients are told to call: the clinic's ``emergency_number`` setting (checked by
    ``needlecare.safety.clinic_config`` when stored), else its country's."""
    configured = (clinic.config or {}).get("emergency_number")
    if isinstance(configured, str) and EMERGENCY_NUMBER.match(configured):
        return configured
    return country_emergency_number(clinic.phone, clinic.timezone)
