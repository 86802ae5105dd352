"""Read support channels: score each reply with its parent, risk-score each seeker post, follow edits and deletes."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.services import reply_scoring, support_channels
from bot.services.events import SEEKER_RISK_SCORED, SeekerRiskScored
from bot.services.reply_scoring import (
    REPLY_SCORED,
    ReplyInput,
    ReplyOutcome,
    ReplyScored,
    ReplyScoringPipeline,
    SeekerPost,
)

log = logging.getLogger(__name__)

# System messages (pins, joins, "started a thread") are never posts or replies.
_READABLE_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})


class Replies(commands.Cog):
    """Discord in: messages, edits and deletes in support channels. The work is in ``reply_scoring``."""

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        self.pipeline: ReplyScoringPipeline | None = None

    async def cog_load(self) -> None:
        self.pipeline = ReplyScoringPipeline(
            self.bot.database,  # type: ignore[attr-defined]
            self.bot.inference,  # type: ignore[attr-defined]
            retention_days=self.bot.settings.message_retention_days,  # type: ignore[attr-defined]
            # Loaded by /peercare setup; escalation reads the same attribute, so both judge tiers alike.
            default_thresholds=lambda: getattr(self.bot, "_peercare_default_thresholds", None),
        )

    # -- where PeerCare may read ------------------------------------------------------------------------

    async def _is_support_location(self, guild_id: int, channel: object) -> bool:
        """An opted-in channel, or a thread whose parent channel is opted in."""
        channel_id = (
            channel.parent_id if isinstance(channel, discord.Thread) else getattr(channel, "id", None)
        )
        if channel_id is None:
            return False
        async with self.bot.database.session() as session:  # type: ignore[attr-defined]
            return await support_channels.is_support_channel(session, guild_id, channel_id)

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

    # -- the work ----------------------------------------------------------------------------------------

    async def _handle(self, message: discord.Message, *, is_edit: bool) -> None:
        if message.guild is None or message.author.bot or message.type not in _READABLE_TYPES:
            return
        if not await self._is_support_location(message.guild.id, message.channel):
            return
        if not self._has_text(message):
            return  # empty or attachment-only: nothing to score
        assert self.pipeline is not None
        is_reply, parent = await self._parent_of(message)
        if is_reply and parent is not None and parent.author.id == message.author.id:
            is_reply = False  # a follow-up to one's own post is the seeker speaking again, not a reply
        if is_edit:
            # Any edited message may be a seeker post (a reply others answered is one too): an edit that
            # adds crisis language must reach escalation.
            await self._dispatch(
                await self.pipeline.rescore_seeker_post(self._seeker_post(message), first_time=not is_reply)
            )
        if not is_reply:
            if not is_edit:
                await self._dispatch(await self.pipeline.score_seeker_post(self._seeker_post(message)))
            return
        if parent is None or parent.author.bot or not self._has_text(parent):
            return
        result = await self.pipeline.score_reply(
            ReplyInput(
                guild_id=message.guild.id,
                channel_id=message.channel.id,
                reply_message_id=message.id,
                responder_id=message.author.id,
                reply_text=message.content,
                parent=self._seeker_post(parent),
            ),
            is_edit=is_edit,
        )
        await self._dispatch(result.seeker_event)
        if result.outcome is ReplyOutcome.NEW and not self.pipeline.is_deleted(message.id):
            self.bot.dispatch(REPLY_SCORED, ReplyScored(message.guild.id, message.author.id, message.id))

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
            await self._handle(message, is_edit=False)
        except Exception:
            log.exception("failed to process message %s", message.id)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        assert self.pipeline is not None
        message = payload.message
        before = payload.cached_message
        if before is not None and before.content == message.content:
            return  # an embed or a pin changed, not the words
        async with self.bot.database.session() as session:  # type: ignore[attr-defined]
            known = await reply_scoring.find_reply(session, payload.message_id) is not None
            known = known or await reply_scoring.seeker_risk_recorded(session, payload.message_id)
        if not (known or self.pipeline.is_scoring(payload.message_id) or self._may_be_seeker_post(message)):
            return  # an unknown reply: only replies we scored are re-scored
        try:
            await self._handle(message, is_edit=True)
        except Exception:
            log.exception("failed to re-score edited message %s", payload.message_id)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        assert self.pipeline is not None
        await self.pipeline.forget([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        assert self.pipeline is not None
        await self.pipeline.forget(payload.message_ids)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(Replies(bot))
