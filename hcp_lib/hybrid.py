"""The hybrid LSTM: each HCP's engagement history, fused with content topics and CF factors,
ranks the next best content and channel (notebook 05_hybrid_lstm).

Inputs, per training example (one logged exposure of HCP ``u`` to item ``i`` through channel
``c`` at time ``t``), all computed from rows strictly before ``t``:

* **sequence** — ``u``'s last ``max_seq_len`` exposures before ``t``, oldest first and
  pre-padded: content (vocabulary index), channel, outcome strength (``engaged``,
  ``engagement_score``), log days since ``u``'s previous exposure, log days before ``t`` (recency)
  and the time of day / day of week as sine–cosine pairs. A longer history is cut to its most
  recent ``max_seq_len`` events; padded steps are masked (channel index 0), so they never
  change the output.
* **HCP static features** — specialty, practice setting, region (embedded), prescribing
  decile, digital affinity, years in practice and age (scaled), and the HCP's CF factors.
* **content** — per item its LDA topic vector, its CF item factors (zeros and a flag for
  items without factors) and a learned id embedding initialised at zero: rows of items that
  never occur in training stay exactly zero, so a new item is represented by its topics.
* **item activity at ``t``** (:class:`ItemActivity`) — the item's exposures in the 1, 3, 7 and
  28 days before ``t``, its engaged exposures in the 7 and 28 days before ``t``, days since its
  last and first exposure and since its release (when known by then): what is being promoted
  now. The test
  relevance (an engagement in the test window) needs an exposure, so this matters as much as
  taste; every count uses rows strictly before ``t``.

Model (Keras functional API; :func:`build_model`): a shared item tower maps item features to
an item vector, and a small dense layer maps the item's activity to a context vector; an LSTM
(or GRU) encodes the sequence of (item vector, channel embedding, event features) and its last
state, or (``sequence_pooling="attention"``) the attention-weighted mean of its outputs over the
real steps, is the sequence state; a dense fusion layer combines the sequence state with the
static features into the HCP vector ``h``.
Three heads:

(a) ``next_content`` — sampled softmax over the catalogue, trained on engaged exposures to an
    item the HCP had not engaged with before (repeats are excluded from every list): logits
    ``q(h)·v_j + b(v_j) + q_c(h)·c_j + b_c(c_j)`` (``c_j`` the item's activity vector) for the
    exposed item (when engaged, the positive) and ``n_negatives`` items drawn uniformly from
    the items exposed in training and approved for the HCP's specialty
    (:meth:`HybridRecommender.negative_pools`). A uniform proposal makes the sampled-softmax
    correction a constant, so the ranking it learns among those items is that of the full
    softmax; at scoring time every item is scored.
(b) ``channel`` — softmax over the five channels for an (HCP, content) pair, trained on engaged
    exposures: the channel the engagement came through.
(c) ``engagement`` — P(engaged | HCP, content, channel), trained on every logged exposure; the
    logged non-engaged exposures are its (real) negatives, no synthetic negatives.

Loss = ``content_loss_weight``·CE(a, first engagements only) + ``channel_loss_weight``·CE(b,
engaged rows only) + ``engagement_loss_weight``·BCE(c, all rows).

Scores: :meth:`HybridRecommender.score` is the next-content logit (head a);
:meth:`~HybridRecommender.score_channels` is head (c)'s probability for every (HCP, content,
channel), so the best channel of a pair is the channel with the highest engagement
probability. Both are computed with a few large ``predict`` calls (one for all HCP vectors, one
for all item vectors, and chunks of about ``pair_chunk`` (HCP, item) pairs for the pair heads).

Cold starts: an HCP with no history has an all-padding sequence, so the LSTM returns its
initial (zero) state and the HCP is scored from its static features (and CF factors, which
are zero for an HCP without engagements); the model sees such rows in training (every HCP's
first exposure). A new item is scored from its topic vector (:meth:`score_items`).

Persistence: :meth:`HybridRecommender.save` writes ``model.keras``, ``preprocessing.json``
(vocabularies, scaling, settings) and ``hcp_cf_factors.parquet``; :func:`load` reads them back
and reproduces the scores exactly.

TensorFlow is imported here only (and lazily), so the rest of ``hcp_lib`` stays light.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import io
from .domain import CHANNELS
from .recommender import Recommender, UnknownIdError, positions
from .split import TrainingData

#: static HCP columns read from the HCP master (world contract)
CATEGORICAL_HCP_COLUMNS = ("specialty", "practice_setting", "region")
NUMERIC_HCP_COLUMNS = ("prescribing_decile", "digital_affinity", "years_in_practice", "age")
#: fixed scales of the numeric HCP columns (so a new HCP needs no refit of a scaler)
NUMERIC_HCP_SCALE = {"prescribing_decile": 10.0, "digital_affinity": 1.0, "years_in_practice": 40.0, "age": 80.0}
#: per-event features of the sequence, in order
EVENT_FEATURES = ("engaged", "engagement_score", "log_gap_days", "log_age_days", "hour_sin", "hour_cos", "dow_sin",
                  "dow_cos")
#: content vocabulary: 0 = padding, 1 = an item outside the catalogue, catalogue item j -> j + 2
PAD, UNKNOWN_ITEM, FIRST_ITEM = 0, 1, 2
#: per candidate item, its activity before the prediction instant, in order
ITEM_CONTEXT_FEATURES = ("log_exposures_1d", "log_exposures_3d", "log_exposures_7d", "log_exposures_28d",
                         "log_engaged_7d", "log_engaged_28d", "log_days_since_last_exposure",
                         "log_days_since_first_exposure", "ever_exposed", "log_days_since_release", "released")
SEQUENCE_ENCODERS = ("lstm", "gru")
#: how the encoder's outputs become one sequence state: its last state, or an attention-weighted
#: mean of its outputs at every real step (padded steps get weight 0)
SEQUENCE_POOLINGS = ("last", "attention")
#: validation losses early stopping may watch: the content head's (the ranking aim) or the total
EARLY_STOPPING_MONITORS = ("val_next_content_loss", "val_loss")
FORMAT_VERSION = 1

# Attention pooling masks padded steps itself (a -1e9 score), so the Keras mask that its Reshape
# drops is not needed; Keras warns about the drop each time the graph is built or loaded.
warnings.filterwarnings("ignore", message="Layer 'attention_step_score' .* does not support masking",
                        category=UserWarning)


class CatalogueChangedError(ValueError):
    """The catalogue differs from the one the model was trained on; the message says how."""


def configure_threads(n_threads: int | None = None) -> None:
    """Limit TensorFlow to ``n_threads`` intra-op threads (default: ``HCP_TF_THREADS`` or 2)
    and one inter-op thread, before TensorFlow starts; a later call is a no-op."""
    import tensorflow as tf

    n = int(n_threads or os.environ.get("HCP_TF_THREADS", 2))
    tf.get_logger().setLevel("ERROR")  # retracing notices for predict calls of different sizes
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already initialised: the first setting stays
        pass


@dataclass(frozen=True)
class HybridSettings:
    """Architecture and training settings; the ``use_*`` switches define the ablations."""

    max_seq_len: int = 30
    embedding_dim: int = 16
    sequence_units: int = 32
    hidden_units: int = 64
    sequence_encoder: str = "lstm"
    sequence_pooling: str = "last"
    n_negatives: int = 32
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 3e-3
    patience: int = 2
    dropout: float = 0.3
    early_stopping_on: str = "val_next_content_loss"
    content_loss_weight: float = 1.0
    channel_loss_weight: float = 0.3
    engagement_loss_weight: float = 1.0
    use_sequence: bool = True
    use_static: bool = True
    use_topics: bool = True
    use_cf: bool = True
    seed: int = 42

    def validate(self) -> None:
        """Raise ``ValueError`` naming the setting and the allowed values."""
        positive = ("max_seq_len", "embedding_dim", "sequence_units", "hidden_units", "n_negatives", "epochs",
                    "batch_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.sequence_encoder not in SEQUENCE_ENCODERS:
            raise ValueError(f"sequence_encoder must be one of {', '.join(SEQUENCE_ENCODERS)}, got {self.sequence_encoder!r}")
        if self.sequence_pooling not in SEQUENCE_POOLINGS:
            raise ValueError(f"sequence_pooling must be one of {', '.join(SEQUENCE_POOLINGS)}, got {self.sequence_pooling!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.early_stopping_on not in EARLY_STOPPING_MONITORS:
            raise ValueError(f"early_stopping_on must be one of {', '.join(EARLY_STOPPING_MONITORS)}, "
                             f"got {self.early_stopping_on!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience!r}")
        for name in ("content_loss_weight", "channel_loss_weight", "engagement_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not (self.use_sequence or self.use_static):
            raise ValueError("use_sequence and use_static cannot both be false: the HCP would have no representation")


# --- preprocessing: numpy arrays the model reads -------------------------------------------


@dataclass
class Events:
    """Every HCP's exposures before the cut-off, grouped by HCP (in ``hcp_ids_`` order) and
    sorted by time: ``start[r]:end[r]`` are the rows of HCP ``r``."""

    content: np.ndarray  # int32 vocabulary index
    channel: np.ndarray  # int32 1..5 (0 is padding)
    features: np.ndarray  # float32 (n_events, 7): EVENT_FEATURES without log_age_days
    days: np.ndarray  # float64 days since the reference instant
    hcp_row: np.ndarray  # int32
    start: np.ndarray  # int64 (n_hcp,)
    end: np.ndarray  # int64 (n_hcp,)
    engaged: np.ndarray  # float32
    engagement_score: np.ndarray  # float32
    history_end: np.ndarray  # int64: first row of the HCP's exposures at the same instant (history is before it)
    repeat: np.ndarray  # bool: the HCP engaged with this item at an earlier exposure


def _days(times, reference: pd.Timestamp) -> np.ndarray:
    return (pd.to_datetime(pd.Series(times)).to_numpy(dtype="datetime64[ns]") - np.datetime64(reference, "ns")) \
        / np.timedelta64(1, "D")


def build_events(interactions: pd.DataFrame, hcp_ids: pd.Index, content_ids: pd.Index,
                 reference: pd.Timestamp) -> Events:
    """Encode ``interactions`` (contract columns) as :class:`Events`.

    Rows of HCPs outside ``hcp_ids`` raise :class:`UnknownIdError`; items outside
    ``content_ids`` become :data:`UNKNOWN_ITEM`; channels outside ``CHANNELS`` raise ``ValueError``.
    """
    rows = positions(interactions["hcp_id"].astype(object).to_numpy(), hcp_ids, "HCP") if len(interactions) \
        else np.zeros(0, np.int64)
    channel = pd.Index(CHANNELS).get_indexer(interactions["channel"].astype(object))
    if (channel < 0).any():
        bad = interactions["channel"].iloc[int(np.flatnonzero(channel < 0)[0])]
        raise ValueError(f"interactions column 'channel' has value {bad!r}; the channels are {', '.join(CHANNELS)}")
    item = pd.Index(content_ids).get_indexer(interactions["content_id"].astype(object))
    content = np.where(item >= 0, item + FIRST_ITEM, UNKNOWN_ITEM)
    days = _days(interactions["exposed_at"], reference)
    order = np.lexsort((channel, content, days, rows))
    rows, channel, content, days = rows[order], channel[order], content[order], days[order]
    engaged = interactions["engaged"].to_numpy(dtype=np.float32)[order]
    score = interactions["engagement_score"].to_numpy(dtype=np.float32)[order]
    n_hcp = len(hcp_ids)
    start = np.searchsorted(rows, np.arange(n_hcp), side="left")
    end = np.searchsorted(rows, np.arange(n_hcp), side="right")
    previous = np.r_[np.nan, days[:-1]]
    first = np.r_[True, rows[1:] != rows[:-1]] if len(rows) else np.zeros(0, bool)
    gap = np.where(first, 0.0, days - previous)
    when = pd.to_datetime(pd.Series(interactions["exposed_at"].to_numpy()[order]))
    hour = (when.dt.hour + when.dt.minute / 60.0).to_numpy() / 24.0 * 2 * np.pi
    dow = when.dt.dayofweek.to_numpy() / 7.0 * 2 * np.pi
    features = np.stack([engaged, score, np.log1p(gap), np.sin(hour), np.cos(hour), np.sin(dow), np.cos(dow)],
                        axis=1).astype(np.float32) if len(rows) else np.zeros((0, 7), np.float32)
    same_instant = ~first & np.r_[False, days[1:] == days[:-1]] if len(rows) else np.zeros(0, bool)
    history_end = np.maximum.accumulate(np.where(same_instant, 0, np.arange(len(rows))))
    earlier_engaged = pd.Series(engaged).groupby([rows, content]).cumsum().to_numpy() - engaged
    return Events(content.astype(np.int32), (channel + 1).astype(np.int32), features, days, rows.astype(np.int32),
                  start.astype(np.int64), end.astype(np.int64), engaged, score, history_end.astype(np.int64),
                  earlier_engaged > 0)


def history_window(events: Events, history_end: np.ndarray, hcp_start: np.ndarray, at_days: np.ndarray,
                   max_seq_len: int) -> dict[str, np.ndarray]:
    """The pre-padded history inputs for rows ``[hcp_start, history_end)`` of ``events`` (its
    most recent ``max_seq_len``), seen from instants ``at_days``: the model's sequence inputs."""
    steps = history_end[:, None] - max_seq_len + np.arange(max_seq_len)[None, :]
    valid = steps >= hcp_start[:, None]
    safe = np.where(valid, steps, 0)
    if len(events.content) == 0:
        safe = np.zeros_like(safe)
        valid = np.zeros_like(valid)
        content = np.zeros(safe.shape, np.int32)
        channel = np.zeros(safe.shape, np.int32)
        base = np.zeros(safe.shape + (7,), np.float32)
        age = np.zeros(safe.shape, np.float32)
    else:
        content = np.where(valid, events.content[safe], PAD).astype(np.int32)
        channel = np.where(valid, events.channel[safe], 0).astype(np.int32)
        base = np.where(valid[..., None], events.features[safe], 0.0).astype(np.float32)
        age = np.where(valid, np.log1p(np.maximum(at_days[:, None] - events.days[safe], 0.0)), 0.0).astype(np.float32)
    numeric = np.concatenate([base[..., :3], age[..., None], base[..., 3:]], axis=-1)
    return {"history_content": content, "history_channel": channel, "history_numeric": numeric}


