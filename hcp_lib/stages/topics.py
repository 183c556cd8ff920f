"""Topic modeling of the PubMed content: spaCy preprocessing, gensim LDA, coherence, pyLDAvis.

Reads the cleaned articles (``content/pubmed.parquet``, :func:`hcp_lib.stages.pubmed.read_articles`)
and writes, under ``RunDir(run_dir).topics``:

=========================== ==================================================================
``doc_topics.parquet``      one row per article: ``pmid`` and ``topic_0`` .. ``topic_{k-1}`` (each
                            row sums to 1; an article with no known term gets the model's prior)
``topic_terms.parquet``     ``topic``, ``rank``, ``term``, ``weight`` (the top terms of each topic)
``topics.parquet``          ``topic``, ``label``, ``c_v``, ``c_npmi``, ``u_mass``, ``n_documents``
                            (dominant-topic count), ``top_specialty``, one ``area_<name>`` share per
                            therapeutic area
``topic_specialty.parquet`` ``topic`` x ``specialty`` relevance (rows sum to 1), see
                            :func:`topic_specialty_relevance`
``sweep.parquet``           the coherence sweep: ``n_topics``, ``c_v``, ``c_npmi``, ``u_mass``, ``score``
``model/``                  the fitted model, read back with :func:`load_topic_model` (layout below)
=========================== ==================================================================

The model folder holds only NumPy arrays and JSON, never a pickle, so reading the model back
from a run folder (even one from elsewhere) cannot execute code (:data:`MODEL_FORMAT_VERSION`
2):

========================= ==================================================================
``topic_model.json``      ``format_version``, ``n_topics``, ``seed``, ``labels``, spaCy pipeline
                          used, preprocessing and LDA settings, stop-words; written last
``lda.npz``               the LDA's arrays (``np.savez``, read with ``allow_pickle=False``):
                          ``alpha`` [k], ``eta`` and ``state_eta`` [V] or [k, V], ``sstats``
                          [k, V] (the variational topic-word statistics; lambda = eta + sstats)
                          and ``random_state_keys`` [624] (the MT19937 state of its generator)
``lda.json``              the LDA's scalars: ``num_topics``, ``num_terms``, ``dtype``,
                          ``iterations``, ``gamma_threshold``, ``minimum_probability``, ...,
                          ``numdocs`` and the rest of the generator state; the model is rebuilt
                          as ``LdaModel(id2word, num_topics, alpha, eta, ...)`` without training,
                          its ``state`` set from the arrays and ``sync_state()`` called
``dictionary.json``       the gensim ``Dictionary``: ``tokens`` (term of each id, ids 0..V-1),
                          ``dfs`` and ``cfs`` (per id), ``num_docs``, ``num_pos``, ``num_nnz``
``bigrams.json``          the first phrase pass (a ``FrozenPhrases``): ``phrasegrams`` (phrase
                          -> score), ``delimiter``, ``threshold``, ``min_count``, ``scoring``
                          (gensim's named scorer, ``"default"`` or ``"npmi"``),
                          ``connector_words``, ``corpus_word_count``
``trigrams.json``         the second phrase pass, the same fields
========================= ==================================================================

Files of the older format (``lda``, ``lda.state``, ``lda.*.npy``, ``bigrams``, ``trigrams``:
gensim's pickles, and ``dictionary.txt``) are never read; :meth:`TopicModel.save` deletes them.

New content is placed in the same topic space with :meth:`TopicModel.transform` (or
:func:`transform` with a run folder). The pyLDAvis page goes to
``RunDir(run_dir).figures / "ldavis"`` with local copies of its JavaScript and CSS
(:func:`write_ldavis`), so it works with no network.

Everything is deterministic for a given seed: the LDA is a single-process
``gensim.models.LdaModel`` with a fixed ``random_state``; the sweep may fit its models in
parallel processes, each of which is itself single-process and seeded, so the result does
not depend on how many processes ran it.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import config, domain, io
from ..io import atomic_path, read_json, read_parquet, write_json, write_parquet, write_text
from ..progress import each

# ----------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------

# Words that structure an abstract or report statistics and say nothing about its subject;
# left in, they dominate every topic and lower coherence. Lemmas (the lookup lemmatizer's).
BIOMEDICAL_STOP_WORDS = frozenset(
    """
abstract background introduction objective objectives aim aims purpose method methods methodology
result results conclusion conclusions discussion finding findings summary context importance
design setting settings participant participants patient patients subject subjects individual
individuals people person study studies studied research review article paper report reported
trial trials cohort analysis analyse analyze analyzed analysed data dataset evidence literature
author authors investigate investigated examine examined evaluate evaluated assess assessed
determine determined identify identified describe described explore explored compare compared
comparison include included including use used using base based perform performed conduct conducted
observe observed obtain obtained show shown showed demonstrate demonstrated suggest suggested
indicate indicated find found provide provided present presented propose proposed consider
associate associated association relate related relation relationship correlate correlated
correlation effect effects impact role factor factors level levels rate rates value values
increase increased decrease decreased reduce reduced improve improved high higher low lower
significant significantly statistically difference differences different similar compare
total overall mean median range average number numbers proportion percentage ratio odds hazard
confidence interval ci hr rr sd iqr vs versus p n year years month months week weeks day days
time times period follow follow-up baseline age aged old new novel current currently recent recently
respectively however therefore thus although furthermore moreover additionally also well may might
can could would should must need needs important importantly potential potentially possible
likely main major primary secondary key overall common commonly specific particular
group groups case cases control controls sample samples population populations
model models approach approaches strategy strategies outcome outcomes measure measures measured
score scores status type types form forms change changes term terms large small
clinical clinically health healthcare medical medicine care disease diseases condition conditions
treatment treatments treat treated therapy therapies management manage managed intervention
interventions risk risks remain unclear uncertain play crucial pave way hold promise lead leading
highly emerge emerging challenge challenges address focus understand understanding insight insights
limited lack gap future need support develop development help achieve require required
""".split()
)

# Units and unit-like abbreviations that survive tokenisation as words.
UNIT_WORDS = frozenset(
    """
