"""Off-policy evaluation: a policy's value estimated from logged exposures alone.

A team that runs this project on its own CRM logs has no oracle. It has the logged
exposures, their outcomes and, if its targeting logs them, the propensity of each
exposure: the probability that the logging policy sent that (content, channel) to that
HCP on that day. :func:`estimate_policy_values` takes such a table (:data:`LOG_COLUMNS`)
and target policies (tables of (HCP, content, channel) actions with weights) and returns
each policy's estimated value with a 95% bootstrap interval and an effective sample size.

The estimand. A policy gives each HCP ``h`` it is defined for a set of actions ``a`` with
weights ``w(h, a)`` (one action of weight 1 for a top-1 recommendation; 1/n over n
actions for a uniform random choice; one weight-1 action per planned touch for a plan).
Its value is the mean over those HCPs of ``sum_a w(h, a) r(h, a)``, with ``r`` the
probability that the HCP engages with ``a``: the evaluation's policy value
(:mod:`hcp_lib.stages.evaluate`) when ``r`` is the oracle's probability at the cut-off.

The logs. The unit of the logging policy is an HCP-day: each day, for each HCP, it sends
one action or none; ``propensity`` is the probability of the action it sent. Over a window
of ``n_days`` days, ``E[sum_i 1{a_i = a} r_i / p_i] = n_days * r(h, a)`` for every
action the logging policy could send (its support), so, per HCP,

- ``ips``: ``sum_i w(h, a_i) r_i / p_i / n_days`` (inverse propensity scoring);
- ``ips_clipped``: the same with the weight ``1 / p_i`` capped at ``clip``
  (:func:`clip_level`: the inverse of a low quantile of the logged propensities);
- ``snips``: self-normalised IPS, ``W * sum w r / p / sum w / p`` over all HCPs, with ``W``
  the policy's mean total weight per HCP (a ratio: less variance, a small bias);
- ``dm_model``: the direct method with the model's own probabilities,
  ``sum_a w(h, a) q(h, a)`` (only for models with probabilities);
- ``dm_calibrated``: the same, with the model's probabilities first recalibrated on the logged
  window (isotonic regression of the logged outcomes on the model's probability of each logged
  exposure, refitted in every bootstrap resample, so the interval carries the calibration's
  uncertainty; needs the model's probability of each logged exposure);
- ``dm_reward``: the direct method with a reward model ``r_hat`` fitted on the logs
  (:class:`RewardModel`, cross-fitted by HCP: the model that predicts for an HCP never saw
  that HCP's logged outcomes);
- ``dr``: doubly robust, ``dm_reward`` plus the IPS of the reward model's residuals,
  ``sum_a w r_hat(h, a) + sum_i w(h, a_i) (r_i - r_hat_i) / p_i / n_days``.

Each is a ratio of per-HCP sums, so every interval is the project's one HCP bootstrap
(:func:`hcp_lib.metrics.resample_weights` and ``bootstrap_ratio``), paired across
policies and estimators. The effective sample size of the weighting estimators is Kish's
``(sum w / p)^2 / sum (w / p)^2`` over the matched exposures; the direct method's is the
number of HCPs it averages.

What no estimator here can fix: an action the logging policy never sends (a content item
with no active campaign on that channel) has no logged match, so IPS and SNIPS count it as
zero and only the reward model speaks for it; and the logs span ``n_days`` days whose
state (fatigue, drift) moves, while the oracle values every action at the cut-off.
:func:`run_ope` is the chapter's stage: it builds the policies of a run, adds their true
values from the oracle, and writes ``ope/estimates.parquet`` and ``ope/summary.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import domain, io
from ..domain import BAU_NAME, CHANNELS, UNIFORM_NAME
from ..progress import each

#: the columns a logged table must have (one row per logged exposure)
LOG_COLUMNS = ("hcp_id", "content_id", "channel", "exposed_at", "propensity", "engaged")
#: the estimators, in the order the chapter shows them (``observed``: only for a policy that
#: replays logged actions, valued by their logged outcomes)
ESTIMATORS = ("ips", "ips_clipped", "snips", "dm_model", "dm_calibrated", "dm_reward", "dr", "observed")
#: the estimators that weight logged exposures by their inverse propensity
WEIGHTING = ("ips", "ips_clipped", "snips", "dr")
#: the quantile of the logged propensities whose inverse caps the clipped IPS weights
CLIP_QUANTILE = 0.01
#: an estimator must estimate at least this share of its policies to be ranked among the usable ones
MIN_ESTIMATED_SHARE = 0.8
#: the coverage of nominal 95% intervals at which an estimator's intervals can be trusted (the issue's bar)
TRUSTED_COVERAGE = 0.9
#: pseudo-counts that pull a prior engagement rate of the reward model's features to the mean
PRIOR_STRENGTH = 5.0
#: at most this many threads predict the reward model's rows side by side, each on one OpenMP
#: thread (:func:`_predict_proba`; never more than the CPUs)
PREDICT_THREADS = 2
#: a fold of the reward model asked for this many rows in all has its trees compiled
#: (:meth:`RewardModel._predict_fold`)
COMPILE_MIN_ROWS = 5_000_000


class OPEError(ValueError):
    """Logged data or a policy cannot be used; the message names the table, column and value."""


# --- inputs ---------------------------------------------------------------------------------------


def validate_logs(logs: pd.DataFrame, source: str = "logged table") -> pd.DataFrame:
    """A checked copy of ``logs`` (:data:`LOG_COLUMNS`; extra columns are kept).

    Refused with :class:`OPEError` naming ``source``, the column and the first bad row: a
    missing column, a missing or non-positive propensity (or one above 1: a probability), an
    ``engaged`` that is not true/false or 0/1, an unreadable ``exposed_at``.
    """
    if not isinstance(logs, pd.DataFrame):
        raise OPEError(f"{source}: expected a pandas DataFrame, got {type(logs).__name__}")
    missing = [c for c in LOG_COLUMNS if c not in logs.columns]
    if missing:
        raise OPEError(
            f"{source}: missing column {missing[0]!r}; a logged table needs the columns {', '.join(LOG_COLUMNS)}"
        )
    out = logs.copy()
    for column in ("hcp_id", "content_id", "channel"):
        absent = out[column].isna().to_numpy()
        if absent.any():
            raise OPEError(
                f"{source}: column {column!r} is missing in {int(absent.sum())} rows (first at row "
                f"{int(np.flatnonzero(absent)[0])})"
            )
        out[column] = out[column].astype(str)
    propensity = pd.to_numeric(out["propensity"], errors="coerce").to_numpy(np.float64)
    absent = np.isnan(propensity)
    if absent.any():
        first = int(np.flatnonzero(absent)[0])
        raise OPEError(
            f"{source}: column 'propensity' is missing or not a number in {int(absent.sum())} rows (first "
            f"at row {first}: {logs['propensity'].iloc[first]!r}); every logged exposure needs the "
            "probability with which the logging policy chose it"
        )
    bad = ~np.isfinite(propensity) | (propensity <= 0) | (propensity > 1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise OPEError(
            f"{source}: column 'propensity' must be in (0, 1]; {int(bad.sum())} rows are not (first at row "
            f"{first}: {float(propensity[first])!r}). A zero propensity means the exposure could not have "
            "been logged: the column is not the logging policy's probability"
        )
    out["propensity"] = propensity
    engaged = out["engaged"]
    if engaged.dtype == bool:
        out["engaged"] = engaged.to_numpy(bool)
    else:
        values = pd.to_numeric(engaged, errors="coerce")
        if values.isna().any() or not values.isin([0, 1]).all():
            first = int(np.flatnonzero(~(values.isin([0, 1]).to_numpy()))[0])
            raise OPEError(
                f"{source}: column 'engaged' must be true/false or 0/1; row {first} holds {engaged.iloc[first]!r}"
            )
        out["engaged"] = values.to_numpy() == 1
    try:
        out["exposed_at"] = pd.to_datetime(out["exposed_at"])
    except (ValueError, TypeError) as err:
        raise OPEError(f"{source}: column 'exposed_at' is not a date-time ({err})") from None
    return out.reset_index(drop=True)


@dataclass
class Policy:
    """A target policy: ``actions`` (hcp_id, content_id, channel, and optionally ``weight``,
    default 1; ``model_probability``, the model's own engagement probability, for
    ``dm_model``; ``true_probability``, where the truth is known; ``logged_outcome`` for a
    policy that replays logged exposures: it is then valued by those outcomes alone, the
    ``observed`` estimator) and the HCPs it is defined for (default: those with an action;
    an HCP with no action counts as value 0)."""

    actions: pd.DataFrame
    hcp_ids: np.ndarray | None = None
    logged_probability: pd.Series | None = None

    def checked(self, name: str) -> Policy:
        actions = self.actions
        missing = [c for c in ("hcp_id", "content_id", "channel") if c not in actions.columns]
        if missing:
            raise OPEError(f"policy {name!r}: actions lack column {missing[0]!r} (need hcp_id, content_id, channel)")
        actions = actions.copy()
        for column in ("hcp_id", "content_id", "channel"):
            actions[column] = actions[column].astype(str)
        if "weight" not in actions.columns:
            actions["weight"] = 1.0
        weight = io.check_finite(actions["weight"], f"policy {name!r}", "weight", consequence="")
        if (weight < 0).any():
            raise OPEError(f"policy {name!r}: weights must be >= 0, found {weight.min()!r}")
        actions["weight"] = weight
        for column in ("model_probability", "true_probability", "logged_outcome"):
            if column in actions.columns:
                actions[column] = io.check_finite(
                    actions[column], f"policy {name!r}", column.replace("_", " "), consequence=""
                )
        hcp_ids = np.asarray(self.hcp_ids if self.hcp_ids is not None else actions["hcp_id"].unique()).astype(str)
        logged = self.logged_probability
        if logged is not None:
            if "model_probability" not in actions.columns:
                raise OPEError(f"policy {name!r}: logged_probability needs the actions' model_probability too")
            logged = pd.Series(
                io.check_finite(logged, f"policy {name!r}", "logged probability", consequence=""), index=logged.index
            )
        return Policy(actions.reset_index(drop=True), np.unique(hcp_ids), logged)


@dataclass
class UniformPolicy:
    """The uniform choice among each HCP's candidate (item, channel) pairs, held as a mask
    rather than as one action row per pair: ``candidates`` (n_hcp, n_content) marks the
    candidate items of each of ``hcp_ids`` (every channel of a candidate item is a candidate
    pair), ``content_ids`` names the columns, and ``truth`` (optional, per HCP) is the mean
    true engagement probability over its candidate pairs.

    It is valued exactly as :class:`Policy` would value the same actions with weight
    1 / (pairs of the HCP) (:meth:`terms`, checked against :func:`policy_terms` by the tests),
    but the reward model scores the pairs a batch of HCPs at a time: written out, the policy
    is 10.9 million rows at the small scale and about 120 million at full."""

    candidates: np.ndarray
    hcp_ids: np.ndarray
    content_ids: np.ndarray
    truth: np.ndarray | None = None
    logged_probability: None = None
    batch: int = 256

    def checked(self, name: str) -> UniformPolicy:
        candidates = np.asarray(self.candidates, bool)
        if candidates.shape != (len(self.hcp_ids), len(self.content_ids)):
            raise OPEError(
                f"policy {name!r}: candidates have shape {candidates.shape}, expected "
                f"{(len(self.hcp_ids), len(self.content_ids))} (HCPs, items)"
            )
        truth = None
        if self.truth is not None:
            truth = io.check_finite(np.asarray(self.truth, np.float64), f"policy {name!r}", "truth", consequence="")
        keep = candidates.any(axis=1)  # an HCP with no candidate is not in the policy's population
        return UniformPolicy(
            candidates[keep],
            np.asarray(self.hcp_ids).astype(str)[keep],
            np.asarray(self.content_ids).astype(str),
            None if truth is None else truth[keep],
            None,
            self.batch,
        )

    def terms(
        self,
        logs: pd.DataFrame,
        hcp_ids: np.ndarray,
        n_days: int,
        clip: float,
        reward_logged: np.ndarray | None = None,
        predict: Callable | None = None,
    ) -> dict[str, tuple[np.ndarray, np.ndarray, float, int]]:
        """:func:`policy_terms` of this (checked) policy over the population ``hcp_ids``."""
        n = len(hcp_ids)
        index = pd.Index(hcp_ids)
        own = index.get_indexer(self.hcp_ids)  # population row of each of the policy's HCPs
        defined = np.zeros(n, bool)
        defined[own[own >= 0]] = True
        pairs = self.candidates.sum(axis=1) * len(CHANNELS)
        # the weight of each logged exposure: 1 / pairs when its item is a candidate of its HCP
        mine = pd.Index(self.hcp_ids).get_indexer(logs["hcp_id"].astype(str))
        item = pd.Index(self.content_ids).get_indexer(logs["content_id"].astype(str))
        channel_known = pd.Index(CHANNELS).get_indexer(logs["channel"].astype(str)) >= 0
        log_row = index.get_indexer(logs["hcp_id"].astype(str))
        ok = (mine >= 0) & (item >= 0) & channel_known & (log_row >= 0)
        w = np.zeros(len(logs))
        w[ok] = self.candidates[mine[ok], item[ok]] / pairs[mine[ok]]
        matched = int((w > 0).sum())
        defined_f = defined.astype(np.float64)
        mean_weight = 1.0 if defined.any() else 0.0  # each HCP's weights sum to 1
        ess_hcps = float(defined.sum())
        dm = None
        if reward_logged is not None and predict is not None:
            dm = np.zeros(n)
            # the pairs' ids go to ``predict`` as Series of categorical dtype (the same ids for any
            # callable): a RewardModel then reads their codes rather than hashing the ~800,000
            # repeated ids of a batch. The HCPs' categories are the batch's own HCPs, not all of
            # the policy's: a RewardModel looks up each category's priors and fold in every call,
            # and with every HCP as a category that was 38,000 ids hashed some ten times per fold
            # and batch at the full scale (hundreds of millions of string lookups in all)
            item_codes, item_values = pd.factorize(self.content_ids)
            n_channel = len(CHANNELS)
            for first in range(0, len(self.hcp_ids), self.batch):
                rows, cols = np.nonzero(self.candidates[first : first + self.batch])
                hcp_codes, hcp_values = pd.factorize(self.hcp_ids[first : first + self.batch])
                r_hat = np.asarray(
                    predict(
                        pd.Series(pd.Categorical.from_codes(np.repeat(hcp_codes[rows], n_channel), hcp_values)),
                        pd.Series(pd.Categorical.from_codes(np.repeat(item_codes[cols], n_channel), item_values)),
                        pd.Series(pd.Categorical.from_codes(np.tile(np.arange(n_channel), len(rows)), CHANNELS)),
                    ),
                    dtype=np.float64,
                ).reshape(len(rows), n_channel)
                rows = rows + first
                target = own[rows]
                keep = target >= 0
                dm += np.bincount(target[keep], weights=(r_hat.sum(axis=1) / pairs[rows])[keep], minlength=n)
        terms = _estimator_terms(logs, log_row, w, n_days, clip, defined_f, mean_weight, ess_hcps, dm, reward_logged)
        if self.truth is not None:
            truth = np.zeros(n)
            truth[own[own >= 0]] = self.truth[own >= 0]
            terms["truth"] = (truth, defined_f, ess_hcps, matched)
        return terms


def clip_level(propensity: np.ndarray, quantile: float = CLIP_QUANTILE) -> float:
    """The cap of the clipped IPS weights: ``1 / q``, with ``q`` the ``quantile`` of the logged
    propensities (so about that share of the logged exposures get a capped weight)."""
    if not 0 < quantile < 1:
        raise OPEError(f"clip quantile must be in (0, 1), got {quantile!r}")
    return float(1.0 / np.quantile(np.asarray(propensity, dtype=np.float64), quantile))


def window_days(logs: pd.DataFrame) -> int:
    """Calendar days the logged exposures span (first to last day, both included)."""
    days = pd.to_datetime(logs["exposed_at"]).dt.normalize()
    return int((days.max() - days.min()).days) + 1


# --- the reward model ---------------------------------------------------------------------------


@dataclass
class RewardModel:
    """P(engaged | HCP, content, channel) fitted on logged exposures, cross-fitted by HCP.

    Features, all from logged data: the channel; the HCP's, the item's, the (HCP, channel),
    (item, channel) and (HCP, item attribute) engagement rates in ``history`` (exposures
    before the rows it learns from, shrunk to the mean rate with :data:`PRIOR_STRENGTH`
    pseudo-counts; e.g. the HCP's rate on the item's therapeutic area) and the HCP's number of
    past exposures; and any categorical columns of ``hcp_attributes`` / ``item_attributes`` (e.g.
    specialty, region; therapeutic area, content type). A scikit-learn
    ``HistGradientBoostingClassifier`` is fitted ``n_folds`` times, each time without one fold
    of HCPs; :meth:`predict` answers for an HCP with the model that never saw its outcomes
    (unknown HCPs: the mean of the fold models).
    """

    n_folds: int = 5
    seed: int = 0
    max_iter: int = 200
    learning_rate: float = 0.05
    min_samples_leaf: int = 40
    #: compile a fold model's trees to C (:class:`hcp_lib.models.tabular.CompiledTrees`) once it
    #: has been asked for :data:`COMPILE_MIN_ROWS` rows in all (False: scikit-learn always)
    compile_trees: bool = True

    def fit(
        self,
        logs: pd.DataFrame,
        history: pd.DataFrame | None = None,
        hcp_attributes: pd.DataFrame | None = None,
        item_attributes: pd.DataFrame | None = None,
    ) -> RewardModel:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        if self.n_folds < 2:
            raise OPEError(f"RewardModel: n_folds must be at least 2, got {self.n_folds}")
        logs = validate_logs(logs, "reward model logs")
        history = validate_logs(history, "reward model history") if history is not None else logs.iloc[:0]
        self.hcp_attributes_ = _attributes(hcp_attributes, "hcp_id")
        self.item_attributes_ = _attributes(item_attributes, "content_id")
        self.priors_ = _priors(history, self.item_attributes_)
        # the priors by pairs of keys as matrices, read by position for the millions of rows scored
        self.pair_tables_ = {
            "hcp_channel": _PairTable.of(self.priors_["hcp_channel"]),
            "item_channel": _PairTable.of(self.priors_["item_channel"]),
            **{f"hcp_{c}": _PairTable.of(rates) for c, rates in self.priors_["hcp_item_attribute"].items()},
        }
        hcps = np.unique(logs["hcp_id"].to_numpy(str))
        order = np.random.default_rng(self.seed).permutation(len(hcps))
        self.fold_of_ = pd.Series(np.arange(len(hcps))[np.argsort(order)] % self.n_folds, index=hcps)
        x = self._features(*(_Keys.of(logs[column]) for column in ("hcp_id", "content_id", "channel"))).frame()
        y = logs["engaged"].to_numpy(bool)
        folds = self.fold_of_.reindex(logs["hcp_id"].to_numpy(str)).to_numpy()
        self.models_ = []
        for k in range(self.n_folds):
            train = folds != k
            if y[train].all() or not y[train].any():
                raise OPEError(f"RewardModel: fold {k} leaves only one outcome to learn from; give more logged data")
            model = HistGradientBoostingClassifier(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                min_samples_leaf=self.min_samples_leaf,
                categorical_features="from_dtype",
                random_state=self.seed,
            )
            # one OpenMP thread: boosting is a long run of short parallel steps, which crawl on
            # threads that spin whenever another process holds a core (the five fits took 10 s
            # beside another job, against 1 s on one thread); each feature's histograms and each
            # node's rows are summed in the same order on any number of threads, so the trees
            # are the same (as :data:`hcp_lib.models.tabular.PREDICT_ROWS` found for notebook 05)
            with threadpool_limits(limits=1, user_api="openmp"):
                self.models_.append(model.fit(x[train], y[train]))
        # the model's columns are the features' own order: the matrices of :meth:`_features` are
        # read by the compiled trees as they are
        self.feature_names_ = list(x.columns)
        if [list(m.feature_names_in_) for m in self.models_] != [self.feature_names_] * self.n_folds:
            raise OPEError("RewardModel: a fold model's features are not in the order they were given")
        self.compiled_ = [None] * self.n_folds
        self.rows_predicted_ = np.zeros(self.n_folds, np.int64)
        self.rows_expected_ = np.zeros(self.n_folds, np.int64)
        self.compile_failed_ = False
        return self

    def expect(self, hcp_ids, rows_per_hcp) -> None:
        """Announce that :meth:`predict` is about to be asked for ``rows_per_hcp`` rows of each of
        ``hcp_ids`` (in several calls; an HCP no fold saw counts for every fold), so that a fold
        those rows take past :data:`COMPILE_MIN_ROWS` compiles its trees at its first call.

        Why: counted only as they came, the first 5 million rows of each fold were scored by
        scikit-learn before the fold compiled: at the full scale about 25 of the uniform
        policy's 120 million pairs, at about 3.5 times the compiled trees' cost per row (5 against
        1.4 microseconds on one thread), some 45 s of chapter 9. The compiled trees give
        scikit-learn's probabilities up to float rounding (checked on the first rows)."""
        folds = self.fold_of_.reindex(np.asarray(hcp_ids).astype(str)).to_numpy()
        rows = np.asarray(rows_per_hcp, dtype=np.float64)
        known = ~np.isnan(folds)
        expected = np.bincount(folds[known].astype(np.int64), weights=rows[known], minlength=self.n_folds)
        self.rows_expected_ += (expected + rows[~known].sum()).astype(np.int64)

    def _predict_fold(self, k: int, x: _Rows) -> np.ndarray:
        """P(engaged) of the rows ``x`` by fold model ``k``: by its compiled trees once the fold
        has been asked for, or told to expect (:meth:`expect`), :data:`COMPILE_MIN_ROWS` rows in
        all (the uniform policy's pairs at the full scale, about 24 million a fold; compiling
        and counting branches, about 6 s a fold on two slow cores, is not worth it for the small
        scale's 2 million), else by scikit-learn. The
        same values either way (the compiled trees are checked against scikit-learn on the
        first rows)."""
        from ..models.tabular import COMPILED_ANNOTATE_ROWS, COMPILED_CHECK_ROWS, CompiledTrees

        model = self.models_[k]
        compiled = self.compiled_[k]
        self.rows_predicted_[k] += len(x)
        self.rows_expected_[k] = max(0, self.rows_expected_[k] - len(x))  # announced rows now asked for
        if (
            compiled is None
            and self.compile_trees
            and not self.compile_failed_
            and self.rows_predicted_[k] + self.rows_expected_[k] >= COMPILE_MIN_ROWS
        ):
            # checked on the first COMPILED_CHECK_ROWS rows, its branches counted on more
            compiled = self.compiled_[k] = CompiledTrees.build(
                model,
                x.matrix[:COMPILED_ANNOTATE_ROWS],
                PREDICT_THREADS,
                expected=model.predict_proba(x.frame(slice(0, COMPILED_CHECK_ROWS)))[:, 1],
                what=f"the reward model's trees (fold {k})",
                fallback="it predicts with scikit-learn, about 3 times slower",
            )
            # no compiler, or the check failed (a warning said which): scikit-learn from now on
            self.compile_failed_ = compiled is None
        if compiled is not None:
            return _predict_proba(compiled, x.matrix)
        return _predict_proba(model, x.frame())

    def predict(self, hcp_ids, content_ids, channels) -> np.ndarray:
        """r_hat for each (HCP, content, channel), from the fold model that never saw the HCP.

        The ids may be given as categoricals (a pandas ``Categorical`` or a Series of that
        dtype): their codes are then read as they are, which spares hashing millions of
        repeated ids (:meth:`UniformPolicy.terms`)."""
        if not hasattr(self, "models_"):
            raise OPEError("RewardModel: call fit() before predict()")
        keys = tuple(_Keys.of(values) for values in (hcp_ids, content_ids, channels))
        folds = self.fold_of_.reindex(keys[0].uniques).to_numpy()[keys[0].codes]
        out = np.empty(len(folds))
        unknown = np.isnan(folds)
        # the features of each fold's rows only: the same rows, in the same order, as taking them
        # from one frame of every row
        for k in range(len(self.models_)):
            rows = np.flatnonzero(folds == k)
            if len(rows):
                out[rows] = self._predict_fold(k, self._features(*(key.take(rows) for key in keys)))
        if unknown.any():
            rows = np.flatnonzero(unknown)
            x = self._features(*(key.take(rows) for key in keys))
            out[rows] = np.mean([self._predict_fold(k, x) for k in range(len(self.models_))], axis=0)
        return out

    def _features(self, hcps: _Keys, items: _Keys, channels: _Keys) -> _Rows:
        """The features (see the class docstring) of the rows of ``hcps``, ``items`` and
        ``channels``, as one float64 matrix (:class:`_Rows`).

        Each prior is read once per distinct key (an HCP, an item, a channel, or a pair of them)
        and spread to the rows by integer codes: the rows repeat few keys (the uniform policy
        scores every candidate pair of each HCP: millions of rows, thousands of HCPs), and a
        string lookup per row was most of chapter 9's time. The values are those of a lookup per
        row. A categorical feature holds the rank of its name (:func:`_ranks`; NaN when missing).

        The values are written straight into the matrix the compiled trees read (each feature
        into one contiguous row of its transpose) rather than into a DataFrame first: building
        the DataFrame (categorical columns included) and then stacking its columns as floats
        cost about 0.8 microseconds a row, more than the compiled trees' walk on two threads,
        and at the full scale's 120 million pairs that was over a minute of chapter 9 on the
        main thread. scikit-learn is given :meth:`_Rows.frame`: the same columns and values."""
        p = self.priors_
        attribute_rates = list(p["hcp_item_attribute"])
        names = ["channel", "hcp_rate", "hcp_channel_rate", "item_rate", "item_channel_rate", "hcp_exposures"]
        names += [f"hcp_{name}_rate" for name in attribute_rates]
        names += [*self.hcp_attributes_.columns, *self.item_attributes_.columns]
        out = np.empty((len(names), len(hcps.codes)))  # one contiguous row per feature
        categories: dict[int, np.ndarray] = {}
        written = iter(range(len(names)))

        def spread(per_key: np.ndarray, codes: np.ndarray) -> None:
            """The next feature: the value of each row's key (``per_key[codes]``)."""
            np.take(per_key, codes, out=out[next(written)])

        def categorical(names_: np.ndarray, per_key: np.ndarray, codes: np.ndarray) -> None:
            """The next feature, categorical: the rank among ``names_`` of the category of each
            row's key (``per_key``: each key's position in ``names_``, -1 when it has none)."""
            j = next(written)
            ranks = categories[j] = _ranks(names_)
            np.take(np.where(per_key >= 0, ranks[per_key], np.nan), codes, out=out[j])

        channel_default = _lookup(p["channel"], channels.uniques, p["mean"])  # per channel
        categorical(np.asarray(CHANNELS), pd.Index(CHANNELS).get_indexer(channels.uniques), channels.codes)
        spread(_lookup(p["hcp"], hcps.uniques, p["mean"]), hcps.codes)
        self.pair_tables_["hcp_channel"].lookup(hcps, channels, channel_default, out=out[next(written)])
        spread(_lookup(p["item"], items.uniques, p["mean"]), items.codes)
        self.pair_tables_["item_channel"].lookup(items, channels, channel_default, out=out[next(written)])
        spread(np.log1p(p["hcp_count"].reindex(hcps.uniques).fillna(0.0).to_numpy()), hcps.codes)
        for name in attribute_rates:
            values = self.item_attributes_[name].reindex(items.uniques).astype(object).to_numpy()
            codes, uniques = pd.factorize(values)  # a missing attribute (unknown item) is code -1
            attribute = _Keys(codes[items.codes], uniques)
            self.pair_tables_[f"hcp_{name}"].lookup(hcps, attribute, p["mean"], out=out[next(written)])
        for table, keys in ((self.hcp_attributes_, hcps), (self.item_attributes_, items)):
            for name in table.columns:
                values = table[name].reindex(keys.uniques)
                if isinstance(table[name].dtype, pd.CategoricalDtype):
                    categorical(np.asarray(table[name].cat.categories), values.cat.codes.to_numpy(), keys.codes)
                else:
                    spread(values.to_numpy(np.float64), keys.codes)
        return _Rows(out.T, names, categories)


