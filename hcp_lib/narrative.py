"""The sentences of the book that depend on a run's results, one function per paragraph;
notebooks display them, tests pin them.

Each function takes the values, dicts and tables a notebook already holds and returns one
Markdown paragraph, word for word what the chapter shows
(``display(Markdown(narrative.ingestion_quality(quality, corpus=corpus, live=pubmed_live)))``).
Nothing here fits, reads or writes anything: a function formats its inputs, at most after
counting, averaging or picking the largest of them. The functions are grouped by chapter, in
the book's order. Where a notebook passes one of its objects (the synthetic world, the
explorer data, a solver's assignment), the small protocols below name the attributes read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from .domain import CHANNEL_LABELS, CHANNELS


class World(Protocol):
    """What :func:`world_summary` reads of a :class:`hcp_lib.world.synth.World`."""

    @property
    def hcps(self) -> pd.DataFrame: ...
    @property
    def interactions(self) -> pd.DataFrame: ...
    @property
    def content(self) -> pd.DataFrame: ...
    @property
    def horizon_start(self) -> pd.Timestamp: ...
    @property
    def horizon_end(self) -> pd.Timestamp: ...
    @property
    def validation_start(self) -> pd.Timestamp: ...
    @property
    def test_start(self) -> pd.Timestamp: ...


class ExplorerData(Protocol):
    """What :func:`explorer_run` reads of a :class:`hcp_lib.stages.explore.ExplorerData`."""

    @property
    def hcps(self) -> pd.DataFrame: ...
    @property
    def content(self) -> pd.DataFrame: ...
    @property
    def models(self) -> list[str]: ...
    @property
    def depth(self) -> int: ...
    @property
    def cutoff(self) -> pd.Timestamp: ...
    @property
    def test_end(self) -> pd.Timestamp: ...


class Candidates(Protocol):
    """What :func:`candidates_and_capacity` reads of a :class:`hcp_lib.stages.plan.Candidates`."""

    @property
    def table(self) -> pd.DataFrame: ...
    @property
    def n_eligible(self) -> int: ...


class ConstraintFamily(Protocol):
    """What :func:`candidates_and_capacity` reads of a :class:`hcp_lib.stages.plan.ConstraintFamily`."""

    @property
    def capacity(self) -> Sequence[float]: ...


class Assignment(Protocol):
    """What :func:`solver_comparison` reads of a :class:`hcp_lib.stages.plan.Assignment`."""

    @property
    def status(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def gap(self) -> float | None: ...
    @property
    def objective(self) -> float: ...


# --- 01 ingestion --------------------------------------------------------------------------


def ingestion_quality(quality: Mapping[str, int], corpus: str, live: bool) -> str:
    """Where the articles came from and what cleaning removed. ``quality``: the counts of
    :func:`hcp_lib.stages.pubmed.ingest` (``rows_in``, ``duplicate_pmids_removed``,
    ``correction_notices_removed``, ``empty_records_removed``, ``rows_out``,
    ``empty_abstracts_kept``); ``corpus``: the snapshot's corpus name; ``live``: whether the
    articles were fetched from NCBI rather than read from the snapshot."""
    mode = "fetched live from NCBI E-utilities" if live else f"read from the shipped snapshot (corpus '{corpus}')"
    return (
        f"The articles were {mode}. Of {quality['rows_in']:,} records, "
        f"{quality['duplicate_pmids_removed']} repeated a PMID already seen, "
        f"{quality['correction_notices_removed']} were correction notices and "
        f"{quality['empty_records_removed']} had neither title nor abstract; "
        f"**{quality['rows_out']:,} articles** remain, of which {quality['empty_abstracts_kept']} "
        f"({quality['empty_abstracts_kept'] / quality['rows_out']:.1%}) have a title but no abstract."
    )


def areas_and_years(area_year: pd.DataFrame, pub_year: pd.Series) -> str:
    """The largest and smallest therapeutic area, the range of publication years and the
    articles without one. ``area_year``: articles per area (rows) and year (columns), from
    :func:`hcp_lib.stages.pubmed.articles_per_area_year`; ``pub_year``: each article's year (missing
    where its source file has none)."""
    per_area = area_year.sum(axis=1).sort_values()
    dated = pub_year.dropna()
    year_range = f"from {dated.min()} to {dated.max()}" if len(dated) else "not recorded"
    return (
        f"The largest area is {per_area.index[-1]} ({per_area.iloc[-1]} articles), the smallest "
        f"{per_area.index[0]} ({per_area.iloc[0]}). Publication years range {year_range}; "
        f"{pub_year.isna().sum()} articles ({pub_year.isna().mean():.0%}) have no year "
        f"in their source file."
    )


def abstract_length(words: pd.Series, sources: pd.Series) -> str:
    """The median abstract length, overall and per source, and the shortest and longest.
    ``words``: words per abstract (:func:`hcp_lib.stages.pubmed.abstract_words`); ``sources``: each
    of those articles' source file, on the same index."""
    medians = words.groupby(sources).median()
    return (
        f"The median abstract has {words.median():.0f} words ("
        + ", ".join(f"{source}: {median:.0f}" for source, median in medians.items())
        + f"); the shortest has {words.min()} and the longest {words.max()} words."
    )