@dataclass
class HcpTable:
    """Static HCP inputs in ``hcp_ids_`` order."""

    specialty: np.ndarray
    practice_setting: np.ndarray
    region: np.ndarray
    numeric: np.ndarray  # float32 (n_hcp, 4)
    cf: np.ndarray  # float32 (n_hcp, n_cf)

    def inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"hcp_specialty": self.specialty[rows], "hcp_setting": self.practice_setting[rows],
                "hcp_region": self.region[rows], "hcp_numeric": self.numeric[rows], "hcp_cf": self.cf[rows]}


def encode_categories(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    """Index of each value in ``vocabulary`` plus one; 0 for a value outside it (or missing)."""
    found = pd.Index(vocabulary).get_indexer(values.astype(object).where(values.notna(), None))
    return (found + 1).astype(np.int32)


def hcp_table(hcp_features: pd.DataFrame, hcp_ids: pd.Index, vocabularies: dict[str, list[str]],
              hcp_cf: np.ndarray) -> HcpTable:
    """Static inputs of ``hcp_ids`` from ``hcp_features`` (one row per HCP, master columns)."""
    needed = ("hcp_id",) + CATEGORICAL_HCP_COLUMNS + NUMERIC_HCP_COLUMNS
    missing = [c for c in needed if c not in hcp_features.columns]
    if missing:
        raise KeyError(f"hcp_features lacks column {missing[0]!r}; it needs {', '.join(needed)}")
    table = hcp_features.set_index(hcp_features["hcp_id"].astype(object))
    absent = hcp_ids.difference(table.index)
    if len(absent):
        raise UnknownIdError(f"hcp_features has no row for HCP id {absent[0]!r} ({len(absent)} HCPs missing)")
    table = table.loc[list(hcp_ids)]
    numeric = np.stack([table[c].to_numpy(dtype=np.float64) / NUMERIC_HCP_SCALE[c] for c in NUMERIC_HCP_COLUMNS], axis=1)
    if not np.isfinite(numeric).all():
        row, col = np.argwhere(~np.isfinite(numeric))[0]
        raise ValueError(f"hcp_features column {NUMERIC_HCP_COLUMNS[col]!r} is missing or not finite for HCP "
                         f"{hcp_ids[row]!r}")
    return HcpTable(*(encode_categories(table[c], vocabularies[c]) for c in CATEGORICAL_HCP_COLUMNS),
                    numeric.astype(np.float32), hcp_cf.astype(np.float32))


def topic_matrix(doc_topics: pd.DataFrame, content_ids: Iterable[str]) -> np.ndarray:
    """Topic vectors (n_items, n_topics) of ``content_ids`` from a doc-topic table (``pmid`` or
    ``content_id`` column, ``topic_*`` columns); an item without a row raises
    :class:`UnknownIdError` naming it."""
    key = "content_id" if "content_id" in doc_topics.columns else "pmid"
    columns = sorted((c for c in doc_topics.columns if str(c).startswith("topic_")), key=lambda c: int(str(c)[6:]))
    if key not in doc_topics.columns or not columns:
        raise KeyError(f"the doc-topic table needs a 'pmid' (or 'content_id') column and topic_* columns; it has "
                       f"{list(doc_topics.columns)}")
    table = doc_topics.set_index(doc_topics[key].astype(str))[columns]
    wanted = pd.Index([str(c) for c in content_ids])
    missing = wanted.difference(table.index)
    if len(missing):
        raise UnknownIdError(f"the doc-topic table has no row for content id {missing[0]!r} ({len(missing)} items missing)")
    return table.loc[wanted].to_numpy(dtype=np.float32)


@dataclass
class ItemActivity:
    """Each item's exposures before the cut-off, sorted by (item, time), and its release day
    (NaN when unknown at the cut-off), to compute :data:`ITEM_CONTEXT_FEATURES` at any instant."""

    key: np.ndarray  # float64 item * SPAN + day, sorted
    day: np.ndarray  # float64 the day of each key
    engaged_cumsum: np.ndarray  # int64, engaged exposures up to and including each key
    first_day: np.ndarray  # float64 (vocab,), NaN when never exposed
    release_day: np.ndarray  # float64 (vocab,), NaN when unknown

    SPAN = 1e5  # days; a horizon is far shorter, so (item, day) keys never collide

    @classmethod
    def from_events(cls, events: Events, release_day: np.ndarray) -> "ItemActivity":
        key = events.content.astype(np.float64) * cls.SPAN + events.days
        order = np.argsort(key, kind="stable")
        vocab = len(release_day)
        first = np.full(vocab, np.nan)
        np.fmin.at(first, events.content, events.days)
        return cls(key[order], events.days[order], np.cumsum(events.engaged[order].astype(np.int64)), first, release_day)

    def _count(self, items: np.ndarray, start: np.ndarray, end: np.ndarray, cumulative: np.ndarray | None = None):
        lo = np.searchsorted(self.key, items * self.SPAN + start, side="left")
        hi = np.searchsorted(self.key, items * self.SPAN + end, side="left")
        if cumulative is None:
            return hi - lo
        padded = np.r_[0, cumulative]
        return padded[hi] - padded[lo]

    def context(self, items: np.ndarray, at_days: np.ndarray) -> np.ndarray:
        """Context features (items.shape + (11,)) of vocabulary indices ``items`` at instants
        ``at_days`` (broadcast to ``items``): counts use exposures strictly before the instant."""
        items = np.asarray(items, dtype=np.float64)
        at = np.broadcast_to(np.asarray(at_days, dtype=np.float64), items.shape)
        flat_items, flat_at = items.ravel(), at.ravel()
        index = flat_items.astype(np.int64)
        first = self.first_day[index]
        seen = ~np.isnan(first) & (first < flat_at)
        release = self.release_day[index]
        released = ~np.isnan(release) & (release <= flat_at)
        # the item's last exposure strictly before the instant
        last = np.searchsorted(self.key, flat_items * self.SPAN + flat_at, side="left") - 1
        last_day = self.day[np.maximum(last, 0)] if len(self.day) else np.zeros(len(last))
        features = np.stack([
            *(np.log1p(self._count(flat_items, flat_at - days, flat_at)) for days in (1, 3, 7, 28)),
            *(np.log1p(self._count(flat_items, flat_at - days, flat_at, self.engaged_cumsum)) for days in (7, 28)),
            np.where(seen, np.log1p(np.maximum(flat_at - last_day, 0)), 0.0),
            np.where(seen, np.log1p(np.maximum(flat_at - np.where(seen, first, 0), 0)), 0.0),
            seen.astype(np.float64),
            np.where(released, np.log1p(np.maximum(flat_at - np.where(released, release, 0), 0)), 0.0),
            released.astype(np.float64),
        ], axis=1)
        return features.reshape(items.shape + (len(ITEM_CONTEXT_FEATURES),)).astype(np.float32)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


# --- the Keras model ----------------------------------------------------------------------


def build_model(settings: HybridSettings, n_items: int, topic_table: np.ndarray, cf_item_table: np.ndarray,
                n_hcp_cf: int, vocabulary_sizes: dict[str, int]):
    """The training model (functional API, named inputs and layers).

    ``topic_table`` (n_items + 2, n_topics) and ``cf_item_table`` (n_items + 2, n_cf + 1) are
    frozen lookup tables indexed by the content vocabulary (rows 0 and 1 are zero);
    ``vocabulary_sizes`` gives each categorical HCP column's vocabulary size (index 0 = unknown).
    Inputs: ``history_content``/``history_channel`` (max_seq_len,), ``history_numeric``
    (max_seq_len, 8), ``hcp_specialty``/``hcp_setting``/``hcp_region`` (), ``hcp_numeric`` (4,),
    ``hcp_cf`` (n_hcp_cf,), ``exposed_content``/``exposed_channel`` (), ``content_candidates``
    (1 + n_negatives,), and the items' activity ``exposed_context`` (11,) and ``candidate_context``
    (1 + n_negatives, 11) (:data:`ITEM_CONTEXT_FEATURES`). Outputs: ``next_content`` (logits over the candidates), ``channel``
    (softmax over CHANNELS) and ``engagement`` (probability of the exposed triple).
    """
    import keras
    from keras import layers

    s = settings
    L = s.max_seq_len
    vocab = n_items + FIRST_ITEM
    inputs = {
        "history_content": keras.Input((L,), dtype="int32", name="history_content"),
        "history_channel": keras.Input((L,), dtype="int32", name="history_channel"),
        "history_numeric": keras.Input((L, len(EVENT_FEATURES)), name="history_numeric"),
        "hcp_specialty": keras.Input((), dtype="int32", name="hcp_specialty"),
        "hcp_setting": keras.Input((), dtype="int32", name="hcp_setting"),
        "hcp_region": keras.Input((), dtype="int32", name="hcp_region"),
        "hcp_numeric": keras.Input((len(NUMERIC_HCP_COLUMNS),), name="hcp_numeric"),
        "hcp_cf": keras.Input((n_hcp_cf,), name="hcp_cf"),
        "exposed_content": keras.Input((), dtype="int32", name="exposed_content"),
        "exposed_channel": keras.Input((), dtype="int32", name="exposed_channel"),
        "content_candidates": keras.Input((1 + s.n_negatives,), dtype="int32", name="content_candidates"),
        "exposed_context": keras.Input((len(ITEM_CONTEXT_FEATURES),), name="exposed_context"),
        "candidate_context": keras.Input((1 + s.n_negatives, len(ITEM_CONTEXT_FEATURES)), name="candidate_context"),
    }

    # item tower: [id embedding, topics, CF factors] -> item vector, shared by history and candidates
    id_embedding = layers.Embedding(vocab, s.embedding_dim, embeddings_initializer="zeros", name="item_id_embedding")
    # frozen tables, filled below (not through an initializer, which would copy them into the config)
    topic_lookup = layers.Embedding(vocab, topic_table.shape[1], trainable=False, name="item_topics")
    cf_lookup = layers.Embedding(vocab, cf_item_table.shape[1], trainable=False, name="item_cf")
    item_hidden = layers.Dense(s.hidden_units, activation="relu", name="item_hidden")
    item_vector = layers.Dense(s.embedding_dim * 2, name="item_vector")
    item_bias = layers.Dense(1, name="item_bias")
    # item activity at the prediction instant (what is being promoted now, how new it is)
    context_hidden = layers.Dense(16, activation="relu", name="item_context_hidden")
    context_bias = layers.Dense(1, name="item_context_bias")

    def item_features(ids):
        parts = [id_embedding(ids)]
        if s.use_topics:
            parts.append(topic_lookup(ids))
        if s.use_cf:
            parts.append(cf_lookup(ids))
        return layers.Concatenate(name=None)(parts) if len(parts) > 1 else parts[0]

    def item_tower(features):
        return item_vector(item_hidden(features))

    hcp_parts = []
    if s.use_sequence:
        history_items = item_tower(item_features(inputs["history_content"]))
        channel_embedding = layers.Embedding(len(CHANNELS) + 1, 4, name="history_channel_embedding")
        steps = layers.Concatenate(name="history_steps")(
            [channel_embedding(inputs["history_channel"]), history_items, inputs["history_numeric"]])
        # Padded steps (channel 0) are zeroed by a frozen 0/1 lookup and then masked by Masking:
        # Concatenate drops an Embedding's mask_zero mask in Keras 3.15, and a real step is
        # never all-zero (its time-of-day sine and cosine cannot both be 0).
        is_event = layers.Embedding(len(CHANNELS) + 1, 1, trainable=False, name="history_is_event")
        steps = layers.Multiply(name="history_steps_padded_zero")([steps, is_event(inputs["history_channel"])])
        steps = layers.Masking(0.0, name="history_padding_mask")(steps)
        recurrent = layers.LSTM if s.sequence_encoder == "lstm" else layers.GRU
        if s.sequence_pooling == "last":
            hcp_parts.append(recurrent(s.sequence_units, name="sequence_encoder")(steps))
        else:
            # attention pooling: softmax over steps of a learned score of each output; a frozen
            # lookup adds -1e9 to padded steps' scores, so they get weight 0 (an all-padding
            # history gets uniform weights over outputs that are all the zero initial state)
            outputs = recurrent(s.sequence_units, return_sequences=True, name="sequence_encoder")(steps)
            step_score = layers.Reshape((L,), name="attention_step_score")(layers.Dense(1, name="attention_score")(outputs))
            padding_penalty = layers.Embedding(len(CHANNELS) + 1, 1, trainable=False, name="attention_padding_penalty")
            penalty = layers.Reshape((L,), name="attention_step_penalty")(padding_penalty(inputs["history_channel"]))
            weights = layers.Softmax(axis=-1, name="attention_weights")(
                layers.Add(name="attention_masked_score")([step_score, penalty]))
            hcp_parts.append(layers.Dot(axes=(1, 1), name="sequence_state")([weights, outputs]))
    if s.use_static:
        for column, key, dim in (("specialty", "hcp_specialty", 4), ("practice_setting", "hcp_setting", 2),
                                 ("region", "hcp_region", 2)):
            embedded = layers.Embedding(vocabulary_sizes[column], dim, name=f"{column}_embedding")(inputs[key])
            hcp_parts.append(embedded)
        hcp_parts.append(inputs["hcp_numeric"])
        if s.use_cf:
            hcp_parts.append(inputs["hcp_cf"])
    fused = layers.Concatenate(name="hcp_features")(hcp_parts) if len(hcp_parts) > 1 else hcp_parts[0]
    hcp_vector = layers.Dense(s.hidden_units, activation="relu", name="hcp_fusion")(fused)
    # dropout on the HCP vector: the personal part of the content score memorises the training
    # period quickly (the validation content loss rises after two or three epochs without it)
    hcp_vector = layers.Dropout(s.dropout, name="hcp_dropout")(hcp_vector)

    # (a) next content: q(h) . v_j + b(v_j) over the exposed item and the sampled negatives
    candidates = item_tower(item_features(inputs["content_candidates"]))
    query = layers.Dense(s.embedding_dim * 2, name="content_query")(hcp_vector)
    affinity = layers.Dot(axes=(1, 2), name="content_affinity")([query, candidates])
    bias = layers.Reshape((1 + s.n_negatives,), name="content_bias")(item_bias(candidates))
    candidate_context = context_hidden(inputs["candidate_context"])
    context_query = layers.Dense(16, name="context_query")(hcp_vector)
    context_affinity = layers.Dot(axes=(1, 2), name="context_affinity")([context_query, candidate_context])
    context_offset = layers.Reshape((1 + s.n_negatives,), name="context_bias")(context_bias(candidate_context))
    next_content = layers.Add(name="next_content")([affinity, bias, context_affinity, context_offset])

    # (b), (c): dense fusion of the HCP vector with the exposed item's vector
    exposed = item_tower(item_features(inputs["exposed_content"]))
    pair = layers.Dense(s.hidden_units, activation="relu", name="pair_fusion")(
        layers.Concatenate(name="pair_features")([hcp_vector, exposed, context_hidden(inputs["exposed_context"])]))
    channel = layers.Dense(len(CHANNELS), activation="softmax", name="channel")(pair)
    engagement_logits = layers.Dense(len(CHANNELS), name="engagement_logits")(pair)
    chosen = layers.CategoryEncoding(len(CHANNELS), output_mode="one_hot", name="exposed_channel_one_hot")(
        inputs["exposed_channel"])
    engagement = layers.Activation("sigmoid", name="engagement")(
        layers.Dot(axes=1, name="exposed_channel_logit")([engagement_logits, chosen]))
    model = keras.Model(inputs, {"next_content": next_content, "channel": channel, "engagement": engagement},
                        name="hybrid_lstm")
    if s.use_sequence:
        model.get_layer("history_is_event").set_weights([np.r_[0.0, np.ones(len(CHANNELS))][:, None]])
        if s.sequence_pooling == "attention":
            model.get_layer("attention_padding_penalty").set_weights([np.r_[-1e9, np.zeros(len(CHANNELS))][:, None]])
    if s.use_topics:
        topic_lookup.set_weights([topic_table])
    if s.use_cf:
        cf_lookup.set_weights([cf_item_table])
    return model


class _Scorers:
    """Sub-models sharing the trained layers, used for batched scoring."""

    def __init__(self, model, settings: HybridSettings):
        import keras

        self.model = model
        m = model
        hcp_inputs = [m.get_layer(n).output for n in ("history_content", "history_channel", "history_numeric",
                                                       "hcp_specialty", "hcp_setting", "hcp_region", "hcp_numeric",
                                                       "hcp_cf")]
        hcp_vector = m.get_layer("hcp_fusion").output
        query = m.get_layer("content_query").output
        context_query = m.get_layer("context_query").output
        self.hcp = keras.Model(hcp_inputs, [hcp_vector, query, context_query], name="hcp_scorer")
        context = keras.Input((len(ITEM_CONTEXT_FEATURES),), name="item_context_row")
        hidden = m.get_layer("item_context_hidden")(context)
        self.context = keras.Model(context, [hidden, m.get_layer("item_context_bias")(hidden)], name="context_scorer")
        # item features -> (item vector, bias), applied to any feature rows (new items included)
        n_features = m.get_layer("item_hidden").kernel.shape[0]
        features = keras.Input((n_features,), name="item_feature_row")
        vector = m.get_layer("item_vector")(m.get_layer("item_hidden")(features))
        self.item = keras.Model(features, [vector, m.get_layer("item_bias")(vector)], name="item_scorer")
        hcp_in = keras.Input((settings.hidden_units,), name="pair_hcp_vector")
        item_in = keras.Input((settings.embedding_dim * 2,), name="pair_item_vector")
        context_in = keras.Input((m.get_layer("item_context_hidden").units,), name="pair_item_context")
        pair = m.get_layer("pair_fusion")(m.get_layer("pair_features")([hcp_in, item_in, context_in]))
        probabilities = keras.layers.Activation("sigmoid")(m.get_layer("engagement_logits")(pair))
        self.pair = keras.Model([hcp_in, item_in, context_in], [m.get_layer("channel")(pair), probabilities],
                                name="pair_scorer")


# --- the recommender ----------------------------------------------------------------------


class HybridRecommender(Recommender):
    """The hybrid LSTM as a :class:`~hcp_lib.recommender.Recommender`.

    ``hcp_features``: the HCP master (hcp_id, specialty, practice_setting, region,
    prescribing_decile, digital_affinity, years_in_practice, age). ``doc_topics``: the LDA
    doc-topic table of notebook 03 (every catalogue item needs a row). ``cf_model``: an
    unfitted recommender exposing ``hcp_factors_`` and ``item_factors_`` after ``fit`` (e.g.
    :class:`hcp_lib.cf.ALS`); it is fitted on the same training data, so its factors never see
    anything after the cut-off (they do include the validation examples' engagements, which
    makes the early-stopping loss slightly optimistic about them). ``validation_start``:
    exposures from this instant to the cut-off are the early-stopping validation set (the
    split's validation window); ``None`` takes the last 10% of the training period.
    """

    name = "hybrid_lstm"

    def __init__(self, hcp_features: pd.DataFrame, doc_topics: pd.DataFrame, cf_model: Recommender | None = None,
                 settings: HybridSettings = HybridSettings(), validation_start: pd.Timestamp | None = None,
                 verbose: int = 0, pair_chunk: int = 1_000_000):
        self.hcp_features = hcp_features
        self.doc_topics = doc_topics
        self.cf_model = cf_model
        self.settings = settings
        self.validation_start = validation_start
        self.verbose = verbose
        self.pair_chunk = pair_chunk

    # -- fitting --
    def _fit(self, train: TrainingData) -> None:
        import keras
        import tensorflow as tf

        s = self.settings
        s.validate()
        if s.use_cf and self.cf_model is None:
            raise ValueError("use_cf is true but no cf_model was given; pass e.g. hcp_lib.cf.ALS() or set use_cf=False")
        configure_threads()
        keras.utils.set_random_seed(s.seed)
        tf.config.experimental.enable_op_determinism()
        started = time.perf_counter()

        self.cutoff_ = pd.Timestamp(train.cutoff)
        self.reference_ = pd.Timestamp(train.interactions["exposed_at"].min()).normalize()
        self.vocabularies_ = {c: sorted(self.hcp_features[c].dropna().astype(str).unique().tolist())
                              for c in CATEGORICAL_HCP_COLUMNS if c in self.hcp_features.columns}
        topics = topic_matrix(self.doc_topics, self.content_ids_)
        validation_start = pd.Timestamp(self.validation_start) if self.validation_start is not None else None
        if validation_start is not None and not validation_start < self.cutoff_:
            raise ValueError(f"validation_start {validation_start} must be before the cut-off {self.cutoff_}")
        if s.use_cf:
            # Factors from all the training data, so items first engaged in the last weeks have
            # factors at scoring time. They also encode each training example's own outcome,
            # which the network can over-trust; whether CF inputs help at all is therefore
            # decided on the validation window (notebook 05 compares variants without them).
            self.cf_model.fit(train)
            cf_ids = pd.Index(self.cf_model.content_ids_)
            item_cf = np.asarray(self.cf_model.item_factors_, dtype=np.float64)[cf_ids.get_indexer(self.content_ids_)]
            hcp_cf = np.asarray(self.cf_model.hcp_factors_, dtype=np.float64)[
                pd.Index(self.cf_model.hcp_ids_).get_indexer(self.hcp_ids_)]
            # ALS factors have arbitrary scale; unit rows keep the inputs O(1) (their dot products are cosines)
            engaged_items = set(train.engaged["content_id"].astype(object))
            has_cf = np.array([c in engaged_items for c in self.content_ids_], dtype=np.float64)
            item_cf = _unit_rows(item_cf) * has_cf[:, None]
            engaged_hcps = set(train.engaged["hcp_id"].astype(object))
            hcp_cf = _unit_rows(hcp_cf) * np.array([h in engaged_hcps for h in self.hcp_ids_], dtype=np.float64)[:, None]
            item_cf = np.concatenate([item_cf, has_cf[:, None]], axis=1)
        else:
            item_cf = np.zeros((len(self.content_ids_), 1))
            hcp_cf = np.zeros((len(self.hcp_ids_), 1))
        self.hcp_cf_ = hcp_cf.astype(np.float32)
        self.topic_table_ = np.vstack([np.zeros((FIRST_ITEM, topics.shape[1])), topics]).astype(np.float32)
        self.cf_table_ = np.vstack([np.zeros((FIRST_ITEM, item_cf.shape[1])), item_cf]).astype(np.float32)
        self._prepare_inputs(train)

        if validation_start is None:
            validation_day = 0.9 * float(_days([self.cutoff_], self.reference_)[0])
        else:
            validation_day = float(_days([validation_start], self.reference_)[0])
        is_validation = self.events_.days >= validation_day
        train_rows, valid_rows = np.flatnonzero(~is_validation), np.flatnonzero(is_validation)
        if len(train_rows) == 0:
            raise ValueError(f"no exposure before the validation start {validation_start}: nothing to train on")

        self.model_ = build_model(s, len(self.content_ids_), self.topic_table_, self.cf_table_, self.hcp_cf_.shape[1],
                                  {c: len(self.vocabularies_[c]) + 1 for c in CATEGORICAL_HCP_COLUMNS})
        steps = int(np.ceil(len(train_rows) / s.batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(s.learning_rate, decay_steps=max(1, steps * s.epochs), alpha=0.1)
        self.model_.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss={"next_content": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  "channel": keras.losses.SparseCategoricalCrossentropy(),
                  "engagement": keras.losses.BinaryCrossentropy()},
            loss_weights={"next_content": s.content_loss_weight, "channel": s.channel_loss_weight,
                          "engagement": s.engagement_loss_weight},
        )
        train_ds = self.dataset(train_rows, shuffle=True)
        callbacks = []
        valid_ds = None
        if len(valid_rows):
            valid_ds = self.dataset(valid_rows, shuffle=False)
            callbacks.append(keras.callbacks.EarlyStopping(monitor=s.early_stopping_on, mode="min",
                                                           patience=s.patience, restore_best_weights=True))
        history = self.model_.fit(train_ds, validation_data=valid_ds, epochs=s.epochs, callbacks=callbacks,
                                  shuffle=False, verbose=self.verbose)  # the dataset shuffles itself, seeded
        self.history_ = pd.DataFrame(history.history).rename_axis("epoch").reset_index()
        self.history_["epoch"] += 1
        self.n_train_examples_, self.n_valid_examples_ = len(train_rows), len(valid_rows)
        self.fit_seconds_ = time.perf_counter() - started
        self._scorers = _Scorers(self.model_, s)

    def _prepare_inputs(self, train: TrainingData) -> None:
        self.events_ = build_events(train.interactions, self.hcp_ids_, self.content_ids_, self.reference_)
        release = _days(train.catalogue["release_date"], self.reference_)  # NaT (unreleased at the cut-off) -> NaN
        self.activity_ = ItemActivity.from_events(self.events_, np.r_[np.full(FIRST_ITEM, np.nan), release])
        self.hcp_table_ = hcp_table(self.hcp_features, self.hcp_ids_, self.vocabularies_, self.hcp_cf_)
        self.approved_ = train.catalogue["approved_specialties"].reset_index(drop=True)

    def example_inputs(self, rows: np.ndarray, negatives: np.ndarray) -> tuple[dict, dict, dict]:
        """Inputs, targets and sample weights of the training examples at event rows ``rows``
        with the sampled negative items ``negatives`` (len(rows), n_negatives)."""
        ev = self.events_
        hcp = ev.hcp_row[rows]
        # history strictly before the exposure's instant (same-minute exposures are not history)
        x = history_window(ev, ev.history_end[rows], ev.start[hcp], ev.days[rows], self.settings.max_seq_len)
        x.update(self.hcp_table_.inputs(hcp))
        x["exposed_content"] = ev.content[rows]
        x["exposed_channel"] = ev.channel[rows] - 1
        x["content_candidates"] = np.concatenate([ev.content[rows][:, None], negatives], axis=1).astype(np.int32)
        x["exposed_context"] = self.activity_.context(ev.content[rows], ev.days[rows])
        x["candidate_context"] = self.activity_.context(x["content_candidates"], ev.days[rows][:, None])
        y = {"next_content": np.zeros(len(rows), np.int32), "channel": ev.channel[rows] - 1,
             "engagement": ev.engaged[rows][:, None]}
        # the content head learns new engagements only: an item the HCP already engaged with is never recommended
        new_engagement = ev.engaged[rows] * ~ev.repeat[rows]
        w = {"next_content": new_engagement.astype(np.float32), "channel": ev.engaged[rows],
             "engagement": np.ones(len(rows), np.float32)}
        return x, y, w

    def dataset(self, rows: np.ndarray, shuffle: bool):
        """A ``tf.data`` pipeline of batches of training examples at event rows ``rows``.

        Rows are shuffled (seeded, reshuffled each epoch) and batched; each batch's inputs are
        assembled in numpy by :meth:`example_inputs` (vectorised gathers), with negatives drawn
        uniformly from the items exposed in training by a generator seeded with (seed, batch number), so an
        epoch's data is the same on every run.
        """
        import tensorflow as tf

        s = self.settings
        candidates = self.negative_pools()
        probe_x, probe_y, probe_w = self.example_inputs(rows[:1], np.full((1, s.n_negatives), FIRST_ITEM))

        def spec(array):
            return tf.TensorSpec((None,) + array.shape[1:], tf.as_dtype(array.dtype))

        signature = tuple({k: spec(v) for k, v in part.items()} for part in (probe_x, probe_y, probe_w))
        state = {"epoch": 0}

        def batches():
            # a plain generator keeps memory at one batch whatever the scale
            epoch = state["epoch"]
            state["epoch"] += 1
            order = np.random.default_rng([s.seed, epoch]).permutation(rows) if shuffle else rows
            for number, first in enumerate(range(0, len(order), s.batch_size)):
                batch = order[first:first + s.batch_size]
                rng = np.random.default_rng([s.seed, epoch if shuffle else 0, number])
                specialty = self.hcp_table_.specialty[self.events_.hcp_row[batch]]
                negatives = np.empty((len(batch), s.n_negatives), np.int64)
                for code in np.unique(specialty):
                    where = np.flatnonzero(specialty == code)
                    pool = candidates[code]
                    negatives[where] = pool[rng.integers(0, len(pool), size=(len(where), s.n_negatives))]
                yield self.example_inputs(batch, negatives)

        n_batches = int(np.ceil(len(rows) / s.batch_size))
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return dataset.apply(tf.data.experimental.assert_cardinality(n_batches)).prefetch(2)

    def negative_pools(self) -> dict[int, np.ndarray]:
        """Per specialty code, the vocabulary indices negatives are drawn from: items exposed in
        training and approved for the specialty (all exposed items when none is).

        Only exposed items: an item never seen keeps a zero id embedding, so at scoring time it
        is represented by its topics. Only approved items: the lists never hold an unapproved
        item, so the content head should spend its capacity ranking the eligible ones rather
        than learning the approval rules (uniform within the pool, so the sampled-softmax
        correction is still a constant for each HCP).
        """
        warm = np.unique(self.events_.content[self.events_.content >= FIRST_ITEM])
        approved = self.approved_.to_numpy(dtype=object)[warm - FIRST_ITEM]
        pools = {0: warm}
        for code, specialty in enumerate(self.vocabularies_["specialty"], start=1):
            pool = warm[np.array([isinstance(a, str) and specialty in a.split("; ") for a in approved], dtype=bool)]
            pools[code] = pool if len(pool) else warm
        return pools

    # -- scoring --
    def _cutoff_day(self) -> float:
        return float(_days([self.cutoff_], self.reference_)[0])

    def _hcp_inputs(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        ev = self.events_
        at = np.full(len(rows), self._cutoff_day())
        x = history_window(ev, ev.end[rows], ev.start[rows], at, self.settings.max_seq_len)
        x.update(self.hcp_table_.inputs(rows))
        return x

    def hcp_vectors(self, hcp_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(HCP vectors h, content queries q(h), context queries) of ``hcp_ids`` at the cut-off,
        in one predict call."""
        rows = self._rows(hcp_ids)
        return tuple(self._scorers.hcp.predict(self._hcp_inputs(rows), batch_size=4096, verbose=0))

    def item_feature_rows(self, content_index: np.ndarray) -> np.ndarray:
        """The item tower's input rows of vocabulary indices ``content_index``."""
        m = self.model_
        parts = [np.asarray(m.get_layer("item_id_embedding").embeddings)[content_index]]
        if self.settings.use_topics:
            parts.append(self.topic_table_[content_index])
        if self.settings.use_cf:
            parts.append(self.cf_table_[content_index])
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _item_vectors(self, feature_rows: np.ndarray, context_rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """(item vectors, item biases, context vectors, context biases) of the rows, two predict calls."""
        size = max(1, len(feature_rows))
        vectors, bias = self._scorers.item.predict(feature_rows, batch_size=size, verbose=0)
        context, context_bias = self._scorers.context.predict(context_rows, batch_size=size, verbose=0)
        return vectors, bias[:, 0], context, context_bias[:, 0]

    def _catalogue_rows(self) -> tuple[np.ndarray, np.ndarray]:
        index = np.arange(len(self.content_ids_)) + FIRST_ITEM
        return self.item_feature_rows(index), self.activity_.context(index, self._cutoff_day())

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return self._content_scores(rows, *self._catalogue_rows())

    def _content_scores(self, rows: np.ndarray, feature_rows: np.ndarray, context_rows: np.ndarray) -> np.ndarray:
        # the next-content logit of build_model, q(h)·v + b(v) + q_c(h)·c + b_c(c), for every item at once
        _, query, context_query = self._scorers.hcp.predict(self._hcp_inputs(rows), batch_size=4096, verbose=0)
        vectors, bias, context, context_bias = self._item_vectors(feature_rows, context_rows)
        return query @ vectors.T + bias[None, :] + context_query @ context.T + context_bias[None, :]

    def score_items(self, hcp_ids: Iterable[str], content_ids: Iterable[str],
                    topic_vectors: pd.DataFrame | None = None) -> np.ndarray:
        """Next-content scores (n_hcp, n_items) of any items, known or new.

        Items of the training catalogue use their learned representation; an item the model
        has never seen is represented by its topic vector alone (zero id embedding, no CF
        factors, no exposure, released at the cut-off), looked up in ``topic_vectors`` (a
        doc-topic table, e.g. from :func:`hcp_lib.topics.transform` of its text). A new item
        without a topic vector, or a model trained without topics, raises
        :class:`UnknownIdError` naming the item.
        """
        self._check_fitted()
        rows = self._rows(hcp_ids)
        content_ids = [str(c) for c in content_ids]
        index = self.content_ids_.get_indexer(pd.Index(content_ids, dtype=object))
        new = [c for c, i in zip(content_ids, index) if i < 0]
        vocabulary_index = np.where(index >= 0, index + FIRST_ITEM, UNKNOWN_ITEM)
        features = self.item_feature_rows(vocabulary_index)
        context = self.activity_.context(vocabulary_index, self._cutoff_day())
        if new:
            if topic_vectors is None or not self.settings.use_topics:
                why = "pass topic_vectors for new items" if self.settings.use_topics else \
                    "this model was trained without topics, so it cannot represent new items"
                raise UnknownIdError(f"content id {new[0]!r} is not in the training catalogue "
                                     f"({len(new)} new items); {why}")
            topics = topic_matrix(topic_vectors, new)
            if topics.shape[1] != self.topic_table_.shape[1]:
                raise ValueError(f"topic_vectors has {topics.shape[1]} topic columns; the model was trained with "
                                 f"{self.topic_table_.shape[1]}")
            new_rows = np.flatnonzero(index < 0)
            e = self.settings.embedding_dim
            features[new_rows, e:e + topics.shape[1]] = topics
            context[new_rows] = 0.0
            context[new_rows, ITEM_CONTEXT_FEATURES.index("released")] = 1.0
        return np.asarray(self._content_scores(rows, features, context), dtype=np.float64)

    def score_channels(self, hcp_ids: Iterable[str]) -> np.ndarray:
        """P(engaged | HCP, content, channel), (n_hcp, n_content, n_channel) in CHANNELS order,
        from head (c): one predict for the HCP vectors, two for the items, and pair-head calls
        of about ``pair_chunk`` (HCP, item) pairs each."""
        return self._pair_scores(hcp_ids)[1]

    def channel_preferences(self, hcp_ids: Iterable[str]) -> np.ndarray:
        """Head (b): P(channel | HCP, content, engaged), (n_hcp, n_content, n_channel)."""
        return self._pair_scores(hcp_ids)[0]

    def _pair_scores(self, hcp_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(hcp_ids)
        h, _, _ = self._scorers.hcp.predict(self._hcp_inputs(rows), batch_size=4096, verbose=0)
        vectors, _, context, _ = self._item_vectors(*self._catalogue_rows())
        n_hcp, n_items = len(rows), len(vectors)
        preference = np.zeros((n_hcp, n_items, len(CHANNELS)), np.float32)
        probability = np.zeros((n_hcp, n_items, len(CHANNELS)), np.float32)
        per_chunk = max(1, self.pair_chunk // max(1, n_items))
        for first in range(0, n_hcp, per_chunk):
            block = h[first:first + per_chunk]
            pair_inputs = [np.repeat(block, n_items, axis=0), np.tile(vectors, (len(block), 1)),
                           np.tile(context, (len(block), 1))]
            pref, prob = self._scorers.pair.predict(pair_inputs, batch_size=65536, verbose=0)
            preference[first:first + len(block)] = pref.reshape(len(block), n_items, -1)
            probability[first:first + len(block)] = prob.reshape(len(block), n_items, -1)
        return preference.astype(np.float64), probability.astype(np.float64)

    def score_pair_loop(self, hcp_id: str, content_id: str, channel: str) -> float:
        """P(engaged) of one (HCP, content, channel) through the whole training model, one
        call per triple: the per-item loop of v0.1, kept for the scoring benchmark."""
        row = self._rows([hcp_id])
        item = positions([content_id], self.content_ids_, "content")[0] + FIRST_ITEM
        x = self._hcp_inputs(row)
        x["exposed_content"] = np.array([item], np.int32)
        x["exposed_channel"] = np.array([CHANNELS.index(channel)], np.int32)
        x["content_candidates"] = np.full((1, 1 + self.settings.n_negatives), item, np.int32)
        x["exposed_context"] = self.activity_.context(np.array([item]), self._cutoff_day())
        x["candidate_context"] = self.activity_.context(x["content_candidates"], self._cutoff_day())
        return float(np.asarray(self.model_(x, training=False)["engagement"])[0, 0])

    def _check_fitted(self) -> None:
        self._rows([])

    # -- persistence --
    def save(self, folder: str | Path) -> Path:
        """Write ``model.keras``, ``preprocessing.json`` and ``hcp_cf_factors.parquet`` to ``folder``."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with io.atomic_path(folder / "model.keras") as tmp:
            target = tmp.with_suffix(".keras")
            self.model_.save(target)
            os.replace(target, tmp)
        io.write_json({
            "format_version": FORMAT_VERSION,
            "settings": asdict(self.settings),
            "cutoff": self.cutoff_.isoformat(),
            "reference": self.reference_.isoformat(),
            "content_ids": [str(c) for c in self.content_ids_],
            "hcp_ids": [str(h) for h in self.hcp_ids_],
            "channels": list(CHANNELS),
            "hcp_vocabularies": self.vocabularies_,
            "numeric_hcp_scale": NUMERIC_HCP_SCALE,
            "event_features": list(EVENT_FEATURES),
            "content_vocabulary": {"padding": PAD, "unknown": UNKNOWN_ITEM, "first_item": FIRST_ITEM},
        }, folder / "preprocessing.json")
        cf = pd.DataFrame(self.hcp_cf_, columns=[f"cf_{i}" for i in range(self.hcp_cf_.shape[1])])
        cf.insert(0, "hcp_id", pd.array([str(h) for h in self.hcp_ids_], dtype="string"))
        io.write_parquet(cf, folder / "hcp_cf_factors.parquet")
        return folder


def load(folder: str | Path, train: TrainingData, hcp_features: pd.DataFrame,
         doc_topics: pd.DataFrame | None = None) -> HybridRecommender:
    """A fitted :class:`HybridRecommender` from :meth:`~HybridRecommender.save`'s ``folder``.

    ``train`` must be the same training data (same cut-off and catalogue): the HCP histories
    are rebuilt from it. A different catalogue raises :class:`CatalogueChangedError` saying
    which items were added or removed; a different cut-off raises ``ValueError``.
    """
    import keras

    configure_threads()
    folder = Path(folder)
    meta = io.read_json(folder / "preprocessing.json")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / 'preprocessing.json'}: format_version {meta.get('format_version')!r}, "
                         f"expected {FORMAT_VERSION}")
    saved = pd.Index(meta["content_ids"], dtype=object)
    current = pd.Index(train.catalogue["content_id"].astype(object))
    if not saved.equals(current):
        added, removed = current.difference(saved), saved.difference(current)
        detail = []
        if len(added):
            detail.append(f"{len(added)} added (e.g. {added[0]!r})")
        if len(removed):
            detail.append(f"{len(removed)} removed (e.g. {removed[0]!r})")
        raise CatalogueChangedError(
            f"{folder}: the catalogue changed since training: " + (", ".join(detail) or "same items, another order")
            + "; refit the model, or score new items with score_items(..., topic_vectors)")
    if pd.Timestamp(meta["cutoff"]) != pd.Timestamp(train.cutoff):
        raise ValueError(f"{folder}: the model was trained with cut-off {meta['cutoff']}, the training data given "
                         f"has cut-off {pd.Timestamp(train.cutoff).isoformat()}")
    model = HybridRecommender(hcp_features, doc_topics if doc_topics is not None else pd.DataFrame(),
                              settings=HybridSettings(**meta["settings"]))
    model.hcp_ids_ = pd.Index(train.hcps["hcp_id"].astype(object))
    model.content_ids_ = current
    model.channels_ = CHANNELS
    model.cutoff_ = pd.Timestamp(meta["cutoff"])
    model.reference_ = pd.Timestamp(meta["reference"])
    model.vocabularies_ = {k: list(v) for k, v in meta["hcp_vocabularies"].items()}
    cf = io.read_parquet(folder / "hcp_cf_factors.parquet").set_index("hcp_id")
    missing = model.hcp_ids_.difference(cf.index.astype(object))
    if len(missing):
        raise UnknownIdError(f"{folder / 'hcp_cf_factors.parquet'}: no row for HCP id {missing[0]!r}")
    model.hcp_cf_ = cf.loc[list(model.hcp_ids_)].to_numpy(dtype=np.float32)
    model._prepare_inputs(train)
    model.model_ = keras.models.load_model(folder / "model.keras")
    # the frozen item tables travel inside the model's weights
    tables = {name: np.asarray(model.model_.get_layer(name).embeddings) if use else np.zeros((len(current) + FIRST_ITEM, 1),
              np.float32) for name, use in (("item_topics", model.settings.use_topics), ("item_cf", model.settings.use_cf))}
    model.topic_table_, model.cf_table_ = tables["item_topics"], tables["item_cf"]
    model._scorers = _Scorers(model.model_, model.settings)
    return model


def layer_table(model) -> pd.DataFrame:
    """The named layers of a Keras model that hold weights: layer, type, trainable and frozen
    weight counts (what ``model.summary()`` says, as a table)."""
    rows = [{"layer": layer.name, "type": type(layer).__name__,
             "trainable weights": int(sum(np.prod(w.shape) for w in layer.trainable_weights)),
             "frozen weights": int(sum(np.prod(w.shape) for w in layer.non_trainable_weights))}
            for layer in model.layers if layer.weights]
    return pd.DataFrame(rows).set_index("layer")