@dataclass
class _Rows:
    """The reward model's features of some rows: ``matrix`` (rows x features, float64, the
    columns ``names`` in the fold models' order), as the compiled trees read it; a categorical
    feature holds the rank of its category (NaN when missing), and ``categories`` gives, for
    each categorical column, those ranks in the order of the category names (:func:`_ranks`)."""

    matrix: np.ndarray
    names: list[str]
    categories: dict[int, np.ndarray]

    def __len__(self) -> int:
        return len(self.matrix)

    def frame(self, rows: slice = slice(None)) -> pd.DataFrame:
        """The rows (all, or a slice) as scikit-learn is given them, and as the models were
        fitted on them: a DataFrame of the same columns, a categorical feature as a pandas
        Categorical whose categories are the ranks of its names. scikit-learn's encoder codes a
        category by the position of its value among the sorted values seen in fit, so the
        ranks give every category the code its name would (the same model, the same
        predictions), and it encodes numbers in vectorised code where names take a Python
        dictionary lookup per row (about a tenth of chapter 9's time)."""
        matrix = self.matrix[rows]
        columns = {}
        for j, name in enumerate(self.names):
            if j in self.categories:
                ranks = self.categories[j]
                rank = matrix[:, j]
                missing = np.isnan(rank)
                # the Categorical's code of a rank: that rank's position in ``ranks``
                codes = np.argsort(ranks)[np.where(missing, 0, rank).astype(np.int64)]
                columns[name] = pd.Categorical.from_codes(np.where(missing, -1, codes), categories=ranks)
            else:
                columns[name] = matrix[:, j]
        return pd.DataFrame(columns)


