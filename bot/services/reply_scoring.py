"""The reply pipeline: score a reply with its parent, store the result, and carry the parent's first risk.

Ids and text in, database rows out; no Discord objects. Message text is stored only on the reply row and only
until ``text_expires_at`` (the retention job nulls it). A seeker post's own risk is judged and stored by
``bot.services.seeker_risk``; a reply whose parent was never risk-scored carries the parent's risk on its own
request, and that risk is stored (once, with its case) through the same ``SeekerRisk`` in the reply's unit of work.

Every unit of database work goes through ``Database.run``: a briefly locked or unreachable database re-runs
the unit (never the inference before it), so each unit is safe to run again: it checks before it inserts, asks
``may_store_first_score`` again, and recognises its own write from an attempt whose commit did land (see
``seeker_risk.StoreAttempts``). When the retries run out the error propagates and the message inbox keeps the
message pending.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import RiskAssessment, ScoredReply, utcnow
from bot.db.session import Database
from bot.services.escalation_cases import DEFAULT_QUIET
from bot.services.locks import KeyedLocks
from bot.services.risk_tier import DefaultThresholds
from bot.services.seeker_risk import JudgedRisk, SeekerPost, SeekerRisk, StoreAttempts, seeker_risk_recorded
from inference.client import InferenceClient
from inference.errors import InferenceError, InputRejected, RequestShed
from inference.text_normalise import comparable_text, has_visible_text
from inference.types import Mechanism, Priority, ReplyScore, ReplyScoreRequest, RiskResult

log = logging.getLogger(__name__)

# bot.dispatch(REPLY_SCORED, ReplyScored(...)) -> on_peercare_reply_scored: a reply was scored for the first time.
REPLY_SCORED = "peercare_reply_scored"
# Deleted message ids remembered, so scoring that finishes (or starts) after a delete stores nothing.
DELETED_IDS_KEPT = 10_000


class CoachingStatus(str, enum.Enum):
    """Where a scored reply stands on its way to (at most) one coaching note."""

    PENDING = "pending"  # scored, not yet looked at by coaching
    QUEUED = "queued"  # wanted, waiting for the rate limit
    SENDING = "sending"  # claimed for a DM that is being sent (settled after the send)
    SENT = "sent"  # delivered on its own
    DIGESTED = "digested"  # delivered inside a digest
    AWAITING_CONSENT = "awaiting_consent"  # responder invited, has not answered
    NOT_WANTED = "not_wanted"  # responder (or guild default) said no
    SHADOW = "shadow"  # guild in shadow mode: scored and logged only
    DMS_CLOSED = "dms_closed"
    # The reply itself put its author at high risk: no note praising its empathy (the case takes it from there).
    AUTHOR_AT_RISK = "author_at_risk"
    FAILED = "failed"


class ReplyOutcome(str, enum.Enum):
    NEW = "new"  # first time scored: coaching may follow
    UPDATED = "updated"  # an edit changed the text materially: re-scored, never a second note
    UNCHANGED = "unchanged"  # same text as stored (or already being scored)
    SKIPPED = "skipped"  # nothing to score (empty after normalisation, an edit of an unknown reply, ...)


@dataclass(frozen=True, slots=True)
class ReplyInput:
    """A responder's reply and the seeker post it answers."""

    guild_id: int
    channel_id: int
    reply_message_id: int
    responder_id: int
    reply_text: str
    parent: SeekerPost


@dataclass(frozen=True, slots=True)
class ReplyScored:
    """A new reply is stored: the coaching cog decides whether its author hears about it."""

    guild_id: int
    responder_id: int
    reply_message_id: int


@dataclass(frozen=True, slots=True)
class ReplyScoringResult:
    outcome: ReplyOutcome
    score: ReplyScore | None = None
    # Set only the first time the parent post is risk-judged (exactly once per message id).
    seeker_risk: JudgedRisk | None = None
    # Why nothing was stored (SKIPPED only): "input_rejected", "shed", "unavailable" (worth a retry), "deleted",
    # or "not_wanted" (``may_store_first_score`` said no).
    skip_reason: str | None = None


def content_hash(text: str) -> str:
    """Hash of the normalised reply: an edit that only touches case or spacing is not a material change."""
    return hashlib.sha256(comparable_text(text).encode("utf-8")).hexdigest()


def has_scorable_text(text: str | None) -> bool:
    """True when the models would score ``text`` (it shows a visible character: ``inference.text_normalise``)."""
    return has_visible_text(text)


