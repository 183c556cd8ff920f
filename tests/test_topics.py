"""Tests of hcp_lib.stages.topics: preprocessing, determinism, transform, saving, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re

import numpy as np
import pandas as pd
import pytest

from hcp_lib import config, domain
from hcp_lib.stages import topics

# A small hand-made corpus: three subjects whose collocations recur in varying company, so
# that only the collocations (not their neighbours) are frequent enough to become phrases.
SUBJECTS = {
    "diabetes": ["type 2 diabetes", "insulin glucose", "type 2 diabetes"],
    "cardiovascular": ["heart failure", "blood pressure", "heart failure"],
    "vaccination": ["influenza vaccine", "vaccine hesitancy", "children vaccine"],
}
BEFORE = ["Metformin", "Semaglutide", "Statins", "Reminders", "Education", "Campaigns"]
AFTER = ["clinics", "hospitals", "homes", "schools"]
BOILERPLATE = ["Results were significant.", "Methods: a cohort study.", "Background: 12 mg in 40 patients."]


def corpus(n_per_subject: int = 12) -> tuple[list[str], list[str]]:
    texts, areas = [], []
    for area, terms in SUBJECTS.items():
        for i in range(n_per_subject):
            body = " ".join(f"{BEFORE[(i + j) % 6]} {term} {AFTER[(i + 3 * j) % 4]}." for j, term in enumerate(terms))
            texts.append(f"{body} {BOILERPLATE[i % 3]}")
            areas.append(area)
    return texts, areas


SMALL = topics.PreprocessSettings(
    spacy_model="blank", phrase_min_count=3, phrase_threshold=0.5, min_doc_freq=2, max_doc_share=0.9
)
FAST = topics.LdaSettings(passes=5, iterations=20)


@pytest.fixture(scope="module")
def nlp():
    return topics.load_nlp("blank")


@pytest.fixture(scope="module")
def fitted():
    texts, areas = corpus()
    model, tokens = topics.fit_topic_model(texts, 3, seed=7, preprocess=SMALL, lda_settings=FAST)
    return model, tokens, texts, areas


def lemmas(text: str, nlp) -> list[str]:
    pipeline, name = nlp
    return topics.lemmatise([text], pipeline, name, topics.default_stop_words())[0]


def test_blank_pipeline_is_recorded_when_no_trained_model(nlp):
    _, name = nlp
    assert name == topics.BLANK_PIPELINE


def test_lemmas_are_lowercase_lookup_forms(nlp):
    assert lemmas("Hospitalisations Were Rising among Smokers", nlp) == ["hospitalisation", "rise", "smoker"]


def test_boilerplate_and_units_are_stop_words(nlp):
    assert lemmas("Background: methods and results of this study in patients. Conclusion.", nlp) == []
    assert lemmas("Dose 12.5 mg/dL and 95% CI, 30 kg", nlp) == ["dose"]


def test_numbers_survive_only_after_category_words(nlp):
    assert lemmas("type 2 diabetes in 2023 with 40 cases, stage 3 cancer", nlp) == [
        "type",
        "2",
        "diabetes",
        "stage",
        "3",
        "cancer",
    ]


def test_alphanumeric_biomedical_terms_are_kept(nlp):
    assert lemmas("COVID-19 and HbA1c with SGLT2i", nlp) == ["covid-19", "hba1c", "sglt2i"]


def test_missing_and_empty_texts_give_no_terms(nlp):
    pipeline, name = nlp
    assert topics.lemmatise([None, float("nan"), "", "   "], pipeline, name, topics.default_stop_words()) == [[]] * 4


def test_the_progress_bar_counts_every_text_and_changes_no_lemma(nlp):
    pipeline, name = nlp
    texts = ["Hospitalisations Were Rising among Smokers", None, "type 2 diabetes"]
    counted = []

    def recording(iterable, desc, total):
        counted.append((desc, total))
        for item in iterable:
            counted.append(item.text)
            yield item

    stop = topics.default_stop_words()
    with_bar = topics.lemmatise(texts, pipeline, name, stop, progress=recording)
    assert with_bar == topics.lemmatise(texts, pipeline, name, stop)
    assert counted == [("articles lemmatised", 3), "hospitalisations were rising among smokers", "", "type 2 diabetes"]


def test_non_string_text_is_named(nlp):
    pipeline, name = nlp
    with pytest.raises(topics.TopicModelError, match=r"texts\[1\]: expected a string, got int"):
        topics.lemmatise(["ok", 5], pipeline, name, topics.default_stop_words())


def test_phrases_join_collocations(fitted):
    _, tokens, _, _ = fitted
    vocabulary = {t for doc in tokens for t in doc}
    assert "type_2_diabetes" in vocabulary
    assert "heart_failure" in vocabulary
    assert "blood_pressure" in vocabulary
    assert not any(t.isdigit() for t in vocabulary)
    assert not {"patient", "study", "result", "method", "background"} & vocabulary


def test_article_texts_join_title_and_abstract():
    articles = pd.DataFrame(
        {"pmid": ["1", "2"], "title": ["Heart failure.", "Vaccines"], "abstract": ["Long text.", ""]}
    )
    assert topics.article_texts(articles).tolist() == ["Heart failure. Long text.", "Vaccines"]
    with pytest.raises(topics.TopicModelError, match="missing column 'abstract'"):
        topics.article_texts(articles.drop(columns="abstract"))


def test_doc_topic_matrix_is_deterministic_for_a_seed(fitted):
    model, tokens, texts, _ = fitted
    again, _ = topics.fit_topic_model(texts, 3, seed=7, preprocess=SMALL, lda_settings=FAST)
    first = model.topic_matrix(model.bow(tokens))
    second = again.topic_matrix(again.bow(tokens))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    other, _ = topics.fit_topic_model(texts, 3, seed=8, preprocess=SMALL, lda_settings=FAST)
    assert not np.array_equal(first, other.topic_matrix(other.bow(tokens)))


def test_topics_separate_the_subjects(fitted):
    model, tokens, _, areas = fitted
    matrix = model.topic_matrix(model.bow(tokens))
    assert topics.label_agreement(matrix, areas) == pytest.approx(1.0)


def test_transform_places_unseen_text_with_its_subject(fitted):
    model, tokens, _, areas = fitted
    dominant = topics.dominant_topics(model.topic_matrix(model.bow(tokens)))
    subject_topic = {area: dominant[areas.index(area)] for area in SUBJECTS}
    vectors = model.transform(["Influenza vaccine hesitancy among parents", "Heart failure and blood pressure"])
    assert vectors.shape == (2, 3)
    np.testing.assert_allclose(vectors.sum(axis=1), 1.0)
    assert vectors[0].argmax() == subject_topic["vaccination"]
    assert vectors[1].argmax() == subject_topic["cardiovascular"]


def test_transform_of_texts_without_known_terms_is_the_prior(fitted):
    model, _, _, _ = fitted
    prior = np.asarray(model.lda.alpha) / np.sum(model.lda.alpha)
    vectors = model.transform(["", None, "Les patients étaient contents", "xqzt blorf 123", "the and of study"])
    for row in vectors:
        np.testing.assert_allclose(row, prior)
    with pytest.raises(topics.TopicModelError, match="single string"):
        model.transform("heart failure")


def test_n_topics_out_of_range_is_refused(fitted):
    model, tokens, texts, _ = fitted
    size = len(model.pipeline.dictionary_)
    for bad in (1, 0, size + 1):
        with pytest.raises(
            topics.TopicModelError, match=rf"n_topics must be between 2 and the vocabulary size \({size}"
        ):
            topics.fit_topic_model(
                texts, bad, seed=1, preprocess=SMALL, lda_settings=FAST, pipeline=model.pipeline, tokens=tokens
            )


def test_all_stop_word_corpus_is_refused_clearly():
    texts = ["Background: the study of patients.", "Results and methods; conclusion.", "", None]
    with pytest.raises(topics.TopicModelError, match="no term is left after preprocessing 4 texts"):
        topics.fit_topic_model(texts, 2, seed=1, preprocess=SMALL, lda_settings=FAST)


def test_sweep_range_checks_its_parameters(fitted):
    dictionary = fitted[0].pipeline.dictionary_
    assert topics.sweep_range(2, 6, 2, dictionary) == [2, 4, 6]
    with pytest.raises(topics.TopicModelError, match="topic_sweep_min .5. must not exceed topic_sweep_max .3."):
        topics.sweep_range(5, 3, 1, dictionary)
    with pytest.raises(topics.TopicModelError, match="above the vocabulary size"):
        topics.sweep_range(len(dictionary) + 1, len(dictionary) + 5, 1, dictionary)


def test_sweep_scores_and_choice(fitted):
    model, tokens, _, _ = fitted
    bow = model.bow(tokens)
    sweep = topics.fit_sweep(bow, tokens, model.pipeline.dictionary_, [2, 3, 4], seed=7, settings=FAST).table
    assert sweep["n_topics"].tolist() == [2, 3, 4]
    assert sweep[["c_v", "c_npmi", "u_mass"]].notna().all().all()
    assert sweep["score"].between(0, 1).all()
    assert topics.choose_n_topics(sweep) == int(sweep.loc[sweep["score"].idxmax(), "n_topics"])


@pytest.mark.parametrize("processes", [1, 2])
def test_sweep_keeps_its_models_and_the_refit_takes_them(tmp_path, fitted, processes):
    model, tokens, texts, _ = fitted
    dictionary = model.pipeline.dictionary_
    bow = model.bow(tokens)
    sweep = topics.fit_sweep(bow, tokens, dictionary, [4, 2, 3], seed=7, settings=FAST, processes=processes)
    pd.testing.assert_frame_equal(
        sweep.table, topics.fit_sweep(bow, tokens, dictionary, [2, 3, 4], seed=7, settings=FAST).table
    )
    assert sorted(sweep.models) == [2, 3, 4]
    assert all(lda.num_topics == k for k, lda in sweep.models.items())

    fresh, _ = topics.fit_topic_model(texts, 3, 7, SMALL, FAST, pipeline=model.pipeline, tokens=tokens)
    reused, _ = topics.fit_topic_model(texts, 3, 7, SMALL, FAST, pipeline=model.pipeline, tokens=tokens, sweep=sweep)
    # a copy of the sweep's model, over the pipeline's own dictionary, and the very model a fit makes
    assert reused.lda is not sweep.models[3] and reused.lda.id2word is dictionary
    np.testing.assert_array_equal(reused.lda.state.sstats, fresh.lda.state.sstats)
    np.testing.assert_array_equal(reused.topic_matrix(bow), fresh.topic_matrix(bow))
    assert reused.labels == fresh.labels
    reused.save(tmp_path / "reused")
    fresh.save(tmp_path / "fresh")
    for path in sorted((tmp_path / "fresh").iterdir()):
        assert (tmp_path / "reused" / path.name).read_bytes() == path.read_bytes(), path.name
    # the sweep's model is left as fitted (topic_matrix reseeded the copy's generator only)
    assert sweep.models[3].random_state is not reused.lda.random_state


def test_sweep_model_is_not_taken_for_another_fit(fitted):
    model, tokens, _, _ = fitted
    dictionary = model.pipeline.dictionary_
    bow = model.bow(tokens)
    sweep = topics.fit_sweep(bow, tokens, dictionary, [2, 3], seed=7, settings=FAST)
    assert sweep.model_for(bow, dictionary, 3, 7, FAST) is not None
    assert sweep.model_for(bow, dictionary, 4, 7, FAST) is None  # not swept
    assert sweep.model_for(bow, dictionary, 3, 8, FAST) is None  # another seed
    assert sweep.model_for(bow, dictionary, 3, 7, topics.LdaSettings(passes=6, iterations=20)) is None
    assert sweep.model_for(bow[:-1], dictionary, 3, 7, FAST) is None  # another corpus
    other = pickle.loads(pickle.dumps(dictionary))
    other.add_documents([["a_new_term"]])
    assert sweep.model_for(bow, other, 3, 7, FAST) is None  # other terms


def test_quality_metrics_takes_the_coherence_already_computed(fitted):
    model, tokens, _, areas = fitted
    matrix = model.topic_matrix(model.bow(tokens))
    articles = pd.DataFrame({"query_label": areas, "therapeutic_area": areas, "source": "pubmed"})
    coherence = topics.coherence_scores([topics.top_terms(model.lda)], tokens, model.pipeline.dictionary_)[0]
    given = topics.quality_metrics(model, tokens, matrix, articles, SMALL, coherence)
    assert given == topics.quality_metrics(model, tokens, matrix, articles, SMALL)
    assert given["full"]["c_v"] == float(coherence["c_v"].mean())


def test_choose_n_topics_prefers_the_smaller_on_ties():
    sweep = pd.DataFrame({"n_topics": [4, 6, 8], "c_v": [0.5, 0.6, 0.6], "c_npmi": [0.0, 0.1, 0.1]})
    sweep["score"] = topics.selection_score(sweep)
    assert topics.choose_n_topics(sweep) == 6


def test_specialty_mapping_follows_the_area_mix():
    doc_topics = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    shares = topics.topic_area_shares(doc_topics, ["oncology", "oncology", "vaccination"])
    np.testing.assert_allclose(shares.loc[0, "oncology"], 1.7 / 1.8)
    specialties = topics.topic_specialty_relevance(shares)
    np.testing.assert_allclose(specialties.sum(axis=1), 1.0)
    assert specialties.loc[0].idxmax() == "hematology_oncology"
    assert specialties.loc[1].idxmax() in ("infectious_disease", "pediatrics")
    assert list(specialties.columns) == list(domain.AREA_SPECIALTY_RELEVANCE)
    with pytest.raises(topics.TopicModelError, match="unknown value 'dermatology'"):
        topics.topic_area_shares(doc_topics, ["oncology", "dermatology", "vaccination"])


def test_labels_are_unique_and_readable(fitted):
    labels = fitted[0].labels
    assert len(labels) == 3 and len(set(labels)) == 3
    assert all(label.count(" / ") == 2 and "_" not in label for label in labels)


def test_saved_model_reloads_and_reproduces(tmp_path, fitted):
    model, tokens, _, areas = fitted
    run = config.RunDir(tmp_path)
    matrix = model.topic_matrix(model.bow(tokens))
    coherence = topics.coherence_scores([topics.top_terms(model.lda)], tokens, model.pipeline.dictionary_)[0]
    table = topics.topic_table(model, matrix, coherence, areas)
    sweep = pd.DataFrame({"n_topics": [3], "c_v": [0.5], "c_npmi": [0.1], "u_mass": [-1.0], "score": [1.0]})
    pmids = [str(100 + i) for i in range(len(tokens))]
    topics.write_outputs(tmp_path, model, pmids, matrix, table, sweep, {"n_topics": 3})
    doc_topics = topics.read_doc_topics(tmp_path)
    assert list(doc_topics.columns) == ["pmid", "topic_0", "topic_1", "topic_2"]
    assert doc_topics["pmid"].tolist() == pmids
    saved = json.loads((run.topics / "model" / "topic_model.json").read_text())
    assert saved["spacy_pipeline"] == topics.BLANK_PIPELINE and saved["labels"] == model.labels
    reloaded = topics.load_topic_model(tmp_path)
    text = ["Insulin and glucose in type 2 diabetes"]
    np.testing.assert_allclose(reloaded.transform(text), model.transform(text))
    np.testing.assert_allclose(topics.transform(text, tmp_path), model.transform(text))
    assert not list(run.topics.rglob("*.tmp*"))


def test_bad_doc_topic_matrix_is_refused_before_writing(tmp_path, fitted):
    model, tokens, _, areas = fitted
    matrix = model.topic_matrix(model.bow(tokens))
    table = topics.topic_table(model, matrix, {m: np.zeros(3) for m in ("c_v", "c_npmi", "u_mass")}, areas)
    pmids = ["not-a-pmid"] + [str(i) for i in range(1, len(tokens))]
    with pytest.raises(ValueError, match="pmid"):
        topics.write_outputs(tmp_path, model, pmids, matrix, table, pd.DataFrame(), {})
    assert not config.RunDir(tmp_path).topics.exists() or not any(config.RunDir(tmp_path).topics.iterdir())


def test_unknown_spacy_model_is_named():
    with pytest.raises(topics.TopicModelError, match="spacy_model 'en_core_nothing' is not an installed"):
        topics.load_nlp("en_core_nothing")


def test_ldavis_page_is_offline(tmp_path, fitted):
    model, tokens, _, _ = fitted
    bow = model.bow(tokens)
    page = topics.write_ldavis(model, bow, model.topic_matrix(bow), tmp_path / "ldavis")
    html = page.read_text()
    for name in topics.LDAVIS_FILES.values():
        assert (tmp_path / "ldavis" / name).stat().st_size > 0
        assert f'"{name}"' in html
    assert "http://" not in html.split("var ldavis_topics_data")[0]
    assert "https://" not in html.replace("https://github.com", "")


# ----------------------------------------------------------------------------------------
# The saved model is arrays and JSON; loading it never unpickles (issue 13, item 9)
# ----------------------------------------------------------------------------------------

NEW_TEXTS = [
    "Insulin and glucose in type 2 diabetes",
    "Heart failure and blood pressure in clinics",
    "Influenza vaccine hesitancy among parents of children",
    "Statins in homes. Background: 3 mg.",
    "",
]
MODEL_FILES = {"topic_model.json", "lda.npz", "lda.json", "dictionary.json", "bigrams.json", "trigrams.json"}


class _Exploit:
    """Unpickling this creates the directory ``marker``: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _live_payload(tmp_path, marker) -> bytes:
    """A pickle that creates ``marker`` when loaded, checked to be live on a decoy marker."""
    decoy = tmp_path / "decoy_marker"
    pickle.loads(pickle.dumps(_Exploit(decoy)))
    assert decoy.exists()
    return pickle.dumps(_Exploit(marker))


