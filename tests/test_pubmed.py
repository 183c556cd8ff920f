"""Tests of hcp_lib.stages.pubmed: XML parser, snapshot loading, cleaning, live mode (fake HTTP), ingest."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from hcp_lib import config
from hcp_lib.domain import THERAPEUTIC_AREAS
from hcp_lib.io import DataValidationError
from hcp_lib.stages import pubmed

DATA = Path(__file__).parent / "data"
EFETCH_SAMPLE = DATA / "efetch_sample_5_articles.xml"
BASELINE_SAMPLE = DATA / "baseline_sample_3_articles.xml"
EDGE_CASES = DATA / "pubmed_edge_cases.xml"
SECRET = "s3cr3t-ncbi-key-0123456789"


def parse(path: Path, area: str = "oncology") -> pd.DataFrame:
    return pubmed.parse_pubmed_xml(path, query_label="test query", therapeutic_area=area).set_index("pmid")


# --------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("H<sub>2</sub>S and FEV<sub>1</sub>", "H2S and FEV1"),
        ("risk (<i>P</i> < .01) and ratio >2", "risk (P < .01) and ratio >2"),  # a lone '<' is text, not a tag
        ("pks<sup>+</sup>E coli", "pks+E coli"),
        ("first<br/>second<p>third</p>", "first second third"),
        ("the organism&#39;s &amp; &lt;i&gt;", "the organism's & <i>"),  # entities decoded after tags are gone
        ("  1175\u00a0tumours,\n n\u2009=\u20091,167\t", "1175 tumours, n = 1,167"),
        (None, ""),
        (float("nan"), ""),
        (pd.NA, ""),
    ],
)
def test_normalise_text(text, expected):
    assert pubmed.normalise_text(text) == expected


def test_strip_control_characters():
    assert pubmed.strip_control_characters("Dia\x00betes\x07 care\x9f\x1b\x7f now") == "Diabetes care now"
    assert pubmed.strip_control_characters("a\tb\nc\r\nd\x0be\x0cf\x85g") == "a b c  d e f g"
    intact = "β-cell ≥65 years: “HbA1c” – 0.6%\u00a0(P<0.001) Besançon"
    assert pubmed.strip_control_characters(intact) == intact
    # normalise_text strips them too, including one an entity decodes to, then collapses spaces
    assert (
        pubmed.normalise_text("<i>Dia\x00betes</i>\x07 care\x9f&#x81;\t\n in \x1fold age") == "Diabetes care in old age"
    )


CONTROL_XML = """<?xml version="1.0" encoding="UTF-8"?>
<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>90000042</PMID><Article>
<Journal><Title>Journal of&#x85;Fixtures&#x9f;</Title><JournalIssue><PubDate><Year>2023</Year></PubDate></JournalIssue></Journal>
<ArticleTitle>Insulin&#x9f; pump\u0080 use in&amp;#x81; older&#9;adults&#x84;.</ArticleTitle>
<Abstract><AbstractText Label="RESULTS&#x9f;">HbA1c fell&#x9f; by 0.6%&#xa;overall.</AbstractText></Abstract>
</Article><KeywordList><Keyword>insulin&#x80; pumps</Keyword></KeywordList></MedlineCitation></PubmedArticle>
</PubmedArticleSet>"""


def test_xml_control_characters_are_stripped():
    # XML 1.0 forbids NUL and most C0 characters (expat refuses them), but allows C1 ones
    # (&#x9f;, a literal U+0080) and an escaped entity that decodes to one (&amp;#x81;).
    row = pubmed.parse_pubmed_xml(CONTROL_XML, query_label="q", therapeutic_area="diabetes").iloc[0]
    assert row["title"] == "Insulin pump use in older adults."
    assert row["abstract"] == "RESULTS: HbA1c fell by 0.6% overall."
    assert row["journal"] == "Journal of Fixtures"
    assert row["keywords"] == "insulin pumps"


# --------------------------------------------------------------------------------------
# XML parser
# --------------------------------------------------------------------------------------


def test_fixtures_carry_no_person_names():
    for path in DATA.glob("*.xml"):
        root = ET.parse(path).getroot()
        for tag in (
            "Author",
            "AuthorList",
            "Investigator",
            "Affiliation",
            "PersonalNameSubject",
            "LastName",
            "ForeName",
        ):
            assert root.find(f".//{tag}") is None, f"{path.name} still has <{tag}>"


def test_parse_efetch_sample():
    df = parse(EFETCH_SAMPLE)
    assert list(df.reset_index().columns) == [c for c in pubmed.ARTICLE_COLUMNS if c != "has_abstract"]
    assert list(df.index) == ["35196497", "33278872", "24792780", "30158200", "151222"]
    first = df.loc["35196497"]
    assert first["title"] == "SENP2 suppresses browning of white adipose tissues by de-conjugating SUMO from C/EBPβ."
    assert first["journal"] == "Cell reports"
    assert (first["pub_date"], first["pub_year"]) == ("2022-02-22", 2022)
    assert first["abstract"].startswith("The adipose tissue is a key site")
    assert "Copyright" not in first["abstract"]  # CopyrightInformation is not abstract text
    mesh = first["mesh_terms"].split("; ")
    assert len(mesh) == 13 and "Adipose Tissue, White" in mesh and "Mice, Knockout" in mesh
    assert first["keywords"].split("; ")[:2] == ["C/EBPβ", "HOXC10"]
    assert first["publication_types"] == "Journal Article; Research Support, Non-U.S. Gov't"
    # An empty AbstractText is skipped; the labelled one keeps its label.
    assert df.loc["33278872", "abstract"].startswith("ABSTRACT: Strict physical distancing")
    assert df.loc["33278872", "pub_date"] == "2020-10-25"
    # Structured abstract: every section, in order, with its label.
    structured = df.loc["24792780", "abstract"]
    labels = ["INTRODUCTION: ", "OBJECTIVES: ", "METHODS: ", "RESULTS: ", "CONCLUSION: "]
    positions = [structured.find(label) for label in labels]
    assert positions[0] == 0 and positions == sorted(positions) and -1 not in positions
    assert df.loc["24792780", "pub_date"] == "2014-06"
    # Inline <i>/<sup> markup is flattened into the text.
    gwas = df.loc["30158200", "abstract"]
    assert "<i>" not in gwas and "<sup>" not in gwas and "(eg, SOST, WNT16, and ESR1)" in gwas
    assert "CONCLUSIONS: This large scale GWAS" in gwas
    assert "Meta-Analysis" in df.loc["30158200", "publication_types"]
    # MedlineDate "1978 Jul-Sep".
    assert (df.loc["151222", "pub_date"], df.loc["151222", "pub_year"]) == ("1978-07", 1978)
    assert set(df["therapeutic_area"]) == {"oncology"} and set(df["source"]) == {"live"}


def test_parse_baseline_sample():
    df = parse(BASELINE_SAMPLE, area="diabetes")
    # DeleteCitation PMIDs and CommentsCorrections PMIDs are not articles.
    assert list(df.index) == ["7308376", "17955499", "18046398"]
    assert df.loc["7308376", "abstract"] == ""  # no Abstract element
    assert df.loc["7308376", "pub_date"] == "1981-12"
    assert df.loc["18046398", "journal"] == "Nature"
    assert df.loc["18046398", "mesh_terms"] == ""
    assert df["pub_year"].dtype == "Int64"


def test_parse_edge_cases_fixture():
    df = parse(EDGE_CASES, area="diabetes")
    assert list(df.index) == [f"9000000{i}" for i in range(1, 7)]  # the PubmedBookArticle is skipped
    first = df.loc["90000001"]
    assert first["title"] == (
        "Effect of SGLT2 inhibition on HbA1c and β-cell function in patients aged ≥65 years: "
        "a randomised trial in Besançon."
    )
    assert first["abstract"] == (
        "BACKGROUND: Glycaemic control in older adults is often incomplete. "
        "METHODS: We randomised 240 participants to empagliflozin or placebo for 26 weeks. "
        "RESULTS: HbA1c fell by 0.6% (P<0.001); eGFR stayed ≥60 mL/min/1.73 m2. "
        "CONCLUSIONS: The treatment was effective and safe."
    )
    assert first["journal"] == "Journal of Fixture Cardiology"
    assert first["pub_date"] == "2023-03-05"
    assert first["mesh_terms"] == "Diabetes Mellitus, Type 2; Glycated Hemoglobin; Humans"
    assert first["keywords"] == "SGLT2 inhibitors; older adults"
    assert first["publication_types"] == "Journal Article; Randomized Controlled Trial"
    assert df.loc["90000002", "abstract"] == ""
    assert (df.loc["90000002", "pub_date"], df.loc["90000002", "pub_year"]) == ("2021-01", 2021)
    assert (df.loc["90000003", "pub_date"], df.loc["90000003", "pub_year"]) == ("2020", 2020)  # "2020 Winter"
    assert df.loc["90000003", "title"] == "Influenza vaccine uptake & reminders."
    assert df.loc["90000003", "abstract"] == (
        "Uptake rose when reminders were sent (P < .01) and stayed >70% at follow-up."
    )
    assert df.loc["90000004", "pub_date"] == "2022"  # Year + Season
    assert (df.loc["90000005", "pub_date"], df.loc["90000005", "pub_year"]) == ("2024-01-15", 2024)  # ArticleDate
    assert df.loc["90000005", "abstract"] == "OBJECTIVE: To describe outcomes. Unlabelled second section."
    assert df.loc["90000006", "pub_date"] == "2019-12"  # "2019 Dec-2020 Jan"


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ("<PubDate><Year>2021</Year><Month>Feb</Month></PubDate>", ("2021-02", 2021)),
        ("<PubDate><Year>2021</Year><Month>11</Month><Day>3</Day></PubDate>", ("2021-11-03", 2021)),
        ("<PubDate><MedlineDate>2021 Jan-Feb</MedlineDate></PubDate>", ("2021-01", 2021)),
        ("<PubDate><MedlineDate>2020 Winter</MedlineDate></PubDate>", ("2020", 2020)),
        ("<PubDate><MedlineDate>2022-2023</MedlineDate></PubDate>", ("2022", 2022)),
        ("<PubDate><MedlineDate>Spring</MedlineDate></PubDate>", (None, None)),
        ("<PubDate/>", (None, None)),
    ],
)
def test_publication_date(xml, expected):
    assert pubmed.publication_date(ET.fromstring(xml)) == expected


def test_malformed_xml_names_the_file(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text(EDGE_CASES.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    with pytest.raises(pubmed.PubMedXMLError, match=r"broken\.xml: malformed XML \(.*line \d+"):
        pubmed.parse_pubmed_xml(broken, query_label="q", therapeutic_area="diabetes")


def test_xml_of_another_kind_is_refused(tmp_path):
    error_doc = b"<eFetchResult><ERROR>Cannot retrieve history data</ERROR></eFetchResult>"
    with pytest.raises(
        pubmed.PubMedXMLError,
        match="efetch reply: expected a PubmedArticleSet.*eFetchResult.*Cannot retrieve history data",
    ):
        pubmed.parse_pubmed_xml(error_doc, query_label="q", therapeutic_area="diabetes", name="efetch reply")
    with pytest.raises(pubmed.PubMedXMLError, match=r"missing\.xml: cannot read"):
        pubmed.parse_pubmed_xml(tmp_path / "missing.xml", query_label="q", therapeutic_area="diabetes")
    no_pmid = b"<PubmedArticleSet><PubmedArticle><MedlineCitation/></PubmedArticle></PubmedArticleSet>"
    with pytest.raises(pubmed.PubMedXMLError, match="x.xml: article 1 has no MedlineCitation/PMID"):
        pubmed.parse_pubmed_xml(no_pmid, query_label="q", therapeutic_area="diabetes", name="x.xml")


# --------------------------------------------------------------------------------------
# Snapshot and cleaning
# --------------------------------------------------------------------------------------


def test_snapshot_cleaning_counts_and_invariants():
    raw = pubmed.load_snapshot()
    articles, quality = pubmed.clean_articles(raw)
    assert quality["rows_in"] == len(raw) == 509 + 517
    assert not articles["pmid"].duplicated().any()
    assert quality["duplicate_pmids_removed"] == raw["pmid"].duplicated().sum() == 3
    assert (
        quality["rows_out"]
        == len(articles)
        == (
            quality["rows_in"]
            - quality["duplicate_pmids_removed"]
            - quality["correction_notices_removed"]
            - quality["empty_records_removed"]
        )
    )
    assert quality["empty_abstracts_kept"] == (~articles["has_abstract"]).sum() == (articles["abstract"] == "").sum()
    for count in pubmed.QUALITY_COUNTS:
        assert sum(s[count] for s in quality["by_source"].values()) == quality[count]
    assert set(articles["source"]) == {"v01_abstracts", "chronic_disease"}
    assert articles.loc[articles["source"] == "v01_abstracts", "pub_year"].isna().all()
    assert articles.loc[articles["source"] == "chronic_disease", "pub_year"].between(2020, 2025).all()
    assert not articles["title"].str.match(r"(?i)(correction|corrigendum|erratum)\b").any()
    assert not articles["abstract"].str.contains(r"</?(?:i|b|sup|sub)>").any()
    assert not articles["abstract"].str.contains(r"\s\s|^\s|\s$").any()
    table = pubmed.quality_table(quality)
    assert list(table.index) == ["v01_abstracts", "chronic_disease", "total"]
    assert table.loc["total", "rows_out"] == len(articles)


def test_v01_corpus_alone():
    raw = pubmed.load_snapshot("v01")
    assert len(raw) == 509 and set(raw["source"]) == {"v01_abstracts"}
    with pytest.raises(ValueError, match="corpus must be 'all' or 'v01', got 'v02'"):
        pubmed.load_snapshot("v02")


def raw_rows(*rows: dict) -> pd.DataFrame:
    base = {
        "pmid": "1",
        "title": "A title",
        "abstract": "An abstract.",
        "journal": None,
        "pub_year": pd.NA,
        "pub_date": None,
        "mesh_terms": "",
        "keywords": "",
        "publication_types": "",
        "query_label": "label",
        "therapeutic_area": "diabetes",
        "source": "chronic_disease",
    }
    df = pd.DataFrame([{**base, **row} for row in rows])
    df["pub_year"] = df["pub_year"].astype("Int64")
    return df


def test_duplicates_keep_the_first_record_with_an_abstract():
    raw = raw_rows(
        {"pmid": "10", "abstract": "", "therapeutic_area": "diabetes"},
        {"pmid": "11"},
        {"pmid": "10", "abstract": "Has text.", "therapeutic_area": "oncology", "source": "live"},
        {"pmid": "10", "abstract": "Later text.", "therapeutic_area": "respiratory"},
        {"pmid": "12"},
        {"pmid": "12", "abstract": "Second copy."},
    )
    articles, quality = pubmed.clean_articles(raw)
    assert list(articles["pmid"]) == ["11", "10", "12"]
    assert articles.set_index("pmid").loc["10", "therapeutic_area"] == "oncology"
    assert articles.set_index("pmid").loc["12", "abstract"] == "An abstract."
    assert quality["duplicate_pmids_removed"] == 3
    assert quality["by_source"]["chronic_disease"]["duplicate_pmids_removed"] == 3
    assert quality["by_source"]["live"]["rows_out"] == 1


def test_markup_empty_records_and_corrections():
    raw = raw_rows(
        {"pmid": "1", "title": " Effect of <i>KRAS</i>  on   H<sub>2</sub>S ", "abstract": "P&lt;0.01 (<b>n</b> = 5)"},
        {"pmid": "2", "abstract": ""},
        {"pmid": "3", "title": "", "abstract": ""},
        {"pmid": "4", "title": "", "abstract": "Only an abstract here, " * 10},
        {"pmid": "5", "title": "Correction: An earlier paper."},
        {"pmid": "6", "abstract": "[This corrects the article DOI: 10.1/x.]"},
        {"pmid": "7", "publication_types": "Published Erratum"},
    )
    articles, quality = pubmed.clean_articles(raw)
    by_pmid = articles.set_index("pmid")
    assert by_pmid.loc["1", "title"] == "Effect of KRAS on H2S"
    assert by_pmid.loc["1", "abstract"] == "P<0.01 (n = 5)"
    assert not by_pmid.loc["2", "has_abstract"] and by_pmid.loc["1", "has_abstract"]
    assert by_pmid.loc["4", "title"].startswith("Only an abstract here,") and len(by_pmid.loc["4", "title"]) <= 120
    assert list(by_pmid.index) == ["1", "2", "4"]
    assert quality["empty_records_removed"] == 1
    assert quality["correction_notices_removed"] == 3
    assert quality["empty_abstracts_kept"] == 1


# --------------------------------------------------------------------------------------
# Snapshot errors
# --------------------------------------------------------------------------------------

V01_HEADER = "PMID,Title,Abstract,Topic\n"
CHRONIC_HEADER = "pmid,title,abstract,year,disease_group\n"


def write_snapshot(raw_dir: Path, v01: str, chronic: str = CHRONIC_HEADER + "2,T,A,2021,cancer\n") -> Path:
    raw_dir.mkdir(parents=True, exist_ok=True)
    (raw_dir / "pubmed_abstracts_2020_2025.csv").write_text(v01, encoding="utf-8")
    (raw_dir / "pubmed_chronic_disease_2020_2025.csv").write_text(chronic, encoding="utf-8")
    return raw_dir


@pytest.mark.parametrize(
    ("v01", "chronic", "message"),
    [
        (
            "PMID,Title,Topic\n1,T,Respiratory Care\n",
            None,
            r"pubmed_abstracts_2020_2025\.csv: missing column 'Abstract'",
        ),
        (
            V01_HEADER + "1,T,A,Respiratory Care\nPMID-2,T,A,Respiratory Care\n",
            None,
            r"pubmed_abstracts_2020_2025\.csv: column 'PMID' has a non-numeric value 'PMID-2' \(row 3 of the file\)",
        ),
        (
            V01_HEADER + "1,T,A,Respiratory Care\n2,T,A,Dermatology Update\n",
            None,
            r"pubmed_abstracts_2020_2025\.csv: column 'Topic' has an unknown label 'Dermatology Update' \(row 3",
        ),
        (
            V01_HEADER + "1,T,A,Respiratory Care\n",
            CHRONIC_HEADER + "2,T,A,twenty,cancer\n",
            r"pubmed_chronic_disease_2020_2025\.csv: column 'year' has a non-numeric value 'twenty' \(row 2",
        ),
        (
            V01_HEADER + "1,T,A,Respiratory Care\n",
            CHRONIC_HEADER + "2,T,A,2021.5,cancer\n",
            r"column 'year' has a non-numeric value '2021.5'",
        ),
        (
            V01_HEADER + "1,T,A,Respiratory Care\n",
            CHRONIC_HEADER + "2,T,A,3021,cancer\n",
            r"column 'year' has the year '3021' \(row 2 of the file\), outside 1800–2100",
        ),
        ("", None, r"pubmed_abstracts_2020_2025\.csv: not a readable UTF-8 CSV file"),
    ],
)
def test_snapshot_errors_name_file_column_and_value(tmp_path, v01, chronic, message):
    raw_dir = write_snapshot(tmp_path / "raw", v01, chronic or CHRONIC_HEADER + "2,T,A,2021,cancer\n")
    with pytest.raises(DataValidationError, match=message):
        pubmed.load_snapshot(raw_dir=raw_dir)


def test_missing_snapshot_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pubmed_abstracts_2020_2025\.csv: snapshot file not found"):
        pubmed.load_snapshot(raw_dir=tmp_path)


def test_bad_snapshot_writes_nothing(tmp_path):
    raw_dir = write_snapshot(tmp_path / "raw", V01_HEADER + "x,T,A,Respiratory Care\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(DataValidationError, match="non-numeric value 'x'"):
        pubmed.ingest(run_dir, raw_dir=raw_dir)
    assert list(run_dir.rglob("*")) == []


def test_ingest_writes_articles_and_metrics(tmp_path):
    raw_dir = write_snapshot(
        tmp_path / "raw", V01_HEADER + "1,T1,A1,Respiratory Care\n1,T1,A1,Thyroid Disorders\n3,T3,,Thyroid Disorders\n"
    )
    articles, quality = pubmed.ingest(tmp_path / "run", raw_dir=raw_dir)
    stored = pubmed.read_articles(tmp_path / "run")
    pd.testing.assert_frame_equal(stored, articles)
    assert list(stored["pmid"]) == ["1", "3", "2"]
    metrics = json.loads((config.RunDir(tmp_path / "run").metrics / "ingestion.json").read_text())
    assert metrics["mode"] == "snapshot" and metrics["rows_in"] == 4 and metrics["rows_out"] == 3
    assert metrics["by_source"]["v01_abstracts"]["duplicate_pmids_removed"] == 1
    assert metrics["articles_per_area"] == {"oncology": 1, "respiratory": 1, "thyroid": 1}
    assert metrics["articles_without_year"] == 2


def test_snapshot_control_characters_are_stripped_at_ingestion(tmp_path):
    # A CSV cell can carry any byte: a NUL, a bell and a C1 character in the title, a NUL in
    # the abstract and one after the topic label, which must still be recognised.
    raw_dir = write_snapshot(
        tmp_path / "raw",
        V01_HEADER + '7,"Dia\x00betes\x07 care\x9f in\r\nolder adults",HbA1c\x00 fell.,Thyroid Disorders\x00\n',
    )
    raw = pubmed.load_snapshot(raw_dir=raw_dir)
    assert not raw.select_dtypes("object").apply(lambda c: c.str.contains(r"[\x00-\x1f\x7f-\x9f]")).any().any()
    articles, _ = pubmed.ingest(tmp_path / "run", raw_dir=raw_dir)
    stored = pubmed.read_articles(tmp_path / "run").set_index("pmid")
    assert stored.loc["7", "title"] == "Diabetes care in older adults"
    assert stored.loc["7", "abstract"] == "HbA1c fell."
    assert stored.loc["7", "therapeutic_area"] == "thyroid"
    for column in ("title", "abstract", "mesh_terms", "keywords", "publication_types", "query_label"):
        assert not articles[column].str.contains(r"[\x00-\x1f\x7f-\x9f]").any(), column


def test_area_year_table_and_abstract_words():
    articles, _ = pubmed.clean_articles(
        raw_rows(
            {"pmid": "1", "pub_year": 2021, "abstract": "one two three"},
            {"pmid": "2", "pub_year": 2020, "therapeutic_area": "oncology"},
            {"pmid": "3", "abstract": ""},
        )
    )
    table = pubmed.articles_per_area_year(articles)
    assert list(table.columns) == ["2020", "2021", "unknown"]
    assert table.loc["diabetes"].tolist() == [0, 1, 1] and table.loc["oncology"].tolist() == [1, 0, 0]
    assert pubmed.abstract_words(articles).tolist() == [3, 2]


# --------------------------------------------------------------------------------------
# Live mode with a fake HTTP layer
# --------------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when something sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def esearch_xml(pmids: list[str]) -> bytes:
    ids = "".join(f"<Id>{p}</Id>" for p in pmids)
    return f"<eSearchResult><Count>{len(pmids)}</Count><IdList>{ids}</IdList></eSearchResult>".encode()


def efetch_xml(pmids: list[str]) -> bytes:
    articles = "".join(
        f"<PubmedArticle><MedlineCitation><PMID>{p}</PMID><Article><Journal><JournalIssue><PubDate><Year>2022</Year>"
        f"</PubDate></JournalIssue><Title>J</Title></Journal><ArticleTitle>Title {p}</ArticleTitle><Abstract>"
        f'<AbstractText Label="AIMS">Text of {p}.</AbstractText></Abstract></Article></MedlineCitation>'
        "</PubmedArticle>"
        for p in pmids
    )
    return f'<?xml version="1.0"?><PubmedArticleSet>{articles}</PubmedArticleSet>'.encode()


class FakeEUtils:
    """Answers esearch/efetch like NCBI; ``failures`` is a list of errors/status codes served first."""

    def __init__(self, clock: FakeClock, pmids: dict[str, list[str]] | None = None, failures=()):
        self.clock = clock
        self.pmids = pmids or {}
        self.failures = list(failures)
        self.calls: list[tuple[float, str, dict]] = []

    def get(self, url, params, timeout):
        self.calls.append((self.clock.now, url, dict(params)))
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure, b"<html>Service unavailable</html>"
        if url.endswith("esearch.fcgi"):
            label = next(label for label in self.pmids if params["term"].startswith(label))
            return 200, esearch_xml(self.pmids[label][: int(params["retmax"])])
        return 200, efetch_xml(params["id"].split(","))


def make_client(clock: FakeClock, transport, **kwargs) -> pubmed.EUtilsClient:
    return pubmed.EUtilsClient(email="team@example.org", transport=transport, clock=clock, sleep=clock.sleep, **kwargs)


def test_rate_limit_three_per_second_without_key(monkeypatch):
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    clock = FakeClock()
    fake = FakeEUtils(clock)
    client = make_client(clock, fake)
    for _ in range(4):
        client.request("efetch", {"id": "1"})
    times = [t for t, _, _ in fake.calls]
    assert [round(b - a, 6) for a, b in zip(times, times[1:])] == [round(1 / 3, 6)] * 3
    assert "api_key" not in fake.calls[0][2]
    assert fake.calls[0][2]["email"] == "team@example.org" and fake.calls[0][2]["tool"] == pubmed.TOOL_NAME


def test_rate_limit_ten_per_second_with_key(monkeypatch):
    monkeypatch.setenv("NCBI_API_KEY", SECRET)
    clock = FakeClock()
    fake = FakeEUtils(clock)
    client = make_client(clock, fake)
    client.request("efetch", {"id": "1"})
    clock.now += 0.05  # some work between calls: only the rest of the interval is waited
    client.request("efetch", {"id": "2"})
    assert clock.sleeps == [pytest.approx(0.05)]
    assert fake.calls[1][0] - fake.calls[0][0] == pytest.approx(0.1)
    assert fake.calls[0][2]["api_key"] == SECRET  # the key is used...
    assert SECRET not in repr(client)  # ...but never shown


def test_retries_with_exponential_backoff(monkeypatch):
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    clock = FakeClock()
    fake = FakeEUtils(clock, failures=[ConnectionError("reset"), 503, TimeoutError("slow")])
    client = make_client(clock, fake, backoff_s=1.0, max_retries=3)
    assert client.request("efetch", {"id": "1"}).startswith(b"<?xml")
    assert len(fake.calls) == 4
    backoffs = [s for s in clock.sleeps if s >= 1.0]
    assert backoffs == [1.0, 2.0, 4.0]


def test_client_error_is_not_retried(monkeypatch):
    monkeypatch.setenv("NCBI_API_KEY", SECRET)
    clock = FakeClock()
    fake = FakeEUtils(clock, failures=[400])
    with pytest.raises(pubmed.PubMedUnavailableError, match=r"refused the request \(HTTP 400"):
        make_client(clock, fake).request("esearch", {"term": "x"})
    assert len(fake.calls) == 1


def test_unreachable_network_gives_a_clear_redacted_message(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("NCBI_API_KEY", SECRET)
    clock = FakeClock()
    url_with_key = f"https://eutils.ncbi.nlm.nih.gov/entrez/eutils/esearch.fcgi?db=pubmed&api_key={SECRET}"
    fake = FakeEUtils(
        clock,
        failures=[ConnectionError(f"Max retries exceeded with url: {url_with_key}")] * 3
        + [OSError(f"proxy refused key {SECRET}")],
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with caplog.at_level(logging.WARNING, logger="hcp_lib.stages.pubmed"):
        with pytest.raises(pubmed.PubMedUnavailableError) as caught:
            pubmed.ingest(run_dir, live=True, client=make_client(clock, fake), cache_dir=tmp_path / "cache")
    message = str(caught.value)
    assert "could not be reached after 4 attempt(s)" in message and "pubmed_live=false" in message
    assert "OSError: proxy refused key ***" in message
    assert SECRET not in message and SECRET not in caplog.text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained traceback
    assert caplog.text.count("retry") == 3 and "api_key=***" in caplog.text
    assert list(run_dir.rglob("*")) == []  # nothing half-written in the run folder
    assert not list((tmp_path / "cache").glob("*.xml"))


def test_requests_errors_are_reported_by_their_reason(monkeypatch):
    from types import SimpleNamespace

    import requests

    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    clock = FakeClock()
    wrapped = SimpleNamespace(reason="Failed to resolve 'eutils.ncbi.nlm.nih.gov'")  # like urllib3's MaxRetryError
    fake = FakeEUtils(clock, failures=[requests.ConnectionError(wrapped)])
    with pytest.raises(
        pubmed.PubMedUnavailableError,
        match=r"after 1 attempt\(s\) \(last error: ConnectionError: Failed to resolve 'eutils",
    ):
        make_client(clock, fake, max_retries=0).request("esearch", {"term": "x"})


def test_fetch_live_batches_and_caches(monkeypatch, tmp_path):
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    clock = FakeClock()
    pmids = {"diabetes management": ["101", "102", "103", "104", "105"], "cancer treatment": ["201", "102"]}
    fake = FakeEUtils(clock, pmids=pmids)
    cache = tmp_path / "live"
    raw = pubmed.fetch_live(
        max_per_query=5, cache_dir=cache, client=make_client(clock, fake), batch_size=2, areas=["diabetes", "oncology"]
    )
    efetch_ids = [call[2]["id"] for call in fake.calls if call[1].endswith("efetch.fcgi")]
    assert efetch_ids == ["101,102", "103,104", "105", "201,102"]
    esearch = [call[2] for call in fake.calls if call[1].endswith("esearch.fcgi")]
    assert esearch[0]["term"] == 'diabetes management[Title/Abstract] AND ("2020"[PDAT] : "2025"[PDAT])'
    assert esearch[0]["retmax"] == "5"
    assert list(raw["pmid"]) == ["101", "102", "103", "104", "105", "201", "102"]
    assert list(raw["therapeutic_area"]) == ["diabetes"] * 5 + ["oncology"] * 2
    assert set(raw["source"]) == {"live"} and set(raw.loc[raw["therapeutic_area"] == "oncology", "query_label"]) == {
        "cancer treatment"
    }
    assert raw.loc[0, "abstract"] == "AIMS: Text of 101."
    assert len(list(cache.glob("*_esearch_*.xml"))) == 2 and len(list(cache.glob("*_efetch_*.xml"))) == 4

    class NoNetwork:
        def get(self, url, params, timeout):
            raise AssertionError("the cache should have answered")

    again = pubmed.fetch_live(
        max_per_query=5,
        cache_dir=cache,
        client=make_client(clock, NoNetwork()),
        batch_size=2,
        areas=["diabetes", "oncology"],
    )
    pd.testing.assert_frame_equal(again, raw)
    articles, quality = pubmed.clean_articles(raw)
    assert quality["duplicate_pmids_removed"] == 1 and not articles["pmid"].duplicated().any()


def test_malformed_live_response_is_not_cached(monkeypatch, tmp_path):
    monkeypatch.delenv("NCBI_API_KEY", raising=False)
    clock = FakeClock()

    class TruncatedEfetch(FakeEUtils):
        def get(self, url, params, timeout):
            status, body = super().get(url, params, timeout)
            return status, body if url.endswith("esearch.fcgi") else body[:40]

    fake = TruncatedEfetch(clock, pmids={"thyroid disorders": ["301"]})
    with pytest.raises(pubmed.PubMedXMLError, match=r"E-utilities response for thyroid_efetch_\w+\.xml: malformed"):
        pubmed.fetch_live(cache_dir=tmp_path, client=make_client(clock, fake), areas=["thyroid"])
    assert [p.name.split("_")[1] for p in tmp_path.glob("*.xml")] == ["esearch"]


def test_ingest_live_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("NCBI_API_KEY", SECRET)
    clock = FakeClock()
    pmids = {label: [f"{i}{j}" for j in range(3)] for i, label in enumerate(pubmed.LIVE_QUERIES.values(), start=1)}
    client = make_client(clock, FakeEUtils(clock, pmids=pmids))
    articles, quality = pubmed.ingest(
        tmp_path / "run", live=True, max_per_query=3, client=client, cache_dir=tmp_path / "cache"
    )
    assert len(articles) == 18 and set(articles["therapeutic_area"]) == set(THERAPEUTIC_AREAS)
    assert set(articles["pub_year"]) == {2022}
    metrics_text = (config.RunDir(tmp_path / "run").metrics / "ingestion.json").read_text()
    assert SECRET not in metrics_text
    metrics = json.loads(metrics_text)
    assert metrics["mode"] == "live" and metrics["by_source"]["live"]["rows_out"] == 18
    assert metrics["queries"]["oncology"].startswith("cancer treatment[Title/Abstract]")


def test_live_mode_refuses_the_v01_corpus(tmp_path):
    with pytest.raises(config.ParameterError, match="'v01' .* cannot be combined with pubmed_live=true"):
        pubmed.load_articles("v01", live=True, cache_dir=tmp_path)
