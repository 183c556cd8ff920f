"""Evaluation of every model against the oracle on one temporal split (notebook 06_evaluation).

Every model of the run is judged the same way, on the test window of the split notebook 04
recorded (``cf/split.json``), for the same HCPs: the HCPs of the master who did not opt out.

Reads: ``world/`` (tables and the truth: :func:`hcp_lib.world.synth.true_engagement_matrix` at the
test cut-off is the oracle), ``cf/split.json``, ``cf/test_top_n/<model>.parquet`` (content
baselines), ``cf/test_channels/<model>.parquet`` (channel baselines), ``metrics/cf.json``
(validation scores: they pick the best baseline and the channel paired with content-only
models, so no choice looks at the test window), ``topics/doc_topics.parquet`` (diversity), and,
when notebook 05 ran, the engagement models it wrote (:mod:`hcp_lib.stages.engagement`):
``hybrid/models.json`` (their families and validation log-losses),
``hybrid/test_top_n/<model>.parquet`` (the baselines' list columns plus ``channel``: the
model's channel for that item), ``hybrid/test_exposure_probs/<model>.parquet``
(``exposure_id``, ``engagement_prob`` for every test exposure) and
``hybrid/plan_candidates/<model>.parquet`` (the model's candidate actions for the plan).

Writes (via the notebook) under ``evaluation/``: ``metrics.json`` and
``recommendations.parquet`` (:data:`RECOMMENDATION_SCHEMA`), and ``metrics/evaluation.json``.

Protocol. An item is a candidate for an HCP unless the HCP engaged with it before the
cut-off, it is not approved for the HCP's specialty, or it is released after the test
window (:func:`hcp_lib.models.base.exclusion_mask`, as in notebook 04). Observed relevance =
candidate items the HCP engaged with in the test window; graded relevance = the oracle's
probability of the item through its best channel at the cut-off. Policy value of a model =
the oracle's probability of its top-1 (content, channel) per HCP; content-only models take
their channel from :func:`policy_channel_model` (the specialty's best engagement-rate channel). Reference
policies: ``oracle`` (the best candidate pair), ``random`` (the expectation over candidate
pairs, computed exactly) and ``business_as_usual`` (the first (content, channel) the logging
policy sent the HCP in the test window).

Plan value of a model = the oracle's expected engagements of the week's plan notebook 07 would
make from the model's probabilities (:func:`hcp_lib.stages.plan.candidate_actions`, then
:func:`hcp_lib.stages.plan.solve_milp` under the run's caps, capacities, approvals, repeat window and
opt-outs), as a share of the plan made under the same rules from the oracle's probabilities
(:func:`plan_terms`). Content-only models plan with pseudo-probabilities: their paired
channel's engagement rate times a weight falling linearly with the item's rank in their saved
list (:func:`list_scorer`). The reference ``business_as_usual`` plan is the touches the logging
policy sent that week.

Probability quality (models with probabilities): AUC, log-loss, Brier score and ECE (ten
equal-count bins) on the logged test exposures, each probability taken at the exposure's own
instant. Intervals: 95% percentile bootstrap over HCPs, one set of resamples shared by every
model and metric (paired).

``metrics.json`` (``schema_version`` 2) has these keys:

- ``schema_version`` (int), ``run`` {scale, seed, n_bootstrap, confidence_level, eval_k},
  ``split`` {train_start, valid_start, test_start, test_end}, ``population`` {n_hcps,
  n_hcps_with_test_engagement, n_test_exposures, n_test_engagements, n_content, n_new_items};
- ``models``: {model: {family (oracle | baseline | hybrid | tabular | ablation | v0.1 |
  channel_baseline), source, channel_from}}; ``models_found`` (list), ``hybrid_found`` (bool);
- ``metrics``: {model: {metric_key: {value, ci_low, ci_high, n}}}, metric keys ``<name>@<k>``
  for :data:`RANKING_METRICS` and ``coverage@<k>`` (no interval) at every k of
  :data:`EVAL_K`, and :data:`CHANNEL_METRICS` / :data:`POLICY_METRICS` without ``@k``; a
  value is ``null`` where undefined (e.g. log-loss of a model without probabilities);
- ``policy``: {policy: {policy_value: {...}, policy_fraction_of_oracle: {...}, plan_value,
  plan_fraction_of_oracle}} for the reference policies (random has no plan);
- ``comparisons``: [{model, baseline, metric, difference, ci_low, ci_high, share_better}]
  (paired bootstrap of model − baseline, for the pairs of :func:`comparison_pairs`);
  ``share_better`` is the share of resamples in which ``model`` is the better of the two
  (higher value, or lower for the metrics in :data:`LOWER_IS_BETTER`);
- ``selection``: {criterion, validation_log_loss {model: value}, chosen}: the engagement
  model the validation window ranks best (the one notebook 07 plans with);
- ``plan``: {plan_start, period_days, solver {model: {status, gap, seconds, actions}}};
- ``breakdowns``: [{dimension (specialty | activity | cold_start | channel), group, model,
  metric, value, n}];
- ``calibration``: {model: [{bin, lower, upper, mean_predicted, observed_rate, count}]};
- ``v01``: {random_split_auc, random_split_accuracy, temporal_auc, temporal_accuracy,
  n_train_random, n_test_random, validation_log_loss}; ``best_baseline`` (str: the content
  baseline with the best validation exposure AUC); ``verdict`` (str).

:func:`validate_metrics` checks a loaded ``metrics.json`` against this layout and its
flattened table (:func:`flatten_metrics`) against :data:`FLAT_SCHEMA`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import scipy.sparse as sp

from .. import io, metrics
from ..config import RunDir, usable_cpus
from ..domain import CHANNELS, HCP_ID_PATTERN, ORACLE_NAME, REFERENCE_POLICIES, V01_NAME
from ..models import baselines
from ..models.base import exclusion_mask, top_n
from ..models.baselines import PROBABILITY_CHANNEL_MODELS
from ..progress import each
from ..split import evaluated_hcps

#: the list lengths every ranking metric is computed at (fixed, so metric keys are stable)
EVAL_K = (1, 5, 10, 20)
#: per-HCP ranking metrics (each at every k)
RANKING_METRICS = ("hit_rate", "precision", "recall", "ndcg", "graded_ndcg", "mrr", "map", "novelty", "diversity")
CHANNEL_METRICS = ("channel_accuracy", "channel_macro_f1", "log_loss", "brier", "auc", "ece")
POLICY_METRICS = ("policy_value", "policy_fraction_of_oracle", "plan_value", "plan_fraction_of_oracle")
#: the headline metrics (what choices are judged by in the book; never observed-engagement NDCG)
HEADLINE_METRICS = ("policy_fraction_of_oracle", "plan_fraction_of_oracle", "graded_ndcg@10")
#: metrics bounded to [0, 1] (the others: novelty >= 0, log-loss >= 0)
UNIT_METRICS = {
    "hit_rate",
    "precision",
    "recall",
    "ndcg",
    "graded_ndcg",
    "mrr",
    "map",
    "diversity",
    "coverage",
    "channel_accuracy",
    "channel_macro_f1",
    "brier",
    "auc",
    "ece",
    "policy_value",
}
#: families of the models notebook 05 writes (hcp_lib.stages.engagement) and of the others
ENGAGEMENT_FAMILIES = ("hybrid", "tabular", "ablation")
#: how many of each model's items go to recommendations.parquet
RECOMMENDATION_DEPTH = 10
#: how deep a model's list is kept when it is built here from a score matrix (as notebook 05's cf_top_n)
LIST_DEPTH = 50
ACTIVITY_BINS = ((0, 0, "none"), (1, 2, "1-2"), (3, 9, "3-9"), (10, np.inf, "10+"))
SCHEMA_VERSION = 2


class EvaluationError(ValueError):
    """A model's outputs cannot be evaluated; the message names the model and the problem."""


class NonFiniteOutputError(EvaluationError, io.NonFiniteError):
    """A model's scores or probabilities hold NaN or inf (:func:`hcp_lib.io.check_finite`); the
    message names the model, the count and the first HCP or position."""


# --- what every model is judged on -------------------------------------------------------------


@dataclass
class EvaluationSetting:
    """The split, the evaluated HCPs and everything the metrics compare against.

    Rows follow ``hcp_ids`` (master order, opted-out HCPs left out), columns ``content_ids``
    (catalogue order), channels :data:`hcp_lib.domain.CHANNELS`. ``oracle``: true engagement
    probabilities at ``split.test_start``; ``exclude``: non-candidates; ``relevant``: candidate
    items engaged with in the test window; ``test_rows``: every test-window exposure of the
    evaluated HCPs with its ``row`` (HCP position) and ``col`` (content position).
    """

    split: Any
    hcp_ids: np.ndarray
    content_ids: pd.Index
    specialty: np.ndarray
    oracle: np.ndarray
    exclude: np.ndarray
    relevant: sp.csr_matrix
    test_rows: pd.DataFrame
    train_engagements: np.ndarray
    item_popularity: np.ndarray
    item_vectors: np.ndarray
    new_items: np.ndarray
    catalogue: pd.DataFrame
    validation: dict = field(default_factory=dict)
    plan_context: Any = None
    plan_settings: Any = None

    @property
    def plan_rows(self) -> np.ndarray:
        """For each HCP of the plan's context (the master), its row in ``hcp_ids`` (-1: not evaluated)."""
        return pd.Index(self.hcp_ids.astype(str)).get_indexer(self.plan_context.hcp_ids.astype(str))

    @cached_property
    def gains(self) -> np.ndarray:
        """Graded relevance (n_hcp, n_content): the oracle's probability of each item through its
        best channel. Computed once: every model's graded NDCG reads it (a max over the whole
        oracle, about 0.1 s at the small scale, was otherwise taken twice per model)."""
        return self.oracle.max(axis=2)

    @cached_property
    def ideal_gains(self) -> np.ndarray:
        """Each HCP's max(EVAL_K) largest candidate gains, best first
        (:func:`hcp_lib.metrics.ideal_gains`): the ideal list of graded NDCG at every k, the
        same for every model, so sorted once."""
        return metrics.ideal_gains(self.gains, max(EVAL_K), ~self.exclude)

    @cached_property
    def new_item_ideal_gains(self) -> np.ndarray:
        """As :attr:`ideal_gains`, among the candidate items released in the test window
        (:func:`new_item_graded_ndcg`)."""
        return metrics.ideal_gains(self.gains, max(EVAL_K), ~self.exclude & self.new_items[None, :])

    @property
    def engaged_rows(self) -> pd.DataFrame:
        return self.test_rows[self.test_rows["engaged"]]


def load_setting(run_dir: str | Path, plan_settings=None) -> EvaluationSetting:
    """Read the run's world, truth, split and topics into an :class:`EvaluationSetting`, with
    the plan's context at the test cut-off under ``plan_settings`` (default: the default
    :class:`hcp_lib.stages.plan.PlanSettings`)."""
    from ..split import training_data
    from ..world import synth
    from . import cf, plan

    run = RunDir(Path(run_dir))
    split = cf.read_split(run_dir)
    world = synth.load_world(run_dir)
    master = world.hcps
    population = evaluated_hcps(master)
    hcp_ids = population["hcp_id"].astype(str).to_numpy(dtype=object)
    catalogue = world.content.reset_index(drop=True)
    content_ids = pd.Index(catalogue["content_id"].astype(str).to_numpy(dtype=object))
    interactions = world.interactions
    train = training_data(interactions, master, catalogue, split.test_start)
    exclude = exclusion_mask(hcp_ids, content_ids, train, released_by=split.test_end, catalogue=catalogue)
    in_test = (interactions["exposed_at"] >= split.test_start) & (interactions["exposed_at"] < split.test_end)
    rows = pd.Index(hcp_ids).get_indexer(interactions.loc[in_test, "hcp_id"].astype(str))
    test_rows = interactions.loc[
        in_test, ["exposure_id", "hcp_id", "content_id", "channel", "exposed_at", "engaged", "true_engagement_prob"]
    ].copy()
    test_rows["row"], test_rows["col"] = rows, content_ids.get_indexer(test_rows["content_id"].astype(str))
    test_rows = test_rows[test_rows["row"] >= 0].sort_values(["exposed_at", "exposure_id"], kind="stable")
    test_rows = test_rows.reset_index(drop=True)
    relevant = metrics.relevance_matrix(test_rows, hcp_ids, content_ids, exclude)
    engaged = train.engaged
    train_engagements = np.bincount(
        pd.Index(hcp_ids).get_indexer(engaged["hcp_id"].astype(str)) + 1, minlength=len(hcp_ids) + 1
    )[1:]
    item_popularity = engaged.drop_duplicates(["hcp_id", "content_id"])["content_id"].astype(str).value_counts()
    item_popularity = item_popularity.reindex(content_ids, fill_value=0).to_numpy(np.float64)
    topics_path = run.topics / "doc_topics.parquet"
    features = (
        baselines.topic_features(io.read_parquet(topics_path))
        if topics_path.exists()
        else baselines.area_features(catalogue)
    )
    item_vectors = baselines._feature_matrix(features, content_ids)
    new_items = (catalogue["release_date"] >= split.test_start).to_numpy(bool)
    oracle = synth.true_engagement_matrix(world, hcp_ids, split.test_start, content_ids=content_ids)
    cf_metrics_path = run.metrics / "cf.json"
    validation = io.read_json(cf_metrics_path).get("validation", {}) if cf_metrics_path.exists() else {}
    plan_settings = plan_settings or plan.PlanSettings()
    context = plan.read_context(run_dir, split.test_start, plan_settings)
    return EvaluationSetting(
        split,
        hcp_ids,
        content_ids,
        population["specialty"].astype(str).to_numpy(dtype=object),
        oracle,
        exclude,
        relevant,
        test_rows,
        train_engagements,
        item_popularity,
        item_vectors,
        new_items,
        catalogue,
        validation,
        context,
        plan_settings,
    )


