"""Leak-free temporal split of the interaction log into train, validation and test windows.

The split is one global calendar cut, not a per-HCP "last N engagements" split. With a
global cut every training feature (popularity counts, item co-occurrences, latent factors,
the content catalogue as known at that moment) is computed from the past of a single
instant, so nothing any HCP did later can reach a model; a per-HCP last-N split mixes
instants across HCPs, and a popularity count or item factor learned from HCP A's "train"
rows would then contain engagements that happened after HCP B's "test" rows. A global cut
is also what the deployed system faces: recommend now, from everything before now.

Windows are half-open intervals of ``exposed_at``::

    train       [train_start, valid_start)
    validation  [valid_start, test_start)
    test        [test_start,  test_end)

Hyper-parameters are tuned on models fitted on the train window and scored on the
validation window; test scores come from models refitted on everything before
``test_start`` with the chosen values. :func:`training_data` is the only way a model sees
data: it keeps rows strictly before its cut-off and hides the release dates of catalogue
items not yet released at the cut-off, so a test can perturb later rows and prove every
fitted model is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

WINDOWS = ("train", "validation", "test")

# The columns of the world's tables (see the world contract) that models may learn from.
INTERACTION_COLUMNS = ("hcp_id", "content_id", "channel", "exposed_at", "propensity", "engaged", "engagement_score")
HCP_COLUMNS = ("hcp_id", "specialty")
CATALOGUE_COLUMNS = ("content_id", "therapeutic_area", "release_date", "approved_specialties")


class SplitError(ValueError):
    """A split is ill-formed (overlapping, inverted or empty windows); the message names the dates."""


@dataclass(frozen=True)
class TemporalSplit:
    """The three windows' boundaries (naive timestamps); each window is ``[start, end)``."""

    train_start: pd.Timestamp
    valid_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    def __post_init__(self) -> None:
        for name in ("train_start", "valid_start", "test_start", "test_end"):
            object.__setattr__(self, name, pd.Timestamp(getattr(self, name)))
        bounds = [
            ("train", self.train_start, self.valid_start),
            ("validation", self.valid_start, self.test_start),
            ("test", self.test_start, self.test_end),
        ]
        for name, start, end in bounds:
            if not start < end:
                raise SplitError(
                    f"the {name} window [{start}, {end}) is empty or inverted: its start must be before its end"
                )

    def window(self, name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """``(start, end)`` of window ``name`` (one of :data:`WINDOWS`)."""
        bounds = {
            "train": (self.train_start, self.valid_start),
            "validation": (self.valid_start, self.test_start),
            "test": (self.test_start, self.test_end),
        }
        if name not in bounds:
            raise SplitError(f"unknown window {name!r}; the windows are {', '.join(WINDOWS)}")
        return bounds[name]

    def to_dict(self) -> dict[str, str]:
        """ISO dates of the boundaries, for the run folder's ``split.json``."""
        return {
            name: getattr(self, name).isoformat() for name in ("train_start", "valid_start", "test_start", "test_end")
        }

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> TemporalSplit:
        return cls(**{k: pd.Timestamp(data[k]) for k in ("train_start", "valid_start", "test_start", "test_end")})


def windows_from_days(
    horizon_start: pd.Timestamp, horizon_end: pd.Timestamp, valid_days: int, test_days: int
) -> TemporalSplit:
    """The split whose test window is the last ``test_days`` days of the horizon and whose
    validation window is the ``valid_days`` days before it; train is everything earlier.

    ``horizon_end`` is the end of the simulated period (exclusive); boundaries fall at
    midnight (a ``horizon_end`` within a day is rounded up to the next midnight), so the
    windows are whole calendar days. Raises :class:`SplitError` naming the dates when the
    horizon is too short to leave a training window.
    """
    if valid_days < 1 or test_days < 1:
        raise SplitError(f"valid_days and test_days must be >= 1, got {valid_days} and {test_days}")
    start = pd.Timestamp(horizon_start).floor("D")
    test_end = pd.Timestamp(horizon_end).ceil("D")
    test_start = test_end - pd.Timedelta(days=test_days)
    valid_start = test_start - pd.Timedelta(days=valid_days)
    if not start < valid_start:
        raise SplitError(
            f"the horizon {start.date()} .. {test_end.date()} is too short for a {valid_days}-day "
            f"validation and a {test_days}-day test window: no training days before {valid_start.date()}"
        )
    return TemporalSplit(start, valid_start, test_start, test_end)


def window_rows(interactions: pd.DataFrame, split: TemporalSplit, name: str) -> pd.DataFrame:
    """The interactions whose ``exposed_at`` lies in window ``name``; an empty window is an error."""
    start, end = split.window(name)
    rows = interactions[(interactions["exposed_at"] >= start) & (interactions["exposed_at"] < end)]
    if rows.empty:
        raise SplitError(f"the {name} window [{start}, {end}) holds no interactions")
    return rows.reset_index(drop=True)


def check_windows_have_rows(interactions: pd.DataFrame, split: TemporalSplit) -> None:
    """Raise :class:`SplitError` naming the dates of the first window without interactions."""
    for name in WINDOWS:
        window_rows(interactions, split, name)


@dataclass(frozen=True)
class TrainingData:
    """Everything a model may learn from, as known at ``cutoff``.

    ``interactions``: exposures with ``exposed_at < cutoff`` (contract columns, sorted by
    time, then hcp_id and content_id so row order never depends on the input's order);
    ``hcps``: one row per HCP of the master (hcp_id, specialty) — the HCPs a model can
    score; ``catalogue``: one row per content item in catalogue order (content_id,
    therapeutic_area, approved_specialties, release_date) with the release date set to NaT
    for items not yet released at ``cutoff`` (their existence is planned, their date is
    the future); ``engaged`` is the subset of ``interactions`` with ``engaged`` true.
    """

    interactions: pd.DataFrame
    hcps: pd.DataFrame
    catalogue: pd.DataFrame
    cutoff: pd.Timestamp

    @property
    def engaged(self) -> pd.DataFrame:
        return self.interactions[self.interactions["engaged"]]

    @property
    def hcp_ids(self) -> pd.Index:
        return pd.Index(self.hcps["hcp_id"])

    @property
    def content_ids(self) -> pd.Index:
        return pd.Index(self.catalogue["content_id"])


def training_data(
    interactions: pd.DataFrame, hcps: pd.DataFrame, catalogue: pd.DataFrame, cutoff: pd.Timestamp
) -> TrainingData:
    """The :class:`TrainingData` of everything strictly before ``cutoff``.

    Raises :class:`SplitError` naming the cut-off when no interaction precedes it, and
    ``KeyError`` naming a missing column.
    """
    cutoff = pd.Timestamp(cutoff)
    for table, columns, label in (
        (interactions, INTERACTION_COLUMNS, "interactions"),
        (hcps, HCP_COLUMNS, "hcps"),
        (catalogue, CATALOGUE_COLUMNS, "catalogue"),
    ):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise KeyError(f"{label} table lacks column {missing[0]!r}; it needs {', '.join(columns)}")
    past = interactions.loc[interactions["exposed_at"] < cutoff, list(INTERACTION_COLUMNS)]
    if past.empty:
        raise SplitError(f"the training window before {cutoff} holds no interactions")
    past = past.sort_values(["exposed_at", "hcp_id", "content_id", "channel"], kind="stable").reset_index(drop=True)
    known = catalogue.loc[:, list(CATALOGUE_COLUMNS)].reset_index(drop=True)
    known["release_date"] = known["release_date"].where(known["release_date"] < cutoff)
    return TrainingData(past, hcps.loc[:, list(HCP_COLUMNS)].reset_index(drop=True), known, cutoff)


def evaluated_hcps(hcps: pd.DataFrame) -> pd.DataFrame:
    """The HCPs every chapter evaluates and counts: those who have not opted out of promotional
    contact (no plan may touch the others, so no recommendation to them is judged). The one
    definition of the evaluated population, used by the evaluation (chapters 6 and 9) and by
    chapter 5's counts. ``hcps`` needs an ``opted_out`` column."""
    if "opted_out" not in hcps.columns:
        raise SplitError("the HCP table has no 'opted_out' column; the evaluated population needs it")
    return hcps.loc[~hcps["opted_out"].to_numpy(bool)]
