"""The latent engagement model of the synthetic world: the truth every model is measured against.

Helpers of :mod:`hcp_lib.world.synth`. The probability that HCP ``h`` engages with content ``c``
shown on channel ``k`` at minute ``t`` (minutes since the horizon start) is
``expit(logit)``, where ``logit`` is the sum of

- ``base_logit[k]`` (the channel's typical rate) + ``content_type_channel[type(c), k]``;
- ``channel_pref[h, k]`` (age, setting, digital affinity, specialty, personal taste);
- ``quality[c]`` (an item's general appeal);
- ``interest_strength * affinity_h(t) . theta_c``: the HCP's theme affinity (specialty +
  patient mix + peer group + a personal part that rotates slowly over the horizon)
  against the item's theme mix (TF-IDF + NMF of the article text, not LDA);
- ``recency_boost * (1 - exp(-memory_h(t) . theta_c))``: themes engaged with recently
  (a memory of engaged items' themes, halving every ``recency_half_life``);
- ``series_followup_lift`` if the HCP engaged with the previous part of the item's series;
- ``- fatigue_per_touch * max(0, touches in the window - fatigue_free_touches)``;
- ``- seen_penalty`` (shown before, not engaged) or ``- consumed_penalty`` (engaged before);
- ``- channel_saturation * exp(-minutes since the last touch on k / channel_recovery)``.

"Before t" means exposures strictly earlier than ``t``. The simulator keeps this
history as running state; :func:`history_context` rebuilds it from the exposure log,
so the oracle and the simulation compute the same number.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.special import expit

from .. import domain
from .entities import AREAS, CHANNELS, CONTENT_TYPES, SETTINGS, SPECIALTY_KEYS

# Weights of the four parts of an HCP's theme affinity; each part is standardised across
# themes first, so these are their relative strengths (stated assumptions, data card).
AFFINITY_WEIGHTS = {"specialty": 0.9, "patient_mix": 0.5, "peer_group": 0.7, "personal": 0.5}
CHANNEL_PREF_NOISE_SD = 0.4
QUALITY_SD = 0.3
NO_ABSTRACT_PENALTY = 0.4
CALIBRATION_HCPS = 500  # HCPs sampled to calibrate the channel intercepts
# Channel preference, in log-odds: per 10 years of age above 50, per unit of digital
# affinity above 0.5, by practice setting and by specialty (assumptions, data card).
CHANNEL_PREF_AGE = {
    "email": -0.15,
    "webinar": -0.10,
    "rep_visit": 0.15,
    "in_person_meeting": 0.15,
    "conference_event": 0.0,
}
CHANNEL_PREF_DIGITAL = {
    "email": 1.2,
    "webinar": 0.8,
    "rep_visit": -0.5,
    "in_person_meeting": -0.3,
    "conference_event": 0.1,
}
CHANNEL_PREF_SETTING = {
    "academic": {"webinar": 0.3, "rep_visit": -0.6, "in_person_meeting": -0.1, "conference_event": 0.5},
    "hospital": {"webinar": 0.1, "rep_visit": -0.3, "conference_event": 0.2},
    "group": {},
    "solo": {"email": -0.1, "webinar": -0.2, "rep_visit": 0.4, "in_person_meeting": 0.1, "conference_event": -0.3},
}
CHANNEL_PREF_SPECIALTY = {
    "hematology_oncology": {"conference_event": 0.4, "rep_visit": -0.2},
    "infectious_disease": {"webinar": 0.2},
    "pediatrics": {"rep_visit": -0.2},
    "family_medicine": {"rep_visit": 0.2},
    "internal_medicine": {"rep_visit": 0.2},
    "general_practice": {"rep_visit": 0.2},
}
CONTENT_TYPE_CHANNEL = {
    "publication_reprint": {"webinar": -0.1, "rep_visit": 0.1, "conference_event": 0.1},
    "clinical_summary": {"email": 0.2, "webinar": 0.1},
    "guideline_update": {
        "email": 0.1,
        "webinar": 0.3,
        "rep_visit": 0.3,
        "in_person_meeting": 0.2,
        "conference_event": 0.2,
    },
    "case_study": {"email": -0.1, "webinar": 0.2, "in_person_meeting": 0.3},
    "patient_education": {
        "email": 0.1,
        "webinar": -0.2,
        "rep_visit": 0.2,
        "in_person_meeting": -0.1,
        "conference_event": -0.2,
    },
}
_KEY_SHIFT = 1 << 30  # minutes (about 2,000 years) fit below this, so (entity, minute) pack into one int64


@dataclass
class TruthModel:
    """Every latent quantity of the engagement model (arrays in hcp_master / catalogue order)."""

    theta: np.ndarray  # [content, theme], rows sum to 1
    quality: np.ndarray  # [content]
    content_type_idx: np.ndarray  # [content] index into CONTENT_TYPES
    prev_part: np.ndarray  # [content] catalogue index of the previous series part, -1 if none
    static_affinity: np.ndarray  # [hcp, theme] specialty + patient mix + peer group parts
    personal_start: np.ndarray  # [hcp, theme] personal part at the horizon start (weighted)
    personal_turn: np.ndarray  # [hcp, theme] direction the personal part rotates towards (weighted)
    channel_pref: np.ndarray  # [hcp, channel]
    base_logit: np.ndarray  # [channel]
    content_type_channel: np.ndarray  # [content type, channel]
    horizon_minutes: float
    interest_strength: float
    drift_angle: float  # radians turned by the personal part over the horizon
    fatigue_window_minutes: float
    fatigue_free_touches: int
    fatigue_per_touch: float
    channel_saturation: float
    channel_recovery_minutes: float
    series_followup_lift: float
    recency_boost: float
    recency_half_life_minutes: float
    seen_penalty: float
    consumed_penalty: float

    def scalars(self) -> dict[str, float]:
        """The scalar parameters (saved in the world's JSON)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if not isinstance(getattr(self, f.name), np.ndarray)
        }