# --- 02 synthesis --------------------------------------------------------------------------


def world_summary(world: World, scale: str, generation_seconds: float) -> str:
    """The world's size, horizon and suggested windows, and the items released only in the
    test period. ``world``: the synthetic world (:class:`World`: its tables and dates);
    ``scale``: the run's scale preset; ``generation_seconds``: how long building it took."""
    new_items = int((world.content["release_date"] >= world.test_start).sum())
    return (
        f"The `{scale}` world has {len(world.hcps):,} HCPs and {len(world.interactions):,} exposures over "
        f"{(world.horizon_end - world.horizon_start).days} days from {world.horizon_start:%Y-%m-%d}, built in "
        f"{generation_seconds:.1f} s. The suggested validation period starts {world.validation_start:%Y-%m-%d} "
        f"and the test period {world.test_start:%Y-%m-%d}; {new_items} "
        "items are released only in the test period, so they have no history."
    )


def channel_engagement(channel_effects: pd.DataFrame, interactions: pd.DataFrame) -> str:
    """Email's volume, engagement and open rate against the rep visits' engagement.
    ``channel_effects``: one row per channel (``channel``, ``exposures``, ``engagement_rate``),
    ``planted_effects(world)["channel"]``; ``interactions``: the exposure log (``channel``,
    ``opened``)."""
    by_channel = channel_effects.set_index("channel")
    email, rep = by_channel.loc["email"], by_channel.loc["rep_visit"]
    open_rate = interactions.loc[interactions["channel"] == "email", "opened"].mean()
    return (
        f"Email, the bulk of the touches ({int(email['exposures']):,}), engages {email['engagement_rate']:.1%} of the "
        f"time (an email open rate of {open_rate:.1%}), "
        f"while the scarce rep visits engage {rep['engagement_rate']:.1%}. Specialties differ because the BAU policy "
        "shows each specialty a different share of content central to its practice."
    )


def fatigue_effect(fatigue: pd.DataFrame, fatigue_free_touches: int) -> str:
    """The mean true probability with few and with many earlier touches. ``fatigue``: one row
    per number of earlier touches in the fatigue window (first column) with
    ``mean_true_prob``; ``fatigue_free_touches``: the touches the world forgives."""
    touches = fatigue.columns[0]
    low = fatigue.loc[fatigue[touches] <= fatigue_free_touches, "mean_true_prob"].mean()
    high = fatigue.loc[fatigue[touches] >= fatigue_free_touches + 3, "mean_true_prob"].mean()
    return (
        f"Up to {fatigue_free_touches} earlier touches the mean true probability is {low:.1%}; with "
        f"{fatigue_free_touches + 3} or more it falls to {high:.1%}. Heavily touched HCPs are mostly "
        "high-decile ones, whom the BAU policy targets more."
    )


def series_followup(series: pd.DataFrame) -> str:
    """Engagement of series parts after an engagement with the previous part, and otherwise.
    ``series``: rows with ``previous_part_engaged`` (True/False) and ``engagement_rate``; a
    missing row reads ``nan%``."""
    rates = series.set_index("previous_part_engaged")["engagement_rate"]
    return (
        f"Parts shown after an engagement with the previous part engage {rates.get(True, np.nan):.1%} "
        f"of the time, against {rates.get(False, np.nan):.1%} otherwise."
    )


def email_by_age(by_age: pd.DataFrame) -> str:
    """The email engagement probability of the youngest and the oldest age band. ``by_age``:
    mean true probability per age band (rows, youngest first) and channel (columns)."""
    email = by_age["email"]
    return (
        f"The mean true probability of engaging with an email is {email.iloc[0]:.1%} for HCPs under 40 "
        f"and {email.iloc[-1]:.1%} for those 60 and over."
    )


def repeat_exposures(seen: pd.DataFrame) -> str:
    """How many exposures are of new, already shown and already engaged content, and what the
    bars show of the planted repeat penalties. ``seen``: one row per case with ``seen_before``
    (0 new, 1 shown before, 2 engaged before), its ``label``, ``exposures`` and
    ``mean_true_prob``, in the order to read them."""
    text = (
        "Repeats are "
        + ", ".join(f"{r.label}: {int(r.exposures):,} exposures" for r in seen.itertuples())
        + "; the BAU policy rarely repeats an item, so most exposures are of new content."
    )
    rate = seen.set_index("seen_before")["mean_true_prob"]
    if {0, 2} <= set(rate.index) and rate[2] > rate[0]:
        text += (
            f" The bars do not show the penalty for content engaged with before ({rate[2]:.1%} against "
            f"{rate[0]:.1%} for new content): those exposures go to HCPs who engage more than most, "
            "which outweighs the penalty across HCPs; the penalty holds for each HCP."
        )
    return text


