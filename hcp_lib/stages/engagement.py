"""Stage 05: fit, choose and write the engagement models (notebook 05_hybrid_lstm).

The models: the **tabular challenger** (:mod:`hcp_lib.models.tabular`), the **hybrid LSTM**
(:mod:`hcp_lib.models.hybrid`) and its **ablations**. Every choice is made on the validation window
with logged data alone — the log-loss of each candidate's engagement probabilities on the
logged validation exposures (:attr:`hcp_lib.models.engagement.EngagementModel.validation_loss_`):

1. the tabular challenger's grid (:data:`hcp_lib.models.tabular.TABULAR_GRID`), each point fitted on
   the exposures before the validation window with early stopping on it; the best point is
   refitted on everything before the test window with the number of rounds found;
2. the hybrid's variants (:data:`hcp_lib.models.hybrid.VARIANTS`), likewise, with the number of
   epochs found;
3. the ablations (:data:`hcp_lib.models.hybrid.ABLATIONS`): the chosen variant without one input,
   fitted before the test window with the same number of epochs.

For every fitted model, :func:`model_outputs` computes what the evaluation (notebook 06) and
the plan (notebook 07) read, and :func:`write_model_outputs` writes it under ``hybrid/``:

- ``test_top_n/<model>.parquet``: each HCP's top-N items at the test cut-off (seen,
  unapproved and not-yet-released items excluded), with the best channel of each;
- ``test_new_items/<model>.parquet``: the same for the items released in the test window alone
  (their top 10), to judge how new items are ranked;
- ``test_exposure_probs/<model>.parquet``: the probability of every logged test exposure, at
  its own instant;
- ``plan_candidates/<model>.parquet`` (+ ``.json``): the model's pruned candidate actions for
  the week's plan (:func:`hcp_lib.stages.plan.candidate_actions` under the run's ``plan_*`` rules);
- ``models.json``: each model's family, description and validation log-loss.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import io
from ..config import RunDir
from ..domain import CHANNELS
from ..io import check_finite
from ..models import baselines
from ..models.base import exclusion_mask, model_name, top_n
from ..models.engagement import EngagementData, EngagementModel, read_engagement_data
from . import cf, plan

#: how many of the items released in the test window each model ranks per HCP (test_new_items/)
NEW_ITEM_DEPTH = 10


@dataclass(frozen=True)
class StageInputs:
    """What notebook 05 reads: the split notebook 04 recorded, the engagement models' tables,
    the ALS hyper-parameters chosen there, the full interaction log (for the probabilities of
    logged exposures after a cut-off) and the plan's context and rules at the test cut-off."""

    stage: cf.StageSplit
    data: EngagementData
    als_params: dict
    interactions: pd.DataFrame
    plan_context: plan.PlanContext
    plan_settings: plan.PlanSettings

    @property
    def validation_rows(self) -> pd.DataFrame:
        return self.stage.validation.exposures

    @property
    def test_rows(self) -> pd.DataFrame:
        split = self.stage.split
        rows = self.interactions
        return rows[(rows["exposed_at"] >= split.test_start) & (rows["exposed_at"] < split.test_end)].reset_index(
            drop=True
        )


def read_inputs(run_dir: str | Path, params: dict[str, Any]) -> StageInputs:
    """Read the world, topics and CF artifacts of ``run_dir``; ``params`` are the notebook's
    parameters (its ``plan_*`` values make the plan's rules). The split is rebuilt from
    ``cf/split.json`` and checked against it, so the models are fitted and judged on exactly
    the windows of the baselines."""
    run = RunDir(Path(run_dir))
    split = cf.read_split(run_dir)
    holdout = (split.test_end - split.test_start).days
    if (split.test_start - split.valid_start).days != holdout:
        raise ValueError(
            f"{run.cf / 'split.json'}: validation and test windows differ in length "
            f"({(split.test_start - split.valid_start).days} and {holdout} days); notebook 04 makes them equal"
        )
    world = cf.read_world(run_dir)
    stage = cf.prepare_split(world, split.train_start, split.test_end, holdout)
    if stage.split != split:
        raise ValueError(
            f"{run.cf / 'split.json'}: rebuilt windows {stage.split.to_dict()} differ from the recorded "
            f"{split.to_dict()}"
        )
    als_params = dict(io.read_json(run.metrics / "cf.json").get("chosen_hyper_parameters", {}).get("als") or {})
    settings = plan.settings_from_parameters(params)
    context = plan.read_context(run_dir, split.test_start, settings)
    from ..split import INTERACTION_COLUMNS

    # the logged columns a model may read, plus the exposure id that names each row (never the truth's column)
    interactions = io.read_parquet(run.world / "hcp_interaction_data.parquet").loc[
        :, ["exposure_id", *INTERACTION_COLUMNS]
    ]
    return StageInputs(stage, read_engagement_data(run_dir), als_params, interactions, context, settings)