@dataclass
class HistoryContext:
    """What the model needs from the past of each (hcp, content, channel, minute) query."""

    touches_in_window: np.ndarray  # touches of the HCP in [t - window, t)
    minutes_since_channel: np.ndarray  # since the HCP's last touch on the channel; inf if none
    seen_code: np.ndarray  # 0 never shown, 1 shown not engaged, 2 engaged before
    prev_part_engaged: np.ndarray  # engaged with the previous part of the series before t
    memory_dot: np.ndarray  # memory_h(t) . theta_c


def fit_content_themes(texts: pd.Series, n_themes: int, seed: int) -> tuple[np.ndarray, list[list[str]]]:
    """Theme mix of every item from its text: TF-IDF, then NMF with ``n_themes`` components.

    Deliberately not LDA (notebook 03 fits LDA, which must estimate this truth, not
    reproduce it). Returns ``theta`` [item, theme] with rows summing to 1 (an item with
    no weight on any theme gets the uniform mix) and the top 8 terms of each theme.
    """
    from sklearn.decomposition import NMF
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        stop_words="english",
        min_df=2,
        max_df=0.5,
        sublinear_tf=True,
        token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z-]{2,}\b",
        max_features=20_000,
    )
    tfidf = vectorizer.fit_transform(texts)
    if tfidf.shape[1] < n_themes:
        raise ValueError(
            f"n_themes={n_themes} is more than the {tfidf.shape[1]} usable terms of the article texts; lower n_themes"
        )
    nmf = NMF(n_components=n_themes, init="nndsvda", random_state=seed, max_iter=600)
    weights = nmf.fit_transform(tfidf)
    totals = weights.sum(axis=1, keepdims=True)
    theta = np.where(totals > 0, weights / np.where(totals > 0, totals, 1), 1.0 / n_themes)
    terms = vectorizer.get_feature_names_out()
    top_terms = [[str(terms[i]) for i in np.argsort(-row, kind="stable")[:8]] for row in nmf.components_]
    return theta, top_terms


def _standardise_rows(matrix: np.ndarray) -> np.ndarray:
    centred = matrix - matrix.mean(axis=1, keepdims=True)
    return centred / np.maximum(centred.std(axis=1, keepdims=True), 1e-9)