def learnability(ranking: Mapping[str, float]) -> str:
    """What the truth and popularity gain over a random order on the test exposures.
    ``ranking``: :func:`hcp_lib.world.synth.ranking_check`'s dict (``n_hcps``,
    ``exposed_ndcg@10_{truth,popularity,random}``, ``auc_truth``, ``auc_popularity``)."""
    gain_truth = ranking["exposed_ndcg@10_truth"] - ranking["exposed_ndcg@10_random"]
    gain_popularity = ranking["exposed_ndcg@10_popularity"] - ranking["exposed_ndcg@10_random"]
    return (
        f"Over {ranking['n_hcps']:,} HCPs with a test engagement, the truth gains {gain_truth:.3f} NDCG@10 over a "
        f"random order and popularity {gain_popularity:.3f}; the truth's AUC is {ranking['auc_truth']:.2f} against "
        f"{ranking['auc_popularity']:.2f}. This gap is what the models of later chapters can learn."
    )


def oracle_reproduction(n_exposures: int, max_difference: float) -> str:
    """How closely the reloaded oracle reproduces the logged probabilities. ``n_exposures``:
    the logged exposures recomputed; ``max_difference``: the largest absolute difference."""
    return (
        f"Over {n_exposures:,} logged exposures the largest difference between the reloaded oracle and "
        f"the logged probability is {max_difference:.1e}."
    )


# --- 03 topic modeling ----------------------------------------------------------------------


def topic_corpus(n_articles: int, n_title_only: int) -> str:
    """The corpus the topic model reads. ``n_articles``: articles; ``n_title_only``: those
    with a title and no abstract."""
    return f"The topic model reads {n_articles:,} articles, {n_title_only:,} of them with a title only."


def vocabulary(pipeline_name: str, n_terms: int, phrases: Sequence[str], terms_per_article: np.ndarray) -> str:
    """The vocabulary after preprocessing. ``pipeline_name``: the spaCy pipeline;
    ``n_terms``: dictionary size; ``phrases``: the multi-word terms, most frequent first;
    ``terms_per_article``: the number of terms left in each article."""
    lengths = np.asarray(terms_per_article)
    return (
        f"With the spaCy pipeline *{pipeline_name}*, the vocabulary holds {n_terms:,} terms, {len(phrases):,} of "
        f"them phrases; the median article keeps {np.median(lengths):.0f} terms and "
        f"{int((lengths == 0).sum())} articles keep none. The most frequent phrases: " + ", ".join(phrases[:15]) + "."
    )


def topic_count(chosen_k: int, best_k: int, forced: bool, sweep: pd.DataFrame) -> str:
    """How many topics and why. ``chosen_k``: topics fitted; ``best_k``: the sweep's best by
    c_v; ``forced``: whether the parameter ``n_topics`` set ``chosen_k``; ``sweep``: one row
    per candidate with ``n_topics``, ``c_v`` and ``c_npmi``."""
    how = f"forced by the parameter n_topics (the sweep's best was {best_k})" if forced else "chosen by the sweep"
    row = sweep.set_index("n_topics").loc[best_k]
    return (
        f"{chosen_k} topics, {how}. The sweep's best, {best_k} topics, has mean c_v {row['c_v']:.3f} "
        f"and NPMI {row['c_npmi']:.3f}; across the sweep c_v ranges from {sweep['c_v'].min():.3f} "
        f"to {sweep['c_v'].max():.3f}."
    )


def topic_coherence_range(topic_table: pd.DataFrame) -> str:
    """The least and most coherent topics. ``topic_table``: one row per topic with ``topic``,
    ``label`` and ``c_v``."""
    weakest = topic_table.loc[topic_table["c_v"].idxmin()]
    strongest = topic_table.loc[topic_table["c_v"].idxmax()]
    return (
        f"Per-topic c_v runs from {weakest['c_v']:.3f} (topic {weakest['topic']}: {weakest['label']}) "
        f"to {strongest['c_v']:.3f} (topic {strongest['topic']}: {strongest['label']})."
    )


def topic_quality(quality: Mapping[str, Any], v01_c_v: float) -> str:
    """The chosen model's coherence and agreement with the labels, against v0.1 and the aims.
    ``quality``: ``full`` (``n_documents``, ``c_v``, ``c_npmi``, ``nmi_query_label``,
    ``nmi_therapeutic_area``) and, when refitted, ``v01_refit`` (``n_documents``, ``c_v``);
    ``v01_c_v``: the c_v v0.1 reported."""
    full = quality["full"]
    lines = [
        f"On all {full['n_documents']} articles the chosen model has mean c_v {full['c_v']:.3f}, NPMI "
        f"{full['c_npmi']:.3f}; NMI with the query label {full['nmi_query_label']:.3f} "
        f"(with the therapeutic area {full['nmi_therapeutic_area']:.3f})."
    ]
    if "c_v" in quality.get("v01_refit", {}):
        v01 = quality["v01_refit"]
        lines.append(
            f"Refitted on v0.1's {v01['n_documents']} articles, the recipe reaches c_v {v01['c_v']:.3f} "
            f"against v0.1's {v01_c_v} ({'meets' if v01['c_v'] >= 0.55 else 'misses'} the 0.55 aim)."
        )
    lines.append(
        f"The NMI aim of 0.6 is {'met' if full['nmi_query_label'] >= 0.6 else 'not met'}: LDA topics follow "
        "what the abstracts talk about (lifestyle, mechanisms, screening), which cuts across the queries."
    )
    return " ".join(lines)