mg g kg µg ug mcg ng pg ml l dl mmol µmol umol nmol mol mmhg cm mm m km h hr hrs min mins s sec
iu u kcal kj bmi kg/m2 mg/dl mmol/l ml/min bpm mgdl mg/kg x
""".split()
)

# A number is dropped unless it names a category together with the word before it
# ("type 2 diabetes", "stage 3 cancer", "phase 3 trial"); those pairs become phrases.
ORDINAL_HEADS = frozenset({"type", "stage", "phase", "grade", "class", "generation"})

_TERM = re.compile(r"^[a-z][a-z0-9\-]*[a-z0-9]$")
_NUMBER = re.compile(r"^\d+$")

BLANK_PIPELINE = "blank:en+lookup-lemmatizer"

# Installed trained pipelines are preferred in this order (scispaCy first: biomedical text).
PREFERRED_MODELS = (
    "en_core_sci_lg",
    "en_core_sci_md",
    "en_core_sci_sm",
    "en_core_sci_scibert",
    "en_core_web_lg",
    "en_core_web_md",
    "en_core_web_sm",
    "en_core_web_trf",
)


class TopicModelError(ValueError):
    """Bad input or settings for topic modeling; the message names the parameter or column."""


def load_nlp(spacy_model: str = "auto"):
    """Return ``(nlp, name)``: the spaCy pipeline used for lemmatisation and its description.

    ``"auto"`` uses the first installed pipeline of :data:`PREFERRED_MODELS` (scispaCy, then
    ``en_core_web_*``), else ``spacy.blank("en")`` with the lookup lemmatizer of
    ``spacy-lookups-data`` (``"blank"`` forces that). Any other value names an installed
    pipeline package. ``name`` is ``"<package>==<version>"`` or :data:`BLANK_PIPELINE`.
    """
    import spacy

    installed = set(spacy.util.get_installed_models())
    if spacy_model == "auto":
        spacy_model = next((m for m in PREFERRED_MODELS if m in installed), "blank")
    if spacy_model in ("blank", BLANK_PIPELINE):
        nlp = spacy.blank("en")
        nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
        nlp.initialize()
        return nlp, BLANK_PIPELINE
    package = spacy_model.split("==")[0]
    if package not in installed:
        raise TopicModelError(
            f"spacy_model {spacy_model!r} is not an installed spaCy pipeline; use 'auto', 'blank' "
            f"or one of {sorted(installed) or 'the installed pipelines (none found)'}"
        )
    nlp = spacy.load(package, exclude=["parser", "ner", "textcat"])
    return nlp, f"{package}=={nlp.meta.get('version', '?')}"


def article_texts(articles: pd.DataFrame) -> pd.Series:
    """Title and full abstract of each article, joined as one text (title alone when no abstract)."""
    missing = [c for c in ("pmid", "title", "abstract") if c not in articles.columns]
    if missing:
        raise TopicModelError(f"articles: missing column {missing[0]!r}; expected 'pmid', 'title' and 'abstract'")
    title = articles["title"].fillna("").astype(str).str.strip()
    abstract = articles["abstract"].fillna("").astype(str).str.strip()
    joined = title.str.rstrip(".") + ". " + abstract
    return joined.where(abstract != "", title).str.strip()


def lemmatise(
    texts: Sequence[str], nlp, pipeline_name: str, stop_words: frozenset[str], progress: Callable | None = None
) -> list[list[str]]:
    """Lower-case lemmas of each text, without stop-words, punctuation, units or plain numbers.

    A term is kept when it starts with a letter and is at least two characters of letters,
    digits and hyphens (so ``covid-19``, ``hba1c``, ``sglt2i`` stay); a number is kept only
    right after a word of :data:`ORDINAL_HEADS` (``type 2``), and that word is kept before a
    number even when it is a stop-word, for the phrase detector (:class:`TextPipeline` drops
    whichever of them did not end up in a phrase).
    ``None``, NaN and empty texts give an empty list. ``progress`` (e.g. ``tqdm``) counts the texts.
    """
    # The lookup table is keyed by lower-case forms; a trained pipeline needs the original case.
    lower = pipeline_name == BLANK_PIPELINE
    cleaned = [_as_text(t, i) for i, t in enumerate(texts)]
    docs = nlp.pipe((t.lower() if lower else t for t in cleaned), batch_size=128)
    docs = each(progress, docs, "articles lemmatised", total=len(cleaned))
    result = []
    for doc in docs:
        terms: list[str] = []
        for i, token in enumerate(doc):
            if token.is_space or token.is_punct or token.like_url or token.like_email:
                continue
            lemma = (token.lemma_ or token.text).lower()
            if lemma in ORDINAL_HEADS and i + 1 < len(doc) and _NUMBER.match(doc[i + 1].text):
                terms.append(lemma)  # kept (even if a stop-word) for the phrase detector
                continue
            if _NUMBER.match(lemma):
                if terms and terms[-1] in ORDINAL_HEADS:
                    terms.append(lemma)
                continue
            if not _TERM.match(lemma) or lemma in stop_words or token.lower_ in stop_words:
                continue
            terms.append(lemma)
        result.append(terms)
    return result


def _as_text(value: object, index: int) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    if not isinstance(value, str):
        raise TopicModelError(f"texts[{index}]: expected a string, got {type(value).__name__} {value!r}")
    return value


def default_stop_words() -> frozenset[str]:
    """spaCy's English stop-words, :data:`BIOMEDICAL_STOP_WORDS` and :data:`UNIT_WORDS`."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS) | BIOMEDICAL_STOP_WORDS | UNIT_WORDS


#: notebook parameter -> :class:`PreprocessSettings` field (the one place they are mapped; each
#: mapped field takes the parameter's default from :func:`hcp_lib.config.default`)
PREPROCESS_PARAMETERS = {
    "spacy_model": "spacy_model",
    "topic_min_doc_freq": "min_doc_freq",
    "topic_max_doc_share": "max_doc_share",
}
_PREPROCESS_DEFAULT = config.field_defaults(PREPROCESS_PARAMETERS)


@dataclass(frozen=True)
class PreprocessSettings:
    """How texts become bags of words; every value is recorded with the saved model.

    ``phrase_min_count`` / ``phrase_threshold``: gensim ``Phrases`` (npmi scoring, so the
    threshold is in [-1, 1]); two passes, so three-word phrases (``type_2_diabetes``) form.
    ``min_doc_freq`` / ``max_doc_share``: ``Dictionary.filter_extremes(no_below, no_above)``:
    a term must occur in at least ``min_doc_freq`` documents and in at most this share of them.
    """

    spacy_model: str = _PREPROCESS_DEFAULT["spacy_model"]
    phrase_min_count: int = 5
    phrase_threshold: float = 0.5
    min_doc_freq: int = _PREPROCESS_DEFAULT["min_doc_freq"]
    max_doc_share: float = _PREPROCESS_DEFAULT["max_doc_share"]
    keep_n: int = 10_000

    #: notebook parameter -> setting (:data:`PREPROCESS_PARAMETERS`)
    PARAMETERS = PREPROCESS_PARAMETERS

    @classmethod
    def from_parameters(cls, params: dict):
        """Settings from the notebook parameters (:func:`hcp_lib.config.settings_from_parameters`)."""
        return config.settings_from_parameters(cls, params)


# gensim's Phrases splits its phrases on the delimiter when freezing, so the second pass, whose
# input already holds "type_2", needs another one; it becomes "_" again afterwards.
_TRIGRAM_DELIMITER = "~"


def _frozen(phrases):
    frozen = phrases.freeze()
    # gensim's freeze() drops corpus_word_count; kept, it is recorded with the saved phrases.
    frozen.corpus_word_count = phrases.corpus_word_count
    return frozen


