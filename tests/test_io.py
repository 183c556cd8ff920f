"""Atomic writes and schema errors that name file, column and value."""

import pandas as pd
import pandera.pandas as pa
import pytest

from hcp_lib import io
from hcp_lib.io import DataValidationError, atomic_path, read_json, read_parquet, write_json, write_parquet

SCHEMA = pa.DataFrameSchema(
    {"hcp_id": pa.Column(str), "score": pa.Column(float, pa.Check.in_range(0, 1))}, name="score", strict=True
)


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "table.json"
    write_json({"version": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert read_json(target) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]


def test_parquet_round_trip(tmp_path):
    df = pd.DataFrame({"hcp_id": ["SYN12345678"], "score": [0.25]})
    path = write_parquet(df, tmp_path / "sub" / "scores.parquet", SCHEMA)
    back = read_parquet(path, SCHEMA)
    assert back["hcp_id"].tolist() == ["SYN12345678"] and back["score"].tolist() == [0.25]


def test_schema_error_names_file_column_and_value(tmp_path):
    bad = pd.DataFrame({"hcp_id": ["1"], "score": [1.5]})
    target = tmp_path / "scores.parquet"
    with pytest.raises(DataValidationError, match=r"scores\.parquet.*column 'score': value 1\.5"):
        write_parquet(bad, target, SCHEMA)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "scores.parquet"
    pd.DataFrame({"hcp_id": ["1"]}).to_parquet(path)
    with pytest.raises(DataValidationError, match="missing column 'score'"):
        read_parquet(path, SCHEMA)


def test_json_refuses_nan_and_names_missing_files(tmp_path):
    with pytest.raises(ValueError):
        write_json({"x": float("nan")}, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_json(tmp_path / "nope.json")


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        path = write_json({"a": 1}, tmp_path / "m.json")
    finally:
        os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_check_finite_names_source_count_kinds_and_first_position():
    import numpy as np

    from hcp_lib.io import NonFiniteError, check_finite

    values = np.array([[0.1, np.nan, np.inf], [1.0, -np.inf, 2.0]])
    with pytest.raises(
        NonFiniteError,
        match=r"^model 'hybrid' returned 3 non-finite scores \(1 NaN, 1 inf, 1 -inf\) "
        r"out of 6, first at HCP 'SYN00000001', position \(0, 1\); it cannot be "
        r"ranked — check its inputs and training$",
    ):
        check_finite(values, "model 'hybrid'", labels=np.array(["SYN00000001", "SYN00000002"]), label_kind="HCP")
    # one value: singular noun; a 1-D array with labels names the label alone
    with pytest.raises(
        NonFiniteError,
        match=r"^f\.json holds 1 non-finite metric value \(1 NaN\) out of 2, first at "
        r"metrics\['m'\]; fix it$",
    ):
        check_finite(
            [0.5, float("nan")],
            "f.json",
            "metric value",
            verb="holds",
            labels=["x", "metrics['m']"],
            consequence="fix it",
        )
    # only the cells of the mask are checked (and counted); NaN may be allowed as "undefined"
    assert check_finite(values, "m", only=np.array([[True, False, False], [True, False, True]])).shape == (2, 3)
    with pytest.raises(NonFiniteError, match=r"1 non-finite score \(1 -inf\) out of 2, first at position \(1, 1\)"):
        check_finite(values, "m", only=np.array([[True, False, False], [False, True, False]]))
    with pytest.raises(NonFiniteError, match=r"2 non-finite per-HCP values \(1 inf, 1 -inf\) out of 6"):
        check_finite(values, "mean_terms", "per-HCP value", allow_nan=True)
    # the caller's error class (a DataValidationError for a file, say); the values come back as float64
    with pytest.raises(DataValidationError, match="1 non-finite probability"):
        check_finite([np.nan], "p.parquet", "probability", error=DataValidationError)
    out = check_finite([1, 2], "m")
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.0]


def test_require_json_kind_names_the_file_the_path_and_what_was_expected():
    assert io.require_json_kind(3, int, "n", "x.json") == 3
    assert io.is_json_kind(3, float) and not io.is_json_kind(True, int) and not io.is_json_kind(True, float)
    path = io.json_path("metrics", "hybrid", "auc")
    assert path == "metrics['hybrid']['auc']"
    with pytest.raises(
        io.DataValidationError, match=r"^x\.json: metrics\['hybrid'\]\['auc'\] is 'high'; expected a number$"
    ):
        io.require_json_kind("high", float, path, "x.json")

    class StageError(ValueError):
        pass

    with pytest.raises(StageError, match=r"y\.json: root is a list \(2 entries\); expected an object of model"):
        io.require_json_kind([1, 2], dict, "root", "y.json", "an object of model -> entry", error=StageError)
    assert io.describe_json([1, 2]) == "a list (2 entries)"
