"""Run the ordered notebooks with papermill into one run folder, and record a manifest.

``python -m hcp_lib run`` calls :func:`run_pipeline`: every parameter is validated
first (:func:`hcp_lib.config.resolve_parameters`), then ``notebooks/NN_*.ipynb`` run
in order on a kernel of this Python environment, each receiving the same values for
the parameters it declares. The first failure stops the run with the notebook, the
cell and the exception named; the failed executed notebook stays in the run folder.
``manifest.json`` records parameters, package versions, the git commit and, per
notebook, its status, wall time and peak memory; what a kernel prints on its own stderr
(library start-up chatter) goes to ``logs/NN_name.log`` in the run folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import config
from .io import write_json

KERNEL_NAME = "hcp-lib"
_NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")


class PipelineError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the exception."""


def list_notebooks(notebooks_dir: Path = config.NOTEBOOKS_DIR) -> list[Path]:
    """The pipeline's notebooks, ``NN_name.ipynb``, in order."""
    found = sorted(p for p in notebooks_dir.glob("*.ipynb") if _NOTEBOOK_PATTERN.match(p.name))
    if not found:
        raise PipelineError(f"no notebooks named NN_*.ipynb in {notebooks_dir}")
    return found


def select_notebooks(notebooks: list[Path], only: str | None) -> list[Path]:
    """All notebooks, or the one whose number is ``only`` (e.g. ``"03"`` or ``"3"``)."""
    if only is None:
        return notebooks
    wanted = only.zfill(2)
    chosen = [nb for nb in notebooks if nb.name[:2] == wanted]
    if not chosen:
        numbers = ", ".join(nb.name[:2] for nb in notebooks)
        raise PipelineError(f"--only {only}: no notebook numbered {wanted}; the notebooks are {numbers}")
    return chosen