# --- one model's outputs, checked --------------------------------------------------------------


@dataclass
class ModelOutput:
    """What the evaluation needs from one model, aligned with an :class:`EvaluationSetting`.

    ``top`` (n_hcp, max(EVAL_K)) column indices best first (-1 = none); ``top_scores`` their
    scores; ``top_channel`` the channel index of each listed item (None: content-only model);
    ``engaged_channel`` the predicted channel of each engaged test row (None: no channel
    model); ``exposure_prob`` the engagement probability of each test row (None: no
    probabilities); ``hcp_channel`` the channel index per HCP (channel-only models) and
    ``hcp_channel_rates`` its engagement rates (probability channel models); ``candidates``
    the model's plan candidates (:class:`hcp_lib.stages.plan.Candidates`; None: built from
    ``list_top``, the whole saved list, and its paired channel's rates).
    """

    name: str
    family: str
    source: str
    top: np.ndarray | None
    top_scores: np.ndarray | None = None
    top_channel: np.ndarray | None = None
    engaged_channel: np.ndarray | None = None
    exposure_prob: np.ndarray | None = None
    channel_from: str | None = None
    hcp_channel: np.ndarray | None = None
    candidates: Any = None
    list_top: np.ndarray | None = None
    hcp_channel_rates: np.ndarray | None = None
    new_top: np.ndarray | None = None


def _check_finite(name: str, values, what: str, scope: str = "", rows: np.ndarray | None = None) -> None:
    """Check the ``values`` of model ``name`` with :func:`hcp_lib.io.check_finite` (raises
    :class:`NonFiniteOutputError`).

    A float array whose minimum and maximum are finite holds no NaN (it propagates through
    both) and no inf, so it passes at the cost of two reductions; only otherwise is
    :func:`hcp_lib.io.check_finite` called, for its message. That check converts to float64 and
    builds masks of the array's size: for the oracle's (n_hcp, n_content, n_channel) float32
    tensor, about 2 GB and several passes at the full scale."""
    array = np.asarray(values)
    if array.dtype.kind == "f" and (array.size == 0 or (np.isfinite(array.min()) and np.isfinite(array.max()))):
        return
    io.check_finite(
        values,
        f"model {name!r}",
        what,
        scope=scope,
        labels=rows,
        label_kind="HCP" if rows is not None else None,
        consequence="it cannot be evaluated — check its inputs and training",
        error=NonFiniteOutputError,
    )


def from_scores(
    name: str,
    hcp_ids: Iterable[str],
    content_ids: Iterable[str],
    scores: np.ndarray,
    setting: EvaluationSetting,
    channel_scores: np.ndarray | None = None,
    channel_scores_are_probabilities: bool = False,
    family: str = "model",
    source: str = "score matrix",
    channel_rows: np.ndarray | None = None,
) -> ModelOutput:
    """A :class:`ModelOutput` from a full score matrix (n_hcp, n_content) and, optionally,
    channel scores (n_hcp, n_content, n_channel).

    Rows and columns must list exactly the setting's HCPs and items in the setting's order;
    NaN or infinite scores raise :class:`NonFiniteOutputError` (an :class:`EvaluationError`)
    naming the model, the count and the first HCP; a wrong shape or another order raise
    :class:`EvaluationError` naming the model.

    ``channel_rows``: for each HCP, the row of ``channel_scores`` that holds its channel scores
    (default: its own row). A model whose channel scores are shared by groups of HCPs (the
    v0.1 classifier's depend on an HCP only through its specialty) passes one row per group,
    (n_group, n_content, n_channel), so that the HCPs' tensor (1.5 GB in float64 at the full
    scale) is never built. Float32 channel scores are read as they are: their argmax is that
    of their float64 copy, and the exposure probabilities are converted after the lookup.
    """
    hcp_ids = np.asarray(list(hcp_ids), dtype=object).astype(str)
    content_ids = np.asarray(list(content_ids), dtype=object).astype(str)
    for label, given, expected in (
        ("HCP ids", hcp_ids, setting.hcp_ids.astype(str)),
        ("content ids", content_ids, setting.content_ids.to_numpy().astype(str)),
    ):
        if len(given) != len(expected) or set(given) != set(expected):
            raise EvaluationError(
                f"model {name!r}: its {label} ({len(given)}) are not the evaluation's "
                f"({len(expected)}); score every evaluated id"
            )
        if not (given == expected).all():
            first = int(np.flatnonzero(given != expected)[0])
            raise EvaluationError(
                f"model {name!r}: its {label} are in another order than the evaluation's "
                f"(position {first}: {given[first]!r}, expected {expected[first]!r})"
            )
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(hcp_ids), len(content_ids)):
        raise EvaluationError(
            f"model {name!r}: scores have shape {scores.shape}, expected {(len(hcp_ids), len(content_ids))}"
        )
    _check_finite(name, scores, "score", " in its score matrix", hcp_ids)
    # one sort for the evaluated top and the deeper saved list: the top is the list's head
    ranked = top_n(scores, max(LIST_DEPTH, max(EVAL_K)), setting.exclude, model=name)
    top = np.ascontiguousarray(ranked[:, : max(EVAL_K)])
    top_scores = np.where(top >= 0, np.take_along_axis(scores, np.maximum(top, 0), axis=1), np.nan)
    output = ModelOutput(name, family, source, top, top_scores)
    output.list_top = np.ascontiguousarray(ranked[:, :LIST_DEPTH])
    output.new_top = top_n(scores, 10, setting.exclude | ~setting.new_items[None, :], model=name)
    if channel_scores is not None:
        channel_scores = np.asarray(channel_scores)
        if channel_scores.dtype not in (np.float32, np.float64):
            channel_scores = channel_scores.astype(np.float64)
        grouped = channel_rows is not None
        channel_rows = np.asarray(channel_rows, np.int64) if grouped else np.arange(len(hcp_ids))
        n_rows = channel_scores.shape[0] if grouped and channel_scores.ndim else len(hcp_ids)
        if channel_scores.shape != (n_rows, len(content_ids), len(CHANNELS)):
            raise EvaluationError(
                f"model {name!r}: channel scores have shape {channel_scores.shape}, expected "
                f"{(n_rows, len(content_ids), len(CHANNELS))}"
            )
        if channel_rows.shape != (len(hcp_ids),) or (channel_rows < 0).any() or (channel_rows >= n_rows).any():
            raise EvaluationError(f"model {name!r}: channel_rows must give each HCP a row of its channel scores")
        _check_finite(name, channel_scores, "channel score", "", None if grouped else hcp_ids)
        best = channel_scores.argmax(axis=2)
        output.top_channel = np.where(top >= 0, best[channel_rows[:, None], np.maximum(top, 0)], -1)
        engaged = setting.engaged_rows
        output.engaged_channel = best[channel_rows[engaged["row"].to_numpy()], engaged["col"].to_numpy()]
        output.channel_from = name
        if channel_scores_are_probabilities:
            rows = setting.test_rows
            prob = channel_scores[
                channel_rows[rows["row"].to_numpy()],
                rows["col"].to_numpy(),
                pd.Index(CHANNELS).get_indexer(rows["channel"].astype(str)),
            ].astype(np.float64)
            if ((prob < 0) | (prob > 1)).any():
                raise EvaluationError(
                    f"model {name!r}: channel scores are said to be probabilities but lie outside [0, 1]"
                )
            output.exposure_prob = prob
    return output


LIST_COLUMNS = ("hcp_id", "rank", "content_id", "score")


def from_lists(
    name: str,
    lists: pd.DataFrame,
    setting: EvaluationSetting,
    family: str,
    source: str,
    exposure_probs: pd.DataFrame | None = None,
) -> ModelOutput:
    """A :class:`ModelOutput` from saved top-N lists (hcp_id, rank, content_id, score[,
    channel]) and, optionally, per-exposure probabilities (exposure_id, engagement_prob).

    Raises :class:`EvaluationError` naming the model and the problem: a missing column, a
    list shorter than max(EVAL_K) where more candidates exist, an HCP of the evaluation
    without a list, an unknown id, a non-candidate item, repeated ranks, NaN/inf scores,
    ranks not in descending score order, an unknown channel, or probabilities outside [0, 1].
    """
    missing = [c for c in LIST_COLUMNS if c not in lists.columns]
    if missing:
        raise EvaluationError(
            f"model {name!r} ({source}): missing column {missing[0]!r}; lists need {', '.join(LIST_COLUMNS)}"
        )
    k = max(EVAL_K)
    whole = lists
    lists = lists[lists["rank"] <= k]
    rows = pd.Index(setting.hcp_ids).get_indexer(lists["hcp_id"].astype(str))
    lists, rows = lists[rows >= 0], rows[rows >= 0]  # opted-out HCPs are not evaluated
    cols = setting.content_ids.get_indexer(lists["content_id"].astype(str))
    if (cols < 0).any():
        raise EvaluationError(
            f"model {name!r} ({source}): content id {lists['content_id'].iloc[np.flatnonzero(cols < 0)[0]]!r} "
            "is not in the catalogue"
        )
    scores = lists["score"].to_numpy(dtype=np.float64)
    _check_finite(name, scores, "score", f" in column 'score' of {source}")
    ranks = lists["rank"].to_numpy(dtype=np.int64)
    if (ranks < 1).any() or pd.DataFrame({"r": rows, "k": ranks}).duplicated().any():
        raise EvaluationError(f"model {name!r} ({source}): ranks must be 1, 2, … once per HCP")
    if setting.exclude[rows, cols].any():
        first = np.flatnonzero(setting.exclude[rows, cols])[0]
        raise EvaluationError(
            f"model {name!r} ({source}): HCP {setting.hcp_ids[rows[first]]!r} is recommended "
            f"content {setting.content_ids[cols[first]]!r}, which is not a candidate (seen, "
            "unapproved or unreleased)"
        )
    top = np.full((len(setting.hcp_ids), k), -1, dtype=np.int64)
    top_scores = np.full(top.shape, np.nan)
    top[rows, ranks - 1], top_scores[rows, ranks - 1] = cols, scores
    listed = (top >= 0).sum(axis=1)
    available = np.minimum((~setting.exclude).sum(axis=1), k)
    short = listed < available
    if short.any():
        first = int(np.flatnonzero(short)[0])
        raise EvaluationError(
            f"model {name!r} ({source}): HCP {setting.hcp_ids[first]!r} has {listed[first]} listed "
            f"items but {available[first]} candidates; lists must hold the top {k} "
            f"({int(short.sum())} HCPs affected)"
        )
    ordered = np.where(top >= 0, top_scores, np.nan)
    if (np.nan_to_num(np.diff(ordered, axis=1), nan=0.0) > 1e-12).any():
        raise EvaluationError(f"model {name!r} ({source}): ranks are not in descending score order")
    output = ModelOutput(name, family, source, top, top_scores)
    depth = int(whole["rank"].max()) if len(whole) else k
    output.list_top = top_n_from_lists(whole, setting.hcp_ids, setting.content_ids, depth)
    if "channel" in lists.columns:
        channel = pd.Index(CHANNELS).get_indexer(lists["channel"].astype(str))
        if (channel < 0).any():
            raise EvaluationError(
                f"model {name!r} ({source}): column 'channel' has value "
                f"{lists['channel'].iloc[np.flatnonzero(channel < 0)[0]]!r}; allowed: {', '.join(CHANNELS)}"
            )
        output.top_channel = np.full(top.shape, -1, dtype=np.int64)
        output.top_channel[rows, ranks - 1] = channel
        output.channel_from = name
    if exposure_probs is not None:
        output.exposure_prob = _exposure_probabilities(name, exposure_probs, setting)
    return output