@pytest.fixture
def saved(tmp_path, fitted):
    """(run folder, model folder) holding a freshly saved copy of the fitted model."""
    folder = config.RunDir(tmp_path).topics / "model"
    fitted[0].save(folder)
    return tmp_path, folder


def test_saved_model_is_arrays_and_json(saved):
    _, folder = saved
    assert {p.name for p in folder.iterdir()} == MODEL_FILES
    for name in MODEL_FILES - {"lda.npz"}:
        json.loads((folder / name).read_text())
    with np.load(folder / "lda.npz", allow_pickle=False) as arrays:
        assert set(arrays.files) == {"alpha", "eta", "state_eta", "sstats", "random_state_keys"}
        assert all(arrays[name].dtype != object for name in arrays.files)
    assert json.loads((folder / "topic_model.json").read_text())["format_version"] == topics.MODEL_FORMAT_VERSION


def test_reloaded_model_gives_the_same_topics_for_new_documents(saved, fitted):
    run_dir, folder = saved
    model, tokens, _, _ = fitted
    bow = model.bow(tokens)
    # The generator state is saved too: inference without reseeding continues identically.
    state = model.lda.random_state.get_state()
    expected_gamma, _ = model.lda.inference(bow[:4])
    model.lda.random_state.set_state(state)
    reloaded = topics.load_topic_model(run_dir)
    gamma, _ = reloaded.lda.inference(bow[:4])
    np.testing.assert_allclose(gamma, expected_gamma, rtol=0, atol=1e-6)
    np.testing.assert_allclose(reloaded.transform(NEW_TEXTS), model.transform(NEW_TEXTS), rtol=0, atol=1e-6)
    np.testing.assert_allclose(reloaded.topic_matrix(bow), model.topic_matrix(bow), rtol=0, atol=1e-6)
    np.testing.assert_allclose(reloaded.lda.get_topics(), model.lda.get_topics(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(reloaded.lda.alpha, model.lda.alpha, rtol=0, atol=1e-12)
    doc = model.bow(model.pipeline.tokens(NEW_TEXTS[:1]))[0]
    got, want = dict(reloaded.lda.get_document_topics(doc)), dict(model.lda.get_document_topics(doc))
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[t] for t in want], list(want.values()), rtol=0, atol=1e-6)
    assert reloaded.labels == model.labels and reloaded.seed == model.seed
    assert reloaded.lda_settings == model.lda_settings and reloaded.pipeline.settings == model.pipeline.settings


