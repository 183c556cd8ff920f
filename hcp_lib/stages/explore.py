"""Recommendation explorers (notebook 07_explorer): HCP, content and topic views, live and static.

Reads (nothing is written): ``world/`` (``hcp_master``, ``campaigns_with_content``,
``hcp_interaction_data``), ``cf/split.json`` (the cut-off the recommendations were made at),
``evaluation/recommendations.parquet`` (top-N per HCP and model) and, when present,
``evaluation/metrics.json`` (its ``best_baseline``) and ``topics/`` (``doc_topics``,
``topics``, ``topic_terms``).

Every view is an HTML string computed from the run's data by one function
(:func:`hcp_view_html`, :func:`content_view_html`, :func:`topic_view_html`), so the two modes
show the same thing:

- **live** (:func:`hcp_explorer`, :func:`content_explorer`, :func:`topic_explorer`): ipywidgets
  controls whose Python callbacks recompute the view (needs a kernel, e.g. JupyterLab);
- **static** (:func:`static_hcp_explorer`, …): one precomputed view per item of a sample, held
  in an ipywidgets 8 ``Stack`` whose ``selected_index`` is ``jslink``-ed to a ``Dropdown``'s
  ``index``; the link runs in the browser, so the published book stays interactive with no
  kernel. Its page grows with the sample (the whole Stack lives in the page's widget state).

The reasons shown beside each recommendation come from the project's one reasons engine,
:mod:`hcp_lib.reasons` — the one the week's plan (notebook 08) uses — applied to the exposures
before the cut-off (series continuation, recent topic interest, peers' engagement, channel
preference, last touch; the rules are in that module's docstring). The same (HCP, item,
channel) gets the same sentences here and in the plan, except the plan's ``model_estimate``,
which the explorers leave out (:func:`recommend`). Bad input (an unknown id, a filter leaving
nothing, an empty recommendation table) is reported inside the widget as a message, never as
a traceback.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config, io
from .. import reasons as reasons_engine
from ..config import RunDir
from ..domain import CHANNEL_LABELS, CHANNELS, SPECIALTIES
from ..split import TemporalSplit

RECOMMENDATION_COLUMNS = ("model", "hcp_id", "rank", "content_id", "channel", "score")
HCP_COLUMNS = (
    "hcp_id",
    "first_name",
    "last_name",
    "credential",
    "specialty",
    "state",
    "city",
    "region",
    "practice_setting",
    "years_in_practice",
    "age",
    "digital_affinity",
    "peer_group",
    "health_system",
    "opted_out",
)
CONTENT_COLUMNS = (
    "content_id",
    "title",
    "therapeutic_area",
    "content_type",
    "release_date",
    "approved_specialties",
    "series_id",
    "series_part",
)
INTERACTION_COLUMNS = ("hcp_id", "content_id", "channel", "exposed_at", "engaged")

#: CSS of every view; shown once per explorer (not once per precomputed view, to keep pages small)
STYLE = """<style>
.hcpx{font-size:13px;line-height:1.35} .hcpx h4{margin:.6em 0 .3em;font-size:14px}
.hcpx table{border-collapse:collapse;margin:.2em 0} .hcpx td,.hcpx th{border-bottom:1px solid #ddd;padding:2px 6px;
text-align:left;vertical-align:top} .hcpx .why{color:#444;font-size:12px;margin:0;padding-left:1.1em}
.hcpx .bar{display:inline-block;height:9px;background:#4c78a8} .hcpx .bar.eng{background:#f58518}
.hcpx-message{padding:6px 10px;border-left:4px solid #e45756;background:#fdf1f1}
</style>"""


class ExplorerError(ValueError):
    """An explorer input (id, model, channel, file) is unknown or unusable; the message says which."""


@dataclass
class ExplorerData:
    """Everything the explorers show, aligned and indexed once.

    ``hcps`` is indexed by ``hcp_id``, ``content`` by ``content_id``; ``history`` holds the
    exposures before ``cutoff`` and ``test_window`` those in ``[cutoff, test_end)``;
    ``doc_topics`` (content x topic shares), ``topics`` (index topic: label, n_documents) and
    ``topic_terms`` (topic, rank, term, weight) are ``None`` when the run has no topic model;
    ``interest_window_days`` is the window of the "recent topic interest" reason (the run's
    ``plan_interest_window_days``, so the explorer and the plan word a reason alike).
    """

    hcps: pd.DataFrame
    content: pd.DataFrame
    history: pd.DataFrame
    test_window: pd.DataFrame
    recommendations: pd.DataFrame
    cutoff: pd.Timestamp
    test_end: pd.Timestamp
    doc_topics: pd.DataFrame | None = None
    topics: pd.DataFrame | None = None
    topic_terms: pd.DataFrame | None = None
    default_model: str | None = None
    interest_window_days: int = config.default("plan_interest_window_days")
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def models(self) -> list[str]:
        """Models with recommendations, the default one first."""
        names = sorted(self.recommendations["model"].unique())
        if self.default_model in names:
            names.remove(self.default_model)
            names.insert(0, self.default_model)
        return names

    @property
    def depth(self) -> int:
        """The longest list the table holds for one HCP and model (0 for an empty table)."""
        return int(self.recommendations["rank"].max()) if len(self.recommendations) else 0

    def evidence(self) -> reasons_engine.Evidence:
        """What the reasons rest on (:func:`hcp_lib.reasons.make_evidence`): the exposures
        before the cut-off, the catalogue, the HCPs, each item's dominant LDA topic (from
        ``doc_topics``, as the plan does) and the topic labels; computed once."""
        if "evidence" not in self._cache:
            item_topic = labels = None
            if self.doc_topics is not None:
                item_topic = reasons_engine.dominant_topics(self.doc_topics, self.content["content_id"])
                labels = [str(self.topics["label"].get(t, f"topic {t}")) for t in self.doc_topics.columns]
            self._cache["evidence"] = reasons_engine.make_evidence(
                self.history, self.content, self.hcps, self.cutoff, self.interest_window_days, item_topic, labels
            )
        return self._cache["evidence"]


# --- loading --------------------------------------------------------------------------------------


def _require(table: pd.DataFrame, columns: Iterable[str], source: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ExplorerError(f"{source}: missing column {missing[0]!r}; the explorer needs {', '.join(columns)}")


def from_tables(
    hcps: pd.DataFrame,
    content: pd.DataFrame,
    interactions: pd.DataFrame,
    recommendations: pd.DataFrame,
    split: TemporalSplit,
    doc_topics: pd.DataFrame | None = None,
    topics: pd.DataFrame | None = None,
    topic_terms: pd.DataFrame | None = None,
    default_model: str | None = None,
    source: str = "tables",
) -> ExplorerData:
    """Check and index the tables (world contract columns; recommendation columns
    :data:`RECOMMENDATION_COLUMNS`, plus ``title``, ``therapeutic_area`` and
    ``true_engagement_prob`` when present). ``doc_topics`` has ``pmid`` (== content_id) and
    ``topic_<k>`` columns. Raises :class:`ExplorerError` naming the table and column."""
    _require(hcps, HCP_COLUMNS, f"{source}: hcp_master")
    _require(content, CONTENT_COLUMNS, f"{source}: campaigns_with_content")
    _require(interactions, INTERACTION_COLUMNS, f"{source}: hcp_interaction_data")
    _require(recommendations, RECOMMENDATION_COLUMNS, f"{source}: recommendations")
    hcps = hcps.assign(hcp_id=hcps["hcp_id"].astype(str)).set_index("hcp_id", drop=False).rename_axis(None)
    content = (
        content.assign(content_id=content["content_id"].astype(str))
        .set_index("content_id", drop=False)
        .rename_axis(None)
    )
    interactions = interactions.assign(
        hcp_id=interactions["hcp_id"].astype(str),
        content_id=interactions["content_id"].astype(str),
        engaged=interactions["engaged"].astype(bool),
    )
    interactions = interactions.sort_values("exposed_at", kind="stable")
    recommendations = recommendations.assign(
        model=recommendations["model"].astype(str),
        hcp_id=recommendations["hcp_id"].astype(str),
        content_id=recommendations["content_id"].astype(str),
        channel=recommendations["channel"].astype(str),
    )
    unknown = ~recommendations["channel"].isin(CHANNELS)
    if unknown.any():
        raise ExplorerError(
            f"{source}: recommendations column 'channel' has value "
            f"{recommendations['channel'][unknown].iloc[0]!r}; allowed: {', '.join(CHANNELS)}"
        )
    recommendations = recommendations.sort_values(["model", "hcp_id", "rank"], kind="stable").reset_index(drop=True)
    history = interactions[interactions["exposed_at"] < split.test_start].reset_index(drop=True)
    test_window = interactions[
        (interactions["exposed_at"] >= split.test_start) & (interactions["exposed_at"] < split.test_end)
    ].reset_index(drop=True)
    if doc_topics is not None:
        columns = [c for c in doc_topics.columns if c.startswith("topic_")]
        doc_topics = doc_topics.set_index(doc_topics["pmid"].astype(str))[columns]
        doc_topics.columns = [int(c.split("_", 1)[1]) for c in columns]
        if topics is None:
            topics = pd.DataFrame({"label": [f"topic {t}" for t in doc_topics.columns]}, index=doc_topics.columns)
        else:
            topics = topics.set_index("topic")
    return ExplorerData(
        hcps,
        content,
        history,
        test_window,
        recommendations,
        split.test_start,
        split.test_end,
        doc_topics,
        topics,
        topic_terms,
        default_model,
    )


def load(run_dir: str | Path) -> ExplorerData:
    """Read one run's tables for the explorers (files: module docstring).

    A missing required file raises :class:`ExplorerError` naming it and the notebook that
    writes it; the topic tables are optional (the topic views then say there is none).
    """
    run = RunDir(Path(run_dir))
    required = {
        "hcps": (run.world / "hcp_master.parquet", "02_synthesis"),
        "content": (run.world / "campaigns_with_content.parquet", "02_synthesis"),
        "interactions": (run.world / "hcp_interaction_data.parquet", "02_synthesis"),
        "split": (run.cf / "split.json", "04_collaborative_filtering"),
        "recommendations": (run.evaluation / "recommendations.parquet", "06_evaluation"),
    }
    for path, notebook in required.values():
        if not path.exists():
            raise ExplorerError(f"{path}: not found; run notebook {notebook} for this run folder first")
    tables = {name: io.read_parquet(path) for name, (path, _) in required.items() if path.suffix == ".parquet"}
    split = TemporalSplit.from_dict(io.read_json(required["split"][0]))
    optional = {name: run.topics / f"{name}.parquet" for name in ("doc_topics", "topics", "topic_terms")}
    optional = {name: io.read_parquet(path) if path.exists() else None for name, path in optional.items()}
    metrics_path = run.evaluation / "metrics.json"
    report = io.read_json(metrics_path) if metrics_path.exists() else {}
    listed = set(tables["recommendations"]["model"].astype(str))
    # the model the validation window chose (the one the plan uses), else the hybrid, else the best baseline
    preferred = [(report.get("selection") or {}).get("chosen"), "hybrid", report.get("best_baseline")]
    default = next((m for m in preferred if m in listed), None)
    data = from_tables(
        tables["hcps"],
        tables["content"],
        tables["interactions"],
        tables["recommendations"],
        split,
        default_model=default,
        source=str(run.root),
        **optional,
    )
    parameters = io.read_json(run.manifest).get("parameters", {}) if run.manifest.exists() else {}
    data.interest_window_days = int(parameters.get("plan_interest_window_days", data.interest_window_days))
    return data


def resolve_model(data: ExplorerData, model: str) -> str:
    """``"auto"`` -> the default model (the engagement model chosen on the validation window, else
    the hybrid model when the run has one, else notebook
    06's best baseline, else the first by name); otherwise ``model`` itself, which must be in
    the recommendation table (else :class:`ExplorerError` listing the models)."""
    if model == "auto":
        if not data.models:
            raise ExplorerError("The recommendation table is empty: notebook 06 wrote no recommendations.")
        return data.models[0]
    _check_model(data, model)
    return model


# --- queries ----------------------------------------------------------------------------------------


def hcp_name(row: pd.Series) -> str:
    return f"{row['first_name']} {row['last_name']}, {row['credential']}"


def specialty_label(key: str) -> str:
    return SPECIALTIES.get(key, (key,))[0]


def find_hcps(data: ExplorerData, query: str, limit: int = 50) -> pd.DataFrame:
    """HCPs matching ``query`` (case-insensitive): a part of the id, of the full name, of the
    specialty key or label, or the two-letter state. Every word of the query must match one
    of these; an empty query matches everyone. Returns at most ``limit`` rows (hcp_id, name,
    specialty, state), HCPs who can be contacted first (opted-out ones last), then by last
    name; ``attrs["n_matches"]`` counts every match."""
    hcps = data.hcps
    full = (hcps["first_name"].astype(str) + " " + hcps["last_name"].astype(str)).str.lower()
    specialty = hcps["specialty"].astype(str)
    labels = specialty.map(specialty_label).str.lower()
    keep = np.ones(len(hcps), dtype=bool)
    for word in query.lower().split():
        keep &= (
            hcps["hcp_id"].str.contains(word, regex=False)
            | full.str.contains(word, regex=False)
            | specialty.str.lower().str.contains(word, regex=False)
            | labels.str.contains(word, regex=False)
            | (hcps["state"].astype(str).str.lower() == word)
        ).to_numpy(bool)
    found = hcps[keep].sort_values(["opted_out", "last_name", "first_name", "hcp_id"])
    table = pd.DataFrame(
        {
            "hcp_id": found["hcp_id"].to_numpy(),
            "name": [hcp_name(r) for _, r in found.iterrows()] if len(found) else [],
            "specialty": found["specialty"].to_numpy(),
            "state": found["state"].to_numpy(),
        }
    ).head(limit)
    table.attrs["n_matches"] = int(keep.sum())
    return table


def _check_hcp(data: ExplorerData, hcp_id: str) -> pd.Series:
    hcp_id = str(hcp_id).strip()
    if hcp_id not in data.hcps.index:
        raise ExplorerError(f"No HCP with id {hcp_id!r} in this run ({len(data.hcps)} HCPs).")
    return data.hcps.loc[hcp_id]


def _check_model(data: ExplorerData, model: str) -> None:
    if not len(data.recommendations):
        raise ExplorerError("The recommendation table is empty: notebook 06 wrote no recommendations for this run.")
    if model not in data.models:
        raise ExplorerError(f"No recommendations from model {model!r}; models in this run: {', '.join(data.models)}.")


def recommend(
    data: ExplorerData,
    hcp_id: str,
    model: str,
    top_n: int = 10,
    channels: Sequence[str] | None = None,
    exclude_seen: bool = False,
) -> pd.DataFrame:
    """The HCP's top ``top_n`` recommendations of ``model`` from the recommendation table,
    keeping only items on ``channels`` (default: all) and, with ``exclude_seen``, items the
    HCP was not shown before the cut-off; filtered lists are re-ranked (``shown_rank``).

    Adds ``title``/``therapeutic_area`` from the catalogue where the table lacks them and a
    ``reasons`` column: per row, the sentences of :func:`hcp_lib.reasons.reason_table` for its
    (HCP, item, channel), in :data:`hcp_lib.reasons.REASON_CODES` order (one engine call for
    the whole list). They never include ``model_estimate``: the table's ``score`` is a
    probability for the engagement models only (the baselines' are counts, similarities or
    dot products), so no score is worded as a chance of engagement; the score has its own
    column in the view. An unknown HCP, model or channel raises :class:`ExplorerError`; a
    filter that leaves nothing returns an empty frame.
    """
    _check_hcp(data, hcp_id)
    _check_model(data, model)
    channels = list(CHANNELS if channels is None else channels)
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise ExplorerError(f"Unknown channel {bad[0]!r}; allowed: {', '.join(CHANNELS)}.")
    recs = data.recommendations
    rows = recs[(recs["model"] == model) & (recs["hcp_id"] == str(hcp_id))]
    rows = rows[rows["channel"].isin(channels)]
    if exclude_seen:
        seen = data.history.loc[data.history["hcp_id"] == str(hcp_id), "content_id"]
        rows = rows[~rows["content_id"].isin(set(seen))]
    rows = rows.head(int(top_n)).reset_index(drop=True)
    for column in ("title", "therapeutic_area"):
        if column not in rows.columns:
            rows[column] = rows["content_id"].map(data.content[column]).astype(str)
    rows.insert(0, "shown_rank", np.arange(1, len(rows) + 1))
    rows["reasons"] = _reason_lists(data, rows)
    return rows


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


def _reason_lists(data: ExplorerData, rows: pd.DataFrame) -> list[list[str]]:
    """The engine's sentences for each (hcp_id, content_id, channel) row of ``rows``; the
    triples not yet known are computed in one call of :func:`hcp_lib.reasons.reason_table`
    and kept (the reasons of a triple depend on neither the model nor the filters)."""
    known = data._cache.setdefault("reasons", {})
    triples = list(zip(rows["hcp_id"].astype(str), rows["content_id"].astype(str), rows["channel"].astype(str)))
    missing = list(dict.fromkeys(t for t in triples if t not in known))
    if missing:
        frame = pd.DataFrame(missing, columns=["hcp_id", "content_id", "channel"])
        frame.insert(0, "row", np.arange(len(frame)))
        table = reasons_engine.reason_table(frame, data.evidence(), key="row")
        known.update(zip(missing, reasons_engine.reason_texts(table, frame["row"], key="row")))
    return [list(known[t]) for t in triples]


def reasons(data: ExplorerData, hcp_id: str, content_id: str, channel: str) -> list[str]:
    """Why ``content_id`` on ``channel`` suits the HCP, from the data before the cut-off: the
    sentences of the project's reasons engine (:func:`hcp_lib.reasons.reason_table`, without
    ``model_estimate``), in :data:`hcp_lib.reasons.REASON_CODES` order; empty when no rule
    fires."""
    row = pd.DataFrame({"hcp_id": [str(hcp_id)], "content_id": [str(content_id)], "channel": [str(channel)]})
    return _reason_lists(data, row)[0]


def timeline(data: ExplorerData, hcp_id: str) -> pd.DataFrame:
    """Monthly exposures and engagements of the HCP over the whole log (history and test
    window), with ``window`` = train (before the cut-off) or test."""
    _check_hcp(data, hcp_id)
    rows = pd.concat([data.history.assign(window="before cut-off"), data.test_window.assign(window="test")])
    rows = rows[rows["hcp_id"] == str(hcp_id)]
    month = rows["exposed_at"].dt.to_period("M").astype(str)
    table = (
        rows.assign(month=month)
        .groupby(["month", "window"], as_index=False)
        .agg(exposures=("engaged", "size"), engagements=("engaged", "sum"))
    )
    return table.astype({"engagements": int})


def next_actions(data: ExplorerData, hcp_id: str) -> pd.DataFrame:
    """What the HCP did in the test window: every touch with title, channel and ``engaged``."""
    _check_hcp(data, hcp_id)
    rows = data.test_window[data.test_window["hcp_id"] == str(hcp_id)]
    return pd.DataFrame(
        {
            "exposed_at": rows["exposed_at"].to_numpy(),
            "content_id": rows["content_id"].to_numpy(),
            "title": rows["content_id"].map(data.content["title"]).astype(str).to_numpy(),
            "channel": rows["channel"].to_numpy(),
            "engaged": rows["engaged"].to_numpy(bool),
        }
    )


def content_summary(data: ExplorerData, content_id: str, model: str | None = None) -> dict:
    """One content item: its catalogue row, topics (share >= 5%), engagement before the
    cut-off by specialty, by region and by channel (exposures, engagements, rate), and how
    often ``model`` recommends it per specialty and channel."""
    content_id = str(content_id).strip()
    if content_id not in data.content.index:
        raise ExplorerError(f"No content item with id {content_id!r} in this run ({len(data.content)} items).")
    rows = data.history[data.history["content_id"] == content_id]
    rows = rows.assign(
        specialty=rows["hcp_id"].map(data.hcps["specialty"]).to_numpy(),
        region=rows["hcp_id"].map(data.hcps["region"]).to_numpy(),
    )

    def rates(by: str) -> pd.DataFrame:
        table = rows.groupby(by, as_index=False).agg(exposures=("engaged", "size"), engagements=("engaged", "sum"))
        table["rate"] = table["engagements"] / table["exposures"]
        return table.sort_values(["rate", "exposures"], ascending=False).reset_index(drop=True)

    topics = None
    if data.doc_topics is not None and content_id in data.doc_topics.index:
        shares = data.doc_topics.loc[content_id]
        shares = shares[shares >= 0.05].sort_values(ascending=False)
        topics = pd.DataFrame(
            {
                "topic": shares.index,
                "label": data.topics.loc[shares.index, "label"].to_numpy(),
                "share": shares.to_numpy(),
            }
        )
    recommended = pd.DataFrame(columns=["specialty", "channel", "hcps"])
    if model is not None and len(data.recommendations):
        recs = data.recommendations
        recs = recs[(recs["model"] == model) & (recs["content_id"] == content_id)]
        recommended = (
            recs.assign(specialty=recs["hcp_id"].map(data.hcps["specialty"]).to_numpy())
            .groupby(["specialty", "channel"], as_index=False)
            .size()
            .rename(columns={"size": "hcps"})
            .sort_values("hcps", ascending=False)
            .reset_index(drop=True)
        )
    return {
        "item": data.content.loc[content_id],
        "topics": topics,
        "by_specialty": rates("specialty"),
        "by_region": rates("region"),
        "by_channel": rates("channel"),
        "recommended": recommended,
        "exposures": len(rows),
        "engagements": int(rows["engaged"].sum()),
        "hcps_engaged": int(rows.loc[rows["engaged"], "hcp_id"].nunique()),
    }


def topic_summary(data: ExplorerData, topic: int, n_terms: int = 15, n_documents: int = 8) -> dict:
    """One topic: label, its top terms with weights, and the documents where it has the
    largest share (with title and area)."""
    if data.doc_topics is None:
        raise ExplorerError("This run has no topic model (notebook 03 did not run).")
    if topic not in data.doc_topics.columns:
        raise ExplorerError(f"No topic {topic!r}; topics are 0 to {data.doc_topics.columns.max()}.")
    terms = None
    if data.topic_terms is not None:
        terms = data.topic_terms[data.topic_terms["topic"] == topic].sort_values("rank").head(n_terms)
    best = data.doc_topics[topic].sort_values(ascending=False).head(n_documents)
    documents = pd.DataFrame(
        {
            "content_id": best.index,
            "share": best.to_numpy(),
            "title": best.index.map(data.content["title"]).astype(str),
            "therapeutic_area": best.index.map(data.content["therapeutic_area"]).astype(str),
        }
    )
    return {
        "label": data.topics.at[topic, "label"],
        "terms": terms,
        "documents": documents,
        "n_documents": int((data.doc_topics.idxmax(axis=1) == topic).sum()),
    }


# --- HTML views ---------------------------------------------------------------------------------


def message_html(text: str) -> str:
    """A message box shown in place of a view (bad input, nothing to show)."""
    return f'<div class="hcpx hcpx-message">{html.escape(text, quote=False)}</div>'


def _table(frame: pd.DataFrame, css_class: str = "", formats: dict | None = None) -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(formats.get(c, str)(v))}</td>" for c, v in row.items()) + "</tr>"
        for _, row in frame.iterrows()
    )
    return f'<table class="{css_class}"><tr>{head}</tr>{body}</table>'


def _timeline_html(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>No touches recorded.</p>"
    top = max(int(table["exposures"].max()), 1)
    rows = "".join(
        f"<tr><td>{m}</td><td>{w}</td><td>{e}/{x}</td><td><span class='bar' style='width:{60 * x / top:.0f}px'></span>"
        f"<span class='bar eng' style='width:{60 * e / top:.0f}px'></span></td></tr>"
        for m, w, x, e in table[["month", "window", "exposures", "engagements"]].itertuples(index=False)
    )
    return (
        "<table><tr><th>month</th><th>window</th><th>engaged/touches</th><th>touches (blue), engaged (orange)"
        f"</th></tr>{rows}</table>"
    )


def hcp_view_html(
    data: ExplorerData,
    hcp_id: str,
    model: str | None = None,
    top_n: int = 10,
    channels: Sequence[str] | None = None,
    exclude_seen: bool = False,
) -> str:
    """The HCP explorer's view: profile, engagement timeline, top-N with channel, score and
    reasons, and what the HCP did in the test window. Bad input gives a message, no error."""
    try:
        hcp = _check_hcp(data, hcp_id)
        model = model or (data.models[0] if data.models else "")
        recs = recommend(data, hcp["hcp_id"], model, top_n, channels, exclude_seen)
    except ExplorerError as error:
        return message_html(str(error))
    profile = (
        f"<b>{html.escape(hcp_name(hcp))}</b> · synthetic id {hcp['hcp_id']}"
        f" · {html.escape(specialty_label(hcp['specialty']))}"
        f" · {html.escape(str(hcp['city']))}, {hcp['state']} ({hcp['region']}) · {hcp['practice_setting']} practice,"
        f" {hcp['years_in_practice']} years · age {hcp['age']} · digital affinity {hcp['digital_affinity']:.2f}"
        f" · peer group {hcp['peer_group']} · {html.escape(str(hcp['health_system']))}"
        + (" · <b>opted out of promotional contact</b>" if hcp["opted_out"] else "")
    )
    if recs.empty:
        listing = message_html(
            f"No recommendation of {model} for this HCP passes the filters (channels: "
            f"{', '.join(channels or CHANNELS)}; exclude seen: {exclude_seen})."
        )
    else:
        items = "".join(
            f"<tr><td>{r.shown_rank}</td><td>{html.escape(r.title)}<br><small>{r.content_id} · {r.therapeutic_area}"
            f"</small><ul class='why'>{''.join(f'<li>{html.escape(t)}</li>' for t in r.reasons)}</ul></td>"
            f"<td>{CHANNEL_LABELS[r.channel]}</td><td>{r.score:.3g}</td>"
            + (f"<td>{r.true_engagement_prob:.2f}</td>" if "true_engagement_prob" in recs.columns else "")
            + "</tr>"
            for r in recs.itertuples(index=False)
        )
        truth = "<th>true P(engage)</th>" if "true_engagement_prob" in recs.columns else ""
        listing = (
            f"<table class='hcp-recommendations' data-hcp='{hcp['hcp_id']}'><tr><th>#</th><th>content and why"
            f"</th><th>channel</th><th>score</th>{truth}</tr>{items}</table>"
        )
    actions = next_actions(data, hcp["hcp_id"])
    if actions.empty:
        after = "<p>No touches in the test window.</p>"
    else:
        listed = set(recs["content_id"])
        after = (
            f"<p>{len(actions)} touches, {int(actions['engaged'].sum())} engaged; "
            f"{int(actions.loc[actions['engaged'], 'content_id'].isin(listed).sum())} of the engaged items are in"
            " the list above.</p>"
            + _table(
                actions.assign(in_list=actions["content_id"].isin(listed).map({True: "yes", False: ""}))[
                    ["exposed_at", "title", "channel", "engaged", "in_list"]
                ],
                formats={"exposed_at": lambda v: f"{v:%Y-%m-%d}", "engaged": lambda v: "yes" if v else "no"},
            )
        )
    return (
        f"<div class='hcpx'><p>{profile}</p>"
        f"<h4>Recommended next ({html.escape(model)}, made at {data.cutoff:%Y-%m-%d})</h4>{listing}"
        f"<h4>What the HCP did next (test window {data.cutoff:%Y-%m-%d} to {data.test_end:%Y-%m-%d})</h4>{after}"
        f"<h4>Engagement timeline</h4>{_timeline_html(timeline(data, hcp['hcp_id']))}</div>"
    )


def content_view_html(data: ExplorerData, content_id: str, model: str | None = None) -> str:
    """The content explorer's view: the item, its topics, the segments (specialty, region)
    and channels it engaged best before the cut-off, and who the model recommends it to."""
    try:
        summary = content_summary(data, content_id, model or (data.models[0] if data.models else None))
    except ExplorerError as error:
        return message_html(str(error))
    item = summary["item"]
    rate = {"rate": lambda v: f"{v:.0%}"}
    series = "" if pd.isna(item["series_id"]) else f" · series {item['series_id']} part {int(item['series_part'])}"
    parts = [
        f"<div class='hcpx'><p><b>{html.escape(str(item['title']))}</b><br>{item['content_id']} · "
        f"{item['therapeutic_area']} · {item['content_type']} · released {item['release_date']:%Y-%m-%d}{series}"
        f"<br>approved for: {html.escape(str(item['approved_specialties']))}</p>",
        f"<p>Engagement before the cut-off: {summary['engagements']} of {summary['exposures']} touches "
        f"({_pct(summary['engagements'], summary['exposures'])}), {summary['hcps_engaged']} distinct HCPs.</p>",
    ]
    if summary["topics"] is not None:
        parts.append("<h4>Topics</h4>" + _table(summary["topics"], formats={"share": lambda v: f"{v:.0%}"}))
    for key, title in (("by_specialty", "By specialty"), ("by_region", "By region"), ("by_channel", "By channel")):
        parts.append(
            f"<h4>{title}</h4>"
            + (
                _table(summary[key], formats=rate)
                if len(summary[key])
                else "<p>Not shown to anyone before the cut-off.</p>"
            )
        )
    recommended = summary["recommended"]
    parts.append(
        "<h4>Recommended to (by the explorer's model)</h4>"
        + (_table(recommended) if len(recommended) else "<p>No HCP's list holds it.</p>")
        + "</div>"
    )
    return "".join(parts)


def topic_view_html(data: ExplorerData, topic: int) -> str:
    """The topic explorer's view: label, top terms with weights, best documents."""
    try:
        summary = topic_summary(data, topic)
    except ExplorerError as error:
        return message_html(str(error))
    terms = (
        ""
        if summary["terms"] is None
        else "<h4>Top terms</h4>"
        + _table(summary["terms"][["rank", "term", "weight"]], formats={"weight": lambda v: f"{v:.3f}"})
    )
    return (
        f"<div class='hcpx'><p><b>Topic {topic}: {html.escape(str(summary['label']))}</b> · dominant topic of "
        f"{summary['n_documents']} documents</p>{terms}<h4>Best documents</h4>"
        + _table(summary["documents"], formats={"share": lambda v: f"{v:.0%}"})
        + "</div>"
    )


# --- widgets ----------------------------------------------------------------------------------


def _hcp_label(data: ExplorerData, hcp_id: str) -> str:
    row = data.hcps.loc[hcp_id]
    opted_out = " · opted out" if row["opted_out"] else ""
    return (
        f"{row['last_name']}, {row['first_name']} · {specialty_label(row['specialty'])} · {row['state']} · {hcp_id}"
        + opted_out
    )


def hcp_explorer(data: ExplorerData, hcp_id: str | None = None):
    """Live HCP explorer: search (id, name, specialty, state), model, top-N, allowed
    channels and exclude-seen controls; every change recomputes the view in Python."""
    import ipywidgets as w

    search = w.Text(placeholder="id, name, specialty or state", description="Find HCP")
    matches = w.Dropdown(description="HCP", layout=w.Layout(width="60%"))
    model = w.Dropdown(options=data.models, description="Model")
    top_n = w.IntSlider(value=min(10, max(data.depth, 1)), min=1, max=max(data.depth, 1), description="Top N")
    channel_boxes = [
        w.Checkbox(value=True, description=CHANNEL_LABELS[c], indent=False, layout=w.Layout(width="auto"))
        for c in CHANNELS
    ]
    exclude_seen = w.Checkbox(value=False, description="Exclude content already shown to the HCP", indent=False)
    view = w.HTML()
    shown = w.HTML()

    def refresh(_=None):
        chosen = [c for c, box in zip(CHANNELS, channel_boxes) if box.value]
        if matches.value is None:
            view.value = message_html(f"No HCP matches {search.value!r}.") if search.value.strip() else ""
            return
        view.value = hcp_view_html(data, matches.value, model.value, top_n.value, chosen, exclude_seen.value)

    def on_search(_=None):
        found = find_hcps(data, search.value)
        matches.options = [(_hcp_label(data, h), h) for h in found["hcp_id"]]
        n = found.attrs["n_matches"]
        shown.value = (
            f"<span class='hint'>{len(found)} of {n:,} matching HCPs listed (of {len(data.hcps):,} in the run)"
            + ("; type to narrow the list" if n > len(found) else "")
            + "</span>"
        )
        matches.value = matches.options[0][1] if matches.options else None
        refresh()

    search.observe(on_search, names="value")
    for control in (matches, model, top_n, exclude_seen, *channel_boxes):
        control.observe(refresh, names="value")
    on_search()
    if hcp_id is not None:
        search.value = str(hcp_id)
    return w.VBox(
        [
            w.HTML(STYLE + "<h3>HCP explorer</h3>"),
            w.HBox([search, matches]),
            shown,
            w.HBox([model, top_n]),
            w.HBox([w.Label("Channels:"), *channel_boxes]),
            exclude_seen,
            view,
        ]
    )


def content_explorer(data: ExplorerData, content_id: str | None = None):
    """Live content explorer: search by id or title words, and the model whose lists are shown."""
    import ipywidgets as w

    search = w.Text(placeholder="id or words of the title", description="Find item")
    items = w.Dropdown(description="Item", layout=w.Layout(width="70%"))
    model = w.Dropdown(options=data.models, description="Model")
    view = w.HTML()
    titles = data.content["title"].astype(str)

    def refresh(_=None):
        if items.value is None:
            view.value = message_html(f"No content item matches {search.value!r}.")
        else:
            view.value = content_view_html(data, items.value, model.value)

    def on_search(_=None):
        keep = np.ones(len(titles), dtype=bool)
        for word in search.value.lower().split():
            keep &= (
                titles.str.lower().str.contains(word, regex=False)
                | data.content["content_id"].str.contains(word, regex=False)
            ).to_numpy(bool)
        found = data.content[keep].head(200)
        items.options = [(f"{t[:90]} · {c}", c) for c, t in zip(found["content_id"], found["title"].astype(str))]
        items.value = items.options[0][1] if items.options else None
        refresh()

    search.observe(on_search, names="value")
    items.observe(refresh, names="value")
    model.observe(refresh, names="value")
    on_search()
    if content_id is not None:
        search.value = str(content_id)
    return w.VBox([w.HTML(STYLE), w.HBox([search, items]), model, view])


def topic_explorer(data: ExplorerData):
    """Live topic explorer: pick a topic, see its terms and best documents."""
    import ipywidgets as w

    if data.doc_topics is None:
        return w.HTML(message_html("This run has no topic model (notebook 03 did not run)."))
    picker = w.Dropdown(
        options=[(f"{t}: {data.topics.at[t, 'label']}", t) for t in data.doc_topics.columns],
        description="Topic",
        layout=w.Layout(width="60%"),
    )
    view = w.HTML(topic_view_html(data, picker.value))
    picker.observe(lambda _: setattr(view, "value", topic_view_html(data, picker.value)), names="value")
    return w.VBox([w.HTML(STYLE + "<h3>Content explorer</h3>"), picker, view])


def _static(labels: Sequence[str], views: Sequence[str], description: str, note: str):
    """A Dropdown whose ``index`` is jslink-ed to a Stack of precomputed HTML views: the
    browser switches views with no kernel. An empty sample gives a message instead."""
    import ipywidgets as w

    if not views:
        return w.HTML(message_html(note))
    picker = w.Dropdown(options=list(labels), index=0, description=description, layout=w.Layout(width="90%"))
    stack = w.Stack([w.HTML(v) for v in views], selected_index=0)
    w.jslink((picker, "index"), (stack, "selected_index"))
    return w.VBox([w.HTML(STYLE + "<h3>Topic explorer</h3>"), picker, stack])


def sample_hcps(data: ExplorerData, n: int, seed: int, model: str | None = None) -> list[str]:
    """``n`` HCPs with recommendations from ``model`` (default: the first model), drawn with
    ``seed``: half (rounded up) among those who engaged in the test window, so the "what it
    did next" panel has something to show, the rest among the others; sorted by label."""
    model = model or (data.models[0] if data.models else None)
    if model is None or n <= 0:
        return []
    listed = pd.Index(data.recommendations.loc[data.recommendations["model"] == model, "hcp_id"].unique())
    engaged = set(data.test_window.loc[data.test_window["engaged"], "hcp_id"])
    active = np.array(sorted(h for h in listed if h in engaged), dtype=object)
    others = np.array(sorted(h for h in listed if h not in engaged), dtype=object)
    rng = np.random.default_rng(seed)
    take_active = min(len(active), max(n - len(others), (n + 1) // 2))
    chosen = list(rng.permutation(active)[:take_active]) + list(rng.permutation(others)[: n - take_active])
    return sorted(chosen, key=lambda h: _hcp_label(data, h))


def static_hcp_explorer(data: ExplorerData, hcp_ids: Sequence[str], model: str | None = None, top_n: int = 10):
    """HCP explorer for pages without a kernel: one precomputed view per HCP of ``hcp_ids``
    (the reasons of all their lists come from one call of the reasons engine)."""
    shown = model or (data.models[0] if data.models else None)
    if shown in data.models and len(hcp_ids):
        recs = data.recommendations
        lists = recs[(recs["model"] == shown) & recs["hcp_id"].isin(set(map(str, hcp_ids)))]
        _reason_lists(data, lists.groupby("hcp_id", sort=False).head(int(top_n)))
    return _static(
        [_hcp_label(data, h) for h in hcp_ids],
        [hcp_view_html(data, h, model, top_n) for h in hcp_ids],
        "HCP",
        "No HCP to show: the recommendation table is empty or the sample is empty.",
    )


def static_content_explorer(data: ExplorerData, content_ids: Sequence[str], model: str | None = None):
    """Content explorer for pages without a kernel: one precomputed view per item."""
    labels = [f"{str(data.content.at[c, 'title'])[:90]} · {c}" for c in content_ids]
    return _static(labels, [content_view_html(data, c, model) for c in content_ids], "Item", "No content item to show.")


def static_topic_explorer(data: ExplorerData):
    """Topic explorer for pages without a kernel: every topic's view."""
    if data.doc_topics is None:
        return _static([], [], "Topic", "This run has no topic model (notebook 03 did not run).")
    topics = list(data.doc_topics.columns)
    return _static(
        [f"{t}: {data.topics.at[t, 'label']}" for t in topics],
        [topic_view_html(data, t) for t in topics],
        "Topic",
        "No topic to show.",
    )


def most_recommended(data: ExplorerData, n: int, model: str | None = None) -> list[str]:
    """The ``n`` content items ``model`` recommends to the most HCPs (ties by id)."""
    model = model or (data.models[0] if data.models else None)
    if model is None:
        return []
    counts = data.recommendations.loc[data.recommendations["model"] == model, "content_id"].value_counts()
    counts = (
        counts.rename_axis("content_id").reset_index(name="n").sort_values(["n", "content_id"], ascending=[False, True])
    )
    return list(counts["content_id"].head(n))
