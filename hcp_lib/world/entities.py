"""The synthetic world's entities: HCPs, their patients, content items and campaigns.

Helpers of :mod:`hcp_lib.world.synth` (which validates parameters, calls these in order and
writes the tables). Every function takes a seeded ``numpy.random.Generator``; nothing
here reads or writes files except :func:`load_state_populations` (shipped reference data).
All people are synthetic: names come from Faker's en_US word lists, ids are random
``SYN`` + 8-digit strings (:data:`hcp_lib.domain.HCP_ID_PATTERN`) that cannot be issued NPIs.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from faker import Faker
from faker.providers.person.en_US import Provider as _FakerPerson

from .. import config, domain

SPECIALTY_KEYS = tuple(domain.SPECIALTIES)
AREAS = tuple(domain.THERAPEUTIC_AREAS)
CHANNELS = tuple(domain.CHANNELS)
SETTINGS = ("academic", "hospital", "group", "solo")
CONTENT_TYPES = ("publication_reprint", "clinical_summary", "guideline_update", "case_study", "patient_education")
STATE_POPULATION_FILE = config.DATA_DIR / "reference" / "us_state_population_2020.csv"

# Assumed make-up of a pharma target list covering these six areas: primary care is the
# bulk (as in AAMC specialty counts) but specialists are over-sampled relative to their
# share of all physicians, because the portfolio is aimed at them (see the data card).
SPECIALTY_SHARE = {
    "cardiology": 0.12,
    "endocrinology": 0.07,
    "hematology_oncology": 0.09,
    "pulmonology": 0.07,
    "infectious_disease": 0.07,
    "family_medicine": 0.22,
    "internal_medicine": 0.22,
    "general_practice": 0.04,
    "pediatrics": 0.10,
}
PRIMARY_CARE = ("family_medicine", "internal_medicine", "general_practice", "pediatrics")
# Practice-setting mix (AMA Physician Practice Benchmark Surveys: most physicians work in
# group practices or hospital-owned settings, a minority in solo practice); specialists
# lean to academic and hospital settings.
SETTING_SHARE_PRIMARY = (0.06, 0.30, 0.46, 0.18)
SETTING_SHARE_SPECIALIST = (0.20, 0.35, 0.37, 0.08)
DO_SHARE = 0.11  # osteopathic physicians: about one in nine active US physicians (AOA / AAMC counts)
# Extra regional prevalence of patients' conditions (CDC surveillance: diagnosed diabetes and
# heart disease are more common in the South); a stated assumption, 1.0 elsewhere.
REGION_AREA_MULTIPLIER = {"South": {"diabetes": 1.2, "cardiovascular": 1.15}, "Midwest": {"respiratory": 1.05}}
# Patient age (mean, sd) and share female by primary therapeutic area (adults).
PATIENT_AGE = {
    "cardiovascular": (66, 12),
    "diabetes": (58, 14),
    "oncology": (64, 12),
    "respiratory": (55, 18),
    "thyroid": (50, 15),
    "vaccination": (45, 20),
}
PATIENT_FEMALE = {
    "cardiovascular": 0.45,
    "diabetes": 0.48,
    "oncology": 0.52,
    "respiratory": 0.53,
    "thyroid": 0.78,
    "vaccination": 0.55,
}
# Probability that a patient with primary area A also has area B (diabetes and heart
# disease travel together; everything else is rare).
_COMORBID_BASE = 0.04
_COMORBID_PAIRS = {
    ("diabetes", "cardiovascular"): 0.35,
    ("cardiovascular", "diabetes"): 0.30,
    ("diabetes", "thyroid"): 0.10,
    ("thyroid", "diabetes"): 0.10,
    ("respiratory", "vaccination"): 0.15,
    ("oncology", "vaccination"): 0.10,
}

# Content type from the title, first matching rule wins (a keyword rule is enough: the
# type only tilts channel fit, and the rules are stated in the data card).
_CONTENT_TYPE_RULES = (
    ("guideline_update", re.compile(r"guideline|consensus|recommendation|position statement|standards of care", re.I)),
    ("case_study", re.compile(r"case report|case series|\ba case\b", re.I)),
    ("clinical_summary", re.compile(r"review|meta-analys|overview|update|state of the art|perspective", re.I)),
    (
        "patient_education",
        re.compile(r"education|self-management|awareness|adherence|knowledge|attitude|hesitan", re.I),
    ),
)
SERIES_SHARE = 0.15  # chance that an item in release order starts a multi-part series
BACK_CATALOGUE_SHARE = 0.25  # items already released before the horizon starts

# Per channel: weeks a campaign runs, chance an item gets a campaign on it, segment, weekly
# capacity per 1,000 HCPs in the universe, and cost per touch in USD (data card: assumptions).
CHANNEL_TABLE = pd.DataFrame(
    {
        "channel": CHANNELS,
        "campaign_weeks": [26, 6, 16, 8, 3],
        "campaign_share": [1.0, 0.25, 0.45, 0.12, 0.15],
        "target_segment": [
            "approved_specialties",
            "approved_specialties",
            "approved_deciles_5_10",
            "approved_deciles_5_10",
            "approved_specialties",
        ],
        "capacity_per_1000_hcps_week": [10_000.0, 100.0, 60.0, 15.0, 40.0],
        "cost_per_touch_usd": [0.5, 35.0, 180.0, 250.0, 120.0],
    }
)


def make_hcp_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct synthetic HCP ids, ``"SYN"`` + 8 random digits, as strings.

    They match :data:`hcp_lib.domain.HCP_ID_PATTERN` and can never be an issued NPI (10
    digits, see :func:`is_valid_npi`): they carry letters, and their digits are too few.
    """
    numbers = _distinct_integers(rng, n, 0, 10**domain.HCP_ID_DIGITS)
    return np.char.add(domain.HCP_ID_PREFIX, np.char.mod(f"%0{domain.HCP_ID_DIGITS}d", numbers)).astype(object)