def _exposure_probabilities(name: str, table: pd.DataFrame, setting: EvaluationSetting) -> np.ndarray:
    for column in ("exposure_id", "engagement_prob"):
        if column not in table.columns:
            raise EvaluationError(f"model {name!r}: exposure probabilities lack column {column!r}")
    values = np.asarray(table["engagement_prob"], dtype=np.float64)
    _check_finite(name, values, "exposure probability", " in column 'engagement_prob'")
    prob = pd.Series(values, index=table["exposure_id"].to_numpy())
    prob = prob.reindex(setting.test_rows["exposure_id"].to_numpy()).to_numpy()
    if np.isnan(prob).any():
        raise EvaluationError(f"model {name!r}: exposure probabilities miss {int(np.isnan(prob).sum())} test exposures")
    if ((prob < 0) | (prob > 1)).any():
        raise EvaluationError(f"model {name!r}: column 'engagement_prob' has values outside [0, 1]")
    return prob


def channel_output(name: str, table: pd.DataFrame, setting: EvaluationSetting, source: str) -> ModelOutput:
    """A channel-only model from ``cf/test_channels/<model>.parquet`` (hcp_id + one score
    column per channel): its channel per HCP, and its probabilities when the model is one of
    :data:`PROBABILITY_CHANNEL_MODELS`."""
    missing = [c for c in ("hcp_id", *CHANNELS) if c not in table.columns]
    if missing:
        raise EvaluationError(f"model {name!r} ({source}): missing column {missing[0]!r}")
    scores = table.set_index(table["hcp_id"].astype(str))[list(CHANNELS)]
    absent = pd.Index(setting.hcp_ids).difference(scores.index)
    if len(absent):
        raise EvaluationError(f"model {name!r} ({source}): no row for HCP {absent[0]!r} ({len(absent)} missing)")
    matrix = scores.loc[list(setting.hcp_ids)].to_numpy(np.float64)
    _check_finite(name, matrix, "channel score", f" in {source}", setting.hcp_ids)
    best = matrix.argmax(axis=1)
    output = ModelOutput(name, "channel_baseline", source, None, channel_from=name)
    output.engaged_channel = best[setting.engaged_rows["row"].to_numpy()]
    output.hcp_channel = best
    if name in PROBABILITY_CHANNEL_MODELS:
        rows = setting.test_rows
        output.exposure_prob = matrix[
            rows["row"].to_numpy(), pd.Index(CHANNELS).get_indexer(rows["channel"].astype(str))
        ]
        output.hcp_channel_rates = matrix
    return output


def top_n_from_lists(lists: pd.DataFrame, hcp_ids: np.ndarray, content_ids: pd.Index, k: int) -> np.ndarray:
    """Column indices (n_hcp, k) of the top-``k`` of saved lists (hcp_id, rank, content_id),
    in ``hcp_ids`` order; -1 where a list is shorter (an HCP without a list gets only -1)."""
    lists = lists[lists["rank"] <= k]
    rows = pd.Index(np.asarray(hcp_ids, dtype=object).astype(str)).get_indexer(lists["hcp_id"].astype(str))
    cols = content_ids.get_indexer(lists["content_id"].astype(str))
    keep = (rows >= 0) & (cols >= 0)
    top = np.full((len(hcp_ids), k), -1, dtype=np.int64)
    top[rows[keep], lists["rank"].to_numpy()[keep] - 1] = cols[keep]
    return top


def oracle_output(setting: EvaluationSetting) -> ModelOutput:
    """The oracle as a model: items ranked by their best-channel true probability, that channel
    chosen; its exposure probabilities are the simulator's ``true_engagement_prob``."""
    output = from_scores(
        ORACLE_NAME,
        setting.hcp_ids,
        setting.content_ids,
        setting.gains,
        setting,
        channel_scores=setting.oracle,
        family="oracle",
        source="synth.true_engagement_matrix",
    )
    output.exposure_prob = setting.test_rows["true_engagement_prob"].to_numpy(np.float64)
    return output


# --- the v0.1 approach ------------------------------------------------------------------------


@dataclass
class V01Result:
    """The v0.1 engagement classifier: its random-split scores and its temporal-test output."""

    random_split: dict[str, float]
    output: ModelOutput


class V01Rows:
    """The v0.1 classifier's exposures grouped by what its features read: (item, specialty,
    channel). Its logistic regression sees nothing else of a row, so the rows of one pattern
    are identical to it, and the log-likelihood of a set of rows is the sum over patterns of
    (engaged rows) x log p + (not engaged) x log(1 - p). :meth:`weighted` turns a set of rows
    into one weighted row per pattern and outcome: the same objective (scikit-learn divides the
    loss and the L2 penalty by the sum of the weights, the number of rows either way), hence
    the same optimum, at the full scale from about 10,000 rows instead of a million.

    ``item`` (row of the catalogue), ``specialty`` and ``channel`` of each exposure, in order;
    after construction they hold one entry per pattern and ``index`` gives each exposure's
    pattern."""

    def __init__(self, item: np.ndarray, specialty: np.ndarray, channel: np.ndarray):
        keys = pd.MultiIndex.from_arrays([np.asarray(item), np.asarray(specialty), np.asarray(channel)])
        codes, uniques = pd.factorize(keys)
        self.index = np.asarray(codes, np.int64)
        self.item = uniques.get_level_values(0).to_numpy(np.int64)
        self.specialty = uniques.get_level_values(1).to_numpy().astype(str)
        self.channel = uniques.get_level_values(2).to_numpy().astype(str)

    def weighted(self, features: sp.csr_matrix, target: np.ndarray, mask: np.ndarray):
        """(x, y, weight) of the rows in ``mask``: per pattern present, its engaged rows as one
        row of label 1 and its others as one row of label 0, each weighted by its count;
        ``features`` has one row per pattern."""
        n, mask = len(self.item), np.asarray(mask, bool)
        rows = self.index[mask]
        engaged = np.bincount(rows, weights=np.asarray(target, bool)[mask], minlength=n)
        other = np.bincount(rows, minlength=n) - engaged
        positive, negative = np.flatnonzero(engaged > 0), np.flatnonzero(other > 0)
        x = sp.vstack([features[positive], features[negative]]).tocsr()
        y = np.r_[np.ones(len(positive), bool), np.zeros(len(negative), bool)]
        return x, y, np.r_[engaged[positive], other[negative]]


def v01_classifier(run_dir: str | Path, setting: EvaluationSetting, seed: int) -> V01Result:
    """Reproduce v0.1: logistic regression on TF-IDF(title + abstract) + one-hot(specialty,
    channel) predicting ``engaged`` per exposure.

    First as v0.1 did: a random 80/20 split of ALL exposure rows (future rows train the model
    that predicts past ones) → AUC and accuracy. Then as every model here: fitted on rows
    before the test cut-off, scored on the test window (and, for the choice criterion, fitted
    before the validation window and scored on it: ``validation_log_loss``); its plan
    candidates come from its probabilities of every (HCP, content, channel). Its logit is
    additive (text + specialty + channel) and reads nothing else of an HCP, so the probability
    tensor is built by broadcasting with one row per specialty, (n_specialty, n_content,
    n_channel), and each HCP reads its specialty's row (``channel_rows`` of :func:`from_scores`,
    ``tensor_rows`` of :func:`setting_scorer`): the same values, without the HCPs' tensor
    (38,000 x 1,019 x 5 in float64: 1.5 GB, twice over while ``expit`` ran, and about 15 s at
    the full scale).
    """
    from scipy.special import expit
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import OneHotEncoder

    from ..world import synth
    from . import pubmed

    world = synth.load_world(run_dir)
    text = setting.catalogue["title"].astype(str)
    try:
        articles = pubmed.read_articles(run_dir).set_index("pmid")
        text = text + ". " + articles["abstract"].astype(str).reindex(setting.content_ids).fillna("").to_numpy()
    except FileNotFoundError:
        pass  # titles alone when the run holds no article table
    tfidf = TfidfVectorizer(stop_words="english", min_df=2, max_features=5000, sublinear_tf=True)
    item_text = tfidf.fit_transform(text.to_numpy())
    rows = world.interactions
    specialty = rows["hcp_id"].astype(str).map(world.hcps.set_index(world.hcps["hcp_id"].astype(str))["specialty"])
    onehot = OneHotEncoder(
        categories=[sorted(set(world.hcps["specialty"].astype(str))), list(CHANNELS)], handle_unknown="ignore"
    )
    item_of_row = setting.content_ids.get_indexer(rows["content_id"].astype(str))
    if (item_of_row < 0).any():
        raise EvaluationError(
            f"world/hcp_interaction_data.parquet: column content_id holds "
            f"{rows['content_id'].iloc[int(np.flatnonzero(item_of_row < 0)[0])]!r}, which is not in the catalogue"
        )
    pattern = V01Rows(item_of_row, specialty.astype(str).to_numpy(), rows["channel"].astype(str).to_numpy())
    features = sp.hstack(
        [item_text[pattern.item], onehot.fit_transform(np.column_stack([pattern.specialty, pattern.channel]))]
    ).tocsr()
    target = rows["engaged"].to_numpy(bool)

    def classifier():
        return LogisticRegression(max_iter=2000, C=1.0)

    def fit(mask: np.ndarray):
        x, y, weight = pattern.weighted(features, target, mask)
        return classifier().fit(x, y, sample_weight=weight)

    def predict(model, rows: np.ndarray) -> np.ndarray:  # rows: a mask or indices of exposures
        return model.predict_proba(features)[:, 1][pattern.index[rows]]

    before_valid = (rows["exposed_at"] < setting.split.valid_start).to_numpy()
    in_valid = ~before_valid & (rows["exposed_at"] < setting.split.test_start).to_numpy()
    valid_model = fit(before_valid)
    validation_log_loss = metrics.log_loss_value(target[in_valid], predict(valid_model, in_valid))

    train_idx, test_idx = train_test_split(np.arange(len(rows)), test_size=0.2, random_state=seed, stratify=target)
    in_train = np.zeros(len(rows), bool)
    in_train[train_idx] = True
    random_model = fit(in_train)
    random_prob = predict(random_model, test_idx)
    before = (rows["exposed_at"] < setting.split.test_start).to_numpy()
    model = fit(before)
    n_text, n_specialty = item_text.shape[1], len(onehot.categories_[0])
    coef = model.coef_.ravel()
    text_logit = item_text @ coef[:n_text]
    specialty_logit = pd.Series(coef[n_text : n_text + n_specialty], index=onehot.categories_[0])
    channel_logit = coef[n_text + n_specialty :]
    group, specialties = pd.factorize(pd.Index(setting.specialty))
    group_logit = specialty_logit.reindex(specialties).to_numpy()
    logit = model.intercept_[0] + group_logit[:, None, None] + text_logit[None, :, None] + channel_logit[None, None, :]
    probability = expit(logit)  # (n_specialty, n_content, n_channel): HCP h reads row group[h]
    output = from_scores(
        V01_NAME,
        setting.hcp_ids,
        setting.content_ids,
        probability.max(axis=2)[group],
        setting,
        channel_scores=probability,
        channel_scores_are_probabilities=True,
        family="v0.1",
        source="logistic regression on TF-IDF + specialty + channel",
        channel_rows=group,
    )
    from . import plan

    output.candidates = plan.candidate_actions(
        setting.plan_context,
        setting_scorer(setting, probability, group),
        setting.content_ids,
        setting.plan_settings,
        model=V01_NAME,
    )
    test = setting.test_rows
    temporal_prob = output.exposure_prob
    random_split = {
        "random_split_auc": metrics.exposure_auc(target[test_idx], random_prob),
        "random_split_accuracy": float(accuracy_score(target[test_idx], random_prob >= 0.5)),
        "temporal_auc": metrics.exposure_auc(test["engaged"].to_numpy(bool), temporal_prob)
        if test["engaged"].nunique() == 2
        else None,
        "temporal_accuracy": float(accuracy_score(test["engaged"], temporal_prob >= 0.5)),
        "n_train_random": int(len(train_idx)),
        "n_test_random": int(len(test_idx)),
        "validation_log_loss": validation_log_loss,
    }
    return V01Result(random_split, output)


