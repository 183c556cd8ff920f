"""Run the ordered notebooks with papermill into one run folder, and record a manifest.

``python -m hcp_lib run`` calls :func:`run_pipeline`: every parameter is validated
first (:func:`hcp_lib.config.resolve_parameters`), then ``notebooks/NN_*.ipynb`` run
in order on a kernel of this Python environment, each receiving the same values for
the parameters it declares; a notebook of :data:`RUNS_AFTER` starts as soon as the last
notebook it reads has finished, beside the ones in between, in a process of its own. The
first failure stops the run with the notebook, the cell and the exception named; the failed
executed notebook stays in the run folder.
``manifest.json`` records parameters, package versions, the git commit and, per
notebook, its status, wall time and peak memory; what a kernel prints on its own stderr
(library start-up chatter) goes to ``logs/NN_name.log`` in the run folder.

Cache. Each notebook's result is keyed by a hash of everything it depends on
(:func:`cache_keys`): the notebook file, the parameters it receives, the code of ``hcp_lib``,
the project's input data, the installed package versions, and the key of the notebook before
it (so a change upstream reaches every later notebook). A whole run into a folder whose
manifest holds a finished result with the same key, and whose notebooks before it were all
reused, reuses that result instead of running the notebook again (``cache: "reused"`` in the
manifest); ``--no-cache`` (``cache=False``) runs everything. ``--only`` always runs its notebook.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
    # Jupyter's runtime files, and the kernel's connection file (jupyter_client writes it with
    # tempfile.mkstemp), go to the same temporary folder, so that they are removed with it even
    # when a run is interrupted before the kernel manager can clean up after itself, and swept
    # by the next run when it was killed outright (_sweep_dead_kernel_folders).
    runtime = tmp_root / "runtime"
    runtime.mkdir(exist_ok=True)
    os.environ["JUPYTER_RUNTIME_DIR"] = str(runtime)
    tempfile.tempdir = str(runtime)


class _PeakMemory:
    """Track the peak resident memory of the processes under ``root`` (a pid; default this
    process's children: the kernel), leaving out the trees under the pids in ``exclude`` (a
    notebook running beside), while running."""

    def __init__(self, interval: float = 0.2, root: int | None = None, exclude: Callable[[], set[int]] | None = None):
        self.interval = interval
        self.root = root
        self.exclude = exclude or set
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(self.root)
                left_out = set()
                for pid in self.exclude():
                    with contextlib.suppress(psutil.Error):
                        tree = psutil.Process(pid)
                        left_out |= {pid, *(child.pid for child in tree.children(recursive=True))}
                for process in ([root] if self.root is not None else []) + root.children(recursive=True):
                    if process.pid in left_out:
                        continue
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)

    def start(self) -> _PeakMemory:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def __enter__(self) -> _PeakMemory:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


#: what the cache key hashes besides the notebooks: the library's code and the project's input data
FINGERPRINTED = (("hcp_lib", ("*.py", "*.js")), ("data", ("*",)))


def code_fingerprint(root: Path = config.PROJECT_ROOT) -> str:
    """SHA-256 of the files a notebook's result may depend on outside the notebook: every
    file of :data:`FINGERPRINTED` under ``root`` (path and content, in path order)."""
    digest = hashlib.sha256()
    for folder, patterns in FINGERPRINTED:
        files = sorted({f for pattern in patterns for f in (root / folder).rglob(pattern) if f.is_file()})
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_keys(
    notebooks: list[Path], parameters: dict[str, dict[str, Any]], fingerprint: str, packages: dict[str, Any]
) -> dict[str, str]:
    """One key per notebook (by name): SHA-256 of the notebook file, the parameters it is
    given (``run_dir`` left out: a moved folder keeps its results), ``fingerprint``
    (:func:`code_fingerprint`), ``packages`` and the previous notebook's key."""
    keys, upstream = {}, ""
    for nb in notebooks:
        given = {k: v for k, v in parameters[nb.name].items() if k != "run_dir"}
        record = {
            "notebook": hashlib.sha256(nb.read_bytes()).hexdigest(),
            "parameters": given,
            "code": fingerprint,
            "packages": packages,
            "upstream": upstream,
        }
        upstream = keys[nb.name] = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
    return keys


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
    #: :func:`cache_keys`'s key of the inputs this result was computed from; "computed" or "reused"
    cache_key: str | None = None
    cache: str | None = None


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