def test_reloaded_phrases_and_dictionary_transform_identically(saved, fitted, nlp):
    run_dir, _ = saved
    model, _, texts, _ = fitted
    reloaded = topics.load_topic_model(run_dir)
    pipeline, name = nlp
    lemmas = topics.lemmatise(texts + NEW_TEXTS, pipeline, name, model.pipeline.stop_words)
    lemmas.append(["type", "2", "diabetes", "and", "heart", "failure", "of", "the", "blood", "pressure"])
    for attribute in ("bigrams_", "trigrams_"):
        original, loaded = getattr(model.pipeline, attribute), getattr(reloaded.pipeline, attribute)
        assert loaded.phrasegrams == original.phrasegrams
        assert list(loaded[lemmas]) == list(original[lemmas])
    assert "type_2_diabetes" in reloaded.pipeline._phrase(lemmas)[-1]
    assert reloaded.pipeline.tokens(texts + NEW_TEXTS) == model.pipeline.tokens(texts + NEW_TEXTS)
    original, loaded = model.pipeline.dictionary_, reloaded.pipeline.dictionary_
    assert loaded.token2id == original.token2id and loaded.dfs == original.dfs and loaded.cfs == original.cfs
    assert (loaded.num_docs, loaded.num_pos, loaded.num_nnz) == (original.num_docs, original.num_pos, original.num_nnz)


