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


def test_model_names_are_declared_once_and_match_the_models():
    from hcp_lib import config
    from hcp_lib.models import baselines, hybrid

    assert tuple(baselines.content_factories(seed=0, item_features=None)) == domain.CONTENT_BASELINES
    assert tuple(baselines.channel_factories()) == domain.CHANNEL_BASELINES
    assert tuple(hybrid.ABLATIONS) == domain.HYBRID_ABLATIONS
    names = config.evaluated_model_names()
    assert len(names) == len(set(names))
    assert {domain.ORACLE_NAME, domain.HYBRID_NAME, domain.TABULAR_NAME, domain.V01_NAME} <= set(names)
    assert "hybrid_no_cf" in names and "hybrid_no_cf" not in config.evaluated_model_names(hybrid_ablations=False)


def test_every_model_has_its_own_colour_in_every_figure():
    from hcp_lib import config, plots

    names = config.evaluated_model_names()
    colours = plots.model_colours(names)
    assert len(set(colours.values())) == len(names)
    # the same model keeps its colour whatever else a figure shows
    assert plots.model_colours(["tabular", "hybrid"])["hybrid"] == colours["hybrid"]
    extra = plots.model_colours(["hybrid", "my_model"])
    assert extra["my_model"] not in colours.values()
