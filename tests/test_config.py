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
    values = resolve_parameters(overrides={"pubmed_live": "true", "pubmed_max_per_query": "25", "corpus": "v01"})
    assert values["pubmed_live"] is True
    assert values["pubmed_max_per_query"] == 25
    assert values["corpus"] == "v01"


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