def test_loading_never_unpickles(saved, fitted, monkeypatch):
    import gensim.utils

    def refuse(*args, **kwargs):
        raise AssertionError("load_topic_model unpickled something")

    run_dir, _ = saved
    for module, attribute in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, attribute, refuse)
    monkeypatch.setattr(gensim.utils.SaveLoad, "load", classmethod(refuse))
    reloaded = topics.load_topic_model(run_dir)
    monkeypatch.undo()
    np.testing.assert_allclose(reloaded.transform(NEW_TEXTS), fitted[0].transform(NEW_TEXTS), rtol=0, atol=1e-6)


def test_pickles_where_the_old_format_lived_are_not_executed(saved, fitted, tmp_path):
    run_dir, folder = saved
    marker = tmp_path / "pwned"
    payload = _live_payload(tmp_path, marker)
    for name in ("bigrams", "trigrams", "lda", "lda.state", "lda.id2word", "lda.expElogbeta.npy"):
        (folder / name).write_bytes(payload)
    reloaded = topics.load_topic_model(run_dir)  # the new format is read; the pickles are ignored
    assert not marker.exists()
    np.testing.assert_allclose(reloaded.transform(NEW_TEXTS), fitted[0].transform(NEW_TEXTS), rtol=0, atol=1e-6)
    fitted[0].save(folder)  # saving again deletes them
    assert {p.name for p in folder.iterdir()} == MODEL_FILES


