"""numpydoc-style docstrings on the public API of the metrics and of the recommender interface.

Every public function of :mod:`hcp_lib.metrics` and every public class, method and function
of :mod:`hcp_lib.models.base` (members defined in that module, no leading underscore) is
checked with ``numpydoc.validate.validate``; only the error codes in :data:`ENFORCED` fail
the test (See Also / Examples sections and the "infinitive verb" summary rule are not asked
for).
"""

from __future__ import annotations

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

MODULES = ("hcp_lib.metrics", "hcp_lib.models.base")

#: numpydoc error codes that fail the test
ENFORCED = {
    "GL01",  # summary starts right after (or on the line after) the opening quotes
    "GL02",  # closing quotes on their own line
    "GL03",  # no double blank lines
    "GL06",  # unknown section
    "GL07",  # sections in the wrong order
    "GL08",  # no docstring
    "SS01",  # no summary
    "SS02",  # summary does not start with a capital letter
    "SS03",  # summary does not end with a period
    "SS04",  # summary has leading whitespace
    "SS06",  # summary does not fit on one line
    "ES01",  # no extended summary
    "PR01",  # parameters not documented
    "PR02",  # unknown parameters documented
    "PR03",  # parameters in the wrong order
    "PR04",  # parameter has no type
    "PR05",  # parameter type ends with a period
    "PR06",  # parameter type spelled e.g. "integer" rather than "int"
    "PR07",  # parameter has no description
    "PR08",  # parameter description does not start with a capital letter
    "PR09",  # parameter description does not end with a period
    "PR10",  # no space before the colon of "name : type"
    "RT01",  # no Returns section (numpydoc skips it for classes and functions returning None)
    "RT02",  # first line of Returns holds more than the type (for a single return value)
    "RT03",  # return value has no description
    "RT04",  # return value description does not start with a capital letter
    "RT05",  # return value description does not end with a period
}


def public_names(module_name: str) -> list[str]:
    """Dotted names of the public functions, classes and class methods defined in a module."""
    module = importlib.import_module(module_name)
    names = []
    for name, member in inspect.getmembers(module):
        if name.startswith("_") or getattr(member, "__module__", None) != module_name:
            continue
        if inspect.isfunction(member):
            names.append(f"{module_name}.{name}")
        elif inspect.isclass(member):
            names.append(f"{module_name}.{name}")
            for attr, value in vars(member).items():  # methods defined on the class itself
                if not attr.startswith("_") and inspect.isfunction(value):
                    names.append(f"{module_name}.{name}.{attr}")
    return sorted(names)


PUBLIC = [name for module_name in MODULES for name in public_names(module_name)]


def test_discovery_finds_the_public_api():
    # guards against the parametrisation silently running over nothing
    assert "hcp_lib.metrics.ndcg_at_k" in PUBLIC
    assert "hcp_lib.metrics.bootstrap_ratio" in PUBLIC
    assert "hcp_lib.models.base.Recommender" in PUBLIC
    assert "hcp_lib.models.base.Recommender.fit" in PUBLIC
    assert "hcp_lib.models.base.top_n" in PUBLIC
    assert not [name for name in PUBLIC if name.rsplit(".", 1)[-1].startswith("_")]


@pytest.mark.parametrize("name", PUBLIC)
def test_numpydoc_docstring(name):
    result = numpydoc_validate.validate(name)
    errors = [(code, message) for code, message in result["errors"] if code in ENFORCED]
    assert not errors, (
        f"{name} (line {result.get('file_line')} of {result.get('file')}) breaks numpydoc:\n"
        + "\n".join(f"  {code}: {message}" for code, message in errors)
    )