def topic_audiences(topic_table: pd.DataFrame) -> str:
    """Each topic's dominant therapeutic area and closest specialty. ``topic_table``: one row
    per topic with ``topic``, ``label``, ``top_area`` and ``top_specialty``."""
    return (
        "; ".join(
            f"topic {r.topic} ({r.label}) is mostly {r.top_area}, closest to {r.top_specialty}"
            for r in topic_table.itertuples()
        )
        + "."
    )


# --- 04 collaborative filtering ------------------------------------------------------------


def split_windows(windows: pd.DataFrame) -> str:
    """The training window and the HCPs evaluated on validation and test. ``windows``:
    :func:`hcp_lib.stages.cf.split_summary`, indexed ``train``/``validation``/``test`` with ``start``,
    ``engaged`` and ``HCPs evaluated``."""
    return (
        f"Training covers {windows.loc['train', 'start']} to {windows.loc['validation', 'start']} "
        f"({windows.loc['train', 'engaged']:,} engagements); "
        f"{windows.loc['validation', 'HCPs evaluated']:,} HCPs are evaluated on validation and "
        f"{windows.loc['test', 'HCPs evaluated']:,} on test."
    )


def item_features(feature_source: str, n_items: int, n_features: int) -> str:
    """What describes the items for the content-based model. ``feature_source``: its
    description (:func:`hcp_lib.stages.cf.item_features_for`); ``n_items`` and ``n_features``: the
    feature matrix's shape."""
    return f"The content-based model uses {feature_source}: {n_features} features for {n_items:,} items."


def validation_comparison(table: pd.DataFrame) -> str:
    """The best and weakest content baseline by exposure AUC, the replay diagnostic's pick
    when it differs, and the channel baseline that follows the logging policy most.
    ``table``: :func:`hcp_lib.stages.cf.validation_table`, best exposure AUC first, with a ``random``
    row; content models are the rows with an ``ndcg@10``, channel models those with a
    ``channel_accuracy``."""
    content = table[table["ndcg@10"].notna()]
    best = content.index[0]
    worst = content.drop(index="random").index[-1]
    by_replay = content["ndcg@10"].idxmax()
    return (
        f"**{best}** ranks the logged validation exposures best (exposure AUC {content.loc[best, 'exposure_auc']:.3f}, "
        f"against {content.loc['random', 'exposure_auc']:.3f} for random scores) and is the best baseline of the "
        f"evaluation chapter; the weakest non-random model is {worst} ({content.loc[worst, 'exposure_auc']:.3f}). "
        + (
            f"The replay diagnostic would have picked {by_replay} (NDCG@10 {content.loc[by_replay, 'ndcg@10']:.3f}): "
            "it rewards recommending what the logging policy was about to show. "
            if by_replay != best
            else ""
        )
        + f"Among channel baselines, {table['channel_accuracy'].idxmax()} agrees most often with the channel of an "
        f"engaged exposure ({table['channel_accuracy'].max():.3f}) — a diagnostic that rewards following the logging "
        "policy; chapter 6 judges channels by policy and plan value."
    )


def query_item(content_id: str, item: Mapping[str, Any]) -> str:
    """The item whose neighbours follow. ``content_id``: its id; ``item``: its row of the
    content table (``therapeutic_area``, ``title``)."""
    return f"Query item {content_id} ({item['therapeutic_area']}): *{item['title']}*"


def item_neighbours(neighbours: pd.DataFrame, query_area: str) -> str:
    """How many of the nearest items share the query item's therapeutic area.
    ``neighbours``: the nearest items with their ``therapeutic_area``; ``query_area``: the
    query item's."""
    same_area = (neighbours["therapeutic_area"] == query_area).sum()
    return f"{same_area} of the {len(neighbours)} nearest items share the query's therapeutic area."


def query_hcp(hcp_id: str, specialty: str) -> str:
    """The HCP whose neighbours follow. ``hcp_id``: its id; ``specialty``: its specialty."""
    return f"Query HCP {hcp_id} ({specialty})."


def hcp_neighbours(similar: pd.DataFrame, query_specialty: str) -> str:
    """How many of the nearest HCPs share the query HCP's specialty. ``similar``: the nearest
    HCPs with their ``specialty``; ``query_specialty``: the query HCP's."""
    shared = int((similar["specialty"] == query_specialty).sum())
    return f"{shared} of the {len(similar)} nearest HCPs share the query HCP's specialty."


def factor_space(explained_variance_ratio: Sequence[float], silhouette: float) -> str:
    """How much of the ALS factor variance the plotted plane holds and how well specialties
    separate. ``explained_variance_ratio``: the PCA's ratios, largest first; ``silhouette``:
    the silhouette of specialties in the full factor space (above 0.25 reads "clearly
    separated")."""
    plane = np.asarray(explained_variance_ratio)[:2].sum()
    return (
        f"The first two components hold {plane:.0%} of the factor variance. "
        f"The silhouette of specialties in the full factor space is {silhouette:.2f} "
        f"({'clearly separated' if silhouette > 0.25 else 'overlapping'} groups): specialty shapes taste, "
        f"but it is not all the factors encode."
    )


# --- 05 engagement models ------------------------------------------------------------------