def _ranks(names: np.ndarray) -> np.ndarray:
    """The rank of each of ``names`` in sorted order (stable): the value a categorical feature
    of the reward model holds for a category (see :meth:`_Rows.frame`)."""
    ranks = np.empty(len(names), dtype=np.int64)
    ranks[np.argsort(np.asarray(names, dtype=object), kind="stable")] = np.arange(len(names))
    return ranks


def _predict_proba(model, x: pd.DataFrame | np.ndarray, threads: int = PREDICT_THREADS) -> np.ndarray:
    """P(positive class) of each row of ``x`` by the fitted classifier ``model`` (or by its
    :class:`hcp_lib.models.tabular.CompiledTrees`, ``x`` then :attr:`_Rows.matrix`), the rows
    split into ``threads`` contiguous parts (at most one per CPU) predicted side by side, each by
    a thread on one OpenMP thread.

    Why: scikit-learn walks the trees of a gradient-boosted model in one OpenMP parallel region
    per tree, and on its default two OpenMP threads a region waits for both: whenever another
    process holds a core the waiting thread spins, and the 11 million rows of chapter 9 took
    several times longer (0.45 s on one thread against 1.1 s on two for 170,000 rows, beside
    another job). Python threads on parts of the rows wait for each other once, at the end, and
    the trees' walk releases the GIL. Each row's probability is computed alone, so the values
    are those of one ``predict_proba`` call on all the rows."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from ..config import usable_cpus
    from ..models.tabular import CompiledTrees

    def predict(part) -> np.ndarray:
        if isinstance(model, CompiledTrees):
            return model.predict(part)
        # the OpenMP thread count is a per-thread setting: each thread sets its own
        with threadpool_limits(limits=1, user_api="openmp"):
            return model.predict_proba(part)[:, 1]

    threads = max(1, min(int(threads), usable_cpus(), len(x)))
    if threads == 1:
        return predict(x)
    bounds = np.linspace(0, len(x), threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        take = (lambda a, b: x[a:b]) if isinstance(x, np.ndarray) else (lambda a, b: x.iloc[a:b])
        parts = pool.map(predict, [take(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])])
        return np.concatenate(list(parts))


@dataclass
class _Keys:
    """Ids as integer ``codes`` into their distinct values ``uniques`` (-1: missing)."""

    codes: np.ndarray
    uniques: np.ndarray

    @classmethod
    def of(cls, values) -> _Keys:
        """The ids ``values`` as strings (as ``np.asarray(values).astype(str)`` writes them), coded.

        A categorical's own codes are kept (its categories are few, its rows may be millions);
        anything else is factorised."""
        if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
            categorical = pd.Categorical(values)
            if (categorical.codes >= 0).all():
                # categories that read the same as strings are merged, as the strings would be
                strings = np.asarray(categorical.categories).astype(str)
                codes, uniques = pd.factorize(strings)
                return cls(codes[categorical.codes], np.asarray(uniques, dtype=object))
        codes, uniques = pd.factorize(np.asarray(values).astype(str))
        return cls(codes, np.asarray(uniques, dtype=object))

    def take(self, rows: np.ndarray) -> _Keys:
        """The keys of ``rows`` only (the same distinct values)."""
        return _Keys(self.codes[rows], self.uniques)


@dataclass
class _PairTable:
    """A prior indexed by pairs of keys, as a matrix: ``values[i, j]`` is the prior of
    (``first[i]``, ``second[j]``), NaN where the logs hold no such pair. Read by positions
    (:meth:`lookup`), it answers as a pandas reindex by pairs would, without building the pairs."""

    first: pd.Index
    second: pd.Index
    values: np.ndarray

    @classmethod
    def of(cls, table: pd.Series) -> _PairTable:
        """The matrix of ``table`` (a Series with a two-level index of unique pairs)."""
        if not len(table):
            return cls(pd.Index([], dtype=object), pd.Index([], dtype=object), np.zeros((0, 0)))
        first_codes, first = pd.factorize(table.index.get_level_values(0))
        second_codes, second = pd.factorize(table.index.get_level_values(1))
        values = np.full((len(first), len(second)), np.nan)
        values[first_codes, second_codes] = table.to_numpy(np.float64)
        return cls(pd.Index(first), pd.Index(second), values)

    def lookup(self, first: _Keys, second: _Keys, default, out: np.ndarray | None = None) -> np.ndarray:
        """The prior of each row's (``first``, ``second``) pair; ``default`` (a number, or one per
        value of ``second.uniques``) where the pair is absent or a key missing (code -1; a
        missing second key takes the default of the last of ``second.uniques``, as
        ``default[second.codes]`` would). Written into ``out`` when given.

        The priors of every pair of distinct keys are found first (a small matrix: the keys'
        distinct values by the table's, with a last row and column for a missing key), then
        read for each row by its two codes: one gather per row."""
        rows = np.append(self.first.get_indexer(first.uniques), -1)  # -1: not in the table
        cols = np.append(self.second.get_indexer(second.uniques), -1)
        padded = np.full((len(self.first) + 1, len(self.second) + 1), np.nan)  # its last row/column: absent
        padded[:-1, :-1] = self.values
        by_keys = padded[np.ix_(rows, cols)]
        default = np.asarray(default, dtype=np.float64)
        if default.ndim:  # one per value of ``second``, and for a missing one (code -1) the last's
            default = np.append(default, default[-1:])[None, :]
        by_keys = np.where(np.isnan(by_keys), default, by_keys)
        if out is None:
            out = np.empty(len(first.codes))
        # a missing key (code -1) reads the last row or column: the defaults
        out[...] = by_keys[first.codes, second.codes]
        return out


def _attributes(table: pd.DataFrame | None, key: str) -> pd.DataFrame:
    """Attribute columns indexed by ``key``: strings become categories, numbers stay numbers."""
    if table is None:
        return pd.DataFrame(index=pd.Index([], dtype=object))
    if key not in table.columns:
        raise OPEError(f"attribute table lacks its key column {key!r}")
    table = table.drop_duplicates(key).set_index(table[key].astype(str).rename(None)).drop(columns=key)
    out = pd.DataFrame(index=table.index)
    for column in table.columns:
        if pd.api.types.is_numeric_dtype(table[column]) and not pd.api.types.is_bool_dtype(table[column]):
            out[f"attr_{column}"] = table[column].astype(np.float64)
        else:
            values = table[column].astype(str)
            out[f"attr_{column}"] = pd.Categorical(values, categories=sorted(values.unique()))
    return out


def _rate(engaged: pd.Series, by, mean) -> pd.Series:
    grouped = engaged.groupby(by)
    return (grouped.sum() + PRIOR_STRENGTH * mean) / (grouped.count() + PRIOR_STRENGTH)


def _priors(history: pd.DataFrame, item_attributes: pd.DataFrame) -> dict[str, Any]:
    engaged = history["engaged"].astype(np.float64)
    mean = float(engaged.mean()) if len(history) else 0.0
    categorical = [c for c in item_attributes.columns if isinstance(item_attributes[c].dtype, pd.CategoricalDtype)]
    by_attribute = {}
    for column in categorical:  # the HCP's engagement rate on items of each value (e.g. each area)
        values = item_attributes[column].reindex(history["content_id"].to_numpy()).astype(object).to_numpy()
        by_attribute[column] = (
            _rate(engaged, [history["hcp_id"].to_numpy(), values], mean) if len(history) else pd.Series(dtype=float)
        )
    channel_rate = _rate(engaged, history["channel"], mean) if len(history) else pd.Series(dtype=float)
    return {
        "mean": mean,
        "channel": channel_rate,
        "hcp": _rate(engaged, history["hcp_id"], mean),
        "item": _rate(engaged, history["content_id"], mean),
        "hcp_channel": _rate(engaged, [history["hcp_id"], history["channel"]], mean),
        "item_channel": _rate(engaged, [history["content_id"], history["channel"]], mean),
        "hcp_count": history.groupby("hcp_id").size().astype(np.float64),
        "hcp_item_attribute": by_attribute,
    }


def _lookup(table: pd.Series, keys, default) -> np.ndarray:
    values = table.reindex(keys).to_numpy(np.float64) if len(table) else np.full(len(keys), np.nan)
    return np.where(np.isnan(values), default, values)


# --- the estimators -----------------------------------------------------------------------------


@dataclass
class _Aligned:
    """Logs and one policy lined up by HCP (rows of ``hcp_ids``)."""

    hcp_ids: np.ndarray
    log_row: np.ndarray  # HCP position of each logged exposure (-1: not in the population)
    log_weight: np.ndarray  # the policy's weight of each logged exposure's action
    action_row: np.ndarray  # HCP position of each policy action
    defined: np.ndarray  # HCPs the policy is defined for (bool, per HCP)


def _align(logs: pd.DataFrame, policy: Policy, hcp_ids: np.ndarray) -> _Aligned:
    index = pd.Index(hcp_ids)
    keys = ["hcp_id", "content_id", "channel"]
    weights = policy.actions.groupby(keys, sort=False)["weight"].sum()
    log_weight = weights.reindex(pd.MultiIndex.from_frame(logs[keys])).fillna(0.0).to_numpy(np.float64)
    action_row = index.get_indexer(policy.actions["hcp_id"])
    defined = np.zeros(len(hcp_ids), dtype=bool)
    rows = index.get_indexer(policy.hcp_ids)
    defined[rows[rows >= 0]] = True
    log_row = index.get_indexer(logs["hcp_id"])
    log_weight = np.where((log_row >= 0) & defined[np.maximum(log_row, 0)], log_weight, 0.0)
    return _Aligned(hcp_ids, log_row, log_weight, action_row, defined)


def _per_hcp(rows: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    ok = rows >= 0
    return np.bincount(rows[ok], weights=values[ok], minlength=n)


def _kish(weights: np.ndarray) -> float:
    weights = weights[weights > 0]
    return float(weights.sum() ** 2 / (weights**2).sum()) if len(weights) else 0.0


def _estimator_terms(
    logs: pd.DataFrame,
    log_row: np.ndarray,
    w: np.ndarray,
    n_days: int,
    clip: float,
    defined: np.ndarray,
    mean_weight: float,
    ess_hcps: float,
    dm: np.ndarray | None = None,
    reward_logged: np.ndarray | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, float, int]]:
    """The estimators every policy shares, from the policy's weight ``w`` of each logged
    exposure (its population row ``log_row``): IPS, clipped IPS and SNIPS (``mean_weight``:
    the mean of the policy's total weight per defined HCP), and with ``dm`` (the per-HCP
    reward-model value of the policy) and ``reward_logged`` the direct method and doubly
    robust; ``defined`` is 1 for the HCPs the policy is defined for. One implementation for
    :func:`policy_terms` and :meth:`UniformPolicy.terms`."""
    n = len(defined)
    r = logs["engaged"].to_numpy(np.float64)
    inverse = 1.0 / logs["propensity"].to_numpy(np.float64)
    matched = int((w > 0).sum())
    ess_weights = _kish(w * inverse)
    terms = {
        "ips": (_per_hcp(log_row, w * inverse * r, n) / n_days, defined, ess_weights, matched),
        "ips_clipped": (
            _per_hcp(log_row, w * np.minimum(inverse, clip) * r, n) / n_days,
            defined,
            _kish(w * np.minimum(inverse, clip)),
            matched,
        ),
        "snips": (
            mean_weight * _per_hcp(log_row, w * inverse * r, n),
            _per_hcp(log_row, w * inverse, n),
            ess_weights,
            matched,
        ),
    }
    if dm is not None and reward_logged is not None:
        terms["dm_reward"] = (dm, defined, ess_hcps, matched)
        correction = _per_hcp(log_row, w * inverse * (r - reward_logged), n) / n_days
        terms["dr"] = (dm + correction, defined, ess_weights, matched)
    return terms


def policy_terms(
    logs: pd.DataFrame,
    policy: Policy,
    hcp_ids: np.ndarray,
    n_days: int,
    clip: float,
    reward_logged: np.ndarray | None = None,
    reward_actions: np.ndarray | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, float, int]]:
    """Per-HCP (numerator, denominator) of every estimator for one policy, with its effective
    sample size and number of matched logged exposures: {estimator: (num, den, ess, matched)}.
    ``reward_logged`` / ``reward_actions``: r_hat at each logged exposure / each policy action
    (None: no ``dm_reward`` nor ``dr``); ``truth`` is added when the actions carry
    ``true_probability``."""
    n = len(hcp_ids)
    aligned = _align(logs, policy, hcp_ids)
    defined = aligned.defined.astype(np.float64)
    w = aligned.log_weight
    matched = int((w > 0).sum())
    act_w = policy.actions["weight"].to_numpy(np.float64)
    act_w = np.where(aligned.action_row >= 0, act_w, 0.0)
    mean_weight = float(_per_hcp(aligned.action_row, act_w, n)[aligned.defined].sum() / max(aligned.defined.sum(), 1))
    ess_hcps = float(aligned.defined.sum())
    dm = None if reward_actions is None else _per_hcp(aligned.action_row, act_w * reward_actions, n)
    terms = _estimator_terms(logs, aligned.log_row, w, n_days, clip, defined, mean_weight, ess_hcps, dm, reward_logged)
    if "model_probability" in policy.actions.columns:
        q = policy.actions["model_probability"].to_numpy(np.float64)
        terms["dm_model"] = (_per_hcp(aligned.action_row, act_w * q, n), defined, ess_hcps, matched)
    if "logged_outcome" in policy.actions.columns:
        observed = policy.actions["logged_outcome"].to_numpy(np.float64)
        terms = {"observed": (_per_hcp(aligned.action_row, act_w * observed, n), defined, ess_hcps, matched)}
    if "true_probability" in policy.actions.columns:
        truth = policy.actions["true_probability"].to_numpy(np.float64)
        terms["truth"] = (_per_hcp(aligned.action_row, act_w * truth, n), defined, ess_hcps, matched)
    return terms


def estimate_policy_values(
    logs: pd.DataFrame,
    policies: Mapping[str, Policy | UniformPolicy | pd.DataFrame],
    *,
    hcp_ids=None,
    n_days: int | None = None,
    reward: RewardModel | Callable | None = None,
    clip: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    source: str = "logged table",
    progress: Callable | None = None,
) -> pd.DataFrame:
    """Every policy's value by every estimator, from ``logs`` alone (truth where given).

    Parameters
    ----------
    logs : DataFrame
        One row per logged exposure with :data:`LOG_COLUMNS` (checked by
        :func:`validate_logs`; a missing or non-positive propensity is refused).
    policies : mapping of name to :class:`Policy` (or its actions table)
        The target policies.
    hcp_ids : array-like, optional
        The HCPs whose logs count (default: every HCP in ``logs``); a policy's value is the
        mean over the HCPs of this population it is defined for.
    n_days : int, optional
        Days of the logged window (default: :func:`window_days` of ``logs``).
    reward : RewardModel or callable, optional
        ``reward(hcp_ids, content_ids, channels) -> r_hat`` (a fitted :class:`RewardModel`'s
        ``predict``); without it, ``dm_reward`` and ``dr`` are left out.
    clip : float, optional
        Cap of the clipped IPS weights (default: :func:`clip_level` of the logs).
    n_bootstrap, seed, level
        Resamples of HCPs behind each interval (shared by every policy and estimator).

    Returns
    -------
    DataFrame
        One row per (policy, estimator): ``value``, ``ci_low``, ``ci_high``, ``ess``,
        ``matched`` (logged exposures whose action the policy takes), ``n_hcps``; and
        ``truth``, ``error``, ``relative_error``, ``covered`` where the policy's actions
        carry ``true_probability``. ``table.attrs`` records what was used: ``clip``,
        ``n_days``, ``n_logs`` and ``n_hcps``.
    """
    from ..metrics import bootstrap_ratio, resample_weights

    logs = validate_logs(logs, source)
    population = np.unique(np.asarray(hcp_ids if hcp_ids is not None else logs["hcp_id"]).astype(str))
    logs = logs[pd.Index(population).get_indexer(logs["hcp_id"]) >= 0].reset_index(drop=True)
    if logs.empty:
        raise OPEError(f"{source}: no logged exposure of the given HCPs")
    n_days = int(n_days if n_days is not None else window_days(logs))
    if n_days < 1:
        raise OPEError(f"n_days must be at least 1, got {n_days}")
    clip = float(clip if clip is not None else clip_level(logs["propensity"]))
    predict = reward.predict if isinstance(reward, RewardModel) else reward
    reward_logged = (
        None
        if predict is None
        else np.asarray(predict(logs["hcp_id"], logs["content_id"], logs["channel"]), dtype=np.float64)
    )
    weights = resample_weights(len(population), n_bootstrap, seed)
    rows = []
    items = list(policies.items())
    for name, policy in each(progress, items, "policies"):
        policy = (policy if isinstance(policy, Policy | UniformPolicy) else Policy(policy)).checked(name)
        if isinstance(policy, UniformPolicy):
            if isinstance(reward, RewardModel):  # its millions of pairs: compile the trees at once
                reward.expect(policy.hcp_ids, policy.candidates.sum(axis=1) * len(CHANNELS))
            terms = policy.terms(logs, population, n_days, clip, reward_logged, predict)
        else:
            reward_actions = (
                None
                if predict is None
                else np.asarray(
                    predict(policy.actions["hcp_id"], policy.actions["content_id"], policy.actions["channel"]),
                    dtype=np.float64,
                )
            )
            terms = policy_terms(logs, policy, population, n_days, clip, reward_logged, reward_actions)
        names = [e for e in (*ESTIMATORS, "truth") if e in terms]
        point, low, high, _ = bootstrap_ratio(
            np.vstack([terms[e][0] for e in names]), np.vstack([terms[e][1] for e in names]), weights, level
        )
        truth = point[names.index("truth")] if "truth" in terms else np.nan
        n_defined = int(policy_defined(policy, population).sum())
        if policy.logged_probability is not None:
            names, point, low, high = _with_calibrated(
                names, point, low, high, terms, logs, policy, population, weights, level
            )
        for i, estimator in enumerate(names):
            if estimator == "truth":
                continue
            rows.append(
                {
                    "policy": name,
                    "estimator": estimator,
                    "value": point[i],
                    "ci_low": low[i],
                    "ci_high": high[i],
                    "ess": terms[estimator][2],
                    "matched": terms[estimator][3],
                    "n_hcps": n_defined,
                    "truth": truth,
                }
            )
    table = pd.DataFrame(rows)
    table["error"] = table["value"] - table["truth"]
    table["relative_error"] = table["error"] / table["truth"]
    table["covered"] = (table["ci_low"] <= table["truth"]) & (table["truth"] <= table["ci_high"])
    table.attrs.update(clip=clip, n_days=n_days, n_logs=len(logs), n_hcps=len(population))
    return table


def _with_calibrated(names, point, low, high, terms, logs, policy, population, weights, level):
    """Add ``dm_calibrated``: the model's probabilities of the policy's actions mapped through
    an isotonic regression of the logged outcomes on the model's probabilities of the logged
    exposures; refitted with each resample's HCP weights (scikit-learn's IsotonicRegression)."""
    from sklearn.isotonic import IsotonicRegression

    from ..metrics import percentile_interval

    if "exposure_id" not in logs.columns:
        raise OPEError(
            "dm_calibrated needs an 'exposure_id' column in the logged table to find the model's "
            "probability of each logged exposure"
        )
    q_logged = policy.logged_probability.reindex(logs["exposure_id"].to_numpy()).to_numpy(np.float64)
    known = np.isfinite(q_logged)
    if not known.any():
        return names, point, low, high
    row = pd.Index(population).get_indexer(logs["hcp_id"])[known]
    q, r = q_logged[known], logs["engaged"].to_numpy(np.float64)[known]
    # in the order IsotonicRegression sorts them (np.lexsort((y, X)), stable), once for the 1,000
    # fits: each fit's own sort then finds them in order, and its rows, ties included, come in
    # the same sequence as from the logs' order, so every fit is the same
    order = np.lexsort((r, q))
    row, q, r = row[order], q[order], r[order]
    act_row = pd.Index(population).get_indexer(policy.actions["hcp_id"])
    act_w = np.where(act_row >= 0, policy.actions["weight"].to_numpy(np.float64), 0.0)
    q_act = policy.actions["model_probability"].to_numpy(np.float64)
    defined = terms["dm_model"][1]

    def value(hcp_weight: np.ndarray) -> float:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(q, r, sample_weight=hcp_weight[row])
        per_hcp = _per_hcp(act_row, act_w * iso.predict(q_act), len(population))
        return float((hcp_weight * per_hcp).sum() / (hcp_weight * defined).sum())

    resampled = np.array([value(w) for w in weights])
    estimate = value(np.ones(len(population)))
    lo, hi = percentile_interval(resampled, level)
    terms["dm_calibrated"] = (None, None, terms["dm_model"][2], terms["dm_model"][3])
    return names + ["dm_calibrated"], np.append(point, estimate), np.append(low, lo), np.append(high, hi)


def policy_defined(policy: Policy, hcp_ids: np.ndarray) -> np.ndarray:
    """Which HCPs of ``hcp_ids`` the (checked) policy is defined for."""
    return pd.Index(hcp_ids).isin(policy.hcp_ids)


def rank_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per estimator, Kendall's tau between its estimates and the true values over the policies
    that have both (scipy.stats.kendalltau, tau-b), and the number of policies."""
    from scipy.stats import kendalltau

    rows = []
    for estimator, group in table.dropna(subset=["value", "truth"]).groupby("estimator", sort=False):
        tau = kendalltau(group["value"], group["truth"]).statistic if len(group) > 1 else np.nan
        rows.append({"estimator": estimator, "kendall_tau": float(tau), "n_policies": len(group)})
    return pd.DataFrame(rows)


