"""Evaluation of every model against the oracle on one temporal split (notebook 06_evaluation).

Every model of the run is judged the same way, on the test window of the split notebook 04
recorded (``cf/split.json``), for the same HCPs: the HCPs of the master who did not opt out.

Reads: ``world/`` (tables and the truth: :func:`hcp_lib.synth.true_engagement_matrix` at the
test cut-off is the oracle), ``cf/split.json``, ``cf/test_top_n/<model>.parquet`` (content
baselines), ``cf/test_channels/<model>.parquet`` (channel baselines), ``metrics/cf.json``
(validation scores: they pick the best baseline and the channel paired with content-only
models, so no choice looks at the test window), ``topics/doc_topics.parquet`` (diversity), and,
when the folder exists, ``hybrid/test_top_n/<model>.parquet`` (same columns as the baselines'
lists plus an optional ``channel`` column: the model's channel for that item) and
``hybrid/test_exposure_probs/<model>.parquet`` (optional: ``exposure_id``,
``engagement_prob`` for every test exposure). :func:`model_output_tables` writes both for any
:class:`hcp_lib.recommender.Recommender`.

Writes (via the notebook) under ``evaluation/``: ``metrics.json`` and
``recommendations.parquet`` (:data:`RECOMMENDATION_SCHEMA`), and ``metrics/evaluation.json``.

Protocol. An item is a candidate for an HCP unless the HCP engaged with it before the
cut-off, it is not approved for the HCP's specialty, or it is released after the test
window (:func:`hcp_lib.recommender.exclusion_mask`, as in notebook 04). Observed relevance =
candidate items the HCP engaged with in the test window; graded relevance = the oracle's
probability of the item through its best channel at the cut-off. Policy value of a model =
the oracle's probability of its top-1 (content, channel) per HCP; content-only models take
their channel from :func:`policy_channel_model` (the specialty's best engagement-rate channel). Reference
policies: ``oracle`` (the best candidate pair), ``random`` (the expectation over candidate
pairs, computed exactly) and ``business_as_usual`` (the first (content, channel) the logging
policy sent the HCP in the test window). Intervals: 95% percentile bootstrap over HCPs, one
set of resamples shared by every model and metric (paired).

``metrics.json`` (``schema_version`` 1) has these keys:

- ``schema_version`` (int), ``run`` {scale, seed, n_bootstrap, confidence_level, eval_k},
  ``split`` {train_start, valid_start, test_start, test_end}, ``population`` {n_hcps,
  n_hcps_with_test_engagement, n_test_exposures, n_test_engagements, n_content, n_new_items};
- ``models``: {model: {family (oracle | baseline | hybrid | v0.1 | channel_baseline), source,
  channel_from}}; ``models_found`` (list), ``hybrid_found`` (bool);
- ``metrics``: {model: {metric_key: {value, ci_low, ci_high, n}}}, metric keys ``<name>@<k>``
  for :data:`RANKING_METRICS` and ``coverage@<k>`` (no interval) at every k of
  :data:`EVAL_K`, and :data:`CHANNEL_METRICS` / :data:`POLICY_METRICS` without ``@k``; a
  value is ``null`` where undefined (e.g. log-loss of a model without probabilities);
- ``policy``: {policy: {policy_value: {...}, policy_fraction_of_oracle: {...}}} for the
  reference policies;
- ``comparisons``: [{model, baseline, metric, difference, ci_low, ci_high, share_better}]
  (paired bootstrap of model − baseline);
- ``breakdowns``: [{dimension (specialty | activity | cold_start | channel), group, model,
  metric, value, n}];
- ``calibration``: {model: [{bin, lower, upper, mean_predicted, observed_rate, count}]};
- ``v01``: {random_split_auc, random_split_accuracy, temporal_auc, temporal_accuracy,
  n_train_random, n_test_random}; ``best_baseline`` (str); ``verdict`` (str).

:func:`validate_metrics` checks a loaded ``metrics.json`` against this layout and its
flattened table (:func:`flatten_metrics`) against :data:`FLAT_SCHEMA`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pandera.pandas as pa
import scipy.sparse as sp

from . import evaluate_metrics as em
from . import io, metrics
from .config import RunDir
from .domain import CHANNELS
from .recommender import exclusion_mask, top_n

#: the list lengths every ranking metric is computed at (fixed, so metric keys are stable)
EVAL_K = (1, 5, 10, 20)
#: per-HCP ranking metrics (each at every k)
RANKING_METRICS = ("hit_rate", "precision", "recall", "ndcg", "graded_ndcg", "mrr", "map", "novelty", "diversity")
CHANNEL_METRICS = ("channel_accuracy", "channel_macro_f1", "log_loss", "brier", "auc")
POLICY_METRICS = ("policy_value", "policy_fraction_of_oracle")
#: metrics bounded to [0, 1] (the others: novelty >= 0, log-loss >= 0)
UNIT_METRICS = {"hit_rate", "precision", "recall", "ndcg", "graded_ndcg", "mrr", "map", "diversity", "coverage",
                "channel_accuracy", "channel_macro_f1", "brier", "auc", "policy_value"}
#: channel baselines whose scores are engagement probabilities (SpecialtyBestChannel: a shrunk
#: engagement rate per exposure); the others rank channels by counts or shares
PROBABILITY_CHANNEL_MODELS = ("specialty_best_channel",)
#: how many of each model's items go to recommendations.parquet
RECOMMENDATION_DEPTH = 10
ACTIVITY_BINS = ((0, 0, "none"), (1, 2, "1-2"), (3, 9, "3-9"), (10, np.inf, "10+"))
SCHEMA_VERSION = 1


class EvaluationError(ValueError):
    """A model's outputs cannot be evaluated; the message names the model and the problem."""


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

    @property
    def candidate_oracle(self) -> np.ndarray:
        """Oracle probabilities with non-candidates at -inf (n_hcp, n_content, n_channel)."""
        return np.where(self.exclude[:, :, None], -np.inf, self.oracle)

    @property
    def engaged_rows(self) -> pd.DataFrame:
        return self.test_rows[self.test_rows["engaged"]]