def tabular_challenger(best: Mapping[str, float]) -> str:
    """The tabular challenger's chosen grid point. ``best``: the chosen row of the grid
    (``learning_rate``, ``max_leaf_nodes``, ``validation_log_loss``, ``n_iter``)."""
    return (
        f"The challenger keeps learning rate {best['learning_rate']:g} and {int(best['max_leaf_nodes'])} leaves per "
        f"tree: validation log-loss {best['validation_log_loss']:.4f} after {int(best['n_iter'])} rounds. It is "
        "refitted before the test window with those rounds, alongside the chosen hybrid (below)."
    )


def encoder_choice(selection: pd.DataFrame, chosen_variant: str, tabular_log_loss: float) -> str:
    """Which sequence encoder is kept, against the other one (if two were fitted) and the
    tabular challenger. ``selection``: one row per encoder (``validation_log_loss``,
    ``epochs``); ``chosen_variant``: the kept one's name; ``tabular_log_loss``: the
    challenger's validation log-loss."""
    row = selection.loc[chosen_variant]
    other = (
        f", against {selection.drop(index=chosen_variant)['validation_log_loss'].min():.4f} for the other encoder"
        if len(selection) > 1
        else ""
    )
    return (
        f"The **{chosen_variant.upper()}** encoder is kept: validation log-loss {row['validation_log_loss']:.4f} at "
        f"epoch {int(row['epochs'])}{other}; the tabular challenger reached "
        f"{tabular_log_loss:.4f}. The curves plot what Keras minimises, the cross-entropy plus the weight "
        f"penalty; the choice reads the cross-entropy alone. Validation loss rising while training loss falls is the "
        f"model learning the training period by heart, which early stopping cuts off."
    )


def hybrid_fit(
    epochs: int,
    n_train_examples: int,
    fit_seconds: float,
    n_weights: int,
    ablation_seconds: Mapping[str, float],
    challenger_seconds: float | None = None,
    challenger_engine: str | None = None,
) -> str:
    """The refitted hybrid's training and size, the ablations' time (or that they were not
    fitted) and, when given, the tabular challenger's refit time and what scored its cells
    (``challenger_engine``, :attr:`hcp_lib.models.tabular.TabularEngagement.scoring_engine_`). ``epochs``,
    ``n_train_examples``, ``fit_seconds``, ``n_weights``: the hybrid's; ``ablation_seconds``:
    each fitted ablation's fit time (empty when ``hybrid_ablations=false``)."""
    ablations = (
        f"The {len(ablation_seconds)} ablations took {sum(ablation_seconds.values()):.0f} s."
        if ablation_seconds
        else "The ablations were not fitted in this run (hybrid_ablations=false)."
    )
    return (
        f"The hybrid trained {epochs} epochs on {n_train_examples:,} exposures in {fit_seconds:.0f} s "
        f"and has {n_weights:,} weights. "
        + ablations
        + (
            f" The tabular challenger's refit took {challenger_seconds:.0f} s."
            if challenger_seconds is not None
            else ""
        )
        + (f" Its cells were scored by {challenger_engine}." if challenger_engine else "")
    )


def reloaded_hybrid(difference: float, lists: pd.DataFrame) -> str:
    """That the reloaded hybrid reproduces the fitted one, and the channels of its first
    recommendations. ``difference``: the largest absolute difference of their probabilities;
    ``lists``: the hybrid's recommendation lists (``rank``, ``channel``)."""
    top1 = lists[lists["rank"] == 1]["channel"].value_counts(normalize=True)
    return (
        f"The reloaded hybrid reproduces the fitted one's probabilities (largest difference {difference:.1e}). Its "
        f"first recommendation goes through "
        + ", ".join(f"{c.replace('_', ' ')} ({s:.0%})" for c, s in top1.items())
        + ": with no capacity limits, the channel with the highest engagement probability is usually a rep visit; "
        "the week's plan (chapter 7) spreads the actions over the channels the field force can deliver."
    )


# --- 06 evaluation -------------------------------------------------------------------------


def evaluation_population(report: Mapping[str, Any]) -> str:
    """How many models are evaluated on how many HCPs, exposures and items. ``report``: the
    evaluation report (``models_found``; ``population`` with ``n_hcps``,
    ``n_test_exposures``, ``n_content``, ``n_new_items``)."""
    population = report["population"]
    return (
        f"{len(report['models_found'])} models are evaluated on {population['n_hcps']:,} HCPs, "
        f"{population['n_test_exposures']:,} logged test exposures and {population['n_content']:,} items "
        f"({population['n_new_items']:,} released in the test window)."
    )


def value_ranges(content: pd.DataFrame, report: Mapping[str, Any]) -> str:
    """The range of policy and plan value over the models, and business as usual's.
    ``content``: the headline table's rows with a policy value, oracle aside (``family``,
    ``policy_fraction_of_oracle``, ``plan_fraction_of_oracle``); ablations and references
    are left out of the ranges. ``report``: the evaluation report (its ``policy`` entry for
    ``business_as_usual``)."""
    models_only = content[~content["family"].isin(["ablation", "reference"])]
    ranked = models_only["policy_fraction_of_oracle"].sort_values(ascending=False)
    planned = models_only["plan_fraction_of_oracle"].dropna().sort_values(ascending=False)
    bau = report["policy"]["business_as_usual"]
    return (
        f"Across the models (ablations aside), policy value ranges from {ranked.iloc[-1]:.3f} ({ranked.index[-1]}) to "
        f"{ranked.iloc[0]:.3f} ({ranked.index[0]}), and plan value from {planned.iloc[-1]:.3f} ({planned.index[-1]}) "
        f"to {planned.iloc[0]:.3f} ({planned.index[0]}). "
        f"Business as usual reaches {bau['policy_fraction_of_oracle']['value']:.3f} of the "
        f"oracle's policy value and {bau['plan_fraction_of_oracle']['value']:.3f} of its plan "
        "value: it sends items because a campaign is running, not because the HCP would engage."
        + _bau_below_random(report)
    )


