"""Fixtures for the empathy tests: made-up seeker posts and replies (never dataset text)."""

from __future__ import annotations

import pytest

SEEKERS = [
    "I failed my exam again and I feel like giving up.",
    "My dog died last week and the house feels empty.",
    "I can't sleep, my thoughts keep racing every night and I am so tired of it all.",
]
REPLIES = [
    "That sounds really hard. What happened?",
    "I'm so sorry 💙",
    "Have you tried writing your thoughts down before bed? It helped me a lot when I was stressed.",
]


@pytest.fixture
def seekers() -> list[str]:
    return list(SEEKERS)


@pytest.fixture
def replies() -> list[str]:
    return list(REPLIES)
