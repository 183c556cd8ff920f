"""The baseline recommenders: content and channel models that chapter 4 tunes and chapter 6 compares.

Content baselines, all following :class:`hcp_lib.models.base.Recommender`: random, global
popularity, popularity within specialty, recency-weighted popularity, ItemKNN (cosine with
shrinkage), ALS and BPR (``implicit``, CPU classes), EASE (closed form) and a content-based
model on item features (the LDA topic vectors of notebook 03) that alone can rank items
nobody has engaged with yet. Channel baselines (:class:`ChannelRecommender`): the HCP's most
frequently engaged channel, the best channel of its specialty, and the logging policy's
business-as-usual channel.

Every model learns only from a :class:`hcp_lib.split.TrainingData` (rows before its
cut-off). The "interaction matrix" of the CF models counts each HCP's engaged exposures per
item. Models read and write no files: the stage (:mod:`hcp_lib.stages.cf`) does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..domain import CHANNELS
from ..split import TrainingData
from .base import Recommender, UnknownIdError, positions

# --- content baselines ---------------------------------------------------------------------


class RandomRecommender(Recommender):
    """Uniform random scores; each HCP's row is drawn from a generator seeded by
    ``(seed, the HCP's position)``, so a row does not depend on which other HCPs are scored."""

    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _fit(self, train: TrainingData) -> None:
        pass

    def _score(self, rows: np.ndarray) -> np.ndarray:
        n_content = len(self.content_ids_)
        return (
            np.stack([np.random.default_rng([self.seed, int(r)]).random(n_content) for r in rows])
            if len(rows)
            else np.zeros((0, n_content))
        )


class GlobalPopularity(Recommender):
    """Score of an item = the number of engaged exposures it received in training (same for every HCP)."""

    name = "popularity"

    def _fit(self, train: TrainingData) -> None:
        self.item_counts_ = np.asarray(self.engaged_matrix(train).sum(axis=0), dtype=np.float64).ravel()

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_counts_, (len(rows), len(self.item_counts_))).copy()


class SpecialtyPopularity(Recommender):
    """Popularity among the HCP's specialty, shrunk towards global popularity.

    score(s, i) = (n(s, i) + shrinkage * n(i) / N) / (n(s) + shrinkage), where n(s, i) counts
    engaged exposures of item i by HCPs of specialty s, n(s) their total, n(i) the item's
    total over all HCPs and N the grand total: a specialty with few engagements leans on the
    global order.
    """

    name = "specialty_popularity"

    def __init__(self, shrinkage: float = 10.0):
        self.shrinkage = shrinkage

    def _fit(self, train: TrainingData) -> None:
        if self.shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {self.shrinkage}")
        matrix = self.engaged_matrix(train)
        specialty = train.hcps["specialty"].astype(object).to_numpy()
        self.specialties_, hcp_specialty = np.unique(specialty, return_inverse=True)
        indicator = sp.csr_matrix(
            (np.ones(len(specialty)), (hcp_specialty, np.arange(len(specialty)))),
            shape=(len(self.specialties_), len(specialty)),
        )
        counts = np.asarray((indicator @ matrix).todense(), dtype=np.float64)
        item_total = counts.sum(axis=0)
        global_share = item_total / max(item_total.sum(), 1.0)
        specialty_total = counts.sum(axis=1, keepdims=True)
        self.specialty_scores_ = (counts + self.shrinkage * global_share) / (specialty_total + self.shrinkage + 1e-12)
        self.hcp_specialty_ = hcp_specialty

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.specialty_scores_[self.hcp_specialty_[rows]]


class RecencyPopularity(Recommender):
    """Popularity where an engagement ``d`` days before the cut-off counts 0.5 ** (d / half_life_days)."""

    name = "recency_popularity"

    def __init__(self, half_life_days: float = 30.0):
        self.half_life_days = half_life_days

    def _fit(self, train: TrainingData) -> None:
        if self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be > 0, got {self.half_life_days}")
        engaged = train.engaged
        age_days = (train.cutoff - engaged["exposed_at"]).dt.total_seconds().to_numpy() / 86400.0
        weights = 0.5 ** (age_days / self.half_life_days)
        cols = self.content_ids_.get_indexer(engaged["content_id"])
        self.item_scores_ = np.bincount(cols, weights=weights, minlength=len(self.content_ids_))

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores_, (len(rows), len(self.item_scores_))).copy()


