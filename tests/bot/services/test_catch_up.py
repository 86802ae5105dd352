"""Start-up catch-up: where each support location's unread history starts, and what of it is processed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from discord.utils import snowflake_time, time_snowflake

from bot.db.session import Database
from bot.services import audit, catch_up, message_inbox, privacy, support_channels
from bot.services.catch_up import CatchUpRange

# A faster `database` fixture (a copy of one migrated file) for this module.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401

GUILD = 1000
OTHER_GUILD = 2000
CHANNEL = 10
THREAD = 11
ALICE = 7
MODERATOR = 9
CONNECTED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def _at(hours_before_connect: float) -> int:
    """A message id created that many hours before the connection."""
    return time_snowflake(CONNECTED - timedelta(hours=hours_before_connect)) + 1


def _range(*, newest_seen_id: int | None = None, opted_in_hours_ago: float = 100, erased_hours_ago=None):
    return catch_up.catch_up_range(
        newest_seen_id=newest_seen_id,
        opted_in_at=CONNECTED - timedelta(hours=opted_in_hours_ago),
        erased_at=None if erased_hours_ago is None else CONNECTED - timedelta(hours=erased_hours_ago),
        connected_at=CONNECTED,
        lookback=DAY,
    )


# -- the anchor ------------------------------------------------------------------------------------------


def test_history_is_read_from_a_minute_before_the_newest_message_the_inbox_saw():
    seen = _at(2)
    window = _range(newest_seen_id=seen)
    assert snowflake_time(window.after_id) == snowflake_time(seen) - catch_up.SEEN_MARGIN
    assert catch_up.choose([_at(2.1), _at(2) - 1000, seen + 1], window).take == (_at(2) - 1000, seen + 1)


def test_channel_without_inbox_rows_starts_at_its_opt_in_not_at_its_first_message():
    window = _range(newest_seen_id=None, opted_in_hours_ago=1)
    assert snowflake_time(window.after_id) == CONNECTED - timedelta(hours=1)
    assert _at(1.5) < window.after_id < _at(0.5)


def test_message_from_the_millisecond_of_the_opt_in_is_not_caught_up():
    opted_in = CONNECTED - timedelta(hours=1)
    same_millisecond = time_snowflake(opted_in) + 5
    window = catch_up.catch_up_range(
        newest_seen_id=None, opted_in_at=opted_in, erased_at=None, connected_at=CONNECTED, lookback=DAY
    )
    assert catch_up.choose([same_millisecond], window).take == ()


def test_member_data_erasure_moves_the_anchor_past_the_erased_messages():
    seen = _at(5)
    window = _range(newest_seen_id=seen, erased_hours_ago=3)
    assert catch_up.choose([_at(4), _at(2)], window).take == (_at(2),)


def test_older_opt_in_or_erasure_does_not_hide_messages_after_the_newest_seen():
    seen = _at(2)
    window = _range(newest_seen_id=seen, opted_in_hours_ago=50, erased_hours_ago=30)
    assert window.after_id == _range(newest_seen_id=seen).after_id


def test_erasure_after_the_newest_seen_wins_over_the_margin():
    seen = _at(2)
    erased = CONNECTED - timedelta(hours=2) + timedelta(seconds=1)
    window = catch_up.catch_up_range(
        newest_seen_id=seen,
        opted_in_at=CONNECTED - DAY,
        erased_at=erased,
        connected_at=CONNECTED,
        lookback=DAY,
    )
    assert catch_up.choose([seen], window).take == ()


def test_lookback_window_ends_one_day_before_the_connection():
    assert snowflake_time(_range().oldest_id) == CONNECTED - DAY


def test_lookback_is_never_longer_than_the_inbox_keeps_rows():
    assert catch_up.lookback_for(7) == catch_up.CATCH_UP_LOOKBACK == DAY
    assert catch_up.lookback_for(0) == timedelta(0)


# -- choosing from what history returned ----------------------------------------------------------------


def test_messages_are_taken_oldest_first():
    window = _range(newest_seen_id=_at(10))
    chosen = catch_up.choose([_at(1), _at(3), _at(2)], window)
    assert chosen.take == (_at(3), _at(2), _at(1))
    assert (chosen.too_old, chosen.over_cap) == (0, False)


def test_messages_at_or_before_the_anchor_are_never_taken():
    anchor = _at(3)
    chosen = catch_up.choose([anchor - 1, anchor, anchor + 1], CatchUpRange(after_id=anchor, oldest_id=0))
    assert chosen.take == (anchor + 1,)


def test_unseen_messages_older_than_the_window_are_counted_and_left():
    window = _range(newest_seen_id=_at(40))
    chosen = catch_up.choose([_at(30), _at(26), _at(5)], window)
    assert chosen.take == (_at(5),)
    assert chosen.too_old == 2


def test_more_than_the_cap_keeps_the_newest_and_says_some_were_left():
    ids = [_at(hours) for hours in (6, 5, 4, 3, 2)]
    chosen = catch_up.choose(ids, _range(newest_seen_id=_at(10)), cap=3)
    assert chosen.take == (_at(4), _at(3), _at(2))
    assert chosen.over_cap is True


def test_exactly_the_cap_leaves_nothing():
    ids = [_at(hours) for hours in (3, 2, 1)]
    chosen = catch_up.choose(ids, _range(newest_seen_id=_at(10)), cap=3)
    assert len(chosen.take) == 3 and chosen.over_cap is False


# -- what the database says -------------------------------------------------------------------------------


async def _record(database: Database, message_id: int, channel_id: int, received_at: datetime) -> None:
    async with database.session() as session:
        await message_inbox.record_received(
            session,
            message_id=message_id,
            guild_id=GUILD,
            channel_id=channel_id,
            author_id=ALICE,
            now=received_at,
        )


async def test_newest_message_id_is_per_channel_and_thread(database: Database):
    await _record(database, 100, CHANNEL, CONNECTED - DAY)
    await _record(database, 300, CHANNEL, CONNECTED - DAY)
    await _record(database, 200, THREAD, CONNECTED - DAY)
    async with database.session() as session:
        assert await message_inbox.newest_message_id(session, CHANNEL) == 300
        assert await message_inbox.newest_message_id(session, THREAD) == 200
        assert await message_inbox.newest_message_id(session, 999) is None


async def test_rows_written_after_the_connection_do_not_move_the_anchor(database: Database):
    await _record(database, 100, CHANNEL, CONNECTED - timedelta(minutes=5))
    await _record(database, 500, CHANNEL, CONNECTED + timedelta(seconds=1))  # a live message, after READY
    async with database.session() as session:
        assert await message_inbox.newest_message_id(session, CHANNEL, received_before=CONNECTED) == 100


async def test_a_finished_message_still_anchors(database: Database):
    seen = _at(1)
    await _record(database, seen, CHANNEL, CONNECTED - timedelta(hours=1))
    async with database.session() as session:
        await message_inbox.mark_scored(session, seen)
    async with database.session() as session:
        window = await catch_up.range_for(
            session,
            CHANNEL,
            opted_in_at=CONNECTED - 30 * DAY,
            erased_at=None,
            connected_at=CONNECTED,
            lookback=DAY,
        )
    assert snowflake_time(window.after_id) == snowflake_time(seen) - catch_up.SEEN_MARGIN


async def test_opted_in_channels_come_with_their_opt_in_time(database: Database):
    async with database.session() as session:
        await support_channels.add(session, GUILD, CHANNEL, MODERATOR)
        await support_channels.add(session, OTHER_GUILD, 20, MODERATOR)
    async with database.session() as session:
        found = await catch_up.opted_in_channels(session, GUILD)
    assert [c.channel_id for c in found] == [CHANNEL]
    assert found[0].opted_in_at.tzinfo is not None


async def test_last_erasure_counts_this_guild_and_everywhere_but_not_other_guilds(database: Database):
    async with database.session() as session:
        assert await catch_up.last_member_erasure(session, GUILD) is None
        await privacy.delete_member_data(session, ALICE, OTHER_GUILD, reason="member_left")
    async with database.session() as session:
        assert await catch_up.last_member_erasure(session, GUILD) is None
        await privacy.delete_member_data(session, ALICE, reason="forget_me")
    async with database.session() as session:
        assert await catch_up.last_member_erasure(session, GUILD) is not None


async def test_other_audit_entries_are_not_erasures(database: Database):
    async with database.session() as session:
        audit.record(session, "support_channel.added", guild_id=GUILD, actor_id=MODERATOR)
    async with database.session() as session:
        assert await catch_up.last_member_erasure(session, GUILD) is None