#: notebooks whose outputs no later notebook reads (08 writes the explorers' views only), so
#: rerunning one with other parameters leaves the later notebooks' outputs valid
READ_BY_NONE = ("08",)
#: notebooks that read the outputs of the notebooks up to a given one only: each starts as soon as
#: that one has finished and runs beside the notebooks in between, in a process of its own; the run
#: waits for it at its own place in the order, so the notebooks after it read its outputs as usual.
#: 03 (topics) reads only the articles of 01, beside 02 (the world); 09 (off-policy evaluation)
#: reads what 01-07 wrote (07's plan is one of the policies it values), beside 08 (the explorers).
#: By notebook file name; tests/test_pipeline.py reruns each on only what the earlier one left.
RUNS_AFTER = {
    "03_topic_modeling.ipynb": "01_ingestion.ipynb",
    "09_off_policy_evaluation.ipynb": "07_next_best_action.ipynb",
}


class _Beside:
    """A notebook executed by papermill in a Python process of its own, beside the run's
    notebooks: its kernel's stderr goes to ``log_path`` (the runner's own redirection of its
    stderr would catch the notebooks in between too); its outcome comes back in a small JSON file."""

    def __init__(self, notebook: Path, output: Path, parameters: dict[str, Any], run_dir: Path, log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handle, result = tempfile.mkstemp(prefix="beside-", suffix=".json", dir=run_dir / "logs")
        os.close(handle)
        self.result_path = Path(result)
        self.notebook, self.output = notebook, output
        job = {
            "notebook": str(notebook),
            "output": str(output),
            "parameters": parameters,
            "cwd": str(run_dir),
            "result": result,
        }
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from hcp_lib.pipeline import _execute_beside; sys.exit(_execute_beside(sys.argv[1]))",
                    json.dumps(job),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.memory = _PeakMemory(root=self.process.pid).start()

    def pids(self) -> set[int]:
        return {self.process.pid} if self.process.poll() is None else set()

    def wait(self) -> dict[str, Any]:
        """Wait for it; ``{"error": None or the failure's description, "wall_seconds", "peak_memory_mb"}``."""
        from .io import read_json

        code = self.process.wait()
        self.memory.stop()
        outcome: dict[str, Any] = {"error": None, "wall_seconds": None}
        with contextlib.suppress(ValueError, OSError):
            outcome.update(read_json(self.result_path))
        self.result_path.unlink(missing_ok=True)
        if code != 0 and outcome["error"] is None:
            outcome["error"] = (
                f"notebook {self.notebook.name} failed: its process exited with status {code}\n"
                f"The executed notebook, if any, is kept for inspection: {self.output}"
            )
        outcome["peak_memory_mb"] = round(self.memory.peak_bytes / 2**20, 1)
        return outcome

    def stop(self) -> None:
        """Stop the process and its kernel (the run failed or was interrupted)."""
        import psutil

        with contextlib.suppress(psutil.Error):
            tree = psutil.Process(self.process.pid)
            processes = [tree, *tree.children(recursive=True)]
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    process.terminate()
            _, alive = psutil.wait_procs(processes, timeout=5)
            for process in alive:
                with contextlib.suppress(psutil.Error):
                    process.kill()
        self.memory.stop()
        self.result_path.unlink(missing_ok=True)


def _stop_beside(beside: dict[str, _Beside], results: dict[str, dict], why: str) -> None:
    """Stop every notebook running beside the run (it failed or was interrupted); mark them."""
    for name in list(beside):
        beside.pop(name).stop()
        results[name].update(status=INTERRUPTED, error=why)


def _execute_beside(job_json: str) -> int:
    """In the process of a :class:`_Beside`: execute the notebook; write ``{"error", "wall_seconds"}``."""
    import papermill

    from .io import write_json

    job = json.loads(job_json)
    notebook, output = Path(job["notebook"]), Path(job["output"])
    started, error = time.perf_counter(), None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=job["parameters"],
            kernel_name=KERNEL_NAME,
            progress_bar=False,
            cwd=job["cwd"],
        )
    except Exception as err:  # papermill raises several types; each is reported to the runner
        error = _describe_failure(notebook, output, err)
    write_json({"error": error, "wall_seconds": round(time.perf_counter() - started, 2)}, Path(job["result"]))
    return 1 if error else 0