class ItemKNN(Recommender):
    """Item-based nearest neighbours on the binary HCP × item engagement matrix.

    sim(i, j) = |H_i ∩ H_j| / (sqrt|H_i| sqrt|H_j| + shrinkage) (cosine with shrinkage; H_i =
    HCPs who engaged with item i), with sim(i, i) = 0 and, per item i, only its ``neighbours``
    most similar items kept. score(u, j) = sum over items i the HCP engaged with of sim(i, j).
    Kept sparse throughout (co-occurrences come from a sparse product).
    """

    name = "itemknn"

    def __init__(self, neighbours: int = 50, shrinkage: float = 10.0):
        self.neighbours = neighbours
        self.shrinkage = shrinkage

    def _fit(self, train: TrainingData) -> None:
        if self.neighbours < 1 or self.shrinkage < 0:
            raise ValueError(f"neighbours must be >= 1 and shrinkage >= 0, got {self.neighbours} and {self.shrinkage}")
        binary = (self.engaged_matrix(train) > 0).astype(np.float32)
        co = (binary.T @ binary).tocsr()
        norms = np.sqrt(np.asarray(co.diagonal(), dtype=np.float64))
        co.setdiag(0)
        co.eliminate_zeros()
        co = co.tocoo()
        sims = co.data / (norms[co.row] * norms[co.col] + self.shrinkage)
        # keep each row's top neighbours: sort by (row, -sim, col) and take the first k per row
        order = np.lexsort((co.col, -sims, co.row))
        rows, cols, sims = co.row[order], co.col[order], sims[order]
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
        keep = rank < self.neighbours
        n = len(self.content_ids_)
        self.similarity_ = sp.csr_matrix((sims[keep], (rows[keep], cols[keep])), shape=(n, n))
        self.binary_ = binary.tocsr()

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self.binary_[rows] @ self.similarity_).todense())

    def similar_items(self, content_id: str, n: int = 5) -> pd.DataFrame:
        """The ``n`` items most similar to ``content_id`` (content_id, similarity)."""
        row = positions([content_id], self.content_ids_, "content")[0]
        sims = self.similarity_[row].toarray().ravel()
        order = np.argsort(-sims, kind="stable")[:n]
        order = order[sims[order] > 0]
        return pd.DataFrame({"content_id": self.content_ids_[order], "similarity": sims[order]})


class EASE(Recommender):
    """EASE (Steck 2019): the closed-form item-item linear model with a zero diagonal.

    With G = XᵀX + l2·I on the binary engagement matrix X and P = G⁻¹, the weights are
    B = I − P · diag(1/diag(P)) (so diag(B) = 0), and score(u, ·) = x_u B. Dense in the item
    dimension (a few hundred to a few thousand items).
    """

    name = "ease"

    def __init__(self, l2: float = 100.0):
        self.l2 = l2

    def _fit(self, train: TrainingData) -> None:
        if self.l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {self.l2}")
        binary = (self.engaged_matrix(train) > 0).astype(np.float64)
        gram = np.asarray((binary.T @ binary).todense())
        gram[np.diag_indices_from(gram)] += self.l2
        inverse = np.linalg.inv(gram)
        self.weights_ = -inverse / np.diag(inverse)
        np.fill_diagonal(self.weights_, 0.0)
        self.binary_ = binary.tocsr()

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.binary_[rows] @ self.weights_)


class _ImplicitModel(Recommender):
    """Shared code of the ``implicit`` matrix-factorisation models (CPU classes, fixed seed)."""

    def _make(self):
        raise NotImplementedError

    def _fit(self, train: TrainingData) -> None:
        import implicit.cpu  # noqa: F401  (loads its BLAS before the limit below, so the limit reaches it)
        from threadpoolctl import threadpool_limits

        # implicit parallelises itself; a BLAS thread pool on top of it only slows it down.
        with threadpool_limits(1, "blas"):
            self.model_ = self._make()
            self.model_.fit(self.engaged_matrix(train), show_progress=False)
        self.hcp_factors_ = np.asarray(self.model_.user_factors, dtype=np.float64)
        self.item_factors_ = np.asarray(self.model_.item_factors, dtype=np.float64)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.hcp_factors_[rows] @ self.item_factors_.T

    def similar_items(self, content_id: str, n: int = 5) -> pd.DataFrame:
        """The ``n`` items whose factors have the highest cosine with ``content_id``'s."""
        return _nearest(self.item_factors_, self.content_ids_, content_id, "content", n)

    def similar_hcps(self, hcp_id: str, n: int = 5) -> pd.DataFrame:
        """The ``n`` HCPs whose factors have the highest cosine with ``hcp_id``'s."""
        return _nearest(self.hcp_factors_, self.hcp_ids_, hcp_id, "HCP", n)


