"""Consent and shadow mode are read again at every send and re-ping, not frozen when the case opened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.db.models import AuditLogEntry, Escalation, EscalationConsent, EscalationState
from bot.db.session import Database
from bot.services import consent, escalation_actions, escalation_cases, escalation_delivery, guild_settings
from bot.services.errors import UserFacingError
from bot.services.escalation_cases import ScoredMessage
from bot.services.escalation_policy import Outcome
from inference.types import RiskResult, RiskTier

# A faster `database` fixture (a copy of one migrated file) for these modules.
from tests.bot.services.safety_fixtures import migrated_template, safety_database  # noqa: F401

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=31)  # past the default 30 minutes before a re-ping
GUILD, CHANNEL, MEMBER, MODERATOR = 10, 20, 30, 40


def _event(message_id: int = 100) -> ScoredMessage:
    risk = RiskResult(probabilities={"suicidal": 0.95}, tier=RiskTier.HIGH, triggered_labels=("suicidal",))
    return ScoredMessage(GUILD, CHANNEL, message_id, MEMBER, risk, "a short made-up excerpt")


async def _live(database: Database, default: EscalationConsent = EscalationConsent.YES) -> None:
    async with database.session() as session:
        await guild_settings.update(
            session,
            GUILD,
            MODERATOR,
            shadow_mode=False,
            default_escalation_consent=default,
            alert_channel_id=555,
            moderator_role_id=666,
        )


async def _pending_case(database: Database, default: EscalationConsent = EscalationConsent.YES) -> int:
    """A case whose alert could not be posted yet (a 403): it waits for the sweep."""
    await _live(database, default)
    async with database.session() as session:
        decision = await escalation_cases.handle_seeker_risk(
            session, _event(), defaults=None, now=NOW, retention_days=7
        )
    async with database.session() as session:
        await escalation_delivery.mark_attempt(session, decision.escalation_id)
        await escalation_delivery.mark_failed(
            session, decision.escalation_id, "missing permission (403)", NOW
        )
    return decision.escalation_id


async def _alerted_case(database: Database) -> int:
    case_id = await _pending_case(database)
    async with database.session() as session:
        await escalation_delivery.mark_alerted(session, case_id, 555, 9001, NOW)
    return case_id


async def _member_chooses(database: Database, choice: EscalationConsent) -> None:
    async with database.session() as session:
        await consent.set_escalation(session, GUILD, MEMBER, choice)


async def _member_changes_to(database: Database, choice: EscalationConsent) -> list[int]:
    """The member's /peercare safety choice, applied to their open cases at once as the command does."""
    async with database.session() as session:
        await consent.set_escalation(session, GUILD, MEMBER, choice)
        return await escalation_cases.apply_changed_consent(session, GUILD, MEMBER, NOW)


async def _assert_declined_and_owed_redraw(database: Database, case_id: int) -> None:
    case = await _case(database, case_id)
    assert case.state is EscalationState.DECLINED and case.excerpt is None
    async with database.session() as session:
        plan = await escalation_delivery.plan_redraw(session, case_id, NOW)
    assert plan is not None and plan.consent_withdrawn


async def _shadow_mode(database: Database, on: bool) -> None:
    async with database.session() as session:
        await guild_settings.update(session, GUILD, MODERATOR, shadow_mode=on)


async def _case(database: Database, case_id: int) -> Escalation:
    async with database.session() as session:
        row = await session.get(Escalation, case_id)
    assert row is not None
    return row


async def _audit(database: Database) -> list[str]:
    async with database.session() as session:
        return list(await session.scalars(select(AuditLogEntry.action).order_by(AuditLogEntry.id)))


async def test_withdrawn_consent_stops_pending_alert(database: Database) -> None:
    case_id = await _pending_case(database)
    await _member_chooses(database, EscalationConsent.NO)
    async with database.session() as session:
        plan = await escalation_delivery.plan_delivery(session, case_id)
    assert plan is not None and plan.action is Outcome.PRIVATE_RESOURCES  # resources to them, nobody else
    assert plan.excerpt is None
    row = await _case(database, case_id)
    assert row.excerpt is None and row.text_expires_at is None
    assert row.consent_used == EscalationConsent.NO.value
    assert "escalation.consent_withdrawn" in await _audit(database)
    async with database.session() as session:
        await escalation_delivery.mark_member_supported(session, case_id)
    assert (await _case(database, case_id)).state is EscalationState.MEMBER_SUPPORTED


async def test_consent_changed_to_ask_first_asks_before_a_pending_alert(database: Database) -> None:
    case_id = await _pending_case(database)
    await _member_chooses(database, EscalationConsent.ASK_FIRST)
    async with database.session() as session:
        plan = await escalation_delivery.plan_delivery(session, case_id)
    assert plan is not None and plan.action is Outcome.ASK_MEMBER


async def test_consent_given_later_never_widens_an_open_case(database: Database) -> None:
    """(guard) A post made under "no" stays private: a later "yes" is for later posts."""
    case_id = await _pending_case(database, EscalationConsent.NO)
    await _member_chooses(database, EscalationConsent.YES)
    async with database.session() as session:
        plan = await escalation_delivery.plan_delivery(session, case_id)
    assert plan is not None and plan.action is Outcome.PRIVATE_RESOURCES and plan.excerpt is None


