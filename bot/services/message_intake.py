"""Message intake: one support-channel message from arrival to its one recorded outcome, no Discord objects.

The cog hands in plain snapshots (ids, author, text, the parent it answers, where it was posted); this
service owns the inbox state machine:

1. ``take`` records the message in the inbox (ids only) before any slow work, once per message id;
2. ``process`` judges the risk of the author's burst (every message, posts and replies alike) and, for a reply,
   scores it with its parent; the case the risk opened or joined is delivered and a new reply goes to coaching;
3. every path ends with exactly one outcome (scored, or skipped with a reason), or leaves the message pending
   for ``recover_pending``, which the cog runs at start-up and every minute with a way to fetch it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import InboxOutcome, utcnow
from bot.db.session import Database, transient_reason
from bot.services import message_inbox, reply_scoring, seeker_risk
from bot.services.bursts import Bursts
from bot.services.message_inbox import MAX_ATTEMPTS, MessageKind, PendingMessage, SkipReason
from bot.services.reply_scoring import (
    CoachingStatus,
    ReplyInput,
    ReplyOutcome,
    ReplyScored,
    ReplyScoringPipeline,
    ReplyScoringResult,
)
from bot.services.seeker_risk import JudgedRisk, SeekerPost
from bot.sharding import GuildOwnership
from inference.text_normalise import has_visible_text

log = logging.getLogger(__name__)

# The periodic sweep leaves younger pending messages alone: they are most likely still being processed.
RECOVERY_GRACE_SECONDS = 5
RECOVERY_CONCURRENCY = 4
_PIPELINE_SKIPS = {
    "input_rejected": SkipReason.INPUT_REJECTED,
    "shed": SkipReason.SHED,
    "deleted": SkipReason.DELETED,
    # Its inbox row went (forget-me, member left) or already has an outcome: recording changes nothing.
    "not_wanted": SkipReason.DELETED,
}


@dataclass(frozen=True, slots=True)
class MessageRef:
    """What the inbox records of a message: ids only."""

    message_id: int
    guild_id: int
    channel_id: int
    author_id: int


@dataclass(frozen=True, slots=True)
class ParentSnapshot:
    """The message a reply answers (a post, a thread starter, or any message replied to)."""

    message_id: int
    channel_id: int
    author_id: int
    author_is_bot: bool
    text: str


@dataclass(frozen=True, slots=True)
class MessageSnapshot:
    """A member's message as the cog read it from Discord: plain values the intake decides on."""

    ref: MessageRef
    text: str
    created_at: datetime
    has_files: bool = False
    # A Discord reply, or a message inside a thread other than its starter.
    is_reply: bool = False
    # The message it answers; None for a post, or a reply whose parent cannot be read.
    parent: ParentSnapshot | None = None

    @property
    def answers_someone_else(self) -> bool:
        """A reply to another member: a follow-up to one's own post is the seeker speaking again."""
        return self.is_reply and not (self.parent is not None and self.parent.author_id == self.ref.author_id)

    def as_post(self, text: str | None = None) -> SeekerPost:
        ref = self.ref
        return SeekerPost(
            ref.guild_id, ref.channel_id, ref.message_id, ref.author_id, self.text if text is None else text
        )


