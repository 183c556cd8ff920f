"""The papermill runner: parameter injection, kernel override, manifest, failure reports."""

import json

import nbformat
import pytest

from hcp_lib.config import ParameterError
from hcp_lib.pipeline import PipelineError, run_pipeline, run_state, select_notebooks


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
        [
            "import json, pathlib, sys\n"
            "pathlib.Path(run_dir, 'first.json').write_text(json.dumps({'seed': seed, 'corpus': corpus, 'python': sys.executable}))"
        ],
    )
    _notebook(
        folder / "02_second.ipynb",
        "run_dir = ''\nscale = 'small'",
        [
            "import os, pathlib",
            "pathlib.Path(run_dir, 'second.txt').write_text(scale)",
            "os.write(2, b'start-up chatter of some library\\n')",
        ],
    )
    return folder


def test_runs_in_order_with_injected_parameters_on_this_python(notebooks, tmp_path):
    import sys

    out = tmp_path / "run"
    manifest = run_pipeline(
        scale="tiny", seed=7, out=out, overrides={"corpus": "v01"}, notebooks_dir=notebooks, progress=False
    )
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
    _notebook(
        notebooks / "02_second.ipynb", "run_dir = ''", ["x = 1", "raise ValueError('boom in the second notebook')"]
    )
    _notebook(notebooks / "03_third.ipynb", "run_dir = ''", ["open(run_dir + '/third.txt', 'w').write('ran')"])
    out = tmp_path / "run"
    with pytest.raises(PipelineError) as caught:
        run_pipeline(scale="tiny", out=out, notebooks_dir=notebooks, progress=False)
    message = str(caught.value)
    assert (
        "02_second.ipynb" in message
        and "cell 5 of the executed notebook (In [4])" in message
        and "ValueError: boom in the second notebook" in message
    )
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


