"""Paths, scale presets and the notebook parameters, validated before anything runs.

Every notebook parameter the pipeline can inject is declared once here, as a
:class:`Param` with its type, allowed values or range, and its default (which may
depend on the scale preset). :func:`resolve_parameters` turns the user's ``--scale``,
``--seed`` and ``-p key=value`` strings into one dictionary of typed, checked values;
the runner injects the same values into every notebook that declares them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    ``kind`` is one of ``int``, ``float``, ``bool``, ``str``. ``default`` applies at
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
            text = {"int": "an integer", "float": "a number", "str": "a string"}[self.kind]
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


_CONVERTERS = {"int": _to_int, "float": _to_float, "bool": _to_bool, "str": _to_str}

# Parameters the runner sets itself, present in every notebook.
RUNNER_PARAMS = ("run_dir", "scale", "seed")

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
        "Articles to use: 'all' shipped records, or 'v01' (the 509-abstract corpus of v0.1 alone).",
        choices=("all", "v01"),
    ),
    Param("pubmed_live", "bool", False, "Fetch fresh records from NCBI E-utilities instead of the shipped snapshot."),
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
    # --- 03_topic_modeling ------------------------------------------------------
    # --- 04_collaborative_filtering ---------------------------------------------
    # --- end of notebook parameters ---------------------------------------------
]

PARAMS: dict[str, Param] = {p.name: p for p in _PARAM_LIST}


def resolve_parameters(scale: str = DEFAULT_SCALE, seed: int | str = 42, overrides: dict[str, Any] | None = None,
                       run_dir: str | Path | None = None) -> dict[str, Any]:
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
    return values


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