def _bau_below_random(report: Mapping[str, Any]) -> str:
    """Why business as usual's first touch can score below a random (item, channel) pair."""
    bau = report["policy"]["business_as_usual"]["policy_fraction_of_oracle"]["value"]
    random = report["policy"].get("random", {}).get("policy_fraction_of_oracle", {}).get("value")
    if random is None or bau is None or bau >= random:
        return ""
    return (
        f" It is even below uniform_random, a random (item, channel) pair ({random:.3f}): a random pair goes "
        "through any of the "
        "five channels, and the field channels engage far more than e-mail, while business as usual's first touch "
        "is mostly a campaign e-mail."
    )


def observed_ndcg(report: Mapping[str, Any], models: Iterable[str]) -> str:
    """The oracle's NDCG@10 on observed engagements against the best model's. ``report``: the
    evaluation report (``metrics[model]["ndcg@10"]["value"]``); ``models``: the models
    compared, ``oracle`` among them."""
    observed = {m: report["metrics"][m]["ndcg@10"]["value"] for m in models}
    best = max((m for m in observed if m != "oracle"), key=observed.get)
    return (
        f"On observed engagements the oracle scores {observed['oracle']:.3f}, below {best} ({observed[best]:.3f}): "
        "predicting what the logging policy will push is not the same as knowing what each HCP would engage with."
    )


def v01_classifier(report: Mapping[str, Any]) -> str:
    """The v0.1 classifier's random-split and temporal AUC and its policy value. ``report``:
    the evaluation report (``v01`` with ``random_split_auc`` and ``temporal_auc``; the
    ``v0.1_classifier`` metrics)."""
    v01 = report["v01"]
    return (
        f"The random-split AUC is {v01['random_split_auc']:.3f}; on the temporal test window it is "
        f"{v01['temporal_auc']:.3f}. As a recommender it reaches "
        f"{report['metrics']['v0.1_classifier']['policy_fraction_of_oracle']['value']:.3f} of the "
        "oracle's policy value: it ranks content the same way for every HCP of a specialty."
    )


# --- 08 explorer ---------------------------------------------------------------------------


def explorer_run(data: ExplorerData, model: str) -> str:
    """What the explorers hold: HCPs, items, models, list depth, cut-off and test end.
    ``data``: the explorer data (:class:`ExplorerData`); ``model``: the model shown."""
    return (
        f"The run holds {len(data.hcps):,} HCPs, {len(data.content):,} content items and recommendations of "
        f"{len(data.models)} models (top {data.depth} per HCP), made at the test cut-off "
        f"{data.cutoff:%Y-%m-%d}. The explorers below show **{model}**; the test window runs to "
        f"{data.test_end:%Y-%m-%d}."
    )


def static_views(n_shown: int, n_run: int, size_kb: float) -> str:
    """Which HCPs the book's static explorer holds and what its data weighs. ``n_shown``: the
    HCPs it holds; ``n_run``: the HCPs of the run; ``size_kb``: the explorer's HTML in kB."""
    held = (
        f"every one of the run's {n_run:,} HCPs"
        if n_shown >= n_run
        else f"{n_shown:,} of the run's {n_run:,} HCPs, drawn with the run's seed (parameter `explorer_hcps`)"
    )
    return (
        f"The explorer holds {held}; with its script and compressed data it adds {size_kb:,.0f} kB to this "
        "page, and it works with no kernel and no network."
    )


def _share(value: float) -> str:
    """A share as a whole percentage; a share that rounds to 0% or 100% without being it says so."""
    if 0 < value < 0.005:
        return "<1%"
    if 0.995 <= value < 1:
        return ">99%"
    return f"{value:.0%}"


def channel_story(model: str, summary: Mapping[str, Any]) -> str:
    """One channel story for the whole run: the channel of the model's best recommendation,
    of the best action deliverable this week, and of the week's plan. ``model``: the model
    shown; ``summary``: :func:`hcp_lib.stages.explore.channel_summary`."""

    def listing(shares: pd.Series, counts: bool = False) -> str:
        ordered = shares.sort_values(ascending=False, kind="stable")
        return ", ".join(
            f"{CHANNEL_LABELS[c].lower()} {v:,}" if counts else f"{CHANNEL_LABELS[c].lower()} {_share(v)}"
            for c, v in ordered.items()
        )

    text = (
        f"**One channel story.** With no constraint, {model}'s best action is by "
        f"{listing(summary['best'])} of {summary['hcps']:,} HCPs"
    )
    if len(summary["week"]):
        text += f"; among the actions that can be delivered this week, by {listing(summary['week'])}"
    plan = summary["plan"]
    if plan.sum():
        text += (
            f". The week's plan has {int(plan.sum()):,} actions for {summary['planned_hcps']:,} HCPs "
            f"({listing(plan, counts=True)}): rep visits and meetings are limited by the field force's capacity "
            "in each territory and by each campaign's weekly capacity (chapter 7), so most HCPs get an email or an "
            "event instead. Each HCP's view shows all three: the best with no constraint, the best this week, and "
            "what the plan does."
        )
    else:
        text += ". This run has no week's plan (chapter 7)."
    return text


