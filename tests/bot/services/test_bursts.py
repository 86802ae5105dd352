"""Bursts: one member's messages in one place, each within the window of the last, are judged as one text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.services.bursts import MAX_MESSAGES, Bursts
from bot.services.message_intake import MessageRef

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)


def _ref(message_id: int, author: int = 7, channel: int = 2) -> MessageRef:
    return MessageRef(message_id, 1, channel, author)


def test_lines_within_the_window_are_joined_in_posting_order() -> None:
    bursts = Bursts(WINDOW)
    assert bursts.add(_ref(10), T0, "i can't do this anymore") == "i can't do this anymore"
    assert (
        bursts.add(_ref(11), T0 + timedelta(minutes=1), "like really")
        == "i can't do this anymore\nlike really"
    )
    joined = bursts.add(_ref(12), T0 + timedelta(minutes=5), "the pills are right here")
    assert joined == "i can't do this anymore\nlike really\nthe pills are right here"


def test_a_quiet_gap_longer_than_the_window_starts_a_new_burst() -> None:
    bursts = Bursts(WINDOW)
    bursts.add(_ref(10), T0, "first")
    assert bursts.add(_ref(11), T0 + WINDOW + timedelta(seconds=1), "later") == "later"


def test_a_message_judged_late_sees_only_what_came_before_it() -> None:
    bursts = Bursts(WINDOW)
    bursts.add(_ref(10), T0, "one")
    bursts.add(_ref(12), T0, "three")
    assert bursts.add(_ref(11), T0, "two") == "one\ntwo"
    assert bursts.add(_ref(12), T0, "three") == "one\ntwo\nthree"  # added again: nothing changes twice


def test_other_members_and_other_places_have_their_own_bursts() -> None:
    bursts = Bursts(WINDOW)
    bursts.add(_ref(10), T0, "mine")
    assert bursts.add(_ref(11, author=8), T0, "theirs") == "theirs"
    assert bursts.add(_ref(12, channel=3), T0, "in a thread") == "in a thread"


def test_deleted_and_forgotten_messages_leave_memory() -> None:
    bursts = Bursts(WINDOW)
    bursts.add(_ref(10), T0, "deleted soon")
    bursts.add(_ref(11), T0, "kept")
    bursts.forget([10])
    assert bursts.add(_ref(12), T0, "next") == "kept\nnext"
    bursts.forget_member(1, 7)
    assert len(bursts) == 0


def test_a_burst_holds_a_bounded_number_of_lines() -> None:
    bursts = Bursts(WINDOW)
    for number in range(MAX_MESSAGES + 5):
        joined = bursts.add(_ref(100 + number), T0, f"line {number}")
    assert joined.count("\n") == MAX_MESSAGES - 1 and joined.endswith(f"line {MAX_MESSAGES + 4}")


def test_a_zero_window_judges_each_message_alone() -> None:
    bursts = Bursts(timedelta(0))
    bursts.add(_ref(10), T0, "one")
    assert bursts.add(_ref(11), T0, "two") == "two"


def test_a_message_judged_after_many_later_ones_still_reads_its_own_words() -> None:
    bursts = Bursts(WINDOW)
    for number in range(1, MAX_MESSAGES + 10):
        bursts.add(_ref(100 + number), T0, f"line {number}")
    assert bursts.add(_ref(100), T0, "the first line") == "the first line"