# --- the chapter's stage ------------------------------------------------------------------------

#: models whose ``score`` in recommendations.parquet is an engagement probability (dm_model)
PROBABILITY_FAMILIES = ("hybrid", "tabular", "ablation", "v0.1")
#: the engagement models whose choice the chapter compares (validation log-loss vs estimators)
SELECTION_MODELS = ("hybrid", "tabular", "v0.1_classifier")
#: where metrics.json keeps the true value of each reference policy (book name -> ``policy`` key);
#: ``uniform_random`` is the uniform choice among each HCP's candidate pairs, not the ``random``
#: recommender (a model of chapter 4)
REFERENCE_POLICIES = {name: key for key, name in domain.REFERENCE_POLICIES.items()}
#: what the chapter calls each estimator
ESTIMATOR_LABELS = {
    "ips": "IPS",
    "ips_clipped": "clipped IPS",
    "snips": "SNIPS",
    "dm_model": "DM (model's own)",
    "dm_calibrated": "DM (model's own, recalibrated)",
    "dm_reward": "DM (reward model)",
    "dr": "doubly robust",
    "observed": "observed (on-policy)",
}


@dataclass
class OPEResult:
    """The chapter's tables: ``estimates`` (:func:`estimate_policy_values` plus ``family``),
    ``agreement`` (:func:`rank_agreement`), ``scores`` (per estimator: coverage, median
    absolute relative error, the hybrid's relative error), ``selection`` and ``summary``."""

    estimates: pd.DataFrame
    agreement: pd.DataFrame
    scores: pd.DataFrame
    selection: pd.DataFrame
    summary: dict = field(default_factory=dict)


