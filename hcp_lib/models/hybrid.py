"""The hybrid LSTM: an engagement model P(engaged | HCP, history before t, content, channel, t)
that fuses each HCP's exposure sequence with its profile, LDA topics and CF (notebook 05).

It learns from every logged exposure before the cut-off, engaged or not, each seen from its
own instant (:mod:`hcp_lib.models.engagement`, inputs from :func:`hcp_lib.models.features.query_inputs`).
Its logit is a sum of three parts, the shape of an engagement decision (how much this HCP
answers this channel now; how this item does on this channel; how much this HCP wants this
item now)::

    logit(h, c, k, t) = A(h, t)[k] + B(c)[k] + u(h, t) · v(c) + b(c) + g(pair(h, c, t))

- ``A(h, t)`` (per channel): the HCP's profile (specialty, setting, region, the numeric
  columns of the master and its patient mix), its history counts (touches in the last 7, 14
  and 28 days, engagement rate, days since the last touch), its history on each channel (a
  shared and a per-channel weight on each of :data:`hcp_lib.models.features.CHANNEL_HISTORY`) and
  the sequence state;
- ``B(c)`` (per channel) and ``b(c)``: the item's area, content type, abstract flag, series
  part and topics, and a learned bias per item (its general appeal);
- ``u(h, t) · v(c)``: taste against content. ``u`` adds embeddings of the specialty, the peer
  group and the HCP itself (regularised; zero until the data moves them), a projection of the
  profile and patient mix, one of the HCP's topic memories (the topic mixes of what it
  engaged with and ignored, recently and in all, and of what its peer group engaged with)
  and one of the sequence state; ``v`` adds a learned item embedding (zero for an item never
  exposed, so a new item is placed by its topics and area), a projection of the topics and
  an area embedding;
- ``g(pair)``: a small dense layer over the (HCP, item) history — shown or engaged before,
  series follow-up, the topic and CF similarity of the item to the HCP's engagements, the
  item's age and engagement so far (:data:`hcp_lib.models.features.PAIR_FEATURES`).

The **sequence encoder** (an LSTM, or a GRU) reads the HCP's last ``sequence_length``
exposures before t, oldest first: each step is the item's topic vector, a channel embedding,
whether it was engaged with and log1p days before t; padded steps are masked. What it can
learn that counts cannot — the order of touches, fatigue building up, a channel that stopped
working, interests that drift — enters through ``u`` and ``A``.

Because the logit is additive, every (HCP, item, channel) probability at the cut-off comes
from one pass of each tower and a broadcast sum (:meth:`HybridRecommender.score_channels`).
Content is ranked by its best channel's probability and that channel is the one
recommended, so lists, channels and the plan use one model.

The ``use_*`` switches define the ablations of notebook 05 (no sequence, no topics, no CF, no
static profile). Persistence: :meth:`HybridRecommender.save` writes ``model.keras``
(architecture and weights), ``preprocessing.json`` (settings, vocabularies, ids, cut-off)
and ``cf_item_factors.parquet``; :func:`load` rebuilds the inputs from the same training
data and reproduces the probabilities.

TensorFlow is imported here only (and lazily), so the rest of ``hcp_lib`` stays light.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import config, io
from ..domain import CHANNELS, HYBRID_NAME
from ..split import TrainingData
from . import features as F
from .base import Recommender, UnknownIdError
from .engagement import EngagementData, EngagementModel, Queries, model_tables

SEQUENCE_ENCODERS = ("lstm", "gru")
FORMAT_VERSION = 2
#: the HCP-level inputs (the HCP tower), the item-level inputs (the item tower)
HCP_INPUTS = (
    "hcp",
    "specialty",
    "practice_setting",
    "region",
    "peer_group",
    "hcp_numeric",
    "hcp_history",
    "channel_history",
    "memory",
    "sequence_item",
    "sequence_channel",
    "sequence_numeric",
)
ITEM_INPUTS = ("item", "item_area", "item_type", "item_numeric", "topics")


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


#: notebook parameter -> :class:`HybridSettings` field (the one place they are mapped; each
#: mapped field takes the parameter's default from :func:`hcp_lib.config.default`)
HYBRID_PARAMETERS = {
    "max_seq_len": "sequence_length",
    "hybrid_embedding_dim": "embedding_dim",
    "hybrid_sequence_units": "sequence_units",
    "hybrid_hidden_units": "hidden_units",
    "hybrid_epochs": "epochs",
    "hybrid_batch_size": "batch_size",
    "hybrid_learning_rate": "learning_rate",
    "hybrid_learning_rate_factor": "learning_rate_factor",
    "hybrid_patience": "patience",
    "hybrid_min_delta": "min_delta",
    "hybrid_l2": "l2",
    "seed": "seed",
}
_DEFAULT = config.field_defaults(HYBRID_PARAMETERS)


@dataclass(frozen=True)
class HybridSettings:
    """Architecture and training settings (defaults = the notebook parameters' defaults at
    ``small``, taken from :mod:`hcp_lib.config` through :data:`HYBRID_PARAMETERS`, see
    :meth:`from_parameters`); the ``use_*`` switches define the ablations.
    ``sequence_encoder`` has no parameter default of its own: ``hybrid_sequence_encoder``
    defaults to ``'compare'`` (notebook 05 fits the :data:`VARIANTS`). ``learning_rate_schedule``
    (empty: none) sets the rate of each epoch instead of ``learning_rate`` and ``learning_rate_factor``;
    :func:`hcp_lib.stages.engagement.refit_settings` fills it for the refit from the validation fit."""

    sequence_length: int = _DEFAULT["sequence_length"]
    embedding_dim: int = _DEFAULT["embedding_dim"]
    sequence_units: int = _DEFAULT["sequence_units"]
    hidden_units: int = _DEFAULT["hidden_units"]
    sequence_encoder: str = "lstm"
    epochs: int = _DEFAULT["epochs"]
    batch_size: int = _DEFAULT["batch_size"]
    learning_rate: float = _DEFAULT["learning_rate"]
    learning_rate_factor: float = _DEFAULT["learning_rate_factor"]
    learning_rate_schedule: tuple[float, ...] = ()
    patience: int = _DEFAULT["patience"]
    min_delta: float = _DEFAULT["min_delta"]
    l2: float = _DEFAULT["l2"]
    use_sequence: bool = True
    use_static: bool = True
    use_topics: bool = True
    use_cf: bool = True
    seed: int = _DEFAULT["seed"]

    #: notebook parameter -> setting (:data:`HYBRID_PARAMETERS`)
    PARAMETERS = HYBRID_PARAMETERS

    @classmethod
    def from_parameters(cls, params: dict[str, Any], **changes: Any) -> HybridSettings:
        """Settings from the notebook parameters (names of :data:`PARAMETERS`; absent ones keep
        their default; ``hybrid_sequence_encoder='compare'`` keeps the default encoder, the
        variants are compared by notebook 05), with ``changes`` applied."""
        if params.get("hybrid_sequence_encoder") in SEQUENCE_ENCODERS:
            changes = {"sequence_encoder": params["hybrid_sequence_encoder"], **changes}
        return config.settings_from_parameters(cls, params, **changes).validate()

    def validate(self) -> HybridSettings:
        """Raise ``ValueError`` naming the setting and the allowed values; return self."""
        for name in ("sequence_length", "embedding_dim", "sequence_units", "hidden_units", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.sequence_encoder not in SEQUENCE_ENCODERS:
            raise ValueError(
                f"sequence_encoder must be one of {', '.join(SEQUENCE_ENCODERS)}, got {self.sequence_encoder!r}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 < self.learning_rate_factor <= 1:
            raise ValueError(f"learning_rate_factor must be in (0, 1], got {self.learning_rate_factor!r}")
        if any(not rate > 0 for rate in self.learning_rate_schedule):
            raise ValueError(f"learning_rate_schedule must hold rates > 0, got {self.learning_rate_schedule!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience!r}")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta!r}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2!r}")
        return self


#: the ablations of notebook 05: name -> (changed settings, what is removed)
ABLATIONS: dict[str, tuple[dict, str]] = {
    "no_sequence": ({"use_sequence": False}, "without the sequence encoder (profile, counts and memories only)"),
    "no_topics": ({"use_topics": False}, "without the LDA topics (items known by id, area and type)"),
    "no_cf": ({"use_cf": False}, "without the CF similarity of an item to the HCP's engagements"),
    "no_static": (
        {"use_static": False},
        "without the HCP's profile (specialty, setting, region, peer group, "
        "numeric columns, patient mix): known by its history only",
    ),
}
#: the alternatives compared on the validation window (the variant of the hybrid): name -> changes
VARIANTS: dict[str, dict] = {"lstm": {"sequence_encoder": "lstm"}, "gru": {"sequence_encoder": "gru"}}


# --- the Keras model ------------------------------------------------------------------------


def build_towers(settings: HybridSettings, space: F.FeatureSpace):
    """The three towers (Keras functional models): ``hcp_tower`` (HCP inputs -> u (dim), A (5)),
    ``item_tower`` (item inputs -> v (dim), B (5), b ()) and ``pair_tower`` (pair features ->
    its logit term ()), and the training model that combines them into P(engaged) of a query
    (inputs: every key of :func:`hcp_lib.models.features.query_inputs` it uses).

    The layers are created in one fixed order (HCP tower, item tower, pair tower, training
    model), so that a seed gives the same initial weights."""
    hcp_inputs = _hcp_inputs(settings, space)
    hcp_tower = _hcp_tower(settings, space, hcp_inputs)
    item_inputs = _item_inputs(space)
    item_tower = _item_tower(settings, space, item_inputs)
    pair_input, pair_tower = _pair_tower(settings)
    model = _training_model(hcp_inputs, item_inputs, pair_input, hcp_tower, item_tower, pair_tower)
    if settings.use_sequence:
        _set_sequence_lookups(model, space)
    return model


def _hcp_inputs(s: HybridSettings, space: F.FeatureSpace) -> dict:
    """The Keras inputs of the HCP tower (the sequence's only when it is used)."""
    import keras

    L = s.sequence_length
    hi = {
        "hcp": keras.Input((), dtype="int32", name="hcp"),
        "specialty": keras.Input((), dtype="int32", name="specialty"),
        "practice_setting": keras.Input((), dtype="int32", name="practice_setting"),
        "region": keras.Input((), dtype="int32", name="region"),
        "peer_group": keras.Input((), dtype="int32", name="peer_group"),
        "hcp_numeric": keras.Input((space.hcp_numeric.shape[1],), name="hcp_numeric"),
        "hcp_history": keras.Input((len(F.HCP_HISTORY),), name="hcp_history"),
        "channel_history": keras.Input((len(CHANNELS), len(F.CHANNEL_HISTORY)), name="channel_history"),
        "memory": keras.Input((4 * space.n_topics + 2,), name="memory"),
    }
    if s.use_sequence:
        hi["sequence_item"] = keras.Input((L,), dtype="int32", name="sequence_item")
        hi["sequence_channel"] = keras.Input((L,), dtype="int32", name="sequence_channel")
        hi["sequence_numeric"] = keras.Input((L, 3), name="sequence_numeric")
    return hi


def _hcp_tower(s: HybridSettings, space: F.FeatureSpace, hi: dict):
    """The HCP tower: HCP inputs -> u (taste, dim) and A (per-channel term, 5)."""
    import keras
    from keras import layers, regularizers

    d, n_channel = s.embedding_dim, len(CHANNELS)
    reg = regularizers.l2(s.l2)
    u_parts, a_features = [], [hi["hcp_history"]]
    if s.use_static:
        _add_static_parts(s, space, hi, u_parts, a_features)
    # (without topics the space's topic vectors are zeros, so every topic input below is zero)
    u_parts.append(layers.Dense(d, use_bias=False, kernel_regularizer=reg, name="memory_taste")(hi["memory"]))
    if s.use_sequence:
        state = _sequence_state(s, space, hi)
        u_parts.append(layers.Dense(d, use_bias=False, kernel_regularizer=reg, name="sequence_taste")(state))
        a_features.append(state)
    u = layers.Add(name="u")(u_parts) if len(u_parts) > 1 else layers.Identity(name="u")(u_parts[0])
    a_in = layers.Concatenate(name="channel_features")(a_features) if len(a_features) > 1 else a_features[0]
    # a hidden layer lets the channel part bend (fatigue starts after a few touches, not at the first)
    a_hidden = layers.Dense(s.hidden_units, activation="relu", kernel_regularizer=reg, name="channel_hidden")(a_in)
    a_static = layers.Dense(n_channel, kernel_regularizer=reg, name="channel_profile")(
        layers.Concatenate(name="channel_profile_features")([a_in, a_hidden])
    )
    a_shared = layers.Reshape((n_channel,), name="channel_history_shared_term")(
        layers.Dense(1, use_bias=False, name="channel_history_shared")(hi["channel_history"])
    )
    a_own = layers.EinsumDense("bkf,kf->bk", output_shape=(n_channel,), name="channel_history_own")(
        hi["channel_history"]
    )
    A = layers.Add(name="A")([a_static, a_shared, a_own])
    return keras.Model(hi, [u, A], name="hcp_tower")


def _add_static_parts(s: HybridSettings, space: F.FeatureSpace, hi: dict, u_parts: list, a_features: list) -> None:
    """The HCP's profile: its taste embeddings (specialty, peer group, the HCP itself) and a
    projection of its numeric profile into ``u_parts``; embeddings of its specialty, setting
    and region and the numeric profile into ``a_features`` (the channel part)."""
    from keras import layers, regularizers

    d = s.embedding_dim
    reg = regularizers.l2(s.l2)
    vocab = {name: len(space.vocabularies[name]) + 1 for name in F.HCP_CATEGORICAL}
    for name, dim in (("specialty", d), ("peer_group", d)):
        u_parts.append(
            layers.Embedding(
                vocab[name],
                dim,
                embeddings_initializer="zeros" if name != "specialty" else "uniform",
                embeddings_regularizer=reg,
                name=f"{name}_taste",
            )(hi[name])
        )
    u_parts.append(
        layers.Embedding(
            len(space.hcp_ids),
            d,
            embeddings_initializer="zeros",
            embeddings_regularizer=regularizers.l2(s.l2 * 100),
            name="hcp_taste",
        )(hi["hcp"])
    )
    u_parts.append(layers.Dense(d, use_bias=False, kernel_regularizer=reg, name="profile_taste")(hi["hcp_numeric"]))
    for name, dim in (("specialty", 4), ("practice_setting", 2), ("region", 2)):
        a_features.append(layers.Embedding(vocab[name], dim, name=f"{name}_channel")(hi[name]))
    a_features.append(hi["hcp_numeric"])


def _sequence_state(s: HybridSettings, space: F.FeatureSpace, hi: dict):
    """The sequence encoder's final state over the HCP's last exposures (oldest first)."""
    from keras import layers, regularizers

    n_channel, n_item = len(CHANNELS), len(space.content_ids)
    # frozen lookup of each step's item topics (row 0 = padding); the channel embedding and
    # the numeric part (engaged, log1p age, real-step flag) complete the step
    topic_lookup = layers.Embedding(n_item + 1, space.n_topics, trainable=False, name="sequence_topics")
    step_parts = [
        topic_lookup(hi["sequence_item"]),
        layers.Embedding(n_channel + 1, 4, name="sequence_channel_embedding")(hi["sequence_channel"]),
        hi["sequence_numeric"],
    ]
    steps = layers.Concatenate(name="sequence_steps")(step_parts)
    # padded steps are zeroed (times a frozen 0/1 lookup of the channel: 0 = padding) and masked;
    # a real step is never all-zero since its real-step flag is 1 (no Lambda layer: a saved
    # model must load in Keras' safe mode)
    real = layers.Embedding(n_channel + 1, 1, trainable=False, name="sequence_real")(hi["sequence_channel"])
    steps = layers.Masking(0.0, name="sequence_padding_mask")(
        layers.Multiply(name="sequence_padded_zero")([steps, real])
    )
    recurrent = layers.LSTM if s.sequence_encoder == "lstm" else layers.GRU
    return recurrent(s.sequence_units, kernel_regularizer=regularizers.l2(1e-4), name="sequence_encoder")(steps)


def _item_inputs(space: F.FeatureSpace) -> dict:
    """The Keras inputs of the item tower."""
    import keras

    return {
        "item": keras.Input((), dtype="int32", name="item"),
        "item_area": keras.Input((), dtype="int32", name="item_area"),
        "item_type": keras.Input((), dtype="int32", name="item_type"),
        "item_numeric": keras.Input((space.item_numeric.shape[1],), name="item_numeric"),
        "topics": keras.Input((space.n_topics,), name="topics"),
    }


def _item_tower(s: HybridSettings, space: F.FeatureSpace, ii: dict):
    """The item tower: item inputs -> v (content, dim), B (per-channel term, 5), b (item bias)."""
    import keras
    from keras import layers, regularizers

    d, n_item = s.embedding_dim, len(space.content_ids)
    reg = regularizers.l2(s.l2)
    v_parts = [
        layers.Embedding(
            n_item,
            d,
            embeddings_initializer="zeros",
            embeddings_regularizer=regularizers.l2(s.l2 * 10),
            name="item_embedding",
        )(ii["item"]),
        layers.Embedding(len(F.THERAPEUTIC_AREAS), d, embeddings_regularizer=reg, name="area_embedding")(
            ii["item_area"]
        ),
    ]
    b_features = [
        layers.Embedding(len(F.THERAPEUTIC_AREAS), 4, name="area_channel")(ii["item_area"]),
        layers.Embedding(len(F.CONTENT_TYPES), 4, name="type_channel")(ii["item_type"]),
        ii["item_numeric"],
    ]
    v_parts.append(layers.Dense(d, use_bias=False, kernel_regularizer=reg, name="topic_content")(ii["topics"]))
    b_features.append(ii["topics"])
    v = layers.Add(name="v")(v_parts)
    B = layers.Dense(len(CHANNELS), kernel_regularizer=reg, name="B")(
        layers.Concatenate(name="item_channel_features")(b_features)
    )
    b = layers.Reshape((), name="b")(
        layers.Embedding(
            n_item,
            1,
            embeddings_initializer="zeros",
            embeddings_regularizer=regularizers.l2(s.l2 * 10),
            name="item_bias",
        )(ii["item"])
    )
    return keras.Model(ii, [v, B, b], name="item_tower")


def _pair_tower(s: HybridSettings):
    """The pair input and tower: (HCP, item) history features -> their logit term."""
    import keras
    from keras import layers, regularizers

    pi = keras.Input((len(F.PAIR_FEATURES),), name="pair")
    hidden = layers.Dense(
        s.hidden_units, activation="relu", kernel_regularizer=regularizers.l2(s.l2), name="pair_hidden"
    )(pi)
    term = layers.Add(name="pair_term")(
        [
            layers.Reshape(())(layers.Dense(1, use_bias=False, name="pair_linear")(pi)),
            layers.Reshape(())(layers.Dense(1, use_bias=False, name="pair_out")(hidden)),
        ]
    )
    return pi, keras.Model(pi, term, name="pair_tower")


def _training_model(hi: dict, ii: dict, pi, hcp_tower, item_tower, pair_tower):
    """The training model: one query (HCP, item, channel, pair features) per row -> P(engaged)."""
    import keras
    from keras import layers

    channel = keras.Input((), dtype="int32", name="channel")
    u_q, A_q = hcp_tower(hi)
    v_q, B_q, b_q = item_tower(ii)
    chosen = layers.CategoryEncoding(len(CHANNELS), output_mode="one_hot", name="channel_one_hot")(channel)
    channel_term = layers.Reshape(())(layers.Dot(axes=1, name="channel_term")([layers.Add()([A_q, B_q]), chosen]))
    taste = layers.Reshape(())(layers.Dot(axes=1, name="taste")([u_q, v_q]))
    logit = layers.Add(name="logit")([channel_term, taste, b_q, pair_tower(pi)])
    return keras.Model(
        {**hi, **ii, "pair": pi, "channel": channel},
        layers.Activation("sigmoid", name="engagement")(logit),
        name="hybrid_lstm",
    )


def _set_sequence_lookups(model, space: F.FeatureSpace) -> None:
    """Fill the sequence encoder's frozen lookups: each item's topics (row 0: padding) and the
    real-step flag of each channel (0: padding)."""
    tower = model.get_layer("hcp_tower")
    tower.get_layer("sequence_topics").set_weights(
        [np.vstack([np.zeros((1, space.n_topics)), space.topics]).astype(np.float32)]
    )
    tower.get_layer("sequence_real").set_weights([np.r_[0.0, np.ones(len(CHANNELS))][:, None].astype(np.float32)])


def _subset(x: dict[str, np.ndarray], names) -> dict[str, np.ndarray]:
    return {name: x[name] for name in names if name in x}


# --- the recommender ----------------------------------------------------------------------------


class HybridRecommender(EngagementModel):
    """The hybrid LSTM as an engagement model and :class:`~hcp_lib.models.base.Recommender`.

    ``data`` (:class:`hcp_lib.models.engagement.EngagementData`), ``cf_model`` (e.g.
    :class:`hcp_lib.models.baselines.ALS`; required when ``settings.use_cf``), ``validation_start``: with
    it, the model trains on the exposures before it and stops early on those from it to the
    cut-off (the epochs with the lowest validation log-loss are kept, ``validation_loss_``
    records it); without, it trains exactly ``settings.epochs`` epochs (the refit with the
    number of epochs chosen on validation). Deterministic for a given ``settings.seed``.
    """

    name = HYBRID_NAME

    def __init__(
        self,
        data: EngagementData,
        cf_model: Recommender | None = None,
        settings: HybridSettings = HybridSettings(),
        validation_start=None,
        verbose: int = 0,
        hcp_chunk: int = 256,
    ):
        super().__init__(data, cf_model, validation_start)
        self.settings = settings
        self.verbose = verbose
        self.hcp_chunk = hcp_chunk

    @property
    def sequence_length(self) -> int:  # the inputs carry the sequence only when it is used
        return self.settings.sequence_length if self.settings.use_sequence else 0

    def _fit(self, train: TrainingData) -> None:
        """Check the settings, then fit in named steps: those of
        :meth:`hcp_lib.models.engagement.EngagementModel._fit` (``_time_frame``, ``_feature_space``
        with ``_fit_cf``, the history, ``_split_validation``), then those of
        :meth:`_fit_queries` (``_seed``, ``_prepare_inputs``, ``_build_network``, ``_train``,
        ``_select_epoch``)."""
        self._check_settings()
        super()._fit(train)

    def _check_settings(self) -> None:
        """Raise ``ValueError`` on invalid settings or ``use_cf`` without a CF model."""
        if self.settings.validate().use_cf and self.cf_model is None:
            raise ValueError(
                "use_cf is true but no cf_model was given; pass e.g. hcp_lib.models.baselines.ALS() or set use_cf=False"
            )

    def _cf_model(self) -> Recommender | None:
        return self.cf_model if self.settings.use_cf else None

    def _feature_space(self, train: TrainingData) -> F.FeatureSpace:
        space = super()._feature_space(train)
        if not self.settings.use_topics:  # the ablation: no topic vector anywhere (inputs, memories, sequence)
            space = replace(space, topics=np.zeros_like(space.topics))
        return space

    def _fit_queries(self, queries: Queries, validation: Queries | None) -> None:
        """The steps of fitting the network (after the feature space, the CF inputs and the
        validation split of :meth:`hcp_lib.models.engagement.EngagementModel._fit`)."""
        self._seed()
        started = time.perf_counter()
        x, validation_data = self._prepare_inputs(queries, validation)
        self.model_ = self._build_network()
        self.training_history_ = self._train(x, queries.y.astype(np.float32), validation_data)
        self.best_epoch_, self.validation_loss_ = self._select_epoch(validation, validation_data)
        self.fit_seconds_ = time.perf_counter() - started

    def _seed(self) -> None:
        """Threads, seeds and deterministic ops: the same seed gives the same trained model."""
        import keras
        import tensorflow as tf

        configure_threads()
        keras.utils.set_random_seed(self.settings.seed)
        tf.config.experimental.enable_op_determinism()

    def _prepare_inputs(self, queries: Queries, validation: Queries | None):
        """The training inputs and, with a validation window, (its inputs, its outcomes)."""
        x = self.inputs(queries, training=True)
        if validation is None:
            return x, None
        return x, (self.inputs(validation, training=True), validation.y.astype(np.float32))

    def _build_network(self):
        """The training model (:func:`build_towers`), compiled with Adam and the cross-entropy."""
        import keras

        model = build_towers(self.settings, self.space_)
        model.compile(optimizer=keras.optimizers.Adam(self.settings.learning_rate), loss="binary_crossentropy")
        return model

    def _train(self, x: dict[str, np.ndarray], y: np.ndarray, validation_data) -> pd.DataFrame:
        """Fit ``self.model_`` (with validation data: early stopping on its loss, the best
        epoch's weights restored, and with ``learning_rate_factor`` < 1 the rate multiplied by it
        after each epoch that did not lower the loss; an epoch lowers it when it lowers the best by
        at least ``min_delta``; a ``learning_rate_schedule`` instead sets
        the rate of each epoch); the training curves, one row per epoch (from 1), with the
        ``learning_rate`` each epoch trained at."""
        import keras

        s = self.settings
        callbacks = []
        if s.learning_rate_schedule:  # a refit replays the validation fit's rate of each epoch
            schedule = tuple(s.learning_rate_schedule)
            callbacks.append(
                keras.callbacks.LearningRateScheduler(lambda epoch: schedule[min(epoch, len(schedule) - 1)])
            )
        elif validation_data is not None and s.learning_rate_factor < 1:
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    monitor="val_loss", mode="min", factor=s.learning_rate_factor, patience=1, min_delta=s.min_delta
                )
            )
        stopping = None
        if validation_data is not None:
            stopping = keras.callbacks.EarlyStopping(
                monitor="val_loss", mode="min", patience=s.patience, min_delta=s.min_delta, restore_best_weights=True
            )
            callbacks.append(stopping)
        history = self.model_.fit(
            x,
            y,
            validation_data=validation_data,
            epochs=s.epochs,
            batch_size=s.batch_size,
            callbacks=callbacks,
            shuffle=True,
            verbose=self.verbose,
        )
        curves = pd.DataFrame(history.history).rename_axis("epoch").reset_index()
        curves["epoch"] += 1
        if "learning_rate" not in curves:  # no callback changed (nor logged) the rate
            curves["learning_rate"] = s.learning_rate
        # the epoch whose weights early stopping restored: the last that lowered the best loss by
        # at least min_delta (from 1; not the epoch of the lowest loss when a later one gained less)
        self.restored_epoch_ = None if stopping is None else int(stopping.best_epoch) + 1
        return curves

    def _select_epoch(self, validation: Queries | None, validation_data) -> tuple[int, float | None]:
        """(best epoch, validation log-loss): the epoch whose weights early stopping restored (the
        last that lowered the best ``val_loss`` by at least ``min_delta``) and the plain log-loss of
        the restored model on the window; without one, (epochs, None)."""
        if validation is None:
            return self.settings.epochs, None
        from ..metrics import log_loss_value

        # Keras' val_loss adds the weight penalties; the criterion is the plain log-loss
        return self.restored_epoch_, log_loss_value(validation.y, self._predict(validation_data[0]))

    def _predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.model_.predict(inputs, batch_size=8192, verbose=0).ravel()

    def towers(self):
        """(hcp_tower, item_tower, pair_tower) of the fitted model."""
        return tuple(self.model_.get_layer(n) for n in ("hcp_tower", "item_tower", "pair_tower"))

    def _predict_snapshot(self, snapshot: F.Snapshot, include: np.ndarray | None = None) -> np.ndarray:
        from scipy.special import expit

        hcp_tower, item_tower, pair_tower = self.towers()
        u, a = hcp_tower.predict(_subset(snapshot.hcp, HCP_INPUTS), batch_size=4096, verbose=0)
        v, b_channel, b = item_tower.predict(_subset(snapshot.item, ITEM_INPUTS), batch_size=4096, verbose=0)
        n_hcp, n_item = len(snapshot.rows), len(v)
        out = np.empty((n_hcp, n_item, len(CHANNELS)), np.float32)
        for first in range(0, n_hcp, self.hcp_chunk):
            part = slice(first, first + self.hcp_chunk)
            pair = snapshot.pair(part)
            term = pair_tower.predict(pair.reshape(-1, pair.shape[-1]), batch_size=65536, verbose=0)
            content = u[part] @ v.T + b[None, :] + term.reshape(pair.shape[0], n_item)
            out[part] = expit(content[:, :, None] + a[part][:, None, :] + b_channel[None, :, :])
        return out

    # -- persistence
    def save(self, folder: str | Path) -> Path:
        """Write ``model.keras``, ``preprocessing.json`` and ``cf_item_factors.parquet`` to ``folder``."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with io.atomic_path(folder / "model.keras") as tmp:
            target = tmp.with_suffix(".keras")
            self.model_.save(target)
            os.replace(target, tmp)
        io.write_json(
            {
                "format_version": FORMAT_VERSION,
                "settings": asdict(self.settings),
                "cutoff": self.cutoff_.isoformat(),
                "reference": self.reference_.isoformat(),
                "content_ids": [str(c) for c in self.content_ids_],
                "hcp_ids": [str(h) for h in self.hcp_ids_],
                "channels": list(CHANNELS),
                "vocabularies": self.space_.vocabularies,
                "hcp_numeric_scale": F.HCP_NUMERIC_SCALE,
                "best_epoch": self.best_epoch_,
                "validation_loss": self.validation_loss_,
            },
            folder / "preprocessing.json",
        )
        factors = pd.DataFrame(
            self.space_.cf_items, columns=[f"factor_{i:02d}" for i in range(self.space_.cf_items.shape[1])]
        )
        factors.insert(0, "content_id", pd.array([str(c) for c in self.space_.content_ids], dtype="string"))
        io.write_parquet(factors, folder / "cf_item_factors.parquet")
        return folder


def load(folder: str | Path, train: TrainingData, data: EngagementData) -> HybridRecommender:
    """A fitted :class:`HybridRecommender` from :meth:`~HybridRecommender.save`'s ``folder``.

    ``train`` must be the training data it was fitted on (same cut-off and catalogue): the
    histories are rebuilt from it. A different catalogue raises
    :class:`CatalogueChangedError` saying which items were added or removed; a different
    cut-off or format raises ``ValueError``; an HCP of ``train`` the model does not know
    raises :class:`~hcp_lib.models.base.UnknownIdError`.
    """
    import keras

    configure_threads()
    folder = Path(folder)
    meta = io.read_json(folder / "preprocessing.json")
    _check_saved(folder, meta, train)
    settings = HybridSettings(
        **{f.name: meta["settings"][f.name] for f in fields(HybridSettings) if f.name in meta["settings"]}
    )
    model = HybridRecommender(data, None, settings)
    model.hcp_ids_ = pd.Index(train.hcps["hcp_id"].astype(object))
    model.content_ids_ = pd.Index(train.catalogue["content_id"].astype(object))
    model.channels_ = CHANNELS
    model.cutoff_ = pd.Timestamp(meta["cutoff"])
    model.reference_ = pd.Timestamp(meta["reference"])
    factors = io.read_parquet(folder / "cf_item_factors.parquet")
    space = F.FeatureSpace.from_tables(
        *model_tables(data, train),
        model.reference_,
        data.patients,
        data.doc_topics,
        factors if settings.use_cf else None,
        vocabularies=meta["vocabularies"],
    )
    model.space_ = replace(space, topics=np.zeros_like(space.topics)) if not settings.use_topics else space
    model.history_ = F.History(train.interactions, model.space_, model.cutoff_)
    model.model_ = keras.models.load_model(folder / "model.keras")
    model.best_epoch_, model.validation_loss_ = meta.get("best_epoch"), meta.get("validation_loss")
    return model


def _check_saved(folder: Path, meta: dict, train: TrainingData) -> None:
    """Raise unless the saved model of ``folder`` (``meta``: its preprocessing.json) fits
    ``train``: same format version, catalogue and cut-off, every HCP known (see :func:`load`)."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{folder / 'preprocessing.json'}: format_version {meta.get('format_version')!r}, expected "
            f"{FORMAT_VERSION} (saved by another version of hcp_lib: refit the model)"
        )
    saved = pd.Index(meta["content_ids"], dtype=object)
    current = pd.Index(train.catalogue["content_id"].astype(str).to_numpy(dtype=object))
    if not saved.equals(current):
        added, removed = current.difference(saved), saved.difference(current)
        detail = [f"{len(added)} added (e.g. {added[0]!r})"] if len(added) else []
        detail += [f"{len(removed)} removed (e.g. {removed[0]!r})"] if len(removed) else []
        raise CatalogueChangedError(
            f"{folder}: the catalogue changed since training: "
            + (", ".join(detail) or "same items, another order")
            + "; refit the model"
        )
    if pd.Timestamp(meta["cutoff"]) != pd.Timestamp(train.cutoff):
        raise ValueError(
            f"{folder}: the model was trained with cut-off {meta['cutoff']}, the training data given has "
            f"cut-off {pd.Timestamp(train.cutoff).isoformat()}"
        )
    unknown = pd.Index(train.hcps["hcp_id"].astype(str)).difference(pd.Index(meta["hcp_ids"]))
    if len(unknown):
        raise UnknownIdError(f"{folder}: HCP id {unknown[0]!r} of the training data is unknown to the saved model")


def layer_table(model) -> pd.DataFrame:
    """The layers of the towers of a Keras hybrid that hold weights: tower, layer, type,
    trainable and frozen weight counts (what ``model.summary()`` says, as a table)."""
    rows = []
    for tower in ("hcp_tower", "item_tower", "pair_tower"):
        for layer in model.get_layer(tower).layers:
            if layer.weights:
                rows.append(
                    {
                        "tower": tower,
                        "layer": layer.name,
                        "type": type(layer).__name__,
                        "trainable weights": int(sum(np.prod(w.shape) for w in layer.trainable_weights)),
                        "frozen weights": int(sum(np.prod(w.shape) for w in layer.non_trainable_weights)),
                    }
                )
    return pd.DataFrame(rows).set_index(["tower", "layer"])
