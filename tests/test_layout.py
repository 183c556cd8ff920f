"""The package layout is the architecture: a lower layer never imports a higher one.

Every relative import of every module is read from its syntax tree, lazy imports inside
functions included, and checked against the layers ``hcp_lib/__init__.py`` states.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hcp_lib.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "hcp_lib"
FOUNDATIONS = {"config", "domain", "io", "split", "metrics", "reasons", "narrative", "plots", "tables", "progress"}
# layer of a module -> the layers it may import
ALLOWED = {
    "foundations": {"foundations"},
    "world": {"foundations", "world"},
    "models": {"foundations", "models"},
    "stages": {"foundations", "world", "models", "stages"},
    "runner": {"foundations", "runner"},
}


def layer(module: str) -> str:
    """``module`` is dotted below hcp_lib (``stages.cf``, ``config``)."""
    top = module.split(".")[0]
    if top in ("world", "models", "stages"):
        return top
    if top in FOUNDATIONS:
        return "foundations"
    if top in ("pipeline", "book", "__main__"):
        return "runner"
    raise AssertionError(f"hcp_lib.{module} is in no layer; add it to tests/test_layout.py and hcp_lib/__init__.py")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            continue
        found[".".join(parts)] = path
    return found


def imported(module: str, path: Path) -> set[str]:
    """The hcp_lib modules ``module`` imports (dotted below hcp_lib)."""
    package = module.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            if node.module:
                targets.add(".".join([*base, node.module]))
            else:
                targets.update(".".join([*base, alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hcp_lib."):
            targets.add(node.module.removeprefix("hcp_lib."))
    return {t for t in targets if t and t not in ("world", "models", "stages")}


@pytest.mark.parametrize("module", list(modules()))
def test_no_module_imports_a_higher_layer(module):
    own = layer(module)
    wrong = sorted(t for t in imported(module, modules()[module]) if layer(t) not in ALLOWED[own])
    assert not wrong, f"hcp_lib.{module} ({own}) imports {wrong}; it may import only {sorted(ALLOWED[own])}"


def test_domain_depends_on_nothing_else_in_the_package():
    assert imported("domain", PACKAGE / "domain.py") == set()


def test_every_module_is_in_a_layer_and_every_stage_has_a_notebook():
    for module in modules():
        layer(module)
    notebooks = {p.name[:2] for p in (PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    stages = {m for m in modules() if m.startswith("stages.")}
    assert len(stages) == len(notebooks), f"one stage module per notebook: {sorted(stages)} for {sorted(notebooks)}"


def test_the_layer_check_sees_a_violation():
    # a world module importing a stage would be caught (the check is not vacuous)
    assert "stages" not in ALLOWED[layer("world.synth")]
    assert imported("stages.synthesis", PACKAGE / "stages" / "synthesis.py") >= {"stages.pubmed", "world.synth"}