def _distinct_integers(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    draws = np.unique(rng.integers(low, high, size=int(n * 1.1) + 10))
    while len(draws) < n:
        draws = np.unique(np.concatenate([draws, rng.integers(low, high, size=n)]))
    return rng.permutation(draws)[:n]


def is_valid_npi(npi: str) -> bool:
    """True when ``npi`` could be an issued NPI: 10 digits whose Luhn check over ``80840`` + digits holds.

    The NPI standard (CMS) applies the ISO/IEC 7812 Luhn formula to the card-issuer prefix
    ``80840`` followed by the 10 digits. Kept to show that no synthetic id passes it.
    """
    if not re.fullmatch(r"\d{10}", npi):
        return False
    total = 0
    for i, char in enumerate(reversed("80840" + npi)):
        d = int(char) * (2 if i % 2 else 1)
        total += d // 10 + d % 10
    return total % 10 == 0


def load_state_populations(path=STATE_POPULATION_FILE) -> pd.DataFrame:
    """The shipped 2020 Census state populations (state, census_region, population_2020)."""
    table = pd.read_csv(path, dtype={"state": str, "census_region": str, "population_2020": np.int64})
    if table.empty or table["population_2020"].le(0).any():
        raise ValueError(f"{path}: column 'population_2020' must hold positive counts")
    return table


def _weighted_names(rng: np.random.Generator, names: dict[str, float], n: int) -> np.ndarray:
    keys = np.array(list(names), dtype=object)
    weights = np.fromiter(names.values(), dtype=float)
    return keys[rng.choice(len(keys), size=n, p=weights / weights.sum())]


def make_hcps(
    rng: np.random.Generator,
    n_hcps: int,
    hcps_per_peer_group: int,
    opt_out_rate: float,
    horizon_start: pd.Timestamp,
    horizon_days: int,
    faker_seed: int,
) -> pd.DataFrame:
    """The HCP master table (one row per HCP), ordered by ``hcp_id``.

    Specialty from :data:`SPECIALTY_SHARE`; state by 2020 population; city and ZIP from a
    per-state pool made by Faker (``zipcode_in_state`` keeps ZIPs consistent with the
    state); health system within the state (solo practices are independent); peer groups
    of about ``hcps_per_peer_group`` HCPs inside each health system, spanning specialties.
    """
    specialty = np.array(SPECIALTY_KEYS, dtype=object)[
        rng.choice(len(SPECIALTY_KEYS), size=n_hcps, p=np.array([SPECIALTY_SHARE[s] for s in SPECIALTY_KEYS]))
    ]
    is_primary = np.isin(specialty, PRIMARY_CARE)
    setting_draw = rng.random(n_hcps)
    setting_idx = np.where(
        is_primary,
        np.searchsorted(np.cumsum(SETTING_SHARE_PRIMARY), setting_draw, side="right"),
        np.searchsorted(np.cumsum(SETTING_SHARE_SPECIALIST), setting_draw, side="right"),
    )
    setting = np.array(SETTINGS, dtype=object)[np.minimum(setting_idx, 3)]

    states = load_state_populations()
    state_idx = rng.choice(len(states), size=n_hcps, p=states["population_2020"] / states["population_2020"].sum())
    state = states["state"].to_numpy(dtype=object)[state_idx]
    region = states["census_region"].to_numpy(dtype=object)[state_idx]
    city, zip_code = _cities_and_zips(rng, state, faker_seed)

    female = rng.random(n_hcps) < 0.38  # about 38% of active US physicians are women (AAMC, 2022)
    first_name = np.where(
        female,
        _weighted_names(rng, _FakerPerson.first_names_female, n_hcps),
        _weighted_names(rng, _FakerPerson.first_names_male, n_hcps),
    )
    last_name = _weighted_names(rng, _FakerPerson.last_names, n_hcps)
    credential = np.where(rng.random(n_hcps) < DO_SHARE, "DO", "MD").astype(object)

    # Age of active physicians: broad, centred in the early 50s (AAMC workforce data).
    age = np.clip(np.round(rng.normal(51, 10.5, n_hcps)), 31, 78).astype(np.int64)
    training_years = np.where(is_primary, 3, 6)  # residency (+ fellowship for specialists)
    years_in_practice = np.clip(age - 26 - training_years - rng.integers(0, 3, n_hcps), 0, None).astype(np.int64)
    # Prescribing volume: log-normal, higher in group/solo community practice; deciles by rank.
    volume = rng.normal(0, 1, n_hcps) + np.select([setting == "academic", setting == "hospital"], [-0.6, -0.2], 0.2)
    prescribing_decile = (np.argsort(np.argsort(volume, kind="stable"), kind="stable") * 10 // n_hcps + 1).astype(
        np.int64
    )
    digital_affinity = 1 / (1 + np.exp(-(0.3 - 0.06 * (age - 50) + rng.normal(0, 0.9, n_hcps))))

    health_system, peer_group = _affiliations(rng, state, setting, hcps_per_peer_group)
    opted_out = rng.random(n_hcps) < opt_out_rate
    opt_out_minute = rng.integers(0, horizon_days * 1440, n_hcps)
    opted_out_at = pd.Series(horizon_start + pd.to_timedelta(opt_out_minute, unit="min")).where(opted_out)

    hcps = pd.DataFrame(
        {
            "hcp_id": make_hcp_ids(rng, n_hcps),
            "first_name": first_name,
            "last_name": last_name,
            "credential": credential,
            "specialty": specialty,
            "taxonomy_code": [domain.SPECIALTIES[s][1] for s in specialty],
            "state": state,
            "city": city,
            "zip": zip_code,
            "region": region,
            "practice_setting": setting,
            "years_in_practice": years_in_practice,
            "age": age,
            "prescribing_decile": prescribing_decile,
            "digital_affinity": digital_affinity,
            "peer_group": peer_group,
            "health_system": health_system,
            "opted_out": opted_out,
            "opted_out_at": opted_out_at.astype("datetime64[ns]").to_numpy(),
        }
    )
    for column in (
        "hcp_id",
        "first_name",
        "last_name",
        "credential",
        "specialty",
        "taxonomy_code",
        "state",
        "city",
        "zip",
        "region",
        "practice_setting",
        "peer_group",
        "health_system",
    ):
        hcps[column] = hcps[column].astype("string")
    return hcps.sort_values("hcp_id", kind="stable").reset_index(drop=True)


def _cities_and_zips(rng: np.random.Generator, state: np.ndarray, faker_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A per-state pool of Faker cities (one ZIP each), sized to the state's HCP count.

    Faker is called once per pool entry, not per HCP, so this stays fast at 100k HCPs;
    bigger cities (lower pool index) get more HCPs (a Zipf-like weight).
    """
    fake = Faker("en_US")
    fake.seed_instance(faker_seed)
    city = np.empty(len(state), dtype=object)
    zip_code = np.empty(len(state), dtype=object)
    for code in sorted(set(state)):
        members = np.flatnonzero(state == code)
        pool = max(3, math.ceil(len(members) / 30))
        names = np.array([fake.city() for _ in range(pool)], dtype=object)
        zips = np.array([fake.zipcode_in_state(code) for _ in range(pool)], dtype=object)
        weights = 1.0 / np.arange(1, pool + 1)
        pick = rng.choice(pool, size=len(members), p=weights / weights.sum())
        city[members], zip_code[members] = names[pick], zips[pick]
    return city, zip_code


def _affiliations(
    rng: np.random.Generator, state: np.ndarray, setting: np.ndarray, hcps_per_peer_group: int
) -> tuple[np.ndarray, np.ndarray]:
    """Health system (about one per 200 HCPs of a state) and peer group inside it."""
    frame = pd.DataFrame({"state": state, "solo": setting == "solo"})
    per_state = frame.groupby("state")["state"].transform("size").to_numpy()
    n_systems = np.maximum(1, np.round(per_state / 200)).astype(np.int64)
    system_no = (rng.random(len(state)) * n_systems).astype(np.int64) + 1
    health_system = np.where(
        frame["solo"],
        "Independent practice (" + frame["state"] + ")",
        frame["state"] + " Health Network " + pd.Series(system_no).astype(str),
    ).astype(object)
    system_size = pd.Series(health_system).map(pd.Series(health_system).value_counts()).to_numpy()
    n_groups = np.maximum(1, np.ceil(system_size / hcps_per_peer_group)).astype(np.int64)
    local_group = (rng.random(len(state)) * n_groups).astype(np.int64)
    codes = pd.Series(health_system).astype(str) + "#" + pd.Series(local_group).astype(str)
    group_no = pd.factorize(codes, sort=True)[0]
    return health_system, np.char.mod("PG%05d", group_no + 1).astype(object)


def make_patients(rng: np.random.Generator, hcps: pd.DataFrame, patients_per_hcp: int) -> pd.DataFrame:
    """A sample of each HCP's patients (one row per patient) and their conditions.

    The primary area is drawn from the HCP's specialty relevance (``AREA_SPECIALTY_RELEVANCE``)
    times the region's prevalence multiplier times a per-HCP practice focus (Gamma(2)),
    so two HCPs of one specialty can see different mixes. Pediatric patients are 0-17.
    """
    n_hcps = len(hcps)
    relevance = np.array([[domain.AREA_SPECIALTY_RELEVANCE[s][a] for a in AREAS] for s in hcps["specialty"]])
    regional = np.array([[REGION_AREA_MULTIPLIER.get(r, {}).get(a, 1.0) for a in AREAS] for r in hcps["region"]])
    focus = rng.gamma(2.0, 0.5, size=(n_hcps, len(AREAS)))
    weights = relevance * regional * focus
    counts = 1 + rng.poisson(patients_per_hcp - 1, n_hcps)
    owner = np.repeat(np.arange(n_hcps), counts)
    cdf = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)[owner]
    primary = np.minimum((cdf < rng.random(len(owner))[:, None]).sum(axis=1), len(AREAS) - 1)

    comorbid_p = np.full((len(AREAS), len(AREAS)), _COMORBID_BASE)
    for (a, b), p in _COMORBID_PAIRS.items():
        comorbid_p[AREAS.index(a), AREAS.index(b)] = p
    np.fill_diagonal(comorbid_p, 1.0)
    has = rng.random((len(owner), len(AREAS))) < comorbid_p[primary]
    labels = _condition_labels()
    conditions = labels[primary, (has * (1 << np.arange(len(AREAS)))).sum(axis=1)]

    pediatric = (hcps["specialty"].to_numpy() == "pediatrics")[owner]
    mean = np.array([PATIENT_AGE[a][0] for a in AREAS])[primary]
    sd = np.array([PATIENT_AGE[a][1] for a in AREAS])[primary]
    adult_age = np.clip(np.round(rng.normal(mean, sd)), 18, 95)
    age = np.where(pediatric, rng.integers(0, 18, len(owner)), adult_age).astype(np.int64)
    female = rng.random(len(owner)) < np.array([PATIENT_FEMALE[a] for a in AREAS])[primary]
    return pd.DataFrame(
        {
            "patient_id": pd.array(np.char.mod("PT%08d", np.arange(1, len(owner) + 1)), dtype="string"),
            "hcp_id": hcps["hcp_id"].to_numpy()[owner],
            "age": age,
            "sex": pd.array(np.where(female, "F", "M"), dtype="string"),
            "conditions": pd.array(conditions, dtype="string"),
            "primary_area": pd.array(np.array(AREAS, dtype=object)[primary], dtype="string"),
            "state": hcps["state"].to_numpy()[owner],
        }
    )


def _condition_labels() -> np.ndarray:
    """Table [primary area, bit mask of areas] -> "; "-joined areas, primary first."""
    labels = np.empty((len(AREAS), 1 << len(AREAS)), dtype=object)
    for p in range(len(AREAS)):
        for mask in range(1 << len(AREAS)):
            others = [AREAS[i] for i in range(len(AREAS)) if mask >> i & 1 and i != p]
            labels[p, mask] = "; ".join([AREAS[p], *others])
    return labels


def patient_area_mix(hcps: pd.DataFrame, patients: pd.DataFrame) -> np.ndarray:
    """Per HCP (hcp_master order), the share of its patients' conditions in each area.

    Primary conditions count 1, other conditions 0.5.
    """
    index = pd.Index(hcps["hcp_id"]).get_indexer(patients["hcp_id"])
    mix = np.zeros((len(hcps), len(AREAS)))
    primary = pd.Index(AREAS).get_indexer(patients["primary_area"])
    np.add.at(mix, (index, primary), 0.5)
    for a, area in enumerate(AREAS):
        has = patients["conditions"].str.contains(area, regex=False).to_numpy(dtype=bool)
        np.add.at(mix[:, a], index[has], 0.5)
    return mix / np.maximum(mix.sum(axis=1, keepdims=True), 1e-12)


def content_types(titles: pd.Series) -> np.ndarray:
    """Content type by the first matching title rule; 'publication_reprint' otherwise."""
    result = np.full(len(titles), "publication_reprint", dtype=object)
    undecided = np.ones(len(titles), dtype=bool)
    for name, pattern in _CONTENT_TYPE_RULES:
        hit = undecided & titles.str.contains(pattern).to_numpy(dtype=bool)
        result[hit] = name
        undecided &= ~hit
    return result


def approved_specialty_matrix(areas: np.ndarray, min_relevance: float) -> np.ndarray:
    """Boolean [specialty, item]: the compliance rule (area relevance >= ``min_relevance``)."""
    relevance = np.array([[domain.AREA_SPECIALTY_RELEVANCE[s][a] for a in AREAS] for s in SPECIALTY_KEYS])
    return relevance[:, pd.Index(AREAS).get_indexer(areas)] >= min_relevance


def make_content(
    rng: np.random.Generator,
    articles: pd.DataFrame,
    dominant_theme: np.ndarray,
    horizon_start: pd.Timestamp,
    horizon_days: int,
    approval_min_relevance: float,
) -> pd.DataFrame:
    """One content item per cleaned article (catalogue order = articles sorted by pmid).

    Release dates: a quarter of the items form the back catalogue (released in the year
    before the horizon); the rest arrive through the horizon, older publications first.
    Series: in each (area, dominant theme) group, in release order, an item starts a
    series of 2-4 consecutive parts with probability ``SERIES_SHARE``.
    """
    n = len(articles)
    back = rng.random(n) < BACK_CATALOGUE_SHARE
    order_key = articles["pub_year"].fillna(articles["pub_year"].median()).to_numpy(dtype=float) + rng.random(n)
    release_day = np.empty(n)
    new = np.flatnonzero(~back)
    release_day[new[np.argsort(order_key[new], kind="stable")]] = np.sort(rng.uniform(0, horizon_days, len(new)))
    release_day[back] = -rng.uniform(1, 365, back.sum())
    release_date = horizon_start + pd.to_timedelta(np.floor(release_day), unit="D")

    series_id = np.full(n, None, dtype=object)
    series_part = np.zeros(n, dtype=np.int64)
    groups = pd.DataFrame(
        {"area": articles["therapeutic_area"].to_numpy(), "theme": dominant_theme, "release": release_day}
    ).sort_values(["area", "theme", "release"], kind="stable")
    n_series = 0
    # A short loop over items in release order (about a thousand, not interactions) keeps
    # the series rule readable: consecutive parts inside one (area, theme) group.
    for _, members in groups.groupby(["area", "theme"], sort=True):
        positions = members.index.to_numpy()
        i = 0
        while i < len(positions):
            size = int(rng.integers(2, 5))
            if rng.random() < SERIES_SHARE and i + 1 < len(positions):
                parts = positions[i : i + size]
                n_series += 1
                series_id[parts] = f"S{n_series:04d}"
                series_part[parts] = np.arange(1, len(parts) + 1)
                i += len(parts)
            else:
                i += 1

    areas = articles["therapeutic_area"].to_numpy(dtype=object)
    approved = approved_specialty_matrix(areas, approval_min_relevance)
    keys = np.array(SPECIALTY_KEYS, dtype=object)
    approved_text = ["; ".join(keys[approved[:, i]]) for i in range(n)]
    return pd.DataFrame(
        {
            "content_id": articles["pmid"].astype("string").to_numpy(),
            "pmid": articles["pmid"].astype("string").to_numpy(),
            "title": articles["title"].astype("string").to_numpy(),
            "therapeutic_area": pd.array(areas, dtype="string"),
            "content_type": pd.array(content_types(articles["title"].astype(str)), dtype="string"),
            "release_date": release_date.to_numpy(dtype="datetime64[ns]"),
            "approved_specialties": pd.array(approved_text, dtype="string"),
            "series_id": pd.array(series_id, dtype="string"),
            "series_part": pd.array(np.where(series_part > 0, series_part, None), dtype="Int64"),
            "has_abstract": articles["has_abstract"].to_numpy(dtype=bool),
        }
    )


def make_campaigns(
    rng: np.random.Generator, content: pd.DataFrame, n_hcps: int, horizon_start: pd.Timestamp, horizon_days: int
) -> pd.DataFrame:
    """Campaigns: one per (content item, channel) the item is promoted on, with its window.

    Every item has an email campaign; other channels are drawn with the channel's
    ``campaign_share``. A campaign starts within a week of release (back-catalogue items:
    somewhere in the weeks before the horizon, so some are still running at its start) and
    runs ``campaign_weeks``. Its weekly capacity is the channel's capacity for this universe
    divided by the channel's typical number of concurrent campaigns.
    """
    release = content["release_date"].to_numpy(dtype="datetime64[ns]")
    rows = []
    for _k, spec in CHANNEL_TABLE.iterrows():
        chosen = np.flatnonzero(rng.random(len(content)) < spec["campaign_share"])
        duration = pd.Timedelta(weeks=int(spec["campaign_weeks"]))
        lead = rng.integers(0, 7 * 24 * 60, len(chosen))
        start = pd.to_datetime(release[chosen]) + pd.to_timedelta(lead, unit="min")
        back = start < horizon_start
        shift = rng.uniform(0, int(spec["campaign_weeks"]) * 7, len(chosen))
        start = start.where(~back, horizon_start - pd.to_timedelta(np.floor(shift), unit="D"))
        start = start.floor("D")
        rows.append(
            pd.DataFrame(
                {
                    "campaign_id": "CMP-"
                    + content["content_id"].to_numpy(dtype=object)[chosen]
                    + "-"
                    + spec["channel"],
                    "content_id": content["content_id"].to_numpy(dtype=object)[chosen],
                    "channel": spec["channel"],
                    "target_segment": spec["target_segment"],
                    "start_date": start.to_numpy(dtype="datetime64[ns]"),
                    "end_date": (start + duration).to_numpy(dtype="datetime64[ns]"),
                    "cost_per_touch": float(spec["cost_per_touch_usd"]),
                    "_capacity_channel": spec["capacity_per_1000_hcps_week"] * n_hcps / 1000,
                    "_concurrent": max(
                        1.0,
                        len(chosen) * int(spec["campaign_weeks"]) / (horizon_days / 7 + int(spec["campaign_weeks"])),
                    ),
                }
            )
        )
    campaigns = pd.concat(rows, ignore_index=True)
    campaigns["capacity_per_week"] = np.ceil(campaigns["_capacity_channel"] / campaigns["_concurrent"]).astype(np.int64)
    campaigns = campaigns.drop(columns=["_capacity_channel", "_concurrent"])
    for column in ("campaign_id", "content_id", "channel", "target_segment"):
        campaigns[column] = campaigns[column].astype("string")
    columns = [
        "campaign_id",
        "content_id",
        "channel",
        "target_segment",
        "start_date",
        "end_date",
        "capacity_per_week",
        "cost_per_touch",
    ]
    return campaigns[columns].sort_values("campaign_id", kind="stable").reset_index(drop=True)