def list_diversity(model: str, mine: Mapping[str, Any], oracle: Mapping[str, Any] | None, n_items: int, k: int) -> str:
    """How alike the lists are, against the lists the simulator's truth would make.
    ``model``: the model shown; ``mine``, ``oracle``: :func:`hcp_lib.stages.explore.list_concentration`
    of the model and of the oracle (None: the run has no oracle lists); ``n_items``: the
    catalogue size; ``k``: the list length."""
    top = mine["top"]["share"]
    text = (
        f"**How diverse are the lists?** {model}'s top-{k} lists for {mine['hcps']:,} HCPs use "
        f"{mine['distinct']:,} of the {n_items:,} catalogue items ({mine['coverage']:.0%}); its most common item "
        f"is in {top.iloc[0]:.0%} of the lists and its {len(top)} most common items are each in "
        f"{top.min():.0%} to {top.max():.0%} of them."
    )
    if oracle is None:
        return text
    truth = oracle["top"]["share"]
    text += (
        f" The oracle's lists (the items each HCP is truly most likely to engage with) use {oracle['distinct']:,} "
        f"items, and its most common item is in {truth.iloc[0]:.0%} of them"
    )
    if top.iloc[0] > truth.iloc[0] + 0.05 or mine["distinct"] < 0.8 * oracle["distinct"]:
        return text + (
            f", so {model}'s lists are more alike than the truth calls for: part of the sameness is the "
            "model's, not the HCPs'."
        )
    return text + ": the sameness is mostly the HCPs', a few items engage most of them."


# --- 07 next best action -------------------------------------------------------------------


def plan_model(model_name: str, why: str) -> str:
    """Which model's probabilities the plan uses, and why. ``model_name``: the model;
    ``why``: the reason :func:`hcp_lib.stages.plan.chosen_model` gives."""
    return f"This plan uses **{model_name}**: {why}."


def candidates_and_capacity(
    candidates: Candidates, candidates_per_channel: int, families: Iterable[ConstraintFamily], capacities: pd.DataFrame
) -> str:
    """Eligible triples, candidates after pruning, constraints and the week's capacity.
    ``candidates``: the pruned candidates (``n_eligible``; ``table`` with ``hcp_id``);
    ``candidates_per_channel``: the pruning setting; ``families``: the constraint families
    (each ``capacity`` one constraint per entry); ``capacities``: the capacity table
    (``capacity``)."""
    return (
        f"Of {candidates.n_eligible:,} eligible (HCP, item, channel) triples, pruning to "
        f"{candidates_per_channel} per HCP and channel leaves {len(candidates.table):,} candidates for "
        f"{candidates.table['hcp_id'].nunique():,} HCPs; the program has {sum(len(f.capacity) for f in families):,} "
        f"constraints before the non-binding ones are dropped. The week allows {int(capacities['capacity'].sum()):,} "
        f"touches in all."
    )


def solver_comparison(milp: Assignment, greedy: Assignment) -> str:
    """How the mixed-integer program ended and what it expects against greedy. ``milp`` and
    ``greedy``: the two assignments (``status``, ``seconds``, ``gap`` — None reads ``nan``
    —, ``objective``)."""
    gap = milp.gap if milp.gap is not None else float("nan")
    return (
        f"The program ends with status *{milp.status}* after {milp.seconds:.2f} s "
        f"(relative gap {gap:.2e}); by the model's own probabilities it "
        f"expects {milp.objective:.2f} engagements against {greedy.objective:.2f} for greedy "
        f"({milp.objective / greedy.objective - 1:+.2%}). Greedy is close because most constraints are per HCP; "
        f"it loses where one HCP's best action takes a scarce seat that another HCP needed more."
    )


def plan_actions(actions: pd.DataFrame, channels: Sequence[str] = CHANNELS) -> str:
    """The plan's actions, HCPs reached, actions per HCP and share of each channel.
    ``actions``: the plan (``hcp_id``, ``channel``); ``channels``: the channels listed, in
    order (a channel without actions reads 0%)."""
    share = actions["channel"].value_counts(normalize=True)
    return (
        f"The plan holds {len(actions):,} actions for {actions['hcp_id'].nunique():,} HCPs "
        f"({actions.groupby('hcp_id').size().mean():.2f} per HCP reached); "
        + ", ".join(f"{c.replace('_', ' ')} {share.get(c, 0):.0%}" for c in channels)
        + "."
    )


