"""Tiny risk models shared by the risk tests (built once per session: each takes well under a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_risk import (
    PEERCARE_LABELS,
    PUBLISHED_LABELS,
    SINGLE_LABEL,
    build_tiny_risk_model,
)


@pytest.fixture(scope="session")
def multi_label_model(tmp_path_factory) -> Path:
    return build_tiny_risk_model(tmp_path_factory.mktemp("risk-multi"), labels=PEERCARE_LABELS)


@pytest.fixture(scope="session")
def single_label_model(tmp_path_factory) -> Path:
    return build_tiny_risk_model(
        tmp_path_factory.mktemp("risk-single"), labels=PUBLISHED_LABELS, problem_type=SINGLE_LABEL
    )


@pytest.fixture(scope="session")
def short_window_model(tmp_path_factory) -> Path:
    """A random model that reads at most 24 positions: long texts must be windowed."""
    return build_tiny_risk_model(tmp_path_factory.mktemp("risk-short"), max_position_embeddings=24, seed=3)
