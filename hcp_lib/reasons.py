"""Why an (HCP, content item, channel) is suggested: the one reasons engine of the project.

Both users of reasons call :func:`reason_table` here, so a sentence a field team reads in the
week's plan (notebook 07, :mod:`hcp_lib.stages.plan`, exported with the plan as ``reasons`` /
``plan/reasons.parquet``) and the sentence beside the same (HCP, item, channel) in the
recommendation explorers (notebook 08, :mod:`hcp_lib.stages.explore`) come from the same rules,
numbers and wording. No other module computes or words a reason.

The engine takes a table of suggestions (a row key, ``hcp_id``, ``content_id``, ``channel``
and, optionally, a probability column) and an :class:`Evidence` (:func:`make_evidence`): the
exposures strictly before the cut-off ``as_of`` and the lookups (catalogue, HCP master, the
dominant LDA topic of each item and the topic labels). Every reason is computed from that
history; nothing at or after ``as_of`` is read. The reasons, in the order they are listed
(:data:`REASON_CODES`):

- ``series_continuation``: the item is part p >= 2 of a series and the HCP engaged with part
  p-1 — "part {p} of series {s}; engaged with part {p-1} on {date}";
- ``topic_interest``: the HCP engaged with items of the item's dominant LDA topic in the last
  ``interest_window_days`` days — "engaged with {n} item(s) on topic '{label}' in the last
  {days} days (last on {date})" (off when there is no topic model);
- ``peer_engagement``: other HCPs of the same health system (else the same peer group) engaged
  with the item — "{n} peer(s) in the same health system ({unit}) engaged with this item";
- ``channel_preference``: the suggested channel has the HCP's highest engagement rate (at
  least two exposures on it, at least one engaged) — "prefers {channel}: engaged on {e} of
  {x} touches, the best rate of the HCP's channels";
- ``last_touch``: the HCP's most recent touch — engaged on the suggested channel ("engaged
  with the last {channel} on {date}"), or ignored on another channel ("last {channel} on
  {date} not engaged; switching channel");
- ``model_estimate``: the model's probability — "model estimates a {p:.0%} chance of
  engagement via {channel}"; only when the caller names a probability column (the plan does,
  with its ``priority_score``; the explorers do not, see :func:`hcp_lib.stages.explore.recommend`).

Each reason row carries its evidence: ``evidence_count``, ``evidence_date`` (the latest event
behind it) and ``evidence_ids`` (the content ids, HCP ids or channel it rests on,
";"-joined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .domain import CHANNEL_LABELS

#: the reasons a suggestion can carry, in the order they are listed
REASON_CODES = (
    "series_continuation",
    "topic_interest",
    "peer_engagement",
    "channel_preference",
    "last_touch",
    "model_estimate",
)
#: the columns of :func:`reason_table` after the row key
REASON_COLUMNS = ("reason_code", "reason", "evidence_count", "evidence_date", "evidence_ids")

HISTORY_COLUMNS = ("hcp_id", "content_id", "channel", "exposed_at", "engaged")
CATALOGUE_COLUMNS = ("content_id", "series_id", "series_part")
HCP_COLUMNS = ("hcp_id", "health_system", "peer_group")
SUGGESTION_COLUMNS = ("hcp_id", "content_id", "channel")


class ReasonsError(ValueError):
    """The suggestions or the evidence lack a column the engine needs; the message names it."""


@dataclass(frozen=True, eq=False)
class Evidence:
    """What the reasons rest on, as known at ``as_of``.

    ``history``: the exposures (:data:`HISTORY_COLUMNS`) strictly before ``as_of``, sorted by
    (exposed_at, hcp_id, content_id) — the order decides the "last touch";
    ``catalogue``: one row per item (:data:`CATALOGUE_COLUMNS`); ``hcps``: the HCP master
    (:data:`HCP_COLUMNS`); ``content_ids``: the catalogue's ids, which ``item_topic`` (dominant
    LDA topic per item, -1 unknown) follows; ``topic_labels``: one label per topic (empty: no
    topic model, the topic reason is off); ``interest_window_days``: the window of the topic
    reason. Build it with :func:`make_evidence`.
    """

    history: pd.DataFrame
    catalogue: pd.DataFrame
    hcps: pd.DataFrame
    item_topic: np.ndarray
    topic_labels: tuple
    content_ids: pd.Index
    as_of: pd.Timestamp
    interest_window_days: int

    def topic_of(self, content_ids) -> np.ndarray:
        """The dominant topic of each of ``content_ids`` (-1: not in the catalogue or no topic)."""
        position = self.content_ids.get_indexer(pd.Index(np.asarray(content_ids, dtype=object)))
        return np.where(position >= 0, self.item_topic[np.maximum(position, 0)] if len(self.item_topic) else -1, -1)


def _require(table: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ReasonsError(f"{what}: missing column {missing[0]!r} (the reasons engine needs {', '.join(columns)})")


def dominant_topics(shares: pd.DataFrame, content_ids) -> np.ndarray:
    """The dominant topic (position of the largest share) of each of ``content_ids``, from
    ``shares`` (index: content id; one column per topic, in topic order); -1 where the item
    has no complete row of shares."""
    found = shares.reindex(pd.Index(np.asarray(content_ids, dtype=object)))
    topic = np.full(len(found), -1)
    known = found.notna().all(axis=1).to_numpy()
    topic[known] = found.to_numpy()[known].argmax(axis=1)
    return topic


def make_evidence(
    history: pd.DataFrame,
    catalogue: pd.DataFrame,
    hcps: pd.DataFrame,
    as_of,
    interest_window_days: int,
    item_topic: np.ndarray | None = None,
    topic_labels=None,
) -> Evidence:
    """An :class:`Evidence`: keeps the exposures of ``history`` strictly before ``as_of`` and
    sorts them (stable) by (exposed_at, hcp_id, content_id). ``item_topic`` follows the rows of
    ``catalogue`` (see :func:`dominant_topics`); without it, or without ``topic_labels``, the
    topic reason is off."""
    _require(history, HISTORY_COLUMNS, "history")
    _require(catalogue, CATALOGUE_COLUMNS, "catalogue")
    _require(hcps, HCP_COLUMNS, "hcps")
    as_of = pd.Timestamp(as_of)
    past = history[history["exposed_at"] < as_of]
    past = past.sort_values(["exposed_at", "hcp_id", "content_id"], kind="stable").reset_index(drop=True)
    content_ids = pd.Index(catalogue["content_id"].astype(str).to_numpy(dtype=object))
    labels = tuple(topic_labels) if topic_labels is not None and item_topic is not None else ()
    topic = np.asarray(item_topic, dtype=int) if labels else np.full(len(content_ids), -1)
    if len(topic) != len(content_ids):
        raise ReasonsError(f"item_topic has {len(topic)} entries for {len(content_ids)} catalogue items")
    return Evidence(past, catalogue, hcps, topic, labels, content_ids, as_of, int(interest_window_days))


def _reason(rows: pd.DataFrame, key: str, code: str, text, count, date, ids) -> pd.DataFrame:
    return pd.DataFrame(
        {
            key: rows[key].to_numpy(),
            "reason_code": code,
            "reason": np.asarray(text, dtype=object).astype(str),
            "evidence_count": np.asarray(count, dtype=np.int64),
            "evidence_date": pd.to_datetime(np.asarray(date)).astype("datetime64[us]"),
            "evidence_ids": np.asarray(ids, dtype=object).astype(str),
        }
    )


def _join(values) -> str:
    return ";".join(sorted(map(str, set(values))))


def _empty(key: str, key_dtype) -> pd.DataFrame:
    return pd.DataFrame(
        {
            key: pd.Series([], dtype=key_dtype),
            "reason_code": pd.Series([], dtype=object),
            "reason": pd.Series([], dtype=object),
            "evidence_count": pd.Series([], dtype=np.int64),
            "evidence_date": pd.Series([], dtype="datetime64[us]"),
            "evidence_ids": pd.Series([], dtype=object),
        }
    )


def reason_table(
    suggestions: pd.DataFrame, evidence: Evidence, key: str = "action_id", probability: str | None = None
) -> pd.DataFrame:
    """Every reason of every suggestion, one row each, sorted by ``key`` and then in
    :data:`REASON_CODES` order: ``key``, reason_code, reason (the text a field team reads),
    evidence_count, evidence_date and evidence_ids (rules: module docstring).

    ``suggestions`` has a unique row key column ``key``, ``hcp_id``, ``content_id`` and
    ``channel``; ``probability`` names its column of engagement probabilities, the only source
    of the ``model_estimate`` reason (None: no such reason). One call handles any number of
    rows; only the history of the HCPs and items the suggestions name is read.
    """
    _require(suggestions, (key, *SUGGESTION_COLUMNS) + ((probability,) if probability else ()), "suggestions")
    actions = suggestions
    if not actions[key].is_unique:
        raise ReasonsError(f"suggestions: column {key!r} is the row key and must be unique")
    if not len(actions):
        return _empty(key, actions[key].dtype)
    history = evidence.history
    # per-HCP reasons read only these HCPs' history, the peer reason only these items' engagements
    own = history[history["hcp_id"].isin(set(actions["hcp_id"]))]
    engaged_all = history[history["engaged"].astype(bool)]
    engaged = own[own["engaged"].astype(bool)]
    catalogue = evidence.catalogue.set_index("content_id")
    parts = []
    # series continuation
    series = catalogue["series_id"].reindex(actions["content_id"]).to_numpy(dtype=object)
    part = catalogue["series_part"].reindex(actions["content_id"]).to_numpy(dtype=object)
    in_series = pd.notna(series) & pd.notna(part)
    if in_series.any():
        item_part = catalogue[catalogue["series_id"].notna()][["series_id", "series_part"]].reset_index()
        done = engaged.merge(item_part, on="content_id")
        last = done.groupby(["hcp_id", "series_id", "series_part"])["exposed_at"].max()
        rows = actions[in_series].copy()
        rows["series_id"], rows["previous"] = series[in_series], part[in_series].astype(int) - 1
        index = pd.MultiIndex.from_arrays([rows["hcp_id"], rows["series_id"], rows["previous"]])
        rows["when"] = last.reindex(index).to_numpy()
        rows = rows[rows["previous"].ge(1) & rows["when"].notna()]
        if len(rows):
            prev_id = item_part.set_index(["series_id", "series_part"])["content_id"]
            ids = prev_id.reindex(pd.MultiIndex.from_arrays([rows["series_id"], rows["previous"]])).to_numpy()
            text = [
                f"part {p + 1} of series {s}; engaged with part {p} on {pd.Timestamp(w).date()}"
                for s, p, w in zip(rows["series_id"], rows["previous"], rows["when"])
            ]
            parts.append(_reason(rows, key, "series_continuation", text, np.ones(len(rows)), rows["when"], ids))
    # recent topic interest
    if len(evidence.topic_labels):
        since = evidence.as_of - pd.Timedelta(days=evidence.interest_window_days)
        recent = engaged[engaged["exposed_at"] >= since].copy()
        recent["topic"] = evidence.topic_of(recent["content_id"])
        rows = actions.copy()
        rows["topic"] = evidence.topic_of(rows["content_id"])
        hits = rows.merge(
            recent[["hcp_id", "topic", "content_id", "exposed_at"]].rename(columns={"content_id": "evidence"}),
            on=["hcp_id", "topic"],
        )
        hits = hits[hits["topic"] >= 0]
        if len(hits):
            summary = hits.groupby(key).agg(
                n=("evidence", "nunique"), when=("exposed_at", "max"), ids=("evidence", _join), topic=("topic", "first")
            )
            rows = actions.set_index(key).loc[summary.index].reset_index()
            text = [
                f"engaged with {n} item{'s' if n > 1 else ''} on topic '{evidence.topic_labels[t]}' in the last "
                f"{evidence.interest_window_days} days (last on {w.date()})"
                for n, t, w in zip(summary["n"], summary["topic"], summary["when"])
            ]
            parts.append(_reason(rows, key, "topic_interest", text, summary["n"], summary["when"], summary["ids"]))
    # peers who engaged with the item: the health system first, else the peer group
    people = evidence.hcps.set_index("hcp_id")
    peers_all = engaged_all[engaged_all["content_id"].isin(set(actions["content_id"]))]
    peers_all = peers_all[["hcp_id", "content_id", "exposed_at"]].rename(columns={"hcp_id": "peer"})
    with_peers: set = set()
    for level, label in (("health_system", "health system"), ("peer_group", "peer group")):
        rows = actions.copy()
        rows["unit"] = people[level].reindex(rows["hcp_id"]).to_numpy()
        peers = peers_all.copy()
        peers["unit"] = people[level].reindex(peers["peer"]).to_numpy()
        peers = peers[peers["unit"].notna()]
        hits = rows.merge(peers, on=["unit", "content_id"])
        hits = hits[hits["peer"] != hits["hcp_id"]]
        if not len(hits):
            continue
        summary = hits.groupby(key).agg(
            n=("peer", "nunique"), when=("exposed_at", "max"), ids=("peer", _join), unit=("unit", "first")
        )
        summary = summary[~summary.index.isin(with_peers)]
        if len(summary):
            with_peers |= set(summary.index)
            rows = actions.set_index(key).loc[summary.index].reset_index()
            text = [
                f"{n} peer{'s' if n > 1 else ''} in the same {label} ({u}) engaged with this item"
                for n, u in zip(summary["n"], summary["unit"])
            ]
            parts.append(_reason(rows, key, "peer_engagement", text, summary["n"], summary["when"], summary["ids"]))
    # channel preference: the suggested channel has the HCP's best engagement rate
    rates = (
        own.groupby(["hcp_id", "channel"])
        .agg(exposed=("engaged", "size"), engaged=("engaged", "sum"), when=("exposed_at", "max"))
        .reset_index()
    )
    rates = rates[rates["exposed"] >= 2]
    rates["rate"] = rates["engaged"] / rates["exposed"]
    best = rates.sort_values(["hcp_id", "rate", "exposed"], ascending=[True, False, False], kind="stable")
    best = best.drop_duplicates("hcp_id")
    best = best[best["engaged"] > 0]
    rows = actions.merge(best, on=["hcp_id", "channel"])
    if len(rows):
        text = [
            f"prefers {CHANNEL_LABELS[c].lower()}: engaged on {int(e)} of {int(x)} touches, the best rate of "
            f"the HCP's channels"
            for c, e, x in zip(rows["channel"], rows["engaged"], rows["exposed"])
        ]
        parts.append(_reason(rows, key, "channel_preference", text, rows["engaged"], rows["when"], rows["channel"]))
    # last touch outcome
    last = own.drop_duplicates("hcp_id", keep="last").set_index("hcp_id")
    rows = actions[actions["hcp_id"].isin(last.index)].copy()
    rows["last_channel"] = last["channel"].reindex(rows["hcp_id"]).to_numpy()
    rows["last_engaged"] = last["engaged"].reindex(rows["hcp_id"]).to_numpy(bool)
    rows["last_at"] = last["exposed_at"].reindex(rows["hcp_id"]).to_numpy()
    rows["last_item"] = last["content_id"].reindex(rows["hcp_id"]).to_numpy()
    same = (rows["last_channel"] == rows["channel"]) & rows["last_engaged"]
    other = (rows["last_channel"] != rows["channel"]) & ~rows["last_engaged"]
    rows = rows[same | other]
    if len(rows):
        text = [
            f"engaged with the last {CHANNEL_LABELS[c].lower()} on {pd.Timestamp(w).date()}"
            if e
            else f"last {CHANNEL_LABELS[c].lower()} on {pd.Timestamp(w).date()} not engaged; switching channel"
            for c, e, w in zip(rows["last_channel"], rows["last_engaged"], rows["last_at"])
        ]
        parts.append(_reason(rows, key, "last_touch", text, np.ones(len(rows)), rows["last_at"], rows["last_item"]))
    # the model's estimate, for every suggestion when a probability is given
    if probability is not None:
        text = [
            f"model estimates a {p:.0%} chance of engagement via {CHANNEL_LABELS[c].lower()}"
            for p, c in zip(actions[probability], actions["channel"])
        ]
        parts.append(
            _reason(
                actions,
                key,
                "model_estimate",
                text,
                np.zeros(len(actions)),
                np.full(len(actions), np.datetime64("NaT", "us")),
                np.full(len(actions), ""),
            )
        )
    if not parts:
        return _empty(key, actions[key].dtype)
    table = pd.concat(parts, ignore_index=True)
    table["order"] = pd.Index(REASON_CODES).get_indexer(table["reason_code"])
    return table.sort_values([key, "order"], kind="stable").drop(columns="order").reset_index(drop=True)


def reason_texts(table: pd.DataFrame, keys, key: str = "action_id") -> list[list[str]]:
    """The reason sentences of each of ``keys`` (in :data:`REASON_CODES` order) from a
    :func:`reason_table`; an empty list for a key without reasons."""
    texts = table.groupby(key, sort=False)["reason"].agg(list)
    return [list(texts.get(k, [])) for k in keys]