def build_truth_model(
    rng: np.random.Generator,
    hcps: pd.DataFrame,
    patient_mix: np.ndarray,
    content: pd.DataFrame,
    theta: np.ndarray,
    settings: dict,
    exposure_weight: np.ndarray,
) -> TruthModel:
    """Draw every HCP's and item's latent state from the entities and the parameters ``settings``.

    ``exposure_weight`` [specialty, content] is how often the BAU policy would show each
    item to each specialty (0 where not approved); the channel intercepts are calibrated on it
    (:func:`calibrate_base_logit`).
    """
    n_hcps, n_themes = len(hcps), theta.shape[1]
    area_idx = pd.Index(AREAS).get_indexer(content["therapeutic_area"])
    area_theme = np.zeros((len(AREAS), n_themes))
    np.add.at(area_theme, area_idx, theta)
    area_theme /= np.maximum(np.bincount(area_idx, minlength=len(AREAS)), 1)[:, None]
    relevance = np.array([[domain.AREA_SPECIALTY_RELEVANCE[s][a] for a in AREAS] for s in SPECIALTY_KEYS])
    specialty_part = _standardise_rows(relevance @ area_theme)[pd.Index(SPECIALTY_KEYS).get_indexer(hcps["specialty"])]
    patient_part = _standardise_rows(patient_mix @ area_theme)
    group_codes, groups = pd.factorize(hcps["peer_group"], sort=True)
    peer_part = _standardise_rows(rng.normal(size=(len(groups), n_themes)))[group_codes]
    w = AFFINITY_WEIGHTS
    static = w["specialty"] * specialty_part + w["patient_mix"] * patient_part + w["peer_group"] * peer_part
    personal_start = w["personal"] * rng.normal(size=(n_hcps, n_themes))
    personal_turn = w["personal"] * rng.normal(size=(n_hcps, n_themes))

    age10 = (hcps["age"].to_numpy(dtype=float) - 50) / 10
    digital = hcps["digital_affinity"].to_numpy(dtype=float) - 0.5
    setting = hcps["practice_setting"].to_numpy(dtype=object)
    specialty = hcps["specialty"].to_numpy(dtype=object)
    channel_pref = rng.normal(0, CHANNEL_PREF_NOISE_SD, size=(n_hcps, len(CHANNELS)))
    for k, ch in enumerate(CHANNELS):
        channel_pref[:, k] += CHANNEL_PREF_AGE[ch] * age10 + CHANNEL_PREF_DIGITAL[ch] * digital
        channel_pref[:, k] += np.array([CHANNEL_PREF_SETTING[s].get(ch, 0.0) for s in SETTINGS])[
            pd.Index(SETTINGS).get_indexer(setting)
        ]
        channel_pref[:, k] += np.array([CHANNEL_PREF_SPECIALTY.get(s, {}).get(ch, 0.0) for s in SPECIALTY_KEYS])[
            pd.Index(SPECIALTY_KEYS).get_indexer(specialty)
        ]

    quality = rng.normal(0, QUALITY_SD, len(content)) - NO_ABSTRACT_PENALTY * ~content["has_abstract"].to_numpy(bool)
    base_rates = np.array([settings[f"base_rate_{ch}"] for ch in CHANNELS], dtype=float)
    model = TruthModel(
        theta=theta,
        quality=quality,
        content_type_idx=pd.Index(CONTENT_TYPES).get_indexer(content["content_type"]),
        prev_part=_previous_parts(content),
        static_affinity=static,
        personal_start=personal_start,
        personal_turn=personal_turn,
        channel_pref=channel_pref,
        base_logit=np.zeros(len(CHANNELS)),
        content_type_channel=np.array(
            [[CONTENT_TYPE_CHANNEL[t].get(ch, 0.0) for ch in CHANNELS] for t in CONTENT_TYPES]
        ),
        horizon_minutes=float(settings["horizon_days"] * 1440),
        interest_strength=float(settings["interest_strength"]),
        drift_angle=float(settings["interest_drift"] * np.pi / 2),
        fatigue_window_minutes=float(settings["fatigue_window_days"] * 1440),
        fatigue_free_touches=int(settings["fatigue_free_touches"]),
        fatigue_per_touch=float(settings["fatigue_per_touch"]),
        channel_saturation=float(settings["channel_saturation"]),
        channel_recovery_minutes=float(settings["channel_recovery_days"] * 1440),
        series_followup_lift=float(settings["series_followup_lift"]),
        recency_boost=float(settings["recency_boost"]),
        recency_half_life_minutes=float(settings["recency_half_life_days"] * 1440),
        seen_penalty=float(settings["seen_penalty"]),
        consumed_penalty=float(settings["consumed_penalty"]),
    )
    specialty_idx = pd.Index(SPECIALTY_KEYS).get_indexer(hcps["specialty"])
    sample = np.sort(rng.choice(n_hcps, size=min(n_hcps, CALIBRATION_HCPS), replace=False))
    model.base_logit = calibrate_base_logit(model, sample, exposure_weight[specialty_idx[sample]], base_rates)
    return model


