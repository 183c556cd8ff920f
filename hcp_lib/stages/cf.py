"""Chapter 4's stage: the split, tuning the baselines on the validation window, and the run folder.

:func:`tune` grid-searches each baseline's few hyper-parameters (:mod:`hcp_lib.models.baselines`)
on the validation window by a logged-data criterion, never on test.

Reads: ``world/`` tables, ``topics/`` doc-topic matrix. Writes (via the notebook) under
``cf/``: ``split.json``, ``tuning.parquet``, ``test_top_n/<model>.parquet``,
``als_hcp_factors.parquet``, ``als_item_factors.parquet``, and ``metrics/cf.json``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import metrics
from ..domain import CHANNELS
from ..models.base import Recommender, exclusion_mask, model_name, positions, top_n
from ..models.baselines import ALS, PROBABILITY_CHANNEL_MODELS, ChannelRecommender, area_features, topic_features
from ..progress import each
from ..split import TemporalSplit, TrainingData

# --- the model family, tuning and artifacts ------------------------------------------------

#: each model's hyper-parameter grid, searched on the validation window
CONTENT_GRIDS: dict[str, dict[str, list]] = {
    "random": {},
    "popularity": {},
    "specialty_popularity": {"shrinkage": [0.0, 10.0, 100.0]},
    "recency_popularity": {"half_life_days": [7.0, 30.0, 90.0]},
    "itemknn": {"neighbours": [20, 100], "shrinkage": [0.0, 10.0, 50.0]},
    "ease": {"l2": [10.0, 100.0, 500.0, 2000.0]},
    "als": {"factors": [16, 64], "regularization": [0.01, 0.1], "alpha": [1.0, 10.0]},
    "bpr": {"factors": [16, 64], "learning_rate": [0.01, 0.05]},
    "content_based": {"specialty_weight": [0.0, 0.25, 0.5]},
}
CHANNEL_GRIDS: dict[str, dict[str, list]] = {
    "most_frequent_channel": {},
    "specialty_best_channel": {"shrinkage": [0.0, 20.0, 200.0]},
    "business_as_usual_channel": {},
}


@dataclass(frozen=True)
class EvaluationWindow:
    """What a model is judged on in one window: the HCPs with at least one new engagement,
    the mask of items they may not be recommended, the items they engaged with (the
    engaged window rows give the channel targets), and every logged exposure of the window
    (``exposures``: what the choice criterion reads)."""

    hcp_ids: np.ndarray
    exclude: np.ndarray
    relevant: sp.csr_matrix
    engaged_rows: pd.DataFrame
    exposures: pd.DataFrame | None = None


def evaluation_window(
    train: TrainingData, window: pd.DataFrame, catalogue: pd.DataFrame, released_by: pd.Timestamp
) -> EvaluationWindow:
    """The :class:`EvaluationWindow` for ``window`` rows scored by models fitted on ``train``.

    Excluded: items the HCP engaged with before the cut-off, items not approved for its
    specialty, items released after ``released_by`` (release dates from the full
    ``catalogue``). Relevant: items engaged in the window and not excluded. HCPs of the
    window that are not in the master raise an error naming the id.
    """
    engaged = window[window["engaged"]]
    candidates = np.asarray(sorted(engaged["hcp_id"].astype(str).unique()), dtype=object)
    positions(candidates, train.hcp_ids.astype(object), "HCP")
    content_ids = train.content_ids.astype(object)
    exclude = exclusion_mask(candidates, content_ids, train, released_by=released_by, catalogue=catalogue)
    relevant = metrics.relevance_matrix(engaged, candidates, content_ids, exclude)
    keep = np.asarray(relevant.sum(axis=1)).ravel() > 0
    hcp_ids = candidates[keep]
    known = window["hcp_id"].astype(str).isin(set(train.hcp_ids.astype(str)))
    return EvaluationWindow(
        hcp_ids,
        exclude[keep],
        relevant[keep],
        engaged[engaged["hcp_id"].isin(set(hcp_ids))],
        window[known].reset_index(drop=True),
    )


def exposure_scores(model: Recommender, exposures: pd.DataFrame, batch_size: int = 2048) -> np.ndarray:
    """``model``'s score of the (HCP, item) of every logged exposure (rows of ``exposures``),
    from its score matrix at its cut-off, scored in batches of HCPs."""
    hcp_ids = np.asarray(sorted(exposures["hcp_id"].astype(str).unique()), dtype=object)
    rows = pd.Index(hcp_ids).get_indexer(exposures["hcp_id"].astype(str))
    cols = pd.Index(model.content_ids_.astype(str)).get_indexer(exposures["content_id"].astype(str))
    values = np.empty(len(exposures))
    for first in range(0, len(hcp_ids), batch_size):
        batch = hcp_ids[first : first + batch_size]
        inside = (rows >= first) & (rows < first + len(batch))
        values[inside] = model.score(batch)[rows[inside] - first, cols[inside]]
    return values


def evaluate_content(model: Recommender, frame: EvaluationWindow, k: int = 10) -> dict[str, float]:
    """The choice criterion ``exposure_auc`` (:func:`hcp_lib.metrics.exposure_auc` of the
    model's scores on the window's logged exposures), and HR@k and NDCG@k of its top-k lists
    on observed engagements (a replay diagnostic, biased toward what the logging policy showed)."""
    top = top_n(model.score(frame.hcp_ids), k, frame.exclude, model=model_name(model))
    result = {
        f"hr@{k}": metrics.mean_over_hcps(metrics.hit_at_k(top, frame.relevant, k)),
        f"ndcg@{k}": metrics.mean_over_hcps(metrics.ndcg_at_k(top, frame.relevant, k)),
    }
    if frame.exposures is not None:
        result["exposure_auc"] = metrics.exposure_auc(
            frame.exposures["engaged"].to_numpy(bool), exposure_scores(model, frame.exposures)
        )
    return result


def evaluate_channel(model: ChannelRecommender, frame: EvaluationWindow) -> dict[str, float]:
    """Accuracy of the model's top channel against the channel of each engaged window row (a
    diagnostic: it rewards agreeing with the channels the logging policy chose) and, for
    models whose channel scores are engagement rates (:data:`PROBABILITY_CHANNEL_MODELS`),
    the choice criterion ``exposure_log_loss``: the cross-entropy of the HCP's rate on the
    logged channel against the outcome of every exposure of the window."""
    rows = frame.engaged_rows
    predicted = model.predict_channel(rows["hcp_id"].astype(object).to_numpy())
    result = {"channel_accuracy": metrics.channel_accuracy(predicted, rows["channel"].astype(object).to_numpy())}
    if frame.exposures is not None and model.name in PROBABILITY_CHANNEL_MODELS:
        exposures = frame.exposures
        rates = model.channel_scores(exposures["hcp_id"].astype(object).to_numpy())
        probability = rates[np.arange(len(exposures)), pd.Index(CHANNELS).get_indexer(exposures["channel"].astype(str))]
        result["exposure_log_loss"] = metrics.log_loss_value(exposures["engaged"].to_numpy(bool), probability)
    return result


def _grid(space: dict[str, list]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


#: the choice criteria, computable from logged data alone: name -> (metric, higher is better)
CONTENT_CRITERION = ("exposure_auc", True)
CHANNEL_CRITERION = ("exposure_log_loss", False)


def tune(
    factories: dict[str, Callable[..., Recommender]],
    grids: dict[str, dict[str, list]],
    train: TrainingData,
    frame: EvaluationWindow,
    k: int = 10,
    progress: Callable | None = None,
) -> tuple[dict[str, dict[str, Any]], pd.DataFrame]:
    """Fit every model at every grid point on ``train``; score it on the validation ``frame``.

    Returns (chosen hyper-parameters per model: the grid point with the best choice criterion,
    the first one on ties; the tuning table: model, params (JSON), the metrics, fit_seconds,
    score_seconds, chosen). Content models are chosen by :data:`CONTENT_CRITERION` (AUC of
    their scores on the logged validation exposures), channel models by
    :data:`CHANNEL_CRITERION` when they have it (else their only grid point is kept).
    Observed-engagement NDCG and HR are computed too, as diagnostics, and never choose.
    ``progress`` (e.g. ``tqdm``) counts the fits, every grid point of every model.
    """
    for name in factories:
        if name not in grids:
            raise KeyError(f"no hyper-parameter grid for model {name!r}; grids exist for {', '.join(grids)}")
    jobs = [(name, params) for name in factories for params in _grid(grids[name])]
    records, best = [], {}  # best: model -> (its criterion, oriented so that higher is better; params)
    for name, params in each(progress, jobs, "baseline fits (grid points)"):
        started = time.perf_counter()
        model = factories[name](**params).fit(train)
        fitted = time.perf_counter()
        if isinstance(model, ChannelRecommender):
            scores, (target, higher) = evaluate_channel(model, frame), CHANNEL_CRITERION
        else:
            scores, (target, higher) = evaluate_content(model, frame, k), CONTENT_CRITERION
        records.append(
            {
                "model": name,
                "params": json.dumps(params, sort_keys=True),
                **scores,
                "fit_seconds": fitted - started,
                "score_seconds": time.perf_counter() - fitted,
            }
        )
        value = scores.get(target, np.nan)
        value = -np.inf if not np.isfinite(value) else (value if higher else -value)
        if name not in best or value > best[name][0]:  # the first grid point on ties
            best[name] = (value, params)
    chosen = {name: best.get(name, (None, None))[1] for name in factories}
    table = pd.DataFrame.from_records(records)
    table["chosen"] = [json.loads(p) == chosen[m] for m, p in zip(table["model"], table["params"])]
    return chosen, table


def factor_table(ids: pd.Index, factors: np.ndarray, id_column: str, fit: str) -> pd.DataFrame:
    """Wide factor table: ``id_column``, ``fit`` (which training data it came from), factor_00, factor_01, …"""
    table = pd.DataFrame(factors, columns=[f"factor_{i:02d}" for i in range(factors.shape[1])])
    table.insert(0, "fit", fit)
    table.insert(0, id_column, pd.array(ids.astype(str), dtype="string"))
    return table


# --- the stage: world tables in, split, artifacts out --------------------------------------

WORLD_FILES = {
    "interactions": "hcp_interaction_data.parquet",
    "hcps": "hcp_master.parquet",
    "catalogue": "campaigns_with_content.parquet",
}


@dataclass(frozen=True)
class WorldTables:
    """The three world tables the baselines use, with the contract columns they need."""

    interactions: pd.DataFrame
    hcps: pd.DataFrame
    catalogue: pd.DataFrame


def read_world(run_dir: str | Path) -> WorldTables:
    """Read ``world/`` (the contract's file names); an error names a missing file or column."""
    from ..config import RunDir
    from ..io import DataValidationError, read_parquet
    from ..split import CATALOGUE_COLUMNS, HCP_COLUMNS, INTERACTION_COLUMNS

    tables = {}
    for key, columns in (
        ("interactions", INTERACTION_COLUMNS),
        ("hcps", HCP_COLUMNS),
        ("catalogue", CATALOGUE_COLUMNS),
    ):
        path = RunDir(Path(run_dir)).world / WORLD_FILES[key]
        table = read_parquet(path)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DataValidationError(f"{path}: missing column {missing[0]!r} (the world contract requires it)")
        tables[key] = table.loc[:, list(columns)]
    return WorldTables(**tables)


@dataclass(frozen=True)
class StageSplit:
    """The split and what each model family is fitted and judged on.

    ``train`` (before ``valid_start``) fits models for tuning on ``validation``;
    ``train_valid`` (before ``test_start``) refits them with the chosen values for the
    ``test`` window, whose lists go to the run folder. ``catalogue`` is the full catalogue
    (every release date): it decides which items are candidates in a window, never what a
    model learns.
    """

    split: TemporalSplit
    train: TrainingData
    train_valid: TrainingData
    validation: EvaluationWindow
    test: EvaluationWindow
    catalogue: pd.DataFrame


def prepare_split(
    world: WorldTables, horizon_start: pd.Timestamp, horizon_end: pd.Timestamp, holdout_days: int
) -> StageSplit:
    """Split the world's interactions: the last ``holdout_days`` days of the horizon are the
    test window, the ``holdout_days`` before it the validation window, the rest train.

    Raises :class:`hcp_lib.split.SplitError` naming the dates when an interaction lies
    outside the horizon or a window is empty.
    """
    from ..split import SplitError, check_windows_have_rows, training_data, window_rows, windows_from_days

    split = windows_from_days(horizon_start, horizon_end, holdout_days, holdout_days)
    times = world.interactions["exposed_at"]
    outside = (times < split.train_start) | (times >= split.test_end)
    if outside.any():
        raise SplitError(
            f"interaction at {times[outside].iloc[0]} lies outside the horizon "
            f"[{split.train_start}, {split.test_end}); do world_start and horizon_days match the world?"
        )
    check_windows_have_rows(world.interactions, split)
    train = training_data(world.interactions, world.hcps, world.catalogue, split.valid_start)
    train_valid = training_data(world.interactions, world.hcps, world.catalogue, split.test_start)
    validation = evaluation_window(
        train, window_rows(world.interactions, split, "validation"), world.catalogue, released_by=split.test_start
    )
    test = evaluation_window(
        train_valid, window_rows(world.interactions, split, "test"), world.catalogue, released_by=split.test_end
    )
    return StageSplit(split, train, train_valid, validation, test, world.catalogue)


def grids_for(tune_hyper_parameters: bool) -> dict[str, dict[str, list]]:
    """Every model's grid, or (when not tuning) one point per model: its default values."""
    grids = {**CONTENT_GRIDS, **CHANNEL_GRIDS}
    return grids if tune_hyper_parameters else {name: {} for name in grids}


def validation_table(tuning: pd.DataFrame) -> pd.DataFrame:
    """The chosen grid point of every model, one row per model: the content models, best
    choice criterion (:data:`CONTENT_CRITERION`) first, then the channel models."""
    chosen = tuning[tuning["chosen"]].drop(columns="chosen").set_index("model")
    is_content = chosen["ndcg@10"].notna() if "ndcg@10" in chosen else pd.Series(False, index=chosen.index)
    criterion = CONTENT_CRITERION[0]
    content = (
        chosen[is_content].sort_values(criterion, ascending=False, kind="stable")
        if criterion in chosen
        else chosen[is_content]
    )
    return pd.concat([content, chosen[~is_content]]).dropna(axis=1, how="all")


def test_top_n(model: Recommender, stage: StageSplit, n: int) -> pd.DataFrame:
    """``model``'s top-``n`` list (hcp_id, rank, content_id, score) for every HCP of the
    master at the start of the test window: seen, unapproved and not-yet-released
    (after the test window) items excluded."""
    from ..models.base import recommend

    train = stage.train_valid
    hcp_ids = train.hcp_ids.astype(object).to_numpy()
    return recommend(
        model,
        hcp_ids,
        n,
        exclusion_mask(
            hcp_ids,
            train.content_ids.astype(object),
            train,
            released_by=stage.split.test_end,
            catalogue=stage.catalogue,
        ),
    )


def test_channels(model: ChannelRecommender, stage: StageSplit) -> pd.DataFrame:
    """Channel scores of every HCP of the master (hcp_id + one column per channel) and the
    predicted channel, from a channel model fitted before the test window."""
    hcp_ids = stage.train_valid.hcp_ids.astype(object).to_numpy()
    scores = pd.DataFrame(model.channel_scores(hcp_ids), columns=list(CHANNELS))
    scores.insert(0, "hcp_id", pd.array(hcp_ids.astype(str), dtype="string"))
    scores["channel"] = pd.array(model.predict_channel(hcp_ids).astype(str), dtype="string")
    return scores


def read_split(run_dir: str | Path):
    """The split boundaries notebook 04 recorded in ``cf/split.json``."""
    from ..config import RunDir
    from ..io import read_json

    return TemporalSplit.from_dict(read_json(RunDir(Path(run_dir)).cf / "split.json"))


def item_features_for(run_dir: str | Path, catalogue: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The content-based model's item features and where they come from: the LDA doc–topic
    matrix of notebook 03 (``topics/doc_topics.parquet``) when it exists, else the
    catalogue's therapeutic areas one-hot (a coarser, equally leak-free description)."""
    from ..config import RunDir
    from ..io import read_parquet

    path = RunDir(Path(run_dir)).topics / "doc_topics.parquet"
    if path.exists():
        return topic_features(read_parquet(path)), f"LDA topic proportions ({path.name})"
    return area_features(catalogue), "therapeutic-area one-hot vectors (no topics/doc_topics.parquet in this run)"


def split_summary(stage: StageSplit, world: WorldTables) -> pd.DataFrame:
    """One row per window: start, end, exposures, engaged exposures, HCPs with an
    engagement, and (validation, test) the HCPs with a new engagement that are evaluated."""
    from ..split import WINDOWS

    rows = []
    for name in WINDOWS:
        start, end = stage.split.window(name)
        inside = world.interactions[
            (world.interactions["exposed_at"] >= start) & (world.interactions["exposed_at"] < end)
        ]
        evaluated = {"train": None, "validation": len(stage.validation.hcp_ids), "test": len(stage.test.hcp_ids)}[name]
        rows.append(
            {
                "window": name,
                "start": start.date().isoformat(),
                "end (exclusive)": end.date().isoformat(),
                "exposures": len(inside),
                "engaged": int(inside["engaged"].sum()),
                "HCPs engaged": inside.loc[inside["engaged"], "hcp_id"].nunique(),
                "HCPs evaluated": evaluated,
            }
        )
    table = pd.DataFrame(rows).set_index("window")
    table["HCPs evaluated"] = table["HCPs evaluated"].astype("Int64")
    return table


def fit_chosen(
    factories: dict[str, Callable[..., Recommender]],
    chosen: dict[str, dict[str, Any]],
    train: TrainingData,
    progress: Callable | None = None,
) -> dict[str, Recommender]:
    """Every model fitted on ``train`` with its chosen hyper-parameters; ``progress`` (e.g.
    ``tqdm``) counts the fits."""
    return {
        name: factories[name](**chosen[name]).fit(train) for name in each(progress, list(factories), "baseline refits")
    }


def write_artifacts(
    run_dir: str | Path, stage: StageSplit, tuning: pd.DataFrame, models: dict[str, Recommender], als_train: ALS, n: int
) -> dict[str, Path]:
    """Write the stage's artifacts under ``cf/`` (models fitted before the test window).

    ``split.json`` (boundaries), ``tuning.parquet`` (every grid point), ``test_top_n/<model>.parquet``
    (content models: each HCP's top-``n``), ``test_channels/<model>.parquet`` (channel
    models: per-HCP channel scores and the predicted channel), ``als_hcp_factors.parquet``
    and ``als_item_factors.parquet`` (column ``fit``: "train" = fitted before the validation
    window, for models tuned on validation; "train+validation" = fitted before the test
    window). Returns the written paths by name.
    """
    from ..config import RunDir
    from ..io import write_json, write_parquet

    folder = RunDir(Path(run_dir)).cf
    written = {
        "split": write_json(stage.split.to_dict(), folder / "split.json"),
        "tuning": write_parquet(tuning, folder / "tuning.parquet"),
    }
    for name, model in models.items():
        if isinstance(model, ChannelRecommender):
            written[name] = write_parquet(test_channels(model, stage), folder / "test_channels" / f"{name}.parquet")
        else:
            written[name] = write_parquet(test_top_n(model, stage, n), folder / "test_top_n" / f"{name}.parquet")
    als_test = models["als"]
    hcp_factors = pd.concat(
        [
            factor_table(als_train.hcp_ids_, als_train.hcp_factors_, "hcp_id", "train"),
            factor_table(als_test.hcp_ids_, als_test.hcp_factors_, "hcp_id", "train+validation"),
        ]
    )
    item_factors = pd.concat(
        [
            factor_table(als_train.content_ids_, als_train.item_factors_, "content_id", "train"),
            factor_table(als_test.content_ids_, als_test.item_factors_, "content_id", "train+validation"),
        ]
    )
    written["als_hcp_factors"] = write_parquet(hcp_factors.reset_index(drop=True), folder / "als_hcp_factors.parquet")
    written["als_item_factors"] = write_parquet(
        item_factors.reset_index(drop=True), folder / "als_item_factors.parquet"
    )
    return written


def summary(stage: StageSplit, chosen: dict[str, dict[str, Any]], table: pd.DataFrame, feature_source: str) -> dict:
    """The stage's summary for ``metrics/cf.json``: split, evaluated HCPs, chosen
    hyper-parameters and each model's validation metrics."""
    metrics_by_model = {
        name: {
            k: (None if pd.isna(v) else float(v))
            for k, v in row.items()
            if k in ("exposure_auc", "exposure_log_loss", "hr@10", "ndcg@10", "channel_accuracy")
        }
        for name, row in table.iterrows()
    }
    return {
        "split": stage.split.to_dict(),
        "validation_hcps": int(len(stage.validation.hcp_ids)),
        "test_hcps": int(len(stage.test.hcp_ids)),
        "content_features": feature_source,
        "chosen_hyper_parameters": chosen,
        "validation": metrics_by_model,
    }
