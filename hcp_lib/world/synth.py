"""The synthetic HCP engagement world, with its planted and saved ground truth.

:func:`generate_world` makes a world from articles; :func:`write_world` writes it under
``RunDir(run_dir).world`` (chapter 2's stage, :func:`hcp_lib.stages.synthesis.build_world`,
reads the run's articles and calls both):

- ``hcp_master.parquet``, ``patients_with_hcp.parquet``, ``campaigns_with_content.parquet``,
  ``campaigns.parquet``, ``hcp_interaction_data.parquet`` (the exposure log), each
  validated by the pandera schema of the same name below;
- the truth: ``truth_hcp_latent.parquet`` (theme affinities, channel preferences),
  ``truth_content_latent.parquet`` (theme mixes from TF-IDF + NMF of the article text,
  appeal), ``truth_hcp_state_at_cutoff.parquet`` (each HCP's state at ``test_start``) and
  ``world_params.json`` (every parameter, the suggested validation/test split, the theme
  terms);
- optionally ``csv/<table>.csv`` (``export_csv``).

Entities are made in :mod:`hcp_lib.world.entities`, the engagement model lives in
:mod:`hcp_lib.world.behaviour`, the BAU policy and the day loop in :mod:`hcp_lib.world.simulate`.
The oracle is :func:`true_engagement_prob` / :func:`true_engagement_matrix`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .. import config, domain, io, metrics
from . import behaviour, entities, simulate
from .behaviour import ExposureLog, TruthModel
from .entities import AREAS, CHANNELS, CONTENT_TYPES, SETTINGS, SPECIALTY_KEYS

PARAM_NAMES = (
    "n_hcps",
    "horizon_days",
    "world_start",
    "world_holdout_weeks",
    "touches_per_hcp_week",
    "n_themes",
    "patients_per_hcp",
    "hcps_per_peer_group",
    "opt_out_rate",
    "base_rate_email",
    "base_rate_webinar",
    "base_rate_rep_visit",
    "base_rate_in_person_meeting",
    "base_rate_conference_event",
    "interest_strength",
    "interest_drift",
    "fatigue_window_days",
    "fatigue_free_touches",
    "fatigue_per_touch",
    "channel_saturation",
    "channel_recovery_days",
    "series_followup_lift",
    "recency_boost",
    "recency_half_life_days",
    "seen_penalty",
    "consumed_penalty",
    "approval_min_relevance",
    "export_csv",
)
TABLE_FILES = {
    "hcps": "hcp_master.parquet",
    "patients": "patients_with_hcp.parquet",
    "content": "campaigns_with_content.parquet",
    "campaigns": "campaigns.parquet",
    "interactions": "hcp_interaction_data.parquet",
}
TRUTH_FILES = {
    "hcp_latent": "truth_hcp_latent.parquet",
    "content_latent": "truth_content_latent.parquet",
    "state_at_cutoff": "truth_hcp_state_at_cutoff.parquet",
    "params": "world_params.json",
}
_HCP_ID = pa.Check.str_matches(domain.HCP_ID_PATTERN)
_TIMESTAMP = "datetime64[us]"

HCP_SCHEMA = pa.DataFrameSchema(
    {
        "hcp_id": pa.Column(str, _HCP_ID, unique=True),
        "first_name": pa.Column(str),
        "last_name": pa.Column(str),
        "credential": pa.Column(str, pa.Check.isin(["MD", "DO"])),
        "specialty": pa.Column(str, pa.Check.isin(SPECIALTY_KEYS)),
        "taxonomy_code": pa.Column(str, pa.Check.isin([code for _, code in domain.SPECIALTIES.values()])),
        "state": pa.Column(str, pa.Check.str_matches(r"^[A-Z]{2}$")),
        "city": pa.Column(str),
        "zip": pa.Column(str, pa.Check.str_matches(r"^\d{5}$")),
        "region": pa.Column(str, pa.Check.isin(["Northeast", "Midwest", "South", "West"])),
        "practice_setting": pa.Column(str, pa.Check.isin(SETTINGS)),
        "years_in_practice": pa.Column("int64", pa.Check.ge(0)),
        "age": pa.Column("int64", pa.Check.in_range(25, 90)),
        "prescribing_decile": pa.Column("int64", pa.Check.in_range(1, 10)),
        "digital_affinity": pa.Column(float, pa.Check.in_range(0, 1)),
        "peer_group": pa.Column(str),
        "health_system": pa.Column(str),
        "opted_out": pa.Column(bool),
        "opted_out_at": pa.Column(_TIMESTAMP, nullable=True, coerce=True),
    },
    name="hcp_master",
    strict=True,
    ordered=True,
)

PATIENT_SCHEMA = pa.DataFrameSchema(
    {
        "patient_id": pa.Column(str, unique=True),
        "hcp_id": pa.Column(str, _HCP_ID),
        "age": pa.Column("int64", pa.Check.in_range(0, 110)),
        "sex": pa.Column(str, pa.Check.isin(["F", "M"])),
        "conditions": pa.Column(str, pa.Check.str_length(min_value=1)),
        "primary_area": pa.Column(str, pa.Check.isin(AREAS)),
        "state": pa.Column(str, pa.Check.str_matches(r"^[A-Z]{2}$")),
    },
    name="patients_with_hcp",
    strict=True,
    ordered=True,
)

CONTENT_SCHEMA = pa.DataFrameSchema(
    {
        "content_id": pa.Column(str, pa.Check.str_matches(r"^\d{1,9}$"), unique=True),
        "pmid": pa.Column(str),
        "title": pa.Column(str),
        "therapeutic_area": pa.Column(str, pa.Check.isin(AREAS)),
        "content_type": pa.Column(str, pa.Check.isin(CONTENT_TYPES)),
        "release_date": pa.Column(_TIMESTAMP, coerce=True),
        "approved_specialties": pa.Column(str, pa.Check.str_length(min_value=1)),
        "series_id": pa.Column(str, nullable=True),
        "series_part": pa.Column("Int64", pa.Check.ge(1), nullable=True),
        "has_abstract": pa.Column(bool),
    },
    name="campaigns_with_content",
    strict=True,
    ordered=True,
    checks=pa.Check(lambda df: (df["content_id"] == df["pmid"]).all(), error="content_id equals pmid"),
)

CAMPAIGN_SCHEMA = pa.DataFrameSchema(
    {
        "campaign_id": pa.Column(str, unique=True),
        "content_id": pa.Column(str),
        "channel": pa.Column(str, pa.Check.isin(CHANNELS)),
        "target_segment": pa.Column(str),
        "start_date": pa.Column(_TIMESTAMP, coerce=True),
        "end_date": pa.Column(_TIMESTAMP, coerce=True),
        "capacity_per_week": pa.Column("int64", pa.Check.ge(1)),
        "cost_per_touch": pa.Column(float, pa.Check.gt(0)),
    },
    name="campaigns",
    strict=True,
    ordered=True,
    checks=pa.Check(lambda df: (df["end_date"] > df["start_date"]).all(), error="end_date after start_date"),
)

INTERACTION_SCHEMA = pa.DataFrameSchema(
    {
        "exposure_id": pa.Column("int64", unique=True),
        "hcp_id": pa.Column(str, _HCP_ID),
        "content_id": pa.Column(str),
        "campaign_id": pa.Column(str),
        "channel": pa.Column(str, pa.Check.isin(CHANNELS)),
        "exposed_at": pa.Column(_TIMESTAMP, coerce=True),
        "propensity": pa.Column(float, [pa.Check.gt(0), pa.Check.le(1)]),
        "opened": pa.Column(bool),
        "clicked": pa.Column(bool),
        "dwell_seconds": pa.Column(float, pa.Check.ge(0)),
        "converted": pa.Column(bool),
        "engagement_score": pa.Column(float, pa.Check.in_range(0, 1)),
        "engaged": pa.Column(bool),
        "true_engagement_prob": pa.Column(float, pa.Check.in_range(0, 1)),
    },
    name="hcp_interaction_data",
    strict=True,
    ordered=True,
)

SCHEMAS = {
    "hcps": HCP_SCHEMA,
    "patients": PATIENT_SCHEMA,
    "content": CONTENT_SCHEMA,
    "campaigns": CAMPAIGN_SCHEMA,
    "interactions": INTERACTION_SCHEMA,
}


@dataclass
class World:
    """A synthetic world: its tables, its parameters and its latent truth."""

    hcps: pd.DataFrame
    patients: pd.DataFrame
    content: pd.DataFrame
    campaigns: pd.DataFrame
    interactions: pd.DataFrame
    params: dict[str, Any]
    model: TruthModel
    _log: ExposureLog | None = field(default=None, repr=False)

    @property
    def horizon_start(self) -> pd.Timestamp:
        return pd.Timestamp(self.params["horizon_start"])

    @property
    def horizon_end(self) -> pd.Timestamp:
        """End of the simulated period (exclusive)."""
        return pd.Timestamp(self.params["horizon_end"])

    @property
    def validation_start(self) -> pd.Timestamp:
        """Suggested start of the validation period (``world_holdout_weeks`` before ``test_start``)."""
        return pd.Timestamp(self.params["validation_start"])

    @property
    def test_start(self) -> pd.Timestamp:
        """Suggested start of the test period (the last ``world_holdout_weeks`` of the horizon)."""
        return pd.Timestamp(self.params["test_start"])

    @property
    def hcp_index(self) -> pd.Index:
        return pd.Index(self.hcps["hcp_id"].astype(str))

    @property
    def content_index(self) -> pd.Index:
        return pd.Index(self.content["content_id"].astype(str))

    @property
    def log(self) -> ExposureLog:
        """The exposure log as index arrays (built once)."""
        if self._log is None:
            inter = self.interactions
            self._log = ExposureLog.from_arrays(
                self.hcp_index.get_indexer(inter["hcp_id"].astype(str)),
                self.content_index.get_indexer(inter["content_id"].astype(str)),
                pd.Index(CHANNELS).get_indexer(inter["channel"].astype(str)),
                self.minutes(inter["exposed_at"]).astype(np.int64),
                inter["engaged"].to_numpy(bool),
            )
        return self._log

    def minutes(self, times: Any) -> np.ndarray:
        """Minutes since the horizon start (float) of timestamps."""
        stamps = pd.to_datetime(pd.Series(np.atleast_1d(np.asarray(times, dtype=object))))
        return ((stamps - self.horizon_start) / pd.Timedelta(minutes=1)).to_numpy(dtype=float)


def synthesis_params(**overrides: Any) -> dict[str, Any]:
    """The 02_synthesis parameters at their ``small`` defaults, with ``overrides`` applied, validated.

    Each value is checked by its :class:`hcp_lib.config.Param` (range, type), then the
    horizon against the held-out weeks (:func:`hcp_lib.config.check_world_dates`); a problem raises :class:`hcp_lib.config.ParameterError`.
    Use ``synthesis_params(**config.resolve_parameters(scale=...))`` for another preset's defaults.
    """
    unknown = sorted(set(overrides) - set(PARAM_NAMES) - set(config.RUNNER_PARAMS))
    if unknown:
        raise config.ParameterError(f"unknown synthesis parameter {unknown[0]!r}; known: {', '.join(PARAM_NAMES)}")
    values = {
        name: config.PARAMS[name].coerce(overrides.get(name, config.PARAMS[name].default_for("small")))
        for name in PARAM_NAMES
    }
    config.check_world_dates(values)  # world_start itself is checked as a date by its Param
    return values


def check_articles(articles: pd.DataFrame, approval_min_relevance: float, source: str | Path) -> None:
    """Refuse an article table the world cannot be built from, naming the problem.

    Raises :class:`hcp_lib.io.DataValidationError` when the table is empty or when some
    specialty would have no approved content under the compliance rule.
    """
    if len(articles) == 0:
        raise io.DataValidationError(
            f"{source}: the article table is empty; the world needs at least one article "
            "per therapeutic area its specialties are approved for"
        )
    approved = entities.approved_specialty_matrix(
        articles["therapeutic_area"].astype(str).to_numpy(), approval_min_relevance
    )
    empty = [s for s, row in zip(SPECIALTY_KEYS, approved) if not row.any()]
    if empty:
        areas = sorted(a for a in AREAS if domain.AREA_SPECIALTY_RELEVANCE[empty[0]][a] >= approval_min_relevance)
        raise io.DataValidationError(
            f"{source}: specialty {empty[0]!r} has no approved content: column 'therapeutic_area' holds "
            f"{sorted(set(articles['therapeutic_area'].astype(str)))}, but with approval_min_relevance="
            f"{approval_min_relevance} it is approved only for {areas or 'no area'}"
        )


def generate_world(
    articles: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
    source: str | Path = "articles",
    progress: Callable | None = None,
) -> World:
    """Build the whole world in memory from cleaned articles (nothing is written).

    ``params`` as returned by :func:`synthesis_params`. Same inputs and seed give the same
    tables. Raises before any work when the articles or parameters are unusable.
    ``progress`` (e.g. ``tqdm``) counts the simulated weeks.
    """
    params = synthesis_params(**{k: v for k, v in params.items() if k in PARAM_NAMES})
    check_articles(articles, params["approval_min_relevance"], source)
    if params["n_themes"] > len(articles):
        raise config.ParameterError(
            f"parameter 'n_themes': got {params['n_themes']}; it must not exceed the {len(articles)} articles"
        )
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    start = pd.Timestamp(params["world_start"])
    days = params["horizon_days"]
    articles = articles.sort_values("pmid", key=lambda s: s.astype(np.int64), kind="stable").reset_index(drop=True)

    hcps = entities.make_hcps(
        streams[0],
        params["n_hcps"],
        params["hcps_per_peer_group"],
        params["opt_out_rate"],
        start,
        days,
        faker_seed=seed,
    )
    patients = entities.make_patients(streams[1], hcps, params["patients_per_hcp"])
    theta, theme_terms = behaviour.fit_content_themes(
        articles["title"].astype(str) + ". " + articles["abstract"].astype(str), params["n_themes"], seed
    )
    content = entities.make_content(
        streams[2], articles, theta.argmax(axis=1), start, days, params["approval_min_relevance"]
    )
    campaigns = entities.make_campaigns(streams[2], content, params["n_hcps"], start, days)
    areas = content["therapeutic_area"].astype(str).to_numpy()
    relevance = np.array([[domain.AREA_SPECIALTY_RELEVANCE[s][a] for a in areas] for s in SPECIALTY_KEYS])
    approved = entities.approved_specialty_matrix(areas, params["approval_min_relevance"])
    model = behaviour.build_truth_model(
        streams[3],
        hcps,
        entities.patient_area_mix(hcps, patients),
        content,
        theta,
        params,
        approved * np.exp(simulate.BAU_AREA_WEIGHT * relevance),
    )

    content_index = pd.Index(content["content_id"].astype(str))
    window = np.full((len(content), len(CHANNELS), 2), np.nan)
    c_idx = content_index.get_indexer(campaigns["content_id"].astype(str))
    k_idx = pd.Index(CHANNELS).get_indexer(campaigns["channel"].astype(str))
    for j, column in enumerate(("start_date", "end_date")):
        window[c_idx, k_idx, j] = (campaigns[column] - start) / pd.Timedelta(minutes=1)
    opt_out_minute = ((hcps["opted_out_at"] - start) / pd.Timedelta(minutes=1)).fillna(np.inf).to_numpy(float)
    exposures = simulate.simulate_exposures(
        streams[4],
        model,
        pd.Index(SPECIALTY_KEYS).get_indexer(hcps["specialty"]),
        hcps["prescribing_decile"].to_numpy(),
        opt_out_minute,
        window,
        approved,
        relevance,
        days,
        params["touches_per_hcp_week"],
        start.weekday(),
        progress=progress,
    )
    interactions = _interaction_table(streams[5], exposures, hcps, content, start)

    test_start = start + pd.Timedelta(days=days) - pd.Timedelta(weeks=params["world_holdout_weeks"])
    saved = {
        "seed": seed,
        "parameters": params,
        "horizon_start": str(start),
        "horizon_end": str(start + pd.Timedelta(days=days)),
        "validation_start": str(test_start - pd.Timedelta(weeks=params["world_holdout_weeks"])),
        "test_start": str(test_start),
        "model": model.scalars(),
        "base_logit": dict(zip(CHANNELS, model.base_logit.tolist())),
        "content_type_channel": {
            t: dict(zip(CHANNELS, row)) for t, row in zip(CONTENT_TYPES, model.content_type_channel.tolist())
        },
        "affinity_weights": behaviour.AFFINITY_WEIGHTS,
        "channel_table": entities.CHANNEL_TABLE.to_dict(orient="list"),
        "bau_channel_mix": dict(zip(CHANNELS, simulate.BAU_CHANNEL_MIX.tolist())),
        "theme_terms": theme_terms,
    }
    return World(hcps, patients, content, campaigns, interactions, saved, model)


def _interaction_table(
    rng: np.random.Generator, exposures: pd.DataFrame, hcps: pd.DataFrame, content: pd.DataFrame, start: pd.Timestamp
) -> pd.DataFrame:
    exposures = exposures.sort_values(["minute", "hcp_idx"], kind="stable").reset_index(drop=True)
    channel = np.array(CHANNELS, dtype=object)[exposures["channel_idx"]]
    content_id = content["content_id"].astype(str).to_numpy(dtype=object)[exposures["content_idx"]]
    responses = simulate.draw_responses(rng, exposures["channel_idx"].to_numpy(), exposures["engaged"].to_numpy())
    table = pd.DataFrame(
        {
            "exposure_id": np.arange(1, len(exposures) + 1, dtype=np.int64),
            "hcp_id": pd.array(hcps["hcp_id"].astype(str).to_numpy(dtype=object)[exposures["hcp_idx"]], dtype="string"),
            "content_id": pd.array(content_id, dtype="string"),
            "campaign_id": pd.array("CMP-" + content_id + "-" + channel, dtype="string"),
            "channel": pd.array(channel, dtype="string"),
            "exposed_at": (start + pd.to_timedelta(exposures["minute"].to_numpy(np.int64), unit="min")).to_numpy(),
            "propensity": exposures["propensity"].to_numpy(float),
        }
    )
    table = pd.concat([table, responses], axis=1)
    table["engaged"] = exposures["engaged"].to_numpy(bool)
    table["true_engagement_prob"] = exposures["true_engagement_prob"].to_numpy(float)
    return table


def _latent_tables(world: World) -> dict[str, pd.DataFrame]:
    model, k = world.model, world.model.theta.shape[1]
    hcp_latent = pd.DataFrame({"hcp_id": world.hcps["hcp_id"].astype("string")})
    for name in ("static_affinity", "personal_start", "personal_turn"):
        hcp_latent = hcp_latent.join(pd.DataFrame(getattr(model, name), columns=[f"{name}_{i}" for i in range(k)]))
    hcp_latent = hcp_latent.join(pd.DataFrame(model.channel_pref, columns=[f"channel_pref_{c}" for c in CHANNELS]))
    content_latent = pd.DataFrame(model.theta, columns=[f"theme_{i}" for i in range(k)])
    content_latent.insert(0, "content_id", world.content["content_id"].astype("string"))
    content_latent["quality"] = model.quality
    prev = model.prev_part
    content_latent["previous_part_id"] = pd.array(
        np.where(prev >= 0, world.content["content_id"].astype(str).to_numpy(dtype=object)[np.maximum(prev, 0)], None),
        dtype="string",
    )
    return {
        "hcp_latent": hcp_latent,
        "content_latent": content_latent,
        "state_at_cutoff": state_at(world, world.test_start),
    }


def state_at(world: World, at_time: Any) -> pd.DataFrame:
    """Each HCP's latent state at ``at_time``: theme affinity, recency memory, touches in the
    fatigue window and days since the last touch on each channel (NaN if never)."""
    model, log, n = world.model, world.log, len(world.hcps)
    hcp_idx = np.arange(n)
    minute = np.full(n, world.minutes(at_time)[0])
    k = model.theta.shape[1]
    table = pd.DataFrame({"hcp_id": world.hcps["hcp_id"].astype("string"), "at_time": pd.Timestamp(at_time)})
    table = table.join(
        pd.DataFrame(behaviour.affinity_at(model, hcp_idx, minute), columns=[f"affinity_{i}" for i in range(k)])
    )
    table = table.join(
        pd.DataFrame(behaviour.memory_before(model, log, hcp_idx, minute), columns=[f"memory_{i}" for i in range(k)])
    )
    table["touches_in_window"] = behaviour._touches_in_window(model, log, hcp_idx, minute)
    for j, channel in enumerate(CHANNELS):
        since = behaviour._minutes_since_channel(log, hcp_idx, np.full(n, j), minute) / 1440
        table[f"days_since_{channel}"] = np.where(np.isfinite(since), since, np.nan)
    return table


def write_world(world: World, run_dir: str | Path, export_csv: bool = False) -> dict[str, Path]:
    """Validate every table first, then write them (and the truth) under ``RunDir(run_dir).world``."""
    folder = config.RunDir(Path(run_dir)).world
    validated = {
        name: io.validate(getattr(world, name), SCHEMAS[name], folder / TABLE_FILES[name]) for name in TABLE_FILES
    }
    latent = _latent_tables(world)
    written = {}
    for name, table in validated.items():
        written[name] = io.write_parquet(table, folder / TABLE_FILES[name])
        if export_csv:
            io.write_csv(table, folder / "csv" / TABLE_FILES[name].replace(".parquet", ".csv"))
    for name, table in latent.items():
        written[name] = io.write_parquet(table, folder / TRUTH_FILES[name])
    written["params"] = io.write_json(world.params, folder / TRUTH_FILES["params"])
    return written


def load_world(run_dir: str | Path) -> World:
    """Read a world written by :func:`write_world`: tables (schema-checked), parameters and truth."""
    folder = config.RunDir(Path(run_dir)).world
    tables = {name: io.read_parquet(folder / file, SCHEMAS[name]) for name, file in TABLE_FILES.items()}
    params = io.read_json(folder / TRUTH_FILES["params"])
    hcp_latent = io.read_parquet(folder / TRUTH_FILES["hcp_latent"])
    content_latent = io.read_parquet(folder / TRUTH_FILES["content_latent"])
    if not (hcp_latent["hcp_id"].astype(str).to_numpy() == tables["hcps"]["hcp_id"].astype(str).to_numpy()).all():
        raise io.DataValidationError(
            f"{folder / TRUTH_FILES['hcp_latent']}: column 'hcp_id' is not in hcp_master order"
        )
    k = sum(c.startswith("theme_") for c in content_latent.columns)
    previous = pd.Index(content_latent["content_id"].astype(str)).get_indexer(
        content_latent["previous_part_id"]
        .astype(object)
        .where(content_latent["previous_part_id"].notna(), "")
        .astype(str)
    )
    model = TruthModel(
        theta=content_latent[[f"theme_{i}" for i in range(k)]].to_numpy(float),
        quality=content_latent["quality"].to_numpy(float),
        content_type_idx=pd.Index(CONTENT_TYPES).get_indexer(tables["content"]["content_type"].astype(str)),
        prev_part=previous.astype(np.int64),
        static_affinity=hcp_latent[[f"static_affinity_{i}" for i in range(k)]].to_numpy(float),
        personal_start=hcp_latent[[f"personal_start_{i}" for i in range(k)]].to_numpy(float),
        personal_turn=hcp_latent[[f"personal_turn_{i}" for i in range(k)]].to_numpy(float),
        channel_pref=hcp_latent[[f"channel_pref_{c}" for c in CHANNELS]].to_numpy(float),
        base_logit=np.array([params["base_logit"][c] for c in CHANNELS]),
        content_type_channel=np.array(
            [[params["content_type_channel"][t][c] for c in CHANNELS] for t in CONTENT_TYPES]
        ),
        **params["model"],
    )
    return World(**tables, params=params, model=model)


def _indices(index: pd.Index, values: Iterable, what: str) -> np.ndarray:
    values = np.asarray(
        list(values) if not isinstance(values, (np.ndarray, pd.Series, pd.Index)) else values, dtype=object
    ).astype(str)
    found = index.get_indexer(values)
    if (found < 0).any():
        raise KeyError(f"unknown {what} {str(values[found < 0][0])!r} (not in this world)")
    return found


def true_engagement_prob(
    world: World, hcp_ids: Iterable, content_ids: Iterable, channels: Iterable, at_time: Any
) -> np.ndarray:
    """The simulator's probability that each HCP engages if shown (content, channel) at ``at_time``.

    Aligned arrays of equal length (a scalar ``at_time`` applies to every row); the
    probability uses everything that happened strictly before ``at_time``. Returns float64.
    """
    hcp_idx = _indices(world.hcp_index, hcp_ids, "hcp_id")
    content_idx = _indices(world.content_index, content_ids, "content_id")
    channel_idx = _indices(pd.Index(CHANNELS), channels, "channel")
    if not len(hcp_idx) == len(content_idx) == len(channel_idx):
        raise ValueError(
            f"hcp_ids, content_ids and channels must have equal length, got "
            f"{len(hcp_idx)}, {len(content_idx)}, {len(channel_idx)}"
        )
    minute = np.broadcast_to(world.minutes(at_time), hcp_idx.shape).astype(float)
    context = behaviour.history_context(world.model, world.log, hcp_idx, content_idx, channel_idx, minute)
    logit = behaviour.engagement_logit(world.model, hcp_idx, content_idx, channel_idx, minute, context)
    return 1 / (1 + np.exp(-logit))


def true_engagement_matrix(
    world: World, hcp_ids: Iterable, at_time: Any, content_ids: Iterable | None = None, max_cells: int = 4_000_000
) -> np.ndarray:
    """The oracle: probabilities [hcp, content, channel] (float32) at one ``at_time``.

    Content in catalogue order (``campaigns_with_content``) unless ``content_ids`` is
    given; channels in ``hcp_lib.domain.CHANNELS`` order. Computed in chunks of HCPs so
    that one chunk holds at most ``max_cells`` HCP-content pairs.
    """
    hcp_idx = _indices(world.hcp_index, hcp_ids, "hcp_id")
    content_idx = (
        np.arange(len(world.content))
        if content_ids is None
        else _indices(world.content_index, content_ids, "content_id")
    )
    minute = float(world.minutes(at_time)[0])
    result = np.empty((len(hcp_idx), len(content_idx), len(CHANNELS)), dtype=np.float32)
    step = max(1, max_cells // max(1, len(content_idx)))
    for lo in range(0, len(hcp_idx), step):
        result[lo : lo + step] = behaviour.engagement_matrix(
            world.model, world.log, hcp_idx[lo : lo + step], minute, content_idx
        )
    return result


def exposure_context(world: World) -> pd.DataFrame:
    """Per exposure, the history the truth saw (for the planted-effect plots).

    Columns: exposure_id, touches_in_window (earlier touches in the fatigue window),
    days_since_channel_touch (NaN if first on the channel), seen_before (0 never shown,
    1 shown, 2 engaged), previous_part_engaged, series_part, age_band, plus the logged
    channel, engaged and true_engagement_prob.
    """
    inter = world.interactions
    hcp_idx = world.hcp_index.get_indexer(inter["hcp_id"].astype(str))
    content_idx = world.content_index.get_indexer(inter["content_id"].astype(str))
    channel_idx = pd.Index(CHANNELS).get_indexer(inter["channel"].astype(str))
    context = behaviour.history_context(
        world.model, world.log, hcp_idx, content_idx, channel_idx, world.minutes(inter["exposed_at"])
    )
    days = context.minutes_since_channel / 1440
    ages = world.hcps["age"].to_numpy()[hcp_idx]
    return pd.DataFrame(
        {
            "exposure_id": inter["exposure_id"].to_numpy(),
            "channel": inter["channel"].astype(str).to_numpy(),
            "touches_in_window": context.touches_in_window,
            "days_since_channel_touch": np.where(np.isfinite(days), days, np.nan),
            "seen_before": context.seen_code,
            "previous_part_engaged": context.prev_part_engaged,
            "series_part": world.content["series_part"].to_numpy(dtype="float", na_value=np.nan)[content_idx],
            "age_band": pd.cut(ages, [0, 40, 50, 60, 120], labels=["<40", "40-49", "50-59", "60+"], right=False),
            "engaged": inter["engaged"].to_numpy(bool),
            "true_engagement_prob": inter["true_engagement_prob"].to_numpy(float),
        }
    )


def _ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k per row of a score matrix (:func:`hcp_lib.metrics.ndcg_at_k`
    of its top k): candidates scored -inf are never ranked nor counted as relevant."""
    return metrics.ndcg_at_k(metrics.top_k(scores, k), relevant & np.isfinite(scores), k)


