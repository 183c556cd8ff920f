"""Chapter 2's stage: read the run's cleaned articles, generate the synthetic world, write it.

The simulator itself is :mod:`hcp_lib.world`; this module only connects it to the run folder
(``content/pubmed.parquet`` in, ``world/`` out).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..world.synth import World, generate_world, synthesis_params, write_world
from . import pubmed


def build_world(run_dir: str | Path, seed: int = 42, progress: Callable | None = None, **params: Any) -> World:
    """Read the run's articles, generate the world and write it (notebook 02's one call).

    Every check (parameters, articles) runs before anything is written.

    Parameters
    ----------
    run_dir : str or Path
        The run folder; its ``content/pubmed.parquet`` is read and its ``world/`` written.
    seed : int
        The one seed of the world.
    progress : callable, optional
        A ``tqdm``-like callable that counts the simulated weeks (None: no bar).
    **params
        Synthesis parameters (:func:`hcp_lib.world.synth.synthesis_params` lists them and
        their defaults).

    Returns
    -------
    World
        The generated world, as written.
    """
    values = synthesis_params(**params)
    articles = pubmed.read_articles(run_dir)
    world = generate_world(articles, values, seed, source=pubmed.articles_path(run_dir), progress=progress)
    write_world(world, run_dir, export_csv=values["export_csv"])
    return world