def calibrate_base_logit(
    model: TruthModel, hcp_sample: np.ndarray, exposure_weight: np.ndarray, base_rates: np.ndarray
) -> np.ndarray:
    """Channel intercepts such that a first touch (no history) on channel k engages with mean
    probability ``base_rates[k]``, averaged over the sampled HCPs and the content mix the
    BAU policy would show them (``exposure_weight`` [hcp, content]).

    This makes the ``base_rate_*`` parameters the benchmark-comparable rates of a first
    touch; realised rates then move with fatigue, repeats, series and recency.
    """
    rest = model.interest_strength * (affinity_at(model, hcp_sample, 0.0) @ model.theta.T) + model.quality[None, :]
    weight = exposure_weight / exposure_weight.sum()
    intercepts = np.empty(len(CHANNELS))
    for k in range(len(CHANNELS)):
        shift = (
            rest + model.channel_pref[hcp_sample, k][:, None] + model.content_type_channel[model.content_type_idx, k]
        )
        target = float(np.clip(base_rates[k], 1e-4, 1 - 1e-4))
        intercepts[k] = brentq(
            lambda b, shift=shift, target=target: float((weight * expit(b + shift)).sum()) - target, -30.0, 30.0
        )
    return intercepts


def _previous_parts(content: pd.DataFrame) -> np.ndarray:
    """Catalogue index of each item's previous series part (-1 for none)."""
    keys = content["series_id"].astype(object).where(content["series_id"].notna(), None)
    part = content["series_part"].fillna(0).to_numpy(dtype=np.int64)
    lookup = {(s, p): i for i, (s, p) in enumerate(zip(keys, part)) if s is not None}
    return np.array([lookup.get((s, p - 1), -1) if s is not None else -1 for s, p in zip(keys, part)], dtype=np.int64)


def affinity_at(model: TruthModel, hcp_idx: np.ndarray, minute: np.ndarray | float) -> np.ndarray:
    """Theme affinity [row, theme] of HCPs at minute(s) ``minute`` (personal part rotated)."""
    angle = model.drift_angle * np.asarray(minute, dtype=float) / model.horizon_minutes
    angle = np.broadcast_to(angle, np.shape(hcp_idx))[:, None]
    return (
        model.static_affinity[hcp_idx]
        + np.cos(angle) * model.personal_start[hcp_idx]
        + np.sin(angle) * model.personal_turn[hcp_idx]
    )


def history_effects(model: TruthModel, context: HistoryContext) -> np.ndarray:
    """The sequence part of the logit (recency, series, fatigue, seen, channel saturation)."""
    fatigue = model.fatigue_per_touch * np.maximum(0, context.touches_in_window - model.fatigue_free_touches)
    seen = np.where(
        context.seen_code == 2, model.consumed_penalty, np.where(context.seen_code == 1, model.seen_penalty, 0.0)
    )
    saturation = model.channel_saturation * np.exp(-context.minutes_since_channel / model.channel_recovery_minutes)
    return (
        model.recency_boost * (1 - np.exp(-context.memory_dot))
        + model.series_followup_lift * context.prev_part_engaged
        - fatigue
        - seen
        - saturation
    )


def engagement_logit(
    model: TruthModel,
    hcp_idx: np.ndarray,
    content_idx: np.ndarray,
    channel_idx: np.ndarray,
    minute: np.ndarray,
    context: HistoryContext,
) -> np.ndarray:
    """Log-odds of engagement for aligned query rows (see the module docstring)."""
    affinity = affinity_at(model, hcp_idx, minute)
    interest = np.einsum("ij,ij->i", affinity, model.theta[content_idx])
    return (
        model.base_logit[channel_idx]
        + model.content_type_channel[model.content_type_idx[content_idx], channel_idx]
        + model.channel_pref[hcp_idx, channel_idx]
        + model.quality[content_idx]
        + model.interest_strength * interest
        + history_effects(model, context)
    )