@dataclass
class TextPipeline:
    """Fitted preprocessing: spaCy lemmas -> phrases -> dictionary -> bag of words."""

    settings: PreprocessSettings
    pipeline_name: str = ""
    stop_words: frozenset[str] = field(default_factory=default_stop_words)
    nlp: object = None
    bigrams_: object = None
    trigrams_: object = None
    dictionary_: object = None

    def fit_tokens(self, texts: Sequence[str], progress: Callable | None = None) -> list[list[str]]:
        """Fit phrases and dictionary on ``texts``; return their final token lists. ``progress``
        (e.g. ``tqdm``) counts the texts lemmatised."""
        from gensim.corpora import Dictionary
        from gensim.models.phrases import ENGLISH_CONNECTOR_WORDS, Phrases

        if self.nlp is None:
            self.nlp, self.pipeline_name = load_nlp(self.settings.spacy_model)
        lemmas = lemmatise(texts, self.nlp, self.pipeline_name, self.stop_words, progress)
        s = self.settings
        options = dict(
            min_count=s.phrase_min_count,
            threshold=s.phrase_threshold,
            scoring="npmi",
            connector_words=ENGLISH_CONNECTOR_WORDS,
        )
        self.bigrams_ = _frozen(Phrases(lemmas, delimiter="_", **options))
        self.trigrams_ = _frozen(Phrases(self.bigrams_[lemmas], delimiter=_TRIGRAM_DELIMITER, **options))
        tokens = self._phrase(lemmas)
        dictionary = Dictionary(tokens)
        dictionary.filter_extremes(no_below=s.min_doc_freq, no_above=s.max_doc_share, keep_n=s.keep_n)
        dictionary.compactify()
        if len(dictionary) == 0:
            raise TopicModelError(
                f"no term is left after preprocessing {len(texts)} texts (each term must occur in at least "
                f"min_doc_freq={s.min_doc_freq} documents and at most max_doc_share={s.max_doc_share:g} of them); "
                "the texts are empty, all stop-words, or too few"
            )
        self.dictionary_ = dictionary
        return [[t for t in doc if t in dictionary.token2id] for doc in tokens]

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Final token lists of new ``texts`` (terms outside the dictionary are dropped)."""
        lemmas = lemmatise(texts, self.nlp, self.pipeline_name, self.stop_words)
        vocab = self.dictionary_.token2id
        return [[t for t in doc if t in vocab] for doc in self._phrase(lemmas)]

    def _phrase(self, lemmas: list[list[str]]) -> list[list[str]]:
        # A number and its category word only served to build "type_2"-style phrases; alone they are noise.
        joined = ([t.replace(_TRIGRAM_DELIMITER, "_") for t in doc] for doc in self.trigrams_[self.bigrams_[lemmas]])
        return [[t for t in doc if not _NUMBER.match(t) and t not in self.stop_words] for doc in joined]


# ----------------------------------------------------------------------------------------
# LDA, coherence and the sweep
# ----------------------------------------------------------------------------------------


#: notebook parameter -> :class:`LdaSettings` field (as :data:`PREPROCESS_PARAMETERS`)
LDA_PARAMETERS = {"lda_passes": "passes", "lda_iterations": "iterations"}
_LDA_DEFAULT = config.field_defaults(LDA_PARAMETERS)


@dataclass(frozen=True)
class LdaSettings:
    """gensim ``LdaModel`` settings. ``alpha="auto"`` learns an asymmetric document-topic
    prior from the data; ``eta="symmetric"`` is a fixed 1/k topic-word prior. One chunk holds
    the whole corpus, so each pass is one full (batch) variational update."""

    passes: int = _LDA_DEFAULT["passes"]
    iterations: int = _LDA_DEFAULT["iterations"]
    alpha: str = "auto"
    eta: str = "symmetric"

    #: notebook parameter -> setting (:data:`LDA_PARAMETERS`)
    PARAMETERS = LDA_PARAMETERS

    @classmethod
    def from_parameters(cls, params: dict):
        """Settings from the notebook parameters (:func:`hcp_lib.config.settings_from_parameters`)."""
        return config.settings_from_parameters(cls, params)


COHERENCE_TOPN = 10  # top terms per topic scored by every coherence measure
COHERENCE_WINDOWS = {"c_v": 110, "c_npmi": 10}  # gensim's defaults (Röder et al. 2015), stated


def check_n_topics(n_topics: int, dictionary) -> None:
    """Raise :class:`TopicModelError` unless 2 <= ``n_topics`` <= vocabulary size."""
    if isinstance(n_topics, bool) or not isinstance(n_topics, (int, np.integer)):
        raise TopicModelError(f"n_topics must be an integer, got {n_topics!r}")
    if n_topics < 2 or n_topics > len(dictionary):
        raise TopicModelError(
            f"n_topics must be between 2 and the vocabulary size ({len(dictionary)} terms after "
            f"preprocessing), got {n_topics}"
        )


def fit_lda(bow: list, dictionary, n_topics: int, seed: int, settings: LdaSettings = LdaSettings()):
    """Fit a single-process, seeded gensim ``LdaModel`` with ``n_topics`` topics."""
    from gensim.models import LdaModel

    check_n_topics(n_topics, dictionary)
    if not any(bow):
        raise TopicModelError("every document is empty after preprocessing; there is nothing to model")
    return LdaModel(
        corpus=bow,
        id2word=dictionary,
        num_topics=int(n_topics),
        random_state=int(seed),
        passes=settings.passes,
        iterations=settings.iterations,
        chunksize=max(len(bow), 1),
        alpha=settings.alpha,
        eta=settings.eta,
        eval_every=None,
        update_every=1,
        dtype=np.float64,
    )


def top_terms(lda, topn: int = COHERENCE_TOPN) -> list[list[str]]:
    """The ``topn`` most probable terms of each topic."""
    return [[term for term, _ in lda.show_topic(t, topn=topn)] for t in range(lda.num_topics)]


def coherence_scores(
    topic_sets: list[list[list[str]]], texts: list[list[str]], dictionary, topn: int = COHERENCE_TOPN
) -> list[dict[str, np.ndarray]]:
    """Per-topic c_v, c_npmi and u_mass of each model's topics, measured on ``texts``.

    Uses gensim's ``CoherenceModel`` (``c_v``: sliding window 110, ``c_npmi``: window 10,
    ``u_mass``: whole documents; ``topn`` terms per topic). The word co-occurrence counts are
    gathered once for the union of all models' terms (``CoherenceModel.for_topics``), which
    is what makes a sweep affordable. Returns, per model, ``{measure: array[n_topics]}``.
    """
    from gensim.models.coherencemodel import CoherenceModel

    vocab = dictionary.token2id
    for topics in topic_sets:
        for terms in topics:
            unknown = [t for t in terms if t not in vocab]
            if unknown:
                raise TopicModelError(f"topic term {unknown[0]!r} is not in the dictionary")
    flat = [topic for topics in topic_sets for topic in topics]
    bounds = np.cumsum([0] + [len(t) for t in topic_sets])
    results = [dict() for _ in topic_sets]
    for measure in ("c_v", "c_npmi", "u_mass"):
        options = dict(texts=texts, dictionary=dictionary, coherence=measure, topn=topn, processes=1)
        if measure in COHERENCE_WINDOWS:
            options["window_size"] = COHERENCE_WINDOWS[measure]
        model = CoherenceModel.for_topics(topic_sets, **options)
        model.topics = flat
        scores = np.asarray(model.get_coherence_per_topic(), dtype=float)
        for i, result in enumerate(results):
            result[measure] = scores[bounds[i] : bounds[i + 1]]
    return results


def _fit_for_sweep(args) -> tuple[int, object]:
    bow, dictionary, k, seed, settings = args
    return k, fit_lda(bow, dictionary, k, seed, settings)


@dataclass
class TopicSweep:
    """A coherence sweep (:func:`fit_sweep`): its ``table`` (what :func:`choose_n_topics`
    reads) and the LDA it fitted for each number of topics (``models``), with what they were
    fitted on: ``bow`` (over ``dictionary``), ``seed`` and ``settings``.

    :func:`fit_topic_model` takes the sweep's model of the chosen number of topics instead of
    fitting it again (:meth:`model_for`): a fit is deterministic for its corpus, number of
    topics, seed and settings, so the refit would be the same model (it was about a tenth of
    notebook 03's time)."""

    table: pd.DataFrame
    models: dict[int, object]
    bow: list
    dictionary: object
    seed: int
    settings: LdaSettings

    def model_for(self, bow: list, dictionary, n_topics: int, seed: int, settings: LdaSettings):
        """A copy of the sweep's LDA for ``n_topics`` (over ``dictionary``) when it was fitted
        on ``bow`` and the same terms with ``seed`` and ``settings``, so that :func:`fit_lda`
        would return the same model; None otherwise.

        A copy: the caller's model changes its generator (:meth:`TopicModel.topic_matrix`
        reseeds it), which the saved model records, and the sweep's models stay as fitted."""
        swept = self.models.get(int(n_topics))
        if (
            swept is None
            or seed != self.seed
            or settings != self.settings
            or dictionary.token2id != self.dictionary.token2id
            or bow != self.bow
        ):
            return None
        # the copy reads the caller's dictionary (the same terms), as a model fitted here would
        return copy.deepcopy(swept, memo={id(swept.id2word): dictionary})


def fit_sweep(
    bow: list,
    texts: list[list[str]],
    dictionary,
    n_topics_range: Iterable[int],
    seed: int,
    settings: LdaSettings = LdaSettings(),
    processes: int = 1,
    progress: Callable | None = None,
) -> TopicSweep:
    """Fit one LDA per number of topics and score it: the :class:`TopicSweep` of its table and models.

    The table has the columns ``n_topics``, mean ``c_v``, ``c_npmi``, ``u_mass`` over the
    topics, and ``score`` (see :func:`choose_n_topics`). Models are fitted in up to
    ``processes`` worker processes (the platform's default start method: 'spawn' was measured
    2 s slower at the small scale, each worker importing gensim and the project again); each
    fit is single-process and seeded, and its model comes back whole, so the sweep does not
    depend on ``processes``. ``progress`` (e.g. ``tqdm``) counts the fitted models.
    """
    ks = sorted(set(int(k) for k in n_topics_range))
    if not ks:
        raise TopicModelError("the topic sweep is empty: topic_sweep_min must not exceed topic_sweep_max")
    for k in ks:
        check_n_topics(k, dictionary)
    jobs = [(bow, dictionary, k, seed, settings) for k in ks]
    if processes > 1 and len(ks) > 1:
        with ProcessPoolExecutor(max_workers=min(processes, len(ks))) as pool:
            models = dict(each(progress, pool.map(_fit_for_sweep, jobs), "LDA fits", total=len(jobs)))
    else:
        models = dict(each(progress, map(_fit_for_sweep, jobs), "LDA fits", total=len(jobs)))
    scores = coherence_scores([top_terms(models[k]) for k in ks], texts, dictionary)
    table = pd.DataFrame(
        {
            "n_topics": ks,
            **{m: [float(np.mean(s[m])) for s in scores] for m in ("c_v", "c_npmi", "u_mass")},
        }
    )
    table["score"] = selection_score(table)
    return TopicSweep(table, models, bow, dictionary, int(seed), settings)


def selection_score(table: pd.DataFrame) -> pd.Series:
    """Mean of c_v and c_npmi, each min-max scaled to [0, 1] over the sweep (u_mass is shown only).

    c_v and NPMI agree with human judgements best among gensim's measures (Röder et al. 2015);
    scaling puts them on one footing before averaging. A constant column scores 1.
    """
    parts = []
    for measure in ("c_v", "c_npmi"):
        column = table[measure].astype(float)
        spread = column.max() - column.min()
        parts.append((column - column.min()) / spread if spread > 0 else pd.Series(1.0, index=table.index))
    return (parts[0] + parts[1]) / 2


def choose_n_topics(sweep: pd.DataFrame) -> int:
    """The number of topics with the highest :func:`selection_score` (the smaller on a tie)."""
    best = sweep.sort_values(["score", "n_topics"], ascending=[False, True]).iloc[0]
    return int(best["n_topics"])


# ----------------------------------------------------------------------------------------
# The fitted model
# ----------------------------------------------------------------------------------------


@dataclass
class TopicModel:
    """A fitted text pipeline and LDA model; :meth:`transform` places any text in topic space."""

    pipeline: TextPipeline
    lda: object
    seed: int
    lda_settings: LdaSettings
    labels: list[str] = field(default_factory=list)

    @property
    def n_topics(self) -> int:
        return int(self.lda.num_topics)

    @property
    def topic_columns(self) -> list[str]:
        return [f"topic_{t}" for t in range(self.n_topics)]

    def bow(self, tokens: list[list[str]]) -> list:
        return [self.pipeline.dictionary_.doc2bow(doc) for doc in tokens]

    def topic_matrix(self, bow: list) -> np.ndarray:
        """Document-topic probabilities, ``array[n_docs, n_topics]``, rows summing to 1.

        Inference is seeded (gensim's E-step starts from a random gamma), so the same
        document always gets the same vector. An empty document gets the normalised prior
        ``alpha``: with no evidence, the model's expectation.
        """
        matrix = np.zeros((len(bow), self.n_topics))
        prior = np.asarray(self.lda.alpha, dtype=float)
        for i, doc in enumerate(bow):
            if not doc:
                matrix[i] = prior / prior.sum()
                continue
            self.lda.random_state = np.random.RandomState(self.seed)
            gamma, _ = self.lda.inference([doc])
            matrix[i] = gamma[0] / gamma[0].sum()
        return matrix

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Topic vectors of new texts, ``array[len(texts), n_topics]`` (rows sum to 1).

        Texts go through the fitted pipeline (same lemmatizer, stop-words, phrases and
        dictionary); unknown words are ignored. Empty, missing (None/NaN), non-English or
        garbage texts with no known term get the model's prior topic mix. A non-string
        element raises :class:`TopicModelError` naming its index.
        """
        if isinstance(texts, str):
            raise TopicModelError("transform expects a list of texts, got a single string; wrap it in a list")
        texts = list(texts)
        return self.topic_matrix(self.bow(self.pipeline.tokens(texts)))

    def save(self, folder: str | Path) -> Path:
        """Write the model to ``folder`` as NumPy arrays and JSON (layout: module docstring).

        Every part is checked before the first file is written (a phrase model with a custom
        scoring function, which could only be stored as code, raises :class:`TopicModelError`);
        each file is written atomically, ``topic_model.json`` last. Files of the older pickle
        format left in ``folder`` are deleted.
        """
        folder = Path(folder)
        pipeline = self.pipeline
        bigrams = _phrases_record(pipeline.bigrams_, "bigrams_")
        trigrams = _phrases_record(pipeline.trigrams_, "trigrams_")
        dictionary = _dictionary_record(pipeline.dictionary_)
        arrays, lda = _lda_record(self.lda, len(dictionary["tokens"]))
        meta = {
            "format_version": MODEL_FORMAT_VERSION,
            "n_topics": self.n_topics,
            "seed": self.seed,
            "labels": self.labels,
            "spacy_pipeline": pipeline.pipeline_name,
            "preprocess": asdict(pipeline.settings),
            "lda": asdict(self.lda_settings),
            "stop_words": sorted(pipeline.stop_words),
            "number_heads": sorted(ORDINAL_HEADS),
        }
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "lda.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)  # a file object: savez would append ".npz" to a name
        write_json(lda, folder / "lda.json")
        write_json(dictionary, folder / "dictionary.json")
        write_json(bigrams, folder / "bigrams.json")
        write_json(trigrams, folder / "trigrams.json")
        write_json(meta, folder / "topic_model.json")
        for path in _legacy_model_files(folder):
            path.unlink()
        return folder


# ----------------------------------------------------------------------------------------
# Saving and loading the model: arrays and JSON only, never a pickle
# ----------------------------------------------------------------------------------------

MODEL_FORMAT_VERSION = 2  # 1 (unnumbered): gensim's own pickles; 2: arrays and JSON
_LDA_ARRAYS = ("alpha", "eta", "state_eta", "sstats", "random_state_keys")
_LDA_DTYPES = ("float16", "float32", "float64")
_SCORER_NAMES = ("default", "npmi")


def _legacy_model_files(folder: Path) -> list[Path]:
    """Files of the format-1 model (gensim's pickles and their companions) in ``folder``."""
    names = {"lda", "lda.state", "lda.id2word", "bigrams", "trigrams", "dictionary.txt"}
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.name in names or (p.name.startswith("lda.") and p.name.endswith(".npy")))
    )


