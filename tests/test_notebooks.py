"""Notebooks are committed clean and declare only known parameters; the CLI refuses bad ones fast."""

import json

import pytest

from hcp_lib import config
from hcp_lib.pipeline import declared_parameters, list_notebooks

from .conftest import run_cli


@pytest.mark.parametrize("notebook", list_notebooks(), ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(notebook):
    nb = json.loads(notebook.read_text())
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{notebook.name}: cells {dirty} carry outputs; commit notebooks clean"


@pytest.mark.parametrize("notebook", list_notebooks(), ids=lambda p: p.name)
def test_notebook_has_one_title_and_a_parameters_cell(notebook):
    nb = json.loads(notebook.read_text())
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and first.startswith("# ")
    titles = [
        line
        for c in nb["cells"]
        if c["cell_type"] == "markdown"
        for line in "".join(c["source"]).splitlines()
        if line.startswith("# ")
    ]
    assert len(titles) == 1, f"{notebook.name}: the book needs exactly one H1, found {titles}"
    declared = declared_parameters(notebook)
    assert set(config.RUNNER_PARAMS) <= set(declared), f"{notebook.name} must declare run_dir, scale and seed"
    assert set(declared) <= set(config.PARAMS)


def test_every_parameter_is_used_by_some_notebook():
    declared = set().union(*(declared_parameters(nb) for nb in list_notebooks()))
    assert set(config.PARAMS) - declared == set()


def test_cli_refuses_an_unknown_parameter_naming_it(tmp_path):
    result = run_cli("run", "--scale", "tiny", "--out", str(tmp_path / "run"), "-p", "bogus=1", timeout=60)
    assert result.returncode == 2
    assert "unknown parameter 'bogus'" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "pair, message",
    [
        ("explorer_model=bogus_model", "parameter 'explorer_model': got 'bogus_model'; expected 'auto' or a model"),
        ("world_start=not-a-date", "parameter 'world_start': got 'not-a-date'; expected an ISO date"),
    ],
)
def test_cli_refuses_names_and_dates_before_the_first_notebook(tmp_path, pair, message):
    result = run_cli("run", "--scale", "tiny", "--out", str(tmp_path / "run"), "-p", pair, timeout=60)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists(), "nothing is written before the parameters are accepted"


def test_cli_gives_one_line_for_an_out_that_cannot_be_the_run_folder(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    for out, message in ((a_file, "is a file, not a folder"), (a_file / "run", "cannot create the folder")):
        result = run_cli("run", "--scale", "tiny", "--out", str(out), timeout=60)
        assert result.returncode == 1 and message in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert a_file.read_text() == "keep me"
    result = run_cli("book", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "book"), timeout=60)
    assert result.returncode == 1 and "no manifest.json" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "book").exists()


def test_cli_refuses_a_malformed_pair():
    result = run_cli("run", "-p", "n_topics", timeout=60)
    assert result.returncode == 2 and "expected key=value" in result.stderr