def spans_as_offsets(score: ReplyScore) -> list[dict[str, Any]]:
    """Rationale spans as character offsets into the reply (the text itself is not duplicated)."""
    spans = []
    for mechanism, mechanism_score in score.empathy.by_mechanism().items():
        for span in mechanism_score.rationales:
            spans.append({"mechanism": mechanism.value, "start": span.start, "end": span.end})
    return spans


def _probabilities(score: ReplyScore) -> dict[str, list[float]]:
    return {m.value: list(s.probabilities) for m, s in score.empathy.by_mechanism().items()}


def _risk_json(risk: RiskResult) -> dict[str, Any]:
    return {
        "probabilities": dict(risk.probabilities),
        "tier": risk.tier.value,
        "triggered_labels": list(risk.triggered_labels),
        "phrase_matches": list(risk.phrase_matches),
    }


class _ReplyAttempts(StoreAttempts):
    """``StoreAttempts`` for a reply's unit of work, which also inserts the reply row."""

    def __init__(self, now: datetime) -> None:
        super().__init__(now)
        self.reply_inserted = False


class ReplyScoringPipeline:
    """Scores replies through the inference client and stores the results; seeker posts go to ``seeker_risk``."""

    def __init__(
        self,
        database: Database,
        inference: InferenceClient,
        *,
        retention_days: int,
        clock: Callable[[], datetime] = utcnow,
        default_thresholds: DefaultThresholds | None = None,
        may_store_first_score: Callable[[AsyncSession, int], Awaitable[bool]] | None = None,
        case_quiet: timedelta = DEFAULT_QUIET,
    ) -> None:
        self.database = database
        self.inference = inference
        self.retention_days = retention_days
        self.clock = clock
        # Asked first thing in the transaction that stores a message's first score, a reply's or a post's own
        # (it may lock what it reads): False when the author was forgotten while it was scored, so nothing
        # about them is stored afterwards.
        self.may_store_first_score = may_store_first_score
        # One lock per message id: an edit arriving while the original is being scored waits for it.
        self._locks: KeyedLocks[int] = KeyedLocks()
        self._deleted: OrderedDict[int, None] = OrderedDict()
        # Judges seeker posts' risk, sharing this pipeline's per-message locks and deleted messages.
        self.seeker_risk = SeekerRisk(
            database=database,
            inference=inference,
            retention_days=retention_days,
            clock=clock,
            default_thresholds=default_thresholds or DefaultThresholds(None),
            may_store_first_score=may_store_first_score,
            case_quiet=case_quiet,
            message_locks=self._locks,
            is_deleted=self.is_deleted,
        )

    def _lock(self, message_id: int) -> asyncio.Lock:
        return self._locks.of(message_id)

    def is_scoring(self, message_id: int) -> bool:
        """A first score (or re-score) of this message is under way: an edit now must not be dropped."""
        lock = self._locks.get(message_id)
        return lock is not None and lock.locked()

    def is_deleted(self, message_id: int) -> bool:
        """The message was deleted on Discord while this process ran: nothing more is stored for it."""
        return message_id in self._deleted

    async def forget(self, message_ids: Iterable[int]) -> int:
        """Messages were deleted: remember that first, then drop what is stored. Returns rows touched.

        Remembering comes before any wait, so a scoring of the same message still in flight stores nothing;
        the per-message lock makes the delete wait for a write already under way instead of racing it.
        """
        message_ids = list(message_ids)
        for message_id in message_ids:
            self._deleted[message_id] = None
            self._deleted.move_to_end(message_id)
        while len(self._deleted) > DELETED_IDS_KEPT:
            self._deleted.popitem(last=False)
        touched = 0
        for message_id in message_ids:
            async with self._lock(message_id):
                touched += await self.database.run(
                    f"forget deleted message {message_id}",
                    lambda session, message_id=message_id: forget_message(session, message_id),
                )
        return touched

    def _text_expiry(self) -> datetime | None:
        if self.retention_days <= 0:
            return None
        return self.clock() + timedelta(days=self.retention_days)

    async def score_reply(self, reply: ReplyInput, *, is_edit: bool = False) -> ReplyScoringResult:
        """Score a new or edited reply. An edit re-scores only a stored reply whose text changed materially."""
        if not (has_scorable_text(reply.reply_text) and has_scorable_text(reply.parent.text)):
            return ReplyScoringResult(ReplyOutcome.SKIPPED)
        new_hash = content_hash(reply.reply_text)
        async with self._lock(reply.reply_message_id):
            if self.is_deleted(reply.reply_message_id):
                return ReplyScoringResult(ReplyOutcome.SKIPPED)

            # Asked before the look-up as well as after it: a post whose risk is stored while the look-up runs
            # is in neither answer alone (not yet stored when read, no longer in flight after).
            parent_in_flight = self.seeker_risk.is_risk_scoring(reply.parent.message_id)

            async def look_up(session: AsyncSession) -> tuple[ScoredReply | None, bool]:
                return (
                    await _find_reply(session, reply.reply_message_id),
                    await seeker_risk_recorded(session, reply.parent.message_id),
                )

            stored, parent_known = await self.database.run(
                f"look up reply {reply.reply_message_id} and its post", look_up
            )
            if stored is None and is_edit:
                return ReplyScoringResult(ReplyOutcome.SKIPPED)
            if stored is not None and stored.content_hash == new_hash:
                return ReplyScoringResult(ReplyOutcome.UNCHANGED)

            # Stored, or being scored on its own path (whose inbox row retries it if that fails): the reply
            # need not carry the parent's first risk score, so it is ordinary, sheddable coaching work.
            parent_covered = (
                parent_in_flight or parent_known or self.seeker_risk.is_risk_scoring(reply.parent.message_id)
            )
            if parent_covered:
                score, why_not = await self._score(reply, carries_parent_risk=False)
            else:
                # This reply now carries the parent's risk: its siblings meanwhile need not (if it fails, its
                # own retry carries it again).
                with self.seeker_risk.scoring_risk_of(reply.parent.message_id):
                    score, why_not = await self._score(reply, carries_parent_risk=True)
            if score is None:
                # Only a reply that carried its parent's risk owes it: a shed coaching reply must not turn
                # into a never-shed risk request (that would unbound the queue again under overload).
                seeker_risk = None if parent_covered else await self.seeker_risk.score_post(reply.parent)
                return ReplyScoringResult(ReplyOutcome.SKIPPED, seeker_risk=seeker_risk, skip_reason=why_not)

            attempts = _ReplyAttempts(self.clock())

            async def store(session: AsyncSession) -> tuple[ReplyOutcome, str, JudgedRisk | None]:
                # Everything is decided again in each attempt: a delete or a forget-me may land between them.
                if self.is_deleted(reply.reply_message_id):
                    outcome, why_not = ReplyOutcome.SKIPPED, "deleted"
                elif (
                    not is_edit
                    and self.may_store_first_score is not None
                    and not await self.may_store_first_score(session, reply.reply_message_id)
                ):
                    outcome, why_not = ReplyOutcome.SKIPPED, "not_wanted"
                else:
                    outcome = await self._store(
                        session, reply, score, new_hash, is_edit=is_edit, attempts=attempts
                    )
                    why_not = "deleted"  # only if the row went meanwhile
                # The seeker post was not deleted with the reply: its risk is still recorded.
                seeker_risk = await self.seeker_risk.record(
                    session, reply.parent, score.parent_risk, attempts
                )
                return outcome, why_not, seeker_risk

            # The parent's first risk may open its author's case.
            async with self.seeker_risk.case_lock(reply.parent):
                outcome, why_not, seeker_risk = await self.database.run(
                    f"store the score of reply {reply.reply_message_id}", store
                )
            if outcome is ReplyOutcome.SKIPPED:
                log.info("reply %s: nothing stored (%s while being scored)", reply.reply_message_id, why_not)
                return ReplyScoringResult(outcome, seeker_risk=seeker_risk, skip_reason=why_not)
            log.info(
                "reply %s %s (guild %s, levels ER=%d IP=%d EX=%d)",
                reply.reply_message_id,
                outcome.value,
                reply.guild_id,
                score.empathy.emotional_reactions.level,
                score.empathy.interpretations.level,
                score.empathy.explorations.level,
            )
            return ReplyScoringResult(outcome, score=score, seeker_risk=seeker_risk)

    async def _score(
        self, reply: ReplyInput, *, carries_parent_risk: bool
    ) -> tuple[ReplyScore | None, str | None]:
        request = ReplyScoreRequest(
            parent_id=reply.parent.message_id,
            parent_text=reply.parent.text,
            reply_id=reply.reply_message_id,
            reply_text=reply.reply_text,
            # The parent's first risk score rides on this request only when nothing else will score it
            # (never requested: posted while PeerCare was down, or before its channel was opted in): then
            # it must not be shed under load.
            priority=Priority.RISK if carries_parent_risk else Priority.COACHING,
        )
        try:
            return await self.inference.score_reply(request), None
        except InputRejected:
            log.info("reply %s not scorable after normalisation", reply.reply_message_id)
            return None, "input_rejected"
        except RequestShed as exc:
            log.warning("coaching score for reply %s shed: %s", reply.reply_message_id, exc.reason)
            return None, "shed"
        except InferenceError as exc:
            log.error("could not score reply %s: %s", reply.reply_message_id, type(exc).__name__)
        return None, "unavailable"

    async def _store(
        self,
        session: AsyncSession,
        reply: ReplyInput,
        score: ReplyScore,
        new_hash: str,
        *,
        is_edit: bool,
        attempts: _ReplyAttempts,
    ) -> ReplyOutcome:
        empathy = score.empathy
        values = {
            "er_level": int(empathy.emotional_reactions.level),
            "ip_level": int(empathy.interpretations.level),
            "ex_level": int(empathy.explorations.level),
            "probabilities": _probabilities(score),
            "rationale_spans": spans_as_offsets(score),
            "parent_risk": _risk_json(score.parent_risk),
            "parent_risk_tier": score.parent_risk.tier.value,
            "content_hash": new_hash,
            "reply_text": reply.reply_text if self.retention_days > 0 else None,
            "text_expires_at": self._text_expiry(),
        }
        existing = None if is_edit else await _find_reply(session, reply.reply_message_id)
        if existing is not None and attempts.reply_inserted and existing.scored_at == attempts.now:
            return ReplyOutcome.NEW  # an earlier attempt's commit landed: still this reply's first score
        if not is_edit and existing is None:
            attempts.reply_inserted = True
            session.add(
                ScoredReply(
                    guild_id=reply.guild_id,
                    channel_id=reply.channel_id,
                    reply_message_id=reply.reply_message_id,
                    parent_message_id=reply.parent.message_id,
                    responder_id=reply.responder_id,
                    seeker_id=reply.parent.author_id,
                    coaching_status=CoachingStatus.PENDING.value,
                    scored_at=attempts.now,
                    **values,
                )
            )
            return ReplyOutcome.NEW
        # One UPDATE that may match nothing (the row went meanwhile: forget-me, retention), never a stale
        # ORM row; coaching_status untouched: an edit never earns a second note, nor re-creates a reply.
        result = await session.execute(
            update(ScoredReply).where(ScoredReply.reply_message_id == reply.reply_message_id).values(**values)
        )
        return ReplyOutcome.UPDATED if result.rowcount else ReplyOutcome.SKIPPED