def test_a_folder_in_the_old_pickle_format_is_refused_without_running_it(tmp_path, saved):
    run_dir, folder = saved
    marker = tmp_path / "pwned"
    payload = _live_payload(tmp_path, marker)
    for name in MODEL_FILES - {"topic_model.json"}:
        (folder / name).unlink()
    meta = json.loads((folder / "topic_model.json").read_text())
    del meta["format_version"]
    (folder / "topic_model.json").write_text(json.dumps(meta))
    for name in ("lda", "bigrams", "trigrams"):
        (folder / name).write_bytes(payload)
    with pytest.raises(
        topics.TopicModelError, match=r"topic_model\.json: .*gensim's pickle format.*not loaded.*notebook 03"
    ):
        topics.load_topic_model(run_dir)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name", ["lda.npz", "lda.json", "dictionary.json", "bigrams.json", "trigrams.json", "topic_model.json"]
)
def test_a_pickle_under_a_new_name_is_refused_and_not_executed(tmp_path, saved, name):
    run_dir, folder = saved
    marker = tmp_path / "pwned"
    (folder / name).write_bytes(_live_payload(tmp_path, marker))
    with pytest.raises(topics.TopicModelError, match=re.escape(str(folder / name))):
        topics.load_topic_model(run_dir)
    assert not marker.exists()


