"""Escalation service: consent decides who hears, cases are written before sending, states move one way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.db.models import AuditLogEntry, Escalation, EscalationConsent, EscalationState, RiskAssessment
from bot.db.session import Database
from bot.services import (
    consent,
    escalation_actions,
    escalation_cases,
    escalation_delivery,
    escalation_policy,
    guild_settings,
)
from bot.services.errors import UserFacingError
from bot.services.escalation_cases import ScoredMessage
from bot.services.escalation_policy import EscalationKind, ModeratorAction, Outcome
from bot.services.risk_tier import TierDecision, decide_tier
from bot.sharding import GuildOwnership
from inference.types import RiskResult, RiskThresholds, RiskTier

# A faster `database` fixture (a copy of one migrated file) for these modules.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
GUILD, CHANNEL, MEMBER, MODERATOR = 10, 20, 30, 40


def _event(message_id: int = 100, tier: RiskTier = RiskTier.HIGH, probability: float = 0.95) -> ScoredMessage:
    risk = RiskResult(
        probabilities={"suicidal": probability, "stress": 0.2},
        tier=tier,
        triggered_labels=("suicidal",) if tier is not RiskTier.NONE else (),
    )
    return ScoredMessage(
        guild_id=GUILD,
        channel_id=CHANNEL,
        message_id=message_id,
        author_id=MEMBER,
        risk=risk,
        excerpt="a short made-up excerpt",
    )


async def _configure(
    database: Database, *, shadow: bool = False, default=EscalationConsent.YES, **extra
) -> None:
    async with database.session() as session:
        await guild_settings.update(
            session,
            GUILD,
            MODERATOR,
            shadow_mode=shadow,
            default_escalation_consent=default,
            alert_channel_id=555,
            moderator_role_id=666,
            **extra,
        )


async def _handle(database: Database, event: ScoredMessage, defaults: RiskThresholds | None = None):
    async with database.session() as session:
        return await escalation_cases.handle_seeker_risk(
            session, event, defaults=defaults, now=NOW, retention_days=7
        )


async def _alerted_case(database: Database) -> int:
    await _configure(database)
    decision = await _handle(database, _event())
    async with database.session() as session:
        await escalation_delivery.mark_attempt(session, decision.escalation_id)
    async with database.session() as session:
        await escalation_delivery.mark_alerted(session, decision.escalation_id, 555, 9001, NOW)
    return decision.escalation_id


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (EscalationConsent.YES, Outcome.ALERT_MODERATORS),
        (EscalationConsent.ASK_FIRST, Outcome.ASK_MEMBER),
        (EscalationConsent.NO, Outcome.PRIVATE_RESOURCES),
    ],
)
def test_high_tier_outcome_follows_consent(choice: EscalationConsent, expected: Outcome) -> None:
    assert escalation_policy.decide_outcome(RiskTier.HIGH, choice, shadow_mode=False) is expected


def test_elevated_tier_never_escalates() -> None:
    assert (
        escalation_policy.decide_outcome(RiskTier.ELEVATED, EscalationConsent.YES, shadow_mode=False)
        is Outcome.NOTHING
    )


def test_shadow_mode_sends_nothing() -> None:
    assert (
        escalation_policy.decide_outcome(RiskTier.HIGH, EscalationConsent.YES, shadow_mode=True)
        is Outcome.SHADOW
    )


def test_describe_default_outcome_says_member_is_asked_first() -> None:
    text = escalation_policy.describe_default_outcome(RiskTier.HIGH)
    assert "asks whether" in text and "moderators see nothing" in text
    assert "No escalation" in escalation_policy.describe_default_outcome(RiskTier.ELEVATED)


def test_guild_thresholds_can_lower_the_bar_to_high() -> None:
    risk = RiskResult(probabilities={"suicidal": 0.6}, tier=RiskTier.ELEVATED, triggered_labels=("suicidal",))
    stored = {"high": {"suicidal": 0.5}, "elevated": {"suicidal": 0.3}}
    decision = decide_tier(risk, stored, None)
    assert decision.tier is RiskTier.HIGH
    assert decision.labels == ("suicidal",)


def test_guild_thresholds_never_drop_a_phrase_raised_tier() -> None:
    risk = RiskResult(probabilities={"suicidal": 0.1}, tier=RiskTier.HIGH, phrase_matches=("plan_to_die",))
    stored = {"high": {"suicidal": 0.99}, "elevated": {"suicidal": 0.9}}
    assert decide_tier(risk, stored, None).tier is RiskTier.HIGH


def test_without_guild_thresholds_the_model_tier_stands() -> None:
    risk = RiskResult(probabilities={"suicidal": 0.1}, tier=RiskTier.ELEVATED, triggered_labels=("stress",))
    assert decide_tier(risk, None, None) == TierDecision(RiskTier.ELEVATED, ("stress",))


async def test_high_post_opens_a_pending_case_before_anything_is_sent(database: Database) -> None:
    await _configure(database)
    decision = await _handle(database, _event())
    assert decision.outcome is Outcome.ALERT_MODERATORS
    async with database.session() as session:
        row = await session.get(Escalation, decision.escalation_id)
        assessment = await session.scalar(select(RiskAssessment).where(RiskAssessment.message_id == 100))
    assert row.state is EscalationState.PENDING
    assert row.excerpt == "a short made-up excerpt"
    assert row.text_expires_at == NOW + timedelta(days=7)
    assert assessment.tier == "high"


async def test_same_post_never_opens_two_cases(database: Database) -> None:
    await _configure(database)
    first = await _handle(database, _event())
    second = await _handle(database, _event())
    assert first.escalation_id == second.escalation_id
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(Escalation)) == 1


async def test_shadow_mode_records_and_audits_but_opens_no_case(database: Database) -> None:
    await _configure(database, shadow=True)
    decision = await _handle(database, _event())
    assert decision.outcome is Outcome.SHADOW and decision.escalation_id is None
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(Escalation)) == 0
        actions = list(await session.scalars(select(AuditLogEntry.action)))
    assert "escalation.shadow" in actions


async def test_no_consent_case_stores_no_excerpt(database: Database) -> None:
    await _configure(database, default=EscalationConsent.NO)
    decision = await _handle(database, _event())
    async with database.session() as session:
        row = await session.get(Escalation, decision.escalation_id)
    assert decision.outcome is Outcome.PRIVATE_RESOURCES
    assert row.excerpt is None


async def test_members_own_choice_overrides_guild_default(database: Database) -> None:
    await _configure(database, default=EscalationConsent.YES)
    async with database.session() as session:
        await consent.set_escalation(session, GUILD, MEMBER, EscalationConsent.NO)
    assert (await _handle(database, _event())).outcome is Outcome.PRIVATE_RESOURCES


async def test_plan_after_an_attempt_without_a_recorded_alert_checks_for_a_previous_send(
    database: Database,
) -> None:
    await _configure(database)
    decision = await _handle(database, _event())
    async with database.session() as session:
        before = await escalation_delivery.plan_delivery(session, decision.escalation_id)
        await escalation_delivery.mark_attempt(session, decision.escalation_id)
    async with database.session() as session:
        after = await escalation_delivery.plan_delivery(session, decision.escalation_id)
    assert before.may_have_been_sent is False
    assert after.may_have_been_sent is True
    assert after.alert_channel_id == 555 and after.moderator_role_id == 666


async def test_alerted_case_is_no_longer_pending(database: Database) -> None:
    case_id = await _alerted_case(database)
    async with database.session() as session:
        assert await escalation_delivery.plan_delivery(session, case_id) is None
        assert await escalation_delivery.pending_ids(session) == []


async def test_failed_delivery_stays_pending_and_is_audited_once_per_error(database: Database) -> None:
    await _configure(database)
    decision = await _handle(database, _event())
    for _ in range(2):
        async with database.session() as session:
            await escalation_delivery.mark_failed(session, decision.escalation_id, "no alert channel", NOW)
    async with database.session() as session:
        assert await escalation_delivery.pending_ids(session) == [decision.escalation_id]
        failures = await session.scalar(
            select(func.count()).where(AuditLogEntry.action == "escalation.delivery_failed")
        )
    assert failures == 1


async def test_moderator_steps_record_who_and_when(database: Database) -> None:
    case_id = await _alerted_case(database)
    later = NOW + timedelta(minutes=5)
    async with database.session() as session:
        await escalation_actions.apply_moderator_action(
            session, case_id, ModeratorAction.CLAIM, MODERATOR, later
        )
    async with database.session() as session:
        row = await escalation_actions.apply_moderator_action(
            session, case_id, ModeratorAction.RESOLVE, MODERATOR, later + timedelta(minutes=1)
        )
    assert row.state is EscalationState.RESOLVED
    assert (row.claimed_by, row.claimed_at) == (MODERATOR, later)
    assert row.acknowledged_by == MODERATOR
    assert row.resolved_at == later + timedelta(minutes=1)
    async with database.session() as session:
        actions = list(await session.scalars(select(AuditLogEntry.action).order_by(AuditLogEntry.id)))
    assert actions[-2:] == ["escalation.claim", "escalation.resolve"]


async def test_resolved_alert_refuses_further_steps(database: Database) -> None:
    case_id = await _alerted_case(database)
    async with database.session() as session:
        await escalation_actions.apply_moderator_action(
            session, case_id, ModeratorAction.FALSE_ALARM, MODERATOR, NOW
        )
    with pytest.raises(UserFacingError, match="false alarm"):
        async with database.session() as session:
            await escalation_actions.apply_moderator_action(session, case_id, ModeratorAction.CLAIM, 41, NOW)


async def test_member_saying_yes_turns_the_question_into_an_alert(database: Database) -> None:
    await _configure(database, default=EscalationConsent.ASK_FIRST)
    decision = await _handle(database, _event())
    async with database.session() as session:
        await escalation_delivery.mark_member_asked(session, decision.escalation_id)
    async with database.session() as session:
        await escalation_actions.record_member_answer(session, decision.escalation_id, MEMBER, True, NOW)
    async with database.session() as session:
        plan = await escalation_delivery.plan_delivery(session, decision.escalation_id)
    assert plan.action is Outcome.ALERT_MODERATORS


async def test_member_saying_no_closes_the_case_and_drops_the_excerpt(database: Database) -> None:
    await _configure(database, default=EscalationConsent.ASK_FIRST)
    decision = await _handle(database, _event())
    async with database.session() as session:
        await escalation_delivery.mark_member_asked(session, decision.escalation_id)
    async with database.session() as session:
        row = await escalation_actions.record_member_answer(
            session, decision.escalation_id, MEMBER, False, NOW
        )
    assert row.state is EscalationState.DECLINED and row.excerpt is None


async def test_only_the_member_can_answer_their_question(database: Database) -> None:
    await _configure(database, default=EscalationConsent.ASK_FIRST)
    decision = await _handle(database, _event())
    async with database.session() as session:
        await escalation_delivery.mark_member_asked(session, decision.escalation_id)
    with pytest.raises(UserFacingError):
        async with database.session() as session:
            await escalation_actions.record_member_answer(session, decision.escalation_id, 999, True, NOW)


async def test_unacknowledged_alert_is_due_for_reping_after_the_guild_delay(database: Database) -> None:
    case_id = await _alerted_case(database)
    async with database.session() as session:
        assert await escalation_delivery.due_repings(session, NOW + timedelta(minutes=29)) == []
        due = await escalation_delivery.due_repings(session, NOW + timedelta(minutes=30))
    assert [plan.escalation_id for plan in due] == [case_id]


async def test_repings_stop_after_the_maximum(database: Database) -> None:
    case_id = await _alerted_case(database)
    now = NOW
    for _ in range(escalation_delivery.MAX_REPINGS):
        now += timedelta(minutes=30)
        async with database.session() as session:
            assert await escalation_delivery.mark_repinged(session, case_id, now)
    async with database.session() as session:
        assert await escalation_delivery.due_repings(session, now + timedelta(days=1)) == []


async def test_acknowledged_alert_is_not_repinged(database: Database) -> None:
    case_id = await _alerted_case(database)
    async with database.session() as session:
        await escalation_actions.apply_moderator_action(
            session, case_id, ModeratorAction.ACKNOWLEDGE, MODERATOR, NOW
        )
    async with database.session() as session:
        assert await escalation_delivery.due_repings(session, NOW + timedelta(hours=3)) == []


async def test_open_escalation_for_a_checkin_uses_its_own_kind(database: Database) -> None:
    await _configure(database)
    async with database.session() as session:
        row, created = await escalation_cases.open_escalation(
            session,
            guild_id=GUILD,
            channel_id=None,
            message_id=100,
            member_id=MEMBER,
            kind=EscalationKind.CHECKIN,
            tier=RiskTier.HIGH,
            labels=["struggling"],
            excerpt=None,
            consent_choice=EscalationConsent.YES,
            now=NOW,
            retention_days=7,
        )
    post = await _handle(database, _event(message_id=100))
    assert created and post.escalation_id != row.id


async def test_a_members_next_high_post_joins_their_open_case_without_a_new_ping(database: Database) -> None:
    case_id = await _alerted_case(database)
    later = await _handle(database, _event(message_id=101))
    assert later.escalation_id == case_id and later.joined
    async with database.session() as session:
        row = await session.get(Escalation, case_id)
        assert escalation_cases.case_messages(row) == [(CHANNEL, 100), (CHANNEL, 101)]
        assert row.alert_outdated_at == NOW and row.ping_count == 0
        assert await escalation_delivery.pending_ids(session) == [case_id]  # owed: a redraw, not a new alert
        plan = await escalation_delivery.plan_redraw(session, case_id)
        await escalation_delivery.mark_redrawn(session, case_id, plan)
    async with database.session() as session:
        assert await escalation_delivery.pending_ids(session) == []
        assert await session.scalar(select(func.count(Escalation.id))) == 1


async def test_same_message_joins_a_case_once(database: Database) -> None:
    case_id = await _alerted_case(database)
    await _handle(database, _event(message_id=101))
    await _handle(database, _event(message_id=101))
    async with database.session() as session:
        row = await session.get(Escalation, case_id)
    assert len(escalation_cases.case_messages(row)) == 2


async def test_after_a_moderator_resolves_a_new_high_post_opens_a_new_case(database: Database) -> None:
    case_id = await _alerted_case(database)
    async with database.session() as session:
        await escalation_actions.apply_moderator_action(
            session, case_id, ModeratorAction.RESOLVE, MODERATOR, NOW
        )
    later = await _handle(database, _event(message_id=101))
    assert later.escalation_id != case_id and not later.joined


async def test_after_the_quiet_period_a_new_high_post_opens_a_new_case(database: Database) -> None:
    case_id = await _alerted_case(database)
    async with database.session() as session:
        later = await escalation_cases.handle_seeker_risk(
            session,
            _event(message_id=101),
            defaults=None,
            now=NOW + escalation_cases.DEFAULT_QUIET + timedelta(minutes=1),
            retention_days=7,
        )
    assert later.escalation_id != case_id and not later.joined


# GUILD is on shard 0 of 2: with sharding, the process running shard 0 sweeps it and the other leaves it alone.
THIS_PROCESS, OTHER_PROCESS = GuildOwnership(2, frozenset({0})), GuildOwnership(2, frozenset({1}))


async def test_sweep_lists_and_plans_only_the_guilds_this_process_owns(database: Database) -> None:
    await _configure(database)
    case_id = (await _handle(database, _event())).escalation_id
    async with database.session() as session:
        assert await escalation_delivery.pending_ids(session, OTHER_PROCESS) == []
        assert await escalation_delivery.plan_delivery(session, case_id, owned=OTHER_PROCESS) is None
        assert await escalation_delivery.pending_ids(session, THIS_PROCESS) == [case_id]
        assert await escalation_delivery.plan_delivery(session, case_id, owned=THIS_PROCESS) is not None


async def test_repings_are_due_only_in_the_guilds_this_process_owns(database: Database) -> None:
    case_id = await _alerted_case(database)
    later = NOW + timedelta(minutes=30)
    async with database.session() as session:
        assert await escalation_delivery.due_repings(session, later, OTHER_PROCESS) == []
        due = await escalation_delivery.due_repings(session, later, THIS_PROCESS)
    assert [plan.escalation_id for plan in due] == [case_id]
