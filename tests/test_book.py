"""Staging the book's sources: pages, a run's notebooks and figures, the shipped widget JavaScript."""

import filecmp
import re
import shutil

import nbformat
import pytest

from hcp_lib import book
from hcp_lib.config import PROJECT_ROOT


def test_staging_copies_pages_notebooks_figures_and_widget_js(tmp_path):
    run = tmp_path / "run"
    (run / "figures" / "ldavis").mkdir(parents=True)
    (run / "figures" / "ldavis" / "index.html").write_text("<html></html>")
    executed = nbformat.v4.new_notebook()
    executed.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("seed = 0"),
        nbformat.v4.new_code_cell("seed = 7"),
        nbformat.v4.new_code_cell("print(seed)"),
    ]
    executed.cells[1].metadata["tags"] = ["parameters"]
    executed.cells[2].metadata["tags"] = ["injected-parameters"]
    nbformat.write(executed, run / "01_ingestion.ipynb")
    (run / "content").mkdir()
    (run / "content" / "pubmed.parquet").write_bytes(b"not staged")
    staging = book.stage_sources(run, tmp_path / "staging")
    assert (staging / "_toc.yml").exists() and (staging / "_config.yml").exists()
    assert (staging / "book" / "intro.md").exists()
    staged = nbformat.read(staging / "outputs" / "report" / "01_ingestion.ipynb", as_version=4)
    assert [c.metadata.get("tags", []) for c in staged.cells] == [
        [],
        ["parameters", "remove-cell"],
        ["injected-parameters", "hide-input", "remove-stderr"],
        ["hide-input", "remove-stderr"],
    ]
    assert (staging / "outputs" / "report" / "figures" / "ldavis" / "index.html").exists()
    assert not (staging / "outputs" / "report" / "content").exists(), "data artifacts stay out of the book"
    widgets = staging / book.EXTRA_PATH / book.WIDGET_JS_FOLDER
    for name in book.WIDGET_JS_FILES:
        assert (widgets / name).stat().st_size > 0
    assert list(widgets.glob("*.woff2")), "embed-amd.js needs its fonts beside it"


def test_staged_notebooks_hide_code_and_show_no_machine_path(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    executed = nbformat.v4.new_notebook()
    executed.cells = [
        nbformat.v4.new_code_cell(f"run_dir = '{run}'"),
        nbformat.v4.new_code_cell(
            "print(path)", outputs=[nbformat.v4.new_output("stream", text=f"wrote {run}/x.json\n")]
        ),
        nbformat.v4.new_code_cell(
            "table",
            outputs=[
                nbformat.v4.new_output(
                    "execute_result", data={"text/plain": f"{PROJECT_ROOT}/data/a.csv", "text/html": f"<td>{run}</td>"}
                )
            ],
        ),
        nbformat.v4.new_code_cell(
            "display(x)",
            outputs=[
                nbformat.v4.new_output(  # tqdm's notebook bar: left out of the book
                    "display_data",
                    data={
                        "text/plain": "outputs:   0%|          | 0/6 [00:00<?, ?it/s]",
                        "application/vnd.jupyter.widget-view+json": {"model_id": "a", "version_major": 2},
                    },
                ),
                nbformat.v4.new_output(  # another widget: kept
                    "display_data",
                    data={
                        "text/plain": "VBox(children=(HTML(value='50%|x'),))",
                        "application/vnd.jupyter.widget-view+json": {"model_id": "b", "version_major": 2},
                    },
                ),
            ],
        ),
    ]
    executed.cells[0].metadata["tags"] = ["injected-parameters"]
    executed.cells[3].metadata["tags"] = ["remove-input"]
    nbformat.write(executed, run / "02_synthesis.ipynb")
    staged = nbformat.read(book.stage_notebook(run / "02_synthesis.ipynb", tmp_path / "nb.ipynb", run), as_version=4)
    text = nbformat.writes(staged)
    assert str(run) not in text and str(PROJECT_ROOT) not in text
    assert staged.cells[0].source == "run_dir = 'run'"
    assert staged.cells[1].outputs[0]["text"] == "wrote run/x.json\n"
    assert staged.cells[2].outputs[0]["data"] == {"text/plain": "data/a.csv", "text/html": "<td>run</td>"}
    assert staged.cells[3].metadata["tags"] == ["remove-input", "remove-stderr"]  # already hidden: not tagged again
    assert [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for o in staged.cells[3].outputs] == ["b"]
    assert all("hide-input" in c.metadata["tags"] for c in staged.cells[:3])


def test_staging_without_executed_notebooks_says_what_to_run(tmp_path):
    with pytest.raises(book.BookBuildError, match="no executed notebooks; run `python -m hcp_lib run"):
        book.stage_sources(tmp_path, tmp_path / "staging")


def _run_folder(path, statuses, status="ok"):
    import json

    from hcp_lib.pipeline import list_notebooks

    path.mkdir(parents=True)
    names = [nb.name for nb in list_notebooks()]
    notebooks = [
        {
            "notebook": name,
            "status": statuses.get(name, "ok"),
            "error": "notebook 07 failed at cell 3: KeyError: 'x'" if statuses.get(name) == "failed" else None,
        }
        for name in names
    ]
    (path / "manifest.json").write_text(json.dumps({"status": status, "notebooks": notebooks, "parameters": {}}))
    return path


@pytest.mark.parametrize(
    "statuses, status, message",
    [
        (
            {"07_next_best_action.ipynb": "failed"},
            "failed",
            r"the run failed in 07_next_best_action.ipynb \(notebook 07 failed at cell 3: KeyError: 'x'\); .*--only 07",
        ),
        ({"05_hybrid_lstm.ipynb": "stale"}, "incomplete", r"05_hybrid_lstm.ipynb \(stale\)"),
        (
            {"08_explorer.ipynb": "pending", "07_next_best_action.ipynb": "pending"},
            "interrupted",
            r"the run interrupted",
        ),
    ],
)
def test_the_book_refuses_a_run_that_did_not_finish_and_keeps_the_old_book(tmp_path, statuses, status, message):
    run = _run_folder(tmp_path / "run", statuses, status)
    out = tmp_path / "book"
    (out / "_build" / "html").mkdir(parents=True)
    (out / "_build" / "html" / "index.html").write_text("the previous book")
    with pytest.raises(book.BookBuildError, match="cannot build the book: .*" + message):
        book.build_book(run, out)
    assert (out / "_build" / "html" / "index.html").read_text() == "the previous book"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "run"], "no half-built folder is left"


