"""Build the Jupyter Book (1.x) from the pages in ``book/`` and one run's executed notebooks.

``_toc.yml`` names the executed notebooks as ``outputs/report/NN_name``. To build
from any run folder without touching the working tree, the book sources are staged
in a scratch folder: ``_config.yml``, ``_toc.yml`` and ``book/`` are copied, and
the run's executed notebooks and its ``figures/`` go to ``outputs/report/`` there.
Sphinx warnings are errors, so a broken reference or a missing page fails the build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import config

BOOK_RUN_PATH = Path("outputs") / "report"
#: staged folder named by ``html_extra_path`` in _config.yml; its content lands at the HTML root
EXTRA_PATH = "_book_extra"
#: the ipywidgets JavaScript the book ships (``nb_ipywidgets_js`` in _config.yml), kept out of
#: ``_static`` because jupyter-book adds every .js there to every page, breaking the load order
WIDGET_JS_FOLDER = "widgets-js"
#: vendored copies of npm's @jupyter-widgets/html-manager (embed-amd.js and its fonts) and
#: requirejs, plus require-config.js; ``make vendor-js`` refreshes them from package-lock.json
WIDGET_JS_SOURCE = config.PROJECT_ROOT / "book" / "_widgets_js"
WIDGET_JS_FILES = ("require.js", "require-config.js", "embed-amd.js")


class BookBuildError(RuntimeError):
    """The book could not be built; the message carries Sphinx's complaint."""


def stage_sources(run_dir: Path, staging: Path) -> Path:
    """Copy the book's sources and the run's notebooks and figures into ``staging``."""
    run_dir = Path(run_dir)
    notebooks = sorted(run_dir.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise BookBuildError(f"{run_dir}: no executed notebooks; run `python -m hcp_lib run --out {run_dir}` first")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(config.PROJECT_ROOT / name, staging / name)
    shutil.copytree(config.PROJECT_ROOT / "book", staging / "book")
    target = staging / BOOK_RUN_PATH
    target.mkdir(parents=True)
    for nb in notebooks:
        stage_notebook(nb, target / nb.name)
    if (run_dir / "figures").is_dir():
        shutil.copytree(run_dir / "figures", target / "figures")
    stage_widget_js(staging / EXTRA_PATH / WIDGET_JS_FOLDER)
    return staging


def stage_notebook(source: Path, destination: Path) -> Path:
    """Copy an executed notebook for the book, folding away its parameter cells.

    The ``parameters`` cell holds the notebook's defaults, superseded by the values papermill
    injected; the book removes it and shows the injected cell collapsed (myst-nb cell tags),
    so a reader sees the narrative first and can still open the run's parameters.
    """
    import nbformat

    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
        elif "injected-parameters" in tags:
            cell.metadata["tags"] = tags + ["hide-input"]
    nbformat.write(nb, destination)
    return destination


def stage_widget_js(folder: Path) -> Path:
    """Copy the shipped ipywidgets embed manager, its fonts, RequireJS and their config into ``folder``."""
    missing = [name for name in WIDGET_JS_FILES if not (WIDGET_JS_SOURCE / name).exists()]
    if missing:
        raise BookBuildError(
            f"{WIDGET_JS_SOURCE / missing[0]}: not found; run `make vendor-js` to restore the "
            "widget JavaScript the book ships"
        )
    shutil.copytree(WIDGET_JS_SOURCE, folder, ignore=shutil.ignore_patterns("*.md"))
    return folder


def build_book(run_dir: str | Path = config.DEFAULT_RUN_DIR, out: str | Path = config.OUTPUTS_DIR / "book") -> Path:
    """Build the HTML book from ``run_dir``; return the path of its ``index.html``.

    Only a finished run is published: a run that failed, was interrupted, died, is still
    running or has a stale or missing notebook is refused (:class:`BookBuildError` saying
    which notebook and what to run). The book is built in a temporary folder beside ``out``
    and swapped in only when the build succeeded, so a failed build leaves ``out`` as it was.
    """
    from .pipeline import run_state

    run_dir = Path(run_dir).resolve()
    state = run_state(run_dir)
    if state["state"] != "ok":
        raise BookBuildError(f"cannot build the book: {state['message']}")
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise BookBuildError(f"--out {out}: is a file, not a folder; choose another path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        building.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the book is not
    except OSError as err:
        raise BookBuildError(f"--out {out}: cannot write there ({err.strerror or err})") from None
    try:
        _build_into(run_dir, building)
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            out.rename(retired / out.name)
            building.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            building.rename(out)
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return out / "_build" / "html" / "index.html"


def _build_into(run_dir: Path, out: Path) -> Path:
    """Stage the sources under ``out/src`` and run jupyter-book into ``out/_build``."""
    staging = stage_sources(run_dir, out / "src")
    command = [
        str(Path(sys.executable).with_name("jupyter-book")),
        "build",
        str(staging),
        "--path-output",
        str(out),
        "--warningiserror",
        "--keep-going",
        "--quiet",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BookBuildError(f"jupyter-book build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    built = out / "_build" / "html"
    # Files the pages link to at run time (e.g. the pyLDAvis view in an iframe)
    # are not seen by Sphinx, so they are copied beside the rendered notebooks.
    if (staging / BOOK_RUN_PATH / "figures").is_dir():
        shutil.copytree(staging / BOOK_RUN_PATH / "figures", built / BOOK_RUN_PATH / "figures", dirs_exist_ok=True)
    index = built / "index.html"
    if not index.exists():
        raise BookBuildError(f"jupyter-book reported success but wrote no {index}")
    return index
