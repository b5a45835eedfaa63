"""Per-clinic settings a clinic can change without code: alert routes, SLAs, opening hours and the emergency
number patients are told to call.

Stored as JSON in ``clinic.config`` (NULL means every default below) and set from a TOML file with
``needlecare clinic configure ID --file clinic.toml``. The file is checked when loaded; every problem
names the field and what is allowed. Example (every key optional)::

    emergency_number = "999"        # what patients are told to dial, tap to call; by default the number of the
                                    # clinic's country (its phone number or time zone: data/emergency_numbers.toml)

    [[alerts]]                      # Apprise URLs; `tags` route tiers to them
    url = "mailto://user:pass@smtp.example.org?to=on-call@clinic.example"
    tags = ["emergency", "same_day", "next_bd"]

    [[alerts]]
    url = "json://alerts.clinic.example/needlecare"
    tags = ["emergency", "same_day", "backup"]   # `backup` = re-alerts after the SLA passes

    [sla]                           # how long until an unacknowledged case re-alerts the backup
    emergency_minutes = 30          # wall-clock minutes
    same_day_working_hours = 4      # domain.md §6: acknowledge by the end of the clinic day, target <= 4 working h
    next_bd_working_hours = 10      # about one clinic day

    [reporting]                     # small-number rules for reports (domain.md §5.2; see suppression.py)
    min_count_shown = 11
    min_paired = 20

    [opening_hours]                 # in the clinic's time zone
    days = ["mon", "tue", "wed", "thu", "fri"]
    open = "08:00"
    close = "18:00"

With no ``[[alerts]]`` the clinic's own email address (``clinic.email``) gets every alert, backup included,
through the application's mail transport.
"""

import tomllib
from datetime import time
from pathlib import Path
from typing import Any, Literal

import apprise
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from needlecare.core.rendering import EMERGENCY_NUMBER
from needlecare.safety.rules.variables import TIERS

ESCALATION_TIERS = ("EMERGENCY", "SAME_DAY", "NEXT_BD")  # tiers that open a case; INFO only reaches the dashboard


class ReportPolicy(BaseModel):
    """Per-clinic reporting thresholds; the defaults are domain.md §5.2's proposed product rule [E]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_count_shown: int = Field(
        default=11,
        ge=1,
        description=(
            "Counts from 1 to this minus 1 are shown as '< N'; 0 is shown. domain.md §5.2 rule 1 [E], from the CMS "
            "cell-size suppression policy: no cell of 1-10 [V]. 1 turns count suppression off."
        ),
    )
    min_paired: int = Field(
        default=20,
        ge=2,
        description=(
            "Fewest paired answers for a mean change, median/IQR or responder rate; fewer shows 'insufficient "
            "data'. domain.md §5.2 rule 2 [E] (Wilson 95 % CI for 50 % at n = 20 runs about 30-70 %)."
        ),
    )
    km_min_patients: int = Field(
        default=20, ge=1, description="Fewest patients for a Kaplan-Meier median. domain.md §5.1 and §5.2 rule 2 [E]."
    )
    km_min_events: int = Field(
        default=10, ge=1, description="Fewest recovery events for a Kaplan-Meier median. domain.md §5.1 and §5.2 [E]."
    )
    hide_small_percentages: bool = Field(
        default=True,
        description="Hide a percentage whose numerator, denominator or complement is a suppressed count (§5.2 rule 1).",
    )
    hide_small_complements: bool = Field(
        default=True,
        description=(
            "Also hide a share whose complement (total - part) is 1-10, since share × total gives it back "
            "(CMS: no formula may let a 1-10 cell be derived). With it, a responder rate at n = 20-21 shows only "
            "at 0 % or 100 %."
        ),
    )
    complementary: bool = Field(
        default=True,
        description="Suppress a second cell so a suppressed count cannot be found from a shown total (§5.2 rule 1).",
    )
    decimals: int = Field(default=1, ge=0, le=6, description="Decimal places in displayed means, medians and shares.")

    def small(self, count: int) -> bool:
        """True for a count that must not be shown (1 .. min_count_shown - 1)."""
        return 0 < count < self.min_count_shown

    @property
    def small_text(self) -> str:
        return f"< {self.min_count_shown}"


TAGS = ("emergency", "same_day", "next_bd", "backup")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def tier_tag(tier: str) -> str:
    """The Apprise tag that routes a tier: EMERGENCY -> emergency."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}")
    return tier.lower()


