"""Shared fixtures: one pipeline run at tiny scale and its built book, made once per session."""

import subprocess
import sys
from pathlib import Path

import pytest

from hcp_lib.config import PROJECT_ROOT


def run_cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run ``python -m hcp_lib ARGS`` from the project root and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "hcp_lib", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A whole pipeline run at tiny scale (every notebook), seed 42."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    result = run_cli("run", "--scale", "tiny", "--seed", "42", "--out", str(run_dir), "--no-progress")
    assert result.returncode == 0, f"pipeline failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return run_dir


@pytest.fixture(scope="session")
def tiny_book(tiny_run, tmp_path_factory) -> Path:
    """The book built from :func:`tiny_run`; returns the HTML root."""
    book_dir = tmp_path_factory.mktemp("book")
    result = run_cli("book", "--run", str(tiny_run), "--out", str(book_dir))
    assert result.returncode == 0, f"book build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return book_dir / "_build" / "html"
