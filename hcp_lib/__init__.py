"""HCP Hybrid Recommender: next best content and channel for healthcare professionals.

The package is laid out by role, so that what a module may depend on is visible from where it
sits (a lower layer never imports a higher one)::

    hcp_lib/
      config, domain, io, split     foundations: parameters and their one set of defaults, the
                                    domain's vocabulary, schema-checked atomic files, the
                                    leak-free temporal split
      metrics                       every metric, one function each, and the HCP bootstrap
      reasons, narrative, plots     the one reasons engine (plan and explorer), the book's
                                    result-dependent sentences, one colour per model
      tables, progress              tables that fit the page, the notebooks' progress bars
      world/                        the simulator and its oracle: entities, behaviour (the true
                                    engagement law), simulate (the logging policy), synth (build,
                                    write, load a world)
      models/                       every recommender, none of which reads or writes a run folder:
                                    base (the Recommender protocol), baselines, features,
                                    engagement, tabular, hybrid
      stages/                       one module per notebook, reading and writing run folders:
                                    pubmed (01), synthesis (02), topics (03), cf (04), engagement (05),
                                    evaluate (06), plan (07), explore (08), ope (09)
      pipeline, book, __main__      the papermill runner, the Jupyter Book build, the CLI

The top-level modules are the foundations and import only each other; ``world`` and ``models``
import the foundations (and themselves) only; ``stages`` may import everything below them;
``pipeline`` and ``book`` run notebooks and import only the foundations
(``tests/test_layout.py`` checks every import, lazy ones included).

Heavy libraries (TensorFlow, gensim, spaCy) are imported only by the modules that need them,
so ``import hcp_lib`` stays fast.
"""

__version__ = "0.2.0"
