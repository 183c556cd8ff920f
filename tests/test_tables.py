"""How the book shows a table (hcp_lib.tables)."""

import numpy as np
import pandas as pd
import pytest

from hcp_lib import tables


def test_numbers_missing_values_dates_and_names_read_one_way():
    frame = pd.DataFrame(
        {
            "n_hcps": [1234, 5],
            "share": [0.123456, np.nan],
            "when": [pd.Timestamp("2025-01-01"), pd.Timestamp("2025-01-02 10:00")],
            "ok": [True, False],
            "label": pd.array(["a", pd.NA], dtype="string"),
            "total": [78315.0, np.inf],
        },
        index=["x", "y"],
    )
    shown = tables.for_reading(frame, rename={"ok": "passed"})
    assert list(shown.columns) == ["n hcps", "share", "when", "passed", "label", "total"]
    assert shown.loc["x"].tolist() == ["1,234", "0.123", "2025-01-01", "yes", "a", "78,315"]
    assert shown.loc["y"].tolist() == ["5", "–", "2025-01-02 10:00", "no", "–", "–"]
    assert list(shown.index) == ["x", "y"]
    assert tables.for_reading(pd.Series([0.5], name="value"), digits=1).iloc[0, 0] == "0.5"


def test_a_table_wider_than_the_page_is_refused_naming_its_columns():
    wide = pd.DataFrame([range(9)], columns=[f"c{i}" for i in range(9)])
    with pytest.raises(ValueError, match=r"at most 8 columns; this one has 9 \(c0, c1, .*c8\)"):
        tables.for_reading(wide)
    assert tables.for_reading(wide, max_columns=9).shape == (1, 9)
