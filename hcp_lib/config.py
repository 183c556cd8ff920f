"""Paths, scale presets and the notebook parameters, validated before anything runs.

Every notebook parameter the pipeline can inject is declared once here, as a
:class:`Param` with its type, allowed values or range, and its default (which may
depend on the scale preset). :func:`resolve_parameters` turns the user's ``--scale``,
``--seed`` and ``-p key=value`` strings into one dictionary of typed, checked values;
the runner injects the same values into every notebook that declares them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .domain import (
    CONTENT_BASELINES,
    HYBRID_ABLATIONS,
    HYBRID_NAME,
    ORACLE_NAME,
    TABULAR_NAME,
    V01_NAME,
    ablation_name,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
DATA_DIR = PROJECT_ROOT / "data"
RAW_DATA_DIR = DATA_DIR / "raw"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
DEFAULT_RUN_DIR = OUTPUTS_DIR / "report"

SCALES = ("tiny", "small", "full", "stress")
DEFAULT_SCALE = "small"


class ParameterError(ValueError):
    """A pipeline parameter is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Param:
    """One notebook parameter.

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``, ``date`` (an ISO date,
    ``YYYY-MM-DD``, kept as that string). ``default`` applies at
    every scale unless ``scale_defaults`` names a value for the scale being run.
    ``choices`` (for strings and ints) or ``minimum``/``maximum`` (inclusive, for
    numbers) bound what is accepted; ``None`` as a default means "decided in the
    notebook" (e.g. chosen by a sweep) and is accepted when ``allow_none`` is set.
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    scale_defaults: dict[str, Any] = field(default_factory=dict)
    allow_none: bool = False

    def default_for(self, scale: str) -> Any:
        return self.scale_defaults.get(scale, self.default)

    def allowed(self) -> str:
        """Human-readable description of the accepted values."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.minimum is not None or self.maximum is not None:
            fmt = "{:d}" if self.kind == "int" else "{:g}"
            low = "-inf" if self.minimum is None else fmt.format(self.minimum)
            high = "inf" if self.maximum is None else fmt.format(self.maximum)
            text = f"{'an integer' if self.kind == 'int' else 'a number'} in [{low}, {high}]"
        else:
            text = {
                "int": "an integer",
                "float": "a number",
                "str": "a string",
                "date": "an ISO date such as 2025-01-06",
            }[self.kind]
        return text + (" or none" if self.allow_none else "")

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (possibly a command-line string) and check it."""
        problem = f"parameter {self.name!r}: got {value!r}; expected {self.allowed()}"
        if value is None or (self.allow_none and isinstance(value, str) and value.lower() in ("none", "null", "")):
            if self.allow_none:
                return None
            raise ParameterError(problem)
        try:
            converted = _CONVERTERS[self.kind](value)
        except (TypeError, ValueError):
            raise ParameterError(problem) from None
        if self.choices is not None and converted not in self.choices:
            raise ParameterError(problem)
        if self.minimum is not None and converted < self.minimum:
            raise ParameterError(problem)
        if self.maximum is not None and converted > self.maximum:
            raise ParameterError(problem)
        return converted


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(value)
        return int(value)
    return int(str(value).strip())


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    result = float(str(value).strip()) if isinstance(value, str) else float(value)
    if result != result or result in (float("inf"), float("-inf")):
        raise ValueError(value)
    return result


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(value)
    return value


def _to_date(value: Any) -> str:
    """An ISO calendar date (``YYYY-MM-DD``, no time of day), returned in that form."""
    import datetime as dt

    text = value.isoformat() if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else _to_str(value)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise ValueError(value)
    return dt.date.fromisoformat(text.strip()).isoformat()


_CONVERTERS = {"int": _to_int, "float": _to_float, "bool": _to_bool, "str": _to_str, "date": _to_date}

# Parameters the runner sets itself, present in every notebook.
RUNNER_PARAMS = ("run_dir", "scale", "seed")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the platform says, else the count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_PARAM_LIST: list[Param] = [
    # --- every notebook ---------------------------------------------------------
    Param("run_dir", "str", str(DEFAULT_RUN_DIR), "Run folder the notebook reads from and writes to."),
    Param("scale", "str", DEFAULT_SCALE, "Scale preset.", choices=SCALES),
    Param("seed", "int", 42, "One seed for every random choice of the run.", minimum=0, maximum=2**32 - 1),
    # --- 01_ingestion -----------------------------------------------------------
    Param(
        "corpus",
        "str",
        "all",
        "Articles to use: 'all' shipped records, or 'v01' (the 509-abstract corpus of v0.1 alone; not with "
        "pubmed_live).",
        choices=("all", "v01"),
    ),
    Param(
        "pubmed_live",
        "bool",
        False,
        "Fetch fresh records from NCBI E-utilities instead of the shipped snapshot (needs the network; "
        "NCBI_API_KEY from the environment raises the limit from 3 to 10 requests/s; XML cached in data/raw/live/).",
    ),
    Param(
        "pubmed_max_per_query",
        "int",
        100,
        "Live mode: most records fetched per therapeutic-area query.",
        minimum=1,
        maximum=10_000,
    ),
    Param("pubmed_email", "str", "", "Live mode: contact e-mail sent to NCBI with each request (NCBI asks for one)."),
    # --- 02_synthesis -----------------------------------------------------------
    Param(
        "n_hcps",
        "int",
        3500,
        "Number of synthetic HCPs in the world.",
        minimum=10,
        maximum=2_000_000,
        scale_defaults={"tiny": 200, "small": 3500, "full": 38_000, "stress": 100_000},
    ),
    Param(
        "horizon_days",
        "int",
        364,
        "Length of the simulated period in days (52 weeks by default).",
        minimum=56,
        maximum=1096,
    ),
    Param("world_start", "date", "2025-01-06", "First day of the simulated period (ISO date, YYYY-MM-DD)."),
    Param(
        "world_holdout_weeks",
        "int",
        4,
        "Weeks at the end of the horizon suggested as test period (and the same length before it as validation).",
        minimum=1,
        maximum=26,
    ),
    Param(
        "touches_per_hcp_week",
        "float",
        0.55,
        "Business-as-usual touches per contactable HCP per week (all channels).",
        minimum=0.01,
        maximum=5.0,
        scale_defaults={"stress": 0.9},
    ),
    Param(
        "n_themes",
        "int",
        12,
        "Latent themes of the content (NMF components of the article TF-IDF).",
        minimum=2,
        maximum=50,
    ),
    Param("patients_per_hcp", "int", 12, "Mean number of sampled patients per HCP.", minimum=1, maximum=500),
    Param(
        "hcps_per_peer_group",
        "int",
        25,
        "Mean size of a peer group (cross-specialty community of practice).",
        minimum=2,
        maximum=100_000,
    ),
    Param(
        "opt_out_rate",
        "float",
        0.03,
        "Share of HCPs who opt out of promotional contact during the horizon.",
        minimum=0.0,
        maximum=1.0,
    ),
    Param(
        "base_rate_email",
        "float",
        0.08,
        "Engagement probability of a typical email touch (click-through).",
        minimum=0.0,
        maximum=1.0,
    ),
    Param(
        "base_rate_webinar",
        "float",
        0.12,
        "Engagement probability of a typical webinar invitation (attended).",
        minimum=0.0,
        maximum=1.0,
    ),
    Param(
        "base_rate_rep_visit",
        "float",
        0.35,
        "Engagement probability of a typical rep visit (content discussed).",
        minimum=0.0,
        maximum=1.0,
    ),
    Param(
        "base_rate_in_person_meeting",
        "float",
        0.25,
        "Engagement probability of a typical in-person meeting invitation (attended).",
        minimum=0.0,
        maximum=1.0,
    ),
    Param(
        "base_rate_conference_event",
        "float",
        0.15,
        "Engagement probability of a typical social/conference event touch (booth or session visited).",
        minimum=0.0,
        maximum=1.0,
    ),
    Param(
        "interest_strength",
        "float",
        1.2,
        "Log-odds per unit of HCP-theme affinity times item themes.",
        minimum=0.0,
        maximum=10.0,
    ),
    Param(
        "interest_drift",
        "float",
        0.5,
        "Share of a quarter turn the personal interest rotates over the horizon (0 = static, 1 = fully renewed).",
        minimum=0.0,
        maximum=1.0,
    ),
    Param(
        "fatigue_window_days",
        "int",
        14,
        "Window in which touches count towards contact fatigue (days).",
        minimum=1,
        maximum=60,
    ),
    Param("fatigue_free_touches", "int", 2, "Touches in the window before fatigue starts.", minimum=0, maximum=60),
    Param(
        "fatigue_per_touch",
        "float",
        0.3,
        "Log-odds lost per touch beyond the free ones in the window.",
        minimum=0.0,
        maximum=5.0,
    ),
    Param(
        "channel_saturation",
        "float",
        0.6,
        "Log-odds lost right after a touch on the same channel (decays with channel_recovery_days).",
        minimum=0.0,
        maximum=5.0,
    ),
    Param(
        "channel_recovery_days",
        "float",
        7.0,
        "Decay time of the same-channel saturation (days).",
        minimum=0.1,
        maximum=365.0,
    ),
    Param(
        "series_followup_lift",
        "float",
        1.2,
        "Log-odds gained by a series part when the HCP engaged with the previous part.",
        minimum=0.0,
        maximum=5.0,
    ),
    Param(
        "recency_boost",
        "float",
        0.8,
        "Log-odds gained by content on themes the HCP engaged with recently.",
        minimum=0.0,
        maximum=5.0,
    ),
    Param(
        "recency_half_life_days", "float", 21.0, "Half-life of the recency boost (days).", minimum=0.5, maximum=365.0
    ),
    Param(
        "seen_penalty",
        "float",
        0.7,
        "Log-odds lost by content the HCP was shown before without engaging.",
        minimum=0.0,
        maximum=5.0,
    ),
    Param(
        "consumed_penalty",
        "float",
        1.5,
        "Log-odds lost by content the HCP already engaged with.",
        minimum=0.0,
        maximum=5.0,
    ),
    Param(
        "approval_min_relevance",
        "float",
        0.4,
        "Compliance rule: content is approved for a specialty when its area's relevance to it is at least this.",
        minimum=0.0,
        maximum=1.0,
    ),
    Param("export_csv", "bool", False, "Also write every world table as CSV beside its Parquet file."),
    # --- 03_topic_modeling ------------------------------------------------------
    Param(
        "n_topics",
        "int",
        None,
        "Number of LDA topics; none = chosen by the coherence sweep.",
        minimum=2,
        maximum=500,
        allow_none=True,
    ),
    Param("topic_sweep_min", "int", 4, "Smallest number of topics the sweep tries.", minimum=2, maximum=500),
    Param("topic_sweep_max", "int", 20, "Largest number of topics the sweep tries.", minimum=2, maximum=500),
    Param(
        "topic_sweep_step",
        "int",
        2,
        "Step between the numbers of topics the sweep tries.",
        minimum=1,
        maximum=100,
        scale_defaults={"tiny": 4},
    ),
    Param(
        "topic_workers",
        "int",
        2,
        "Processes fitting the sweep's models (results do not depend on it).",
        minimum=1,
        maximum=64,
    ),
    Param(
        "lda_passes",
        "int",
        20,
        "LDA passes over the corpus (each a full batch update).",
        minimum=1,
        maximum=1000,
        scale_defaults={"tiny": 10},
    ),
    Param("lda_iterations", "int", 50, "LDA inference iterations per document and pass.", minimum=1, maximum=5000),
    Param(
        "topic_min_doc_freq", "int", 15, "A term must occur in at least this many articles.", minimum=1, maximum=100_000
    ),
    Param(
        "topic_max_doc_share",
        "float",
        0.25,
        "A term must occur in at most this share of the articles.",
        minimum=0.01,
        maximum=1.0,
    ),
    Param(
        "spacy_model",
        "str",
        "auto",
        "spaCy pipeline for lemmas: 'auto' (an installed scispaCy or "
        "en_core_* model, else blank English + lookup lemmatizer), 'blank', or a package name.",
    ),
    # --- 04_collaborative_filtering ---------------------------------------------
    Param(
        "cf_top_n",
        "int",
        50,
        "Length of each baseline's top-N list per HCP written for the test window (cf/test_top_n/).",
        minimum=10,
        maximum=1000,
        scale_defaults={"full": 20, "stress": 20},
    ),
    Param(
        "cf_tune",
        "bool",
        True,
        "Grid-search each baseline's hyper-parameters on the validation window (false: each model's default values).",
    ),
    # --- 05_hybrid_lstm ---------------------------------------------------------
    Param(
        "max_seq_len",
        "int",
        15,
        "Most recent exposures of an HCP the sequence encoder reads (older ones are cut).",
        minimum=1,
        maximum=1000,
        scale_defaults={"tiny": 10},
    ),
    Param(
        "hybrid_epochs",
        "int",
        60,
        "Most training epochs of the hybrid model (early stopping on the validation log-loss ends sooner).",
        minimum=1,
        maximum=500,
        scale_defaults={"tiny": 3},
    ),
    Param(
        "hybrid_patience",
        "int",
        2,
        "Epochs without a lower validation log-loss before training stops.",
        minimum=0,
        maximum=100,
    ),
    Param(
        "hybrid_min_delta",
        "float",
        1e-4,
        "An epoch lowers the hybrid's validation loss only when it lowers the best so far by at least this "
        "much: a smaller gain lowers the learning rate (hybrid_learning_rate_factor) and counts towards "
        "hybrid_patience, and the weights kept are those of the last epoch that lowered it (0: any gain). "
        "1e-4 is the tolerance Keras' plateau rule already used. It leaves the default small world's fit as it "
        "was (18 epochs, validation log-loss 0.27247); at full scale the fit ends at epoch 19 instead of 27 "
        "and keeps epoch 17 instead of 25 (0.29369 against 0.29376), so the refit trains 17 epochs, not 25.",
        minimum=0.0,
        maximum=0.1,
    ),
    Param(
        "hybrid_batch_size",
        "int",
        4096,
        "Training examples (logged exposures) per batch.",
        minimum=8,
        maximum=65_536,
        scale_defaults={"tiny": 256, "stress": 8192},
    ),
    Param(
        "hybrid_learning_rate",
        "float",
        0.015,
        "Adam learning rate of the hybrid model's first epochs (hybrid_learning_rate_factor lowers it on "
        "plateaus). With batches of 4,096 and a factor of 0.3, 0.015 has the lowest validation log-loss of 0.01, "
        "0.015, 0.02 and 0.03 in the default small world (0.27246 in 18 epochs, against 0.27307 in 22 for a "
        "constant 0.006; benchmarks/bench_hybrid.py --sweep). At full scale, with ten times the steps per "
        "epoch, 0.002 has the lowest of 0.015, 0.01, 0.006, 0.004 and 0.002 (0.29376 in 25 epochs, against "
        "0.29377 in 27 at 0.004, 0.29387 in 49 for a constant 0.002 and 0.29504 in 24 for a constant 0.006).",
        minimum=1e-5,
        maximum=1.0,
        scale_defaults={"tiny": 0.002, "full": 0.002},
    ),
    Param(
        "hybrid_learning_rate_factor",
        "float",
        0.3,
        "After an epoch that does not lower the validation loss, the hybrid's learning rate is multiplied by "
        "this (1: a constant rate); the refit replays the rate of each of the validation fit's epochs. At a "
        "starting rate of 0.01 in the default small world, 0.3 reaches a lower validation log-loss than 0.2 "
        "(0.27272 against 0.27290).",
        minimum=0.01,
        maximum=1.0,
    ),
    Param(
        "hybrid_embedding_dim",
        "int",
        16,
        "Size of the HCP taste and item content vectors whose dot product scores taste against content.",
        minimum=2,
        maximum=512,
        scale_defaults={"tiny": 8},
    ),
    Param(
        "hybrid_sequence_units",
        "int",
        16,
        "Units of the recurrent sequence encoder.",
        minimum=2,
        maximum=1024,
        scale_defaults={"tiny": 8},
    ),
    Param(
        "hybrid_hidden_units",
        "int",
        16,
        "Units of the hidden layers of the channel and (HCP, item) history parts.",
        minimum=2,
        maximum=2048,
        scale_defaults={"tiny": 8},
    ),
    Param(
        "hybrid_l2",
        "float",
        1e-4,
        "L2 penalty on the hybrid's embeddings and dense weights (the per-HCP taste "
        "embedding gets 100 times it). The default has the lowest validation log-loss of 1e-5, 1e-4, 3e-4 and 1e-3 "
        "in the default small world.",
        minimum=0.0,
        maximum=1.0,
    ),
    Param(
        "hybrid_sequence_encoder",
        "str",
        "compare",
        "Recurrent layer of the sequence encoder: 'lstm', 'gru', or 'compare' (fit both, keep the one with the lower "
        "validation log-loss).",
        choices=("compare", "lstm", "gru"),
        scale_defaults={"tiny": "lstm"},
    ),
    Param(
        "hybrid_workers",
        "int",
        2,
        "Worker processes that fit notebook 05's models (the challenger's grid, the hybrid's variants and "
        "ablations) and score the challenger side by side, one thread each (0: in the notebook's process, the "
        "challenger's fits on one thread beside the hybrid's on another). Each worker holds its own copy of the "
        "inputs, several GB at full, hence 0 there.",
        minimum=0,
        maximum=64,
        scale_defaults={"tiny": 0, "full": 0, "stress": 0},
    ),
    Param(
        "hybrid_ablations",
        "bool",
        True,
        "Also fit the hybrid without each of its inputs (sequence, topics, CF, static profile) and write their "
        "outputs, so the evaluation reports what each input carries.",
    ),
    Param(
        "tabular_tune",
        "bool",
        True,
        "Search the tabular challenger's grid on the validation window (false: its first point only).",
    ),
    # --- 06_evaluation ----------------------------------------------------------
    Param(
        "n_bootstrap",
        "int",
        1000,
        "Bootstrap resamples of HCPs behind every 95% interval of the evaluation.",
        minimum=50,
        maximum=100_000,
        scale_defaults={"tiny": 200, "stress": 500},
    ),
    # --- 08_explorer ------------------------------------------------------------
    Param(
        "explorer_hcps",
        "int",
        0,
        "HCPs the book's HCP explorer holds: 0 for every HCP of the run, else a seeded sample of that many (half "
        "of them active in the test window); each HCP adds about 0.4 kB to the page.",
        minimum=0,
        maximum=1_000_000,
        scale_defaults={"full": 6000, "stress": 6000},
    ),
    Param(
        "explorer_sample_content",
        "int",
        30,
        "Content items (the most recommended) whose views are precomputed for the published book.",
        minimum=0,
        maximum=2000,
        scale_defaults={"tiny": 10},
    ),
    Param(
        "explorer_top_n", "int", 10, "Recommendations shown per HCP in the book's explorer.", minimum=1, maximum=1000
    ),
    Param(
        "explorer_model",
        "str",
        "auto",
        "Model whose recommendations the book's explorer shows: 'auto' (the engagement model the validation "
        "window chose, the one the week's plan uses; else the hybrid model, else the best baseline of notebook 06) "
        "or a model name of evaluation/recommendations.parquet.",
    ),
    Param(
        "explorer_live",
        "bool",
        False,
        "Also show the live explorers (kernel callbacks); the pipeline leaves them out because the book has no "
        "kernel, the notebook's own cell sets true for JupyterLab.",
    ),
    # --- 07_next_best_action ----------------------------------------------------
    Param(
        "plan_model",
        "str",
        "auto",
        "Engagement probabilities the plan is built from: 'auto' (the model with the lowest validation log-loss, "
        "chosen in notebook 06) or the name of a model evaluated there (e.g. 'hybrid', 'tabular', "
        "'v0.1_classifier').",
    ),
    Param(
        "plan_period_days",
        "int",
        7,
        "Length of the planned period, starting at the test cut-off (days).",
        minimum=1,
        maximum=28,
    ),
    Param("plan_max_actions_per_hcp", "int", 2, "Most suggested actions per HCP in the period.", minimum=0, maximum=10),
    Param("plan_hcp_cap_email", "int", 1, "Most emails per HCP in the period.", minimum=0, maximum=10),
    Param("plan_hcp_cap_webinar", "int", 1, "Most webinar invitations per HCP in the period.", minimum=0, maximum=10),
    Param("plan_hcp_cap_rep_visit", "int", 1, "Most rep visits per HCP in the period.", minimum=0, maximum=10),
    Param(
        "plan_hcp_cap_in_person_meeting",
        "int",
        1,
        "Most in-person meeting invitations per HCP in the period.",
        minimum=0,
        maximum=10,
    ),
    Param(
        "plan_hcp_cap_conference_event",
        "int",
        1,
        "Most social/conference event touches per HCP in the period.",
        minimum=0,
        maximum=10,
    ),
    Param(
        "plan_territory",
        "str",
        "state",
        "Territory of the field force (rep visits, in-person meetings).",
        choices=("state", "region"),
    ),
    Param(
        "plan_rep_visits_per_territory_week",
        "int",
        None,
        "Rep visits per territory and week; none = the business-as-usual volume of the last weeks "
        "(times plan_capacity_scale).",
        minimum=0,
        maximum=100_000,
        allow_none=True,
    ),
    Param(
        "plan_meetings_per_territory_week",
        "int",
        None,
        "In-person meetings per territory and week; none = the business-as-usual volume of the last weeks "
        "(times plan_capacity_scale).",
        minimum=0,
        maximum=100_000,
        allow_none=True,
    ),
    Param(
        "plan_capacity_scale",
        "float",
        1.0,
        "Touches per channel allowed in the period, as a multiple of the business-as-usual volume of the last "
        "plan_capacity_lookback_weeks (1 = the same capacity as business as usual).",
        minimum=0.0,
        maximum=100.0,
    ),
    Param(
        "plan_capacity_lookback_weeks",
        "int",
        4,
        "Weeks before the plan whose logged volume sets the capacities.",
        minimum=1,
        maximum=26,
    ),
    Param(
        "plan_repeat_window_days",
        "int",
        28,
        "Content the HCP received (any channel) in this many days before the plan is not suggested again.",
        minimum=0,
        maximum=365,
    ),
    Param(
        "plan_interest_window_days",
        "int",
        30,
        "Window of the 'recent topic interest' reason (days).",
        minimum=1,
        maximum=365,
    ),
    Param(
        "plan_candidates_per_channel",
        "int",
        3,
        "Candidate items kept per HCP and channel (highest model probability) before the solver.",
        minimum=1,
        maximum=100,
    ),
    Param(
        "plan_solver_time_limit_s",
        "float",
        60.0,
        "Time limit of the MILP solver (HiGHS) in seconds.",
        minimum=1.0,
        maximum=3600.0,
        scale_defaults={"tiny": 20.0, "full": 300.0, "stress": 600.0},
    ),
    Param(
        "plan_mip_rel_gap",
        "float",
        1e-4,
        "Relative optimality gap at which the MILP solver stops.",
        minimum=0.0,
        maximum=0.5,
        scale_defaults={"full": 1e-3, "stress": 1e-3},
    ),
    Param(
        "plan_milp_max_candidates",
        "int",
        2_000_000,
        "Most candidate actions the MILP is given; a larger plan is solved greedily, its gap to the optimum proven "
        "by the linear relaxation, and its status says so. With HiGHS's presolve off the MILP solves the small "
        "scale's 50,000 candidates in about 0.6 s, the full scale's 570,000 in about 30 s and the stress scale's "
        "1.4 million in about 210 s, each to proven optimality (benchmarks/bench_plan.py).",
        minimum=1,
        maximum=100_000_000,
    ),
    # --- 09_off_policy_evaluation -----------------------------------------------
    Param(
        "ope_clip_quantile",
        "float",
        0.01,
        "Clipped IPS caps each weight 1/propensity at the inverse of this quantile of the logged propensities.",
        minimum=1e-4,
        maximum=0.5,
    ),
    Param(
        "ope_reward_folds",
        "int",
        5,
        "Folds of HCPs the off-policy reward model is cross-fitted over.",
        minimum=2,
        maximum=20,
    ),
    # --- end of notebook parameters ---------------------------------------------
]

PARAMS: dict[str, Param] = {p.name: p for p in _PARAM_LIST}


def default(name: str) -> Any:
    """The default of notebook parameter ``name`` (at ``small``): the one place a default is
    written. Settings classes take their field defaults from here, so a default is never
    stated twice (``HybridSettings.sequence_length`` is ``default("max_seq_len")``)."""
    try:
        return PARAMS[name].default
    except KeyError:
        raise KeyError(f"no notebook parameter {name!r}; the parameters are listed in hcp_lib.config.PARAMS") from None


def field_defaults(mapping: dict[str, str]) -> dict[str, Any]:
    """The default of each settings field in ``mapping`` (notebook parameter -> field), from
    :func:`default`: what a settings dataclass writes as its fields' defaults."""
    return {field_name: default(name) for name, field_name in mapping.items()}


