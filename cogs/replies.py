"""Read support channels: score each reply with its parent, risk-score each seeker post, follow edits and deletes.

Every message in a support location is written to the message inbox before any slow work and ends with one
recorded outcome (scored, or skipped with a reason). A message still pending after a crash or a failure is
fetched again from Discord by the recovery sweep (at start-up and every minute) and takes the same path.
Messages posted while the bot was offline are read from each support location's history after READY
(bounded: see ``bot.services.catch_up``) and take the same path too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import discord
from discord.ext import commands
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import InboxOutcome, utcnow
from bot.db.session import transient_reason
from bot.services import catch_up, message_inbox, reply_scoring, support_channels
from bot.services.events import SEEKER_RISK_SCORED, SeekerRiskScored
from bot.services.message_inbox import MAX_ATTEMPTS, MessageKind, PendingMessage, SkipReason
from bot.services.reply_scoring import (
    REPLY_SCORED,
    CoachingStatus,
    ReplyInput,
    ReplyOutcome,
    ReplyScored,
    ReplyScoringPipeline,
    ReplyScoringResult,
    SeekerPost,
)

log = logging.getLogger(__name__)

# System messages (pins, joins, "started a thread") are never posts or replies.
_READABLE_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
RECOVERY_JOB_ID = "message-inbox-recovery"
# Unrecorded arrivals kept in memory for a retry (each is a discord.Message: bounded so an outage cannot
# grow the process without limit; past it, an ERROR per message and catch-up at the next start).
MAX_UNRECORDED = 5000
RECOVERY_EVERY_SECONDS = 60
# The periodic sweep leaves younger pending messages alone: they are most likely still being processed.
RECOVERY_GRACE_SECONDS = 5
RECOVERY_CONCURRENCY = 4
UNLOAD_GRACE_SECONDS = 5.0
CATCH_UP_CONCURRENCY = 4
_PIPELINE_SKIPS = {
    "input_rejected": SkipReason.INPUT_REJECTED,
    "shed": SkipReason.SHED,
    "deleted": SkipReason.DELETED,
    # Its inbox row went (forget-me, member left) or already has an outcome: recording changes nothing.
    "not_wanted": SkipReason.DELETED,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one attempt at a message ended: scored (no reason), skipped (a reason), or to be retried."""

    kind: MessageKind
    skip_reason: SkipReason | None = None
    retry: bool = False


