"""Seeker risk: judge a seeker post's risk once, and store it with the case it opens or joins.

A member's message in a support channel (a post, a thread starter, or the post a reply answers) is risk-scored
once per message id (risk priority, never shed), whichever comes first: its own scoring (``score_seeker_post``)
or a reply that carries its parent's risk (``ReplyScoringPipeline.score_reply``, which stores the parent's risk
through ``SeekerRisk.record`` in the reply's own unit of work). An edit may raise the stored tier, never lower
it (``rescore_seeker_post``). Storing the risk, deciding its guild tier and opening or joining the member's case
(``escalation_cases.handle_seeker_risk``) is one unit of work; the caller gets a ``JudgedRisk`` with the case to
deliver. Ids and text in, probabilities and ids stored (never text); no Discord objects.

Its own module so that ``reply_scoring`` is about replies: the reply pipeline owns a ``SeekerRisk`` and shares
with it the per-message locks and the memory of deleted messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import RiskAssessment
from bot.db.session import Database
from bot.services import escalation_cases, guild_settings
from bot.services.escalation_cases import ScoredMessage
from bot.services.locks import KeyedLocks
from bot.services.risk_tier import DefaultThresholds, decide_tier
from inference.client import InferenceClient
from inference.errors import InferenceError, InferenceShutDown
from inference.text_normalise import has_visible_text, readable_text
from inference.types import RiskResult, RiskScoreRequest, RiskTier

log = logging.getLogger(__name__)

EXCERPT_CHARS = 300


@dataclass(frozen=True, slots=True)
class SeekerPost:
    """A seeker's message in a support channel (a top-level post, a thread starter, or a reply's parent)."""

    guild_id: int
    channel_id: int
    message_id: int
    author_id: int
    text: str


@dataclass(frozen=True, slots=True)
class JudgedRisk:
    """A message's risk, stored with its guild tier in the unit of work that opened or joined its case."""

    message_id: int
    risk: RiskResult
    tier: RiskTier
    # The case to deliver (opened, or joined by this message), if the tier and consent call for one.
    escalation_id: int | None = None


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short slice for a moderator alert, cut at a word boundary."""
    text = readable_text(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] or text[: limit - 1]
    return cut + "…"


class StoreAttempts:
    """What earlier attempts of one retried unit of work wrote, so a re-run does not lose its result.

    A failed attempt is rolled back, so usually a re-run starts from nothing. But a connection lost during
    COMMIT (PostgreSQL) leaves the write in place: the re-run then finds "already stored" and would report
    nothing new, and the first score's coaching or the post's escalation would be lost. A row whose
    ``scored_at`` is this unit's own timestamp was written by this unit, so the earlier result stands.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.judged: JudgedRisk | None = None

    def judged_if_ours(self, row_scored_at: datetime | None) -> JudgedRisk | None:
        return self.judged if row_scored_at is not None and row_scored_at == self.now else None


