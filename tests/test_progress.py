"""The notebooks' progress bars: hcp_lib.progress (a loop's bar, and the ticking bar of one long call)."""

import io
import threading
import time
from functools import partial

import pytest
from tqdm import tqdm

from hcp_lib.progress import each, ticking


def _tickers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ticking: ")]


def test_each_wraps_a_loop_in_the_bar_or_leaves_it_as_it_is():
    items = [3, 1, 2]
    assert each(None, items, "fits") is items
    calls = []

    def recording(iterable, **kwargs):
        calls.append(kwargs)
        return iterable

    assert list(each(recording, items, "fits", total=3)) == items
    assert calls == [{"desc": "fits", "total": 3}]


def test_without_a_progress_callable_ticking_draws_and_starts_nothing():
    before = threading.active_count()
    with ticking(None, "solving", limit_s=10) as bar:
        assert bar is None
        assert threading.active_count() == before


def test_a_ticking_bar_counts_towards_the_limit_then_completes_at_the_seconds_taken():
    out = io.StringIO()
    started = time.perf_counter()
    with ticking(partial(tqdm, file=out), "solving", limit_s=30, tick_s=0.02) as bar:
        assert _tickers() == ["ticking: solving"]
        time.sleep(0.3)
        deadline = time.perf_counter() + 30  # a loaded machine may run the ticker late, not never
        while out.getvalue().count("\r") < 3 and time.perf_counter() < deadline:
            time.sleep(0.02)
        seen_while_running = out.getvalue()
    took = time.perf_counter() - started
    # redrawn while the block ran, against the limit
    assert "solving:" in seen_while_running and "of at most 30 s" in seen_while_running
    assert seen_while_running.count("\r") >= 3
    # completed at the seconds taken (rounded to 0.1 s), its thread gone
    assert bar.n == bar.total
    assert 0.2 <= bar.total <= took + 0.05
    assert out.getvalue().rstrip().endswith(f"solving: done in {bar.total:.1f} s")
    assert _tickers() == []


def test_a_ticking_bar_without_a_limit_counts_seconds():
    out = io.StringIO()
    with ticking(partial(tqdm, file=out), "reading", tick_s=0.02) as bar:
        time.sleep(0.1)
        assert bar.total is None
    assert "reading: done in" in out.getvalue()


def test_a_ticking_bar_stops_where_it_stood_when_the_call_raises():
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="solver failed"):
        with ticking(partial(tqdm, file=out), "solving", limit_s=30, tick_s=0.02) as bar:
            time.sleep(0.1)
            raise RuntimeError("solver failed")
    assert bar.total == 30 and bar.n < 30  # not drawn as finished
    assert "done in" not in out.getvalue()
    assert _tickers() == []


def test_a_ticking_bar_never_runs_past_its_limit():
    out = io.StringIO()
    with ticking(partial(tqdm, file=out), "solving", limit_s=0.1, tick_s=0.02) as bar:
        time.sleep(0.3)
        assert bar.n <= 0.1
    assert bar.n == bar.total >= 0.3 - 0.05


def test_ticking_refuses_a_tick_that_is_not_positive():
    with pytest.raises(ValueError, match="tick_s must be positive, got 0"):
        with ticking(partial(tqdm, file=io.StringIO()), "solving", tick_s=0):
            pass