class Replies(commands.Cog):
    """Discord in: messages, edits and deletes in support channels. The work is in ``reply_scoring``."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.pipeline: ReplyScoringPipeline | None = None
        # Messages this process is working on: a redelivered event or a sweep leaves them alone.
        self._in_flight: set[int] = set()
        # Messages whose arrival could not be recorded (database unavailable past every retry): kept here and
        # offered again by the next recovery sweep. In memory only; after a crash, catch-up reads them back.
        self._unrecorded: dict[int, discord.Message] = {}
        self._startup_recovery: asyncio.Task[None] | None = None
        # When this gateway session began: inbox rows written before it tell what the last session saw.
        self._connected_at: datetime | None = None

    async def cog_load(self) -> None:
        self.pipeline = ReplyScoringPipeline(
            self.bot.database,  # type: ignore[attr-defined]
            self.bot.inference,  # type: ignore[attr-defined]
            retention_days=self.bot.settings.message_retention_days,  # type: ignore[attr-defined]
            # Loaded by /peercare setup; escalation reads the same attribute, so both judge tiers alike.
            default_thresholds=lambda: getattr(self.bot, "_peercare_default_thresholds", None),
            # A message whose author ran forget-me (or left) while it was scored is not stored afterwards.
            may_store_first_score=message_inbox.still_pending,
        )
        self.bot.scheduler.add_job(  # type: ignore[attr-defined]
            self._scheduled_recovery,
            "interval",
            seconds=RECOVERY_EVERY_SECONDS,
            id=RECOVERY_JOB_ID,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
        )

    async def cog_unload(self) -> None:
        scheduler = self.bot.scheduler  # type: ignore[attr-defined]
        if scheduler.get_job(RECOVERY_JOB_ID) is not None:
            scheduler.remove_job(RECOVERY_JOB_ID)
        if self._startup_recovery is not None and not self._startup_recovery.done():
            # Each message is its own unit of work: one cut short stays pending and the next start retries it.
            _done, pending = await asyncio.wait({self._startup_recovery}, timeout=UNLOAD_GRACE_SECONDS)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- where PeerCare may read ------------------------------------------------------------------------

    async def _is_support_location(self, guild_id: int, channel: object) -> bool:
        """An opted-in channel, or a thread whose parent channel is opted in."""
        channel_id = (
            channel.parent_id if isinstance(channel, discord.Thread) else getattr(channel, "id", None)
        )
        if channel_id is None:
            return False
        return await self.bot.database.run(  # type: ignore[attr-defined]
            "checking a support channel",
            lambda session: support_channels.is_support_channel(session, guild_id, channel_id),
        )

    @staticmethod
    def _has_text(message: discord.Message) -> bool:
        return reply_scoring.has_scorable_text(message.content)

    # -- finding the parent ------------------------------------------------------------------------------

    async def _referenced_parent(self, message: discord.Message) -> discord.Message | None:
        reference = message.reference
        if reference is None or reference.message_id is None:
            return None
        if isinstance(reference.resolved, discord.Message):
            return reference.resolved
        if isinstance(reference.resolved, discord.DeletedReferencedMessage):
            return None
        if reference.channel_id != message.channel.id:
            channel = self.bot.get_channel(reference.channel_id)
            if channel is None or not await self._is_support_location(message.guild.id, channel):  # type: ignore[union-attr]
                return None  # never read outside the support channels, even through a reply
        else:
            channel = message.channel
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
            return await fetch(message_id)
        except discord.NotFound:
            log.info("parent message %s is gone", message_id)
        except discord.Forbidden:
            log.warning("no permission to read parent message %s", message_id)
        except discord.HTTPException as exc:
            log.warning("could not fetch parent message %s: HTTP %s", message_id, exc.status)
        return None

    async def _parent_of(self, message: discord.Message) -> tuple[bool, discord.Message | None]:
        """(is_reply, parent). A reply whose parent cannot be read is (True, None) and is left alone."""
        if message.reference is not None and message.type is discord.MessageType.reply:
            return True, await self._referenced_parent(message)
        channel = message.channel
        if isinstance(channel, discord.Thread) and message.id != channel.id:
            return True, await self._thread_starter(channel)
        return False, None

    @staticmethod
    def _may_be_seeker_post(message: discord.Message) -> bool:
        """Neither a reply nor a message inside a thread: a post (or thread starter), told without a fetch."""
        if message.reference is not None and message.type is discord.MessageType.reply:
            return False
        channel = message.channel
        return not (isinstance(channel, discord.Thread) and message.id != channel.id)

    # -- a new message: received, processed, one outcome -------------------------------------------------

    @staticmethod
    def _readable(message: discord.Message) -> bool:
        """A member's own words in a server: bots, webhooks, system messages and DMs are never recorded."""
        return message.guild is not None and not message.author.bot and message.type in _READABLE_TYPES

    async def _receive(self, message: discord.Message, *, only_if_new: bool = False) -> bool:
        """Record the message in the inbox before any slow work, then process it (once per event id).

        ``only_if_new`` (catch-up from history): a message the inbox already has is left alone, pending or
        not (a pending one is the recovery sweep's). Returns True when this call processed the message.
        """
        if message.id in self._in_flight:
            return False  # the same event again (gateway replay, or live and history) while it is processed
        self._in_flight.add(message.id)

        async def record(session: AsyncSession) -> int | None:
            received = await message_inbox.record_received(
                session,
                message_id=message.id,
                guild_id=message.guild.id,  # type: ignore[union-attr]
                channel_id=message.channel.id,
                author_id=message.author.id,
            )
            if received.is_new:
                return received.attempts
            if only_if_new:
                return None
            if received.outcome is not InboxOutcome.PENDING:
                log.info("message %s already has an outcome: redelivered event ignored", message.id)
                return None
            return await message_inbox.start_attempt(session, message.id)

        try:
            # Retried if the database is briefly locked or unreachable: until this commits, nothing recalls it.
            attempt = await self.bot.database.run("recording a received message", record)  # type: ignore[attr-defined]
            if attempt is not None:
                await self._process(message, attempt)
        finally:
            self._in_flight.discard(message.id)
        return attempt is not None

    async def _process(self, message: discord.Message, attempt: int) -> None:
        """One attempt at a recorded message; its outcome is written at the end of every path."""
        if attempt > MAX_ATTEMPTS:
            await self._failed(message.id)  # it kept dying (crashes) before it could finish
            return
        try:
            verdict: Verdict | None = await self._score_new(message, retrying=attempt > 1)
        except Exception as exc:
            reason = transient_reason(exc)
            if reason is None:
                log.exception("failed to process message %s (attempt %d)", message.id, attempt)
            else:
                # Every retry of the unit of work already failed (and was logged): nothing is lost, the
                # message stays pending and the recovery sweep processes it again once the database is back.
                log.warning(
                    "message %s (attempt %d) left pending for the recovery sweep: database unavailable (%s)",
                    message.id,
                    attempt,
                    reason,
                )
            verdict = None
        assert self.pipeline is not None
        if verdict is None or verdict.retry:
            if not self.pipeline.is_deleted(message.id):
                await self._failed(message.id)
                return
            verdict = Verdict(verdict.kind if verdict else MessageKind.UNKNOWN, SkipReason.DELETED)
        await self._record(message.id, verdict)

    async def _score_new(self, message: discord.Message, *, retrying: bool) -> Verdict:
        assert self.pipeline is not None
        if not self._has_text(message):
            kind = MessageKind.POST if self._may_be_seeker_post(message) else MessageKind.REPLY
            files = message.attachments or message.embeds or message.stickers
            return Verdict(kind, SkipReason.ATTACHMENT_ONLY if files else SkipReason.EMPTY)
        is_reply, parent = await self._parent_of(message)
        if is_reply and parent is not None and parent.author.id == message.author.id:
            is_reply = False  # a follow-up to one's own post is the seeker speaking again, not a reply
        if not is_reply:
            await self._dispatch(await self.pipeline.score_seeker_post(self._seeker_post(message)))
            # None from score_seeker_post means "already scored" or "inference failed": the row tells.
            scored = await self.bot.database.run(  # type: ignore[attr-defined]
                f"look up the risk of post {message.id}",
                lambda session: reply_scoring.seeker_risk_recorded(session, message.id),
            )
            return Verdict(MessageKind.POST, retry=not scored)
        if parent is None:
            return Verdict(MessageKind.REPLY, SkipReason.PARENT_UNREADABLE)
        if parent.author.bot:
            return Verdict(MessageKind.REPLY, SkipReason.PARENT_IS_BOT)
        if not self._has_text(parent):
            return Verdict(MessageKind.REPLY, SkipReason.PARENT_EMPTY)
        result = await self.pipeline.score_reply(
            ReplyInput(
                guild_id=message.guild.id,  # type: ignore[union-attr]
                channel_id=message.channel.id,
                reply_message_id=message.id,
                responder_id=message.author.id,
                reply_text=message.content,
                parent=self._seeker_post(parent),
            )
        )
        await self._dispatch(result.seeker_event)
        if not self.pipeline.is_deleted(message.id) and (
            result.outcome is ReplyOutcome.NEW
            or (
                retrying
                and result.outcome is ReplyOutcome.UNCHANGED
                and await self._coaching_owed(message.id)
            )
        ):
            self.bot.dispatch(REPLY_SCORED, ReplyScored(message.guild.id, message.author.id, message.id))  # type: ignore[union-attr]
        return self._reply_verdict(result)

    async def _coaching_owed(self, message_id: int) -> bool:
        """Stored before a crash, never looked at by coaching: the note it may earn is still owed."""
        row = await self.bot.database.run(  # type: ignore[attr-defined]
            f"look up reply {message_id}", lambda session: reply_scoring.find_reply(session, message_id)
        )
        return row is not None and row.coaching_status == CoachingStatus.PENDING.value

    @staticmethod
    def _reply_verdict(result: ReplyScoringResult) -> Verdict:
        if result.outcome is not ReplyOutcome.SKIPPED:
            return Verdict(MessageKind.REPLY)
        reason = _PIPELINE_SKIPS.get(result.skip_reason or "")
        # Anything else (models unavailable, nothing stored for an unknown cause) is worth another attempt.
        return Verdict(MessageKind.REPLY, reason, retry=reason is None)

    async def _record(self, message_id: int, verdict: Verdict) -> None:
        assert self.pipeline is not None
        if self.pipeline.is_deleted(message_id):
            verdict = Verdict(verdict.kind, SkipReason.DELETED)

        async def finish(session: AsyncSession) -> bool:
            if verdict.skip_reason is None:
                return await message_inbox.mark_scored(session, message_id, kind=verdict.kind)
            return await message_inbox.mark_skipped(
                session, message_id, verdict.skip_reason, kind=verdict.kind
            )

        try:
            await self.bot.database.run("recording a message's outcome", finish)  # type: ignore[attr-defined]
        except Exception as exc:
            # Still pending: the sweep processes it again, and the pipeline never scores it twice.
            log.warning("could not record the outcome of message %s: %s", message_id, type(exc).__name__)

    async def _failed(self, message_id: int) -> None:
        """This attempt did not finish: the message stays pending for the sweep, or is given up at the limit."""
        if self.bot.is_closed():
            return  # shutting down: it stays pending and the next start processes it
        try:
            given_up = await self.bot.database.run(  # type: ignore[attr-defined]
                "recording a failed attempt",
                lambda session: message_inbox.record_failure(session, message_id),
            )
        except Exception as exc:
            log.warning("could not record a failed attempt at message %s: %s", message_id, type(exc).__name__)
            return
        if not given_up:
            log.info(
                "message %s not finished: the recovery sweep tries again while it is pending", message_id
            )

    # -- recovery: messages received but never finished ----------------------------------------------------

    async def recover_pending(self, *, received_before: datetime | None = None) -> int:
        """Process again every pending message received before the cut-off (fetched anew from Discord).

        Safe at any time: messages this process is working on are left alone, and each attempt is claimed
        in the database first. Returns how many messages were looked at.
        """
        cutoff = received_before or utcnow() - timedelta(seconds=RECOVERY_GRACE_SECONDS)
        limit = asyncio.Semaphore(RECOVERY_CONCURRENCY)

        async def recover(row: PendingMessage) -> None:
            async with limit:
                try:
                    await self._recover(row)
                except Exception:
                    log.exception("could not recover message %s", row.message_id)

        looked_at = 0
        last: PendingMessage | None = None
        while True:  # page by page, so a backlog after a crash is worked off in one sweep
            page = await self.bot.database.run(  # type: ignore[attr-defined]
                "list pending inbox messages",
                lambda session, after=last: message_inbox.pending(
                    session, older_than=cutoff, limit=message_inbox.RECOVERY_PAGE_SIZE, after=after
                ),
            )
            if not page:
                break
            last = page[-1]
            rows = [row for row in page if row.message_id not in self._in_flight]
            if rows:
                log.info("recovering %d messages received but not finished", len(rows))
            await asyncio.gather(*(recover(row) for row in rows))
            looked_at += len(rows)
        return looked_at

    async def _recover(self, row: PendingMessage) -> None:
        if row.message_id in self._in_flight:
            return
        self._in_flight.add(row.message_id)
        try:
            # A re-run after a commit that did land (PostgreSQL) counts one attempt too many: harmless.
            attempt = await self.bot.database.run(  # type: ignore[attr-defined]
                f"start recovering message {row.message_id}",
                lambda session: message_inbox.start_attempt(session, row.message_id),
            )
            if attempt is None:
                return  # finished meanwhile
            if attempt > MAX_ATTEMPTS:
                await self._failed(row.message_id)
                return
            message, reason = await self._refetch(row)
            if message is None:
                if reason is None:
                    await self._failed(row.message_id)
                else:
                    await self._record(row.message_id, Verdict(MessageKind.UNKNOWN, reason))
                return
            if not await self._is_support_location(row.guild_id, message.channel):
                await self._record(
                    row.message_id, Verdict(MessageKind.UNKNOWN, SkipReason.NOT_SUPPORT_CHANNEL)
                )
                return
            await self._process(message, attempt)
        finally:
            self._in_flight.discard(row.message_id)

    async def _refetch(self, row: PendingMessage) -> tuple[discord.Message | None, SkipReason | None]:
        """The message as Discord has it now; (None, reason) if it is gone for good, (None, None) if not now."""
        try:
            channel = self.bot.get_channel(row.channel_id) or await self.bot.fetch_channel(row.channel_id)
            fetch = getattr(channel, "fetch_message", None)
            if fetch is None:
                return None, SkipReason.NO_ACCESS
            return await fetch(row.message_id), None
        except discord.NotFound:
            return None, SkipReason.DELETED  # the message (or its channel) was deleted while we were away
        except discord.Forbidden:
            log.warning("no permission to read message %s again", row.message_id)
            return None, SkipReason.NO_ACCESS
        except discord.HTTPException as exc:
            log.warning("could not fetch message %s again: HTTP %s", row.message_id, exc.status)
            return None, None

    async def _recovery_logged(self, received_before: datetime | None = None) -> None:
        try:
            await self._retry_unrecorded()
            await self.recover_pending(received_before=received_before)
        except Exception:
            log.exception("message inbox recovery failed; it runs again in %d s", RECOVERY_EVERY_SECONDS)

    async def _scheduled_recovery(self) -> None:
        try:
            await self._recovery_logged()
        except asyncio.CancelledError:
            log.info("message inbox recovery interrupted by shutdown")

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
        lookback = catch_up.lookback_for(self.bot.settings.message_retention_days)  # type: ignore[attr-defined]
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

            channels, erased_at = await self.bot.database.run(  # type: ignore[attr-defined]
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
        locations: list[object] = [channel] if hasattr(channel, "history") else []
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
        location: object,
        opted_in: catch_up.OptedInChannel,
        erased_at: datetime | None,
        connected_at: datetime,
        lookback: timedelta,
        counts: dict[str, int],
    ) -> None:
        location_id: int = location.id  # type: ignore[attr-defined]
        window = await self.bot.database.run(  # type: ignore[attr-defined]
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
                async for message in location.history(  # type: ignore[attr-defined]
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
                if not self._readable(message):
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

    # -- edits: re-scored, never a second outcome ---------------------------------------------------------

    async def _handle_edit(self, message: discord.Message) -> None:
        if not self._readable(message):
            return
        if not await self._is_support_location(message.guild.id, message.channel):  # type: ignore[union-attr]
            return
        if not self._has_text(message):
            return  # emptied by the edit: nothing to score
        assert self.pipeline is not None
        is_reply, parent = await self._parent_of(message)
        if is_reply and parent is not None and parent.author.id == message.author.id:
            is_reply = False
        # Any edited message may be a seeker post (a reply others answered is one too): an edit that adds
        # crisis language must reach escalation.
        await self._dispatch(
            await self.pipeline.rescore_seeker_post(self._seeker_post(message), first_time=not is_reply)
        )
        if not is_reply or parent is None or parent.author.bot or not self._has_text(parent):
            return
        result = await self.pipeline.score_reply(
            ReplyInput(
                guild_id=message.guild.id,  # type: ignore[union-attr]
                channel_id=message.channel.id,
                reply_message_id=message.id,
                responder_id=message.author.id,
                reply_text=message.content,
                parent=self._seeker_post(parent),
            ),
            is_edit=True,
        )
        await self._dispatch(result.seeker_event)

    @staticmethod
    def _seeker_post(message: discord.Message) -> SeekerPost:
        return SeekerPost(
            guild_id=message.guild.id,  # type: ignore[union-attr]
            channel_id=message.channel.id,
            message_id=message.id,
            author_id=message.author.id,
            text=message.content,
        )

    async def _dispatch(self, event: SeekerRiskScored | None) -> None:
        if event is not None:
            self.bot.dispatch(SEEKER_RISK_SCORED, event)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        try:
            if not self._readable(message):
                return
            if await self._is_support_location(message.guild.id, message.channel):  # type: ignore[union-attr]
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
        assert self.pipeline is not None
        message = payload.message
        before = payload.cached_message
        if before is not None and before.content == message.content:
            return  # an embed or a pin changed, not the words

        async def look_up(session: AsyncSession) -> bool:
            if await reply_scoring.find_reply(session, payload.message_id) is not None:
                return True
            return await reply_scoring.seeker_risk_recorded(session, payload.message_id)

        known = await self.bot.database.run(f"look up edited message {payload.message_id}", look_up)  # type: ignore[attr-defined]
        if not (known or self.pipeline.is_scoring(payload.message_id) or self._may_be_seeker_post(message)):
            return  # an unknown reply: only replies we scored are re-scored
        try:
            await self._handle_edit(message)
        except Exception:
            log.exception("failed to re-score edited message %s", payload.message_id)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self._deleted([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self._deleted(list(payload.message_ids))

    async def _deleted(self, message_ids: list[int]) -> None:
        assert self.pipeline is not None
        await self.pipeline.forget(message_ids)
        # A message deleted before it was scored ends skipped / "deleted"; a finished one keeps its outcome.
        await self.bot.database.run(  # type: ignore[attr-defined]
            f"mark {len(message_ids)} deleted messages in the inbox",
            lambda session: message_inbox.mark_deleted(session, message_ids),
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Replies(bot))
