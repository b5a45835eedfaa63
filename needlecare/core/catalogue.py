"""The clinical catalogue (injuries, regions, ROM measures): loaded from TOML and validated."""

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from needlecare.core.datafile import load_toml

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "catalogue.toml"


class CatalogueError(ValueError):
    """A catalogue file that cannot be used; the message names the file and the field."""


class Region(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    trunk: bool


class Measure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    unit: str
    min: float
    max: float
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _range(self) -> "Measure":
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class Injury(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    measures: list[str]


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str
    regions: dict[str, Region]
    measures: dict[str, Measure]
    injuries: dict[str, Injury]

    @model_validator(mode="after")
    def _references(self) -> "Catalogue":
        for slug, injury in self.injuries.items():
            for measure in injury.measures:
                if measure not in self.measures:
                    raise ValueError(f"injuries.{slug}.measures names '{measure}', which is not under [measures]")
        return self

    def is_trunk(self, regions: list[str]) -> bool:
        return any(self.regions[r].trunk for r in regions if r in self.regions)


def load_catalogue(path: Path) -> Catalogue:
    return load_toml(path, Catalogue, CatalogueError)


@lru_cache(maxsize=4)
def get_catalogue(path: Path = DEFAULT_PATH) -> Catalogue:
    return load_catalogue(path)