def run_policies(run_dir: str | Path, setting) -> tuple[dict[str, Policy], dict[str, str]]:
    """The run's policies as :class:`Policy` tables with their true probabilities: each model's
    top-1 (content, channel) of ``evaluation/recommendations.parquet`` (its own probability
    where it has one), :data:`UNIFORM_NAME` (uniform over each HCP's candidate pairs), notebook 07's
    ``plan`` (every evaluated HCP; no action = 0) and ``business_as_usual`` (the first logged
    test exposure, replayed). Returns (policies, family of each)."""
    from ..config import RunDir
    from .evaluate import RECOMMENDATION_SCHEMA

    run = RunDir(Path(run_dir))
    report = io.read_json(run.evaluation / "metrics.json")
    families = {m: d["family"] for m, d in report["models"].items()}
    recommendations = io.read_parquet(run.evaluation / "recommendations.parquet", RECOMMENDATION_SCHEMA)
    top1 = recommendations[recommendations["rank"] == 1]
    policies: dict[str, Policy] = {}
    for model, rows in top1.groupby("model", sort=False):
        actions = rows[["hcp_id", "content_id", "channel"]].assign(
            true_probability=rows["true_engagement_prob"].to_numpy()
        )
        logged = None
        if families.get(model) in PROBABILITY_FAMILIES:
            actions["model_probability"] = rows["score"].to_numpy(np.float64)
            exposure_path = run.hybrid / "test_exposure_probs" / f"{model}.parquet"
            if exposure_path.exists():  # the engagement models' probability of each logged test exposure
                table = io.read_parquet(exposure_path)
                logged = pd.Series(table["engagement_prob"].to_numpy(np.float64), index=table["exposure_id"].to_numpy())
        policies[str(model)] = Policy(actions.reset_index(drop=True), logged_probability=logged)
    candidates = ~setting.exclude
    pairs = candidates.sum(axis=1) * len(CHANNELS)
    true_sum = np.einsum("hc,hck->h", candidates.astype(np.float64), setting.oracle)
    policies[UNIFORM_NAME] = UniformPolicy(
        candidates,
        np.asarray(setting.hcp_ids).astype(str),
        setting.content_ids.to_numpy().astype(str),
        truth=np.divide(true_sum, pairs, out=np.zeros(len(pairs)), where=pairs > 0),
    )
    families[UNIFORM_NAME] = "reference"
    plan_path = run.plan / "plan.parquet"
    if plan_path.exists():
        plan = io.read_parquet(plan_path)
        rows = pd.Index(setting.hcp_ids).get_indexer(plan["hcp_id"].astype(str))
        if (rows < 0).any():
            raise OPEError(
                f"{plan_path}: HCP {plan['hcp_id'].iloc[int(np.flatnonzero(rows < 0)[0])]!r} is not evaluated"
            )
        truth = setting.oracle[
            rows,
            setting.content_ids.get_indexer(plan["content_id"].astype(str)),
            pd.Index(CHANNELS).get_indexer(plan["channel"].astype(str)),
        ]
        policies["plan"] = Policy(
            plan[["hcp_id", "content_id", "channel"]].assign(true_probability=truth), hcp_ids=setting.hcp_ids
        )
        families["plan"] = "plan"
    first = setting.test_rows.drop_duplicates("row")
    policies[BAU_NAME] = Policy(
        pd.DataFrame(
            {
                "hcp_id": first["hcp_id"].astype(str).to_numpy(),
                "content_id": first["content_id"].astype(str).to_numpy(),
                "channel": first["channel"].astype(str).to_numpy(),
                "true_probability": setting.oracle[
                    first["row"].to_numpy(),
                    first["col"].to_numpy(),
                    pd.Index(CHANNELS).get_indexer(first["channel"].astype(str)),
                ],
                "logged_outcome": first["engaged"].to_numpy(np.float64),
            }
        )
    )
    families[BAU_NAME] = "reference"
    return policies, families


