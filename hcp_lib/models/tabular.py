"""The tabular challenger: a gradient-boosted engagement classifier (notebook 05).

scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` on one flat row per
(HCP, item, channel, instant) built from the engagement models' shared inputs
(:func:`hcp_lib.models.features.query_inputs`) without the sequence: the HCP's specialty, setting
and region (native categorical splits), its numeric profile and patient mix, its history
counts (touches in the last 7/14/28 days, engagement rate, days since the last touch), its
history on the queried channel, the item's area, type, abstract flag, series part and LDA topics,
and the (HCP, item) history: shown or engaged before, series follow-up,
topic memories of the HCP and of its peer group, the CF similarity of the item to those the
HCP engaged with, the item's age and its engagement so far.
The peer group itself is too many categories for native splits; its taste enters through the
peer topic memory.

It is the strongest simple alternative the hybrid must beat: it sees the same non-sequence
inputs, learns interactions by trees, and is tuned on the validation window by the same
criterion (log-loss of the logged validation exposures), with early stopping on that window.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import usable_cpus
from ..domain import CHANNELS, TABULAR_NAME
from . import features as F
from .base import Recommender
from .engagement import EngagementData, EngagementModel, Queries

#: the categorical columns of the flat row, first in every row
CATEGORICAL = ("specialty", "practice_setting", "region", "channel", "item_area", "item_type")


@dataclass(frozen=True)
class TabularSettings:
    """Hyper-parameters of the gradient-boosted classifier (scikit-learn's names); ``max_iter``
    is the most boosting rounds (early stopping on the validation window may end sooner).

    No field takes a notebook parameter's default (:data:`PARAMETERS` is empty): the grid is
    :data:`TABULAR_GRID` (``tabular_tune`` only says whether it is searched) and notebook 05
    always passes the run's ``seed``; ``seed`` here defaults to 0 as it always has."""

    learning_rate: float = 0.1
    max_iter: int = 300
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    seed: int = 0

    #: notebook parameter -> setting: none (see above)
    PARAMETERS = {}

    def validate(self) -> TabularSettings:
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")
        for name in ("max_iter", "max_leaf_nodes", "min_samples_leaf"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < (2 if name == "max_leaf_nodes" else 1):
                raise ValueError(f"{name} must be an integer >= {2 if name == 'max_leaf_nodes' else 1}, got {value!r}")
        if self.l2_regularization < 0:
            raise ValueError(f"l2_regularization must be >= 0, got {self.l2_regularization!r}")
        return self


#: rows per call of the classifier's ``predict_proba`` when scoring every cell, on one OpenMP
#: thread. scikit-learn walks every tree over all the rows of a call in turn, so rows that stay
#: in the CPU's cache (a few MB here) are walked faster than a block of 150,000; but each tree
#: is a parallel region, and many short regions on threads that spin while another process
#: holds the cores slowed the scoring of notebook 05 at small from 81 s to 592 s. One thread
#: on cache-sized blocks was the fastest of the settings measured on a loaded 2-core machine
#: (8.5 against 35 microseconds per row for the library's default); the values are the same.
#: Used when the trees are not compiled (:class:`CompiledTrees`); parallelism comes from
#: scoring blocks of HCPs on several Python threads instead (the tree walk releases the GIL).
PREDICT_ROWS = 10_000

#: rows on which the compiled trees are checked against scikit-learn's own ``predict_proba``
#: before they score anything, and the largest difference accepted (float rounding of the
#: sum of the trees' leaf values; a compiled model that differs more is not used)
COMPILED_CHECK_ROWS = 2_000
COMPILED_TOLERANCE = 1e-6

#: the most rows (of those given to :meth:`CompiledTrees.build`) on which tl2cgen counts how
#: often each branch is taken, so that the C code tells the compiler which side is likely
#: (``annotate_in``); counting took 1.35 s on 50,000 rows of the small scale's challenger (one
#: thread of a slow 2-core machine), and a few thousand rows already show which side is likely
COMPILED_ANNOTATE_ROWS = 20_000

#: tl2cgen's code-generation options (besides ``parallel_comp`` and ``annotate_in``):
#: ``quantize`` compares each feature's index among the model's sorted thresholds (an integer,
#: found once per row and feature by binary search) instead of the float at every node. On the
#: small scale's challenger (271 trees, 649,320 cells of 200 HCPs, one thread of a 2-core
#: machine) a cell took 9.05 microseconds, 4.64 quantized, 4.06 quantized with branch
#: annotation; the probabilities differ from scikit-learn's by at most 1.6e-15 either way.
COMPILE_PARAMS = {"quantize": 1}


class CompiledTrees:
    """The fitted classifier's trees compiled to C, for scoring every cell.

    Why: scoring walks every tree once per (HCP, item, channel) cell, about 210M cells for the
    challenger at the full scale (and about 120M pairs for chapter 9's reward model). On 600
    HCPs of the small scale's challenger (271 trees), scikit-learn's tree walk took 6.9
    microseconds per cell on one thread, the compiled trees 2.5 (1.4 on two threads), with the
    same probabilities; quantized (:data:`COMPILE_PARAMS`) and branch-annotated they take about
    half that (measured at :data:`COMPILE_PARAMS`). The compiling is left to the library made for
    it (tl2cgen, Treelite's code generator: Treelite imports the scikit-learn model, tl2cgen
    writes its trees as C and builds a shared library with the platform's compiler).

    Rows are read as float64, as scikit-learn reads them (in float32 a value next to a split's
    threshold may fall on the other side), and a categorical value the classifier never saw in
    fit is made missing, as scikit-learn's encoder makes it.

    The library is built in a temporary folder owned by the process that compiled it (removed
    with this object there); a copy of the object sent to another process (a pickle) carries
    the path and loads the same library. ``predict`` may be called from several threads: each
    thread loads its own predictor (tl2cgen's allows one caller at a time).

    :meth:`build` returns None, with a warning saying why, when no C compiler is found, the
    compilation fails, or the compiled trees differ from scikit-learn's by more than
    :data:`COMPILED_TOLERANCE` on the check rows; the caller then scores with scikit-learn."""

    def __init__(self, path: Path, seen: list[tuple[int, np.ndarray]] | None = None):
        self.path = Path(path)
        #: (column, the categories the classifier saw in fit) of each categorical feature
        self.seen = list(seen or [])
        self._local = threading.local()
        self._cleanup = None

    @classmethod
    def build(
        cls,
        classifier,
        check_rows: np.ndarray,
        n_threads: int = 1,
        expected: np.ndarray | None = None,
        what: str = "the tabular challenger's trees",
        fallback: str = "its cells are scored by scikit-learn, about 3 times slower",
    ) -> CompiledTrees | None:
        """Compile ``classifier`` (a fitted binary HistGradientBoostingClassifier) and check it
        on ``check_rows`` (a numeric matrix of its features, up to :data:`COMPILED_CHECK_ROWS` used)
        against ``expected`` (scikit-learn's probabilities of those rows, when the classifier
        was fitted on other input than the matrix, e.g. a DataFrame; default: computed from it)."""
        import shutil
        import tempfile
        import warnings
        import weakref

        toolchain = _c_toolchain()
        if toolchain is None:
            warnings.warn(
                f"no C compiler (gcc, clang or cc) found to compile {what}: {fallback}; install one to "
                "score with compiled trees",
                stacklevel=2,
            )
            return None
        folder = Path(tempfile.mkdtemp(prefix="hcp_tabular_trees_"))
        try:
            import tl2cgen
            import treelite

            path = folder / ("trees.dll" if os.name == "nt" else "trees.so")
            seen = _seen_categories(classifier)
            if not len(check_rows):
                raise ValueError("no rows to check the compiled trees on")
            model = treelite.sklearn.import_model(classifier)
            annotation = folder / "branches.json"
            tl2cgen.annotate_branch(
                model,
                tl2cgen.DMatrix(_as_read(check_rows[:COMPILED_ANNOTATE_ROWS], seen)),
                path=str(annotation),
                nthread=1,  # the caller may have limited OpenMP to one thread, which tl2cgen enforces
            )
            tl2cgen.export_lib(
                model,
                toolchain=toolchain,
                libpath=str(path),
                params={**COMPILE_PARAMS, "parallel_comp": max(1, n_threads) * 4, "annotate_in": str(annotation)},
                nthread=max(1, n_threads),
            )
            compiled = cls(path, seen)
            rows = np.ascontiguousarray(check_rows[:COMPILED_CHECK_ROWS], dtype=np.float64)
            reference = classifier.predict_proba(rows)[:, 1] if expected is None else expected[: len(rows)]
            difference = float(np.abs(compiled.predict(rows) - reference).max())
            if not difference <= COMPILED_TOLERANCE:
                raise RuntimeError(
                    f"the compiled trees differ from scikit-learn's by {difference:.2e} on {len(rows):,} rows"
                )
        except Exception as error:  # any failure: score with scikit-learn, and say why
            shutil.rmtree(folder, ignore_errors=True)
            warnings.warn(
                f"{what} could not be compiled ({type(error).__name__}: {error}); {fallback}",
                stacklevel=2,
            )
            return None
        compiled._cleanup = weakref.finalize(compiled, shutil.rmtree, str(folder), True)
        return compiled

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """P(positive class) of each row (float64; the rows are read as float64, as
        scikit-learn reads them: compared in float32, a value next to a split's threshold may
        fall on the other side)."""
        import tl2cgen

        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = tl2cgen.Predictor(str(self.path), nthread=1)
        if not len(rows):
            return np.zeros(0)
        out = predictor.predict(tl2cgen.DMatrix(_as_read(rows, self.seen)))
        return np.asarray(out, dtype=np.float64).reshape(len(rows), -1)[:, -1]

    def __getstate__(self) -> dict:
        return {"path": str(self.path), "seen": self.seen}

    def __setstate__(self, state: dict) -> None:
        self.__init__(Path(state["path"]), state["seen"])


def _as_read(rows: np.ndarray, seen: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """``rows`` as the compiled trees read them: float64 in C order (a copy when there are
    categorical columns), a category never seen in fit made missing (see :class:`CompiledTrees`)."""
    rows = np.array(rows, dtype=np.float64, order="C", copy=bool(seen) or None)
    for column, categories in seen:
        rows[~np.isin(rows[:, column], categories), column] = np.nan
    return rows


def _seen_categories(classifier) -> list[tuple[int, np.ndarray]]:
    """(column, categories seen in fit) of each categorical feature of a fitted
    HistGradientBoostingClassifier (its encoder's; none without categorical features)."""
    preprocessor = getattr(classifier, "_preprocessor", None)
    if preprocessor is None:
        return []
    _, encoder, categorical = preprocessor.transformers_[0]
    return [
        (int(column), np.asarray(seen, np.float64))
        for column, seen in zip(np.flatnonzero(categorical), encoder.categories_)
    ]


def _c_toolchain() -> str | None:
    """The C compiler tl2cgen is asked to use (None when this machine has none)."""
    import shutil

    if os.name == "nt":
        return "msvc"
    return next((name for name in ("gcc", "clang", "cc") if shutil.which(name)), None)


def scoring_threads() -> int:
    """Threads that score blocks of HCPs side by side: the OpenMP budget (``OMP_NUM_THREADS``,
    1 in notebook 05's worker processes) when set, else the CPUs this process may use."""
    budget = os.environ.get("OMP_NUM_THREADS", "").strip()
    if budget.isdigit() and int(budget) > 0:
        return int(budget)
    return usable_cpus()


#: the grid notebook 05 searches on the validation window
TABULAR_GRID = (
    {"learning_rate": 0.1, "max_leaf_nodes": 31},
    {"learning_rate": 0.05, "max_leaf_nodes": 31},
    {"learning_rate": 0.1, "max_leaf_nodes": 15},
    {"learning_rate": 0.1, "max_leaf_nodes": 63},
)


def flat_rows(x: dict[str, np.ndarray]) -> np.ndarray:
    """One float32 row per query of :func:`hcp_lib.models.features.query_inputs`: the
    :data:`CATEGORICAL` codes, then the numeric inputs (the queried channel's history only)."""
    own = x["channel_history"][np.arange(len(x["channel"])), x["channel"]]
    return np.column_stack(
        [x[name] for name in CATEGORICAL]
        + [x["hcp_numeric"], x["hcp_history"], own, x["item_numeric"], x["topics"], x["pair"]]
    ).astype(np.float32)


def feature_names(space: F.FeatureSpace) -> list[str]:
    """Names of the columns of :func:`flat_rows` for ``space``."""
    return (
        list(CATEGORICAL)
        + list(space.hcp_numeric_names)
        + list(F.HCP_HISTORY)
        + list(F.CHANNEL_HISTORY)
        + ["has_abstract", "series_part"]
        + [f"topic_{i}" for i in range(space.topics.shape[1])]
        + list(F.PAIR_FEATURES)
    )


class TabularEngagement(EngagementModel):
    """The tabular challenger as an engagement model (see the module docstring).

    With ``validation_start`` it fits on the exposures before it, stops early on the
    exposures from it to the cut-off and records ``validation_loss_`` and ``n_iter_``;
    without, it boosts exactly ``settings.max_iter`` rounds (the refit with the number of
    rounds chosen on validation).
    """

    name = TABULAR_NAME
    #: scoring walks the trees once per (HCP, item, channel) cell (compiled, :class:`CompiledTrees`,
    #: on :func:`scoring_threads` threads): notebook 05 spreads it over its worker processes when it has them
    score_in_workers = True

    def __init__(
        self,
        data: EngagementData,
        cf_model: Recommender | None = None,
        settings: TabularSettings = TabularSettings(),
        validation_start=None,
        hcp_chunk: int = 48,
        compile_trees: bool = True,
        n_threads: int | None = None,
    ):
        super().__init__(data, cf_model, validation_start)
        self.settings = settings
        self.hcp_chunk = hcp_chunk
        #: score with the trees compiled to C (:class:`CompiledTrees`) when this machine can;
        #: False: always with scikit-learn (the same values to float rounding)
        self.compile_trees = compile_trees
        #: threads scoring blocks of HCPs side by side (None: :func:`scoring_threads`)
        self.n_threads = n_threads

    def _fit_queries(self, queries: Queries, validation: Queries | None) -> None:
        """The steps of fitting the classifier: flat rows, the classifier, boosting."""
        s = self.settings.validate()
        started = time.perf_counter()
        x = flat_rows(self.inputs(queries, training=True))
        self.classifier_ = self._build_classifier(s, x.shape[1], early_stopping=validation is not None)
        self.compiled_, self.compile_failed_ = None, False  # compiled on the first scoring (_scorer)
        self.validation_loss_ = self._train(x, queries, validation)
        self.n_iter_ = int(self.classifier_.n_iter_)
        self.fit_seconds_ = time.perf_counter() - started

    @staticmethod
    def _build_classifier(s: TabularSettings, n_features: int, early_stopping: bool):
        """The unfitted classifier: the first :data:`CATEGORICAL` columns split natively."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        categorical = np.zeros(n_features, bool)
        categorical[: len(CATEGORICAL)] = True
        return HistGradientBoostingClassifier(
            learning_rate=s.learning_rate,
            max_iter=s.max_iter,
            max_leaf_nodes=s.max_leaf_nodes,
            min_samples_leaf=s.min_samples_leaf,
            l2_regularization=s.l2_regularization,
            categorical_features=categorical,
            early_stopping=early_stopping,
            scoring="loss",
            n_iter_no_change=20,
            random_state=s.seed,
        )

    def _train(self, x: np.ndarray, queries: Queries, validation: Queries | None) -> float | None:
        """Fit ``classifier_`` on ``x`` (stopping early on the validation window when there is
        one); the validation log-loss (None without a window)."""
        from threadpoolctl import threadpool_limits

        from ..metrics import log_loss_value

        # one OpenMP thread, as when scoring (see PREDICT_ROWS): boosting is a long run of short
        # parallel steps that crawl whenever another process holds a core (a grid point fitted
        # in 4 s on a quiet machine took 50 s beside another job), and the fit is then the
        # same in the notebook's process and in its workers
        with threadpool_limits(limits=1, user_api="openmp"):
            if validation is None:
                self.classifier_.fit(x, queries.y)
                return None
            x_val = flat_rows(self.inputs(validation, training=True))
            self.classifier_.fit(x, queries.y, X_val=x_val, y_val=validation.y)
            return log_loss_value(validation.y, self.classifier_.predict_proba(x_val)[:, 1])

    def _scorer(self, rows: np.ndarray):
        """The function scoring float32 flat rows: the compiled trees, built on the first call
        (``rows`` are then the check rows of :meth:`CompiledTrees.build`), else scikit-learn's
        ``predict_proba`` on blocks of :data:`PREDICT_ROWS` rows (its OpenMP threads are limited
        to one by the caller)."""
        if self.compile_trees and self.compiled_ is None and not self.compile_failed_:
            self.compiled_ = CompiledTrees.build(self.classifier_, rows, n_threads=self._threads())
            self.compile_failed_ = self.compiled_ is None
        if self.compile_trees and self.compiled_ is not None:
            return self.compiled_.predict
        classifier = self.classifier_
        return lambda block: np.concatenate(
            [
                classifier.predict_proba(block[start : start + PREDICT_ROWS])[:, 1]
                for start in range(0, len(block), PREDICT_ROWS)
            ]
        )

    def prepare_scoring(self, hcp_ids, exclude: np.ndarray | None = None) -> TabularEngagement:
        """Compile the trees here (checked on the cells of the first of ``hcp_ids`` with a cell
        not excluded), once, before copies of the model go to worker processes that then load
        the same library."""
        first = 0 if exclude is None else int(np.argmax(~np.asarray(exclude, bool).all(axis=1)))
        part = slice(first, first + 1)
        self.score_channels(np.asarray(hcp_ids, dtype=object)[part], None if exclude is None else exclude[part])
        return self

    @property
    def scoring_engine_(self) -> str:
        """Which code scored the cells: ``"compiled trees (tl2cgen)"`` or ``"scikit-learn"``."""
        return "compiled trees (tl2cgen)" if self.compile_trees and self.compiled_ is not None else "scikit-learn"

    def _threads(self) -> int:
        return max(1, int(self.n_threads or scoring_threads()))

    def _predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        rows = flat_rows(inputs)
        if not len(rows):
            return np.zeros(0)
        with threadpool_limits(limits=1, user_api="openmp"):  # see PREDICT_ROWS
            return self._scorer(rows)(rows)

    def _predict_snapshot(self, snapshot: F.Snapshot, include: np.ndarray | None = None) -> np.ndarray:
        # A tree ensemble has no additive structure to broadcast: one row per (HCP, item,
        # channel) cell, built and predicted a few dozen HCPs at a time, skipping the cells
        # outside ``include``; blocks of HCPs are scored on several threads (numpy's copies and
        # the tree walks release the GIL; each block writes its own HCPs' cells).
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        n_hcp, n_item, n_channel = len(snapshot.rows), len(self.space_.content_ids), len(CHANNELS)
        out = np.zeros((n_hcp, n_item, n_channel), np.float32)
        item = snapshot.item
        hcp_names = ("specialty", "practice_setting", "region", "hcp_numeric", "hcp_history", "channel_history")

        def block_rows(first: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            part = slice(first, first + self.hcp_chunk)
            pair = snapshot.pair(part)
            keep = np.ones((pair.shape[0], n_item), bool) if include is None else np.asarray(include[part], bool)
            cell_h, cell_c = np.nonzero(keep)
            idx_h = np.repeat(cell_h, n_channel)
            idx_c = np.repeat(cell_c, n_channel)
            x = {name: value[part][idx_h] for name, value in snapshot.hcp.items() if name in hcp_names}
            x.update({name: value[idx_c] for name, value in item.items() if name != "item"})
            x["channel"] = np.tile(np.arange(n_channel), len(cell_h)).astype(np.int32)
            x["pair"] = pair[idx_h, idx_c]
            return first + cell_h, cell_c, flat_rows(x)

        def score_block(first: int, scorer) -> None:
            cell_h, cell_c, rows = block_rows(first)
            if len(rows):
                out[cell_h, cell_c] = scorer(rows).reshape(len(cell_h), n_channel)

        starts = list(range(0, n_hcp, self.hcp_chunk))
        with threadpool_limits(limits=1, user_api="openmp"):  # see PREDICT_ROWS
            # blocks here until one has cells: it compiles the trees (checked on its rows) before the threads start
            scorer = None
            while starts and scorer is None:
                cell_h, cell_c, rows = block_rows(starts.pop(0))
                if len(rows):
                    scorer = self._scorer(rows)
                    out[cell_h, cell_c] = scorer(rows).reshape(len(cell_h), n_channel)
            threads = min(self._threads(), len(starts))
            if threads <= 1:
                for first in starts:
                    score_block(first, scorer)
            elif starts:
                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(lambda first: score_block(first, scorer), starts))  # raises a block's error
        return out

    def get_params(self) -> dict:
        return asdict(self.settings)
