"""The domain's fixed vocabularies, shared by every stage: specialties, channels, areas, HCP ids.

Specialties carry their NUCC Health Care Provider Taxonomy codes (public codes of the
National Uniform Claim Committee). ``AREA_SPECIALTY_RELEVANCE`` states, as domain
knowledge, how central each therapeutic area is to each specialty's practice (1 = core,
0 = rare); the simulator uses it for approvals and interests, and it is documented in
the data card. :data:`HCP_ID_PATTERN` is the one definition of a (synthetic) HCP id that
every table schema checks.
"""

from __future__ import annotations

#: the therapeutic areas of the content catalogue and the PubMed corpus, in this order everywhere
THERAPEUTIC_AREAS = ("cardiovascular", "diabetes", "oncology", "respiratory", "thyroid", "vaccination")

# Synthetic HCP ids: "SYN" + 8 digits (e.g. "SYN45912233"). Every NPI the NPPES issues is 10
# digits whose last one is the Luhn check over "80840" + the first nine (CMS, NPI standard), so
# an id with letters can never equal an issued NPI, a CRM's NPI field (10 digits) refuses it,
# and even with the letters dropped its 8 digits are not NPI-shaped. The prefix says
# "synthetic" to anyone who reads the id.
HCP_ID_PREFIX = "SYN"
HCP_ID_DIGITS = 8
HCP_ID_PATTERN = rf"^{HCP_ID_PREFIX}\d{{{HCP_ID_DIGITS}}}$"

# specialty -> (display name, NUCC taxonomy code)
SPECIALTIES: dict[str, tuple[str, str]] = {
    "cardiology": ("Cardiovascular Disease", "207RC0000X"),
    "endocrinology": ("Endocrinology, Diabetes & Metabolism", "207RE0101X"),
    "hematology_oncology": ("Hematology & Oncology", "207RH0003X"),
    "pulmonology": ("Pulmonary Disease", "207RP1001X"),
    "infectious_disease": ("Infectious Disease", "207RI0200X"),
    "family_medicine": ("Family Medicine", "207Q00000X"),
    "internal_medicine": ("Internal Medicine", "207R00000X"),
    "general_practice": ("General Practice", "208D00000X"),
    "pediatrics": ("Pediatrics", "208000000X"),
}

CHANNELS = ("email", "webinar", "rep_visit", "in_person_meeting", "conference_event")

CHANNEL_LABELS = {
    "email": "Email",
    "webinar": "Webinar",
    "rep_visit": "Rep visit",
    "in_person_meeting": "In-person meeting",
    "conference_event": "Social / conference event",
}

# How central each therapeutic area is to each specialty (rows: specialty, columns: area).
AREA_SPECIALTY_RELEVANCE: dict[str, dict[str, float]] = {
    "cardiology": {
        "cardiovascular": 1.0,
        "diabetes": 0.4,
        "oncology": 0.1,
        "respiratory": 0.2,
        "thyroid": 0.2,
        "vaccination": 0.1,
    },
    "endocrinology": {
        "cardiovascular": 0.4,
        "diabetes": 1.0,
        "oncology": 0.1,
        "respiratory": 0.1,
        "thyroid": 1.0,
        "vaccination": 0.1,
    },
    "hematology_oncology": {
        "cardiovascular": 0.2,
        "diabetes": 0.1,
        "oncology": 1.0,
        "respiratory": 0.2,
        "thyroid": 0.2,
        "vaccination": 0.2,
    },
    "pulmonology": {
        "cardiovascular": 0.3,
        "diabetes": 0.1,
        "oncology": 0.3,
        "respiratory": 1.0,
        "thyroid": 0.1,
        "vaccination": 0.4,
    },
    "infectious_disease": {
        "cardiovascular": 0.1,
        "diabetes": 0.1,
        "oncology": 0.1,
        "respiratory": 0.5,
        "thyroid": 0.1,
        "vaccination": 1.0,
    },
    "family_medicine": {
        "cardiovascular": 0.7,
        "diabetes": 0.8,
        "oncology": 0.3,
        "respiratory": 0.6,
        "thyroid": 0.5,
        "vaccination": 0.8,
    },
    "internal_medicine": {
        "cardiovascular": 0.8,
        "diabetes": 0.8,
        "oncology": 0.3,
        "respiratory": 0.6,
        "thyroid": 0.5,
        "vaccination": 0.5,
    },
    "general_practice": {
        "cardiovascular": 0.6,
        "diabetes": 0.7,
        "oncology": 0.2,
        "respiratory": 0.6,
        "thyroid": 0.4,
        "vaccination": 0.7,
    },
    "pediatrics": {
        "cardiovascular": 0.1,
        "diabetes": 0.4,
        "oncology": 0.1,
        "respiratory": 0.8,
        "thyroid": 0.2,
        "vaccination": 1.0,
    },
}

# --- model names: one name per model, used by every chapter, table and file -------------------

#: the simulator's truth, the ceiling every model is measured against
ORACLE_NAME = "oracle"
#: the old v0.1 classifier, rebuilt by the evaluation as a reference
V01_NAME = "v0.1_classifier"
#: the hybrid LSTM engagement model and its tabular challenger (chapter 5)
HYBRID_NAME = "hybrid"
TABULAR_NAME = "tabular"
#: the hybrid's ablations (each removes one input; ``hcp_lib.models.hybrid.ABLATIONS`` says how)
HYBRID_ABLATIONS = ("no_sequence", "no_topics", "no_cf", "no_static")
#: the reference policies (chapters 6, 7 and 9): uniform over each HCP's candidate (content,
#: channel) pairs, and business as usual (the logging policy's first touch)
UNIFORM_NAME = "uniform_random"
BAU_NAME = "business_as_usual"
#: the evaluation's key of each reference policy (``policy`` in metrics.json) -> its name in the book
REFERENCE_POLICIES = {"random": UNIFORM_NAME, "business_as_usual": BAU_NAME}
#: the content and channel baselines of chapter 4 (``hcp_lib.models.baselines``)
CONTENT_BASELINES = (
    "random",
    "popularity",
    "specialty_popularity",
    "recency_popularity",
    "itemknn",
    "ease",
    "als",
    "bpr",
    "content_based",
)
CHANNEL_BASELINES = ("most_frequent_channel", "specialty_best_channel", "business_as_usual_channel")


def ablation_name(ablation: str) -> str:
    """The model name of an ablation of the hybrid (e.g. ``hybrid_no_sequence``)."""
    return f"{HYBRID_NAME}_{ablation}"
