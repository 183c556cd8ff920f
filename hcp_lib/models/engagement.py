"""Engagement models: P(engaged | HCP, history before t, content, channel, t), the base of
the tabular challenger (:mod:`hcp_lib.models.tabular`) and the hybrid LSTM (:mod:`hcp_lib.models.hybrid`).

Both learn from every logged exposure before their cut-off, engaged or not, each seen from
its own instant with the inputs of :func:`hcp_lib.models.features.query_inputs`; neither draws
synthetic negatives. Both follow :class:`hcp_lib.models.base.Recommender`:

- ``score_channels(hcp_ids)`` — engagement probabilities (n_hcp, n_content, n_channel) at
  the cut-off, channels in :data:`hcp_lib.domain.CHANNELS` order;
- ``score(hcp_ids)`` — each item's probability through its best channel, so a list, its
  channels and the week's plan all come from the same probabilities;
- :meth:`EngagementModel.exposure_probabilities` — the probability of logged exposures
  after the cut-off, each at its own instant: the model's parameters stay those fitted at
  the cut-off, its inputs read the exposures logged before each instant (as a deployed model
  scoring each send would). Log-loss, AUC and calibration on logged exposures use these.

Choices are made on the validation window with logged data alone: a model fitted with
``validation_start`` learns from the exposures before it, stops early on the exposures from
it to the cut-off, and reports ``validation_loss_``, the mean cross-entropy of its
probabilities on those logged exposures. Notebook 05 chooses every tunable and variant by it,
and notebook 07 plans with the model it ranks best.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..config import RunDir
from ..domain import CHANNELS
from ..split import TrainingData
from . import features as F
from .base import Recommender

#: the catalogue columns the engagement models read besides the split's contract
CATALOGUE_ATTRIBUTES = ("content_id", "content_type", "has_abstract", "series_id", "series_part")


@dataclass(frozen=True)
class EngagementData:
    """The tables an engagement model reads besides its :class:`~hcp_lib.split.TrainingData`:
    the HCP master (every column of :data:`hcp_lib.models.features.HCP_CATEGORICAL` and
    :data:`~hcp_lib.models.features.HCP_NUMERIC_SCALE`), the patients (for each HCP's patient mix;
    optional), the catalogue's item attributes (:data:`CATALOGUE_ATTRIBUTES`) and the LDA
    doc-topic table (optional)."""

    hcps: pd.DataFrame
    catalogue: pd.DataFrame
    patients: pd.DataFrame | None = None
    doc_topics: pd.DataFrame | None = None


def read_engagement_data(run_dir: str | Path) -> EngagementData:
    """The :class:`EngagementData` of a run folder (``world/`` and ``topics/doc_topics.parquet``
    when notebook 03 ran)."""
    run = RunDir(Path(run_dir))
    topics = run.topics / "doc_topics.parquet"
    return EngagementData(
        io.read_parquet(run.world / "hcp_master.parquet"),
        io.read_parquet(run.world / "campaigns_with_content.parquet"),
        io.read_parquet(run.world / "patients_with_hcp.parquet"),
        io.read_parquet(topics) if topics.exists() else None,
    )


@dataclass
class Queries:
    """Aligned query arrays: HCP rows ``h``, item columns ``c``, channels ``k``, minutes ``t``
    and (for logged exposures) the outcome ``y``."""

    h: np.ndarray
    c: np.ndarray
    k: np.ndarray
    t: np.ndarray
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.h)

    def subset(self, mask: np.ndarray) -> Queries:
        return Queries(self.h[mask], self.c[mask], self.k[mask], self.t[mask], None if self.y is None else self.y[mask])


def exposure_queries(space: F.FeatureSpace, exposures: pd.DataFrame) -> Queries:
    """The queries of logged exposures (hcp_id, content_id, channel, exposed_at, engaged when
    present); an unknown id or channel raises :class:`hcp_lib.models.features.FeatureError` naming it."""
    h = space.hcp_ids.get_indexer(exposures["hcp_id"].astype(str))
    c = space.content_ids.get_indexer(exposures["content_id"].astype(str))
    k = pd.Index(CHANNELS).get_indexer(exposures["channel"].astype(str))
    for name, index, column in (("HCP", h, "hcp_id"), ("content", c, "content_id"), ("channel", k, "channel")):
        if (index < 0).any():
            raise F.FeatureError(
                f"exposures column {column!r} has value "
                f"{exposures[column].astype(str).to_numpy()[index < 0][0]!r}, unknown {name}"
            )
    y = exposures["engaged"].to_numpy(dtype=bool) if "engaged" in exposures.columns else None
    return Queries(
        h.astype(np.int64), c.astype(np.int64), k.astype(np.int64), space.minutes(exposures["exposed_at"]), y
    )


class EngagementModel(Recommender):
    """Base of the engagement models: the feature space and history of the training data,
    the queries of its logged exposures, and scoring at the cut-off.

    Subclasses implement ``_fit_queries(queries, validation)`` (``validation`` the queries of
    the early-stopping window, or None), ``_predict(inputs)`` (probabilities of query inputs)
    and ``_predict_snapshot(snapshot, include)`` ((n_hcp, n_content, n_channel); cells outside
    ``include`` (n_hcp, n_content), when given, may be left uncomputed).

    ``data``: :class:`EngagementData`; ``cf_model``: an unfitted recommender exposing
    ``item_factors_`` after ``fit`` (e.g. :class:`hcp_lib.models.baselines.ALS`), fitted on the same
    training data (and ``cf_folds`` times more without one fold of HCPs each, for the training
    examples' inputs); it enters as the similarity of an item to those the HCP engaged with
    (``None``: no CF input). ``validation_start``: exposures from this instant to the cut-off
    are held out for early stopping (``None``: none are).
    """

    name = "engagement_model"
    sequence_length = 0

    def __init__(
        self,
        data: EngagementData,
        cf_model: Recommender | None = None,
        validation_start: pd.Timestamp | None = None,
        cf_folds: int = 4,
        cf_seed: int = 0,
    ):
        self.data = data
        self.cf_model = cf_model
        self.validation_start = validation_start
        self.cf_folds = cf_folds
        self.cf_seed = cf_seed

    # -- fitting
    def _fit(self, train: TrainingData) -> None:
        """The steps of ``fit``: the time frame, the feature space (with the CF inputs), the
        history, the logged exposures as queries split at ``validation_start``, then the
        subclass's model (:meth:`_fit_queries`)."""
        self.cutoff_, self.reference_ = self._time_frame(train)
        self.space_ = self._feature_space(train)
        self.history_ = F.History(train.interactions, self.space_, self.cutoff_)
        queries, validation = self._split_validation(exposure_queries(self.space_, train.interactions))
        self.n_train_examples_ = len(queries)
        self.n_valid_examples_ = 0 if validation is None else len(validation)
        self._fit_queries(queries, validation)

    @staticmethod
    def _time_frame(train: TrainingData) -> tuple[pd.Timestamp, pd.Timestamp]:
        """(cut-off, reference): the training data's cut-off and the day of its first exposure
        (the origin of the models' time inputs)."""
        return pd.Timestamp(train.cutoff), pd.Timestamp(train.interactions["exposed_at"].min()).normalize()

    def _split_validation(self, queries: Queries) -> tuple[Queries, Queries | None]:
        """(training queries, validation queries): the queries from ``validation_start`` on are
        held out for early stopping (None without ``validation_start``)."""
        if self.validation_start is None:
            return queries, None
        start = pd.Timestamp(self.validation_start)
        if not start < self.cutoff_:
            raise ValueError(f"{self.name}: validation_start {start} must be before the cut-off {self.cutoff_}")
        held = queries.t >= int(self.space_.minutes([start])[0])
        if held.all():
            raise ValueError(f"{self.name}: no exposure before validation_start {start}: nothing to train on")
        return queries.subset(~held), queries.subset(held)

    def _feature_space(self, train: TrainingData) -> F.FeatureSpace:
        hcps, catalogue = model_tables(self.data, train)
        factors, oof, fold = self._fit_cf(train, hcps)
        return F.FeatureSpace.from_tables(
            hcps,
            catalogue,
            self.reference_,
            self.data.patients,
            self.data.doc_topics,
            factors,
            cf_item_factors_oof=oof,
            hcp_fold=fold,
        )

    def _fit_cf(self, train: TrainingData, hcps: pd.DataFrame) -> tuple:
        """(item factors, out-of-fold item factors, HCP folds) of the CF model (all None without one).

        The factors fitted on the whole window score the instants after the cut-off. Each
        training example reads instead the factors fitted without its HCP's fold, so its own
        outcome never reaches its CF inputs (fitted on it, they would leak the label)."""
        cf_model = self._cf_model()
        if cf_model is None:
            return None, None, None
        factors = _item_factors(cf_model, train)
        fold = np.random.default_rng(self.cf_seed).integers(0, self.cf_folds, len(hcps))
        fold_of = pd.Series(fold, index=hcps["hcp_id"].astype(str).to_numpy())
        example_fold = fold_of.reindex(train.interactions["hcp_id"].astype(str)).to_numpy()
        oof = [
            _item_factors(
                copy.deepcopy(cf_model),
                replace(train, interactions=train.interactions[example_fold != f].reset_index(drop=True)),
            )
            for f in range(self.cf_folds)
        ]
        return factors, oof, fold

    def _cf_model(self) -> Recommender | None:
        """The CF model whose factors become inputs (None: no CF input)."""
        return self.cf_model

    def _fit_queries(self, queries: Queries, validation: Queries | None) -> None:
        raise NotImplementedError

    def inputs(
        self, queries: Queries, history: F.History | None = None, training: bool = False
    ) -> dict[str, np.ndarray]:
        """Model inputs of ``queries`` (:func:`hcp_lib.models.features.query_inputs`) against
        ``history`` (default: the training history); ``training``: the queries are training
        examples (their CF inputs come from the factors fitted without their HCP's fold)."""
        return F.query_inputs(
            self.space_,
            history or self.history_,
            queries.h,
            queries.c,
            queries.k,
            queries.t,
            self.sequence_length,
            out_of_fold=training,
        )

    # -- scoring
    def score_channels(self, hcp_ids: Iterable[str], exclude: np.ndarray | None = None) -> np.ndarray:
        """P(engaged) of every (HCP, item, channel) at the cut-off, (n_hcp, n_content, n_channel).

        ``exclude`` (n_hcp, n_content) bool, optional: cells that will not be used (items seen,
        unapproved or unreleased, :func:`hcp_lib.models.base.exclusion_mask`); a model may skip
        them, and they hold 0."""
        rows = self._rows(hcp_ids)
        if exclude is not None and np.shape(exclude) != (len(rows), len(self.content_ids_)):
            raise ValueError(
                f"{self.name}: exclude has shape {np.shape(exclude)}, expected {(len(rows), len(self.content_ids_))}"
            )
        snap = F.snapshot(self.space_, self.history_, rows, self.cutoff_, self.sequence_length)
        probability = np.asarray(
            self._predict_snapshot(snap, None if exclude is None else ~np.asarray(exclude, bool)), dtype=np.float64
        )
        return probability if exclude is None else np.where(np.asarray(exclude, bool)[:, :, None], 0.0, probability)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        snap = F.snapshot(self.space_, self.history_, rows, self.cutoff_, self.sequence_length)
        return np.asarray(self._predict_snapshot(snap), dtype=np.float64).max(axis=2)

    def exposure_probabilities(self, exposures: pd.DataFrame, interactions: pd.DataFrame) -> np.ndarray:
        """P(engaged) of logged ``exposures`` (after the cut-off), each at its own instant, with
        inputs read from ``interactions`` logged before that instant (the model's parameters
        are those fitted at the cut-off)."""
        self._check_fitted()
        if not len(exposures):
            return np.zeros(0)
        end = pd.Timestamp(exposures["exposed_at"].max()) + pd.Timedelta(minutes=1)
        history = F.History(interactions, self.space_, end)
        return np.asarray(
            self._predict(self.inputs(exposure_queries(self.space_, exposures), history)), dtype=np.float64
        ).ravel()

    def _check_fitted(self) -> None:
        self._rows([])

    def _predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def _predict_snapshot(self, snapshot: F.Snapshot, include: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError


def model_tables(data: EngagementData, train: TrainingData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The HCP master rows of ``train``'s HCPs (in their order) and ``train``'s catalogue (release
    dates as known at its cut-off) with the item attributes of ``data``: the tables of an
    engagement model's :class:`~hcp_lib.models.features.FeatureSpace`."""
    catalogue = train.catalogue.reset_index(drop=True).assign(content_id=lambda f: f["content_id"].astype(str))
    attributes = [c for c in CATALOGUE_ATTRIBUTES[1:] if c in data.catalogue.columns]
    if attributes:
        extra = data.catalogue.assign(content_id=data.catalogue["content_id"].astype(str))
        catalogue = catalogue.merge(
            extra[["content_id", *attributes]], on="content_id", how="left", validate="one_to_one"
        )
    master = data.hcps.set_index(data.hcps["hcp_id"].astype(str).rename("key"))
    wanted = train.hcps["hcp_id"].astype(str)
    missing = pd.Index(wanted).difference(master.index)
    if len(missing):
        raise F.FeatureError(f"the HCP master has no row for HCP id {missing[0]!r} ({len(missing)} missing)")
    return master.loc[wanted].reset_index(drop=True), catalogue


def _item_factors(cf_model: Recommender, train: TrainingData) -> pd.DataFrame:
    """``cf_model`` fitted on ``train``: its item factors (content_id + factor_* columns) of the
    items engaged with in ``train`` (the others have no position)."""
    cf_model.fit(train)
    vectors = np.asarray(cf_model.item_factors_, dtype=np.float64)
    factors = pd.DataFrame(vectors, columns=[f"factor_{i:02d}" for i in range(vectors.shape[1])])
    factors.insert(0, "content_id", pd.Index(cf_model.content_ids_).astype(str))
    return factors[factors["content_id"].isin(set(train.engaged["content_id"].astype(str)))].reset_index(drop=True)