# Builds the snapshot (fetching the parent may be slow): called only once the message is recorded.
SnapshotSource = Callable[[], Awaitable[MessageSnapshot]]
# Fetches a pending message again after a restart: a source, a reason it is gone for good, or (None, None)
# when it cannot be fetched now (try again later).
Refetch = Callable[[PendingMessage], Awaitable[tuple[SnapshotSource | None, SkipReason | None]]]


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one attempt at a message ended: scored (no reason), skipped (a reason), or to be retried."""

    kind: MessageKind
    skip_reason: SkipReason | None = None
    retry: bool = False


class MessageIntake:
    """The inbox state machine, burst risk judgement and recovery for every support-channel message."""

    def __init__(
        self,
        database: Database,
        pipeline: ReplyScoringPipeline,
        *,
        deliver_cases: Callable[[Sequence[int]], Awaitable[None]],
        reply_scored: Callable[[ReplyScored], None],
        closing: Callable[[], bool] = lambda: False,
        burst_window: timedelta = timedelta(minutes=5),
        owned: GuildOwnership = GuildOwnership.everything(),  # noqa: B008  (frozen, never mutated)
    ) -> None:
        self.database = database
        # Recovery takes only these guilds' pending messages: each guild's are recovered by one process.
        self.owned = owned
        self.pipeline = pipeline
        self.deliver_cases = deliver_cases
        self.reply_scored = reply_scored
        self.closing = closing
        self.bursts = Bursts(burst_window)
        # Messages this process is working on: a redelivered event or a sweep leaves them alone.
        self._in_flight: set[int] = set()

    def is_in_flight(self, message_id: int) -> bool:
        return message_id in self._in_flight

    # -- a new message: received, processed, one outcome -------------------------------------------------

    async def take(
        self,
        ref: MessageRef,
        source: SnapshotSource,
        *,
        only_if_new: bool = False,
        arrived: tuple[datetime, str] | None = None,
    ) -> bool:
        """Record the message in the inbox before any slow work, then process it (once per event id).

        ``only_if_new`` (catch-up from history): a message the inbox already has is left alone, pending or
        not (a pending one is the recovery sweep's). ``arrived`` (posted at, text): the message joins its
        author's burst at once, before any wait, so a message judged after a later one still counts in its
        burst. Returns True when this call processed the message. Raises when the arrival cannot be recorded
        (the database is unavailable past every retry).
        """
        if arrived is not None and has_visible_text(arrived[1]):
            self.bursts.add(ref, *arrived)
        if ref.message_id in self._in_flight:
            return False  # the same event again (gateway replay, or live and history) while it is processed
        self._in_flight.add(ref.message_id)

        async def record(session: AsyncSession) -> int | None:
            received = await message_inbox.record_received(
                session,
                message_id=ref.message_id,
                guild_id=ref.guild_id,
                channel_id=ref.channel_id,
                author_id=ref.author_id,
            )
            if received.is_new:
                return received.attempts
            if only_if_new:
                return None
            if received.outcome is not InboxOutcome.PENDING:
                log.info("message %s already has an outcome: redelivered event ignored", ref.message_id)
                return None
            return await message_inbox.start_attempt(session, ref.message_id)

        try:
            # Retried if the database is briefly locked or unreachable: until this commits, nothing recalls it.
            attempt = await self.database.run("recording a received message", record)
            if attempt is not None:
                await self.process(ref.message_id, source, attempt)
        finally:
            self._in_flight.discard(ref.message_id)
        return attempt is not None

    async def process(self, message_id: int, source: SnapshotSource, attempt: int) -> None:
        """One attempt at a recorded message; its outcome is written at the end of every path."""
        if attempt > MAX_ATTEMPTS:
            await self.failed(message_id)  # it kept dying (crashes) before it could finish
            return
        try:
            verdict: Verdict | None = await self._score_new(await source(), retrying=attempt > 1)
        except Exception as exc:
            reason = transient_reason(exc)
            if reason is None:
                log.exception("failed to process message %s (attempt %d)", message_id, attempt)
            else:
                # Every retry of the unit of work already failed (and was logged): nothing is lost, the
                # message stays pending and the recovery sweep processes it again once the database is back.
                log.warning(
                    "message %s (attempt %d) left pending for the recovery sweep: database unavailable (%s)",
                    message_id,
                    attempt,
                    reason,
                )
            verdict = None
        if verdict is None or verdict.retry:
            if not self.pipeline.is_deleted(message_id):
                await self.failed(message_id)
                return
            verdict = Verdict(verdict.kind if verdict else MessageKind.UNKNOWN, SkipReason.DELETED)
        await self.record(message_id, verdict)

    async def _score_new(self, message: MessageSnapshot, *, retrying: bool) -> Verdict:
        kind = MessageKind.REPLY if message.answers_someone_else else MessageKind.POST
        if not has_visible_text(message.text):
            return Verdict(kind, SkipReason.ATTACHMENT_ONLY if message.has_files else SkipReason.EMPTY)
        if kind is MessageKind.POST:
            return Verdict(kind, retry=not await self.judge(message))
        # Coaching first: under overload its request is shed at once instead of queueing behind the risk work.
        verdict, scored = await self._score_reply(message, retrying=retrying)
        # The reply's own words are judged too (a responder can be the one in danger); if the models could not
        # answer, another attempt must judge them.
        judged = await self.judge(message)
        if not judged:
            # Coaching waits for the reply's own risk, which decides whether a note may go (the retry that
            # judges it hands the still-pending reply to coaching).
            return Verdict(kind, retry=True)
        if scored is not None:
            self.reply_scored(scored)
        return verdict

    async def judge(self, message: MessageSnapshot) -> bool:
        """Risk-judge the message as the latest of its author's burst; True once its risk is recorded.

        The burst's texts are joined in memory only; what is stored is the probabilities and the tier.
        """
        burst_text = self.bursts.add(message.ref, message.created_at, message.text)
        judged = await self.pipeline.seeker_risk.score_seeker_post(message.as_post(burst_text))
        await self.deliver(judged)
        if judged is not None:
            return True
        # None means "already judged" or "inference failed": the row tells.
        return await self.database.run(
            f"look up the risk of message {message.ref.message_id}",
            lambda session: seeker_risk.seeker_risk_recorded(session, message.ref.message_id),
        )

    async def deliver(self, judged: JudgedRisk | None) -> None:
        """The case the unit of work that stored this risk opened or joined goes out now."""
        if judged is not None and judged.escalation_id is not None:
            await self.deliver_cases([judged.escalation_id])

    async def _score_reply(
        self, message: MessageSnapshot, *, retrying: bool
    ) -> tuple[Verdict, ReplyScored | None]:
        """The reply scored with its parent, and the coaching it may earn (handed over once its risk is known)."""
        parent = message.parent
        if parent is None:
            return Verdict(MessageKind.REPLY, SkipReason.PARENT_UNREADABLE), None
        if parent.author_is_bot:
            return Verdict(MessageKind.REPLY, SkipReason.PARENT_IS_BOT), None
        if not has_visible_text(parent.text):
            return Verdict(MessageKind.REPLY, SkipReason.PARENT_EMPTY), None
        result = await self.pipeline.score_reply(reply_input(message, parent))
        await self.deliver(result.seeker_risk)
        ref = message.ref
        scored = None
        if not self.pipeline.is_deleted(ref.message_id) and (
            result.outcome is ReplyOutcome.NEW
            or (
                retrying
                and result.outcome is ReplyOutcome.UNCHANGED
                and await self._coaching_owed(ref.message_id)
            )
        ):
            scored = ReplyScored(ref.guild_id, ref.author_id, ref.message_id)
        return self._reply_verdict(result), scored

    async def _coaching_owed(self, message_id: int) -> bool:
        """Stored before a crash, never looked at by coaching: the note it may earn is still owed."""
        row = await self.database.run(
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

    async def record(self, message_id: int, verdict: Verdict) -> None:
        if self.pipeline.is_deleted(message_id):
            verdict = Verdict(verdict.kind, SkipReason.DELETED)

        async def finish(session: AsyncSession) -> bool:
            if verdict.skip_reason is None:
                return await message_inbox.mark_scored(session, message_id, kind=verdict.kind)
            return await message_inbox.mark_skipped(
                session, message_id, verdict.skip_reason, kind=verdict.kind
            )

        try:
            await self.database.run("recording a message's outcome", finish)
        except Exception as exc:
            # Still pending: the sweep processes it again, and the pipeline never scores it twice.
            log.warning("could not record the outcome of message %s: %s", message_id, type(exc).__name__)

    async def failed(self, message_id: int) -> None:
        """This attempt did not finish: the message stays pending for the sweep, or is given up at the limit."""
        if self.closing():
            return  # shutting down: it stays pending and the next start processes it
        try:
            given_up = await self.database.run(
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

    async def recover_pending(self, refetch: Refetch, *, received_before: datetime | None = None) -> int:
        """Process again every pending message received before the cut-off (fetched anew through ``refetch``).

        Safe at any time: messages this process is working on are left alone, and each attempt is claimed
        in the database first. Only the guilds this process owns (``owned``): with several processes, a
        guild's messages wait for the process whose shard receives it. Returns how many were looked at.
        """
        cutoff = received_before or utcnow() - timedelta(seconds=RECOVERY_GRACE_SECONDS)
        limit = asyncio.Semaphore(RECOVERY_CONCURRENCY)

        async def recover(row: PendingMessage) -> None:
            async with limit:
                try:
                    await self._recover(row, refetch)
                except Exception:
                    log.exception("could not recover message %s", row.message_id)

        looked_at = 0
        last: PendingMessage | None = None
        while True:  # page by page, so a backlog after a crash is worked off in one sweep
            page = await self.database.run(
                "list pending inbox messages",
                lambda session, after=last: message_inbox.pending(
                    session,
                    older_than=cutoff,
                    limit=message_inbox.RECOVERY_PAGE_SIZE,
                    after=after,
                    owned=self.owned,
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

    async def _recover(self, row: PendingMessage, refetch: Refetch) -> None:
        if row.message_id in self._in_flight:
            return
        self._in_flight.add(row.message_id)
        try:
            # A re-run after a commit that did land (PostgreSQL) counts one attempt too many: harmless.
            attempt = await self.database.run(
                f"start recovering message {row.message_id}",
                lambda session: message_inbox.start_attempt(session, row.message_id),
            )
            if attempt is None:
                return  # finished meanwhile
            if attempt > MAX_ATTEMPTS:
                await self.failed(row.message_id)
                return
            source, reason = await refetch(row)
            if source is None:
                if reason is None:
                    await self.failed(row.message_id)
                else:
                    await self.record(row.message_id, Verdict(MessageKind.UNKNOWN, reason))
                return
            await self.process(row.message_id, source, attempt)
        finally:
            self._in_flight.discard(row.message_id)

    # -- edits: re-scored, never a second outcome ---------------------------------------------------------

    async def is_known(self, message_id: int) -> bool:
        """A reply PeerCare scored, a message whose risk it judged, or one being scored right now."""

        async def look_up(session: AsyncSession) -> bool:
            if await reply_scoring.find_reply(session, message_id) is not None:
                return True
            return await seeker_risk.seeker_risk_recorded(session, message_id)

        if self.pipeline.is_scoring(message_id):
            return True
        return await self.database.run(f"look up edited message {message_id}", look_up)

    async def edited(self, message: MessageSnapshot) -> None:
        """An edit: the risk is judged again (it can only rise) and a scored reply is re-scored."""
        if not has_visible_text(message.text):
            return  # emptied by the edit: nothing to score
        # Any edited message may be a seeker post (a reply others answered is one too): an edit that adds
        # crisis language must reach escalation.
        await self.deliver(
            await self.pipeline.seeker_risk.rescore_seeker_post(
                message.as_post(), first_time=not message.answers_someone_else
            )
        )
        parent = message.parent
        if not message.answers_someone_else or parent is None or parent.author_is_bot:
            return
        if not has_visible_text(parent.text):
            return
        result = await self.pipeline.score_reply(reply_input(message, parent), is_edit=True)
        await self.deliver(result.seeker_risk)

    # -- deletes ------------------------------------------------------------------------------------------

    async def deleted(self, message_ids: Iterable[int]) -> None:
        """Forget deleted messages (scores, burst text); one not yet scored ends skipped / "deleted"."""
        message_ids = list(message_ids)
        self.bursts.forget(message_ids)
        await self.pipeline.forget(message_ids)
        await self.database.run(
            f"mark {len(message_ids)} deleted messages in the inbox",
            lambda session: message_inbox.mark_deleted(session, message_ids),
        )


def reply_input(message: MessageSnapshot, parent: ParentSnapshot) -> ReplyInput:
    """The one place a reply and the post it answers become the pipeline's input."""
    ref = message.ref
    return ReplyInput(
        guild_id=ref.guild_id,
        channel_id=ref.channel_id,
        reply_message_id=ref.message_id,
        responder_id=ref.author_id,
        reply_text=message.text,
        parent=SeekerPost(ref.guild_id, parent.channel_id, parent.message_id, parent.author_id, parent.text),
    )