def run_ope(
    run_dir: str | Path,
    seed: int,
    n_bootstrap: int,
    plan_settings=None,
    clip_quantile: float = CLIP_QUANTILE,
    reward_folds: int = 5,
    progress: Callable | None = None,
) -> OPEResult:
    """Estimate every policy of the run from its logged test window, beside the truth (the
    chapter's one call). The reward model is fitted on the logs of the validation and test
    windows (cross-fitted by HCP) with features from the logs before them and the HCPs' and
    items' attributes. ``progress`` (e.g. ``tqdm``) wraps the loop over the policies."""
    from ..world import synth
    from .evaluate import load_setting

    setting = load_setting(run_dir, plan_settings)
    world = synth.load_world(run_dir)
    interactions = world.interactions
    split = setting.split
    in_population = interactions["hcp_id"].astype(str).isin(set(setting.hcp_ids))
    window = (interactions["exposed_at"] >= split.test_start) & (interactions["exposed_at"] < split.test_end)
    columns = list(LOG_COLUMNS)
    logs = interactions.loc[window & in_population, ["exposure_id", *columns]].reset_index(drop=True)
    # The reward model learns from the validation and test windows (cross-fitted by HCP), with
    # features from the exposures before the validation window: twice the rows of the test
    # window alone, and no row's own outcome among its features.
    learn = (interactions["exposed_at"] >= split.valid_start) & (interactions["exposed_at"] < split.test_end)
    learn_logs = interactions.loc[learn & in_population, columns].reset_index(drop=True)
    history = interactions.loc[interactions["exposed_at"] < split.valid_start, columns].reset_index(drop=True)
    hcp_attributes = world.hcps[
        [
            "hcp_id",
            "specialty",
            "region",
            "practice_setting",
            "prescribing_decile",
            "digital_affinity",
            "years_in_practice",
        ]
    ]
    item_attributes = world.content[["content_id", "therapeutic_area", "content_type"]]
    reward = RewardModel(n_folds=reward_folds, seed=seed).fit(learn_logs, history, hcp_attributes, item_attributes)
    policies, families = run_policies(run_dir, setting)
    n_days = int((pd.Timestamp(split.test_end) - pd.Timestamp(split.test_start)).days)
    clip = clip_level(logs["propensity"], clip_quantile)
    estimates = estimate_policy_values(
        logs,
        policies,
        hcp_ids=setting.hcp_ids,
        n_days=n_days,
        reward=reward,
        clip=clip,
        n_bootstrap=n_bootstrap,
        seed=seed,
        source="world/hcp_interaction_data.parquet",
        progress=progress,
    )
    estimates.insert(1, "family", estimates["policy"].map(families).fillna("model"))
    report = io.read_json(Path(run_dir) / "evaluation" / "metrics.json")
    checked = _check_truth(estimates, report)
    off_policy = estimates[estimates["estimator"] != "observed"]
    agreement = rank_agreement(off_policy)
    scores = estimator_scores(off_policy)
    selection = selection_table(off_policy, report)
    summary = {
        "clip": clip,
        "clip_quantile": clip_quantile,
        "n_days": n_days,
        "n_logs": int(len(logs)),
        "n_hcps": int(len(setting.hcp_ids)),
        "n_policies": int(estimates["policy"].nunique()),
        "propensity": {
            "min": float(logs["propensity"].min()),
            "median": float(logs["propensity"].median()),
            "max": float(logs["propensity"].max()),
        },
        "truth_checked_against_metrics_json": checked,
        "reward_folds": reward_folds,
        "best_estimator": str(scores.iloc[0]["estimator"]) if len(scores) else None,
    }
    return OPEResult(estimates, agreement, scores, selection, summary)