# --- gathering the run's models -------------------------------------------------------------


def policy_channel_model(setting: EvaluationSetting, available: Iterable[str]) -> str:
    """The channel baseline that supplies the channel of content-only models: the first of
    :data:`PROBABILITY_CHANNEL_MODELS` present (a policy that maximises engagement needs the
    channel with the highest engagement probability, not the one the logging policy would
    have used), else the one with the best validation accuracy (``metrics/cf.json``), else
    the first by name."""
    available = sorted(available)
    if not available:
        raise EvaluationError("no channel baseline in cf/test_channels/ (did notebook 04 run?)")
    for name in PROBABILITY_CHANNEL_MODELS:
        if name in available:
            return name
    scored = {m: setting.validation.get(m, {}).get("channel_accuracy") for m in available}
    scored = {m: v for m, v in scored.items() if v is not None}
    return max(scored, key=lambda m: (scored[m], m)) if scored else available[0]


def best_baseline(setting: EvaluationSetting, outputs: dict[str, ModelOutput]) -> str:
    """The content baseline with the best validation criterion (the AUC of its scores on the
    logged validation exposures, ``metrics/cf.json``), never chosen on test; ``random`` is not a
    candidate. Falls back to the first baseline by name."""
    from .cf import CONTENT_CRITERION

    baselines = sorted(n for n, o in outputs.items() if o.family == "baseline" and n != "random")
    if not baselines:
        raise EvaluationError("no content baseline in cf/test_top_n/ besides random (did notebook 04 run?)")
    scored = {m: setting.validation.get(m, {}).get(CONTENT_CRITERION[0]) for m in baselines}
    scored = {m: v for m, v in scored.items() if v is not None}
    return max(scored, key=lambda m: (scored[m], m)) if scored else baselines[0]


def load_models(
    run_dir: str | Path, setting: EvaluationSetting, expected: Iterable[str] = ()
) -> dict[str, ModelOutput]:
    """Every model output of the run: content baselines (``cf/test_top_n``), channel
    baselines (``cf/test_channels``), hybrid models (``hybrid/test_top_n``, when present).

    A model named in ``expected`` but absent raises :class:`EvaluationError` naming it.
    Content-only models are paired with :func:`policy_channel_model` for their channel.
    """
    from . import plan
    from .engagement import read_registry

    run = RunDir(Path(run_dir))
    registry = read_registry(run_dir)
    outputs: dict[str, ModelOutput] = {}
    channel_folder = run.cf / "test_channels"
    for path in sorted(channel_folder.glob("*.parquet")):
        outputs[path.stem] = channel_output(path.stem, io.read_parquet(path), setting, str(path.relative_to(run.root)))
    for stage_family, folder in (("baseline", run.cf / "test_top_n"), ("hybrid", run.hybrid / "test_top_n")):
        for path in sorted(folder.glob("*.parquet")):
            probs_path = folder.parent / "test_exposure_probs" / path.name
            probs = io.read_parquet(probs_path) if probs_path.exists() else None
            if path.stem in outputs:
                raise EvaluationError(f"model {path.stem!r}: two outputs ({outputs[path.stem].source} and {path})")
            family = (
                registry.get(path.stem, {}).get("family", stage_family) if stage_family == "hybrid" else stage_family
            )
            outputs[path.stem] = from_lists(
                path.stem, io.read_parquet(path), setting, family, str(path.relative_to(run.root)), probs
            )
            new_path = folder.parent / "test_new_items" / path.name
            if new_path.exists():
                outputs[path.stem].new_top = top_n_from_lists(
                    io.read_parquet(new_path), setting.hcp_ids, setting.content_ids, 10
                )
            candidates_path = folder.parent / "plan_candidates" / path.name
            if candidates_path.exists():
                outputs[path.stem].candidates = plan.read_candidates(
                    candidates_path, setting.plan_context, setting.plan_settings
                )
    missing = [m for m in expected if m not in outputs]
    if missing:
        found = ", ".join(sorted(outputs)) or "none"
        raise EvaluationError(f"model {missing[0]!r} is missing from the run {run.root} (found: {found})")
    if not any(o.family == "baseline" for o in outputs.values()):
        raise EvaluationError(f"{run.cf / 'test_top_n'}: no content baseline lists (did notebook 04 run?)")
    channel_models = [n for n, o in outputs.items() if o.family == "channel_baseline"]
    paired = policy_channel_model(setting, channel_models)
    for output in outputs.values():
        if output.top is not None and output.top_channel is None:
            hcp_channel = outputs[paired].hcp_channel
            output.top_channel = np.where(output.top >= 0, hcp_channel[:, None], -1)
            output.engaged_channel = outputs[paired].engaged_channel
            output.channel_from = paired
            output.hcp_channel_rates = outputs[paired].hcp_channel_rates
    return outputs


# --- the week's plan of each model -----------------------------------------------------------------


def setting_scorer(setting: EvaluationSetting, tensor: np.ndarray, tensor_rows: np.ndarray | None = None) -> Callable:
    """A ``score_channels`` callable for the plan over a (n_hcp, n_content, n_channel) array whose
    rows follow ``setting.hcp_ids``; HCPs not evaluated (opted out) get zeros (they have no
    eligible action anyway). ``tensor_rows``: for each HCP of ``setting.hcp_ids``, its row of
    ``tensor`` when the rows are shared by groups of HCPs (as ``channel_rows`` of :func:`from_scores`)."""
    rows_of = pd.Series(setting.plan_rows, index=setting.plan_context.hcp_ids.astype(str))

    def score(hcp_ids):
        rows = rows_of.reindex(pd.Index(np.asarray(list(hcp_ids), dtype=object).astype(str))).fillna(-1).to_numpy(int)
        out = np.zeros((len(rows), tensor.shape[1], tensor.shape[2]))
        evaluated = rows[rows >= 0]
        out[rows >= 0] = tensor[evaluated if tensor_rows is None else tensor_rows[evaluated]]
        return out

    return score


def list_scorer(setting: EvaluationSetting, list_top: np.ndarray, channel_rates: np.ndarray) -> Callable:
    """Pseudo-probabilities for planning with a content-only model: for the items of its saved
    list (``list_top``, (n_hcp, N) columns best first, rows = ``setting.hcp_ids``), the
    paired channel's engagement rate of the HCP (``channel_rates`` (n_hcp, n_channel)) times
    ``1 - rank / N`` (rank 0 = first); 0 for items outside the list, which the plan then
    leaves out. The MILP thus takes the model's order within an HCP and the channel model's
    rates across HCPs and channels."""
    depth = list_top.shape[1]
    weight = 1.0 - np.arange(depth) / depth
    rows_of = pd.Series(setting.plan_rows, index=setting.plan_context.hcp_ids.astype(str))
    n_content = len(setting.content_ids)

    def score(hcp_ids):
        rows = rows_of.reindex(pd.Index(np.asarray(list(hcp_ids), dtype=object).astype(str))).fillna(-1).to_numpy(int)
        out = np.zeros((len(rows), n_content, len(CHANNELS)))
        b, j = np.nonzero((rows[:, None] >= 0) & (list_top[np.maximum(rows, 0)] >= 0))
        out[b, list_top[rows[b], j]] = channel_rates[rows[b]] * weight[j][:, None]
        return out

    return score


@dataclass
class PlanOutcome:
    """One model's plan: the candidates it chose from, the solver's assignment, the chosen
    actions and their true value per evaluated HCP (``value``, rows = ``setting.hcp_ids``)."""

    candidates: Any
    assignment: Any
    actions: pd.DataFrame
    value: np.ndarray


def plan_program(setting: EvaluationSetting, candidates, capacities: pd.DataFrame | None = None):
    """The program of the plan notebook 07 would make from ``candidates``
    (:class:`hcp_lib.stages.plan.Candidates`): its usable candidates (rows with probability 0
    dropped) and their constraint families under the setting's plan rules; ``capacities``: the
    plan's :func:`hcp_lib.stages.plan.capacity_table` when already made (it depends on the rules
    only). Returns ``(table, families)``."""
    from . import plan

    settings = setting.plan_settings
    table = plan.usable(candidates).table
    if capacities is None:
        capacities = plan.capacity_table(setting.plan_context, settings)
    return table, plan.constraint_families(table, settings, capacities, candidates.slots)


def _solve_arguments(setting: EvaluationSetting, table: pd.DataFrame, families: list) -> tuple[tuple, dict]:
    """The arguments of :func:`hcp_lib.stages.plan.solve_milp` for a plan's program (one place, so
    that a plan solved here or in a worker process is the same call)."""
    settings = setting.plan_settings
    return (
        (table["probability"].to_numpy(), families, settings.time_limit_s, settings.mip_rel_gap),
        # every model's plan is valued here; notebook 07 proves the gap of the one it makes
        {"max_candidates": settings.milp_max_candidates, "prove_gap": False},
    )


def plan_value(setting: EvaluationSetting, candidates, table: pd.DataFrame, assignment) -> PlanOutcome:
    """A solved plan (``assignment`` of the program ``table`` of :func:`plan_program`) as a
    :class:`PlanOutcome`: its actions and the oracle's probability of each summed per HCP."""
    actions = table[assignment.chosen].reset_index(drop=True)
    rows = setting.plan_rows[actions["row"].to_numpy()]
    if (rows < 0).any():
        raise EvaluationError(
            f"a plan action names HCP {actions['hcp_id'].iloc[int(np.flatnonzero(rows < 0)[0])]!r}, "
            "who is not evaluated (opted out?)"
        )
    truth = setting.oracle[rows, actions["col"].to_numpy(), actions["ch"].to_numpy()].astype(np.float64)
    value = np.bincount(rows, weights=truth, minlength=len(setting.hcp_ids))
    return PlanOutcome(candidates, assignment, actions, value)


def plan_terms(setting: EvaluationSetting, candidates) -> PlanOutcome:
    """The plan notebook 07 would make from ``candidates`` (:class:`hcp_lib.stages.plan.Candidates`;
    rows with probability 0 are dropped), solved with the MILP under the setting's plan rules,
    and the oracle's probability of each chosen action summed per HCP (one plan, in this
    process; :class:`PlanSolver` solves many side by side)."""
    from . import plan

    table, families = plan_program(setting, candidates)
    args, kwargs = _solve_arguments(setting, table, families)
    return plan_value(setting, candidates, table, plan.solve_milp(*args, **kwargs))


#: at most this many worker processes solve the plans (:class:`PlanSolver`; never more than the CPUs)
PLAN_PROCESSES = 2
#: a plan with fewer candidates is solved at once in this process: starting a worker (a fresh
#: interpreter importing the plan stage, about a second) costs more than such a MILP (0.05 s at the
#: tiny scale, against 1-5 s for the 50,000 candidates of the small scale)
PARALLEL_MIN_CANDIDATES = 10_000