def _scorer_name(scoring) -> str | None:
    from gensim.models.phrases import npmi_scorer, original_scorer

    if isinstance(scoring, str):
        return scoring if scoring in _SCORER_NAMES else None
    return {original_scorer: "default", npmi_scorer: "npmi"}.get(scoring)


def _phrases_record(frozen, name: str) -> dict:
    """What a ``FrozenPhrases`` needs to transform token lists, as JSON-ready values."""
    from gensim.models.phrases import FrozenPhrases

    if not isinstance(frozen, FrozenPhrases):
        raise TopicModelError(f"pipeline.{name}: expected a fitted gensim FrozenPhrases, got {type(frozen).__name__}")
    scoring = _scorer_name(frozen.scoring)
    if scoring is None:
        raise TopicModelError(
            f"pipeline.{name}: scoring {getattr(frozen.scoring, '__name__', frozen.scoring)!r} cannot be saved: "
            f"only gensim's named scorers {list(_SCORER_NAMES)} can (a custom scoring function could only be "
            "stored as code, which a saved model must not contain)"
        )
    return {
        "delimiter": str(frozen.delimiter),
        "threshold": float(frozen.threshold),
        "min_count": frozen.min_count,
        "scoring": scoring,
        "connector_words": sorted(frozen.connector_words),
        "corpus_word_count": int(getattr(frozen, "corpus_word_count", 0)),
        "phrasegrams": {str(phrase): float(score) for phrase, score in sorted(frozen.phrasegrams.items())},
    }


