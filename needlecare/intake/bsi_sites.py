"""The coded bone stress injury sites a session may name (``bsi_site_code``), each with its risk class.

Loaded from ``needlecare/data/bsi_sites.toml`` and validated when loaded (domain.md §1.2, §1.3).
"""

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from needlecare.core.datafile import load_toml

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "bsi_sites.toml"
_SLUG = re.compile(r"^[a-z0-9_]+$")


class BsiSitesError(ValueError):
    """A site list that cannot be used; the message names the file and the field."""


class BsiSite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    risk_class: Literal["high", "low"]


class BsiSites(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1)
    sites: dict[str, BsiSite] = Field(min_length=1)

    @field_validator("sites")
    @classmethod
    def _slugs(cls, sites: dict[str, BsiSite]) -> dict[str, BsiSite]:
        bad = [code for code in sites if not _SLUG.match(code)]
        if bad:
            raise ValueError(f"site codes must be lower-case slugs (a-z, 0-9, _): {', '.join(bad)}")
        return sites


def load_bsi_sites(path: Path) -> BsiSites:
    return load_toml(path, BsiSites, BsiSitesError)


@lru_cache(maxsize=4)
def get_bsi_sites(path: Path = DEFAULT_PATH) -> BsiSites:
    return load_bsi_sites(path)