def ranking_check(world: World, k: int = 10, n_random: int = 20) -> dict[str, Any]:
    """Learnability check on the temporal hold-out (from ``test_start``): truth vs. popularity.

    Scores known at the cut-off: the oracle's probability at ``test_start`` and popularity
    (engagements before ``test_start`` per content item). Two protocols, NDCG@k with
    relevance = engaged in the test period, averaged over HCPs with a test engagement:

    - ``exposed``: each HCP's test exposures (content, channel) are re-ranked; this
      isolates what a model can learn (which shown items engage). With few exposures per
      HCP even a random order scores high, so the expected NDCG of a random order
      (``n_random`` seeded shuffles) is reported beside them;
    - ``catalogue``: all content approved for the HCP's specialty is ranked (oracle
      averaged over channels); here the logging policy's choice of what to show dominates,
      so every score is low.

    Also the AUC of both scores over the test exposures (engaged vs. not).
    """
    inter = world.interactions
    in_test = (inter["exposed_at"] >= world.test_start).to_numpy()
    test = inter.loc[in_test].reset_index(drop=True)
    if not test["engaged"].any():
        raise ValueError("no engagement in the test period; the world is too small for a ranking check")
    train = inter.loc[~in_test & inter["engaged"].to_numpy()]
    popularity = np.bincount(
        world.content_index.get_indexer(train["content_id"].astype(str)), minlength=len(world.content)
    ).astype(float)
    test_truth = true_engagement_prob(world, test["hcp_id"], test["content_id"], test["channel"], world.test_start)
    test_popularity = popularity[world.content_index.get_indexer(test["content_id"].astype(str))]
    engaged = test["engaged"].to_numpy(bool)
    result: dict[str, Any] = {
        "k": k,
        "n_test_exposures": int(len(test)),
        "n_test_engagements": int(engaged.sum()),
        "auc_truth": metrics.exposure_auc(engaged, test_truth),
        "auc_popularity": metrics.exposure_auc(engaged, test_popularity),
    }

    # exposed protocol: one row per HCP with a test engagement, one column per exposure slot
    keep = test["hcp_id"].isin(test.loc[engaged, "hcp_id"]).to_numpy()
    hcp_codes, hcp_ids = pd.factorize(test.loc[keep, "hcp_id"].astype(str), sort=True)
    slot = pd.Series(hcp_codes).groupby(hcp_codes).cumcount().to_numpy()
    shape = (len(hcp_ids), int(slot.max()) + 1)
    relevant = np.zeros(shape, dtype=bool)
    relevant[hcp_codes, slot] = engaged[keep]

    def slots(values: np.ndarray) -> np.ndarray:
        matrix = np.full(shape, -np.inf)
        matrix[hcp_codes, slot] = values
        return matrix

    result["n_hcps"] = int(len(hcp_ids))
    result[f"exposed_ndcg@{k}_truth"] = float(np.nanmean(_ndcg_at_k(slots(test_truth[keep]), relevant, k)))
    result[f"exposed_ndcg@{k}_popularity"] = float(np.nanmean(_ndcg_at_k(slots(test_popularity[keep]), relevant, k)))
    rng = np.random.default_rng(0)
    result[f"exposed_ndcg@{k}_random"] = float(
        np.mean([np.nanmean(_ndcg_at_k(slots(rng.random(int(keep.sum()))), relevant, k)) for _ in range(n_random)])
    )

    # catalogue protocol
    hcp_idx = world.hcp_index.get_indexer(np.asarray(hcp_ids, dtype=str))
    rows = pd.Index(np.asarray(hcp_ids, dtype=str))
    positives = test.loc[engaged]
    catalogue_relevant = np.zeros((len(hcp_ids), len(world.content)), dtype=bool)
    catalogue_relevant[
        rows.get_indexer(positives["hcp_id"].astype(str)),
        world.content_index.get_indexer(positives["content_id"].astype(str)),
    ] = True
    areas = world.content["therapeutic_area"].astype(str).to_numpy()
    approved = entities.approved_specialty_matrix(areas, world.params["parameters"]["approval_min_relevance"])
    allowed = approved[pd.Index(SPECIALTY_KEYS).get_indexer(world.hcps["specialty"].astype(str).to_numpy()[hcp_idx])]
    truth = true_engagement_matrix(world, np.asarray(hcp_ids, dtype=str), world.test_start).mean(axis=2)
    for name, score in (("truth", truth), ("popularity", np.broadcast_to(popularity, truth.shape))):
        ndcg = _ndcg_at_k(np.where(allowed, score, -np.inf), catalogue_relevant, k)
        result[f"catalogue_ndcg@{k}_{name}"] = float(np.nanmean(ndcg))
    return result


