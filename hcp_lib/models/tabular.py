"""The tabular challenger: a gradient-boosted engagement classifier (notebook 05).

scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` on one flat row per
(HCP, item, channel, instant) built from the engagement models' shared inputs
(:func:`hcp_lib.models.features.query_inputs`) without the sequence: the HCP's specialty, setting
and region (native categorical splits), its numeric profile and patient mix, its history
counts (touches in the last 7/14/28 days, engagement rate, days since the last touch), its
history on the queried channel, the item's area, type, abstract flag, series part and LDA topics,
and the (HCP, item) history: shown or engaged before, series follow-up,
topic memories of the HCP and of its peer group, the CF similarity of the item to those the
HCP engaged with, the item's age and its engagement so far.
The peer group itself is too many categories for native splits; its taste enters through the
peer topic memory.

It is the strongest simple alternative the hybrid must beat: it sees the same non-sequence
inputs, learns interactions by trees, and is tuned on the validation window by the same
criterion (log-loss of the logged validation exposures), with early stopping on that window.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..domain import CHANNELS, TABULAR_NAME
from . import features as F
from .base import Recommender
from .engagement import EngagementData, EngagementModel, Queries

#: the categorical columns of the flat row, first in every row
CATEGORICAL = ("specialty", "practice_setting", "region", "channel", "item_area", "item_type")


@dataclass(frozen=True)
class TabularSettings:
    """Hyper-parameters of the gradient-boosted classifier (scikit-learn's names); ``max_iter``
    is the most boosting rounds (early stopping on the validation window may end sooner).

    No field takes a notebook parameter's default (:data:`PARAMETERS` is empty): the grid is
    :data:`TABULAR_GRID` (``tabular_tune`` only says whether it is searched) and notebook 05
    always passes the run's ``seed``; ``seed`` here defaults to 0 as it always has."""

    learning_rate: float = 0.1
    max_iter: int = 300
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 0

    #: notebook parameter -> setting: none (see above)
    PARAMETERS = {}

    def validate(self) -> TabularSettings:
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")
        for name in ("max_iter", "max_leaf_nodes", "min_samples_leaf"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < (2 if name == "max_leaf_nodes" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'max_leaf_nodes' else 1}, got {value!r}")
        if self.l2_regularization < 0:
            raise ValueError(f"l2_regularization must be >= 0, got {self.l2_regularization!r}")
        return self


#: rows per call of the classifier's ``predict_proba`` when scoring every cell, on one OpenMP
#: thread. scikit-learn walks every tree over all the rows of a call in turn, so rows that stay
#: in the CPU's cache (a few MB here) are walked faster than a block of 150,000; but each tree
#: is a parallel region, and many short regions on threads that spin while another process
#: holds the cores slowed the scoring of notebook 05 at small from 81 s to 592 s. One thread
#: on cache-sized blocks was the fastest of the settings measured on a loaded 2-core machine
#: (8.5 against 35 microseconds per row for the library's default); the values are the same
PREDICT_ROWS = 10_000

#: the grid notebook 05 searches on the validation window
TABULAR_GRID = (
    {"learning_rate": 0.1, "max_leaf_nodes": 31},
    {"learning_rate": 0.05, "max_leaf_nodes": 31},
    {"learning_rate": 0.1, "max_leaf_nodes": 15},
    {"learning_rate": 0.1, "max_leaf_nodes": 63},
)


def flat_rows(x: dict[str, np.ndarray]) -> np.ndarray:
    """One float32 row per query of :func:`hcp_lib.models.features.query_inputs`: the
    :data:`CATEGORICAL` codes, then the numeric inputs (the queried channel's history only)."""
    own = x["channel_history"][np.arange(len(x["channel"])), x["channel"]]
    return np.column_stack(
        [x[name] for name in CATEGORICAL]
        + [x["hcp_numeric"], x["hcp_history"], own, x["item_numeric"], x["topics"], x["pair"]]
    ).astype(np.float32)


def feature_names(space: F.FeatureSpace) -> list[str]:
    """Names of the columns of :func:`flat_rows` for ``space``."""
    return (
        list(CATEGORICAL)
        + list(space.hcp_numeric_names)
        + list(F.HCP_HISTORY)
        + list(F.CHANNEL_HISTORY)
        + ["has_abstract", "series_part"]
        + [f"topic_{i}" for i in range(space.topics.shape[1])]
        + list(F.PAIR_FEATURES)
    )


class TabularEngagement(EngagementModel):
    """The tabular challenger as an engagement model (see the module docstring).

    With ``validation_start`` it fits on the exposures before it, stops early on the
    exposures from it to the cut-off and records ``validation_loss_`` and ``n_iter_``;
    without, it boosts exactly ``settings.max_iter`` rounds (the refit with the number of
    rounds chosen on validation).
    """

    name = TABULAR_NAME
    #: scoring walks the trees once per (HCP, item, channel) cell on one thread (see
    #: :data:`PREDICT_ROWS`): notebook 05 spreads it over its worker processes
    score_in_workers = True

    def __init__(
        self,
        data: EngagementData,
        cf_model: Recommender | None = None,
        settings: TabularSettings = TabularSettings(),
        validation_start=None,
        hcp_chunk: int = 48,
    ):
        super().__init__(data, cf_model, validation_start)
        self.settings = settings
        self.hcp_chunk = hcp_chunk

    def _fit_queries(self, queries: Queries, validation: Queries | None) -> None:
        """The steps of fitting the classifier: flat rows, the classifier, boosting."""
        s = self.settings.validate()
        started = time.perf_counter()
        x = flat_rows(self.inputs(queries, training=True))
        self.classifier_ = self._build_classifier(s, x.shape[1], early_stopping=validation is not None)
        self.validation_loss_ = self._train(x, queries, validation)
        self.n_iter_ = int(self.classifier_.n_iter_)
        self.fit_seconds_ = time.perf_counter() - started

    @staticmethod
    def _build_classifier(s: TabularSettings, n_features: int, early_stopping: bool):
        """The unfitted classifier: the first :data:`CATEGORICAL` columns split natively."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        categorical = np.zeros(n_features, bool)
        categorical[: len(CATEGORICAL)] = True
        return HistGradientBoostingClassifier(
            learning_rate=s.learning_rate,
            max_iter=s.max_iter,
            max_leaf_nodes=s.max_leaf_nodes,
            min_samples_leaf=s.min_samples_leaf,
            l2_regularization=s.l2_regularization,
            categorical_features=categorical,
            early_stopping=early_stopping,
            scoring="loss",
            n_iter_no_change=20,
            random_state=s.seed,
        )

    def _train(self, x: np.ndarray, queries: Queries, validation: Queries | None) -> float | None:
        """Fit ``classifier_`` on ``x`` (stopping early on the validation window when there is
        one); the validation log-loss (None without a window)."""
        from threadpoolctl import threadpool_limits

        from ..metrics import log_loss_value

        # one OpenMP thread, as when scoring (see PREDICT_ROWS): boosting is a long run of short
        # parallel steps that crawl whenever another process holds a core (a grid point fitted
        # in 4 s on a quiet machine took 50 s beside another job), and the fit is then the
        # same in the notebook's process and in its workers
        with threadpool_limits(limits=1, user_api="openmp"):
            if validation is None:
                self.classifier_.fit(x, queries.y)
                return None
            x_val = flat_rows(self.inputs(validation, training=True))
            self.classifier_.fit(x, queries.y, X_val=x_val, y_val=validation.y)
            return log_loss_value(validation.y, self.classifier_.predict_proba(x_val)[:, 1])

    def _predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        rows = flat_rows(inputs)
        if not len(rows):
            return np.zeros(0)
        with threadpool_limits(limits=1, user_api="openmp"):  # see PREDICT_ROWS
            return np.concatenate(
                [
                    self.classifier_.predict_proba(rows[start : start + PREDICT_ROWS])[:, 1]
                    for start in range(0, len(rows), PREDICT_ROWS)
                ]
            )

    def _predict_snapshot(self, snapshot: F.Snapshot, include: np.ndarray | None = None) -> np.ndarray:
        # A tree ensemble has no additive structure to broadcast: one row per (HCP, item,
        # channel) cell, built and predicted a few dozen HCPs at a time, skipping the cells
        # outside ``include``.
        n_hcp, n_item, n_channel = len(snapshot.rows), len(self.space_.content_ids), len(CHANNELS)
        out = np.zeros((n_hcp, n_item, n_channel), np.float32)
        item = snapshot.item
        for first in range(0, n_hcp, self.hcp_chunk):
            part = slice(first, first + self.hcp_chunk)
            pair = snapshot.pair(part)
            m = pair.shape[0]
            keep = np.ones((m, n_item), bool) if include is None else np.asarray(include[part], bool)
            cell_h, cell_c = np.nonzero(keep)
            if not len(cell_h):
                continue
            idx_h = np.repeat(cell_h, n_channel)
            idx_c = np.repeat(cell_c, n_channel)
            x = {
                name: value[part][idx_h]
                for name, value in snapshot.hcp.items()
                if name in ("specialty", "practice_setting", "region", "hcp_numeric", "hcp_history", "channel_history")
            }
            x.update({name: value[idx_c] for name, value in item.items() if name != "item"})
            x["channel"] = np.tile(np.arange(n_channel), len(cell_h)).astype(np.int32)
            x["pair"] = pair[idx_h, idx_c]
            probability = self._predict(x).reshape(len(cell_h), n_channel)
            out[first + cell_h, cell_c] = probability
        return out

    def get_params(self) -> dict:
        return asdict(self.settings)
