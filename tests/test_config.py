"""Parameter validation: unknown keys, wrong types and out-of-range values fail at once."""

import pytest

from hcp_lib import config
from hcp_lib.config import ParameterError, resolve_parameters


def test_defaults_resolve_at_every_scale():
    for scale in config.SCALES:
        values = resolve_parameters(scale=scale, seed=1)
        assert values["scale"] == scale and values["seed"] == 1
        assert set(values) == set(config.PARAMS)
        for name, param in config.PARAMS.items():
            if name not in config.RUNNER_PARAMS:
                assert param.coerce(values[name]) == values[name], name


def test_unknown_key_is_named_with_the_known_ones():
    with pytest.raises(ParameterError, match="unknown parameter 'bogus'.*corpus"):
        resolve_parameters(overrides={"bogus": "1"})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"corpus": "v02"}, r"'corpus': got 'v02'; expected one of 'all', 'v01'"),
        ({"pubmed_live": "maybe"}, r"'pubmed_live': got 'maybe'; expected true or false"),
        ({"pubmed_max_per_query": "0"}, r"'pubmed_max_per_query': got '0'; expected an integer in \[1, 10000\]"),
        ({"pubmed_max_per_query": "2.5"}, r"'pubmed_max_per_query'.*an integer"),
        ({"run_dir": "/tmp/x"}, r"'run_dir' is set with its own option \(--out\)"),
    ],
)
def test_invalid_values_name_the_key_and_allowed_values(overrides, message):
    with pytest.raises(ParameterError, match=message):
        resolve_parameters(overrides=overrides)


def test_strings_from_the_command_line_are_typed():
    values = resolve_parameters(overrides={"pubmed_live": "true", "pubmed_max_per_query": "25", "corpus": "all"})
    assert values["pubmed_live"] is True
    assert values["pubmed_max_per_query"] == 25
    assert resolve_parameters(overrides={"corpus": "v01", "lda_passes": "3"})["lda_passes"] == 3


def test_scale_and_seed_are_checked():
    with pytest.raises(ParameterError, match="'scale': got 'huge'"):
        resolve_parameters(scale="huge")
    with pytest.raises(ParameterError, match="'seed': got '-1'"):
        resolve_parameters(seed="-1")


def test_scale_defaults_apply_unless_overridden():
    param = config.Param("n", "int", 10, "test", minimum=1, scale_defaults={"tiny": 2})
    assert param.default_for("tiny") == 2
    assert param.default_for("small") == 10


def test_none_only_where_allowed():
    optional = config.Param("k", "int", None, "test", minimum=2, allow_none=True)
    assert optional.coerce("none") is None
    assert optional.coerce("5") == 5
    with pytest.raises(ParameterError, match="'k': got '1'; expected an integer in \\[2, inf\\] or none"):
        optional.coerce("1")
    with pytest.raises(ParameterError):
        config.PARAMS["seed"].coerce(None)


def test_nan_and_bool_are_not_numbers():
    number = config.Param("x", "float", 0.5, "test", minimum=0, maximum=1)
    with pytest.raises(ParameterError):
        number.coerce("nan")
    with pytest.raises(ParameterError):
        config.PARAMS["seed"].coerce(True)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"world_start": "not-a-date"}, r"'world_start': got 'not-a-date'; expected an ISO date such as 2025-01-06"),
        ({"world_start": "2025-02-30"}, r"'world_start': got '2025-02-30'"),
        ({"world_start": "2025-01-06T09:00"}, r"'world_start'.*an ISO date"),
        (
            {"explorer_model": "bogus_model"},
            r"'explorer_model': got 'bogus_model'; expected 'auto' or a model the run "
            r"evaluates: oracle, random, .*hybrid, tabular, .*v0\.1_classifier",
        ),
        ({"plan_model": "hybrid_no_cf", "hybrid_ablations": "false"}, r"'plan_model': got 'hybrid_no_cf'"),
        (
            {"spacy_model": "en_core_not_installed"},
            r"'spacy_model': got 'en_core_not_installed'; expected 'auto', "
            r"'blank' or the name of an installed spaCy pipeline",
        ),
        ({"pubmed_email": "nobody"}, r"'pubmed_email': got 'nobody'; expected an e-mail address"),
        ({"corpus": "v01", "pubmed_live": "true"}, r"'corpus': 'v01' .* cannot be combined with pubmed_live=true"),
        (
            {"topic_sweep_min": "12", "topic_sweep_max": "8"},
            r"'topic_sweep_min': got 12; it must not exceed "
            r"topic_sweep_max \(8\)",
        ),
        ({"horizon_days": "60", "world_holdout_weeks": "4"}, r"'horizon_days': got 60; .* at least 84"),
    ],
)
def test_strings_dates_names_and_combinations_are_checked_before_the_run(overrides, message):
    with pytest.raises(ParameterError, match=message):
        resolve_parameters(overrides=overrides)


def test_every_model_the_evaluation_names_is_accepted_where_a_model_is_named():
    for name in config.evaluated_model_names():
        values = resolve_parameters(overrides={"explorer_model": name, "plan_model": name})
        assert values["explorer_model"] == values["plan_model"] == name
    assert resolve_parameters(overrides={"world_start": "2024-02-29"})["world_start"] == "2024-02-29"
    assert (
        resolve_parameters(overrides={"pubmed_email": "analyst@example.org"})["pubmed_email"] == "analyst@example.org"
    )