def test_a_failed_build_leaves_the_previous_book_in_place(tmp_path):
    run = _run_folder(tmp_path / "run", {})  # the manifest says ok, but the executed notebooks are gone
    out = tmp_path / "book"
    (out / "_build" / "html").mkdir(parents=True)
    (out / "_build" / "html" / "index.html").write_text("the previous book")
    with pytest.raises(book.BookBuildError, match="no executed notebooks"):
        book.build_book(run, out)
    assert (out / "_build" / "html" / "index.html").read_text() == "the previous book"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "run"], "the temporary build folder is removed"


def test_shipped_widget_js_matches_the_pinned_npm_packages():
    npm = PROJECT_ROOT / "node_modules"
    if not (npm / "@jupyter-widgets" / "html-manager").is_dir():
        pytest.skip("node_modules not installed (tests/browser/setup.sh installs it)")
    shipped = book.WIDGET_JS_SOURCE
    assert filecmp.cmp(shipped / "embed-amd.js", npm / "@jupyter-widgets/html-manager/dist/embed-amd.js", shallow=False)
    assert filecmp.cmp(shipped / "require.js", npm / "requirejs/require.js", shallow=False)


def _report():
    entry = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "n": 10}
    return {
        "selection": {"chosen": "tabular", "validation_log_loss": {"tabular": 0.28, "hybrid": 0.31}},
        "best_baseline": "popularity",
        "metrics": {
            "tabular": {
                "plan_value": {"value": 55.2, "ci_low": 44.0, "ci_high": 66.1, "n": 10},
                "plan_fraction_of_oracle": {**entry, "value": 0.72},
                "policy_fraction_of_oracle": {**entry, "value": 0.77},
            },
            "popularity": {"plan_value": {"value": 30.0, "ci_low": 25.0, "ci_high": 35.0, "n": 10}},
        },
        "policy": {
            "business_as_usual": {
                "plan_value": {"value": 15.0, "ci_low": 10.0, "ci_high": 19.0, "n": 10},
                "policy_fraction_of_oracle": {**entry, "value": 0.16},
            },
            "oracle": {"plan_value": {"value": 76.0, "ci_low": 63.0, "ci_high": 90.0, "n": 10}},
        },
        "population": {"n_hcps": 1234, "n_test_exposures": 5678},
    }


def test_key_results_become_substitutions_and_a_figure(tmp_path):
    import json

    import yaml

    run = tmp_path / "run"
    (run / "evaluation").mkdir(parents=True)
    (run / "evaluation" / "metrics.json").write_text(json.dumps(_report()))
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "_config.yml").write_text((PROJECT_ROOT / "_config.yml").read_text())
    values = book.stage_key_results(run, staging)
    staged = yaml.safe_load((staging / "_config.yml").read_text())
    assert staged["parse"]["myst_substitutions"] == values
    assert staged["execute"]["execute_notebooks"] == "off"  # the rest of the configuration is kept
    assert values["kr_model"] == "tabular" and values["kr_others_loss"] == "hybrid 0.3100"
    assert values["kr_plan_value"] == "55 [44, 66]" and values["kr_plan_vs_bau"] == "3.7"
    assert values["kr_policy_share"] == "0.770 [0.400, 0.600]" and values["kr_n_hcps"] == "1,234"
    assert (staging / book.KEY_RESULTS_FIGURE).stat().st_size > 5_000
    # every substitution the introduction uses is defined
    for page in ("intro.md", "results.md"):
        used = set(re.findall(r"{{ (kr_\w+) }}", (PROJECT_ROOT / "book" / page).read_text()))
        assert used and used <= set(values), page


def test_a_run_without_an_evaluation_shows_not_available(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "_config.yml").write_text((PROJECT_ROOT / "_config.yml").read_text())
    shutil.copytree(PROJECT_ROOT / "book", staging / "book")  # staged before the key results, as in stage_sources
    values = book.stage_key_results(tmp_path / "run", staging)
    assert set(values.values()) == {"n/a"} and (staging / book.KEY_RESULTS_FIGURE).exists()
