"""The papermill runner: parameter injection, kernel override, manifest, failure reports."""

import json

import nbformat
import pytest

from hcp_lib.config import ParameterError
from hcp_lib.pipeline import PipelineError, run_pipeline, select_notebooks


def _notebook(path, parameters_source, body_sources, kernel="some-kernel-that-does-not-exist"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    params = nbformat.v4.new_code_cell(parameters_source)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), params] + [nbformat.v4.new_code_cell(s) for s in body_sources]
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(
        folder / "01_first.ipynb",
        "run_dir = ''\nseed = 0\ncorpus = 'all'",
        ["import json, pathlib, sys\n"
         "pathlib.Path(run_dir, 'first.json').write_text(json.dumps({'seed': seed, 'corpus': corpus, 'python': sys.executable}))"],
    )
    _notebook(
        folder / "02_second.ipynb",
        "run_dir = ''\nscale = 'small'",
        ["import os, pathlib", "pathlib.Path(run_dir, 'second.txt').write_text(scale)",
         "os.write(2, b'start-up chatter of some library\\n')"],
    )
    return folder


def test_runs_in_order_with_injected_parameters_on_this_python(notebooks, tmp_path):
    import sys

    out = tmp_path / "run"
    manifest = run_pipeline(scale="tiny", seed=7, out=out, overrides={"corpus": "v01"},
                            notebooks_dir=notebooks, progress=False)
    first = json.loads((out / "first.json").read_text())
    assert first["seed"] == 7 and first["corpus"] == "v01"
    # The notebook's metadata names a kernel that exists nowhere: the runner used this interpreter.
    assert first["python"] == sys.executable
    assert (out / "second.txt").read_text() == "tiny"
    assert [n["notebook"] for n in manifest["notebooks"]] == ["01_first.ipynb", "02_second.ipynb"]
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["status"] == "ok"
    assert saved["parameters"]["seed"] == 7 and saved["parameters"]["scale"] == "tiny"
    assert saved["packages"]["papermill"]
    assert all(n["status"] == "ok" and n["wall_seconds"] > 0 and n["peak_memory_mb"] > 0 for n in saved["notebooks"])
    assert "commit" in saved["git"]
    assert "start-up chatter of some library" in (out / "logs" / "02_second.log").read_text()


def test_first_failure_stops_and_names_notebook_cell_and_exception(notebooks, tmp_path):
    _notebook(notebooks / "02_second.ipynb", "run_dir = ''", ["x = 1", "raise ValueError('boom in the second notebook')"])
    _notebook(notebooks / "03_third.ipynb", "run_dir = ''", ["open(run_dir + '/third.txt', 'w').write('ran')"])
    out = tmp_path / "run"
    with pytest.raises(PipelineError) as caught:
        run_pipeline(scale="tiny", out=out, notebooks_dir=notebooks, progress=False)
    message = str(caught.value)
    assert "02_second.ipynb" in message and "cell 5 of the executed notebook (In [4])" in message and "ValueError: boom in the second notebook" in message
    assert (out / "02_second.ipynb").exists(), "the failed executed notebook is kept for inspection"
    assert not (out / "third.txt").exists(), "the run stops at the first failure"
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["status"] == "failed"
    assert [n["status"] for n in saved["notebooks"]] == ["ok", "failed", "pending"]


def test_invalid_parameters_fail_before_any_notebook_runs(notebooks, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ParameterError, match="bogus"):
        run_pipeline(out=out, overrides={"bogus": "1"}, notebooks_dir=notebooks, progress=False)
    assert not out.exists()


def test_undeclared_notebook_parameter_is_refused(notebooks, tmp_path):
    _notebook(notebooks / "02_second.ipynb", "run_dir = ''\nmystery_knob = 3", ["pass"])
    with pytest.raises(PipelineError, match="02_second.ipynb.*'mystery_knob'"):
        run_pipeline(out=tmp_path / "run", notebooks_dir=notebooks, progress=False)


def test_only_runs_one_notebook_against_an_existing_run(notebooks, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(PipelineError, match="does not exist"):
        run_pipeline(out=out, only="02", notebooks_dir=notebooks, progress=False)
    run_pipeline(scale="tiny", out=out, notebooks_dir=notebooks, progress=False)
    (out / "second.txt").unlink()
    manifest = run_pipeline(scale="small", out=out, only="2", notebooks_dir=notebooks, progress=False)
    assert (out / "second.txt").read_text() == "small"
    assert {n["notebook"] for n in manifest["notebooks"]} == {"01_first.ipynb", "02_second.ipynb"}
    with pytest.raises(PipelineError, match="no notebook numbered 09; the notebooks are 01, 02"):
        select_notebooks(sorted(notebooks.glob("*.ipynb")), "9")
