from pathlib import Path

import pytest

from needlecare.core.catalogue import DEFAULT_PATH, CatalogueError, get_catalogue, load_catalogue

DOMAIN_SLUGS = {
    "achilles_tendinopathy",
    "plantar_fasciitis",
    "mtss",
    "pfps",
    "itbs",
    "hamstring_strain",
    "calf_strain",
    "piriformis_syndrome",
    "gluteal_tendinopathy",
    "bone_stress_injury",
}


def test_shipped_catalogue_has_every_injury_of_the_domain_reference() -> None:
    catalogue = get_catalogue()
    assert set(catalogue.injuries) == DOMAIN_SLUGS
    assert catalogue.is_trunk(["calf", "neck"]) and not catalogue.is_trunk(["calf", "shin"])
    assert all(m.source for m in catalogue.measures.values())


def test_broken_reference_names_file_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "catalogue.toml"
    broken.write_text(DEFAULT_PATH.read_text().replace('measures = ["ober_deg"]', 'measures = ["ober"]'))
    with pytest.raises(CatalogueError) as info:
        load_catalogue(broken)
    assert str(broken) in str(info.value) and "injuries.itbs.measures" in str(info.value)


def test_bad_range_and_bad_toml_are_refused(tmp_path: Path) -> None:
    bad_range = tmp_path / "a.toml"
    bad_range.write_text(DEFAULT_PATH.read_text().replace("min = 0, max = 25", "min = 30, max = 25"))
    with pytest.raises(CatalogueError, match=r"measures\.wblt_cm.*min \(30.0\) must be below max"):
        load_catalogue(bad_range)
    not_toml = tmp_path / "b.toml"
    not_toml.write_text("[regions\n")
    with pytest.raises(CatalogueError, match="not valid TOML"):
        load_catalogue(not_toml)
    with pytest.raises(CatalogueError, match="file not found"):
        load_catalogue(tmp_path / "missing.toml")
