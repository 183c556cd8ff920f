"""PubMed ingestion: the shipped snapshot (offline default), cleaning and the article schema.

Reads ``data/raw/*.csv`` (real PubMed records; provenance in ``data/README.md``),
maps both files onto one table with one ``therapeutic_area`` field, cleans it
(duplicate PMIDs, empty abstracts, whitespace and markup) and validates it against
:data:`ARTICLE_SCHEMA`. Notebook 01 writes the result to ``content/pubmed.parquet``
in the run folder; later stages read it with :func:`read_articles`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from . import config
from .io import DataValidationError, read_parquet, validate

THERAPEUTIC_AREAS = ("cardiovascular", "diabetes", "oncology", "respiratory", "thyroid", "vaccination")
SOURCES = ("v01_abstracts", "chronic_disease", "live")

# The shipped files, their column names, and how their labels map onto therapeutic areas.
SNAPSHOT_FILES = {
    "v01_abstracts": {
        "file": "pubmed_abstracts_2020_2025.csv",
        "columns": {"PMID": "pmid", "Title": "title", "Abstract": "abstract", "Topic": "query_label"},
        "areas": {
            "Diabetes Management": "diabetes",
            "Cardiovascular Risk": "cardiovascular",
            "Oncology Treatment Update": "oncology",
            "Thyroid Disorders": "thyroid",
            "Respiratory Care": "respiratory",
            "Vaccination Awareness": "vaccination",
        },
    },
    "chronic_disease": {
        "file": "pubmed_chronic_disease_2020_2025.csv",
        "columns": {"pmid": "pmid", "title": "title", "abstract": "abstract", "year": "pub_year",
                    "disease_group": "query_label"},
        "areas": {"cancer": "oncology", "cardiovascular": "cardiovascular", "diabetes": "diabetes",
                  "respiratory": "respiratory"},
    },
}

ARTICLE_COLUMNS = [
    "pmid", "title", "abstract", "has_abstract", "journal", "pub_year", "pub_date", "mesh_terms", "keywords",
    "publication_types", "query_label", "therapeutic_area", "source",
]

ARTICLE_SCHEMA = pa.DataFrameSchema(
    {
        "pmid": pa.Column(str, pa.Check.str_matches(r"^\d{1,9}$"), unique=True),
        "title": pa.Column(str, pa.Check.str_length(min_value=1)),
        "abstract": pa.Column(str),
        "has_abstract": pa.Column(bool),
        "journal": pa.Column(str, nullable=True),
        "pub_year": pa.Column("Int64", pa.Check.in_range(1800, 2100), nullable=True),
        "pub_date": pa.Column(str, nullable=True),
        "mesh_terms": pa.Column(str),
        "keywords": pa.Column(str),
        "publication_types": pa.Column(str),
        "query_label": pa.Column(str),
        "therapeutic_area": pa.Column(str, pa.Check.isin(THERAPEUTIC_AREAS)),
        "source": pa.Column(str, pa.Check.isin(SOURCES)),
    },
    name="article",
    strict=True,
    ordered=True,
)

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def normalise_text(value: object) -> str:
    """Unescape HTML entities, drop inline markup (``<i>``, ``<sup>``) and collapse whitespace.

    PubMed text carries only a few inline tags, so a tag-stripping regex is enough
    and avoids an HTML parser per field.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    text = html.unescape(_TAG.sub(" ", str(value)))
    return _SPACE.sub(" ", text).strip()


def load_snapshot(corpus: str = "all", raw_dir: Path = config.RAW_DATA_DIR) -> pd.DataFrame:
    """Read the shipped CSV snapshot(s) onto the article columns (not yet cleaned).

    ``corpus="v01"`` reads only the 509-record corpus of the v0.1 system, for
    like-for-like comparisons; ``"all"`` adds the chronic-disease records.
    """
    if corpus not in ("all", "v01"):
        raise ValueError(f"corpus must be 'all' or 'v01', got {corpus!r}")
    sources = ["v01_abstracts"] if corpus == "v01" else ["v01_abstracts", "chronic_disease"]
    return pd.concat([_read_snapshot_file(raw_dir, s) for s in sources], ignore_index=True)