def load_setting(run_dir: str | Path) -> EvaluationSetting:
    """Read the run's world, truth, split and topics into an :class:`EvaluationSetting`."""
    from . import cf, synth
    from .split import training_data

    run = RunDir(Path(run_dir))
    split = cf.read_split(run_dir)
    world = synth.load_world(run_dir)
    master = world.hcps
    population = master.loc[~master["opted_out"].to_numpy(bool)]
    hcp_ids = population["hcp_id"].astype(str).to_numpy(dtype=object)
    catalogue = world.content.reset_index(drop=True)
    content_ids = pd.Index(catalogue["content_id"].astype(str).to_numpy(dtype=object))
    interactions = world.interactions
    train = training_data(interactions, master, catalogue, split.test_start)
    exclude = exclusion_mask(hcp_ids, content_ids, train, released_by=split.test_end, catalogue=catalogue)
    in_test = (interactions["exposed_at"] >= split.test_start) & (interactions["exposed_at"] < split.test_end)
    rows = pd.Index(hcp_ids).get_indexer(interactions.loc[in_test, "hcp_id"].astype(str))
    test_rows = interactions.loc[in_test, ["exposure_id", "hcp_id", "content_id", "channel", "exposed_at", "engaged",
                                           "true_engagement_prob"]].copy()
    test_rows["row"], test_rows["col"] = rows, content_ids.get_indexer(test_rows["content_id"].astype(str))
    test_rows = test_rows[test_rows["row"] >= 0].sort_values(["exposed_at", "exposure_id"], kind="stable")
    test_rows = test_rows.reset_index(drop=True)
    relevant = metrics.relevance_matrix(test_rows, hcp_ids, content_ids, exclude)
    engaged = train.engaged
    train_engagements = np.bincount(pd.Index(hcp_ids).get_indexer(engaged["hcp_id"].astype(str)) + 1,
                                    minlength=len(hcp_ids) + 1)[1:]
    item_popularity = engaged.drop_duplicates(["hcp_id", "content_id"])["content_id"].astype(str).value_counts()
    item_popularity = item_popularity.reindex(content_ids, fill_value=0).to_numpy(np.float64)
    topics_path = run.topics / "doc_topics.parquet"
    features = cf.topic_features(io.read_parquet(topics_path)) if topics_path.exists() else cf.area_features(catalogue)
    item_vectors = cf._feature_matrix(features, content_ids)
    new_items = (catalogue["release_date"] >= split.test_start).to_numpy(bool)
    oracle = synth.true_engagement_matrix(world, hcp_ids, split.test_start, content_ids=content_ids)
    cf_metrics_path = run.metrics / "cf.json"
    validation = io.read_json(cf_metrics_path).get("validation", {}) if cf_metrics_path.exists() else {}
    return EvaluationSetting(split, hcp_ids, content_ids, population["specialty"].astype(str).to_numpy(dtype=object),
                             oracle, exclude, relevant, test_rows, train_engagements, item_popularity, item_vectors,
                             new_items, catalogue, validation)


# --- one model's outputs, checked --------------------------------------------------------------