#: the manifest status of a run stopped by SIGINT or SIGTERM (and of the notebook it stopped in)
INTERRUPTED = "interrupted"


class RunInterrupted(PipelineError):
    """The run was stopped by SIGINT or SIGTERM; the manifest records where."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class _Signalled(BaseException):
    # Raised from the signal handler; a BaseException so that no ``except Exception`` in
    # papermill or nbclient swallows it on its way to the runner.
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise():
    """Turn SIGTERM and SIGINT into :class:`_Signalled` while the run executes (main thread only)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Signalled(signum)

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _process_alive(pid: int | None, host: str | None) -> bool | None:
    """Whether process ``pid`` on ``host`` still runs: ``None`` when this machine cannot tell."""
    import psutil

    if not pid or host != _hostname():
        return None
    try:
        process = psutil.Process(pid)
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def run_state(run_dir: str | Path, notebooks_dir: Path = config.NOTEBOOKS_DIR) -> dict[str, Any]:
    """What a run folder holds, from its manifest: ``{"state": ..., "message": ...}``.

    ``state`` is ``"missing"`` (no manifest), ``"ok"`` (every notebook ran and none is
    stale), ``"running"`` (the process that writes it is alive), ``"died"`` (the manifest
    says running but its process is gone: killed without a chance to record it),
    ``"interrupted"`` (stopped by a signal), ``"failed"`` or ``"incomplete"`` (a notebook
    of ``notebooks_dir`` never ran, or ran before an earlier one was rerun with other
    parameters). ``message``
    says what to do, in one sentence.
    """
    run_dir = Path(run_dir)
    path = config.RunDir(run_dir).manifest
    if not path.exists():
        return {
            "state": "missing",
            "message": f"{run_dir}: no manifest.json, so not a run folder of "
            f"`python -m hcp_lib run`; run the pipeline with --out {run_dir}",
        }
    from .io import read_json

    manifest = read_json(path)
    status = manifest.get("status")
    notebooks = manifest.get("notebooks", [])
    if status == "running":
        alive = _process_alive(manifest.get("pid"), manifest.get("host"))
        if alive is False or not manifest.get("pid"):  # no pid: an older version's run, never finished
            current = next((n["notebook"] for n in notebooks if n.get("status") == "running"), "a notebook")
            return {
                "state": "died",
                "message": f"{run_dir}: the run started at {manifest.get('started_at')} died in "
                f"{current} (process {manifest.get('pid')} is gone, killed before it "
                "could record it); rerun the pipeline into this folder",
            }
        where = "" if alive else f" (on host {manifest.get('host')}, which this machine cannot check)"
        return {
            "state": "running",
            "message": f"{run_dir}: a run is in progress (process {manifest.get('pid')}, "
            f"started at {manifest.get('started_at')}){where}; wait for it to finish",
        }
    if status in ("failed", INTERRUPTED):
        bad = next((n for n in notebooks if n.get("status") in ("failed", INTERRUPTED)), {})
        first_line = (bad.get("error") or "").splitlines()[:1]
        return {
            "state": status,
            "message": f"{run_dir}: the run {status} in {bad.get('notebook', 'a notebook')}"
            + (f" ({first_line[0]})" if first_line else "")
            + f"; fix it and rerun `python -m hcp_lib run --only "
            f"{bad.get('notebook', 'NN')[:2]} --out {run_dir}` and the notebooks "
            "after it, or the whole pipeline",
        }
    expected = [nb.name for nb in list_notebooks(notebooks_dir)]
    recorded = {n["notebook"]: n for n in notebooks}
    not_ok = [name for name in expected if recorded.get(name, {}).get("status") != "ok"]
    if status != "ok" or not_ok:
        detail = ", ".join(f"{name} ({recorded.get(name, {}).get('status', 'never ran')})" for name in not_ok)
        return {
            "state": "incomplete",
            "message": f"{run_dir}: not every notebook has a current result: "
            f"{detail or 'status ' + repr(status)}; run them with "
            f"`python -m hcp_lib run --only NN --out {run_dir}`",
        }
    return {"state": "ok", "message": f"{run_dir}: every notebook ran"}