def test_an_object_array_in_the_npz_is_refused_and_not_executed(tmp_path, saved):
    run_dir, folder = saved
    marker = tmp_path / "pwned"
    _live_payload(tmp_path, marker)
    with np.load(folder / "lda.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["sstats"] = np.array([_Exploit(marker)], dtype=object)
    with open(folder / "lda.npz", "wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(topics.TopicModelError, match=r"lda\.npz: array 'sstats' cannot be read as plain numbers"):
        topics.load_topic_model(run_dir)
    assert not marker.exists()


def _edit_json(path, edit):
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def _replace_array(path, name, value):
    with np.load(path, allow_pickle=False) as archive:
        arrays = {n: archive[n] for n in archive.files if n != name}
    if value is not None:
        arrays[name] = value
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


MALFORMED = {
    "bigrams.json: not valid JSON": ("bigrams.json", lambda p: p.write_text('{"delimiter": ')),
    "trigrams.json: field 'scoring' must be one of": (
        "trigrams.json",
        lambda p: _edit_json(p, lambda r: r.update(scoring="my_module.my_scorer")),
    ),
    "bigrams.json: field '2_diabetes' of 'phrasegrams' is 'high'; expected a number": (
        "bigrams.json",
        lambda p: _edit_json(p, lambda r: r["phrasegrams"].update({"2_diabetes": "high"})),
    ),
    "dictionary.json: missing field 'dfs'": ("dictionary.json", lambda p: _edit_json(p, lambda r: r.pop("dfs"))),
    "dictionary.json: field 'cfs' must list one count": (
        "dictionary.json",
        lambda p: _edit_json(p, lambda r: r["cfs"].pop()),
    ),
    "lda.json: field 'iterations' is '50'; expected an integer": (
        "lda.json",
        lambda p: _edit_json(p, lambda r: r.update(iterations="50")),
    ),
    "lda.json: num_topics 3 and num_terms 99 do not fit": (
        "lda.json",
        lambda p: _edit_json(p, lambda r: r.update(num_terms=99)),
    ),
    "lda.npz: array 'alpha' must be finite floats of shape (4,), got float64 (3,) (num_topics 4": (
        "lda.json",
        lambda p: _edit_json(p, lambda r: r.update(num_topics=4)),
    ),
    "lda.npz: not a NumPy .npz archive": ("lda.npz", lambda p: p.write_bytes(b"PK\x03\x04 truncated")),
    "lda.npz: missing array 'sstats'": ("lda.npz", lambda p: _replace_array(p, "sstats", None)),
    "lda.npz: array 'sstats' must be finite floats of shape": (
        "lda.npz",
        lambda p: _replace_array(p, "sstats", np.ones((2, 2))),
    ),
    "lda.npz: array 'alpha' must be finite floats": (
        "lda.npz",
        lambda p: _replace_array(p, "alpha", np.array([np.nan, 1.0, 1.0])),
    ),
    "topic_model.json: format_version 3, expected 2": (
        "topic_model.json",
        lambda p: _edit_json(p, lambda r: r.update(format_version=3)),
    ),
    "topic_model.json: n_topics 3 and 2 labels": (
        "topic_model.json",
        lambda p: _edit_json(p, lambda r: r["labels"].pop()),
    ),
}


@pytest.mark.parametrize("message", list(MALFORMED))
def test_a_malformed_model_file_is_named(saved, message):
    run_dir, folder = saved
    name, corrupt = MALFORMED[message]
    corrupt(folder / name)
    with pytest.raises(topics.TopicModelError) as caught:
        topics.load_topic_model(run_dir)
    assert str(folder / name) in str(caught.value)
    assert message.split(": ", 1)[1] in str(caught.value)


@pytest.mark.parametrize("name", sorted(MODEL_FILES))
def test_a_missing_model_file_is_named(saved, name):
    run_dir, folder = saved
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{folder / name}: file not found")):
        topics.load_topic_model(run_dir)


def my_scorer(worda_count, wordb_count, bigram_count, len_vocab, min_count, corpus_word_count):
    """A custom phrase scorer (gensim requires it to be a module-level, picklable function)."""
    return bigram_count / (worda_count * wordb_count)


def test_a_custom_phrase_scorer_is_refused_at_save(tmp_path, fitted, nlp):
    from gensim.models.phrases import Phrases

    model, _, texts, _ = fitted
    pipeline, name = nlp
    lemmas = topics.lemmatise(texts, pipeline, name, model.pipeline.stop_words)
    custom = Phrases(lemmas, min_count=3, threshold=0.1, scoring=my_scorer).freeze()
    copy = dataclasses.replace(model, pipeline=dataclasses.replace(model.pipeline, bigrams_=custom))
    with pytest.raises(
        topics.TopicModelError, match=r"bigrams_: scoring 'my_scorer' cannot be saved.*'default', 'npmi'"
    ):
        copy.save(tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_the_topic_map_opens_at_the_relevance_the_labels_use():
    # pyLDAvis reads "#topic=..&lambda=..&term=" from the address; the labels rank terms at the same lambda
    assert topics.ldavis_link() == f"figures/ldavis/index.html#topic=0&lambda={topics.RELEVANCE_LAMBDA}&term="
    assert topics.RELEVANCE_LAMBDA == 0.6
