"""The message inbox: one row per received message, exactly one outcome, ids only, deletable."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db.models import InboxMessage, InboxOutcome, utcnow
from bot.db.session import Database
from bot.services import message_inbox, privacy
from bot.services.message_inbox import MessageKind, SkipReason
from bot.sharding import SNOWFLAKE_TIMESTAMP_SHIFT, GuildOwnership

# A faster `database` fixture (a copy of one migrated file) for this module.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401

pytestmark = pytest.mark.reliability

GUILD = 1000
OTHER_GUILD = 2000
CHANNEL = 10
ALICE = 7
BOB = 8
NOW = utcnow()


async def _receive(database: Database, message_id: int, *, author: int = ALICE, guild: int = GUILD, now=NOW):
    async with database.session() as session:
        return await message_inbox.record_received(
            session, message_id=message_id, guild_id=guild, channel_id=CHANNEL, author_id=author, now=now
        )


async def _row(database: Database, message_id: int) -> InboxMessage | None:
    async with database.session() as session:
        return await session.get(InboxMessage, message_id)


async def _counts(database: Database, guild_id: int | None = None) -> dict[str, int]:
    async with database.session() as session:
        return await message_inbox.outcome_counts(session, guild_id)


async def test_a_received_message_is_pending_with_its_first_attempt(database: Database) -> None:
    received = await _receive(database, 1)
    assert received == message_inbox.Received(True, InboxOutcome.PENDING, 1)
    row = await _row(database, 1)
    assert row is not None
    assert (row.outcome, row.kind, row.attempts, row.finished_at) == (
        InboxOutcome.PENDING,
        "unknown",
        1,
        None,
    )
    assert (row.guild_id, row.channel_id, row.author_id) == (GUILD, CHANNEL, ALICE)


async def test_receiving_the_same_message_twice_keeps_one_row(database: Database) -> None:
    await _receive(database, 1)
    again = await _receive(database, 1)
    assert not again.is_new and again.outcome is InboxOutcome.PENDING
    assert await _counts(database) == {"pending": 1, "scored": 0, "skipped": 0}


async def test_a_redelivered_finished_message_reports_its_outcome(database: Database) -> None:
    await _receive(database, 1)
    async with database.session() as session:
        await message_inbox.mark_scored(session, 1, kind=MessageKind.POST)
    again = await _receive(database, 1)
    assert not again.is_new and again.outcome is InboxOutcome.SCORED


async def test_the_same_message_received_at_once_twice_gets_one_row(database: Database) -> None:
    results = await asyncio.gather(*(_receive(database, 1) for _ in range(4)))
    assert sum(result.is_new for result in results) == 1
    assert await _counts(database) == {"pending": 1, "scored": 0, "skipped": 0}


async def test_scored_message_records_its_kind_and_when(database: Database) -> None:
    await _receive(database, 1)
    async with database.session() as session:
        assert await message_inbox.mark_scored(session, 1, kind=MessageKind.REPLY, now=NOW)
    row = await _row(database, 1)
    assert row is not None
    assert (row.outcome, row.kind, row.skip_reason, row.finished_at) == (
        InboxOutcome.SCORED,
        "reply",
        None,
        NOW,
    )


async def test_a_message_gets_only_its_first_outcome(database: Database) -> None:
    await _receive(database, 1)
    async with database.session() as session:
        assert await message_inbox.mark_skipped(session, 1, SkipReason.EMPTY)
        assert not await message_inbox.mark_scored(session, 1)
        assert not await message_inbox.mark_skipped(session, 1, SkipReason.DELETED)
    row = await _row(database, 1)
    assert row is not None and (row.outcome, row.skip_reason) == (InboxOutcome.SKIPPED, "empty")


async def test_marking_a_message_never_received_records_nothing(database: Database) -> None:
    async with database.session() as session:
        assert not await message_inbox.mark_scored(session, 99)
    assert await _row(database, 99) is None


async def test_delete_ends_only_pending_messages_as_deleted(database: Database) -> None:
    await _receive(database, 1)
    await _receive(database, 2)
    async with database.session() as session:
        await message_inbox.mark_scored(session, 2)
        assert await message_inbox.mark_deleted(session, [1, 2, 3]) == 1
        assert await message_inbox.outcome_of(session, 1) == (InboxOutcome.SKIPPED, "deleted")
        assert await message_inbox.outcome_of(session, 2) == (InboxOutcome.SCORED, None)
        assert await message_inbox.outcome_of(session, 3) is None


async def test_attempts_are_counted_only_while_pending(database: Database) -> None:
    await _receive(database, 1)
    async with database.session() as session:
        assert await message_inbox.start_attempt(session, 1) == 2
        await message_inbox.mark_scored(session, 1)
        assert await message_inbox.start_attempt(session, 1) is None
        assert await message_inbox.start_attempt(session, 42) is None


async def test_a_failure_below_the_limit_leaves_the_message_pending(database: Database) -> None:
    await _receive(database, 1)
    async with database.session() as session:
        assert not await message_inbox.record_failure(session, 1, max_attempts=2)
    assert await _counts(database) == {"pending": 1, "scored": 0, "skipped": 0}


async def test_a_message_failing_at_the_limit_ends_skipped_failed_with_a_warning(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await _receive(database, 1)
    async with database.session() as session:
        await message_inbox.start_attempt(session, 1)
    with caplog.at_level(logging.WARNING, logger="bot.services.message_inbox"):
        async with database.session() as session:
            assert await message_inbox.record_failure(session, 1, max_attempts=2)
    async with database.session() as session:
        assert await message_inbox.outcome_of(session, 1) == (InboxOutcome.SKIPPED, "failed")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "1" in caplog.records[0].getMessage()


async def test_pending_lists_only_unfinished_messages_older_than_the_cutoff(database: Database) -> None:
    await _receive(database, 1, now=NOW - timedelta(minutes=5))
    await _receive(database, 2, now=NOW - timedelta(minutes=10))
    await _receive(database, 3, now=NOW - timedelta(minutes=5))
    await _receive(database, 4, now=NOW)  # too recent: may still be in flight
    async with database.session() as session:
        await message_inbox.mark_skipped(session, 3, SkipReason.SHED)
        found = await message_inbox.pending(session, older_than=NOW - timedelta(seconds=5))
    assert [p.message_id for p in found] == [2, 1]
    assert (found[0].guild_id, found[0].channel_id, found[0].author_id, found[0].attempts) == (
        GUILD,
        CHANNEL,
        ALICE,
        1,
    )


async def test_outcome_counts_cover_every_outcome_and_can_be_per_guild(database: Database) -> None:
    for message_id in (1, 2, 3):
        await _receive(database, message_id)
    await _receive(database, 4, guild=OTHER_GUILD)
    async with database.session() as session:
        await message_inbox.mark_scored(session, 1)
        await message_inbox.mark_skipped(session, 2, SkipReason.ATTACHMENT_ONLY)
    assert await _counts(database) == {"pending": 2, "scored": 1, "skipped": 1}
    assert await _counts(database, GUILD) == {"pending": 1, "scored": 1, "skipped": 1}
    assert await _counts(database, 12345) == {"pending": 0, "scored": 0, "skipped": 0}
    async with database.session() as session:
        assert await message_inbox.skip_reason_counts(session) == {"attachment_only": 1}


async def test_forget_me_deletes_the_members_inbox_rows_everywhere(database: Database) -> None:
    await _receive(database, 1, author=ALICE)
    await _receive(database, 2, author=ALICE, guild=OTHER_GUILD)
    await _receive(database, 3, author=BOB)
    async with database.session() as session:
        report = await privacy.delete_member_data(session, ALICE, reason="forget_me")
    assert report.rows["message_inbox"] == 2
    assert await _row(database, 1) is None and await _row(database, 2) is None
    assert await _row(database, 3) is not None


async def test_a_member_leaving_deletes_only_that_guilds_inbox_rows(database: Database) -> None:
    await _receive(database, 1, author=ALICE)
    await _receive(database, 2, author=ALICE, guild=OTHER_GUILD)
    async with database.session() as session:
        await privacy.delete_member_data(session, ALICE, GUILD, reason="member_left")
    assert await _row(database, 1) is None
    assert await _row(database, 2) is not None


async def test_a_departed_guilds_inbox_rows_are_deleted_with_it(database: Database) -> None:
    await _receive(database, 1)
    await _receive(database, 2, guild=OTHER_GUILD)
    async with database.session() as session:
        report = await privacy.delete_guild_data(session, GUILD)
    assert report.rows["message_inbox"] == 1
    assert await _row(database, 1) is None and await _row(database, 2) is not None


async def test_a_member_sees_their_inbox_rows_in_their_data(database: Database) -> None:
    await _receive(database, 1)
    async with database.session() as session:
        found = await privacy.describe_member_data(session, ALICE)
    assert [row["message_id"] for row in found["message_inbox"]] == [1]


async def test_retention_removes_finished_rows_past_the_cutoff_and_keeps_pending_ones(
    database: Database,
) -> None:
    for message_id in (1, 2, 3):
        await _receive(database, message_id, now=NOW - timedelta(days=10))
    async with database.session() as session:
        await message_inbox.mark_scored(session, 1, now=NOW - timedelta(days=9))
        await message_inbox.mark_skipped(session, 2, SkipReason.EMPTY, now=NOW - timedelta(days=1))
        assert await message_inbox.purge_finished(session, NOW - timedelta(days=7)) == 1
    async with database.session() as session:
        left = list(await session.scalars(select(InboxMessage.message_id).order_by(InboxMessage.message_id)))
    assert left == [2, 3]


async def test_pending_pages_follow_on_without_repeating_a_message(database: Database) -> None:
    for message_id in (5, 3, 4, 1):
        await _receive(database, message_id, now=NOW - timedelta(minutes=message_id))
    await _receive(database, 2, now=NOW - timedelta(minutes=3))  # same time as 3: the id breaks the tie
    async with database.session() as session:
        first = await message_inbox.pending(session, older_than=NOW, limit=2)
        second = await message_inbox.pending(session, older_than=NOW, limit=2, after=first[-1])
        third = await message_inbox.pending(session, older_than=NOW, limit=2, after=second[-1])
        rest = await message_inbox.pending(session, older_than=NOW, limit=2, after=third[-1])
    assert [[p.message_id for p in page] for page in (first, second, third, rest)] == [
        [5, 4],
        [2, 3],
        [1],
        [],
    ]


async def test_pending_lists_only_the_guilds_this_process_owns(database: Database) -> None:
    on_shard = {shard: (1_200_000_000 + shard) << SNOWFLAKE_TIMESTAMP_SHIFT for shard in range(3)}
    for shard, guild_id in on_shard.items():
        await _receive(database, 10 + shard, guild=guild_id, now=NOW - timedelta(minutes=5))
    async with database.session() as session:
        found = {
            owned: [p.message_id for p in await message_inbox.pending(session, older_than=NOW, owned=owned)]
            for owned in (GuildOwnership(3, frozenset({0, 2})), GuildOwnership(3, frozenset({1})))
        }
        everything = await message_inbox.pending(session, older_than=NOW)
    assert list(found.values()) == [[10, 12], [11]]
    assert [p.message_id for p in everything] == [10, 11, 12]