async def test_shadow_mode_holds_a_pending_alert(database: Database) -> None:
    case_id = await _pending_case(database)
    await _shadow_mode(database, True)
    async with database.session() as session:
        assert await escalation_delivery.plan_delivery(session, case_id) is None
    await _shadow_mode(database, False)  # live again: what was owed before goes out, nothing was lost
    async with database.session() as session:
        plan = await escalation_delivery.plan_delivery(session, case_id)
    assert plan is not None and plan.action is Outcome.ALERT_MODERATORS


async def test_shadow_mode_stops_repings(database: Database) -> None:
    case_id = await _alerted_case(database)
    await _shadow_mode(database, True)
    async with database.session() as session:
        assert await escalation_delivery.due_repings(session, LATER) == []
        assert not await escalation_delivery.mark_repinged(session, case_id, LATER)
    assert (await _case(database, case_id)).ping_count == 0


async def test_withdrawn_consent_stops_repings_and_closes_the_alert(database: Database) -> None:
    case_id = await _alerted_case(database)
    await _member_chooses(database, EscalationConsent.NO)
    async with database.session() as session:
        assert not await escalation_delivery.mark_repinged(session, case_id, LATER)
    row = await _case(database, case_id)
    assert row.state is EscalationState.DECLINED and row.excerpt is None and row.ping_count == 0
    assert "escalation.consent_withdrawn" in await _audit(database)
    async with database.session() as session:
        assert await escalation_delivery.due_repings(session, LATER) == []
        plan = await escalation_delivery.plan_redraw(session, case_id)  # the posted alert is taken back
    assert plan is not None and plan.consent_withdrawn and plan.excerpt is None


async def test_message_joining_after_consent_was_withdrawn_is_not_shown_to_moderators(
    database: Database,
) -> None:
    case_id = await _alerted_case(database)
    await _member_chooses(database, EscalationConsent.NO)
    async with database.session() as session:
        later = await escalation_cases.handle_seeker_risk(
            session, _event(message_id=101), defaults=None, now=NOW, retention_days=7
        )
    assert later.escalation_id == case_id
    row = await _case(database, case_id)
    assert row.excerpt is None and row.state is EscalationState.DECLINED


async def test_member_saying_yes_after_withdrawing_consent_is_told_how_to_allow_it(
    database: Database,
) -> None:
    await _live(database, EscalationConsent.ASK_FIRST)
    async with database.session() as session:
        decision = await escalation_cases.handle_seeker_risk(
            session, _event(), defaults=None, now=NOW, retention_days=7
        )
        await escalation_delivery.mark_member_asked(session, decision.escalation_id)
    await _member_chooses(database, EscalationConsent.NO)
    with pytest.raises(UserFacingError, match="/peercare safety"):
        async with database.session() as session:
            await escalation_actions.record_member_answer(session, decision.escalation_id, MEMBER, True, NOW)
    assert (await _case(database, decision.escalation_id)).state is EscalationState.AWAITING_MEMBER


# -- /peercare safety: a changed choice reaches the member's open cases at once -----------------------------


async def test_choosing_no_closes_a_posted_alert_at_once(database: Database) -> None:
    case_id = await _alerted_case(database)
    assert await _member_changes_to(database, EscalationConsent.NO) == [case_id]
    await _assert_declined_and_owed_redraw(database, case_id)


async def test_no_chosen_while_the_alert_is_on_its_way_takes_it_back(database: Database) -> None:
    case_id = await _pending_case(database)
    async with database.session() as session:
        drawn = await escalation_delivery.plan_delivery(
            session, case_id, NOW
        )  # planned under "yes", then sent
    assert drawn is not None and drawn.action is Outcome.ALERT_MODERATORS
    assert await _member_changes_to(database, EscalationConsent.NO) == [case_id]
    async with database.session() as session:  # the send lands after the member's choice
        await escalation_delivery.mark_alerted(session, case_id, 555, 9001, NOW, drawn=drawn)
    await _assert_declined_and_owed_redraw(database, case_id)


async def test_a_wider_choice_changes_no_open_case(database: Database) -> None:
    case_id = await _pending_case(database, EscalationConsent.ASK_FIRST)
    assert await _member_changes_to(database, EscalationConsent.YES) == []
    case = await _case(database, case_id)
    assert case.consent_used == EscalationConsent.ASK_FIRST.value and case.excerpt is not None


async def test_no_chosen_while_the_question_is_on_its_way_closes_the_case(database: Database) -> None:
    """The ask-first DM is being sent when the member chooses "no": the send's record must not reopen the case.

    Before, the case stayed "awaiting member" for ever (its excerpt gone, no delivery owed, no sweep to close it).
    """
    case_id = await _pending_case(database, EscalationConsent.ASK_FIRST)
    async with database.session() as session:
        drawn = await escalation_delivery.plan_delivery(session, case_id, NOW)
    assert drawn is not None and drawn.action is Outcome.ASK_MEMBER
    await _member_changes_to(database, EscalationConsent.NO)  # while the question is being sent
    async with database.session() as session:
        await escalation_delivery.mark_member_asked(session, case_id)  # the send's record
    case = await _case(database, case_id)
    assert case.state is EscalationState.DECLINED and case.excerpt is None and case.resolved_at is not None
    async with database.session() as session:
        assert await escalation_delivery.plan_delivery(session, case_id, NOW) is None
