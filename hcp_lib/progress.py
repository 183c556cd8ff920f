"""Progress bars for the notebooks' long steps.

Every library call that loops over work takes ``progress`` (e.g. ``tqdm.auto.tqdm``, or None for
no bar) and wraps its loop with :func:`each`. A step that is one long call
with no progress of its own to report (one HiGHS solve, reading a run's tables) is wrapped in
:func:`ticking` instead, whose bar counts the seconds the call has run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

#: seconds between two redraws of a :func:`ticking` bar
TICK_SECONDS = 0.5


def each(progress: Callable | None, items: Iterable[T], desc: str, total: int | None = None) -> Iterable[T]:
    """``items`` wrapped in ``progress`` (a ``tqdm``-like callable) with ``desc``, or ``items``
    as they are when ``progress`` is None."""
    if progress is None:
        return items
    return progress(items, desc=desc, total=total)


@contextmanager
def ticking(
    progress: Callable | None, desc: str, limit_s: float | None = None, tick_s: float = TICK_SECONDS
) -> Iterator[Any]:
    """A bar that counts the seconds the ``with`` block has run, redrawn every ``tick_s`` by a
    background thread: for one long call that reports no progress of its own.

    With ``limit_s`` (the call's own time limit, e.g. the solver's) the bar runs towards it, so
    the reader sees how much of the limit has gone; without, it counts seconds alone. When the
    block ends the bar is completed at the seconds it took (a finished step is never drawn as
    unfinished); when it raises, the bar is closed where it stood and the exception goes on.
    Yields the bar (None when ``progress`` is None, and then nothing is drawn or started).

    Why by hand: tqdm redraws a bar only when it is updated, and a call such as
    ``scipy.optimize.milp`` has no callback to update it from, so without a thread of its own
    the bar would stand at 0 for the whole call."""
    if progress is None:
        yield None
        return
    if tick_s <= 0:
        raise ValueError(f"tick_s must be positive, got {tick_s!r}")
    total = float(limit_s) if limit_s is not None and limit_s > 0 else None
    bar = progress(total=total, desc=desc, unit="s", bar_format=_FORMAT if total else _FORMAT_OPEN)
    started = time.perf_counter()
    stop = threading.Event()

    def elapsed() -> float:
        return round(time.perf_counter() - started, 1)

    def tick() -> None:
        while not stop.wait(tick_s):
            seconds = elapsed()
            bar.n = min(seconds, total) if total else seconds
            bar.refresh()

    ticker = threading.Thread(target=tick, name=f"ticking: {desc}", daemon=True)
    ticker.start()
    finished = False
    try:
        yield bar
        finished = True
    finally:
        stop.set()
        ticker.join()
        if finished:  # completed at the seconds it took (reset also gives a notebook bar that maximum)
            seconds = max(elapsed(), 0.1)
            bar.bar_format = _FORMAT_DONE
            bar.reset(total=seconds)
            bar.update(seconds)
        else:
            bar.refresh()
        bar.close()


_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f} of at most {total:.0f} s"
_FORMAT_OPEN = "{desc}: {n:.0f} s"
_FORMAT_DONE = "{desc}: done in {n:.1f} s"
