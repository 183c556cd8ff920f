"""requirements.txt, environment.yml and constraints.txt must not drift apart."""

import re

from hcp_lib.config import PROJECT_ROOT


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip().lstrip("- ").strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_every_direct_dependency_is_pinned():
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        assert not line or "==" in line, f"requirements.txt: {line!r} is not pinned with =="


def test_environment_yml_matches_requirements():
    requirements = _pins((PROJECT_ROOT / "requirements.txt").read_text().splitlines())
    environment = _pins((PROJECT_ROOT / "environment.yml").read_text().splitlines())
    assert requirements, "no pins found in requirements.txt"
    assert environment == requirements
    assert "python=3.11" in (PROJECT_ROOT / "environment.yml").read_text()


def test_constraints_agree_with_requirements():
    requirements = _pins((PROJECT_ROOT / "requirements.txt").read_text().splitlines())
    constraints = _pins((PROJECT_ROOT / "constraints.txt").read_text().splitlines())
    disagree = {n: (v, constraints.get(n)) for n, v in requirements.items() if constraints.get(n) != v}
    assert not disagree, f"requirements.txt and constraints.txt disagree (run `make lock`): {disagree}"


def test_jupyter_book_is_the_1x_line():
    requirements = _pins((PROJECT_ROOT / "requirements.txt").read_text().splitlines())
    assert requirements["jupyter-book"].startswith("1.")
