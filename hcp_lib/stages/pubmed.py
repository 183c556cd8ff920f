"""PubMed ingestion: the shipped snapshot (offline default), live E-utilities, XML parsing, cleaning.

Two ways in, one table out:

- offline (default): ``data/raw/*.csv``, real PubMed records shipped with the project
  (provenance in ``data/README.md``), mapped onto one table with one ``therapeutic_area``;
- live (opt-in, ``pubmed_live=True``): one NCBI E-utilities query per therapeutic area over
  2020–2025 (``esearch`` then batched ``efetch``), rate-limited, retried with backoff, the
  raw XML cached under ``data/raw/live/``; :func:`parse_pubmed_xml` turns each
  ``PubmedArticleSet`` into rows.

:func:`clean_articles` removes duplicate PMIDs, correction notices and empty records,
normalises whitespace and markup, strips control characters (as every loader does on
reading: :func:`strip_control_characters`), and validates the result against :data:`ARTICLE_SCHEMA`.
:func:`ingest` (called by notebook 01) writes it to ``content/pubmed.parquet`` and the
data-quality counts to ``metrics/ingestion.json`` in the run folder; later stages read the
articles with :func:`read_articles`. No author names or affiliations are extracted.
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pandera.pandas as pa

from .. import config
from ..domain import THERAPEUTIC_AREAS
from ..io import DataValidationError, atomic_path, read_parquet, validate, write_json, write_parquet

log = logging.getLogger(__name__)

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
        "columns": {
            "pmid": "pmid",
            "title": "title",
            "abstract": "abstract",
            "year": "pub_year",
            "disease_group": "query_label",
        },
        "areas": {
            "cancer": "oncology",
            "cardiovascular": "cardiovascular",
            "diabetes": "diabetes",
            "respiratory": "respiratory",
        },
    },
}

ARTICLE_COLUMNS = [
    "pmid",
    "title",
    "abstract",
    "has_abstract",
    "journal",
    "pub_year",
    "pub_date",
    "mesh_terms",
    "keywords",
    "publication_types",
    "query_label",
    "therapeutic_area",
    "source",
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

# The columns a loader (snapshot or XML) delivers; clean_articles adds has_abstract.
_RAW_COLUMNS = [c for c in ARTICLE_COLUMNS if c != "has_abstract"]
YEAR_RANGE = (1800, 2100)
LIST_SEPARATOR = "; "


class PubMedXMLError(DataValidationError):
    """A PubMed XML file or response is malformed; the message names it."""


class PubMedUnavailableError(RuntimeError):
    """Live mode could not get an answer from NCBI E-utilities; the message says what to do."""


# --------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------

# Only the inline tags PubMed text carries (DTD: b, i, u, sup, sub, plus MathML and a few
# HTML leftovers in harvested files). A generic "<...>" pattern would eat the text between
# "P < .01" and the next ">", so the tag names are listed. Inline tags sit inside words
# ("H<sub>2</sub>S"), so they are removed without a space; block tags become a space.
_INLINE_TAG = re.compile(r"</?(?:b|i|u|em|strong|sup|sub|span|mml:[a-z]+)(?:\s[^<>]*)?/?>", re.IGNORECASE)
_BLOCK_TAG = re.compile(r"</?(?:p|br|div)(?:\s[^<>]*)?/?>", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# Unicode control characters (category Cc: C0, DEL, C1). The ones that are ordinary line and
# column breaks (tab, LF, VT, FF, CR, NEL) become a space; the rest (NUL, BEL, ESC, the C1
# block...) carry no text and are removed without a trace, so "Dia\x00betes" stays one word.
_CONTROL_WHITESPACE = re.compile(r"[\t\n\v\f\r\x85]")
_CONTROL_OTHER = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")


def strip_control_characters(text: str) -> str:
    """``text`` without control characters: tab/newline/CR/VT/FF/NEL become a space, the others go.

    The one place the ingestion decides what a control character is; used on every
    snapshot cell as it is read and by :func:`normalise_text` (hence on every XML field).
    """
    return _CONTROL_WHITESPACE.sub(" ", _CONTROL_OTHER.sub("", text))


def normalise_text(value: object) -> str:
    """Drop control characters and PubMed's inline markup, unescape HTML entities, collapse whitespace.

    Control characters (NUL, BEL, the C1 block...) are removed and tabs/newlines become
    spaces (:func:`strip_control_characters`), before the markup is read and again after
    the entities are decoded (``&amp;#x81;`` decodes to one); ``<i>``, ``<b>``, ``<sup>``,
    ``<sub>`` (and MathML) are removed keeping their text ("H<sub>2</sub>S" -> "H2S");
    ``<p>``/``<br>`` become a space; entities such as ``&#39;`` are decoded after the tags
    are gone, so escaped text is never taken for a tag; every run of whitespace (including
    no-break and thin spaces) becomes one space. Missing values give ``""``.
    """
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    text = _BLOCK_TAG.sub(" ", _INLINE_TAG.sub("", strip_control_characters(str(value))))
    return _SPACE.sub(" ", strip_control_characters(html.unescape(text))).strip()


# --------------------------------------------------------------------------------------
# The shipped snapshot
# --------------------------------------------------------------------------------------


def load_snapshot(corpus: str = "all", raw_dir: Path = config.RAW_DATA_DIR) -> pd.DataFrame:
    """Read the shipped CSV snapshot(s) onto the article columns (not yet cleaned).

    ``corpus="v01"`` reads only the 509-record corpus of the v0.1 system, for
    like-for-like comparisons; ``"all"`` adds the chronic-disease records. Each row
    keeps its ``source`` (the file it came from). A missing file or column, a
    non-numeric PMID or year, a year outside 1800–2100, or an unknown topic label raises
    :class:`DataValidationError` naming the file, the column and the value.
    """
    if corpus not in ("all", "v01"):
        raise ValueError(f"corpus must be 'all' or 'v01', got {corpus!r}")
    sources = ["v01_abstracts"] if corpus == "v01" else ["v01_abstracts", "chronic_disease"]
    return pd.concat([_read_snapshot_file(Path(raw_dir), s) for s in sources], ignore_index=True)


def _read_snapshot_file(raw_dir: Path, source: str) -> pd.DataFrame:
    spec = SNAPSHOT_FILES[source]
    path = raw_dir / spec["file"]
    if not path.exists():
        raise FileNotFoundError(f"{path}: snapshot file not found (see data/README.md)")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataValidationError(f"{path}: not a readable UTF-8 CSV file ({err})") from None
    raw = raw.apply(lambda column: column.map(strip_control_characters))  # a stray NUL must not survive ingestion
    missing = [c for c in spec["columns"] if c not in raw.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column {missing[0]!r}; expected columns {list(spec['columns'])}")
    df = raw[list(spec["columns"])].rename(columns=spec["columns"])
    df["pmid"] = df["pmid"].str.strip()
    bad_pmid = df.loc[~df["pmid"].str.fullmatch(r"\d{1,9}"), "pmid"]
    if len(bad_pmid):
        raise DataValidationError(
            f"{path}: column {_original(spec, 'pmid')!r} has a non-numeric value "
            f"{bad_pmid.iloc[0]!r} (row {bad_pmid.index[0] + 2} of the file)"
        )
    unknown = df.loc[~df["query_label"].isin(list(spec["areas"])), "query_label"]
    if len(unknown):
        raise DataValidationError(
            f"{path}: column {_original(spec, 'query_label')!r} has an unknown label "
            f"{unknown.iloc[0]!r} (row {unknown.index[0] + 2} of the file); "
            f"expected one of {sorted(spec['areas'])}"
        )
    if "pub_year" in df:
        df["pub_year"] = _checked_years(df["pub_year"].str.strip(), path, _original(spec, "pub_year"))
    else:
        df["pub_year"] = pd.array([pd.NA] * len(df), dtype="Int64")
    df["therapeutic_area"] = df["query_label"].map(spec["areas"])
    df["source"] = source
    for column in ("journal", "pub_date"):
        df[column] = pd.Series([None] * len(df), dtype="string")
    for column in ("mesh_terms", "keywords", "publication_types"):
        df[column] = ""
    return df[_RAW_COLUMNS]


def _checked_years(years: pd.Series, path: Path, column: str) -> pd.Series:
    """Parse a year column ('' = unknown); a non-numeric or out-of-range value is an error naming it."""
    numbers = pd.to_numeric(years.replace("", None), errors="coerce")
    bad = years[(numbers.isna() & (years != "")) | (numbers % 1 != 0)]
    if len(bad):
        raise DataValidationError(
            f"{path}: column {column!r} has a non-numeric value {bad.iloc[0]!r} (row {bad.index[0] + 2} of the file)"
        )
    out_of_range = years[(numbers < YEAR_RANGE[0]) | (numbers > YEAR_RANGE[1])]
    if len(out_of_range):
        raise DataValidationError(
            f"{path}: column {column!r} has the year {out_of_range.iloc[0]!r} "
            f"(row {out_of_range.index[0] + 2} of the file), outside {YEAR_RANGE[0]}–{YEAR_RANGE[1]}"
        )
    return numbers.astype("Int64")


def _original(spec: dict, column: str) -> str:
    return next(k for k, v in spec["columns"].items() if v == column)


# --------------------------------------------------------------------------------------
# PubMed XML (efetch responses and baseline files)
# --------------------------------------------------------------------------------------

_MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
_MEDLINE_DATE = re.compile(r"(?P<year>\d{4})(?:[\s-]+(?P<month>[A-Za-z]{3})[a-z]*)?")


def parse_pubmed_xml(
    xml: str | Path | bytes, *, query_label: str, therapeutic_area: str, source: str = "live", name: str | None = None
) -> pd.DataFrame:
    """One row per ``PubmedArticle`` of a ``PubmedArticleSet``, with the raw article columns.

    ``xml`` is a file path or the XML itself (bytes or text); ``name`` names it in error
    messages (default: the path). Per article: ``pmid`` (MedlineCitation/PMID); ``title``
    (ArticleTitle, inline markup kept as text); ``abstract`` (every AbstractText section,
    in order, as ``"LABEL: text"`` where the section has a Label, joined by a space);
    ``journal`` (Journal/Title); ``pub_date`` and ``pub_year`` (see :func:`publication_date`);
    ``mesh_terms`` (MeSH descriptor names), ``keywords``, ``publication_types``, each
    joined by ``"; "``; plus ``query_label``, ``therapeutic_area`` and ``source`` as given.
    Author names and affiliations are not read. ``PubmedBookArticle`` and
    ``DeleteCitation`` entries are skipped. Malformed XML, another root element, an
    E-utilities error document or an article without a PMID raises :class:`PubMedXMLError`
    naming the file.
    """
    label = name or (str(xml) if isinstance(xml, Path) else "PubMed XML")
    try:
        # xml.etree never fetches external entities or DTDs, and the expat it ships with
        # (>= 2.4.1) refuses entity-expansion bombs, so network responses are safe to parse.
        root = ET.parse(xml).getroot() if isinstance(xml, Path) else ET.fromstring(xml)
    except ET.ParseError as err:
        raise PubMedXMLError(f"{label}: malformed XML ({err})") from None
    except OSError as err:
        raise PubMedXMLError(f"{label}: cannot read the file ({err.strerror or err})") from None
    if root.tag != "PubmedArticleSet":
        detail = normalise_text("".join(root.itertext()))[:200]
        raise PubMedXMLError(
            f"{label}: expected a PubmedArticleSet document, found <{root.tag}>"
            + (f" saying {detail!r}" if detail else "")
        )
    rows = []
    for position, article in enumerate(root.findall("PubmedArticle"), start=1):
        row = parse_article(article)
        if not row["pmid"]:
            raise PubMedXMLError(f"{label}: article {position} has no MedlineCitation/PMID")
        rows.append(row)
    df = pd.DataFrame(rows, columns=[c for c in _RAW_COLUMNS if c not in ("query_label", "therapeutic_area", "source")])
    df["pub_year"] = pd.array(df["pub_year"], dtype="Int64")
    df["query_label"] = query_label
    df["therapeutic_area"] = therapeutic_area
    df["source"] = source
    return df[_RAW_COLUMNS]


def parse_article(article: ET.Element) -> dict[str, Any]:
    """The article columns of one ``PubmedArticle`` element (see :func:`parse_pubmed_xml`)."""
    citation = article.find("MedlineCitation")
    if citation is None:
        citation = ET.Element("MedlineCitation")
    body = citation.find("Article")
    if body is None:
        body = ET.Element("Article")
    pub_date, pub_year = publication_date(body.find("Journal/JournalIssue/PubDate"))
    if pub_year is None:  # no print date: fall back on the electronic publication date
        pub_date, pub_year = publication_date(body.find("ArticleDate"))
    journal = _text(body.find("Journal/Title")) or _text(citation.find("MedlineJournalInfo/MedlineTA"))
    return {
        "pmid": _text(citation.find("PMID")),
        "title": _text(body.find("ArticleTitle")) or _text(body.find("VernacularTitle")),
        "abstract": " ".join(_abstract_sections(body.find("Abstract"))),
        "journal": journal or None,
        "pub_year": pub_year,
        "pub_date": pub_date,
        "mesh_terms": _joined(citation.iterfind("MeshHeadingList/MeshHeading/DescriptorName")),
        "keywords": _joined(citation.iterfind("KeywordList/Keyword")),
        "publication_types": _joined(body.iterfind("PublicationTypeList/PublicationType")),
    }


def publication_date(date: ET.Element | None) -> tuple[str | None, int | None]:
    """``(pub_date, pub_year)`` of a PubDate/ArticleDate element.

    ``pub_date`` is ISO-like at the precision PubMed gives: ``"2022-02-22"``,
    ``"2014-06"`` or ``"2020"``. A ``Season`` keeps the year alone. A ``MedlineDate``
    (free text such as ``"2021 Jan-Feb"``, ``"2020 Winter"``, ``"2019 Dec-2020 Jan"``)
    gives its first year and, when a month name follows it, that month
    (``"2021-01"``). ``(None, None)`` when no year can be found.
    """
    if date is None:
        return None, None
    year = _text(date.find("Year"))
    if not year:
        found = _MEDLINE_DATE.search(_text(date.find("MedlineDate")))
        if not found:
            return None, None
        month = _MONTHS.get((found["month"] or "").lower())
        return (f"{found['year']}-{month:02d}" if month else found["year"]), int(found["year"])
    if not year.isdigit():
        return None, None
    month_text = _text(date.find("Month"))
    month = int(month_text) if month_text.isdigit() else _MONTHS.get(month_text[:3].lower())
    day = _text(date.find("Day"))
    if month and 1 <= month <= 12 and day.isdigit():
        return f"{year}-{month:02d}-{int(day):02d}", int(year)
    if month and 1 <= month <= 12:
        return f"{year}-{month:02d}", int(year)
    return year, int(year)


def _abstract_sections(abstract: ET.Element | None) -> Iterable[str]:
    if abstract is None:
        return []
    sections = []
    for part in abstract.iterfind("AbstractText"):
        text = _text(part)
        if text:
            label = normalise_text(part.get("Label"))
            sections.append(f"{label}: {text}" if label else text)
    return sections


def _text(element: ET.Element | None) -> str:
    """All text inside ``element`` (inline markup such as <i> flattened), normalised."""
    return "" if element is None else normalise_text("".join(element.itertext()))


def _joined(elements: Iterable[ET.Element]) -> str:
    values = [_text(e) for e in elements]
    return LIST_SEPARATOR.join(dict.fromkeys(v for v in values if v))  # ordered, without repeats


# --------------------------------------------------------------------------------------
# Live mode: NCBI E-utilities
# --------------------------------------------------------------------------------------

EUTILS_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
LIVE_CACHE_DIR = config.RAW_DATA_DIR / "live"
LIVE_YEARS = (2020, 2025)
EFETCH_BATCH_SIZE = 200  # NCBI's advice for id lists sent with GET
TOOL_NAME = "hcp_hybrid_recommender"
# One query per therapeutic area: the v0.1 topic labels, except oncology, whose v0.1 label
# ("Oncology Treatment Update") matched only 11 articles.
LIVE_QUERIES = {
    "cardiovascular": "cardiovascular risk",
    "diabetes": "diabetes management",
    "oncology": "cancer treatment",
    "respiratory": "respiratory care",
    "thyroid": "thyroid disorders",
    "vaccination": "vaccination awareness",
}
_RETRY_STATUS = {429, 500, 502, 503, 504}


def live_query(label: str, years: tuple[int, int] = LIVE_YEARS) -> str:
    """The PubMed search term of one area: the label in title/abstract, published in ``years``."""
    return f'{label}[Title/Abstract] AND ("{years[0]}"[PDAT] : "{years[1]}"[PDAT])'


class Transport(Protocol):
    """What the E-utilities client needs from HTTP: GET a URL, return (status code, body)."""

    def get(self, url: str, params: dict[str, str], timeout: float) -> tuple[int, bytes]: ...


class RequestsTransport:
    """HTTP GET with ``requests``; connection problems raise ``requests.RequestException``."""

    def __init__(self) -> None:
        import requests

        self._session = requests.Session()

    def get(self, url: str, params: dict[str, str], timeout: float) -> tuple[int, bytes]:
        response = self._session.get(url, params=params, timeout=timeout)
        return response.status_code, response.content


class RateLimiter:
    """Space calls at least ``1 / per_second`` seconds apart (NCBI: 3/s, 10/s with an API key)."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._last: float | None = None

    def wait(self) -> None:
        """Block until the next call is allowed, then record it."""
        if self._last is not None:
            remaining = self._last + self.interval - self._clock()
            if remaining > 0:
                self._sleep(remaining)
        self._last = self._clock()


class EUtilsClient:
    """A small NCBI E-utilities client: rate limit, retries with exponential backoff, key redaction.

    The API key comes from the ``NCBI_API_KEY`` environment variable (or ``api_key``);
    it is sent with each request and never appears in a message, a log line or ``repr``.
    A request is tried ``1 + max_retries`` times on connection errors, timeouts and HTTP
    429/5xx, waiting ``backoff_s`` seconds before the first retry and twice as long before
    each next one; other HTTP errors fail at once. Failures raise
    :class:`PubMedUnavailableError`. Transports raise ``OSError`` (``requests``'
    exceptions are ``OSError`` subclasses) for connection problems.
    """

    def __init__(
        self,
        email: str = "",
        api_key: str | None = None,
        transport: Transport | None = None,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._api_key = api_key if api_key is not None else os.environ.get("NCBI_API_KEY", "").strip() or None
        self.email = email
        self.transport = transport if transport is not None else RequestsTransport()
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self.rate_limiter = RateLimiter(10.0 if self._api_key else 3.0, clock=clock, sleep=sleep)

    def __repr__(self) -> str:
        return f"EUtilsClient(email={self.email!r}, api_key={'set' if self._api_key else 'not set'})"

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced by ``***`` (request URLs in error messages carry it)."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def request(self, utility: str, params: dict[str, str]) -> bytes:
        """GET ``{EUTILS_URL}{utility}.fcgi`` with ``params`` (plus tool, email, key); the body."""
        url = f"{EUTILS_URL}{utility}.fcgi"
        query = {**params, "tool": TOOL_NAME}
        if self.email:
            query["email"] = self.email
        if self._api_key:
            query["api_key"] = self._api_key
        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning(
                    "E-utilities %s: %s; retry %d of %d in %.1f s", utility, problem, attempt, self.max_retries, delay
                )
                self._sleep(delay)
            self.rate_limiter.wait()
            try:
                status, body = self.transport.get(url, query, self.timeout_s)
            except OSError as err:  # requests' exceptions derive from OSError too
                problem = self.redact(_network_problem(err))
                continue
            if status == 200:
                return body
            problem = f"HTTP {status}"
            if status not in _RETRY_STATUS:
                detail = self.redact(normalise_text(body.decode("utf-8", "replace"))[:200])
                raise PubMedUnavailableError(
                    f"NCBI E-utilities {utility} refused the request ({problem}: {detail}); "
                    "check the query, pubmed_email and NCBI_API_KEY, or run with pubmed_live=false"
                ) from None
        raise PubMedUnavailableError(
            f"NCBI E-utilities ({url}) could not be reached after {self.max_retries + 1} attempt(s) "
            f"(last error: {problem}). Check the network connection, or run with pubmed_live=false "
            "to use the shipped snapshot; no articles were written."
        ) from None

    def esearch(self, term: str, retmax: int) -> bytes:
        """The raw ``esearch`` XML: up to ``retmax`` PMIDs matching ``term``, most recent first."""
        return self.request(
            "esearch", {"db": "pubmed", "term": term, "retmax": str(retmax), "retmode": "xml", "sort": "pub_date"}
        )

    def efetch(self, pmids: list[str]) -> bytes:
        """The raw ``efetch`` XML (``PubmedArticleSet``) of ``pmids``."""
        return self.request("efetch", {"db": "pubmed", "id": ",".join(pmids), "retmode": "xml", "rettype": "abstract"})


def _network_problem(err: OSError) -> str:
    """A one-line cause: for ``requests`` errors the underlying reason (e.g. a failed DNS lookup)."""
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return f"{type(err).__name__}: {reason if reason is not None else err}"


def parse_esearch_ids(xml: bytes, name: str) -> list[str]:
    """The PMIDs of an ``esearch`` response; its ERROR element or malformed XML raises naming ``name``."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise PubMedXMLError(f"{name}: malformed XML ({err})") from None
    if root.tag != "eSearchResult" or root.find("ERROR") is not None:
        detail = _text(root.find("ERROR")) or f"root element <{root.tag}>"
        raise PubMedXMLError(f"{name}: not a usable esearch result ({detail})")
    return [_text(e) for e in root.iterfind("IdList/Id")]


def fetch_live(
    max_per_query: int = 100,
    email: str = "",
    cache_dir: Path = LIVE_CACHE_DIR,
    client: EUtilsClient | None = None,
    batch_size: int = EFETCH_BATCH_SIZE,
    areas: Iterable[str] = THERAPEUTIC_AREAS,
) -> pd.DataFrame:
    """Search and fetch up to ``max_per_query`` articles per therapeutic area (2020–2025), parsed.

    Each response is checked (parsed) before it is cached, atomically, under
    ``cache_dir``: ``<area>_esearch_<hash>.xml`` keyed by the search term and
    ``max_per_query``, ``<area>_efetch_<hash>.xml`` keyed by the batch's PMIDs. A cached
    response is reused without a request (delete ``cache_dir`` to refetch). Returns the
    raw article rows (``source="live"``), not yet cleaned.
    """
    client = client if client is not None else EUtilsClient(email=email)
    cache_dir = Path(cache_dir)
    frames = []
    for area in areas:
        label = LIVE_QUERIES[area]
        term = live_query(label)
        search_xml = _cached(
            cache_dir / f"{area}_esearch_{_digest(term, str(max_per_query))}.xml",
            lambda term=term: client.esearch(term, max_per_query),
            lambda xml, name: parse_esearch_ids(xml, name),
        )
        pmids = parse_esearch_ids(search_xml, f"esearch response for {area!r}")
        log.info("%s: %d PMIDs for %s", area, len(pmids), term)
        for start in range(0, len(pmids), batch_size):
            batch = pmids[start : start + batch_size]
            fetch_xml = _cached(
                cache_dir / f"{area}_efetch_{_digest(*batch)}.xml",
                lambda batch=batch: client.efetch(batch),
                lambda xml, name, label=label, area=area: parse_pubmed_xml(
                    xml, query_label=label, therapeutic_area=area, name=name
                ),
            )
            frames.append(
                parse_pubmed_xml(
                    fetch_xml,
                    query_label=label,
                    therapeutic_area=area,
                    name=f"efetch response for {area!r} (PMIDs {batch[0]}…)",
                )
            )
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="Int64" if c == "pub_year" else "string") for c in _RAW_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def _cached(path: Path, fetch: Callable[[], bytes], check: Callable[[bytes, str], Any]) -> bytes:
    """The cached response at ``path``, or ``fetch()``'s, checked, then cached atomically."""
    if path.exists():
        return path.read_bytes()
    body = fetch()
    check(body, f"E-utilities response for {path.name}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(body)
    return body


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# Cleaning and the run's outputs
# --------------------------------------------------------------------------------------

QUALITY_COUNTS = (
    "rows_in",
    "duplicate_pmids_removed",
    "correction_notices_removed",
    "empty_records_removed",
    "empty_abstracts_kept",
    "rows_out",
)
# Errata point to another article and say nothing of their own.
_CORRECTION_TITLE = re.compile(r"^\s*\[?(?:correction|corrigendum|erratum)\b", re.IGNORECASE)
_CORRECTION_ABSTRACT = re.compile(r"^\s*\[?this corrects the article\b", re.IGNORECASE)
_CORRECTION_TYPES = {"Published Erratum", "Retraction of Publication"}
_TITLE_FALLBACK_CHARS = 120


def clean_articles(raw: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Normalise text, drop duplicate PMIDs, correction notices and empty records; validate.

    Rules (documented in ``data/README.md``), applied in this order:

    1. text (title, abstract, journal, MeSH terms, keywords, publication types, dates):
       control characters removed, inline markup removed, entities unescaped, whitespace
       collapsed (:func:`normalise_text`);
    2. duplicate PMIDs: one record per PMID, the first one that has an abstract (the
       first one when none has); the v0.1 corpus is read first;
    3. correction notices removed: a title starting "Correction", "Corrigendum" or
       "Erratum", an abstract starting "[This corrects the article", or the publication
       type "Published Erratum" / "Retraction of Publication";
    4. empty abstract: the article is kept (its title still says what it is about) with
       ``has_abstract=False``; a record with neither title nor abstract is dropped; one
       with an abstract but no title gets the abstract's first words as title.

    Returns the cleaned table (validated against :data:`ARTICLE_SCHEMA`, in input order)
    and the data-quality counts: :data:`QUALITY_COUNTS` in total, and the same per
    ``source`` under ``"by_source"`` (a removed row counts against its own source).
    """
    missing = [c for c in _RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise DataValidationError(f"raw articles: missing column {missing[0]!r}; expected {_RAW_COLUMNS}")
    df = raw[_RAW_COLUMNS].copy().reset_index(drop=True)
    df["pmid"] = df["pmid"].astype("string").str.strip()
    for column in ("title", "abstract", "mesh_terms", "keywords", "publication_types", "query_label"):
        df[column] = df[column].map(normalise_text)
    for column in ("journal", "pub_date"):
        df[column] = df[column].map(lambda v: normalise_text(v) or None)

    # A stable sort puts records with an abstract first, so keep="first" keeps the first
    # record with an abstract; the original order is restored by the index afterwards.
    with_abstract_first = df.sort_values("abstract", key=lambda a: a.eq(""), kind="stable")
    duplicate = with_abstract_first["pmid"].duplicated(keep="first").reindex(df.index)
    correction = ~duplicate & (
        df["title"].str.contains(_CORRECTION_TITLE)
        | df["abstract"].str.contains(_CORRECTION_ABSTRACT)
        | df["publication_types"].map(lambda t: bool(_CORRECTION_TYPES.intersection(t.split(LIST_SEPARATOR))))
    )
    empty = ~duplicate & ~correction & (df["title"] == "") & (df["abstract"] == "")
    kept = df.loc[~(duplicate | correction | empty)].copy()
    no_title = kept["title"] == ""
    kept.loc[no_title, "title"] = kept.loc[no_title, "abstract"].map(
        lambda a: textwrap.shorten(a, _TITLE_FALLBACK_CHARS, placeholder=" …")
    )
    kept["has_abstract"] = kept["abstract"] != ""
    kept = kept[ARTICLE_COLUMNS].reset_index(drop=True)
    for column in ARTICLE_COLUMNS:
        if column not in ("has_abstract", "pub_year"):
            kept[column] = kept[column].astype("string")
    kept["has_abstract"] = kept["has_abstract"].astype(bool)
    kept["pub_year"] = kept["pub_year"].astype("Int64")
    kept = validate(kept, ARTICLE_SCHEMA, "cleaned articles")

    steps = pd.DataFrame({"source": df["source"], "duplicate": duplicate, "correction": correction, "empty": empty})
    quality = _quality_counts(steps, kept)
    quality["by_source"] = {
        source: _quality_counts(steps[steps["source"] == source], kept[kept["source"] == source])
        for source in dict.fromkeys(df["source"])
    }
    return kept, quality


def _quality_counts(steps: pd.DataFrame, kept: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows_in": len(steps),
        "duplicate_pmids_removed": int(steps["duplicate"].sum()),
        "correction_notices_removed": int(steps["correction"].sum()),
        "empty_records_removed": int(steps["empty"].sum()),
        "empty_abstracts_kept": int((~kept["has_abstract"]).sum()),
        "rows_out": len(kept),
    }


def quality_table(quality: dict[str, Any]) -> pd.DataFrame:
    """The data-quality counts as a table: one row per source plus ``total``, one column per count."""
    rows = {source: counts for source, counts in quality["by_source"].items()}
    rows["total"] = {k: quality[k] for k in QUALITY_COUNTS}
    table = pd.DataFrame.from_dict(rows, orient="index")[list(QUALITY_COUNTS)]
    table.index.name = "source"
    return table


def load_articles(
    corpus: str = "all",
    live: bool = False,
    max_per_query: int = 100,
    email: str = "",
    client: EUtilsClient | None = None,
    raw_dir: Path = config.RAW_DATA_DIR,
    cache_dir: Path = LIVE_CACHE_DIR,
) -> pd.DataFrame:
    """The raw articles of a run: the shipped snapshot (``corpus``), or live E-utilities records.

    ``corpus="v01"`` names a shipped corpus, so it cannot be combined with ``live``.
    """
    config.check_corpus(corpus, live)
    if live:
        return fetch_live(max_per_query=max_per_query, email=email, cache_dir=cache_dir, client=client)
    return load_snapshot(corpus, raw_dir=raw_dir)


def ingest(
    run_dir: str | Path,
    corpus: str = "all",
    live: bool = False,
    max_per_query: int = 100,
    email: str = "",
    client: EUtilsClient | None = None,
    raw_dir: Path = config.RAW_DATA_DIR,
    cache_dir: Path = LIVE_CACHE_DIR,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load (:func:`load_articles`), clean and write the run's articles and data-quality counts.

    Writes ``content/pubmed.parquet`` (:func:`articles_path`) and
    ``metrics/ingestion.json`` (the counts of :func:`clean_articles`, the mode, the
    corpus and, in live mode, the queries). Everything is loaded and validated before the
    first write, and each write is atomic, so a failure leaves the run folder untouched.
    """
    raw = load_articles(
        corpus, live=live, max_per_query=max_per_query, email=email, client=client, raw_dir=raw_dir, cache_dir=cache_dir
    )
    articles, quality = clean_articles(raw)
    if articles.empty:
        what = "the live queries returned" if live else f"the {corpus!r} snapshot holds"
        raise DataValidationError(f"no articles to write: {what} no usable record ({quality['rows_in']} rows in)")
    metrics = {
        "mode": "live" if live else "snapshot",
        "corpus": corpus,
        **quality,
        "articles_per_area": articles["therapeutic_area"].value_counts().sort_index().to_dict(),
        "articles_without_year": int(articles["pub_year"].isna().sum()),
    }
    if live:
        metrics["queries"] = {area: live_query(label) for area, label in LIVE_QUERIES.items()}
        metrics["max_per_query"] = max_per_query
    run = config.RunDir(Path(run_dir))
    write_parquet(articles, articles_path(run_dir), ARTICLE_SCHEMA)
    write_json(metrics, run.metrics / "ingestion.json")
    return articles, quality


def articles_per_area_year(articles: pd.DataFrame) -> pd.DataFrame:
    """Article counts, one row per therapeutic area, one column per publication year ('unknown' last)."""
    year = articles["pub_year"].astype("string").fillna("unknown")
    table = pd.crosstab(articles["therapeutic_area"], year)
    ordered = sorted(c for c in table.columns if c != "unknown") + [c for c in table.columns if c == "unknown"]
    return table[ordered]


def abstract_words(articles: pd.DataFrame) -> pd.Series:
    """Words per abstract (whitespace-separated tokens) of the articles that have one."""
    with_abstract = articles.loc[articles["has_abstract"], "abstract"]
    return with_abstract.str.split().str.len().astype(int)


def articles_path(run_dir: str | Path) -> Path:
    return config.RunDir(Path(run_dir)).content / "pubmed.parquet"


def read_articles(run_dir: str | Path) -> pd.DataFrame:
    """The cleaned articles of a run (written by notebook 01), validated."""
    return read_parquet(articles_path(run_dir), ARTICLE_SCHEMA)