def settings_from_parameters(cls, params: dict[str, Any], **changes: Any):
    """An instance of settings dataclass ``cls`` from notebook parameters: each field named in
    ``cls.PARAMETERS`` (notebook parameter -> field, the one place they are mapped) takes the
    parameter's value from ``params`` when present (else its default, itself
    :func:`default`), then ``changes`` apply. Every settings class of the project
    (``HybridSettings``, ``PreprocessSettings``, ``LdaSettings``) is built this way."""
    values = {field: params[name] for name, field in cls.PARAMETERS.items() if name in params}
    return cls(**{**values, **changes})


def resolve_parameters(
    scale: str = DEFAULT_SCALE,
    seed: int | str = 42,
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Return every pipeline parameter, typed and validated, for one run.

    ``overrides`` holds user values (strings from ``-p key=value`` are converted).
    Raises :class:`ParameterError` naming the key and the allowed values for an
    unknown key or an invalid value, before any notebook starts.
    """
    overrides = dict(overrides or {})
    for reserved in RUNNER_PARAMS:
        if reserved in overrides:
            raise ParameterError(
                f"parameter {reserved!r} is set with its own option (--{reserved.replace('run_dir', 'out')}), not with -p"
            )
    unknown = sorted(set(overrides) - set(PARAMS))
    if unknown:
        known = ", ".join(sorted(set(PARAMS) - set(RUNNER_PARAMS)))
        raise ParameterError(f"unknown parameter {unknown[0]!r}; known parameters are: {known}")
    scale = PARAMS["scale"].coerce(scale)
    values: dict[str, Any] = {
        "run_dir": str(Path(run_dir if run_dir is not None else DEFAULT_RUN_DIR).resolve()),
        "scale": scale,
        "seed": PARAMS["seed"].coerce(seed),
    }
    for name, param in PARAMS.items():
        if name in RUNNER_PARAMS:
            continue
        values[name] = param.coerce(overrides[name]) if name in overrides else param.default_for(scale)
    check_combinations(values)
    return values


def check_world_dates(values: dict[str, Any]) -> None:
    """The world's horizon must hold the validation and test windows plus four weeks of training."""
    holdout_days = 2 * 7 * values["world_holdout_weeks"]
    if values["horizon_days"] < holdout_days + 28:
        raise ParameterError(
            f"parameter 'horizon_days': got {values['horizon_days']}; with world_holdout_weeks="
            f"{values['world_holdout_weeks']} it must be at least {holdout_days + 28} (validation + test + 4 weeks "
            "of training)"
        )


def check_corpus(corpus: str, live: bool) -> None:
    """``corpus`` must be one of its choices, and 'v01' (a shipped corpus) cannot be fetched live."""
    PARAMS["corpus"].coerce(corpus)
    if live and corpus == "v01":
        raise ParameterError(
            "parameter 'corpus': 'v01' selects the shipped v0.1 corpus and cannot be combined with "
            "pubmed_live=true; use corpus='all' with live mode"
        )


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def check_combinations(values: dict[str, Any]) -> None:
    """Checks that need more than one parameter, or knowledge of what the pipeline produces.

    Each raises :class:`ParameterError` naming the parameter, the value and what is accepted,
    so that a run is refused before its first notebook starts rather than in a later one.
    """
    check_world_dates(values)
    check_corpus(values["corpus"], values["pubmed_live"])
    if values["pubmed_email"] and not _EMAIL.fullmatch(values["pubmed_email"]):
        raise ParameterError(
            f"parameter 'pubmed_email': got {values['pubmed_email']!r}; expected an e-mail address "
            "(name@example.org) or nothing"
        )
    if values["topic_sweep_min"] > values["topic_sweep_max"]:
        raise ParameterError(
            f"parameter 'topic_sweep_min': got {values['topic_sweep_min']}; it must not exceed "
            f"topic_sweep_max ({values['topic_sweep_max']})"
        )
    _check_spacy_model(values["spacy_model"])
    names = evaluated_model_names(values["hybrid_ablations"])
    for key in ("explorer_model", "plan_model"):
        if values[key] != "auto" and values[key] not in names:
            raise ParameterError(
                f"parameter {key!r}: got {values[key]!r}; expected 'auto' or a model the run "
                f"evaluates: {', '.join(names)}"
            )


def _check_spacy_model(name: str) -> None:
    """'auto', 'blank' or an installed package (found without importing spaCy, which is slow to load)."""
    import importlib.util

    if name in ("auto", "blank"):
        return
    package = name.split("==")[0].strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", package) or importlib.util.find_spec(package) is None:
        raise ParameterError(
            f"parameter 'spacy_model': got {name!r}; expected 'auto', 'blank' or the name of an "
            "installed spaCy pipeline package (e.g. en_core_web_sm)"
        )


def evaluated_model_names(hybrid_ablations: bool = True) -> tuple[str, ...]:
    """Every model notebook 06 evaluates (and names in its recommendations and plan candidates):
    the oracle, the content baselines, the hybrid and the tabular challenger, the hybrid's
    ablations when ``hybrid_ablations`` is set, and the v0.1 classifier."""
    ablations = tuple(ablation_name(a) for a in HYBRID_ABLATIONS) if hybrid_ablations else ()
    return (
        ORACLE_NAME,
        *CONTENT_BASELINES,
        HYBRID_NAME,
        TABULAR_NAME,
        *ablations,
        V01_NAME,
    )


@dataclass(frozen=True)
class RunDir:
    """The layout of one run folder: each stage writes under its own sub-folder."""

    root: Path

    @property
    def content(self) -> Path:
        """01_ingestion: cleaned articles."""
        return self.root / "content"

    @property
    def world(self) -> Path:
        """02_synthesis: the synthetic HCP world and its ground truth."""
        return self.root / "world"

    @property
    def topics(self) -> Path:
        """03_topic_modeling: LDA model, doc-topic matrix, topic terms, pyLDAvis page."""
        return self.root / "topics"

    @property
    def cf(self) -> Path:
        """04_collaborative_filtering: baseline scores, factors, tuning table."""
        return self.root / "cf"

    @property
    def hybrid(self) -> Path:
        """05_hybrid_lstm: the trained model and its scores."""
        return self.root / "hybrid"

    @property
    def evaluation(self) -> Path:
        """06_evaluation: metrics.json, recommendations.parquet."""
        return self.root / "evaluation"

    @property
    def plan(self) -> Path:
        """07_next_best_action: the constrained plan, its reasons and CRM export."""
        return self.root / "plan"

    @property
    def metrics(self) -> Path:
        """Per-stage metric summaries (JSON), one file per stage."""
        return self.root / "metrics"

    @property
    def figures(self) -> Path:
        """Figures and HTML views the notebooks embed."""
        return self.root / "figures"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"