class ClinicConfigError(ValueError):
    """A clinic config that cannot be used; the message lists every problem."""


class AlertRoute(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    url: str = Field(min_length=3, description="Any Apprise URL (mailto://, json://, slack://, twilio://, ...)")
    tags: list[str] = Field(min_length=1, description=f"Which alerts go here: any of {', '.join(TAGS)}")

    @field_validator("url")
    @classmethod
    def _parsable(cls, url: str) -> str:
        if apprise.Apprise.instantiate(url) is None:
            raise ValueError(
                "Apprise cannot read this URL; see https://github.com/caronc/apprise/wiki for the URL of each service"
            )
        return url

    @field_validator("tags")
    @classmethod
    def _known_tags(cls, tags: list[str]) -> list[str]:
        unknown = [tag for tag in tags if tag not in TAGS]
        if unknown:
            raise ValueError(f"unknown tag(s) {', '.join(unknown)}; allowed: {', '.join(TAGS)}")
        return tags


class Sla(BaseModel):
    """Time to acknowledge before the backup is alerted. Values are [E] proposals (domain.md §6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    emergency_minutes: float = Field(default=30, gt=0, le=24 * 60, description="wall-clock minutes")
    same_day_working_hours: float = Field(default=4, gt=0, le=24, description="domain.md §6: ≤ 4 working hours")
    next_bd_working_hours: float = Field(default=10, gt=0, le=72, description="about one clinic day [E]")


class OpeningHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    days: list[Day] = Field(default_factory=lambda: list(DAYS[:5]), min_length=1)
    open: time = time(8, 0)
    close: time = time(18, 0)

    @model_validator(mode="after")
    def _order(self) -> "OpeningHours":
        if self.close <= self.open:
            raise ValueError(f"close ({self.close:%H:%M}) must be later than open ({self.open:%H:%M})")
        return self


class ClinicConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alerts: list[AlertRoute] = Field(default_factory=list, description="empty: the clinic's email gets every alert")
    sla: Sla = Sla()
    opening_hours: OpeningHours = OpeningHours()
    reporting: ReportPolicy = ReportPolicy()
    emergency_number: str | None = Field(
        default=None,
        description=(
            "What patients are told to dial in an emergency, e.g. 911 or 112; None: the number of the clinic's "
            "country (needlecare.core.rendering.emergency_number)"
        ),
    )

    @field_validator("emergency_number", mode="before")
    @classmethod
    def _dialable(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            raise ValueError('write it in quotes, e.g. "911": as a number, 000 would lose its zeros')
        if isinstance(value, str) and not EMERGENCY_NUMBER.match(value):
            raise ValueError("must be the 2 to 6 digits a patient dials, e.g. 911, 999, 112 or 000")
        return value

    @model_validator(mode="after")
    def _every_tier_routed(self) -> "ClinicConfig":
        if not self.alerts:
            return self
        routed = {tag for route in self.alerts for tag in route.tags}
        missing = [tier_tag(tier) for tier in ESCALATION_TIERS if tier_tag(tier) not in routed]
        if missing:
            raise ValueError(
                f"no alert route for {', '.join(missing)}: every tier that opens a case must reach someone; "
                "add the tag to a route"
            )
        return self


def _problems(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"])
        lines.append(f"{source}: {where + ': ' if where else ''}{err['msg'].removeprefix('Value error, ')}")
    return "\n".join(lines)


def parse_config(data: dict[str, Any], *, source: str = "clinic config") -> ClinicConfig:
    try:
        return ClinicConfig.model_validate(data)
    except ValidationError as exc:
        raise ClinicConfigError(_problems(source, exc)) from None


def load_config_file(path: Path) -> ClinicConfig:
    """Read and check a clinic config TOML file; raises ClinicConfigError naming the file and field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClinicConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClinicConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ClinicConfigError(f"{path}: cannot be read: {exc}") from None
    return parse_config(raw, source=str(path))


def config_of(stored: dict[str, Any] | None) -> ClinicConfig:
    """The config stored on a clinic row (checked when it was stored); defaults when there is none."""
    return ClinicConfig() if not stored else ClinicConfig.model_validate(stored)


def to_stored(config: ClinicConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")
