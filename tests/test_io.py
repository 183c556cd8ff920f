"""Atomic writes and schema errors that name file, column and value."""

import pandas as pd
import pandera.pandas as pa
import pytest

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
    df = pd.DataFrame({"hcp_id": ["1234567893"], "score": [0.25]})
    path = write_parquet(df, tmp_path / "sub" / "scores.parquet", SCHEMA)
    back = read_parquet(path, SCHEMA)
    assert back["hcp_id"].tolist() == ["1234567893"] and back["score"].tolist() == [0.25]


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