def _check_truth(estimates: pd.DataFrame, report: dict) -> int:
    """Each model policy's truth must be the evaluation's policy value (one definition); returns
    how many were checked."""
    truth = estimates.drop_duplicates("policy").set_index("policy")["truth"]
    checked = 0
    for policy, value in truth.items():
        if policy in REFERENCE_POLICIES:
            entry = report["policy"].get(REFERENCE_POLICIES[policy], {}).get("policy_value")
        else:
            entry = report["metrics"].get(policy, {}).get("policy_value")
        if entry and entry.get("value") is not None:
            if abs(entry["value"] - value) > 1e-6:
                raise OPEError(
                    f"policy {policy!r}: true value {value:.6f} differs from metrics.json's policy_value "
                    f"{entry['value']:.6f}; the two must come from the same oracle"
                )
            checked += 1
    return checked


def estimator_scores(estimates: pd.DataFrame, model: str = "hybrid") -> pd.DataFrame:
    """Per estimator: the share of the policies it applies to whose interval covers the truth (a
    policy it cannot estimate, e.g. SNIPS with no matched exposure, counts as a miss), the
    median absolute relative error over those it estimates, Kendall's tau, and the relative
    error on ``model``'s value; best first: the estimators that estimate at least
    :data:`MIN_ESTIMATED_SHARE` of their policies, by lowest median error (an estimator that
    answers for a few policies only is not a usable one), then the others."""
    rows = []
    agreement = rank_agreement(estimates).set_index("estimator")
    for estimator, group in estimates.groupby("estimator", sort=False):
        on_model = group.loc[group["policy"] == model, "relative_error"]
        estimated = group["value"].notna()
        rows.append(
            {
                "estimator": estimator,
                "coverage": float(group["covered"].mean()),
                "estimated": int(estimated.sum()),
                "median_abs_relative_error": float(group.loc[estimated, "relative_error"].abs().median())
                if estimated.any()
                else np.nan,
                "kendall_tau": float(agreement["kendall_tau"].get(estimator, np.nan)),
                f"{model}_relative_error": float(on_model.iloc[0]) if len(on_model) else np.nan,
                "n_policies": len(group),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["usable"] = table["estimated"] >= MIN_ESTIMATED_SHARE * table["n_policies"]
    table = table.sort_values(
        ["usable", "median_abs_relative_error", "coverage"], ascending=[False, True, False], na_position="last"
    )
    return table.drop(columns="usable").reset_index(drop=True)


def selection_table(estimates: pd.DataFrame, report: dict, models=SELECTION_MODELS) -> pd.DataFrame:
    """Which engagement model each criterion would choose: the validation log-loss of the
    evaluation (``selection`` of metrics.json), each estimator's highest estimated value, and
    the oracle's highest true value; with the chosen model's true value."""
    candidates = estimates[estimates["policy"].isin(models)]
    truth = candidates.drop_duplicates("policy").set_index("policy")["truth"]
    rows = []
    chosen = (report.get("selection") or {}).get("chosen")
    if chosen is not None:
        rows.append(
            {
                "criterion": "validation log-loss (logged data)",
                "chooses": chosen,
                "true_value": float(truth.get(chosen, np.nan)),
            }
        )
    for estimator, group in candidates.dropna(subset=["value"]).groupby("estimator", sort=False):
        best = group.loc[group["value"].idxmax(), "policy"]
        rows.append(
            {
                "criterion": ESTIMATOR_LABELS.get(estimator, estimator),
                "chooses": best,
                "true_value": float(truth.get(best, np.nan)),
            }
        )
    if len(truth):
        rows.append({"criterion": "oracle (true value)", "chooses": truth.idxmax(), "true_value": float(truth.max())})
    return pd.DataFrame(rows)


def write_outputs(result: OPEResult, run_dir: str | Path) -> dict[str, Path]:
    """Write ``ope/estimates.parquet`` and ``ope/summary.json`` (with the agreement, scores and
    selection tables) and the stage summary ``metrics/ope.json``."""
    from ..config import RunDir

    run = RunDir(Path(run_dir))
    folder = run.root / "ope"
    summary = {
        **result.summary,
        "agreement": result.agreement.to_dict("records"),
        "scores": result.scores.to_dict("records"),
        "selection": result.selection.to_dict("records"),
    }
    summary = _json_ready(summary)
    return {
        "estimates": io.write_parquet(result.estimates, folder / "estimates.parquet"),
        "summary": io.write_json(summary, folder / "summary.json"),
        "metrics": io.write_json(
            {k: summary[k] for k in ("best_estimator", "n_logs", "clip", "scores")}, run.metrics / "ope.json"
        ),
    }


def _json_ready(value):
    """NaN -> None (JSON has no NaN), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _matches(n: int) -> str:
    if n == 0:
        return "no logged exposure matches"
    return "only 1 logged exposure matches" if n == 1 else f"only {n:,} logged exposures match"


def verdict(result: OPEResult) -> str:
    """The chapter's answer in plain words, from the numbers: whether any estimator's intervals
    can be trusted here (coverage at least :data:`TRUSTED_COVERAGE`), which estimator comes
    closest, which not to use, and whether the estimators would have chosen the model the
    oracle prefers."""
    scores = result.scores
    if scores.empty:
        return "No policy could be estimated from the logged window."
    label = lambda e: ESTIMATOR_LABELS.get(e, e)  # noqa: E731
    best, worst = scores.iloc[0], scores.iloc[-1]
    hybrid = best.get("hybrid_relative_error", np.nan)
    closest = (
        f"**{label(best['estimator'])}** comes closest: its median error is "
        f"{best['median_abs_relative_error']:.1%} of the true value over the {int(best['estimated'])} policies "
        "it estimates" + (f", and it misses the hybrid's value by {hybrid:+.1%}" if np.isfinite(hybrid) else "")
    )
    covering = scores[scores["coverage"] >= TRUSTED_COVERAGE]
    if len(covering):
        parts = [
            f"{closest}; its 95% intervals cover the true value for {best['coverage']:.0%} of its policies."
            if best["estimator"] in set(covering["estimator"])
            else f"{closest}. Only {', '.join(label(e) for e in covering['estimator'])} has intervals that cover the "
            f"truth for at least {TRUSTED_COVERAGE:.0%} of the policies."
        ]
    else:
        top = scores.sort_values("coverage", ascending=False).iloc[0]
        parts = [
            f"No estimator's 95% intervals can be trusted here: the best coverage is {top['coverage']:.0%} of the "
            f"policies ({label(top['estimator'])}), far from 95%. {closest}, but its intervals cover the truth "
            f"for {best['coverage']:.0%} of them: they only say which HCPs happened to be sampled, not how wrong "
            "the estimate's assumptions are."
        ]
    parts.append(
        f"**{label(worst['estimator'])}** is the one not to use: median error {worst['median_abs_relative_error']:.0%}."
    )
    weighting = scores[scores["estimator"].isin(["ips", "snips"])]
    if len(weighting):
        parts.append(
            "Weighting by the logged propensities fails because a model's first choice is rarely what the logging "
            f"policy sent: {_matches(int(result.estimates['matched'].median()))} (median over policies) a policy's "
            "actions, each weighted by the inverse of a propensity of about "
            f"{result.summary['propensity']['median']:.4f}."
        )
    sel = result.selection.set_index("criterion")["chooses"] if len(result.selection) else pd.Series(dtype=str)
    oracle_choice = sel.get("oracle (true value)")
    logged_choice = sel.get("validation log-loss (logged data)")
    if oracle_choice is not None and logged_choice is not None:
        agree = sel.drop(["oracle (true value)", "validation log-loss (logged data)"], errors="ignore")
        same = [c for c, m in agree.items() if m == oracle_choice]
        parts.append(
            f"The oracle prefers **{oracle_choice}**; the validation log-loss chose **{logged_choice}**"
            f" ({'the same' if logged_choice == oracle_choice else 'another'} model), and {len(same)} of "
            f"{len(agree)} estimators would have chosen the oracle's model."
        )
    return " ".join(parts)


# --- presentation (the chapter's tables and figure) ----------------------------------------------


def data_sentence(result: OPEResult) -> str:
    """What the chapter estimated from: counts of the logged window, the clip level."""
    s = result.summary
    return (
        f"{s['n_policies']} policies are estimated from {s['n_logs']:,} logged exposures of {s['n_hcps']:,} HCPs over "
        f"the {s['n_days']}-day test window. The logged propensities range from {s['propensity']['min']:.2g} to "
        f"{s['propensity']['max']:.2g} (median {s['propensity']['median']:.2g}); clipped IPS caps each weight at "
        f"{s['clip']:,.0f}, the inverse of the {s['clip_quantile']:.0%} quantile of the propensities. The reward "
        f"model is cross-fitted over {s['reward_folds']} folds of HCPs. Each policy's true value is the oracle's, "
        f"the same as chapter 6's policy value ({s['truth_checked_against_metrics_json']} policies checked equal)."
    )


def scores_table(result: OPEResult) -> pd.DataFrame:
    """:attr:`OPEResult.scores` with readable names and rounded numbers."""
    table = result.scores.copy()
    return pd.DataFrame(
        {
            "estimator": table["estimator"].map(lambda e: ESTIMATOR_LABELS.get(e, e)),
            "intervals covering the truth": table["coverage"].map("{:.0%}".format),
            "median |error| / truth": table["median_abs_relative_error"].map("{:.1%}".format),
            "Kendall's τ": table["kendall_tau"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
            "error on the hybrid": table["hybrid_relative_error"].map(lambda v: "" if pd.isna(v) else f"{v:+.1%}"),
            "policies estimated": table["estimated"].astype(str) + " of " + table["n_policies"].astype(str),
        }
    ).set_index("estimator")


def policy_table(result: OPEResult, estimators: Sequence[str] = ESTIMATORS, matched: bool = True) -> pd.DataFrame:
    """One row per policy: the truth, each of ``estimators``' estimate [interval] ✓/✗, and (with
    ``matched``) the logged exposures the policy would have taken."""
    est = result.estimates
    order = est.drop_duplicates("policy").sort_values("truth", ascending=False)["policy"]
    rows = []
    for policy in order:
        group = est[est["policy"] == policy].set_index("estimator")
        row = {"policy": policy, "true value": f"{group['truth'].iloc[0]:.3f}"}
        for estimator in estimators:
            if estimator in group.index and np.isfinite(group.loc[estimator, "value"]):
                g = group.loc[estimator]
                row[ESTIMATOR_LABELS[estimator]] = f"{g['value']:.3f} [{g['ci_low']:.3f}, {g['ci_high']:.3f}] " + (
                    "✓" if g["covered"] else "✗"
                )
            else:
                row[ESTIMATOR_LABELS[estimator]] = ""
        if matched:
            row["matched"] = int(group["matched"].iloc[0])
        rows.append(row)
    table = pd.DataFrame(rows).set_index("policy")
    return table.loc[:, (table != "").any(axis=0)]


def estimates_figure(result: OPEResult):
    """Each policy's estimates with 95% intervals (one colour per estimator) against its true value."""
    import matplotlib.pyplot as plt

    est = result.estimates.dropna(subset=["value"])
    order = est.drop_duplicates("policy").sort_values("truth")["policy"].tolist()
    estimators = [e for e in ESTIMATORS if e in set(est["estimator"])]
    colors = dict(zip(estimators, plt.get_cmap("tab10").colors))
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(order) + 1.5))
    step = 0.8 / max(len(estimators), 1)
    for i, policy in enumerate(order):
        group = est[est["policy"] == policy].set_index("estimator")
        truth = group["truth"].iloc[0]
        ax.plot([truth, truth], [i - 0.45, i + 0.45], color="black", lw=2, zorder=3)
        for j, estimator in enumerate(estimators):
            if estimator not in group.index:
                continue
            g = group.loc[estimator]
            y = i - 0.4 + step * (j + 0.5)
            ax.errorbar(
                g["value"],
                y,
                xerr=[[max(g["value"] - g["ci_low"], 0)], [max(g["ci_high"] - g["value"], 0)]],
                fmt="o",
                ms=4,
                color=colors[estimator],
                lw=1,
            )
    handles = [plt.Line2D([], [], color=colors[e], marker="o", lw=1, ms=4) for e in estimators]
    handles.append(plt.Line2D([], [], color="black", lw=2))
    ax.legend(
        handles, [ESTIMATOR_LABELS[e] for e in estimators] + ["true value (oracle)"], loc="lower right", fontsize=8
    )
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel("policy value: mean probability of engagement per HCP (expected engagements per HCP for the plan)")
    ax.set_title("Off-policy estimates from the logged test window vs the true value")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