def _nearest(factors: np.ndarray, ids: pd.Index, query: str, kind: str, n: int) -> pd.DataFrame:
    row = positions([query], ids, kind)[0]
    unit = factors / np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-12)
    cosine = unit @ unit[row]
    cosine[row] = -np.inf
    order = np.argsort(-cosine, kind="stable")[:n]
    column = "content_id" if kind == "content" else "hcp_id"
    return pd.DataFrame({column: ids[order], "cosine": cosine[order]})


class ALS(_ImplicitModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) from ``implicit.cpu.als``; the
    confidence of a cell is 1 + alpha × (engaged exposures). Deterministic for one
    ``random_state`` (each HCP's and item's solve is independent of thread scheduling)."""

    name = "als"

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int = 1,
    ):
        self.factors, self.regularization, self.alpha = factors, regularization, alpha
        self.iterations, self.random_state, self.num_threads = iterations, random_state, num_threads

    def _make(self):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )


class BPR(_ImplicitModel):
    """Bayesian Personalised Ranking (Rendle et al. 2009) from ``implicit.cpu.bpr``; one
    thread, because its parallel SGD (Hogwild) would make results depend on scheduling."""

    name = "bpr"

    def __init__(
        self,
        factors: int = 32,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int = 0,
    ):
        self.factors, self.learning_rate, self.regularization = factors, learning_rate, regularization
        self.iterations, self.random_state = iterations, random_state

    def _make(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=1,
        )


class ContentBased(Recommender):
    """Content-based ranking on item feature vectors (e.g. LDA topic proportions).

    Each item vector is L2-normalised. An HCP's profile is the sum of the vectors of the
    items it engaged with (each engaged exposure counts once), L2-normalised, blended with
    its specialty's profile: profile = (1 − w)·hcp + w·specialty (w = ``specialty_weight``);
    an HCP with no engagement takes its specialty's profile, a specialty with none the
    global one. score(u, i) = profile_u · item_i (a cosine). Items need only a feature
    vector, not a history, so new items are ranked like any other.

    ``item_features``: a frame with a ``content_id`` (or ``pmid``) column or index and
    numeric feature columns; every catalogue item must have a row (else an error names it).
    """

    name = "content_based"

    def __init__(self, item_features: pd.DataFrame, specialty_weight: float = 0.25):
        self.item_features = item_features
        self.specialty_weight = specialty_weight

    def _fit(self, train: TrainingData) -> None:
        if not 0 <= self.specialty_weight <= 1:
            raise ValueError(f"specialty_weight must be in [0, 1], got {self.specialty_weight}")
        features = _feature_matrix(self.item_features, self.content_ids_)
        items = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        hcp_profiles = np.asarray(self.engaged_matrix(train) @ items)
        specialty = train.hcps["specialty"].astype(object).to_numpy()
        self.specialties_, hcp_specialty = np.unique(specialty, return_inverse=True)
        specialty_profiles = np.stack(
            [hcp_profiles[hcp_specialty == s].sum(axis=0) for s in range(len(self.specialties_))]
        )
        global_profile = _unit(hcp_profiles.sum(axis=0, keepdims=True))
        specialty_profiles = _unit(specialty_profiles)
        specialty_profiles[np.linalg.norm(specialty_profiles, axis=1) == 0] = global_profile
        own = _unit(hcp_profiles)
        fallback = specialty_profiles[hcp_specialty]
        has_history = np.linalg.norm(own, axis=1) > 0
        blended = np.where(
            has_history[:, None], (1 - self.specialty_weight) * own + self.specialty_weight * fallback, fallback
        )
        self.hcp_profiles_ = _unit(blended)
        self.item_vectors_ = items

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self.hcp_profiles_[rows] @ self.item_vectors_.T


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _feature_matrix(item_features: pd.DataFrame, content_ids: pd.Index) -> np.ndarray:
    """The numeric feature rows of ``content_ids``, in that order; an error names a missing item."""
    frame = item_features
    for key in ("content_id", "pmid"):
        if key in frame.columns:
            frame = frame.set_index(key)
            break
    frame.index = frame.index.astype(str)
    numeric = frame.select_dtypes("number")
    if numeric.shape[1] == 0:
        raise ValueError("item_features has no numeric feature column")
    missing = content_ids.difference(numeric.index)
    if len(missing):
        raise UnknownIdError(f"item_features has no row for content id {missing[0]!r} ({len(missing)} items missing)")
    return numeric.loc[list(content_ids)].to_numpy(dtype=np.float64)


def topic_features(doc_topics: pd.DataFrame) -> pd.DataFrame:
    """The LDA doc–topic matrix of notebook 03 (``pmid`` + ``topic_*`` columns) as item
    features indexed by content_id (content_id == pmid)."""
    topic_columns = [c for c in doc_topics.columns if str(c).startswith("topic_")]
    if "pmid" not in doc_topics.columns or not topic_columns:
        raise KeyError(
            f"the doc-topic table needs a 'pmid' column and topic_* columns; it has {list(doc_topics.columns)}"
        )
    features = doc_topics.set_index(doc_topics["pmid"].astype(str))[topic_columns]
    features.index.name = "content_id"
    return features


def area_features(catalogue: pd.DataFrame) -> pd.DataFrame:
    """One-hot therapeutic-area vectors of the catalogue, indexed by content_id: the item
    features of the content-based model when no topic model has run."""
    features = pd.get_dummies(catalogue.set_index(catalogue["content_id"].astype(str))["therapeutic_area"], dtype=float)
    features.index.name = "content_id"
    return features


# --- channel baselines ---------------------------------------------------------------------

#: channel baselines whose scores are engagement probabilities (SpecialtyBestChannel: a shrunk
#: engagement rate per exposure); the others rank channels by counts or shares
PROBABILITY_CHANNEL_MODELS = ("specialty_best_channel",)


class ChannelRecommender(Recommender):
    """A model of channels alone: ``channel_scores(hcp_ids)`` (n_hcp, n_channel) in CHANNELS
    order; ``score_channels`` repeats them for every content item, so the evaluation can
    treat it like any model with channel scores. It has no content ranking (``score``
    raises)."""

    def channel_scores(self, hcp_ids) -> np.ndarray:
        return np.asarray(self._channel_scores(self._rows(hcp_ids)), dtype=np.float64)

    def score_channels(self, hcp_ids) -> np.ndarray:
        channel = self.channel_scores(hcp_ids)
        return np.broadcast_to(channel[:, None, :], (channel.shape[0], len(self.content_ids_), channel.shape[1]))

    def predict_channel(self, hcp_ids) -> np.ndarray:
        """Each HCP's top channel (ties go to the earlier channel in CHANNELS)."""
        return np.asarray(CHANNELS, dtype=object)[np.argmax(self.channel_scores(hcp_ids), axis=1)]

    def score(self, hcp_ids) -> np.ndarray:
        raise TypeError(f"{self.name} ranks channels only; use channel_scores or score_channels")

    def _fit(self, train: TrainingData) -> None:
        interactions = train.interactions
        unknown = sorted(set(interactions["channel"].astype(object)) - set(CHANNELS))
        if unknown:
            raise ValueError(f"interactions column 'channel' has value {unknown[0]!r}; allowed: {', '.join(CHANNELS)}")
        self.hcp_rows_ = self.hcp_ids_.get_indexer(interactions["hcp_id"])
        known = self.hcp_rows_ >= 0
        if not known.all():
            first = interactions["hcp_id"].to_numpy()[~known][0]
            raise UnknownIdError(f"HCP id {first!r} of the interactions is not in the HCP master")
        self.channel_cols_ = pd.Index(CHANNELS).get_indexer(interactions["channel"])
        self.engaged_ = interactions["engaged"].to_numpy(dtype=bool)
        specialty = train.hcps["specialty"].astype(object).to_numpy()
        self.specialties_, self.hcp_specialty_ = np.unique(specialty, return_inverse=True)
        self._fit_channels(train)

    def _counts(self, by: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
        """(n_groups, n_channel) sums of ``weights`` (default 1) per group and channel."""
        flat = by * len(CHANNELS) + self.channel_cols_
        counts = np.bincount(flat, weights=weights, minlength=n_groups * len(CHANNELS))
        return counts.reshape(n_groups, len(CHANNELS))

    def _specialty_rates(self, shrinkage: float) -> np.ndarray:
        """(n_specialty, n_channel) engagement rate per exposure, shrunk to the channel's global rate."""
        by_specialty = self.hcp_specialty_[self.hcp_rows_]
        exposed = self._counts(by_specialty, len(self.specialties_))
        engaged = self._counts(by_specialty, len(self.specialties_), self.engaged_.astype(float))
        global_rate = engaged.sum(axis=0) / np.maximum(exposed.sum(axis=0), 1)
        return (engaged + shrinkage * global_rate) / (exposed + shrinkage + 1e-12)

    def _fit_channels(self, train: TrainingData) -> None:
        raise NotImplementedError


class SpecialtyBestChannel(ChannelRecommender):
    """Channel score = the engagement rate per exposure of the HCP's specialty on that
    channel in training, shrunk towards the channel's global rate by ``shrinkage`` pseudo-exposures."""

    name = "specialty_best_channel"

    def __init__(self, shrinkage: float = 20.0):
        self.shrinkage = shrinkage

    def _fit_channels(self, train: TrainingData) -> None:
        if self.shrinkage < 0:
            raise ValueError(f"shrinkage must be >= 0, got {self.shrinkage}")
        self.rates_ = self._specialty_rates(self.shrinkage)

    def _channel_scores(self, rows: np.ndarray) -> np.ndarray:
        return self.rates_[self.hcp_specialty_[rows]]


class MostFrequentChannel(ChannelRecommender):
    """Channel score = the number of the HCP's engaged exposures on that channel in training,
    plus its specialty's engagement rate (a number in [0, 1]) as a tie-breaker, so an HCP
    with no engagement gets its specialty's best channel."""

    name = "most_frequent_channel"

    def _fit_channels(self, train: TrainingData) -> None:
        self.engaged_counts_ = self._counts(self.hcp_rows_, len(self.hcp_ids_), self.engaged_.astype(float))
        self.rates_ = self._specialty_rates(20.0)

    def _channel_scores(self, rows: np.ndarray) -> np.ndarray:
        return self.engaged_counts_[rows] + self.rates_[self.hcp_specialty_[rows]]


class BusinessAsUsualChannel(ChannelRecommender):
    """The logging policy's habit: channel score = the share of the HCP's training exposures
    (engaged or not) sent on that channel; an HCP never contacted gets its specialty's shares."""

    name = "business_as_usual_channel"

    def _fit_channels(self, train: TrainingData) -> None:
        exposed = self._counts(self.hcp_rows_, len(self.hcp_ids_))
        by_specialty = self._counts(self.hcp_specialty_[self.hcp_rows_], len(self.specialties_))
        specialty_share = by_specialty / np.maximum(by_specialty.sum(axis=1, keepdims=True), 1)
        share = exposed / np.maximum(exposed.sum(axis=1, keepdims=True), 1)
        never = exposed.sum(axis=1) == 0
        share[never] = specialty_share[self.hcp_specialty_[never]]
        self.shares_ = share

    def _channel_scores(self, rows: np.ndarray) -> np.ndarray:
        return self.shares_[rows]


def content_factories(seed: int, item_features: pd.DataFrame) -> dict[str, Callable[..., Recommender]]:
    """Constructors of every content baseline, keyed by name; each takes its hyper-parameters
    as keyword arguments (``seed`` fixes the random and factorisation models)."""
    return {
        "random": lambda **p: RandomRecommender(seed=seed, **p),
        "popularity": lambda **p: GlobalPopularity(**p),
        "specialty_popularity": lambda **p: SpecialtyPopularity(**p),
        "recency_popularity": lambda **p: RecencyPopularity(**p),
        "itemknn": lambda **p: ItemKNN(**p),
        "ease": lambda **p: EASE(**p),
        "als": lambda **p: ALS(random_state=seed, **p),
        "bpr": lambda **p: BPR(random_state=seed, **p),
        "content_based": lambda **p: ContentBased(item_features, **p),
    }


def channel_factories() -> dict[str, Callable[..., ChannelRecommender]]:
    """Constructors of the channel baselines, keyed by name."""
    return {
        "most_frequent_channel": lambda **p: MostFrequentChannel(**p),
        "specialty_best_channel": lambda **p: SpecialtyBestChannel(**p),
        "business_as_usual_channel": lambda **p: BusinessAsUsualChannel(**p),
    }
