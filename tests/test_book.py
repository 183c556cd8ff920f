"""Staging the book's sources: pages, a run's notebooks and figures, the shipped widget JavaScript."""

import filecmp

import nbformat
import pytest

from hcp_lib import book
from hcp_lib.config import PROJECT_ROOT


def test_staging_copies_pages_notebooks_figures_and_widget_js(tmp_path):
    run = tmp_path / "run"
    (run / "figures" / "ldavis").mkdir(parents=True)
    (run / "figures" / "ldavis" / "index.html").write_text("<html></html>")
    executed = nbformat.v4.new_notebook()
    executed.cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("seed = 0"),
                      nbformat.v4.new_code_cell("seed = 7"), nbformat.v4.new_code_cell("print(seed)")]
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
        [], ["parameters", "remove-cell"], ["injected-parameters", "hide-input"], []]
    assert (staging / "outputs" / "report" / "figures" / "ldavis" / "index.html").exists()
    assert not (staging / "outputs" / "report" / "content").exists(), "data artifacts stay out of the book"
    widgets = staging / book.EXTRA_PATH / book.WIDGET_JS_FOLDER
    for name in book.WIDGET_JS_FILES:
        assert (widgets / name).stat().st_size > 0
    assert list(widgets.glob("*.woff2")), "embed-amd.js needs its fonts beside it"


def test_staging_without_executed_notebooks_says_what_to_run(tmp_path):
    with pytest.raises(book.BookBuildError, match="no executed notebooks; run `python -m hcp_lib run"):
        book.stage_sources(tmp_path, tmp_path / "staging")


def test_shipped_widget_js_matches_the_pinned_npm_packages():
    npm = PROJECT_ROOT / "node_modules"
    if not (npm / "@jupyter-widgets" / "html-manager").is_dir():
        pytest.skip("node_modules not installed (tests/browser/setup.sh installs it)")
    shipped = book.WIDGET_JS_SOURCE
    assert filecmp.cmp(shipped / "embed-amd.js", npm / "@jupyter-widgets/html-manager/dist/embed-amd.js", shallow=False)
    assert filecmp.cmp(shipped / "require.js", npm / "requirejs/require.js", shallow=False)
