"""Build the Jupyter Book (1.x) from the pages in ``book/`` and one run's executed notebooks.

``_toc.yml`` names the executed notebooks as ``outputs/report/NN_name``. To build
from any run folder without touching the working tree, the book sources are staged
in a scratch folder: ``_config.yml``, ``_toc.yml`` and ``book/`` are copied, and
the run's executed notebooks and its ``figures/`` go to ``outputs/report/`` there.
Sphinx warnings are errors, so a broken reference or a missing page fails the build.
"""

from __future__ import annotations

import os
import re
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
    stage_key_results(run_dir, staging)
    target = staging / BOOK_RUN_PATH
    target.mkdir(parents=True)
    for nb in notebooks:
        stage_notebook(nb, target / nb.name, run_dir)
    if (run_dir / "figures").is_dir():
        shutil.copytree(run_dir / "figures", target / "figures")
    stage_widget_js(staging / EXTRA_PATH / WIDGET_JS_FOLDER)
    return staging


#: cell tags after which the book already shows no code source
NO_SOURCE_TAGS = ("remove-cell", "remove-input", "hide-input", "hide-cell")


def machine_paths(run_dir: Path) -> dict[str, str]:
    """The absolute paths of the building machine a page must never show, each with what the
    reader sees instead: the run folder becomes its path relative to the project (or its name),
    the project folder disappears."""
    run_dir = Path(run_dir).resolve()
    try:
        shown = str(run_dir.relative_to(config.PROJECT_ROOT))
    except ValueError:
        shown = run_dir.name
    return {str(run_dir): shown, str(config.PROJECT_ROOT) + os.sep: ""}


def _scrub(text: str, paths: dict[str, str]) -> str:
    for path, shown in paths.items():
        text = text.replace(path, shown)
    return text


#: where the introduction's headline figure is staged (``book/intro.md`` shows it)
KEY_RESULTS_FIGURE = Path("book") / "key_results.png"


def stage_key_results(run_dir: Path, staging: Path) -> dict[str, str]:
    """Put the run's key results into the staged book: the introduction's numbers become MyST
    substitutions in the staged ``_config.yml`` (:func:`hcp_lib.narrative.key_results` of the
    run's ``evaluation/metrics.json``) and its headline figure is drawn
    (:func:`headline_figure`). Nothing on the introduction is typed; a run without an
    evaluation shows "n/a"."""
    import yaml

    from . import io, narrative

    path = Path(run_dir) / "evaluation" / "metrics.json"
    report = io.read_json(path) if path.exists() else None
    if report is not None:
        substitutions = narrative.key_results(report)
    else:  # every key result the staged pages use reads "n/a"
        pages = "".join(p.read_text() for p in (staging / "book").glob("*.md"))
        substitutions = {key: "n/a" for key in sorted(set(re.findall(r"{{ (kr_\w+) }}", pages)))}
    settings = yaml.safe_load((staging / "_config.yml").read_text())
    settings.setdefault("parse", {})["myst_substitutions"] = substitutions
    (staging / "_config.yml").write_text(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    headline_figure(report, staging / KEY_RESULTS_FIGURE)
    return substitutions


def headline_figure(report: dict | None, path: Path) -> Path:
    """The introduction's figure: the expected engagements of the week's plan made from business
    as usual, the best baseline, the chosen model and the oracle, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    if report is None:
        ax.text(0.5, 0.5, "this run has no evaluation", ha="center", va="center")
        ax.set_axis_off()
    else:
        chosen, baseline = report["selection"]["chosen"], report.get("best_baseline")
        rows = [("business as usual", report["policy"]["business_as_usual"]["plan_value"], "#9e9e9e")]
        if baseline in report["metrics"]:
            rows.append((f"{baseline} (best baseline)", report["metrics"][baseline].get("plan_value"), "#6baed6"))
        rows += [
            (f"{chosen} (chosen)", report["metrics"].get(chosen, {}).get("plan_value"), "#08519c"),
            ("oracle", report["policy"]["oracle"]["plan_value"], "#31a354"),
        ]
        rows = [row for row in rows if row[1] and row[1].get("value") is not None]

        def bound(entry: dict, key: str) -> float:
            return entry[key] if entry.get(key) is not None else entry["value"]

        values = [e["value"] for _, e, _ in rows]
        errors = [
            [e["value"] - bound(e, "ci_low") for _, e, _ in rows],
            [bound(e, "ci_high") - e["value"] for _, e, _ in rows],
        ]
        ax.barh([name for name, _, _ in rows], values, xerr=errors, capsize=3, color=[c for _, _, c in rows])
        ax.invert_yaxis()
        ax.set_xlabel("expected engagements in the week's plan (same capacities)")
        ax.set_title("The week's plan, by whose probabilities it is made")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def stage_notebook(source: Path, destination: Path, run_dir: Path | None = None) -> Path:
    """Copy an executed notebook for the book, as a report reads: code hidden, no logs, no
    machine paths.

    - The ``parameters`` cell holds the notebook's defaults, superseded by the values papermill
      injected: it is removed; the injected cell stays, collapsed.
    - Every code cell's source is collapsed (myst-nb's ``hide-input``: the reader can open it)
      and its stderr (warnings, TensorFlow's logs) removed (``remove-stderr``).
    - The absolute paths of the run folder and the project (:func:`machine_paths`) are written
      relative in every cell source and text output.
    - Progress bars (tqdm's notebook widgets, useful while a notebook runs) are removed: a
      finished bar tells a reader nothing.
    """
    import nbformat

    paths = machine_paths(run_dir if run_dir is not None else source.parent)
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        tags = list(cell.get("metadata", {}).get("tags", []))
        if "parameters" in tags:
            tags.append("remove-cell")
        elif cell.cell_type == "code":
            if not any(tag in tags for tag in NO_SOURCE_TAGS):
                tags.append("hide-input")
            if "remove-stderr" not in tags:
                tags.append("remove-stderr")
        if tags:
            cell.metadata["tags"] = tags
        cell.source = _scrub(cell.source, paths)
        if "outputs" in cell:
            cell.outputs = [o for o in cell.outputs if not _is_progress_bar(o)]
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = _scrub(output["text"], paths)
            for mime in ("text/plain", "text/markdown", "text/html"):
                if mime in output.get("data", {}):
                    value = output["data"][mime]
                    output["data"][mime] = _scrub(value if isinstance(value, str) else "".join(value), paths)
            if output.get("output_type") == "error":
                output["traceback"] = [_scrub(line, paths) for line in output.get("traceback", [])]
    nbformat.write(nb, destination)
    return destination


#: tqdm's text form of a progress bar ("desc:  40%|####      | 2/5 [00:01<00:02, 1.9it/s]")
_PROGRESS_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+ \[")


def _is_progress_bar(output) -> bool:
    """Whether a notebook output is a tqdm progress widget (a widget view whose text is a bar)."""
    data = output.get("data", {})
    text = data.get("text/plain", "")
    text = text if isinstance(text, str) else "".join(text)
    return "application/vnd.jupyter.widget-view+json" in data and bool(_PROGRESS_BAR.search(text))


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