@dataclass(kw_only=True, eq=False)
class SeekerRisk:
    """Risk-scores seeker posts through the inference client and stores each once, with its case."""

    database: Database
    inference: InferenceClient
    retention_days: int
    clock: Callable[[], datetime]
    # The risk model card's thresholds: every tier is decided against them (bot.services.risk_tier).
    default_thresholds: DefaultThresholds
    # Asked first thing in the transaction that stores a post's own first risk (see ReplyScoringPipeline).
    may_store_first_score: Callable[[AsyncSession, int], Awaitable[bool]] | None
    case_quiet: timedelta
    # The reply pipeline's: one lock per message id, and whether a message was deleted meanwhile.
    message_locks: KeyedLocks[int]
    is_deleted: Callable[[int], bool]
    # One lock per member (guild, author) around each unit of work that may open a case: two of their
    # messages judged at once join one case instead of opening two. Taken outside the transaction.
    _member_locks: KeyedLocks[tuple[int, int]] = field(default_factory=KeyedLocks, init=False)
    # Seeker posts whose risk scoring (risk priority, never shed) is under way, by message id: a reply
    # to one of them need not carry its parent's risk, so it goes at coaching priority and may be shed
    # under overload. Counts, because several scorings of one post may overlap.
    _risk_in_flight: dict[int, int] = field(default_factory=dict, init=False)

    def _lock(self, message_id: int) -> asyncio.Lock:
        return self.message_locks.of(message_id)

    def case_lock(self, post: SeekerPost) -> asyncio.Lock:
        """Held around each unit of work that may open ``post``'s author's case (outside the transaction)."""
        return self._member_locks.of((post.guild_id, post.author_id))

    def is_risk_scoring(self, message_id: int) -> bool:
        """This post's risk is being scored (its own request, or a reply carrying it), not yet stored."""
        return message_id in self._risk_in_flight

    @contextlib.contextmanager
    def scoring_risk_of(self, message_id: int) -> Iterator[None]:
        self._risk_in_flight[message_id] = self._risk_in_flight.get(message_id, 0) + 1
        try:
            yield
        finally:
            left = self._risk_in_flight.pop(message_id) - 1
            if left:
                self._risk_in_flight[message_id] = left

    async def score_seeker_post(self, post: SeekerPost) -> JudgedRisk | None:
        """Risk-score a post that is not a reply. Returns the event to dispatch, or None if already done."""
        if not has_visible_text(post.text):
            return None
        # Marked before any wait (lock, database), so replies arriving meanwhile already know it is covered.
        with self.scoring_risk_of(post.message_id):
            async with self._lock(post.message_id):
                if await self.database.run(
                    f"look up the risk of post {post.message_id}",
                    lambda session: seeker_risk_recorded(session, post.message_id),
                ):
                    return None
                return await self.score_post(post, own_message=True)

    async def rescore_seeker_post(self, post: SeekerPost, *, first_time: bool) -> JudgedRisk | None:
        """An edited seeker post: score its risk again. Returns the event only when its tier rose.

        Nothing is ever lowered by an edit (a post that said it once may still mean it). ``first_time``: an
        edited post that was never scored (posted before PeerCare read the channel) is scored now.
        """
        if not has_visible_text(post.text):
            return None
        async with self._lock(post.message_id):
            if self.is_deleted(post.message_id):
                return None
            known = await self.database.run(
                f"look up the risk of edited post {post.message_id}",
                lambda session: seeker_risk_recorded(session, post.message_id),
            )
            if not known and not first_time:
                return None
            risk = await self._risk_of(post, "edited post")
            if risk is None:
                return None  # the edit is not re-scored
            attempts = StoreAttempts(self.clock())

            async def store(session: AsyncSession) -> JudgedRisk | None:
                row = await session.scalar(
                    select(RiskAssessment).where(
                        RiskAssessment.source == "post", RiskAssessment.message_id == post.message_id
                    )
                )
                if row is None:
                    return await self.record(session, post, risk, attempts)
                ours = attempts.judged_if_ours(row.scored_at)
                if ours is not None:
                    return ours  # an earlier attempt's commit landed: its rise stands
                attempts.judged = await self._raise_seeker_risk(session, post, row, risk, attempts.now)
                return attempts.judged

            async with self.case_lock(post):
                return await self.database.run(f"store the risk of edited post {post.message_id}", store)

    async def record(
        self, session: AsyncSession, post: SeekerPost, risk: RiskResult, attempts: StoreAttempts
    ) -> JudgedRisk | None:
        """Store a message's risk once and, in the same unit of work, open or join its author's case.

        Inside a retried unit: when an earlier attempt's write landed (its commit did, its answer did not),
        that attempt's result stands.
        """
        if await record_seeker_risk(session, post, risk, attempts.now):
            attempts.judged = await self._open_or_join_case(session, post, risk, attempts.now)
            return attempts.judged
        if attempts.judged is None:
            return None
        stored_at = await session.scalar(
            select(RiskAssessment.scored_at).where(
                RiskAssessment.source == "post", RiskAssessment.message_id == post.message_id
            )
        )
        return attempts.judged_if_ours(stored_at)

    async def _open_or_join_case(
        self, session: AsyncSession, post: SeekerPost, risk: RiskResult, now: datetime
    ) -> JudgedRisk:
        """The guild's tier for the stored risk, and the case it opens or joins (escalation decides)."""
        decision = await escalation_cases.handle_seeker_risk(
            session,
            ScoredMessage(
                guild_id=post.guild_id,
                channel_id=post.channel_id,
                message_id=post.message_id,
                author_id=post.author_id,
                risk=risk,
                excerpt=excerpt(post.text),
            ),
            defaults=self.default_thresholds.value,
            now=now,
            retention_days=self.retention_days,
            quiet=self.case_quiet,
        )
        return JudgedRisk(post.message_id, risk, decision.tier, decision.escalation_id)

    async def _raise_seeker_risk(
        self, session: AsyncSession, post: SeekerPost, row: RiskAssessment, risk: RiskResult, now: datetime
    ) -> JudgedRisk | None:
        """Merge an edit's risk into the stored one (each label's highest probability, every phrase)."""
        stored_tier = RiskTier(row.tier)
        probabilities = dict(row.probabilities or {})
        for label, probability in risk.probabilities.items():
            probabilities[label] = max(probability, probabilities.get(label, 0.0))
        phrases = tuple(dict.fromkeys([*risk.phrase_matches, *(row.phrase_matches or ())]))
        merged = RiskResult(
            probabilities=probabilities,
            tier=RiskTier.max(risk.tier, stored_tier),
            triggered_labels=tuple(risk.triggered_labels),
            phrase_matches=phrases,
        )
        settings = await guild_settings.get_or_create(session, post.guild_id)
        # The stored tier is the guild's: compare like with like.
        decision = decide_tier(merged, settings.risk_thresholds, self.default_thresholds.value)
        if decision.tier.rank <= stored_tier.rank:
            log.info("edited post %s: risk tier not above %s", post.message_id, stored_tier.value)
            return None
        updated = await session.execute(
            update(RiskAssessment)
            .where(RiskAssessment.id == row.id)
            .values(probabilities=probabilities, phrase_matches=list(phrases), scored_at=now)
        )
        if not updated.rowcount:
            return None  # deleted meanwhile
        log.info(
            "edited post %s: risk tier rose from %s to %s (guild %s)",
            post.message_id,
            stored_tier.value,
            decision.tier.value,
            post.guild_id,
        )
        return await self._open_or_join_case(session, post, merged, now)

    async def score_post(self, post: SeekerPost, *, own_message: bool = False) -> JudgedRisk | None:
        """Score a post's risk and store it with its case.

        ``own_message``: the post is the message being processed (not the parent of a reply).
        """
        risk = await self._risk_of(post, "post")
        if risk is None:
            return None  # the message inbox keeps the message for another attempt
        attempts = StoreAttempts(self.clock())

        async def store(session: AsyncSession) -> JudgedRisk | None:
            # Asked again in every attempt: the author may be forgotten between two of them.
            if (
                own_message
                and self.may_store_first_score is not None
                and not await self.may_store_first_score(session, post.message_id)
            ):
                log.info("post %s: nothing stored (erased or deleted while being scored)", post.message_id)
                return None
            return await self.record(session, post, risk, attempts)

        async with self.case_lock(post):
            return await self.database.run(f"store the risk of post {post.message_id}", store)

    async def _risk_of(self, post: SeekerPost, what: str) -> RiskResult | None:
        """The risk of ``post.text`` (risk priority, never shed); None when the models could not answer."""
        try:
            with self.scoring_risk_of(post.message_id):
                scored = await self.inference.score_risk(
                    RiskScoreRequest(message_id=post.message_id, text=post.text)
                )
        except InferenceShutDown:
            # Shutdown, not a failure: nothing was scored; a new message stays pending for the next start.
            log.warning("%s %s not risk-scored: PeerCare is shutting down", what, post.message_id)
            return None
        except InferenceError as exc:
            log.error("could not risk-score %s %s: %s", what, post.message_id, type(exc).__name__)
            return None
        return scored.risk