def cf_factory(inputs: StageInputs, seed: int) -> Callable[[], baselines.ALS]:
    """A constructor of the ALS model notebook 04 chose (its hyper-parameters, this seed)."""
    return lambda: baselines.ALS(random_state=seed, **inputs.als_params)


# --- choices on the validation window ------------------------------------------------------------


def tune_tabular(inputs: StageInputs, grid, seed: int, progress: Callable | None = None) -> pd.DataFrame:
    """Fit the tabular challenger at every point of ``grid`` (dicts of
    :class:`hcp_lib.models.tabular.TabularSettings` changes) on the exposures before the validation
    window, stopping early on it. One row per point: its settings, ``validation_log_loss``,
    ``n_iter`` (rounds kept), ``fit_seconds`` and ``chosen`` (the lowest log-loss)."""
    from ..models.tabular import TabularEngagement, TabularSettings

    rows = []
    for point in progress(grid) if progress else grid:
        settings = TabularSettings(**{**point, "seed": seed})
        model = TabularEngagement(
            inputs.data, cf_factory(inputs, seed)(), settings, validation_start=inputs.stage.split.valid_start
        ).fit(inputs.stage.train_valid)
        rows.append(
            {
                **point,
                "validation_log_loss": model.validation_loss_,
                "n_iter": model.n_iter_,
                "fit_seconds": model.fit_seconds_,
            }
        )
    table = pd.DataFrame(rows)
    table["chosen"] = np.arange(len(table)) == int(table["validation_log_loss"].idxmin())
    return table