def _prepare_run_dir(run_dir: Path, what: str) -> None:
    """Create ``run_dir`` or say in one line why it cannot be the run folder."""
    if run_dir.exists() and not run_dir.is_dir():
        raise PipelineError(f"{what} {run_dir}: is a file, not a folder; choose another path")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PipelineError(f"{what} {run_dir}: cannot create the folder ({err.strerror or err})") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise PipelineError(f"{what} {run_dir}: the folder is not writable; choose another path or fix its permissions")


def _rerun_values(
    run_dir: Path,
    only: str,
    chosen: Path,
    every: list[Path],
    scale: str | None,
    seed: int | str | None,
    overrides: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The parameters of a rerun of one notebook: the run's own (its manifest) plus ``overrides``.

    Returns ``(values, manifest, changed)``. Refused (:class:`PipelineError`): another scale
    or seed than the run's, and a changed parameter that an earlier notebook of the run also
    read (its outputs would no longer match the manifest). A changed parameter that only
    this notebook (or later ones) reads is accepted; the later notebooks are then marked stale.
    """
    from .io import read_json

    manifest = read_json(config.RunDir(run_dir).manifest)
    previous = manifest.get("parameters") or {}
    for name, given in (("scale", scale), ("seed", seed)):
        if given is not None and config.PARAMS[name].coerce(given) != previous.get(name):
            raise PipelineError(
                f"--only {only}: the run in {run_dir} was made with --{name} {previous.get(name)}, not {given}; "
                f"a rerun of one notebook uses the run's own {name} (leave out --{name}, or start a new run folder)"
            )
    kept = {k: v for k, v in previous.items() if k in config.PARAMS and k not in config.RUNNER_PARAMS}
    values = config.resolve_parameters(
        scale=previous.get("scale", config.DEFAULT_SCALE),
        seed=previous.get("seed", 42),
        overrides={**kept, **overrides},
        run_dir=run_dir,
    )
    changed = [k for k in overrides if values[k] != previous.get(k)]
    ran = {n["notebook"] for n in manifest.get("notebooks", []) if n.get("status") == "ok"}
    for name in changed:
        readers = [
            nb.name for nb in every if nb.name < chosen.name and nb.name in ran and name in declared_parameters(nb)
        ]
        if readers:
            raise PipelineError(
                f"--only {only}: parameter {name!r} is also read by {', '.join(readers)}, which ran with "
                f"{previous.get(name)!r}; changing it for {chosen.name} alone would leave the run folder inconsistent. "
                f"Run the whole pipeline with -p {name}={overrides[name]} (into a new folder to keep this one)"
            )
    return values, manifest, changed


def run_pipeline(
    scale: str | None = None,
    seed: int | str | None = None,
    out: str | Path = config.DEFAULT_RUN_DIR,
    overrides: dict[str, Any] | None = None,
    only: str | None = None,
    notebooks_dir: Path = config.NOTEBOOKS_DIR,
    progress: bool = True,
    cache: bool = True,
) -> dict[str, Any]:
    """Execute the notebooks in order into ``out``; return the manifest.

    Every parameter is validated before any notebook starts (``scale`` and ``seed``
    default to ``small`` and 42). With ``only`` one notebook runs against an existing
    run folder, with that run's parameters from its manifest (a folder without one starts
    a new run with the values given); ``overrides`` may change
    only what no earlier notebook read, and later notebooks that read this one's outputs
    are then marked ``stale``. A folder with a live run is refused. SIGINT and SIGTERM stop
    the run cleanly: the kernel is shut down, its files removed, and the manifest says
    ``interrupted`` (raised as :class:`RunInterrupted`). Raises :class:`PipelineError` at
    the first failing notebook. With ``cache`` a whole run reuses the results of the folder's
    previous run whose keys are unchanged (module docstring).
    """
    import papermill
    from tqdm.auto import tqdm

    overrides = dict(overrides or {})
    every = list_notebooks(notebooks_dir)
    notebooks = select_notebooks(every, only)
    run_dir = Path(out).resolve()
    previous: dict[str, Any] = {}
    changed: list[str] = []
    if only is not None and not run_dir.is_dir():
        raise PipelineError(f"--only {only}: run folder {run_dir} does not exist; run the whole pipeline first")
    if only is not None and config.RunDir(run_dir).manifest.exists():
        values, previous, changed = _rerun_values(run_dir, only, notebooks[0], every, scale, seed, overrides)
    else:  # a new run (an empty folder given to --only starts one with these values)
        values = config.resolve_parameters(
            scale=scale if scale is not None else config.DEFAULT_SCALE,
            seed=seed if seed is not None else 42,
            overrides=overrides,
            run_dir=out,
        )
    injected = {nb.name: parameters_for(nb, values) for nb in notebooks}
    if run_state(run_dir)["state"] == "running":
        raise PipelineError(run_state(run_dir)["message"])
    _prepare_run_dir(run_dir, "--out")
    packages = package_versions()
    keys = cache_keys(every, {nb.name: parameters_for(nb, values) for nb in every}, code_fingerprint(), packages)
    reusable: dict[str, dict] = {}
    if cache and only is None and config.RunDir(run_dir).manifest.exists():
        from .io import read_json

        with contextlib.suppress(ValueError, OSError):  # an unreadable manifest: run everything
            for record in read_json(config.RunDir(run_dir).manifest).get("notebooks", []):
                name = record.get("notebook")
                if (
                    record.get("status") == "ok"
                    and name in keys
                    and record.get("cache_key") == keys[name]
                    and (run_dir / name).exists()
                ):
                    reusable[name] = record

    manifest_path = config.RunDir(run_dir).manifest
    results = {nb.name: NotebookResult(nb.name).__dict__ for nb in every}
    results.update({r["notebook"]: r for r in previous.get("notebooks", [])})
    for nb in notebooks:
        results[nb.name] = NotebookResult(nb.name).__dict__
    if changed and notebooks[0].name[:2] not in READ_BY_NONE:
        for name, record in results.items():
            if name > notebooks[0].name and record.get("status") == "ok":
                record.update(
                    status="stale",
                    error=f"ran before {notebooks[0].name} was rerun with "
                    + ", ".join(f"{k}={values[k]!r}" for k in changed)
                    + "; rerun it",
                )
    manifest: dict[str, Any] = {
        "started_at": _now(),
        "finished_at": None,
        "status": "running",
        "pid": os.getpid(),
        "host": _hostname(),
        "parameters": values,
        "only": only,
        "git": _git_commit(),
        "packages": packages,
        "notebooks": sorted(results.values(), key=lambda r: r["notebook"]),
    }
    write_json(manifest, manifest_path)

    def finish(status: str) -> None:
        manifest.update(status=status, finished_at=_now())
        write_json(manifest, manifest_path)

    _sweep_dead_kernel_folders()
    children_before = _child_pids()
    beside: dict[str, _Beside] = {}  # notebooks running beside the others (RUNS_AFTER), by name
    with (
        tempfile.TemporaryDirectory(prefix=f"{_KERNEL_FOLDER_PREFIX}{os.getpid()}-") as kernel_root,
        _signals_raise(),
        _environment_kept(),
    ):
        try:
            _kernel_environment(Path(kernel_root))
            # The bar goes to stdout: stderr is redirected to the kernel logs while a notebook runs.
            bar = tqdm(notebooks, desc="pipeline", unit="notebook", disable=not progress, file=sys.stdout)
            reusing = True
            for nb in bar:
                bar.set_postfix_str(nb.name)
                output = run_dir / nb.name
                record = results[nb.name]
                reusing = reusing and nb.name in reusable
                if reusing:  # this result and every one before it are current: keep them
                    record.update(reusable[nb.name], cache="reused")
                    write_json(manifest, manifest_path)
                    continue
                if nb.name in beside:  # started beside the notebooks before it (RUNS_AFTER): wait for it
                    outcome = beside.pop(nb.name).wait()
                    record.update(status="failed" if outcome["error"] else "ok", **outcome)
                    if outcome["error"]:
                        finish("failed")
                        raise PipelineError(outcome["error"])
                    write_json(manifest, manifest_path)
                    continue
                record.update(status="running", cache_key=keys[nb.name], cache="computed")
                write_json(manifest, manifest_path)
                started = time.perf_counter()
                # the notebooks running beside this one count for themselves
                memory = _PeakMemory(exclude=lambda: set().union(*(b.pids() for b in beside.values())))
                try:
                    with memory, _kernel_stderr_to(run_dir / "logs" / f"{nb.stem}.log"):
                        papermill.execute_notebook(
                            str(nb),
                            str(output),
                            parameters=injected[nb.name],
                            kernel_name=KERNEL_NAME,
                            progress_bar=False,
                            cwd=str(run_dir),
                        )
                except _Signalled:
                    raise
                except Exception as err:  # papermill raises several types; all stop the run
                    record.update(
                        status="failed",
                        error=_describe_failure(nb, output, err),
                        wall_seconds=round(time.perf_counter() - started, 2),
                        peak_memory_mb=round(memory.peak_bytes / 2**20, 1),
                    )
                    _stop_beside(beside, results, f"stopped: {nb.name} failed")
                    finish("failed")
                    raise PipelineError(record["error"]) from err
                record.update(
                    status="ok",
                    error=None,
                    wall_seconds=round(time.perf_counter() - started, 2),
                    peak_memory_mb=round(memory.peak_bytes / 2**20, 1),
                )
                for later in notebooks:  # those that read nothing past this one start now, beside the next
                    if later.name > nb.name and RUNS_AFTER.get(later.name) == nb.name:
                        results[later.name].update(status="running", cache_key=keys[later.name], cache="computed")
                        beside[later.name] = _Beside(
                            later,
                            run_dir / later.name,
                            injected[later.name],
                            run_dir,
                            run_dir / "logs" / f"{later.stem}.log",
                        )
                write_json(manifest, manifest_path)
        except _Signalled as stop:
            import signal

            name = signal.Signals(stop.signum).name
            running = [r for r in results.values() if r.get("status") == "running"]
            current = running[0] if running else None
            _stop_beside(beside, results, f"stopped by {name}")
            _stop_kernels(children_before)
            for record in running:
                record.update(status=INTERRUPTED, error=f"stopped by {name}")
            finish(INTERRUPTED)
            raise RunInterrupted(
                f"run interrupted by {name}"
                + (f" during {current['notebook']}" if current else "")
                + f"; {manifest_path} records it",
                stop.signum,
            ) from None
    # "ok" only when every notebook has a current result (a rerun of one notebook in a folder
    # where others never ran, failed or are stale leaves the run incomplete)
    finish("ok" if all(r.get("status") == "ok" for r in results.values()) else "incomplete")
    return manifest


_KERNEL_FOLDER_PREFIX = "hcp-kernel-"


def _sweep_dead_kernel_folders() -> None:
    """Remove kernel folders (``hcp-kernel-<pid>-*`` in the temp folder) of runs killed outright.

    SIGKILL gives a run no chance to clean up; the next run on this machine does it for it.
    """
    import shutil

    for folder in Path(tempfile.gettempdir()).glob(f"{_KERNEL_FOLDER_PREFIX}*-*"):
        pid = folder.name[len(_KERNEL_FOLDER_PREFIX) :].split("-")[0]
        if pid.isdigit() and folder.is_dir() and _process_alive(int(pid), _hostname()) is False:
            shutil.rmtree(folder, ignore_errors=True)


def _hostname() -> str:
    import socket

    return socket.gethostname()


@contextlib.contextmanager
def _environment_kept(names: tuple[str, ...] = ("JUPYTER_PATH", "JUPYTER_RUNTIME_DIR")):
    """Restore the environment variables and the temporary folder that :func:`_kernel_environment` sets."""
    saved = {name: os.environ.get(name) for name in names}
    saved_tempdir = tempfile.tempdir
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _child_pids() -> set[int]:
    import psutil

    return {child.pid for child in psutil.Process().children(recursive=True)}


def _stop_kernels(before: set[int], grace: float = 5.0) -> None:
    """Stop the kernels this run started (an interrupted nbclient may not get to it): the child
    processes that were not there when the run began, so a caller's own ones are left alone."""
    import psutil

    children = [c for c in psutil.Process().children(recursive=True) if c.pid not in before]
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()