async def seeker_risk_recorded(session: AsyncSession, message_id: int) -> bool:
    """The message was risk-scored as a seeker post (its edits are then re-scored)."""
    return await recorded_tier(session, message_id) is not None


async def recorded_tier(session: AsyncSession, message_id: int) -> str | None:
    """The tier the message's own risk was recorded at (as the latest of its author's burst), if it was judged."""
    return await session.scalar(
        select(RiskAssessment.tier).where(
            RiskAssessment.source == "post", RiskAssessment.message_id == message_id
        )
    )


async def record_seeker_risk(
    session: AsyncSession, post: SeekerPost, risk: RiskResult, now: datetime
) -> bool:
    """Store a message's risk (probabilities, no text) once; True only for the first writer.

    The unique (source, message_id) row is the "exactly once" guard: it holds across restarts and
    between two replies to the same post scored at the same time. Its tier is the guild's, set in the same
    unit of work by ``escalation_cases.handle_seeker_risk``.
    """
    if await seeker_risk_recorded(session, post.message_id):
        return False
    try:
        async with session.begin_nested():
            session.add(
                RiskAssessment(
                    guild_id=post.guild_id,
                    channel_id=post.channel_id,
                    message_id=post.message_id,
                    author_id=post.author_id,
                    source="post",
                    tier=risk.tier.value,
                    probabilities=dict(risk.probabilities),
                    triggered_labels=list(risk.triggered_labels),
                    phrase_matches=list(risk.phrase_matches),
                    scored_at=now,
                )
            )
    except IntegrityError:
        return False
    log.info("seeker post %s risk scored (guild %s)", post.message_id, post.guild_id)
    return True
