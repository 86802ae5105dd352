"""Dataset parity: the authors' splits are kept, DepSeverity joins Dreaddit without leaking test texts."""

from __future__ import annotations

import numpy as np
import pytest

from inference.risk.data import DEFAULT_DATA_DIR, UNLABELLED, load_risk_table, normalise_text

pytestmark = pytest.mark.skipif(
    not (DEFAULT_DATA_DIR / "dreaddit").is_dir(), reason="the shared public data is not on this machine"
)


@pytest.fixture(scope="module")
def table():
    return load_risk_table()


def test_authors_test_splits_are_kept_whole(table) -> None:
    test = table.split == "test"
    assert int((test & (table.source == "sdcnl")).sum()) == 379
    assert int((test & (table.source == "dreaddit")).sum()) == 715


def test_no_training_text_appears_in_the_test_split(table) -> None:
    test = {normalise_text(t) for t, s in zip(table.texts, table.split, strict=True) if s == "test"}
    seen = [normalise_text(t) for t, s in zip(table.texts, table.split, strict=True) if s != "test"]
    assert not test.intersection(seen)


def test_depression_comes_from_depseverity_on_dreaddit_rows_only(table) -> None:
    depression = table.column("depression")
    assert (depression[table.source == "sdcnl"] == UNLABELLED).all()
    dreaddit_test = (table.source == "dreaddit") & (table.split == "test")
    assert (depression[dreaddit_test] != UNLABELLED).mean() > 0.99


def test_dev_split_keeps_each_dreaddit_post_on_one_side(table) -> None:
    dreaddit = table.source == "dreaddit"
    sides: dict[str, set[str]] = {}
    for group, split in zip(table.group[dreaddit], table.split[dreaddit], strict=True):
        sides.setdefault(group, set()).add(split)
    assert all(len(split) == 1 or split == {"test"} for split in sides.values())


def test_silver_suicidal_negatives_are_marked_and_weighted_down(table) -> None:
    suicidal = table.label_names.index("suicidal")
    silver = table.silver[:, suicidal]
    assert silver[table.source == "dreaddit"].all() and not silver[table.source != "dreaddit"].any()
    assert np.all(table.weights[silver, suicidal] < 1)