def action_reasons(reasons: pd.DataFrame, counts: pd.Series, n_actions: int) -> str:
    """How many actions carry a reason from the HCP's history besides the model's estimate,
    and the most frequent such reason. ``reasons``: the plan's reasons (``action_id``,
    ``reason_code``); ``counts``: actions per reason code, ``model_estimate`` among them;
    ``n_actions``: the plan's actions."""
    with_history = reasons.loc[reasons["reason_code"] != "model_estimate", "action_id"].nunique()
    others = counts.drop("model_estimate")
    return (
        f"{with_history:,} of {n_actions:,} actions ({with_history / max(n_actions, 1):.0%}) carry at least one "
        f"reason from the HCP's history besides the model's estimate; the most frequent is "
        f"*{others.idxmax().replace('_', ' ')}* ({others.max():,} actions)."
    )


def unplanned_hcps(n_unplanned: int, why_unplanned: pd.DataFrame) -> str:
    """How many HCPs get no action, by reason. ``n_unplanned``: those HCPs; ``why_unplanned``:
    one row per reason code (index) with ``hcps``."""
    if not n_unplanned:
        return "Every HCP gets at least one action this week."
    return (
        f"{n_unplanned:,} HCPs get no action this week: "
        + "; ".join(f"{row.hcps:,} for *{code.replace('_', ' ')}*" for code, row in why_unplanned.iterrows())
        + ". At business-as-usual capacity most HCPs cannot be touched every week, so capacity is the usual reason."
    )


def plan_value(value: pd.DataFrame, model_name: str, n_actions: int) -> str:
    """What the plan is worth against the oracle's plan and business as usual. ``value``:
    :func:`hcp_lib.stages.evaluate.plan_table` (rows ``model_name``, ``oracle plan``, ``business as
    usual``; ``expected engagements``, ``share of oracle plan``); ``n_actions``: the plan's
    touches."""
    bau = value.loc["business as usual"]
    oracle = value.loc["oracle plan"]
    mine = value.loc[model_name]
    return (
        f"The plan made from {model_name} holds {n_actions:,} touches and expects {mine['expected engagements']:.0f} "
        f"engagements this week: {mine['share of oracle plan']:.0%} of the {oracle['expected engagements']:.0f} an "
        f"oracle could plan under the same rules, and {mine['expected engagements'] / bau['expected engagements']:.1f} "
        f"times the {bau['expected engagements']:.0f} of business as usual (same capacities). Between the two, "
        f"{(1 - mine['share of oracle plan']) * oracle['expected engagements']:.0f} expected engagements are lost to "
        "what the model does not know about each HCP."
    )


def written_files(paths: Iterable[str | Path], root: str | Path) -> str:
    """The files written, relative to the run folder. ``paths``: the files; ``root``: the run
    folder, resolved like the paths."""
    return "Written: " + ", ".join(f"`{Path(p).relative_to(Path(root))}`" for p in paths) + "."


# --- 09 off-policy evaluation: the chapter's sentences are hcp_lib.stages.ope.data_sentence and ope.verdict


# --- the introduction's key results ------------------------------------------------------------


def _entry_text(entry: Mapping[str, Any] | None, spec: str) -> str:
    """``value [ci_low, ci_high]`` of a metrics.json entry, each formatted with ``spec``."""
    if not entry or entry.get("value") is None:
        return "n/a"
    text = format(entry["value"], spec)
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        text += f" [{format(entry['ci_low'], spec)}, {format(entry['ci_high'], spec)}]"
    return text


def key_results(report: Mapping[str, Any]) -> dict[str, str]:
    """The introduction's key results, as MyST substitutions (``{{ kr_model }}`` ...), from a
    run's ``metrics.json`` (``report``): the model the validation window chooses
    (``selection``) and its criterion beside the others', its week's plan in expected
    engagements and as a share of the oracle plan, against business as usual, its first
    recommendation's share of the oracle's policy value, and the evaluated population.
    Every interval is the report's paired 95% HCP bootstrap."""
    selection = report["selection"]
    chosen = selection["chosen"]
    losses = selection["validation_log_loss"]
    mine = report["metrics"].get(chosen, {})
    bau = report["policy"]["business_as_usual"]
    oracle = report["policy"]["oracle"]
    plan, bau_plan = mine.get("plan_value", {}).get("value"), bau["plan_value"]["value"]
    population = report["population"]
    return {
        "kr_model": chosen,
        "kr_model_loss": f"{losses[chosen]:.4f}",
        "kr_others_loss": ", ".join(f"{m} {v:.4f}" for m, v in losses.items() if m != chosen and v is not None)
        or "no other candidate",
        "kr_plan_value": _entry_text(mine.get("plan_value"), ".0f"),
        "kr_plan_share": _entry_text(mine.get("plan_fraction_of_oracle"), ".3f"),
        "kr_oracle_plan_value": f"{oracle['plan_value']['value']:.0f}",
        "kr_bau_plan_value": _entry_text(bau["plan_value"], ".0f"),
        "kr_plan_vs_bau": f"{plan / bau_plan:.1f}" if plan is not None and bau_plan else "n/a",
        "kr_policy_share": _entry_text(mine.get("policy_fraction_of_oracle"), ".3f"),
        "kr_bau_policy_share": _entry_text(bau["policy_fraction_of_oracle"], ".3f"),
        "kr_n_hcps": f"{population['n_hcps']:,}",
        "kr_n_exposures": f"{population['n_test_exposures']:,}",
    }
