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

The fits run side by side in worker processes (:class:`ModelPool`, :func:`submit_fits`): first the
validation-window fits of both models, then the refits. For every refitted model,
:func:`model_outputs` computes what the evaluation (notebook 06) and the plan (notebook 07) read
(a hybrid's in its worker, right after the fit: ``submit_fits(..., outputs_n=)``; the challenger's
cells last, spread over the workers: :func:`refits_with_outputs`), and
:func:`write_model_outputs` writes it under ``hybrid/``:

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
from ..domain import CHANNELS, HYBRID_NAME, TABULAR_NAME
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
    #: where they were read from, so that a worker process can read the same inputs
    run_dir: Path | None = None
    params: dict | None = None

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
    return StageInputs(
        stage, read_engagement_data(run_dir), als_params, interactions, context, settings, Path(run_dir), dict(params)
    )


def cf_factory(inputs: StageInputs, seed: int) -> Callable[[], baselines.ALS]:
    """A constructor of the ALS model notebook 04 chose (its hyper-parameters, this seed)."""
    return lambda: baselines.ALS(random_state=seed, **inputs.als_params)


# --- choices on the validation window ------------------------------------------------------------


def tabular_grid_jobs(grid, seed: int) -> dict[str, ModelJob]:
    """One validation-window job per point of ``grid`` (dicts of
    :class:`hcp_lib.models.tabular.TabularSettings` changes), named ``tabular grid <i>``."""
    from ..models.tabular import TabularSettings

    return {
        _grid_job_name(i): ModelJob(TabularSettings(**{**point, "seed": seed}), validate=True)
        for i, point in enumerate(grid)
    }


def _grid_job_name(i: int) -> str:
    return f"{TABULAR_NAME} grid {i}"


def tabular_grid_table(grid, fits: dict[str, ModelFit]) -> pd.DataFrame:
    """The fits of :func:`tabular_grid_jobs` as one row per point: its settings,
    ``validation_log_loss``, ``n_iter`` (rounds kept), ``fit_seconds`` and ``chosen`` (the lowest
    log-loss)."""
    fitted = [fits[_grid_job_name(i)] for i in range(len(grid))]
    rows = [
        {**point, "validation_log_loss": fit.validation_loss, "n_iter": fit.best_epoch, "fit_seconds": fit.fit_seconds}
        for point, fit in zip(grid, fitted, strict=True)
    ]
    table = pd.DataFrame(rows)
    table["chosen"] = np.arange(len(table)) == int(table["validation_log_loss"].idxmin())
    return table


def variant_jobs(base, variants: dict[str, dict]) -> dict[str, ModelJob]:
    """One validation-window job per hybrid variant (name -> :class:`hcp_lib.models.hybrid.HybridSettings`
    changes of ``base``), named ``hybrid <variant>``."""
    return {_variant_job_name(name): ModelJob(replace(base, **variants[name]), validate=True) for name in variants}


def _variant_job_name(variant: str) -> str:
    return f"{HYBRID_NAME} {variant}"


