"""Read support channels: turn each message, edit and delete into a plain snapshot for the message intake.

The decisions (the inbox state machine, burst risk judgement, reply scoring, recovery) live in
``bot.services.message_intake``; this cog reads Discord (where a message is, the post it answers, fetching it
again after a restart, a channel's history after an outage) and hands over ids and text.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import discord
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import PeerCareBot
from bot.db.models import utcnow
from bot.db.session import transient_reason
from bot.scheduling import every, finish_or_cancel, run_logged, run_scheduled, stop
from bot.services import catch_up, message_inbox, support_channels
from bot.services.message_inbox import PendingMessage, SkipReason
from bot.services.message_intake import (
    MessageIntake,
    MessageRef,
    MessageSnapshot,
    ParentSnapshot,
    SnapshotSource,
)
from bot.services.reply_scoring import REPLY_SCORED, ReplyScoringPipeline
from inference.text_normalise import has_visible_text

log = logging.getLogger(__name__)

# System messages (pins, joins, "started a thread") are never posts or replies.
_READABLE_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
RECOVERY_JOB_ID = "message-inbox-recovery"
# Unrecorded arrivals kept in memory for a retry (each is a discord.Message: bounded so an outage cannot
# grow the process without limit; past it, an ERROR per message and catch-up at the next start).
MAX_UNRECORDED = 5000
RECOVERY_EVERY_SECONDS = 60
UNLOAD_GRACE_SECONDS = 5.0
CATCH_UP_CONCURRENCY = 4


class Replies(commands.Cog):
    """Discord in: messages, edits and deletes in support channels. The work is in ``message_intake``."""

    def __init__(self, bot: PeerCareBot) -> None:
        self.bot = bot
        settings = bot.settings
        self.pipeline = ReplyScoringPipeline(
            bot.database,
            bot.inference,
            retention_days=settings.message_retention_days,
            default_thresholds=bot.risk_defaults,
            # A message whose author ran forget-me (or left) while it was scored is not stored afterwards.
            may_store_first_score=message_inbox.still_pending,
            case_quiet=timedelta(minutes=settings.case_quiet_minutes),
        )
        self.intake = MessageIntake(
            bot.database,
            self.pipeline,
            deliver_cases=bot.deliver_cases,
            reply_scored=lambda scored: bot.dispatch(REPLY_SCORED, scored),
            closing=bot.is_closed,
            burst_window=timedelta(minutes=settings.risk_burst_minutes),
            owned=bot.guild_ownership,
        )
        # Messages whose arrival could not be recorded (database unavailable past every retry): kept here and
        # offered again by the next recovery sweep. In memory only; after a crash, catch-up reads them back.
        self._unrecorded: dict[int, discord.Message] = {}
        self._startup_recovery: asyncio.Task[None] | None = None
        # When this gateway session began: inbox rows written before it tell what the last session saw.
        self._connected_at: datetime | None = None

    async def cog_load(self) -> None:
        every(self.bot.scheduler, RECOVERY_JOB_ID, RECOVERY_EVERY_SECONDS, self._scheduled_recovery)

    async def cog_unload(self) -> None:
        stop(self.bot.scheduler, RECOVERY_JOB_ID)
        # Each message is its own unit of work: one cut short stays pending and the next start retries it.
        await finish_or_cancel(self._startup_recovery, UNLOAD_GRACE_SECONDS)

    # -- where PeerCare may read ------------------------------------------------------------------------

    async def _is_support_location(self, guild_id: int, channel: object) -> bool:
        """An opted-in channel, or a thread whose parent channel is opted in."""
        channel_id = (
            channel.parent_id if isinstance(channel, discord.Thread) else getattr(channel, "id", None)
        )
        if channel_id is None:
            return False
        return await self.bot.database.run(
            "checking a support channel",
            lambda session: support_channels.is_support_channel(session, guild_id, channel_id),
        )

    # -- a message as plain values -----------------------------------------------------------------------

    @staticmethod
    def _ref(message: discord.Message, guild_id: int) -> MessageRef:
        return MessageRef(message.id, guild_id, message.channel.id, message.author.id)

    def _source(self, message: discord.Message, guild_id: int) -> SnapshotSource:
        """Reads the message (and, when it has words, the post it answers) once the intake recorded it."""

        async def snapshot() -> MessageSnapshot:
            is_reply, parent = await self._parent_of(message, guild_id)
            return MessageSnapshot(
                ref=self._ref(message, guild_id),
                text=message.content,
                created_at=message.created_at,
                has_files=bool(message.attachments or message.embeds or message.stickers),
                is_reply=is_reply,
                parent=parent,
            )

        return snapshot

    async def _parent_of(self, message: discord.Message, guild_id: int) -> tuple[bool, ParentSnapshot | None]:
        """(is_reply, parent). A reply whose parent cannot be read is (True, None)."""
        if not has_visible_text(message.content):
            return not self._may_be_seeker_post(message), None  # no words: the parent is never needed
        found: discord.Message | None = None
        channel = message.channel
        if message.reference is not None and message.type is discord.MessageType.reply:
            found = await self._referenced_parent(message, guild_id)
        elif isinstance(channel, discord.Thread) and message.id != channel.id:
            found = await self._thread_starter(channel)
        else:
            return False, None
        if found is None:
            return True, None
        return True, ParentSnapshot(
            found.id, found.channel.id, found.author.id, found.author.bot, found.content
        )

    async def _referenced_parent(self, message: discord.Message, guild_id: int) -> discord.Message | None:
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        if isinstance(reference.resolved, discord.DeletedReferencedMessage):
            return None
        channel: object = message.channel
        if reference.channel_id != message.channel.id:
            channel = self.bot.get_channel(reference.channel_id)
            if channel is None or not await self._is_support_location(guild_id, channel):
                return None  # never read outside the support channels, even through a reply
        return await self._fetch(channel, reference.message_id)

    async def _thread_starter(self, thread: discord.Thread) -> discord.Message | None:
        if thread.starter_message is not None:
            return thread.starter_message
        # A forum post's starter lives in the thread; a text-channel thread's in the parent channel.
        for channel in (thread, thread.parent):
            if channel is None:
                continue
            found = await self._fetch(channel, thread.id)
            if found is not None:
                return found
        return None

    async def _fetch(self, channel: object, message_id: int) -> discord.Message | None:
        for cached in self.bot.cached_messages:
            if cached.id == message_id:
                return cached
        fetch = getattr(channel, "fetch_message", None)
        if fetch is None:
            return None
        try:
            found: discord.Message = await fetch(message_id)
            return found
        except discord.NotFound:
            log.info("parent message %s is gone", message_id)
        except discord.Forbidden:
            log.warning("no permission to read parent message %s", message_id)
        except discord.HTTPException as exc:
            log.warning("could not fetch parent message %s: HTTP %s", message_id, exc.status)
        return None

    @staticmethod
    def _may_be_seeker_post(message: discord.Message) -> bool:
        """Neither a reply nor a message inside a thread: a post (or thread starter), told without a fetch."""
        if message.reference is not None and message.type is discord.MessageType.reply:
            return False
        channel = message.channel
        return not (isinstance(channel, discord.Thread) and message.id != channel.id)

    @staticmethod
    def _guild_id(message: discord.Message) -> int | None:
        """The server of a member's own words; None for bots, webhooks, system messages and DMs."""
        if message.guild is None or message.author.bot or message.type not in _READABLE_TYPES:
            return None
        return message.guild.id

    # -- in: new messages, edits, deletes ----------------------------------------------------------------

    async def _receive(self, message: discord.Message, *, only_if_new: bool = False) -> bool:
        guild_id = self._guild_id(message)
        if guild_id is None:
            return False
        return await self.intake.take(
            self._ref(message, guild_id),
            self._source(message, guild_id),
            only_if_new=only_if_new,
            arrived=(message.created_at, message.content),
        )

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        try:
            guild_id = self._guild_id(message)
            if guild_id is not None and await self._is_support_location(guild_id, message.channel):
                await self._receive(message)
        except Exception as exc:
            reason = transient_reason(exc)
            if reason is None:
                log.exception("failed to process message %s", message.id)
            elif len(self._unrecorded) < MAX_UNRECORDED:
                self._unrecorded[message.id] = message
                log.warning(
                    "message %s could not be recorded (database unavailable: %s); the next sweep retries it",
                    message.id,
                    reason,
                )
            else:
                log.error(
                    "message %s could not be recorded (%s) and the retry list is full", message.id, reason
                )

    async def _retry_unrecorded(self) -> None:
        """Offer again the messages whose arrival could not be recorded; a failure keeps them for next time."""
        for message_id, message in list(self._unrecorded.items()):
            try:
                await self._receive(message)
            except Exception as exc:
                if transient_reason(exc) is None:
                    self._unrecorded.pop(message_id, None)
                    log.exception("failed to process message %s", message_id)
                else:
                    log.warning("message %s still cannot be recorded; kept for the next sweep", message_id)
                    return  # the database is still unavailable: try the rest next time
            else:
                self._unrecorded.pop(message_id, None)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        message = payload.message
        before = payload.cached_message
        if before is not None and before.content == message.content:
            return  # an embed or a pin changed, not the words
        if not (await self.intake.is_known(payload.message_id) or self._may_be_seeker_post(message)):
            return  # an unknown reply: only replies we scored are re-scored
        try:
            guild_id = self._guild_id(message)
            if guild_id is None or not await self._is_support_location(guild_id, message.channel):
                return
            await self.intake.edited(await self._source(message, guild_id)())
        except Exception:
            log.exception("failed to re-score edited message %s", payload.message_id)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.intake.deleted([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self.intake.deleted(payload.message_ids)

    # -- recovery: messages received but never finished ----------------------------------------------------

    async def recover_pending(self, *, received_before: datetime | None = None) -> int:
        """Process again every pending message received before the cut-off (fetched anew from Discord)."""
        return await self.intake.recover_pending(self._refetch, received_before=received_before)

    async def _refetch(self, row: PendingMessage) -> tuple[SnapshotSource | None, SkipReason | None]:
        """The message as Discord has it now; (None, reason) if it is gone for good, (None, None) if not now."""
        try:
            channel = self.bot.get_channel(row.channel_id) or await self.bot.fetch_channel(row.channel_id)
            fetch = getattr(channel, "fetch_message", None)
            if fetch is None:
                return None, SkipReason.NO_ACCESS
            message: discord.Message = await fetch(row.message_id)
        except discord.NotFound:
            return None, SkipReason.DELETED  # the message (or its channel) was deleted while we were away
        except discord.Forbidden:
            log.warning("no permission to read message %s again", row.message_id)
            return None, SkipReason.NO_ACCESS
        except discord.HTTPException as exc:
            log.warning("could not fetch message %s again: HTTP %s", row.message_id, exc.status)
            return None, None
        if not await self._is_support_location(row.guild_id, message.channel):
            return None, SkipReason.NOT_SUPPORT_CHANNEL
        return self._source(message, row.guild_id), None

    async def _recover(self, received_before: datetime | None = None) -> None:
        await self._retry_unrecorded()
        await self.recover_pending(received_before=received_before)

    async def _recovery_logged(self, received_before: datetime | None = None) -> None:
        await run_logged(
            log,
            "message inbox recovery",
            lambda: self._recover(received_before),
            again_in_s=RECOVERY_EVERY_SECONDS,
        )

    async def _scheduled_recovery(self) -> None:
        await run_scheduled(log, "message inbox recovery", self._recover, again_in_s=RECOVERY_EVERY_SECONDS)

    @commands.Cog.listener()
    async def on_connect(self) -> None:
        # Dispatched on READY of every new gateway session (not on a RESUME, which replays what was missed).
        self._connected_at = utcnow()

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        # Start-up: whatever the last process received but never finished is processed now, and what was
        # posted while no session was connected is read from history.
        # A new session (re-identified after a dropped connection) while the last start-up work still runs
        # gets its own catch-up once that finishes: what was posted between the two sessions is read too.
        connected_at = self._connected_at or utcnow()
        self._startup_recovery = asyncio.create_task(self._start_up(connected_at, self._startup_recovery))

    async def _start_up(self, connected_at: datetime, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            await previous
        await asyncio.gather(
            self._recovery_logged(received_before=utcnow()), self._catch_up_logged(connected_at)
        )

    # -- catch-up: messages posted while no session was connected -------------------------------------------

    async def _catch_up_logged(self, connected_at: datetime) -> None:
        try:
            await self.catch_up(connected_at)
        except Exception:
            log.exception("catch-up from message history failed")

    async def catch_up(self, connected_at: datetime) -> None:
        """Read each support channel's (and its active threads') history since the inbox last saw it.

        Every message found that the inbox does not have takes the live path; one it has is left alone.
        """
        lookback = catch_up.lookback_for(self.bot.settings.message_retention_days)
        if lookback <= timedelta(0):
            log.info(
                "catch-up from history is off: with 0 days of retention the inbox cannot tell what was seen"
            )
            return
        for guild in list(self.bot.guilds):

            async def read_channels(
                session: AsyncSession, guild_id: int = guild.id
            ) -> tuple[list[catch_up.OptedInChannel], datetime | None]:
                return (
                    await catch_up.opted_in_channels(session, guild_id),
                    await catch_up.last_member_erasure(session, guild_id),
                )

            channels, erased_at = await self.bot.database.run(
                f"catch-up: list the support channels of guild {guild.id}", read_channels
            )
            for opted_in in channels:
                await self._catch_up_channel(guild, opted_in, erased_at, connected_at, lookback)

    async def _catch_up_channel(
        self,
        guild: discord.Guild,
        opted_in: catch_up.OptedInChannel,
        erased_at: datetime | None,
        connected_at: datetime,
        lookback: timedelta,
    ) -> None:
        channel = guild.get_channel(opted_in.channel_id)
        if channel is None:
            log.warning(
                "catch-up: support channel %s is not visible; its history is not read", opted_in.channel_id
            )
            return
        # The threads Discord listed as active in GUILD_CREATE (and any started since): no extra request.
        locations: list[discord.abc.Messageable] = (
            [channel] if isinstance(channel, discord.abc.Messageable) else []
        )
        locations += list(getattr(channel, "threads", ()))
        counts: dict[str, int] = {"read": 0, "new": 0, "known": 0, "ignored": 0, "left": 0}
        for location in locations:
            await self._catch_up_location(location, opted_in, erased_at, connected_at, lookback, counts)
        log.info(
            "catch-up in channel %s: %d locations, %d messages read, %d new, %d already known, "
            "%d not members' posts, at least %d left unread",
            opted_in.channel_id,
            len(locations),
            counts["read"],
            counts["new"],
            counts["known"],
            counts["ignored"],
            counts["left"],
        )

    async def _catch_up_location(
        self,
        location: discord.abc.Messageable,
        opted_in: catch_up.OptedInChannel,
        erased_at: datetime | None,
        connected_at: datetime,
        lookback: timedelta,
        counts: dict[str, int],
    ) -> None:
        location_id = getattr(location, "id", 0)
        window = await self.bot.database.run(
            f"catch-up: find what the inbox saw in {location_id}",
            lambda session: catch_up.range_for(
                session,
                location_id,
                opted_in_at=opted_in.opted_in_at,
                erased_at=erased_at,
                connected_at=connected_at,
                lookback=lookback,
            ),
        )
        cap = catch_up.CATCH_UP_MAX_MESSAGES
        try:
            # Newest first, one more than the cap: the read stops at the anchor or once the cap is exceeded.
            fetched = [
                message
                async for message in location.history(
                    limit=cap + 1, after=discord.Object(id=window.after_id), oldest_first=False
                )
            ]
        except (discord.Forbidden, discord.NotFound) as exc:
            log.warning("catch-up: cannot read the history of %s (HTTP %s)", location_id, exc.status)
            return
        except discord.HTTPException as exc:
            log.warning("catch-up: reading the history of %s failed (HTTP %s)", location_id, exc.status)
            return
        chosen = catch_up.choose([message.id for message in fetched], window, cap)
        if chosen.too_old:
            log.warning(
                "catch-up in %s: %d messages older than the %d h look-back window are not read",
                location_id,
                chosen.too_old,
                lookback.total_seconds() // 3600,
            )
        if chosen.over_cap:
            log.warning(
                "catch-up in %s: more than %d messages were posted while the bot was away; "
                "the newest %d are processed, older ones are left",
                location_id,
                cap,
                cap,
            )
        by_id = {message.id: message for message in fetched}
        counts["read"] += len(chosen.take)
        counts["left"] += chosen.too_old + (1 if chosen.over_cap else 0)
        limit = asyncio.Semaphore(CATCH_UP_CONCURRENCY)

        async def take(message: discord.Message) -> None:
            async with limit:
                if self._guild_id(message) is None:
                    counts["ignored"] += 1
                    return
                try:
                    new = await self._receive(message, only_if_new=True)
                except Exception:
                    log.exception("catch-up: failed to process message %s", message.id)
                    return
                counts["new" if new else "known"] += 1

        # Started oldest first, so a post is usually scored before the replies to it.
        await asyncio.gather(*(take(by_id[message_id]) for message_id in chosen.take))


async def setup(bot: PeerCareBot) -> None:
    await bot.add_cog(Replies(bot))