def planted_effects(world: World, context: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Engagement rate (logged label and mean true probability) along each planted effect.

    Tables: ``fatigue`` by earlier touches in the fatigue window; ``series`` for parts >= 2
    by whether the previous part was engaged with; ``seen`` by seen-before status;
    ``channel_by_age`` by channel and age band; ``channel`` and ``specialty`` rates.
    """
    context = exposure_context(world) if context is None else context
    inter = world.interactions

    def rates(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        return (
            frame.groupby(by, observed=True)
            .agg(
                exposures=("engaged", "size"),
                engagement_rate=("engaged", "mean"),
                mean_true_prob=("true_engagement_prob", "mean"),
            )
            .reset_index()
        )

    window = world.params["parameters"]["fatigue_window_days"]
    fatigue = context.assign(touches_in_window=np.minimum(context["touches_in_window"], 8))
    specialty = inter.assign(specialty=inter["hcp_id"].map(world.hcps.set_index("hcp_id")["specialty"]))
    return {
        "fatigue": rates(fatigue, ["touches_in_window"]).rename(
            columns={"touches_in_window": f"touches_in_last_{window}_days (8 = 8+)"}
        ),
        "series": rates(context.loc[context["series_part"] >= 2], ["previous_part_engaged"]),
        "seen": rates(context, ["seen_before"]),
        "channel_by_age": rates(context, ["channel", "age_band"]),
        "channel": rates(inter, ["channel"]),
        "specialty": rates(specialty, ["specialty"]),
    }


def summary(world: World, ranking: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sizes, rates and the learnability check of a world, for ``metrics/synthesis.json``."""
    inter = world.interactions
    by_channel = inter.groupby("channel")["engaged"].mean()
    return {
        "n_hcps": len(world.hcps),
        "n_patients": len(world.patients),
        "n_content": len(world.content),
        "n_campaigns": len(world.campaigns),
        "n_exposures": len(inter),
        "n_opted_out": int(world.hcps["opted_out"].sum()),
        "n_series": int(world.content["series_id"].nunique()),
        "n_content_released_in_test": int((world.content["release_date"] >= world.test_start).sum()),
        "horizon_start": str(world.horizon_start),
        "horizon_end": str(world.horizon_end),
        "validation_start": str(world.validation_start),
        "test_start": str(world.test_start),
        "engagement_rate": float(inter["engaged"].mean()),
        "engagement_rate_by_channel": {c: float(by_channel.get(c, np.nan)) for c in CHANNELS if c in by_channel},
        "open_rate_email": float(inter.loc[inter["channel"] == "email", "opened"].mean()),
        "ranking_check": ranking if ranking is not None else ranking_check(world),
    }
