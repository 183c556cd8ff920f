"""One default per setting: every settings field that corresponds to a notebook parameter takes
its default from hcp_lib.config (issue 16), and every parameter of the notebooks that configure
those settings is either mapped to a field or named here as not a setting."""

import ast
import inspect
import textwrap
from dataclasses import fields, replace

import pytest

from hcp_lib import config
from hcp_lib.models import hybrid, tabular
from hcp_lib.pipeline import declared_parameters
from hcp_lib.stages import topics

#: settings class -> the notebook whose parameters it is built from
SETTINGS = {
    hybrid.HybridSettings: "05_hybrid_lstm.ipynb",
    tabular.TabularSettings: "05_hybrid_lstm.ipynb",
    topics.PreprocessSettings: "03_topic_modeling.ipynb",
    topics.LdaSettings: "03_topic_modeling.ipynb",
}

#: parameters of those notebooks, in the families the settings cover, that are no setting's default
NOT_SETTINGS = {
    "hybrid_sequence_encoder": "'compare' fits both VARIANTS; an encoder name is applied by from_parameters",
    "hybrid_ablations": "whether notebook 05 fits the ABLATIONS",
    "hybrid_workers": "processes that fit the hybrids side by side (es.HybridPool), not a model setting",
    "tabular_tune": "whether notebook 05 searches TABULAR_GRID",
    "n_topics": "decided in notebook 03 (None: the coherence sweep)",
    "topic_sweep_min": "the sweep's range, not an LDA setting",
    "topic_sweep_max": "the sweep's range, not an LDA setting",
    "topic_sweep_step": "the sweep's range, not an LDA setting",
    "topic_workers": "processes of the sweep (results do not depend on it)",
}
#: the parameter families above (the prefixes the settings classes cover)
FAMILIES = ("hybrid_", "max_seq_len", "tabular_", "topic_", "lda_", "spacy_model", "n_topics")


def mapped(cls) -> dict[str, str]:
    return cls.PARAMETERS


@pytest.mark.parametrize("cls", list(SETTINGS), ids=lambda c: c.__name__)
def test_every_mapped_field_has_the_parameter_default(cls):
    names = {f.name: f for f in fields(cls)}
    for parameter, setting in mapped(cls).items():
        assert parameter in config.PARAMS, f"{cls.__name__}.PARAMETERS names unknown parameter {parameter!r}"
        assert setting in names, f"{cls.__name__}.PARAMETERS maps {parameter!r} to unknown field {setting!r}"
        assert names[setting].default == config.default(parameter), (cls.__name__, setting, parameter)
        assert getattr(cls(), setting) == config.default(parameter)
    assert len(set(mapped(cls).values())) == len(mapped(cls)), f"{cls.__name__}: a field is mapped twice"


@pytest.mark.parametrize("cls", list(SETTINGS), ids=lambda c: c.__name__)
def test_mapped_fields_state_no_literal_default(cls):
    """A mapped field's default is read from hcp_lib.config, never typed again in the class."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    defaults = {
        node.target.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None
    }
    for setting in mapped(cls).values():
        assert not isinstance(defaults[setting], ast.Constant), (
            f"{cls.__name__}.{setting} has the literal default {ast.unparse(defaults[setting])}; take it from "
            f"hcp_lib.config.default (through {cls.__name__}.PARAMETERS)"
        )


@pytest.mark.parametrize("notebook", sorted(set(SETTINGS.values())))
def test_every_notebook_parameter_of_the_settings_is_mapped_or_not_a_setting(notebook):
    declared = declared_parameters(config.NOTEBOOKS_DIR / notebook)
    covered = {p for cls, nb in SETTINGS.items() if nb == notebook for p in mapped(cls)}
    for parameter in declared:
        if parameter.startswith(FAMILIES):
            assert parameter in covered or parameter in NOT_SETTINGS, (
                f"{notebook} declares {parameter!r}: map it in a settings class's PARAMETERS or list it in NOT_SETTINGS"
            )
    assert not covered & set(NOT_SETTINGS)


def test_notebook_05_hybrid_parameters_are_all_accounted_for():
    declared = declared_parameters(config.NOTEBOOKS_DIR / "05_hybrid_lstm.ipynb")
    hybrid_parameters = [p for p in declared if p.startswith("hybrid_") or p == "max_seq_len"]
    assert "max_seq_len" in hybrid_parameters and "hybrid_epochs" in hybrid_parameters
    for parameter in hybrid_parameters:
        assert parameter in hybrid.HybridSettings.PARAMETERS or parameter in NOT_SETTINGS, parameter


def test_settings_from_the_default_parameters_are_the_default_settings():
    params = {name: config.default(name) for name in config.PARAMS}
    assert hybrid.HybridSettings.from_parameters(params) == hybrid.HybridSettings()


def test_variants_and_ablations_change_only_what_they_name():
    """Variants and ablations are changes applied with dataclasses.replace to the notebook's
    settings, never a second list of defaults."""
    names = {f.name for f in fields(hybrid.HybridSettings)}
    base = hybrid.HybridSettings(epochs=3, seed=5)
    changes = [*hybrid.VARIANTS.values(), *(change for change, _ in hybrid.ABLATIONS.values())]
    for change in changes:
        assert set(change) <= names
        assert not set(change) & set(hybrid.HybridSettings.PARAMETERS.values()), change
        varied = replace(base, **change)
        assert {n for n in names if getattr(varied, n) != getattr(base, n)} <= set(change)
        assert (varied.epochs, varied.seed) == (3, 5)


def test_every_settings_class_is_built_from_parameters_by_one_mapping():
    params = {name: config.default(name) for name in config.PARAMS}
    params.update(topic_min_doc_freq=3, lda_passes=7, max_seq_len=9, hybrid_sequence_encoder="gru")
    preprocess = topics.PreprocessSettings.from_parameters(params)
    assert (preprocess.min_doc_freq, preprocess.max_doc_share) == (3, config.default("topic_max_doc_share"))
    assert topics.LdaSettings.from_parameters(params).passes == 7
    hybrid_settings = hybrid.HybridSettings.from_parameters(params, epochs=5)
    assert (hybrid_settings.sequence_length, hybrid_settings.sequence_encoder, hybrid_settings.epochs) == (9, "gru", 5)
    # a parameter the caller did not pass keeps the field's default
    assert topics.LdaSettings.from_parameters({}) == topics.LdaSettings()
