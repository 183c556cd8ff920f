"""The temporal split: window bounds, error cases, and that nothing after the cut-off reaches a model."""

import numpy as np
import pandas as pd
import pytest

from hcp_lib.models import baselines
from hcp_lib.split import (
    SplitError,
    TemporalSplit,
    check_windows_have_rows,
    training_data,
    window_rows,
    windows_from_days,
)
from tests.cf_fixtures import SPLIT, block_world, catalogue, hcps, interactions


def test_windows_from_days_puts_test_last_and_validation_before_it():
    split = windows_from_days(
        pd.Timestamp("2024-01-01 08:30"), pd.Timestamp("2024-12-31 17:00"), valid_days=30, test_days=60
    )
    assert split.train_start == pd.Timestamp("2024-01-01")
    assert split.test_end == pd.Timestamp("2025-01-01")
    assert split.test_start == pd.Timestamp("2024-11-02")
    assert split.valid_start == pd.Timestamp("2024-10-03")
    assert split.window("validation") == (split.valid_start, split.test_start)
    assert TemporalSplit.from_dict(split.to_dict()) == split


def test_windows_from_days_refuses_a_horizon_without_training_days():
    with pytest.raises(SplitError, match=r"2024-01-01 .. 2024-01-21 is too short.*before 2024-01-01"):
        windows_from_days(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-21"), valid_days=10, test_days=10)


def test_overlapping_or_empty_windows_name_the_dates():
    with pytest.raises(SplitError, match=r"validation window \[2024-03-01 00:00:00, 2024-02-01 00:00:00\)"):
        TemporalSplit("2024-01-01", "2024-03-01", "2024-02-01", "2024-04-01")
    with pytest.raises(SplitError, match=r"test window \[2024-03-15 00:00:00, 2024-03-15 00:00:00\) is empty"):
        TemporalSplit("2024-01-01", "2024-03-01", "2024-03-15", "2024-03-15")


def test_window_rows_respect_half_open_bounds():
    rows = interactions(
        [
            ("h00", "1001", "2024-02-29 23:59", True),
            ("h00", "1002", "2024-03-01 00:00", True),
            ("h00", "1003", "2024-03-15 00:00", True),
            ("h00", "1004", "2024-03-31 23:59", False),
        ]
    )
    assert window_rows(rows, SPLIT, "train")["content_id"].tolist() == ["1001"]
    assert window_rows(rows, SPLIT, "validation")["content_id"].tolist() == ["1002"]
    assert window_rows(rows, SPLIT, "test")["content_id"].tolist() == ["1003", "1004"]


def test_a_window_without_rows_is_an_error_naming_its_dates():
    rows = interactions([("h00", "1001", "2024-01-05", True), ("h00", "1002", "2024-03-20", True)])
    with pytest.raises(SplitError, match=r"validation window \[2024-03-01 00:00:00, 2024-03-15 00:00:00\) holds no"):
        check_windows_have_rows(rows, SPLIT)


def test_training_data_keeps_only_the_past_and_hides_future_release_dates():
    rows = interactions([("h00", "1001", "2024-01-05", True), ("h00", "1002", "2024-03-01", True)])
    train = training_data(rows, hcps(), catalogue(), SPLIT.valid_start)
    assert train.interactions["content_id"].tolist() == ["1001"]
    assert train.catalogue["release_date"].isna().tolist() == [False] * 5 + [True]
    assert train.content_ids.tolist() == catalogue()["content_id"].tolist()


def test_an_empty_training_window_names_the_cutoff():
    rows = interactions([("h00", "1001", "2024-03-05", True)])
    with pytest.raises(SplitError, match=r"before 2024-03-01 00:00:00 holds no interactions"):
        training_data(rows, hcps(), catalogue(), SPLIT.valid_start)


def test_training_data_names_a_missing_column():
    with pytest.raises(KeyError, match="lacks column 'engaged'"):
        training_data(block_world().drop(columns="engaged"), hcps(), catalogue(), SPLIT.valid_start)


def _future_rows() -> pd.DataFrame:
    """Validation and test rows that, if they leaked, would change every model."""
    rows = []
    for h in range(8):
        rows += [
            (f"h{h:02d}", "1003", "2024-03-05", True, "conference_event"),
            (f"h{h:02d}", "1006", "2024-03-20", True, "in_person_meeting"),
        ]
    return interactions(rows)


def _perturb_after(rows: pd.DataFrame, cutoff: pd.Timestamp, rng: np.random.Generator) -> pd.DataFrame:
    """Shuffle ids and flip labels of rows at or after ``cutoff``, and add more such rows."""
    rows = rows.copy()
    later = rows["exposed_at"] >= cutoff
    for column in ("hcp_id", "content_id", "channel"):
        rows.loc[later, column] = rng.permutation(rows.loc[later, column].to_numpy())
    rows.loc[later, "engaged"] = ~rows.loc[later, "engaged"]
    extra = interactions([("h05", "1002", "2024-03-25", True, "webinar")] * 20)
    extra["exposed_at"] = cutoff + pd.Timedelta(hours=1)
    return pd.concat([rows, extra], ignore_index=True)


@pytest.mark.parametrize("cutoff", [SPLIT.valid_start, SPLIT.test_start])
def test_perturbing_rows_after_the_cutoff_leaves_every_fitted_model_unchanged(cutoff):
    rows = pd.concat([block_world(), _future_rows()], ignore_index=True)
    perturbed = _perturb_after(rows, cutoff, np.random.default_rng(7))
    assert not perturbed.equals(rows)
    later_catalogue = catalogue()
    later_catalogue.loc[5, "release_date"] = pd.Timestamp("2024-03-31")  # a test-window fact
    features = pd.DataFrame(np.eye(6)[:, :4] + 0.1, index=catalogue()["content_id"].astype(str))
    hcp_ids = hcps()["hcp_id"].tolist()
    factories = {**baselines.content_factories(seed=3, item_features=features), **baselines.channel_factories()}
    for name, factory in factories.items():
        model = factory().fit(training_data(rows, hcps(), catalogue(), cutoff))
        again = factory().fit(training_data(perturbed, hcps(), later_catalogue, cutoff))
        if isinstance(model, baselines.ChannelRecommender):
            np.testing.assert_array_equal(model.channel_scores(hcp_ids), again.channel_scores(hcp_ids), err_msg=name)
        else:
            np.testing.assert_array_equal(model.score(hcp_ids), again.score(hcp_ids), err_msg=name)


def test_the_evaluated_population_leaves_opted_out_hcps_out():
    import pandas as pd

    from hcp_lib.split import SplitError, evaluated_hcps

    hcps = pd.DataFrame({"hcp_id": ["a", "b", "c"], "opted_out": [False, True, False]})
    assert evaluated_hcps(hcps)["hcp_id"].tolist() == ["a", "c"]
    with pytest.raises(SplitError, match="no 'opted_out' column"):
        evaluated_hcps(hcps.drop(columns="opted_out"))
