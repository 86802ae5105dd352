"""The message intake without Discord: snapshots in, one inbox outcome, risk judged for posts and replies alike."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.db.models import Escalation, EscalationConsent, InboxOutcome
from bot.db.session import Database
from bot.services import guild_settings, message_inbox
from bot.services.message_inbox import SkipReason
from bot.services.message_intake import MessageIntake, MessageRef, MessageSnapshot, ParentSnapshot
from bot.services.reply_scoring import ReplyScored, ReplyScoringPipeline
from inference.types import RiskTier
from tests.bot.services.responder_fixtures import ScriptedInference

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GUILD, CHANNEL, SEEKER, RESPONDER = 1, 2, 3, 4


class Recorder:
    def __init__(self) -> None:
        self.cases: list[int] = []
        self.coached: list[ReplyScored] = []

    async def deliver(self, ids: Sequence[int]) -> None:
        self.cases.extend(ids)


def _intake(database: Database, inference: ScriptedInference, recorder: Recorder) -> MessageIntake:
    pipeline = ReplyScoringPipeline(
        database, inference, retention_days=7, may_store_first_score=message_inbox.still_pending
    )
    return MessageIntake(
        database, pipeline, deliver_cases=recorder.deliver, reply_scored=recorder.coached.append
    )


def _snapshot(
    message_id: int, author: int, text: str, parent: ParentSnapshot | None = None
) -> MessageSnapshot:
    return MessageSnapshot(
        MessageRef(message_id, GUILD, CHANNEL, author), text, T0, is_reply=parent is not None, parent=parent
    )


async def _take(intake: MessageIntake, snapshot: MessageSnapshot) -> bool:
    async def source() -> MessageSnapshot:
        return snapshot

    return await intake.take(snapshot.ref, source)


async def _outcome(database: Database, message_id: int) -> tuple[InboxOutcome, str | None] | None:
    async with database.session() as session:
        return await message_inbox.outcome_of(session, message_id)


async def test_a_reply_is_risk_judged_and_scored_with_its_parent(
    database: Database, inference: ScriptedInference
) -> None:
    recorder = Recorder()
    intake = _intake(database, inference, recorder)
    post = _snapshot(500, SEEKER, "Rough week.")
    await _take(intake, post)
    parent = ParentSnapshot(500, CHANNEL, SEEKER, False, "Rough week.")
    assert await _take(intake, _snapshot(600, RESPONDER, "That sounds hard.", parent))
    assert [call.message_id for call in inference.risk_calls] == [500, 600]
    assert [call.reply_id for call in inference.reply_calls] == [600]
    assert recorder.coached == [ReplyScored(GUILD, RESPONDER, 600)]
    assert (await _outcome(database, 600))[0] is InboxOutcome.SCORED


async def test_a_high_risk_reply_opens_a_case_for_its_author(
    database: Database, inference: ScriptedInference
) -> None:
    async with database.session() as session:
        await guild_settings.update(
            session, GUILD, 99, shadow_mode=False, default_escalation_consent=EscalationConsent.YES
        )
    recorder = Recorder()
    intake = _intake(database, inference, recorder)
    await _take(intake, _snapshot(500, SEEKER, "Rough week."))
    inference.tier = RiskTier.HIGH
    parent = ParentSnapshot(500, CHANNEL, SEEKER, False, "Rough week.")
    await _take(intake, _snapshot(600, RESPONDER, "honestly same, i want out", parent))
    async with database.session() as session:
        case = await session.get(Escalation, recorder.cases[0])
    assert recorder.cases == [case.id] and (case.member_id, case.message_id) == (RESPONDER, 600)


async def test_a_redelivered_event_is_processed_once(
    database: Database, inference: ScriptedInference
) -> None:
    intake = _intake(database, inference, Recorder())
    post = _snapshot(500, SEEKER, "Rough week.")
    assert await _take(intake, post)
    assert not await _take(intake, post)
    assert len(inference.risk_calls) == 1


async def test_a_message_without_words_is_skipped_with_its_reason(
    database: Database, inference: ScriptedInference
) -> None:
    intake = _intake(database, inference, Recorder())
    await _take(intake, _snapshot(500, SEEKER, "\u200b\u202e "))
    assert await _outcome(database, 500) == (InboxOutcome.SKIPPED, SkipReason.EMPTY.value)
    assert inference.risk_calls == []


async def test_a_reply_whose_parent_is_unreadable_is_still_risk_judged(
    database: Database, inference: ScriptedInference
) -> None:
    intake = _intake(database, inference, Recorder())
    snapshot = MessageSnapshot(
        MessageRef(600, GUILD, CHANNEL, RESPONDER), "reply", T0, is_reply=True, parent=None
    )
    await _take(intake, snapshot)
    assert [call.message_id for call in inference.risk_calls] == [600]
    assert await _outcome(database, 600) == (InboxOutcome.SKIPPED, SkipReason.PARENT_UNREADABLE.value)