def variant_table(variants: dict[str, dict], fits: dict[str, ModelFit]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The fits of :func:`variant_jobs`: (one row per variant: ``validation_log_loss``, ``epochs``
    (the best epoch), ``fit_seconds`` and ``chosen`` (the lowest log-loss); the training curves:
    variant, epoch, loss and val_loss as Keras reports them, i.e. with the weight penalty, and
    the ``learning_rate`` of each epoch)."""
    fitted = {name: fits[_variant_job_name(name)] for name in variants}
    rows = {
        name: {"validation_log_loss": fit.validation_loss, "epochs": fit.best_epoch, "fit_seconds": fit.fit_seconds}
        for name, fit in fitted.items()
    }
    curves = [fit.training_history.assign(variant=name) for name, fit in fitted.items()]
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")
    table["chosen"] = np.arange(len(table)) == int(np.argmin(table["validation_log_loss"].to_numpy()))
    return table, pd.concat(curves, ignore_index=True)


def refit_settings(base, variants: dict[str, dict], chosen: str, selection: pd.DataFrame, curves: pd.DataFrame):
    """The hybrid's refit settings: ``base`` with the ``chosen`` variant's changes, trained for
    its best epoch count (``selection``, :func:`variant_table`). When the validation fit lowered
    its learning rate on plateaus (``learning_rate_factor`` < 1), the refit replays the rate of
    each of those epochs (``learning_rate_schedule``, from the ``learning_rate`` column of
    ``curves``): the refit repeats the validation fit's training, on the longer history."""
    epochs = int(selection.loc[chosen, "epochs"])
    settings = replace(base, **variants[chosen], epochs=epochs)
    if settings.learning_rate_factor < 1:
        curve = curves[curves["variant"] == chosen].sort_values("epoch")
        rates = curve["learning_rate"].to_numpy(np.float64)[:epochs]
        if len(rates) != epochs or not np.isfinite(rates).all():
            raise ValueError(
                f"the training curves of variant {chosen!r} hold {len(rates)} learning rates for its {epochs} "
                "epochs; expected one per epoch (a validation fit with learning_rate_factor < 1 records them)"
            )
        # the optimizer holds float32 rates: 7 significant digits give them back exactly, and read well
        settings = replace(settings, learning_rate_schedule=tuple(float(f"{rate:.7g}") for rate in rates))
    return settings


# --- fitting models, here or in worker processes ----------------------------------------------------


@dataclass(frozen=True)
class ModelJob:
    """One engagement model to fit: its settings (:class:`hcp_lib.models.hybrid.HybridSettings`
    for the hybrid, :class:`hcp_lib.models.tabular.TabularSettings` for the tabular challenger),
    and whether it is fitted before the validation window with early stopping on it
    (``validate``) or on everything before the test window."""

    settings: Any
    validate: bool = False


@dataclass
class ModelFit:
    """A fitted model's summary (and the model itself unless only the summary was asked for):
    ``best_epoch`` is the hybrid's epochs or the challenger's boosting rounds kept,
    ``training_history`` the hybrid's training curves (None for the challenger), and ``outputs``
    its :class:`ModelOutputs` when :func:`fit_models` was asked for them."""

    validation_loss: float | None
    best_epoch: int
    fit_seconds: float
    n_train_examples: int
    training_history: pd.DataFrame | None
    model: Any = None
    outputs: ModelOutputs | None = None


class ModelPool:
    """Worker processes that fit engagement models, and score the tree ensemble, side by side
    (``workers`` of them, each on one TensorFlow and one OpenMP thread); a context manager
    that shuts them down on exit.

    Why: the hybrid's small recurrent layers keep a second TensorFlow thread mostly waiting
    (on two cores one thread trains an epoch as fast as two), and scikit-learn's trees, on two
    OpenMP threads, slow down many times over whenever another process holds a core (see
    :data:`hcp_lib.models.tabular.PREDICT_ROWS`). Two fits in two single-threaded processes
    take about the time of one. Each worker reads the stage's inputs once (:func:`read_inputs`
    on the same run folder and parameters). A fitted hybrid comes back through
    :meth:`hcp_lib.models.hybrid.HybridRecommender.save` and :func:`hcp_lib.models.hybrid.load`
    (Keras' own format, in a temporary folder); the challenger, a scikit-learn estimator, comes
    back in memory between these processes (nothing is written). A fit is deterministic for
    its seed and the same whatever the number of workers; a fit in the notebook's own process
    runs on its own thread counts and may differ from it in float rounding."""

    def __init__(self, inputs: StageInputs, workers: int):
        import tempfile
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        if inputs.run_dir is None:
            raise ValueError("ModelPool needs inputs from read_inputs (their run folder and parameters)")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.workers = workers
        self.folder = Path(tempfile.mkdtemp(prefix="model_fits_"))
        # spawn, not fork: TensorFlow's threads do not survive a fork
        self.executor = ProcessPoolExecutor(
            workers,
            mp_context=get_context("spawn"),
            initializer=_worker_start,
            initargs=(str(inputs.run_dir), inputs.params),
        )

    def score_channels(self, model: EngagementModel, hcp_ids: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        """``model.score_channels(hcp_ids, exclude)``, each worker scoring a block of the HCPs (the
        model travels to the workers in memory). The same values as scoring here: every HCP's
        cells are scored on their own, whatever the block."""
        if hasattr(model, "prepare_scoring") and len(hcp_ids):
            model.prepare_scoring(hcp_ids, exclude)  # the challenger compiles its trees once, here
        blocks = [block for block in np.array_split(np.arange(len(hcp_ids)), self.workers) if len(block)]
        futures = [self.executor.submit(_worker_score, model, hcp_ids[block], exclude[block]) for block in blocks]
        return np.concatenate([future.result() for future in futures])

    def __enter__(self) -> ModelPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        import shutil

        self.executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)


#: the inputs of a worker process of :class:`ModelPool` (read once per process)
_WORKER_INPUTS: StageInputs | None = None


def _worker_start(run_dir: str, params: dict) -> None:
    global _WORKER_INPUTS
    import os

    os.environ["HCP_TF_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"  # before scikit-learn and implicit load their OpenMP
    from threadpoolctl import threadpool_limits

    _WORKER_INPUTS = read_inputs(run_dir, params)
    threadpool_limits(limits=1)  # and for any thread pool already loaded


def _fit_one(inputs: StageInputs, job: ModelJob, seed: int) -> EngagementModel:
    from ..models.tabular import TabularEngagement, TabularSettings

    if isinstance(job.settings, TabularSettings):
        kind = TabularEngagement
    else:
        from ..models.hybrid import HybridRecommender as kind
    return kind(
        inputs.data,
        cf_factory(inputs, seed)(),
        job.settings,
        validation_start=inputs.stage.split.valid_start if job.validate else None,
    ).fit(inputs.stage.train_valid)


def _is_hybrid(model: EngagementModel) -> bool:
    from ..models.tabular import TabularEngagement

    return not isinstance(model, TabularEngagement)


def _summary(model: EngagementModel, with_model: bool) -> ModelFit:
    hybrid = _is_hybrid(model)
    return ModelFit(
        model.validation_loss_,
        int(model.best_epoch_ if hybrid else model.n_iter_),
        float(model.fit_seconds_),
        int(model.n_train_examples_),
        model.training_history_ if hybrid else None,
        model if with_model else None,
    )


def _worker_score(model: EngagementModel, hcp_ids: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    return model.score_channels(hcp_ids, exclude)


def _worker_fit(job: ModelJob, seed: int, folder: str | None, name: str, outputs_n: int | None) -> ModelFit:
    """In a worker: fit ``job``; its summary, with its outputs when ``outputs_n`` is given. When
    the model is wanted (``folder`` given) a hybrid is saved to ``folder``, the challenger comes
    back with the summary."""
    model = _fit_one(_WORKER_INPUTS, job, seed)
    outputs = None if outputs_n is None else model_outputs(model, _WORKER_INPUTS, outputs_n, name=name)
    if folder is not None and _is_hybrid(model):
        model.save(folder)
        fit = _summary(model, with_model=False)
    else:
        fit = _summary(model, with_model=folder is not None)
    fit.outputs = outputs
    return fit


#: without a pool, the fits run in this process on two threads, one per kind of model (a lane):
#: the challenger's on one, the hybrid's on the other, each lane's jobs one after the other in the
#: order they were submitted
_LANES: dict[str, Any] = {}


def _lane(job: ModelJob):
    """The single-thread executor of ``job``'s kind of model (created on first use)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..models.tabular import TabularSettings

    kind = "tabular" if isinstance(job.settings, TabularSettings) else "hybrid"
    if kind not in _LANES:
        _LANES[kind] = ThreadPoolExecutor(1, thread_name_prefix=f"{kind}-fits")
    return _LANES[kind]


def _fit_here(inputs: StageInputs, job: ModelJob, seed: int, keep: bool, outputs_n: int | None, name: str) -> ModelFit:
    """In this process (on a lane's thread): fit ``job``; its summary, with its outputs when
    ``outputs_n`` is given."""
    model = _fit_one(inputs, job, seed)
    fit = _summary(model, keep)
    if outputs_n is not None:
        fit.outputs = model_outputs(model, inputs, outputs_n, name=name)
    return fit


class PendingFits:
    """Fits submitted by :func:`submit_fits`, started at once: in ``pool``'s workers as soon as a
    worker is free (jobs from several calls queue in the order they were submitted), or without a
    pool in this process, on two threads: the tabular challenger's fits on one, the hybrid's on
    the other, each one after the other in the order submitted.

    Why two threads without a pool: that is how notebook 05 runs at the full scale, where worker
    processes would each hold a copy of several GB of inputs, and one after the other the
    challenger's boosting (one OpenMP thread) left a core idle. Measured at full on two cores: the
    challenger's grid (320 s alone) and the hybrid's validation fit (298 s alone) took 493 s side
    by side, 618 s one after the other; the refits and the challenger's scoring 524 s against 735 s.
    The hybrid keeps its two TensorFlow threads: on one, beside the challenger's lane, it was no
    faster (phase one 492 s). Only one hybrid fits at a time (TensorFlow's random seeds are
    global). A fit's values are those of a fit run alone here."""

    def __init__(
        self,
        inputs: StageInputs,
        jobs: dict[str, ModelJob],
        seed: int,
        pool: ModelPool | None,
        keep: set,
        outputs_n: int | None,
    ):
        self.inputs, self.jobs, self.seed = inputs, jobs, seed
        self.pool, self.keep, self.outputs_n = pool, keep, outputs_n
        self._fits: dict[str, ModelFit] | None = None
        if pool is not None:
            self._futures = {
                pool.executor.submit(
                    _worker_fit,
                    job,
                    seed,
                    str(pool.folder / str(name)) if name in keep else None,
                    str(name),
                    outputs_n,
                ): name
                for name, job in jobs.items()
            }
        else:
            self._futures = {
                _lane(job).submit(_fit_here, inputs, job, seed, name in keep, outputs_n, str(name)): name
                for name, job in jobs.items()
            }

    def result(self, progress: Callable | None = None) -> dict[str, ModelFit]:
        """Wait for every fit; name -> :class:`ModelFit` in the order of the jobs (``progress``,
        e.g. ``tqdm``, counts the fits done)."""
        if self._fits is None:
            self._fits = self._collect(progress)
        return self._fits

    def _collect(self, progress: Callable | None) -> dict[str, ModelFit]:
        from concurrent.futures import as_completed

        from ..models.hybrid import load

        done = {}
        where = f"{self.pool.workers} side by side" if self.pool is not None else "here, one per kind at a time"
        bar = progress(total=len(self.jobs), desc=f"fits ({where})") if progress else None
        for future in as_completed(self._futures):
            name = self._futures[future]
            fit = done[name] = future.result()
            # a kept hybrid is loaded as soon as it is back, while the workers fit the others
            if self.pool is not None and name in self.keep and fit.model is None:
                fit.model = load(self.pool.folder / str(name), self.inputs.stage.train_valid, self.inputs.data)
                for attribute in ("fit_seconds", "n_train_examples", "training_history"):
                    setattr(fit.model, f"{attribute}_", getattr(fit, attribute))
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        return {name: done[name] for name in self.jobs}


def submit_fits(
    inputs: StageInputs,
    jobs: dict[str, ModelJob],
    seed: int,
    pool: ModelPool | None = None,
    keep_models: bool | tuple[str, ...] = True,
    outputs_n: int | None = None,
) -> PendingFits:
    """Start fitting every job (name -> :class:`ModelJob`) in ``pool``'s workers (side by side,
    started in the order of ``jobs``: put the longest first), or, without a pool, on this
    process's two lanes (:class:`PendingFits`); :meth:`PendingFits.result` waits for them. ``keep_models``: whether each
    fit carries its fitted model (or the names of the jobs whose model is kept). With
    ``outputs_n`` each model's :func:`model_outputs` (top-``outputs_n`` lists) are computed right
    after its fit, in its worker, and come back in :attr:`ModelFit.outputs` (jobs fitted before
    the test window only: a validation-window fit has no test outputs)."""
    keep = set(jobs) if keep_models is True else set(keep_models or ())
    if outputs_n is not None and any(job.validate for job in jobs.values()):
        raise ValueError("outputs_n needs jobs fitted before the test window (validate=False)")
    return PendingFits(inputs, jobs, seed, pool, keep, outputs_n)


def fit_models(
    inputs: StageInputs,
    jobs: dict[str, ModelJob],
    seed: int,
    pool: ModelPool | None = None,
    progress: Callable | None = None,
    keep_models: bool | tuple[str, ...] = True,
    outputs_n: int | None = None,
) -> dict[str, ModelFit]:
    """:func:`submit_fits` and wait for the result: name -> :class:`ModelFit` in the order of ``jobs``."""
    return submit_fits(inputs, jobs, seed, pool, keep_models, outputs_n).result(progress)


def refits_with_outputs(
    inputs: StageInputs,
    challenger: PendingFits,
    hybrids: PendingFits,
    n: int,
    pool: ModelPool | None = None,
    progress: Callable | None = None,
) -> dict[str, ModelFit]:
    """The refits of notebook 05 with their outputs: wait for ``challenger`` (the tabular
    challenger's refit, one job, its model kept), then compute its :func:`model_outputs`
    (top-``n`` lists) — with a pool, its cells are scored in the workers, queued behind the jobs of
    ``hybrids`` (submitted with ``outputs_n``) — while the hybrids' fits come back. Name ->
    :class:`ModelFit` with ``outputs``, the challenger first.

    Why: the challenger scores every cell with its trees, the longest piece of work of the
    notebook; split over the workers at the end of the queue it fills them evenly, where one job
    scoring it all would run long after the others."""
    ((name, fit),) = challenger.result().items()
    if pool is None:
        fit.outputs = model_outputs(fit.model, inputs, n, name=name)
        return {name: fit, **hybrids.result(progress)}
    from concurrent.futures import ThreadPoolExecutor

    # a thread waits on the scoring blocks while this one collects (and loads) the hybrids
    with ThreadPoolExecutor(1) as thread:
        scoring = thread.submit(model_outputs, fit.model, inputs, n, name, pool)
        rest = hybrids.result(progress)
        fit.outputs = scoring.result()
    return {name: fit, **rest}


# --- outputs of a fitted model ----------------------------------------------------------------------


@dataclass
class ModelOutputs:
    """What the evaluation and the plan read from one engagement model (see the module docstring)."""

    lists: pd.DataFrame
    new_item_lists: pd.DataFrame
    exposure_probs: pd.DataFrame
    candidates: plan.Candidates
    seconds: dict


def model_outputs(
    model: EngagementModel, inputs: StageInputs, n: int, name: str | None = None, pool: ModelPool | None = None
) -> ModelOutputs:
    """The top-``n`` lists, the test exposures' probabilities and the plan candidates of a
    model fitted before the test window; its probabilities at the cut-off are computed once
    (for every HCP of the master, skipping the cells no list may hold), by ``pool``'s workers
    when the model scores cell by cell (``model.score_in_workers``, the tree ensemble). A NaN or
    infinite probability raises :class:`hcp_lib.io.NonFiniteError` naming the model (``name``,
    else its class) and the count."""
    started = time.perf_counter()
    stage = inputs.stage
    hcp_ids = stage.train_valid.hcp_ids.astype(str).to_numpy(dtype=object)
    exclude = exclusion_mask(
        hcp_ids, model.content_ids_, stage.train_valid, released_by=stage.split.test_end, catalogue=stage.catalogue
    )
    name = name or model_name(model)
    probability = check_finite(
        pool.score_channels(model, hcp_ids, exclude)
        if pool is not None and getattr(model, "score_in_workers", False)
        else model.score_channels(hcp_ids, exclude),
        f"model {name!r}",
        what="probability",
        labels=hcp_ids,
        label_kind="HCP",
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
