"""What an engagement model may know about an (HCP, content, channel) query at an instant.

The tabular challenger (:mod:`hcp_lib.models.tabular`) and the hybrid LSTM (:mod:`hcp_lib.models.hybrid`)
learn P(engaged | HCP, history before t, content, channel, t) from the same inputs, computed
here once:

- :class:`FeatureSpace` — the static attributes of HCPs and items, in master and catalogue
  order: the HCP master's categorical and numeric columns, each HCP's patient mix over the
  therapeutic areas (from ``patients_with_hcp``), the items' area, content type, abstract
  flag, series position, LDA topic vector (chapter 3) and, when given, ALS item factors
  (chapter 4).
- :class:`History` — the logged exposures strictly before a cut-off, indexed so that any
  query ``(h, c, k, t)`` reads only exposures strictly before ``t``: touches in the last 7, 14
  and 28 days, days since the last touch on each channel, the HCP's engagement rate on each
  channel, whether the item was shown or engaged with before, whether the previous part of
  its series was engaged with, and *memories*: the (optionally decayed) sums of the topic or
  CF vectors of the items the HCP — or its peer group — engaged with, or ignored, before ``t``.
- :func:`query_inputs` — every input of a batch of queries (training examples are logged
  exposures, each seen from its own instant), and :func:`snapshot` — the same inputs for
  every (HCP, item, channel) at one instant, as blocks to broadcast (the logit of both models
  is a sum of an (HCP, channel), an (item, channel) and an (HCP, item) part, so nothing of
  size n_hcp × n_item × n_channel is built here).

Times are minutes since ``reference`` (a midnight before every exposure), stored as int64.
Undecayed memories and counts use running sums over time-sorted events, so a query
costs two binary searches whatever the history's length; decayed memories expand each query
over its HCP's earlier events. No simulator truth is read anywhere in this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..domain import CHANNELS, SPECIALTIES, THERAPEUTIC_AREAS

#: content types of the catalogue (the world contract)
CONTENT_TYPES = ("publication_reprint", "clinical_summary", "guideline_update", "case_study", "patient_education")
#: categorical columns of the HCP master the models read; each value is coded 1.. (0 = unknown)
HCP_CATEGORICAL = ("specialty", "practice_setting", "region", "peer_group")
#: numeric columns of the HCP master and their fixed scales (no scaler to refit for a new HCP)
HCP_NUMERIC_SCALE = {"prescribing_decile": 10.0, "digital_affinity": 1.0, "years_in_practice": 40.0, "age": 80.0}
#: HCP-level history at the query instant
HCP_HISTORY = (
    "log_touches_7d",
    "log_touches_14d",
    "log_touches_28d",
    "exposure_depth",
    "engaged_depth",
    "engaged_rate",
    "log_days_since_touch",
)
#: (HCP, channel) history at the query instant, one row per channel
CHANNEL_HISTORY = (
    "channel_exposure_depth",
    "channel_engaged_depth",
    "channel_engaged_rate",
    "channel_recency",
    "log_days_since_channel",
)
#: (HCP, item) history and (item, instant) features at the query instant
PAIR_FEATURES = (
    "shown_not_engaged",
    "consumed",
    "previous_part_engaged",
    "is_sequel",
    "topic_memory_all",
    "topic_memory_7d",
    "topic_memory_30d",
    "topic_ignored_all",
    "peer_topic_memory",
    "cf_memory",
    "log_days_since_release",
    "item_exposure_depth",
    "item_engaged_rate",
)
#: half-lives (days) of the decayed topic memories
MEMORY_HALF_LIVES = (7.0, 30.0)
#: the prior of the shrunk engagement rates: ``(engaged + PRIOR_RATE * PRIOR_N) / (exposures + PRIOR_N)``
PRIOR_RATE, PRIOR_N = 0.12, 2.0


def depth(count: np.ndarray, half: float) -> np.ndarray:
    """``count / (count + half)``: how much history there is, in [0, 1). Cumulative counts grow
    with the calendar, so a model fed raw counts would extrapolate past the training period;
    this saturates instead."""
    count = np.asarray(count, dtype=np.float64)
    return count / (count + half)


_SHIFT = np.int64(1) << np.int64(32)  # minutes (8,000 years) fit below it, so (group, minute) pack into one int64
_NO_TOUCH_DAYS = 365.0


class FeatureError(ValueError):
    """The tables cannot give the features; the message names the table, column and value."""


def _codes(values: pd.Series, vocabulary: list[str]) -> np.ndarray:
    found = pd.Index(vocabulary).get_indexer(values.astype(object).where(values.notna(), None))
    return (found + 1).astype(np.int32)


def patient_mix(hcps: pd.DataFrame, patients: pd.DataFrame | None) -> np.ndarray:
    """Per HCP (``hcps`` order), the share of its patients' conditions in each therapeutic area
    (primary condition 1, other listed conditions 0.5); zeros for an HCP without patients."""
    mix = np.zeros((len(hcps), len(THERAPEUTIC_AREAS)))
    if patients is None or not len(patients):
        return mix
    for column in ("hcp_id", "primary_area", "conditions"):
        if column not in patients.columns:
            raise FeatureError(f"patients table lacks column {column!r}")
    index = pd.Index(hcps["hcp_id"].astype(str)).get_indexer(patients["hcp_id"].astype(str))
    known = index >= 0
    primary = pd.Index(THERAPEUTIC_AREAS).get_indexer(patients["primary_area"].astype(str))
    ok = known & (primary >= 0)
    np.add.at(mix, (index[ok], primary[ok]), 1.0)
    conditions = patients["conditions"].astype(str)
    for a, area in enumerate(THERAPEUTIC_AREAS):
        listed = conditions.str.contains(area, regex=False).to_numpy(bool) & known & (primary != a)
        np.add.at(mix[:, a], index[listed], 0.5)
    return mix / np.maximum(mix.sum(axis=1, keepdims=True), 1e-12)


def _previous_parts(catalogue: pd.DataFrame) -> np.ndarray:
    if "series_id" not in catalogue.columns or "series_part" not in catalogue.columns:
        return np.full(len(catalogue), -1, dtype=np.int64)
    keys = catalogue["series_id"].astype(object).where(catalogue["series_id"].notna(), None)
    part = pd.to_numeric(catalogue["series_part"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    lookup = {(s, p): i for i, (s, p) in enumerate(zip(keys, part)) if s is not None}
    return np.array([lookup.get((s, p - 1), -1) if s is not None else -1 for s, p in zip(keys, part)], dtype=np.int64)


@dataclass
class FeatureSpace:
    """Static attributes of the HCPs (master order) and items (catalogue order).

    Build it with :meth:`from_tables`. ``hcp_categorical`` holds codes 1.. of
    :data:`HCP_CATEGORICAL` (0 = unknown) with ``vocabularies``; ``hcp_numeric`` the scaled
    :data:`HCP_NUMERIC_SCALE` columns followed by the patient mix; ``item_*`` the items'
    area and type codes (0-based), abstract flag and series part (scaled to [0, 1]);
    ``topics`` the LDA vectors (rows sum to 1; zeros without a doc-topic table); ``cf_items``
    unit-length ALS item factors (zeros for items without engagements, or a single zero
    column without factors) and, for the training examples, ``cf_items_oof`` (n_fold, n_item,
    d): the same fitted without the engagements of each fold of HCPs (``hcp_fold``), so that no
    example's own outcome reaches its CF inputs; ``release_minute`` minutes since ``reference``
    (NaN unknown). CF vectors enter only through dot products (:func:`pair_features`), which do
    not depend on the arbitrary rotation of each fit's factors.
    """

    hcp_ids: pd.Index
    content_ids: pd.Index
    reference: pd.Timestamp
    vocabularies: dict[str, list[str]]
    hcp_categorical: dict[str, np.ndarray]
    hcp_numeric: np.ndarray
    item_area: np.ndarray
    item_type: np.ndarray
    item_numeric: np.ndarray
    topics: np.ndarray
    cf_items: np.ndarray
    prev_part: np.ndarray
    release_minute: np.ndarray
    hcp_numeric_names: tuple = field(default=())
    cf_items_oof: np.ndarray | None = None
    hcp_fold: np.ndarray | None = None

    def cf_table(self, out_of_fold: bool) -> np.ndarray:
        """The CF item vectors (n_item, d), or with ``out_of_fold`` the per-fold ones (n_fold, n_item, d)."""
        if out_of_fold and self.cf_items_oof is not None:
            return self.cf_items_oof
        return self.cf_items

    def cf_rows(self, h: np.ndarray, c: np.ndarray, out_of_fold: bool) -> np.ndarray:
        """The CF vectors of items ``c`` as seen by HCP rows ``h`` (their fold's, with ``out_of_fold``)."""
        if out_of_fold and self.cf_items_oof is not None:
            return self.cf_items_oof[self.hcp_fold[h], c]
        return self.cf_items[c]

    @classmethod
    def from_tables(
        cls,
        hcps: pd.DataFrame,
        catalogue: pd.DataFrame,
        reference: pd.Timestamp,
        patients: pd.DataFrame | None = None,
        doc_topics: pd.DataFrame | None = None,
        cf_item_factors: pd.DataFrame | None = None,
        vocabularies: dict | None = None,
        cf_item_factors_oof: list[pd.DataFrame] | None = None,
        hcp_fold: np.ndarray | None = None,
    ) -> FeatureSpace:
        """The space of ``hcps`` (the master: hcp_id and :data:`HCP_CATEGORICAL` +
        :data:`HCP_NUMERIC_SCALE` columns) and ``catalogue`` (content_id, therapeutic_area,
        release_date; content_type, has_abstract, series_id, series_part when present).

        ``doc_topics``: pmid (or content_id) + topic_* columns, a row per item;
        ``cf_item_factors``: content_id + factor_* columns (items absent get zeros);
        ``cf_item_factors_oof``: one such table per fold of HCPs, fitted without that fold's
        engagements, with ``hcp_fold`` (the fold of each HCP of ``hcps``);
        ``vocabularies``: the categorical vocabularies of a fitted model (default: from ``hcps``).
        A missing column or a non-finite numeric value raises :class:`FeatureError` naming it.
        """
        for column in ("hcp_id", *HCP_CATEGORICAL, *HCP_NUMERIC_SCALE):
            if column not in hcps.columns:
                raise FeatureError(
                    f"HCP table lacks column {column!r}; the engagement models need "
                    f"{', '.join(('hcp_id', *HCP_CATEGORICAL, *HCP_NUMERIC_SCALE))}"
                )
        for column in ("content_id", "therapeutic_area", "release_date"):
            if column not in catalogue.columns:
                raise FeatureError(f"catalogue lacks column {column!r}")
        hcp_ids = pd.Index(hcps["hcp_id"].astype(str))
        content_ids = pd.Index(catalogue["content_id"].astype(str))
        if vocabularies is None:
            vocabularies = {c: sorted(hcps[c].dropna().astype(str).unique().tolist()) for c in HCP_CATEGORICAL}
        categorical = {c: _codes(hcps[c].astype(str), vocabularies[c]) for c in HCP_CATEGORICAL}
        numeric = np.stack([hcps[c].to_numpy(dtype=np.float64) / s for c, s in HCP_NUMERIC_SCALE.items()], axis=1)
        bad = ~np.isfinite(numeric)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise FeatureError(
                f"HCP table column {list(HCP_NUMERIC_SCALE)[col]!r} is missing or not finite for HCP {hcp_ids[row]!r}"
            )
        numeric = np.concatenate([numeric, patient_mix(hcps, patients)], axis=1)
        names = tuple(HCP_NUMERIC_SCALE) + tuple(f"patients_{a}" for a in THERAPEUTIC_AREAS)
        area = pd.Index(THERAPEUTIC_AREAS).get_indexer(catalogue["therapeutic_area"].astype(str))
        if (area < 0).any():
            bad_area = catalogue["therapeutic_area"].astype(str).to_numpy()[area < 0][0]
            raise FeatureError(
                f"catalogue column 'therapeutic_area' has value {bad_area!r}; allowed: {', '.join(THERAPEUTIC_AREAS)}"
            )
        ctype = (
            pd.Index(CONTENT_TYPES).get_indexer(catalogue["content_type"].astype(str))
            if "content_type" in catalogue.columns
            else np.zeros(len(catalogue), int)
        )
        has_abstract = (
            catalogue["has_abstract"].to_numpy(dtype=float)
            if "has_abstract" in catalogue.columns
            else np.ones(len(catalogue))
        )
        part = (
            pd.to_numeric(catalogue["series_part"], errors="coerce").fillna(0).to_numpy(float)
            if "series_part" in catalogue.columns
            else np.zeros(len(catalogue))
        )
        release = (pd.to_datetime(catalogue["release_date"]) - pd.Timestamp(reference)) / pd.Timedelta(minutes=1)
        return cls(
            hcp_ids,
            content_ids,
            pd.Timestamp(reference),
            vocabularies,
            categorical,
            numeric.astype(np.float32),
            area.astype(np.int32),
            np.maximum(ctype, 0).astype(np.int32),
            np.stack([has_abstract, np.clip(part, 0, 5) / 5], axis=1).astype(np.float32),
            _topic_matrix(doc_topics, content_ids),
            _cf_matrix(cf_item_factors, content_ids),
            _previous_parts(catalogue.reset_index(drop=True)),
            release.to_numpy(dtype=float),
            names,
            None
            if cf_item_factors_oof is None
            else np.stack([_cf_matrix(f, content_ids) for f in cf_item_factors_oof]),
            None if hcp_fold is None else np.asarray(hcp_fold, dtype=np.int64),
        )

    @property
    def n_topics(self) -> int:
        return self.topics.shape[1]

    @property
    def n_specialties(self) -> int:
        return len(SPECIALTIES)

    def minutes(self, times) -> np.ndarray:
        """Minutes since ``reference`` of timestamps (int64, floored)."""
        stamps = pd.to_datetime(pd.Series(np.atleast_1d(np.asarray(times, dtype=object))))
        return np.floor((stamps - self.reference) / pd.Timedelta(minutes=1)).to_numpy(dtype=np.int64)


def _topic_matrix(doc_topics: pd.DataFrame | None, content_ids: pd.Index) -> np.ndarray:
    if doc_topics is None or not len(doc_topics):
        return np.zeros((len(content_ids), 1), np.float32)
    key = "content_id" if "content_id" in doc_topics.columns else "pmid"
    columns = sorted((c for c in doc_topics.columns if str(c).startswith("topic_")), key=lambda c: int(str(c)[6:]))
    if key not in doc_topics.columns or not columns:
        raise FeatureError(
            f"the doc-topic table needs a 'pmid' (or 'content_id') column and topic_* columns; it has "
            f"{list(doc_topics.columns)}"
        )
    table = doc_topics.set_index(doc_topics[key].astype(str))[columns]
    missing = content_ids.difference(table.index)
    if len(missing):
        raise FeatureError(
            f"the doc-topic table has no row for content id {missing[0]!r} ({len(missing)} items missing)"
        )
    return table.loc[content_ids].to_numpy(dtype=np.float32)


def _cf_matrix(factors: pd.DataFrame | None, content_ids: pd.Index) -> np.ndarray:
    if factors is None or not len(factors):
        return np.zeros((len(content_ids), 1), np.float32)
    columns = [c for c in factors.columns if str(c).startswith("factor_")]
    if "content_id" not in factors.columns or not columns:
        raise FeatureError("the CF item factor table needs a 'content_id' column and factor_* columns")
    matrix = factors.set_index(factors["content_id"].astype(str))[columns].reindex(content_ids).fillna(0.0)
    matrix = matrix.to_numpy(dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.where(norms > 0, matrix / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)


# --- the history -------------------------------------------------------------------------------


@dataclass
class _Stream:
    """Events grouped by an integer key and sorted by time, with running sums for range queries."""

    keys: np.ndarray  # int64 group * _SHIFT + minute, sorted
    minute: np.ndarray  # int64
    index: np.ndarray  # position of each event in the log

    @classmethod
    def build(cls, group: np.ndarray, minute: np.ndarray) -> _Stream:
        order = np.lexsort((minute, group))
        keys = group[order].astype(np.int64) * _SHIFT + minute[order]
        return cls(keys, minute[order], order)

    def bounds(self, group: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions [lo, hi) of the group's events with start <= minute < end."""
        base = np.asarray(group, dtype=np.int64) * _SHIFT
        return (
            np.searchsorted(self.keys, base + np.asarray(start, dtype=np.int64), side="left"),
            np.searchsorted(self.keys, base + np.asarray(end, dtype=np.int64), side="left"),
        )

    def running(self, values: np.ndarray) -> np.ndarray:
        """Running sums (len + 1, ...) of ``values`` (log order) in stream order, for ``cum[hi] - cum[lo]``."""
        ordered = np.asarray(values, dtype=np.float64)[self.index]
        zero = np.zeros((1,) + ordered.shape[1:])
        return np.concatenate([zero, np.cumsum(ordered, axis=0)], axis=0)


class History:
    """The logged exposures strictly before ``cutoff``, indexed for point-in-time queries.

    Every query method takes aligned arrays of HCP rows ``h`` (positions in
    ``space.hcp_ids``), item columns ``c``, channels ``k`` and instants ``t`` (minutes since
    ``space.reference``) and reads only exposures with minute < t (and before the cut-off).
    """

    def __init__(self, interactions: pd.DataFrame, space: FeatureSpace, cutoff: pd.Timestamp | None = None):
        for column in ("hcp_id", "content_id", "channel", "exposed_at", "engaged"):
            if column not in interactions.columns:
                raise FeatureError(f"interactions lack column {column!r}")
        if cutoff is not None:
            interactions = interactions[interactions["exposed_at"] < pd.Timestamp(cutoff)]
        self.space = space
        self.cutoff = None if cutoff is None else pd.Timestamp(cutoff)
        h = space.hcp_ids.get_indexer(interactions["hcp_id"].astype(str))
        if (h < 0).any():
            raise FeatureError(
                f"interactions column 'hcp_id' has value "
                f"{interactions['hcp_id'].astype(str).to_numpy()[h < 0][0]!r}, not in the HCP master"
            )
        c = space.content_ids.get_indexer(interactions["content_id"].astype(str))
        if (c < 0).any():
            raise FeatureError(
                f"interactions column 'content_id' has value "
                f"{interactions['content_id'].astype(str).to_numpy()[c < 0][0]!r}, not in the catalogue"
            )
        k = pd.Index(CHANNELS).get_indexer(interactions["channel"].astype(str))
        if (k < 0).any():
            raise FeatureError(
                f"interactions column 'channel' has value "
                f"{interactions['channel'].astype(str).to_numpy()[k < 0][0]!r}; allowed: {', '.join(CHANNELS)}"
            )
        minute = space.minutes(interactions["exposed_at"]) if len(interactions) else np.zeros(0, np.int64)
        if len(minute) and minute.min() < 0:
            raise FeatureError(
                f"an exposure at {interactions['exposed_at'].min()} is before the reference {space.reference}"
            )
        order = np.lexsort((k, c, minute, h))
        self.hcp, self.content, self.channel = h[order], c[order], k[order]
        self.minute = minute[order].astype(np.int64)
        self.engaged = interactions["engaged"].to_numpy(dtype=bool)[order]
        n_content = len(space.content_ids)
        self._hcp = _Stream.build(self.hcp, self.minute)
        self._hcp_engaged = self._hcp.running(self.engaged)
        self._channel = _Stream.build(self.hcp.astype(np.int64) * len(CHANNELS) + self.channel, self.minute)
        self._channel_engaged = self._channel.running(self.engaged)
        self._pair = _Stream.build(self.hcp.astype(np.int64) * n_content + self.content, self.minute)
        self._pair_engaged = self._pair.running(self.engaged)
        self._item = _Stream.build(self.content.astype(np.int64), self.minute)
        self._item_engaged = self._item.running(self.engaged)
        peer = space.hcp_categorical["peer_group"][self.hcp]
        self._peer = _Stream.build(peer.astype(np.int64), self.minute)
        self._memories: dict = {}

    def __len__(self) -> int:
        return len(self.minute)

    # -- HCP level
    def hcp_history(self, h: np.ndarray, t: np.ndarray) -> np.ndarray:
        """:data:`HCP_HISTORY` (n, 7): touches in the last 7/14/28 days (log1p), the :func:`depth`
        of the exposures (half 10) and engaged exposures (half 3) so far, the shrunk engagement
        rate and log1p days since the last touch."""
        t = np.asarray(t, dtype=np.int64)
        counts = [np.subtract(*self._hcp.bounds(h, t - days * 1440, t)[::-1]) for days in (7, 14, 28)]
        lo, hi = self._hcp.bounds(h, np.zeros_like(t), t)
        n, engaged = hi - lo, self._hcp_engaged[hi] - self._hcp_engaged[lo]
        last = self._hcp.minute[np.maximum(hi - 1, 0)] if len(self) else np.zeros(len(h), np.int64)
        since = np.where(n > 0, (t - last) / 1440.0, _NO_TOUCH_DAYS)
        return np.stack(
            [
                np.log1p(counts[0]),
                np.log1p(counts[1]),
                np.log1p(counts[2]),
                depth(n, 10),
                depth(engaged, 3),
                (engaged + PRIOR_RATE * PRIOR_N) / (n + PRIOR_N),
                np.log1p(np.minimum(since, _NO_TOUCH_DAYS)),
            ],
            axis=1,
        ).astype(np.float32)

    def channel_history(self, h: np.ndarray, t: np.ndarray) -> np.ndarray:
        """:data:`CHANNEL_HISTORY` for every channel, (n, 5, 5): the :func:`depth` of the HCP's
        exposures (half 5) and engaged exposures (half 2) on the channel so far, its shrunk
        engagement rate there, exp(-days since the last touch on it / 7) and log1p of those days."""
        t = np.asarray(t, dtype=np.int64)
        out = np.empty((len(h), len(CHANNELS), len(CHANNEL_HISTORY)), np.float32)
        for k in range(len(CHANNELS)):
            group = np.asarray(h, dtype=np.int64) * len(CHANNELS) + k
            lo, hi = self._channel.bounds(group, np.zeros_like(t), t)
            n, engaged = hi - lo, self._channel_engaged[hi] - self._channel_engaged[lo]
            last = self._channel.minute[np.maximum(hi - 1, 0)] if len(self) else np.zeros(len(h), np.int64)
            since = np.minimum(np.where(n > 0, (t - last) / 1440.0, _NO_TOUCH_DAYS), _NO_TOUCH_DAYS)
            out[:, k] = np.stack(
                [
                    depth(n, 5),
                    depth(engaged, 2),
                    (engaged + PRIOR_RATE * PRIOR_N) / (n + PRIOR_N),
                    np.exp(-since / 7.0),
                    np.log1p(since),
                ],
                axis=1,
            )
        return out

    # -- pair level
    def pair_flags(self, h: np.ndarray, c: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(n, 4): shown before and not engaged, engaged before, the previous part of the item's
        series engaged before, the item is a sequel (part >= 2)."""
        t = np.asarray(t, dtype=np.int64)
        n_content = len(self.space.content_ids)
        pair = np.asarray(h, dtype=np.int64) * n_content + c
        lo, hi = self._pair.bounds(pair, np.zeros_like(t), t)
        shown = hi > lo
        consumed = (self._pair_engaged[hi] - self._pair_engaged[lo]) > 0
        prev = self.space.prev_part[c]
        plo, phi = self._pair.bounds(
            np.asarray(h, dtype=np.int64) * n_content + np.maximum(prev, 0), np.zeros_like(t), t
        )
        prev_engaged = (prev >= 0) & ((self._pair_engaged[phi] - self._pair_engaged[plo]) > 0)
        return np.stack([shown & ~consumed, consumed, prev_engaged, prev >= 0], axis=1).astype(np.float32)

    def item_activity(self, c: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(n, 2): the :func:`depth` (half 50) of the item's exposures before t (every HCP) and its
        engagement rate, shrunk by 10 exposures at the prior rate."""
        t = np.asarray(t, dtype=np.int64)
        lo, hi = self._item.bounds(c, np.zeros_like(t), t)
        n, engaged = hi - lo, self._item_engaged[hi] - self._item_engaged[lo]
        return np.stack([depth(n, 50), (engaged + PRIOR_RATE * 10) / (n + 10)], axis=1).astype(np.float32)

    # -- memories
    def _running_sums(self, peers: bool, which: str, vectors: str, out_of_fold: bool) -> np.ndarray:
        key = (peers, which, vectors, out_of_fold)
        if key not in self._memories:
            values = (
                self.space.topics[self.content]
                if vectors == "topics"
                else self.space.cf_rows(self.hcp, self.content, out_of_fold)
            )
            mask = self.engaged if which == "engaged" else ~self.engaged
            stream = self._peer if peers else self._hcp
            self._memories[key] = stream.running(values.astype(np.float64) * mask[:, None])
        return self._memories[key]

    def memory(
        self,
        h: np.ndarray,
        t: np.ndarray,
        which: str = "engaged",
        vectors: str = "topics",
        half_life: float | None = None,
        peers: bool = False,
        out_of_fold: bool = False,
        chunk: int = 200_000,
    ) -> np.ndarray:
        """(n, d): the sum of the ``vectors`` ('topics' or 'cf') of the items the HCP (or, with
        ``peers``, its peer group) engaged with (``which='engaged'``) or ignored ('ignored')
        before t, each weighted by 2^(-age / half_life) when ``half_life`` (days) is given
        (HCP memories only). ``out_of_fold``: CF vectors of each HCP's fold (training examples)."""
        if which not in ("engaged", "ignored") or vectors not in ("topics", "cf"):
            raise ValueError(f"memory of {which!r} {vectors!r}: expected 'engaged'/'ignored' and 'topics'/'cf'")
        h = np.asarray(h, dtype=np.int64)
        t = np.asarray(t, dtype=np.int64)
        stream = self._peer if peers else self._hcp
        group = self.space.hcp_categorical["peer_group"][h] if peers else h
        lo, hi = stream.bounds(group, np.zeros_like(t), t)
        if half_life is None:
            if peers and vectors == "cf":
                raise ValueError("CF memories are computed for HCPs only (their folds differ within a peer group)")
            sums = self._running_sums(peers, which, vectors, out_of_fold)
            return sums[hi] - sums[lo]
        if peers or vectors != "topics":
            raise ValueError("decayed memories are computed for HCPs' topics only")
        # Decayed sums are expanded over each query's earlier events (a few dozen per HCP): a
        # running sum of exp(minute / tau) weights would lose every digit to cancellation.
        table = self.space.topics
        mask = self.engaged if which == "engaged" else ~self.engaged
        out = np.zeros((len(h), table.shape[1]))
        rate = np.log(2.0) / (half_life * 1440.0)
        for first in range(0, len(h), chunk):
            part = slice(first, first + chunk)
            counts = hi[part] - lo[part]
            rows = np.repeat(np.arange(len(counts)), counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            event = stream.index[lo[part][rows] + offsets]
            weight = np.exp(-rate * (t[part][rows] - self.minute[event])) * mask[event]
            block = np.zeros((len(counts), table.shape[1]))
            np.add.at(block, rows, weight[:, None] * table[self.content[event]])
            out[part] = block
        return out

    def sequence(self, h: np.ndarray, t: np.ndarray, length: int) -> dict[str, np.ndarray]:
        """The HCP's last ``length`` exposures before t, oldest first, pre-padded:
        ``sequence_item`` (catalogue column + 1; 0 = padding), ``sequence_channel`` (channel + 1;
        0 = padding) and ``sequence_numeric`` (n, length, 3): engaged, log1p days before t,
        1 for a real step."""
        t = np.asarray(t, dtype=np.int64)
        lo, hi = self._hcp.bounds(h, np.zeros_like(t), t)
        steps = hi[:, None] - length + np.arange(length)[None, :]
        real = steps >= lo[:, None]
        if not len(self):
            real = np.zeros_like(real)
        where = self._hcp.index[np.where(real, steps, 0)] if len(self) else np.zeros(steps.shape, np.int64)
        item = np.where(real, self.content[where] + 1, 0) if len(self) else np.zeros(steps.shape, np.int64)
        channel = np.where(real, self.channel[where] + 1, 0) if len(self) else np.zeros(steps.shape, np.int64)
        engaged = np.where(real, self.engaged[where], False) if len(self) else np.zeros(steps.shape, bool)
        age = np.where(
            real, np.log1p(np.maximum(t[:, None] - (self.minute[where] if len(self) else 0), 0) / 1440.0), 0.0
        )
        return {
            "sequence_item": item.astype(np.int32),
            "sequence_channel": channel.astype(np.int32),
            "sequence_numeric": np.stack([engaged, age, real], axis=-1).astype(np.float32),
        }


# --- model inputs --------------------------------------------------------------------------------


def _share(memory: np.ndarray) -> np.ndarray:
    total = memory.sum(axis=1, keepdims=True)
    return np.where(total > 0, memory / np.where(total > 0, total, 1.0), 0.0)


def hcp_memory(history: History, h: np.ndarray, t: np.ndarray, out_of_fold: bool = False) -> dict[str, np.ndarray]:
    """The HCP-side memories at t: topic mixes of engaged and ignored items (shares), their
    7- and 30-day decayed engaged topic sums, the peer group's engaged topic mix and the mean
    CF vector of the HCP's engaged items (its fold's with ``out_of_fold``); plus the
    :func:`depth` (half 3) of the engaged and ignored counts."""
    engaged = history.memory(h, t, "engaged", "topics")
    ignored = history.memory(h, t, "ignored", "topics")
    cf = history.memory(h, t, "engaged", "cf", out_of_fold=out_of_fold)
    count = engaged.sum(axis=1, keepdims=True)
    return {
        "topics_engaged": _share(engaged),
        "topics_ignored": _share(ignored),
        "topics_engaged_30d": history.memory(h, t, "engaged", "topics", MEMORY_HALF_LIVES[1]),
        "topics_engaged_7d": history.memory(h, t, "engaged", "topics", MEMORY_HALF_LIVES[0]),
        "peer_topics_engaged": _share(history.memory(h, t, "engaged", "topics", peers=True)),
        "cf_engaged": np.where(count > 0, cf / np.maximum(count, 1e-12), 0.0),
        "counts": depth(np.concatenate([count, ignored.sum(axis=1, keepdims=True)], axis=1), 3),
    }


def memory_vector(memories: dict[str, np.ndarray]) -> np.ndarray:
    """The HCP-side topic memories as one float32 row per query (the hybrid's ``memory`` input;
    the CF memory enters through :func:`pair_features` only)."""
    return np.concatenate(
        [
            memories[k]
            for k in ("topics_engaged", "topics_ignored", "topics_engaged_30d", "peer_topics_engaged", "counts")
        ],
        axis=1,
    ).astype(np.float32)


def pair_features(
    space: FeatureSpace,
    history: History,
    memories: dict[str, np.ndarray],
    h: np.ndarray,
    c: np.ndarray,
    t: np.ndarray,
    out_of_fold: bool = False,
) -> np.ndarray:
    """:data:`PAIR_FEATURES` (n, 13) of aligned queries, given their HCP memories
    (``out_of_fold`` as they were computed)."""
    topics = space.topics[c].astype(np.float64)
    dot = lambda m: np.einsum("ij,ij->i", m, topics)  # noqa: E731
    release = space.release_minute[c]
    days = np.where(np.isfinite(release), (np.asarray(t) - np.nan_to_num(release)) / 1440.0, 0.0)
    cf_dot = np.einsum("ij,ij->i", memories["cf_engaged"], space.cf_rows(h, c, out_of_fold).astype(np.float64))
    return np.column_stack(
        [
            history.pair_flags(h, c, t),
            dot(memories["topics_engaged"]),
            dot(memories["topics_engaged_7d"]),
            dot(memories["topics_engaged_30d"]),
            dot(memories["topics_ignored"]),
            dot(memories["peer_topics_engaged"]),
            cf_dot,
            np.log1p(np.clip(days, 0, None)),
            history.item_activity(c, t),
        ]
    ).astype(np.float32)


def query_inputs(
    space: FeatureSpace,
    history: History,
    h: np.ndarray,
    c: np.ndarray,
    k: np.ndarray,
    t: np.ndarray,
    sequence_length: int = 0,
    out_of_fold: bool = False,
) -> dict[str, np.ndarray]:
    """Every input of the engagement models for aligned queries (HCP rows ``h``, item columns
    ``c``, channels ``k``, minutes ``t``), reading only exposures before each ``t``.

    Keys: ``hcp`` (row), the :data:`HCP_CATEGORICAL` codes (``specialty``, ``practice_setting``,
    ``region``, ``peer_group``), ``hcp_numeric``, ``hcp_history`` (:data:`HCP_HISTORY`),
    ``channel_history`` (n, 5, :data:`CHANNEL_HISTORY`), ``memory`` (:func:`memory_vector`),
    ``item`` (column), ``item_area``, ``item_type``, ``item_numeric``, ``topics``,
    ``channel`` and ``pair`` (:data:`PAIR_FEATURES`); with ``sequence_length`` > 0 also the
    :meth:`History.sequence` arrays. ``out_of_fold``: the CF inputs of queries whose outcome
    the CF model was fitted on (the training examples) use their HCP's fold.
    """
    h, c, k = (np.asarray(a, dtype=np.int64) for a in (h, c, k))
    t = np.asarray(t, dtype=np.int64)
    memories = hcp_memory(history, h, t, out_of_fold)
    x = {
        "hcp": h.astype(np.int32),
        **{name: space.hcp_categorical[name][h] for name in HCP_CATEGORICAL},
        "hcp_numeric": space.hcp_numeric[h],
        "hcp_history": history.hcp_history(h, t),
        "channel_history": history.channel_history(h, t),
        "memory": memory_vector(memories),
        "item": c.astype(np.int32),
        "item_area": space.item_area[c],
        "item_type": space.item_type[c],
        "item_numeric": space.item_numeric[c],
        "topics": space.topics[c],
        "channel": k.astype(np.int32),
        "pair": pair_features(space, history, memories, h, c, t, out_of_fold),
    }
    if sequence_length > 0:
        x.update(history.sequence(h, t, sequence_length))
    return x


@dataclass
class Snapshot:
    """The inputs of every (HCP, item, channel) at one instant, as blocks: ``hcp`` holds the
    per-HCP inputs of :func:`query_inputs` (rows = the HCPs asked for, ``channel_history``
    included), ``item`` the per-item inputs, and :meth:`pair` the (HCP, item) features."""

    space: FeatureSpace
    history: History
    rows: np.ndarray
    minute: int
    hcp: dict[str, np.ndarray]
    item: dict[str, np.ndarray]
    memories: dict[str, np.ndarray]

    def pair(self, hcp_slice: slice = slice(None)) -> np.ndarray:
        """:data:`PAIR_FEATURES` (n_hcp_in_slice, n_item, 13) of the HCPs of ``hcp_slice``."""
        rows = self.rows[hcp_slice]
        n_item = len(self.space.content_ids)
        h = np.repeat(rows, n_item)
        c = np.tile(np.arange(n_item), len(rows))
        t = np.full(len(h), self.minute, dtype=np.int64)
        memories = {key: np.repeat(value[hcp_slice], n_item, axis=0) for key, value in self.memories.items()}
        return pair_features(self.space, self.history, memories, h, c, t).reshape(len(rows), n_item, -1)


def snapshot(space: FeatureSpace, history: History, rows: np.ndarray, at, sequence_length: int = 0) -> Snapshot:
    """The :class:`Snapshot` of HCP rows ``rows`` at instant ``at`` (a timestamp), reading
    only exposures before it."""
    rows = np.asarray(rows, dtype=np.int64)
    minute = int(space.minutes([at])[0])
    t = np.full(len(rows), minute, dtype=np.int64)
    memories = hcp_memory(history, rows, t)
    hcp = {
        "hcp": rows.astype(np.int32),
        **{name: space.hcp_categorical[name][rows] for name in HCP_CATEGORICAL},
        "hcp_numeric": space.hcp_numeric[rows],
        "hcp_history": history.hcp_history(rows, t),
        "channel_history": history.channel_history(rows, t),
        "memory": memory_vector(memories),
    }
    if sequence_length > 0:
        hcp.update(history.sequence(rows, t, sequence_length))
    items = np.arange(len(space.content_ids))
    item = {
        "item": items.astype(np.int32),
        "item_area": space.item_area,
        "item_type": space.item_type,
        "item_numeric": space.item_numeric,
        "topics": space.topics,
    }
    return Snapshot(space, history, rows, minute, hcp, item, memories)
