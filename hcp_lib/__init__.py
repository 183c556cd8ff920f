"""HCP Hybrid Recommender: next best content and channel for healthcare professionals.

One module per pipeline stage (``pubmed``, ``synth``, ``topics``, ...), plus
``config`` (parameters, scale presets, run-folder layout), ``io`` (schema-checked
reads, atomic writes), ``pipeline`` (the papermill runner) and ``book``.
Heavy libraries (TensorFlow, gensim, spaCy) are imported only by the modules that
need them, so ``import hcp_lib`` stays fast.
"""

__version__ = "0.2.0"