@dataclass
class ModelOutput:
    """What the evaluation needs from one model, aligned with an :class:`EvaluationSetting`.

    ``top`` (n_hcp, max(EVAL_K)) column indices best first (-1 = none); ``top_scores`` their
    scores; ``top_channel`` the channel index of each listed item (None: content-only model);
    ``engaged_channel`` the predicted channel of each engaged test row (None: no channel
    model); ``exposure_prob`` the engagement probability of each test row (None: no
    probabilities); ``hcp_channel`` the channel index per HCP (channel-only models).
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


def _check_finite(name: str, values: np.ndarray, what: str, rows: np.ndarray | None = None) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        where = np.argwhere(bad)[0]
        hcp = f" (first at HCP {rows[where[0]]!r})" if rows is not None else ""
        raise EvaluationError(f"model {name!r}: {what} holds {int(bad.sum())} NaN or infinite values{hcp}")


def from_scores(name: str, hcp_ids: Iterable[str], content_ids: Iterable[str], scores: np.ndarray,
                setting: EvaluationSetting, channel_scores: np.ndarray | None = None,
                channel_scores_are_probabilities: bool = False, family: str = "model",
                source: str = "score matrix") -> ModelOutput:
    """A :class:`ModelOutput` from a full score matrix (n_hcp, n_content) and, optionally,
    channel scores (n_hcp, n_content, n_channel).

    Rows and columns must list exactly the setting's HCPs and items in the setting's order;
    NaN or infinite scores, a wrong shape or another order raise :class:`EvaluationError`
    naming the model.
    """
    hcp_ids = np.asarray(list(hcp_ids), dtype=object).astype(str)
    content_ids = np.asarray(list(content_ids), dtype=object).astype(str)
    for label, given, expected in (("HCP ids", hcp_ids, setting.hcp_ids.astype(str)),
                                   ("content ids", content_ids, setting.content_ids.to_numpy().astype(str))):
        if len(given) != len(expected) or set(given) != set(expected):
            raise EvaluationError(f"model {name!r}: its {label} ({len(given)}) are not the evaluation's "
                                  f"({len(expected)}); score every evaluated id")
        if not (given == expected).all():
            first = int(np.flatnonzero(given != expected)[0])
            raise EvaluationError(f"model {name!r}: its {label} are in another order than the evaluation's "
                                  f"(position {first}: {given[first]!r}, expected {expected[first]!r})")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(hcp_ids), len(content_ids)):
        raise EvaluationError(f"model {name!r}: scores have shape {scores.shape}, expected "
                              f"{(len(hcp_ids), len(content_ids))}")
    _check_finite(name, scores, "the score matrix", hcp_ids)
    top = top_n(scores, max(EVAL_K), setting.exclude)
    top_scores = np.where(top >= 0, np.take_along_axis(scores, np.maximum(top, 0), axis=1), np.nan)
    output = ModelOutput(name, family, source, top, top_scores)
    if channel_scores is not None:
        channel_scores = np.asarray(channel_scores, dtype=np.float64)
        if channel_scores.shape != scores.shape + (len(CHANNELS),):
            raise EvaluationError(f"model {name!r}: channel scores have shape {channel_scores.shape}, expected "
                                  f"{scores.shape + (len(CHANNELS),)}")
        _check_finite(name, channel_scores, "the channel scores", hcp_ids)
        best = channel_scores.argmax(axis=2)
        output.top_channel = np.where(top >= 0, np.take_along_axis(best, np.maximum(top, 0), axis=1), -1)
        engaged = setting.engaged_rows
        output.engaged_channel = best[engaged["row"].to_numpy(), engaged["col"].to_numpy()]
        output.channel_from = name
        if channel_scores_are_probabilities:
            rows = setting.test_rows
            prob = channel_scores[rows["row"].to_numpy(), rows["col"].to_numpy(),
                                  pd.Index(CHANNELS).get_indexer(rows["channel"].astype(str))]
            if ((prob < 0) | (prob > 1)).any():
                raise EvaluationError(f"model {name!r}: channel scores are said to be probabilities but lie outside [0, 1]")
            output.exposure_prob = prob
    return output


LIST_COLUMNS = ("hcp_id", "rank", "content_id", "score")


def from_lists(name: str, lists: pd.DataFrame, setting: EvaluationSetting, family: str, source: str,
               exposure_probs: pd.DataFrame | None = None) -> ModelOutput:
    """A :class:`ModelOutput` from saved top-N lists (hcp_id, rank, content_id, score[,
    channel]) and, optionally, per-exposure probabilities (exposure_id, engagement_prob).

    Raises :class:`EvaluationError` naming the model and the problem: a missing column, a
    list shorter than max(EVAL_K) where more candidates exist, an HCP of the evaluation
    without a list, an unknown id, a non-candidate item, repeated ranks, NaN/inf scores,
    ranks not in descending score order, an unknown channel, or probabilities outside [0, 1].
    """
    missing = [c for c in LIST_COLUMNS if c not in lists.columns]
    if missing:
        raise EvaluationError(f"model {name!r} ({source}): missing column {missing[0]!r}; lists need "
                              f"{', '.join(LIST_COLUMNS)}")
    k = max(EVAL_K)
    lists = lists[lists["rank"] <= k]
    rows = pd.Index(setting.hcp_ids).get_indexer(lists["hcp_id"].astype(str))
    lists, rows = lists[rows >= 0], rows[rows >= 0]  # opted-out HCPs are not evaluated
    cols = setting.content_ids.get_indexer(lists["content_id"].astype(str))
    if (cols < 0).any():
        raise EvaluationError(f"model {name!r} ({source}): content id {lists['content_id'].iloc[np.flatnonzero(cols < 0)[0]]!r} "
                              "is not in the catalogue")
    scores = lists["score"].to_numpy(dtype=np.float64)
    _check_finite(name, scores, f"column 'score' of {source}")
    ranks = lists["rank"].to_numpy(dtype=np.int64)
    if (ranks < 1).any() or pd.DataFrame({"r": rows, "k": ranks}).duplicated().any():
        raise EvaluationError(f"model {name!r} ({source}): ranks must be 1, 2, … once per HCP")
    if setting.exclude[rows, cols].any():
        first = np.flatnonzero(setting.exclude[rows, cols])[0]
        raise EvaluationError(f"model {name!r} ({source}): HCP {setting.hcp_ids[rows[first]]!r} is recommended "
                              f"content {setting.content_ids[cols[first]]!r}, which is not a candidate (seen, "
                              "unapproved or unreleased)")
    top = np.full((len(setting.hcp_ids), k), -1, dtype=np.int64)
    top_scores = np.full(top.shape, np.nan)
    top[rows, ranks - 1], top_scores[rows, ranks - 1] = cols, scores
    listed = (top >= 0).sum(axis=1)
    available = np.minimum((~setting.exclude).sum(axis=1), k)
    short = listed < available
    if short.any():
        first = int(np.flatnonzero(short)[0])
        raise EvaluationError(f"model {name!r} ({source}): HCP {setting.hcp_ids[first]!r} has {listed[first]} listed "
                              f"items but {available[first]} candidates; lists must hold the top {k} "
                              f"({int(short.sum())} HCPs affected)")
    ordered = np.where(top >= 0, top_scores, np.nan)
    if (np.nan_to_num(np.diff(ordered, axis=1), nan=0.0) > 1e-12).any():
        raise EvaluationError(f"model {name!r} ({source}): ranks are not in descending score order")
    output = ModelOutput(name, family, source, top, top_scores)
    if "channel" in lists.columns:
        channel = pd.Index(CHANNELS).get_indexer(lists["channel"].astype(str))
        if (channel < 0).any():
            raise EvaluationError(f"model {name!r} ({source}): column 'channel' has value "
                                  f"{lists['channel'].iloc[np.flatnonzero(channel < 0)[0]]!r}; allowed: {', '.join(CHANNELS)}")
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
    prob = pd.Series(table["engagement_prob"].to_numpy(np.float64), index=table["exposure_id"].to_numpy())
    prob = prob.reindex(setting.test_rows["exposure_id"].to_numpy()).to_numpy()
    if np.isnan(prob).any():
        raise EvaluationError(f"model {name!r}: exposure probabilities miss {int(np.isnan(prob).sum())} test "
                              "exposures (or hold NaN)")
    _check_finite(name, prob, "column 'engagement_prob'")
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
    _check_finite(name, matrix, f"the channel scores of {source}")
    best = matrix.argmax(axis=1)
    output = ModelOutput(name, "channel_baseline", source, None, channel_from=name)
    output.engaged_channel = best[setting.engaged_rows["row"].to_numpy()]
    output.hcp_channel = best
    if name in PROBABILITY_CHANNEL_MODELS:
        rows = setting.test_rows
        output.exposure_prob = matrix[rows["row"].to_numpy(), pd.Index(CHANNELS).get_indexer(rows["channel"].astype(str))]
    return output


def oracle_output(setting: EvaluationSetting) -> ModelOutput:
    """The oracle as a model: items ranked by their best-channel true probability, that channel
    chosen; its exposure probabilities are the simulator's ``true_engagement_prob``."""
    output = from_scores("oracle", setting.hcp_ids, setting.content_ids, setting.oracle.max(axis=2), setting,
                         channel_scores=setting.oracle, family="oracle", source="synth.true_engagement_matrix")
    output.exposure_prob = setting.test_rows["true_engagement_prob"].to_numpy(np.float64)
    return output


# --- the v0.1 approach ------------------------------------------------------------------------


@dataclass
class V01Result:
    """The v0.1 engagement classifier: its random-split scores and its temporal-test output."""

    random_split: dict[str, float]
    output: ModelOutput


