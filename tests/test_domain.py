"""The shared vocabularies are complete and consistent."""

import re

from hcp_lib import domain


def test_every_specialty_rates_every_area_in_unit_interval():
    assert set(domain.AREA_SPECIALTY_RELEVANCE) == set(domain.SPECIALTIES)
    for specialty, row in domain.AREA_SPECIALTY_RELEVANCE.items():
        assert set(row) == set(domain.THERAPEUTIC_AREAS), specialty
        assert all(0 <= v <= 1 for v in row.values()), specialty
        assert max(row.values()) >= 0.6, f"{specialty} has no main area"


def test_taxonomy_codes_have_the_nucc_shape():
    codes = [code for _, code in domain.SPECIALTIES.values()]
    assert len(set(codes)) == len(codes)
    assert all(re.fullmatch(r"\d{3}[0-9A-Z]{6}X", code) for code in codes)


def test_channels_have_labels():
    assert set(domain.CHANNEL_LABELS) == set(domain.CHANNELS)
    assert len(domain.CHANNELS) == 5
