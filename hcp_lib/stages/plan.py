"""Next-best-action plan for the coming period: constrained, explained actions (notebook 07).

For each HCP the plan suggests at most ``max_actions_per_hcp`` actions — a (content item,
channel, suggested day and time window) with a priority score, an expiry and the reasons
behind it — for the period ``[plan_start, plan_start + period_days)``.

Steps (each a function, so tests and the notebook can check them one by one):

1. :func:`read_context` / :func:`make_context`: what is known at ``plan_start`` — the HCP
   master, the catalogue, the campaigns and the exposure log strictly before ``plan_start``
   (nothing later is read for planning).
2. :func:`action_slots`: the (content, channel) pairs deliverable in the period: a campaign on
   that channel runs in the period; webinars only at their scheduled sessions (weekly, on the
   weekday the campaign started).
3. :func:`candidate_actions`: per HCP, the eligible pairs — approved for the HCP's specialty,
   not engaged with before, not received in the last ``repeat_window_days``, deliverable,
   allowed by the per-HCP channel cap, HCP not opted out — pruned to the
   ``candidates_per_channel`` pairs with the highest model probability per HCP and channel
   (the solver then sees about n_hcp × 5 × k variables instead of n_hcp × n_content × 5).
   HCPs left with no candidate get an ``unplanned`` row saying why.
4. :func:`capacity_table` and :func:`constraint_families`: per-HCP limit, per-HCP channel
   caps, one channel per item and HCP, field-force capacity per territory and period (rep
   visits, in-person meetings), global capacity of the other channels, and each campaign's
   ``capacity_per_week``. Capacities default to the business-as-usual volume of the last
   ``capacity_lookback_weeks`` (times ``capacity_scale``), so the plan is compared with business
   as usual at the same capacity.
5. :func:`solve_milp` maximises the total expected engagements (sum of the model's
   probabilities of the chosen candidates) with ``scipy.optimize.milp`` (HiGHS branch and
   cut), under a time limit and a relative gap it reports; :func:`solve_greedy` is the
   comparison (best probability first while every constraint has room).
6. :func:`make_plan`: the CRM table (:data:`PLAN_COLUMNS`), reasons per action computed from
   the HCP's history (:data:`REASON_CODES`) by :mod:`hcp_lib.reasons` — the reasons engine the
   explorers (notebook 08) use too — and who got no suggestion and why.

Measurement (notebook only, never used for planning): :func:`policy_comparison` values any set
of actions with the simulator's true engagement probabilities at ``plan_start`` (one number
per action, summed: expected engagements; the fatigue of several touches in one week is not
in this first-order sum). Writes (via :func:`write_plan`) ``plan/plan.parquet``,
``plan/plan.csv``, ``plan/unplanned.parquet``, ``plan/reasons.parquet`` and ``metrics/plan.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import scipy.sparse as sp

from .. import config, io
from .. import reasons as reasons_engine
from ..config import RunDir
from ..domain import CHANNELS, HCP_ID_PATTERN
from ..models.base import stable_top

#: channels the field force delivers; their capacity is set per territory
FIELD_CHANNELS = ("rep_visit", "in_person_meeting")
ALL_TERRITORIES = "all"
TIME_WINDOW_HOURS = 2
HCP_BATCH = 256
#: the reasons an action can carry, in the order they are listed (:mod:`hcp_lib.reasons`)
REASON_CODES = reasons_engine.REASON_CODES
#: why an HCP can get no suggestion
UNPLANNED_CODES = (
    "opted_out",
    "no_channel_allowed",
    "no_approved_content",
    "all_received",
    "no_active_campaign",
    "capacity_exhausted",
    "not_selected",
)

#: the CRM export, one row per suggested action (documented in notebook 07); ``synthetic_hcp``
#: (always true) marks ``hcp_id`` as a synthetic id, never a provider's NPI (data card)
PLAN_COLUMNS = (
    "plan_id",
    "action_id",
    "hcp_id",
    "synthetic_hcp",
    "specialty",
    "territory",
    "action_rank",
    "content_id",
    "content_title",
    "channel",
    "campaign_id",
    "suggested_date",
    "time_window",
    "priority_score",
    "expires_at",
    "reasons",
    "reason_codes",
    "model",
    "solver",
)

PLAN_SCHEMA = pa.DataFrameSchema(
    {
        "plan_id": pa.Column(str),
        "action_id": pa.Column(str, unique=True),
        "hcp_id": pa.Column(str, pa.Check.str_matches(HCP_ID_PATTERN)),
        "synthetic_hcp": pa.Column(bool, pa.Check.eq(True)),
        "specialty": pa.Column(str),
        "territory": pa.Column(str),
        "action_rank": pa.Column("int64", pa.Check.ge(1)),
        "content_id": pa.Column(str),
        "content_title": pa.Column(str),
        "channel": pa.Column(str, pa.Check.isin(list(CHANNELS))),
        "campaign_id": pa.Column(str),
        "suggested_date": pa.Column(str, pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}$")),
        "time_window": pa.Column(str, pa.Check.str_matches(r"^\d{2}:00-\d{2}:00$")),
        "priority_score": pa.Column(float, pa.Check.in_range(0, 1)),
        "expires_at": pa.Column("datetime64[us]", coerce=True),
        "reasons": pa.Column(str, pa.Check.str_length(min_value=1)),
        "reason_codes": pa.Column(str),
        "model": pa.Column(str),
        "solver": pa.Column(str),
    },
    name="next_best_action_plan",
    strict=True,
    ordered=True,
)


class PlanError(ValueError):
    """The plan cannot be built from these inputs; the message names the parameter, table or column."""


class NonFiniteProbabilityError(PlanError, io.NonFiniteError):
    """A model's probabilities or a candidate table hold NaN or inf (:func:`hcp_lib.io.check_finite`);
    the message names the model or file, the count and the first HCP or candidate."""


def _check_finite_probabilities(values, source: str, verb: str, what: str = "probability", **kwargs) -> np.ndarray:
    return io.check_finite(
        values,
        source,
        what,
        verb=verb,
        error=NonFiniteProbabilityError,
        consequence="a plan cannot be built from them — check the model that produced them",
        **kwargs,
    )


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanSettings:
    """The rules of one plan. ``hcp_caps``: most touches per HCP and channel in the period;
    ``territory_capacity``: field channel -> touches per territory and week (None or absent:
    the business-as-usual volume); the other fields mirror the ``plan_*`` parameters, and every
    default is that parameter's default (:func:`hcp_lib.config.default`), written only there."""

    period_days: int = config.default("plan_period_days")
    max_actions_per_hcp: int = config.default("plan_max_actions_per_hcp")
    hcp_caps: dict = field(default_factory=lambda: {c: config.default(f"plan_hcp_cap_{c}") for c in CHANNELS})
    territory: str = config.default("plan_territory")
    territory_capacity: dict = field(
        default_factory=lambda: {
            "rep_visit": config.default("plan_rep_visits_per_territory_week"),
            "in_person_meeting": config.default("plan_meetings_per_territory_week"),
        }
    )
    capacity_scale: float = config.default("plan_capacity_scale")
    capacity_lookback_weeks: int = config.default("plan_capacity_lookback_weeks")
    repeat_window_days: int = config.default("plan_repeat_window_days")
    interest_window_days: int = config.default("plan_interest_window_days")
    candidates_per_channel: int = config.default("plan_candidates_per_channel")
    time_limit_s: float = config.default("plan_solver_time_limit_s")
    mip_rel_gap: float = config.default("plan_mip_rel_gap")
    milp_max_candidates: int = config.default("plan_milp_max_candidates")

    def validate(self) -> PlanSettings:
        checks = [
            ("period_days", self.period_days >= 1, ">= 1"),
            ("max_actions_per_hcp", self.max_actions_per_hcp >= 0, ">= 0"),
            ("territory", self.territory in ("state", "region"), "'state' or 'region'"),
            ("capacity_scale", self.capacity_scale >= 0, ">= 0"),
            ("capacity_lookback_weeks", self.capacity_lookback_weeks >= 1, ">= 1"),
            ("repeat_window_days", self.repeat_window_days >= 0, ">= 0"),
            ("interest_window_days", self.interest_window_days >= 1, ">= 1"),
            ("candidates_per_channel", self.candidates_per_channel >= 1, ">= 1"),
            ("time_limit_s", self.time_limit_s > 0, "> 0"),
            ("mip_rel_gap", self.mip_rel_gap >= 0, ">= 0"),
            ("milp_max_candidates", self.milp_max_candidates >= 1, ">= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise PlanError(f"plan setting {name!r}: got {getattr(self, name)!r}; expected {allowed}")
        unknown = sorted(set(self.hcp_caps) - set(CHANNELS)) + sorted(
            set(self.territory_capacity) - set(FIELD_CHANNELS)
        )
        if unknown:
            raise PlanError(
                f"plan setting: unknown channel {unknown[0]!r}; caps take {', '.join(CHANNELS)}, "
                f"territory capacities take {', '.join(FIELD_CHANNELS)}"
            )
        for channel, cap in {
            **self.hcp_caps,
            **{k: v for k, v in self.territory_capacity.items() if v is not None},
        }.items():
            if int(cap) < 0:
                raise PlanError(f"plan setting: the cap or capacity of channel {channel!r} is {cap}; expected >= 0")
        return self


def settings_from_parameters(params: dict) -> PlanSettings:
    """:class:`PlanSettings` from the notebook's ``plan_*`` parameters (names as in hcp_lib.config)."""
    return PlanSettings(
        period_days=params["plan_period_days"],
        max_actions_per_hcp=params["plan_max_actions_per_hcp"],
        hcp_caps={c: params[f"plan_hcp_cap_{c}"] for c in CHANNELS},
        territory=params["plan_territory"],
        territory_capacity={
            "rep_visit": params["plan_rep_visits_per_territory_week"],
            "in_person_meeting": params["plan_meetings_per_territory_week"],
        },
        capacity_scale=params["plan_capacity_scale"],
        capacity_lookback_weeks=params["plan_capacity_lookback_weeks"],
        repeat_window_days=params["plan_repeat_window_days"],
        interest_window_days=params["plan_interest_window_days"],
        candidates_per_channel=params["plan_candidates_per_channel"],
        time_limit_s=params["plan_solver_time_limit_s"],
        mip_rel_gap=params["plan_mip_rel_gap"],
        milp_max_candidates=params["plan_milp_max_candidates"],
    ).validate()


# --- what is known at the start of the plan ---------------------------------------------------------

_REQUIRED = {
    "hcps": ("hcp_id", "specialty", "state", "region", "opted_out", "peer_group", "health_system"),
    "catalogue": ("content_id", "title", "release_date", "approved_specialties", "series_id", "series_part"),
    "campaigns": ("campaign_id", "content_id", "channel", "start_date", "end_date", "capacity_per_week"),
    "interactions": ("hcp_id", "content_id", "channel", "exposed_at", "engaged"),
}


@dataclass
class PlanContext:
    """Everything the plan may use, as known at ``plan_start``: ``hcps`` (master order, with a
    ``territory`` column), ``catalogue`` (catalogue order), ``campaigns``, ``history`` (exposures
    strictly before ``plan_start``), ``item_topic`` (dominant LDA topic per item, -1 unknown) and
    ``topic_labels``."""

    plan_start: pd.Timestamp
    plan_end: pd.Timestamp
    hcps: pd.DataFrame
    catalogue: pd.DataFrame
    campaigns: pd.DataFrame
    history: pd.DataFrame
    item_topic: np.ndarray
    topic_labels: list
    #: the eligible actions of each batch of HCPs, by rules (:func:`_eligible_batches`): they do not
    #: depend on a model, and the evaluation builds every model's candidates from one context
    eligible_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def hcp_ids(self) -> pd.Index:
        return pd.Index(self.hcps["hcp_id"].to_numpy(dtype=object))

    @property
    def content_ids(self) -> pd.Index:
        return pd.Index(self.catalogue["content_id"].to_numpy(dtype=object))

    @property
    def plan_id(self) -> str:
        return f"NBA-{self.plan_start.date().isoformat()}"


def _require(table: pd.DataFrame, name: str, source: str) -> None:
    missing = [c for c in _REQUIRED[name] if c not in table.columns]
    if missing:
        raise PlanError(f"{source}: missing column {missing[0]!r} (the plan needs {', '.join(_REQUIRED[name])})")


def make_context(
    hcps: pd.DataFrame,
    catalogue: pd.DataFrame,
    campaigns: pd.DataFrame,
    interactions: pd.DataFrame,
    plan_start,
    settings: PlanSettings,
    doc_topics: pd.DataFrame | None = None,
    topic_labels: Iterable[str] | None = None,
    sources: dict | None = None,
) -> PlanContext:
    """A :class:`PlanContext` from the world's tables; exposures at or after ``plan_start`` are
    dropped here, so nothing later can reach the plan. ``doc_topics`` (pmid, topic_0..) and
    ``topic_labels`` (one per topic) come from notebook 03; without them the topic reason is off."""
    sources = sources or {}
    for name, table in (
        ("hcps", hcps),
        ("catalogue", catalogue),
        ("campaigns", campaigns),
        ("interactions", interactions),
    ):
        _require(table, name, sources.get(name, f"{name} table"))
    settings.validate()
    plan_start = pd.Timestamp(plan_start)
    people = hcps.loc[:, list(_REQUIRED["hcps"]) + [c for c in ("opted_out_at",) if c in hcps]].reset_index(drop=True)
    people["hcp_id"] = people["hcp_id"].astype(str)
    people["territory"] = people[settings.territory].astype(str)
    items = catalogue.loc[:, list(_REQUIRED["catalogue"])].reset_index(drop=True)
    items["content_id"] = items["content_id"].astype(str)
    past = interactions.loc[interactions["exposed_at"] < plan_start, list(_REQUIRED["interactions"])].copy()
    for column in ("hcp_id", "content_id", "channel"):
        past[column] = past[column].astype(str)
    bad = sorted(set(past["channel"]) - set(CHANNELS))
    if bad:
        raise PlanError(
            f"{sources.get('interactions', 'interactions table')}: column 'channel' has value {bad[0]!r}; "
            f"allowed: {', '.join(CHANNELS)}"
        )
    past = past.sort_values(["exposed_at", "hcp_id", "content_id"], kind="stable").reset_index(drop=True)
    item_topic = np.full(len(items), -1)
    labels: list = []
    if doc_topics is not None and len(doc_topics):
        topic_cols = [c for c in doc_topics.columns if c.startswith("topic_")]
        table = doc_topics.set_index(doc_topics["pmid"].astype(str))[topic_cols]
        item_topic = reasons_engine.dominant_topics(table, items["content_id"])
        labels = list(topic_labels) if topic_labels is not None else [c for c in topic_cols]
        if len(labels) != len(topic_cols):
            raise PlanError(f"{len(labels)} topic labels for {len(topic_cols)} topics in the doc-topic table")
    campaigns = campaigns.loc[:, list(_REQUIRED["campaigns"])].copy()
    for column in ("campaign_id", "content_id", "channel"):
        campaigns[column] = campaigns[column].astype(str)
    return PlanContext(
        plan_start,
        plan_start + pd.Timedelta(days=settings.period_days),
        people,
        items,
        campaigns,
        past,
        item_topic,
        labels,
    )


def read_context(run_dir: str | Path, plan_start, settings: PlanSettings) -> PlanContext:
    """:func:`make_context` from the run folder's ``world/`` and ``topics/`` (topics optional).
    The simulator's truth files are not read."""
    run = RunDir(Path(run_dir))
    files = {
        "hcps": run.world / "hcp_master.parquet",
        "catalogue": run.world / "campaigns_with_content.parquet",
        "campaigns": run.world / "campaigns.parquet",
        "interactions": run.world / "hcp_interaction_data.parquet",
    }
    tables = {name: io.read_parquet(path) for name, path in files.items()}
    doc_topics = labels = None
    if (run.topics / "doc_topics.parquet").exists() and (run.topics / "topics.parquet").exists():
        doc_topics = io.read_parquet(run.topics / "doc_topics.parquet")
        labels = io.read_parquet(run.topics / "topics.parquet").sort_values("topic")["label"].astype(str).tolist()
    return make_context(
        **tables,
        plan_start=plan_start,
        settings=settings,
        doc_topics=doc_topics,
        topic_labels=labels,
        sources={k: str(v) for k, v in files.items()},
    )


# --- what can be delivered in the period ---------------------------------------------------------


def action_slots(context: PlanContext) -> pd.DataFrame:
    """One row per deliverable (content, channel) in the period: content_id, channel, col, ch,
    campaign_id, capacity (the campaign's ``capacity_per_week`` × period weeks, rounded up),
    available_from, available_until (the campaign's overlap with the period, not before the
    item's release) and session_at (webinars: the first weekly session — on the weekday the
    campaign started — inside the period; a webinar with no session in the period is not
    deliverable; NaT for the other channels)."""
    start, end = context.plan_start, context.plan_end
    weeks = (end - start) / pd.Timedelta(days=7)
    live = context.campaigns[(context.campaigns["start_date"] < end) & (context.campaigns["end_date"] > start)].copy()
    release = context.catalogue.set_index("content_id")["release_date"]
    live = live[live["content_id"].isin(release.index)]
    opens = live["start_date"].clip(lower=start).to_numpy(dtype="datetime64[us]")
    released = release.reindex(live["content_id"]).to_numpy(dtype="datetime64[us]")
    live["available_from"] = pd.DatetimeIndex(np.maximum(opens, released)).floor("D").to_numpy()
    live["available_until"] = live["end_date"].clip(upper=end)
    live = live[live["available_from"] < live["available_until"]]
    session = pd.Series(pd.NaT, index=live.index, dtype="datetime64[us]")
    webinar = live["channel"] == "webinar"
    if webinar.any():
        first = live.loc[webinar, "start_date"]
        weeks_on = np.ceil((live.loc[webinar, "available_from"] - first) / pd.Timedelta(days=7)).clip(lower=0)
        at = first + pd.to_timedelta(weeks_on * 7, unit="D")
        session.loc[webinar] = at.where(at < live.loc[webinar, "available_until"])
    live["session_at"] = session
    live = live[~webinar | live["session_at"].notna()]
    live["capacity"] = np.ceil(live["capacity_per_week"].to_numpy(float) * weeks).astype(np.int64)
    live["col"] = context.content_ids.get_indexer(live["content_id"])
    live["ch"] = pd.Index(CHANNELS).get_indexer(live["channel"])
    live = live.sort_values(["col", "ch"], kind="stable").drop_duplicates(["col", "ch"])
    return live[
        [
            "content_id",
            "channel",
            "col",
            "ch",
            "campaign_id",
            "capacity",
            "available_from",
            "available_until",
            "session_at",
        ]
    ].reset_index(drop=True)


# --- candidates -------------------------------------------------------------------------------------


@dataclass
class Candidates:
    """Pruned candidate actions (one row each: row, hcp_id, col, content_id, ch, channel,
    probability, campaign_id, territory) and ``unplanned`` (hcp_id, reason_code, reason) for
    HCPs left with no candidate; ``slots`` from :func:`action_slots`; ``n_eligible`` the number
    of eligible (HCP, content, channel) triples before pruning."""

    table: pd.DataFrame
    unplanned: pd.DataFrame
    slots: pd.DataFrame
    n_eligible: int


def _approval(context: PlanContext) -> dict[str, np.ndarray]:
    approved = context.catalogue["approved_specialties"].astype(object).to_numpy()
    return {
        s: np.array([isinstance(a, str) and s in a.split("; ") for a in approved], bool)
        for s in sorted(set(context.hcps["specialty"].astype(str)))
    }


def _pair_matrix(frame: pd.DataFrame, context: PlanContext) -> sp.csr_matrix:
    rows = context.hcp_ids.get_indexer(frame["hcp_id"])
    cols = context.content_ids.get_indexer(frame["content_id"])
    keep = (rows >= 0) & (cols >= 0)
    data = np.ones(int(keep.sum()), bool)
    return sp.csr_matrix(
        (data, (rows[keep], cols[keep])), shape=(len(context.hcps), len(context.catalogue)), dtype=bool
    )


def _eligible_batches(context: PlanContext, settings: PlanSettings, batch_size: int = HCP_BATCH) -> list:
    """Per batch of HCP rows, ``(rows, cols, live, status)``: ``cols`` the catalogue columns with
    an eligible action for some HCP of the batch (ascending), ``live`` (n, len(cols), n_channel)
    marks the eligible (HCP, item, channel) actions among them (see the module docstring; every
    other column has none), ``status`` the reason code of HCPs with none ("" for the others).
    No model is involved, so the batches are computed once per context, rules and batch size
    (``context.eligible_cache``) and every model's candidates reuse them."""
    key = (repr(settings), int(batch_size))
    if key not in context.eligible_cache:
        context.eligible_cache[key] = list(_eligible(context, settings, batch_size))
    return context.eligible_cache[key]


def _eligible(context: PlanContext, settings: PlanSettings, batch_size: int):
    slots = action_slots(context)
    n_hcp, n_content, n_channel = len(context.hcps), len(context.catalogue), len(CHANNELS)
    deliverable = np.zeros((n_content, n_channel), bool)
    deliverable[slots["col"], slots["ch"]] = True
    caps = np.array([settings.hcp_caps.get(c, 0) for c in CHANNELS]) > 0
    caps &= settings.max_actions_per_hcp > 0
    approval = _approval(context)
    released = (context.catalogue["release_date"] < context.plan_end).to_numpy(bool)
    history = context.history
    engaged_before = _pair_matrix(history[history["engaged"].astype(bool)], context)
    recent_start = context.plan_start - pd.Timedelta(days=settings.repeat_window_days)
    received_recently = _pair_matrix(history[history["exposed_at"] >= recent_start], context)
    specialty = context.hcps["specialty"].astype(str).to_numpy()
    opted = context.hcps["opted_out"].astype(bool).to_numpy()
    for first in range(0, n_hcp, batch_size):
        rows = np.arange(first, min(first + batch_size, n_hcp))
        approved = np.stack([approval[s] for s in specialty[rows]]) & released[None, :]
        fresh = approved & ~engaged_before[rows].toarray() & ~received_recently[rows].toarray()
        live = fresh[:, :, None] & deliverable[None] & caps[None, None, :] & ~opted[rows, None, None]
        status = np.select(
            [
                opted[rows],
                ~caps.any() | np.zeros(len(rows), bool),
                ~approved.any(axis=1),
                ~fresh.any(axis=1),
                ~live.any(axis=(1, 2)),
            ],
            ["opted_out", "no_channel_allowed", "no_approved_content", "all_received", "no_active_campaign"],
            "",
        )
        cols = np.flatnonzero(live.any(axis=(0, 2)))
        yield rows, cols, live[:, cols, :], status


def _labels(values) -> pd.api.extensions.ExtensionArray:
    """``values`` as a pandas string array (each as ``str(value)``), for :meth:`take`."""
    return pd.array(np.asarray(values, dtype=object).astype(str), dtype="str")


def _candidate_frame(context: PlanContext, table: pd.DataFrame, slots: pd.DataFrame) -> pd.DataFrame:
    """Add hcp_id, content_id, channel, campaign_id and territory to (row, col, ch, probability) rows.

    Each label column is the ``take`` of a string array holding each label once (HCPs, items,
    channels, the slots' campaigns and "nan" for a pair without one): the same strings as
    indexing an object array and converting every row with ``astype(str)``, without a Python
    object per row (at the full scale a model's table has about 570,000 rows, and the
    evaluation builds 17 of them)."""
    n_channel = len(CHANNELS)
    table = table.sort_values(
        ["row", "ch", "probability", "col"], ascending=[True, True, False, True], kind="stable"
    ).reset_index(drop=True)
    row, col, ch = (table[c].to_numpy() for c in ("row", "col", "ch"))
    slot_keys = pd.Index(slots["col"].to_numpy() * n_channel + slots["ch"].to_numpy())
    slot = slot_keys.get_indexer(col * n_channel + ch)
    campaigns = _labels(np.append(slots["campaign_id"].to_numpy(dtype=object), np.nan))
    table["hcp_id"] = _labels(context.hcp_ids).take(row)
    table["content_id"] = _labels(context.content_ids).take(col)
    table["channel"] = _labels(CHANNELS).take(ch)
    table["campaign_id"] = campaigns.take(np.where(slot >= 0, slot, len(slots)))
    table["territory"] = _labels(context.hcps["territory"]).take(row)
    return table


def _top_per_channel(masked: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``top`` (n, min(k, n_items), n_channel) along axis 1 of the ``k`` largest values
    of ``masked`` (n, n_items, n_channel) per row and channel, best first, ties to the lower
    position (:func:`hcp_lib.models.base.stable_top`, on each (row, channel)'s items), and those
    values; excluded cells hold -inf and are dropped by the caller."""
    n, n_items, n_channel = masked.shape
    items = np.ascontiguousarray(masked.transpose(0, 2, 1)).reshape(n * n_channel, n_items)
    top = stable_top(items, k)
    value = np.take_along_axis(items, top, axis=1)
    return (
        top.reshape(n, n_channel, -1).transpose(0, 2, 1),
        value.reshape(n, n_channel, -1).transpose(0, 2, 1),
    )


def candidate_actions(
    context: PlanContext,
    score_channels: Callable,
    content_ids: Iterable[str],
    settings: PlanSettings,
    batch_size: int = HCP_BATCH,
    model: str | None = None,
) -> Candidates:
    """Eligible actions of every HCP, pruned to the ``candidates_per_channel`` best items per
    HCP and channel by the model's probability (see the module docstring for the rules).

    ``score_channels(hcp_ids)`` returns engagement probabilities (n_hcp, n_content, n_channel)
    over ``content_ids`` (which must be the catalogue, in its order) and CHANNELS; it is
    called in batches of ``batch_size`` HCPs. A NaN or infinite probability of an eligible
    action raises :class:`NonFiniteProbabilityError` naming ``model`` (for the message), the count
    and the HCP; other values outside [0, 1] raise :class:`PlanError`.
    """
    settings.validate()
    model_items = pd.Index(np.asarray(list(content_ids), dtype=object).astype(str))
    if not model_items.equals(pd.Index(context.content_ids.astype(str))):
        raise PlanError(
            f"the model scores {len(model_items)} items that are not the catalogue's "
            f"{len(context.content_ids)} in catalogue order; refit or reorder the model"
        )
    slots = action_slots(context)
    n_content, n_channel = len(context.catalogue), len(CHANNELS)
    k = min(settings.candidates_per_channel, n_content)
    frames, status, n_eligible = [], np.full(len(context.hcps), "", dtype=object), 0
    hcp_ids = context.hcp_ids.to_numpy()
    for rows, cols, live, batch_status in _eligible_batches(context, settings, batch_size):
        status[rows] = batch_status
        if not len(cols):
            continue
        probability = np.asarray(score_channels(hcp_ids[rows]), dtype=np.float64)
        if probability.shape != (len(rows), n_content, n_channel):
            raise PlanError(
                f"the model's probabilities have shape {probability.shape}; expected "
                f"{(len(rows), n_content, n_channel)} (HCPs, catalogue items, channels)"
            )
        # only the columns with an eligible action are read: the others cannot be candidates, and
        # the stable sort below orders these as it would within the whole catalogue
        probability = probability[:, cols, :]
        _check_finite_probabilities(
            probability,
            f"model {model!r}" if model else "the model's score_channels",
            "returned",
            only=live,
            labels=hcp_ids[rows],
            label_kind="HCP",
            scope=f" eligible actions of a batch of {len(rows):,} HCPs",
        )
        bad = live & ((probability < 0) | (probability > 1))
        if bad.any():
            where = np.argwhere(bad)[0]
            raise PlanError(
                f"the model's probability for HCP {hcp_ids[rows][where[0]]!r} is "
                f"{probability[tuple(where)]!r}; engagement probabilities must lie in [0, 1] "
                f"({int(bad.sum())} such values in this batch)"
            )
        n_eligible += int(live.sum())
        top, value = _top_per_channel(np.where(live, probability, -np.inf), k)
        b, rank, ch = np.nonzero(np.isfinite(value))
        frames.append(
            pd.DataFrame({"row": rows[b], "col": cols[top[b, rank, ch]], "ch": ch, "probability": value[b, rank, ch]})
        )
    table = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            {"row": np.array([], int), "col": np.array([], int), "ch": np.array([], int), "probability": np.array([])}
        )
    )
    return Candidates(
        _candidate_frame(context, table, slots), _unplanned_before_solving(context, status, settings), slots, n_eligible
    )


def usable(candidates: Candidates) -> Candidates:
    """The candidates a plan may choose: those with a positive probability (a content-only
    model's pseudo-probabilities are 0 outside its list, and such an item is not its choice)."""
    keep = candidates.table["probability"].to_numpy() > 0
    if keep.all():
        return candidates
    return Candidates(
        candidates.table[keep].reset_index(drop=True), candidates.unplanned, candidates.slots, candidates.n_eligible
    )


#: the columns of a saved candidate table (:func:`write_candidates`)
CANDIDATE_COLUMNS = ("hcp_id", "content_id", "channel", "probability")


def write_candidates(candidates: Candidates, path: str | Path, settings: PlanSettings, plan_start) -> Path:
    """Write a model's pruned candidates (:data:`CANDIDATE_COLUMNS`) to ``path`` (Parquet) and the
    rules they were made under to ``<path>.json`` (plan start and settings), so that a later
    stage can check it plans under the same rules."""
    path = Path(path)
    io.write_parquet(candidates.table.loc[:, list(CANDIDATE_COLUMNS)].reset_index(drop=True), path)
    io.write_json(
        {
            "plan_start": pd.Timestamp(plan_start).isoformat(),
            "settings": _settings_record(settings),
            "n_eligible": int(candidates.n_eligible),
        },
        path.with_suffix(".json"),
    )
    return path


def _settings_record(settings: PlanSettings) -> dict:
    record = asdict(settings)
    for how_to_solve in ("time_limit_s", "mip_rel_gap", "milp_max_candidates"):
        record.pop(how_to_solve)  # how the plan is solved does not change the candidates
    return record


def read_candidates(path: str | Path, context: PlanContext, settings: PlanSettings) -> Candidates:
    """The :class:`Candidates` written by :func:`write_candidates`, for ``context`` and
    ``settings``. Raises :class:`PlanError` when they were made for another plan start or other
    rules (naming the first setting that differs), or when a row is not an eligible action."""
    path = Path(path)
    meta = io.read_json(path.with_suffix(".json"))
    if pd.Timestamp(meta["plan_start"]) != context.plan_start:
        raise PlanError(
            f"{path}: candidates made for a plan starting {meta['plan_start']}, this plan starts "
            f"{context.plan_start.isoformat()}; rerun the notebook that wrote them"
        )
    wanted = json_round_trip(_settings_record(settings))
    for key, value in wanted.items():
        if meta["settings"].get(key) != value:
            raise PlanError(
                f"{path}: candidates made with plan setting {key}={meta['settings'].get(key)!r}, this plan "
                f"uses {value!r}; rerun the notebook that wrote them with the same plan_* parameters"
            )
    saved = io.read_parquet(path)
    missing = [c for c in CANDIDATE_COLUMNS if c not in saved.columns]
    if missing:
        raise PlanError(f"{path}: missing column {missing[0]!r}")
    probability = _check_finite_probabilities(
        saved["probability"], str(path), "holds", scope=" in column 'probability'"
    )
    table = pd.DataFrame(
        {
            "row": context.hcp_ids.get_indexer(saved["hcp_id"].astype(str)),
            "col": context.content_ids.get_indexer(saved["content_id"].astype(str)),
            "ch": pd.Index(CHANNELS).get_indexer(saved["channel"].astype(str)),
            "probability": probability,
        }
    )
    if (table[["row", "col", "ch"]] < 0).any().any():
        raise PlanError(f"{path}: a candidate names an HCP, item or channel this plan does not know")
    status = np.full(len(context.hcps), "", dtype=object)
    eligible = np.zeros(len(table), bool)
    for rows, cols, live, batch_status in _eligible_batches(context, settings):
        status[rows] = batch_status
        inside = ((table["row"] >= rows[0]) & (table["row"] <= rows[-1])).to_numpy()
        if not len(cols):  # no eligible action in the batch: its rows stay ineligible
            continue
        part = table[inside]
        col = part["col"].to_numpy()
        at = np.minimum(np.searchsorted(cols, col), len(cols) - 1)  # the column's place in ``cols``
        eligible[inside] = (cols[at] == col) & live[part["row"].to_numpy() - rows[0], at, part["ch"].to_numpy()]
    if not eligible.all():
        row, col, ch = (int(v) for v in table.loc[~eligible, ["row", "col", "ch"]].iloc[0])
        raise PlanError(
            f"{path}: candidate (HCP {context.hcp_ids[row]!r}, item {context.content_ids[col]!r}, "
            f"{CHANNELS[ch]}) is not an eligible action under this plan's rules "
            f"({int((~eligible).sum())} such rows)"
        )
    slots = action_slots(context)
    return Candidates(
        _candidate_frame(context, table, slots),
        _unplanned_before_solving(context, status, settings),
        slots,
        int(meta.get("n_eligible", 0)),
    )


def json_round_trip(value):
    """``value`` as it reads back from JSON (tuples become lists)."""
    import json

    return json.loads(json.dumps(value))


_NO_CANDIDATE_TEXT = {
    "opted_out": "opted out of promotional contact",
    "no_channel_allowed": "the per-HCP caps allow no action in this period",
    "no_approved_content": "no released item is approved for the specialty {specialty}",
    "all_received": "every approved item was engaged with before or received in the last {window} days",
    "no_active_campaign": "no campaign runs this period on the approved items not yet received",
}


def _unplanned_before_solving(context: PlanContext, status: np.ndarray, settings: PlanSettings) -> pd.DataFrame:
    rows = np.flatnonzero(status != "")
    reasons = []
    for r in rows:
        text = _NO_CANDIDATE_TEXT[status[r]].format(
            specialty=context.hcps["specialty"].iat[r], window=settings.repeat_window_days
        )
        if (
            status[r] == "opted_out"
            and "opted_out_at" in context.hcps
            and pd.notna(context.hcps["opted_out_at"].iat[r])
        ):
            text += f" (on {pd.Timestamp(context.hcps['opted_out_at'].iat[r]).date()})"
        reasons.append(text)
    return pd.DataFrame(
        {
            "hcp_id": context.hcp_ids.to_numpy()[rows].astype(str),
            "reason_code": status[rows].astype(str),
            "reason": np.asarray(reasons, dtype=object).astype(str),
        }
    )


# --- capacities and constraints ------------------------------------------------------------------


def _apportion(volume: pd.Series, total: int) -> pd.Series:
    """Integer shares of ``total`` proportional to ``volume`` (largest remainder), so that
    rounding each territory on its own does not change the channel's total."""
    if total <= 0 or volume.sum() <= 0:
        return pd.Series(0, index=volume.index, dtype=np.int64)
    exact = volume / volume.sum() * total
    share = np.floor(exact).astype(np.int64)
    extra = (exact - share).sort_values(ascending=False, kind="stable").index[: total - int(share.sum())]
    share.loc[extra] += 1
    return share


def capacity_table(context: PlanContext, settings: PlanSettings) -> pd.DataFrame:
    """Touches allowed in the period: channel, territory (``all`` for the channels without a
    territory), capacity, basis. Field channels: the parameter per territory-week × weeks when
    set, else the channel's business-as-usual volume of the last ``capacity_lookback_weeks``
    (per period, × ``capacity_scale``) shared among territories by their volume; other
    channels: that volume for the whole universe."""
    weeks = settings.period_days / 7
    lookback = context.plan_start - pd.Timedelta(weeks=settings.capacity_lookback_weeks)
    recent = context.history[context.history["exposed_at"] >= lookback]
    territory_of = context.hcps.set_index("hcp_id")["territory"]
    territories = sorted(set(context.hcps["territory"]))
    rows = []
    for channel in CHANNELS:
        on_channel = recent[recent["channel"] == channel]
        total = int(round(len(on_channel) / settings.capacity_lookback_weeks * weeks * settings.capacity_scale))
        fixed = settings.territory_capacity.get(channel)
        if channel in FIELD_CHANNELS and fixed is not None:
            per = int(np.ceil(int(fixed) * weeks))
            rows += [(channel, t, per, f"parameter: {fixed} per {settings.territory} and week") for t in territories]
        elif channel in FIELD_CHANNELS:
            volume = territory_of.reindex(on_channel["hcp_id"]).value_counts().reindex(territories, fill_value=0)
            share = _apportion(volume.astype(float), total)
            basis = f"business-as-usual volume of the last {settings.capacity_lookback_weeks} weeks x {settings.capacity_scale:g}"
            rows += [(channel, t, int(share[t]), basis) for t in territories]
        else:
            rows.append(
                (
                    channel,
                    ALL_TERRITORIES,
                    total,
                    f"business-as-usual volume of the last {settings.capacity_lookback_weeks} weeks x "
                    f"{settings.capacity_scale:g}",
                )
            )
    return pd.DataFrame(rows, columns=["channel", "territory", "capacity", "basis"]).astype(
        {"channel": str, "territory": str, "capacity": np.int64, "basis": str}
    )


@dataclass
class ConstraintFamily:
    """One family of "at most" constraints: candidate i belongs to group ``group[i]``, and
    the chosen candidates of group g number at most ``capacity[g]`` (``labels[g]`` names it)."""

    name: str
    group: np.ndarray
    capacity: np.ndarray
    labels: np.ndarray


def _family(name: str, keys: pd.Series, capacity_of: Callable[[pd.Index], np.ndarray]) -> ConstraintFamily:
    codes, uniques = pd.factorize(keys, sort=True)
    return ConstraintFamily(
        name,
        codes.astype(np.int64),
        np.asarray(capacity_of(pd.Index(uniques)), np.int64),
        np.asarray(uniques, dtype=object).astype(str),
    )


def constraint_families(
    candidates: pd.DataFrame, settings: PlanSettings, capacities: pd.DataFrame, slots: pd.DataFrame
) -> list[ConstraintFamily]:
    """The plan's constraints on ``candidates``: per HCP (``max_actions_per_hcp``), per HCP and
    channel (``hcp_caps``), per HCP and item (one channel), per channel and territory
    (``capacities``; a missing pair has capacity 0) and per campaign (``slots``' capacity)."""
    caps = {c: int(settings.hcp_caps.get(c, 0)) for c in CHANNELS}
    territory = np.where(candidates["channel"].isin(FIELD_CHANNELS), candidates["territory"], ALL_TERRITORIES)
    capacity_of = capacities.set_index(capacities["channel"] + " in " + capacities["territory"])["capacity"]
    campaign_capacity = slots.set_index("campaign_id")["capacity"]
    return [
        _family("hcp", candidates["hcp_id"], lambda u: np.full(len(u), settings.max_actions_per_hcp)),
        _family(
            "hcp_channel",
            candidates["hcp_id"] + " " + candidates["channel"],
            lambda u: np.array([caps[key.rsplit(" ", 1)[1]] for key in u]),
        ),
        _family("hcp_content", candidates["hcp_id"] + " " + candidates["content_id"], lambda u: np.ones(len(u))),
        _family(
            "channel_capacity",
            pd.Series(candidates["channel"].to_numpy() + " in " + territory),
            lambda u: capacity_of.reindex(u, fill_value=0).to_numpy(),
        ),
        _family("campaign", candidates["campaign_id"], lambda u: campaign_capacity.reindex(u, fill_value=0).to_numpy()),
    ]


# --- solvers -------------------------------------------------------------------------------------


@dataclass
class Assignment:
    """Which candidates a solver chose (``chosen``, boolean per candidate) and how: objective
    (sum of the model's probabilities of the chosen), solver, status, the relative gap to the
    solver's bound (MILP; 0 when proven optimal) and the bound, wall seconds."""

    chosen: np.ndarray
    objective: float
    solver: str
    status: str
    gap: float | None
    bound: float | None
    seconds: float


def _usage(families: list[ConstraintFamily], chosen: np.ndarray) -> list[np.ndarray]:
    return [np.bincount(f.group[chosen], minlength=len(f.capacity)) for f in families]


def check_assignment(families: list[ConstraintFamily], chosen: np.ndarray) -> None:
    """Raise :class:`PlanError` naming the first constraint the choice breaks."""
    for family, used in zip(families, _usage(families, chosen)):
        over = np.flatnonzero(used > family.capacity)
        if len(over):
            g = over[0]
            raise PlanError(
                f"constraint {family.name} {family.labels[g]!r}: {used[g]} chosen, capacity {family.capacity[g]}"
            )


def solve_milp(
    probability: np.ndarray,
    families: list[ConstraintFamily],
    time_limit_s: float = 60.0,
    mip_rel_gap: float = 1e-4,
    max_candidates: int | None = None,
    prove_gap: bool = True,
) -> Assignment:
    """Maximise sum(probability[i] · x[i]) over binary x under every family's capacities with
    ``scipy.optimize.milp`` (HiGHS). Rows whose group cannot exceed its capacity anyway are left
    out (they cannot bind). When HiGHS returns no solution (e.g. the time limit hits before
    the first feasible point), the greedy assignment is returned and the status says so.

    HiGHS runs without its presolve (see the call), which made the full scale's ~570,000
    candidates solvable to proven optimality in about 30 s (with it, the set-up alone ran for
    over 20 minutes without checking the time limit). With more than ``max_candidates``
    candidates the greedy assignment is returned, its status naming the count. Whenever greedy
    stands in, its gap is still proven: ``bound`` is the linear relaxation's optimum
    (:func:`lp_bound`) and ``gap`` the greedy plan's relative distance to it, an upper bound on
    its distance to the optimum (``prove_gap=False`` skips the bound: about 25 s at the full
    scale's size). A NaN or infinite probability raises
    :class:`NonFiniteProbabilityError` (the solver would otherwise take it first, or fail)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    started = time.perf_counter()
    probability = _check_finite_probabilities(probability, "solve_milp", "was given", "candidate probability")
    n = len(probability)
    if n == 0:
        return Assignment(np.zeros(0, bool), 0.0, "milp", "no candidates", 0.0, 0.0, 0.0)
    if max_candidates is not None and n > max_candidates:
        return _bounded_greedy(
            probability,
            families,
            f"greedy: {n:,} candidates exceed plan_milp_max_candidates={max_candidates:,}",
            time_limit_s if prove_gap else None,
            started,
        )
    matrix, upper = _constraint_rows(families, n)
    constraints = [LinearConstraint(matrix, -np.inf, upper)] if matrix is not None else []
    result = milp(
        -np.asarray(probability, float),
        constraints=constraints,
        integrality=np.ones(n),
        bounds=Bounds(0, 1),
        # presolve off: HiGHS's MIP presolve (its clique detection on the per-HCP and per-item
        # rows) was 85-90% of every solve and does not check the time limit, while these programs'
        # linear relaxations are integral or nearly so, so the root LP already is the optimum.
        # Measured on the 17 plans of notebook 06 at small: 53 s of solving became 8 s, every
        # objective the same to 1e-9; 1.44M candidates (100,000 HCPs) were solved to proven
        # optimality in 210 s, 570,000 (the full scale's size) in 30 s (benchmarks/bench_plan.py)
        options={"time_limit": time_limit_s, "mip_rel_gap": mip_rel_gap, "disp": False, "presolve": False},
    )
    if result.x is None:
        return _bounded_greedy(
            probability,
            families,
            f"milp found no solution ({result.message.strip()}); greedy used",
            time_limit_s,
            started,
        )
    chosen = result.x > 0.5
    check_assignment(families, chosen)
    objective = float(np.asarray(probability)[chosen].sum())
    bound = -float(result.mip_dual_bound) if getattr(result, "mip_dual_bound", None) is not None else None
    gap = float(result.mip_gap) if getattr(result, "mip_gap", None) is not None else None
    status = "optimal" if result.status == 0 else result.message.strip()
    return Assignment(chosen, objective, "milp", status, gap, bound, time.perf_counter() - started)


def _constraint_rows(families: list[ConstraintFamily], n: int) -> tuple[sp.csr_matrix | None, np.ndarray]:
    """The program's constraint rows ``A x <= upper`` over ``n`` candidates: one row per group
    of a family that could exceed its capacity (the others cannot bind and are left out);
    ``(None, empty)`` when no row can bind."""
    blocks, upper = [], []
    for family in families:
        size = np.bincount(family.group, minlength=len(family.capacity))
        binding = np.flatnonzero(size > family.capacity)
        if not len(binding):
            continue
        row_of = np.full(len(family.capacity), -1)
        row_of[binding] = np.arange(len(binding))
        member = np.flatnonzero(row_of[family.group] >= 0)
        blocks.append(
            sp.csr_matrix((np.ones(len(member)), (row_of[family.group[member]], member)), shape=(len(binding), n))
        )
        upper.append(family.capacity[binding].astype(float))
    if not blocks:
        return None, np.zeros(0)
    return sp.vstack(blocks).tocsr(), np.concatenate(upper)


def lp_bound(probability: np.ndarray, families: list[ConstraintFamily], time_limit_s: float = 60.0) -> float | None:
    """An upper bound on the best plan's objective: the optimum of the linear relaxation (the
    same program with 0 <= x <= 1 instead of binary x), solved by ``scipy.optimize.linprog``
    (HiGHS). No plan can expect more, so ``(bound - objective) / bound`` is a proven bound on
    any plan's relative gap to the optimum. None when the solver stops without an optimum
    (e.g. at ``time_limit_s``)."""
    from scipy.optimize import linprog

    probability = _check_finite_probabilities(probability, "lp_bound", "was given", "candidate probability")
    if len(probability) == 0:
        return 0.0
    matrix, upper = _constraint_rows(families, len(probability))
    result = linprog(
        -np.asarray(probability, float),
        A_ub=matrix,
        b_ub=upper if matrix is not None else None,
        bounds=(0, 1),
        method="highs",
        options={"time_limit": time_limit_s, "disp": False},
    )
    return -float(result.fun) if result.status == 0 else None


def _bounded_greedy(
    probability: np.ndarray, families: list[ConstraintFamily], status: str, time_limit_s: float | None, started: float
) -> Assignment:
    """The greedy assignment when the MILP is not used, with a proven gap: its distance to the
    linear relaxation's bound (:func:`lp_bound`, given ``time_limit_s``; None: no bound is
    sought), in ``gap`` and ``bound``, and in the status."""
    fallback = solve_greedy(probability, families)
    if time_limit_s is not None:
        bound = lp_bound(probability, families, time_limit_s)
        if bound is not None and bound > 0:
            fallback.bound = bound
            fallback.gap = max(0.0, (bound - fallback.objective) / bound)
            status += f"; within {fallback.gap:.2%} of the optimum (linear-relaxation bound {bound:,.5g})"
        else:
            status += "; no bound (the linear relaxation did not solve within the time limit)"
    fallback.status = status
    fallback.seconds = time.perf_counter() - started
    return fallback


def solve_greedy(probability: np.ndarray, families: list[ConstraintFamily]) -> Assignment:
    """Take candidates in order of decreasing probability (ties: earlier candidate first) when
    every constraint still has room — the usual hand-written heuristic, kept as the comparison.
    A NaN or infinite probability raises :class:`NonFiniteProbabilityError` rather than being
    taken first."""
    started = time.perf_counter()
    probability = _check_finite_probabilities(probability, "solve_greedy", "was given", "candidate probability")
    left = [f.capacity.copy() for f in families]
    groups = np.column_stack([f.group for f in families]) if families else np.zeros((len(probability), 0), int)
    chosen = np.zeros(len(probability), bool)
    # a plain loop: each decision depends on the capacities the previous ones used up
    for i in np.argsort(-np.asarray(probability, float), kind="stable"):
        g = groups[i]
        if all(left[j][g[j]] > 0 for j in range(len(families))):
            chosen[i] = True
            for j in range(len(families)):
                left[j][g[j]] -= 1
    return Assignment(
        chosen,
        float(np.asarray(probability)[chosen].sum()),
        "greedy",
        "heuristic",
        None,
        None,
        time.perf_counter() - started,
    )


# --- the plan: timing, reasons, CRM table -------------------------------------------------------------


def timing_preferences(history: pd.DataFrame) -> pd.DataFrame:
    """Per (hcp_id, channel) the weekday (0 = Monday) and hour of the HCP's engaged exposures
    most often seen (ties: earliest), plus rows with hcp_id ``*`` for each channel's population
    habit (fallback for HCPs who never engaged on it)."""
    engaged = history[history["engaged"].astype(bool)]
    frame = pd.DataFrame(
        {
            "hcp_id": engaged["hcp_id"].astype(str),
            "channel": engaged["channel"].astype(str),
            "weekday": engaged["exposed_at"].dt.dayofweek,
            "hour": engaged["exposed_at"].dt.hour,
        }
    )
    everyone = frame.assign(hcp_id="*")
    out = []
    for part in (frame, everyone):
        for what in ("weekday", "hour"):
            counts = part.groupby(["hcp_id", "channel", what]).size().rename("n").reset_index()
            counts = counts.sort_values(
                ["hcp_id", "channel", "n", what], ascending=[True, True, False, True], kind="stable"
            ).drop_duplicates(["hcp_id", "channel"])
            out.append(counts.drop(columns="n").set_index(["hcp_id", "channel"]))
    personal = pd.concat(out[:2], axis=1)
    population = pd.concat(out[2:], axis=1)
    return pd.concat([personal, population]).reset_index()


def _schedule(actions: pd.DataFrame, slots: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """suggested_date, time_window and expires_at of each action (see :func:`make_plan`)."""
    habits = timing_preferences(history).set_index(["hcp_id", "channel"])
    personal = habits.reindex(pd.MultiIndex.from_frame(actions[["hcp_id", "channel"]]))
    population = habits.reindex(pd.MultiIndex.from_arrays([np.full(len(actions), "*"), actions["channel"]]))
    weekday = personal["weekday"].fillna(pd.Series(population["weekday"].to_numpy(), index=personal.index)).fillna(1)
    hour = personal["hour"].fillna(pd.Series(population["hour"].to_numpy(), index=personal.index)).fillna(10)
    weekday, hour = weekday.to_numpy(int), hour.to_numpy(int).clip(0, 24 - TIME_WINDOW_HOURS)
    slot = slots.set_index(["col", "ch"]).reindex(pd.MultiIndex.from_frame(actions[["col", "ch"]]))
    start = slot["available_from"].to_numpy(dtype="datetime64[us]")
    until = slot["available_until"].to_numpy(dtype="datetime64[us]")
    shift = (weekday - pd.DatetimeIndex(start).dayofweek.to_numpy()) % 7
    day = start + shift.astype("timedelta64[D]")
    day = np.where(day < until, day, start)
    session = slot["session_at"].to_numpy(dtype="datetime64[us]")
    is_session = ~np.isnat(session)
    day = np.where(is_session, session.astype("datetime64[D]").astype("datetime64[us]"), day)
    session_hour = pd.DatetimeIndex(session[is_session]).hour.to_numpy() if is_session.any() else np.array([], int)
    hour[is_session] = np.where(session_hour > 0, session_hour, hour[is_session])
    expires = np.where(is_session, day + (hour + TIME_WINDOW_HOURS).astype("timedelta64[h]"), until)
    return pd.DataFrame(
        {
            "suggested_date": pd.DatetimeIndex(day).strftime("%Y-%m-%d"),
            "time_window": [f"{h:02d}:00-{h + TIME_WINDOW_HOURS:02d}:00" for h in hour],
            "expires_at": pd.DatetimeIndex(expires).astype("datetime64[us]"),
        },
        index=actions.index,
    )


def evidence(context: PlanContext, settings: PlanSettings) -> reasons_engine.Evidence:
    """The :class:`hcp_lib.reasons.Evidence` of a plan: the context's exposures before
    ``plan_start``, catalogue, HCP master, item topics and labels, and the settings'
    ``interest_window_days``."""
    return reasons_engine.make_evidence(
        context.history,
        context.catalogue,
        context.hcps,
        context.plan_start,
        settings.interest_window_days,
        context.item_topic,
        context.topic_labels,
    )


def reason_table(actions: pd.DataFrame, context: PlanContext, settings: PlanSettings) -> pd.DataFrame:
    """Every reason of every action (action_id, reason_code, reason, evidence_count,
    evidence_date, evidence_ids), from the project's one reasons engine
    (:func:`hcp_lib.reasons.reason_table`, whose docstring states the rules) with the
    action's ``priority_score`` as the model's estimate."""
    return reasons_engine.reason_table(
        actions, evidence(context, settings), key="action_id", probability="priority_score"
    )


@dataclass
class Plan:
    """A built plan: ``actions`` (the CRM table, :data:`PLAN_COLUMNS`), ``reasons``
    (:func:`reason_table`), ``unplanned`` (hcp_id, reason_code, reason — every HCP of the
    master without an action, with why), ``capacities`` (with ``used``), the solver's
    :class:`Assignment` and the candidates it chose from."""

    actions: pd.DataFrame
    reasons: pd.DataFrame
    unplanned: pd.DataFrame
    capacities: pd.DataFrame
    assignment: Assignment
    candidates: Candidates


def _blocked(
    chosen_table: pd.DataFrame,
    candidates: pd.DataFrame,
    families: list[ConstraintFamily],
    chosen: np.ndarray,
    hcp_ids: np.ndarray,
) -> pd.DataFrame:
    """Why HCPs with candidates got nothing: the full constraints their candidates hit."""
    full = [used >= f.capacity for f, used in zip(families, _usage(families, chosen))]
    reasons = []
    # each HCP's candidate rows, found in one pass (a scan per HCP was quadratic: minutes at full scale)
    index = candidates.groupby(candidates["hcp_id"].to_numpy(), sort=False).indices
    none = np.zeros(0, dtype=np.int64)
    for hcp in hcp_ids:
        hit = sorted(
            {
                f"{f.name.replace('_', ' ')} {f.labels[f.group[i]]} ({f.capacity[f.group[i]]} available)"
                for i in index.get(hcp, none)
                for f, is_full in zip(families, full)
                if f.name not in ("hcp", "hcp_channel", "hcp_content") and is_full[f.group[i]]
            }
        )
        reasons.append(
            ("capacity_exhausted", "capacity used up by higher-priority actions: " + "; ".join(hit))
            if hit
            else ("not_selected", "not selected by the solver within its time limit")
        )
    return pd.DataFrame(
        {
            "hcp_id": np.asarray(hcp_ids, dtype=object).astype(str),
            "reason_code": [r[0] for r in reasons],
            "reason": [r[1] for r in reasons],
        }
    )


def make_plan(
    context: PlanContext,
    candidates: Candidates,
    assignment: Assignment,
    families: list[ConstraintFamily],
    capacities: pd.DataFrame,
    settings: PlanSettings,
    model_name: str,
) -> Plan:
    """The CRM table of the chosen candidates, their reasons and the HCPs left out.

    Per action: ``action_rank`` 1..n within the HCP by decreasing ``priority_score`` (the
    model's engagement probability); ``suggested_date``: webinars on their session, other
    channels on the first day of the campaign's window in the period that falls on the
    weekday the HCP engaged on most via that channel (else the channel's usual weekday
    across HCPs); ``time_window``: two hours from the HCP's usual hour on that channel (same
    fallback); ``expires_at``: the end of the webinar's session window, else the end of the
    campaign's window in the period.
    """
    table = candidates.table
    chosen = table[assignment.chosen].copy()
    chosen = chosen.sort_values(["row", "probability", "ch"], ascending=[True, False, True], kind="stable")
    chosen["action_rank"] = chosen.groupby("row").cumcount() + 1
    chosen["action_id"] = [f"{context.plan_id}-{i:06d}" for i in range(1, len(chosen) + 1)]
    chosen["priority_score"] = chosen["probability"].astype(float)
    chosen = chosen.reset_index(drop=True)
    schedule = _schedule(chosen, candidates.slots, context.history)
    reasons = (
        reason_table(chosen, context, settings)
        if len(chosen)
        else pd.DataFrame(
            columns=["action_id", "reason_code", "reason", "evidence_count", "evidence_date", "evidence_ids"]
        )
    )
    joined = reasons.groupby("action_id").agg(reasons=("reason", " | ".join), reason_codes=("reason_code", "; ".join))
    titles = context.catalogue.set_index("content_id")["title"]
    people = context.hcps.set_index("hcp_id")
    actions = pd.DataFrame(
        {
            "plan_id": context.plan_id,
            "action_id": chosen["action_id"],
            "hcp_id": chosen["hcp_id"],
            "synthetic_hcp": True,
            "specialty": people["specialty"].reindex(chosen["hcp_id"]).astype(str).to_numpy(),
            "territory": chosen["territory"],
            "action_rank": chosen["action_rank"].astype(np.int64),
            "content_id": chosen["content_id"],
            "content_title": titles.reindex(chosen["content_id"]).astype(str).to_numpy(),
            "channel": chosen["channel"],
            "campaign_id": chosen["campaign_id"],
            **schedule,
            "priority_score": chosen["priority_score"],
            "reasons": joined["reasons"].reindex(chosen["action_id"]).to_numpy(),
            "reason_codes": joined["reason_codes"].reindex(chosen["action_id"]).to_numpy(),
            "model": model_name,
            "solver": assignment.solver,
        }
    )
    actions = actions.astype(
        {c: str for c in PLAN_COLUMNS if c not in ("synthetic_hcp", "action_rank", "priority_score", "expires_at")}
        | {"synthetic_hcp": bool, "action_rank": np.int64, "priority_score": float, "expires_at": "datetime64[us]"}
    )
    actions = io.validate(actions[list(PLAN_COLUMNS)], PLAN_SCHEMA, "plan")
    with_candidates = set(table["hcp_id"])
    left_out = sorted(with_candidates - set(actions["hcp_id"]))
    unplanned = pd.concat(
        [
            candidates.unplanned,
            _blocked(chosen, table, families, assignment.chosen, np.asarray(left_out, dtype=object)),
        ],
        ignore_index=True,
    )
    order = context.hcp_ids.get_indexer(unplanned["hcp_id"])
    unplanned = unplanned.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    used = _usage(families, assignment.chosen)[[f.name for f in families].index("channel_capacity")]
    family = families[[f.name for f in families].index("channel_capacity")]
    used_of = pd.Series(used, index=family.labels)
    capacities = capacities.assign(
        used=used_of.reindex(capacities["channel"] + " in " + capacities["territory"], fill_value=0).to_numpy(np.int64)
    )
    return Plan(actions, reasons, unplanned, capacities, assignment, candidates)


def build_plan(
    context: PlanContext,
    score_channels: Callable,
    content_ids: Iterable[str],
    settings: PlanSettings,
    model_name: str,
    solver: str = "milp",
) -> Plan:
    """Candidates, capacities, constraints, the ``solver``'s ('milp' or 'greedy') assignment
    and :func:`make_plan`, in one call."""
    if solver not in ("milp", "greedy"):
        raise PlanError(f"solver {solver!r}: expected 'milp' or 'greedy'")
    candidates = candidate_actions(context, score_channels, content_ids, settings)
    capacities = capacity_table(context, settings)
    families = constraint_families(candidates.table, settings, capacities, candidates.slots)
    probability = candidates.table["probability"].to_numpy()
    assignment = (
        solve_milp(probability, families, settings.time_limit_s, settings.mip_rel_gap, settings.milp_max_candidates)
        if solver == "milp"
        else solve_greedy(probability, families)
    )
    return make_plan(context, candidates, assignment, families, capacities, settings, model_name)


# --- where the probabilities come from -----------------------------------------------------------------


def candidates_path(run_dir: str | Path, model: str) -> Path:
    """Where notebook 06 writes a model's plan candidates: ``evaluation/plan_candidates/<model>.parquet``."""
    return RunDir(Path(run_dir)).evaluation / "plan_candidates" / f"{model}.parquet"


def chosen_model(run_dir: str | Path, choice: str = "auto") -> tuple[str, str]:
    """(model, why) the plan is built from: with ``choice='auto'`` the engagement model the
    validation window ranks best (``selection`` in ``evaluation/metrics.json``), else the model
    named. Raises :class:`PlanError` when notebook 06 has not run or the model has no saved
    candidates, naming the models that have."""
    metrics_path = RunDir(Path(run_dir)).evaluation / "metrics.json"
    if not metrics_path.exists():
        raise PlanError(
            f"{metrics_path}: missing (run notebook 06 first: it chooses the model and writes each model's "
            "plan candidates)"
        )
    report = io.read_json(metrics_path)
    folder = candidates_path(run_dir, "x").parent
    available = sorted(p.stem for p in folder.glob("*.parquet"))
    if choice == "auto":
        selection = report.get("selection") or {}
        model = selection.get("chosen")
        if model is None:
            raise PlanError(
                f"{metrics_path}: no engagement model was chosen on the validation window; set plan_model to "
                f"one of {', '.join(available)}"
            )
        losses = selection["validation_log_loss"]
        why = (
            f"the lowest validation log-loss ({losses[model]:.4f}; "
            + ", ".join(f"{m} {v:.4f}" for m, v in losses.items() if m != model)
            + ")"
        )
    else:
        model, why = choice, "named by the plan_model parameter"
    if model not in available:
        raise PlanError(
            f"parameter 'plan_model': no plan candidates for model {model!r} in {folder}; available: "
            f"{', '.join(available) or 'none (run notebook 06)'}"
        )
    return model, why


def matrix_scorer(matrix: np.ndarray, hcp_ids: Iterable[str]) -> Callable:
    """A ``score_channels`` callable over a precomputed (n_hcp, n_content, n_channel) array whose
    rows follow ``hcp_ids`` (e.g. the oracle, to measure the best plan under the same rules)."""
    index = pd.Index(np.asarray(list(hcp_ids), dtype=object).astype(str))

    def score(ids):
        rows = index.get_indexer(pd.Index(np.asarray(list(ids), dtype=object).astype(str)))
        if (rows < 0).any():
            raise PlanError(f"HCP id {np.asarray(list(ids))[rows < 0][0]!r} is not a row of the matrix")
        return matrix[rows]

    return score


# --- measured value (truth used here only) -------------------------------------------------------------


def unconstrained_top1(candidates: Candidates) -> pd.DataFrame:
    """Each HCP's single best candidate by the model (no caps, no capacities): hcp_id,
    content_id, channel, probability, plus row/col/ch/campaign_id/territory."""
    table = candidates.table
    return (
        table.sort_values(["row", "probability", "ch"], ascending=[True, False, True], kind="stable")
        .drop_duplicates("row")
        .reset_index(drop=True)
    )


def logged_actions(interactions: pd.DataFrame, hcp_ids: Iterable[str], start, end) -> pd.DataFrame:
    """The business-as-usual touches logged in ``[start, end)`` for ``hcp_ids``: hcp_id,
    content_id, channel (measurement only: this is the future of the plan's start)."""
    rows = interactions[
        (interactions["exposed_at"] >= pd.Timestamp(start)) & (interactions["exposed_at"] < pd.Timestamp(end))
    ]
    rows = rows[rows["hcp_id"].astype(str).isin(set(map(str, hcp_ids)))]
    return pd.DataFrame(
        {
            "hcp_id": rows["hcp_id"].astype(str).to_numpy(),
            "content_id": rows["content_id"].astype(str).to_numpy(),
            "channel": rows["channel"].astype(str).to_numpy(),
        }
    )


def true_probabilities(
    actions: pd.DataFrame, truth: np.ndarray, hcp_ids: Iterable[str], content_ids: Iterable[str]
) -> np.ndarray:
    """The truth's probability of each (hcp_id, content_id, channel) row; ``truth`` is
    (n_hcp, n_content, n_channel) over ``hcp_ids``, ``content_ids`` and CHANNELS."""
    rows = pd.Index(np.asarray(list(hcp_ids), dtype=object).astype(str)).get_indexer(actions["hcp_id"].astype(str))
    cols = pd.Index(np.asarray(list(content_ids), dtype=object).astype(str)).get_indexer(
        actions["content_id"].astype(str)
    )
    chans = pd.Index(CHANNELS).get_indexer(actions["channel"].astype(str))
    if (rows < 0).any() or (cols < 0).any() or (chans < 0).any():
        raise PlanError("an action names an HCP, item or channel outside the truth matrix")
    return truth[rows, cols, chans]


def policy_comparison(
    policies: dict[str, pd.DataFrame],
    truth: np.ndarray,
    hcp_ids: Iterable[str],
    content_ids: Iterable[str],
    reference: str | None = None,
) -> pd.DataFrame:
    """One row per policy: touches (in total and per channel), HCPs reached, expected
    engagements (sum of the truth's probabilities of its touches), expected engagements per
    touch and, with ``reference``, the share of that policy's expected engagements."""
    hcp_ids = list(hcp_ids)
    content_ids = list(content_ids)
    rows = []
    for name, actions in policies.items():
        value = true_probabilities(actions, truth, hcp_ids, content_ids) if len(actions) else np.zeros(0)
        counts = actions["channel"].value_counts().reindex(list(CHANNELS), fill_value=0)
        rows.append(
            {
                "policy": name,
                "touches": len(actions),
                "hcps_reached": actions["hcp_id"].nunique(),
                **{f"touches_{c}": int(counts[c]) for c in CHANNELS},
                "expected_engagements": float(value.sum()),
                "per_touch": float(value.mean()) if len(value) else float("nan"),
            }
        )
    table = pd.DataFrame(rows).set_index("policy")
    if reference is not None:
        table[f"share_of_{reference}"] = table["expected_engagements"] / table.loc[reference, "expected_engagements"]
    return table


# --- export ------------------------------------------------------------------------------------------


def write_plan(plan: Plan, run_dir: str | Path, summary: dict) -> dict[str, Path]:
    """Write ``plan/plan.parquet`` and ``plan/plan.csv`` (the CRM import, :data:`PLAN_COLUMNS`),
    ``plan/reasons.parquet``, ``plan/unplanned.parquet``, ``plan/capacities.parquet`` and
    ``metrics/plan.json`` (``summary``); the table is validated before anything is written."""
    run = RunDir(Path(run_dir))
    folder = run.plan
    actions = io.validate(plan.actions, PLAN_SCHEMA, folder / "plan.parquet")
    return {
        "plan": io.write_parquet(actions, folder / "plan.parquet", PLAN_SCHEMA),
        "csv": io.write_csv(actions, folder / "plan.csv"),
        "reasons": io.write_parquet(plan.reasons, folder / "reasons.parquet"),
        "unplanned": io.write_parquet(plan.unplanned, folder / "unplanned.parquet"),
        "capacities": io.write_parquet(plan.capacities, folder / "capacities.parquet"),
        "summary": io.write_json(summary, run.metrics / "plan.json"),
    }
