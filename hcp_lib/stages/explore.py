"""Recommendation explorers (notebook 08_explorer): HCP, content and topic views, live and static.

Reads (nothing is written): ``world/`` (``hcp_master``, ``campaigns_with_content``,
``hcp_interaction_data``), ``cf/split.json`` (the cut-off the recommendations were made at),
``evaluation/recommendations.parquet`` (top-N per HCP and model), ``evaluation/metrics.json``
(the model the validation window chose), ``evaluation/plan_candidates/<model>.parquet`` (the
actions deliverable this week), the week's plan of notebook 07 (``plan/plan.parquet``,
``plan/unplanned.parquet``) and ``topics/`` (``doc_topics``, ``topics``, ``topic_terms``); the
plan and topic files are optional.

Each HCP's view tells one channel story (:func:`channel_story`): the model's best action with no
constraint, the best action through a channel open to the HCP this week (the plan's candidates:
:func:`week_options`, :func:`week_for_items`), and what the week's plan does
(:func:`planned_actions`) or why it gives the HCP nothing (:func:`unplanned_reason`); then the
ranked list with reasons, what the HCP did in the test window, and every touch on a date axis.

Two modes show the same computations:

- **live** (:func:`hcp_explorer`, :func:`content_explorer`, :func:`topic_explorer`): ipywidgets
  controls whose Python callbacks recompute the HTML view (:func:`hcp_view_html`, …; needs a
  kernel, e.g. JupyterLab);
- **static**, for the published book: the HCP explorer (:func:`static_hcp_browser`) embeds the
  data of every HCP (:func:`browser_bundle`, compressed) and a short script
  (``hcp_explorer.js``) that searches, filters and draws the chosen HCP's view in the browser;
  the content and topic explorers (:func:`static_content_explorer`, :func:`static_topic_explorer`)
  hold one precomputed view per item in an ipywidgets 8 ``Stack`` whose ``selected_index`` is
  ``jslink``-ed to a ``Dropdown``'s ``index``. No kernel and no network are needed.

The reasons shown beside each recommendation come from the project's one reasons engine,
:mod:`hcp_lib.reasons` — the one the week's plan (notebook 07) uses — applied to the exposures
before the cut-off (series continuation, recent topic interest, peers' engagement, channel
preference, last touch; the rules are in that module's docstring). The same (HCP, item,
channel) gets the same sentences here and in the plan, except the plan's ``model_estimate``,
which the explorers leave out (:func:`recommend`): the probability has its own column. Bad
input (an unknown id, a filter leaving nothing, an empty recommendation table) is reported
inside the widget as a message, never as a traceback.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config, io, metrics
from .. import reasons as reasons_engine
from ..config import RunDir
from ..domain import (
    CHANNEL_LABELS,
    CHANNELS,
    HYBRID_ABLATIONS,
    HYBRID_NAME,
    ORACLE_NAME,
    SPECIALTIES,
    TABULAR_NAME,
    V01_NAME,
    ablation_name,
)
from ..progress import each
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
#: what the explorer reads of the week's plan (``plan/plan.parquet``, notebook 07)
PLAN_ACTION_COLUMNS = (
    "hcp_id",
    "content_id",
    "channel",
    "suggested_date",
    "time_window",
    "priority_score",
    "reasons",
    "model",
)
UNPLANNED_COLUMNS = ("hcp_id", "reason_code", "reason")
CANDIDATE_COLUMNS = ("hcp_id", "content_id", "channel", "probability")
#: models whose scores are engagement probabilities (the others' are counts, similarities or dot products)
PROBABILITY_MODELS = frozenset(
    {ORACLE_NAME, V01_NAME, HYBRID_NAME, TABULAR_NAME, *(ablation_name(a) for a in HYBRID_ABLATIONS)}
)
#: the plan's "why not planned" codes in the reader's words (the plan's own text lists every full constraint)
UNPLANNED_WORDS = {
    "opted_out": "opted out of promotional contact",
    "no_channel_allowed": "the plan's per-HCP caps allow no action this week",
    "no_approved_content": "no released item is approved for the HCP's specialty",
    "all_received": "every approved item was engaged with before or sent recently",
    "no_active_campaign": "no campaign runs this week for the items not yet sent",
    "capacity_exhausted": "every action open to this HCP was taken by HCPs with a higher expected engagement "
    "(the week's capacity is used up)",
    "not_selected": "not selected by the solver within its time limit",
}

#: CSS of every view; shown once per explorer (not once per precomputed view, to keep pages small)
STYLE = """<style>
.hcpx{font-size:13px;line-height:1.35} .hcpx h4{margin:.6em 0 .3em;font-size:14px}
.hcpx table{border-collapse:collapse;margin:.2em 0} .hcpx td,.hcpx th{border-bottom:1px solid #ddd;padding:2px 6px;
text-align:left;vertical-align:top} .hcpx .why{color:#444;font-size:12px;margin:0;padding-left:1.1em}
.hcpx .bar{display:inline-block;height:9px;background:#4c78a8} .hcpx .bar.eng{background:#f58518}
.hcpx-message{padding:6px 10px;border-left:4px solid #e45756;background:#fdf1f1}
.hcpx .story{margin:.2em 0 .4em;padding-left:1.1em} .hcp-browser .controls label{margin-right:1em}
.hcp-browser .f-hcp{width:100%;max-width:760px;font-size:13px} .hcpx td.off{color:#888} .hcp-browser .hint{color:#555;margin:.3em 0}
</style>"""


#: the script of the book's static HCP explorer (:func:`static_hcp_browser`); plain JavaScript
#: with no library: it unpacks the embedded data, filters the HCPs and draws the chosen one's view
BROWSER_JS = (Path(__file__).with_name("hcp_explorer.js")).read_text(encoding="utf-8")


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

    The week's plan (notebook 07) starts at the cut-off: ``plan_actions`` holds its actions
    (:data:`PLAN_ACTION_COLUMNS`), ``unplanned`` the HCPs it gave nothing, with why
    (``hcp_id``, ``reason_code``, ``reason``), and ``week_candidates`` maps a model name to its
    plan candidates (``hcp_id``, ``content_id``, ``channel``, ``probability``: the actions
    deliverable this week, the best few per HCP and channel); each is empty when the run has
    no plan.
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
    plan_actions: pd.DataFrame | None = None
    unplanned: pd.DataFrame | None = None
    week_candidates: dict[str, pd.DataFrame] = field(default_factory=dict)
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
    plan_actions: pd.DataFrame | None = None,
    unplanned: pd.DataFrame | None = None,
    week_candidates: dict[str, pd.DataFrame] | None = None,
) -> ExplorerData:
    """Check and index the tables (world contract columns; recommendation columns
    :data:`RECOMMENDATION_COLUMNS`, plus ``title``, ``therapeutic_area`` and
    ``true_engagement_prob`` when present). ``doc_topics`` has ``pmid`` (== content_id) and
    ``topic_<k>`` columns. The week's plan is optional: ``plan_actions``
    (:data:`PLAN_ACTION_COLUMNS`), ``unplanned`` (:data:`UNPLANNED_COLUMNS`) and
    ``week_candidates`` (model name -> :data:`CANDIDATE_COLUMNS`). Raises
    :class:`ExplorerError` naming the table and column."""
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
    plan_actions = _plan_table(plan_actions, PLAN_ACTION_COLUMNS, f"{source}: plan")
    unplanned = _plan_table(unplanned, UNPLANNED_COLUMNS, f"{source}: unplanned")
    week = {
        str(name): _plan_table(frame, CANDIDATE_COLUMNS, f"{source}: plan candidates of {name}").sort_values(
            ["hcp_id", "probability"], ascending=[True, False], kind="stable"
        )
        for name, frame in (week_candidates or {}).items()
    }
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
        plan_actions=plan_actions,
        unplanned=unplanned,
        week_candidates=week,
    )


def _plan_table(frame: pd.DataFrame | None, columns: Sequence[str], source: str) -> pd.DataFrame:
    """``frame`` (or an empty table) with ``columns``, ids as strings; a missing column is named."""
    if frame is None:
        return pd.DataFrame(
            {c: pd.Series(dtype=float if c in ("probability", "priority_score") else str) for c in columns}
        )
    _require(frame, columns, source)
    ids = {c: frame[c].astype(str) for c in ("hcp_id", "content_id", "channel") if c in columns}
    return frame.loc[:, list(columns)].assign(**ids).reset_index(drop=True)


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
    plan_files = {name: run.plan / f"{name}.parquet" for name in ("plan", "unplanned")}
    plan_tables = {name: io.read_parquet(path) if path.exists() else None for name, path in plan_files.items()}
    week = {
        model: io.read_parquet(path)
        for model in [default]
        if model is not None and (path := run.evaluation / "plan_candidates" / f"{model}.parquet").exists()
    }
    data = from_tables(
        tables["hcps"],
        tables["content"],
        tables["interactions"],
        tables["recommendations"],
        split,
        default_model=default,
        source=str(run.root),
        plan_actions=plan_tables["plan"],
        unplanned=plan_tables["unplanned"],
        week_candidates=week,
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


def _of_hcp(data: ExplorerData, name: str, frame: pd.DataFrame, hcp_id: str) -> pd.DataFrame:
    """The rows of ``frame`` (a table of ``data`` called ``name``) for one HCP, in table order;
    the row positions of every HCP are found once per table, so that a view (or the book's
    explorer, which asks for every HCP) does not scan the whole table each time."""
    index = data._cache.setdefault("of_hcp", {})
    if name not in index:
        index[name] = frame.groupby("hcp_id", sort=False).indices
    return frame.iloc[index[name].get(str(hcp_id), [])]


def _model_lists(data: ExplorerData, model: str) -> pd.DataFrame:
    """``model``'s rows of the recommendation table (found once per model)."""
    models = data._cache.setdefault("by_model", {})
    if model not in models:
        models[model] = data.recommendations[data.recommendations["model"] == model]
    return models[model]


def _list_of(data: ExplorerData, model: str, hcp_id: str) -> pd.DataFrame:
    """``model``'s recommendation rows for one HCP, by rank."""
    return _of_hcp(data, f"recommendations:{model}", _model_lists(data, model), hcp_id)


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
    rows = _list_of(data, model, str(hcp_id).strip())
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
    week = week_for_items(data, model, rows)
    if week is not None:
        rows["week_channel"], rows["week_probability"] = week
    return rows


def week_for_items(data: ExplorerData, model: str, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """For each (hcp_id, content_id) of ``rows``: the best channel the week's plan could send
    the item by (among ``model``'s plan candidates, so among the channels open this week) and
    its probability; ``None`` and NaN where the item is not one of the plan's options this
    week (no campaign on an open channel, sent recently, or outranked by the HCP's other
    items on every channel). Returns None when the run has no candidates of ``model``."""
    frame = data.week_candidates.get(model)
    if frame is None:
        return None
    cache = data._cache.setdefault("week_items", {})
    if model not in cache:  # the candidates are sorted best first within each HCP
        best = frame.drop_duplicates(["hcp_id", "content_id"])
        cache[model] = best.set_index(["hcp_id", "content_id"])[["channel", "probability"]]
    keys = pd.MultiIndex.from_arrays([rows["hcp_id"].astype(str), rows["content_id"].astype(str)])
    found = cache[model].reindex(keys)
    channel = found["channel"].astype(object).to_numpy()
    channel = np.where(pd.isna(channel), None, channel)
    return channel, found["probability"].to_numpy(float)


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
    """Every touch of the HCP over the whole log, oldest first: ``exposed_at``, ``content_id``,
    ``title``, ``channel``, ``engaged`` and ``window`` ("before cut-off" or "test")."""
    _check_hcp(data, hcp_id)
    rows = pd.concat(
        [
            _of_hcp(data, "history", data.history, hcp_id).assign(window="before cut-off"),
            _of_hcp(data, "test_window", data.test_window, hcp_id).assign(window="test"),
        ]
    )
    return pd.DataFrame(
        {
            "exposed_at": rows["exposed_at"].to_numpy(),
            "content_id": rows["content_id"].to_numpy(),
            "title": rows["content_id"].map(data.content["title"]).astype(str).to_numpy(),
            "channel": rows["channel"].to_numpy(),
            "engaged": rows["engaged"].to_numpy(bool),
            "window": rows["window"].to_numpy(),
        }
    )


def log_start(data: ExplorerData) -> pd.Timestamp:
    """The first day of the exposure log (the left end of every timeline)."""
    first = data.history["exposed_at"].min() if len(data.history) else data.cutoff
    return pd.Timestamp(first).floor("D")


def is_probability_model(model: str | None) -> bool:
    """Whether ``model``'s scores are engagement probabilities (:data:`PROBABILITY_MODELS`)."""
    return model in PROBABILITY_MODELS


def score_text(model: str | None, score: float) -> str:
    """A score in the reader's units: a percentage chance of engagement for the engagement
    models, else the score itself, marked as not a probability."""
    return f"{score:.0%}" if is_probability_model(model) else f"{score:.3g} (score, not a probability)"


def week_options(data: ExplorerData, hcp_id: str, model: str | None = None) -> pd.DataFrame:
    """The best action per channel the HCP can get this week, by ``model``'s probability:
    ``channel``, ``content_id``, ``title``, ``probability``, best first. These are the plan's
    candidates (notebook 06 writes them under notebook 07's rules: a campaign runs on that
    channel this week, the item is approved and not sent recently, the HCP's caps allow it);
    empty when the run has no candidates of ``model`` or the HCP has none."""
    hcp = _check_hcp(data, hcp_id)
    model = model or data.default_model
    frame = data.week_candidates.get(model)
    if frame is None:
        return pd.DataFrame(columns=["channel", "content_id", "title", "probability"])
    rows = _of_hcp(data, f"week:{model}", frame, hcp["hcp_id"]).drop_duplicates("channel")
    return pd.DataFrame(
        {
            "channel": rows["channel"].to_numpy(),
            "content_id": rows["content_id"].to_numpy(),
            "title": rows["content_id"].map(data.content["title"]).astype(str).to_numpy(),
            "probability": rows["probability"].to_numpy(float),
        }
    )


def planned_actions(data: ExplorerData, hcp_id: str) -> pd.DataFrame:
    """The week's plan for the HCP (notebook 07): ``suggested_date``, ``time_window``,
    ``channel``, ``content_id``, ``title``, ``probability`` (the plan model's estimate) and
    ``reasons`` (a list of the plan's sentences), by date; empty when the plan gives the HCP
    nothing or the run has no plan."""
    hcp = _check_hcp(data, hcp_id)
    rows = _of_hcp(data, "plan_actions", data.plan_actions, hcp["hcp_id"]).sort_values(
        ["suggested_date", "time_window"], kind="stable"
    )
    return pd.DataFrame(
        {
            "suggested_date": rows["suggested_date"].astype(str).to_numpy(),
            "time_window": rows["time_window"].astype(str).to_numpy(),
            "channel": rows["channel"].to_numpy(),
            "content_id": rows["content_id"].to_numpy(),
            "title": rows["content_id"].map(data.content["title"]).astype(str).to_numpy(),
            "probability": rows["priority_score"].to_numpy(float),
            "reasons": [[s for s in str(r).split(" | ") if s] for r in rows["reasons"]],
        }
    )


def unplanned_reason(data: ExplorerData, hcp_id: str) -> str | None:
    """Why the week's plan gives the HCP nothing, in the reader's words
    (:data:`UNPLANNED_WORDS`); None when the HCP has an action or the run has no plan."""
    hcp = _check_hcp(data, hcp_id)
    rows = _of_hcp(data, "unplanned", data.unplanned, hcp["hcp_id"])
    if rows.empty:
        return None
    code = str(rows["reason_code"].iloc[0])
    return UNPLANNED_WORDS.get(code, str(rows["reason"].iloc[0]))


def plan_model(data: ExplorerData) -> str | None:
    """The model the week's plan was made with (None: the run has no plan)."""
    return str(data.plan_actions["model"].iloc[0]) if len(data.plan_actions) else None


def channel_story(data: ExplorerData, hcp_id: str, model: str | None = None) -> list[str]:
    """The HCP's channel story in three sentences: ``model``'s best (content, channel) with no
    constraint (its top recommendation), the best it can get this week (:func:`week_options`),
    and what the week's plan does (:func:`planned_actions`, :func:`unplanned_reason`)."""
    hcp = _check_hcp(data, hcp_id)
    model = model or (data.models[0] if data.models else None)
    lines = []
    top = _list_of(data, model, hcp["hcp_id"]).head(1)
    if len(top):
        row = top.iloc[0]
        lines.append(
            f"Best with no constraint ({model}): \u201c{data.content.at[row['content_id'], 'title']}\u201d by "
            f"{CHANNEL_LABELS[row['channel']].lower()}, {score_text(model, float(row['score']))}."
        )
    if model in data.week_candidates:
        week = week_options(data, hcp["hcp_id"], model)
        if len(week):
            best = week.iloc[0]
            lines.append(
                f"Best this week, among the actions that can be delivered: \u201c{best['title']}\u201d by "
                f"{CHANNEL_LABELS[best['channel']].lower()}, {score_text(model, float(best['probability']))}."
            )
        else:
            lines.append("No action can be delivered to this HCP this week.")
    planner = plan_model(data)
    if planner is None and data.unplanned.empty:
        lines.append("This run has no week's plan (notebook 07 has not run).")
        return lines
    actions = planned_actions(data, hcp["hcp_id"])
    if len(actions):
        lines.append(
            f"The week's plan ({planner}): "
            + "; ".join(
                f"\u201c{a.title}\u201d by {CHANNEL_LABELS[a.channel].lower()} on "
                f"{pd.Timestamp(a.suggested_date):%a %d %b}, {a.time_window}"
                for a in actions.itertuples(index=False)
            )
            + "."
        )
    else:
        why = unplanned_reason(data, hcp["hcp_id"]) or "not selected"
        lines.append(f"The week's plan gives this HCP nothing: {why}.")
    return lines


def next_actions(data: ExplorerData, hcp_id: str) -> pd.DataFrame:
    """What the HCP did in the test window: the test-window touches of :func:`timeline`."""
    touches = timeline(data, hcp_id)
    return touches[touches["window"] == "test"].drop(columns="window").reset_index(drop=True)


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


#: the timeline's size in pixels (the SVG scales down to narrower pages)
TIMELINE_WIDTH, TIMELINE_ROW = 640, 18


def _timeline_svg(touches: pd.DataFrame, start: pd.Timestamp, cutoff: pd.Timestamp, end: pd.Timestamp) -> str:
    """Every touch as a dot on a date axis, one row per channel: filled orange = engaged,
    hollow grey = not; the test window shaded; month ticks; each dot's date, channel and full
    title on hover. (Hand-written SVG: a matplotlib PNG per HCP would be far larger, and
    the book's static explorer draws the same figure in the browser.)"""
    if touches.empty:
        return "<p>No touches recorded.</p>"
    left, top_pad = 150, 6
    width = TIMELINE_WIDTH - left - 10
    span = max((end - start).total_seconds(), 1.0)

    def x(when) -> float:
        return left + width * (pd.Timestamp(when) - start).total_seconds() / span

    height = top_pad + TIMELINE_ROW * len(CHANNELS) + 22
    parts = [
        f"<svg class='timeline' viewBox='0 0 {TIMELINE_WIDTH} {height}' width='100%' "
        f"style='max-width:{TIMELINE_WIDTH}px' role='img' aria-label='touches by date and channel'>",
        f"<rect x='{x(cutoff):.1f}' y='0' width='{x(end) - x(cutoff):.1f}' height='{height - 20}' fill='#eef3f8'/>",
        f"<text x='{x(cutoff) + 3:.1f}' y='{height - 24}' font-size='9' fill='#555'>test window</text>",
    ]
    for i, channel in enumerate(CHANNELS):
        y = top_pad + TIMELINE_ROW * i + TIMELINE_ROW / 2
        parts.append(
            f"<text x='{left - 6}' y='{y + 3:.1f}' font-size='10' text-anchor='end'>{CHANNEL_LABELS[channel]}</text>"
        )
        parts.append(f"<line x1='{left}' x2='{left + width}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e3e3e3'/>")
    axis = height - 20
    parts.append(f"<line x1='{left}' x2='{left + width}' y1='{axis}' y2='{axis}' stroke='#888'/>")
    for month in pd.date_range(start.to_period("M").to_timestamp(), end, freq="MS"):
        if month < start:
            continue
        parts.append(
            f"<line x1='{x(month):.1f}' x2='{x(month):.1f}' y1='{axis}' y2='{axis + 4}' stroke='#888'/>"
            f"<text x='{x(month):.1f}' y='{axis + 14}' font-size='9' text-anchor='middle'>{month:%b %y}</text>"
        )
    row = {c: i for i, c in enumerate(CHANNELS)}
    for touch in touches.itertuples(index=False):
        y = top_pad + TIMELINE_ROW * row[touch.channel] + TIMELINE_ROW / 2
        style = "fill='#f58518' stroke='#f58518'" if touch.engaged else "fill='white' stroke='#888'"
        label = (
            f"{pd.Timestamp(touch.exposed_at):%Y-%m-%d} · {CHANNEL_LABELS[touch.channel]} · "
            f"{'engaged' if touch.engaged else 'not engaged'} · {touch.title}"
        )
        parts.append(
            f"<circle cx='{x(touch.exposed_at):.1f}' cy='{y:.1f}' r='4' {style}><title>{html.escape(label)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _title_cell(title: str, content_id: str, area: str, limit: int = 110) -> str:
    """A content title cut at ``limit`` characters, the full title (and id) on hover."""
    shown = title if len(title) <= limit else title[: limit - 1].rstrip() + "\u2026"
    return (
        f"<span title='{html.escape(title)} ({content_id})'>{html.escape(shown)}</span>"
        f"<br><small>{content_id} · {html.escape(area)}</small>"
    )


def _week_html(data: ExplorerData, hcp_id: str, model: str) -> str:
    """The channel story, the best action per channel this week and the plan's actions."""
    story = "".join(f"<li>{html.escape(line)}</li>" for line in channel_story(data, hcp_id, model))
    parts = [f"<ul class='story'>{story}</ul>"]
    week = week_options(data, hcp_id, model)
    if len(week):
        rows = "".join(
            f"<tr><td>{CHANNEL_LABELS[r.channel]}</td><td>{_title_cell(r.title, r.content_id, data.content.at[r.content_id, 'therapeutic_area'])}</td>"
            f"<td>{html.escape(score_text(model, r.probability))}</td></tr>"
            for r in week.itertuples(index=False)
        )
        parts.append(
            "<table class='week-options'><tr><th>channel</th><th>best item this week</th>"
            f"<th>{'P(engage), model' if is_probability_model(model) else 'score'}</th></tr>{rows}</table>"
        )
    actions = planned_actions(data, hcp_id)
    if len(actions):
        rows = "".join(
            f"<tr><td>{a.suggested_date}<br><small>{a.time_window}</small></td><td>{CHANNEL_LABELS[a.channel]}</td>"
            f"<td>{_title_cell(a.title, a.content_id, data.content.at[a.content_id, 'therapeutic_area'])}"
            f"<ul class='why'>{''.join(f'<li>{html.escape(s)}</li>' for s in a.reasons)}</ul></td></tr>"
            for a in actions.itertuples(index=False)
        )
        parts.append(
            f"<table class='plan-actions' data-hcp='{hcp_id}'><tr><th>day</th><th>channel</th>"
            f"<th>planned content and why</th></tr>{rows}</table>"
        )
    return "".join(parts)


def hcp_view_html(
    data: ExplorerData,
    hcp_id: str,
    model: str | None = None,
    top_n: int = 10,
    channels: Sequence[str] | None = None,
    exclude_seen: bool = False,
) -> str:
    """The HCP explorer's view: profile; this week (the channel story, the best action per
    channel that can be delivered this week, the plan's actions); the top-N with best channel,
    probability (or score) and reasons; what the HCP did in the test window; and the timeline
    of every touch on a date axis. Bad input gives a message, no error."""
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
        probability = is_probability_model(model)
        week = "week_channel" in recs.columns

        def this_week(r) -> str:
            if pd.isna(r.week_channel):
                return "<td class='off'>not an option</td>"
            return f"<td>{CHANNEL_LABELS[r.week_channel]}, {html.escape(score_text(model, r.week_probability))}</td>"

        items = "".join(
            f"<tr><td>{r.shown_rank}</td><td>{_title_cell(r.title, r.content_id, r.therapeutic_area)}"
            f"<ul class='why'>{''.join(f'<li>{html.escape(t)}</li>' for t in r.reasons)}</ul></td>"
            f"<td>{CHANNEL_LABELS[r.channel]}, {html.escape(score_text(model, r.score))}</td>"
            + (this_week(r) if week else "")
            + (f"<td>{r.true_engagement_prob:.0%}</td>" if "true_engagement_prob" in recs.columns else "")
            + "</tr>"
            for r in recs.itertuples(index=False)
        )
        truth = "<th>P(engage), simulator's truth</th>" if "true_engagement_prob" in recs.columns else ""
        unit = "P(engage), model" if probability else "score"
        listing = (
            f"<table class='hcp-recommendations' data-hcp='{hcp['hcp_id']}'><tr><th>#</th><th>content and why"
            f"</th><th>best channel, any week ({unit})</th>"
            + (f"<th>best channel open this week ({unit})</th>" if week else "")
            + f"{truth}</tr>{items}</table>"
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
                formats={
                    "exposed_at": lambda v: f"{v:%Y-%m-%d}",
                    "engaged": lambda v: "yes" if v else "no",
                    "channel": lambda v: CHANNEL_LABELS.get(v, v),
                },
            )
        )
    return (
        f"<div class='hcpx'><p>{profile}</p>"
        f"<h4>This week ({data.cutoff:%Y-%m-%d} to {data.cutoff + pd.Timedelta(days=6):%Y-%m-%d})</h4>"
        f"{_week_html(data, hcp['hcp_id'], model)}"
        f"<h4>Recommended next, any channel ({html.escape(model)}, made at {data.cutoff:%Y-%m-%d})</h4>{listing}"
        f"<h4>What the HCP did next (test window {data.cutoff:%Y-%m-%d} to {data.test_end:%Y-%m-%d})</h4>{after}"
        f"<h4>Engagement timeline</h4>"
        f"{_timeline_svg(timeline(data, hcp['hcp_id']), log_start(data), data.cutoff, data.test_end)}</div>"
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
        items.options = [(f"{t} · {c}", c) for c, t in zip(found["content_id"], found["title"].astype(str))]
        items.value = items.options[0][1] if items.options else None
        refresh()

    search.observe(on_search, names="value")
    items.observe(refresh, names="value")
    model.observe(refresh, names="value")
    on_search()
    if content_id is not None:
        search.value = str(content_id)
    return w.VBox([w.HTML(STYLE + "<h3>Content explorer</h3>"), w.HBox([search, items]), model, view])


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
    return w.VBox([w.HTML(STYLE + "<h3>Topic explorer</h3>"), picker, view])


def _static(labels: Sequence[str], views: Sequence[str], description: str, note: str, heading: str):
    """A Dropdown whose ``index`` is jslink-ed to a Stack of precomputed HTML views: the
    browser switches views with no kernel. An empty sample gives a message instead."""
    import ipywidgets as w

    if not views:
        return w.HTML(message_html(note))
    picker = w.Dropdown(options=list(labels), index=0, description=description, layout=w.Layout(width="90%"))
    stack = w.Stack([w.HTML(v) for v in views], selected_index=0)
    w.jslink((picker, "index"), (stack, "selected_index"))
    return w.VBox([w.HTML(f"{STYLE}<h3>{html.escape(heading)}</h3>"), picker, stack])


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


def browser_bundle(
    data: ExplorerData,
    model: str | None = None,
    top_n: int = 10,
    hcp_ids: Sequence[str] | None = None,
    progress: Callable | None = None,
) -> dict:
    """Everything the book's static HCP explorer shows, for ``hcp_ids`` (default: every HCP of
    the run), as plain JSON values: the same computations as :func:`hcp_view_html` (one call of
    the reasons engine for all lists, :func:`channel_story`, :func:`week_options`,
    :func:`planned_actions`, :func:`timeline`), packed by index to keep the page small.

    Keys: ``meta`` (model, whether its scores are probabilities, plan model, whether the
    model has plan candidates, cut-off, test
    end, log start, HCPs in the run); ``channels`` and ``specialties`` (labels); ``items``
    ([content_id, title, therapeutic area]); ``sentences`` (every distinct reason); ``hcps``
    ([id, name, specialty index, state, city, region, practice, years, age, digital affinity,
    peer group, health system, opted out]); and per HCP, aligned with ``hcps``: ``recs``
    ([item, channel, model score, true probability or null, [sentence], [channel, probability]
    of the best channel open this week or null: :func:`week_for_items`]), ``story`` (the
    channel story), ``week`` ([channel, item, probability]), ``plan`` ([date, time window,
    channel, item, probability, [sentence]]) and ``touches`` ([day after log start, item,
    channel, engaged]). Indices point into ``items``, ``channels`` and ``sentences``.
    ``progress`` (e.g. ``tqdm``) wraps the loop over the HCPs.
    """
    model = model or (data.models[0] if data.models else None)
    ids = list(data.hcps["hcp_id"]) if hcp_ids is None else [str(h) for h in hcp_ids]
    hcps = data.hcps.loc[ids].sort_values(["opted_out", "last_name", "first_name", "hcp_id"], kind="stable")
    ids = list(hcps["hcp_id"])
    items = {c: i for i, c in enumerate(data.content["content_id"])}
    channel_index = {c: i for i, c in enumerate(CHANNELS)}
    specialties = sorted(hcps["specialty"].astype(str).unique())
    sentences: dict[str, int] = {}

    def said(texts: Iterable[str]) -> list[int]:
        return [sentences.setdefault(s, len(sentences)) for s in texts]

    recs = data.recommendations
    lists = recs[(recs["model"] == model) & recs["hcp_id"].isin(set(ids))] if model else recs.iloc[:0]
    lists = lists.groupby("hcp_id", sort=False).head(int(top_n))
    truth = "true_engagement_prob" in lists.columns
    open_week = week_for_items(data, model, lists) if model else None
    week_channel, week_probability = (
        open_week if open_week is not None else ([None] * len(lists), [np.nan] * len(lists))
    )
    packed_recs: dict[str, list] = {h: [] for h in ids}
    for row, why, w_channel, w_probability in zip(
        lists.itertuples(index=False), _reason_lists(data, lists), week_channel, week_probability
    ):
        packed_recs[row.hcp_id].append(
            [
                items[row.content_id],
                channel_index[row.channel],
                round(float(row.score), 4),
                round(float(row.true_engagement_prob), 4) if truth else None,
                said(why),
                None if w_channel is None else [channel_index[w_channel], round(float(w_probability), 4)],
            ]
        )
    week = data.week_candidates.get(model)
    packed_week: dict[str, list] = {h: [] for h in ids}
    if week is not None:
        best = week[week["hcp_id"].isin(set(ids))].drop_duplicates(["hcp_id", "channel"])
        for row in best.itertuples(index=False):
            packed_week[row.hcp_id].append(
                [channel_index[row.channel], items[row.content_id], round(float(row.probability), 4)]
            )
    packed_plan: dict[str, list] = {h: [] for h in ids}
    plan = data.plan_actions[data.plan_actions["hcp_id"].isin(set(ids))].sort_values(
        ["hcp_id", "suggested_date", "time_window"], kind="stable"
    )
    for row in plan.itertuples(index=False):
        packed_plan[row.hcp_id].append(
            [
                str(row.suggested_date),
                str(row.time_window),
                channel_index[row.channel],
                items[row.content_id],
                round(float(row.priority_score), 4),
                said(s for s in str(row.reasons).split(" | ") if s),
            ]
        )
    start = log_start(data)
    log = pd.concat([data.history, data.test_window])
    log = log[log["hcp_id"].isin(set(ids))]
    days = ((log["exposed_at"] - start) / pd.Timedelta(days=1)).to_numpy().round(2)
    packed_touches: dict[str, list] = {h: [] for h in ids}
    for hcp, day, content, channel, engaged in zip(
        log["hcp_id"], days, log["content_id"], log["channel"], log["engaged"].astype(bool)
    ):
        packed_touches[hcp].append([float(day), items[content], channel_index[channel], int(engaged)])
    return {
        "meta": {
            "model": model,
            "probability": is_probability_model(model),
            "plan_model": plan_model(data),
            "has_week": model in data.week_candidates,
            "cutoff": f"{data.cutoff:%Y-%m-%d}",
            "test_end": f"{data.test_end:%Y-%m-%d}",
            "start": f"{start:%Y-%m-%d}",
            "n_run": len(data.hcps),
            "top_n": int(top_n),
        },
        "channels": [CHANNEL_LABELS[c] for c in CHANNELS],
        "specialties": [specialty_label(s) for s in specialties],
        "items": [
            [c, str(title), str(area)]
            for c, title, area in zip(
                data.content["content_id"], data.content["title"], data.content["therapeutic_area"]
            )
        ],
        "hcps": [
            [
                r.hcp_id,
                hcp_name(pd.Series(r._asdict())),
                specialties.index(str(r.specialty)),
                str(r.state),
                str(r.city),
                str(r.region),
                str(r.practice_setting),
                int(r.years_in_practice),
                int(r.age),
                round(float(r.digital_affinity), 2),
                str(r.peer_group),
                str(r.health_system),
                int(bool(r.opted_out)),
            ]
            for r in hcps.itertuples(index=False)
        ],
        "recs": [packed_recs[h] for h in ids],
        "story": [channel_story(data, h, model) if model else [] for h in each(progress, ids, "HCPs")],
        "week": [packed_week[h] for h in ids],
        "plan": [packed_plan[h] for h in ids],
        "touches": [packed_touches[h] for h in ids],
        "sentences": list(sentences),
    }


def _encode(bundle: dict) -> str:
    """The bundle as base64 of gzip-compressed JSON (mtime 0, so one run gives one page)."""
    raw = json.dumps(bundle, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")


def static_hcp_browser(
    data: ExplorerData,
    model: str | None = None,
    top_n: int = 10,
    hcp_ids: Sequence[str] | None = None,
    progress: Callable | None = None,
) -> str:
    """The book's HCP explorer, for a page with no kernel: search (name, id, city), filters by
    specialty and state, and for the chosen HCP the view of :func:`hcp_view_html` (profile,
    this week, the list with reasons, what the HCP did next, the timeline), drawn in the
    browser from :func:`browser_bundle` (embedded as compressed JSON; the script uses only
    the browser's own ``DecompressionStream``, no library, no network). Returns HTML."""
    bundle = browser_bundle(data, model, top_n, hcp_ids, progress)
    if not bundle["hcps"]:
        return message_html("No HCP to show: the run has no HCP.")
    return (
        f"{STYLE}<div class='hcpx hcp-browser'><h3>HCP explorer</h3>"
        "<div class='controls'><label>Find HCP <input type='search' class='q' "
        "placeholder='name, id or city'></label> <label>Specialty <select class='f-spec'>"
        "<option value=''>all</option></select></label> <label>State <select class='f-state'>"
        "<option value=''>all</option></select></label></div><p class='hint'></p>"
        "<label class='pick'>HCP <select class='f-hcp' size='6'></select></label><div class='view'>"
        "<p>Loading the explorer…</p></div>"
        f"<script type='application/octet-stream' class='payload'>{_encode(bundle)}</script></div>"
        f"<script>{BROWSER_JS}</script>"
    )


def static_content_explorer(data: ExplorerData, content_ids: Sequence[str], model: str | None = None):
    """Content explorer for pages without a kernel: one precomputed view per item."""
    labels = [f"{data.content.at[c, 'title']} · {c}" for c in content_ids]
    return _static(
        labels,
        [content_view_html(data, c, model) for c in content_ids],
        "Item",
        "No content item to show.",
        "Content explorer",
    )


def static_topic_explorer(data: ExplorerData):
    """Topic explorer for pages without a kernel: every topic's view."""
    if data.doc_topics is None:
        return _static([], [], "Topic", "This run has no topic model (notebook 03 did not run).", "Topic explorer")
    topics = list(data.doc_topics.columns)
    return _static(
        [f"{t}: {data.topics.at[t, 'label']}" for t in topics],
        [topic_view_html(data, t) for t in topics],
        "Topic",
        "No topic to show.",
        "Topic explorer",
    )


def channel_summary(data: ExplorerData, model: str) -> dict:
    """The channel story over every HCP: ``best`` (share of HCPs by the channel of ``model``'s
    top recommendation, no constraint), ``week`` (share of HCPs by the channel of their best
    action deliverable this week; empty without candidates), ``plan`` (the week's actions by
    channel, counts), ``hcps`` (HCPs with a list) and ``planned_hcps`` (HCPs the plan gives
    an action). Shares are in CHANNELS order, channels absent from a table dropped."""
    _check_model(data, model)
    first = _model_lists(data, model)
    first = first[first["rank"] == first.groupby("hcp_id")["rank"].transform("min")]

    def shares(channels: pd.Series) -> pd.Series:
        counts = channels.value_counts().reindex(list(CHANNELS)).dropna()
        return counts / counts.sum() if counts.sum() else counts

    week = data.week_candidates.get(model)
    return {
        "best": shares(first["channel"]),
        "week": shares(week.drop_duplicates("hcp_id")["channel"]) if week is not None else pd.Series(dtype=float),
        "plan": data.plan_actions["channel"].value_counts().reindex(list(CHANNELS)).dropna().astype(int),
        "hcps": int(first["hcp_id"].nunique()),
        "planned_hcps": int(data.plan_actions["hcp_id"].nunique()),
    }


def list_concentration(data: ExplorerData, model: str, k: int = 10, n_top: int = 10) -> dict:
    """How alike ``model``'s top-``k`` lists are: ``hcps`` (HCPs with a list), ``distinct``
    (items listed at least once), ``coverage`` (:func:`hcp_lib.metrics.catalogue_coverage_at_k`)
    and ``top`` (the ``n_top`` items in the most lists: content_id, title, ``share`` of lists
    that hold it, from :func:`hcp_lib.metrics.list_share_at_k`)."""
    _check_model(data, model)
    lists = _model_lists(data, model)
    top = lists[lists["rank"] <= k]
    hcps = pd.Index(top["hcp_id"].unique())
    items = pd.Index(data.content["content_id"])
    positions = np.full((len(hcps), k), -1, dtype=np.int64)
    positions[hcps.get_indexer(top["hcp_id"]), top["rank"].to_numpy(int) - 1] = items.get_indexer(top["content_id"])
    share = metrics.list_share_at_k(positions, len(items), k)
    order = np.argsort(-np.nan_to_num(share), kind="stable")[:n_top]
    return {
        "hcps": len(hcps),
        "distinct": int((np.nan_to_num(share) > 0).sum()),
        "coverage": metrics.catalogue_coverage_at_k(positions, len(items), k),
        "top": pd.DataFrame(
            {
                "content_id": items[order],
                "title": data.content["title"].to_numpy()[order].astype(str),
                "share": share[order],
            }
        ),
    }


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