def test_only_runs_one_notebook_against_an_existing_run_with_its_parameters(notebooks, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(PipelineError, match="does not exist"):
        run_pipeline(out=out, only="02", notebooks_dir=notebooks, progress=False)
    run_pipeline(scale="tiny", seed=7, out=out, notebooks_dir=notebooks, progress=False)
    (out / "second.txt").unlink()
    manifest = run_pipeline(out=out, only="2", notebooks_dir=notebooks, progress=False)
    assert (out / "second.txt").read_text() == "tiny", "the rerun uses the run's scale, not the default"
    assert manifest["parameters"]["scale"] == "tiny" and manifest["parameters"]["seed"] == 7
    assert manifest["status"] == "ok" and manifest["only"] == "2"
    assert [n["notebook"] for n in manifest["notebooks"]] == ["01_first.ipynb", "02_second.ipynb"]
    with pytest.raises(PipelineError, match="no notebook numbered 09; the notebooks are 01, 02"):
        select_notebooks(sorted(notebooks.glob("*.ipynb")), "9")


@pytest.mark.parametrize("option", [{"scale": "small"}, {"seed": 8}])
def test_only_refuses_another_scale_or_seed_and_leaves_the_manifest_alone(notebooks, tmp_path, option):
    out = tmp_path / "run"
    run_pipeline(scale="tiny", seed=7, out=out, notebooks_dir=notebooks, progress=False)
    before = (out / "manifest.json").read_text()
    name = next(iter(option))
    with pytest.raises(PipelineError, match=rf"made with --{name} (tiny|7), not {option[name]}; .*leave out --{name}"):
        run_pipeline(out=out, only="02", notebooks_dir=notebooks, progress=False, **option)
    assert (out / "manifest.json").read_text() == before
    # the run's own values given explicitly are fine
    run_pipeline(scale="tiny", seed=7, out=out, only="02", notebooks_dir=notebooks, progress=False)


def test_only_refuses_a_change_an_earlier_notebook_read_and_marks_later_ones_stale(notebooks, tmp_path):
    out = tmp_path / "run"
    run_pipeline(scale="tiny", out=out, notebooks_dir=notebooks, progress=False)
    before = (out / "manifest.json").read_text()
    with pytest.raises(PipelineError, match="'corpus' is also read by 01_first.ipynb, which ran with 'all'"):
        run_pipeline(out=out, only="02", overrides={"corpus": "v01"}, notebooks_dir=notebooks, progress=False)
    assert (out / "manifest.json").read_text() == before
    manifest = run_pipeline(out=out, only="01", overrides={"corpus": "v01"}, notebooks_dir=notebooks, progress=False)
    assert json.loads((out / "first.json").read_text())["corpus"] == "v01"
    assert manifest["parameters"]["corpus"] == "v01"
    assert manifest["status"] == "incomplete"
    second = manifest["notebooks"][1]
    assert second["status"] == "stale" and "corpus='v01'" in second["error"]
    assert run_state(out, notebooks)["state"] == "incomplete"
    # rerunning the stale notebook completes the run again
    assert run_pipeline(out=out, only="02", notebooks_dir=notebooks, progress=False)["status"] == "ok"
    assert run_state(out, notebooks)["state"] == "ok"


def _manifest(out, status, pid, notebook_status="running"):
    import socket

    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(
        json.dumps(
            {
                "status": status,
                "pid": pid,
                "host": socket.gethostname(),
                "started_at": "2026-01-01T00:00:00+00:00",
                "parameters": {"scale": "tiny", "seed": 1},
                "notebooks": [{"notebook": "01_ingestion.ipynb", "status": notebook_status}],
            }
        )
    )


def test_a_dead_run_is_told_from_a_live_one(notebooks, tmp_path):
    import os
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _manifest(tmp_path / "dead", "running", gone.pid)
    state = run_state(tmp_path / "dead")
    assert state["state"] == "died" and f"process {gone.pid} is gone" in state["message"]
    assert "01_ingestion.ipynb" in state["message"]
    _manifest(tmp_path / "live", "running", os.getpid())
    assert run_state(tmp_path / "live")["state"] == "running"
    with pytest.raises(PipelineError, match="a run is in progress"):
        run_pipeline(out=tmp_path / "live", notebooks_dir=notebooks, progress=False)
    # a dead run's folder can be run into again
    assert run_pipeline(scale="tiny", out=tmp_path / "dead", notebooks_dir=notebooks, progress=False)["status"] == "ok"


_SLEEPER = """
import sys
from pathlib import Path
from hcp_lib.pipeline import RunInterrupted, run_pipeline
try:
    run_pipeline(scale="tiny", out=sys.argv[1], notebooks_dir=Path(sys.argv[2]), progress=False)
except RunInterrupted as err:
    print(err)
    sys.exit(128 + err.signum)
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_run_records_it_and_cleans_up(notebooks, tmp_path, signame):
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    _notebook(
        notebooks / "02_second.ipynb",
        "run_dir = ''",
        [
            # written then renamed, so the test never reads a file that is created but not yet written
            "import os, pathlib, time\n"
            "pathlib.Path(run_dir, 'kernel.pid.part').write_text(str(os.getpid()))\n"
            "os.replace(pathlib.Path(run_dir, 'kernel.pid.part'), pathlib.Path(run_dir, 'kernel.pid'))\n"
            "time.sleep(120)"
        ],
    )
    out, scratch = tmp_path / "run", tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    runner = subprocess.Popen(
        [sys.executable, "-c", _SLEEPER, str(out), str(notebooks)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "kernel.pid").exists():
        assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
        time.sleep(0.2)
    kernel = int((out / "kernel.pid").read_text())
    assert run_state(out)["state"] == "running"
    runner.send_signal(getattr(signal, signame))
    stdout, stderr = runner.communicate(timeout=60)
    signum = getattr(signal, signame).value
    assert runner.returncode == 128 + signum, stderr
    assert f"run interrupted by {signame} during 02_second.ipynb" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["finished_at"]
    assert [n["status"] for n in manifest["notebooks"]] == ["ok", "interrupted"]
    state = run_state(out)
    assert state["state"] == "interrupted" and "--only 02" in state["message"]
    assert not psutil.pid_exists(kernel) or psutil.Process(kernel).status() == psutil.STATUS_ZOMBIE
    assert list(scratch.iterdir()) == [], "the kernel's temporary folder and connection file are removed"


def test_an_out_that_is_a_file_or_cannot_be_made_is_one_clear_error(notebooks, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    with pytest.raises(PipelineError, match=r"a_file: is a file, not a folder"):
        run_pipeline(out=a_file, notebooks_dir=notebooks, progress=False)
    with pytest.raises(PipelineError, match=r"a_file/run: cannot create the folder \(Not a directory\)"):
        run_pipeline(out=a_file / "run", notebooks_dir=notebooks, progress=False)
    assert a_file.read_text() == "keep me"


def test_kernel_folders_of_killed_runs_are_swept(notebooks, tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / "scratch" / f"hcp-kernel-{gone.pid}-abc"
    (dead / "runtime").mkdir(parents=True)
    (dead / "runtime" / "kernel-1.json").write_text("{}")
    other = tmp_path / "scratch" / "hcp-kernel-notapid"
    other.mkdir()
    run_pipeline(scale="tiny", out=tmp_path / "run", notebooks_dir=notebooks, progress=False)
    assert not dead.exists() and other.exists()
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == ["hcp-kernel-notapid"]


def test_an_interrupted_run_stops_only_the_processes_it_started():
    import subprocess
    import sys

    from hcp_lib.pipeline import _child_pids, _stop_kernels

    callers = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    before = _child_pids()
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _stop_kernels(before, grace=5.0)
        assert kernel.wait(timeout=10) is not None
        assert callers.poll() is None, "a process the caller started before the run is left alone"
    finally:
        callers.kill()
        kernel.kill()
        callers.wait()


def test_a_whole_run_reuses_results_whose_inputs_are_unchanged(notebooks, tmp_path, monkeypatch):
    out = tmp_path / "run"
    first = run_pipeline(scale="tiny", seed=7, out=out, notebooks_dir=notebooks, progress=False)
    assert [n["cache"] for n in first["notebooks"]] == ["computed", "computed"]
    keys = [n["cache_key"] for n in first["notebooks"]]
    (out / "second.txt").write_text("kept")  # a rerun would overwrite it
    again = run_pipeline(scale="tiny", seed=7, out=out, notebooks_dir=notebooks, progress=False)
    assert [n["cache"] for n in again["notebooks"]] == ["reused", "reused"] and again["status"] == "ok"
    assert [n["cache_key"] for n in again["notebooks"]] == keys
    assert (out / "second.txt").read_text() == "kept"
    assert run_state(out, notebooks)["state"] == "ok"
    # a parameter only the second notebook reads: the first is reused, the second runs
    scaled = run_pipeline(scale="small", seed=7, out=out, notebooks_dir=notebooks, progress=False)
    assert [n["cache"] for n in scaled["notebooks"]] == ["reused", "computed"]
    assert (out / "second.txt").read_text() == "small"
    # a change upstream (the first notebook's seed) reaches every later notebook
    reseeded = run_pipeline(scale="small", seed=8, out=out, notebooks_dir=notebooks, progress=False)
    assert [n["cache"] for n in reseeded["notebooks"]] == ["computed", "computed"]
    # the library's code is part of the key; --no-cache runs everything
    monkeypatch.setattr("hcp_lib.pipeline.code_fingerprint", lambda: "other code")
    changed = run_pipeline(scale="small", seed=8, out=out, notebooks_dir=notebooks, progress=False)
    assert [n["cache"] for n in changed["notebooks"]] == ["computed", "computed"]
    forced = run_pipeline(scale="small", seed=8, out=out, notebooks_dir=notebooks, progress=False, cache=False)
    assert [n["cache"] for n in forced["notebooks"]] == ["computed", "computed"]
    # a result whose executed notebook is gone is computed again, and so is everything after it
    (out / "01_first.ipynb").unlink()
    missing = run_pipeline(scale="small", seed=8, out=out, notebooks_dir=notebooks, progress=False)
    assert [n["cache"] for n in missing["notebooks"]] == ["computed", "computed"]


def test_a_failed_notebook_is_never_reused(notebooks, tmp_path):
    out = tmp_path / "run"
    _notebook(notebooks / "02_second.ipynb", "run_dir = ''\nscale = 'small'", ["raise ValueError('boom')"])
    with pytest.raises(PipelineError, match="boom"):
        run_pipeline(scale="tiny", out=out, notebooks_dir=notebooks, progress=False)
    with pytest.raises(PipelineError, match="boom"):
        run_pipeline(scale="tiny", out=out, notebooks_dir=notebooks, progress=False)
    saved = json.loads((out / "manifest.json").read_text())
    assert [n.get("cache") for n in saved["notebooks"]] == ["reused", "computed"]


@pytest.mark.parametrize(
    ("later", "outputs"),
    [("03_topic_modeling.ipynb", "topics"), ("09_off_policy_evaluation.ipynb", "ope")],
)
def test_a_notebook_that_runs_beside_others_needs_nothing_they_write(tiny_run, tmp_path, later, outputs):
    # a copy of the tiny run holding only what was written up to the end of the notebook that
    # RUNS_AFTER names: the later notebook, rerun on it alone, gives the same outputs
    import shutil

    import pandas as pd

    from hcp_lib.pipeline import RUNS_AFTER

    from .conftest import run_cli

    after = RUNS_AFTER[later]
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    finished = (tiny_run / after).stat().st_mtime
    for path in sorted(run.rglob("*"), reverse=True):
        written = (tiny_run / path.relative_to(run)).stat().st_mtime
        if path.is_file() and path.name != "manifest.json" and written > finished:
            path.unlink()
    assert not (run / outputs).exists() or not any((run / outputs).rglob("*.parquet"))
    result = run_cli("run", "--only", later[:2], "--out", str(run), "--no-progress")
    assert result.returncode == 0, (
        f"{later} failed on what {after} left:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    tables = sorted(p.relative_to(tiny_run) for p in (tiny_run / outputs).rglob("*.parquet"))
    assert tables
    for table in tables:
        pd.testing.assert_frame_equal(pd.read_parquet(run / table), pd.read_parquet(tiny_run / table))


def test_the_code_fingerprint_covers_the_library_and_the_data(tmp_path):
    from hcp_lib.pipeline import code_fingerprint

    (tmp_path / "hcp_lib" / "__pycache__").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "hcp_lib" / "a.py").write_text("x = 1")
    (tmp_path / "data" / "d.csv").write_text("a\n1\n")
    before = code_fingerprint(tmp_path)
    (tmp_path / "hcp_lib" / "__pycache__" / "a.pyc").write_bytes(b"compiled")
    assert code_fingerprint(tmp_path) == before
    (tmp_path / "data" / "d.csv").write_text("a\n2\n")
    assert code_fingerprint(tmp_path) != before


def test_a_notebook_of_runs_after_runs_beside_the_notebooks_in_between(notebooks, tmp_path, monkeypatch):
    # 03 reads only what 01 wrote: it starts when 01 has finished, beside 02, which waits for a
    # file 03 writes (had 03 run after 02, 02 would fail waiting for it)
    monkeypatch.setattr("hcp_lib.pipeline.RUNS_AFTER", {"03_third.ipynb": "01_first.ipynb"})
    _notebook(
        notebooks / "02_second.ipynb",
        "run_dir = ''\nscale = 'small'",
        [
            "import pathlib, time\n"
            "flag = pathlib.Path(run_dir, 'third.txt')\n"
            "for _ in range(1200):\n"
            "    if flag.exists():\n"
            "        break\n"
            "    time.sleep(0.1)\n"
            "assert flag.exists(), 'notebook 03 did not run beside 02'\n"
            "pathlib.Path(run_dir, 'second.txt').write_text(scale)"
        ],
    )
    _notebook(
        notebooks / "03_third.ipynb",
        "run_dir = ''\nseed = 0",
        [
            "import json, os, pathlib\n"
            "first = json.loads(pathlib.Path(run_dir, 'first.json').read_text())\n"
            "pathlib.Path(run_dir, 'third.txt').write_text(str(first['seed'] + seed))\n"
            "os.write(2, b'chatter of the third kernel\\n')"
        ],
    )
    out = tmp_path / "run"
    manifest = run_pipeline(scale="tiny", seed=5, out=out, notebooks_dir=notebooks, progress=False)
    assert manifest["status"] == "ok"
    assert [(n["notebook"], n["status"], n["cache"]) for n in manifest["notebooks"]] == [
        ("01_first.ipynb", "ok", "computed"),
        ("02_second.ipynb", "ok", "computed"),
        ("03_third.ipynb", "ok", "computed"),
    ]
    third = manifest["notebooks"][2]
    assert third["wall_seconds"] > 0 and third["peak_memory_mb"] > 0 and third["error"] is None
    assert (out / "third.txt").read_text() == "10" and (out / "second.txt").read_text() == "tiny"
    # its kernel's stderr went to its own log, not to the notebook's beside it
    assert "chatter of the third kernel" in (out / "logs" / "03_third.log").read_text()
    assert "chatter of the third kernel" not in (out / "logs" / "02_second.log").read_text()
    assert not list((out / "logs").glob("beside-*"))
    # a rerun reuses all three
    again = run_pipeline(scale="tiny", seed=5, out=out, notebooks_dir=notebooks, progress=False)
    assert [n["cache"] for n in again["notebooks"]] == ["reused"] * 3


def test_a_failure_beside_the_run_is_reported_like_any_other(notebooks, tmp_path, monkeypatch):
    monkeypatch.setattr("hcp_lib.pipeline.RUNS_AFTER", {"03_third.ipynb": "01_first.ipynb"})
    _notebook(notebooks / "03_third.ipynb", "run_dir = ''", ["x = 1", "raise KeyError('no such column: score')"])
    out = tmp_path / "run"
    with pytest.raises(PipelineError, match=r"03_third.ipynb failed at cell 5 .*KeyError.*no such column: score"):
        run_pipeline(scale="tiny", out=out, notebooks_dir=notebooks, progress=False)
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["status"] == "failed"
    assert [n["status"] for n in saved["notebooks"]] == ["ok", "ok", "failed"]
    assert (out / "03_third.ipynb").exists()  # the executed notebook is kept
