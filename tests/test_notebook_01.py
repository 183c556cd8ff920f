"""End-to-end run of notebook 01 (ingestion) through papermill at scale tiny."""

from __future__ import annotations

import json

import nbformat
import pytest

from hcp_lib import config, pipeline
from hcp_lib.stages import pubmed

pytestmark = pytest.mark.slow


def test_notebook_01_writes_articles_metrics_and_shows_them(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    manifest = pipeline.run_pipeline(scale="tiny", out=run_dir, only="01", progress=False)
    assert [nb["status"] for nb in manifest["notebooks"]] == ["ok"] + ["pending"] * (len(pipeline.list_notebooks()) - 1)
    assert manifest["status"] == "incomplete"

    articles = pubmed.read_articles(run_dir)
    metrics = json.loads((config.RunDir(run_dir).metrics / "ingestion.json").read_text())
    assert metrics["rows_out"] == len(articles) and not articles["pmid"].duplicated().any()
    assert metrics["mode"] == "snapshot" and metrics["corpus"] == "all"

    executed = nbformat.read(run_dir / "01_ingestion.ipynb", as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = "\n".join(
        str(o.get("data", {}).get("text/html", "")) + str(o.get("data", {}).get("text/markdown", "")) for o in outputs
    )
    for count in ("rows_in", "duplicate_pmids_removed", "rows_out"):
        assert count in shown
    assert f"{metrics['rows_out']:,} articles" in shown
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2


def test_only_from_the_command_line_keeps_the_runs_scale_and_seed(tmp_path):
    from .conftest import run_cli

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pipeline.run_pipeline(scale="tiny", seed=7, out=run_dir, only="01", progress=False)
    result = run_cli("run", "--only", "01", "--out", str(run_dir), "--no-progress", timeout=600)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["parameters"]["scale"] == "tiny" and manifest["parameters"]["seed"] == 7
    assert manifest["status"] == "incomplete", "02-08 never ran in this folder"
    assert [n["status"] for n in manifest["notebooks"]][:2] == ["ok", "pending"]
    refused = run_cli("run", "--only", "01", "--seed", "42", "--out", str(run_dir), timeout=120)
    assert refused.returncode == 1 and "made with --seed 7, not 42" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert json.loads((run_dir / "manifest.json").read_text())["parameters"]["seed"] == 7