def declared_parameters(notebook: Path) -> list[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import papermill

    return list(papermill.inspect_notebook(str(notebook)).keys())


def parameters_for(notebook: Path, values: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``values`` that ``notebook`` declares; unknown declarations are an error."""
    names = declared_parameters(notebook)
    undeclared = [n for n in names if n not in config.PARAMS]
    if undeclared:
        raise PipelineError(
            f"{notebook.name}: its parameters cell declares {undeclared[0]!r}, which hcp_lib.config.PARAMS "
            "does not know; declare it there so it is validated"
        )
    return {n: values[n] for n in names}


def _kernel_environment(tmp_root: Path) -> None:
    """Register a kernel spec that runs *this* interpreter and make Jupyter find it first.

    Whatever kernel name a notebook's metadata carries, papermill is told to use
    ``hcp-lib``; the spec lives in a temporary Jupyter path, so nothing is installed
    into the user's Jupyter configuration.
    """
    spec_dir = tmp_root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (hcp_lib)",
        "language": "python",
        # Fixed hashing keeps set/dict iteration order, and so results, identical across runs.
        "env": {"PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "2"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(tmp_root), os.environ.get("JUPYTER_PATH")]))


class _PeakMemory:
    """Track the peak resident memory of this process's children (the kernel) while running."""

    def __init__(self, interval: float = 0.2):
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> "_PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=config.PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the direct dependencies named in requirements.txt."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    requirements = config.PROJECT_ROOT / "requirements.txt"
    for line in requirements.read_text().splitlines():
        name = line.split("#")[0].split("==")[0].strip()
        if name:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
    return versions


@contextlib.contextmanager
def _kernel_stderr_to(log_path: Path):
    """Send this process's stderr file descriptor (inherited by the kernel it starts) to a log.

    Kernels print start-up chatter on stderr (TensorFlow's device probing, ipykernel's
    warnings) that would bury the runner's own messages; it is kept in the run's logs/
    folder instead, beside the executed notebook that shows the cell outputs.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@dataclass
class NotebookResult:
    notebook: str
    status: str = "pending"
    wall_seconds: float | None = None
    peak_memory_mb: float | None = None
    error: str | None = None


def _describe_failure(notebook: Path, output: Path, err: Exception) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        # 1-based position in the executed notebook (papermill adds an injected-parameters
        # cell), plus the In [n] label Jupyter shows beside it.
        where = f"cell {err.cell_index + 1} of the executed notebook (In [{err.exec_count}])"
        what = f"{err.ename}: {err.evalue}"
    else:
        where = "before or between cells"
        what = f"{type(err).__name__}: {err}"
    return f"notebook {notebook.name} failed at {where}: {what}\nThe executed notebook is kept for inspection: {output}"


def run_pipeline(
    scale: str = config.DEFAULT_SCALE,
    seed: int | str = 42,
    out: str | Path = config.DEFAULT_RUN_DIR,
    overrides: dict[str, Any] | None = None,
    only: str | None = None,
    notebooks_dir: Path = config.NOTEBOOKS_DIR,
    progress: bool = True,
) -> dict[str, Any]:
    """Execute the notebooks in order into ``out``; return the manifest.

    Parameters are validated before any notebook starts. With ``only`` one notebook
    runs against an existing run folder (its earlier stages' outputs must be there).
    Raises :class:`PipelineError` at the first failing notebook.
    """
    import papermill
    from tqdm.auto import tqdm

    values = config.resolve_parameters(scale=scale, seed=seed, overrides=overrides, run_dir=out)
    notebooks = select_notebooks(list_notebooks(notebooks_dir), only)
    injected = {nb.name: parameters_for(nb, values) for nb in notebooks}
    run_dir = Path(values["run_dir"])
    if only is not None and not run_dir.is_dir():
        raise PipelineError(f"--only {only}: run folder {run_dir} does not exist; run the whole pipeline first")
    run_dir.mkdir(parents=True, exist_ok=True)

    manifest_path = config.RunDir(run_dir).manifest
    previous = json.loads(manifest_path.read_text()) if (only is not None and manifest_path.exists()) else {}
    results = {r["notebook"]: r for r in previous.get("notebooks", [])}
    for nb in notebooks:
        results[nb.name] = NotebookResult(nb.name).__dict__
    manifest: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "finished_at": None,
        "status": "running",
        "parameters": values,
        "only": only,
        "git": _git_commit(),
        "packages": package_versions(),
        "notebooks": list(results.values()),
    }
    write_json(manifest, manifest_path)

    with tempfile.TemporaryDirectory(prefix="hcp-kernel-") as kernel_root:
        _kernel_environment(Path(kernel_root))
        # The bar goes to stdout: stderr is redirected to the kernel logs while a notebook runs.
        bar = tqdm(notebooks, desc="pipeline", unit="notebook", disable=not progress, file=sys.stdout)
        for nb in bar:
            bar.set_postfix_str(nb.name)
            output = run_dir / nb.name
            record = results[nb.name]
            started = time.perf_counter()
            try:
                with _PeakMemory() as memory, _kernel_stderr_to(run_dir / "logs" / f"{nb.stem}.log"):
                    papermill.execute_notebook(
                        str(nb),
                        str(output),
                        parameters=injected[nb.name],
                        kernel_name=KERNEL_NAME,
                        progress_bar=False,
                        cwd=str(run_dir),
                    )
            except Exception as err:  # papermill raises several types; all stop the run
                record.update(status="failed", error=_describe_failure(nb, output, err))
                manifest.update(status="failed", finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
                record.update(wall_seconds=round(time.perf_counter() - started, 2),
                              peak_memory_mb=round(memory.peak_bytes / 2**20, 1))
                write_json(manifest, manifest_path)
                raise PipelineError(record["error"]) from err
            record.update(status="ok", wall_seconds=round(time.perf_counter() - started, 2),
                          peak_memory_mb=round(memory.peak_bytes / 2**20, 1))
            write_json(manifest, manifest_path)
    manifest.update(status="ok", finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    write_json(manifest, manifest_path)
    return manifest