def recency_decay(model: TruthModel, minutes: np.ndarray) -> np.ndarray:
    return np.exp(-np.log(2) * minutes / model.recency_half_life_minutes)


@dataclass
class ExposureLog:
    """The exposure history as index arrays, sorted by (hcp, minute)."""

    hcp: np.ndarray
    content: np.ndarray
    channel: np.ndarray
    minute: np.ndarray
    engaged: np.ndarray

    @classmethod
    def from_arrays(cls, hcp, content, channel, minute, engaged) -> ExposureLog:
        order = np.lexsort((minute, hcp))
        return cls(*(np.asarray(a)[order] for a in (hcp, content, channel, minute, engaged)))


def _count_before(sorted_keys: np.ndarray, group: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Number of (group, minute) keys with lower <= minute < upper."""
    base = group.astype(np.int64) * _KEY_SHIFT
    return np.searchsorted(sorted_keys, base + upper, side="left") - np.searchsorted(
        sorted_keys, base + lower, side="left"
    )


def _minute_bounds(minute: np.ndarray) -> np.ndarray:
    """Smallest integer minute not before ``minute`` (exposures are logged to the minute)."""
    return np.clip(np.ceil(np.asarray(minute, dtype=float)), 0, _KEY_SHIFT - 1).astype(np.int64)


def history_context(
    model: TruthModel,
    log: ExposureLog,
    hcp_idx: np.ndarray,
    content_idx: np.ndarray,
    channel_idx: np.ndarray,
    minute: np.ndarray,
) -> HistoryContext:
    """The model's view of the past of each query row, rebuilt from the exposure log.

    Vectorised with sorted (entity, minute) keys and ``searchsorted``; the recency memory
    expands each query over its HCP's earlier engagements (a few per HCP).
    """
    minute = np.broadcast_to(np.asarray(minute, dtype=float), np.shape(hcp_idx))
    seen_code, prev_engaged = _pair_history(model, log, hcp_idx, content_idx, minute)
    memory = memory_before(model, log, hcp_idx, minute)
    return HistoryContext(
        touches_in_window=_touches_in_window(model, log, hcp_idx, minute),
        minutes_since_channel=_minutes_since_channel(log, hcp_idx, channel_idx, minute),
        seen_code=seen_code,
        prev_part_engaged=prev_engaged,
        memory_dot=np.einsum("ij,ij->i", memory, model.theta[content_idx]),
    )


def _touches_in_window(model: TruthModel, log: ExposureLog, hcp_idx: np.ndarray, minute: np.ndarray) -> np.ndarray:
    hcp_keys = log.hcp.astype(np.int64) * _KEY_SHIFT + log.minute
    return _count_before(
        hcp_keys, hcp_idx, _minute_bounds(minute - model.fatigue_window_minutes), _minute_bounds(minute)
    )


def _minutes_since_channel(
    log: ExposureLog, hcp_idx: np.ndarray, channel_idx: np.ndarray, minute: np.ndarray
) -> np.ndarray:
    channel_keys = np.sort((log.hcp.astype(np.int64) * len(CHANNELS) + log.channel) * _KEY_SHIFT + log.minute)
    query_group = hcp_idx.astype(np.int64) * len(CHANNELS) + channel_idx
    pos = np.searchsorted(channel_keys, query_group * _KEY_SHIFT + _minute_bounds(minute), side="left") - 1
    found = (pos >= 0) & (channel_keys[np.maximum(pos, 0)] // _KEY_SHIFT == query_group)
    last = channel_keys[np.maximum(pos, 0)] % _KEY_SHIFT
    return np.where(found, minute - last, np.inf)


def _pair_history(
    model: TruthModel, log: ExposureLog, hcp_idx: np.ndarray, content_idx: np.ndarray, minute: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Seen code (0 never shown, 1 shown, 2 engaged) and previous-series-part engaged, before ``minute``."""
    n_content = len(model.theta)
    upper = _minute_bounds(minute)
    zero = np.zeros_like(upper)
    pair_keys = np.sort((log.hcp.astype(np.int64) * n_content + log.content) * _KEY_SHIFT + log.minute)
    engaged_pair_keys = np.sort(
        (log.hcp[log.engaged].astype(np.int64) * n_content + log.content[log.engaged]) * _KEY_SHIFT
        + log.minute[log.engaged]
    )
    pair = hcp_idx.astype(np.int64) * n_content + content_idx
    seen = _count_before(pair_keys, pair, zero, upper) > 0
    consumed = _count_before(engaged_pair_keys, pair, zero, upper) > 0
    prev = model.prev_part[content_idx]
    prev_pair = hcp_idx.astype(np.int64) * n_content + np.maximum(prev, 0)
    prev_engaged = (prev >= 0) & (_count_before(engaged_pair_keys, prev_pair, zero, upper) > 0)
    return np.where(consumed, 2, np.where(seen, 1, 0)).astype(np.int8), prev_engaged


def memory_before(model: TruthModel, log: ExposureLog, hcp_idx: np.ndarray, minute: np.ndarray) -> np.ndarray:
    """Recency memory [row, theme]: engaged items' themes before ``minute``, decayed by age."""
    minute = np.broadcast_to(np.asarray(minute, dtype=float), np.shape(hcp_idx))
    engaged_keys = log.hcp[log.engaged].astype(np.int64) * _KEY_SHIFT + log.minute[log.engaged]
    engaged_content, engaged_minute = log.content[log.engaged], log.minute[log.engaged]
    base = hcp_idx.astype(np.int64) * _KEY_SHIFT
    lo = np.searchsorted(engaged_keys, base, side="left")
    hi = np.searchsorted(engaged_keys, base + _minute_bounds(minute), side="left")
    counts = hi - lo
    rows = np.repeat(np.arange(len(hcp_idx)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    events = lo[rows] + offsets
    weight = recency_decay(model, minute[rows] - engaged_minute[events])
    memory = np.zeros((len(hcp_idx), model.theta.shape[1]))
    np.add.at(memory, rows, weight[:, None] * model.theta[engaged_content[events]])
    return memory


def engagement_matrix(
    model: TruthModel, log: ExposureLog, hcp_idx: np.ndarray, minute: float, content_idx: np.ndarray
) -> np.ndarray:
    """Probabilities [hcp, content, channel] (float32) at one minute, every channel in CHANNELS order.

    The logit is additive, so it is assembled from an HCP part, an (HCP, channel) part,
    an (HCP, content) part and a (content, channel) part, then broadcast.
    """
    n, n_content = len(hcp_idx), len(content_idx)
    minutes = np.full(n, float(minute))
    touches = _touches_in_window(model, log, hcp_idx, minutes)
    fatigue = model.fatigue_per_touch * np.maximum(0, touches - model.fatigue_free_touches)
    since = _minutes_since_channel(
        log, np.repeat(hcp_idx, len(CHANNELS)), np.tile(np.arange(len(CHANNELS)), n), np.repeat(minutes, len(CHANNELS))
    ).reshape(n, len(CHANNELS))
    seen_code, prev_engaged = _pair_history(
        model, log, np.repeat(hcp_idx, n_content), np.tile(content_idx, n), np.full(n * n_content, float(minute))
    )
    seen_code, prev_engaged = seen_code.reshape(n, n_content), prev_engaged.reshape(n, n_content)
    theta = model.theta[content_idx]
    memory_dot = memory_before(model, log, hcp_idx, minutes) @ theta.T
    seen = np.where(seen_code == 2, model.consumed_penalty, np.where(seen_code == 1, model.seen_penalty, 0.0))
    content_part = (
        model.interest_strength * (affinity_at(model, hcp_idx, minutes) @ theta.T)
        + model.quality[content_idx]
        + model.recency_boost * (1 - np.exp(-memory_dot))
        + model.series_followup_lift * prev_engaged
        - seen
        - fatigue[:, None]
    )
    channel_part = (
        model.channel_pref[hcp_idx]
        + model.base_logit[None, :]
        - model.channel_saturation * np.exp(-since / model.channel_recovery_minutes)
    )
    type_part = model.content_type_channel[model.content_type_idx[content_idx]]
    logits = content_part[:, :, None] + channel_part[:, None, :] + type_part[None, :, :]
    return expit(logits).astype(np.float32)