def choose_variant(
    inputs: StageInputs, base, variants: dict[str, dict], seed: int, progress: Callable | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit the hybrid with each of ``variants`` (name -> :class:`hcp_lib.models.hybrid.HybridSettings`
    changes of ``base``) on the exposures before the validation window, stopping early on it.

    Returns (one row per variant: ``validation_log_loss``, ``epochs`` (the best epoch),
    ``fit_seconds`` and ``chosen`` (the lowest log-loss); the training curves: variant, epoch,
    loss and val_loss as Keras reports them, i.e. with the weight penalty)."""
    from ..models.hybrid import HybridRecommender

    rows, curves = {}, []
    for name in progress(list(variants)) if progress else variants:
        model = HybridRecommender(
            inputs.data,
            cf_factory(inputs, seed)(),
            replace(base, **variants[name]),
            validation_start=inputs.stage.split.valid_start,
        ).fit(inputs.stage.train_valid)
        rows[name] = {
            "validation_log_loss": model.validation_loss_,
            "epochs": model.best_epoch_,
            "fit_seconds": model.fit_seconds_,
        }
        curves.append(model.training_history_.assign(variant=name))
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")
    table["chosen"] = np.arange(len(table)) == int(np.argmin(table["validation_log_loss"].to_numpy()))
    return table, pd.concat(curves, ignore_index=True)


# --- outputs of a fitted model ----------------------------------------------------------------------


@dataclass
class ModelOutputs:
    """What the evaluation and the plan read from one engagement model (see the module docstring)."""

    lists: pd.DataFrame
    new_item_lists: pd.DataFrame
    exposure_probs: pd.DataFrame
    candidates: plan.Candidates
    seconds: dict


def model_outputs(model: EngagementModel, inputs: StageInputs, n: int, name: str | None = None) -> ModelOutputs:
    """The top-``n`` lists, the test exposures' probabilities and the plan candidates of a
    model fitted before the test window; its probabilities at the cut-off are computed once
    (for every HCP of the master, skipping the cells no list may hold). A NaN or infinite
    probability raises :class:`hcp_lib.io.NonFiniteError` naming the model (``name``, else
    its class) and the count."""
    started = time.perf_counter()
    stage = inputs.stage
    hcp_ids = stage.train_valid.hcp_ids.astype(str).to_numpy(dtype=object)
    exclude = exclusion_mask(
        hcp_ids, model.content_ids_, stage.train_valid, released_by=stage.split.test_end, catalogue=stage.catalogue
    )
    name = name or model_name(model)
    probability = check_finite(
        model.score_channels(hcp_ids, exclude), f"model {name!r}", what="probability", labels=hcp_ids, label_kind="HCP"
    ).astype(np.float32)
    scored = time.perf_counter()
    lists = lists_table(probability, hcp_ids, model.content_ids_, exclude, n, name)
    new = (stage.catalogue["release_date"] >= stage.split.test_start).to_numpy(bool)
    new_item_lists = lists_table(
        probability, hcp_ids, model.content_ids_, exclude | ~new[None, :], NEW_ITEM_DEPTH, name
    )
    exposures = inputs.test_rows
    prob = model.exposure_probabilities(exposures, inputs.interactions)
    exposure_probs = pd.DataFrame({"exposure_id": exposures["exposure_id"].to_numpy(np.int64), "engagement_prob": prob})
    exposed = time.perf_counter()
    candidates = plan.candidate_actions(
        inputs.plan_context,
        plan.matrix_scorer(probability, hcp_ids),
        model.content_ids_,
        inputs.plan_settings,
        model=name,
    )
    return ModelOutputs(
        lists,
        new_item_lists,
        exposure_probs,
        candidates,
        {
            "score_seconds": scored - started,
            "exposure_seconds": exposed - scored,
            "candidate_seconds": time.perf_counter() - exposed,
        },
    )


def lists_table(
    probability: np.ndarray, hcp_ids: np.ndarray, content_ids, exclude: np.ndarray, n: int, model: str | None = None
) -> pd.DataFrame:
    """Each HCP's top-``n`` items by their best channel's probability: hcp_id, rank (1 = best),
    content_id, score (that probability) and channel (that channel); excluded cells never
    appear."""
    best = probability.max(axis=2)
    top = top_n(best, n, exclude, model=model)
    rows, ranks = np.nonzero(top >= 0)
    cols = top[rows, ranks]
    return pd.DataFrame(
        {
            "hcp_id": pd.array(np.asarray(hcp_ids, dtype=object)[rows].astype(str), dtype="string"),
            "rank": (ranks + 1).astype(np.int32),
            "content_id": pd.array(np.asarray(content_ids, dtype=object)[cols].astype(str), dtype="string"),
            "score": best[rows, cols].astype(np.float64),
            "channel": pd.array(
                np.asarray(CHANNELS, dtype=object)[probability[rows, cols].argmax(axis=1)], dtype="string"
            ),
        }
    )


OUTPUT_FOLDERS = ("test_top_n", "test_new_items", "test_exposure_probs", "plan_candidates")


def clear_outputs(run_dir: str | Path) -> None:
    """Remove the model outputs of an earlier run of the stage, so that a model left out this
    time (e.g. the ablations) cannot be evaluated from stale files."""
    import shutil

    folder = RunDir(Path(run_dir)).hybrid
    for name in (*OUTPUT_FOLDERS, "model"):
        if (folder / name).exists():
            shutil.rmtree(folder / name)
    if (folder / "models.json").exists():
        (folder / "models.json").unlink()


def write_model_outputs(run_dir: str | Path, name: str, outputs: ModelOutputs, inputs: StageInputs) -> dict[str, Path]:
    """Write one model's lists, exposure probabilities and plan candidates under ``hybrid/``."""
    folder = RunDir(Path(run_dir)).hybrid
    return {
        "lists": io.write_parquet(outputs.lists, folder / "test_top_n" / f"{name}.parquet"),
        "new_item_lists": io.write_parquet(outputs.new_item_lists, folder / "test_new_items" / f"{name}.parquet"),
        "exposure_probs": io.write_parquet(outputs.exposure_probs, folder / "test_exposure_probs" / f"{name}.parquet"),
        "candidates": plan.write_candidates(
            outputs.candidates,
            folder / "plan_candidates" / f"{name}.parquet",
            inputs.plan_settings,
            inputs.plan_context.plan_start,
        ),
    }


MODEL_FAMILIES = ("hybrid", "tabular", "ablation")


def write_registry(run_dir: str | Path, models: dict[str, dict]) -> Path:
    """Write ``hybrid/models.json``: per model, ``family`` (one of :data:`MODEL_FAMILIES`),
    ``description`` and ``validation_log_loss`` (null where none was measured)."""
    for name, entry in models.items():
        if entry.get("family") not in MODEL_FAMILIES:
            raise ValueError(
                f"model {name!r}: family {entry.get('family')!r}; expected one of {', '.join(MODEL_FAMILIES)}"
            )
    return io.write_json(models, RunDir(Path(run_dir)).hybrid / "models.json")


def read_registry(run_dir: str | Path) -> dict[str, dict]:
    """``hybrid/models.json`` (empty when notebook 05 did not run)."""
    path = RunDir(Path(run_dir)).hybrid / "models.json"
    return io.read_json(path) if path.exists() else {}