class PlanSolver:
    """Solves the week's plan of each model (:func:`plan_terms`), the large ones side by side in
    worker processes.

    The plans are independent MILPs that HiGHS solves on one core each, and at the small scale
    they are most of the evaluation's time (17 plans of 1-5 s). :meth:`submit` builds a plan's
    program here and hands the solve to a pool of ``processes`` workers when it has at least
    :data:`PARALLEL_MIN_CANDIDATES` candidates and goes to the MILP at all (past
    ``milp_max_candidates`` the greedy stands in at once); :meth:`outcome` waits for it and
    values it. The pool starts its workers with 'spawn': a forked child would inherit the
    threads of a notebook kernel or of HiGHS's own scheduler, half alive. Each solve gets the
    very arguments of a call made in this process and HiGHS is deterministic, so the plans do
    not depend on ``processes`` (1: every plan is solved in turn, here). Use it as a context
    manager: leaving it shuts the pool down. As with any 'spawn' pool, a script (not a notebook)
    that evaluates must keep its own code under ``if __name__ == "__main__":``, since each worker
    imports the script first; a worker that dies raises :class:`EvaluationError` saying so.
    """

    def __init__(self, setting: EvaluationSetting, processes: int = PLAN_PROCESSES):
        self.setting = setting
        self.processes = max(1, min(int(processes), usable_cpus()))
        self._plans: dict[str, tuple] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._capacities: pd.DataFrame | None = None

    def __enter__(self) -> PlanSolver:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Shut the worker pool down (pending solves are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __contains__(self, name: str) -> bool:
        return name in self._plans

    def submit(self, name: str, candidates) -> None:
        """Start solving the plan ``name`` from ``candidates`` (nothing if it was submitted already)."""
        if name in self._plans:
            return
        from . import plan

        if self._capacities is None:
            self._capacities = plan.capacity_table(self.setting.plan_context, self.setting.plan_settings)
        table, families = plan_program(self.setting, candidates, self._capacities)
        args, kwargs = _solve_arguments(self.setting, table, families)
        if self.processes > 1 and PARALLEL_MIN_CANDIDATES <= len(table) <= kwargs["max_candidates"]:
            if self._pool is None:
                import multiprocessing

                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            solved = self._pool.submit(plan.solve_milp, *args, **kwargs)
        else:
            solved = plan.solve_milp(*args, **kwargs)
        self._plans[name] = (candidates, table, solved)

    def outcome(self, name: str) -> PlanOutcome:
        """The plan ``name`` (:meth:`submit`), valued by :func:`plan_value`; waits for its solve."""
        candidates, table, solved = self._plans[name]
        try:
            assignment = solved.result() if isinstance(solved, Future) else solved
        except BrokenProcessPool as err:
            raise EvaluationError(
                f"the worker process solving the plan of {name!r} died ({err}). A script that runs the "
                'evaluation must keep its code under `if __name__ == "__main__":` (each worker imports the '
                "script first), or solve the plans here with plan_processes=1"
            ) from err
        return plan_value(self.setting, candidates, table, assignment)


def submit_plans(
    solver: PlanSolver, setting: EvaluationSetting, outputs: dict[str, ModelOutput], own_only: bool = False
) -> None:
    """Hand ``solver`` the oracle's plan (under the name ``"oracle"``) and every model's
    (:func:`model_candidates`; none for the oracle and the channel-only models, whose plans are
    the oracle's or none); ``own_only``: only the models that made their own candidates
    (nothing to score here), so that their solves start first."""
    if "oracle" not in solver:
        solver.submit("oracle", oracle_candidates(setting))
    for name, output in outputs.items():
        if name in solver or output.family in ("oracle", "channel_baseline"):
            continue
        if own_only and output.candidates is None:
            continue
        candidates = model_candidates(setting, output)
        if candidates is not None:
            solver.submit(name, candidates)


def model_candidates(setting: EvaluationSetting, output: ModelOutput):
    """The plan candidates of a model: its own (engagement models and the v0.1 classifier), or,
    for a content-only model with a paired probability channel model, those of
    :func:`list_scorer`; None when neither exists."""
    from . import plan

    if output.candidates is not None:
        return output.candidates
    if output.list_top is None or output.hcp_channel_rates is None:
        return None
    return plan.candidate_actions(
        setting.plan_context,
        list_scorer(setting, output.list_top, output.hcp_channel_rates),
        setting.content_ids,
        setting.plan_settings,
        model=output.name,
    )


def oracle_candidates(setting: EvaluationSetting):
    """The oracle's plan candidates: the same rules, the simulator's true probabilities."""
    from . import plan

    return plan.candidate_actions(
        setting.plan_context,
        setting_scorer(setting, setting.oracle),
        setting.content_ids,
        setting.plan_settings,
        model=ORACLE_NAME,
    )


def business_as_usual_plan(setting: EvaluationSetting) -> np.ndarray:
    """Per evaluated HCP, the oracle's expected engagements of the touches the logging policy
    sent in the plan's week (each valued at the plan's start, like every plan)."""
    context = setting.plan_context
    rows = setting.test_rows
    week = rows[(rows["exposed_at"] >= context.plan_start) & (rows["exposed_at"] < context.plan_end)]
    truth = setting.oracle[
        week["row"].to_numpy(), week["col"].to_numpy(), pd.Index(CHANNELS).get_indexer(week["channel"].astype(str))
    ].astype(np.float64)
    return np.bincount(week["row"].to_numpy(), weights=truth, minlength=len(setting.hcp_ids))


# --- per-HCP metrics and their intervals --------------------------------------------------------


def ranking_terms(output: ModelOutput, setting: EvaluationSetting) -> dict[str, np.ndarray]:
    """Per-HCP values of every :data:`RANKING_METRICS` at every k (NaN = undefined)."""
    terms = {}
    for k in EVAL_K:
        top = output.top
        terms[f"hit_rate@{k}"] = metrics.hit_at_k(top, setting.relevant, k)
        terms[f"precision@{k}"] = metrics.precision_at_k(top, setting.relevant, k)
        terms[f"recall@{k}"] = metrics.recall_at_k(top, setting.relevant, k)
        terms[f"ndcg@{k}"] = metrics.ndcg_at_k(top, setting.relevant, k)
        terms[f"graded_ndcg@{k}"] = metrics.graded_ndcg_at_k(top, setting.gains, k, ideal=setting.ideal_gains)
        terms[f"mrr@{k}"] = metrics.reciprocal_rank_at_k(top, setting.relevant, k)
        terms[f"map@{k}"] = metrics.average_precision_at_k(top, setting.relevant, k)
        terms[f"novelty@{k}"] = metrics.novelty_at_k(top, setting.item_popularity, len(setting.hcp_ids), k)
        terms[f"diversity@{k}"] = (
            metrics.intra_list_diversity_at_k(top, setting.item_vectors, k) if k > 1 else np.full(len(top), np.nan)
        )
    return terms


def policy_terms(setting: EvaluationSetting, top1: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Per HCP: the oracle's probability of the (content ``top1``, channel) pair; NaN where
    the policy recommends nothing."""
    ok = (top1 >= 0) & (channel >= 0)
    value = np.full(len(top1), np.nan)
    rows = np.flatnonzero(ok)
    value[rows] = setting.oracle[rows, top1[rows], channel[rows]]
    return value


#: HCPs per block where a full-size masked copy of the oracle is reduced block by block
REDUCE_BLOCK = 2048


def reference_policies(setting: EvaluationSetting) -> dict[str, np.ndarray]:
    """Per-HCP policy values of the oracle (best candidate pair), random (expectation over
    candidate pairs) and business-as-usual (first logged test exposure, NaN if none)."""
    has_candidate = (~setting.exclude).any(axis=1)
    # the best candidate pair is the best candidate item's best channel: the max of the cached
    # gains over candidates, exactly the max over the (item, channel) tensor, without its
    # full-size masked copy
    oracle = np.where(has_candidate, np.where(setting.exclude, -np.inf, setting.gains).max(axis=1), np.nan)
    n = (~setting.exclude).sum(axis=1) * len(CHANNELS)
    # the masked copy summed a block of HCPs at a time: each HCP's sum is the same reduction
    # of the same values, without a copy of the whole tensor (775 MB at the full scale)
    total = np.empty(len(setting.hcp_ids), dtype=setting.oracle.dtype)
    for lo in range(0, len(total), REDUCE_BLOCK):
        block = slice(lo, lo + REDUCE_BLOCK)
        total[block] = np.where(setting.exclude[block, :, None], 0.0, setting.oracle[block]).sum(axis=(1, 2))
    random = np.where(has_candidate, total / np.maximum(n, 1), np.nan)
    first = setting.test_rows.drop_duplicates("row")
    bau = np.full(len(setting.hcp_ids), np.nan)
    bau[first["row"].to_numpy()] = setting.oracle[
        first["row"].to_numpy(), first["col"].to_numpy(), pd.Index(CHANNELS).get_indexer(first["channel"].astype(str))
    ]
    return {"oracle": oracle, "random": random, "business_as_usual": bau}


def channel_terms(output: ModelOutput, setting: EvaluationSetting) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-HCP (numerator, denominator) of channel accuracy, log-loss and Brier score (sums and
    counts over the HCP's engaged / all test rows)."""
    n = len(setting.hcp_ids)
    terms = {}
    engaged = setting.engaged_rows
    if output.engaged_channel is not None:
        correct = metrics.channel_matches(
            output.engaged_channel, pd.Index(CHANNELS).get_indexer(engaged["channel"].astype(str))
        )
        rows = engaged["row"].to_numpy()
        terms["channel_accuracy"] = (np.bincount(rows, correct, n), np.bincount(rows, minlength=n).astype(float))
    if output.exposure_prob is not None:
        rows, y, p = (
            setting.test_rows["row"].to_numpy(),
            setting.test_rows["engaged"].to_numpy(bool),
            output.exposure_prob,
        )
        count = np.bincount(rows, minlength=n).astype(float)
        terms["log_loss"] = (np.bincount(rows, metrics.log_loss_terms(y, p), n), count)
        terms["brier"] = (np.bincount(rows, metrics.brier_terms(y, p), n), count)
    return terms


def _interval(value, low, high, n) -> dict[str, Any]:
    def clean(x):
        return None if x is None or not np.isfinite(x) else float(x)

    return {"value": clean(value), "ci_low": clean(low), "ci_high": clean(high), "n": int(n)}


@dataclass
class Evaluation:
    """Everything :func:`evaluate` computed: the metrics.json content, per-HCP terms and each
    model's plan."""

    report: dict
    per_hcp: dict[str, dict[str, np.ndarray]]
    outputs: dict[str, ModelOutput]
    setting: EvaluationSetting
    plans: dict = field(default_factory=dict)


def comparison_pairs(outputs: dict[str, ModelOutput], best: str) -> list[tuple[str, str]]:
    """(model, baseline) pairs compared with paired intervals: the hybrid against the v0.1
    classifier, the tabular challenger and the best baseline; the tabular challenger against
    the v0.1 classifier and the best baseline; each ablation against the hybrid."""
    families = {name: output.family for name, output in outputs.items()}
    hybrid = [n for n, f in families.items() if f == "hybrid"]
    tabular = [n for n, f in families.items() if f == "tabular"]
    v01 = [n for n, f in families.items() if f == "v0.1"]
    pairs = [(h, b) for h in hybrid for b in (*v01, *tabular, best)]
    pairs += [(t, b) for t in tabular for b in (*v01, best)]
    pairs += [(a, h) for a, f in families.items() if f == "ablation" for h in hybrid]
    return pairs


#: the metrics every pair of :func:`comparison_pairs` is compared on (observed NDCG@10 last: a diagnostic)
COMPARISON_METRICS = ("policy_fraction_of_oracle", "plan_fraction_of_oracle", "graded_ndcg@10", "log_loss", "ndcg@10")
#: metrics where the lower value is the better one (a comparison's ``share_better`` counts the
#: resamples where the first model's value is lower)
LOWER_IS_BETTER = frozenset({"log_loss", "ece"})


def selection(report_models: dict, validation_losses: dict[str, float | None]) -> dict[str, Any]:
    """The engagement model the validation window ranks best: the lowest validation log-loss
    among the hybrid, the tabular challenger and the v0.1 classifier (ablations are diagnostics,
    not candidates)."""
    candidates = {
        m: v
        for m, v in validation_losses.items()
        if v is not None and report_models.get(m, {}).get("family") in ("hybrid", "tabular", "v0.1")
    }
    return {
        "criterion": "log-loss of the engagement probability on the logged exposures of the validation window "
        "(each model fitted before the window)",
        "validation_log_loss": {m: float(v) for m, v in sorted(candidates.items(), key=lambda kv: kv[1])},
        "chosen": min(candidates, key=candidates.get) if candidates else None,
    }


#: the kinds of statistic :func:`evaluate` bootstraps: a model's (``metrics``) or a reference policy's (``policy``)
MODEL, POLICY = "model", "policy"


def evaluate(
    setting: EvaluationSetting,
    outputs: dict[str, ModelOutput],
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    v01: dict | None = None,
    run_info: dict | None = None,
    validation_losses: dict[str, float | None] | None = None,
    plans: bool = True,
    progress: Callable | None = None,
    planner: PlanSolver | None = None,
    plan_processes: int = PLAN_PROCESSES,
) -> Evaluation:
    """Every metric of every model with bootstrap intervals, the reference policies, each
    model's plan (``plans``), paired comparisons (:func:`comparison_pairs`), breakdowns,
    calibration and the selection: the ``metrics.json`` document described in the module
    docstring (``verdict`` included). ``validation_losses``: each engagement model's validation
    log-loss (notebook 05's registry and the v0.1 classifier's). The plans are solved by
    ``planner`` (a :class:`PlanSolver` that may already hold some of them) or by one made here
    with ``plan_processes`` workers; they are all submitted first and collected after the other
    metrics, which are computed while the solves run."""
    weights = metrics.resample_weights(len(setting.hcp_ids), n_bootstrap, seed)
    references = reference_policies(setting)
    oracle_value = references["oracle"]
    # (kind, name, metric, numerator, denominator) of every bootstrapped statistic: each model's
    # (kind MODEL, reported under "metrics") in the order computed, its plan's last, then the
    # reference policies' (kind POLICY, reported under "policy")
    statistics: dict[str, Any] = {MODEL: {}, POLICY: []}
    per_hcp: dict[str, dict[str, np.ndarray]] = {}
    n = len(setting.hcp_ids)

    def add(kind: str, name: str, metric: str, num: np.ndarray, den: np.ndarray) -> None:
        rows = statistics[MODEL].setdefault(name, []) if kind == MODEL else statistics[POLICY]
        rows.append((kind, name, metric, num, den))

    def add_policy(kind: str, name: str, value: np.ndarray) -> None:
        defined = np.isfinite(value) & np.isfinite(oracle_value)
        add(kind, name, "policy_value", *metrics.mean_terms(np.where(defined, value, np.nan)))
        add(
            kind, name, "policy_fraction_of_oracle", np.where(defined, value, 0.0), np.where(defined, oracle_value, 0.0)
        )

    plan_outcomes: dict[str, PlanOutcome] = {}
    oracle_plan = None

    def add_plan(kind: str, name: str, value: np.ndarray) -> None:
        if kind == MODEL:
            per_hcp[name]["plan_value"] = value
        add(kind, name, "plan_value", value, np.full(n, 1.0 / n))  # the week's total expected engagements
        add(kind, name, "plan_fraction_of_oracle", value, oracle_plan.value)

    solver = planner if planner is not None or not plans else PlanSolver(setting, plan_processes)
    try:
        if plans:
            submit_plans(solver, setting, outputs)  # the solves run while the other metrics are computed
        names = list(outputs)
        for name in each(progress, names, "models"):
            output = outputs[name]
            statistics[MODEL].setdefault(name, [])  # the report's order of models: the loop's
            per_hcp.setdefault(name, {})
            if output.top is not None:
                per_hcp[name].update(ranking_terms(output, setting))
                for metric, values in list(per_hcp[name].items()):
                    add(MODEL, name, metric, *metrics.mean_terms(values))
                per_hcp[name]["policy_value"] = policy_terms(setting, output.top[:, 0], output.top_channel[:, 0])
                add_policy(MODEL, name, per_hcp[name]["policy_value"])
            for metric, (num, den) in channel_terms(output, setting).items():
                add(MODEL, name, metric, num, den)
        if plans:
            oracle_plan = plan_outcomes["oracle"] = solver.outcome("oracle")
            # each model's plan closes its statistics, as if it had been solved in the loop above
            for name in each(progress, names, "plans"):
                if outputs[name].family == "oracle":
                    add_plan(MODEL, name, oracle_plan.value)
                elif outputs[name].family != "channel_baseline" and name in solver:
                    plan_outcomes[name] = solver.outcome(name)
                    add_plan(MODEL, name, plan_outcomes[name].value)
    finally:
        if solver is not None and solver is not planner:
            solver.close()
    for name, value in references.items():
        add_policy(POLICY, name, value)
    if plans:
        add_plan(POLICY, "business_as_usual", business_as_usual_plan(setting))
        add_plan(POLICY, "oracle", oracle_plan.value)
    rows = [row for model_rows in statistics[MODEL].values() for row in model_rows] + statistics[POLICY]
    keys = [(kind, name, metric) for kind, name, metric, _, _ in rows]
    numerators, denominators = [row[3] for row in rows], [row[4] for row in rows]
    point, low, high, resampled = metrics.bootstrap_ratio(np.stack(numerators), np.stack(denominators), weights, level)
    counts = (np.stack(denominators) > 0).sum(axis=1)

    report_metrics: dict[str, dict[str, Any]] = {}
    policy: dict[str, dict[str, Any]] = {}
    sections = {MODEL: report_metrics, POLICY: policy}
    for i, (kind, name, metric) in enumerate(keys):
        sections[kind].setdefault(name, {})[metric] = _interval(point[i], low[i], high[i], counts[i])
    engaged = setting.engaged_rows
    calibration = {}
    y = setting.test_rows["engaged"].to_numpy(bool)
    for name, output in outputs.items():
        entry = report_metrics.setdefault(name, {})
        if output.top is not None:
            for k in EVAL_K:
                entry[f"coverage@{k}"] = _interval(
                    metrics.catalogue_coverage_at_k(output.top, len(setting.content_ids), k),
                    None,
                    None,
                    len(setting.hcp_ids),
                )
        if output.engaged_channel is not None:
            predicted = np.asarray(CHANNELS, dtype=object)[output.engaged_channel]
            actual = engaged["channel"].astype(str).to_numpy(dtype=object)
            entry["channel_macro_f1"] = _interval(
                metrics.channel_macro_f1(predicted, actual, sorted(set(actual))), None, None, len(actual)
            )
        if output.exposure_prob is not None:
            entry["auc"] = _interval(metrics.exposure_auc(y, output.exposure_prob), None, None, len(y))
            entry["ece"] = _interval(metrics.expected_calibration_error(y, output.exposure_prob), None, None, len(y))
            calibration[name] = metrics.reliability_curve(y, output.exposure_prob).to_dict(orient="records")
        for metric in (*CHANNEL_METRICS, *POLICY_METRICS):
            entry.setdefault(metric, _interval(None, None, None, 0))

    best = best_baseline(setting, outputs)
    index = {key: i for i, key in enumerate(keys)}
    comparisons = []
    for model, baseline in comparison_pairs(outputs, best):
        for metric in COMPARISON_METRICS:
            a, b = index.get((MODEL, model, metric)), index.get((MODEL, baseline, metric))
            if a is None or b is None:
                continue
            difference = resampled[:, a] - resampled[:, b]
            low, high = metrics.percentile_interval(difference, level)
            comparisons.append(
                {
                    "model": model,
                    "baseline": baseline,
                    "metric": metric,
                    "difference": float(point[a] - point[b]),
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "share_better": float(np.nanmean(difference < 0 if metric in LOWER_IS_BETTER else difference > 0)),
                }
            )
    models = {n: {"family": o.family, "source": o.source, "channel_from": o.channel_from} for n, o in outputs.items()}
    report = {
        "schema_version": SCHEMA_VERSION,
        "run": {**(run_info or {}), "n_bootstrap": int(n_bootstrap), "confidence_level": level, "eval_k": list(EVAL_K)},
        "split": setting.split.to_dict(),
        "population": {
            "n_hcps": int(len(setting.hcp_ids)),
            "n_hcps_with_test_engagement": int((np.asarray(setting.relevant.sum(axis=1)).ravel() > 0).sum()),
            "n_test_exposures": int(len(setting.test_rows)),
            "n_test_engagements": int(len(engaged)),
            "n_content": int(len(setting.content_ids)),
            "n_new_items": int(setting.new_items.sum()),
        },
        "models": models,
        "models_found": sorted(outputs),
        "hybrid_found": any(o.family == "hybrid" for o in outputs.values()),
        "metrics": report_metrics,
        "policy": policy,
        "comparisons": comparisons,
        "selection": selection(models, validation_losses or {}),
        "plan": plan_summary(setting, plan_outcomes),
        "breakdowns": breakdowns(setting, outputs, per_hcp),
        "calibration": calibration,
        "v01": v01 or {},
        "best_baseline": best,
    }
    report["verdict"] = verdict(report)
    return Evaluation(report, per_hcp, outputs, setting, plan_outcomes)


def plan_summary(setting: EvaluationSetting, outcomes: dict[str, PlanOutcome]) -> dict[str, Any]:
    """The plan section of metrics.json: the week, its rules and each model's solver status."""
    from dataclasses import asdict

    context = setting.plan_context
    return {
        "plan_start": str(context.plan_start.date()),
        "period_days": setting.plan_settings.period_days,
        "settings": {k: v for k, v in asdict(setting.plan_settings).items()},
        "solver": {
            name: {
                "status": o.assignment.status,
                "gap": o.assignment.gap,
                "seconds": float(o.assignment.seconds),
                "actions": int(len(o.actions)),
                "candidates": int(len(o.candidates.table)),
            }
            for name, o in outcomes.items()
        },
    }


def activity_level(train_engagements: np.ndarray) -> np.ndarray:
    """Each HCP's activity band from its engagements before the cut-off (:data:`ACTIVITY_BINS`)."""
    labels = np.empty(len(train_engagements), dtype=object)
    for low, high, label in ACTIVITY_BINS:
        labels[(train_engagements >= low) & (train_engagements <= high)] = label
    return labels


def new_item_graded_ndcg(setting: EvaluationSetting, list_top: np.ndarray, k: int = 10) -> np.ndarray:
    """Per HCP: graded NDCG@k of the model's ranking of the items released in the test window
    alone — the new items of ``list_top``, in its order (a model's ranking of the new items
    alone when it wrote one, else its saved list) — against the oracle's best k new items
    (gains: true best-channel probabilities). New items outside the list count as not ranked.
    NaN for an HCP with no new candidate item."""
    new = setting.new_items[np.maximum(list_top, 0)] & (list_top >= 0)
    order = np.argsort(~new, axis=1, kind="stable")[:, :k]  # the new items first, in list order
    ranked = np.where(np.take_along_axis(new, order, axis=1), np.take_along_axis(list_top, order, axis=1), -1)
    if ranked.shape[1] < k:
        ranked = np.pad(ranked, ((0, 0), (0, k - ranked.shape[1])), constant_values=-1)
    eligible = ~setting.exclude & setting.new_items[None, :]
    ideal = setting.new_item_ideal_gains if k <= setting.new_item_ideal_gains.shape[1] else None
    return metrics.graded_ndcg_at_k(ranked, setting.gains, k, eligible, ideal=ideal)


def breakdowns(
    setting: EvaluationSetting, outputs: dict[str, ModelOutput], per_hcp: dict[str, dict[str, np.ndarray]]
) -> list[dict[str, Any]]:
    """Point estimates by specialty and activity band (NDCG@10, HR@10, graded NDCG@10, policy
    value), for items new in the test window (recall@10 of new-item engagements, share of
    new items in the top 10, :func:`new_item_graded_ndcg`) and by channel of the engaged test
    row (channel accuracy)."""
    records = []
    groups = {"specialty": setting.specialty, "activity": activity_level(setting.train_engagements)}
    for dimension, labels in groups.items():
        for group in sorted(set(labels)):
            mask = labels == group
            for name, terms in per_hcp.items():
                for metric in ("ndcg@10", "hit_rate@10", "graded_ndcg@10", "policy_value"):
                    if metric in terms:
                        values = terms[metric][mask]
                        defined = np.isfinite(values)
                        records.append(
                            {
                                "dimension": dimension,
                                "group": str(group),
                                "model": name,
                                "metric": metric,
                                "value": float(values[defined].mean()) if defined.any() else None,
                                "n": int(defined.sum()),
                            }
                        )
    new_relevant = setting.relevant.multiply(sp.csr_matrix(setting.new_items[None, :].astype(bool))).tocsr()
    for name, output in outputs.items():
        if output.top is None:
            continue
        recall = metrics.recall_at_k(output.top, new_relevant, 10)
        defined = np.isfinite(recall)
        records.append(
            {
                "dimension": "cold_start",
                "group": "new_items",
                "model": name,
                "metric": "recall@10",
                "value": float(recall[defined].mean()) if defined.any() else None,
                "n": int(defined.sum()),
            }
        )
        top = output.top[:, :10]
        share = float(setting.new_items[top[top >= 0]].mean()) if (top >= 0).any() else None
        records.append(
            {
                "dimension": "cold_start",
                "group": "new_items",
                "model": name,
                "metric": "list_share@10",
                "value": share,
                "n": int(len(top)),
            }
        )
        graded = new_item_graded_ndcg(
            setting, next(t for t in (output.new_top, output.list_top, output.top) if t is not None)
        )
        defined = np.isfinite(graded)
        records.append(
            {
                "dimension": "cold_start",
                "group": "new_items",
                "model": name,
                "metric": "graded_ndcg@10",
                "value": float(graded[defined].mean()) if defined.any() else None,
                "n": int(defined.sum()),
            }
        )
    engaged = setting.engaged_rows
    actual = pd.Index(CHANNELS).get_indexer(engaged["channel"].astype(str))
    for name, output in outputs.items():
        if output.engaged_channel is None:
            continue
        for j, channel in enumerate(CHANNELS):
            mask = actual == j
            records.append(
                {
                    "dimension": "channel",
                    "group": channel,
                    "model": name,
                    "metric": "channel_accuracy",
                    "value": float((output.engaged_channel[mask] == j).mean()) if mask.any() else None,
                    "n": int(mask.sum()),
                }
            )
    return records


# --- the table, the verdict, the schema ----------------------------------------------------------


def headline_table(report: dict, k: int = 10) -> pd.DataFrame:
    """One row per model (best policy value first; channel-only models last) and per reference
    policy: the headline metrics (policy value and plan value as fractions of the oracle's,
    graded NDCG@k), the probability metrics (AUC, log-loss, ECE), coverage@k and the replay
    diagnostic NDCG@k on observed engagements, each with its interval as ``<metric> low`` /
    ``<metric> high`` columns where it has one."""
    wanted = (
        "policy_fraction_of_oracle",
        "plan_fraction_of_oracle",
        f"graded_ndcg@{k}",
        "auc",
        "log_loss",
        "ece",
        f"coverage@{k}",
        f"ndcg@{k}",
    )
    rows = []
    for model, entries in report["metrics"].items():
        row = {"model": model, "family": report["models"].get(model, {}).get("family")}
        for metric in wanted:
            entry = entries.get(metric, {})
            row[metric], row[f"{metric} low"], row[f"{metric} high"] = (
                entry.get("value"),
                entry.get("ci_low"),
                entry.get("ci_high"),
            )
        rows.append(row)
    for policy, entries in report["policy"].items():
        if policy == "oracle":
            continue
        row = {"model": REFERENCE_POLICIES.get(policy, policy), "family": "reference"}
        for metric in ("policy_fraction_of_oracle", "plan_fraction_of_oracle"):
            entry = entries.get(metric, {})
            row[metric], row[f"{metric} low"], row[f"{metric} high"] = (
                entry.get("value"),
                entry.get("ci_low"),
                entry.get("ci_high"),
            )
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    table = table.astype({c: float for c in table.columns if c != "family"})
    return table.sort_values("policy_fraction_of_oracle", ascending=False, na_position="last", kind="stable")


def plan_table(report: dict) -> pd.DataFrame:
    """The week's plan of every model with a plan value, business as usual and the oracle plan:
    expected engagements (the truth's, summed over the plan's actions), the share of the oracle
    plan's and its 95% interval (``low``, ``high``); best first."""
    rows = {}
    for model, entries in report["metrics"].items():
        entry = entries.get("plan_fraction_of_oracle") or {}
        if entry.get("value") is not None and report["models"][model]["family"] != "oracle":
            rows[model] = (entries["plan_value"]["value"], entry["value"], entry["ci_low"], entry["ci_high"])
    for policy, label in (("business_as_usual", "business as usual"), ("oracle", "oracle plan")):
        entries = report["policy"].get(policy, {})
        if (entries.get("plan_fraction_of_oracle") or {}).get("value") is not None:
            entry = entries["plan_fraction_of_oracle"]
            rows[label] = (entries["plan_value"]["value"], entry["value"], entry["ci_low"], entry["ci_high"])
    table = pd.DataFrame.from_dict(
        rows, orient="index", columns=["expected engagements", "share of oracle plan", "low", "high"]
    )
    return (
        table.astype(float).sort_values("share of oracle plan", ascending=False, kind="stable").rename_axis("plan from")
    )


def format_value(entry: dict | None) -> str:
    """A metric entry of ``metrics.json`` as "value [low, high]" ("value" alone without an
    interval, "n/a" without a value): how the book writes every metric."""
    if not entry or entry.get("value") is None:
        return "n/a"
    if entry.get("ci_low") is None:
        return f"{entry['value']:.3f}"
    return f"{entry['value']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def format_difference(entry: dict) -> str:
    """A paired comparison of ``metrics.json`` as "+difference [+low, +high]"."""
    return f"{entry['difference']:+.3f} [{entry['ci_low']:+.3f}, {entry['ci_high']:+.3f}]"


def comparison(report: dict, model: str, baseline: str, metric: str) -> dict | None:
    """The paired comparison of ``model`` − ``baseline`` on ``metric`` in a metrics.json, or None."""
    for entry in report["comparisons"]:
        if (entry["model"], entry["baseline"], entry["metric"]) == (model, baseline, metric):
            return entry
    return None


def outcome(entry: dict) -> str:
    """'better than', 'worse than' or 'not distinguishable from', by the paired interval."""
    if entry["ci_low"] > 0:
        return "better than"
    if entry["ci_high"] < 0:
        return "worse than"
    return "not distinguishable from"


#: how the book names the input each ablation removes (hcp_lib.models.hybrid.ABLATIONS)
ABLATION_LABELS = {
    "sequence": "sequence encoder",
    "topics": "LDA topics",
    "cf": "CF similarity",
    "static": "HCP's static profile",
}


def ablation_summary(report: dict) -> list[str]:
    """One plain sentence per ablation of the hybrid: what removing the input does to the
    policy value and the plan value (paired differences, ablation − hybrid), read as 'carries'
    (a value falls, its interval below zero), 'costs' (a value rises, its interval above zero)
    or 'adds nothing measurable' (both intervals straddle zero)."""
    sentences = []
    families = {m: e["family"] for m, e in report["models"].items()}
    for model in [m for m, f in families.items() if f == "ablation"]:
        parts, carries, costs = [], [], []
        for metric, label in (("policy_fraction_of_oracle", "policy value"), ("plan_fraction_of_oracle", "plan value")):
            entry = next((c for c in report["comparisons"] if c["model"] == model and c["metric"] == metric), None)
            if entry is None:
                continue
            parts.append(f"{label} {format_difference(entry)}")
            if entry["ci_high"] < 0:
                carries.append(label)
            elif entry["ci_low"] > 0:
                costs.append(label)
        key = model.removeprefix("hybrid_no_")
        reading = []
        if carries:
            reading.append("it carries " + " and ".join(carries))
        if costs:
            reading.append("it costs " + " and ".join(costs))
        sentences.append(
            f"Without the {ABLATION_LABELS.get(key, key.replace('_', ' '))}: {', '.join(parts)} — "
            + ("; ".join(reading) if reading else "it adds nothing measurable here")
            + "."
        )
    return sentences


def verdict(report: dict) -> str:
    """A few sentences generated from the numbers: which model the validation window chooses
    and why, its policy and plan value against business as usual and the oracle, how the
    hybrid compares with the tabular challenger, the v0.1 classifier and the best baseline."""
    metric_of = report["metrics"]
    families = {m: e["family"] for m, e in report["models"].items()}
    sentences = []
    chosen = report.get("selection", {}).get("chosen")
    if chosen:
        losses = report["selection"]["validation_log_loss"]
        others = ", ".join(f"{m} {v:.4f}" for m, v in losses.items() if m != chosen)
        sentences.append(
            f"The validation window ranks {chosen} best by the log-loss of its engagement probabilities on "
            f"the logged validation exposures ({losses[chosen]:.4f}"
            + (f"; {others}" if others else "")
            + "), so the week's plan is built from it."
        )
    learned = [m for m, f in families.items() if f not in ("oracle", "channel_baseline", "ablation")]
    ranked = sorted(
        (m for m in learned if (metric_of[m].get("policy_fraction_of_oracle") or {}).get("value") is not None),
        key=lambda m: -metric_of[m]["policy_fraction_of_oracle"]["value"],
    )
    if ranked:
        top = ranked[0]
        bau = report["policy"].get("business_as_usual", {})
        sentences.append(
            f"On the test window, {top}'s first (content, channel) per HCP reaches "
            f"{format_value(metric_of[top]['policy_fraction_of_oracle'])} of the oracle's expected engagement "
            f"(business as usual {format_value(bau.get('policy_fraction_of_oracle'))})."
        )
    for model in [m for m, f in families.items() if f == "hybrid"] + (
        [chosen] if chosen and families.get(chosen) != "hybrid" else []
    ):
        plan_entry = metric_of.get(model, {}).get("plan_fraction_of_oracle")
        if plan_entry and plan_entry.get("value") is not None:
            bau = report["policy"].get("business_as_usual", {}).get("plan_fraction_of_oracle")
            sentences.append(
                f"The week's plan made from {model}'s probabilities is worth {format_value(plan_entry)} of the plan "
                f"made under the same rules from the true probabilities"
                + (f"; business as usual reaches {format_value(bau)}." if bau and bau.get("value") is not None else ".")
            )
    for entry in report["comparisons"]:
        if (
            entry["metric"] in ("policy_fraction_of_oracle", "plan_fraction_of_oracle")
            and families.get(entry["model"]) == "hybrid"
            and families.get(entry["baseline"]) != "ablation"
        ):
            sentences.append(
                f"{entry['model']} is {outcome(entry)} {entry['baseline']} on "
                f"{entry['metric'].replace('_', ' ')}: {format_difference(entry)}."
            )
    if not report["hybrid_found"]:
        sentences.append(
            "No hybrid model was found in this run (no hybrid/test_top_n/), so only the baselines, "
            "the v0.1 classifier and the references are compared."
        )
    return " ".join(sentences)


FLAT_SCHEMA = pa.DataFrameSchema(
    {
        "model": pa.Column(str, pa.Check.str_length(min_value=1)),
        "metric": pa.Column(str, pa.Check.isin([*RANKING_METRICS, "coverage", *CHANNEL_METRICS, *POLICY_METRICS])),
        "k": pa.Column("Int64", pa.Check.isin(list(EVAL_K)), nullable=True),
        "value": pa.Column(float, nullable=True),
        "ci_low": pa.Column(float, nullable=True),
        "ci_high": pa.Column(float, nullable=True),
        "n": pa.Column("int64", pa.Check.ge(0)),
    },
    checks=[
        pa.Check(
            lambda df: ~(df["ci_low"] > df["value"] + 1e-9) & ~(df["ci_high"] < df["value"] - 1e-9),
            name="interval_contains_value",
            element_wise=False,
        ),
        pa.Check(
            lambda df: (
                ~df["metric"].isin(list(UNIT_METRICS))
                | df["value"].isna()
                | ((df["value"] >= -1e-9) & (df["value"] <= 1 + 1e-9))
            ),
            name="unit_metric_in_0_1",
        ),
        pa.Check(lambda df: df["value"].isna() | (df["value"] >= -1e-9), name="value_non_negative"),
    ],
    name="evaluation_metrics",
    strict=True,
    unique=["model", "metric", "k"],
)

#: the top-level keys of metrics.json and the JSON type of each (the layout of the module docstring)
TOP_LEVEL_TYPES = {
    "schema_version": int,
    "run": dict,
    "split": dict,
    "population": dict,
    "models": dict,
    "models_found": list,
    "hybrid_found": bool,
    "metrics": dict,
    "policy": dict,
    "comparisons": list,
    "selection": dict,
    "plan": dict,
    "breakdowns": list,
    "calibration": dict,
    "v01": dict,
    "best_baseline": str,
    "verdict": str,
}
TOP_LEVEL_KEYS = tuple(TOP_LEVEL_TYPES)
#: the fields of every metric entry ({value, ci_low, ci_high, n}) of ``metrics`` and ``policy``
ENTRY_FIELDS = ("value", "ci_low", "ci_high", "n")


def flatten_metrics(report: dict) -> pd.DataFrame:
    """``metrics`` and ``policy`` of a metrics.json as one row per (model, metric, k): model,
    metric, k (null for metrics without @k), value, ci_low, ci_high, n (policies appear as
    model ``policy:<name>``)."""
    rows = []
    for prefix, section in (("", report["metrics"]), ("policy:", report["policy"])):
        for model, entries in section.items():
            for key, entry in entries.items():
                metric, _, k = key.partition("@")
                rows.append(
                    {
                        "model": prefix + model,
                        "metric": metric,
                        "k": int(k) if k else None,
                        **{f: entry.get(f) for f in ("value", "ci_low", "ci_high")},
                        "n": entry.get("n"),
                    }
                )
    table = pd.DataFrame(rows, columns=["model", "metric", "k", "value", "ci_low", "ci_high", "n"])
    table["k"] = table["k"].astype("Int64")
    for column in ("value", "ci_low", "ci_high"):
        table[column] = pd.to_numeric(table[column], errors="raise").astype(float)
    table["n"] = table["n"].astype("int64")
    return table


def _check_metrics_structure(report: dict, source: str) -> None:
    """The types of metrics.json, checked before anything is read from it: each top-level key
    (:data:`TOP_LEVEL_TYPES`), each model's description, each metric entry of ``metrics`` and
    ``policy`` ({value, ci_low, ci_high: number or null, n: integer} under a key ``<name>`` or
    ``<name>@<k>``), the rows of ``comparisons`` and ``breakdowns``; every number must be finite
    (:func:`hcp_lib.io.check_finite`). Raises :class:`hcp_lib.io.DataValidationError` naming
    ``source``, the key and what was expected."""
    layouts = {
        "models": "an object of model -> {family, source, channel_from}",
        "metrics": "an object of model -> {metric: {value, ci_low, ci_high, n}}",
        "policy": "an object of policy -> {metric: {value, ci_low, ci_high, n}}",
    }
    for key, kind in TOP_LEVEL_TYPES.items():
        io.require_json_kind(report[key], kind, key, source, layouts.get(key))
    for model, description in report["models"].items():
        io.require_json_kind(
            description, dict, io.json_path("models", model), source, "an object {family, source, channel_from}"
        )
        if "family" not in description:
            raise io.DataValidationError(f"{source}: {io.json_path('models', model)} lacks 'family'")
        io.require_json_kind(description["family"], str, io.json_path("models", model, "family"), source)
    for i, model in enumerate(report["models_found"]):
        io.require_json_kind(model, str, f"models_found[{i}]", source)
    numbers, paths = [], []
    for section in ("metrics", "policy"):
        for model, entries in report[section].items():
            io.require_json_kind(entries, dict, io.json_path(section, model), source, "an object of metric -> entry")
            for key, entry in entries.items():
                path = io.json_path(section, model, key)
                _, at, k = key.partition("@")
                if at and not k.isdigit():
                    raise io.DataValidationError(
                        f"{source}: {io.json_path(section, model)} has metric key {key!r}; "
                        "expected '<metric>' or '<metric>@<k>' with a whole number k"
                    )
                io.require_json_kind(entry, dict, path, source, "an object {value, ci_low, ci_high, n}")
                absent = [f for f in ENTRY_FIELDS if f not in entry]
                if absent:
                    raise io.DataValidationError(
                        f"{source}: {path} lacks {absent[0]!r}; an entry is {{value, ci_low, ci_high, n}}"
                    )
                for field_name in ("value", "ci_low", "ci_high"):
                    value = entry[field_name]
                    if value is not None:
                        io.require_json_kind(
                            value,
                            float,
                            io.json_path(section, model, key, field_name),
                            source,
                            "a number (or null where undefined)",
                        )
                        numbers.append(value)
                        paths.append(io.json_path(section, model, key, field_name))
                io.require_json_kind(
                    entry["n"], int, io.json_path(section, model, key, "n"), source, "an integer count"
                )
    io.check_finite(
        np.asarray(numbers, dtype=np.float64),
        source,
        "metric value",
        verb="holds",
        labels=paths,
        consequence="a metric is a finite number, or null where undefined",
        error=io.DataValidationError,
    )
    for key in ("comparisons", "breakdowns"):
        for i, row in enumerate(report[key]):
            io.require_json_kind(row, dict, f"{key}[{i}]", source)
    for model, curve in report["calibration"].items():
        io.require_json_kind(curve, list, io.json_path("calibration", model), source, "a list of bins")


def validate_metrics(report: dict, source: str = "metrics.json") -> pd.DataFrame:
    """Check a metrics.json document against the documented layout; return its flat table.

    Raises :class:`hcp_lib.io.DataValidationError` naming ``source`` and the missing key, the
    value of the wrong type and what was expected (:func:`_check_metrics_structure`, before
    anything is flattened), the model lacking a metric, or the failing value; anything that
    still fails while flattening is reported the same way.
    """
    if not isinstance(report, dict):
        raise io.DataValidationError(
            f"{source}: the document is {io.describe_json(report)}; expected an object with keys "
            + ", ".join(TOP_LEVEL_KEYS)
        )
    missing = [key for key in TOP_LEVEL_KEYS if key not in report]
    if missing:
        raise io.DataValidationError(f"{source}: missing key {missing[0]!r}")
    _check_metrics_structure(report, source)
    if report["schema_version"] != SCHEMA_VERSION:
        raise io.DataValidationError(
            f"{source}: schema_version {report['schema_version']!r}, expected {SCHEMA_VERSION}"
        )
    expected = (
        [f"{m}@{k}" for m in RANKING_METRICS for k in EVAL_K]
        + [f"coverage@{k}" for k in EVAL_K]
        + list(CHANNEL_METRICS)
        + list(POLICY_METRICS)
    )
    for model, entries in report["metrics"].items():
        if model not in report["models"]:
            raise io.DataValidationError(f"{source}: metrics of model {model!r}, which 'models' does not describe")
        needed = expected if report["models"][model]["family"] != "channel_baseline" else list(CHANNEL_METRICS)
        absent = [m for m in needed if m not in entries]
        if absent:
            raise io.DataValidationError(f"{source}: model {model!r} lacks metric {absent[0]!r}")
    for policy in ("oracle", "random", "business_as_usual"):
        if policy not in report["policy"]:
            raise io.DataValidationError(f"{source}: policy {policy!r} missing from 'policy'")
    try:
        table = flatten_metrics(report)
    except (ValueError, TypeError, KeyError, AttributeError) as err:  # not expected after the checks above
        raise io.DataValidationError(
            f"{source}: 'metrics' and 'policy' cannot be flattened into the metrics table ({type(err).__name__}: {err})"
        ) from err
    return io.validate(table, FLAT_SCHEMA, source)


# --- recommendations for the explorers -----------------------------------------------------------

RECOMMENDATION_SCHEMA = pa.DataFrameSchema(
    {
        "model": pa.Column(str),
        "hcp_id": pa.Column(str, pa.Check.str_matches(HCP_ID_PATTERN)),
        "specialty": pa.Column(str),
        "rank": pa.Column("int32", pa.Check.ge(1)),
        "content_id": pa.Column(str),
        "title": pa.Column(str),
        "therapeutic_area": pa.Column(str),
        "channel": pa.Column(str, pa.Check.isin(list(CHANNELS))),
        "score": pa.Column(float),
        "true_engagement_prob": pa.Column(float, pa.Check.in_range(0, 1)),
    },
    name="recommendations",
    strict=True,
    ordered=True,
    unique=["model", "hcp_id", "rank"],
)


def recommendations_table(evaluation: Evaluation, depth: int = RECOMMENDATION_DEPTH) -> pd.DataFrame:
    """Top-``depth`` (content, channel) per HCP and content model, with the fields an explorer
    shows: title, therapeutic area, specialty and the oracle's true engagement probability of
    the recommended pair at the test cut-off (:data:`RECOMMENDATION_SCHEMA`)."""
    setting = evaluation.setting
    titles = setting.catalogue["title"].astype(str).to_numpy(dtype=object)
    areas = setting.catalogue["therapeutic_area"].astype(str).to_numpy(dtype=object)
    frames = []
    for name, output in evaluation.outputs.items():
        if output.top is None:
            continue
        top, channel = output.top[:, :depth], output.top_channel[:, :depth]
        rows, ranks = np.nonzero(top >= 0)
        cols, chans = top[rows, ranks], channel[rows, ranks]
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "hcp_id": setting.hcp_ids[rows],
                    "specialty": setting.specialty[rows],
                    "rank": (ranks + 1).astype(np.int32),
                    "content_id": setting.content_ids.to_numpy()[cols],
                    "title": titles[cols],
                    "therapeutic_area": areas[cols],
                    "channel": np.asarray(CHANNELS, dtype=object)[chans],
                    "score": output.top_scores[rows, ranks].astype(float),
                    "true_engagement_prob": setting.oracle[rows, cols, chans].astype(float),
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    for column in ("model", "hcp_id", "specialty", "content_id", "title", "therapeutic_area", "channel"):
        table[column] = table[column].astype(str)
    return io.validate(table, RECOMMENDATION_SCHEMA, "recommendations.parquet")


# --- the stage ----------------------------------------------------------------------------------


def run_evaluation(
    run_dir: str | Path,
    seed: int,
    n_bootstrap: int,
    scale: str | None = None,
    expected: Iterable[str] = (),
    plan_settings=None,
    progress: Callable | None = None,
    plan_processes: int = PLAN_PROCESSES,
) -> Evaluation:
    """Load the setting and every model of the run, add the oracle and the v0.1 classifier,
    and evaluate them all (the notebook's one call). ``expected`` names models that must be
    present (an absent one raises :class:`EvaluationError`); ``plan_settings`` are the plan's
    rules (:func:`hcp_lib.stages.plan.settings_from_parameters` of the run's parameters);
    ``plan_processes``: the worker processes of the :class:`PlanSolver` (results do not depend
    on it)."""
    from .engagement import read_registry

    setting = load_setting(run_dir, plan_settings)
    outputs = {ORACLE_NAME: oracle_output(setting), **load_models(run_dir, setting, expected)}
    with PlanSolver(setting, plan_processes) as solver:
        # the plans that need no model scored here start solving while the v0.1 classifier is fitted
        submit_plans(solver, setting, outputs, own_only=True)
        v01 = v01_classifier(run_dir, setting, seed)
        outputs[V01_NAME] = v01.output
        losses = {name: entry.get("validation_log_loss") for name, entry in read_registry(run_dir).items()}
        losses[V01_NAME] = v01.random_split["validation_log_loss"]
        return evaluate(
            setting,
            outputs,
            n_bootstrap=n_bootstrap,
            seed=seed,
            v01=v01.random_split,
            run_info={"scale": scale, "seed": seed},
            validation_losses=losses,
            progress=progress,
            planner=solver,
        )


def write_outputs(evaluation: Evaluation, run_dir: str | Path) -> dict[str, Path]:
    """Validate, then write ``evaluation/metrics.json``, ``evaluation/recommendations.parquet``,
    each model's plan candidates (``evaluation/plan_candidates/<model>.parquet``, what notebook
    08 plans from) and the stage summary ``metrics/evaluation.json`` (headline metrics only)."""
    run = RunDir(Path(run_dir))
    report = json.loads(json.dumps(evaluation.report, allow_nan=False))
    validate_metrics(report, str(run.evaluation / "metrics.json"))
    recommendations = recommendations_table(evaluation)
    headline = {
        model: {m: entries[m]["value"] for m in (*HEADLINE_METRICS, "auc", "ece", "ndcg@10") if m in entries}
        for model, entries in report["metrics"].items()
    }
    from . import plan

    for name, outcome in evaluation.plans.items():
        plan.write_candidates(
            outcome.candidates,
            plan.candidates_path(run_dir, name),
            evaluation.setting.plan_settings,
            evaluation.setting.plan_context.plan_start,
        )
    return {
        "metrics": io.write_json(report, run.evaluation / "metrics.json"),
        "recommendations": io.write_parquet(
            recommendations, run.evaluation / "recommendations.parquet", RECOMMENDATION_SCHEMA
        ),
        "summary": io.write_json(
            {
                "models_found": report["models_found"],
                "hybrid_found": report["hybrid_found"],
                "best_baseline": report["best_baseline"],
                "selection": report["selection"],
                "headline": headline,
                "verdict": report["verdict"],
            },
            run.metrics / "evaluation.json",
        ),
    }
