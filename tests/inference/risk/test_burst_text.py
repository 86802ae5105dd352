"""How a burst reads to the risk models, and ESConv judged as the bot judges it (as bursts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.risk.burst_text import MAX_CHARS, MAX_MESSAGES, burst_text
from inference.risk.chat_eval import esconv_bursts, esconv_turns


def test_a_burst_reads_its_messages_oldest_first_one_a_line() -> None:
    assert burst_text(["i can't do this anymore", "like really", "the pills are right here"]) == (
        "i can't do this anymore\nlike really\nthe pills are right here"
    )


def test_a_long_burst_keeps_its_newest_messages() -> None:
    lines = [f"message {n}" for n in range(MAX_MESSAGES + 5)]
    assert burst_text(lines).splitlines() == lines[-MAX_MESSAGES:]
    long = ["x" * (MAX_CHARS // 2)] * 3 + ["the newest"]
    assert burst_text(long).splitlines() == ["x" * (MAX_CHARS // 2), "the newest"]
    assert burst_text(["y" * (MAX_CHARS + 10)]) == "y" * (MAX_CHARS + 10)  # the newest is always read whole


@pytest.fixture
def esconv(tmp_path) -> Path:
    data = tmp_path / "esconv-dev"
    data.mkdir()
    (data / "seeker_turns.csv").write_text(
        "conversation,turn,text\n1,0,hi\n1,2,i lost my job\n1,4,how long does it take\n3,0,hello there\n"
        "2,0,an even conversation\n",
        encoding="utf-8",
    )
    return tmp_path


def test_esconv_turns_read_as_bursts_join_only_their_own_conversation_s_earlier_turns(esconv) -> None:
    assert [text for text, _ in esconv_turns(esconv, "heldout")] == [
        "hi",
        "i lost my job",
        "how long does it take",
        "hello there",
    ]
    assert esconv_bursts(esconv, "heldout") == [
        "hi",
        "hi\ni lost my job",
        "hi\ni lost my job\nhow long does it take",
        "hello there",
    ]