def v01_classifier(run_dir: str | Path, setting: EvaluationSetting, seed: int) -> V01Result:
    """Reproduce v0.1: logistic regression on TF-IDF(title + abstract) + one-hot(specialty,
    channel) predicting ``engaged`` per exposure.

    First as v0.1 did: a random 80/20 split of ALL exposure rows (future rows train the model
    that predicts past ones) → AUC and accuracy. Then as every model here: fitted on rows
    before the test cut-off, scored on the test window. Its logit is additive (text + specialty
    + channel), so the full (HCP, content, channel) probability tensor is built by
    broadcasting rather than by scoring every triple.
    """
    from scipy.special import expit
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import OneHotEncoder

    from . import pubmed, synth

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
    onehot = OneHotEncoder(categories=[sorted(set(world.hcps["specialty"].astype(str))), list(CHANNELS)],
                           handle_unknown="ignore")
    categorical = onehot.fit_transform(np.column_stack([specialty.astype(str), rows["channel"].astype(str)]))
    features = sp.hstack([item_text[setting.content_ids.get_indexer(rows["content_id"].astype(str))],
                          categorical]).tocsr()
    target = rows["engaged"].to_numpy(bool)

    def classifier():
        return LogisticRegression(max_iter=2000, C=1.0)

    train_idx, test_idx = train_test_split(np.arange(len(rows)), test_size=0.2, random_state=seed, stratify=target)
    random_model = classifier().fit(features[train_idx], target[train_idx])
    random_prob = random_model.predict_proba(features[test_idx])[:, 1]
    before = (rows["exposed_at"] < setting.split.test_start).to_numpy()
    model = classifier().fit(features[before], target[before])
    n_text, n_specialty = item_text.shape[1], len(onehot.categories_[0])
    coef = model.coef_.ravel()
    text_logit = item_text @ coef[:n_text]
    specialty_logit = pd.Series(coef[n_text:n_text + n_specialty], index=onehot.categories_[0])
    channel_logit = coef[n_text + n_specialty:]
    hcp_logit = specialty_logit.reindex(setting.specialty).to_numpy()
    logit = model.intercept_[0] + hcp_logit[:, None, None] + text_logit[None, :, None] + channel_logit[None, None, :]
    probability = expit(logit)
    output = from_scores("v0.1_classifier", setting.hcp_ids, setting.content_ids, probability.max(axis=2), setting,
                         channel_scores=probability, channel_scores_are_probabilities=True, family="v0.1",
                         source="logistic regression on TF-IDF + specialty + channel")
    test = setting.test_rows
    temporal_prob = output.exposure_prob
    random_split = {
        "random_split_auc": float(roc_auc_score(target[test_idx], random_prob)),
        "random_split_accuracy": float(accuracy_score(target[test_idx], random_prob >= 0.5)),
        "temporal_auc": float(roc_auc_score(test["engaged"], temporal_prob)) if test["engaged"].nunique() == 2 else None,
        "temporal_accuracy": float(accuracy_score(test["engaged"], temporal_prob >= 0.5)),
        "n_train_random": int(len(train_idx)), "n_test_random": int(len(test_idx)),
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
    """The content baseline with the best validation NDCG@10 (``metrics/cf.json``), never chosen
    on test; ``random`` is not a candidate. Falls back to the first baseline by name."""
    baselines = sorted(n for n, o in outputs.items() if o.family == "baseline" and n != "random")
    if not baselines:
        raise EvaluationError("no content baseline in cf/test_top_n/ besides random (did notebook 04 run?)")
    scored = {m: setting.validation.get(m, {}).get("ndcg@10") for m in baselines}
    scored = {m: v for m, v in scored.items() if v is not None}
    return max(scored, key=lambda m: (scored[m], m)) if scored else baselines[0]


def load_models(run_dir: str | Path, setting: EvaluationSetting, expected: Iterable[str] = ()) -> dict[str, ModelOutput]:
    """Every model output of the run: content baselines (``cf/test_top_n``), channel
    baselines (``cf/test_channels``), hybrid models (``hybrid/test_top_n``, when present).

    A model named in ``expected`` but absent raises :class:`EvaluationError` naming it.
    Content-only models are paired with :func:`policy_channel_model` for their channel.
    """
    run = RunDir(Path(run_dir))
    outputs: dict[str, ModelOutput] = {}
    channel_folder = run.cf / "test_channels"
    for path in sorted(channel_folder.glob("*.parquet")):
        outputs[path.stem] = channel_output(path.stem, io.read_parquet(path), setting, str(path.relative_to(run.root)))
    for family, folder in (("baseline", run.cf / "test_top_n"), ("hybrid", run.hybrid / "test_top_n")):
        for path in sorted(folder.glob("*.parquet")):
            probs_path = folder.parent / "test_exposure_probs" / path.name
            probs = io.read_parquet(probs_path) if probs_path.exists() else None
            if path.stem in outputs:
                raise EvaluationError(f"model {path.stem!r}: two outputs ({outputs[path.stem].source} and {path})")
            outputs[path.stem] = from_lists(path.stem, io.read_parquet(path), setting, family,
                                            str(path.relative_to(run.root)), probs)
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
    return outputs


# --- per-HCP metrics and their intervals --------------------------------------------------------


def ranking_terms(output: ModelOutput, setting: EvaluationSetting) -> dict[str, np.ndarray]:
    """Per-HCP values of every :data:`RANKING_METRICS` at every k (NaN = undefined)."""
    gains = setting.oracle.max(axis=2)
    eligible = ~setting.exclude
    terms = {}
    for k in EVAL_K:
        top = output.top
        terms[f"hit_rate@{k}"] = em.hit_at_k(top, setting.relevant, k)
        terms[f"precision@{k}"] = em.precision_at_k(top, setting.relevant, k)
        terms[f"recall@{k}"] = em.recall_at_k(top, setting.relevant, k)
        terms[f"ndcg@{k}"] = em.ndcg_at_k(top, setting.relevant, k)
        terms[f"graded_ndcg@{k}"] = em.graded_ndcg_at_k(top, gains, k, eligible)
        terms[f"mrr@{k}"] = em.reciprocal_rank_at_k(top, setting.relevant, k)
        terms[f"map@{k}"] = em.average_precision_at_k(top, setting.relevant, k)
        terms[f"novelty@{k}"] = em.novelty_at_k(top, setting.item_popularity, len(setting.hcp_ids), k)
        terms[f"diversity@{k}"] = em.intra_list_diversity_at_k(top, setting.item_vectors, k) if k > 1 \
            else np.full(len(top), np.nan)
    return terms


def policy_terms(setting: EvaluationSetting, top1: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Per HCP: the oracle's probability of the (content ``top1``, channel) pair; NaN where
    the policy recommends nothing."""
    ok = (top1 >= 0) & (channel >= 0)
    value = np.full(len(top1), np.nan)
    rows = np.flatnonzero(ok)
    value[rows] = setting.oracle[rows, top1[rows], channel[rows]]
    return value


def reference_policies(setting: EvaluationSetting) -> dict[str, np.ndarray]:
    """Per-HCP policy values of the oracle (best candidate pair), random (expectation over
    candidate pairs) and business-as-usual (first logged test exposure, NaN if none)."""
    candidate = setting.candidate_oracle
    has_candidate = (~setting.exclude).any(axis=1)
    oracle = np.where(has_candidate, candidate.max(axis=(1, 2)), np.nan)
    n = (~setting.exclude).sum(axis=1) * len(CHANNELS)
    random = np.where(has_candidate, np.where(setting.exclude[:, :, None], 0.0, setting.oracle).sum(axis=(1, 2))
                      / np.maximum(n, 1), np.nan)
    first = setting.test_rows.drop_duplicates("row")
    bau = np.full(len(setting.hcp_ids), np.nan)
    bau[first["row"].to_numpy()] = setting.oracle[first["row"].to_numpy(), first["col"].to_numpy(),
                                                  pd.Index(CHANNELS).get_indexer(first["channel"].astype(str))]
    return {"oracle": oracle, "random": random, "business_as_usual": bau}


def channel_terms(output: ModelOutput, setting: EvaluationSetting) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-HCP (numerator, denominator) of channel accuracy, log-loss and Brier score (sums and
    counts over the HCP's engaged / all test rows)."""
    n = len(setting.hcp_ids)
    terms = {}
    engaged = setting.engaged_rows
    if output.engaged_channel is not None:
        correct = output.engaged_channel == pd.Index(CHANNELS).get_indexer(engaged["channel"].astype(str))
        rows = engaged["row"].to_numpy()
        terms["channel_accuracy"] = (np.bincount(rows, correct, n), np.bincount(rows, minlength=n).astype(float))
    if output.exposure_prob is not None:
        rows, y, p = setting.test_rows["row"].to_numpy(), setting.test_rows["engaged"].to_numpy(bool), output.exposure_prob
        count = np.bincount(rows, minlength=n).astype(float)
        terms["log_loss"] = (np.bincount(rows, em.log_loss_terms(y, p), n), count)
        terms["brier"] = (np.bincount(rows, (p - y) ** 2, n), count)
    return terms


def _interval(value, low, high, n) -> dict[str, Any]:
    def clean(x):
        return None if x is None or not np.isfinite(x) else float(x)
    return {"value": clean(value), "ci_low": clean(low), "ci_high": clean(high), "n": int(n)}


@dataclass
class Evaluation:
    """Everything :func:`evaluate` computed: the metrics.json content and per-HCP terms."""

    report: dict
    per_hcp: dict[str, dict[str, np.ndarray]]
    outputs: dict[str, ModelOutput]
    setting: EvaluationSetting


def evaluate(setting: EvaluationSetting, outputs: dict[str, ModelOutput], n_bootstrap: int = 1000, seed: int = 0,
             level: float = 0.95, v01: dict | None = None, run_info: dict | None = None) -> Evaluation:
    """Every metric of every model with bootstrap intervals, the reference policies, paired
    comparisons with the best baseline, breakdowns and calibration: the ``metrics.json``
    document described in the module docstring (``verdict`` included)."""
    from sklearn.metrics import roc_auc_score

    weights = em.resample_weights(len(setting.hcp_ids), n_bootstrap, seed)
    references = reference_policies(setting)
    oracle_value = references["oracle"]
    numerators, denominators, keys = [], [], []  # (model, metric) of every bootstrapped statistic
    per_hcp: dict[str, dict[str, np.ndarray]] = {}

    def add(model: str, metric: str, num: np.ndarray, den: np.ndarray) -> None:
        numerators.append(num)
        denominators.append(den)
        keys.append((model, metric))

    def add_policy(model: str, value: np.ndarray) -> None:
        defined = np.isfinite(value) & np.isfinite(oracle_value)
        add(model, "policy_value", *em.mean_terms(np.where(defined, value, np.nan)))
        add(model, "policy_fraction_of_oracle", np.where(defined, value, 0.0), np.where(defined, oracle_value, 0.0))

    for name, output in outputs.items():
        per_hcp[name] = {}
        if output.top is not None:
            per_hcp[name] = ranking_terms(output, setting)
            for metric, values in per_hcp[name].items():
                add(name, metric, *em.mean_terms(values))
            per_hcp[name]["policy_value"] = policy_terms(setting, output.top[:, 0], output.top_channel[:, 0])
            add_policy(name, per_hcp[name]["policy_value"])
        for metric, (num, den) in channel_terms(output, setting).items():
            add(name, metric, num, den)
    for name, value in references.items():
        add_policy(f"policy:{name}", value)
    point, low, high, resampled = em.bootstrap_ratio(np.stack(numerators), np.stack(denominators), weights, level)
    counts = (np.stack(denominators) > 0).sum(axis=1)

    report_metrics: dict[str, dict[str, Any]] = {}
    policy: dict[str, dict[str, Any]] = {}
    for i, (model, metric) in enumerate(keys):
        target = policy.setdefault(model[7:], {}) if model.startswith("policy:") else report_metrics.setdefault(model, {})
        target[metric] = _interval(point[i], low[i], high[i], counts[i])
    engaged = setting.engaged_rows
    calibration = {}
    for name, output in outputs.items():
        entry = report_metrics.setdefault(name, {})
        if output.top is not None:
            for k in EVAL_K:
                entry[f"coverage@{k}"] = _interval(em.catalogue_coverage_at_k(output.top, len(setting.content_ids), k),
                                                   None, None, len(setting.hcp_ids))
        if output.engaged_channel is not None:
            predicted = np.asarray(CHANNELS, dtype=object)[output.engaged_channel]
            actual = engaged["channel"].astype(str).to_numpy(dtype=object)
            entry["channel_macro_f1"] = _interval(em.channel_macro_f1(predicted, actual, sorted(set(actual))), None, None,
                                                  len(actual))
        if output.exposure_prob is not None:
            y = setting.test_rows["engaged"].to_numpy(bool)
            auc = roc_auc_score(y, output.exposure_prob) if 0 < y.sum() < len(y) else np.nan
            entry["auc"] = _interval(auc, None, None, len(y))
            calibration[name] = em.reliability_curve(y, output.exposure_prob).to_dict(orient="records")
        for metric in (*CHANNEL_METRICS, *POLICY_METRICS):
            entry.setdefault(metric, _interval(None, None, None, 0))

    best = best_baseline(setting, outputs)
    index = {key: i for i, key in enumerate(keys)}
    comparisons = []
    challengers = [n for n, o in outputs.items() if o.family in ("hybrid", "v0.1")]
    for challenger in challengers:
        for metric in ("ndcg@10", "hit_rate@10", "graded_ndcg@10", "policy_fraction_of_oracle"):
            a, b = index.get((challenger, metric)), index.get((best, metric))
            if a is None or b is None:
                continue
            difference = resampled[:, a] - resampled[:, b]
            tail = (1 - level) / 2
            comparisons.append({"model": challenger, "baseline": best, "metric": metric,
                                "difference": float(point[a] - point[b]),
                                "ci_low": float(np.nanquantile(difference, tail)),
                                "ci_high": float(np.nanquantile(difference, 1 - tail)),
                                "share_better": float(np.nanmean(difference > 0))})
    report = {
        "schema_version": SCHEMA_VERSION,
        "run": {**(run_info or {}), "n_bootstrap": int(n_bootstrap), "confidence_level": level, "eval_k": list(EVAL_K)},
        "split": setting.split.to_dict(),
        "population": {"n_hcps": int(len(setting.hcp_ids)),
                       "n_hcps_with_test_engagement": int((np.asarray(setting.relevant.sum(axis=1)).ravel() > 0).sum()),
                       "n_test_exposures": int(len(setting.test_rows)), "n_test_engagements": int(len(engaged)),
                       "n_content": int(len(setting.content_ids)), "n_new_items": int(setting.new_items.sum())},
        "models": {n: {"family": o.family, "source": o.source, "channel_from": o.channel_from} for n, o in outputs.items()},
        "models_found": sorted(outputs),
        "hybrid_found": any(o.family == "hybrid" for o in outputs.values()),
        "metrics": report_metrics,
        "policy": policy,
        "comparisons": comparisons,
        "breakdowns": breakdowns(setting, outputs, per_hcp),
        "calibration": calibration,
        "v01": v01 or {},
        "best_baseline": best,
    }
    report["verdict"] = verdict(report)
    return Evaluation(report, per_hcp, outputs, setting)


def activity_level(train_engagements: np.ndarray) -> np.ndarray:
    """Each HCP's activity band from its engagements before the cut-off (:data:`ACTIVITY_BINS`)."""
    labels = np.empty(len(train_engagements), dtype=object)
    for low, high, label in ACTIVITY_BINS:
        labels[(train_engagements >= low) & (train_engagements <= high)] = label
    return labels


def breakdowns(setting: EvaluationSetting, outputs: dict[str, ModelOutput],
               per_hcp: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Point estimates by specialty and activity band (NDCG@10, HR@10, graded NDCG@10, policy
    value), for items new in the test window (recall@10 of new-item engagements, share of
    new items in the top 10) and by channel of the engaged test row (channel accuracy)."""
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
                        records.append({"dimension": dimension, "group": str(group), "model": name, "metric": metric,
                                        "value": float(values[defined].mean()) if defined.any() else None,
                                        "n": int(defined.sum())})
    new_relevant = setting.relevant.multiply(sp.csr_matrix(setting.new_items[None, :].astype(bool))).tocsr()
    for name, output in outputs.items():
        if output.top is None:
            continue
        recall = em.recall_at_k(output.top, new_relevant, 10)
        defined = np.isfinite(recall)
        records.append({"dimension": "cold_start", "group": "new_items", "model": name, "metric": "recall@10",
                        "value": float(recall[defined].mean()) if defined.any() else None, "n": int(defined.sum())})
        top = output.top[:, :10]
        share = float(setting.new_items[top[top >= 0]].mean()) if (top >= 0).any() else None
        records.append({"dimension": "cold_start", "group": "new_items", "model": name, "metric": "list_share@10",
                        "value": share, "n": int(len(top))})
    engaged = setting.engaged_rows
    actual = pd.Index(CHANNELS).get_indexer(engaged["channel"].astype(str))
    for name, output in outputs.items():
        if output.engaged_channel is None:
            continue
        for j, channel in enumerate(CHANNELS):
            mask = actual == j
            records.append({"dimension": "channel", "group": channel, "model": name, "metric": "channel_accuracy",
                            "value": float((output.engaged_channel[mask] == j).mean()) if mask.any() else None,
                            "n": int(mask.sum())})
    return records


# --- the table, the verdict, the schema ----------------------------------------------------------


def headline_table(report: dict, k: int = 10) -> pd.DataFrame:
    """One row per model (content models, best NDCG@k first, then channel-only models):
    NDCG@k, HR@k, graded NDCG@k, coverage@k, channel accuracy, log-loss, policy value as a
    fraction of the oracle's, each with its interval as "value [low, high]" columns."""
    wanted = (f"ndcg@{k}", f"hit_rate@{k}", f"graded_ndcg@{k}", f"coverage@{k}", "channel_accuracy", "log_loss",
              "policy_fraction_of_oracle")
    rows = []
    for model, entries in report["metrics"].items():
        row = {"model": model, "family": report["models"].get(model, {}).get("family")}
        for metric in wanted:
            entry = entries.get(metric, {})
            row[metric], row[f"{metric} low"], row[f"{metric} high"] = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
        rows.append(row)
    for policy, entries in report["policy"].items():
        if policy == "oracle":
            continue
        entry = entries["policy_fraction_of_oracle"]
        rows.append({"model": f"policy: {policy}", "family": "reference", "policy_fraction_of_oracle": entry["value"],
                     "policy_fraction_of_oracle low": entry["ci_low"], "policy_fraction_of_oracle high": entry["ci_high"]})
    table = pd.DataFrame(rows).set_index("model")
    table = table.astype({c: float for c in table.columns if c != "family"})
    return table.sort_values(f"ndcg@{k}", ascending=False, na_position="last", kind="stable")


def verdict(report: dict) -> str:
    """A few sentences generated from the numbers: the best model by NDCG@10 and by policy
    value, how the hybrid (if any) compares with the best baseline, and the v0.1 gap."""
    metric_of = report["metrics"]
    learned = {m: e for m, e in metric_of.items() if report["models"][m]["family"] not in ("oracle", "channel_baseline")}

    def value(model, metric):
        return (metric_of.get(model, {}).get(metric) or {}).get("value")

    def fmt(entry):
        return f"{entry['value']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]" \
            if entry.get("ci_low") is not None else f"{entry['value']:.3f}"

    ranked = sorted((m for m in learned if value(m, "ndcg@10") is not None), key=lambda m: -value(m, "ndcg@10"))
    policy_ranked = sorted((m for m in learned if value(m, "policy_fraction_of_oracle") is not None),
                           key=lambda m: -value(m, "policy_fraction_of_oracle"))
    sentences = []
    if ranked:
        top = ranked[0]
        sentences.append(f"On the test window, {top} ranks observed engagements best (NDCG@10 "
                         f"{fmt(metric_of[top]['ndcg@10'])}), over {report['population']['n_hcps_with_test_engagement']} "
                         "HCPs with a test engagement.")
    if policy_ranked:
        top = policy_ranked[0]
        bau = report["policy"].get("business_as_usual", {}).get("policy_fraction_of_oracle", {}).get("value")
        rnd = report["policy"].get("random", {}).get("policy_fraction_of_oracle", {}).get("value")
        sentences.append(f"By policy value, {top}'s top (content, channel) reaches "
                         f"{fmt(metric_of[top]['policy_fraction_of_oracle'])} of the oracle's true engagement "
                         f"probability" + (f", against {bau:.3f} for business as usual" if bau is not None else "")
                         + (f" and {rnd:.3f} for random choice." if rnd is not None else "."))
    best = report["best_baseline"]
    for comparison in report["comparisons"]:
        if comparison["metric"] not in ("ndcg@10", "policy_fraction_of_oracle"):
            continue
        if comparison["ci_low"] > 0:
            outcome = "better than"
        elif comparison["ci_high"] < 0:
            outcome = "worse than"
        else:
            outcome = "not distinguishable from"
        sentences.append(f"{comparison['model']} is {outcome} the best baseline ({best}, chosen on validation) on "
                         f"{comparison['metric']}: difference {comparison['difference']:+.3f} "
                         f"[{comparison['ci_low']:+.3f}, {comparison['ci_high']:+.3f}].")
    if not report["hybrid_found"]:
        sentences.append("No hybrid model was found in this run (no hybrid/test_top_n/), so only the baselines, "
                         "the v0.1 classifier and the references are compared.")
    v01 = report.get("v01") or {}
    if v01.get("random_split_auc") is not None and v01.get("temporal_auc") is not None:
        gap = v01["random_split_auc"] - v01["temporal_auc"]
        direction = "higher than" if gap > 0.005 else ("lower than" if gap < -0.005 else "about the same as")
        sentences.append(f"The v0.1 classifier's AUC on a random row split ({v01['random_split_auc']:.3f}) is "
                         f"{direction} on the temporal test window ({v01['temporal_auc']:.3f}); as a recommender "
                         f"its NDCG@10 is {value('v0.1_classifier', 'ndcg@10') or float('nan'):.3f}, since it ranks "
                         "content the same way for every HCP of a specialty.")
    return " ".join(sentences)


FLAT_SCHEMA = pa.DataFrameSchema({
    "model": pa.Column(str, pa.Check.str_length(min_value=1)),
    "metric": pa.Column(str, pa.Check.isin([*RANKING_METRICS, "coverage", *CHANNEL_METRICS, *POLICY_METRICS])),
    "k": pa.Column("Int64", pa.Check.isin(list(EVAL_K)), nullable=True),
    "value": pa.Column(float, nullable=True),
    "ci_low": pa.Column(float, nullable=True),
    "ci_high": pa.Column(float, nullable=True),
    "n": pa.Column("int64", pa.Check.ge(0)),
}, checks=[
    pa.Check(lambda df: ~(df["ci_low"] > df["value"] + 1e-9) & ~(df["ci_high"] < df["value"] - 1e-9),
             name="interval_contains_value", element_wise=False),
    pa.Check(lambda df: ~df["metric"].isin(list(UNIT_METRICS)) | df["value"].isna()
             | ((df["value"] >= -1e-9) & (df["value"] <= 1 + 1e-9)), name="unit_metric_in_0_1"),
    pa.Check(lambda df: df["value"].isna() | (df["value"] >= -1e-9), name="value_non_negative"),
], name="evaluation_metrics", strict=True, unique=["model", "metric", "k"])

TOP_LEVEL_KEYS = ("schema_version", "run", "split", "population", "models", "models_found", "hybrid_found", "metrics",
                  "policy", "comparisons", "breakdowns", "calibration", "v01", "best_baseline", "verdict")


def flatten_metrics(report: dict) -> pd.DataFrame:
    """``metrics`` and ``policy`` of a metrics.json as one row per (model, metric, k): model,
    metric, k (null for metrics without @k), value, ci_low, ci_high, n (policies appear as
    model ``policy:<name>``)."""
    rows = []
    for prefix, section in (("", report["metrics"]), ("policy:", report["policy"])):
        for model, entries in section.items():
            for key, entry in entries.items():
                metric, _, k = key.partition("@")
                rows.append({"model": prefix + model, "metric": metric, "k": int(k) if k else None,
                             **{f: entry.get(f) for f in ("value", "ci_low", "ci_high")}, "n": entry.get("n")})
    table = pd.DataFrame(rows, columns=["model", "metric", "k", "value", "ci_low", "ci_high", "n"])
    table["k"] = table["k"].astype("Int64")
    for column in ("value", "ci_low", "ci_high"):
        table[column] = pd.to_numeric(table[column], errors="raise").astype(float)
    table["n"] = table["n"].astype("int64")
    return table


def validate_metrics(report: dict, source: str = "metrics.json") -> pd.DataFrame:
    """Check a metrics.json document against the documented layout; return its flat table.

    Raises :class:`hcp_lib.io.DataValidationError` naming the missing key, the model lacking a
    metric, or the failing value.
    """
    missing = [key for key in TOP_LEVEL_KEYS if key not in report]
    if missing:
        raise io.DataValidationError(f"{source}: missing key {missing[0]!r}")
    if report["schema_version"] != SCHEMA_VERSION:
        raise io.DataValidationError(f"{source}: schema_version {report['schema_version']!r}, expected {SCHEMA_VERSION}")
    expected = [f"{m}@{k}" for m in RANKING_METRICS for k in EVAL_K] + [f"coverage@{k}" for k in EVAL_K] \
        + list(CHANNEL_METRICS) + list(POLICY_METRICS)
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
    return io.validate(flatten_metrics(report), FLAT_SCHEMA, source)


# --- recommendations for the explorers -----------------------------------------------------------

RECOMMENDATION_SCHEMA = pa.DataFrameSchema({
    "model": pa.Column(str),
    "hcp_id": pa.Column(str, pa.Check.str_matches(r"^\d{10}$")),
    "specialty": pa.Column(str),
    "rank": pa.Column("int32", pa.Check.ge(1)),
    "content_id": pa.Column(str),
    "title": pa.Column(str),
    "therapeutic_area": pa.Column(str),
    "channel": pa.Column(str, pa.Check.isin(list(CHANNELS))),
    "score": pa.Column(float),
    "true_engagement_prob": pa.Column(float, pa.Check.in_range(0, 1)),
}, name="recommendations", strict=True, ordered=True, unique=["model", "hcp_id", "rank"])


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
        frames.append(pd.DataFrame({
            "model": name, "hcp_id": setting.hcp_ids[rows], "specialty": setting.specialty[rows],
            "rank": (ranks + 1).astype(np.int32), "content_id": setting.content_ids.to_numpy()[cols],
            "title": titles[cols], "therapeutic_area": areas[cols],
            "channel": np.asarray(CHANNELS, dtype=object)[chans],
            "score": output.top_scores[rows, ranks].astype(float),
            "true_engagement_prob": setting.oracle[rows, cols, chans].astype(float)}))
    table = pd.concat(frames, ignore_index=True)
    for column in ("model", "hcp_id", "specialty", "content_id", "title", "therapeutic_area", "channel"):
        table[column] = table[column].astype(str)
    return io.validate(table, RECOMMENDATION_SCHEMA, "recommendations.parquet")


# --- the hybrid stage's side of the contract -----------------------------------------------------


def model_output_tables(model, hcp_ids: Iterable[str], exclude: np.ndarray, test_rows: pd.DataFrame,
                        n: int = 50) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The files :func:`load_models` reads from a stage folder, for any fitted recommender.

    Returns (``test_top_n`` list: hcp_id, rank, content_id, score, channel — the argmax of
    ``model.score_channels`` for that item when the model has it; ``test_exposure_probs``:
    exposure_id, engagement_prob of every row of ``test_rows`` (hcp_id, content_id,
    channel, exposure_id) from ``score_channels``, or None for a model without it).
    ``exclude`` aligns with ``hcp_ids`` (e.g. :func:`hcp_lib.recommender.exclusion_mask`).
    Use it for models whose ``score_channels`` are engagement probabilities.
    """
    hcp_ids = np.asarray(list(hcp_ids), dtype=object)
    scores = model.score(hcp_ids)
    _check_finite(model.name, scores, "the score matrix", hcp_ids)
    top = top_n(scores, n, exclude)
    rows, ranks = np.nonzero(top >= 0)
    cols = top[rows, ranks]
    lists = pd.DataFrame({"hcp_id": pd.array(hcp_ids[rows].astype(str), dtype="string"),
                          "rank": (ranks + 1).astype(np.int32),
                          "content_id": pd.array(model.content_ids_.to_numpy(dtype=object)[cols].astype(str), dtype="string"),
                          "score": scores[rows, cols]})
    if not hasattr(model, "score_channels"):
        return lists, None
    channel_scores = model.score_channels(hcp_ids)
    _check_finite(model.name, channel_scores, "the channel scores", hcp_ids)
    lists["channel"] = pd.array(np.asarray(CHANNELS, dtype=object)[channel_scores[rows, cols].argmax(axis=1)], dtype="string")
    test_rows = test_rows[pd.Index(hcp_ids).get_indexer(test_rows["hcp_id"].astype(str)) >= 0]
    prob = channel_scores[pd.Index(hcp_ids).get_indexer(test_rows["hcp_id"].astype(str)),
                          model.content_ids_.get_indexer(test_rows["content_id"].astype(str)),
                          pd.Index(CHANNELS).get_indexer(test_rows["channel"].astype(str))]
    return lists, pd.DataFrame({"exposure_id": test_rows["exposure_id"].to_numpy(np.int64), "engagement_prob": prob})


# --- the stage ----------------------------------------------------------------------------------


def run_evaluation(run_dir: str | Path, seed: int, n_bootstrap: int, scale: str | None = None,
                   expected: Iterable[str] = ()) -> Evaluation:
    """Load the setting and every model of the run, add the oracle and the v0.1 classifier,
    and evaluate them all (the notebook's one call). ``expected`` names models that must be
    present (an absent one raises :class:`EvaluationError`)."""
    setting = load_setting(run_dir)
    outputs = {"oracle": oracle_output(setting), **load_models(run_dir, setting, expected)}
    v01 = v01_classifier(run_dir, setting, seed)
    outputs["v0.1_classifier"] = v01.output
    return evaluate(setting, outputs, n_bootstrap=n_bootstrap, seed=seed, v01=v01.random_split,
                    run_info={"scale": scale, "seed": seed})


def write_outputs(evaluation: Evaluation, run_dir: str | Path) -> dict[str, Path]:
    """Validate, then write ``evaluation/metrics.json``, ``evaluation/recommendations.parquet``
    and the stage summary ``metrics/evaluation.json`` (headline metrics only)."""
    run = RunDir(Path(run_dir))
    report = json.loads(json.dumps(evaluation.report, allow_nan=False))
    validate_metrics(report, str(run.evaluation / "metrics.json"))
    recommendations = recommendations_table(evaluation)
    headline = {model: {m: entries[m]["value"] for m in ("ndcg@10", "hit_rate@10", "policy_fraction_of_oracle")
                        if m in entries} for model, entries in report["metrics"].items()}
    return {
        "metrics": io.write_json(report, run.evaluation / "metrics.json"),
        "recommendations": io.write_parquet(recommendations, run.evaluation / "recommendations.parquet",
                                            RECOMMENDATION_SCHEMA),
        "summary": io.write_json({"models_found": report["models_found"], "hybrid_found": report["hybrid_found"],
                                  "best_baseline": report["best_baseline"], "headline": headline,
                                  "verdict": report["verdict"]}, run.metrics / "evaluation.json"),
    }