async def _find_reply(session: AsyncSession, reply_message_id: int) -> ScoredReply | None:
    return await session.scalar(select(ScoredReply).where(ScoredReply.reply_message_id == reply_message_id))


async def find_reply(session: AsyncSession, reply_message_id: int) -> ScoredReply | None:
    return await _find_reply(session, reply_message_id)


async def forget_message(session: AsyncSession, message_id: int) -> int:
    """A message was deleted: drop its reply row, its post risk row, and its risk copy on replies to it.

    Escalations are left to the escalation service (a human may already be helping). Returns rows touched.
    """
    touched = 0
    result = await session.execute(delete(ScoredReply).where(ScoredReply.reply_message_id == message_id))
    touched += result.rowcount or 0
    result = await session.execute(
        delete(RiskAssessment).where(RiskAssessment.source == "post", RiskAssessment.message_id == message_id)
    )
    touched += result.rowcount or 0
    result = await session.execute(
        update(ScoredReply)
        .where(ScoredReply.parent_message_id == message_id)
        .values(parent_risk=None, parent_risk_tier=None)
    )
    touched += result.rowcount or 0
    if touched:
        log.info("deleted message %s: removed or cleared %d stored rows", message_id, touched)
    return touched


def mechanism_levels(row: ScoredReply) -> dict[Mechanism, int]:
    return {
        Mechanism.EMOTIONAL_REACTIONS: row.er_level,
        Mechanism.INTERPRETATIONS: row.ip_level,
        Mechanism.EXPLORATIONS: row.ex_level,
    }
