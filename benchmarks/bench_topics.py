"""Benchmark of notebook 03 (topic modeling) on the shipped snapshot: seconds per step.

Runs the same steps as the notebook, with the parameters of a scale preset (default
``small``), in a temporary run folder, and prints each step's wall time and the total.
Usage: ``.venv/bin/python benchmarks/bench_topics.py [--scale small] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from hcp_lib import config, io
from hcp_lib.stages import pubmed, topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default=config.DEFAULT_SCALE, choices=config.SCALES)
    parser.add_argument("--workers", type=int, default=None, help="sweep processes (default: the parameter's)")
    args = parser.parse_args()
    p = config.resolve_parameters(args.scale)
    workers = args.workers or p["topic_workers"]
    timings: dict[str, float] = {}

    def step(name, func, *a, **kw):
        start = time.perf_counter()
        out = func(*a, **kw)
        timings[name] = time.perf_counter() - start
        return out

    with tempfile.TemporaryDirectory() as tmp:
        articles, _ = pubmed.clean_articles(pubmed.load_snapshot())
        io.write_parquet(articles, pubmed.articles_path(tmp), pubmed.ARTICLE_SCHEMA)
        total = time.perf_counter()
        articles = pubmed.read_articles(tmp)
        texts = topics.article_texts(articles).tolist()
        preprocess = topics.PreprocessSettings(
            spacy_model=p["spacy_model"], min_doc_freq=p["topic_min_doc_freq"], max_doc_share=p["topic_max_doc_share"]
        )
        lda = topics.LdaSettings(passes=p["lda_passes"], iterations=p["lda_iterations"])
        pipeline = topics.TextPipeline(preprocess)
        tokens = step("preprocess (spaCy, phrases, dictionary)", pipeline.fit_tokens, texts)
        bow = [pipeline.dictionary_.doc2bow(d) for d in tokens]
        ks = topics.sweep_range(p["topic_sweep_min"], p["topic_sweep_max"], p["topic_sweep_step"], pipeline.dictionary_)
        swept = step(
            f"sweep ({len(ks)} models, {workers} processes)",
            topics.fit_sweep,
            bow,
            tokens,
            pipeline.dictionary_,
            ks,
            p["seed"],
            lda,
            processes=workers,
        )
        sweep = swept.table
        k = p["n_topics"] or topics.choose_n_topics(sweep)
        model, _ = step(
            "final model (the sweep's, as notebook 03 takes it)",
            topics.fit_topic_model,
            texts,
            k,
            p["seed"],
            preprocess,
            lda,
            pipeline=pipeline,
            tokens=tokens,
            sweep=swept,
        )
        matrix = step("doc-topic inference", model.topic_matrix, bow)
        coherence = topics.coherence_scores([topics.top_terms(model.lda)], tokens, pipeline.dictionary_)[0]
        quality = step(
            "quality (incl. v0.1 refit)",
            topics.quality_metrics,
            model,
            tokens,
            matrix,
            articles,
            preprocess,
            coherence=coherence,
        )
        table = topics.topic_table(model, matrix, coherence, articles["therapeutic_area"])
        step("pyLDAvis page", topics.write_ldavis, model, bow, matrix, Path(tmp) / "figures" / "ldavis")
        step("save outputs", topics.write_outputs, tmp, model, articles["pmid"], matrix, table, sweep, quality)
        timings["total"] = time.perf_counter() - total

    print(
        f"bench_topics: scale {args.scale}, {len(articles)} articles, {os.cpu_count()} CPUs, "
        f"{k} topics, c_v {quality['full']['c_v']:.3f}"
    )
    print(pd.Series(timings, name="seconds").round(2).to_string())


if __name__ == "__main__":
    main()