def _read_snapshot_file(raw_dir: Path, source: str) -> pd.DataFrame:
    spec = SNAPSHOT_FILES[source]
    path = Path(raw_dir) / spec["file"]
    if not path.exists():
        raise FileNotFoundError(f"{path}: snapshot file not found (see data/README.md)")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in spec["columns"] if c not in raw.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column {missing[0]!r}; expected columns {list(spec['columns'])}")
    df = raw[list(spec["columns"])].rename(columns=spec["columns"])
    bad_pmid = df.loc[~df["pmid"].str.strip().str.fullmatch(r"\d{1,9}"), "pmid"]
    if len(bad_pmid):
        raise DataValidationError(f"{path}: column 'pmid' has a non-numeric value {bad_pmid.iloc[0]!r} "
                                  f"(row {bad_pmid.index[0] + 2} of the file)")
    unknown = df.loc[~df["query_label"].isin(list(spec["areas"])), "query_label"]
    if len(unknown):
        raise DataValidationError(f"{path}: column {_original(spec, 'query_label')!r} has an unknown label "
                                  f"{unknown.iloc[0]!r}; expected one of {sorted(spec['areas'])}")
    if "pub_year" in df:
        years = pd.to_numeric(df["pub_year"].replace("", None), errors="coerce")
        bad_year = df.loc[years.isna() & (df["pub_year"] != ""), "pub_year"]
        if len(bad_year):
            raise DataValidationError(f"{path}: column {_original(spec, 'pub_year')!r} has a non-numeric value "
                                      f"{bad_year.iloc[0]!r} (row {bad_year.index[0] + 2} of the file)")
        df["pub_year"] = years.astype("Int64")
    else:
        df["pub_year"] = pd.array([pd.NA] * len(df), dtype="Int64")
    df["therapeutic_area"] = df["query_label"].map(spec["areas"])
    df["source"] = source
    for column in ("journal", "pub_date"):
        df[column] = pd.Series([None] * len(df), dtype="string")
    for column in ("mesh_terms", "keywords", "publication_types"):
        df[column] = ""
    return df


def _original(spec: dict, column: str) -> str:
    return next(k for k, v in spec["columns"].items() if v == column)


def clean_articles(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Normalise text, drop duplicate PMIDs and empty records; validate the result.

    Rules (documented in ``data/README.md``):
    - title and abstract: entities unescaped, inline markup removed, whitespace collapsed;
    - duplicate PMIDs: the first record wins (the v0.1 corpus is read first);
    - empty abstract: the article is kept (its title still says what it is about) with
      ``has_abstract=False``; a record with neither title nor abstract is dropped.

    Returns the cleaned table and a data-quality count of each step.
    """
    df = raw.copy()
    df["pmid"] = df["pmid"].astype(str).str.strip()
    df["title"] = df["title"].map(normalise_text)
    df["abstract"] = df["abstract"].map(normalise_text)
    rows_in = len(df)
    duplicated = df["pmid"].duplicated(keep="first")
    df = df.loc[~duplicated]
    empty = (df["title"] == "") & (df["abstract"] == "")
    df = df.loc[~empty]
    # A record with an abstract but no title gets the abstract's first words as title.
    no_title = df["title"] == ""
    df.loc[no_title, "title"] = df.loc[no_title, "abstract"].str.slice(0, 120)
    df["has_abstract"] = df["abstract"] != ""
    df = df[ARTICLE_COLUMNS].reset_index(drop=True)
    for column in ("pmid", "title", "abstract", "mesh_terms", "keywords", "publication_types", "query_label",
                   "therapeutic_area", "source", "journal", "pub_date"):
        df[column] = df[column].astype("string")
    df["pub_year"] = df["pub_year"].astype("Int64")
    df = validate(df, ARTICLE_SCHEMA, "cleaned articles")
    quality = {
        "rows_in": rows_in,
        "duplicate_pmids_removed": int(duplicated.sum()),
        "empty_records_removed": int(empty.sum()),
        "empty_abstracts_kept": int((~df["has_abstract"]).sum()),
        "rows_out": len(df),
    }
    return df, quality


def articles_path(run_dir: str | Path) -> Path:
    return config.RunDir(Path(run_dir)).content / "pubmed.parquet"


def read_articles(run_dir: str | Path) -> pd.DataFrame:
    """The cleaned articles of a run (written by notebook 01), validated."""
    return read_parquet(articles_path(run_dir), ARTICLE_SCHEMA)