def _dictionary_record(dictionary) -> dict:
    """A gensim ``Dictionary`` as JSON-ready lists indexed by term id."""
    ids = sorted(dictionary.token2id.values())
    if ids != list(range(len(ids))):
        raise TopicModelError("pipeline.dictionary_: term ids must be 0 .. n-1 (call compactify() before saving)")
    tokens = [""] * len(ids)
    for token, i in dictionary.token2id.items():
        tokens[i] = token
    return {
        "tokens": tokens,
        "dfs": [int(dictionary.dfs.get(i, 0)) for i in range(len(ids))],
        "cfs": [int(dictionary.cfs.get(i, 0)) for i in range(len(ids))],
        "num_docs": int(dictionary.num_docs),
        "num_pos": int(dictionary.num_pos),
        "num_nnz": int(dictionary.num_nnz),
    }


def _lda_record(lda, n_terms: int) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays (for ``lda.npz``) and scalars (for ``lda.json``) that rebuild ``lda`` exactly."""
    dtype = np.dtype(lda.dtype).name
    if dtype not in _LDA_DTYPES or lda.num_terms != n_terms or lda.state is None:
        raise TopicModelError(
            f"lda: expected a trained single-process LdaModel over the pipeline's {n_terms} terms "
            f"with a float dtype, got dtype {dtype} and {lda.num_terms} terms"
        )
    generator, keys, pos, has_gauss, cached_gaussian = lda.random_state.get_state(legacy=True)
    arrays = {
        "alpha": np.asarray(lda.alpha),
        "eta": np.asarray(lda.eta),
        "state_eta": np.asarray(lda.state.eta),
        "sstats": np.asarray(lda.state.sstats),
        "random_state_keys": np.asarray(keys, dtype=np.uint32),
    }
    scalars = {
        "num_topics": int(lda.num_topics),
        "num_terms": int(lda.num_terms),
        "dtype": dtype,
        "iterations": int(lda.iterations),
        "gamma_threshold": float(lda.gamma_threshold),
        "minimum_probability": float(lda.minimum_probability),
        "minimum_phi_value": float(lda.minimum_phi_value),
        "per_word_topics": bool(lda.per_word_topics),
        "decay": float(lda.decay),
        "offset": float(lda.offset),
        "chunksize": lda.chunksize,
        "passes": int(lda.passes),
        "update_every": lda.update_every,
        "eval_every": lda.eval_every,
        "num_updates": int(lda.num_updates),
        "numdocs": int(lda.state.numdocs),
        "optimize_alpha": bool(lda.optimize_alpha),
        "optimize_eta": bool(lda.optimize_eta),
        "random_state": {
            "bit_generator": generator,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }
    return arrays, scalars


def _read_model_json(path: Path):
    try:
        return read_json(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: file not found; the saved topic model is incomplete (re-run notebook 03 to save it again)"
        ) from None
    except UnicodeDecodeError as err:  # a binary file (such as a pickle) under a JSON name
        raise TopicModelError(f"{path}: not valid JSON (not UTF-8 text: {err})") from None
    except ValueError as err:  # io.DataValidationError: not valid JSON; it names the file
        raise TopicModelError(str(err)) from None


#: the kinds :func:`_field` checks, as JSON kinds (:data:`hcp_lib.io.JSON_KINDS`)
_FIELD_KINDS = {"int": int, "number": float, "bool": bool, "str": str, "list": list, "dict": dict}


def _field(record, key: str, path: Path, kind: str, where: str = ""):
    """``record[key]``, checked with :func:`hcp_lib.io.require_json_kind` to be of ``kind``
    ("int", "number" (finite), "bool", "str", "list", "dict" or "int_or_null"); a missing key
    or a wrong type raises :class:`TopicModelError` naming ``path`` and the field."""
    io.require_json_kind(record, dict, f"the record{where}", path, error=TopicModelError)
    if key not in record:
        raise TopicModelError(f"{path}: missing field {key!r}{where}")
    value = record[key]
    field_path = f"field {key!r}{where}"
    if kind == "int_or_null" and value is None:
        return value
    expected = "an integer or null" if kind == "int_or_null" else None
    io.require_json_kind(
        value, _FIELD_KINDS[kind.removesuffix("_or_null")], field_path, path, expected, TopicModelError
    )
    if kind == "number" and not np.isfinite(value):
        raise TopicModelError(f"{path}: {field_path} is {value!r}; expected a finite number")
    return value


def _read_arrays(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` archive, read with pickling disabled."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: file not found; the saved topic model is incomplete (re-run notebook 03 to save it again)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:  # not an archive: zipfile.BadZipFile, ValueError (pickled data refused), OSError, ...
        raise TopicModelError(
            f"{path}: not a NumPy .npz archive of plain arrays ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise TopicModelError(f"{path}: expected a NumPy .npz archive, found a single .npy array")
    with archive:
        missing = [n for n in names if n not in archive.files]
        if missing:
            raise TopicModelError(f"{path}: missing array {missing[0]!r} (holds {sorted(archive.files)})")
        arrays = {}
        for name in names:
            try:
                arrays[name] = archive[name]
            except Exception as err:  # object arrays (pickles) are refused with allow_pickle=False
                raise TopicModelError(
                    f"{path}: array {name!r} cannot be read as plain numbers ({type(err).__name__}: {err})"
                ) from None
    return arrays


def _load_dictionary(path: Path):
    from gensim.corpora import Dictionary

    record = _read_model_json(path)
    tokens = _field(record, "tokens", path, "list")
    if not tokens or not all(isinstance(t, str) and t for t in tokens) or len(set(tokens)) != len(tokens):
        raise TopicModelError(f"{path}: field 'tokens' must be a non-empty list of distinct non-empty strings")
    counts = {}
    for key in ("dfs", "cfs"):
        values = _field(record, key, path, "list")
        if len(values) != len(tokens) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
        ):
            raise TopicModelError(
                f"{path}: field {key!r} must list one count (an integer >= 0) per token "
                f"({len(tokens)}), got {len(values)} values"
            )
        counts[key] = values
    dictionary = Dictionary()
    dictionary.token2id = {token: i for i, token in enumerate(tokens)}
    dictionary.dfs = dict(enumerate(counts["dfs"]))
    dictionary.cfs = dict(enumerate(counts["cfs"]))
    for key in ("num_docs", "num_pos", "num_nnz"):
        setattr(dictionary, key, _field(record, key, path, "int"))
    return dictionary


def _load_phrases(path: Path):
    from gensim.models.phrases import FrozenPhrases, npmi_scorer, original_scorer

    record = _read_model_json(path)
    delimiter = _field(record, "delimiter", path, "str")
    if not delimiter:
        raise TopicModelError(f"{path}: field 'delimiter' must not be empty")
    scoring = _field(record, "scoring", path, "str")
    if scoring not in _SCORER_NAMES:
        raise TopicModelError(f"{path}: field 'scoring' must be one of {list(_SCORER_NAMES)}, got {scoring!r}")
    connector_words = _field(record, "connector_words", path, "list")
    if not all(isinstance(w, str) for w in connector_words):
        raise TopicModelError(f"{path}: field 'connector_words' must be a list of strings")
    phrasegrams = _field(record, "phrasegrams", path, "dict")
    for phrase in phrasegrams:
        _field(phrasegrams, phrase, path, "number", " of 'phrasegrams'")
    # The attributes FrozenPhrases.__init__ sets; __getitem__ / analyze_sentence / score_candidate
    # read delimiter, threshold, connector_words and phrasegrams.
    frozen = FrozenPhrases.__new__(FrozenPhrases)
    frozen.threshold = float(_field(record, "threshold", path, "number"))
    frozen.min_count = _field(record, "min_count", path, "number")
    frozen.delimiter = delimiter
    frozen.scoring = {"default": original_scorer, "npmi": npmi_scorer}[scoring]
    frozen.connector_words = frozenset(connector_words)
    frozen.corpus_word_count = _field(record, "corpus_word_count", path, "int")
    frozen.phrasegrams = {phrase: float(score) for phrase, score in phrasegrams.items()}
    return frozen


def _load_lda(folder: Path, dictionary):
    """Rebuild the ``LdaModel`` saved in ``folder`` (``lda.json`` + ``lda.npz``) over ``dictionary``."""
    from gensim.models import LdaModel

    meta_path, arrays_path = folder / "lda.json", folder / "lda.npz"
    meta = _read_model_json(meta_path)
    arrays = _read_arrays(arrays_path, _LDA_ARRAYS)
    k = _field(meta, "num_topics", meta_path, "int")
    n_terms = _field(meta, "num_terms", meta_path, "int")
    dtype = _field(meta, "dtype", meta_path, "str")
    if dtype not in _LDA_DTYPES:
        raise TopicModelError(f"{meta_path}: field 'dtype' must be one of {list(_LDA_DTYPES)}, got {dtype!r}")
    if k < 1 or n_terms != len(dictionary):
        raise TopicModelError(
            f"{meta_path}: num_topics {k} and num_terms {n_terms} do not fit the dictionary of {len(dictionary)} terms"
        )
    eta_shape = arrays["eta"].shape
    shapes = {
        "alpha": [(k,)],
        "eta": [(n_terms,), (k, n_terms)],
        "state_eta": [eta_shape],
        "sstats": [(k, n_terms)],
        "random_state_keys": [(624,)],
    }
    for name, allowed in shapes.items():
        array = arrays[name]
        kind = "u" if name == "random_state_keys" else "f"
        if array.dtype.kind != kind or array.shape not in allowed or (kind == "f" and not np.isfinite(array).all()):
            raise TopicModelError(
                f"{arrays_path}: array {name!r} must be {'unsigned integers' if kind == 'u' else 'finite floats'} "
                f"of shape {' or '.join(map(str, allowed))}, got {array.dtype} {array.shape} "
                f"(num_topics {k} and num_terms {n_terms} are read from {meta_path})"
            )
    if (arrays["alpha"] <= 0).any():
        raise TopicModelError(f"{arrays_path}: array 'alpha' must be positive")
    generator = _field(meta, "random_state", meta_path, "dict")
    if _field(generator, "bit_generator", meta_path, "str", " of 'random_state'") != "MT19937":
        raise TopicModelError(f"{meta_path}: random_state.bit_generator must be 'MT19937'")
    options = {
        key: _field(meta, key, meta_path, kind)
        for key, kind in (
            ("iterations", "int"),
            ("gamma_threshold", "number"),
            ("minimum_probability", "number"),
            ("minimum_phi_value", "number"),
            ("per_word_topics", "bool"),
            ("decay", "number"),
            ("offset", "number"),
            ("chunksize", "int"),
            ("passes", "int"),
            ("update_every", "int"),
            ("eval_every", "int_or_null"),
        )
    }
    float_type = np.dtype(dtype).type
    # No corpus: nothing is trained; the state drawn at random here is replaced below.
    lda = LdaModel(
        id2word=dictionary,
        num_topics=k,
        alpha=arrays["alpha"].astype(float_type),
        eta=arrays["eta"].astype(float_type),
        random_state=0,
        dtype=float_type,
        **options,
    )
    lda.optimize_alpha = _field(meta, "optimize_alpha", meta_path, "bool")
    lda.optimize_eta = _field(meta, "optimize_eta", meta_path, "bool")
    lda.num_updates = _field(meta, "num_updates", meta_path, "int")
    lda.state.eta = arrays["state_eta"].astype(float_type)
    lda.state.sstats = arrays["sstats"].astype(float_type)
    lda.state.numdocs = _field(meta, "numdocs", meta_path, "int")
    try:
        lda.random_state.set_state(
            (
                "MT19937",
                arrays["random_state_keys"].astype(np.uint32),
                _field(generator, "pos", meta_path, "int", " of 'random_state'"),
                _field(generator, "has_gauss", meta_path, "int", " of 'random_state'"),
                _field(generator, "cached_gaussian", meta_path, "number", " of 'random_state'"),
            )
        )
    except ValueError as err:
        raise TopicModelError(f"{meta_path}: random_state is not a valid MT19937 state ({err})") from None
    lda.sync_state()  # expElogbeta, what inference reads, from eta + sstats
    return lda


def fit_topic_model(
    texts: Sequence[str],
    n_topics: int,
    seed: int,
    preprocess: PreprocessSettings = PreprocessSettings(),
    lda_settings: LdaSettings = LdaSettings(),
    pipeline: TextPipeline | None = None,
    tokens: list[list[str]] | None = None,
    sweep: TopicSweep | None = None,
) -> tuple[TopicModel, list[list[str]]]:
    """Fit the text pipeline and an LDA with ``n_topics`` topics; return the model and the tokens.

    Pass an already fitted ``pipeline`` with its ``tokens`` (from :meth:`TextPipeline.fit_tokens`
    on ``texts``) to skip preprocessing, as the notebook does after the sweep; and the
    ``sweep`` (:func:`fit_sweep`) to take its model of ``n_topics`` rather than fit the same
    one again (:meth:`TopicSweep.model_for`: only when the sweep ran on this corpus with this
    seed and these settings).
    """
    if pipeline is None or tokens is None:
        pipeline = TextPipeline(preprocess)
        tokens = pipeline.fit_tokens(texts)
    model = TopicModel(pipeline, None, seed, lda_settings)
    bow = model.bow(tokens)
    check_n_topics(n_topics, pipeline.dictionary_)
    swept = sweep.model_for(bow, pipeline.dictionary_, n_topics, seed, lda_settings) if sweep is not None else None
    model.lda = swept if swept is not None else fit_lda(bow, pipeline.dictionary_, n_topics, seed, lda_settings)
    model.labels = topic_labels(model.lda)
    return model, tokens


def sweep_range(sweep_min: int, sweep_max: int, step: int, dictionary) -> list[int]:
    """The numbers of topics a sweep tries: ``sweep_min``, ``sweep_min + step``, ... up to
    ``sweep_max`` (included) and never above the vocabulary size."""
    if sweep_min > sweep_max:
        raise TopicModelError(f"topic_sweep_min ({sweep_min}) must not exceed topic_sweep_max ({sweep_max})")
    if sweep_min < 2:
        raise TopicModelError(f"topic_sweep_min must be at least 2, got {sweep_min}")
    if step < 1:
        raise TopicModelError(f"topic_sweep_step must be at least 1, got {step}")
    ks = [k for k in range(sweep_min, sweep_max + 1, step) if k <= len(dictionary)]
    if not ks:
        raise TopicModelError(f"topic_sweep_min ({sweep_min}) is above the vocabulary size {len(dictionary)}")
    return ks


def load_topic_model(run_dir: str | Path) -> TopicModel:
    """The topic model notebook 03 saved under ``RunDir(run_dir).topics / "model"``.

    Only JSON and NumPy arrays (``allow_pickle=False``) are read, so a run folder cannot make
    this run code; gensim's ``load`` (which unpickles) is never called, and files of the older
    pickle format are ignored. A missing file raises ``FileNotFoundError``, a malformed one
    :class:`TopicModelError`; both name the file.
    """
    folder = config.RunDir(Path(run_dir)).topics / "model"
    meta_path = folder / "topic_model.json"
    meta = _read_model_json(meta_path)
    if not isinstance(meta, dict) or meta.get("format_version") != MODEL_FORMAT_VERSION:
        found = meta.get("format_version") if isinstance(meta, dict) else None
        if found is None and isinstance(meta, dict) and _legacy_model_files(folder):
            raise TopicModelError(
                f"{meta_path}: the topic model in {folder} was saved in gensim's pickle format by an older version; "
                "it is not loaded, because unpickling a file can execute code. Re-run notebook 03 to save it "
                "again as arrays and JSON"
            )
        raise TopicModelError(f"{meta_path}: format_version {found!r}, expected {MODEL_FORMAT_VERSION}")
    try:
        settings = PreprocessSettings(**_field(meta, "preprocess", meta_path, "dict"))
        lda_settings = LdaSettings(**_field(meta, "lda", meta_path, "dict"))
    except TypeError as err:
        raise TopicModelError(f"{meta_path}: unexpected settings ({err})") from None
    stop_words = _field(meta, "stop_words", meta_path, "list")
    labels = _field(meta, "labels", meta_path, "list")
    if not all(isinstance(w, str) for w in stop_words + labels):
        raise TopicModelError(f"{meta_path}: fields 'stop_words' and 'labels' must be lists of strings")
    pipeline = TextPipeline(settings, stop_words=frozenset(stop_words))
    pipeline.nlp, pipeline.pipeline_name = load_nlp(_field(meta, "spacy_pipeline", meta_path, "str"))
    pipeline.bigrams_ = _load_phrases(folder / "bigrams.json")
    pipeline.trigrams_ = _load_phrases(folder / "trigrams.json")
    pipeline.dictionary_ = _load_dictionary(folder / "dictionary.json")
    lda = _load_lda(folder, pipeline.dictionary_)
    if lda.num_topics != _field(meta, "n_topics", meta_path, "int") or len(labels) != lda.num_topics:
        raise TopicModelError(
            f"{meta_path}: n_topics {meta['n_topics']} and {len(labels)} labels do not match "
            f"the {lda.num_topics} topics of {folder / 'lda.npz'}"
        )
    return TopicModel(pipeline, lda, _field(meta, "seed", meta_path, "int"), lda_settings, list(labels))


def transform(texts: Sequence[str], run_dir: str | Path = config.DEFAULT_RUN_DIR) -> np.ndarray:
    """Topic vectors of new texts with the model saved in ``run_dir`` (see :meth:`TopicModel.transform`)."""
    return load_topic_model(run_dir).transform(texts)


# ----------------------------------------------------------------------------------------
# Tables: doc-topics, terms, labels, specialties, agreement with the query labels
# ----------------------------------------------------------------------------------------


def doc_topic_table(pmids: Sequence[str], matrix: np.ndarray) -> pd.DataFrame:
    """``pmid`` plus ``topic_0`` .. ``topic_{k-1}``: the matrix downstream models read."""
    table = pd.DataFrame(matrix, columns=[f"topic_{t}" for t in range(matrix.shape[1])])
    table.insert(0, "pmid", pd.array(list(pmids), dtype="string"))
    return table


def doc_topic_schema(n_topics: int):
    import pandera.pandas as pa

    columns = {"pmid": pa.Column(str, pa.Check.str_matches(r"^\d{1,9}$"), unique=True)}
    columns.update({f"topic_{t}": pa.Column(float, pa.Check.in_range(0.0, 1.0)) for t in range(n_topics)})
    return pa.DataFrameSchema(columns, name="doc_topics", strict=True, ordered=True)


def read_doc_topics(run_dir: str | Path) -> pd.DataFrame:
    """The document-topic matrix of a run (``pmid``, ``topic_0`` ..), validated."""
    path = config.RunDir(Path(run_dir)).topics / "doc_topics.parquet"
    table = read_parquet(path)
    return read_parquet(path, doc_topic_schema(sum(c.startswith("topic_") for c in table.columns)))


def topic_term_table(lda, topn: int = 20) -> pd.DataFrame:
    """``topic``, ``rank`` (1 = most probable), ``term``, ``weight`` (P(term | topic))."""
    rows = [
        (t, r + 1, term, float(w))
        for t in range(lda.num_topics)
        for r, (term, w) in enumerate(lda.show_topic(t, topn=topn))
    ]
    return pd.DataFrame(rows, columns=["topic", "rank", "term", "weight"])


#: the relevance weight of topic labels and of the pyLDAvis view (Sievert & Shirley 2014's suggestion)
RELEVANCE_LAMBDA = 0.6


def ldavis_link(folder: str = "figures/ldavis") -> str:
    """The address of the pyLDAvis page that opens it at :data:`RELEVANCE_LAMBDA`, as the topic
    labels are ranked (pyLDAvis reads ``#topic=..&lambda=..&term=`` from the address; topic 0 is
    "none selected")."""
    return f"{folder}/index.html#topic=0&lambda={RELEVANCE_LAMBDA}&term="


def topic_labels(lda, n_terms: int = 3) -> list[str]:
    """A readable label per topic: its ``n_terms`` most distinctive top terms, " / "-joined.

    Terms are ranked by relevance with lambda = :data:`RELEVANCE_LAMBDA` = 0.6 (Sievert &
    Shirley 2014): 0.6 log P(w|t) + 0.4 log(P(w|t)/P(w)), so words common to all topics do
    not name them; underscores of phrases become spaces. Duplicate labels get " (2)" etc.
    """
    topic_word = lda.get_topics()
    marginal = topic_word.mean(axis=0)
    relevance = RELEVANCE_LAMBDA * np.log(topic_word) + (1 - RELEVANCE_LAMBDA) * np.log(topic_word / marginal)
    labels, seen = [], {}
    for t in range(lda.num_topics):
        best = np.argsort(-relevance[t])[:n_terms]
        label = " / ".join(lda.id2word[int(i)].replace("_", " ") for i in best)
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return labels


def topic_area_shares(doc_topics: np.ndarray, areas: Sequence[str]) -> pd.DataFrame:
    """P(therapeutic area | topic): each document's topic weights, summed per area, normalised.

    Rows: topics; columns: :data:`hcp_lib.domain.THERAPEUTIC_AREAS`; rows sum to 1.
    """
    areas = pd.Series(list(areas))
    unknown = sorted(set(areas) - set(domain.THERAPEUTIC_AREAS))
    if unknown:
        raise TopicModelError(
            f"articles: column 'therapeutic_area' has an unknown value {unknown[0]!r}; "
            f"expected one of {list(domain.THERAPEUTIC_AREAS)}"
        )
    onehot = pd.get_dummies(areas).reindex(columns=list(domain.THERAPEUTIC_AREAS), fill_value=False)
    mass = doc_topics.T @ onehot.to_numpy(dtype=float)
    shares = mass / mass.sum(axis=1, keepdims=True)
    return pd.DataFrame(shares, columns=list(domain.THERAPEUTIC_AREAS)).rename_axis("topic")


def topic_specialty_relevance(area_shares: pd.DataFrame) -> pd.DataFrame:
    """Topic -> specialty relevance: area shares of the topic times :data:`domain.AREA_SPECIALTY_RELEVANCE`.

    relevance(topic, specialty) = sum over areas of P(area | topic) * relevance(specialty, area),
    then normalised over specialties so each row sums to 1. The topic's areas come from the
    articles it was fitted on; only the area-to-specialty table is domain knowledge.
    """
    relevance = pd.DataFrame(domain.AREA_SPECIALTY_RELEVANCE).T[list(area_shares.columns)]
    scores = area_shares.to_numpy() @ relevance.to_numpy().T
    scores = scores / scores.sum(axis=1, keepdims=True)
    return pd.DataFrame(scores, index=area_shares.index, columns=list(relevance.index))


def dominant_topics(doc_topics: np.ndarray) -> np.ndarray:
    return np.asarray(doc_topics).argmax(axis=1)


def label_agreement(doc_topics: np.ndarray, labels: Sequence[str]) -> float:
    """Normalised mutual information (arithmetic mean normalisation, scikit-learn's default)
    between each document's dominant topic and its label; 0 = independent, 1 = same partition."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(list(labels), dominant_topics(doc_topics)))


def topic_table(
    model: TopicModel, doc_topics: np.ndarray, coherence: dict[str, np.ndarray], areas: Sequence[str]
) -> pd.DataFrame:
    """One row per topic: ``topic``, ``label``, per-topic ``c_v``/``c_npmi``/``u_mass``,
    ``n_documents`` (articles whose dominant topic it is), ``top_area``, ``top_specialty``
    and the ``area_<name>`` shares of :func:`topic_area_shares`."""
    shares = topic_area_shares(doc_topics, areas)
    specialties = topic_specialty_relevance(shares)
    counts = np.bincount(dominant_topics(doc_topics), minlength=model.n_topics)
    table = pd.DataFrame(
        {
            "topic": np.arange(model.n_topics),
            "label": model.labels,
            **{m: np.asarray(coherence[m], dtype=float) for m in ("c_v", "c_npmi", "u_mass")},
            "n_documents": counts,
            "top_area": shares.idxmax(axis=1).to_numpy(),
            "top_specialty": specialties.idxmax(axis=1).to_numpy(),
        }
    )
    for area in shares.columns:
        table[f"area_{area}"] = shares[area].to_numpy()
    return table


def write_outputs(
    run_dir: str | Path,
    model: TopicModel,
    pmids: Sequence[str],
    doc_topics: np.ndarray,
    topics: pd.DataFrame,
    sweep: pd.DataFrame,
    metrics: dict,
) -> dict[str, Path]:
    """Write the stage's tables, the model and ``metrics/topics.json`` (layout: module docstring).

    The document-topic matrix is validated (:func:`doc_topic_schema`) before the first file
    is written; each file is written atomically.
    """
    run = config.RunDir(Path(run_dir))
    doc_table = doc_topic_table(pmids, doc_topics)
    specialty = topic_specialty_relevance(
        topics.set_index("topic")[[c for c in topics.columns if c.startswith("area_")]].rename(
            columns=lambda c: c[len("area_") :]
        )
    ).reset_index()
    paths = {
        "doc_topics": write_parquet(doc_table, run.topics / "doc_topics.parquet", doc_topic_schema(model.n_topics)),
        "topic_terms": write_parquet(topic_term_table(model.lda), run.topics / "topic_terms.parquet"),
        "topics": write_parquet(topics, run.topics / "topics.parquet"),
        "topic_specialty": write_parquet(specialty, run.topics / "topic_specialty.parquet"),
        "sweep": write_parquet(sweep, run.topics / "sweep.parquet"),
        "model": model.save(run.topics / "model"),
        "metrics": write_json(metrics, run.metrics / "topics.json"),
    }
    return paths


# ----------------------------------------------------------------------------------------
# pyLDAvis, offline
# ----------------------------------------------------------------------------------------

LDAVIS_FILES = {"d3": "d3.v5.min.js", "ldavis": "ldavis.v3.0.0.js", "css": "ldavis.v1.0.0.css"}


def write_ldavis(model: TopicModel, bow: list, doc_topics: np.ndarray, folder: str | Path) -> Path:
    """Write the pyLDAvis page ``index.html`` and its JS/CSS (copied from the installed pyLDAvis)
    into ``folder``; the page loads them by relative URL, so it needs no network.

    Topics keep the model's numbering (pyLDAvis shows topic t as t + 1 unless told otherwise;
    here ``start_index=0`` so the page's "Topic 3" is ``topic_3`` of the tables).
    """
    import pyLDAvis
    from pyLDAvis import urls

    dictionary = model.pipeline.dictionary_
    lengths = np.array([sum(c for _, c in doc) for doc in bow], dtype=float)
    keep = lengths > 0
    term_frequency = np.zeros(len(dictionary))
    for doc in bow:
        for term_id, count in doc:
            term_frequency[term_id] += count
    prepared = pyLDAvis.prepare(
        topic_term_dists=model.lda.get_topics(),
        doc_topic_dists=np.asarray(doc_topics)[keep],
        doc_lengths=lengths[keep],
        vocab=[dictionary[i] for i in range(len(dictionary))],
        term_frequency=term_frequency,
        sort_topics=False,
        start_index=0,
        n_jobs=1,
        R=20,
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for source in (urls.D3_LOCAL, urls.LDAVIS_LOCAL, urls.LDAVIS_CSS_LOCAL):
        if Path(source).name not in LDAVIS_FILES.values():
            raise TopicModelError(
                f"installed pyLDAvis ships {Path(source).name}, expected one of "
                f"{sorted(LDAVIS_FILES.values())}; update hcp_lib.stages.topics.LDAVIS_FILES"
            )
        with atomic_path(folder / Path(source).name) as tmp:
            shutil.copyfile(source, tmp)
    fragment = pyLDAvis.prepared_data_to_html(
        prepared,
        d3_url=Path(urls.D3_LOCAL).name,
        ldavis_url=Path(urls.LDAVIS_LOCAL).name,
        ldavis_css_url=Path(urls.LDAVIS_CSS_LOCAL).name,
        visid="ldavis_topics",
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>LDA topics of the PubMed content (pyLDAvis)</title>\n</head>\n<body>\n"
        f"{fragment}\n</body>\n</html>\n"
    )
    return write_text(page, folder / "index.html")


# ----------------------------------------------------------------------------------------
# Quality, like-for-like with v0.1
# ----------------------------------------------------------------------------------------

V01_SOURCE = "v01_abstracts"
V01_C_V = 0.392  # c_v v0.1 reported for its 10-topic LDA on the same 509 abstracts


def quality_metrics(
    model: TopicModel,
    tokens: list[list[str]],
    doc_topics: np.ndarray,
    articles: pd.DataFrame,
    preprocess: PreprocessSettings,
    coherence: dict[str, np.ndarray] | None = None,
) -> dict:
    """Coherence and label agreement of ``model``, overall and on v0.1's corpus.

    - ``full``: mean c_v / c_npmi / u_mass of the model's topics on the texts it was fitted on,
      NMI of the dominant topic with ``query_label`` and with ``therapeutic_area``;
    - ``v01_same_model``: NMI of the dominant topic with the query label on the v0.1 articles
      (their coherence is not scored there: top terms of the added corpus's topics, such as
      ``copd``, may never occur in v0.1's texts, which leaves c_v undefined);
    - ``v01_refit``: the whole recipe (preprocessing and LDA, same number of topics and seed)
      fitted on the v0.1 articles alone and scored on them, the like-for-like comparison
      with v0.1's c_v of :data:`V01_C_V`.
    Coherence settings (``topn``, windows) are recorded with the figures. ``coherence``: the
    model's per-topic scores when already computed (``coherence_scores([top_terms(model.lda)],
    tokens, model.pipeline.dictionary_)[0]``, as the notebook's topic table does), so they are
    not computed twice.
    """
    if coherence is None:
        coherence = coherence_scores([top_terms(model.lda)], tokens, model.pipeline.dictionary_)[0]
    result = {
        "coherence_settings": {
            "topn": COHERENCE_TOPN,
            "c_v_window": COHERENCE_WINDOWS["c_v"],
            "c_npmi_window": COHERENCE_WINDOWS["c_npmi"],
            "u_mass": "document co-occurrence",
            "reference_texts": "the corpus's own preprocessed texts",
            "implementation": "gensim.models.CoherenceModel",
        },
        "full": {
            "n_documents": len(tokens),
            **{m: float(coherence[m].mean()) for m in coherence},
            "nmi_query_label": label_agreement(doc_topics, articles["query_label"]),
            "nmi_therapeutic_area": label_agreement(doc_topics, articles["therapeutic_area"]),
        },
        "v01_baseline_c_v": V01_C_V,
    }
    is_v01 = (articles["source"] == V01_SOURCE).to_numpy()
    if is_v01.sum() >= 2:
        result["v01_same_model"] = {
            "n_documents": int(is_v01.sum()),
            "nmi_query_label": label_agreement(doc_topics[is_v01], articles.loc[is_v01, "query_label"]),
        }
        v01 = articles.loc[is_v01]
        try:
            refit, refit_tokens = fit_topic_model(
                article_texts(v01).tolist(), model.n_topics, model.seed, preprocess, model.lda_settings
            )
        except TopicModelError as err:
            result["v01_refit"] = {"error": str(err)}
        else:
            refit_scores = coherence_scores([top_terms(refit.lda)], refit_tokens, refit.pipeline.dictionary_)[0]
            refit_matrix = refit.topic_matrix(refit.bow(refit_tokens))
            result["v01_refit"] = {
                "n_documents": len(v01),
                "n_topics": refit.n_topics,
                "vocabulary": len(refit.pipeline.dictionary_),
                **{m: float(refit_scores[m].mean()) for m in refit_scores},
                "nmi_query_label": label_agreement(refit_matrix, v01["query_label"]),
                "labels": refit.labels,
            }
    return result
